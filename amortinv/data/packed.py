"""Packed datasets: decoded arrays compressed to travel to a machine without their sources.

A machine that lacks the Debian packages and tools a source needs (the GPU machine has none)
can still load a dataset from its *packed* arrays: ``<data dir>/packed/<name>.npz``, written
on a machine that has the source (``python -m amortinv.data pack NAME ... --into DIR``, or
``make gpu-data``) and read by the registry before anything else, under the data folder
``AMORTINV_DATA`` names. The file is an ``.npz`` with the cache's members, compressed with
LZMA:

- images: the uint8 arrays as they are (lossless);
- audio: waveforms per split as 16-bit PCM (``pcm16``: error below 2e-5) or 8-bit mu-law
  (``mulaw8``, the telephone codec: half the bytes, error about 1% of the signal), at the
  dataset's rate or a lower one for a band-limited source (the synthetic spoken digits are
  rendered at 8 kHz), restored to float32 at the dataset's rate when read. By default a
  training split (what pre-training reads) is packed as mulaw8 and a test split (what
  evaluation scores) as pcm16. ``tests/test_packed.py`` measures the errors.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amortinv.files import written_whole
from amortinv.data.cache import cache_dir
from amortinv.data.dataset import Split, Splits

#: PCM scale: float waveforms in [-1, 1] <-> int16.
PCM_SCALE = 32767.0
#: mu-law's compression constant (G.711).
MU = 255.0
#: Audio sources that hold (almost) nothing above 4 kHz in their training split, packed there
#: at 8 kHz: the synthetic spoken digits are rendered at 8 kHz (amortinv.data.render.DIGITS_RATE)
#: like the telephone prompts they are tested on.
PACK_RATES: dict[str, int] = {"spoken-digits": 8000}


@dataclass(frozen=True)
class AudioPacking:
    """How one split's waveforms are stored: ``codec`` pcm16 or mulaw8, at ``rate`` Hz
    (None: the dataset's own)."""

    codec: str = "pcm16"
    rate: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in ("pcm16", "mulaw8"):  # the keys of CODECS
            raise ValueError(f"audio codec must be pcm16 or mulaw8, got "
                             f"{self.codec!r}")


LOSSLESS = AudioPacking("pcm16")


def packed_path(name: str, root: Path | None = None) -> Path:
    """Where dataset ``name``'s packed arrays are (or go) under ``root`` (default: the data
    folder)."""
    safe = name.replace("/", "_").replace(":", "_")
    return (root or cache_dir()) / "packed" / f"{safe}.npz"


def write_packed(path: Path, splits: Splits, sample_rate: int | None = None,
                 train: AudioPacking = LOSSLESS, test: AudioPacking = LOSSLESS) -> Path:
    """Write ``splits`` packed to ``path`` (atomically). Audio (``sample_rate`` given) is
    stored as ``train`` and ``test`` say."""
    arrays = {"train_y": splits.train.y, "test_y": splits.test.y,
              "class_names": np.array(splits.class_names, dtype=str)}
    for name, split, packing in (("train", splits.train, train), ("test", splits.test, test)):
        if sample_rate is None:
            arrays[f"{name}_x"] = split.x
            continue
        rate = packing.rate or sample_rate
        arrays |= {f"{name}_x": CODECS[packing.codec][0](resample_to(split.x, sample_rate, rate)),
                   f"{name}_codec": np.array(packing.codec), f"{name}_rate": np.array(rate)}
    if sample_rate is not None:
        arrays["sample_rate"] = np.array(sample_rate)
    with written_whole(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) \
            as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    return path


def read_packed(path: Path) -> Splits:
    """The splits in a packed file (audio back to float32 at the dataset's sample rate)."""
    with np.load(path, allow_pickle=False) as z:
        xs = {}
        for name in ("train", "test"):
            x = z[f"{name}_x"]
            if f"{name}_codec" in z.files:
                codec = str(z[f"{name}_codec"])
                if codec not in CODECS:
                    raise ValueError(f"{path}: unknown audio codec {codec!r}; pack it again "
                                     "with this version of amortinv")
                x = resample_to(CODECS[codec][1](x), int(z[f"{name}_rate"]),
                                int(z["sample_rate"]))
            xs[name] = x
        return Splits(Split(xs["train"], z["train_y"]), Split(xs["test"], z["test_y"]),
                      tuple(str(c) for c in z["class_names"]))


def resample_to(x: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Float waveforms at ``rate`` -> float32 at ``to_rate``, clipped to [-1, 1]."""
    from amortinv.data.audio_io import resample

    return np.clip(resample(np.asarray(x, dtype=np.float32), rate, to_rate), -1, 1
                   ).astype(np.float32)


def pcm16_encode(x: np.ndarray) -> np.ndarray:
    return np.round(x * PCM_SCALE).astype(np.int16)


def pcm16_decode(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / PCM_SCALE


def mulaw8_encode(x: np.ndarray) -> np.ndarray:
    """G.711-style mu-law: fine steps for quiet samples, coarse for loud ones."""
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.round((y + 1) * 127.5).astype(np.uint8)


def mulaw8_decode(q: np.ndarray) -> np.ndarray:
    y = q.astype(np.float32) / 127.5 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


#: codec -> (encode, decode)
CODECS = {"pcm16": (pcm16_encode, pcm16_decode), "mulaw8": (mulaw8_encode, mulaw8_decode)}

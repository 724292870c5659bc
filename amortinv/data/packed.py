"""Packed datasets: decoded arrays compressed to travel to a machine without their sources.

A machine that lacks the Debian packages and tools a source needs (the GPU machine has none)
can still load a dataset from its *packed* arrays: ``<data dir>/packed/<name>.npz``, written
on a machine that has the source (``python -m amortinv.data pack NAME ... --into DIR``, or
``make gpu-data``) and read by the registry before anything else, under the data folder
``AMORTINV_DATA`` names. The file is an ``.npz`` with the cache's members, compressed with
LZMA:

- images: the uint8 arrays as they are (lossless);
- audio: waveforms as 16-bit PCM, optionally at a lower ``rate`` (for sources that are
  band-limited anyway, e.g. the telephone-band spoken digits: 8 kHz keeps all they hold),
  restored to float32 at the dataset's rate when read. The error this adds (quantisation,
  and the resampling filter's ripple) is measured in ``tests/test_packed.py``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from amortinv.data.cache import cache_dir
from amortinv.data.dataset import Split, Splits

#: PCM scale: float waveforms in [-1, 1] <-> int16.
PCM_SCALE = 32767.0
#: Audio sources that hold nothing above 4 kHz: packed at 8 kHz (half the bytes). Both are
#: telephone-band: the Asterisk prompts are 8 kHz recordings, and the synthetic digits are
#: rendered at 8 kHz like them (amortinv.data.render.DIGITS_RATE).
PACK_RATES: dict[str, int] = {"spoken-digits": 8000, "asterisk-digits": 8000}


def packed_path(name: str, root: Path | None = None) -> Path:
    """Where dataset ``name``'s packed arrays are (or go) under ``root`` (default: the data
    folder)."""
    safe = name.replace("/", "_").replace(":", "_")
    return (root or cache_dir()) / "packed" / f"{safe}.npz"


def write_packed(path: Path, splits: Splits, sample_rate: int | None = None,
                 rate: int | None = None) -> Path:
    """Write ``splits`` packed to ``path`` (atomically). Audio (``sample_rate`` given) is
    stored as 16-bit PCM at ``rate`` (default: ``sample_rate``)."""
    arrays = {"train_y": splits.train.y, "test_y": splits.test.y,
              "class_names": np.array(splits.class_names, dtype=str)}
    if sample_rate is None:
        arrays |= {"train_x": splits.train.x, "test_x": splits.test.x}
    else:
        rate = rate or sample_rate
        arrays |= {"train_x": to_pcm(splits.train.x, sample_rate, rate),
                   "test_x": to_pcm(splits.test.x, sample_rate, rate),
                   "codec": np.array("pcm16"), "rate": np.array(rate),
                   "sample_rate": np.array(sample_rate)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as archive:
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_packed(path: Path) -> Splits:
    """The splits in a packed file (audio back to float32 at the dataset's sample rate)."""
    with np.load(path, allow_pickle=False) as z:
        train_x, test_x = z["train_x"], z["test_x"]
        if "codec" in z.files:
            if str(z["codec"]) != "pcm16":
                raise ValueError(f"{path}: unknown audio codec {z['codec']}; pack it again "
                                 "with this version of amortinv")
            rate, sample_rate = int(z["rate"]), int(z["sample_rate"])
            train_x, test_x = (from_pcm(x, rate, sample_rate) for x in (train_x, test_x))
        return Splits(Split(train_x, z["train_y"]), Split(test_x, z["test_y"]),
                      tuple(str(c) for c in z["class_names"]))


def to_pcm(x: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """Float waveforms at ``sample_rate`` -> int16 at ``rate``."""
    from amortinv.data.audio_io import resample

    x = resample(np.asarray(x, dtype=np.float32), sample_rate, rate)
    return np.round(np.clip(x, -1, 1) * PCM_SCALE).astype(np.int16)


def from_pcm(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """int16 at ``rate`` -> float32 waveforms at ``sample_rate``, in [-1, 1]."""
    from amortinv.data.audio_io import resample

    x = x.astype(np.float32) / PCM_SCALE
    return np.clip(resample(x, rate, sample_rate), -1, 1).astype(np.float32)

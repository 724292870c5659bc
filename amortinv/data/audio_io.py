"""Read audio files into fixed-length clips: the one decoding path every audio source shares.

Every clip comes out the same way (mono, ``sample_rate`` Hz, ``seconds`` long, float32 in
[-1, 1]) so that datasets built from different tools and recordings stack into one array and a
model never sees a difference that is only an artefact of decoding.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

#: Peak level of a normalised clip: a little headroom so gain or mixing augmentations do not
#: clip at once.
PEAK = 0.9
#: Frames quieter than this (dB below the loudest 10 ms frame) count as silence at the ends.
SILENCE_DB = 40.0
_FRAME_SECONDS = 0.01
#: Sample rates (Hz) a file may declare: outside them its header is broken, and believing it
#: would resample a few kilobytes into gigabytes.
MIN_RATE, MAX_RATE = 1_000, 1_000_000
#: Seconds of a file read beyond the clip's own length: room for silence before the sound,
#: without decoding all of a long recording for a short clip.
LEAD_IN = 30.0


class AudioDecodeError(ValueError):
    """A file that is not audio we can decode (corrupt, empty, or an unknown format)."""


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (exact rational ratio)."""
    if from_rate == to_rate:
        return x
    g = math.gcd(from_rate, to_rate)
    from scipy.signal import resample_poly  # slow to import; only for resampling
    return resample_poly(x, to_rate // g, from_rate // g, axis=-1).astype(np.float32)


def _read_gsm(path: Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Headerless GSM 06.10 (Asterisk prompts, 8 kHz): libsndfile cannot open it, sox can.
    ``seconds`` as in :func:`_read_soundfile`."""
    sox = shutil.which("sox")
    if sox is None:
        raise AudioDecodeError(
            f"{path}: GSM audio needs sox; install it with `sudo apt-get install sox`"
        )
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        done = subprocess.run(
            [sox, "-t", "gsm", "-r", "8000", "-c", "1", str(path), str(wav)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0 or not wav.exists():
            raise AudioDecodeError(f"{path}: sox could not decode it as GSM: "
                                   f"{done.stderr.strip() or 'no output'}")
        return _read_soundfile(wav, shown_as=path, seconds=seconds)


def _read_soundfile(path: Path, shown_as: Path | None = None, seconds: float | None = None
                    ) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (wav, flac, ogg/vorbis, aiff, ...) into (channels, frames): the
    first ``seconds`` of the file, or all of it when ``None``.

    A sample rate outside :data:`MIN_RATE` to :data:`MAX_RATE` makes the file unreadable.
    """
    import soundfile as sf  # here: the GPU image pre-trains on packed arrays without it

    shown = shown_as or path
    try:
        with sf.SoundFile(str(path)) as f:
            rate = int(f.samplerate)
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioDecodeError(
                    f"{shown}: not a readable audio file (its header gives a sample rate of "
                    f"{rate:,} Hz; audio is recorded at {MIN_RATE:,} to {MAX_RATE:,} Hz)")
            frames = -1 if seconds is None else math.ceil(seconds * rate)
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(f"{shown}: not a readable audio file ({err})") from err
    return data.T, rate


def _trim_silence(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop near-silent 10 ms frames at both ends, keeping one frame of margin each side.

    Light on purpose: it removes the lead-in and tail that differ between recording setups,
    never quiet sound inside the clip.
    """
    frame = max(1, int(sample_rate * _FRAME_SECONDS))
    n = len(x) // frame
    if n < 3:
        return x
    rms = np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-SILENCE_DB / 20))
    if len(loud) == 0:
        return x
    start = max(0, loud[0] - 1) * frame
    stop = min(n, loud[-1] + 2) * frame
    return x[start:stop] if stop < n * frame else x[start:]


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Pad a short clip with silence on both sides (centred); cut a long one after its start.

    The start of a sound (onset, attack, first syllable) is its most telling part, so long
    clips keep it; short ones are centred so a time-shift augmentation can move either way.
    """
    if len(x) >= length:
        return x[:length]
    left = (length - len(x)) // 2
    return np.pad(x, (left, length - len(x) - left))


def read_clip(path: str | Path, sample_rate: int = 16000, seconds: float = 1.0, *,
              trim: bool = True, normalize: bool = True) -> np.ndarray:
    """One file as a float32 ``(T,)`` clip: mono, resampled, trimmed, fixed length, in [-1, 1].

    ``trim`` removes silence at the ends; ``normalize`` scales the peak to :data:`PEAK`. Turn
    both off where level or timing is the label (note velocity). Only the first ``seconds`` +
    :data:`LEAD_IN` seconds of the file are read, so the sound must start within
    :data:`LEAD_IN` seconds. Raises :class:`AudioDecodeError` naming the file when it is not
    decodable audio, is empty or declares a sample rate outside :data:`MIN_RATE` to
    :data:`MAX_RATE`, and ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty")
    read = _read_gsm if path.suffix.lower() == ".gsm" else _read_soundfile
    data, rate = read(path, seconds=seconds + LEAD_IN)
    if data.shape[1] == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    x = np.nan_to_num(data.mean(axis=0), nan=0.0, posinf=0.0, neginf=0.0)
    x = resample(x, rate, sample_rate)
    if trim:
        x = _trim_silence(x, sample_rate)
    x = fit_length(x, round(sample_rate * seconds))
    peak = float(np.abs(x).max())
    if normalize and peak > 1e-6:  # a silent clip stays silent instead of amplifying noise
        x = x * (PEAK / peak)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Decoded:
    """What :func:`decode_many` returns: clips, which inputs they came from, what was skipped."""

    clips: np.ndarray  # float32 (N, T)
    kept: np.ndarray  # int64 (N,): position of each clip in the input list
    skipped: list[tuple[Path, str]]  # (file, reason) for each file that could not be decoded


def decode_many(paths: Sequence[str | Path], sample_rate: int = 16000, seconds: float = 1.0, *,
                trim: bool = True, normalize: bool = True, workers: int = 2,
                progress: str | None = None) -> Decoded:
    """Decode many files with :func:`read_clip`, skipping (and listing) those that fail.

    A folder or an uploaded zip often holds a stray file (a README, a truncated recording);
    one bad file should cost that file, not the whole dataset. ``progress`` is the label of a
    progress bar, or ``None`` for none.
    """
    length = round(sample_rate * seconds)

    def one(path: str | Path) -> np.ndarray | str:
        try:
            return read_clip(path, sample_rate, seconds, trim=trim, normalize=normalize)
        except (AudioDecodeError, OSError) as err:
            return str(err)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(tqdm(pool.map(one, paths), total=len(paths), desc=progress,
                            disable=progress is None, unit="file"))
    kept = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
    skipped = [(Path(paths[i]), r) for i, r in enumerate(results) if isinstance(r, str)]
    clips = (np.stack([results[i] for i in kept]) if kept
             else np.zeros((0, length), dtype=np.float32))
    return Decoded(clips, np.array(kept, dtype=np.int64), skipped)

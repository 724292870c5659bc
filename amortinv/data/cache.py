"""The on-disk cache of decoded datasets: where it lives, and splits written to and read from
uncompressed ``.npz`` files (fast to read back, written atomically, built once however many
sessions or processes ask for them at the same time)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock

from amortinv.files import written_whole
from amortinv.data.dataset import Split, Splits

T = TypeVar("T")

#: Bump to invalidate every cached array (a change of decoding or of a derived task).
CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where decoded arrays and rendered audio live: ``$AMORTINV_DATA`` or ``<repo>/data``."""
    root = os.environ.get("AMORTINV_DATA")
    path = Path(root) if root else Path(__file__).resolve().parents[2] / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_path(name: str) -> Path:
    safe = name.replace("/", "_").replace(":", "_")
    return cache_dir() / "cache" / f"{safe}-v{CACHE_VERSION}.npz"


def cached(name: str, load: Callable[[], Splits]) -> Splits:
    """Dataset ``name``'s splits from the cache, else ``load()``-ed and written there."""
    return _read_or_build(cache_path(name), load_splits, load, save_splits)


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """Named arrays from the cache, else ``build()``-ed and written there: for a decoded
    intermediate that several datasets share (decoded once for all of them)."""
    return _read_or_build(cache_path(name), _load_npz, build, _save_npz)


def _read_or_build(path: Path, read: Callable[[Path], T], build: Callable[[], T],
                   write: Callable[[Path, T], None]) -> T:
    """``read(path)``, else ``build()`` and ``write`` it there, once: whoever else wants it
    meanwhile (another app user's session, another process) waits for that build and reads
    it, instead of decoding it again beside it. A torn or stale file is built again."""
    found = _read_if_sound(path, read)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        found = _read_if_sound(path, read)  # built while this one waited
        if found is None:
            found = build()
            write(path, found)
    return found


def _read_if_sound(path: Path, read: Callable[[Path], T]) -> T | None:
    if path.exists():
        try:
            return read(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a torn or stale cache file: rebuild it
    return None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_splits(path: Path, splits: Splits) -> None:
    """Write ``splits`` to an uncompressed ``.npz`` atomically (fast to read back)."""
    _save_npz(path, dict(train_x=splits.train.x, train_y=splits.train.y, test_x=splits.test.x,
                         test_y=splits.test.y,
                         class_names=np.array(splits.class_names, dtype=str)))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with written_whole(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_splits(path: Path) -> Splits:
    with np.load(path, allow_pickle=False) as z:
        return Splits(Split(z["train_x"], z["train_y"]), Split(z["test_x"], z["test_y"]),
                      tuple(str(c) for c in z["class_names"]))

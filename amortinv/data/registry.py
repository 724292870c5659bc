"""One registry for every dataset: offline sources, derived tasks, torchvision, user folders.

A source registers a *loader* that returns :class:`Splits` (arrays), together with what it is
(modality, target kind, description) and what it needs to exist (``requires``: paths, or a callable).
:func:`get` builds the :class:`Dataset`, decoding once and caching the arrays under
:func:`cache_dir` so the next load is fast.

Array conventions, for every dataset:
- images: ``uint8`` of shape ``(N, C, H, W)``, C = 1 (grey) or 3 (RGB);
- audio: ``float32`` waveforms of shape ``(N, T)`` in [-1, 1] at ``sample_rate`` Hz;
- labels: ``int64`` of shape ``(N,)`` for classification, ``float32`` ``(N, D)`` for
  regression.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Modality = Literal["image", "audio"]
TargetKind = Literal["classification", "regression"]

#: Bump to invalidate every cached array (a change of decoding or of a derived task).
CACHE_VERSION = 1


class DatasetUnavailable(RuntimeError):
    """A known dataset whose source is not on this machine; the message says how to get it."""


class UnknownDataset(KeyError):
    """A name that no registered dataset has."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one split."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray | slice) -> Split:
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Splits:
    """What a loader returns: train and test arrays, and class names for classification."""

    train: Split
    test: Split
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset with everything a model, a readout or the app needs to know."""

    name: str
    modality: Modality
    target_kind: TargetKind
    train: Split
    test: Split
    description: str
    class_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    sample_rate: int | None = None
    needs: str = ""
    source: str = ""

    @property
    def num_outputs(self) -> int:
        """Classes for classification, target dimensions for regression."""
        if self.target_kind == "classification":
            return len(self.class_names)
        return 1 if self.train.y.ndim == 1 else self.train.y.shape[1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: ``(C, H, W)`` for images, ``(T,)`` for audio."""
        return tuple(self.train.x.shape[1:])

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> tuple[Split, Split]:
        """Carve ``(train, validation)`` out of the training split; the test split is untouched.

        The carve-out is random but fixed by ``seed``, and stratified by class for
        classification, so model selection never looks at the test split.
        """
        keep, val = self.validation_indices(fraction, seed)
        return self.train.take(keep), self.train.take(val)

    def validation_indices(self, fraction: float = 0.1, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray]:
        """The training-split indices :meth:`validation_split` keeps and carves out (sorted):
        for features computed once on the whole training split."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n = len(self.train)
        if n < 2:
            raise ValueError(f"dataset '{self.name}' has {n} training example(s): too few to split")
        rng = np.random.default_rng(seed)
        if self.target_kind == "classification":
            val = []
            for c in np.unique(self.train.y):
                idx = np.flatnonzero(self.train.y == c)
                rng.shuffle(idx)
                val.append(idx[: round(len(idx) * fraction)])
            val_idx = np.sort(np.concatenate(val))
        else:
            val_idx = np.sort(rng.permutation(n)[: max(1, round(n * fraction))])
        keep = np.ones(n, dtype=bool)
        keep[val_idx] = False
        if not keep.any() or keep.all():
            raise ValueError(f"dataset '{self.name}' is too small for a {fraction:.0%} split")
        return np.flatnonzero(keep), val_idx


@dataclass(frozen=True)
class Entry:
    """A registered dataset: what it is, how to load it, what it needs to exist."""

    name: str
    modality: Modality
    target_kind: TargetKind
    description: str
    loader: Callable[[], Splits]
    requires: tuple[str | Callable[[], bool], ...] = ()
    hint: str = ""
    kind: str = "source"
    needs: str = ""
    sample_rate: int | None = None
    target_names: tuple[str, ...] = ()
    cache: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)

    def available(self) -> bool:
        """True when everything the loader needs is on this machine (cheap: no decoding)."""
        for req in self.requires:
            ok = req() if callable(req) else Path(req).exists()
            if not ok:
                return False
        return True


_REGISTRY: dict[str, Entry] = {}


def register(
    name: str,
    *,
    modality: Modality,
    target_kind: TargetKind,
    description: str,
    requires: Iterable[str | Callable[[], bool]] = (),
    hint: str = "",
    kind: str = "source",
    needs: str = "",
    sample_rate: int | None = None,
    target_names: Iterable[str] = (),
    cache: bool = True,
) -> Callable[[Callable[[], Splits]], Callable[[], Splits]]:
    """Decorator: register ``loader`` under ``name``.

    ``requires`` lists paths (or zero-argument callables) that must exist; ``hint`` tells a user
    how to get them; ``needs`` says, in one sentence, which invariance the task should want.
    """

    def wrap(loader: Callable[[], Splits]) -> Callable[[], Splits]:
        old = _REGISTRY.get(name)
        if old is not None and old.loader.__module__ != loader.__module__:
            raise ValueError(f"dataset {name!r} is registered twice ({old.loader.__module__} "
                             f"and {loader.__module__})")
        _REGISTRY[name] = Entry(
            name, modality, target_kind, description, loader, tuple(requires), hint, kind, needs,
            sample_rate, tuple(target_names), cache,
        )
        return loader

    return wrap


def entries() -> list[Entry]:
    _load_builtin_sources()
    return list(_REGISTRY.values())


def names(modality: Modality | None = None, *, available: bool = True,
          kind: str | None = None) -> list[str]:
    """Names of registered datasets, those usable on this machine by default."""
    return [
        e.name for e in entries()
        if (modality is None or e.modality == modality)
        and (kind is None or e.kind == kind)
        and (not available or e.available())
    ]


def info(name: str) -> Entry:
    """The registry entry for ``name`` (no loading)."""
    _load_builtin_sources()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownDataset(
        f"unknown dataset {name!r}.{suggestion} Known datasets: {', '.join(sorted(_REGISTRY))}; "
        "a folder of your own loads as 'folder:/path/to/dir'."
    )


def is_available(name: str) -> bool:
    """True when ``name`` is registered and its source is on this machine."""
    _load_builtin_sources()
    entry = _REGISTRY.get(name)
    return entry is not None and entry.available()


_LOADED: dict[str, Dataset] = {}


def get(name: str) -> Dataset:
    """Load dataset ``name`` (decoded once, then cached on disk and in memory).

    Raises :class:`UnknownDataset` for a name nobody registered and
    :class:`DatasetUnavailable` (saying what to install) when its source is missing.
    """
    if name.startswith("folder:"):
        from amortinv.data.folders import load_folder

        return load_folder(name.removeprefix("folder:"))
    if name in _LOADED:
        return _LOADED[name]
    entry = info(name)
    if not entry.available():
        raise DatasetUnavailable(
            f"dataset '{name}' is not available on this machine. {entry.hint}".strip()
        )
    splits = _cached(entry) if entry.cache else entry.loader()
    data = from_splits(entry, splits)
    _LOADED[name] = data
    return data


def from_splits(entry: Entry, splits: Splits) -> Dataset:
    """Wrap loader output as a :class:`Dataset`, checking the array conventions."""
    data = Dataset(
        name=entry.name, modality=entry.modality, target_kind=entry.target_kind, train=splits.train,
        test=splits.test, description=entry.description, class_names=tuple(splits.class_names),
        target_names=entry.target_names, sample_rate=entry.sample_rate, needs=entry.needs,
        source=entry.hint,
    )
    check(data)
    return data


def check(data: Dataset) -> None:
    """Raise ``ValueError`` unless ``data`` follows the array conventions of this module."""
    for split_name, split in (("train", data.train), ("test", data.test)):
        x, y = split.x, split.y
        where = f"dataset '{data.name}', {split_name} split"
        if len(x) == 0:
            raise ValueError(f"{where} is empty")
        if data.modality == "image" and (x.dtype != np.uint8 or x.ndim != 4
                                         or x.shape[1] not in (1, 3)):
            raise ValueError(f"{where}: images must be uint8 (N, 1|3, H, W), got "
                             f"{x.dtype} {x.shape}")
        if data.modality == "audio" and (x.dtype != np.float32 or x.ndim != 2):
            raise ValueError(f"{where}: audio must be float32 (N, T), got {x.dtype} {x.shape}")
        if data.target_kind == "classification":
            if y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(f"{where}: class labels must be int64 (N,), got {y.dtype}")
            if y.min() < 0 or y.max() >= len(data.class_names):
                raise ValueError(f"{where}: labels outside 0..{len(data.class_names) - 1}")
        elif y.dtype != np.float32:
            raise ValueError(f"{where}: regression targets must be float32, got {y.dtype}")


# -- on-disk cache -----------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where decoded arrays and rendered audio live: ``$AMORTINV_DATA`` or ``<repo>/data``."""
    root = os.environ.get("AMORTINV_DATA")
    path = Path(root) if root else Path(__file__).resolve().parents[2] / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cache_path(name: str) -> Path:
    safe = name.replace("/", "_").replace(":", "_")
    return cache_dir() / "cache" / f"{safe}-v{CACHE_VERSION}.npz"


def _cached(entry: Entry) -> Splits:
    path = _cache_path(entry.name)
    if path.exists():
        try:
            return load_splits(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a torn or stale cache file: rebuild it
    splits = entry.loader()
    save_splits(path, splits)
    return splits


def save_splits(path: Path, splits: Splits) -> None:
    """Write ``splits`` to an uncompressed ``.npz`` atomically (fast to read back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_x=splits.train.x, train_y=splits.train.y, test_x=splits.test.x,
                     test_y=splits.test.y, class_names=np.array(splits.class_names, dtype=str))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_splits(path: Path) -> Splits:
    with np.load(path, allow_pickle=False) as z:
        return Splits(Split(z["train_x"], z["train_y"]), Split(z["test_x"], z["test_y"]),
                      tuple(str(c) for c in z["class_names"]))


def forget() -> None:
    """Drop datasets held in memory (the on-disk cache stays)."""
    _LOADED.clear()


_BUILTINS_LOADED = False


def _load_builtin_sources() -> None:
    """Import the modules that register the built-in datasets (once, lazily)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # set first: the modules below call register() while importing
    try:
        from amortinv.data import audio, derived, images, torchvision_sets  # noqa: F401
    except BaseException:
        _BUILTINS_LOADED = False
        raise

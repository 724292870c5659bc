"""The dataset registry: sources register a loader under a name; :func:`get` loads by name.

A source registers a *loader* that returns :class:`~amortinv.data.dataset.Splits` (arrays),
together with what it is (modality, target kind, description) and what it needs to exist
(``requires``: paths, or a callable). :func:`get` builds the
:class:`~amortinv.data.dataset.Dataset`, decoding once and caching the arrays on disk
(:mod:`amortinv.data.cache`) so the next load is fast. A dataset whose packed arrays are in the
data folder (:mod:`amortinv.data.packed`) is read from them, with or without its source.

This module only registers and gets: the built-in sources are imported (and so registered)
by the package, :mod:`amortinv.data`, which is also where ``folder:PATH`` names are loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from amortinv.data.cache import cached
from amortinv.data.dataset import Dataset, Modality, Splits, TargetKind, check
from amortinv.data.packed import packed_path, read_packed


class DatasetUnavailable(RuntimeError):
    """A known dataset whose source is not on this machine; the message says how to get it."""


class UnknownDataset(KeyError):
    """A name that no registered dataset has."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


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
        """True when everything the loader needs is on this machine, or the dataset's packed
        arrays are (cheap: no decoding)."""
        return self.packed() or self.sources_present()

    def packed(self) -> bool:
        """True when the data folder holds this dataset's packed arrays."""
        return packed_path(self.name).exists()

    def sources_present(self) -> bool:
        """True when everything the loader needs is on this machine."""
        for req in self.requires:
            ok = req() if callable(req) else Path(req).exists()
            if not ok:
                return False
        return True


_REGISTRY: dict[str, Entry] = {}
_LOADED: dict[str, Dataset] = {}


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
    entry = _REGISTRY.get(name)
    return entry is not None and entry.available()


def get(name: str) -> Dataset:
    """Load registered dataset ``name`` (decoded once, then cached on disk and in memory).

    Raises :class:`UnknownDataset` for a name nobody registered and
    :class:`DatasetUnavailable` (saying what to install) when its source is missing.
    """
    if name in _LOADED:
        return _LOADED[name]
    entry = info(name)
    if not entry.available():
        raise DatasetUnavailable(
            f"dataset '{name}' is not available on this machine. {entry.hint}".strip()
        )
    if entry.packed():  # what its packer decoded, on a machine that may lack the source
        splits = read_packed(packed_path(name))
    else:
        splits = cached(name, entry.loader) if entry.cache else entry.loader()
    data = from_splits(entry, splits)
    _LOADED[name] = data
    return data


def from_splits(entry: Entry, splits: Splits) -> Dataset:
    """Wrap loader output as a :class:`Dataset`, checking the array conventions."""
    data = Dataset(
        name=entry.name, modality=entry.modality, target_kind=entry.target_kind,
        train=splits.train, test=splits.test, description=entry.description,
        class_names=tuple(splits.class_names), target_names=entry.target_names,
        sample_rate=entry.sample_rate, needs=entry.needs, source=entry.hint,
    )
    check(data)
    return data


def forget() -> None:
    """Drop datasets held in memory (the on-disk cache stays)."""
    _LOADED.clear()

"""Datasets: ``names()`` lists what this machine has, ``get(name)`` loads one.

    >>> import amortinv.data as data
    >>> "sklearn-digits" in data.names()
    True
    >>> ds = data.get("sklearn-digits")
    >>> ds.modality, ds.target_kind, ds.num_outputs
    ('image', 'classification', 10)

The modules, each importing only those above it (no import cycle; ``tests/test_imports.py``):

- :mod:`~amortinv.data.dataset`: ``Split``, ``Splits``, ``Dataset`` and their conventions;
- :mod:`~amortinv.data.cache`: where decoded arrays are cached;
- :mod:`~amortinv.data.packed`: decoded arrays packed to travel to a machine without the
  sources (read first when present);
- :mod:`~amortinv.data.registry`: registering a loader under a name, getting it by name;
- the built-in sources, which register themselves when imported, here and only here:
  :mod:`~amortinv.data.images`, :mod:`~amortinv.data.audio`, :mod:`~amortinv.data.derived`,
  :mod:`~amortinv.data.colour` (colour pre-training images, a colour-label task),
  :mod:`~amortinv.data.torchvision_sets`;
- :mod:`~amortinv.data.folders`: a folder of your own, loaded as ``folder:PATH``;
- :mod:`~amortinv.data.channels`: grey images for colour encoders and the reverse.
"""

from amortinv.data import (  # noqa: F401  (they register themselves)
    audio,
    colour,
    derived,
    images,
    torchvision_sets,
)
from amortinv.data.cache import cache_dir
from amortinv.data.channels import adapt_channels, to_channels
from amortinv.data.dataset import Dataset, Split, Splits
from amortinv.data.folders import FOLDER, load_folder
from amortinv.data.registry import (
    DatasetUnavailable,
    Entry,
    UnknownDataset,
    entries,
    info,
    is_available,
    names,
    register,
)
from amortinv.data.registry import get as get_registered

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "Entry",
    "FOLDER",
    "Split",
    "Splits",
    "UnknownDataset",
    "adapt_channels",
    "cache_dir",
    "entries",
    "folder_or_info",
    "get",
    "info",
    "is_available",
    "names",
    "register",
    "to_channels",
]


def get(name: str) -> Dataset:
    """Load dataset ``name``: a registered name (decoded once, then cached on disk and in
    memory), or ``folder:PATH`` for a folder of your own (one sub-folder per class).

    Raises :class:`UnknownDataset` for a name nobody registered,
    :class:`DatasetUnavailable` (saying what to install) when its source is missing, and
    ``ValueError`` for ``folder:`` without a path (it would read the current folder).
    """
    if name.startswith(FOLDER):
        path = name.removeprefix(FOLDER)
        if not path.strip():
            raise ValueError(f"{FOLDER} needs a path, e.g. {FOLDER}/path/to/classes")
        return load_folder(path)
    return get_registered(name)


def folder_or_info(name: str) -> Entry | None:
    """The registry entry of task ``name`` (no loading), or None for ``folder:PATH``, which
    has none. An unregistered name raises :class:`UnknownDataset` with the names it may
    have meant.

        >>> folder_or_info("sklearn-digits").modality, folder_or_info("folder:/tmp/mine")
        ('image', None)
    """
    return None if name.startswith(FOLDER) else info(name)

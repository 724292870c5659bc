"""Datasets: ``names()`` lists what this machine has, ``get(name)`` loads one.

    >>> import amortinv.data as data
    >>> "sklearn-digits" in data.names()
    True
    >>> ds = data.get("sklearn-digits")
    >>> ds.modality, ds.target_kind, ds.num_outputs
    ('image', 'classification', 10)
"""

from amortinv.data.registry import (
    Dataset,
    DatasetUnavailable,
    Split,
    Splits,
    UnknownDataset,
    cache_dir,
    entries,
    get,
    info,
    names,
    register,
)

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "Split",
    "Splits",
    "UnknownDataset",
    "cache_dir",
    "entries",
    "get",
    "info",
    "names",
    "register",
]

"""Datasets: ``names()`` lists what this machine has, ``get(name)`` loads one.

    >>> import amortinv.data as data
    >>> "sklearn-digits" in data.names()
    True
    >>> ds = data.get("sklearn-digits")
    >>> ds.modality, ds.task, ds.num_outputs
    ('image', 'classification', 10)
"""

from amortinv.data.channels import adapt_channels, to_channels
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
    "adapt_channels",
    "cache_dir",
    "entries",
    "get",
    "info",
    "names",
    "register",
    "to_channels",
]

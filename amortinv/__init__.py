"""amortinv: amortised invariance learning for contrastive self-supervision.

    >>> import amortinv
    >>> enc = amortinv.load("checkpoints/<name>")          # model + invariance space + card
    >>> z = enc.features(x, invariance={"crop": 1, "flip": 0, "color": 1, "blur": 0})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from amortinv.models import Encoder


def load(path: str, device: str = "auto") -> Encoder:
    """Load an amortised encoder from a checkpoint folder or ``.safetensors`` file, onto
    ``device``: ``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:N``."""
    from amortinv.checkpoint import load as _load

    return _load(path, device)


_SUBMODULES = {"augment", "checkpoint", "data", "devices", "downstream", "invariance",
               "measure", "models", "pretrain", "presets", "projection", "readout"}


def __getattr__(name: str):
    # `amortinv.downstream.fit(...)` works after a bare `import amortinv`, without importing
    # torch and every module up front.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"amortinv.{name}")
    raise AttributeError(f"module 'amortinv' has no attribute {name!r}")

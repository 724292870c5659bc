"""amortinv: amortised invariance learning for contrastive self-supervision.

    >>> import amortinv, torch
    >>> enc = amortinv.load("checkpoints/fmnist-hyper4-cpu")   # model + invariance space + card
    >>> x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)   # 8 grey 28x28 images
    >>> z = enc.features(x, invariance={"crop": 1, "flip": 0, "color": 1, "blur": 0})
    >>> z.shape
    torch.Size([8, 128])
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

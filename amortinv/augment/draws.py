"""Random parameters of augmentations, drawn on the CPU from a caller's generator: a seed gives
the same views on every device, and a transform's draws do not depend on where it runs."""

from __future__ import annotations

import torch


def uniform(n: int, low: torch.Tensor | float, high: torch.Tensor | float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` values drawn uniformly from ``[low, high)`` (bounds may be per-value tensors)."""
    return low + (high - low) * torch.rand(n, generator=generator)

"""Layers whose weights depend on the invariance vector.

Every residual block embeds the vector once (``Linear(K, 16)``, no bias, as in the paper); each
conditioned layer of the block turns that embedding into its parameters with a small MLP:

- :class:`HyperConv2d` (the paper's "hyper-ResNet"): the MLP ``16 -> bases (ReLU) -> kernel``
  generates the conv kernel. Read as: kernel = bias kernel + a mix of ``bases`` learned basis
  kernels with coefficients ``relu(W e + b)``. Paper: 32 bases, ~33x the plain parameters.
- :class:`FiLMBatchNorm2d` (our cheaper option): the MLP generates a per-channel scale and
  shift applied after a BatchNorm, so the convs stay plain and the parameter overhead is small.

Plain layers take the embedding too and ignore it, so a block is written once for all kinds.
Parameters are generated once per batch: one vector holds for the whole batch.

In eval mode a norm's statistics are fixed, so :func:`conv_norm` folds it into the conv before
it runs (one pass over the activations instead of two): on a 2-core CPU in bf16 a learning
step at width 16 took about a fifth less time (0.19 s against 0.22-0.26 s, alternate runs);
features and whole runs gained less than the machine's own spread.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 16  # per-block embedding of the invariance vector (paper)
FILM_HIDDEN = 32


class Conv2d(nn.Conv2d):
    """A plain conv with the conditioned layers' signature."""

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)

    def kernel(self, e: torch.Tensor | None = None) -> torch.Tensor:
        return self.weight


class BatchNorm2d(nn.BatchNorm2d):
    """A plain BatchNorm with the conditioned layers' signature."""

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)

    def folded(self, e: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(scale, shift) per channel that this norm applies in eval mode, or None where it
        normalises by the batch's own statistics (training, or no running statistics)."""
        return _running_affine(self)


class HyperConv2d(nn.Module):
    """A conv whose kernel is generated from the block's embedding of the invariance vector."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bases: int = 32, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.stride, self.padding = stride, padding
        n = math.prod(self.shape)
        self.coefficients = nn.Linear(embed_dim, bases)
        self.basis = nn.Parameter(torch.empty(bases, n))
        self.kernel_bias = nn.Parameter(torch.empty(n))
        # Start near a Kaiming-initialised plain conv: the bias kernel carries most of the
        # variance, the basis mix adds a comparable, vector-dependent part.
        std = math.sqrt(2.0 / (in_channels * kernel_size * kernel_size))
        nn.init.normal_(self.kernel_bias, std=std * math.sqrt(0.5))
        nn.init.normal_(self.basis, std=std * math.sqrt(0.5 / bases))

    def kernel(self, e: torch.Tensor) -> torch.Tensor:
        mix = F.relu(self.coefficients(e))
        return (self.kernel_bias + mix @ self.basis).view(self.shape)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        if e is None:
            raise ValueError("HyperConv2d needs the block's invariance embedding")
        weight = self.kernel(e).to(x.dtype)
        return F.conv2d(x, weight, stride=self.stride, padding=self.padding)


class FiLMBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose affine scale and shift are offset by an MLP of the embedding.

    The MLP's last layer starts at zero, so at initialisation this is a plain BatchNorm."""

    def __init__(self, channels: int, embed_dim: int = EMBED_DIM, hidden: int = FILM_HIDDEN):
        super().__init__(channels)
        self.film = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.film[2].weight)
        nn.init.zeros_(self.film[2].bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        if e is None:
            raise ValueError("FiLMBatchNorm2d needs the block's invariance embedding")
        y = super().forward(x)
        scale, shift = self.film(e).to(y.dtype).view(2, 1, -1, 1, 1).unbind(0)
        return y * (1 + scale) + shift

    def folded(self, e: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """As :meth:`BatchNorm2d.folded`, the FiLM scale and shift included."""
        if e is None:
            raise ValueError("FiLMBatchNorm2d needs the block's invariance embedding")
        norm = _running_affine(self)
        if norm is None:
            return None
        film_scale, film_shift = self.film(e).float().view(2, -1).unbind(0)
        return norm[0] * (1 + film_scale), norm[1] * (1 + film_scale) + film_shift


def _running_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor] | None:
    if norm.training or norm.running_mean is None:
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    return scale, shift if norm.bias is None else shift + norm.bias


def conv_norm(conv: Conv2d | HyperConv2d, norm: BatchNorm2d | FiLMBatchNorm2d,
              x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
    """``norm(conv(x, e), e)``. In eval mode the norm is an affine map per channel, so it is
    folded into the conv's kernel and a bias, and the activations are visited once."""
    folded = norm.folded(e)
    if folded is None:
        return norm(conv(x, e), e)
    scale, shift = folded
    kernel = conv.kernel(e) * scale.view(-1, 1, 1, 1)
    if getattr(conv, "bias", None) is not None:
        shift = shift + conv.bias * scale
    return F.conv2d(x, kernel.to(x.dtype), shift.to(x.dtype), conv.stride, conv.padding,
                    getattr(conv, "dilation", 1), getattr(conv, "groups", 1))


def subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th row and column of ``x``: a 1x1 conv with that stride is a 1x1 conv
    of this. The shortcuts compute theirs so, because oneDNN's weight gradient of a strided
    1x1 conv on channels-last activations with few input channels writes out of bounds (in
    fp32 at widths 4-8 it crashes the process; reported wrong gradients elsewhere: oneDNN
    issue 6035, in torch 2.11's CPU build)."""
    return x if stride == 1 else x[:, :, ::stride, ::stride]


class LayerFactory:
    """Makes the convs and norms of one block, conditioned or plain.

    ``kind`` is ``"hyper"`` (generated convs), ``"film"`` (conditioned norms) or ``"none"``.
    """

    def __init__(self, kind: str, bases: int = 32):
        if kind not in ("hyper", "film", "none"):
            raise ValueError(f"conditioning must be 'hyper', 'film' or 'none', got {kind!r}")
        self.kind, self.bases = kind, bases

    @property
    def conditioned(self) -> bool:
        return self.kind != "none"

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Module:
        if self.kind == "hyper":
            return HyperConv2d(cin, cout, k, stride, padding, bases=self.bases)
        return Conv2d(cin, cout, k, stride, padding, bias=False)

    def norm(self, channels: int) -> nn.Module:
        return FiLMBatchNorm2d(channels) if self.kind == "film" else BatchNorm2d(channels)

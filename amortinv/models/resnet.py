"""ResNet-18 and ResNet-50 conditioned on the invariance vector.

The residual blocks of the chosen stages are conditioned (see
:mod:`amortinv.models.conditioning`); the stem stays plain, as in the paper. Two stems: the
ImageNet one (7x7 stride 2 + max-pool) and a small-image one (3x3 stride 1, no pool) for 28-64
px inputs, as in SimCLR's CIFAR models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from amortinv.models.conditioning import (
    EMBED_DIM,
    BatchNorm2d,
    Conv2d,
    LayerFactory,
    conv_norm,
    subsample,
)

DEPTHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


class Shortcut(nn.Module):
    """Projection shortcut (1x1 conv with the block's stride + norm), conditioned like the
    block's convs; the stride subsamples before the conv (:func:`subsample`)."""

    def __init__(self, layers: LayerFactory, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = layers.conv(cin, cout, 1)
        self.norm = layers.norm(cout)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        return conv_norm(self.conv, self.norm, subsample(x, self.stride), e)


class Block(nn.Module):
    """A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) residual block."""

    def __init__(self, kind: str, layers: LayerFactory, num_groups: int, cin: int, width: int,
                 stride: int):
        super().__init__()
        expansion = 1 if kind == "basic" else 4
        cout = width * expansion
        if kind == "basic":
            shapes = [(cin, width, 3, stride, 1), (width, width, 3, 1, 1)]
        else:
            shapes = [(cin, width, 1, 1, 0), (width, width, 3, stride, 1),
                      (width, cout, 1, 1, 0)]
        self.convs = nn.ModuleList(layers.conv(*s) for s in shapes)
        self.norms = nn.ModuleList(layers.norm(s[1]) for s in shapes)
        self.shortcut = Shortcut(layers, cin, cout, stride) if stride != 1 or cin != cout \
            else None
        self.embed = nn.Linear(num_groups, EMBED_DIM, bias=False) if layers.conditioned \
            else None
        self.out_channels = cout

    def forward(self, x: torch.Tensor, invariance: torch.Tensor) -> torch.Tensor:
        e = self.embed(invariance) if self.embed is not None else None
        out = x
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            out = conv_norm(conv, norm, out, e)
            if i < last:
                out = out.relu_()  # in place: neither the conv's nor the norm's backward needs it
        identity = x if self.shortcut is None else self.shortcut(x, e)
        return out.add_(identity).relu_()


class ConditionedResNet(nn.Module):
    """``forward(x, invariance) -> (B, feature_dim)``: one invariance vector per batch.

    ``conditioning`` is ``"hyper"`` (paper), ``"film"`` or ``"none"`` (a plain ResNet for
    baselines; it accepts and ignores the vector). ``conditioned_stages`` picks which of the
    four stages (1-4) are conditioned; ``width`` is the first stage's channel count (64 in
    the standard ResNets). ``bands`` > 1 averages the last feature map over its last axis only
    (time, for spectrograms) and into ``bands`` rows (frequency bands), so the features keep
    where in frequency a pattern lies: ``bands`` x channels values; 1 is global average
    pooling.
    """

    def __init__(self, num_groups: int, arch: str = "resnet18", in_channels: int = 3,
                 width: int = 64, stem: str = "small", conditioning: str = "hyper",
                 bases: int = 32, conditioned_stages: tuple[int, ...] = (1, 2, 3, 4),
                 bands: int = 1):
        super().__init__()
        if arch not in DEPTHS:
            raise ValueError(f"arch must be one of {', '.join(DEPTHS)}, got {arch!r}")
        if stem not in ("small", "imagenet"):
            raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
        bad = [s for s in conditioned_stages if s not in (1, 2, 3, 4)]
        if bad:
            raise ValueError(f"conditioned_stages must be among 1-4, got {bad}")
        if bands < 1:
            raise ValueError(f"bands must be at least 1 (1: global average pooling), got {bands}")
        kind, depths = DEPTHS[arch]
        self.num_groups = num_groups
        if stem == "small":
            self.stem = nn.ModuleList([Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                       BatchNorm2d(width)])
        else:
            self.stem = nn.ModuleList([Conv2d(in_channels, width, 7, 2, 3, bias=False),
                                       BatchNorm2d(width)])
        self.pool = stem == "imagenet"
        blocks, cin = [], width
        for stage, depth in enumerate(depths, start=1):
            layers = LayerFactory(conditioning if stage in conditioned_stages else "none", bases)
            for i in range(depth):
                stride = 2 if stage > 1 and i == 0 else 1
                block = Block(kind, layers, num_groups, cin, width * 2 ** (stage - 1), stride)
                blocks.append(block)
                cin = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.bands = bands
        self.feature_dim = cin * bands

    def forward(self, x: torch.Tensor, invariance: torch.Tensor) -> torch.Tensor:
        invariance = batch_vector(invariance, self.num_groups, x.device)
        # channels last, and so every activation after it: a third faster on this CPU's
        # oneDNN (features and learning steps, bf16 and fp32)
        x = x.to(memory_format=torch.channels_last)
        conv, norm = self.stem
        x = conv_norm(conv, norm, x, None).relu_()
        if self.pool:
            x = F.max_pool2d(x, 3, 2, 1)
        for block in self.blocks:
            x = block(x, invariance)
        return torch.flatten(F.adaptive_avg_pool2d(x, (self.bands, 1)), 1)


def batch_vector(invariance: torch.Tensor, num_groups: int, device: torch.device
                 ) -> torch.Tensor:
    """The batch's one invariance vector, checked and as float32 on ``device``."""
    if invariance.shape != (num_groups,):
        raise ValueError(f"expected one invariance vector of length {num_groups} for "
                         f"the batch, got shape {tuple(invariance.shape)}")
    return invariance.to(device, torch.float32)

"""The paper's own hyper-ResNet, in its own parameter names (conditioning ``"paper"``).

The released ``hyper_resnet50_imagenet100-moco_2_checkpoint_0300.pth.tar`` loads into this
module key for key (after its MoCo prefix), so nothing is reshaped or transposed on import:

- stem ``conv1`` (7x7, stride 2, no bias) + ``bn1`` + ReLU + 3x3 max-pool (stem ``"imagenet"``);
  stem ``"small"`` (3x3, stride 1, no pool) is our addition for 28-64 px images;
- stages ``layer1``-``layer4``; every block embeds the invariance vector with ``emb1``
  (Linear K -> 16, no bias), and each of its convs takes its kernel from ``hypernetN.layer`` =
  Linear(16 -> hidden), ReLU, Linear(hidden -> out*in*k*k), viewed as ``(out, in, k, k)``;
  hidden is the config's ``bases`` (the paper: 32);
- bottleneck (resnet50): ``hypernet1`` 1x1 in -> p, ``hypernet2`` 3x3 p -> p with the stage's
  stride, ``hypernet3`` 1x1 p -> 4p; a projection shortcut (a stage's first block) has
  ``hypernet_down`` 1x1 in -> 4p with the stride and the norm ``downsample.1``;
- basic block (resnet18, our addition in the same names): ``hypernet1`` 3x3 with the stride,
  ``hypernet2`` 3x3;
- BatchNorms ``bn1``, ``bn2`` (, ``bn3``) after the convs, ReLU between them and after the
  residual sum; no conv has a bias. The released file also holds a ``bn_down`` per block that
  its forward never uses; the importer accepts and drops it (:mod:`amortinv.released`).

This computes the same function as conditioning ``"hyper"`` with the same width, stem and
``bases`` (a kernel there is ``kernel_bias + relu(coefficients(e)) @ basis``, i.e. the last
Linear's bias and transposed weight here); the two differ only in parameter layout and names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from amortinv.models.conditioning import EMBED_DIM, subsample
from amortinv.models.resnet import DEPTHS, batch_vector


class HyperNetwork(nn.Module):
    """The paper's kernel generator: ``layer`` maps a block's embedding to one conv kernel."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 hidden: int = 32, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.layer = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, math.prod(self.shape)))
        # As HyperConv2d: start near a Kaiming-initialised conv, half of the variance in the
        # last Linear's bias (a fixed kernel), half in the vector-dependent mix.
        std = math.sqrt(2.0 / (in_channels * kernel_size * kernel_size))
        nn.init.normal_(self.layer[2].bias, std=std * math.sqrt(0.5))
        nn.init.normal_(self.layer[2].weight, std=std * math.sqrt(0.5 / hidden))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.layer(e).view(self.shape)


class ShortcutConv(nn.Module):
    """``downsample.0``: a strided 1x1 conv whose kernel ``hypernet_down`` generates."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        return F.conv2d(subsample(x, self.stride), kernel)


class PaperBlock(nn.Module):
    """A bottleneck (the paper's) or basic residual block with generated kernels."""

    def __init__(self, kind: str, num_groups: int, cin: int, width: int, stride: int,
                 hidden: int):
        super().__init__()
        cout = width * (4 if kind == "bottleneck" else 1)
        if kind == "bottleneck":  # (in, out, kernel, stride, padding) of hypernet1..3
            self.settings = [(cin, width, 1, 1, 0), (width, width, 3, stride, 1),
                             (width, cout, 1, 1, 0)]
        else:
            self.settings = [(cin, width, 3, stride, 1), (width, width, 3, 1, 1)]
        self.emb1 = nn.Linear(num_groups, EMBED_DIM, bias=False)
        for i, (a, b, k, _, _) in enumerate(self.settings, start=1):
            self.add_module(f"hypernet{i}", HyperNetwork(a, b, k, hidden))
            self.add_module(f"bn{i}", nn.BatchNorm2d(b))
        if stride != 1 or cin != cout:
            self.hypernet_down = HyperNetwork(cin, cout, 1, hidden)
            self.downsample = nn.Sequential(ShortcutConv(stride), nn.BatchNorm2d(cout))
        else:
            self.hypernet_down = self.downsample = None
        self.out_channels = cout

    def forward(self, x: torch.Tensor, invariance: torch.Tensor) -> torch.Tensor:
        e = self.emb1(invariance)
        out = x
        last = len(self.settings)
        for i, (_, _, _, stride, padding) in enumerate(self.settings, start=1):
            kernel = getattr(self, f"hypernet{i}")(e).to(x.dtype)
            out = getattr(self, f"bn{i}")(F.conv2d(out, kernel, stride=stride, padding=padding))
            if i < last:
                out = F.relu(out)
        shortcut = x
        if self.downsample is not None:
            conv, norm = self.downsample
            shortcut = norm(conv(x, self.hypernet_down(e).to(x.dtype)))
        return F.relu(out + shortcut)


class PaperResNet(nn.Module):
    """``forward(x, invariance) -> (B, feature_dim)``, one invariance vector per batch.

    ``width`` is the first stage's channel count (64 in the paper); ``hidden`` the
    hypernetworks' hidden width (32 in the paper). Every stage is generated, as in the paper.
    """

    def __init__(self, num_groups: int, arch: str = "resnet50", in_channels: int = 3,
                 width: int = 64, stem: str = "imagenet", hidden: int = 32,
                 conditioned_stages: tuple[int, ...] = (1, 2, 3, 4)):
        super().__init__()
        if arch not in DEPTHS:
            raise ValueError(f"arch must be one of {', '.join(DEPTHS)}, got {arch!r}")
        if stem not in ("small", "imagenet"):
            raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
        if tuple(conditioned_stages) != (1, 2, 3, 4):
            raise ValueError("the paper's hyper-ResNet generates every stage: use "
                             "conditioned_stages (1, 2, 3, 4), or conditioning 'hyper' to "
                             f"condition only some (got {tuple(conditioned_stages)})")
        kind, depths = DEPTHS[arch]
        self.num_groups = num_groups
        k, s, p = (7, 2, 3) if stem == "imagenet" else (3, 1, 1)
        self.conv1 = nn.Conv2d(in_channels, width, k, s, p, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = stem == "imagenet"
        cin = width
        for stage, depth in enumerate(depths, start=1):
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(PaperBlock(kind, num_groups, cin, width * 2 ** (stage - 1),
                                         stride, hidden))
                cin = blocks[-1].out_channels
            self.add_module(f"layer{stage}", nn.ModuleList(blocks))
        self.feature_dim = cin

    def forward(self, x: torch.Tensor, invariance: torch.Tensor) -> torch.Tensor:
        invariance = batch_vector(invariance, self.num_groups, x.device)
        x = x.to(memory_format=torch.channels_last)  # as ConditionedResNet
        x = F.relu(self.bn1(self.conv1(x)))
        if self.pool:
            x = F.max_pool2d(x, 3, 2, 1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, invariance)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

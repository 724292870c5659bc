"""Derived image tasks that pull invariance needs apart.

Each task takes real images from a base dataset, applies one known transform with a random,
seeded parameter, and asks for that parameter back. A task that asks for a transform's
parameter needs *sensitivity* to the group that applies the transform; class labels of the same
images want *invariance* to it. Every transform is one of the batched primitives of
:mod:`amortinv.augment.vision`, so a task means exactly what the augmentation group does.

| task | base | target | needs sensitivity to |
|---|---|---|---|
| fmnist-flip | Fashion-MNIST | was the image mirrored? | flip |
| fmnist-position | Fashion-MNIST | centre (x, y) of an item pasted on a cluttered canvas | crop |
| fmnist-scale | Fashion-MNIST | size of that item | crop |
| fmnist-brightness | Fashion-MNIST | brightness factor applied | color |
| fmnist-blur | Fashion-MNIST | Gaussian blur sigma applied | blur |
| clipart-hue | OpenClipart | hue rotation applied | color |
| clipart-grayscale | OpenClipart | was the image turned grey? | grayscale |

One task keeps the base's labels and makes a transform *noise* instead:

| task | base | target | needs invariance to |
|---|---|---|---|
| clipart-recoloured | OpenClipart | the category, every image's hue rotated at random | color |
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch

from amortinv.augment import vision as ops
from amortinv.augment.draws import uniform
from amortinv.data.dataset import Split, Splits
from amortinv.data.images import OPENCLIPART_CLASSES
from amortinv.data.registry import get, is_available, register

#: Examples per derived split: enough for a stable readout, small enough to learn in seconds.
TRAIN_SIZE, TEST_SIZE = 10_000, 2_000
CANVAS = 40  # side of the canvas for the position and scale tasks

Transform = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, np.ndarray | None]]


def _to_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def derive(base: str, transform: Transform, seed: int, train_size: int = TRAIN_SIZE,
           test_size: int = TEST_SIZE) -> Splits:
    """Apply ``transform`` to a seeded sample of each split of ``base``.

    ``transform(images, generator)`` gets float images in [0, 1] and returns the transformed
    images and their targets (int64 classes or float32 regression values), or None to keep
    the base's labels (a task where the transform is noise).
    """
    data = get(base)
    splits = []
    for k, (split, size) in enumerate(((data.train, train_size), (data.test, test_size))):
        rng = np.random.default_rng(seed + k)
        idx = np.sort(rng.choice(len(split), size=min(size, len(split)), replace=False))
        g = torch.Generator().manual_seed(seed + k)
        x, y = transform(_to_float(split.x[idx]), g)
        splits.append(Split(_to_uint8(x), split.y[idx] if y is None else y))
    return Splits(splits[0], splits[1], ())


def seed_for(name: str) -> int:
    """The fixed seed of a derived task: the same examples on every machine and run."""
    return zlib.crc32(name.encode())


def _register_derived(name: str, base: str, *, target_kind: str, description: str, needs: str,
                      target_names: tuple[str, ...] = (), classes: tuple[str, ...] = ()):
    """Register a derived task that is available exactly when its base dataset is."""

    def wrap(transform: Transform) -> Transform:
        def loader() -> Splits:
            splits = derive(base, transform, seed=seed_for(name))
            return Splits(splits.train, splits.test, classes)

        register(
            name, modality="image", target_kind=target_kind, description=description,
            requires=(lambda: is_available(base),),
            hint=f"It is derived from '{base}': make that available first "
            f"(`python -m amortinv.data list --all` says how).",
            kind="derived", needs=needs, target_names=target_names,
        )(loader)
        return transform

    return wrap


@_register_derived(
    "fmnist-flip", "fashion-mnist", target_kind="classification", classes=("original", "mirrored"),
    description="Fashion-MNIST items, half mirrored left-right: was this one mirrored?",
    needs="sensitivity to flip (a flip-invariant encoder cannot tell)",
)
def _flip(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    mirrored = torch.rand(len(x), generator=g) < 0.5
    return ops.hflip(x, mirrored), mirrored.numpy().astype(np.int64)


def _paste(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste each item, scaled to 12-24 px, at a random place on a 40x40 canvas, over clutter:
    three small, dimmer fragments of other items. Returns canvases and (x, y, size) in [0, 1]."""
    n = len(x)
    size = uniform(n, 12, 24, g)
    half = size / CANVAS  # half-width in normalised [-1, 1] canvas units
    cx = uniform(n, -1, 1, g) * (1 - half)
    cy = uniform(n, -1, 1, g) * (1 - half)
    canvas = _place(x, cx, cy, half)
    for _ in range(3):
        other = x[torch.randint(n, (n,), generator=g)]
        h = uniform(n, 3, 7, g) / CANVAS
        clutter = _place(other, uniform(n, -1, 1, g) * (1 - h),
                         uniform(n, -1, 1, g) * (1 - h), h)
        canvas = torch.maximum(canvas, 0.6 * clutter)
    targets = torch.stack([(cx + 1) / 2, (cy + 1) / 2, (size - 12) / 12], dim=1)
    return canvas, targets


def _place(x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, half: torch.Tensor
           ) -> torch.Tensor:
    """Draw each image into a black canvas, centred at (cx, cy) with half-size ``half``."""
    n, c = x.shape[:2]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / half
    theta[:, 0, 2], theta[:, 1, 2] = -cx / half, -cy / half
    grid = torch.nn.functional.affine_grid(theta, [n, c, CANVAS, CANVAS], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


@_register_derived(
    "fmnist-position", "fashion-mnist", target_kind="regression", target_names=("x", "y"),
    description="a Fashion-MNIST item pasted at random on a cluttered 40x40 canvas: where?",
    needs="sensitivity to crop (translation): a crop-invariant encoder discards position",
)
def _position(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    canvas, targets = _paste(x, g)
    return canvas, targets[:, :2].numpy().astype(np.float32)


@_register_derived(
    "fmnist-scale", "fashion-mnist", target_kind="regression", target_names=("size",),
    description="a Fashion-MNIST item pasted 12-24 px wide on a cluttered canvas: how big?",
    needs="sensitivity to crop (scale): a crop-invariant encoder discards size",
)
def _scale(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    canvas, targets = _paste(x, g)
    return canvas, targets[:, 2:].numpy().astype(np.float32)


@_register_derived(
    "fmnist-brightness", "fashion-mnist", target_kind="regression", target_names=("log2_factor",),
    description="Fashion-MNIST items with brightness scaled by 0.5-1.5x: by how much?",
    needs="sensitivity to color (intensity): colour jitter invariance discards brightness",
)
def _brightness(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    factor = uniform(len(x), 0.5, 1.5, g)
    target = torch.log2(factor)[:, None]
    return ops.adjust_brightness(x, factor), target.numpy().astype(np.float32)


@_register_derived(
    "fmnist-blur", "fashion-mnist", target_kind="regression", target_names=("sigma",),
    description="Fashion-MNIST items blurred with sigma 0-2 px: how much?",
    needs="sensitivity to blur: a blur-invariant encoder discards sharpness",
)
def _blur(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    sigma = uniform(len(x), 0.0, 2.0, g)
    return ops.gaussian_blur(x, sigma), sigma[:, None].numpy().astype(np.float32)


@_register_derived(
    "clipart-hue", "openclipart", target_kind="regression", target_names=("cos", "sin"),
    description="OpenClipart images with their hue rotated at random: by what angle?",
    needs="sensitivity to color (hue): colour jitter invariance discards hue",
)
def _hue(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    shift = uniform(len(x), -0.5, 0.5, g)
    angle = 2 * np.pi * shift
    target = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return ops.adjust_hue(x, shift), target.numpy().astype(np.float32)


@_register_derived(
    "clipart-grayscale", "openclipart", target_kind="classification", classes=("colour", "grey"),
    description="OpenClipart images, half turned grey: is this one grey?",
    needs="sensitivity to grayscale: a grayscale-invariant encoder cannot tell",
)
def _grayscale(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    grey = torch.rand(len(x), generator=g) < 0.5
    return ops.to_grayscale(x, grey), grey.numpy().astype(np.int64)


@_register_derived(
    "clipart-recoloured", "openclipart", target_kind="classification",
    classes=OPENCLIPART_CLASSES,
    description="OpenClipart categories with every image's hue rotated at random: colour says "
    "nothing about the class",
    needs="object class of drawings whose colours are noise: invariance to color helps",
)
def _recoloured(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, None]:
    return ops.adjust_hue(x, uniform(len(x), -0.5, 0.5, g)), None

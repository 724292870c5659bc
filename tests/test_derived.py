"""Derived tasks: their targets are exactly the transform that was applied."""

import numpy as np
import pytest
import torch

import amortinv.data as data
from amortinv.augment import vision as ops
from amortinv.data import derived, registry

pytestmark = pytest.mark.skipif(
    not registry.is_available("fashion-mnist"),
    reason="Fashion-MNIST missing: run `make test` (installs dataset-fashion-mnist)",
)


def base_images(n=64):
    return torch.from_numpy(data.get("fashion-mnist").test.x[:n]).float() / 255


def test_flip_targets_match_the_mirror():
    x = base_images()
    out, y = derived._flip(x, torch.Generator().manual_seed(0))
    assert set(np.unique(y)) == {0, 1}
    mirrored = torch.from_numpy(y).bool()
    assert torch.equal(out[mirrored], x[mirrored].flip(-1))
    assert torch.equal(out[~mirrored], x[~mirrored])


def test_position_targets_locate_the_pasted_item():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0  # a square item: its box is easy to find
    canvas, targets = derived._paste(x, torch.Generator().manual_seed(0))
    assert canvas.shape == (8, 1, derived.CANVAS, derived.CANVAS)
    for img, (tx, ty, _) in zip(canvas[:, 0], targets, strict=True):
        ys, xs = torch.nonzero(img > 0.9, as_tuple=True)
        assert abs((xs.float().mean() + 0.5) / derived.CANVAS - tx) < 0.04
        assert abs((ys.float().mean() + 0.5) / derived.CANVAS - ty) < 0.04


def test_brightness_and_blur_targets_are_the_applied_parameters():
    x = base_images(16)
    bright, y = derived._brightness(x, torch.Generator().manual_seed(1))
    factor = torch.from_numpy(2.0 ** y[:, 0])
    assert torch.allclose(bright, ops.adjust_brightness(x, factor), atol=1e-6)
    blurred, sigma = derived._blur(x, torch.Generator().manual_seed(2))
    assert torch.allclose(blurred, ops.gaussian_blur(x, torch.from_numpy(sigma[:, 0])))
    assert sigma.min() >= 0 and sigma.max() <= 2


def test_derived_tasks_load_through_the_registry(fresh_cache):
    for name in ("fmnist-flip", "fmnist-scale", "fmnist-blur"):
        ds = data.get(name)
        assert ds.needs and registry.info(name).kind == "derived"
        assert len(ds.train) == derived.TRAIN_SIZE and len(ds.test) == derived.TEST_SIZE
        assert ds.train.x.dtype == np.uint8
        again = derived.derive("fashion-mnist", {"fmnist-flip": derived._flip,
                                                 "fmnist-scale": derived._scale,
                                                 "fmnist-blur": derived._blur}[name],
                               seed=derived.seed_for(name))
        assert np.array_equal(again.test.y, ds.test.y)  # seeded: the same task every time

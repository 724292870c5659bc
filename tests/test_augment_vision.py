"""Each vision group: at 0 its property is untouched, at 1 it changes; zeros is the identity."""

import pytest
import torch

from amortinv.augment import VisionAugment
from amortinv.augment.vision import gaussian_blur, luminance
from amortinv.invariance import GREY, RGB, SPATIAL_APPEARANCE, InvalidInvarianceVector


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vec(space, **values):
    return {name: values.get(name, 0.0) for name in space.names}


def dot_images(n=64, size=32, channels=3):
    """A bright 3x3 dot left of centre on black: its position reveals crops and flips."""
    x = torch.zeros(n, channels, size, size)
    x[:, :, 14:17, 6:9] = 1.0
    return x


def dot_column(x):
    """Horizontal centroid of what stands above the background (the median)."""
    lum = luminance(x)
    w = (lum - lum.flatten(1).median(1).values.view(-1, 1, 1, 1)).clamp_min(0).sum(dim=(1, 2))
    return (w * torch.arange(x.shape[-1])).sum(1) / w.sum(1)


def test_all_zeros_gives_identical_views():
    x = torch.rand(16, 3, 32, 32)
    v1, v2 = VisionAugment(RGB).views(x, vec(RGB), generator=seeded())
    assert torch.equal(v1, x) and torch.equal(v2, x)


def test_shapes_dtypes_and_range():
    for space, c in ((RGB, 3), (GREY, 1), (SPATIAL_APPEARANCE, 3)):
        x = torch.rand(8, c, 28, 28)
        y = VisionAugment(space)(x, [1.0] * len(space), generator=seeded())
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1


def test_seed_makes_it_deterministic_and_views_differ():
    x = torch.rand(16, 3, 32, 32)
    aug = VisionAugment(RGB)
    a = aug.views(x, [1.0] * 5, generator=seeded(7))
    b = aug.views(x, [1.0] * 5, generator=seeded(7))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])


def test_crop_moves_content_only_when_on():
    x, aug = dot_images(), VisionAugment(RGB)
    off = aug(x, vec(RGB, color=1, grayscale=1, blur=1), generator=seeded())
    assert torch.allclose(dot_column(off), dot_column(x), atol=0.05)
    on = aug(x, vec(RGB, crop=1), generator=seeded())
    assert (dot_column(on) != dot_column(x)).float().mean() > 0.5


def test_flip_mirrors_half_the_batch_only_when_on():
    x, aug = dot_images(n=400), VisionAugment(RGB)
    off = aug(x, vec(RGB, color=1, grayscale=1, blur=1), generator=seeded())
    assert (dot_column(off) < 16).all()
    flipped = (dot_column(aug(x, vec(RGB, flip=1), generator=seeded())) > 16).float().mean()
    assert 0.4 < flipped < 0.6
    assert (dot_column(aug(x, vec(RGB, flip=0.5), generator=seeded())) > 16).float().mean() < 0.4


def test_color_changes_a_flat_colour_only_when_on():
    x = torch.ones(200, 3, 16, 16) * torch.tensor([0.6, 0.3, 0.2]).view(1, 3, 1, 1)
    aug = VisionAugment(RGB)
    # crop, flip and blur leave a flat image flat: only colour can change it
    off = aug(x, vec(RGB, crop=1, flip=1, blur=1), generator=seeded())
    assert torch.allclose(off, x, atol=1e-5)
    on = aug(x, vec(RGB, color=1), generator=seeded())
    changed = (on - x).abs().amax(dim=(1, 2, 3)) > 0.01
    assert 0.7 < changed.float().mean() < 0.9  # applied with p = 0.8
    half = aug(x, vec(RGB, color=0.5), generator=seeded())
    assert (half - x).abs().mean() < (on - x).abs().mean()  # magnitude scales with the value


def test_grey_colour_group_changes_intensity():
    x = torch.full((100, 1, 16, 16), 0.5)
    on = VisionAugment(GREY)(x, vec(GREY, color=1), generator=seeded())
    assert (on - x).abs().amax(dim=(1, 2, 3)).gt(0.01).float().mean() > 0.7


def test_grayscale_only_when_on():
    x = torch.ones(400, 3, 8, 8) * torch.tensor([0.6, 0.3, 0.2]).view(1, 3, 1, 1)
    aug = VisionAugment(RGB)

    def grey_fraction(y):
        return ((y[:, 0] - y[:, 1]).abs().amax(dim=(1, 2)) < 1e-6).float().mean()

    assert grey_fraction(aug(x, vec(RGB, crop=1, flip=1, color=1, blur=1),
                             generator=seeded())) == 0
    assert 0.12 < grey_fraction(aug(x, vec(RGB, grayscale=1), generator=seeded())) < 0.28


def test_blur_removes_detail_only_when_on():
    # Binary noise: any monotone intensity change keeps two levels, so relative detail only
    # changes through blur.
    x = (torch.rand(1, 1, 16, 16, generator=seeded(1)) > 0.5).float()
    x = x.expand(100, 1, 16, 16).contiguous()
    aug = VisionAugment(GREY)

    def detail(y):  # neighbour differences relative to contrast: blur lowers it
        d = (y[..., 1:] - y[..., :-1]).abs().mean(dim=(1, 2, 3))
        return d / y.std(dim=(1, 2, 3)).clamp_min(1e-6)

    off = aug(x, vec(GREY, flip=1, color=1), generator=seeded())
    assert torch.allclose(detail(off), detail(x), atol=1e-4)
    on = aug(x, vec(GREY, blur=1), generator=seeded())
    assert 0.35 < (detail(on) < 0.9 * detail(x)).float().mean() < 0.65  # p = 0.5


def test_gaussian_blur_has_the_requested_width():
    x = torch.zeros(2, 1, 31, 31)
    x[:, :, 15, 15] = 1
    y = gaussian_blur(x, torch.tensor([1.0, 2.0]))
    t = torch.arange(31.0) - 15
    widths = [(y[i, 0].sum(0) * t**2).sum().sqrt().item() for i in range(2)]
    assert widths == pytest.approx([1.0, 2.0], abs=0.03)
    assert torch.allclose(y.sum(dim=(1, 2, 3)), torch.ones(2))


def test_spatial_group_drives_crop_and_flip():
    aug = VisionAugment(SPATIAL_APPEARANCE)
    s = aug.strengths({"spatial": 0.7, "appearance": 0.2})
    assert s == {"crop": 0.7, "flip": 0.7, "color": 0.2, "grayscale": 0.2, "blur": 0.2}


def test_bad_inputs_get_clear_errors():
    aug = VisionAugment(RGB)
    with pytest.raises(InvalidInvarianceVector, match="crop, flip, color, grayscale, blur"):
        aug(torch.rand(2, 3, 8, 8), [1, 1])
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [1] * 5)
    with pytest.raises(ValueError, match=r"\(B, 1\|3, H, W\)"):
        aug(torch.rand(3, 8, 8), [1] * 5)

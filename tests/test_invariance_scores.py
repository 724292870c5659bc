import numpy as np
import pytest
import torch
from torch import nn

from amortinv.invariance import AUDIO, GREY, RGB, InvalidInvarianceVector
from amortinv.invariance_scores import (
    AUDIO_TRANSFORMS,
    GREY_ONLY,
    IMAGE_TRANSFORMS,
    RGB_ONLY,
    invariance_scores,
    ledoit_wolf,
    score_curve,
    score_grid,
    transforms_for,
    whitened_cosine,
)
from amortinv.models import Encoder, ModelConfig

GREY_VECTOR = {"crop": 1, "flip": 0, "color": 0.5, "blur": 0}


def images(n: int, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Smooth random images (blobs), so spatial transforms change them in structured ways."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 7, 7, generator=g)
    up = nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (up * 255).round().to(torch.uint8)


class PixelEncoder(Encoder):
    """Features = the flattened augmentation-domain image (no learned part)."""

    def forward(self, x, invariance):
        return x.flatten(1)


class SortedPixelEncoder(Encoder):
    """Features = the image's pixel values in sorted order: blind to where pixels are."""

    def forward(self, x, invariance):
        return x.flatten(1).sort(dim=1).values


def grey_encoder(cls=Encoder, **settings) -> Encoder:
    torch.manual_seed(0)
    config = {"in_channels": 1, "image_size": 28, "width": 4, "bases": 2, **settings}
    return cls(ModelConfig(**config), GREY)


def test_identity_transform_scores_one_and_scores_lie_in_range():
    enc = grey_encoder()
    x = images(48)
    identity = invariance_scores(enc, x, GREY_VECTOR, {"identity": lambda x, g: x.clone()})
    assert identity["identity"] == pytest.approx(1.0, abs=1e-6)
    scores = invariance_scores(enc, x, GREY_VECTOR, n=48)
    assert list(scores) == list(transforms_for(enc))
    assert all(-1.0 <= s <= 1.0 for s in scores.values())
    assert min(scores.values()) < 0.999  # the transforms do change an untrained network's view


def test_scores_are_deterministic_under_the_seed():
    enc = grey_encoder()
    x = images(64)
    a = invariance_scores(enc, x, GREY_VECTOR, ["crop", "blur"], n=40, seed=3)
    b = invariance_scores(enc, x, GREY_VECTOR, ["crop", "blur"], n=40, seed=3)
    assert a == b
    assert invariance_scores(enc, x.numpy(), GREY_VECTOR, ["crop", "blur"], n=40, seed=3) == a
    c = invariance_scores(enc, x, GREY_VECTOR, ["crop", "blur"], n=40, seed=4)
    assert c["crop"] != a["crop"]
    # a transform's draws do not depend on which other transforms are scored beside it
    alone = invariance_scores(enc, x, GREY_VECTOR, ["blur"], n=40, seed=3)
    assert alone["blur"] == a["blur"]


def test_the_encoder_is_left_in_its_mode_and_inputs_are_untouched():
    enc = grey_encoder().train()
    x = images(16)
    before = x.clone()
    invariance_scores(enc, x, GREY_VECTOR, ["flip"])
    assert enc.training and torch.equal(x, before)


def test_flip_score_of_pixel_features_knows_symmetric_images():
    enc = grey_encoder(PixelEncoder)
    x = images(40)
    symmetric = torch.cat([x[..., :14], x[..., :14].flip(-1)], dim=-1)
    assert invariance_scores(enc, symmetric, 0.0, ["flip"])["flip"] == pytest.approx(1.0,
                                                                                     abs=1e-6)
    assert invariance_scores(enc, x, 0.0, ["flip"])["flip"] < 0.9


def test_position_blind_features_are_flip_invariant_but_not_brightness_invariant():
    enc = grey_encoder(SortedPixelEncoder)
    scores = invariance_scores(enc, images(40), 0.0, ["flip", "brightness"])
    assert scores["flip"] == pytest.approx(1.0, abs=1e-6)
    assert scores["brightness"] < scores["flip"] - 0.05


def test_whitening_discounts_a_dominant_unchanged_direction():
    g = torch.Generator().manual_seed(0)
    shared = 1000 * torch.randn(200, 1, generator=g)
    clean = torch.cat([shared, torch.randn(200, 10, generator=g)], dim=1)
    other = torch.cat([shared, torch.randn(200, 10, generator=g)], dim=1)
    raw = nn.functional.cosine_similarity(clean, other).mean()
    white = whitened_cosine(clean, other).mean()
    assert raw > 0.99 and white < 0.3
    assert whitened_cosine(clean, clean).min() == pytest.approx(1.0, abs=1e-9)


def test_ledoit_wolf_matches_scikit_learn_and_handles_more_dims_than_examples():
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    z = torch.randn(30, 80, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3, 80)
    ours = ledoit_wolf(z)
    reference, _ = sklearn_covariance.ledoit_wolf(z.double().numpy())
    assert np.allclose(ours.numpy(), reference, rtol=1e-8, atol=1e-10)
    assert torch.linalg.eigvalsh(ours).min() > 0
    scores = whitened_cosine(z, z + 0.1 * torch.randn(30, 80))
    assert torch.isfinite(scores).all() and (scores.abs() <= 1 + 1e-9).all()


@pytest.mark.parametrize("space,channels", [(GREY, 1), (RGB, 3)])
def test_every_image_transform_runs_and_changes_its_input(space, channels):
    enc = Encoder(ModelConfig(in_channels=channels, image_size=28, width=4, bases=2), space)
    expected = [t for t in IMAGE_TRANSFORMS if t not in (RGB_ONLY if channels == 1 else GREY_ONLY)]
    transforms = transforms_for(enc)
    assert list(transforms) == expected
    x = enc.to_input(images(8, channels))
    for name, t in transforms.items():
        y = t(x, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 + 1e-6, name
        assert not torch.allclose(y, x), name
    scores = invariance_scores(enc, images(24, channels), 1.0, n=24)
    assert set(scores) == set(expected) and all(-1 <= s <= 1 for s in scores.values())


@pytest.mark.parametrize("name", RGB_ONLY)
def test_colour_transforms_are_refused_for_grey_encoders(name):
    with pytest.raises(ValueError, match=r"colour transform.*1-channel"):
        invariance_scores(grey_encoder(), images(8), 1.0, [name])
    with pytest.raises(ValueError, match="unknown transform 'pitch'"):
        invariance_scores(grey_encoder(), images(8), 1.0, ["pitch"])


def test_every_audio_transform_runs_and_masks_act_on_their_axis():
    torch.manual_seed(0)
    enc = Encoder(ModelConfig(modality="audio", width=4, stem="imagenet", bases=2), AUDIO)
    transforms = transforms_for(enc)
    assert list(transforms) == list(AUDIO_TRANSFORMS)
    t = torch.arange(8000) / 16000
    waves = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) * torch.linspace(0, 1, 8000)
                         for f in (220.0, 440.0, 880.0, 1320.0, 300.0, 600.0)])
    spec = enc.to_input(waves)
    for name, transform in transforms.items():
        y = transform(spec, torch.Generator().manual_seed(1))
        assert y.shape == spec.shape and torch.isfinite(y).all(), name
        assert not torch.allclose(y, spec), name
    changed = transforms["time_mask"](spec, torch.Generator().manual_seed(1)) != spec
    assert torch.equal(changed.any(1, keepdim=True).expand_as(changed), changed)  # whole frames
    changed = transforms["freq_mask"](spec, torch.Generator().manual_seed(1)) != spec
    assert torch.equal(changed.any(2, keepdim=True).expand_as(changed), changed)  # whole bins
    scores = invariance_scores(enc, waves, 0.5)
    assert list(scores) == list(AUDIO_TRANSFORMS)
    assert all(-1 <= s <= 1 for s in scores.values())


@pytest.mark.parametrize("conditioning", ["hyper", "film"])
def test_conditioned_encoders_score_differently_at_different_vectors(conditioning):
    enc = grey_encoder(conditioning=conditioning)
    if conditioning == "film":  # FiLM starts as plain BatchNorm: give it a random dependence
        for module in enc.modules():
            if hasattr(module, "film"):
                nn.init.normal_(module.film[2].weight, std=0.5)
    x = images(48)
    zero = invariance_scores(enc, x, 0.0, ["crop", "brightness"])
    one = invariance_scores(enc, x, 1.0, ["crop", "brightness"])
    assert any(abs(zero[k] - one[k]) > 1e-3 for k in zero)


def test_an_unconditioned_encoder_scores_the_same_at_every_vector():
    enc = grey_encoder(conditioning="none")
    x = images(48)
    zero = invariance_scores(enc, x, 0.0, ["crop", "brightness"])
    one = invariance_scores(enc, x, 1.0, ["crop", "brightness"])
    assert zero == pytest.approx(one, abs=1e-6)


@pytest.mark.parametrize("bad", [[1.0, 0.0], [0.5, float("nan"), 0.5, 0.5], 1.5,
                                 {"crop": 1, "flip": 0, "color": 1},
                                 {"crop": 1, "flip": 0, "color": 1, "blur": 0, "hue": 1}])
def test_bad_vectors_are_refused(bad):
    with pytest.raises(InvalidInvarianceVector):
        invariance_scores(grey_encoder(), images(8), bad, ["flip"])


def test_curve_and_grid_are_scores_at_the_moved_vectors():
    enc = grey_encoder()
    x = images(32)
    values = [0.0, 0.5, 1.0]
    curve = score_curve(enc, x, GREY_VECTOR, "color", values, "brightness")
    assert curve.shape == (3,)
    for v, s in zip(values, curve, strict=True):
        direct = invariance_scores(enc, x, {**GREY_VECTOR, "color": v}, ["brightness"])
        assert s == pytest.approx(direct["brightness"], abs=1e-9)
    grid = score_grid(enc, x, GREY_VECTOR, "crop", "blur", values[:2], "crop")
    assert grid.shape == (2, 2)
    direct = invariance_scores(enc, x, {**GREY_VECTOR, "crop": 0.0, "blur": 0.5}, ["crop"])
    assert grid[0, 1] == pytest.approx(direct["crop"], abs=1e-9)
    assert not np.allclose(grid, grid[0, 0])
    with pytest.raises(InvalidInvarianceVector, match="hue"):
        score_curve(enc, x, GREY_VECTOR, "hue", values, "crop")
    with pytest.raises(InvalidInvarianceVector):
        score_curve(enc, x, GREY_VECTOR, "color", [0.5, 2.0], "crop")

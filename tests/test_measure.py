import numpy as np
import pytest
import torch

from amortinv.augment.vision import adjust_hue
from amortinv.measure import colour_statistics, knn_accuracy, knn_predict, raw_features


def test_weighted_votes_match_a_hand_computed_case():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    # k=2: the two nearest are rows 0 and 1; row 0 is closer, so its class wins
    assert knn_predict(train, labels, query, num_classes=2, k=2).tolist() == [0]
    # k=3 at a high temperature: votes are near-uniform, so two class-1 neighbours outvote one
    assert knn_predict(train, labels, query, num_classes=2, k=3, temperature=100).tolist() == [1]


def test_separable_clusters_are_recovered_and_noise_is_at_chance():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 5
    y = rng.integers(0, 4, 400)
    x = torch.tensor(centres[y] + rng.standard_normal((400, 16)), dtype=torch.float32)
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:], k=20) == 1.0
    noise = torch.tensor(rng.standard_normal((400, 16)), dtype=torch.float32)
    assert knn_accuracy(noise[:300], y[:300], noise[300:], y[300:], k=20) < 0.45


def test_raw_features_and_bad_input():
    images = np.full((2, 1, 4, 4), 255, np.uint8)
    assert raw_features(images).shape == (2, 16) and raw_features(images).max() == 1.0
    audio = raw_features(np.zeros((2, 16000), np.float32), "audio")
    assert audio.shape[0] == 2 and torch.isfinite(audio).all()
    with pytest.raises(ValueError, match="at least one"):
        knn_predict(torch.zeros(0, 2), torch.zeros(0), torch.zeros(1, 2), 2)


def _direction(stats: torch.Tensor) -> torch.Tensor:
    """The angle of :func:`colour_statistics`' mean hue direction (its (cos, sin) after the
    36-bin histogram)."""
    return torch.atan2(stats[:, 37], stats[:, 36])


def test_colour_statistics_turn_with_the_hue_rotation():
    # muted colours, so that no rotation clips a channel: the (I, Q) plane turns exactly
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.35, 0.65, (4, 3, 8, 8))).float()
    shift = torch.tensor([0.0, 0.125, -0.25, 0.4])
    turned = (adjust_hue(images, shift) * 255).round().to(torch.uint8)
    before = colour_statistics((images * 255).round().to(torch.uint8))
    after = colour_statistics(turned)
    turn = _direction(after) - _direction(before)
    moved = torch.remainder(turn + torch.pi, 2 * torch.pi) - torch.pi
    assert moved.numpy() == pytest.approx(2 * np.pi * shift.numpy(), abs=0.02)
    # the chroma, and so the coloured fraction, stay (to 8-bit rounding)
    assert after[:, 38].numpy() == pytest.approx(before[:, 38].numpy(), abs=0.01)
    assert after[:, :36].sum(1).numpy() == pytest.approx(1.0, abs=1e-5)  # a distribution


def test_colour_statistics_refuse_grey_images():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) colour images"):
        colour_statistics(np.zeros((2, 1, 8, 8), np.uint8))

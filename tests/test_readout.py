"""The linear readouts' solvers reach the optimum that their scores depend on."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from amortinv import readout
from amortinv.readout import _with_intercept, fit_readout, logistic_weights, standardise


def objective(a: torch.Tensor, y: np.ndarray, weight: torch.Tensor, strength: float) -> float:
    target = torch.as_tensor(y, dtype=torch.long)
    return float(F.cross_entropy(a @ weight, target) + strength * weight[:-1].pow(2).sum())


def tight(a: torch.Tensor, y: np.ndarray, classes: int, strength: float) -> torch.Tensor:
    """The same problem solved far past any readout's needs: the reference optimum."""
    return logistic_weights(a, y, classes, strength, tolerance=1e-10, max_iter=5000)


def digits():
    x, y = load_digits(return_X_y=True)  # 1,797 real 8 x 8 digits, 64 pixel features
    x = torch.as_tensor(x, dtype=torch.float64)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def test_logistic_readout_stops_at_the_optimum_its_scores_need():
    x_train, y_train, x_test, _ = digits()
    a_train, a_test = (_with_intercept(z) for z in standardise(x_train, x_test))
    for strength in (1e-1, 1e-3):
        ours = logistic_weights(a_train, y_train, 10, strength)
        best = tight(a_train, y_train, 10, strength)
        gap = objective(a_train, y_train, ours, strength) - objective(a_train, y_train, best,
                                                                      strength)
        assert 0 <= gap < 1e-3 * objective(a_train, y_train, best, strength)
        agree = ((a_test @ ours).argmax(1) == (a_test @ best).argmax(1)).float().mean()
        assert agree >= 0.99, f"strength {strength}: predictions agree on {agree:.3f}"


def test_fit_readout_picks_its_strength_on_validation_and_scores_test():
    x_train, y_train, x_test, y_test = digits()
    readout = fit_readout(x_train[:1000], y_train[:1000], x_train[1000:], y_train[1000:], 10)
    assert readout.val_score > 0.9  # digits are nearly linearly separable in pixels
    assert readout.score(x_test, y_test) > 0.85
    assert readout.strength in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def test_each_examples_share_averages_to_the_score():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 2))
    pred = y + rng.normal(scale=0.5, size=(50, 2))
    shares = readout.points(pred, y, classification=False)
    assert shares.shape == (50,)
    assert shares.mean() == pytest.approx(readout.score(pred, y, classification=False))
    assert 0 < readout.score(pred, y, classification=False) < 1
    labels, guesses = np.array([0, 1, 2, 1]), np.array([0, 2, 2, 1])
    assert readout.points(guesses, labels, classification=True).tolist() == [1, 0, 1, 1]


def test_cross_validation_predicts_every_example_from_the_other_folds():
    x, y, _, _ = digits()
    labels = readout.fold_labels(y, 5, classification=True)
    for c in range(10):  # stratified: each class dealt out evenly
        counts = np.bincount(labels[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    shares = readout.cross_validated_points(x, y, 10, strength=1e-2)
    assert shares.shape == (len(y),) and set(np.unique(shares)) <= {0.0, 1.0}
    held = fit_readout(x[:960], y[:960], x[960:], y[960:], 10)  # one fold's worth held out
    assert abs(shares.mean() - held.val_score) < 0.05 and shares.mean() > 0.9
    # a feature that is only noise scores about nothing, out of fold
    rng = np.random.default_rng(0)
    target = x[:, 20].numpy()
    noise = torch.as_tensor(rng.normal(size=(len(y), 4)))
    assert readout.cross_validated_points(noise, target, None, 1e-2).mean() < 0.02
    signal = torch.stack([x[:, 20], torch.as_tensor(rng.normal(size=len(y)))], 1)
    assert readout.cross_validated_points(signal, target, None, 1e-4).mean() > 0.99
    with pytest.raises(ValueError, match="needs at least 10 training and validation examples"):
        readout.cross_validated_points(noise[:6], target[:6], None, 1e-2)

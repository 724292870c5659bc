"""Linear readouts on fixed features: the solvers every downstream score goes through.

A readout sees features of three splits (train, validation, test). :func:`fit_linear` fits
multinomial logistic regression (classification) or ridge regression (regression) on the
training features, standardised by their own statistics, for each L2 strength of
:data:`REGULARISATION`; the strength is chosen on the validation split and only the chosen
readout is scored on the test split, so model selection never sees the test split.

    >>> val, test = fit_linear((z_train, z_val, z_test), (y_train, y_val, y_test), classes=10)

``classes=None`` means regression (targets ``(N,)`` or ``(N, D)``, scored by R²).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: L2 strengths tried by :func:`fit_linear`, chosen on the validation split.
REGULARISATION = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def score(pred: np.ndarray, y: np.ndarray, classification: bool) -> float:
    """Top-1 accuracy for classification, R² (averaged over outputs) for regression."""
    if classification:
        return float((pred == y).mean())
    y = y.reshape(len(y), -1)
    pred = pred.reshape(len(pred), -1)
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - ss_res / np.maximum(ss_tot, 1e-12)))


def standardise(z_train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every split standardised by the training split's mean and std, in float64."""
    z_train = torch.as_tensor(z_train)
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    return [((torch.as_tensor(z) - mean) / std).double() for z in (z_train, *others)]


def fit_linear(features: Sequence[torch.Tensor], targets: Sequence[np.ndarray],
               classes: int | None) -> tuple[float, float]:
    """Fit a linear readout on ``features`` (train, validation, test) with ``targets`` of the
    same three splits; choose its L2 strength on the validation split; return (validation,
    test) scores. ``classes`` is the number of classes, or None for regression."""
    zs = standardise(*features)
    y_train, y_val, y_test = targets
    best = (-np.inf, -np.inf)
    for strength in REGULARISATION:
        if classes is not None:
            preds = logistic(zs, y_train, classes, strength)
        else:
            preds = ridge(zs, y_train, strength)
        val = score(preds[0], y_val, classes is not None)
        if val > best[0]:
            best = (val, score(preds[1], y_test, classes is not None))
    return best


def ridge(zs: list[torch.Tensor], y: np.ndarray, strength: float) -> list[np.ndarray]:
    """Ridge regression with an unpenalised intercept, fitted on ``zs[0]``; predictions for
    the other splits of ``zs``."""
    z_train, *rest = zs
    a = torch.cat([z_train, torch.ones(len(z_train), 1, dtype=z_train.dtype)], 1)
    target = torch.as_tensor(y, dtype=a.dtype).reshape(len(y), -1)
    reg = strength * len(a) * torch.eye(a.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0  # the intercept is not penalised
    w = torch.linalg.solve(a.T @ a + reg, a.T @ target)
    return [(torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1) @ w).numpy()
            for z in rest]


def logistic(zs: list[torch.Tensor], y: np.ndarray, classes: int, strength: float
             ) -> list[np.ndarray]:
    """Multinomial logistic regression fitted on ``zs[0]`` by full-batch L-BFGS from zero
    weights (deterministic, a second or two); predicted classes for the other splits."""
    z_train, *rest = zs
    target = torch.as_tensor(y, dtype=torch.long)
    linear = nn.Linear(z_train.shape[1], classes, device="meta").to_empty(device="cpu")
    linear = linear.double()
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=200, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(z_train), target) + strength * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return [linear(z).argmax(1).numpy() for z in rest]


def linear_probe(z_train: torch.Tensor, y_train: np.ndarray, z_test: torch.Tensor,
                 y_test: np.ndarray, classes: int, strength: float = 1e-2) -> float:
    """Test accuracy of a ridge-regression classifier (one-hot targets, solved in closed
    form: milliseconds) on fixed features standardised by training statistics: the app's live
    probe, recomputed at every slider move. Scored readouts use :func:`logistic`."""
    onehot = np.eye(classes)[np.asarray(y_train)]
    pred = ridge(standardise(z_train, z_test), onehot, strength)[0].argmax(1)
    return float((pred == np.asarray(y_test)).mean())

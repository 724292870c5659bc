"""Linear readouts on fixed features: the solvers every downstream score goes through.

A readout sees features of three splits (train, validation, test). :func:`fit_linear` fits
multinomial logistic regression (classification) or ridge regression (regression) on the
training features, standardised by their own statistics, for each L2 strength of
:data:`REGULARISATION`; the strength is chosen on the validation split and only the chosen
readout is scored on the test split, so model selection never sees the test split.

    >>> import numpy as np, torch
    >>> z = torch.randn(300, 8)                      # features of 300 examples
    >>> y = (z[:, 0] > 0).long().numpy()             # a class each feature 0 tells apart
    >>> val, test = fit_linear((z[:200], z[200:250], z[250:]), (y[:200], y[200:250], y[250:]),
    ...                        classes=2)
    >>> test > 0.9
    True

``classes=None`` means regression (targets ``(N,)`` or ``(N, D)``, scored by R²).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: L2 strengths tried by :func:`fit_readout`, chosen on the validation split.
REGULARISATION = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: L-BFGS stops once no entry of the mean loss's gradient exceeds this (:func:`logistic_weights`).
GRADIENT_TOLERANCE = 1e-4


def score(pred: np.ndarray, y: np.ndarray, classification: bool) -> float:
    """Top-1 accuracy for classification, R² (averaged over outputs) for regression."""
    return float(points(pred, y, classification).mean())


def points(pred: np.ndarray, y: np.ndarray, classification: bool) -> np.ndarray:
    """Each example's share of :func:`score`, so that their mean is the score: 1 or 0 for a
    right or wrong class; for regression, 1 - N x (squared error / total sum of squares),
    averaged over outputs. Their spread gives the score's standard error
    (:func:`amortinv.selection.noise`)."""
    if classification:
        return (pred == y).astype(np.float64)
    y = y.reshape(len(y), -1)
    pred = pred.reshape(len(pred), -1)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1 - (len(y) * (y - pred) ** 2 / np.maximum(ss_tot, 1e-12)).mean(1)


def standardise(z_train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every split standardised by the training split's mean and std, in float64."""
    z_train = torch.as_tensor(z_train)
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    return [((torch.as_tensor(z) - mean) / std).double() for z in (z_train, *others)]


@dataclass
class LinearReadout:
    """A linear readout fitted on a training split, its L2 strength chosen on a validation
    split: standardisation statistics, weights (the last row is the intercept) and the
    validation score that chose it. Kept so a split it has not seen yet (the test split) can
    be scored later without fitting again."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (features + 1, outputs)
    classes: int | None
    strength: float
    val_score: float
    #: Each validation example's share of ``val_score`` (:func:`points`).
    val_points: np.ndarray

    def predict(self, z: torch.Tensor) -> np.ndarray:
        """Predicted classes (classification) or values (regression) for features ``z``."""
        z = torch.as_tensor(z).to(self.weight.device, self.weight.dtype)
        return _outputs(_with_intercept((z - self.mean) / self.std), self.weight, self.classes)

    def score(self, z: torch.Tensor, y: np.ndarray) -> float:
        """Accuracy or R² of the readout on features ``z`` with targets ``y``."""
        return score(self.predict(z), y, self.classes is not None)


def fit_readout(z_train: torch.Tensor, y_train: np.ndarray, z_val: torch.Tensor,
                y_val: np.ndarray, classes: int | None,
                device: torch.device | str | None = None) -> LinearReadout:
    """Fit a linear readout on ``z_train`` for each L2 strength of :data:`REGULARISATION` and
    keep the one that scores best on ``z_val``. ``classes`` is the number of classes, or None
    for regression. Logistic fits go from the strongest strength to the weakest, each
    starting from the previous solution (the same optimum, reached in fewer iterations).
    ``device`` fits there (a GPU: seconds for 60,000 examples where a CPU core takes
    minutes); default the training features' device."""
    mean, std, (a_train, a_val) = _standardised(z_train, z_val, classes=classes, device=device)
    best: LinearReadout | None = None
    weight = None
    for strength in sorted(REGULARISATION, reverse=True):
        weight = _weights(a_train, y_train, classes, strength, start=weight)
        shares = points(_outputs(a_val, weight, classes), y_val, classes is not None)
        val = float(shares.mean())
        if best is None or val >= best.val_score:  # a tie goes to the weaker strength, as before
            best = LinearReadout(mean, std, weight, classes, strength, val, shares)
    return best


def fold_labels(y: np.ndarray, folds: int, classification: bool, seed: int = 0) -> np.ndarray:
    """A fold (``0 .. folds - 1``) for each example, in random order; for classification,
    stratified: each class is dealt out across the folds in turn."""
    order = np.random.default_rng(seed).permutation(len(y))
    if classification:
        order = order[np.argsort(np.asarray(y)[order], kind="stable")]
    labels = np.empty(len(y), dtype=np.int64)
    labels[order] = np.arange(len(y)) % folds
    return labels


def cross_validated_points(z: torch.Tensor, y: np.ndarray, classes: int | None, strength: float,
                           folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each example's share (:func:`points`) of a ``folds``-fold cross-validated score of a
    linear readout at L2 ``strength`` on features ``z`` with targets ``y``: every example is
    predicted by the readout fitted on the other folds (standardised by their statistics).
    Their mean is the cross-validated score; for regression, the R² of the pooled
    out-of-fold predictions."""
    z, y = torch.as_tensor(z), np.asarray(y)
    if len(y) < 2 * folds:
        raise ValueError(f"cross-validation in {folds} folds needs at least {2 * folds} "
                         f"training and validation examples, got {len(y)}: use fewer folds, "
                         "or 0 to score on the validation split")
    labels = fold_labels(y, folds, classes is not None, seed)
    pred = [None] * folds
    for fold in range(folds):  # each fold holds at least two examples (dealt out in turn)
        held = labels == fold
        _, _, (a_fit, a_held) = _standardised(z[torch.as_tensor(~held)],
                                              z[torch.as_tensor(held)], classes=classes)
        pred[fold] = _outputs(a_held, _weights(a_fit, y[~held], classes, strength), classes)
    # the folds' predictions, concatenated, put back in the examples' order
    order = np.concatenate([np.flatnonzero(labels == fold) for fold in range(folds)])
    return points(np.concatenate(pred)[np.argsort(order)], y, classes is not None)


def fit_linear(features: Sequence[torch.Tensor], targets: Sequence[np.ndarray],
               classes: int | None, device: torch.device | str | None = None
               ) -> tuple[float, float]:
    """Fit a linear readout on ``features`` (train, validation, test) with ``targets`` of the
    same three splits; choose its L2 strength on the validation split; return (validation,
    test) scores. ``classes`` is the number of classes, or None for regression; ``device``
    as for :func:`fit_readout`."""
    readout = fit_readout(features[0], targets[0], features[1], targets[1], classes, device)
    return readout.val_score, readout.score(features[2], targets[2])


def _standardised(z_fit: torch.Tensor, *others: torch.Tensor, classes: int | None,
                  device: torch.device | str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``z_fit``'s mean and std, and ``z_fit`` and ``others`` standardised by them with an
    intercept column, on ``device`` (default ``z_fit``'s): float32 for L-BFGS (about half the
    time of float64 here), float64 for ridge's normal equations (cheap either way)."""
    dtype = torch.float32 if classes is not None else torch.float64
    z_fit = torch.as_tensor(z_fit)
    device = device or z_fit.device
    z_fit = z_fit.to(device, dtype)
    mean, std = z_fit.mean(0), z_fit.std(0).clamp_min(1e-6)
    return mean, std, [_with_intercept((torch.as_tensor(z).to(device, dtype) - mean) / std)
                       for z in (z_fit, *others)]


def _weights(a: torch.Tensor, y: np.ndarray, classes: int | None, strength: float,
             start: torch.Tensor | None = None) -> torch.Tensor:
    """A readout's weights on the design ``a``: logistic regression (``classes``, from
    ``start``) or ridge regression (None)."""
    if classes is not None:
        return logistic_weights(a, y, classes, strength, start=start)
    return ridge_weights(a, y, strength)


def _outputs(a: torch.Tensor, weight: torch.Tensor, classes: int | None) -> np.ndarray:
    """What the readout ``weight`` predicts on the design ``a``: classes or values."""
    out = a @ weight
    return (out.argmax(1) if classes is not None else out).cpu().numpy()


def _with_intercept(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype, device=z.device)], 1)


def ridge_weights(a: torch.Tensor, y: np.ndarray, strength: float) -> torch.Tensor:
    """Ridge regression on ``a`` (standardised features with an intercept column last, which
    is not penalised): weights ``(features + 1, outputs)``."""
    target = torch.as_tensor(y, dtype=a.dtype).to(a.device).reshape(len(y), -1)
    reg = strength * len(a) * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    reg[-1, -1] = 0
    return torch.linalg.solve(a.T @ a + reg, a.T @ target)


def logistic_weights(a: torch.Tensor, y: np.ndarray, classes: int, strength: float,
                     start: torch.Tensor | None = None, tolerance: float = GRADIENT_TOLERANCE,
                     max_iter: int = 200) -> torch.Tensor:
    """Multinomial logistic regression on ``a`` (standardised features with an intercept
    column last, not penalised) by full-batch L-BFGS from ``start`` (zeros by default; the
    problem is strictly convex, so the start changes the time, not the optimum). It stops
    after ``max_iter`` iterations or when no gradient entry exceeds ``tolerance``; the
    default, :data:`GRADIENT_TOLERANCE`, is converged for a readout (the
    validation and test scores stop changing, ``tests/test_readout.py``) in about 60% of the
    iterations that torch's default tolerance (1e-7) takes."""
    target = torch.as_tensor(y, dtype=torch.long).to(a.device)
    rows = torch.arange(len(a), device=a.device)
    weight = torch.zeros(a.shape[1], classes, dtype=a.dtype, device=a.device) if start is None \
        else start.clone()
    opt = torch.optim.LBFGS([weight], lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=tolerance, tolerance_change=tolerance / 100,
                            line_search_fn="strong_wolfe")

    @torch.no_grad()
    def closure():
        # the loss and its gradient written out (softmax minus one-hot): a quarter faster
        # than autograd on a 5,000 x 129 problem, where every L-BFGS step is small
        log_p = (a @ weight).log_softmax(1)
        penalty = weight[:-1]
        loss = -log_p[rows, target].mean() + strength * penalty.pow(2).sum()
        residual = log_p.exp_()
        residual[rows, target] -= 1
        grad = a.T @ residual / len(a)
        grad[:-1] += 2 * strength * penalty
        weight.grad = grad
        return loss

    opt.step(closure)
    return weight.detach()


def linear_probe(z_train: torch.Tensor, y_train: np.ndarray, z_test: torch.Tensor,
                 y_test: np.ndarray, classes: int, strength: float = 1e-2) -> float:
    """Test accuracy of a ridge-regression classifier (one-hot targets, solved in closed
    form: milliseconds) on fixed features standardised by training statistics: the app's live
    probe, recomputed at every slider move. Scored readouts use :func:`fit_readout`."""
    a_train, a_test = (_with_intercept(z) for z in standardise(z_train, z_test))
    weight = ridge_weights(a_train, np.eye(classes)[np.asarray(y_train)], strength)
    return float(((a_test @ weight).argmax(1).numpy() == np.asarray(y_test)).mean())

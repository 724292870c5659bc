"""Baselines: honest alternatives to a learned vector, on the same task, splits and readout.

Every corner of the space (all ones and all zeros included), the plain non-amortised encoder
when one is given, kNN (k = 200) at all ones and at the learned vector for classification, and
the raw-input floor (the same linear readout, and kNN, on pixels or log-mel). All are test
scores; every readout's L2 strength is chosen on the validation split.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch

from amortinv.measure import knn_accuracy, raw_features
from amortinv.readout import fit_linear, fit_readout
from amortinv.selection import Candidate, Features, corners

if TYPE_CHECKING:
    from amortinv.models import Encoder
    from amortinv.task import Task


def baseline_scores(encoder: Encoder, task: Task, learned: Mapping[str, float] | None = None,
                    plain: Encoder | None = None, seed: int = 0,
                    features: Features | None = None,
                    fitted: Mapping[str, Candidate] | None = None
                    ) -> Iterator[tuple[str, float]]:
    """Yield (name, test score) for every baseline in turn (see the module's docstring).

    ``features`` (a cache of ``encoder``'s features on ``task``) and ``fitted`` (readouts
    already fitted on train/validation, by corner name, e.g. a selection's candidates) save
    computing them again; ``seed`` fixes the random projection of large raw inputs."""
    features = features or Features(encoder, task)
    fitted = fitted or {}
    for name, corner in corners(encoder.space).items():
        readout = fitted[name].readout if name in fitted else fit_readout(
            features(corner, "train"), task.train.y, features(corner, "val"), task.val.y,
            task.classes)
        yield name, readout.score(features(corner, "test"), task.test.y)
    if plain is not None:
        yield "plain", fit_linear(Features(plain, task, features.precision).splits(1.0),
                                  task.targets, task.classes)[1]
    raw = _raw_inputs(task)
    yield "raw_linear", fit_linear(_pca(raw, seed=seed), task.targets, task.classes)[1]
    if task.classification:
        yield "raw_knn", knn_accuracy(raw[0], task.train.y, raw[2], task.test.y)
        for name, vector in (("knn_all_ones", 1.0), ("knn_learned", learned)):
            if vector is not None:
                yield name, knn_accuracy(features(vector, "train"), task.train.y,
                                         features(vector, "test"), task.test.y)


def baselines(encoder: Encoder, task: Task, learned: Mapping[str, float] | None = None,
              plain: Encoder | None = None, seed: int = 0, features: Features | None = None,
              fitted: Mapping[str, Candidate] | None = None) -> dict[str, float]:
    """Every baseline's test score, by name (:func:`baseline_scores`)."""
    return dict(baseline_scores(encoder, task, learned, plain, seed, features, fitted))


def _raw_inputs(task: Task) -> list[torch.Tensor]:
    return [raw_features(s.x, task.data.modality) for s in (task.train, task.val, task.test)]


def _pca(zs: list[torch.Tensor], dims: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """Project raw inputs on their top principal components (fitted on train) so the raw
    linear baseline stays quick for large inputs such as log-mel spectrograms.

    Randomised, as ``torch.pca_lowrank(niter=3)`` (Halko et al. 2011), but its random
    matrix comes from a generator seeded by ``seed``, not from the global random state."""
    # n centred training examples span at most n - 1 directions: a component beyond them has
    # no variance there, and standardised it would blow up whatever the test split holds in it
    dims = min(dims, len(zs[0]) - 1)
    if zs[0].shape[1] <= dims:
        return zs
    mean = zs[0].mean(0)
    a = zs[0] - mean
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(a @ torch.randn(a.shape[1], dims, generator=g, dtype=a.dtype)).Q
    for _ in range(3):  # power iterations sharpen the basis
        q = torch.linalg.qr(a.T @ q).Q
        q = torch.linalg.qr(a @ q).Q
    v = torch.linalg.svd(q.T @ a, full_matrices=False).Vh.T
    return [(z - mean) @ v for z in zs]

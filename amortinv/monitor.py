"""The kNN monitor of a pre-training run: weighted kNN (k=200) test accuracy on a labelled
dataset at a few invariance vectors (all ones, all zeros, halfway), logged as the run goes."""

from __future__ import annotations

from dataclasses import dataclass

from amortinv import data as datasets
from amortinv.measure import knn_at_vectors
from amortinv.models import Encoder


@dataclass
class KnnMonitor:
    """Scores an encoder on the first ``n_train`` / ``n_test`` examples of ``dataset``."""

    dataset: str
    n_train: int = 5000
    n_test: int = 1000

    def __post_init__(self) -> None:
        datasets.folder_or_info(self.dataset)  # a misspelt name: refused before training

    def __call__(self, encoder: Encoder) -> dict[str, float]:
        """Accuracy per monitored vector; empty for a dataset without classes."""
        ds = datasets.get(self.dataset)
        if ds.target_kind != "classification":
            return {}
        return knn_at_vectors(encoder, ds.train.take(slice(self.n_train)),
                              ds.test.take(slice(self.n_test)))

"""A downstream task: a dataset cut into the splits invariance learning uses.

:func:`amortinv.downstream.prepare` makes one from a dataset (checked against an encoder,
subsampled, a validation split carved from the training split); the learner, the selection
and the baselines read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amortinv.data import Dataset, Split


@dataclass
class Task:
    """A dataset cut and split for downstream learning: train / val (carved) / test."""

    data: Dataset
    train: Split
    val: Split
    test: Split
    #: What was done to the data to fit the encoder (e.g. colour to grey), for the user.
    note: str | None = None

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def classification(self) -> bool:
        return self.data.target_kind == "classification"

    @property
    def classes(self) -> int | None:
        """Number of classes for classification, None for regression (what the readout takes)."""
        return self.data.num_outputs if self.classification else None

    @property
    def targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Targets of the train, validation and test splits."""
        return self.train.y, self.val.y, self.test.y

    @property
    def metric(self) -> str:
        return "accuracy" if self.classification else "r2"

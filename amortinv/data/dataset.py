"""What a dataset is: :class:`Split` (inputs and targets), :class:`Splits` (what a loader
returns) and :class:`Dataset` (a loaded dataset with what a model, a readout or the app needs),
and :func:`check` of the array conventions every dataset follows:

- images: ``uint8`` of shape ``(N, C, H, W)``, C = 1 (grey) or 3 (RGB);
- audio: ``float32`` waveforms of shape ``(N, T)`` in [-1, 1] at ``sample_rate`` Hz;
- labels: ``int64`` of shape ``(N,)`` for classification, ``float32`` ``(N, D)`` for
  regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Modality = Literal["image", "audio"]
#: What a dataset's targets are: class labels or real values.
TargetKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one split."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray | slice) -> Split:
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Splits:
    """What a loader returns: train and test arrays, and class names for classification."""

    train: Split
    test: Split
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset with everything a model, a readout or the app needs to know."""

    name: str
    modality: Modality
    target_kind: TargetKind
    train: Split
    test: Split
    description: str
    class_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    sample_rate: int | None = None
    needs: str = ""
    source: str = ""

    @property
    def num_outputs(self) -> int:
        """Classes for classification, target dimensions for regression."""
        if self.target_kind == "classification":
            return len(self.class_names)
        return 1 if self.train.y.ndim == 1 else self.train.y.shape[1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: ``(C, H, W)`` for images, ``(T,)`` for audio."""
        return tuple(self.train.x.shape[1:])

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> tuple[Split, Split]:
        """Carve ``(train, validation)`` out of the training split; the test split is untouched.

        The carve-out is random but fixed by ``seed``, and stratified by class for
        classification, so model selection never looks at the test split.
        """
        keep, val = self.validation_indices(fraction, seed)
        return self.train.take(keep), self.train.take(val)

    def validation_indices(self, fraction: float = 0.1, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray]:
        """The training-split indices :meth:`validation_split` keeps and carves out (sorted):
        for features computed once on the whole training split."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n = len(self.train)
        if n < 2:
            raise ValueError(f"dataset '{self.name}' has {n} training example(s): too few to split")
        rng = np.random.default_rng(seed)
        if self.target_kind == "classification":
            val = []
            for c in np.unique(self.train.y):
                idx = np.flatnonzero(self.train.y == c)
                rng.shuffle(idx)
                val.append(idx[: round(len(idx) * fraction)])
            val_idx = np.sort(np.concatenate(val))
        else:
            val_idx = np.sort(rng.permutation(n)[: max(1, round(n * fraction))])
        keep = np.ones(n, dtype=bool)
        keep[val_idx] = False
        if not keep.any() or keep.all():
            raise ValueError(f"dataset '{self.name}' is too small for a {fraction:.0%} split")
        return np.flatnonzero(keep), val_idx


def check(data: Dataset) -> None:
    """Raise ``ValueError`` unless ``data`` follows the array conventions of this module."""
    for split_name, split in (("train", data.train), ("test", data.test)):
        x, y = split.x, split.y
        where = f"dataset '{data.name}', {split_name} split"
        if len(x) == 0:
            raise ValueError(f"{where} is empty")
        if data.modality == "image" and (x.dtype != np.uint8 or x.ndim != 4
                                         or x.shape[1] not in (1, 3)):
            raise ValueError(f"{where}: images must be uint8 (N, 1|3, H, W), got "
                             f"{x.dtype} {x.shape}")
        if data.modality == "audio" and (x.dtype != np.float32 or x.ndim != 2):
            raise ValueError(f"{where}: audio must be float32 (N, T), got {x.dtype} {x.shape}")
        if data.modality == "audio" and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(1).sum())
            raise ValueError(f"{where}: {bad} clip(s) hold NaN or infinite samples")
        if data.target_kind == "classification":
            if y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(f"{where}: class labels must be int64 (N,), got {y.dtype}")
            if y.min() < 0 or y.max() >= len(data.class_names):
                raise ValueError(f"{where}: labels outside 0..{len(data.class_names) - 1}")
        elif y.dtype != np.float32:
            raise ValueError(f"{where}: regression targets must be float32, got {y.dtype}")

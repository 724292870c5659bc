"""Validated selection: the final invariance vector is chosen without the test split.

Gradient descent on the vector (:func:`amortinv.downstream.learn`) finds a good direction, but
on a short budget it can stop between corners, and the encoder was trained on corners. So the
vector a task gets is chosen among

- the gradient path's best vector (``gradient``),
- its rounding to a corner (one of the corners below, named in :attr:`Selection.rounded`),
- every corner of the space (the baselines need their features anyway),

each scored the same way: a linear readout fitted on the training split, its L2 strength
chosen on the validation split (:func:`amortinv.readout.fit_readout`).

The candidate is chosen on the validation split too, with the one-standard-error rule
(Breiman et al., 1984): the candidate with the best validation score wins only if all ones,
then the gradient vector, scores more than one standard error of that best score below it
(:func:`noise`). Otherwise the first of those within the margin is kept: all ones (the
encoder's standard invariances) before the gradient vector. On validation splits of a few
hundred examples, 17 or 33 candidates differ mostly by noise, and the best of them on
validation is biased upward by it; a change from the standard invariances has to be shown,
not guessed. The test split is not read here: a candidate's fitted readout scores it afterwards
(:meth:`Candidate.test_score`), once per vector that is reported.

Features are computed once per vector and split (:class:`Features`), so the selection, the
test scores and the kNN baselines share them.

``folds`` (:func:`candidates`, ``DownstreamConfig.folds``) compares the candidates by
cross-validation instead: each readout, at the L2 strength its validation split chose, is
refitted on all but one of ``folds`` parts of the training and validation splits pooled and
scores the part left out (:func:`cross_validated`). Every example of both splits then weighs
in, not the validation split's alone, at ``folds`` times the readouts' cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from amortinv.invariance import InvarianceSpace, VectorLike
from amortinv.readout import LinearReadout, cross_validated_points, fit_readout

if TYPE_CHECKING:
    from amortinv.models import Encoder, Inputs
    from amortinv.task import Task

#: The candidate name of the gradient path's best vector.
GRADIENT = "gradient"
#: Kept, in this order, when within one standard error of the best validation score.
PREFERRED = ("all_ones", GRADIENT)


class Features:
    """An encoder's features of a task's splits (``train``, ``val``, ``test``), computed once
    per (vector, split) and kept. ``precision`` is passed to
    :meth:`amortinv.models.Encoder.features` (``bf16`` is about twice as fast on a CPU with
    AMX, for features within about 1% of fp32's)."""

    def __init__(self, encoder: Encoder, task: Task, precision: str = "fp32"):
        self.encoder, self.task, self.precision = encoder, task, precision
        self._cache: dict[tuple[tuple[float, ...], str], torch.Tensor] = {}
        # each split, converted once where that pays (Encoder.reusable)
        self._inputs: dict[str, np.ndarray | torch.Tensor | Inputs] = {}

    def __call__(self, vector: VectorLike | float, split: str) -> torch.Tensor:
        key = (tuple(self.encoder.space.vector(vector).tolist()), split)
        if key not in self._cache:
            self._cache[key] = self.encoder.features(self.inputs(split), key[0],
                                                     precision=self.precision)
        return self._cache[key]

    def inputs(self, split: str) -> np.ndarray | torch.Tensor | Inputs:
        """The split's examples as they are encoded (:meth:`Encoder.reusable`), converted once
        (the learner's validation scores use them too)."""
        if split not in self._inputs:
            data = {"train": self.task.train, "val": self.task.val, "test": self.task.test}[split]
            self._inputs[split] = self.encoder.reusable(data.x)
        return self._inputs[split]

    def copy(self) -> Features:
        """A new :class:`Features` holding everything this one has computed (see
        :meth:`only`)."""
        return self.only(key[0] for key in self._cache)

    def only(self, vectors: Iterable[VectorLike | float]) -> Features:
        """A new :class:`Features` of the same encoder, task and precision holding what this
        one has computed at ``vectors`` (and its converted splits): shared, not copied, as
        nothing changes a feature tensor in place. What the new one computes is its own."""
        keep = {tuple(self.encoder.space.vector(v).tolist()) for v in vectors}
        kept = Features(self.encoder, self.task, self.precision)
        kept._cache = {k: v for k, v in self._cache.items() if k[0] in keep}
        kept._inputs = dict(self._inputs)
        return kept

    def splits(self, vector: VectorLike | float) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """(train, val, test) features at ``vector``."""
        return tuple(self(vector, s) for s in ("train", "val", "test"))


@dataclass
class Candidate:
    """One vector in the selection, with the readout fitted on its features."""

    name: str  # GRADIENT or a corner's name (corner_name)
    vector: dict[str, float]
    readout: LinearReadout
    #: Each example's share of the readout's cross-validated score on the training and
    #: validation splits pooled (:func:`amortinv.readout.cross_validated_points`), where the
    #: selection cross-validates (``folds``); else None.
    cv_points: np.ndarray | None = None

    @property
    def val_points(self) -> np.ndarray:
        """Each example's share of :attr:`val_score`: what the selection weighs."""
        return self.readout.val_points if self.cv_points is None else self.cv_points

    @property
    def val_score(self) -> float:
        """The score the selection compares: the readout's on the validation split, or
        cross-validated (``cv_points``)."""
        return float(self.val_points.mean())

    def test_score(self, features: Features) -> float:
        """The candidate's score on the test split (its readout is not fitted again)."""
        return self.readout.score(features(self.vector, "test"), features.task.test.y)


@dataclass
class Selection:
    """Every candidate, by name, and the one chosen (on the validation split, or
    cross-validated)."""

    candidates: dict[str, Candidate]
    chosen: Candidate
    #: The corner the gradient vector rounds to (each value to 0 or 1).
    rounded: str
    #: The candidate with the best validation score (``chosen`` unless it was within noise).
    best: Candidate
    #: The candidates kept before the best when within its noise, in order (:func:`choose`).
    preferred: tuple[str, ...] = PREFERRED
    #: Whether the margins were standard errors of differences (:func:`margin`).
    paired: bool = False

    @property
    def gradient(self) -> Candidate:
        return self.candidates[GRADIENT]

    def reason(self, readable: bool = False) -> str:
        """Why ``chosen`` was kept, in a sentence with the validation scores and the margin
        (``readable``: the app's names, as in :func:`corner_name`)."""
        label = readable_name if readable else str
        best, chosen = self.best, self.chosen
        crossed = chosen.cv_points is not None
        where = (f"cross-validated on {len(chosen.cv_points):,} training and validation "
                 "examples") if crossed else "on validation"
        first = "the best cross-validated" if crossed else "the best on validation"
        text = f"{label(chosen.name)} ({chosen.val_score:.3f} {where})"
        of = "their difference" if self.paired else "its score"
        if best is not chosen:
            return (f"{text} kept: {label(best.name)} was ahead by "
                    f"{best.val_score - chosen.val_score:.3f}, within one standard error of "
                    f"{of} ({margin(best, chosen, self.paired):.3f})")
        passed = []  # the preferred candidates before it, below the margin
        for name in self.preferred:
            if name not in self.candidates or self.candidates[name] is chosen:
                break
            passed.append(self.candidates[name])
        if not passed:
            return f"{text}: {first}"
        below = " and ".join(f"{label(c.name)} by {chosen.val_score - c.val_score:.3f}"
                             for c in passed)
        margins = ", ".join(f"{margin(best, c, self.paired):.3f}"
                            for c in (passed if self.paired else passed[:1]))
        return (f"{text}: {first}, ahead of {below}, more than one standard "
                f"error of {'each difference' if self.paired else of} ({margins})")


def corner_name(space: InvarianceSpace, corner: VectorLike, readable: bool = False) -> str:
    """``all_ones``, ``all_zeros``, or the groups that are on, joined by ``+`` (the keys of
    results files). ``readable`` gives the app's labels: ``all ones``, ``crop + flip``."""
    values = space.vector(corner)
    if bool((values == 1).all()):
        name = "all_ones"
    elif bool((values == 0).all()):
        name = "all_zeros"
    else:
        name = "+".join(n for n, v in zip(space.names, values.tolist(), strict=True) if v)
    return readable_name(name) if readable else name


def corner_example(space: InvarianceSpace) -> str:
    """How a corner's name reads, on ``space``'s own groups (its first two, or its first where
    two would be every group).

    >>> from amortinv.invariance import AUDIO
    >>> corner_example(AUDIO)
    "'pitch + time' = pitch and time at 1, the rest at 0"
    """
    names = space.names[:2] if len(space) > 2 else space.names[:1]
    return f"'{' + '.join(names)}' = {' and '.join(names)} at 1, the rest at 0"


def readable_name(name: str) -> str:
    """A results-file key as the app writes it: ``crop+flip`` -> ``crop + flip``,
    ``gradient`` -> ``gradient-learned``."""
    return "gradient-learned" if name == GRADIENT else name.replace("_", " ").replace("+", " + ")


def corners(space: InvarianceSpace) -> dict[str, dict[str, float]]:
    """Every corner of ``space`` (all ones and all zeros included), by name."""
    return {corner_name(space, c): space.to_dict(c) for c in space.corners(min_on=0)}


def rounded(space: InvarianceSpace, vector: VectorLike) -> dict[str, float]:
    """``vector`` with each value rounded to 0 or 1 (0.5 rounds to 1: the standard
    invariance)."""
    return space.to_dict((space.vector(vector) >= 0.5).float())


def candidates(features: Features, gradient: VectorLike | None, with_corners: bool = True,
               folds: int = 0) -> Iterator[Candidate]:
    """Fit each candidate's readout: the gradient vector first (``None``: none), then every
    corner; yields them as they are fitted (each a few seconds: an app can show progress).
    ``folds`` > 1 also cross-validates each readout, at the strength the validation split
    chose, on the training and validation splits pooled (:attr:`Candidate.cv_points`)."""
    space, task = features.encoder.space, features.task
    pool = {} if gradient is None else {GRADIENT: space.to_dict(gradient)}
    if with_corners:
        pool |= corners(space)
    for name, vector in pool.items():
        readout = fit_readout(features(vector, "train"), task.train.y, features(vector, "val"),
                              task.val.y, task.classes)
        candidate = Candidate(name, vector, readout)
        yield cross_validated(features, candidate, folds) if folds > 1 else candidate


def cross_validated(features: Features, candidate: Candidate, folds: int = 5) -> Candidate:
    """``candidate`` with :attr:`Candidate.cv_points`: its readout cross-validated in
    ``folds`` folds on the training and validation splits pooled, at the L2 strength the
    validation split chose (:func:`amortinv.readout.cross_validated_points`)."""
    task = features.task
    z = torch.cat([features(candidate.vector, "train"), features(candidate.vector, "val")])
    y = np.concatenate([task.train.y, task.val.y])
    points = cross_validated_points(z, y, task.classes, candidate.readout.strength, folds)
    return dataclasses.replace(candidate, cv_points=points)


def noise(candidate: Candidate) -> float:
    """One standard error of ``candidate``'s validation score: from the spread of each
    validation example's share of it (:func:`amortinv.readout.points`); for an accuracy, the
    binomial one with a pseudo-count of one right and one wrong, so that a perfect score (a
    task whose validation split is too easy to tell candidates apart) still has its noise."""
    shares = candidate.val_points
    n = len(shares)
    if n < 2:
        return 0.0
    if candidate.readout.classes is not None:
        p = (shares.sum() + 1) / (n + 2)
        return float(np.sqrt(p * (1 - p) / n))
    return float(shares.std(ddof=1) / np.sqrt(n))


def paired_noise(best: Candidate, other: Candidate) -> float:
    """One standard error of the difference between two candidates' validation scores, example
    by example: both readouts score the same validation examples, so what they get right or
    wrong together is no evidence either way. For accuracies, with a pseudo-count of one
    disagreement each way (as :func:`noise`'s), so that two candidates that never disagree
    still have a margin."""
    diff = best.val_points - other.val_points
    if best.readout.classes is not None:
        diff = np.concatenate([diff, [1.0, -1.0]])
    if len(diff) < 2:
        return 0.0
    return float(diff.std(ddof=1) / np.sqrt(len(diff)))


def margin(best: Candidate, other: Candidate, paired: bool = False) -> float:
    """How far below ``best`` ``other`` may score on validation and still count as within
    noise: one standard error of ``best``'s score (:func:`noise`), or, ``paired``, of their
    difference (:func:`paired_noise`)."""
    return paired_noise(best, other) if paired else noise(best)


def within_noise(best: Candidate, other: Candidate, paired: bool = False) -> bool:
    """Whether ``other``'s validation score is within :func:`margin` of ``best``'s: the test
    of the one-standard-error rule, here and where the learner chooses its start
    (:func:`amortinv.downstream.corner_start`)."""
    return other.val_score >= best.val_score - margin(best, other, paired)


def best_name(val_scores: Mapping[str, float]) -> str:
    """The candidate with the best validation score, by name (the earlier rule's choice); a
    tie goes to the gradient vector, then to the candidate met first."""
    best = GRADIENT
    for name, value in val_scores.items():
        if value > val_scores[best]:
            best = name
    return best


def choose(fitted: dict[str, Candidate], space: InvarianceSpace,
           preferred: tuple[str, ...] = PREFERRED, paired: bool = False) -> Selection:
    """The one-standard-error rule (see the module's docstring): the first of ``preferred``
    whose validation score is within one standard error of the best one, else the best (a tie
    goes to the gradient vector, then to the corner met first). ``paired``: the standard
    error of the difference, example by example (:func:`within_noise`)."""
    gradient = fitted[GRADIENT]
    best = fitted[best_name({name: c.val_score for name, c in fitted.items()})]
    chosen = next((fitted[name] for name in preferred
                   if name in fitted and within_noise(best, fitted[name], paired)), best)
    return Selection(dict(fitted), chosen, corner_name(space, rounded(space, gradient.vector)),
                     best, preferred, paired)


def select(features: Features, gradient: VectorLike, with_corners: bool = True,
           folds: int = 0) -> Selection:
    """Choose the task's vector among the gradient vector and every corner (see the module's
    docstring), on the validation split, or cross-validated in ``folds`` > 1 folds (as for
    :func:`candidates`). :func:`amortinv.downstream.assess` does the same in steps, with
    progress and the corners it already fitted."""
    fitted = {c.name: c for c in candidates(features, gradient, with_corners, folds)}
    return choose(fitted, features.encoder.space)

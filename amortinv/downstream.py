"""Downstream: learn a task's invariance vector together with a linear readout.

The encoder is frozen and in eval mode while it learns (BatchNorm uses its running statistics:
the paper's public code probed in train mode), and is left as it was found afterwards. Three
stages:

1. :func:`learn` — the readout and the vector ``i`` are trained jointly by gradient descent on
   the task loss (as in the paper: ``i`` has its own Adam, no weight decay, and is clamped to
   [0, 1] after each step; or ``i = sigmoid(logits)``). The defaults differ from the paper
   where a study on validation data showed the paper's vector barely moving or settling
   between corners (:class:`DownstreamConfig`): ``i`` starts at the corner that scores best on
   the validation split when it is clearly ahead of 0.5 there, else at 0.5 as in the paper
   (:func:`corner_start`). Every
   ``eval_every`` steps the vector is scored on a validation split carved from the training
   data and the best point of the path is kept. A generator: it yields the live state, so an
   app can draw it and stop it.
2. :func:`assess`, first half — validated selection (:mod:`amortinv.selection`): the final
   vector is chosen among the gradient path's best, its rounding to a corner, and every
   corner, each scored by a fresh linear readout (:mod:`amortinv.readout`), cross-validated
   on the training and validation splits pooled (``DownstreamConfig.folds``) or on the
   validation split alone.
3. :func:`assess`, second half — the gradient-learned and the selected vector are scored once
   on the test split, and every baseline (:mod:`amortinv.baselines`) when asked.

:func:`prepare` turns a dataset into a :class:`~amortinv.task.Task` (checked against the
encoder, subsampled, validation carved out); :func:`fit` runs everything;
``scripts/downstream.py`` prints its result as JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amortinv import data as datasets
from amortinv.baselines import baseline_scores, baselines
from amortinv.data import Dataset, Split, adapt_channels
from amortinv.invariance import InvarianceSpace, VectorLike, describe
from amortinv.models import Encoder, Inputs, fast_bf16
from amortinv.readout import score
from amortinv.selection import (
    GRADIENT,
    Candidate,
    Features,
    Selection,
    candidates,
    choose,
    corner_name,
    cross_validated,
    within_noise,
)
from amortinv.settings import check_settings, setting
from amortinv.task import Task

__all__ = ["GRADIENT", "Assessment", "DownstreamConfig", "Result", "Scored", "State", "Task",
           "TaskMismatch", "assess", "baselines", "corner_name", "fit", "learn", "prepare",
           "usable_folds"]


@dataclass
class DownstreamConfig:
    """Settings of invariance learning. A setting outside its allowed values is refused when
    the config is made.

    The defaults were chosen on held-out parts of registry tasks' training splits
    (``scripts/study_learner.py``, ``docs/DOWNSTREAM.md``). Where they differ from the paper
    (start 0.5, Adam lr 0.01 for the vector, early stopping), the paper's vector barely moved
    in 150 steps: here the vector's lr is 0.1, the readout is first warmed up on the start
    vector's features (so the vector's first gradients come from a readout that fits), and
    learning runs its whole budget (``patience`` covers it) with the path's best vector kept.
    Started at 0.5 the vector settled between corners, which the encoder was never trained
    on, and trailed the best corner by 2 to 6 points on some tasks: it now starts at the best
    corner on validation when that corner is clearly ahead of 0.5 there (``start="clear"``),
    and moves from there. Always starting at the best corner held it near a corner picked by
    noise on tasks with small validation splits."""

    steps: int = setting(150, minimum=1)
    batch_size: int = setting(256, minimum=1)
    lr_readout: float = setting(0.01, above=0)
    lr_invariance: float = setting(0.1, minimum=0)  # the paper: 0.01
    init: float = setting(0.5, minimum=0, maximum=1)  # every value's start (start="init")
    #: where the vector starts: "corner", the corner that scores best on the validation split
    #: (a readout fitted on its features, as in the selection); "clear", that corner only if it
    #: beats ``init`` everywhere by more than one standard error there, else ``init``;
    #: "init", ``init`` everywhere (:func:`corner_start`)
    start: str = setting("clear", choices=("clear", "corner", "init"))
    parameterisation: str = setting("clamp", choices=("clamp", "sigmoid"))  # clamp: paper
    regression_loss: str = setting("l1", choices=("l1", "mse"))  # l1: paper
    val_fraction: float = setting(0.1, above=0, below=1)
    eval_every: int = setting(10, minimum=1)
    patience: int = setting(15, minimum=1)  # evaluations without improvement before stopping
    lr_schedule: str = setting("constant", choices=("constant", "cosine"))  # of i's lr
    warmup: int = setting(200, minimum=0)  # readout-only steps on the start vector's features
    standardise: str = setting("batch", choices=("batch", "start"))  # the readout's statistics
    round_vector: bool = False  # round the learned vector to {0, 1} before scoring
    select: bool = True  # choose the final vector among it and every corner (``folds``)
    #: > 1: each candidate is scored for the final choice by cross-validation on the training
    #: and validation splits pooled, in this many folds (the start is still chosen on the
    #: validation split, as in the held-out study that chose this default); 0: on validation
    #: alone. A task with fewer than ``2 * folds`` such examples is scored on validation.
    folds: int = setting(5, minimum=0)
    #: bf16 (where the device computes it fast, else fp32) for the learning steps and every
    #: score's features: about twice as fast on this CPU; results files record which was used
    precision: str = setting("bf16", choices=("fp32", "bf16"))
    max_train: int = setting(5000, minimum=0)  # examples used (seeded subsample), 0 = all
    max_test: int = setting(0, minimum=0)  # 0 = all
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self)
        if self.folds == 1:
            raise ValueError("folds must be 0 (score on the validation split) or at least 2, "
                             "got 1")


@dataclass
class State:
    """What :func:`learn` yields after every step."""

    step: int
    vector: dict[str, float]
    loss: float
    val_score: float | None = None  # set on evaluation steps
    best_vector: dict[str, float] = field(default_factory=dict)
    best_score: float = -np.inf
    done: bool = False


@dataclass
class Result:
    """What :func:`fit` returns (and ``scripts/downstream.py`` prints)."""

    task_name: str
    metric: str
    learned: dict[str, float]
    learned_score: float
    val_score: float
    baselines: dict[str, float]
    history: list[dict]
    seconds: float
    #: The vector chosen without the test split (:mod:`amortinv.selection`): the gradient
    #: vector itself ("gradient") or a corner, by name; its test and validation scores.
    selected: dict[str, float] = field(default_factory=dict)
    selected_name: str = GRADIENT
    selected_score: float = float("nan")
    selected_val: float = float("nan")
    #: The corner the gradient vector rounds to.
    rounded: str = ""
    #: The precision of the features every score here was computed from.
    precision: str = "fp32"
    #: Seconds from the start to the selected vector's test score: preparing, learning,
    #: selecting, scoring (``seconds`` adds the baselines).
    select_seconds: float | None = None
    #: Every candidate's validation score, by name, and why the selected one was kept
    #: (:meth:`amortinv.selection.Selection.reason`).
    val_scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    #: Where the gradient path started (:func:`start_name`): a corner by name, or
    #: ``config.init`` (every value there) as a number.
    start: str = ""
    #: The folds the selection was cross-validated in (:func:`usable_folds`); 0: it was made
    #: on the validation split.
    folds: int = 0

    def to_json(self) -> dict:
        return {"task": self.task_name, "metric": self.metric, "learned": self.learned,
                "learned_score": round(self.learned_score, 4),
                "val_score": round(self.val_score, 4),
                "selected": self.selected, "selected_name": self.selected_name,
                "selected_score": round(self.selected_score, 4),
                "selected_val": round(self.selected_val, 4), "rounded": self.rounded,
                "baselines": {k: round(v, 4) for k, v in self.baselines.items()},
                "precision": self.precision, "seconds": round(self.seconds, 1),
                "select_seconds": None if self.select_seconds is None
                else round(self.select_seconds, 1),
                "val_scores": {k: round(v, 4) for k, v in self.val_scores.items()},
                "reason": self.reason, "start": self.start, "folds": self.folds}


class TaskMismatch(ValueError):
    """A task the encoder cannot read (modality, channels) or that has no examples."""


# -- the task -----------------------------------------------------------------------------------
def prepare(encoder: Encoder, dataset: str | Dataset, config: DownstreamConfig) -> Task:
    """Load ``dataset`` (a registry name, ``folder:PATH`` or a :class:`Dataset`) and check it
    against ``encoder``; subsample and carve the validation split.

    A registry name of the wrong modality is refused before its data is loaded or rendered.
    """
    if isinstance(dataset, str) and (entry := datasets.folder_or_info(dataset)) is not None:
        check_modality(encoder, dataset, entry.modality)
    data = datasets.get(dataset) if isinstance(dataset, str) else dataset
    if len(data.train) == 0 or len(data.test) == 0:
        raise TaskMismatch(f"task '{data.name}' has an empty split ({len(data.train)} train, "
                           f"{len(data.test)} test examples): give it examples in both splits "
                           "(a folder task: at least two files in each class folder)")
    check_compatible(encoder, data)
    data, note = adapt_channels(data, encoder.config.in_channels)
    rng = np.random.default_rng(config.seed)

    def cap(split: Split, n: int) -> Split:
        return split if not n or len(split) <= n else split.take(
            np.sort(rng.choice(len(split), n, replace=False)))

    try:
        train, val = data.validation_split(config.val_fraction, config.seed)
    except ValueError as err:  # too few examples to carve a validation split from
        raise TaskMismatch(f"{err}: give task '{data.name}' more training examples (or carve "
                           "a larger validation fraction: DownstreamConfig.val_fraction, "
                           "--val-fraction in scripts/downstream.py)") from err
    n_val = round(config.max_train * config.val_fraction) if config.max_train else 0
    return Task(data, cap(train, config.max_train), cap(val, n_val),
                cap(data.test, config.max_test), note)


def held_out_task(encoder: Encoder, name: str, config: DownstreamConfig,
                  fraction: float = 0.2, cap: int = 2000) -> Task:
    """Registry task ``name`` with a held-out part of its training split (``fraction`` of it,
    at most ``cap`` examples, stratified by class) in place of its test split, which is never
    read: for studies that choose defaults without the test split."""
    full = datasets.get(name)
    keep, held = Dataset.validation_indices(full, fraction, seed=1000)
    held = held[:cap] if len(held) > cap else held
    return prepare(encoder, dataclasses.replace(full, train=full.train.take(keep),
                                                test=full.train.take(held)), config)


def check_modality(encoder: Encoder, name: str, modality: str) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` reads ``modality`` (images or audio)."""
    if modality != encoder.config.modality:
        raise TaskMismatch(f"'{name}' is {modality}, but the encoder was trained on "
                           f"{encoder.config.modality}: use an encoder trained on {modality}")


def check_compatible(encoder: Encoder, data: Dataset) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` can read ``data``: the modality must
    match (grey and colour images are converted: :func:`amortinv.data.adapt_channels`)."""
    check_modality(encoder, data.name, data.modality)


def check_encoders(encoder: Encoder, plain: Encoder | None) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` is amortised (a plain one ignores the
    vector: there is nothing to learn) and the ``plain`` baseline (if any) reads what
    ``encoder`` reads: the same modality and, for images, the same channels (its features
    are computed on the task as it was prepared for ``encoder``). Checked before any work."""
    if encoder.config.conditioning == "none":
        raise TaskMismatch("this is a plain encoder: it ignores the invariance vector, so there "
                           "is nothing to learn; pass an amortised one (a plain encoder is the "
                           "baseline: --plain)")
    if plain is None:
        return
    if _reads(plain) != _reads(encoder):
        raise TaskMismatch(f"the plain encoder reads {_reads(plain)} and the amortised one "
                           f"{_reads(encoder)}: pass a plain encoder pre-trained on the same "
                           "kind of data (e.g. its -plain twin in checkpoints/)")


def _reads(encoder: Encoder) -> str:
    """What ``encoder`` takes, in words: ``audio`` or ``N-channel images``."""
    config = encoder.config
    return "audio" if config.modality == "audio" else f"{config.in_channels}-channel images"


# -- stage 1: joint learning --------------------------------------------------------------------
class Readout(nn.Module):
    """Linear readout on features standardised by a BatchNorm without affine parameters.

    Its weights are drawn as ``nn.Linear`` draws them, but from ``generator`` rather than the
    global random state (the app learns from a thread)."""

    def __init__(self, dim: int, outputs: int, generator: torch.Generator):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.linear = nn.Linear(dim, outputs, device="meta").to_empty(device="cpu")
        bound = 1 / math.sqrt(dim) if dim > 0 else 0.0
        with torch.no_grad():  # nn.Linear.reset_parameters, with a local generator
            nn.init.kaiming_uniform_(self.linear.weight, a=math.sqrt(5), generator=generator)
            nn.init.uniform_(self.linear.bias, -bound, bound, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(z))


class VectorParameter(nn.Module):
    """The learnable invariance vector: clamped values (paper) or sigmoid of logits."""

    def __init__(self, init: torch.Tensor, parameterisation: str):
        super().__init__()
        if parameterisation not in ("clamp", "sigmoid"):
            raise ValueError(f"parameterisation must be 'clamp' or 'sigmoid', "
                             f"got {parameterisation!r}")
        self.sigmoid = parameterisation == "sigmoid"
        start = init.detach().float().clone()
        self.raw = nn.Parameter(torch.logit(start.clamp(1e-4, 1 - 1e-4)) if self.sigmoid
                                else start)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.raw) if self.sigmoid else self.raw

    @torch.no_grad()
    def project(self) -> None:
        if not self.sigmoid:
            self.raw.clamp_(0.0, 1.0)


def task_loss(task: Task, out: torch.Tensor, y: torch.Tensor, regression_loss: str
              ) -> torch.Tensor:
    if task.classification:
        return F.cross_entropy(out, y)
    y = y.view_as(out)
    return F.l1_loss(out, y) if regression_loss == "l1" else F.mse_loss(out, y)


def learn(encoder: Encoder, task: Task, config: DownstreamConfig | None = None,
          stop: threading.Event | None = None, start: VectorLike | None = None,
          features: Features | None = None) -> Iterator[State]:
    """Learn the readout and the invariance vector jointly; yield a :class:`State` per step.

    The vector starts at ``start`` if given; else where ``config.start`` says
    (:func:`corner_start`: the corner that scores best on the validation split, when clearly
    ahead, or ``config.init`` everywhere; callers that go on to the selection, as :func:`fit`
    does, score the corners themselves and pass the start, so that the corners' readouts
    serve both). The start is the path's first
    point: after the readout's warm-up (``config.warmup``) it is scored on the validation
    split, so the path's best vector is never worse there than the start. ``features`` (the
    task's :class:`~amortinv.selection.Features`, as the selection uses them) saves encoding
    the training split at the start once more for the warm-up.

    Stops after ``config.steps`` steps, on early stopping, when ``stop`` is set, or when the
    caller stops iterating. The last state has ``done=True`` and the best vector of the path
    (rounded to a corner with ``config.round_vector``): the gradient-learned vector, which
    :func:`assess` then selects from with the corners.

    The encoder is frozen in eval mode while this runs and left exactly as it was found
    (``requires_grad`` flags, train/eval modes) when the generator ends or is closed early.
    Randomness comes from generators seeded by ``config.seed``: the global random state is
    neither used nor reseeded, so the app can call this from a thread.
    """
    config = config or DownstreamConfig()
    if features is None or features.task is not task or features.precision != config.precision:
        features = Features(encoder, task, config.precision)
    if start is None:
        start = finish(corner_start(encoder, task, config, features))[0]
    with frozen(encoder):
        yield from _learn(encoder, task, config, stop, start, features)


@dataclass
class _Frozen:
    """A module held by :func:`frozen`: how many are inside, and how to leave it."""

    inside: int
    modes: list[tuple[nn.Module, bool]]
    flags: list[tuple[nn.Parameter, bool]]


#: The modules inside :func:`frozen` now (an entry goes with the last to leave).
_FROZEN: dict[nn.Module, _Frozen] = {}
_FROZEN_LOCK = threading.Lock()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode without parameter gradients; restored as it was afterwards.

    The app shares one encoder between browser sessions, so two learning jobs may freeze it
    at once, in two threads, and leave in any order. The first to enter saves the modes and
    flags and the last to leave restores them: each saving its own, the second would save
    the first's frozen state and put it back for good, and the first to leave would thaw the
    encoder under the other."""
    with _FROZEN_LOCK:
        held = _FROZEN.get(module)
        if held is None:
            held = _FROZEN[module] = _Frozen(
                0, [(m, m.training) for m in module.modules()],
                [(p, p.requires_grad) for p in module.parameters()])
            module.eval().requires_grad_(False)
        held.inside += 1
    try:
        yield module
    finally:
        with _FROZEN_LOCK:
            held.inside -= 1
            if not held.inside:
                del _FROZEN[module]
                for m, training in held.modes:
                    m.training = training
                for p, flag in held.flags:
                    p.requires_grad_(flag)


def _learn(encoder: Encoder, task: Task, config: DownstreamConfig,
           stop: threading.Event | None, start: VectorLike, features: Features
           ) -> Iterator[State]:
    space = encoder.space
    g = torch.Generator().manual_seed(config.seed)  # the batches
    init = torch.Generator().manual_seed(config.seed)  # the readout's initial weights
    x_train = encoder.to_input(task.train.x)
    x_val = features.inputs("val")  # scored every eval_every steps
    y_train = _targets(task, task.train.y)
    readout = Readout(encoder.feature_dim, task.data.num_outputs, init).to(encoder.device)
    first = space.vector(start)
    vector = VectorParameter(first, config.parameterisation).to(encoder.device)
    opt_readout = torch.optim.Adam(readout.parameters(), lr=config.lr_readout)
    opt_vector = torch.optim.Adam(vector.parameters(), lr=config.lr_invariance,
                                  weight_decay=0.0)
    batch = min(config.batch_size, len(x_train))
    bf16 = effective_precision(encoder, config) == "bf16"
    if config.warmup or config.standardise == "start":
        z_start = features(vector().detach(), "train")
        _warm_up(readout, opt_readout, z_start, y_train, task, config, g)
        if config.standardise == "start":
            readout.norm.running_mean.copy_(z_start.mean(0))
            readout.norm.running_var.copy_(z_start.var(0))
    best = State(0, {}, float("nan"))
    if config.warmup:  # the start, scored by a readout that already fits it
        best.best_vector = space.to_dict(vector().detach())
        best.best_score = _readout_score(encoder, task, x_val, readout, vector().detach(),
                                         config.precision)
    stale = 0
    for step in range(1, config.steps + 1):
        if stop is not None and stop.is_set():
            break
        idx = torch.randint(len(x_train), (batch,), generator=g)
        readout.train()
        if config.standardise == "start":
            readout.norm.eval()  # the start vector's statistics, not the batch's
        with torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=bf16):
            z = encoder(x_train[idx], vector())
        out = readout(z.float())
        loss = task_loss(task, out, y_train[idx], config.regression_loss)
        opt_readout.zero_grad()
        opt_vector.zero_grad()
        loss.backward()
        opt_readout.step()
        if config.lr_schedule == "cosine":  # large moves first, then settle: less noise late
            opt_vector.param_groups[0]["lr"] = config.lr_invariance * 0.5 * (
                1 + math.cos(math.pi * (step - 1) / config.steps))
        opt_vector.step()
        vector.project()
        current = space.to_dict(vector().detach())
        state = State(step, current, float(loss.detach()))
        if step % config.eval_every == 0 or step == config.steps:
            state.val_score = _readout_score(encoder, task, x_val, readout, vector().detach(),
                                             config.precision)
            if state.val_score > best.best_score:
                best.best_score, best.best_vector, stale = state.val_score, current, 0
            else:
                stale += 1
        state.best_vector, state.best_score = best.best_vector, best.best_score
        yield state
        if stale >= config.patience:
            break
    final = best.best_vector or space.to_dict(vector().detach())
    if config.round_vector:
        final = {k: float(round(v)) for k, v in final.items()}
    yield State(step, final, float("nan"), None, final, best.best_score, done=True)


def _warm_up(readout: Readout, opt: torch.optim.Optimizer, z: torch.Tensor, y: torch.Tensor,
             task: Task, config: DownstreamConfig, g: torch.Generator) -> None:
    """``config.warmup`` readout-only steps on fixed features ``z`` (the start vector's): the
    vector's first gradients then come from a readout that already fits the task."""
    readout.train()
    for _ in range(config.warmup):
        idx = torch.randint(len(z), (min(config.batch_size, len(z)),), generator=g)
        loss = task_loss(task, readout(z[idx].to(readout.linear.weight.device)), y[idx],
                         config.regression_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()


def effective_precision(encoder: Encoder, config: DownstreamConfig) -> str:
    """``bf16`` where ``config`` asks for it and the encoder's device computes it fast
    (:func:`amortinv.models.fast_bf16`), else ``fp32``: what results files record."""
    return "bf16" if config.precision == "bf16" and fast_bf16(encoder.device) else "fp32"


def _targets(task: Task, y: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.long if task.classification else torch.float32)


@torch.no_grad()
def _readout_score(encoder: Encoder, task: Task, x_val: np.ndarray | torch.Tensor | Inputs,
                   readout: Readout, vector: torch.Tensor, precision: str = "fp32") -> float:
    """The jointly trained readout's score on the validation split ``x_val``
    (:meth:`Encoder.reusable`) at ``vector``."""
    readout.eval()
    z = encoder.features(x_val, vector, precision=precision)
    out = readout(z.to(encoder.device)).cpu()
    pred = out.argmax(1).numpy() if task.classification else out.numpy()
    return score(pred, task.val.y, task.classification)


# -- stages 2 and 3: validated selection, then test scores ---------------------------------------
@dataclass
class Scored:
    """Progress of :func:`assess`: ``done`` of ``total`` scores of this ``split`` are in, the
    last one is ``name``'s ``score``. ``val`` while selecting (the gradient vector, then every
    corner), ``test`` afterwards."""

    done: int
    total: int
    name: str
    split: str
    score: float


@dataclass
class Assessment:
    """What :func:`assess` returns: the selection and every test score, by name
    (:data:`GRADIENT`, corners, ``plain``, ``raw_linear``, ``raw_knn``, ``knn_*``)."""

    selection: Selection
    test: dict[str, float]

    @property
    def learned_score(self) -> float:
        return self.test[GRADIENT]

    @property
    def selected_score(self) -> float:
        return self.test[self.selection.chosen.name]


def corner_start(encoder: Encoder, task: Task, config: DownstreamConfig,
                 features: Features | None = None, known: dict[str, Candidate] | None = None
                 ) -> Generator[Scored, None, tuple[dict[str, float], dict[str, Candidate]]]:
    """Where :func:`learn` starts the vector (``config.start``); returns (the start: the best
    corner, or ``config.init`` everywhere, as a named vector to pass to :func:`learn`, which
    then decides nothing again; the corners' :class:`~amortinv.selection.Candidate` s by name,
    for :func:`assess` to reuse).

    ``clear`` and ``corner``: every corner's readout is fitted and scored on the validation
    split, as in the selection (a :class:`Scored` is yielded for each). ``corner`` starts at
    the best one. ``clear`` fits ``config.init`` everywhere too and starts at the best corner
    only if it beats that by more than one standard error of its validation score (the
    selection's rule, :func:`amortinv.selection.within_noise`): on a small validation split the best
    corner is often best by chance, and a start there held the vector near a wrong corner.
    ``init``: nothing is fitted; returns (``config.init`` everywhere, {}).

    The start is chosen on the validation split even where ``config.folds`` cross-validates
    the final choice: :func:`assess` cross-validates these corners then.

    ``known``: every corner's candidate from an earlier run on the same task with the same
    features (:mod:`amortinv.workers` keeps them between the app's jobs), yielded and chosen
    from as if fitted again (the same readouts: fitting is deterministic), on their validation
    split's scores."""
    if config.start == "init":
        return encoder.space.to_dict(config.init), {}
    features = features or Features(encoder, task, config.precision)
    total = 2 ** len(encoder.space) + 1  # the gradient vector's score comes after learning
    fitted = {}
    pool = candidates(features, None) if known is None else (
        dataclasses.replace(c, cv_points=None) for c in known.values())
    for done, candidate in enumerate(pool, 1):
        fitted[candidate.name] = candidate
        yield Scored(done, total, candidate.name, "val", candidate.val_score)
    best = max(fitted.values(), key=lambda c: c.val_score)  # a tie: the corner met first
    if config.start == "clear":
        centre = next(candidates(features, config.init, with_corners=False))
        if within_noise(best, centre):
            return centre.vector, fitted
    return best.vector, fitted


def usable_folds(task: Task, folds: int) -> int:
    """``folds``, or 0 (the validation split) where the training and validation splits
    pooled hold fewer than two examples per fold."""
    return folds if len(task.train.y) + len(task.val.y) >= 2 * folds else 0


def start_name(space: InvarianceSpace, start: dict[str, float]) -> str:
    """Where the vector started (:func:`corner_start`), in words: a corner's name, or the one
    value it held everywhere (``0.5``)."""
    values = set(start.values())
    if values <= {0.0, 1.0}:
        return corner_name(space, start)
    return f"{values.pop():g}" if len(values) == 1 else describe(start)


def assess(encoder: Encoder, task: Task, learned: VectorLike, config: DownstreamConfig,
           plain: Encoder | None = None, with_baselines: bool = True,
           features: Features | None = None, fitted: dict[str, Candidate] | None = None
           ) -> Generator[Scored | Selection, None, Assessment]:
    """Select the task's vector among the gradient vector ``learned`` and every corner
    (:mod:`amortinv.selection`), by cross-validation in ``config.folds`` folds
    (:func:`usable_folds`) or on the validation split, then score on the test split the gradient
    vector, the selected one and, ``with_baselines``, every baseline
    (:mod:`amortinv.baselines`). Yields a :class:`Scored` per score, and the
    :class:`Selection` once it is made (between the two stages); returns the
    :class:`Assessment`. Each vector's features are computed once: ``features`` and the
    corners ``fitted`` before learning (:func:`corner_start`) are reused."""
    features = features or Features(encoder, task, config.precision)
    n_val = 1 + (2 ** len(encoder.space) if config.select else 0)
    fitted = dict(fitted or {}) if config.select else {}
    folds = usable_folds(task, config.folds)
    pending = candidates(features, learned, config.select and not fitted, folds)
    # the start's corners were scored on validation alone: cross-validated now, if asked
    stale = [c for c in fitted.values() if folds > 1 and c.cv_points is None]
    pending = itertools.chain(pending, (cross_validated(features, c, folds) for c in stale))
    for done, candidate in enumerate(pending, len(fitted) - len(stale) + 1):
        fitted[candidate.name] = candidate
        yield Scored(done, n_val, candidate.name, "val", candidate.val_score)
    selection = choose(fitted, encoder.space)
    yield selection
    ahead = [GRADIENT, selection.chosen.name]
    test: dict[str, float] = {}
    scores = ((name, fitted[name].test_score(features)) for name in dict.fromkeys(ahead))
    if with_baselines:
        n_test = 1 + 2 ** len(encoder.space) + (plain is not None) + 1 \
            + (3 if task.classification else 0)
        rest = baseline_scores(encoder, task, selection.gradient.vector, plain, config.seed,
                               features, fitted)
        scores = itertools.chain(scores, ((k, v) for k, v in rest if k not in ahead))
    else:
        n_test = len(dict.fromkeys(ahead))
    for name, value in scores:
        test[name] = value
        yield Scored(len(test), n_test, name, "test", value)
    return Assessment(selection, test)


# -- everything -----------------------------------------------------------------------------------
def fit(encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig | None = None,
        plain: Encoder | None = None, with_baselines: bool = True) -> Result:
    """Learn ``task``'s invariance vector, select the final one (by cross-validation, or on
    the validation split: ``config.folds``), score both on the test split, and
    (``with_baselines``) every baseline.

    ``task`` is a registry name, ``folder:PATH``, a :class:`Dataset`, or a :class:`Task`
    already made by :func:`prepare` with the same ``config`` (it is not prepared again)."""
    config = config or DownstreamConfig()
    start = time.perf_counter()
    check_encoders(encoder, plain)
    prepared = task if isinstance(task, Task) else prepare(encoder, task, config)
    features = Features(encoder, prepared, config.precision)
    begin, fitted = finish(corner_start(encoder, prepared, config, features))
    history = []
    for state in learn(encoder, prepared, config, start=begin, features=features):
        history.append({"step": state.step, "vector": state.vector, "loss": state.loss,
                        "val_score": state.val_score})
    run = assess(encoder, prepared, state.vector, config, plain, with_baselines, features,
                 fitted)
    ahead, select_seconds = set(), None
    while True:
        try:
            record = next(run)
        except StopIteration as end:
            outcome: Assessment = end.value
            break
        if isinstance(record, Selection):
            ahead = {GRADIENT, record.chosen.name}
        elif record.split == "test" and select_seconds is None:
            ahead.discard(record.name)
            if not ahead:  # the gradient-learned and the selected vector are scored
                select_seconds = time.perf_counter() - start
    selection = outcome.selection
    chosen = selection.chosen
    extra = {k: v for k, v in outcome.test.items() if k != GRADIENT} if with_baselines else {}
    return Result(prepared.name, prepared.metric, selection.gradient.vector,
                  outcome.learned_score, selection.gradient.val_score, extra, history[:-1],
                  time.perf_counter() - start, selected=chosen.vector, selected_name=chosen.name,
                  selected_score=outcome.selected_score, selected_val=chosen.val_score,
                  rounded=selection.rounded, precision=effective_precision(encoder, config),
                  select_seconds=select_seconds,
                  val_scores={k: c.val_score for k, c in selection.candidates.items()},
                  reason=selection.reason(),
                  start=start_name(encoder.space, begin),
                  folds=usable_folds(prepared, config.folds))


def finish(run: Generator):
    """What the generator ``run`` returns, its yields dropped."""
    while True:
        try:
            next(run)
        except StopIteration as end:
            return end.value

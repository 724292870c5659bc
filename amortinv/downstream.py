"""Downstream: learn a task's invariance vector together with a linear readout.

The encoder is frozen and in eval mode while it learns (BatchNorm uses its running statistics:
the paper's public code probed in train mode), and is left as it was found afterwards. Two
stages:

1. :func:`learn` — the readout and the vector ``i`` are trained jointly by gradient descent on
   the task loss (the paper: ``i`` starts at 0.5, has its own Adam with lr 0.01 and no weight
   decay, and is clamped to [0, 1] after each step; or ``i = sigmoid(logits)``). Every
   ``eval_every`` steps the vector is scored on a validation split carved from the training
   data; the best vector is kept and training stops early when it stops improving. A generator:
   it yields the live state, so an app can draw it and stop it.
2. :func:`evaluate_vector` — the selected vector is scored exactly like every fixed-vector
   baseline: features at that vector, a linear readout fitted with its regularisation chosen on
   the validation split, one final figure on the test split (the solvers:
   :mod:`amortinv.readout`).

:func:`prepare` turns a dataset into a :class:`Task` (checked against the encoder, subsampled,
validation carved out); :func:`fit` runs both stages and the baselines;
``scripts/downstream.py`` prints its result as JSON.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amortinv import data as datasets
from amortinv.data import Dataset, Split, adapt_channels
from amortinv.invariance import VectorLike
from amortinv.measure import knn_accuracy, raw_features
from amortinv.models import Encoder
from amortinv.readout import fit_linear, score
from amortinv.settings import check_settings, setting


@dataclass
class DownstreamConfig:
    """Settings of invariance learning; the defaults follow the paper. A setting outside its
    allowed values is refused when the config is made."""

    steps: int = setting(150, minimum=1)
    batch_size: int = setting(256, minimum=1)
    lr_readout: float = setting(0.01, above=0)
    lr_invariance: float = setting(0.01, minimum=0)
    init: float = setting(0.5, minimum=0, maximum=1)
    parameterisation: str = setting("clamp", choices=("clamp", "sigmoid"))  # clamp: paper
    regression_loss: str = setting("l1", choices=("l1", "mse"))  # l1: paper
    val_fraction: float = setting(0.1, above=0, below=1)
    eval_every: int = setting(10, minimum=1)
    patience: int = setting(5, minimum=1)  # evaluations without improvement before stopping
    round_vector: bool = False  # round the learned vector to {0, 1} before scoring
    max_train: int = setting(5000, minimum=0)  # examples used (seeded subsample), 0 = all
    max_test: int = setting(0, minimum=0)  # 0 = all
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self)


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

    def to_json(self) -> dict:
        return {"task": self.task_name, "metric": self.metric, "learned": self.learned,
                "learned_score": round(self.learned_score, 4),
                "baselines": {k: round(v, 4) for k, v in self.baselines.items()},
                "val_score": round(self.val_score, 4), "seconds": round(self.seconds, 1)}


class TaskMismatch(ValueError):
    """A task the encoder cannot read (modality, channels) or that has no examples."""


# -- the task -----------------------------------------------------------------------------------
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


def prepare(encoder: Encoder, dataset: str | Dataset, config: DownstreamConfig) -> Task:
    """Load ``dataset`` (a registry name, ``folder:PATH`` or a :class:`Dataset`) and check it
    against ``encoder``; subsample and carve the validation split.

    A registry name of the wrong modality is refused before its data is loaded or rendered.
    """
    if isinstance(dataset, str) and not dataset.startswith("folder:"):
        check_modality(encoder, dataset, datasets.info(dataset).modality)
    data = datasets.get(dataset) if isinstance(dataset, str) else dataset
    if len(data.train) == 0 or len(data.test) == 0:
        raise TaskMismatch(f"task '{data.name}' has an empty split "
                           f"({len(data.train)} train, {len(data.test)} test examples)")
    check_compatible(encoder, data)
    data, note = adapt_channels(data, encoder.config.in_channels)
    rng = np.random.default_rng(config.seed)

    def cap(split: Split, n: int) -> Split:
        return split if not n or len(split) <= n else split.take(
            np.sort(rng.choice(len(split), n, replace=False)))

    train, val = data.validation_split(config.val_fraction, config.seed)
    n_val = round(config.max_train * config.val_fraction) if config.max_train else 0
    return Task(data, cap(train, config.max_train), cap(val, n_val),
                cap(data.test, config.max_test), note)


def check_modality(encoder: Encoder, name: str, modality: str) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` reads ``modality`` (images or audio)."""
    if modality != encoder.config.modality:
        raise TaskMismatch(f"'{name}' is {modality}, but the encoder was trained on "
                           f"{encoder.config.modality}: use an encoder trained on {modality}")


def check_compatible(encoder: Encoder, data: Dataset) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` can read ``data``: the modality must
    match (grey and colour images are converted: :func:`amortinv.data.adapt_channels`)."""
    check_modality(encoder, data.name, data.modality)


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

    def __init__(self, k: int, init: float, parameterisation: str):
        super().__init__()
        if parameterisation not in ("clamp", "sigmoid"):
            raise ValueError(f"parameterisation must be 'clamp' or 'sigmoid', "
                             f"got {parameterisation!r}")
        self.sigmoid = parameterisation == "sigmoid"
        start = torch.full((k,), float(init))
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
          stop: threading.Event | None = None) -> Iterator[State]:
    """Learn the readout and the invariance vector jointly; yield a :class:`State` per step.

    Stops after ``config.steps`` steps, on early stopping, when ``stop`` is set, or when the
    caller stops iterating. The last state has ``done=True`` and the selected vector.

    The encoder is frozen in eval mode while this runs and left exactly as it was found
    (``requires_grad`` flags, train/eval modes) when the generator ends or is closed early.
    Randomness comes from generators seeded by ``config.seed``: the global random state is
    neither used nor reseeded, so the app can call this from a thread.
    """
    config = config or DownstreamConfig()
    with frozen(encoder):
        yield from _learn(encoder, task, config, stop)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode without parameter gradients; restored as it was afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.eval().requires_grad_(False)
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def _learn(encoder: Encoder, task: Task, config: DownstreamConfig,
           stop: threading.Event | None) -> Iterator[State]:
    space = encoder.space
    g = torch.Generator().manual_seed(config.seed)  # the batches
    init = torch.Generator().manual_seed(config.seed)  # the readout's initial weights
    x_train = encoder.to_input(task.train.x)
    y_train = _targets(task, task.train.y)
    readout = Readout(encoder.feature_dim, task.data.num_outputs, init).to(encoder.device)
    vector = VectorParameter(len(space), config.init, config.parameterisation
                             ).to(encoder.device)
    opt_readout = torch.optim.Adam(readout.parameters(), lr=config.lr_readout)
    opt_vector = torch.optim.Adam(vector.parameters(), lr=config.lr_invariance,
                                  weight_decay=0.0)
    best = State(0, {}, float("nan"))
    stale = 0
    for step in range(1, config.steps + 1):
        if stop is not None and stop.is_set():
            break
        idx = torch.randint(len(x_train), (min(config.batch_size, len(x_train)),), generator=g)
        readout.train()
        out = readout(encoder(x_train[idx], vector()))
        loss = task_loss(task, out, y_train[idx], config.regression_loss)
        opt_readout.zero_grad()
        opt_vector.zero_grad()
        loss.backward()
        opt_readout.step()
        opt_vector.step()
        vector.project()
        current = space.to_dict(vector().detach())
        state = State(step, current, float(loss.detach()))
        if step % config.eval_every == 0 or step == config.steps:
            state.val_score = _readout_score(encoder, task, readout, vector().detach())
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


def _targets(task: Task, y: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.long if task.classification else torch.float32)


@torch.no_grad()
def _readout_score(encoder: Encoder, task: Task, readout: Readout, vector: torch.Tensor
                   ) -> float:
    readout.eval()
    z = encoder.features(task.val.x, vector)
    out = readout(z.to(encoder.device)).cpu()
    pred = out.argmax(1).numpy() if task.classification else out.numpy()
    return score(pred, task.val.y, task.classification)


# -- stage 2: a fixed vector, scored like every baseline -----------------------------------------
def split_features(encoder: Encoder, task: Task, vector: VectorLike | float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(encoder.features(s.x, vector) for s in (task.train, task.val, task.test))


def evaluate_vector(encoder: Encoder, task: Task, vector: VectorLike | float
                    ) -> tuple[float, float]:
    """(validation, test) score of a linear readout on the encoder's features at ``vector``."""
    return fit_linear(split_features(encoder, task, vector), task.targets, task.classes)


# -- baselines ------------------------------------------------------------------------------------
def corner_name(space, corner: torch.Tensor, readable: bool = False) -> str:
    """``all_ones``, ``all_zeros``, or the groups that are on, joined by ``+`` (the keys of
    results files). ``readable`` gives the app's labels: ``all ones``, ``crop + flip``."""
    if bool(corner.all()):
        name = "all_ones"
    elif not bool(corner.any()):
        name = "all_zeros"
    else:
        name = "+".join(n for n, v in zip(space.names, corner.tolist(), strict=True) if v)
    return name.replace("_", " ").replace("+", " + ") if readable else name


def baselines(encoder: Encoder, task: Task, learned: dict[str, float] | None = None,
              plain: Encoder | None = None,
              learned_features: tuple[torch.Tensor, ...] | None = None, seed: int = 0
              ) -> dict[str, float]:
    """Test scores of honest alternatives on the same task and splits:

    every corner of the space (all ones and all zeros included), the plain non-amortised
    encoder when given, kNN (k=200) at all ones and at the learned vector for classification,
    and the raw-input floor (linear readout, and kNN, on pixels or log-mel).
    ``learned_features`` (train, val, test at ``learned``) saves computing them again;
    ``seed`` fixes the random projection of large raw inputs."""
    space = encoder.space
    out = {}
    for corner in torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(space)))):
        name = corner_name(space, corner)
        feats = split_features(encoder, task, corner)
        out[name] = fit_linear(feats, task.targets, task.classes)[1]
        if name == "all_ones":
            ones_features = feats  # reused by the kNN baseline: each vector is encoded once
    if plain is not None:
        out["plain"] = evaluate_vector(plain, task, 1.0)[1]
    raw = _raw_inputs(task)
    out["raw_linear"] = fit_linear(_pca(raw, seed=seed), task.targets, task.classes)[1]
    if task.classification:
        out["raw_knn"] = knn_accuracy(raw[0], task.train.y, raw[2], task.test.y)
        if learned is not None and learned_features is None:
            learned_features = split_features(encoder, task, learned)
        for name, feats in (("knn_all_ones", ones_features),
                            ("knn_learned", learned_features)):
            if feats is not None:
                out[name] = knn_accuracy(feats[0], task.train.y, feats[2], task.test.y)
    return out


def raw_input_score(task: Task, seed: int = 0) -> tuple[float, float]:
    """(validation, test) score of the same linear readout on the raw input (pixels or
    log-mel, reduced by PCA): the floor every encoder should clear."""
    return fit_linear(_pca(_raw_inputs(task), seed=seed), task.targets, task.classes)


def _raw_inputs(task: Task) -> list[torch.Tensor]:
    return [raw_features(s.x, task.data.modality) for s in (task.train, task.val, task.test)]


def _pca(zs: list[torch.Tensor], dims: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """Project raw inputs on their top principal components (fitted on train) so the raw
    linear baseline stays quick for large inputs such as log-mel spectrograms.

    Randomised, as ``torch.pca_lowrank(niter=3)`` (Halko et al. 2011), but its random
    matrix comes from a generator seeded by ``seed``, not from the global random state."""
    dims = min(dims, len(zs[0]))  # a small task cannot have more components than examples
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


# -- everything -----------------------------------------------------------------------------------
def fit(encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig | None = None,
        plain: Encoder | None = None, with_baselines: bool = True) -> Result:
    """Learn ``task``'s invariance vector, score it on the test split, and score baselines.

    ``task`` is a registry name, ``folder:PATH``, a :class:`Dataset`, or a :class:`Task`
    already made by :func:`prepare` with the same ``config`` (it is not prepared again)."""
    config = config or DownstreamConfig()
    start = time.perf_counter()
    prepared = task if isinstance(task, Task) else prepare(encoder, task, config)
    history = []
    for state in learn(encoder, prepared, config):
        history.append({"step": state.step, "vector": state.vector, "loss": state.loss,
                        "val_score": state.val_score})
    learned = state.vector
    learned_features = split_features(encoder, prepared, learned)
    val, test = fit_linear(learned_features, prepared.targets, prepared.classes)
    extra = baselines(encoder, prepared, learned, plain, learned_features, config.seed) \
        if with_baselines else {}
    return Result(prepared.name, prepared.metric, learned, test, val, extra, history[:-1],
                  time.perf_counter() - start)

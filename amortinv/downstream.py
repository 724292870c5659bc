"""Downstream: learn a task's invariance vector together with a linear readout.

The encoder is frozen and in eval mode (BatchNorm uses its running statistics: the paper's
public code probed in train mode). Two stages:

1. :func:`learn` — the readout and the vector ``i`` are trained jointly by gradient descent on
   the task loss (the paper: ``i`` starts at 0.5, has its own Adam with lr 0.01 and no weight
   decay, and is clamped to [0, 1] after each step; or ``i = sigmoid(logits)``). Every
   ``eval_every`` steps the vector is scored on a validation split carved from the training
   data; the best vector is kept and training stops early when it stops improving. A generator:
   it yields the live state, so an app can draw it and stop it.
2. :func:`evaluate_vector` — the selected vector is scored exactly like every fixed-vector
   baseline: features at that vector, a linear readout fitted with its regularisation chosen on
   the validation split, one final figure on the test split.

:func:`fit` runs both and the baselines; ``scripts/downstream.py`` prints its result as JSON.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amortinv.data import Dataset, Split, adapt_channels
from amortinv.data import get as get_dataset
from amortinv.invariance import VectorLike
from amortinv.measure import knn_accuracy, raw_features
from amortinv.models import Encoder


@dataclass
class DownstreamConfig:
    """Settings of invariance learning; the defaults follow the paper."""

    steps: int = 150
    batch_size: int = 256
    lr_readout: float = 0.01
    lr_invariance: float = 0.01
    init: float = 0.5
    parameterisation: str = "clamp"  # clamp (paper) | sigmoid
    regression_loss: str = "l1"  # l1 (paper) | mse
    val_fraction: float = 0.1
    eval_every: int = 10
    patience: int = 5  # evaluations without improvement before stopping early
    round_vector: bool = False  # round the learned vector to {0, 1} before scoring
    max_train: int = 5000  # examples used (seeded subsample), 0 = all
    max_test: int = 0
    seed: int = 0


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

    task: str
    metric: str
    learned: dict[str, float]
    learned_score: float
    val_score: float
    baselines: dict[str, float]
    history: list[dict]
    seconds: float

    def to_json(self) -> dict:
        return {"task": self.task, "metric": self.metric, "learned": self.learned,
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
    def classification(self) -> bool:
        return self.data.task == "classification"

    @property
    def metric(self) -> str:
        return "accuracy" if self.classification else "r2"


def prepare(encoder: Encoder, task: str | Dataset, config: DownstreamConfig) -> Task:
    """Load and check ``task`` against ``encoder``; subsample and carve the validation split."""
    data = get_dataset(task) if isinstance(task, str) else task
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


def check_compatible(encoder: Encoder, data: Dataset) -> None:
    """Raise :class:`TaskMismatch` unless ``encoder`` can read ``data``: the modality must
    match (grey and colour images are converted: :func:`amortinv.data.adapt_channels`)."""
    if data.modality != encoder.config.modality:
        raise TaskMismatch(f"'{data.name}' is {data.modality}, but the encoder was trained on "
                           f"{encoder.config.modality}: use an encoder trained on "
                           f"{data.modality}")


# -- stage 1: joint learning --------------------------------------------------------------------
class Readout(nn.Module):
    """Linear readout on features standardised by a BatchNorm without affine parameters."""

    def __init__(self, dim: int, outputs: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.linear = nn.Linear(dim, outputs)

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


def score(task: Task, pred: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy for classification, R² (averaged over outputs) for regression."""
    if task.classification:
        return float((pred == y).mean())
    y = y.reshape(len(y), -1)
    pred = pred.reshape(len(pred), -1)
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - ss_res / np.maximum(ss_tot, 1e-12)))


def mean_per_class_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def learn(encoder: Encoder, task: Task, config: DownstreamConfig | None = None,
          stop: threading.Event | None = None) -> Iterator[State]:
    """Learn the readout and the invariance vector jointly; yield a :class:`State` per step.

    Stops after ``config.steps`` steps, on early stopping, when ``stop`` is set, or when the
    caller stops iterating. The last state has ``done=True`` and the selected vector.
    """
    config = config or DownstreamConfig()
    encoder.eval().requires_grad_(False)
    space = encoder.space
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x_train = encoder.to_input(task.train.x)
    y_train = _targets(task, task.train.y)
    readout = Readout(encoder.feature_dim, task.data.num_outputs).to(encoder.device)
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
    return score(task, pred, task.val.y)


# -- stage 2: a fixed vector, scored like every baseline -----------------------------------------
REGULARISATION = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def fit_linear(task: Task, z_train: torch.Tensor, z_val: torch.Tensor, z_test: torch.Tensor
               ) -> tuple[float, float]:
    """Fit a linear readout on fixed features (standardised by training statistics), choose
    its L2 strength on the validation split; return (validation, test) scores."""
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    zs = [((z - mean) / std).double() for z in (z_train, z_val, z_test)]
    best = (-np.inf, -np.inf)
    for strength in REGULARISATION:
        if task.classification:
            preds = _logistic(zs, task.train.y, task.data.num_outputs, strength)
        else:
            preds = _ridge(zs, task.train.y, strength)
        val = score(task, preds[0], task.val.y)
        if val > best[0]:
            best = (val, score(task, preds[1], task.test.y))
    return best


def _ridge(zs: list[torch.Tensor], y: np.ndarray, strength: float) -> list[np.ndarray]:
    z_train, *rest = zs
    a = torch.cat([z_train, torch.ones(len(z_train), 1, dtype=z_train.dtype)], 1)
    target = torch.as_tensor(y, dtype=a.dtype).reshape(len(y), -1)
    reg = strength * len(a) * torch.eye(a.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0  # the intercept is not penalised
    w = torch.linalg.solve(a.T @ a + reg, a.T @ target)
    return [(torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1) @ w).numpy()
            for z in rest]


def _logistic(zs: list[torch.Tensor], y: np.ndarray, classes: int, strength: float
              ) -> list[np.ndarray]:
    """Multinomial logistic regression, full-batch L-BFGS (deterministic, a second or two)."""
    z_train, *rest = zs
    target = torch.as_tensor(y, dtype=torch.long)
    linear = nn.Linear(z_train.shape[1], classes).double()
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
                 y_test: np.ndarray, classes: int, strength: float = 1e-3) -> float:
    """Test accuracy of a logistic-regression readout on fixed features (the app's live
    probe; standardised by training statistics, one L2 strength)."""
    z_train, z_test = torch.as_tensor(z_train), torch.as_tensor(z_test)
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    zs = [((z - mean) / std).double() for z in (z_train, z_test)]
    pred = _logistic(zs, y_train, classes, strength)[0]
    return float((pred == np.asarray(y_test)).mean())


def split_features(encoder: Encoder, task: Task, vector: VectorLike | float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(encoder.features(s.x, vector) for s in (task.train, task.val, task.test))


def evaluate_vector(encoder: Encoder, task: Task, vector: VectorLike | float
                    ) -> tuple[float, float]:
    """(validation, test) score of a linear readout on the encoder's features at ``vector``."""
    return fit_linear(task, *split_features(encoder, task, vector))


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
              learned_features: tuple[torch.Tensor, ...] | None = None) -> dict[str, float]:
    """Test scores of honest alternatives on the same task and splits:

    every corner of the space (all ones and all zeros included), the plain non-amortised
    encoder when given, kNN (k=200) at all ones and at the learned vector for classification,
    and the raw-input floor (linear readout, and kNN, on pixels or log-mel).
    ``learned_features`` (train, val, test at ``learned``) saves computing them again."""
    space = encoder.space
    out = {}
    for corner in torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(space)))):
        name = corner_name(space, corner)
        feats = split_features(encoder, task, corner)
        out[name] = fit_linear(task, *feats)[1]
        if name == "all_ones":
            ones_features = feats  # reused by the kNN baseline: each vector is encoded once
    if plain is not None:
        out["plain_simclr"] = evaluate_vector(plain, task, 1.0)[1]
    raw = _raw_inputs(task)
    out["raw_linear"] = fit_linear(task, *_pca(raw))[1]
    if task.classification:
        out["raw_knn"] = knn_accuracy(raw[0], task.train.y, raw[2], task.test.y)
        if learned is not None and learned_features is None:
            learned_features = split_features(encoder, task, learned)
        for name, feats in (("knn_all_ones", ones_features),
                            ("knn_learned", learned_features)):
            if feats is not None:
                out[name] = knn_accuracy(feats[0], task.train.y, feats[2], task.test.y)
    return out


def raw_input_score(task: Task) -> tuple[float, float]:
    """(validation, test) score of the same linear readout on the raw input (pixels or
    log-mel, reduced by PCA): the floor every encoder should clear."""
    return fit_linear(task, *_pca(_raw_inputs(task)))


def _raw_inputs(task: Task) -> list[torch.Tensor]:
    return [raw_features(s.x, task.data.modality) for s in (task.train, task.val, task.test)]


def _pca(zs: list[torch.Tensor], dims: int = 256) -> list[torch.Tensor]:
    """Project raw inputs on their top principal components (fitted on train) so the raw
    linear baseline stays quick for large inputs such as log-mel spectrograms."""
    dims = min(dims, len(zs[0]))  # a small task cannot have more components than examples
    if zs[0].shape[1] <= dims:
        return zs
    mean = zs[0].mean(0)
    _, _, v = torch.pca_lowrank(zs[0] - mean, q=dims, center=False, niter=3)
    return [(z - mean) @ v for z in zs]


# -- everything -----------------------------------------------------------------------------------
def fit(encoder: Encoder, task: str | Dataset, config: DownstreamConfig | None = None,
        plain: Encoder | None = None, with_baselines: bool = True) -> Result:
    """Learn ``task``'s invariance vector, score it on the test split, and score baselines."""
    config = config or DownstreamConfig()
    start = time.perf_counter()
    prepared = prepare(encoder, task, config)
    history = []
    for state in learn(encoder, prepared, config):
        history.append({"step": state.step, "vector": state.vector, "loss": state.loss,
                        "val_score": state.val_score})
    learned = state.vector
    learned_features = split_features(encoder, prepared, learned)
    val, test = fit_linear(prepared, *learned_features)
    extra = baselines(encoder, prepared, learned, plain, learned_features) \
        if with_baselines else {}
    return Result(prepared.data.name, prepared.metric, learned, test, val, extra, history[:-1],
                  time.perf_counter() - start)

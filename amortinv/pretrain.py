"""Amortised contrastive pre-training: the loop behind ``scripts/pretrain.py``.

Each step draws ONE invariance vector for the batch (corners as in the paper, or continuous
values), makes two views with the batched augmentation gated by it on the training device,
encodes both with that vector and applies the contrastive loss (SimCLR NT-Xent or MoCo-v2).

Everything random at step ``t`` is derived from ``(seed, t)`` (batch, vector, augmentation),
so ``--resume`` continues exactly: N steps straight give the same weights as N/2, stop, resume,
N/2. Several processes (``torchrun``) split each global batch; every rank draws the same vector.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import amortinv
from amortinv import data as datasets
from amortinv.augment import make_augment
from amortinv.devices import resolve_device
from amortinv.distributed import Process, close_distributed, from_rank_zero, init_distributed
from amortinv.invariance import default_space, get_space
from amortinv.losses import KeyQueue, info_nce, momentum_update, nt_xent
from amortinv.models import Encoder, ModelConfig
from amortinv.models.heads import projection_head
from amortinv.monitor import KnnMonitor
from amortinv.optim import cosine_lr, make_optimizer
from amortinv.presets import HELP, PRESET_NOTES, PRESETS, RENAMED, PretrainConfig, preset
from amortinv.run_state import (
    Log,
    TrainingState,
    check_fresh,
    claim_run_folder,
    restore_run,
    save_run,
)
from amortinv.settings import AUTO
from amortinv.time_budget import OPEN_STEPS, TimeBudget

__all__ = ["HELP", "PRESETS", "PRESET_NOTES", "RENAMED", "PretrainConfig", "Trainer",
           "TrainingDiverged", "TrainingInterrupted", "close_distributed", "preset",
           "pretrain"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Stopped by the user (Ctrl-C) after a step, which was saved: ``--resume`` continues."""


class ContrastiveModel(nn.Module):
    """Encoder plus projection head(s): what the contrastive loss trains (and DDP wraps)."""

    def __init__(self, encoder: Encoder, heads: nn.ModuleList):
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, x: torch.Tensor, invariance: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.heads[head](self.encoder(x, invariance))


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Batch:
    vector: torch.Tensor
    corner: int  # index among the corners, -1 for a continuous vector
    index: np.ndarray  # this rank's examples
    generator: torch.Generator  # augmentation randomness of this step and rank


@dataclass
class Trainer:
    """Holds the model, data and optimiser of one run; :meth:`run` trains.

    Its parts: the run's state on disk (:mod:`amortinv.run_state`), the kNN monitor
    (:mod:`amortinv.monitor`); here, set-up, one step (batch, vector, views, loss) and the loop.
    """

    config: PretrainConfig
    process: Process = field(default_factory=Process)
    #: Images to train on instead of ``config.dataset`` (benchmarks): uint8 (N, C, H, W).
    images: np.ndarray | None = None

    def __post_init__(self) -> None:
        cfg = self.config = self.config.resolved()
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out)
        self.inputs, self.modality, self.sample_shape = self._load_inputs()
        channels = self.sample_shape[0] if self.modality == "image" else 1
        self.space = default_space(self.modality, channels) if cfg.space == AUTO \
            else get_space(cfg.space)
        self.corners = self.space.corners(None if cfg.min_on == AUTO else cfg.min_on)
        if cfg.method == "moco" and cfg.per_corner and cfg.sampling != "corners":
            raise ValueError("per-corner MoCo heads need corner sampling: use "
                             "--sampling corners or --no-per-corner")
        model_cfg = ModelConfig(
            arch=cfg.arch, conditioning=cfg.conditioning, bases=cfg.bases,
            conditioned_stages=cfg.conditioned_stages, width=cfg.width, stem=cfg.stem,
            bands=cfg.bands,
            modality=self.modality, in_channels=channels,
            image_size=self.sample_shape[-1] if self.modality == "image" else 0,
            resize=self.modality == "image" and cfg.image_size != AUTO,
        )
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
        self.encoder = Encoder(model_cfg, self.space, self._card()).to(self.device)
        self._set_normalisation()
        n_heads = len(self.corners) if cfg.method == "moco" and cfg.per_corner else 1
        heads = nn.ModuleList(
            projection_head(self.encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim)
            for _ in range(n_heads))
        self.model = ContrastiveModel(self.encoder, heads).to(self.device)
        self.target = self.queues = None
        if cfg.method == "moco":
            self.target = copy.deepcopy(self.model).requires_grad_(False)
            self.queues = KeyQueue(n_heads, cfg.queue_size, cfg.proj_dim,
                                   torch.Generator().manual_seed(cfg.seed)).to(self.device)
        if cfg.channels_last and self.modality == "image":
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(cfg.optimizer, self.model, cfg.lr, cfg.weight_decay,
                                        fused=self.device.type == "cuda")
        self.state = TrainingState(self.model, self.optimizer, self.target, self.queues)
        self.augment = make_augment(self.space)
        self.monitor = KnnMonitor(cfg.knn_dataset or cfg.dataset.split(",")[0].strip(),
                                  cfg.knn_train, cfg.knn_test)
        self.step = 0
        #: Set to end the run after the step under way, saved (:func:`pretrain`'s Ctrl-C).
        self.stop_requested = False
        #: What a training step calls: the model, DDP-wrapped across processes, compiled
        #: when asked.
        self.step_model = self._parallel()
        if cfg.compile:
            self.step_model = torch.compile(self.step_model)
        self.heads = self.model.heads

    # -- set-up ----------------------------------------------------------------------------------
    def _load_inputs(self) -> tuple[torch.Tensor, str, tuple[int, ...]]:
        if self.images is not None:
            return torch.from_numpy(self.images).to(self.device), "image", self.images.shape[1:]
        parts = [datasets.get(n.strip()) for n in self.config.dataset.split(",") if n.strip()]
        if not parts:
            raise ValueError("no dataset given")
        modality, shape = parts[0].modality, parts[0].input_shape
        for p in parts[1:]:
            if (p.modality, p.input_shape) != (modality, shape):
                raise ValueError(f"datasets to join must share modality and input shape: "
                                 f"'{parts[0].name}' is {modality} {shape}, '{p.name}' is "
                                 f"{p.modality} {p.input_shape}")
        x = torch.from_numpy(np.concatenate([p.train.x for p in parts]))
        size = self.config.image_size
        if modality == "image" and size != AUTO and tuple(shape[1:]) != (size, size):
            x, shape = resize_images(x, size), (shape[0], size, size)
        return x.to(self.device), modality, tuple(shape)

    def _card(self) -> dict:
        cfg = self.config
        return {"dataset": cfg.dataset, "preset": cfg.preset, "method": cfg.method,
                "sampling": cfg.sampling, "pretrain": asdict(cfg),
                "code_version": amortinv.__version__, "metrics": {},
                "command": " ".join(["python", *sys.argv]),
                "hardware": describe_hardware(self.device, self.process.world),
                "wall_seconds": 0.0}

    def _set_normalisation(self) -> None:
        """Mean and std of the augmentation domain, from 2,048 examples spread over the data
        (joined datasets each count): one pair, or one per mel bin (``input_stats``)."""
        spread = torch.linspace(0, len(self.inputs) - 1, min(2048, len(self.inputs))).long()
        with torch.no_grad():
            sample = self.encoder.to_input(self.inputs[spread.to(self.inputs.device)])
        if self.config.input_stats == "per-bin":
            if self.modality != "audio":
                raise ValueError("--input-stats per-bin is for audio (one mean and std per mel "
                                 "bin); use global for images")
            mean, std = sample.mean(dim=(0, 2)), sample.std(dim=(0, 2)).clamp_min(1e-6)
            self.encoder.config.input_mean = tuple(round(float(v), 5) for v in mean)
            self.encoder.config.input_std = tuple(round(float(v), 5) for v in std)
            return
        self.encoder.config.input_mean = float(sample.mean())
        self.encoder.config.input_std = float(sample.std().clamp_min(1e-6))

    def _parallel(self) -> nn.Module:
        """The model as the processes of a torchrun train it (DDP), else itself."""
        if not dist.is_initialized():
            return self.model
        return nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=len(self.model.heads) > 1)  # one MoCo head per step

    # -- one step --------------------------------------------------------------------------------
    def batch(self, step: int) -> Batch:
        """The examples, vector and augmentation randomness of ``step`` (pure in step)."""
        cfg, world = self.config, self.process.world
        per_epoch = len(self.inputs) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(self.inputs)} "
                             "training examples")
        epoch, position = divmod(step, per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.inputs))
        index = order[position * cfg.batch_size:(position + 1) * cfg.batch_size]
        shard = len(index) // world
        index = index[self.process.rank * shard:(self.process.rank + 1) * shard]
        g = torch.Generator().manual_seed(hash_seed(cfg.seed, step, 0))
        if cfg.sampling == "corners":
            corner = int(torch.randint(len(self.corners), (1,), generator=g))
            vector = self.corners[corner]
        else:
            vector = self.space.sample(1, cfg.sampling, generator=g)[0]
            matches = (self.corners == vector).all(1).nonzero()
            corner = int(matches[0]) if len(matches) else -1
        aug = torch.Generator().manual_seed(hash_seed(cfg.seed, step, 1 + self.process.rank))
        return Batch(vector, corner, index, aug)

    def loss(self, b: Batch) -> torch.Tensor:
        cfg = self.config
        x = self.encoder.to_input(self.inputs[torch.from_numpy(b.index).to(self.device)])
        v1, v2 = self.augment.views(x, b.vector, generator=b.generator)
        if cfg.channels_last and self.modality == "image":
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        vector = b.vector.to(self.device)
        with self._autocast():
            if cfg.method == "simclr":
                z1, z2 = self.step_model(torch.cat([v1, v2]), vector).chunk(2)
                return nt_xent(z1, z2, cfg.temperature, across_processes=True)
            head = max(b.corner, 0) if len(self.heads) > 1 else 0
            q = self.step_model(v1, vector, head)
            with torch.no_grad():
                k = self.target(v2, vector, head)
            loss = info_nce(q, k, self.queues.keys(head), cfg.temperature)
        self._pending_keys = (k, head)
        return loss

    def _autocast(self):
        if self.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> float:
        cfg = self.config
        lr = cosine_lr(self.step, cfg.steps, cfg.lr, cfg.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.loss(self.batch(self.step))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise self._diverged(f"the loss became {value} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if cfg.method == "moco":
            momentum_update(self.model, self.target, cfg.moco_momentum)
            keys, head = self._pending_keys
            self.queues.enqueue(self._gather(keys.float()), head)
        self.step += 1
        return value

    def _gather(self, keys: torch.Tensor) -> torch.Tensor:
        if self.process.world == 1:
            return keys
        out = [torch.empty_like(keys) for _ in range(self.process.world)]
        dist.all_gather(out, keys.contiguous())
        return torch.cat(out)

    def _diverged(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(
            f"{what}; the last good checkpoint in {self.out} is kept. Start a new run (another "
            "--out) with a lower --lr, a longer --warmup-steps (at most a tenth of --steps "
            "counts) or --optimizer adamw: --resume continues only with the same settings")

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, metrics: dict) -> None:
        """Write ``last.safetensors`` (to resume) and ``encoder.safetensors`` (to use), unless
        a weight or a running statistic is no longer finite: a step can ruin them before the
        next step's loss shows it, and the last good checkpoint must stay the last."""
        if not self.process.main:
            return
        tensors = {k: t for k, t in self.model.state_dict().items() if t.is_floating_point()}
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors.values()]).all()):
            ruined = [k for k, t in tensors.items() if not bool(torch.isfinite(t).all())]
            raise self._diverged(f"{len(ruined)} weights or statistics became NaN or infinite "
                                 f"by step {self.step} (e.g. {ruined[0]})")
        self.encoder.card["metrics"] = metrics
        self.encoder.card["steps"] = self.step
        save_run(self.out, self.state, self.encoder, self.step, self.config)

    def restore(self) -> None:
        """Continue from ``last.safetensors`` in the run folder."""
        self.step = restore_run(self.out, self.state, self.encoder, self.config)
        if self.process.main:
            Log.truncate(self.out, self.step)

    def run(self) -> Iterator[dict]:
        """Train to ``config.steps``, yielding each logged record (also written to
        ``metrics.jsonl``); checkpoints every ``checkpoint_every`` steps and at the end. With
        ``config.minutes`` the total is fixed once the first steps are timed
        (:mod:`amortinv.time_budget`). While it trains, the run folder is this run's alone:
        another run pointed at it (another app user, another terminal) stops at once
        (:func:`~amortinv.run_state.claim_run_folder`)."""
        with claim_run_folder(self.out) if self.process.main else contextlib.nullcontext():
            yield from self._run()

    def _run(self) -> Iterator[dict]:
        cfg = self.config
        if cfg.resume:
            self.restore()
        elif self.process.main:
            check_fresh(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        log = Log(self.out, self.process.main, cfg.tensorboard, fresh=not cfg.resume)
        self.metrics = dict(self.encoder.card.get("metrics", {}))
        budget = self._time_budget()
        bar = progress(None if budget else cfg.steps, self.step,
                       cfg.progress and self.process.main)
        images, clock = 0, time.perf_counter()
        started, wall_before = time.perf_counter(), self.encoder.card.get("wall_seconds", 0.0)

        def checkpoint() -> None:
            self.encoder.card["wall_seconds"] = round(
                wall_before + time.perf_counter() - started, 1)
            self.save(self.metrics)

        try:
            while self.step < self.config.steps:
                cfg = self.config
                loss = self.train_step()
                images += cfg.batch_size
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - clock
                    record = {"step": self.step, "loss": round(loss, 5),
                              "lr": self.optimizer.param_groups[0]["lr"],
                              "img_s": round(images / elapsed, 1)}
                    images, clock = 0, time.perf_counter()
                    bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{record['img_s']:.0f}")
                    log.write(record)
                    yield record
                evaluate = cfg.knn_every and self.step % cfg.knn_every == 0
                if (evaluate or self.step == cfg.steps) and self.process.main:
                    record = self._knn(log)
                    if record:
                        yield record
                    images, clock = 0, time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    checkpoint()
                if self.stop_requested and self.step < cfg.steps:
                    checkpoint()
                    raise TrainingInterrupted(
                        f"stopped at step {self.step} of {cfg.steps}, saved in {self.out}: "
                        "continue with the same command and --resume")
                if budget is None or self.step >= self.config.steps:
                    continue
                if "time_budget" not in self.encoder.card:  # still timing the first steps
                    if from_rank_zero(budget.timed(), self.device):
                        yield from self._fix_total(budget, log, checkpoint)
                        bar.total = self.config.steps
                        bar.refresh()
                        images, clock = 0, time.perf_counter()
                elif from_rank_zero(budget.overdue(), self.device):  # end now, not late
                    self.config = replace(self.config, steps=self.step + 1)
                    self.encoder.card["time_budget"]["ended_early_at"] = self.step + 1
        finally:
            bar.close()
            log.close()

    def _knn(self, log: Log) -> dict | None:
        """Run the kNN monitor (main process), log and return its record."""
        knn = self.monitor(self.encoder)
        if not knn:
            return None
        self.metrics = {f"knn_{k}": v for k, v in knn.items()}
        record = {"step": self.step, "knn": knn}
        log.write(record)
        return record

    # -- --minutes -------------------------------------------------------------------------------
    def _time_budget(self) -> TimeBudget | None:
        """The clock of a ``--minutes`` run; None for a run of ``--steps``, or a resumed timed
        run (it keeps the total it fixed)."""
        cfg = self.config
        if not cfg.minutes:
            return None
        planned = (self.encoder.card.get("time_budget") or {}).get("planned_steps")
        if cfg.resume and planned:
            self.config = replace(cfg, steps=planned)
            return None
        self.encoder.card.pop("time_budget", None)
        self.config = replace(cfg, steps=OPEN_STEPS)
        return TimeBudget(cfg.minutes)

    def _fix_total(self, budget: TimeBudget, log: Log, checkpoint) -> Iterator[dict]:
        """Fix the run's total steps from the timed steps: time one kNN evaluation (also a
        first point of the curve) and one checkpoint (also a point to resume from), then
        take the steps that fit in what is left (rank 0 decides for every process)."""
        cfg = self.config
        clock = time.perf_counter()
        if self.process.main:
            record = self._knn(log)
            if record:
                yield record
        eval_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        checkpoint()
        save_seconds = time.perf_counter() - clock
        total = from_rank_zero(budget.total_steps(
            self.step, eval_seconds=eval_seconds, eval_every=cfg.knn_every,
            save_seconds=save_seconds, save_every=cfg.checkpoint_every), self.device)
        self.config = replace(cfg, steps=total)
        plan = {"minutes": cfg.minutes, "timed_steps": budget.timed_steps,
                "step_seconds": round(budget.step_seconds, 5),
                "eval_seconds": round(eval_seconds, 3), "save_seconds": round(save_seconds, 3),
                "fixed_at_step": self.step, "planned_steps": total}
        self.encoder.card["time_budget"] = plan
        self.encoder.card["pretrain"]["steps"] = total
        checkpoint()  # again, with the plan: a run stopped before its next save resumes to it
        record = {"step": self.step, **plan}
        log.write(record)
        yield record


def resize_images(x: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` resized to ``size`` x ``size`` once, before training, the
    way the encoder resizes its inputs (bilinear, antialiased)."""
    out = []
    for i in range(0, len(x), chunk):
        part = torch.nn.functional.interpolate(x[i:i + chunk].float() / 255.0, size=(size, size),
                                               mode="bilinear", align_corners=False,
                                               antialias=True)
        out.append((part.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def describe_hardware(device: torch.device, world: int = 1) -> str:
    """The machine, in words, for checkpoint cards."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{world} x {what}" if world > 1 else what


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def progress(total: int, initial: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not show, unit="step",
                dynamic_ncols=True, desc="pre-training")


def pretrain(config: PretrainConfig) -> Trainer:
    """Run a whole pre-training (single process, or one rank under torchrun)."""
    device = resolve_device(config.device)
    process = init_distributed(device)
    if device.type == "cuda" and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", process.rank)) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        config = replace(config, device=f"cuda:{local}")
    trainer = Trainer(config, process)
    with _stop_on_interrupt(trainer):
        for _ in trainer.run():
            pass
    return trainer


@contextlib.contextmanager
def _stop_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C ends a one-process run after the step under way, saved (it would lose every
    step since the last checkpoint, up to ``checkpoint_every``); a second Ctrl-C leaves at
    once, the last checkpoint kept. Processes under torchrun keep the default: they must
    stop at the same step."""
    if trainer.process.world > 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum, frame) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        print("\nstopping after this step, saved (Ctrl-C again: stop at once, unsaved)",
              file=sys.stderr, flush=True)

    before = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)

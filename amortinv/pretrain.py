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
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import amortinv
from amortinv import checkpoint
from amortinv import data as datasets
from amortinv.augment import make_augment
from amortinv.invariance import default_space, get_space
from amortinv.losses import KeyQueue, info_nce, momentum_update, nt_xent
from amortinv.measure import knn_accuracy
from amortinv.models import Encoder, ModelConfig
from amortinv.models.heads import projection_head
from amortinv.optim import cosine_lr, make_optimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ContrastiveModel(nn.Module):
    """Encoder plus projection head(s): what the contrastive loss trains (and DDP wraps)."""

    def __init__(self, encoder: Encoder, heads: nn.ModuleList):
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, x: torch.Tensor, invariance: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.heads[head](self.encoder(x, invariance))


@dataclass
class PretrainConfig:
    """Every setting of a pre-training run (``scripts/pretrain.py --help`` lists them)."""

    # data: one dataset, or several of one modality joined with commas (inputs only are used)
    dataset: str = "fashion-mnist"
    space: str = ""  # invariance space; empty: the default for the data (rgb, grey, audio)
    # model
    arch: str = "resnet18"
    conditioning: str = "hyper"  # hyper (paper) | film (cheap) | none (plain SimCLR/MoCo)
    bases: int = 32
    conditioned_stages: tuple[int, ...] = (1, 2, 3, 4)
    width: int = 64
    stem: str = "small"
    # method
    method: str = "simclr"  # simclr | moco
    temperature: float = 0.0  # 0: the method's default (SimCLR 0.5, MoCo-v2 0.1)
    proj_hidden: int = 512
    proj_dim: int = 128
    moco_momentum: float = 0.99
    queue_size: int = 4096
    per_config: bool = True  # MoCo: one head and queue per corner (paper), else shared
    sampling: str = "corners"  # corners (paper) | continuous | mixed
    min_on: int = -1  # corners with at least this many groups on; -1: the paper's choice
    # optimisation
    steps: int = 1000
    batch_size: int = 512
    optimizer: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.6
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    # speed
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast on CUDA
    channels_last: bool = True
    compile: bool = False
    # bookkeeping
    out: str = ""  # run folder; empty: runs/<preset>
    seed: int = 0
    log_every: int = 20
    knn_every: int = 500  # 0: only at the end
    knn_dataset: str = ""  # empty: the first dataset
    knn_train: int = 5000
    knn_test: int = 1000
    checkpoint_every: int = 500
    tensorboard: bool = False
    resume: bool = False
    progress: bool = True
    preset: str = "custom"

    def resolved(self) -> PretrainConfig:
        """Fill in the defaults that depend on other settings."""
        out = self.out or f"runs/{self.preset}"
        temperature = self.temperature or (0.1 if self.method == "moco" else 0.5)
        return replace(self, out=out, temperature=temperature)


#: Named presets; a command-line flag overrides any of their settings.
PRESETS: dict[str, dict] = {
    "cpu-fmnist": dict(
        dataset="fashion-mnist", arch="resnet18", width=16, conditioning="hyper", bases=4,
        batch_size=256, steps=6000, optimizer="sgd", lr=0.5, weight_decay=5e-4,
        warmup_steps=200, knn_every=1000, checkpoint_every=500, bf16=False,
    ),
    "cpu-fmnist-plain": dict(
        dataset="fashion-mnist", arch="resnet18", width=16, conditioning="none",
        batch_size=256, steps=6000, optimizer="sgd", lr=0.5, weight_decay=5e-4,
        warmup_steps=200, knn_every=1000, checkpoint_every=500, bf16=False,
    ),
    "gpu-fmnist": dict(
        dataset="fashion-mnist", arch="resnet18", width=64, conditioning="hyper", bases=32,
        batch_size=512, steps=20000, optimizer="lars", lr=1.2, weight_decay=1e-6,
        warmup_steps=1000, knn_every=2000, checkpoint_every=2000, compile=True,
    ),
    "gpu-fmnist-film": dict(
        dataset="fashion-mnist", arch="resnet18", width=64, conditioning="film",
        batch_size=512, steps=20000, optimizer="lars", lr=1.2, weight_decay=1e-6,
        warmup_steps=1000, knn_every=2000, checkpoint_every=2000, compile=True,
    ),
    "cpu-audio": dict(
        dataset="spoken-digits,notes-family,tuxpaint-speech", arch="resnet18", width=16,
        stem="imagenet", conditioning="hyper", bases=4, batch_size=128, steps=3000,
        optimizer="sgd", lr=0.2, weight_decay=5e-4, warmup_steps=200, knn_every=1000,
        bf16=False,
    ),
    "gpu-audio": dict(
        dataset="spoken-digits,notes-family,tuxpaint-speech", arch="resnet18", width=64,
        stem="imagenet", conditioning="hyper", bases=32, batch_size=512, steps=10000,
        optimizer="lars", lr=1.2, weight_decay=1e-6, warmup_steps=500, knn_every=2000,
    ),
    "smoke": dict(
        dataset="sklearn-digits", arch="resnet18", width=8, conditioning="hyper", bases=2,
        batch_size=32, steps=4, lr=0.05, warmup_steps=1, knn_every=0, knn_train=200,
        knn_test=100, checkpoint_every=2, log_every=1, bf16=False, progress=False,
    ),
}


PRESET_NOTES: dict[str, str] = {
    "cpu-fmnist": "Fashion-MNIST, width-16 ResNet-18, 4-basis hypernetwork, SimCLR on corners; "
    "~40 min on 2 CPU cores",
    "cpu-fmnist-plain": "the same budget without conditioning: the plain SimCLR baseline",
    "gpu-fmnist": "Fashion-MNIST, ResNet-18, the paper's 32-basis hypernetwork, LARS, bf16, "
    "torch.compile",
    "gpu-fmnist-film": "as gpu-fmnist with FiLM conditioning (the cheap option)",
    "cpu-audio": "spoken digits + instrument notes + speech, log-mel ResNet-18 (width 16), "
    "4-basis hypernetwork, on 2 CPU cores",
    "gpu-audio": "the same audio mix with a full-width ResNet-18 and 32 bases, on a GPU",
    "smoke": "a few steps on scikit-learn digits: checks that everything runs",
}

#: One line per setting, for ``--help``.
HELP: dict[str, str] = {
    "dataset": "dataset name(s) from `python -m amortinv.data list`, comma-separated to join",
    "space": "invariance space (rgb, grey, spatial-appearance, audio); default from the data",
    "arch": "resnet18 | resnet50 | vit-tiny | vit-small",
    "conditioning": "hyper (paper's hypernetwork) | film (conditional norms) | none (plain)",
    "bases": "basis kernels per generated conv (paper: 32)",
    "conditioned_stages": "which ResNet stages (1-4) are conditioned",
    "width": "channels of the first ResNet stage (standard: 64)",
    "stem": "small (3x3, no down-sampling, for 28-64 px) | imagenet (7x7/2 + pool)",
    "method": "simclr (NT-Xent) | moco (MoCo-v2: momentum encoder and key queues)",
    "temperature": "contrastive temperature; 0 = the method's default (0.5 / 0.1)",
    "proj_hidden": "hidden width of the projection head",
    "proj_dim": "output width of the projection head",
    "moco_momentum": "EMA momentum of the MoCo key encoder",
    "queue_size": "keys per MoCo queue",
    "per_config": "MoCo: one head and queue per invariance corner (paper) instead of one",
    "sampling": "invariance vectors: corners (paper) | continuous | mixed",
    "min_on": "corners need at least this many groups on; -1 = paper (2, or 1 when K=2)",
    "steps": "optimizer steps in total",
    "batch_size": "examples per step, across all processes (two views each)",
    "optimizer": "sgd | lars | adamw",
    "lr": "peak learning rate (after warm-up; cosine decay to zero)",
    "weight_decay": "weight decay (not on biases and norms)",
    "warmup_steps": "linear warm-up steps",
    "device": "auto | cpu | cuda | cuda:N",
    "bf16": "bfloat16 autocast on CUDA",
    "channels_last": "channels-last memory format for images",
    "compile": "torch.compile the encoder",
    "out": "run folder (checkpoints, metrics.jsonl); default runs/<preset>",
    "seed": "seed of every random draw",
    "log_every": "steps between metric records",
    "knn_every": "steps between kNN evaluations (0: only at the end)",
    "knn_dataset": "labelled dataset for kNN monitoring; default the first dataset",
    "knn_train": "training examples used by the kNN monitor",
    "knn_test": "test examples used by the kNN monitor",
    "checkpoint_every": "steps between checkpoints",
    "tensorboard": "also log to TensorBoard (needs the tensorboard package)",
    "resume": "continue the run in --out exactly where it stopped",
    "progress": "show a progress bar",
    "preset": "(set by --preset)",
}


def preset(name: str, **overrides) -> PretrainConfig:
    """A preset's config with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in fields(PretrainConfig)})
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
    return PretrainConfig(**{**PRESETS[name], "preset": name, **overrides})


# -- distributed ---------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group that ``torchrun`` describes (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def close_distributed() -> None:
    """Barrier then destroy: without the barrier, gloo teardown aborts ~1 run in 2."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Batch:
    vector: torch.Tensor
    corner: int  # index among the corners, -1 for a continuous vector
    index: np.ndarray  # this rank's examples
    generator: torch.Generator  # augmentation randomness of this step and rank


@dataclass
class Trainer:
    """Holds the model, data and optimiser of one run; :meth:`run` trains."""

    config: PretrainConfig
    rank: Dist = field(default_factory=Dist)
    #: Images to train on instead of ``config.dataset`` (benchmarks): uint8 (N, C, H, W).
    images: np.ndarray | None = None

    def __post_init__(self) -> None:
        cfg = self.config = self.config.resolved()
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto"
            else cfg.device)
        self.out = Path(cfg.out)
        self.inputs, self.modality, self.sample_shape = self._load_inputs()
        channels = self.sample_shape[0] if self.modality == "image" else 1
        self.space = get_space(cfg.space) if cfg.space else default_space(self.modality,
                                                                           channels)
        self.corners = self.space.corners(None if cfg.min_on < 0 else cfg.min_on)
        if cfg.method == "moco" and cfg.per_config and cfg.sampling != "corners":
            raise ValueError("per-configuration MoCo heads need corner sampling: use "
                             "--sampling corners or --no-per-config")
        model_cfg = ModelConfig(
            arch=cfg.arch, conditioning=cfg.conditioning, bases=cfg.bases,
            conditioned_stages=cfg.conditioned_stages, width=cfg.width, stem=cfg.stem,
            modality=self.modality, in_channels=channels,
            image_size=self.sample_shape[-1] if self.modality == "image" else 0,
        )
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
        self.encoder = Encoder(model_cfg, self.space, self._card()).to(self.device)
        self._set_normalisation()
        n_heads = len(self.corners) if cfg.method == "moco" and cfg.per_config else 1
        heads = nn.ModuleList(
            projection_head(self.encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim)
            for _ in range(n_heads))
        self.model = ContrastiveModel(self.encoder, heads).to(self.device)
        if cfg.method == "moco":
            self.target = copy.deepcopy(self.model).requires_grad_(False)
            self.queues = KeyQueue(n_heads, cfg.queue_size, cfg.proj_dim,
                                   torch.Generator().manual_seed(cfg.seed)).to(self.device)
        elif cfg.method != "simclr":
            raise ValueError(f"method must be 'simclr' or 'moco', got {cfg.method!r}")
        if cfg.channels_last and self.modality == "image":
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(cfg.optimizer, self.model, cfg.lr, cfg.weight_decay,
                                        fused=self.device.type == "cuda")
        self.augment = make_augment(self.space)
        self.step = 0
        self.ddp = self._wrap_ddp()
        self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp
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
        return x.to(self.device), modality, tuple(shape)

    def _card(self) -> dict:
        cfg = self.config
        return {"dataset": cfg.dataset, "preset": cfg.preset, "method": cfg.method,
                "sampling": cfg.sampling, "pretrain": asdict(cfg),
                "code_version": amortinv.__version__, "metrics": {}}

    def _set_normalisation(self) -> None:
        """Mean and std of the augmentation domain, from the first 2,048 examples."""
        with torch.no_grad():
            sample = self.encoder.to_input(self.inputs[:2048])
        self.encoder.config.input_mean = float(sample.mean())
        self.encoder.config.input_std = float(sample.std().clamp_min(1e-6))

    def _wrap_ddp(self) -> nn.Module:
        if self.rank.world == 1:
            return self.model
        return nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=len(self.model.heads) > 1)  # one MoCo head per step

    # -- one step --------------------------------------------------------------------------------
    def batch(self, step: int) -> Batch:
        """The examples, vector and augmentation randomness of ``step`` (pure in step)."""
        cfg, world = self.config, self.rank.world
        per_epoch = len(self.inputs) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(self.inputs)} "
                             "training examples")
        epoch, position = divmod(step, per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.inputs))
        index = order[position * cfg.batch_size:(position + 1) * cfg.batch_size]
        shard = len(index) // world
        index = index[self.rank.rank * shard:(self.rank.rank + 1) * shard]
        g = torch.Generator().manual_seed(hash_seed(cfg.seed, step, 0))
        if cfg.sampling == "corners":
            corner = int(torch.randint(len(self.corners), (1,), generator=g))
            vector = self.corners[corner]
        else:
            vector = self.space.sample(1, cfg.sampling, generator=g)[0]
            matches = (self.corners == vector).all(1).nonzero()
            corner = int(matches[0]) if len(matches) else -1
        aug = torch.Generator().manual_seed(hash_seed(cfg.seed, step, 1 + self.rank.rank))
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
                z1, z2 = self.forward(torch.cat([v1, v2]), vector).chunk(2)
                return nt_xent(z1, z2, cfg.temperature)
            head = max(b.corner, 0) if len(self.heads) > 1 else 0
            q = self.forward(v1, vector, head)
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
        lr = cosine_lr(self.step, cfg.steps, cfg.lr, cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.loss(self.batch(self.step))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the loss became {value} at step {self.step}; the last good checkpoint in "
                f"{self.out} is kept. Lower --lr, raise --warmup-steps, or try --optimizer "
                "adamw, then --resume")
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
        if self.rank.world == 1:
            return keys
        out = [torch.empty_like(keys) for _ in range(self.rank.world)]
        dist.all_gather(out, keys.contiguous())
        return torch.cat(out)

    # -- evaluation, checkpoints, logs ---------------------------------------------------------
    def knn(self) -> dict[str, float]:
        """kNN (k=200) test accuracy at all ones, all zeros and 0.5 everywhere."""
        cfg = self.config
        name = cfg.knn_dataset or cfg.dataset.split(",")[0].strip()
        ds = datasets.get(name)
        if ds.task != "classification":
            return {}
        train = ds.train.take(slice(cfg.knn_train))
        test = ds.test.take(slice(cfg.knn_test))
        scores = {}
        for label, value in (("all_ones", 1.0), ("all_zeros", 0.0), ("half", 0.5)):
            z_train = self.encoder.features(train.x, value)
            z_test = self.encoder.features(test.x, value)
            scores[label] = round(knn_accuracy(z_train, train.y, z_test, test.y), 4)
        self.encoder.train()
        return scores

    def state(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.config.method == "moco":
            tensors |= {f"target.{k}": v for k, v in self.target.state_dict().items()}
            tensors |= {f"queues.{k}": v for k, v in self.queues.state_dict().items()}
        for i, state in self.optimizer.state_dict()["state"].items():
            tensors |= {f"optim.{i}.{k}": v for k, v in state.items()
                        if isinstance(v, torch.Tensor)}
        return tensors

    def save(self, metrics: dict) -> None:
        """Write ``last.safetensors`` (to resume) and ``encoder.safetensors`` (to use)."""
        if not self.rank.main:
            return
        self.encoder.card["metrics"] = metrics
        self.encoder.card["steps"] = self.step
        meta = checkpoint.encoder_meta(self.encoder) | {"step": self.step,
                                                       "config": asdict(self.config)}
        checkpoint.save(self.out / "last.safetensors", self.state(), meta)
        checkpoint.save_encoder(self.out / checkpoint.ENCODER_FILE, self.encoder)

    def restore(self) -> None:
        """Continue from ``last.safetensors`` in the run folder."""
        path = self.out / "last.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without "
                                    "--resume, or point --out at the run to continue")
        tensors, meta = checkpoint.load_tensors(path)
        saved = PretrainConfig(**{**meta["config"], "conditioned_stages":
                                  tuple(meta["config"]["conditioned_stages"])})
        changed = [f.name for f in fields(PretrainConfig)
                   if f.name not in RESUMABLE and getattr(saved, f.name)
                   != getattr(self.config, f.name)]
        if changed:
            raise checkpoint.CheckpointError(
                f"{path} was trained with other settings ({', '.join(changed)}); resume with "
                "the same settings, or start a new run with another --out")
        model = {k.removeprefix("model."): v for k, v in tensors.items()
                 if k.startswith("model.")}
        checkpoint.load_state(self.model, model, str(path))
        self.encoder.config.input_mean = meta["model"]["input_mean"]
        self.encoder.config.input_std = meta["model"]["input_std"]
        if self.config.method == "moco":
            for prefix, module in (("target.", self.target), ("queues.", self.queues)):
                checkpoint.load_state(module, {k.removeprefix(prefix): v for k, v in
                                               tensors.items() if k.startswith(prefix)},
                                      str(path))
        optim = self.optimizer.state_dict()
        params = [p for g in optim["param_groups"] for p in g["params"]]
        optim["state"] = {}
        for i in params:
            entries = {k.split(".", 2)[2]: v.to(self.device) for k, v in tensors.items()
                       if k.startswith(f"optim.{i}.")}
            if entries:
                optim["state"][i] = entries
        self.optimizer.load_state_dict(optim)
        self.step = int(meta["step"])
        self.encoder.card["metrics"] = meta["card"].get("metrics", {})
        if self.rank.main:
            Log.truncate(self.out, self.step)

    def run(self) -> Iterator[dict]:
        """Train to ``config.steps``, yielding each logged record (also written to
        ``metrics.jsonl``); checkpoints every ``checkpoint_every`` steps and at the end."""
        cfg = self.config
        if cfg.resume:
            self.restore()
        elif self.rank.main and (self.out / "last.safetensors").exists():
            raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue "
                                  "it, or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        log = Log(self.out, self.rank.main, cfg.tensorboard)
        metrics = dict(self.encoder.card.get("metrics", {}))
        bar = progress(cfg.steps, self.step, cfg.progress and self.rank.main)
        images, clock = 0, time.perf_counter()
        try:
            while self.step < cfg.steps:
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
                if (evaluate or self.step == cfg.steps) and self.rank.main:
                    knn = self.knn()
                    if knn:
                        metrics = {f"knn_{k}": v for k, v in knn.items()}
                        record = {"step": self.step, "knn": knn}
                        log.write(record)
                        yield record
                    clock = time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save(metrics)
        finally:
            bar.close()
            log.close()


RESUMABLE = {"steps", "resume", "progress", "log_every", "knn_every", "checkpoint_every",
             "tensorboard", "device", "compile", "knn_train", "knn_test", "out"}


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


class Log:
    """``metrics.jsonl`` in the run folder (appended on resume), optionally TensorBoard."""

    def __init__(self, out: Path, active: bool, tensorboard: bool):
        self.active = active
        self.file = open(out / "metrics.jsonl", "a") if active else None  # noqa: SIM115
        self.writer = None
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ImportError("--tensorboard needs the tensorboard package: "
                                  "pip install tensorboard") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    @staticmethod
    def truncate(out: Path, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from)."""
        path = out / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer:
            step = record["step"]
            for key, value in record.items():
                if key == "knn":
                    for corner, acc in value.items():
                        self.writer.add_scalar(f"knn/{corner}", acc, step)
                elif key != "step":
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()


def progress(total: int, initial: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not show, unit="step",
                dynamic_ncols=True, desc="pre-training")


def pretrain(config: PretrainConfig) -> Trainer:
    """Run a whole pre-training (single process, or one rank under torchrun)."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if config.device == "auto" else config.device)
    rank = init_distributed(device)
    if device.type == "cuda" and rank.world > 1:
        torch.cuda.set_device(rank.rank % torch.cuda.device_count())
        config = replace(config, device=f"cuda:{rank.rank % torch.cuda.device_count()}")
    trainer = Trainer(config, rank)
    for _ in trainer.run():
        pass
    return trainer

"""Pre-training settings: the typed config, its named presets and their help text."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


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
    "gpu-fmnist": dict(
        dataset="fashion-mnist", arch="resnet18", width=64, conditioning="hyper", bases=32,
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

# Variants differ from their base in one setting: the same budget, another conditioning.
PRESETS["cpu-fmnist-plain"] = {**PRESETS["cpu-fmnist"], "conditioning": "none"}
PRESETS["cpu-fmnist-film"] = {**PRESETS["cpu-fmnist"], "conditioning": "film"}
PRESETS["gpu-fmnist-film"] = {**PRESETS["gpu-fmnist"], "conditioning": "film"}

PRESET_NOTES: dict[str, str] = {
    "cpu-fmnist": "Fashion-MNIST, width-16 ResNet-18, 4-basis hypernetwork, SimCLR on corners; "
    "~40 min on 2 CPU cores",
    "cpu-fmnist-plain": "the same budget without conditioning: the plain SimCLR baseline",
    "cpu-fmnist-film": "the same budget with FiLM conditioning (the cheap option)",
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
    "arch": "resnet18 | resnet50 | vit-tiny | vit-small | vit-base",
    "conditioning": "hyper (paper's hypernetwork) | film (conditional norms) | none (plain) | "
                    "paper (hyper in the paper's module names)",
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

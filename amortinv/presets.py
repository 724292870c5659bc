"""Pre-training settings: the typed config, its named presets and their help text."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from amortinv.invariance import SPACES
from amortinv.models.encoder import ARCHS
from amortinv.settings import AUTO, check_settings, setting

#: Conditionings a pre-training can build (see docs/PRETRAINING.md).
CONDITIONINGS = ("hyper", "film", "none", "paper")
#: Warm-up is at most this fraction of the run (``warmup_steps`` is the most it may take).
WARMUP_FRACTION = 0.1


@dataclass
class PretrainConfig:
    """Every setting of a pre-training run (``scripts/pretrain.py --help`` lists them). A
    setting outside its allowed values is refused when the config is made."""

    # data: one dataset, or several of one modality joined with commas (inputs only are used)
    dataset: str = "fashion-mnist"
    space: str = setting(AUTO, choices=(AUTO, *SPACES))  # auto: the data's (rgb, grey, audio)
    # model
    arch: str = setting("resnet18", choices=ARCHS)
    conditioning: str = setting("hyper", choices=CONDITIONINGS)  # none: the plain baseline
    bases: int = setting(32, minimum=1)
    conditioned_stages: tuple[int, ...] = (1, 2, 3, 4)
    width: int = setting(64, minimum=1)
    stem: str = setting("small", choices=("small", "imagenet"))
    bands: int = setting(1, minimum=1)  # 1: global average pooling; n: n frequency bands
    # statistics that normalise the augmentation domain: one mean and std, or (audio) one per
    # mel bin
    input_stats: str = setting("global", choices=("global", "per-bin"))
    image_size: int | str = setting(AUTO, auto=int, minimum=8)  # auto: the data's own size
    # method
    method: str = setting("simclr", choices=("simclr", "moco"))
    temperature: float | str = setting(AUTO, auto=float, above=0)  # auto: SimCLR 0.5, MoCo 0.1
    proj_hidden: int = setting(512, minimum=1)
    proj_dim: int = setting(128, minimum=1)
    moco_momentum: float = setting(0.99, minimum=0, below=1)
    queue_size: int = setting(4096, minimum=1)
    per_corner: bool = True  # MoCo: one head and queue per corner (paper), else shared
    sampling: str = setting("corners", choices=("corners", "continuous", "mixed"))
    min_on: int | str = setting(AUTO, auto=int, minimum=0)  # auto: the paper's choice
    # optimisation
    steps: int = setting(1000, minimum=1)
    minutes: float = setting(0.0, minimum=0)  # > 0: the steps that fit, timed (overrides steps)
    batch_size: int = setting(512, minimum=1)
    optimizer: str = setting("sgd", choices=("sgd", "lars", "adamw"))
    lr: float = setting(0.6, above=0)
    weight_decay: float = setting(5e-4, minimum=0)
    warmup_steps: int = setting(100, minimum=0)  # at most WARMUP_FRACTION of the steps
    # speed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # autocast on CUDA
    channels_last: bool = True
    compile: bool = False
    # bookkeeping
    out: str = ""  # run folder; empty: runs/<preset>
    seed: int = 0
    log_every: int = setting(20, minimum=1)
    knn_every: int = setting(500, minimum=0)  # 0: only at the end
    knn_dataset: str = ""  # empty: the first dataset
    knn_train: int = setting(5000, minimum=1)
    knn_test: int = setting(1000, minimum=1)
    checkpoint_every: int = setting(500, minimum=1)
    tensorboard: bool = False
    resume: bool = False
    progress: bool = True
    preset: str = "custom"

    def __post_init__(self) -> None:
        self.conditioned_stages = tuple(self.conditioned_stages)
        check_settings(self)

    @classmethod
    def from_json(cls, data: dict) -> PretrainConfig:
        """A config as saved in a training checkpoint; settings saved under an old name
        (:data:`RENAMED`) are read under the new one, old sentinels (:data:`OLD_AUTO`) as
        ``auto``."""
        values = {RENAMED.get(k, k): v for k, v in data.items()}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown settings {unknown}: written by a newer amortinv; "
                             "upgrade to use it")
        for name, old in OLD_AUTO.items():
            if name in values and values[name] == old:
                values[name] = AUTO
        return cls(**values)

    def resolved(self) -> PretrainConfig:
        """Fill in the defaults that depend on other settings."""
        out = self.out or f"runs/{self.preset}"
        temperature = self.temperature
        if temperature == AUTO:
            temperature = 0.1 if self.method == "moco" else 0.5
        return replace(self, out=out, temperature=temperature)

    @property
    def warmup(self) -> int:
        """Warm-up steps used: ``warmup_steps``, but at most :data:`WARMUP_FRACTION` of the run
        (at least one step), so a short run still decays its learning rate."""
        return min(self.warmup_steps, max(1, int(WARMUP_FRACTION * self.steps)))


#: Settings renamed since checkpoints were first written: old name -> new name. Saved configs
#: are read with the new names; the old command-line flags still work.
RENAMED: dict[str, str] = {"per_config": "per_corner"}
#: Values that meant ``auto`` in checkpoints written before the word: setting -> old value.
OLD_AUTO: dict[str, object] = {"space": "", "temperature": 0.0, "min_on": -1}

#: Named presets; a command-line flag overrides any of their settings.
PRESETS: dict[str, dict] = {
    "cpu-fmnist": dict(
        dataset="fashion-mnist", arch="resnet18", width=16, conditioning="hyper", bases=4,
        batch_size=256, steps=6000, optimizer="sgd", lr=0.5, weight_decay=5e-4,
        warmup_steps=200, knn_every=1000, checkpoint_every=500, bf16=False,
    ),
    # Audio recipe (docs/PRETRAINING.md, "Audio"): temperature 0.1 and features pooled into two
    # frequency bands; the first recipe (temperature 0.5, global pooling, 3,000 steps) read
    # real spoken digits worse than the log-mel it starts from.
    "cpu-audio": dict(
        dataset="spoken-digits,notes-family,tuxpaint-speech", arch="resnet18", width=16,
        stem="imagenet", bands=2, conditioning="hyper", bases=4, batch_size=128, steps=8000,
        optimizer="sgd", lr=0.2, weight_decay=5e-4, warmup_steps=200, temperature=0.1,
        knn_every=2000, checkpoint_every=1000, bf16=False,
    ),
    "cpu-rgb": dict(
        dataset="colour-pretraining", image_size=32, arch="resnet18", width=16,
        conditioning="hyper", bases=4, batch_size=256, steps=3600, optimizer="sgd", lr=0.5,
        weight_decay=5e-4, warmup_steps=200, knn_every=1000, knn_dataset="openclipart",
        checkpoint_every=500, bf16=False,
    ),
    "smoke": dict(
        dataset="sklearn-digits", arch="resnet18", width=8, conditioning="hyper", bases=2,
        batch_size=32, steps=4, lr=0.05, warmup_steps=1, knn_every=0, knn_train=200,
        knn_test=100, checkpoint_every=2, log_every=1, bf16=False, progress=False,
    ),
}

#: The GPU presets are the CPU recipes at the width the app can still probe on 2 CPU cores
#: (GPU_WIDTH: features of 3,000 images in 0.3 s with 2 threads, scripts/bench_widths.py,
#: docs/GPU.md), with a larger batch and bf16, trained for minutes rather than steps
#: (``--minutes``: the cosine schedule ends on time, whatever the GPU's speed). The "large"
#: pair is for the quality bars, not the app: the widest hypernetwork whose fp16 file stays
#: under the 16 MB a file may have to come back from the GPU machine (15 MB), evaluated there.
GPU_WIDTH, GPU_LARGE_WIDTH = 8, 24
GPU = dict(width=GPU_WIDTH, bf16=True, minutes=3.0, knn_every=1000, checkpoint_every=1000)
PRESETS["gpu-fmnist"] = {**PRESETS["cpu-fmnist"], **GPU, "batch_size": 512}
PRESETS["gpu-fmnist-large"] = {**PRESETS["gpu-fmnist"], "width": GPU_LARGE_WIDTH}
# cpu-fmnist at the GPU presets' width: the encoder the app can probe and learn with fast on 2
# CPU cores, trained where no GPU has been lent.
PRESETS["cpu-fmnist-w8"] = {**PRESETS["cpu-fmnist"], "width": GPU_WIDTH}
# The GPU audio runs pre-train on the spoken digits alone (what the audio bar is measured
# on): the whole CPU mix (~8,700 clips, ~180 MB even as compressed 16-bit audio) cannot travel
# to the GPU machine within its 64 MB (docs/GPU.md, "Data that travels").
# Their width stays cpu-audio's: an audio encoder's probe cost is its log-mel spectrograms
# (~1.4 s for 3,000 clips on 2 cores at widths 8 to 16), not its width.
PRESETS["gpu-audio"] = {**PRESETS["cpu-audio"], **GPU, "width": PRESETS["cpu-audio"]["width"],
                        "dataset": "spoken-digits", "batch_size": 256,
                        "knn_dataset": "spoken-digits"}
PRESETS["gpu-rgb"] = {**PRESETS["cpu-rgb"], **GPU, "batch_size": 512}

# Variants differ from their base in one setting: the same budget, another conditioning.
for _base in ("cpu-fmnist", "gpu-fmnist"):
    PRESETS[f"{_base}-plain"] = {**PRESETS[_base], "conditioning": "none"}
    PRESETS[f"{_base}-film"] = {**PRESETS[_base], "conditioning": "film"}
for _base in ("cpu-audio", "gpu-audio", "gpu-fmnist-large", "cpu-rgb", "gpu-rgb"):
    PRESETS[f"{_base}-plain"] = {**PRESETS[_base], "conditioning": "none"}

PRESET_NOTES: dict[str, str] = {
    "cpu-fmnist": "Fashion-MNIST, width-16 ResNet-18, 4-basis hypernetwork, SimCLR on corners; "
    "~40 min on 2 CPU cores",
    "cpu-fmnist-plain": "the same budget without conditioning: the plain baseline",
    "cpu-fmnist-film": "the same budget with FiLM conditioning (the cheap option)",
    "cpu-fmnist-w8": f"cpu-fmnist at width {GPU_WIDTH}: what the app probes and learns with fast "
    "on 2 CPU cores",
    "gpu-fmnist": f"cpu-fmnist's recipe on a GPU at width {GPU_WIDTH} (what the app probes "
    "fast enough on a CPU): batch 512, bf16, 3 minutes (--minutes); make gpu trains it",
    "gpu-fmnist-film": "as gpu-fmnist with FiLM conditioning (the cheap option)",
    "gpu-fmnist-plain": "as gpu-fmnist without conditioning: the plain baseline",
    "gpu-fmnist-large": f"as gpu-fmnist at width {GPU_LARGE_WIDTH} (15 MB in fp16): for the "
    "quality bars, too slow for the app's live probe on a CPU",
    "gpu-fmnist-large-plain": "as gpu-fmnist-large without conditioning",
    "cpu-audio": "spoken digits + instrument notes + speech, log-mel ResNet-18 (width 16, two "
    "frequency bands), 4-basis hypernetwork, temperature 0.1; ~80 min on one CPU thread",
    "cpu-audio-plain": "the same audio budget without conditioning: the plain baseline",
    "gpu-audio": "cpu-audio's recipe on a GPU, on the spoken digits alone: batch 256, bf16, "
    "3 minutes (--minutes)",
    "gpu-audio-plain": "as gpu-audio without conditioning: the plain baseline",
    "cpu-rgb": "colour clip art and stamps (colour-pretraining) at 32 px, width-16 ResNet-18, "
    "4-basis hypernetwork, the rgb space's corners; ~80 min on one of 2 CPU cores",
    "cpu-rgb-plain": "the same budget without conditioning: the plain colour baseline",
    "gpu-rgb": f"cpu-rgb's recipe on a GPU at width {GPU_WIDTH}: batch 512, bf16, 3 minutes "
    "(--minutes)",
    "gpu-rgb-plain": "as gpu-rgb without conditioning: the plain colour baseline",
    "smoke": "a few steps on scikit-learn digits: checks that everything runs",
}

#: One line per setting, for ``--help``.
HELP: dict[str, str] = {
    "dataset": "dataset name(s) from `python -m amortinv.data list`, comma-separated to join",
    "space": "invariance space (rgb, grey, spatial-appearance, audio); auto: the data's default",
    "arch": "the backbone",
    "conditioning": "hyper (paper's hypernetwork) | film (conditional norms) | none (plain) | "
                    "paper (hyper in the paper's module names)",
    "bases": "basis kernels per generated conv (paper: 32)",
    "conditioned_stages": "which ResNet stages (1-4) are conditioned",
    "width": "channels of the first ResNet stage (standard: 64)",
    "stem": "small (3x3, no down-sampling, for 28-64 px) | imagenet (7x7/2 + pool)",
    "bands": "ResNet features: 1 = global average pooling; n > 1 = averaged over time into n "
    "frequency bands (audio; n x channels features)",
    "input_stats": "input normalisation: global (one mean and std) | per-bin (audio: one mean "
    "and std per mel bin)",
    "image_size": "train on images resized to this side (the encoder then resizes every input "
    "to it); auto: the data's own size",
    "method": "simclr (NT-Xent) | moco (MoCo-v2: momentum encoder and key queues)",
    "temperature": "contrastive temperature; auto: the method's (SimCLR 0.5, MoCo-v2 0.1)",
    "proj_hidden": "hidden width of the projection head",
    "proj_dim": "output width of the projection head",
    "moco_momentum": "EMA momentum of the MoCo key encoder",
    "queue_size": "keys per MoCo queue",
    "per_corner": "MoCo: one head and queue per invariance corner (paper) instead of one "
    "(--per-config: its old name)",
    "sampling": "invariance vectors: corners (paper) | continuous | mixed",
    "min_on": "corners need at least this many groups on; auto: the paper's (2, or 1 when K=2)",
    "steps": "optimizer steps in total",
    "minutes": "train for this long instead: time the first steps, then fix the total steps "
    "so that the cosine schedule ends on time (0: train --steps)",
    "batch_size": "examples per step, across all processes (two views each)",
    "optimizer": "sgd | lars | adamw",
    "lr": "peak learning rate (after warm-up; cosine decay to zero)",
    "weight_decay": "weight decay (not on biases and norms)",
    "warmup_steps": "linear warm-up steps, at most a tenth of --steps",
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
    overrides = {RENAMED.get(k, k): v for k, v in overrides.items()}
    unknown = sorted(set(overrides) - {f.name for f in fields(PretrainConfig)})
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
    return PretrainConfig(**{**PRESETS[name], "preset": name, **overrides})

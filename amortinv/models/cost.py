"""What probing an encoder costs, known before its weights are loaded.

An encoder's cost is counted on the meta device (shapes only, nothing allocated, ~1 s even for
the paper's 774 M-parameter ResNet-50): multiply-accumulates per example at the size the model
sees, plus the ones paid once per batch (hypernetworks generating the kernels, the prompt-ViT's
invariance token). :func:`probe_plan` turns that into a decision for one probe of N points on
this CPU: go, probe fewer points, or refuse with the reason.

    >>> cost = checkpoint_cost("checkpoints/paper-hyper-resnet50")  # doctest: +SKIP
    >>> cost.macs_per_example / 1e9          # 4.1 G at 224 px            # doctest: +SKIP
    >>> plan = probe_plan(cost, 3000)                                     # doctest: +SKIP
    >>> plan.points, plan.message     # fewer points (or 0: refused) and why  # doctest: +SKIP

(Skipped when doctests run: it needs the paper's released checkpoint, imported as
``docs/PAPER.md`` says.)
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from amortinv.invariance import InvarianceSpace
from amortinv.models.encoder import Encoder, ModelConfig

__all__ = ["ProbeCost", "ProbePlan", "checkpoint_cost", "cpu_macs_per_second", "probe_cost",
           "probe_plan"]


@dataclass(frozen=True)
class ProbeCost:
    """The price of encoding with one model, from its config alone."""

    parameters: int
    weight_bytes: int  # parameters and buffers as stored in memory (float32)
    macs_per_example: float  # multiply-accumulates of one input at ``input_shape``
    macs_per_batch: float  # paid once per batch: kernels generated from the vector, the token
    input_shape: tuple[int, ...]  # one example as ``Encoder.forward`` receives it

    def seconds(self, n: int, macs_per_second: float, batch_size: int = 512) -> float:
        """Estimated time to encode ``n`` examples at one invariance vector."""
        batches = math.ceil(n / batch_size) if n > 0 else 0
        return (n * self.macs_per_example + batches * self.macs_per_batch) / macs_per_second

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return (f"{self.parameters / 1e6:,.1f} M parameters ({self.weight_bytes / 1e9:.2f} GB), "
                f"{self.macs_per_example / 1e9:.2f} G multiply-accumulates per example at "
                f"{shape}")


def probe_cost(config: ModelConfig, space: InvarianceSpace,
               input_shape: tuple[int, ...] | None = None) -> ProbeCost:
    """Count ``config``'s cost on the meta device.

    ``input_shape`` is one example in the augmentation domain, e.g. the dataset's ``(C, H,
    W)``; by default ``(C, image_size, image_size)`` for images (what a ``resize`` model sees
    anyway) and one second of audio. Multiply-accumulates of convolutions and matrix
    products are counted (norms, activations and pooling are not: they are a small part)."""
    with torch.device("meta"):
        encoder = Encoder(config, space)
    if input_shape is None:
        input_shape = _default_shape(config)
    counts = []
    for batch in (1, 2):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            encoder(torch.empty(batch, *input_shape, device="meta"),
                    torch.empty(len(space), device="meta"))
        counts.append(counter.get_total_flops() / 2)  # a multiply-accumulate is two flops
    per_example = counts[1] - counts[0]
    tensors = [*encoder.parameters(), *encoder.buffers()]
    return ProbeCost(
        parameters=sum(p.numel() for p in encoder.parameters()),
        weight_bytes=sum(t.numel() * t.element_size() for t in tensors),
        macs_per_example=per_example, macs_per_batch=max(counts[0] - per_example, 0.0),
        input_shape=tuple(input_shape))


def checkpoint_cost(path: str | Path, input_shape: tuple[int, ...] | None = None) -> ProbeCost:
    """:func:`probe_cost` of a checkpoint, read from its header: its weights are not loaded."""
    from amortinv.checkpoint import build_encoder, read_meta  # checkpoint imports this package

    meta = read_meta(path)
    with torch.device("meta"):
        encoder = build_encoder(meta, path)
    return probe_cost(encoder.config, encoder.space, input_shape)


def _default_shape(config: ModelConfig) -> tuple[int, ...]:
    if config.modality == "audio":
        return (config.mel.n_mels, 1 + config.mel.sample_rate // config.mel.hop_length)
    return (config.in_channels, config.image_size, config.image_size)


#: A whole network runs slower than one lone convolution: norms, activations, memory
#: traffic. Measured on the 2-core machine (one thread): the shipped width-16 ResNet-18 at
#: 28 px ran at 0.55 of the calibration convolution's rate, the paper's ResNet-50 at 224 px
#: at 0.35. The lower side errs towards probing fewer points, not towards a hang.
NETWORK_EFFICIENCY = 0.4


@functools.lru_cache(maxsize=1)
def cpu_macs_per_second(seconds: float = 0.2) -> float:
    """Multiply-accumulates per second an encoder gets on this CPU with torch's current
    threads: a mid-sized convolution's rate times :data:`NETWORK_EFFICIENCY` (measured once
    per process, ~``seconds``)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, 32, 32, generator=g)
    w = torch.randn(64, 64, 3, 3, generator=g)
    macs = 8 * 64 * 64 * 9 * 32 * 32
    with torch.no_grad():
        F.conv2d(x, w, padding=1)  # warm-up
        runs, start = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - start < seconds:
            F.conv2d(x, w, padding=1)
            runs += 1
        return NETWORK_EFFICIENCY * runs * macs / (time.perf_counter() - start)


@dataclass(frozen=True)
class ProbePlan:
    """Whether to probe, and how many points: ``points`` is what to encode (0: refuse)."""

    requested: int
    points: int
    seconds: float  # estimated for ``points`` (for ``requested`` when refused)
    message: str  # empty when the request is fine as it is

    @property
    def ok(self) -> bool:
        return self.points == self.requested


def probe_plan(cost: ProbeCost, n_points: int, budget_s: float = 5.0, min_points: int = 200,
               macs_per_second: float | None = None, batch_size: int = 512,
               memory_bytes: int | None = None) -> ProbePlan:
    """Decide a probe of ``n_points`` at one vector on this CPU.

    Within ``budget_s`` seconds it goes as asked; otherwise it takes the most points that fit,
    or refuses (``points == 0``) when fewer than ``min_points`` fit or the weights do not fit
    in ``memory_bytes`` (default: the memory available now). ``macs_per_second`` defaults to
    :func:`cpu_macs_per_second`."""
    rate = macs_per_second or cpu_macs_per_second()
    memory = _available_memory() if memory_bytes is None else memory_bytes
    asked = cost.seconds(n_points, rate, batch_size)
    if memory is not None and cost.weight_bytes > 0.8 * memory:
        return ProbePlan(n_points, 0, asked, (
            f"This encoder is too large to probe here: its weights need "
            f"{cost.weight_bytes / 1e9:.1f} GB and {memory / 1e9:.1f} GB of memory are free "
            f"({cost.describe()}). Use a machine with more memory or a GPU (docs/PAPER.md), "
            "or a smaller encoder."))
    if asked <= budget_s:
        return ProbePlan(n_points, n_points, asked, "")
    per_point = (cost.macs_per_example + cost.macs_per_batch / batch_size) / rate
    fit = int(max(budget_s - cost.macs_per_batch / rate, 0.0) / per_point)
    fit = min(fit, n_points)
    if fit >= min_points:
        return ProbePlan(n_points, fit, cost.seconds(fit, rate, batch_size), (
            f"Probing {n_points:,} points would take about {asked:,.0f} s on this CPU "
            f"({cost.describe()}): probing {fit:,} of them instead, about {budget_s:g} s per "
            "vector."))
    least = cost.seconds(min_points, rate, batch_size)
    return ProbePlan(n_points, 0, asked, (
        f"This encoder is too slow to probe on this CPU: {n_points:,} points would take about "
        f"{asked:,.0f} s per vector, and even {min_points} points {least:,.0f} s "
        f"({cost.describe()}). Run it on a GPU (docs/PAPER.md) or pick a smaller encoder."))


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None (not checked)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None

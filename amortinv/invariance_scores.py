"""Invariance scores: how much an encoder's features change under each transform, at any
invariance vector (the paper's radar plot).

The score of transform ``t`` at vector ``i`` is the mean *whitened cosine similarity* between
``f(x; i)`` and ``f(t(x); i)`` over a set of inputs (Ericsson et al. 2021, "Why do
self-supervised models transfer?"): 1 means fully invariant, 0 means the change is as large
as the difference between unrelated inputs would suggest, negative values are possible.

    >>> import amortinv, torch
    >>> from amortinv.invariance_scores import invariance_scores
    >>> enc = amortinv.load("checkpoints/fmnist-hyper4-cpu")
    >>> images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    >>> scores = invariance_scores(enc, images, {"crop": 1, "flip": 0, "color": 1, "blur": 0})
    >>> sorted(scores)                 # one score per transform (1 = fully invariant)
    ['blur', 'brightness', 'contrast', 'crop', 'flip', 'gamma', 'scale', 'translate']

**Whitening.** Features are centred on the mean of the clean features ``f(x; i)`` and
whitened with the inverse square root of their covariance, so that every direction of
feature space counts equally and a few dominant, high-variance directions cannot make
everything look invariant. Each feature is standardised first, then the covariance of the
standardised features is the Ledoit-Wolf shrinkage estimate (Ledoit & Wolf 2004): the sample
correlation pulled toward the identity by the amount that minimises the expected error,
which keeps it invertible and well-conditioned when the feature dimension exceeds the number
of examples (D > n). All statistics come from the clean features only, per vector, in
float64 (see :func:`whitened_cosine`).

**Transforms.** Each transform acts in the augmentation domain (float images in [0, 1], or
log-mel spectrograms), is applied to *every* example (probabilities set to 1), and draws its
per-example parameters from its strength-1 (standard SimCLR) range, from
:class:`~amortinv.augment.VisionSettings` and :class:`~amortinv.augment.AudioSettings`:

======================  =====================================================================
image transform         test magnitude
======================  =====================================================================
crop                    random resized crop: area 0.08-1, aspect 3/4-4/3, anywhere it fits
translate               shift only: up to 1/8 of the side on each axis (border repeated)
scale                   zoom only: centred square crop, area 0.08-1, resized back
flip                    horizontal flip, always
brightness              factor 0.6-1.4
contrast                factor 0.6-1.4
saturation (RGB only)   factor 0.6-1.4
hue (RGB only)          rotation by up to +-0.1 turn
grayscale (RGB only)    always converted to grey
gamma (grey only)       exponent 0.6-1.4
blur                    Gaussian, sigma 0.1-2.0 px
======================  =====================================================================

======================  =====================================================================
audio transform         test magnitude
======================  =====================================================================
pitch                   shift by up to +-4 semitones
time_shift              circular shift by up to 25% of the clip
stretch                 time stretch 0.8-1.25x
gain                    +-6 dB
noise                   white to coloured noise, SNR 10-40 dB
time_mask               two time masks, each up to 15% of the frames, filled with the mean
freq_mask               two frequency masks, each up to 15% of the mel bins
filter                  random smooth equaliser curve, up to +-9 dB
======================  =====================================================================

Parameters are drawn per example from a generator seeded by ``seed`` and the transform's
name, so a transform sees the same draws whatever other transforms are scored beside it and
at every vector: curves over a slider are not jittered by re-drawn augmentations.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from amortinv.augment import AudioAugment, AudioSettings, MelConfig, VisionAugment
from amortinv.augment.draws import uniform
from amortinv.augment.vision import (
    VisionSettings,
    adjust_brightness,
    adjust_contrast,
    adjust_gamma,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    hflip,
    resized_crop,
    to_grayscale,
)
from amortinv.invariance import AUDIO, GREY, InvalidInvarianceVector, VectorLike

#: A transform: augmentation-domain batch and a generator -> transformed batch.
TransformFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

IMAGE_TRANSFORMS = ("crop", "translate", "scale", "flip", "brightness", "contrast",
                    "saturation", "hue", "grayscale", "gamma", "blur")
RGB_ONLY = ("saturation", "hue", "grayscale")
GREY_ONLY = ("gamma",)
AUDIO_TRANSFORMS = ("pitch", "time_shift", "stretch", "gain", "noise", "time_mask",
                    "freq_mask", "filter")

MAX_TRANSLATE = 0.25  # in grid units ([-1, 1] spans the image): 1/8 of the side


@dataclass(frozen=True)
class Transform:
    """One named test transform at its fixed test magnitude."""

    name: str
    apply: TransformFn
    description: str = ""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, generator)


# -- image transforms --------------------------------------------------------------------------
def image_transforms(channels: int, settings: VisionSettings | None = None
                     ) -> dict[str, Transform]:
    """The test transforms for images with ``channels`` channels (1 or 3), by name."""
    if channels not in (1, 3):
        raise ValueError(f"images have 1 (grey) or 3 (RGB) channels, got {channels}")
    s = settings or VisionSettings()
    crop_only = VisionAugment(GREY, s)  # the pipeline's crop alone, at strength 1
    off = dict.fromkeys(GREY.names, 0.0)

    def jitter(op: Callable, magnitude: float) -> TransformFn:
        return lambda x, g: op(x, uniform(len(x), 1 - magnitude, 1 + magnitude, g))

    def translate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        shift = uniform(2 * len(x), -MAX_TRANSLATE, MAX_TRANSLATE, g).view(2, -1)
        ones = torch.ones(len(x))
        return resized_crop(x, torch.stack([shift[0], shift[1], ones, ones], dim=1))

    def scale(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        side = uniform(len(x), s.crop_min_scale, 1.0, g).sqrt()
        zeros = torch.zeros(len(x))
        return resized_crop(x, torch.stack([zeros, zeros, side, side], dim=1))

    everything = {
        "crop": Transform("crop", lambda x, g: crop_only(x, {**off, "crop": 1.0}, generator=g),
                          f"random resized crop, area {s.crop_min_scale:g}-1"),
        "translate": Transform("translate", translate, "shift up to 1/8 of the side"),
        "scale": Transform("scale", scale, f"centred zoom, area {s.crop_min_scale:g}-1"),
        "flip": Transform("flip", lambda x, g: hflip(x, torch.ones(len(x), dtype=torch.bool)),
                          "horizontal flip"),
        "brightness": Transform("brightness", jitter(adjust_brightness, s.brightness),
                                f"factor 1+-{s.brightness:g}"),
        "contrast": Transform("contrast", jitter(adjust_contrast, s.contrast),
                              f"factor 1+-{s.contrast:g}"),
        "saturation": Transform("saturation", jitter(adjust_saturation, s.saturation),
                                f"factor 1+-{s.saturation:g}"),
        "hue": Transform("hue", lambda x, g: adjust_hue(x, uniform(len(x), -s.hue, s.hue, g)),
                         f"rotation up to +-{s.hue:g} turn"),
        "grayscale": Transform("grayscale",
                               lambda x, g: to_grayscale(x, torch.ones(len(x), dtype=torch.bool)),
                               "converted to grey"),
        "gamma": Transform("gamma", jitter(adjust_gamma, s.gamma), f"exponent 1+-{s.gamma:g}"),
        "blur": Transform("blur", lambda x, g: gaussian_blur(x, uniform(len(x), *s.blur_sigma,
                                                                         g)),
                          f"Gaussian, sigma {s.blur_sigma[0]:g}-{s.blur_sigma[1]:g} px"),
    }
    skip = GREY_ONLY if channels == 3 else RGB_ONLY
    return {name: t for name, t in everything.items() if name not in skip}


# -- audio transforms --------------------------------------------------------------------------
def _band_masks(x: torch.Tensor, axis: int, count: int, max_fraction: float,
                g: torch.Generator) -> torch.Tensor:
    """``count`` SpecAugment masks along one axis (1: mel bins, 2: frames), filled with each
    clip's mean. (The training pipeline masks both axes in one operation; a score needs
    them apart.)"""
    b, size = len(x), x.shape[axis]
    keep = torch.ones(b, size, dtype=torch.bool)
    pos = torch.arange(size).view(1, -1)
    for _ in range(count):
        width = (torch.rand(b, generator=g) * max_fraction * size).long()
        start = (torch.rand(b, generator=g) * (size - width + 1)).long()
        keep &= ~((pos >= start[:, None]) & (pos < (start + width)[:, None]))
    keep = (keep[:, :, None] if axis == 1 else keep[:, None, :]).to(x.device)
    return torch.where(keep, x, x.mean(dim=(1, 2), keepdim=True))


def audio_transforms(mel: MelConfig | None = None, settings: AudioSettings | None = None
                     ) -> dict[str, Transform]:
    """The test transforms for log-mel spectrograms made with ``mel``, by name."""
    s = settings or AudioSettings()
    warp = AudioAugment(AUDIO, mel, s).warp
    only = dict.fromkeys(AUDIO.names, 0.0)
    # The pipeline's noise operation applies gain and noise together: settings split them.
    gain_only = AudioAugment(AUDIO, mel, AudioSettings(**{**vars(s), "noise_p": 0.0}))
    noise_only = AudioAugment(AUDIO, mel, AudioSettings(**{**vars(s), "gain_db": 0.0,
                                                           "noise_p": 1.0}))
    equaliser = AudioAugment(AUDIO, mel, s)

    def pitch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        semitones = uniform(len(x), -s.max_semitones, s.max_semitones, g)
        return warp(x, semitones, torch.zeros(len(x)), torch.ones(len(x)))

    def time_shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        shift = uniform(len(x), -s.max_shift, s.max_shift, g)
        return warp(x, torch.zeros(len(x)), shift, torch.ones(len(x)))

    def stretch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        log_max = math.log(s.max_stretch)
        factor = torch.exp(uniform(len(x), -log_max, log_max, g))
        return warp(x, torch.zeros(len(x)), torch.zeros(len(x)), factor)

    return {
        "pitch": Transform("pitch", pitch, f"+-{s.max_semitones:g} semitones"),
        "time_shift": Transform("time_shift", time_shift,
                                f"circular, up to {s.max_shift:.0%} of the clip"),
        "stretch": Transform("stretch", stretch, f"{1 / s.max_stretch:g}-{s.max_stretch:g}x"),
        "gain": Transform("gain", lambda x, g: gain_only(x, {**only, "noise": 1.0}, generator=g),
                          f"+-{s.gain_db:g} dB"),
        "noise": Transform("noise", lambda x, g: noise_only(x, {**only, "noise": 1.0},
                                                            generator=g),
                           f"SNR {s.min_snr_db:g}-{s.clean_snr_db:g} dB"),
        "time_mask": Transform("time_mask",
                               lambda x, g: _band_masks(x, 2, s.masks, s.max_mask, g),
                               f"{s.masks} masks of up to {s.max_mask:.0%} of the frames"),
        "freq_mask": Transform("freq_mask",
                               lambda x, g: _band_masks(x, 1, s.masks, s.max_mask, g),
                               f"{s.masks} masks of up to {s.max_mask:.0%} of the mel bins"),
        "filter": Transform("filter", lambda x, g: equaliser(x, {**only, "filter": 1.0},
                                                             generator=g),
                            f"smooth equaliser, +-{s.eq_db:g} dB"),
    }


def transforms_for(encoder) -> dict[str, Transform]:
    """Every test transform that fits ``encoder``'s inputs (modality, channels, mel setup)."""
    config = encoder.config
    if config.modality == "audio":
        return audio_transforms(config.mel)
    return image_transforms(config.in_channels)


def _select(encoder, transforms: Sequence[str] | Mapping[str, TransformFn] | None
            ) -> dict[str, TransformFn]:
    available = transforms_for(encoder)
    if transforms is None:
        return dict(available)
    if isinstance(transforms, str):
        transforms = [transforms]
    if isinstance(transforms, Mapping):
        return dict(transforms)
    chosen = {}
    for name in transforms:
        if name in available:
            chosen[name] = available[name]
        elif name in RGB_ONLY and encoder.config.modality == "image":
            raise ValueError(f"'{name}' is a colour transform and this encoder takes "
                             f"{encoder.config.in_channels}-channel images; choose among "
                             f"{', '.join(available)}")
        else:
            raise ValueError(f"unknown transform {name!r} for this {encoder.config.modality} "
                             f"encoder; choose among {', '.join(available)}")
    return chosen


# -- whitening ---------------------------------------------------------------------------------
def ledoit_wolf(z: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrinkage covariance of the rows of ``z`` (n, D), in float64: the sample
    covariance S shrunk toward ``mean(eig(S)) * I`` by the estimated optimal amount. Positive
    definite whenever the features vary at all, also when D > n."""
    z = z.double()
    n, d = z.shape
    x = z - z.mean(0)
    s = x.T @ x / n
    mu = torch.trace(s) / d
    delta = ((s - mu * torch.eye(d, dtype=s.dtype)) ** 2).sum() / d
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2
    beta = ((x.pow(2).sum(1) ** 2).sum() - n * (s ** 2).sum()) / (n * n * d)
    shrinkage = (beta.clamp(min=0) / delta).clamp(max=1) if delta > 0 else s.new_tensor(1.0)
    return (1 - shrinkage) * s + shrinkage * mu * torch.eye(d, dtype=s.dtype)


def whitened_cosine(clean: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-example cosine similarity of ``clean`` and ``other`` (n, D) after whitening both
    with the statistics of ``clean``. Returns (n,) float64.

    Each feature is first standardised (clean mean and standard deviation; variances floored
    at 1e-6 of the average, so a feature that is constant on clean inputs cannot dominate);
    the Ledoit-Wolf covariance of the standardised clean features (a correlation matrix
    shrunk toward the identity) is then inverted by PCA whitening. Standardising first makes
    the shrinkage target fit every feature's scale: shrinking raw covariances toward one
    common variance would let a single large-scale feature swamp the rest.
    """
    if len(clean) < 2:
        raise ValueError("whitening needs at least 2 examples")
    clean, other = clean.double(), other.double()
    mean, var = clean.mean(0), clean.var(0, correction=0)
    if var.sum() <= 0:
        raise ValueError("the clean features do not vary across the inputs, so they cannot "
                         "be whitened; pass more varied inputs")
    std = var.clamp_min(1e-6 * var.mean()).sqrt()
    a, b = (clean - mean) / std, (other - mean) / std
    eigval, eigvec = torch.linalg.eigh(ledoit_wolf(a))
    # PCA whitening; cosine is unchanged by the rotation that would make it ZCA.
    project = eigvec / eigval.clamp_min(eigval.max() * 1e-12).sqrt()
    return F.cosine_similarity(a @ project, b @ project, dim=1, eps=1e-12)


# -- scores ------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """Inputs in the augmentation domain and the chosen transforms. The transformed copies
    are made one transform at a time (memory: one extra copy of the inputs), from a generator
    re-seeded each time, so every vector of a curve or grid sees the same draws."""

    clean: torch.Tensor
    transforms: dict[str, TransformFn]
    seed: int
    batch_size: int

    def transformed(self, name: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(_seed_for(self.seed, name))
        apply, step = self.transforms[name], self.batch_size
        return torch.cat([apply(self.clean[i:i + step], g)
                          for i in range(0, len(self.clean), step)])


def _seed_for(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


@torch.no_grad()
def _prepare(encoder, x_raw, transforms, n: int, seed: int, batch_size: int) -> _Prepared:
    chosen = _select(encoder, transforms)
    if len(x_raw) < 2:
        raise ValueError(f"invariance scores need at least 2 inputs, got {len(x_raw)}")
    if len(x_raw) > n:
        pick = torch.randperm(len(x_raw), generator=torch.Generator().manual_seed(seed))[:n]
        x_raw = x_raw[pick.sort().values.numpy()]
    clean = torch.cat([encoder.to_input(x_raw[i:i + batch_size])
                       for i in range(0, len(x_raw), batch_size)])
    return _Prepared(clean, chosen, seed, batch_size)


@torch.no_grad()
def _features(encoder, x: torch.Tensor, vector: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([encoder(x[i:i + batch_size], vector).float().cpu()
                      for i in range(0, len(x), batch_size)])


@torch.no_grad()
def _scores_at(encoder, prepared: _Prepared, invariance: VectorLike | float,
               batch_size: int) -> dict[str, float]:
    vector = encoder.space.vector(invariance).to(encoder.device)
    was_training = encoder.training
    encoder.eval()
    try:
        clean = _features(encoder, prepared.clean, vector, batch_size)
        return {name: float(whitened_cosine(clean, _features(encoder, prepared.transformed(name),
                                                             vector, batch_size)).mean())
                for name in prepared.transforms}
    finally:
        encoder.train(was_training)


def invariance_scores(encoder, x_raw: np.ndarray | torch.Tensor, invariance: VectorLike | float,
                      transforms: Sequence[str] | Mapping[str, TransformFn] | None = None,
                      n: int = 500, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """Mean whitened cosine similarity between ``f(x; i)`` and ``f(t(x); i)`` per transform.

    ``encoder`` is an :class:`~amortinv.models.Encoder`; ``x_raw`` raw inputs as for
    ``encoder.features`` (uint8 images or waveforms); ``invariance`` the vector ``i`` (named
    dict, sequence, or one number), validated against the encoder's space. ``transforms`` is
    None (every transform for the encoder's modality, see :func:`transforms_for`), a list of
    names, or a mapping name -> ``fn(x, generator)`` of custom transforms. At most ``n``
    inputs are used (a seeded random subset). Returns name -> score in [-1, 1]; 1 = invariant.
    """
    vector = encoder.space.vector(invariance)  # refuse a bad vector before any work
    prepared = _prepare(encoder, x_raw, transforms, n, seed, batch_size)
    return _scores_at(encoder, prepared, vector, batch_size)


def _with_value(encoder, base_vector: VectorLike | float, group: str, value: float
                ) -> dict[str, float]:
    values = encoder.space.to_dict(base_vector)
    if group not in values:
        raise InvalidInvarianceVector(f"unknown group {group!r}: the '{encoder.space.name}' "
                                      f"space has groups {', '.join(encoder.space.names)}")
    return {**values, group: float(value)}


def _one_transform(transform: str | TransformFn) -> Sequence[str] | Mapping[str, TransformFn]:
    return [transform] if isinstance(transform, str) else {"custom": transform}


def score_curve(encoder, x_raw: np.ndarray | torch.Tensor, base_vector: VectorLike | float,
                group: str, values: Sequence[float], transform: str | TransformFn,
                n: int = 500, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """Score of one transform as ``group`` moves over ``values`` (the rest of the vector is
    ``base_vector``): an array of ``len(values)``, for a line plot. Same inputs and
    transform draws at every value."""
    vectors = [_with_value(encoder, base_vector, group, v) for v in values]
    for v in vectors:
        encoder.space.vector(v)
    prepared = _prepare(encoder, x_raw, _one_transform(transform), n, seed, batch_size)
    return np.array([next(iter(_scores_at(encoder, prepared, v, batch_size).values()))
                     for v in vectors])


def score_grid(encoder, x_raw: np.ndarray | torch.Tensor, base_vector: VectorLike | float,
               group_a: str, group_b: str, values: Sequence[float],
               transform: str | TransformFn, n: int = 500, seed: int = 0,
               batch_size: int = 256) -> np.ndarray:
    """Score of one transform over a grid: entry ``[j, k]`` has ``group_a = values[j]`` and
    ``group_b = values[k]`` (rows: group_a), for a heat map. Costs ``len(values) ** 2``
    times a one-transform score."""
    if group_a == group_b:
        raise ValueError(f"score_grid needs two different groups, got {group_a!r} twice; "
                         "use score_curve for one group")
    rows = [[_with_value(encoder, _with_value(encoder, base_vector, group_a, a), group_b, b)
             for b in values] for a in values]
    for row in rows:
        for v in row:
            encoder.space.vector(v)
    prepared = _prepare(encoder, x_raw, _one_transform(transform), n, seed, batch_size)
    return np.array([[next(iter(_scores_at(encoder, prepared, v, batch_size).values()))
                      for v in row] for row in rows])

"""Batched image augmentation gated by an invariance vector.

Every image in a batch gets its own random parameters, drawn in one call per operation and
applied with batched tensor ops on whatever device the batch is on (no Python loop over
images). One invariance vector holds for the whole batch:

- a value of 0 switches a group's operations off exactly (the output is the input);
- 1 is the standard SimCLR setting (Chen et al. 2020, CIFAR recipe);
- in between, magnitudes scale linearly with the value; the two all-or-nothing operations
  (flip, grayscale) scale their probability instead.

Operations run in SimCLR's order: crop, flip, colour jitter, grayscale, blur. Inputs are float
tensors in [0, 1] of shape ``(B, C, H, W)`` with C = 1 (grey) or 3 (RGB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from amortinv.augment.draws import uniform
from amortinv.invariance import InvarianceSpace, VectorLike

#: Which group of a space drives each operation (a 2-group space drives several at once).
OPERATION_GROUPS: dict[str, tuple[str, ...]] = {
    "crop": ("crop", "spatial"),
    "flip": ("flip", "spatial"),
    "color": ("color", "appearance"),
    "grayscale": ("grayscale", "appearance"),
    "blur": ("blur", "appearance"),
}


@dataclass(frozen=True)
class VisionSettings:
    """The strength-1 setting of each operation (SimCLR's defaults)."""

    crop_min_scale: float = 0.08
    crop_max_log_ratio: float = math.log(4 / 3)
    flip_p: float = 0.5
    color_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gamma: float = 0.4
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


# -- primitives: one batched operation each, parameters given per image --------------------------
def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crop box ``(cx, cy, w, h)`` per image (normalised: centre in [-1, 1], size in (0, 1])
    and resize it back to the full size with bilinear sampling."""
    b = x.shape[0]
    cx, cy, w, h = boxes.to(x.device, x.dtype).unbind(1)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flip the images where ``mask`` is true."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def _per_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.device, x.dtype).view(-1, 1, 1, 1)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, shape ``(B, 1, H, W)``; a grey image is its own luminance."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_image(factor, x)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = luminance(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + _per_image(factor, x) * (x - mean)).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    grey = luminance(x)
    return (grey + _per_image(factor, x) * (x - grey)).clamp(0, 1)


#: RGB to YIQ (NTSC): luma, then the two chroma axes (I, Q) that :func:`adjust_hue` rotates.
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` turns (-0.5..0.5) in YIQ space: one matrix per image, cheap on a
    GPU, and close to the HSV hue shift of torchvision for natural images."""
    angle = 2 * math.pi * shift.to(x.device, x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    to_yiq = x.new_tensor(RGB_TO_YIQ)
    to_rgb = torch.linalg.inv(to_yiq)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    m = to_rgb @ rot @ to_yiq
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def adjust_gamma(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0).pow(_per_image(gamma, x)).clamp(0, 1)


def to_grayscale(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``mask`` is true by their luminance, keeping C channels."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), luminance(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` (pixels) per image; 0 leaves it untouched."""
    b, c, h, w = x.shape
    sigma = sigma.to(x.device, x.dtype)
    radius = min(math.ceil(3 * float(sigma.max())), (min(h, w) - 1) // 2)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    safe = sigma.clamp_min(1e-3).view(-1, 1)
    kernel = torch.exp(-0.5 * (t / safe) ** 2)
    delta = (t == 0).to(x.dtype).expand_as(kernel)
    kernel = torch.where(sigma.view(-1, 1) > 1e-3, kernel, delta)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"),
                 kernel.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"),
                 kernel.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


# -- the gated pipeline ------------------------------------------------------------------------
class VisionAugment:
    """Batched augmentation for one invariance space.

        >>> from amortinv.invariance import RGB
        >>> aug = VisionAugment(RGB)
        >>> x = torch.rand(8, 3, 32, 32)
        >>> v1, v2 = aug.views(x, {"crop": 1, "flip": 1, "color": 0.5, "grayscale": 0,
        ...                        "blur": 0}, generator=torch.Generator().manual_seed(0))
        >>> v1.shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(self, space: InvarianceSpace, settings: VisionSettings | None = None):
        if space.modality != "image":
            raise ValueError(f"VisionAugment needs an image space, got '{space.name}' "
                             f"({space.modality}); use AudioAugment for audio")
        unknown = [g for g in space.names
                   if not any(g in groups for groups in OPERATION_GROUPS.values())]
        if unknown:
            raise ValueError(f"no image operation is defined for group(s) {', '.join(unknown)}")
        self.space = space
        self.settings = settings or VisionSettings()

    def strengths(self, invariance: VectorLike) -> dict[str, float]:
        """Strength of each operation under ``invariance`` (0 where the space lacks it)."""
        values = self.space.to_dict(invariance)
        return {op: next((values[g] for g in groups if g in values), 0.0)
                for op, groups in OPERATION_GROUPS.items()}

    def views(self, x: torch.Tensor, invariance: VectorLike, n: int = 2,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``n`` independently augmented views of the batch, all under one vector."""
        return tuple(self(x, invariance, generator=generator) for _ in range(n))

    def __call__(self, x: torch.Tensor, invariance: VectorLike,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (B, 1|3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got {x.dtype}; "
                             "divide uint8 images by 255 first")
        s = self.strengths(invariance)
        out = x
        if s["crop"] > 0:
            out = resized_crop(out, self._crop_boxes(len(x), s["crop"], generator))
        if s["flip"] > 0:
            out = hflip(out, _bernoulli(len(x), self.settings.flip_p * s["flip"], generator))
        if s["color"] > 0:
            out = self._color(out, s["color"], generator)
        if s["grayscale"] > 0 and x.shape[1] == 3:
            p = self.settings.grayscale_p * s["grayscale"]
            out = to_grayscale(out, _bernoulli(len(x), p, generator))
        if s["blur"] > 0:
            out = self._blur(out, s["blur"], generator)
        return out if out is not x else x.clone()

    def _crop_boxes(self, n: int, strength: float, g: torch.Generator | None) -> torch.Tensor:
        """Boxes like RandomResizedCrop: area fraction uniform in [1 - s(1 - min), 1], aspect
        ratio log-uniform in +-s*log(4/3), centre uniform where the box fits."""
        cfg = self.settings
        area = uniform(n, 1 - strength * (1 - cfg.crop_min_scale), 1.0, g)
        log_ratio = uniform(n, -strength * cfg.crop_max_log_ratio,
                             strength * cfg.crop_max_log_ratio, g)
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = uniform(n, -(1 - w), 1 - w, g)
        cy = uniform(n, -(1 - h), 1 - h, g)
        return torch.stack([cx, cy, w, h], dim=1)

    def _color(self, x: torch.Tensor, strength: float, g: torch.Generator | None) -> torch.Tensor:
        cfg, n = self.settings, len(x)
        on = _bernoulli(n, cfg.color_p, g).float()

        def factor(magnitude: float) -> torch.Tensor:
            f = uniform(n, 1 - strength * magnitude, 1 + strength * magnitude, g)
            return 1 + on * (f - 1)  # images not drawn for jitter keep factor 1

        x = adjust_brightness(x, factor(cfg.brightness))
        x = adjust_contrast(x, factor(cfg.contrast))
        if x.shape[1] == 3:
            x = adjust_saturation(x, factor(cfg.saturation))
            return adjust_hue(x, on * uniform(n, -strength * cfg.hue, strength * cfg.hue, g))
        return adjust_gamma(x, factor(cfg.gamma))

    def _blur(self, x: torch.Tensor, strength: float, g: torch.Generator | None) -> torch.Tensor:
        cfg, n = self.settings, len(x)
        sigma = strength * uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], g)
        return gaussian_blur(x, sigma * _bernoulli(n, cfg.blur_p, g).float())

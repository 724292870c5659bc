"""One interface for every amortised encoder: images or audio, ResNet or ViT.

    >>> from amortinv.models import Encoder, ModelConfig
    >>> from amortinv.invariance import GREY
    >>> enc = Encoder(ModelConfig(in_channels=1, image_size=28, width=8), GREY)
    >>> x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    >>> enc.features(x, {"crop": 1, "flip": 0, "color": 1, "blur": 0}).shape
    torch.Size([4, 64])

Inputs pass through three stages. ``to_input`` turns raw data (uint8 images or waveforms)
into the *augmentation domain* (float images in [0, 1], or log-mel spectrograms), where the
batched augmentation acts during pre-training; ``forward`` normalises and encodes.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amortinv.augment import LogMel, MelConfig
from amortinv.invariance import InvarianceSpace, VectorLike
from amortinv.models.resnet import ConditionedResNet

ARCHS = ("resnet18", "resnet50", "vit-tiny", "vit-small", "vit-base")
#: ImageNet per-channel statistics: the normalisation of the paper's released encoders.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """What to build; stored in every checkpoint so the model can be rebuilt from it."""

    arch: str = "resnet18"
    # hyper (paper's hypernetwork) | film (cheap) | none (plain baseline) | paper (the paper's
    # own hyper-ResNet module names, so its released weights load key for key)
    conditioning: str = "hyper"
    bases: int = 32
    conditioned_stages: tuple[int, ...] = (1, 2, 3, 4)
    width: int = 64
    stem: str = "small"  # small (28-64 px, no down-sampling) | imagenet
    # ResNet features: 1 = global average pooling; n > 1 = averaged over time (the last axis)
    # into n frequency bands, n x channels features (audio: where in frequency is kept)
    bands: int = 1
    modality: str = "image"
    in_channels: int = 3
    image_size: int = 32
    mel: MelConfig = field(default_factory=MelConfig)
    # normalisation of the augmentation domain, set from the data: one number, or one per
    # channel (the paper's encoders use IMAGENET_MEAN / IMAGENET_STD), or for audio one per mel
    # bin
    input_mean: float | tuple[float, ...] = 0.5
    input_std: float | tuple[float, ...] = 0.25
    resize: bool = False  # resize images to image_size first (the paper's encoders see 224 px)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.modality not in ("image", "audio"):
            raise ValueError(f"modality must be 'image' or 'audio', got {self.modality!r}")
        if self.bands != 1 and not (self.arch.startswith("resnet")
                                    and self.conditioning != "paper"):
            raise ValueError(f"bands > 1 needs a ResNet with hyper, film or no conditioning; "
                             f"got {self.arch} with '{self.conditioning}': use bands 1")
        if isinstance(self.mel, dict):
            self.mel = MelConfig(**self.mel)
        self.conditioned_stages = tuple(self.conditioned_stages)
        for name in ("input_mean", "input_std"):  # JSON gives per-channel values as lists
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model settings {unknown}: the checkpoint was written by a "
                             "newer amortinv; upgrade to load it")
        return cls(**data)


def build_backbone(config: ModelConfig, num_groups: int) -> nn.Module:
    """The conditioned network: ``forward(x, invariance) -> (B, feature_dim)``."""
    channels = 1 if config.modality == "audio" else config.in_channels
    if config.arch.startswith("resnet") and config.conditioning == "paper":
        from amortinv.models.paper_resnet import PaperResNet

        return PaperResNet(num_groups, config.arch, channels, config.width, config.stem,
                           config.bases, config.conditioned_stages)
    if config.arch.startswith("resnet"):
        return ConditionedResNet(num_groups, config.arch, channels, config.width, config.stem,
                                 config.conditioning, config.bases, config.conditioned_stages,
                                 config.bands)
    from amortinv.models.vit import PromptViT

    if config.conditioning not in ("hyper", "none"):
        raise ValueError("a ViT is conditioned by its invariance token: use conditioning "
                         "'hyper' (token on) or 'none' (plain ViT)")
    preset = {"vit-tiny": PromptViT.tiny, "vit-small": PromptViT.small,
              "vit-base": PromptViT.base}[config.arch]
    return preset(num_groups, channels, config.image_size,
                  conditioned=config.conditioning != "none")


class Encoder(nn.Module):
    """An amortised encoder with its invariance space and card.

    ``features(x, invariance)`` is the user-facing call; ``forward(x, vector)`` is the training
    call on augmentation-domain inputs.
    """

    def __init__(self, config: ModelConfig, space: InvarianceSpace, card: dict | None = None):
        super().__init__()
        if space.modality != config.modality:
            raise ValueError(f"the '{space.name}' space is for {space.modality}, but the model "
                             f"is for {config.modality}")
        self.config, self.space = config, space
        self.card = dict(card or {})
        self.backbone = build_backbone(config, len(space))
        self.feature_dim: int = self.backbone.feature_dim
        self.log_mel = None
        if config.modality == "audio":
            with torch.device("cpu"):  # small filter banks, real even when the model is built
                self.log_mel = LogMel(config.mel)  # on the meta device (to count its cost)

    @property
    def device(self) -> torch.device:
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def to_input(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw data -> augmentation domain, on the encoder's device.

        Images: uint8 ``(N, C, H, W)`` (or float already in [0, 1]) -> float in [0, 1]; float
        images outside [0, 1] (e.g. 0-255) are refused rather than misread.
        Audio: float waveforms ``(N, T)`` at the model's sample rate -> log-mel spectrograms.
        """
        x = torch.as_tensor(x).to(self.device)
        if self.config.modality == "audio":
            if x.ndim != 2:
                raise ValueError(f"expected waveforms (N, T), got shape {tuple(x.shape)}")
            if not x.is_floating_point():
                raise ValueError(f"waveforms must be floats in [-1, 1], got {x.dtype}: divide "
                                 "16-bit PCM by 32768 (soundfile reads floats by default)")
            shortest = self.config.mel.n_fft // 2 + 1  # the spectrogram's reflect padding
            if x.shape[1] < shortest:
                raise ValueError(f"clips must hold at least {shortest} samples, got "
                                 f"{x.shape[1]}: pad them (the app's clips are "
                                 f"{self.config.mel.sample_rate} samples, one second)")
            return self.log_mel(x.float())
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images (N, {self.config.in_channels}, H, W), got shape "
                             f"{tuple(x.shape)}")
        if x.dtype == torch.uint8:
            return x.float() / 255.0
        x = x.float()
        if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
            raise ValueError(f"float images must be in [0, 1]; these span {float(x.min()):.4g} "
                             f"to {float(x.max()):.4g}: divide 0-255 images by 255, or pass "
                             "them as uint8")
        return x

    @torch.no_grad()
    def reusable(self, x: np.ndarray | torch.Tensor | Inputs, batch_size: int = 512
                 ) -> np.ndarray | torch.Tensor | Inputs:
        """``x`` made ready to be encoded at many vectors (:meth:`features` takes it): audio
        is turned into log-mel spectrograms once (:class:`Inputs`), which otherwise cost
        about as much as a small encoder on every call; images are returned as they are
        (their conversion is a division, and uint8 is a quarter of the memory)."""
        if self.config.modality != "audio" or isinstance(x, Inputs):
            return x
        parts = [self._given(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return Inputs(torch.cat(parts) if parts else torch.zeros(0, device=self.device))

    def forward(self, x: torch.Tensor, invariance: torch.Tensor) -> torch.Tensor:
        """Augmentation-domain batch and one vector -> features ``(B, feature_dim)``."""
        cfg = self.config
        if cfg.resize and cfg.modality == "image" and x.shape[-2:] != (cfg.image_size,) * 2:
            x = F.interpolate(x, size=(cfg.image_size,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x - _per_channel(cfg.input_mean, x)) / _per_channel(cfg.input_std, x)
        if self.config.modality == "audio":
            x = x.unsqueeze(1)
        return self.backbone(x, invariance)

    @torch.no_grad()
    def features(self, x: np.ndarray | torch.Tensor | Inputs, invariance: VectorLike | float,
                 batch_size: int = 512, precision: str = "fp32") -> torch.Tensor:
        """Features of raw inputs (or :class:`Inputs`, converted already) at one invariance
        vector, in eval mode (each module's mode is restored afterwards), on the CPU.

        ``invariance`` is a named dict (every group of :attr:`space`), a sequence or tensor in
        the space's order, or one number for all groups; it is validated first.
        ``precision="bf16"`` computes in bfloat16 where the hardware does that fast
        (:func:`fast_bf16`): about twice as fast on a recent CPU, for features within about
        1% of fp32's (the app's live probe uses it); elsewhere it computes in fp32.
        """
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        vector = self.space.vector(invariance).to(self.device)
        bf16 = precision == "bf16" and fast_bf16(self.device)
        modes = [(m, m.training) for m in self.modules()]  # a caller's mix is given back
        self.eval()
        out = []
        try:
            for i in range(0, len(x), batch_size):
                batch = self._batch(x, i, batch_size)  # in fp32 (log-mel) whatever the precision
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                    out.append(self(batch, vector).float().cpu())
        finally:
            for module, training in modes:
                module.training = training
        if not out:
            return torch.zeros(0, self.feature_dim)
        return torch.cat(out)

    def _batch(self, x: np.ndarray | torch.Tensor | Inputs, start: int, size: int
               ) -> torch.Tensor:
        """Examples ``start:start + size`` of ``x`` in the augmentation domain."""
        if isinstance(x, Inputs):
            return x.tensor[start:start + size].to(self.device)
        return self._given(x[start:start + size])

    def _given(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """:meth:`to_input` for inputs a caller gives, which may hold NaN or infinities (the
        registry's datasets are checked when loaded, and pre-training's batches come from
        them: no check, and no device sync, per step)."""
        x = torch.as_tensor(x)
        if x.is_floating_point() and not torch.isfinite(x).all():
            rows = x.reshape(len(x) if x.ndim else 1, -1)  # one row an input
            bad = int((~torch.isfinite(rows)).any(1).sum())
            raise ValueError(f"{bad} of the {len(rows)} inputs hold NaN or infinite values: "
                             "features of them would be NaN; fix or drop them first")
        return self.to_input(x)


@dataclass(frozen=True)
class Inputs:
    """Raw data already in an encoder's augmentation domain (:meth:`Encoder.reusable`), so
    that encoding it at many vectors converts it once."""

    tensor: torch.Tensor

    def __len__(self) -> int:
        return len(self.tensor)


def fast_bf16(device: torch.device | str = "cpu") -> bool:
    """True where bfloat16 runs natively: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 or
    AMX (elsewhere CPUs emulate it, more slowly than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume emulation
        return False


def _per_channel(value: float | tuple[float, ...], x: torch.Tensor) -> float | torch.Tensor:
    """One number as is; per-channel values shaped to broadcast over images ``(B, C, H, W)``,
    per-mel-bin values over spectrograms ``(B, n_mels, frames)``."""
    if isinstance(value, int | float):
        return value
    return torch.tensor(value, device=x.device, dtype=x.dtype).view(-1, *[1] * (x.ndim - 2))

"""Batched audio augmentation on log-mel spectrograms, gated by an invariance vector.

Waveforms become log-mel spectrograms once (:class:`LogMel`, torchaudio); every augmentation
then acts on the spectrogram batch, one random draw per clip, in a handful of batched ops:

- ``pitch``: shift by up to +-4 semitones, an exact frequency scaling mapped onto the mel axis;
- ``time``: circular shift (up to 25% of the clip) and stretch (0.8-1.25x);
  pitch and time share one resampling grid;
- ``noise``: gain (+-6 dB) and additive noise, white to coloured, down to 10 dB SNR;
- ``mask``: up to two time and two frequency masks, each up to 15% of the axis;
- ``filter``: a smooth random equaliser curve over frequency, +-9 dB.

As for images, 0 switches a group off exactly, 1 is full strength, and magnitudes scale
linearly in between. Spectrograms are natural-log power, shape ``(B, n_mels, frames)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio

from amortinv.augment.draws import uniform
from amortinv.invariance import InvarianceSpace, VectorLike

#: log(power) floor, so silence is finite.
LOG_EPS = 1e-6
DB = math.log(10) / 10  # one decibel of power, in natural-log units


@dataclass(frozen=True)
class MelConfig:
    """How waveforms become log-mel spectrograms (shared by augmentation and encoders)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 40.0
    f_max: float = 7600.0

    def bin_frequencies(self) -> torch.Tensor:
        """Centre frequency (Hz) of each mel bin (HTK mel scale, as torchaudio's default)."""
        mel = torch.linspace(_hz_to_mel(self.f_min), _hz_to_mel(self.f_max), self.n_mels + 2)
        return _mel_to_hz(mel[1:-1])


def _hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


class LogMel(torch.nn.Module):
    """Waveforms ``(B, T)`` -> natural-log mel power ``(B, n_mels, frames)``."""

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = config or MelConfig()
        c = self.config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels,
            f_min=c.f_min, f_max=c.f_max, power=2.0,
        )
        # The window and filterbank follow from the config: keep them out of checkpoints.
        for module in self.mel.modules():
            module._non_persistent_buffers_set.update(n for n, _ in
                                                      module.named_buffers(recurse=False))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim != 2:
            raise ValueError(f"expected waveforms of shape (B, T), got {tuple(wave.shape)}")
        return torch.log(self.mel(wave.float()) + LOG_EPS)


@dataclass(frozen=True)
class AudioSettings:
    """The strength-1 setting of each audio operation."""

    max_semitones: float = 4.0
    max_shift: float = 0.25
    max_stretch: float = 1.25
    gain_db: float = 6.0
    noise_p: float = 0.8
    min_snr_db: float = 10.0
    clean_snr_db: float = 40.0
    max_noise_slope: float = 1.0
    masks: int = 2
    max_mask: float = 0.15
    eq_db: float = 9.0
    eq_components: int = 3


class AudioAugment:
    """Batched log-mel augmentation for an audio invariance space.

        >>> from amortinv.invariance import AUDIO
        >>> aug = AudioAugment(AUDIO)
        >>> spec = LogMel()(torch.randn(4, 16000) * 0.1)
        >>> aug(spec, [1, 0, 0, 0, 0]).shape
        torch.Size([4, 64, 101])
    """

    def __init__(self, space: InvarianceSpace, mel: MelConfig | None = None,
                 settings: AudioSettings | None = None):
        if space.modality != "audio":
            raise ValueError(f"AudioAugment needs an audio space, got '{space.name}' "
                             f"({space.modality}); use VisionAugment for images")
        known = {"pitch", "time", "noise", "mask", "filter"}
        unknown = [g for g in space.names if g not in known]
        if unknown:
            raise ValueError(f"no audio operation is defined for group(s) {', '.join(unknown)}")
        self.space = space
        self.mel = mel or MelConfig()
        self.settings = settings or AudioSettings()
        freqs = self.mel.bin_frequencies()
        self._bin_mel = _hz_to_mel(freqs).float()
        self._log_freq = torch.log2(freqs / freqs[0]).float()

    def strengths(self, invariance: VectorLike) -> dict[str, float]:
        values = self.space.to_dict(invariance)
        return {op: values.get(op, 0.0) for op in ("pitch", "time", "noise", "mask", "filter")}

    def views(self, spec: torch.Tensor, invariance: VectorLike, n: int = 2,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        return tuple(self(spec, invariance, generator=generator) for _ in range(n))

    def __call__(self, spec: torch.Tensor, invariance: VectorLike,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if spec.ndim != 3 or spec.shape[1] != self.mel.n_mels:
            raise ValueError(f"expected log-mel spectrograms (B, {self.mel.n_mels}, frames), "
                             f"got {tuple(spec.shape)}; convert waveforms with LogMel first")
        s = self.strengths(invariance)
        out = spec
        if s["pitch"] > 0 or s["time"] > 0:
            out = self._warp(out, s["pitch"], s["time"], generator)
        if s["filter"] > 0:
            out = out + self._eq_curve(len(spec), s["filter"], generator).to(out)[:, :, None]
        if s["noise"] > 0:
            out = self._noise(out, s["noise"], generator)
        if s["mask"] > 0:
            out = self._mask(out, s["mask"], generator)
        return out if out is not spec else spec.clone()

    # -- operations --------------------------------------------------------------------------
    def _warp(self, x: torch.Tensor, pitch: float, time: float,
              g: torch.Generator | None) -> torch.Tensor:
        b, cfg = len(x), self.settings
        semitones = uniform(b, -pitch * cfg.max_semitones, pitch * cfg.max_semitones, g)
        shift = uniform(b, -time * cfg.max_shift, time * cfg.max_shift, g)
        stretch = torch.exp(uniform(b, -time * math.log(cfg.max_stretch),
                                     time * math.log(cfg.max_stretch), g))
        return self.warp(x, semitones, shift, stretch)

    def warp(self, x: torch.Tensor, semitones: torch.Tensor, shift: torch.Tensor,
             stretch: torch.Tensor) -> torch.Tensor:
        """Pitch-shift, circularly time-shift (fraction of the clip) and time-stretch each clip
        with one resampling grid: the output bin centred at f reads the input at
        f / 2^(semitones/12), so a positive shift moves energy up."""
        n_mels, frames = x.shape[1:]
        ratio = (2.0 ** (semitones / 12.0)).double().view(-1, 1)
        src_mel = _hz_to_mel(_mel_to_hz(self._bin_mel.double().view(1, -1)) / ratio)
        step = self._bin_mel[1] - self._bin_mel[0]
        src_bin = (src_mel - self._bin_mel[0]) / step  # fractional input bin, (B, n_mels)
        y = (2 * src_bin / max(n_mels - 1, 1) - 1).float()
        # Time in frame units: stretch about the centre, shift circularly by a fraction of
        # the clip, then normalise to grid_sample's [-1, 1] (align_corners: frame centres).
        centre = (frames - 1) / 2
        j = torch.arange(frames, dtype=torch.float32).view(1, -1)
        src = centre + (j - centre) / stretch.view(-1, 1) - shift.view(-1, 1) * frames
        xs = 2 * torch.remainder(src, frames) / max(frames - 1, 1) - 1
        grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], y[:, :, None]), dim=-1)
        floor = x.amin(dim=(1, 2), keepdim=True)
        warped = F.grid_sample((x - floor).unsqueeze(1), grid.to(x), mode="bilinear",
                               padding_mode="zeros", align_corners=True)
        return warped.squeeze(1) + floor

    def _eq_curve(self, b: int, strength: float, g: torch.Generator | None) -> torch.Tensor:
        """A smooth gain curve (natural-log units) over log frequency: a few random cosines."""
        cfg = self.settings
        pos = self._log_freq / self._log_freq[-1]  # 0..1 over the mel bins
        k = torch.arange(1, cfg.eq_components + 1).float()
        amp = torch.rand(b, cfg.eq_components, generator=g) * 2 - 1
        phase = torch.rand(b, cfg.eq_components, generator=g) * 2 * math.pi
        curve = (amp[:, :, None] * torch.cos(math.pi * k[None, :, None] * pos + phase[:, :, None]))
        curve = curve.sum(1) / cfg.eq_components
        return strength * cfg.eq_db * DB * curve / curve.abs().amax(1, keepdim=True).clamp(1e-6)

    def _noise(self, x: torch.Tensor, strength: float, g: torch.Generator | None) -> torch.Tensor:
        """Gain, then additive noise whose SNR falls from 40 dB toward 10 dB with strength and
        whose spectral slope goes from white to pink- or blue-ish."""
        b, n_mels, frames = x.shape
        cfg = self.settings
        gain = uniform(b, -strength * cfg.gain_db, strength * cfg.gain_db, g) * DB
        x = x + gain.to(x).view(-1, 1, 1)
        lowest = cfg.clean_snr_db - strength * (cfg.clean_snr_db - cfg.min_snr_db)
        snr = uniform(b, lowest, cfg.clean_snr_db, g)
        on = (torch.rand(b, generator=g) < cfg.noise_p).float()
        slope = uniform(b, -strength * cfg.max_noise_slope, strength * cfg.max_noise_slope, g)
        shape = torch.exp2(slope[:, None] * self._log_freq[None, :])
        shape = shape / shape.mean(1, keepdim=True)  # (B, n_mels), mean 1
        signal_power = torch.exp(x).mean(dim=(1, 2)).detach().cpu()
        noise_power = on * signal_power * 10 ** (-snr / 10)
        fluctuation = -torch.log(torch.rand(b, n_mels, frames, generator=g).clamp_min(1e-7))
        noise = noise_power.view(-1, 1, 1) * shape[:, :, None] * fluctuation
        return torch.log(torch.exp(x) + noise.to(x))

    def _mask(self, x: torch.Tensor, strength: float, g: torch.Generator | None) -> torch.Tensor:
        """SpecAugment-style masks filled with each clip's mean."""
        b, n_mels, frames = x.shape
        cfg = self.settings
        keep = torch.ones(b, n_mels, frames, dtype=torch.bool)
        for axis, size in ((1, n_mels), (2, frames)):
            for _ in range(cfg.masks):
                width = (torch.rand(b, generator=g) * strength * cfg.max_mask * size).long()
                start = (torch.rand(b, generator=g) * (size - width + 1)).long()
                pos = torch.arange(size).view(1, -1)
                band = (pos >= start[:, None]) & (pos < (start + width)[:, None])
                keep &= ~band[:, :, None] if axis == 1 else ~band[:, None, :]
        mean = x.mean(dim=(1, 2), keepdim=True)
        return torch.where(keep.to(x.device), x, mean)

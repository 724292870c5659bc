"""Each audio group: at 0 its property is untouched, at 1 it changes; zeros is the identity."""

import math

import pytest
import torch

from amortinv.augment import AudioAugment, LogMel
from amortinv.invariance import AUDIO, GREY, InvalidInvarianceVector

SR = 16000


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vec(**values):
    return {name: values.get(name, 0.0) for name in AUDIO.names}


def tone_burst(n=32, freq=440.0):
    """A tone in the first half of a 1 s clip, silence after: pitch and timing are visible."""
    t = torch.arange(SR) / SR
    wave = 0.5 * torch.sin(2 * math.pi * freq * t) * (t < 0.5)
    return LogMel()(wave.expand(n, -1).contiguous())


def noise_clips(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LogMel()(torch.randn(n, SR, generator=g) * 0.1)


def peak_hz(spec):
    freqs = LogMel().config.bin_frequencies()
    return freqs[spec.max(dim=2).values.argmax(dim=1)].float()


def onset_weight(spec):
    """Share of energy in the first half of the clip."""
    e = torch.exp(spec).sum(1)
    half = e.shape[1] // 2
    return e[:, :half].sum(1) / e.sum(1)


def test_all_zeros_gives_identical_views():
    spec = tone_burst()
    v1, v2 = AudioAugment(AUDIO).views(spec, vec(), generator=seeded())
    assert torch.equal(v1, spec) and torch.equal(v2, spec)


def test_shapes_are_kept_and_seed_is_deterministic():
    spec = noise_clips(8)
    aug = AudioAugment(AUDIO)
    a = aug(spec, [1.0] * 5, generator=seeded(1))
    assert a.shape == spec.shape and a.dtype == spec.dtype and torch.isfinite(a).all()
    assert torch.equal(a, aug(spec, [1.0] * 5, generator=seeded(1)))
    assert not torch.equal(a, aug(spec, [1.0] * 5, generator=seeded(2)))


def test_pitch_shift_lands_on_the_right_frequency():
    aug = AudioAugment(AUDIO)
    spec = tone_burst(n=2, freq=600.0)
    up_down = aug.warp(spec, torch.tensor([4.0, -4.0]), torch.zeros(2), torch.ones(2))
    expected = torch.tensor([600 * 2 ** (4 / 12), 600 * 2 ** (-4 / 12)])
    assert torch.allclose(peak_hz(up_down), expected, rtol=0.06)  # within one mel bin


def test_pitch_only_when_on():
    aug, spec = AudioAugment(AUDIO), tone_burst()
    off = aug(spec, vec(time=1, noise=1, mask=0, filter=0), generator=seeded())
    assert torch.allclose(peak_hz(off), peak_hz(spec))
    on = aug(spec, vec(pitch=1), generator=seeded())
    assert (peak_hz(on) != peak_hz(spec)).float().mean() > 0.7


def test_time_only_when_on():
    aug, spec = AudioAugment(AUDIO), tone_burst()
    off = aug(spec, vec(pitch=1, filter=1), generator=seeded())
    assert torch.allclose(onset_weight(off), onset_weight(spec), atol=0.02)
    on = aug(spec, vec(time=1), generator=seeded())
    assert (onset_weight(on) - onset_weight(spec)).abs().max() > 0.1


def test_noise_raises_the_floor_only_when_on():
    aug, spec = AudioAugment(AUDIO), tone_burst()
    quiet = spec[:, :, -20:].mean()  # the silent second half
    off = aug(spec, vec(pitch=1, time=0, filter=1), generator=seeded())
    assert off[:, :, -20:].mean() < quiet + 1.0
    on = aug(spec, vec(noise=1), generator=seeded())
    assert on[:, :, -20:].mean() > quiet + 3.0


def test_masks_only_when_on():
    aug, spec = AudioAugment(AUDIO), noise_clips()

    def masked_fraction(x):  # masks are filled with each clip's mean
        return (x.flatten(1) == spec.flatten(1).mean(1, keepdim=True)).float().mean(1)

    off = aug(spec, vec(pitch=1, time=1, noise=1, filter=1), generator=seeded())
    assert masked_fraction(off).max() < 0.01
    on = aug(spec, vec(mask=1), generator=seeded())
    assert masked_fraction(on).mean() > 0.05


def test_filter_tilts_the_spectrum_only_when_on():
    aug, spec = AudioAugment(AUDIO), noise_clips()

    def band_profile(x):
        return x.mean(2) - x.mean(dim=(1, 2)).view(-1, 1)

    # Resampling in time smooths the noise a little (up to ~0.2 over seeds 0-5); a filter at
    # full strength moves some band by ~0.9 or more in every clip.
    off = aug(spec, vec(time=1), generator=seeded())
    assert torch.allclose(band_profile(off), band_profile(spec), atol=0.3)
    on = aug(spec, vec(filter=1), generator=seeded())
    change = (band_profile(on) - band_profile(spec)).abs().amax(1)
    assert (change > 0.5).float().mean() > 0.8  # several dB somewhere in every clip


def test_bad_inputs_get_clear_errors():
    aug = AudioAugment(AUDIO)
    with pytest.raises(InvalidInvarianceVector, match="pitch, time, noise, mask, filter"):
        aug(tone_burst(2), [1, 1])
    with pytest.raises(ValueError, match="LogMel"):
        aug(torch.randn(2, SR), [1] * 5)
    with pytest.raises(ValueError, match="audio space"):
        AudioAugment(GREY)

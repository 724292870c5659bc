"""Conditioned ResNets and the Encoder interface."""

import numpy as np
import pytest
import torch

from amortinv.invariance import AUDIO, GREY, RGB, InvalidInvarianceVector
from amortinv.models import ConditionedResNet, Encoder, Inputs, ModelConfig, conditioning, resnet
from amortinv.models.conditioning import FiLMBatchNorm2d, HyperConv2d


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_hypernetwork_matches_the_paper_in_size():
    with torch.device("meta"):  # shapes only: ResNet-50's 3 GB of weights took 12 s to fill
        plain = count(ConditionedResNet(5, conditioning="none"))
        hyper = count(ConditionedResNet(5, conditioning="hyper", bases=32))
        r50 = count(ConditionedResNet(5, "resnet50", conditioning="hyper", bases=32))
        film = count(ConditionedResNet(5, conditioning="film"))
    assert 32 < hyper / plain < 34  # paper: ~33x
    assert 0.7e9 < r50 < 0.85e9  # paper: ~0.77 B
    assert film / plain < 1.1  # the cheap option


def test_hyper_kernel_is_bias_plus_a_mix_of_bases():
    conv = HyperConv2d(3, 4, 3, bases=5, embed_dim=2)
    e = torch.tensor([0.3, -1.0])
    mix = torch.relu(conv.coefficients(e))
    expected = conv.kernel_bias + sum(mix[b] * conv.basis[b] for b in range(5))
    assert torch.allclose(conv.kernel(e), expected.view(4, 3, 3, 3), atol=1e-6)


def test_film_starts_as_plain_batchnorm():
    bn = FiLMBatchNorm2d(6)
    plain = torch.nn.BatchNorm2d(6)
    x = torch.randn(4, 6, 5, 5)
    assert torch.allclose(bn(x, torch.randn(16)), plain(x), atol=1e-6)


@pytest.mark.parametrize("conditioning", ["hyper", "film"])
def test_features_depend_on_the_vector_only_when_conditioned(conditioning):
    torch.manual_seed(0)
    net = ConditionedResNet(4, in_channels=1, width=8, conditioning=conditioning, bases=4).eval()
    if conditioning == "film":  # FiLM starts at identity: give it something to say
        for m in net.modules():
            if isinstance(m, FiLMBatchNorm2d):
                torch.nn.init.normal_(m.film[2].weight, std=0.1)
    x = torch.randn(3, 1, 28, 28)
    a, b = net(x, torch.ones(4)), net(x, torch.zeros(4))
    assert a.shape == (3, 64) and not torch.allclose(a, b)
    plain = ConditionedResNet(4, in_channels=1, width=8, conditioning="none").eval()
    assert torch.equal(plain(x, torch.ones(4)), plain(x, torch.zeros(4)))


def trained_norms(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with running statistics, norm affines and FiLM offsets far from their starts,
    so that folding a wrong one shows."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.2, 3.0, generator=g)
            m.weight.data.normal_(1, 0.3, generator=g)
            m.bias.data.normal_(0, 0.3, generator=g)
        if isinstance(m, FiLMBatchNorm2d):
            m.film[2].weight.data.normal_(0, 0.1, generator=g)
    return net


@pytest.mark.parametrize("kind", ["hyper", "film", "none"])
def test_eval_mode_folds_each_norm_into_its_conv_and_computes_the_same(kind, monkeypatch):
    torch.manual_seed(0)
    net = trained_norms(ConditionedResNet(3, in_channels=1, width=8, conditioning=kind,
                                          bases=4)).eval()
    x, v = torch.randn(5, 1, 20, 20), torch.tensor([0.2, 0.9, 0.5], requires_grad=True)
    folded = net(x, v)
    folded.square().sum().backward()
    folded_grad, v.grad = v.grad, None
    monkeypatch.setattr(conditioning, "_running_affine", lambda norm: None)  # norm after conv
    reference = net(x, v)
    reference.square().sum().backward()
    assert torch.allclose(folded, reference, atol=1e-5, rtol=1e-4)
    if kind != "none":  # the learner's gradient reaches the vector through the folded kernels
        assert torch.allclose(folded_grad, v.grad, atol=1e-4, rtol=1e-3)
    net.train()  # training normalises by the batch: nothing is folded
    monkeypatch.undo()
    assert all(m.folded(torch.zeros(16)) is None for m in net.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_only_chosen_stages_are_conditioned():
    net = ConditionedResNet(5, width=8, conditioning="hyper", bases=2, conditioned_stages=(3, 4))
    generated = {name.split(".")[1] for name, m in net.named_modules()
                 if isinstance(m, HyperConv2d)}
    assert generated == {"4", "5", "6", "7"}  # blocks of stages 3 and 4 (two per stage)
    assert not any(isinstance(m, HyperConv2d) for m in net.stem.modules())


def test_imagenet_stem_and_resnet50_shapes():
    net = ConditionedResNet(2, "resnet50", width=8, stem="imagenet", conditioning="film")
    assert net(torch.randn(2, 3, 64, 64), torch.ones(2)).shape == (2, 8 * 8 * 4)


def test_gradients_reach_the_hypernetwork_and_the_vector():
    torch.manual_seed(0)  # some draws of a width-4 net zero every gradient of a basis
    net = ConditionedResNet(3, in_channels=1, width=4, conditioning="hyper", bases=2)
    v = torch.full((3,), 0.5, requires_grad=True)
    net(torch.randn(4, 1, 16, 16), v).sum().backward()
    conv = next(m for m in net.modules() if isinstance(m, HyperConv2d))
    assert conv.basis.grad is not None and conv.basis.grad.abs().sum() > 0
    assert v.grad is not None and v.grad.abs().sum() > 0  # downstream learns i by gradient


@pytest.mark.parametrize("kind", ["hyper", "film"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_on_channels_last_activations_match_float64(kind, mode, monkeypatch):
    """Activations are channels-last (faster on CPU). oneDNN's weight gradient of a strided 1x1
    conv there crashed the process at these widths (the shortcuts' convs; oneDNN's report
    also has it wrong without crashing): every gradient, of the vector and of each
    parameter, must match float64's (computed by ATen, not oneDNN)."""
    torch.manual_seed(0)
    net = trained_norms(ConditionedResNet(3, in_channels=1, width=4, conditioning=kind,
                                          bases=4)).train(mode == "train")
    x = torch.randn(5, 1, 20, 20)

    def gradients(dtype: torch.dtype) -> list[torch.Tensor]:
        net.to(dtype).zero_grad()
        v = torch.tensor([0.2, 0.9, 0.5], dtype=dtype, requires_grad=True)
        net(x.to(dtype), v).square().sum().backward()
        return [v.grad] + [p.grad for p in net.parameters() if p.grad is not None]

    got = gradients(torch.float32)
    monkeypatch.setattr(resnet, "batch_vector", lambda v, *_: v)  # keep the vector float64
    reference = gradients(torch.float64)
    assert len(got) == len(reference) > 10
    for a, b in zip(got, reference, strict=True):
        assert torch.allclose(a.double(), b, rtol=1e-3, atol=1e-5 * b.abs().max())


def test_bad_vectors_and_settings_are_refused():
    net = ConditionedResNet(4, width=4)
    with pytest.raises(ValueError, match="length 4"):
        net(torch.randn(2, 3, 16, 16), torch.ones(2, 4))
    with pytest.raises(ValueError, match="conditioning"):
        ConditionedResNet(4, conditioning="lora")
    with pytest.raises(ValueError, match="stages"):
        ConditionedResNet(4, conditioned_stages=(5,))


def test_encoder_features_take_named_vectors_and_raw_images():
    enc = Encoder(ModelConfig(in_channels=1, image_size=28, width=4, bases=2), GREY)
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    named = enc.features(x, {"crop": 1, "flip": 0, "color": 1, "blur": 0}, batch_size=2)
    assert named.shape == (5, enc.feature_dim)
    assert torch.allclose(named, enc.features(x, [1, 0, 1, 0]))
    assert enc.training  # features() restores the mode it found
    with pytest.raises(InvalidInvarianceVector, match="crop, flip, color, blur"):
        enc.features(x, [1, 0])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        enc.features(np.zeros((2, 3, 28, 28), np.uint8), 1.0)


def test_float_images_must_be_in_0_1_not_0_255():
    enc = Encoder(ModelConfig(in_channels=1, image_size=28, width=4, bases=2), GREY)
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    as_uint8 = enc.features(x, 1.0)
    assert torch.allclose(enc.features(x.astype(np.float32) / 255, 1.0), as_uint8, atol=1e-5)
    with pytest.raises(ValueError, match="divide 0-255 images by 255, or pass them as uint8"):
        enc.features(x.astype(np.float32), 1.0)


def test_inputs_with_nan_or_infinity_are_refused_by_count():
    image = Encoder(ModelConfig(in_channels=1, image_size=28, width=4, bases=2), GREY)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="1 of the 3 inputs hold NaN or infinite values"):
        image.features(x, 1.0)
    audio = Encoder(ModelConfig(modality="audio", width=4, stem="imagenet", bases=2), AUDIO)
    clips = np.zeros((4, 16000), np.float32)
    clips[[0, 2], 5] = np.inf
    for convert in (lambda c: audio.features(c, 0.5), audio.reusable):  # both ways in
        with pytest.raises(ValueError, match="2 of the 4 inputs hold NaN or infinite values"):
            convert(clips)


def test_audio_encoder_takes_waveforms():
    enc = Encoder(ModelConfig(modality="audio", width=4, stem="imagenet", bases=2), AUDIO)
    z = enc.features(np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32)
                     * 0.1, 0.5)
    assert z.shape == (3, enc.feature_dim) and torch.isfinite(z).all()
    with pytest.raises(ValueError, match="audio"):
        Encoder(ModelConfig(modality="image"), AUDIO)
    # what a waveform is not: integer PCM (misread as huge floats), or shorter than the
    # spectrogram's window (its padding fails)
    pcm = (np.sin(np.linspace(0, 2000, 16000)) * 16000).astype(np.int16)[None]
    with pytest.raises(ValueError, match="divide 16-bit PCM by 32768"):
        enc.features(pcm, 0.5)
    for samples in (0, 1, 256):
        with pytest.raises(ValueError, match="at least 257 samples, got " + str(samples)):
            enc.features(np.zeros((2, samples), np.float32), 0.5)
    assert enc.features(np.zeros((2, 257), np.float32), 0.5).shape == (2, enc.feature_dim)


def test_audio_converted_once_gives_the_same_features_in_any_batches():
    enc = Encoder(ModelConfig(modality="audio", width=4, stem="imagenet", bases=2), AUDIO)
    waves = np.random.default_rng(1).standard_normal((5, 16000)).astype(np.float32) * 0.1
    ready = enc.reusable(waves, batch_size=2)  # log-mel spectrograms, in three batches
    assert isinstance(ready, Inputs) and len(ready) == 5
    assert ready.tensor.shape[:2] == (5, enc.config.mel.n_mels)
    assert enc.reusable(ready) is ready
    for vector in (0.0, 1.0):
        assert torch.allclose(enc.features(ready, vector, batch_size=3),
                              enc.features(waves, vector), atol=1e-5)
    # the spectrograms are computed in fp32 at either precision: the same features either way
    assert torch.equal(enc.features(ready, 1.0, precision="bf16"),
                       enc.features(waves, 1.0, precision="bf16"))
    images = Encoder(ModelConfig(in_channels=1, image_size=8, width=4), GREY)
    pixels = np.zeros((2, 1, 8, 8), np.uint8)
    assert enc.reusable(waves[:0]).tensor.shape[0] == 0
    assert images.reusable(pixels) is pixels  # images stay uint8: converting them is cheap


def test_bands_keep_where_in_frequency_a_pattern_lies():
    """bands=2 averages the last map over time only: a pattern high or low in frequency gives
    different halves of the feature vector, which global pooling would have summed."""
    net = ConditionedResNet(5, in_channels=1, width=4, stem="imagenet", bases=2, bands=2)
    assert net.feature_dim == 2 * 32
    x = torch.randn(3, 1, 64, 101)
    net.eval()
    maps = {}
    net.blocks[-1].register_forward_hook(lambda m, i, out: maps.update(last=out))
    z = net(x, torch.ones(5))
    assert maps["last"].shape[2] == 2  # two frequency rows reach the pooling
    assert torch.allclose(z, maps["last"].mean(3).flatten(1), atol=1e-6)
    with pytest.raises(ValueError, match="bands must be at least 1"):
        ConditionedResNet(5, bands=0)
    with pytest.raises(ValueError, match="bands > 1 needs a ResNet"):
        ModelConfig(arch="vit-tiny", bands=2)


def test_audio_normalisation_may_be_one_mean_and_std_per_mel_bin():
    mean, std = tuple(np.linspace(-10, 0, 64)), tuple(np.linspace(1, 4, 64))
    enc = Encoder(ModelConfig(modality="audio", width=4, stem="imagenet", bases=2,
                              input_mean=mean, input_std=std), AUDIO)
    seen = {}
    enc.backbone.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    spec = torch.randn(2, 64, 101)
    enc(spec, torch.ones(5))
    expected = (spec - torch.tensor(mean).view(-1, 1)) / torch.tensor(std).view(-1, 1)
    assert torch.allclose(seen["x"][:, 0], expected.float(), atol=1e-5)


def test_vit_encoder_through_the_same_interface():
    enc = Encoder(ModelConfig(arch="vit-tiny", in_channels=3, image_size=32), RGB)
    z = enc.features(np.zeros((2, 3, 32, 32), np.uint8), 1.0)
    assert z.shape == (2, enc.feature_dim)
    with pytest.raises(ValueError, match="token"):
        Encoder(ModelConfig(arch="vit-tiny", conditioning="film"), RGB)

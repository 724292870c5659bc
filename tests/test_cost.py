"""Probe cost: counted on the meta device, checked against counts by hand; the probe decision."""

import math

import pytest

from amortinv import checkpoint
from amortinv.invariance import GREY, RGB, SPATIAL_APPEARANCE
from amortinv.models import Encoder, ModelConfig
from amortinv.models.cost import (
    ProbeCost,
    checkpoint_cost,
    cpu_macs_per_second,
    probe_cost,
    probe_plan,
)
from amortinv.models.encoder import IMAGENET_MEAN, IMAGENET_STD


def resnet18_convs(width, size, channels):
    """(cin, cout, k, output side) of every conv of a small-stem ResNet-18."""
    convs = [(channels, width, 3, size)]
    cin, side = width, size
    for stage in range(4):
        cout = width * 2 ** stage
        for block in range(2):
            if stage > 0 and block == 0:
                side //= 2
                convs.append((cin, cout, 1, side))  # projection shortcut
            convs += [(cin, cout, 3, side), (cout, cout, 3, side)]
            cin = cout
    return convs


def test_plain_resnet_macs_match_a_count_by_hand():
    config = ModelConfig(arch="resnet18", conditioning="none", width=4, in_channels=1,
                         image_size=16)
    cost = probe_cost(config, GREY)
    expected = sum(cin * cout * k * k * side * side
                   for cin, cout, k, side in resnet18_convs(4, 16, 1))
    assert cost.macs_per_example == expected
    assert cost.macs_per_batch == 0  # nothing is generated
    encoder = Encoder(config, GREY)
    assert cost.parameters == sum(p.numel() for p in encoder.parameters())
    assert cost.input_shape == (1, 16, 16)


def test_hypernetwork_generation_is_paid_once_per_batch():
    config = ModelConfig(arch="resnet18", conditioning="hyper", width=4, bases=2,
                         in_channels=1, image_size=16)
    cost = probe_cost(config, GREY)
    convs = resnet18_convs(4, 16, 1)
    assert cost.macs_per_example == sum(a * b * k * k * s * s for a, b, k, s in convs)
    # per block: the embedding (4 -> 16); per generated conv: 16 -> bases, bases -> kernel
    generated = sum(16 * 2 + 2 * a * b * k * k for a, b, k, _ in convs[1:])
    assert cost.macs_per_batch == 8 * 4 * 16 + generated


def test_the_papers_resnet50_at_224_px():
    config = ModelConfig(arch="resnet50", conditioning="paper", stem="imagenet",
                         image_size=224, resize=True, input_mean=IMAGENET_MEAN,
                         input_std=IMAGENET_STD)
    cost = probe_cost(config, SPATIAL_APPEARANCE, input_shape=(3, 32, 32))  # resized to 224
    assert cost.input_shape == (3, 32, 32)
    assert 4.0e9 < cost.macs_per_example < 4.2e9  # ResNet-50's 4.1 G at 224 px
    assert 0.7e9 < cost.macs_per_batch < 0.8e9  # ~774 M generator weights, each used once
    assert round(cost.parameters / 1e6) == 774 and cost.weight_bytes > 3.0e9


def test_checkpoint_cost_reads_only_the_header(tmp_path):
    config = ModelConfig(arch="vit-tiny", image_size=32)
    path = checkpoint.save_encoder(tmp_path / "e.safetensors", Encoder(config, RGB))
    assert checkpoint_cost(path) == probe_cost(config, RGB)


def test_probe_plan_goes_shrinks_or_refuses():
    cost = ProbeCost(parameters=1_000_000, weight_bytes=4_000_000, macs_per_example=1e8,
                     macs_per_batch=1e7, input_shape=(3, 32, 32))
    rate, memory = 1e11, 10**10
    fine = probe_plan(cost, 3000, budget_s=5, macs_per_second=rate, memory_bytes=memory)
    assert fine.ok and fine.points == 3000 and fine.message == ""
    assert fine.seconds == pytest.approx((3000 * 1e8 + 6 * 1e7) / rate)

    fewer = probe_plan(cost, 10_000, budget_s=5, macs_per_second=rate, memory_bytes=memory)
    assert not fewer.ok and 200 <= fewer.points < 10_000
    assert fewer.seconds <= 5 < cost.seconds(fewer.points + 10, rate)
    assert f"probing {fewer.points:,} of them instead" in fewer.message

    slow = ProbeCost(774_000_000, 3_100_000_000, 4.1e9, 7.5e8, (3, 224, 224))
    refused = probe_plan(slow, 3000, budget_s=5, macs_per_second=5e10, memory_bytes=memory)
    assert refused.points == 0 and "too slow to probe on this CPU" in refused.message
    assert "GPU" in refused.message and "774.0 M parameters" in refused.message
    assert refused.seconds == pytest.approx(slow.seconds(3000, 5e10))

    big = probe_plan(slow, 10, budget_s=1e9, macs_per_second=rate, memory_bytes=2 * 10**9)
    assert big.points == 0 and "weights need 3.1 GB and 2.0 GB of memory are free" in big.message


def test_this_cpu_is_measured():
    rate = cpu_macs_per_second()
    assert math.isfinite(rate) and rate > 1e8
    assert cpu_macs_per_second() == rate  # measured once per process

"""The paper's released checkpoints, without the files: synthetic MoCo checkpoints in their key
names, imported and compared output for output with forwards written here from the facts of
the paper's code (plain functional torch, none of our model classes); the full-size key and
shape tables on the meta device; and the bad files a user may bring."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import amortinv
from amortinv import checkpoint
from amortinv.invariance import RGB, SPATIAL_APPEARANCE
from amortinv.models import ConditionedResNet, Encoder, ModelConfig
from amortinv.models.paper_resnet import PaperResNet
from amortinv.released import (
    ForeignCheckpointError,
    check,
    encoder_state,
    expected_keys,
    import_checkpoint,
    infer_config,
    kind_of,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_checkpoint.py"
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet18": (2, 2, 2, 2)}


# -- the paper's hyper-ResNet, from the facts ---------------------------------------------------

def bn_keys(name, c):
    return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}


def hyper_keys(name, cin, cout, k, hidden):
    return {f"{name}.layer.0.weight": (hidden, 16), f"{name}.layer.0.bias": (hidden,),
            f"{name}.layer.2.weight": (cout * cin * k * k, hidden),
            f"{name}.layer.2.bias": (cout * cin * k * k,)}


def convs_of(arch, cin, p):
    """(hypernet name, in, out, kernel, uses the stage's stride) of one block."""
    if arch == "resnet50":
        return [("hypernet1", cin, p, 1, False), ("hypernet2", p, p, 3, True),
                ("hypernet3", p, 4 * p, 1, False)]
    return [("hypernet1", cin, p, 3, True), ("hypernet2", p, p, 3, False)]


def released_table(arch="resnet50", width=64, k=2, hidden=32):
    """Every encoder key of the released file (no prefix) with its shape."""
    table = {"conv1.weight": (width, 3, 7, 7), **bn_keys("bn1", width)}
    cin = width
    for s, depth in enumerate(DEPTHS[arch], start=1):
        p = width * 2 ** (s - 1)
        cout = 4 * p if arch == "resnet50" else p
        for b in range(depth):
            pre = f"layer{s}.{b}"
            table[f"{pre}.emb1.weight"] = (16, k)
            for i, (name, a, o, kk, _) in enumerate(convs_of(arch, cin, p), start=1):
                table.update(hyper_keys(f"{pre}.{name}", a, o, kk, hidden))
                table.update(bn_keys(f"{pre}.bn{i}", o))
            if b == 0 and (s > 1 or cin != cout):
                table.update(hyper_keys(f"{pre}.hypernet_down", cin, cout, 1, hidden))
                table.update(bn_keys(f"{pre}.downsample.1", cout))
            table.update(bn_keys(f"{pre}.bn_down", cout))  # in the file, never used
            cin = cout
    return table


def random_tensors(table, seed=0):
    """Random weights of a sensible size: norms near identity, generated kernels std ~0.05."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in table.items():
        module, param = key.rsplit(".", 1)
        if param == "num_batches_tracked":
            out[key] = torch.tensor(100)
        elif param == "running_var":
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif module.endswith(("bn1", "bn2", "bn3", "bn_down", "downsample.1")) \
                and param == "weight":
            out[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif param in ("running_mean", "bias") and ".layer." not in key:
            out[key] = torch.randn(shape, generator=g) * 0.1
        elif ".layer.2." in key:
            out[key] = torch.randn(shape, generator=g) * 0.05
        else:  # conv1, emb1, layer.0: fan-in scaled
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 16
            out[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return out


def reference_resnet(sd, images, v, arch):
    """The paper's forward, written from its facts: uint8 images -> features."""
    x = (images.float() / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)

    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], training=False, eps=1e-5)

    def kernel(name, e, shape):
        h = F.relu(F.linear(e, sd[f"{name}.layer.0.weight"], sd[f"{name}.layer.0.bias"]))
        return F.linear(h, sd[f"{name}.layer.2.weight"], sd[f"{name}.layer.2.bias"]).view(shape)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")),
                     3, 2, 1)
    width = sd["conv1.weight"].shape[0]
    cin = width
    for s, depth in enumerate(DEPTHS[arch], start=1):
        p = width * 2 ** (s - 1)
        for b in range(depth):
            pre, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            e = F.linear(v, sd[f"{pre}.emb1.weight"])  # no bias
            out = x
            convs = convs_of(arch, cin, p)
            for i, (name, a, o, kk, strided) in enumerate(convs, start=1):
                out = F.conv2d(out, kernel(f"{pre}.{name}", e, (o, a, kk, kk)),
                               stride=stride if strided else 1, padding=kk // 2)
                out = bn(out, f"{pre}.bn{i}")
                if i < len(convs):
                    out = F.relu(out)
            cout = convs[-1][2]
            shortcut = x
            if f"{pre}.hypernet_down.layer.0.weight" in sd:
                w = kernel(f"{pre}.hypernet_down", e, (cout, cin, 1, 1))
                shortcut = bn(F.conv2d(x, w, stride=stride), f"{pre}.downsample.1")
            x = F.relu(out + shortcut)  # ReLU after the residual sum
            cin = cout
    return x.mean((2, 3))


def moco_file(path, encoder, prefix="module.encoder_q.", extra=None):
    """A MoCo checkpoint in the paper's layout: the encoder, a momentum copy, queues, heads."""
    momentum = prefix.replace("encoder_q", "encoder_k").replace("base_encoder",
                                                                 "momentum_encoder")
    state = {prefix + k: v for k, v in encoder.items()}
    state.update({momentum + k: v + 1 for k, v in encoder.items() if v.is_floating_point()})
    state.update({"module.queue_dorsal": torch.randn(8, 32), "module.queue_ptr_dorsal":
                  torch.zeros(1, dtype=torch.long), prefix + "predictor_b.0.0.weight":
                  torch.randn(6, 6), prefix + "predictor_b.0.2.bias": torch.randn(6),
                  prefix + "fc.0.weight": torch.randn(6, 6), **(extra or {})})
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}},
                 "param_groups": [{"lr": 5e-4, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"state_dict": state, "optimizer": optimizer, "epoch": 300,
                "arch": "resnet50"}, path)
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A width-4 hyper-ResNet-50 in the released file's names, saved as MoCo does."""
    sd = random_tensors(released_table(width=4))
    path = moco_file(tmp_path_factory.mktemp("released") / "hyper.pth.tar", sd)
    return path, sd


@pytest.mark.parametrize("prefix", ["module.encoder_q.", "module.base_encoder."])
def test_imported_resnet_matches_the_papers_forward(released, tmp_path, prefix):
    path, sd = released
    if prefix != "module.encoder_q.":
        path = moco_file(tmp_path / "later.pth.tar", sd, prefix)
    lines = []
    written = import_checkpoint(path, tmp_path / "paper", progress=lines.append)
    encoder = amortinv.load(written)
    card = encoder.card
    assert encoder.config.conditioning == "paper" and encoder.config.arch == "resnet50"
    assert encoder.space == SPATIAL_APPEARANCE
    assert card["source"]["file"] == path.name and card["source"]["prefix"] == prefix
    assert card["source"]["sha256"] == checkpoint_sha256(path)
    assert card["source"]["epoch"] == 300 and card["space"] == "spatial-appearance"
    assert any("ok: 128-d features" in line for line in lines)

    images = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (2, 3, 224, 224), dtype=np.uint8))
    for vector in ([0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.3, 0.8]):
        ours = encoder.features(images, vector)
        theirs = reference_resnet(sd, images, torch.tensor(vector), "resnet50")
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # the vector matters: the features at two corners differ
    a, b = encoder.features(images, [0, 1]), encoder.features(images, [1, 0])
    assert (a - b).abs().max() > 1e-2


def checkpoint_sha256(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_basic_block_variant_imports_and_matches(tmp_path):
    sd = random_tensors(released_table("resnet18", width=4, k=2, hidden=8), seed=1)
    path = moco_file(tmp_path / "r18.pth.tar", sd)
    encoder = amortinv.load(import_checkpoint(path, tmp_path / "out", progress=None,
                                              verify=False))
    assert (encoder.config.arch, encoder.config.bases) == ("resnet18", 8)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    resized = F.interpolate(images.float(), size=(224, 224), mode="bilinear",
                            align_corners=False, antialias=True)
    ours = encoder.features(images, [0.5, 1.0])  # 64 px in, resized to 224 as the paper sees
    theirs = reference_resnet(sd, resized, torch.tensor([0.5, 1.0]), "resnet18")
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_paper_and_hyper_conditionings_compute_the_same_function():
    # The same network in two layouts: the paper's Linear(hidden -> kernel) is our
    # kernel_bias + mix @ basis. Copying one into the other gives the same features.
    torch.manual_seed(0)
    paper = PaperResNet(2, "resnet50", width=4, hidden=8).eval()
    hyper = ConditionedResNet(2, "resnet50", width=4, stem="imagenet", conditioning="hyper",
                              bases=8).eval()
    sd, ours = paper.state_dict(), {}
    ours.update({f"stem.0.{k[6:]}": v for k, v in sd.items() if k.startswith("conv1.")})
    ours.update({f"stem.1.{k[4:]}": v for k, v in sd.items() if k.startswith("bn1.")})
    block = 0
    for s, depth in enumerate(DEPTHS["resnet50"], start=1):
        for b in range(depth):
            src, dst = f"layer{s}.{b}.", f"blocks.{block}."
            ours[dst + "embed.weight"] = sd[src + "emb1.weight"]
            names = [(f"hypernet{i}", f"convs.{i - 1}") for i in (1, 2, 3)]
            names += [("hypernet_down", "shortcut.conv")] if b == 0 else []
            for h, c in names:
                ours[f"{dst}{c}.coefficients.weight"] = sd[f"{src}{h}.layer.0.weight"]
                ours[f"{dst}{c}.coefficients.bias"] = sd[f"{src}{h}.layer.0.bias"]
                ours[f"{dst}{c}.basis"] = sd[f"{src}{h}.layer.2.weight"].T
                ours[f"{dst}{c}.kernel_bias"] = sd[f"{src}{h}.layer.2.bias"]
            norms = [(f"bn{i}", f"norms.{i - 1}") for i in (1, 2, 3)]
            norms += [("downsample.1", "shortcut.norm")] if b == 0 else []
            for n, m in norms:
                ours.update({f"{dst}{m}.{k.split('.')[-1]}": v for k, v in sd.items()
                             if k.startswith(f"{src}{n}.")})
            block += 1
    hyper.load_state_dict(ours)
    x, v = torch.randn(2, 3, 64, 64), torch.tensor([0.2, 0.9])
    torch.testing.assert_close(paper(x, v), hyper(x, v), rtol=1e-5, atol=1e-5)


def test_full_resnet50_table_on_the_meta_device():
    table = released_table()  # width 64, 2-d vector, hidden 32: the released file
    config = ModelConfig(arch="resnet50", conditioning="paper", stem="imagenet", bases=32,
                         width=64, image_size=224)
    required, optional = expected_keys(config, 2)
    assert {**required, **optional} == table
    assert set(optional) == {k for k in table if ".bn_down." in k}
    floats = sum(math.prod(s) for k, s in table.items()
                 if "running_" not in k and "num_batches" not in k)
    assert round(floats / 1e6) == 774  # the paper: about 774 M parameters, 3 GB in float32
    # the importer's whole check, on a meta-device "file" of the full size: nothing allocated
    with torch.device("meta"):
        state = {k: torch.empty(s) for k, s in table.items()}
    kind = kind_of(state)
    inferred, k = infer_config(state, kind)
    assert (kind, k, inferred.arch, inferred.width, inferred.bases, inferred.stem) == (
        "paper-resnet", 2, "resnet50", 64, 32, "imagenet")
    check(state, *expected_keys(inferred, k), "the paper's ResNet-50")


def test_paper_conditioning_trains_and_round_trips(tmp_path):
    config = ModelConfig(arch="resnet18", conditioning="paper", bases=4, width=4,
                         in_channels=1, image_size=16)
    encoder = Encoder(config, SPATIAL_APPEARANCE)
    v = torch.full((2,), 0.5, requires_grad=True)
    encoder(torch.rand(4, 1, 16, 16), v).square().sum().backward()
    hyper = encoder.backbone.layer1[0].hypernet1.layer[2].weight
    assert hyper.grad is not None and hyper.grad.abs().sum() > 0
    assert v.grad is not None and v.grad.abs().sum() > 0  # downstream learns i by gradient
    encoder.eval()
    path = checkpoint.save_encoder(tmp_path / "e.safetensors", encoder)
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    torch.testing.assert_close(amortinv.load(path).features(x, [1, 0]),
                               encoder.features(x, [1, 0]))
    with pytest.raises(ValueError, match="every stage"):
        Encoder(ModelConfig(conditioning="paper", conditioned_stages=(3, 4)), RGB)


def test_paper_conditioning_pretrains_with_moco(tmp_path):
    from amortinv.pretrain import Trainer, preset

    config = preset("smoke", out=str(tmp_path / "run"), steps=3, conditioning="paper",
                    method="moco", progress=False)
    list(Trainer(config).run())
    encoder = amortinv.load(tmp_path / "run")
    assert encoder.config.conditioning == "paper"
    assert torch.isfinite(encoder.features(np.zeros((2, 1, 8, 8), np.uint8), 1.0)).all()


# -- MoCo-v3 ViT in timm's names -----------------------------------------------------------------

def timm_vit_table(dim, depth, patch, image, head=True):
    n = (image // patch) ** 2
    table = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + n, dim),
             "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        table.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                      b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                      b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                      b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                      b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                      b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,)})
    table.update({"norm.weight": (dim,), "norm.bias": (dim,)})
    if head:  # MoCo-v3's projector inside the encoder: ignored
        table.update({"head.0.weight": (16, dim), "head.1.weight": (16,)})
    return table


def reference_vit(sd, x, token, heads):
    """A timm ViT forward from its facts, with our invariance token appended last."""
    ln = lambda t, n: F.layer_norm(t, t.shape[-1:], sd[n + ".weight"], sd[n + ".bias"], 1e-6)  # noqa: E731
    w = sd["patch_embed.proj.weight"]
    t = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).mT
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1) + sd["pos_embed"]
    t = torch.cat([t, token.expand(len(x), 1, -1)], 1)  # no position for the token
    b_, n, d = t.shape
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        p = f"blocks.{i}."
        qkv = F.linear(ln(t, p + "norm1"), sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.view(b_, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.mT / math.sqrt(d // heads), -1) @ v
        t = t + F.linear(attn.transpose(1, 2).reshape(b_, n, d), sd[p + "attn.proj.weight"],
                         sd[p + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(t, p + "norm2"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        t = t + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        i += 1
    return ln(t, "norm")[:, 0]


def test_mocov3_vit_imports_into_the_prompt_vit(tmp_path):
    # vit-tiny size (dim 128, depth 4, heads 4, 32 px, patch 4): ViT-B's names at a CPU size
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.1 for k, s in timm_vit_table(128, 4, 4, 32).items()}
    for k in sd:
        if ".norm" in k or k.startswith("norm"):
            sd[k] = sd[k] + (1.0 if k.endswith("weight") else 0.0)
    prefix = "module.base_encoder."
    state = {prefix + k: v for k, v in sd.items()}
    state.update({"module.momentum_encoder." + k: v for k, v in sd.items()})
    state["module.predictor.0.weight"] = torch.randn(8, 8)
    path = tmp_path / "vit-b-300ep.pth.tar"
    torch.save({"state_dict": state, "optimizer": {}, "epoch": 300, "arch": "vit_base"}, path)

    encoder = amortinv.load(import_checkpoint(path, tmp_path / "vit", space="rgb",
                                              image_size=32, progress=None))
    assert encoder.config.arch == "vit-tiny" and encoder.space == RGB
    assert encoder.card["method"] == "moco-v3"
    assert encoder.card["fresh_tensors"] and all(
        "invariance_token" in k for k in encoder.card["fresh_tensors"])
    assert "freshly initialised" in encoder.card["imported"]
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x = (images.float() / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
    for vector in ([1, 0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8, 1.0]):
        v = torch.tensor(vector, dtype=torch.float32)
        token = encoder.backbone.invariance_token(v).detach()
        ours = encoder.features(images, vector)
        torch.testing.assert_close(ours, reference_vit(sd, x, token, heads=4),
                                   rtol=1e-4, atol=1e-4)
    # the fresh token is the same for the same seed: an import is reproducible
    again = amortinv.load(import_checkpoint(path, tmp_path / "vit2", space="rgb",
                                            image_size=32, progress=None, verify=False))
    torch.testing.assert_close(again.backbone.invariance_token.hidden.weight,
                               encoder.backbone.invariance_token.hidden.weight)


def test_vit_b_table_on_the_meta_device():
    table = timm_vit_table(768, 12, 16, 224, head=False)
    config = ModelConfig(arch="vit-base", image_size=224)
    required, optional = expected_keys(config, 5)
    assert required == table and optional == {}
    assert 85.5e6 < sum(math.prod(s) for s in table.values()) < 86.0e6  # ViT-B/16 sans head
    with torch.device("meta"):
        state = {k: torch.empty(s) for k, s in timm_vit_table(768, 12, 16, 224).items()}
    encoder_only, _, ignored = encoder_state({"state_dict": {f"module.base_encoder.{k}": v
                                                             for k, v in state.items()}})
    assert ignored == 2  # the projector head
    inferred, _ = infer_config(encoder_only, kind_of(encoder_only))
    assert (inferred.arch, inferred.image_size) == ("vit-base", 224)
    check(encoder_only, *expected_keys(inferred, 5), "MoCo-v3 ViT-B")
    with torch.device("meta"):
        model = Encoder(inferred, RGB).backbone
    assert (model.blocks[0].attn.heads, model.patch_size, model.feature_dim) == (12, 16, 768)


# -- bad input ------------------------------------------------------------------------------------

def test_truncated_file_is_named_truncated(released, tmp_path):
    path, _ = released
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ForeignCheckpointError, match=r"truncated.*expected a MoCo checkpoint"):
        import_checkpoint(cut, tmp_path / "out", progress=None)
    assert not (tmp_path / "out").exists()


def test_plain_resnet_is_refused_as_not_hyper(tmp_path):
    import torchvision

    plain = torchvision.models.resnet18(num_classes=8).state_dict()
    path = tmp_path / "moco_v2_800ep.pth.tar"
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in plain.items()},
                "epoch": 800, "arch": "resnet18"}, path)
    with pytest.raises(ForeignCheckpointError,
                       match=r"plain \(non-hyper\) ResNet.*layer1.0.conv1.weight.*hypernet"):
        import_checkpoint(path, tmp_path / "out", progress=None)


class Payload:
    """Unpickling this would create a file: the importer must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_that_needs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "with-code.pth.tar"
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(2)},
                "args": Payload(marker)}, path)
    with pytest.raises(ForeignCheckpointError,
                       match=r"needs posix.mkdir.*never runs code.*expected a MoCo checkpoint"):
        import_checkpoint(path, tmp_path / "out", progress=None)
    assert not marker.exists()


def test_mismatching_file_lists_missing_unexpected_and_misshapen_keys(released, tmp_path):
    _, sd = released
    broken = {k: v for k, v in sd.items() if not k.startswith("layer3.5.")}
    broken["layer2.0.hypernet2.layer.2.weight"] = torch.zeros(7, 32)
    broken["layer5.0.emb1.weight"] = torch.zeros(16, 2)
    path = moco_file(tmp_path / "broken.pth.tar", broken)
    with pytest.raises(ForeignCheckpointError) as err:
        import_checkpoint(path, tmp_path / "out", progress=None)
    text = str(err.value)
    assert "28 missing (layer3.5.emb1.weight; layer3.5.hypernet1.layer.0.weight" in text
    assert "1 unexpected (layer5.0.emb1.weight)" in text
    assert "1 misshapen (layer2.0.hypernet2.layer.2.weight (7, 32), expected (576, 32))" \
        in text


def test_other_bad_files(released, tmp_path):
    path, _ = released
    with pytest.raises(ForeignCheckpointError, match="space 'rgb' has 5 groups"):
        import_checkpoint(path, tmp_path / "out", space="rgb", progress=None)
    foreign = tmp_path / "foreign.pth.tar"
    torch.save({"state_dict": {"model.conv.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(ForeignCheckpointError, match=r"no encoder keys.*model.conv"):
        import_checkpoint(foreign, tmp_path / "out", progress=None)
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ForeignCheckpointError,
                       match=r"damaged or not a file that torch\.save wrote \(Unsupported"):
        import_checkpoint(garbage, tmp_path / "out", progress=None)
    with pytest.raises(FileNotFoundError):
        import_checkpoint(tmp_path / "absent.pth.tar", tmp_path / "out", progress=None)


def test_script_imports_and_reports_errors(released, tmp_path):
    path, _ = released
    done = subprocess.run([sys.executable, str(SCRIPT), str(path), "--out",
                           str(tmp_path / "cli")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "found 570 encoder tensors under 'module.encoder_q.'" in done.stdout
    assert (tmp_path / "cli" / "card.json").exists()
    assert amortinv.load(tmp_path / "cli").card["source"]["sha256"] == checkpoint_sha256(path)
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(path.read_bytes()[:1000])
    done = subprocess.run([sys.executable, str(SCRIPT), str(cut)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "truncated" in done.stderr

"""Import the paper's released checkpoints into amortinv's format, without unpickling code.

Two kinds of MoCo ``.pth.tar`` files (a dict with ``state_dict``, ``optimizer``, ``epoch``,
``arch``, written by ``torch.save``) are read:

- the paper's hyper-ResNet (``hyper_resnet50_imagenet100-moco_2_checkpoint_0300.pth.tar``,
  MoCo-v2 on ImageNet-100, a 2-d invariance vector): it becomes conditioning ``"paper"``
  (:mod:`amortinv.models.paper_resnet`), key for key;
- a MoCo-v3 ViT in timm's names (``vit-b-300ep.pth.tar``, the paper's initialisation of its
  prompt-ViT): it becomes our prompt-ViT (``vit-base``). The MoCo-v3 file has no invariance
  token: the token's MLP is freshly initialised, and the card says so.

The encoder's keys carry ``module.encoder_q.`` (MoCo-v2 code) or ``module.base_encoder.`` (the
paper's later code, MoCo-v3); the momentum encoder, the queues, the projection heads and the
predictors are ignored. Every remaining key and shape is checked against the model the file's
shapes describe; a file that differs is refused with what differs. The file is read with
``torch.load(weights_only=True)`` (memory-mapped when it is a zip archive, so a 3 GB file does
not need 3 GB of memory to import), and written as one safetensors file with a card that names
the source file and its sha256.

    >>> from amortinv.released import import_checkpoint
    >>> import_checkpoint("hyper_resnet50_imagenet100-moco_2_checkpoint_0300.pth.tar",
    ...                   "checkpoints/paper-hyper-resnet50")  # doctest: +SKIP

(Skipped when doctests run: the released file is downloaded by the user, ``docs/PAPER.md``.)
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from amortinv import __version__
from amortinv.checkpoint import ENCODER_FILE, CheckpointError, save
from amortinv.invariance import InvarianceSpace, get_space
from amortinv.models.encoder import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, build_backbone

__all__ = ["EXPECTED", "ForeignCheckpointError", "expected_keys", "import_checkpoint",
           "infer_config", "read_released", "to_amortinv"]

Progress = Callable[[str], None]

EXPECTED = ("expected a MoCo checkpoint written by torch.save (.pth.tar): a dict whose "
            "'state_dict' holds the encoder under 'module.encoder_q.' or "
            "'module.base_encoder.', either the paper's hyper-ResNet "
            "(hyper_resnet50_imagenet100-moco_2_checkpoint_0300.pth.tar) or MoCo-v3's ViT-B "
            "(vit-b-300ep.pth.tar)")

#: Where the encoder sits in a MoCo state dict (MoCo-v2 code, the paper's later code; the
#: same without DistributedDataParallel's ``module.``).
PREFIXES = ("module.encoder_q.", "module.base_encoder.", "encoder_q.", "base_encoder.")
#: Heads inside the encoder, not part of the features: MoCo-v2's ``fc`` MLP, the paper's
#: per-configuration predictors, MoCo-v3's ViT projector ``head``.
HEADS = ("fc.", "predictor_b.", "predictor_m.", "head.")
#: timm's ViT names -> ours (the rest is identical).
VIT_RENAMES = (("patch_embed.proj.", "patch_embed."), (".mlp.fc1.", ".mlp.0."),
               (".mlp.fc2.", ".mlp.3."))
#: (dim, depth) of a ViT file -> our preset, whose heads are then used (weights do not say).
VIT_PRESETS = {(768, 12): "vit-base", (128, 4): "vit-tiny"}
SHOWN = 5  # keys listed per kind of difference


class ForeignCheckpointError(CheckpointError):
    """A file that is not a released checkpoint we can import; the message says why."""


def read_released(path: str | Path) -> dict:
    """The file's contents, loaded without running code from it (tensors, plain containers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    is_zip = zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(err), re.IGNORECASE)
        if found is None:  # not a pickle of plain data at all
            raise ForeignCheckpointError(_damaged(path, err)) from None
        raise ForeignCheckpointError(
            f"{path} holds Python objects that only their own code can rebuild (it needs "
            f"{found.group(1)}), and amortinv never runs code from a file; {EXPECTED}. If the "
            "file is yours, load it in the code that wrote it and torch.save its state_dict "
            "alone") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... here
        raise ForeignCheckpointError(_damaged(path, err)) from None
    if not isinstance(loaded, Mapping):
        raise ForeignCheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict; "
                                     f"{EXPECTED}")
    return dict(loaded)


def _damaged(path: Path, err: BaseException) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        cause = ("it starts as a zip archive (torch.save's format) but its end is missing: the "
                 "file is truncated; download it again and compare its sha256")
    elif path.stat().st_size == 0:
        cause = "it is empty"
    else:
        cause = "it is damaged or not a file that torch.save wrote"
    reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    first = reason.group(1) if reason else (str(err).splitlines() or [type(err).__name__])[0]
    return (f"{path} cannot be read as a PyTorch checkpoint: {cause} ({first[:200]}); "
            f"{EXPECTED}")


def sha256(path: str | Path, progress: Progress | None = None, chunk: int = 1 << 24) -> str:
    """The file's sha256, read in chunks (a released file is several GB)."""
    path = Path(path)
    total, done, shown = path.stat().st_size, 0, -1
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            done += len(block)
            tenth = done * 10 // max(total, 1)
            if progress and total > 10 * chunk and tenth != shown:
                shown = tenth
                progress(f"sha256: {done / 1e9:.1f} / {total / 1e9:.1f} GB")
    return digest.hexdigest()


def encoder_state(checkpoint: Mapping, where: str = "the file"
                  ) -> tuple[dict[str, torch.Tensor], str, int]:
    """The encoder's tensors without prefix and heads: ``(state, prefix, keys ignored)``."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state:
        raise ForeignCheckpointError(f"{where} has no 'state_dict'; {EXPECTED}")
    keys = [k for k in state if isinstance(k, str)]
    prefix = next((p for p in PREFIXES if any(k.startswith(p) for k in keys)), None)
    if prefix is None:
        seen = sorted({".".join(k.split(".")[:2]) for k in keys})[:SHOWN]
        raise ForeignCheckpointError(
            f"{where} has no encoder keys under {', '.join(map(repr, PREFIXES[:2]))} (its "
            f"keys start with {', '.join(seen) or 'nothing'}); {EXPECTED}")
    encoder = {}
    for key in keys:
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and not name.startswith(HEADS):
            if not isinstance(state[key], torch.Tensor):
                raise ForeignCheckpointError(f"{where}: {key} is a {type(state[key]).__name__}, "
                                             f"not a tensor; {EXPECTED}")
            encoder[name] = state[key]
    return encoder, prefix, len(state) - len(encoder)


def kind_of(state: Mapping[str, torch.Tensor], where: str = "the file") -> str:
    """``"paper-resnet"`` or ``"vit"``; a plain ResNet or anything else is refused."""
    if any(".hypernet" in k for k in state):
        return "paper-resnet"
    if "cls_token" in state or any(k.startswith("blocks.") for k in state):
        return "vit"
    plain = sorted(k for k in state if re.match(r"layer\d+\.\d+\.conv\d\.weight$", k))
    if plain:
        raise ForeignCheckpointError(
            f"{where} is a plain (non-hyper) ResNet checkpoint: its blocks have fixed conv "
            f"weights ({plain[0]}) where the paper's hyper-ResNet has hypernetworks "
            f"(layer1.0.hypernet1.layer.0.weight) that generate them from the invariance "
            f"vector; {EXPECTED}")
    raise ForeignCheckpointError(
        f"{where} holds neither a hyper-ResNet nor a ViT encoder (first keys: "
        f"{sorted(state)[:SHOWN]}); {EXPECTED}")


def infer_config(state: Mapping[str, torch.Tensor], kind: str, image_size: int = 224
                 ) -> tuple[ModelConfig, int | None]:
    """The model the file's shapes describe, and its invariance vector's length (None for a
    ViT: MoCo-v3 has no vector, the space chosen on import sets it).

    Missing keys fall back to the paper's values; :func:`check` then reports them."""
    def shape(key: str, ndim: int) -> tuple[int, ...] | None:
        t = state.get(key)
        return tuple(t.shape) if isinstance(t, torch.Tensor) and t.ndim == ndim else None

    normalisation = dict(input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD, resize=True)
    if kind == "paper-resnet":
        conv1 = shape("conv1.weight", 4) or (64, 3, 7, 7)
        emb = shape("layer1.0.emb1.weight", 2) or (16, 2)
        hidden = shape("layer1.0.hypernet1.layer.0.weight", 2) or (32, 16)
        bottleneck = any(k.startswith("layer1.0.hypernet3.") for k in state)
        config = ModelConfig(arch="resnet50" if bottleneck else "resnet18", conditioning="paper",
                             bases=hidden[0], width=conv1[0], in_channels=conv1[1],
                             stem="small" if conv1[-1] == 3 else "imagenet",
                             image_size=image_size, **normalisation)
        return config, emb[1]
    cls_token = shape("cls_token", 3) or (1, 1, 768)
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    proj = shape("patch_embed.proj.weight", 4) or (cls_token[-1], 3, 16, 16)
    pos = shape("pos_embed", 3) or (1, 197, cls_token[-1])
    side = math.isqrt(pos[1] - 1)
    if side * side != pos[1] - 1:
        raise ForeignCheckpointError(f"pos_embed has {pos[1] - 1} patch positions, not a "
                                     "square grid; expected [CLS] + a square grid of patches")
    arch = VIT_PRESETS.get((cls_token[-1], depth))
    if arch is None:
        sizes = ", ".join(f"dim {d} depth {n} ({a})" for (d, n), a in VIT_PRESETS.items())
        raise ForeignCheckpointError(
            f"the ViT in the file has dim {cls_token[-1]} and depth {depth}; amortinv imports "
            f"{sizes} (a ViT's attention heads are not in its weights, so only sizes whose "
            "heads we know are read: MoCo-v3's ViT-S has 12 heads, our vit-small 6)")
    config = ModelConfig(arch=arch, conditioning="hyper", in_channels=proj[1],
                         image_size=side * proj[-1], **normalisation)
    return config, None


def expected_keys(config: ModelConfig, num_groups: int
                  ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The released file's encoder keys (no prefix) and shapes for ``config``: ``(required,
    optional)``. Built on the meta device: no memory is allocated, even for ResNet-50.

    Optional are the paper's unused ``bn_down`` norms. A ViT file's keys are timm's, and
    exclude our invariance token (MoCo-v3 has none)."""
    with torch.device("meta"):
        backbone = build_backbone(config, num_groups)
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if config.conditioning == "paper":
        optional = {}
        for name, module in backbone.named_modules():
            if hasattr(module, "emb1"):  # a block: the released file has a bn_down in each
                c = module.out_channels
                optional.update({f"{name}.bn_down.{p}": (c,) for p in
                                 ("weight", "bias", "running_mean", "running_var")})
                optional[f"{name}.bn_down.num_batches_tracked"] = ()
        return ours, optional
    return {_timm_name(k): s for k, s in ours.items()
            if not k.startswith("invariance_token.")}, {}


def _timm_name(ours: str) -> str:
    for theirs, mine in VIT_RENAMES:
        ours = ours.replace(mine, theirs)
    return ours


def _our_name(timm: str) -> str:
    for theirs, mine in VIT_RENAMES:
        timm = timm.replace(theirs, mine)
    return timm


def check(state: Mapping[str, torch.Tensor], required: Mapping[str, tuple[int, ...]],
          optional: Mapping[str, tuple[int, ...]], what: str, where: str = "the file") -> None:
    """Refuse a state whose keys or shapes differ from the table, naming the first few."""
    allowed = {**optional, **required}
    missing = [k for k in required if k not in state]
    unexpected = sorted(k for k in state if k not in allowed)
    misshapen = [f"{k} {tuple(state[k].shape)}, expected {allowed[k]}" for k in allowed
                 if k in state and tuple(state[k].shape) != allowed[k]]
    if missing or unexpected or misshapen:
        parts = [f"{len(keys)} {label} ({'; '.join(keys[:SHOWN])}"
                 f"{'; ...' if len(keys) > SHOWN else ''})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("misshapen", misshapen)) if keys]
        raise ForeignCheckpointError(
            f"{where} does not match {what}: " + ", ".join(parts) + f"; {EXPECTED}")


def to_amortinv(state: Mapping[str, torch.Tensor], config: ModelConfig, num_groups: int,
                seed: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Our encoder's tensors (``backbone.*``, floats as float32) from a checked state, and
    the names of those that are new (the ViT's invariance token, initialised from ``seed``)."""
    if config.conditioning == "paper":
        ours = {k: v for k, v in state.items() if ".bn_down." not in k}
        fresh: dict[str, torch.Tensor] = {}
    else:
        ours = {_our_name(k): v for k, v in state.items()}
        from amortinv.models.vit import InvarianceToken

        with torch.device("meta"):
            shape = build_backbone(config, num_groups).invariance_token
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            token = InvarianceToken(num_groups, shape.dim, shape.token_mlps)
        fresh = {f"invariance_token.{k}": v for k, v in token.state_dict().items()}
    tensors = {f"backbone.{k}": v.float() if v.is_floating_point() else v
               for k, v in {**ours, **fresh}.items()}
    return tensors, [f"backbone.{k}" for k in fresh]


def import_checkpoint(path: str | Path, out: str | Path, space: str = "spatial-appearance",
                      image_size: int = 224, progress: Progress | None = print,
                      verify: bool = True, seed: int = 0, card: dict | None = None) -> Path:
    """Check ``path`` (a released ``.pth.tar``) and write ``out/encoder.safetensors``.

    ``space`` names the invariance space (the paper's ResNet: its 2-d
    ``spatial-appearance``); ``image_size`` is the side the encoder resizes its inputs to.
    ``verify`` loads the result back and encodes two random images at two vectors.
    ``card`` adds entries to the card. Returns the written file."""
    say = progress or (lambda _: None)
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    chosen = get_space(space)
    say(f"reading {path} ({path.stat().st_size / 1e9:.2f} GB)")
    digest = sha256(path, say)
    loaded = read_released(path)
    state, prefix, ignored = encoder_state(loaded, str(path))
    kind = kind_of(state, str(path))
    config, num_groups = infer_config(state, kind, image_size)
    if num_groups is not None and num_groups != len(chosen):
        raise ForeignCheckpointError(
            f"the file's invariance vector has {num_groups} values (layer1.0.emb1.weight is "
            f"(16, {num_groups})), but the space '{chosen.name}' has {len(chosen)} groups "
            f"({', '.join(chosen.names)}): pass a space with {num_groups} groups")
    num_groups = len(chosen)
    what = (f"the paper's hyper-{config.arch} (width {config.width}, hypernetwork hidden "
            f"{config.bases}, {num_groups}-d vector)" if kind == "paper-resnet"
            else f"a MoCo-v3 {config.arch} in timm's names ({config.image_size} px)")
    say(f"found {len(state)} encoder tensors under '{prefix}' ({ignored} others ignored: "
        f"momentum encoder, queues, heads): {what}")
    required, optional = expected_keys(config, num_groups)
    check(state, required, optional, what, str(path))
    tensors, fresh = to_amortinv(state, config, num_groups, seed)
    n_params = sum(v.numel() for k, v in tensors.items() if v.is_floating_point()
                   and "running_" not in k)
    note = ("the paper's released hyper-ResNet, key for key (its unused bn_down norms "
            "dropped)" if kind == "paper-resnet" else
            f"MoCo-v3 ViT weights; the invariance token's MLP is NOT from the file: it is "
            f"freshly initialised (seed {seed}), so the vector means nothing until the "
            "prompt-ViT is pre-trained (the paper continues MoCo-v3 training with it)")
    meta_card = {
        "dataset": "imagenet-100" if kind == "paper-resnet" else "imagenet-1k",
        "method": "moco-v2" if kind == "paper-resnet" else "moco-v3",
        "source": {"file": path.name, "sha256": digest, "bytes": path.stat().st_size,
                   "prefix": prefix, "epoch": _plain(loaded.get("epoch")),
                   "arch": _plain(loaded.get("arch"))},
        "space": chosen.name,
        "imported": note,
        "fresh_tensors": fresh,
        "parameters": n_params,
        "command": f"python scripts/import_checkpoint.py {path.name} --out {out} --space "
                   f"{chosen.name} --image-size {image_size} --seed {seed}",
        "code_version": __version__,
        **(card or {}),
    }
    meta = {"model": config.to_json(), "space": chosen.to_json(), "card": meta_card}
    target = out / ENCODER_FILE
    say(f"writing {target} ({n_params / 1e6:.1f} M parameters)")
    save(target, tensors, meta)
    del loaded, state, tensors  # the file's mapped pages are not needed to verify
    if verify:
        _verify(target, chosen, say)
    return target


def _plain(value: object) -> object:
    return value if isinstance(value, int | float | str) or value is None else str(value)


def _verify(target: Path, space: InvarianceSpace, say: Progress) -> None:
    from amortinv.checkpoint import load

    say("loading it back to check it")
    encoder = load(target)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, encoder.config.in_channels, 64, 64), dtype=torch.uint8,
                      generator=g)
    corners = space.corners(1)[:2]
    a, b = (encoder.features(x, v) for v in corners)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ForeignCheckpointError(f"{target} loads but gives non-finite features")
    change = ((a - b).norm() / a.norm().clamp_min(1e-12)).item()
    say(f"ok: {encoder.feature_dim}-d features; moving the vector from "
        f"{space.to_dict(corners[0])} to {space.to_dict(corners[1])} changes them by "
        f"{change:.1%}")

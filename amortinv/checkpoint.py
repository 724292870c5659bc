"""Checkpoints: safetensors weights with a JSON card in the header; nothing is unpickled.

One file holds everything: tensors (weights, and for training checkpoints the projection head,
queues and optimizer state) and, under the header key ``amortinv``, a JSON document with the
format version, model config, invariance space and the card (data, recipe, metrics, code
version). Writes are atomic (a temporary file, fsync, rename), so an interrupted save leaves
the previous checkpoint intact.

    >>> import amortinv
    >>> enc = amortinv.load("checkpoints/fmnist-hyper4-cpu")   # a folder or a .safetensors file
    >>> enc.space.names, enc.card["dataset"]
    (('crop', 'flip', 'color', 'blur'), 'fashion-mnist')
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from amortinv.devices import resolve_device
from amortinv.files import written_whole
from amortinv.invariance import InvarianceSpace
from amortinv.models.encoder import Encoder, ModelConfig

FORMAT = "amortinv-checkpoint"
VERSION = 1
ENCODER_FILE = "encoder.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, foreign or mismatched."""


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` and ``meta`` atomically to ``path`` (a ``.safetensors`` file)."""
    header = {"amortinv": json.dumps({"format": FORMAT, "version": VERSION, **meta})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with written_whole(path) as tmp:
        save_file(tensors, tmp, metadata=header)
    return Path(path)


def read_meta(path: str | Path) -> dict:
    """The JSON document of a checkpoint, without loading its tensors."""
    path = resolve(path)
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); use an earlier "
                              "checkpoint or write it again") from None
    if "amortinv" not in header:
        raise CheckpointError(f"{path} is a safetensors file but not an amortinv checkpoint "
                              "(no 'amortinv' header)")
    try:
        meta = json.loads(header["amortinv"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has a damaged header ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has a damaged header (its JSON is a "
                              f"{type(meta).__name__}, not an object); use an earlier "
                              "checkpoint or write it again")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an amortinv checkpoint")
    version = meta.get("version", 0)
    if not _is_int(version):
        raise CheckpointError(f"{path} has a damaged header (format version {version!r} is "
                              "not a whole number); use an earlier checkpoint or write it "
                              "again")
    if version > VERSION:
        raise CheckpointError(f"{path} has format version {meta['version']}; this amortinv "
                              f"reads up to {VERSION}: upgrade amortinv")
    return meta


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors and the JSON document of a checkpoint."""
    path = resolve(path)
    meta = read_meta(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); use an earlier "
                              "checkpoint or write it again") from None
    return tensors, meta


def resolve(path: str | Path) -> Path:
    """A checkpoint folder means its ``encoder.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / ENCODER_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def encoder_meta(encoder: Encoder) -> dict:
    return {"model": encoder.config.to_json(), "space": encoder.space.to_json(),
            "card": encoder.card}


def save_encoder(path: str | Path, encoder: Encoder, dtype: torch.dtype = torch.float32) -> Path:
    """Save an encoder's weights (floating tensors cast to ``dtype``; fp16 for shipping)."""
    state = {k: (v.to(dtype) if v.is_floating_point() else v)
             for k, v in encoder.state_dict().items()}
    return save(path, state, encoder_meta(encoder))


def build_encoder(meta: dict, where: Path | str = "checkpoint") -> Encoder:
    """The (untrained) encoder a checkpoint's JSON describes. Its model settings are checked
    first (:func:`check_model`), so an edited or damaged header says which setting is wrong
    instead of failing inside the network, or later, at the first features."""
    try:
        model, space = meta["model"], meta["space"]
    except KeyError as err:
        raise CheckpointError(f"{where} lacks {err} in its header") from None
    try:
        check_model(model)
        config = ModelConfig.from_json(model)
        return Encoder(config, InvarianceSpace.from_json(space), meta.get("card"))
    except (TypeError, ValueError, AttributeError, KeyError, RuntimeError,
            ZeroDivisionError) as err:
        reason = str(err) or type(err).__name__
        raise CheckpointError(f"{where} describes a model that cannot be built: {reason}; "
                              "if its header was edited or damaged, use an earlier "
                              "checkpoint or write it again") from None


def check_model(model: dict) -> None:
    """Raise ``ValueError`` naming the first setting of a checkpoint's model description (the
    header's ``model``) that no model can be built from: sizes that are not positive whole
    numbers, or a normalisation that is not finite, positive (std) and one number or one per
    input channel (audio: per mel bin). Settings it leaves out take their defaults."""
    if not isinstance(model, dict):
        raise ValueError(f"'model' is a {type(model).__name__}, not an object")
    defaults = ModelConfig().to_json()
    settings = {**defaults, **model}
    for name in ("width", "bases", "bands", "in_channels"):
        _check_positive(name, settings[name])
    stages = settings["conditioned_stages"]
    if not isinstance(stages, list | tuple) or not all(_is_int(s) for s in stages):
        raise ValueError(f"conditioned_stages must be a list of stage numbers, got {stages!r}")
    for name in ("arch", "conditioning", "stem", "modality"):
        if not isinstance(settings[name], str):
            raise ValueError(f"{name} must be a string, got {settings[name]!r}")
    if not isinstance(settings["resize"], bool):
        raise ValueError(f"resize must be true or false, got {settings['resize']!r}")
    if settings["modality"] == "audio":
        if not isinstance(settings["mel"], dict):
            raise ValueError(f"mel must be an object, got {settings['mel']!r}")
        mel = {**defaults["mel"], **settings["mel"]}
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            _check_positive(f"mel {name}", mel[name])
        channels, per = mel["n_mels"], "mel bin"
    else:
        _check_positive("image_size", settings["image_size"])
        channels, per = settings["in_channels"], "channel"
    for name in ("input_mean", "input_std"):
        value = settings[name]
        values = value if isinstance(value, list | tuple) else [value]
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            raise ValueError(f"{name} must be a finite number or a list of them, got {value!r}")
        if isinstance(value, list | tuple) and len(value) != channels:
            raise ValueError(f"{name} has {len(value)} values for {channels} input {per}"
                             f"{'s' if channels != 1 else ''}: give one number or one per {per}")
        if name == "input_std" and not all(v > 0 for v in values):
            raise ValueError(f"input_std must be above 0 (inputs are divided by it), got "
                             f"{value!r}")


def _check_positive(name: str, value: object) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict`` with an error that says what does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
                 f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"shape mismatch {shapes[:3]}" if shapes else ""]
        raise CheckpointError(f"{where}: the weights do not match the model in its card ("
                              + "; ".join(p for p in parts if p) + ")")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder (in eval mode, float32) from a checkpoint folder or file, onto
    ``device`` (``auto``: CUDA when there is one)."""
    device = resolve_device(device)
    tensors, meta = load_tensors(path)
    encoder = build_encoder(meta, resolve(path))
    # A training checkpoint (a run's last.safetensors) holds the encoder under model.encoder.,
    # beside the projection heads, MoCo's state and the optimiser's: its encoder is loaded.
    prefixes = ("model.encoder.", "model.")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in tensors)), "")
    state = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    load_state(encoder, state, str(resolve(path)))
    return encoder.to(device).eval()

"""A pre-training run's state on disk, in its folder: ``last.safetensors`` (every tensor needed
to resume exactly: model, MoCo's momentum encoder and queues, optimiser state, with the step
and settings), ``encoder.safetensors`` (the encoder to use) and ``metrics.jsonl`` (the log);
while a run trains, ``.NAME.writing.lock`` beside the folder keeps a second run out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from torch import nn

from amortinv import checkpoint, files
from amortinv.models import Encoder
from amortinv.presets import PretrainConfig

LAST_FILE = "last.safetensors"
#: Held by the run that is writing the folder (:func:`claim_run_folder`).
WRITING_LOCK = ".writing.lock"
#: Settings a resumed run may change; any other difference refuses the resume.
RESUMABLE = {"steps", "minutes", "resume", "progress", "log_every", "knn_every", "checkpoint_every",
             "tensorboard", "device", "compile", "knn_train", "knn_test", "out"}


@dataclass
class TrainingState:
    """The modules and optimiser whose tensors a training checkpoint holds."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    target: nn.Module | None = None  # MoCo's momentum encoder
    queues: nn.Module | None = None  # MoCo's key queues

    def modules(self) -> dict[str, nn.Module]:
        parts = {"model": self.model, "target": self.target, "queues": self.queues}
        return {name: module for name, module in parts.items() if module is not None}

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"{name}.{k}": v for name, module in self.modules().items()
                   for k, v in module.state_dict().items()}
        for i, state in self.optimizer.state_dict()["state"].items():
            tensors |= {f"optim.{i}.{k}": v for k, v in state.items()
                        if isinstance(v, torch.Tensor)}
        return tensors

    def load(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        for name, module in self.modules().items():
            prefix = f"{name}."
            checkpoint.load_state(module, {k.removeprefix(prefix): v for k, v in
                                           tensors.items() if k.startswith(prefix)}, where)
        device = next(self.model.parameters()).device
        optim = self.optimizer.state_dict()
        params = [p for g in optim["param_groups"] for p in g["params"]]
        optim["state"] = {}
        for i in params:
            entries = {k.split(".", 2)[2]: v.to(device) for k, v in tensors.items()
                       if k.startswith(f"optim.{i}.")}
            if entries:
                optim["state"][i] = entries
        self.optimizer.load_state_dict(optim)


def save_run(out: Path, state: TrainingState, encoder: Encoder, step: int,
             config: PretrainConfig) -> None:
    """Write ``last.safetensors`` (to resume) and ``encoder.safetensors`` (to use)."""
    meta = checkpoint.encoder_meta(encoder) | {"step": step, "config": asdict(config)}
    checkpoint.save(out / LAST_FILE, state.tensors(), meta)
    checkpoint.save_encoder(out / checkpoint.ENCODER_FILE, encoder)


@contextlib.contextmanager
def claim_run_folder(out: Path) -> Iterator[None]:
    """Hold run folder ``out`` for one run while it trains: a second run pointed at the same
    folder meanwhile (two app users who kept the default run name, two terminals) is refused
    at once, instead of both writing the same checkpoints and metrics.

    The lock is a file beside the folder (``.NAME.writing.lock``; released by the system if
    the process dies, not a marker that a crash would leave behind), so that everything done
    to the folder is done holding it: temporary files of a save that a killed run left are
    removed, and a folder made here for a run that wrote nothing (``--resume`` of a misspelt
    ``--out``, say) is removed again before the next run can claim it."""
    cannot = "cannot make the run folder {} ({}): choose another --out (run name)"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path(out), timeout=0)
        lock.acquire()
    except Timeout:
        raise FileExistsError(f"another pre-training is writing to {out} right now: choose "
                              "another --out (run name), or wait for it to end (`pretrain.py "
                              "--resume` then continues it)") from None
    except OSError as err:  # under a file, a read-only or virtual file system
        raise ValueError(cannot.format(out, err.strerror)) from None
    made = False
    try:
        made = not out.exists()
        try:
            out.mkdir(exist_ok=True)
        except OSError as err:  # a file of that name
            raise ValueError(cannot.format(out, err.strerror)) from None
        for stale in out.glob(files.TEMPORARY):  # a save cut short by a kill
            stale.unlink(missing_ok=True)
        yield
    finally:
        try:
            if made and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        finally:
            lock.release()


def lock_path(out: Path) -> Path:
    """The lock file of run folder ``out`` (:func:`claim_run_folder`)."""
    return out.parent / f".{out.name}{WRITING_LOCK}"


def check_fresh(out: Path) -> None:
    """Raise :class:`FileExistsError` where ``out`` holds a run: one to resume, or a finished
    encoder. A run folder is never overwritten without ``--resume``."""
    if (out / LAST_FILE).exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or "
                              "choose another --out (run name)")
    if (out / checkpoint.ENCODER_FILE).exists():
        raise FileExistsError(f"{out} already holds a trained encoder "
                              f"({checkpoint.ENCODER_FILE}): choose another --out (run name)")


def restore_run(out: Path, state: TrainingState, encoder: Encoder,
                config: PretrainConfig) -> int:
    """Load the run in ``out`` into ``state`` and ``encoder`` (normalisation, card metrics and
    wall time); return the step it reached. Refuses a run trained with other settings."""
    path = out / LAST_FILE
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without "
                                "--resume, or point --out at the run to continue")
    tensors, meta = checkpoint.load_tensors(path)
    try:  # every field read before anything is loaded: a damaged header changes nothing
        saved = PretrainConfig.from_json(meta["config"])
        model, card = meta["model"], meta["card"]
        checkpoint.check_model(model)
        mean, std = model["input_mean"], model["input_std"]
        metrics, wall = card.get("metrics", {}), float(card.get("wall_seconds", 0.0))
        step = int(meta["step"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise checkpoint.CheckpointError(
            f"{path} holds no usable run settings ({type(err).__name__}: {err}); resume "
            "from an earlier copy of the run, or start a new run with another --out"
        ) from None
    changed = [f.name for f in fields(PretrainConfig)
               if f.name not in RESUMABLE and getattr(saved, f.name) != getattr(config, f.name)]
    if changed:
        raise checkpoint.CheckpointError(
            f"{path} was trained with other settings ({', '.join(changed)}); resume with "
            "the same settings, or start a new run with another --out")
    state.load(tensors, str(path))
    encoder.config.input_mean, encoder.config.input_std = mean, std
    encoder.card["metrics"], encoder.card["wall_seconds"] = metrics, wall
    if "time_budget" in card:  # a timed run keeps the total steps it fixed
        encoder.card["time_budget"] = card["time_budget"]
    return step


class Log:
    """``metrics.jsonl`` in the run folder, optionally TensorBoard. A resumed run appends; a
    fresh one starts it empty (what a run killed before its first checkpoint logged is not
    this run's)."""

    def __init__(self, out: Path, active: bool, tensorboard: bool, fresh: bool = False):
        self.active = active
        self.file = open(out / "metrics.jsonl", "w" if fresh else "a") if active else None  # noqa: SIM115
        self.writer = None
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ImportError("--tensorboard needs the tensorboard package: "
                                  "pip install tensorboard") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    @staticmethod
    def truncate(out: Path, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from)."""
        path = out / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer:
            step = record["step"]
            for key, value in record.items():
                if key == "knn":
                    for corner, acc in value.items():
                        self.writer.add_scalar(f"knn/{corner}", acc, step)
                elif key != "step":
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()

"""Pre-train an amortised encoder.

    python scripts/pretrain.py --preset cpu-fmnist                 # ~40 min on 2 CPU cores
    python scripts/pretrain.py --preset gpu-fmnist --steps 20000   # any setting can be overridden
    python scripts/pretrain.py --preset cpu-fmnist --resume        # continue where it stopped

Several GPUs or machines (PyTorch's own engine; NCCL on GPUs, gloo on CPUs):

    torchrun --nproc_per_node 8 scripts/pretrain.py --preset gpu-fmnist
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr HOST --master_port 29500 \\
        scripts/pretrain.py --preset gpu-fmnist          # and --node_rank 1 on the other machine

The run folder (--out, default runs/<preset>) gets encoder.safetensors (load it with
amortinv.load), last.safetensors (to resume) and metrics.jsonl (loss, learning rate, images/s,
kNN accuracy at a few invariance vectors).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict

from amortinv import checkpoint
from amortinv.cli import add_config_arguments, config_values
from amortinv.data import DatasetUnavailable, UnknownDataset
from amortinv.distributed import launched
from amortinv.pretrain import (
    HELP,
    PRESET_NOTES,
    PRESETS,
    RENAMED,
    PretrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    close_distributed,
    preset,
    pretrain,
)

DEFAULT_PRESET = "cpu-fmnist"


def parser(shown_preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    """The command line, its help stating ``shown_preset``'s values as the defaults."""
    notes = "\n".join(f"  {name:<18} {PRESET_NOTES[name]}" for name in PRESETS)
    p = argparse.ArgumentParser(
        description=__doc__, epilog=f"presets:\n{notes}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help=f"named starting point; the defaults below are {shown_preset}'s "
                   f"(default: {DEFAULT_PRESET})")
    values = asdict(preset(shown_preset)) | {"out": f"runs/{shown_preset}"}
    add_config_arguments(p, PretrainConfig, help=HELP, skip=("preset",), unset=True,
                         renamed=RENAMED, shown=values)
    return p


def chosen_preset(argv: list[str]) -> str:
    """The --preset on the command line (read first, so --help can show its values)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    return first.parse_known_args(argv)[0].preset


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(chosen_preset(argv)).parse_args(argv)
    overrides = config_values(args, PretrainConfig)
    name = overrides.pop("preset")
    distributed = launched()
    try:
        trainer = pretrain(preset(name, **overrides))
    except (TrainingDiverged, DatasetUnavailable, UnknownDataset, checkpoint.CheckpointError,
            FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 130  # the shell's code for Ctrl-C
    except KeyboardInterrupt:
        print("interrupted at once: the steps since the last checkpoint are lost; --resume "
              "continues from that checkpoint, if the run reached one", file=sys.stderr)
        return 130
    finally:
        close_distributed()
    if trainer.process.main:
        print(f"done: {trainer.out / checkpoint.ENCODER_FILE} "
              f"(metrics: {trainer.encoder.card.get('metrics')})")
    if distributed:
        # gloo's teardown can abort the interpreter at exit; leave without running it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

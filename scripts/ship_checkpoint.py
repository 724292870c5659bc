"""Copy a pre-training run's encoder into checkpoints/ for shipping: fp16 weights, the card
(also as card.json, for people), and the run's metrics.jsonl (for the app's curves).

    python scripts/ship_checkpoint.py runs/cpu-fmnist checkpoints/fmnist-hyper4-cpu \\
        --eval results.json            # extra metrics to record, e.g. from evaluate.py

Card fields a run did not record (older runs) can be given: --command, --hardware,
--wall-seconds. Giving a shipped folder as both RUN and DEST rewrites its card (e.g. a new
--eval) and leaves the weights as they are.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch

import amortinv
from amortinv import checkpoint
from amortinv.cli import checkpoint_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=checkpoint_path, help="a run folder (its metrics.jsonl "
                        "goes with it)")
    parser.add_argument("dest")
    parser.add_argument("--eval", help="a JSON file whose object is added to the card's "
                        "'evaluation'")
    parser.add_argument("--command")
    parser.add_argument("--hardware")
    parser.add_argument("--wall-seconds", type=float)
    args = parser.parse_args(argv)
    # everything read and checked before anything is written: a failure leaves DEST as it was
    run, dest = Path(args.run), Path(args.dest)
    log = run / "metrics.jsonl"
    try:
        if not run.is_dir() or not log.is_file():
            raise ValueError(f"{run} is not a run folder with a metrics.jsonl (give the "
                             "folder pre-training wrote)")
        if args.wall_seconds is not None and not (math.isfinite(args.wall_seconds)
                                                  and args.wall_seconds >= 0):
            raise ValueError(f"--wall-seconds must be a number of seconds, got "
                             f"{args.wall_seconds}")
        evaluation = json.loads(Path(args.eval).read_text()) if args.eval else None
        encoder = amortinv.load(run)
    except (OSError, ValueError, checkpoint.CheckpointError) as err:  # JSONDecodeError too
        print(f"error: {err}", file=sys.stderr)
        return 1
    card = encoder.card
    for key in ("command", "hardware", "wall_seconds"):
        value = getattr(args, key)
        if value is not None:
            card[key] = value
    if evaluation is not None:
        card["evaluation"] = evaluation
    dest.mkdir(parents=True, exist_ok=True)
    path = checkpoint.save_encoder(dest / checkpoint.ENCODER_FILE, encoder, torch.float16)
    if log.resolve() != (dest / "metrics.jsonl").resolve():  # re-carding a shipped one
        shutil.copyfile(log, dest / "metrics.jsonl")
    (dest / "card.json").write_text(json.dumps(checkpoint.read_meta(path), indent=2) + "\n")
    size = path.stat().st_size / 2**20
    print(f"{dest}: {size:.1f} MB, card and metrics beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import shutil
from pathlib import Path

import torch

import amortinv
from amortinv import checkpoint
from amortinv.cli import checkpoint_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=checkpoint_path)
    parser.add_argument("dest")
    parser.add_argument("--eval", help="a JSON file whose object is added to the card's "
                        "'evaluation'")
    parser.add_argument("--command")
    parser.add_argument("--hardware")
    parser.add_argument("--wall-seconds", type=float)
    args = parser.parse_args()

    encoder = amortinv.load(args.run)
    card = encoder.card
    for key in ("command", "hardware", "wall_seconds"):
        value = getattr(args, key)
        if value is not None:
            card[key] = value
    if args.eval:
        card["evaluation"] = json.loads(Path(args.eval).read_text())
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    path = checkpoint.save_encoder(dest / checkpoint.ENCODER_FILE, encoder, torch.float16)
    log = Path(args.run) / "metrics.jsonl"
    if log.resolve() != (dest / "metrics.jsonl").resolve():  # re-carding a shipped one
        shutil.copyfile(log, dest / "metrics.jsonl")
    (dest / "card.json").write_text(json.dumps(checkpoint.read_meta(path), indent=2) + "\n")
    size = path.stat().st_size / 2**20
    print(f"{dest}: {size:.1f} MB, card and metrics beside it")


if __name__ == "__main__":
    main()

"""The table of shipped checkpoints, from their cards (checkpoints/README.md holds its output).

    python scripts/checkpoint_table.py [checkpoints]

One row per encoder: what it was trained on and how (steps x batch, wall time, hardware), its
size, and the test accuracies `scripts/evaluate.py` recorded at all ones beside the raw input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amortinv import checkpoint


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def row(folder: Path) -> str:
    meta = checkpoint.read_meta(folder)
    model, card = meta["model"], meta["card"]
    pretrain, ev = card.get("pretrain", {}), card.get("evaluation", {})
    conditioning = {"hyper": f"hypernetwork, {model.get('bases')} bases", "film": "FiLM",
                    "none": "plain"}.get(model.get("conditioning"), model.get("conditioning"))
    size = (folder / checkpoint.ENCODER_FILE).stat().st_size / 2**20
    minutes = card.get("wall_seconds", 0) / 60
    return (f"| `{folder.name}` | {card.get('dataset')} | {model['arch']} width "
            f"{model.get('width')}, {conditioning} ({size:.1f} MB) | "
            f"{card.get('steps', 0):,} x {pretrain.get('batch_size')}, {minutes:.0f} min "
            f"({card.get('hardware', '?')}) | {ev.get('dataset', '—')} | "
            f"{percent(ev.get('knn', {}).get('all_ones'))} | "
            f"{percent(ev.get('linear', {}).get('all_ones'))} | "
            f"{percent(ev.get('raw_input_knn'))} | {percent(ev.get('raw_input_linear'))} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="checkpoints",
                        help="a folder of checkpoint folders (default: checkpoints)")
    args = parser.parse_args(argv)
    found = sorted(Path(args.folder).glob(f"*/{checkpoint.ENCODER_FILE}"))
    if not found:
        print(f"error: no checkpoint folders in {args.folder} (give the folder that holds "
              "them, e.g. checkpoints)", file=sys.stderr)
        return 1
    print("| name | pre-trained on | model (fp16 file) | steps x batch, wall time (hardware) "
          "| evaluated on (test split) | kNN at all ones | linear at all ones | raw kNN "
          "| raw linear |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in found:
        print(row(path.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())

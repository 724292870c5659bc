"""The downstream suite: every offline task in the registry, one row each.

    python scripts/benchmark_downstream.py --checkpoint runs/cpu-fmnist runs/cpu-audio \\
        --plain runs/cpu-fmnist-plain --out docs/downstream

Each task runs with the first checkpoint that can read it (modality and channels); tasks no
checkpoint can read are listed as skipped. Writes OUT.csv (every baseline) and OUT.md (the
table for the docs) and prints each row as JSON as it finishes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import amortinv
import amortinv.data as data
from amortinv.cli import add_config_arguments, config_values
from amortinv.downstream import DownstreamConfig, TaskMismatch, fit, prepare


def markdown(rows: list[dict], skipped: list[str], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| task | needs | metric | learned vector | learned "
        "| best corner (oracle: picked on test) | all ones | all zeros | plain | raw linear | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["baselines"]
        corners = {k: v for k, v in b.items() if not k.startswith(("raw_", "knn_", "plain"))}
        best = max(corners, key=corners.get)
        vector = ", ".join(f"{k} {v:.2f}" for k, v in r["learned"].items())
        plain = f"{b['plain_simclr']:.3f}" if "plain_simclr" in b else "—"
        lines.append(
            f"| {r['task']} | {r['needs']} | {r['metric']} | {vector} | "
            f"**{r['learned_score']:.3f}** | {corners[best]:.3f} ({best}) | "
            f"{b['all_ones']:.3f} | {b['all_zeros']:.3f} | {plain} | {b['raw_linear']:.3f} | "
            f"{r['seconds']:.0f} |")
    if skipped:
        lines += ["", "Skipped (no checkpoint reads them): " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", required=True)
    parser.add_argument("--plain", nargs="*", default=[], help="plain encoders, same order")
    parser.add_argument("--tasks", nargs="*", help="default: every available task")
    parser.add_argument("--out", default="docs/downstream")
    add_config_arguments(parser, DownstreamConfig)
    args = parser.parse_args()
    config = DownstreamConfig(**config_values(args, DownstreamConfig))
    encoders = [amortinv.load(p) for p in args.checkpoint]
    plains = [amortinv.load(p) for p in args.plain] + [None] * len(encoders)
    rows, skipped = [], []
    for name in args.tasks or data.names():
        match = None
        for encoder, plain in zip(encoders, plains, strict=False):
            try:
                prepare(encoder, name, config)
            except TaskMismatch:
                continue
            match = encoder, plain
            break
        if match is None:
            skipped.append(name)
            continue
        try:
            result = fit(match[0], name, config, match[1]).to_json()
        except (ValueError, RuntimeError) as err:  # one broken task must not end the suite
            skipped.append(f"{name} (failed: {err})")
            print(f"{name}: failed: {err}", file=sys.stderr, flush=True)
            continue
        result["needs"] = data.info(name).needs.split(":")[0]
        print(json.dumps(result), flush=True)
        rows.append(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r["baselines"]})
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "metric", "learned", "learned_score", "val_score",
                         "seconds", *keys])
        for r in rows:
            writer.writerow([r["task"], r["metric"], json.dumps(r["learned"]),
                             r["learned_score"], r["val_score"], r["seconds"],
                             *[r["baselines"].get(k, "") for k in keys]])
    command = "python scripts/benchmark_downstream.py " + " ".join(sys.argv[1:])
    out.with_suffix(".md").write_text(markdown(rows, skipped, command))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

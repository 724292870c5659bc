"""The study behind the downstream learner's defaults, on validation data only.

    python scripts/study_learner.py --checkpoint checkpoints/fmnist-hyper4-cpu \\
        --tasks fmnist-flip fmnist-position --variants paper fast --out docs/results/learner-study

Each registry task's TEST split is never read. Its training split is cut in two: a held-out
part (``--holdout`` of it, at most ``--max-holdout`` examples, stratified by class) stands in for
the test split, and the rest is the task as :func:`amortinv.downstream.prepare` sees it
(5,000 training + 500 validation examples by default). On the held-out part:

- every corner is scored once per task (a readout fitted on train, its strength chosen on
  validation), and the best of them is the oracle the learner is measured against;
- each variant (a named set of :class:`DownstreamConfig` overrides, ``VARIANTS``) learns a
  vector by gradient, which is scored the same way, and the validated selection
  (:mod:`amortinv.selection`) picks among it and every corner.

OUT.csv holds a row per (task, variant, seed); OUT.paths.jsonl the vector after every step;
OUT.md a summary per variant. Rows are appended as they finish and a rerun skips the rows
already there, so the study can be run in pieces (one task per process).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import amortinv
import amortinv.data as data
from amortinv.data import Dataset
from amortinv.downstream import DownstreamConfig, Task, learn, prepare
from amortinv.models import Encoder
from amortinv.selection import GRADIENT, Features, candidates, corner_name, corners, rounded

#: The variants studied: overrides of DownstreamConfig's fields (the paper's settings first).
VARIANTS: dict[str, dict] = {
    # round 1 (fp32): the paper's settings; a higher lr; a readout warmed up on the start
    # vector's features; its standardisation frozen at the start vector's statistics
    "paper": dict(lr_invariance=0.01, patience=5, warmup=0, standardise="batch"),
    "lr0.05": dict(lr_invariance=0.05, patience=5),
    "lr0.05-warm": dict(lr_invariance=0.05, patience=5, warmup=200),
    "lr0.05-warm-fixed": dict(lr_invariance=0.05, patience=5, warmup=200, standardise="start"),
    # round 2 (bf16): no early stopping (patience beyond the steps), lr 0.1, warm-up, MSE for
    # regression, a faster readout
    "paper-bf16": dict(lr_invariance=0.01, patience=5),
    "lr0.05-nostop": dict(lr_invariance=0.05, patience=1000),
    "lr0.1-nostop": dict(lr_invariance=0.1, patience=1000),
    "lr0.1-warm-nostop": dict(lr_invariance=0.1, patience=1000, warmup=200),
    "lr0.1-nostop-mse": dict(lr_invariance=0.1, patience=1000, regression_loss="mse"),
    "lr0.1-nostop-ro0.05": dict(lr_invariance=0.1, patience=1000, lr_readout=0.05),
}

FIELDS = ["task", "variant", "seed", "steps_run", "learn_seconds", "vector", "path_val",
          "gradient_val", "gradient_holdout", "rounded", "selected", "selected_val",
          "selected_holdout", "oracle", "oracle_holdout", "all_ones_holdout"]


def study_task(encoder: Encoder, name: str, config: DownstreamConfig, fraction: float,
               cap: int) -> Task:
    """``name`` with a held-out part of its training split in place of its test split."""
    full = data.get(name)
    keep, held = Dataset.validation_indices(full, fraction, seed=1000)
    held = held[:cap] if len(held) > cap else held
    dataset = dataclasses.replace(full, train=full.train.take(keep),
                                  test=full.train.take(held))
    return prepare(encoder, dataset, config)


def corner_scores(features: Features, cache: Path) -> dict[str, dict]:
    """Every corner's validation and held-out score (cached in ``cache``: the same for every
    variant of a task)."""
    if cache.exists():
        return json.loads(cache.read_text())
    fitted = {c.name: c for c in candidates(features, 1.0)}
    out = {name: {"val": c.val_score, "holdout": c.test_score(features)}
           for name, c in fitted.items() if name != GRADIENT}
    cache.write_text(json.dumps(out))
    return out


def run(encoder: Encoder, task: Task, variant: str, config: DownstreamConfig,
        corner: dict[str, dict], paths: Path) -> dict:
    start = time.perf_counter()
    states = list(learn(encoder, task, config))
    seconds = time.perf_counter() - start
    final = states[-1]
    with paths.open("a") as f:
        f.write(json.dumps({"task": task.name, "variant": variant, "seed": config.seed,
                            "steps": [s.step for s in states[:-1]],
                            "vectors": [s.vector for s in states[:-1]],
                            "val": [s.val_score for s in states[:-1]]}) + "\n")
    features = Features(encoder, task, config.precision)
    gradient = next(candidates(features, final.vector, with_corners=False))
    # The selection, as selection.choose makes it, from the cached corner scores: only
    # validation scores choose, and a tie goes to the gradient vector.
    chosen = max([(gradient.val_score, GRADIENT)] + [(v["val"], k) for k, v in corner.items()],
                 key=lambda t: t[0])[1]
    oracle = max(corner, key=lambda k: corner[k]["holdout"])
    gradient_holdout = gradient.test_score(features)
    return {
        "task": task.name, "variant": variant, "seed": config.seed,
        "steps_run": final.step, "learn_seconds": round(seconds, 1),
        "vector": json.dumps({k: round(v, 3) for k, v in final.vector.items()}),
        "path_val": round(final.best_score, 4), "gradient_val": round(gradient.val_score, 4),
        "gradient_holdout": round(gradient_holdout, 4),
        "rounded": corner_name(encoder.space, rounded(encoder.space, final.vector)),
        "selected": chosen,
        "selected_val": round(gradient.val_score if chosen == GRADIENT
                              else corner[chosen]["val"], 4),
        "selected_holdout": round(gradient_holdout if chosen == GRADIENT
                                  else corner[chosen]["holdout"], 4),
        "oracle": oracle, "oracle_holdout": round(corner[oracle]["holdout"], 4),
        "all_ones_holdout": round(corner["all_ones"]["holdout"], 4)}


def summary(rows: list[dict], command: str) -> str:
    """Per variant: mean and worst gap to the oracle corner (held-out), gradient and
    selected, and how many rows are within 2 (gradient) / 1 (selected) points."""
    lines = [f"Command: `{command}`", "",
             "| variant | rows | gradient - oracle: mean | worst | within 0.02 "
             "| selected - oracle: mean | worst | within 0.01 | selected < all ones "
             "| learn s (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]
        g = [float(r["gradient_holdout"]) - float(r["oracle_holdout"]) for r in rs]
        s = [float(r["selected_holdout"]) - float(r["oracle_holdout"]) for r in rs]
        below = sum(float(r["selected_holdout"]) < float(r["all_ones_holdout"]) for r in rs)
        secs = sum(float(r["learn_seconds"]) for r in rs) / len(rs)
        lines.append(f"| {variant} | {len(rs)} | {sum(g) / len(g):+.3f} | {min(g):+.3f} | "
                     f"{sum(x >= -0.02 for x in g)} | {sum(s) / len(s):+.3f} | {min(s):+.3f} | "
                     f"{sum(x >= -0.01 for x in s)} | {below} | {secs:.0f} |")
    lines += ["", "| task | variant | seed | steps | vector | gradient | selected | oracle "
              "| all ones |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['variant']} | {r['seed']} | {r['steps_run']} | "
                     f"{r['vector']} | {r['gradient_holdout']} | {r['selected_holdout']} "
                     f"({r['selected']}) | {r['oracle_holdout']} ({r['oracle']}) | "
                     f"{r['all_ones_holdout']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--max-holdout", type=int, default=2000)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="of the learning and of every feature (default fp32)")
    parser.add_argument("--out", default="docs/results/learner-study")
    args = parser.parse_args(argv)
    encoder = amortinv.load(args.checkpoint, "cpu")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table, paths = out.with_suffix(".csv"), out.with_suffix(".paths.jsonl")
    rows = list(csv.DictReader(table.open())) if table.exists() else []
    done = {(r["task"], r["variant"], r["seed"]) for r in rows}
    command = "python scripts/study_learner.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    for name in args.tasks:
        for seed in args.seeds:
            base = DownstreamConfig(seed=seed, precision=args.precision)
            task = study_task(encoder, name, base, args.holdout, args.max_holdout)
            cache = out.parent / f"{out.name}.corners-{name}-{seed}-{args.precision}.json"
            corner = corner_scores(Features(encoder, task, args.precision), cache)
            assert set(corner) == set(corners(encoder.space))
            for variant in args.variants:
                if (name, variant, str(seed)) in done:
                    continue
                config = DownstreamConfig(seed=seed, precision=args.precision,
                                          **VARIANTS[variant])
                row = run(encoder, task, variant, config, corner, paths)
                print(json.dumps(row), flush=True)
                rows.append({k: str(v) for k, v in row.items()})
                with table.open("w", newline="") as f:
                    writer = csv.DictWriter(f, FIELDS)
                    writer.writeheader()
                    writer.writerows(rows)
                out.with_suffix(".md").write_text(summary(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())

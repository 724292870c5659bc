"""The study behind the selection rule, on validation data only: each suite task's TEST split
is never read.

    python scripts/study_selection.py --checkpoint checkpoints/fmnist-hyper4-w8-cpu \\
        --tasks fashion-mnist fmnist-flip --suite "grey images" --out docs/results/selection-study

Each task's training split is cut in two (:func:`amortinv.downstream.held_out_task`): a
held-out part (a fifth, at most 2,000 examples) stands in for the test split, and the rest is
the task as the suite sees it. The vector is learned with the defaults; every candidate (the
gradient vector and every corner) gets its readout as in the suite, and four rules choose
on the validation split, two by cross-validation:

- ``best``: the best validation score (the rule before the one-standard-error rule);
- ``one-se``: :func:`amortinv.selection.choose` (all ones, then the gradient vector, unless
  the best beats them by more than one standard error);
- ``gradient-first``: the same rule with the gradient vector before all ones;
- ``paired``: the one-standard-error rule with the standard error of each difference, example
  by example (:func:`amortinv.selection.paired_noise`), in place of the best score's own;
- ``cv_best`` and ``cv_one_se``: the best and the one-standard-error rule, each candidate's
  readout scored by ``--folds``-fold cross-validation on the training and validation splits
  pooled (:func:`amortinv.selection.cross_validated`) instead of on the validation split.

Every choice, the gradient vector, all ones and the best corner on the held-out part (an
oracle) are scored there; ``start`` says where the vector started
(:func:`amortinv.downstream.start_name`).
OUT.csv gets a row per task (appended, so suites can run in pieces; a task already there is
skipped, as is one too small to hold a part out); ``python scripts/results_tables.py``
summarises it in docs/DOWNSTREAM.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import amortinv
import amortinv.data as data
from amortinv import results
from amortinv.cli import checkpoint_path, task_name
from amortinv.downstream import (
    DownstreamConfig,
    TaskMismatch,
    check_modality,
    corner_start,
    finish,
    held_out_task,
    learn,
    start_name,
)
from amortinv.selection import GRADIENT, Features, candidates, choose, cross_validated

FIELDS = ["suite", "task", "held_out", "best", "best_score", "one_se", "one_se_score",
          "all_ones_score", "oracle", "oracle_score", "seconds", "gradient_score",
          "gradient_first", "gradient_first_score", "start", "paired", "paired_score",
          "cv_best", "cv_best_score", "cv_one_se", "cv_one_se_score"]
#: Folds of the cross-validated rules (``--folds``; 0 leaves them out).
FOLDS = 5
#: The rule studied beside the default one: the gradient vector kept before all ones.
GRADIENT_FIRST = (GRADIENT, "all_ones")


def study(encoder, name: str, suite: str, config: DownstreamConfig, folds: int = FOLDS) -> dict:
    """One task's row: every rule's choice scored on the held-out part."""
    start = time.perf_counter()
    task = held_out_task(encoder, name, config)
    features = Features(encoder, task, config.precision)
    begin, fitted = finish(corner_start(encoder, task, config, features))
    *_, last = learn(encoder, task, config, start=begin, features=features)
    fitted |= {c.name: c for c in candidates(features, last.vector, with_corners=not fitted)}
    selection = choose(fitted, encoder.space)
    other = choose(fitted, encoder.space, GRADIENT_FIRST).chosen.name
    paired = choose(fitted, encoder.space, paired=True).chosen.name
    held = {n: c.test_score(features) for n, c in fitted.items()}
    row = {}
    if folds > 1:  # the same readouts, compared by their cross-validated scores
        cv = choose({n: cross_validated(features, c, folds) for n, c in fitted.items()},
                    encoder.space)
        row = {"cv_best": cv.best.name, "cv_best_score": round(held[cv.best.name], 4),
               "cv_one_se": cv.chosen.name, "cv_one_se_score": round(held[cv.chosen.name], 4)}
    corners = {n: v for n, v in held.items() if n != GRADIENT}
    oracle = max(corners, key=corners.get)
    return {"suite": suite, "task": name, "held_out": len(task.test),
            "best": selection.best.name, "best_score": round(held[selection.best.name], 4),
            "one_se": selection.chosen.name,
            "one_se_score": round(held[selection.chosen.name], 4),
            "all_ones_score": round(held["all_ones"], 4), "oracle": oracle,
            "oracle_score": round(corners[oracle], 4),
            "seconds": round(time.perf_counter() - start, 1),
            "gradient_score": round(held[GRADIENT], 4), "gradient_first": other,
            "gradient_first_score": round(held[other], 4),
            "start": start_name(encoder.space, begin), "paired": paired,
            "paired_score": round(held[paired], 4)} | row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=checkpoint_path, required=True)
    parser.add_argument("--tasks", nargs="+", type=task_name, required=True)
    parser.add_argument("--suite", required=True, help="the suite's name in the summary")
    parser.add_argument("--out", default="docs/results/selection-study")
    parser.add_argument("--folds", type=int, default=FOLDS,
                        help="folds of the cross-validated rules (0: leave them out)")
    args = parser.parse_args(argv)
    encoder = amortinv.load(args.checkpoint)
    out = results.output(args.out, ".csv")
    done = set()
    if out.exists():  # rows are appended: only to a file of this study's own columns
        with out.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != list(FIELDS):
                print(f"error: {out} is not this study's file (its columns differ): choose "
                      "another --out", file=sys.stderr)
                return 1
            done = {(r["suite"], r["task"]) for r in reader}
    for name in args.tasks:
        if (args.suite, name) in done:
            continue
        try:
            if (entry := data.folder_or_info(name)) is not None:
                check_modality(encoder, name, entry.modality)
        except TaskMismatch as err:  # the wrong kind of encoder: no task of it can run
            print(f"error: {err}", file=sys.stderr)
            return 1
        try:
            row = study(encoder, name, args.suite, DownstreamConfig(), args.folds)
        except TaskMismatch as err:  # too small to hold a part out: say so, go on
            print(f"{name}: skipped: {err}", file=sys.stderr, flush=True)
            continue
        print(row, flush=True)
        new = not out.exists()
        with out.open("a", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())

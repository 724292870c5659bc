"""What colour alone tells: readouts on hand-made colour statistics of each image, on the
colour suite's tasks and splits, beside the suite's scores.

    python scripts/colour_statistics.py --checkpoint checkpoints/rgb-hyper4-cpu \\
        --results docs/results/downstream-colour-a.csv docs/results/downstream-colour-b.csv \\
        --out docs/results/colour-statistics

For each task of the results files, the splits are the suite's (prepared for ``--checkpoint``,
the encoder that ran it, with the same settings; no feature of it is computed). On each
image's colour statistics (:func:`amortinv.measure.colour_statistics`: a chroma-weighted hue
histogram, the mean hue direction, the mean chroma and the coloured fraction) it fits

- ``linear``: the suite's linear readout (its L2 strength chosen on the validation split), so
  the column compares with the encoder's vectors like for like;
- ``forest``: a random forest (300 trees, at least 5 examples a leaf, seed 0; nothing chosen),
  fitted on the training and validation splits pooled: what the same statistics hold beyond a
  linear readout's reach.

Both are scored once on the test split. OUT.csv holds one row a task, OUT.md a table with the
suite's selected vector, oracle corner, all ones and plain encoder beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

import amortinv
from amortinv import results
from amortinv.checkpoint import CheckpointError
from amortinv.cli import add_config_arguments, checkpoint_path, config_values
from amortinv.data import DatasetUnavailable, UnknownDataset
from amortinv.downstream import DownstreamConfig, TaskMismatch, prepare
from amortinv.measure import colour_statistics
from amortinv.readout import fit_linear, score
from amortinv.task import Task


def readouts(task: Task, seed: int = 0) -> dict[str, float]:
    """Test scores of the ``linear`` and ``forest`` readouts on ``task``'s colour statistics
    (see the module's docstring)."""
    train, val, test = (colour_statistics(s.x) for s in (task.train, task.val, task.test))
    linear = fit_linear((train, val, test), task.targets, task.classes)[1]
    kind = RandomForestClassifier if task.classification else RandomForestRegressor
    forest = kind(n_estimators=300, min_samples_leaf=5, random_state=seed, n_jobs=-1)
    forest.fit(np.concatenate([train, val]), np.concatenate([task.train.y, task.val.y]))
    return {"linear": linear,
            "forest": score(forest.predict(test.numpy()), task.test.y, task.classification)}


def row_for(task: Task, suite_row: dict) -> dict:
    oracle_name, oracle_score = results.oracle(suite_row)
    scores = suite_row["baselines"]
    return {"task": task.name, "metric": task.metric, "test_examples": len(task.test.y),
            **readouts(task), "selected_name": suite_row["selected_name"],
            "selected_score": suite_row["selected_score"], "oracle_name": oracle_name,
            "oracle_score": oracle_score, "all_ones": scores["all_ones"],
            "plain": scores.get("plain")}


def write(out: Path, rows: list[dict], command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_numbers(results.output(out, ".csv"), rows, results.COLOUR_STATISTICS)
    table = results.colour_statistics_table(rows)
    results.output(out, ".md").write_text(f"Command: `{command}`\n\n{table}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=checkpoint_path, required=True,
                        help="the colour encoder the suite ran (for its splits only)")
    parser.add_argument("--results", nargs="+", required=True, help="the suite's results CSVs")
    parser.add_argument("--tasks", nargs="*", help="default: every scored task of the files")
    parser.add_argument("--out", help="OUT.csv and OUT.md are written (default: print only)")
    add_config_arguments(parser, DownstreamConfig)
    args = parser.parse_args(argv)
    try:
        config = DownstreamConfig(**config_values(args, DownstreamConfig))
        encoder = amortinv.load(args.checkpoint, "cpu")
        suite = {r["task"]: r for path in args.results for r in results.read_csv(Path(path))
                 if "error" not in r}
    except (CheckpointError, OSError, ValueError) as err:  # a folder, a truncated file
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not suite:
        print(f"error: {', '.join(args.results)} hold no scored task (are they "
              "benchmark_downstream.py results files?)", file=sys.stderr)
        return 1
    if args.out and any(results.same_file(results.output(args.out, ".csv"), Path(r))
                        for r in args.results):
        print(f"error: --out {args.out} would overwrite one of the --results: write "
              "elsewhere", file=sys.stderr)
        return 1
    names = args.tasks or list(suite)
    unknown = [t for t in names if t not in suite]
    if unknown:
        print(f"error: {', '.join(unknown)}: not a scored task of {', '.join(args.results)} "
              f"(their scored tasks: {', '.join(suite)})", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        try:
            task = prepare(encoder, name, config)
            if task.note or task.train.x.shape[1] != 3:  # grey images, made RGB
                raise TaskMismatch(f"task '{name}' is not of colour images: colour statistics "
                                   f"need them ({task.note or 'not three channels'})")
            rows.append(row_for(task, suite[name]))
        except (TaskMismatch, UnknownDataset, DatasetUnavailable) as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            return 1
        print(results.colour_statistics_table(rows[-1:]).splitlines()[-1], flush=True)
    if args.out:
        command = "python scripts/colour_statistics.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        write(Path(args.out), rows, command)
        print(f"wrote {args.out}.csv and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The downstream suite: every offline task in the registry, one row each.

    python scripts/benchmark_downstream.py --checkpoint runs/cpu-fmnist runs/cpu-audio \\
        --plain runs/cpu-fmnist-plain --out docs/downstream [--device auto]

Each task runs with the first checkpoint that can read it (modality, checked before any data is
loaded, then channels); tasks no checkpoint can read are listed as skipped. An unknown task
name is refused before any work (exit status 2, with the names it may have meant). A task that
cannot be run (a dataset missing here, a failure while learning) is recorded as a failed row
with the reason, and the suite goes on; the exit status is 1 when a row failed.
OUT.csv (every baseline, and an ``error`` column) and OUT.md (the table for the docs) are
rewritten as each row finishes, and each row is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import amortinv
import amortinv.data as data
from amortinv import results
from amortinv.checkpoint import CheckpointError
from amortinv.cli import add_config_arguments, config_values, task_name
from amortinv.devices import DEVICE_HELP
from amortinv.downstream import DownstreamConfig, Task, TaskMismatch, check_encoders, fit, prepare
from amortinv.models import Encoder


def markdown(rows: list[dict], skipped: list[str], command: str) -> str:
    """OUT.md: the command, the table (:func:`amortinv.results.table`), the targets, and the
    failed and skipped tasks."""
    lines = [f"Command: `{command}`", "", results.table(rows).rstrip(), "",
             "Targets (issue 10):", "", results.targets(rows).rstrip()]
    failed = [f"{r['task']} ({r['error']})" for r in rows if "error" in r]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed)]
    if skipped:
        lines += ["", "Skipped (no checkpoint reads them): " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"


def write(out: Path, rows: list[dict], skipped: list[str], command: str) -> None:
    """Both files, with every row so far (rewritten after each row)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_csv(results.output(out, ".csv"), rows)
    results.output(out, ".md").write_text(markdown(rows, skipped, command))


def first_reader(name: str, pairs: list[tuple[Encoder, Encoder | None]],
                 config: DownstreamConfig) -> tuple[Encoder, Encoder | None, Task] | None:
    """The first (encoder, plain) pair whose encoder reads task ``name``, with the task
    prepared for it (once: the fit reuses it); None when no encoder reads it."""
    for encoder, plain in pairs:
        try:
            return encoder, plain, prepare(encoder, name, config)
        except TaskMismatch:
            continue
    return None


def run_task(name: str, pairs: list[tuple[Encoder, Encoder | None]],
             config: DownstreamConfig) -> dict | None:
    """Task ``name``'s row: its result, or ``{"task", "error"}`` when it cannot be run; None
    when no encoder reads it."""
    try:
        match = first_reader(name, pairs, config)
        if match is None:
            return None
        encoder, plain, task = match
        row = fit(encoder, task, config, plain).to_json()
    except (data.UnknownDataset, data.DatasetUnavailable, ValueError, RuntimeError,
            OSError) as err:  # one broken task must not end the suite
        print(f"{name}: failed: {err}", file=sys.stderr, flush=True)
        return {"task": name, "error": str(err)}
    return row | {"needs": task.data.needs.split(":")[0]}


def downstream_tasks() -> list[str]:
    """Every available dataset but pre-training sets (whose labels are only a rough check)."""
    return [name for name in data.names() if data.info(name).kind != "pretraining"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", required=True)
    parser.add_argument("--plain", nargs="*", default=[], help="plain encoders, same order")
    parser.add_argument("--tasks", nargs="*", type=task_name,
                        help="default: every available task (not the pre-training sets)")
    parser.add_argument("--out", default="docs/downstream")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    add_config_arguments(parser, DownstreamConfig)
    args = parser.parse_args(argv)
    if len(args.plain) > len(args.checkpoint):
        parser.error(f"{len(args.plain)} --plain encoders for {len(args.checkpoint)} "
                     "--checkpoint: give one plain encoder per checkpoint, in the same order")
    try:
        config = DownstreamConfig(**config_values(args, DownstreamConfig))
        encoders = [amortinv.load(p, args.device) for p in args.checkpoint]
        plains = [amortinv.load(p, args.device) for p in args.plain]
        pairs = list(zip(encoders, plains + [None] * len(encoders), strict=False))
        for encoder, plain in pairs:  # a plain encoder of another kind: before any work
            check_encoders(encoder, plain)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    command = "python scripts/benchmark_downstream.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    rows: list[dict] = []
    skipped: list[str] = []
    for name in args.tasks or downstream_tasks():
        row = run_task(name, pairs, config)
        if row is None:
            skipped.append(name)
        else:
            print(json.dumps(row), flush=True)
            rows.append(row)
        if rows:  # a run that scores nothing leaves an earlier file of this name alone
            write(out, rows, skipped, command)
    if not rows:
        print(f"error: no task was run: no --checkpoint reads {', '.join(skipped)} (pass an "
              f"encoder of their kind); {results.output(out, '.csv')} was not written",
              file=sys.stderr)
        return 1
    csv_file, md_file = results.output(out, ".csv"), results.output(out, ".md")
    print(f"wrote {csv_file} and {md_file}", file=sys.stderr)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""How much of the oracle corner's lead over the selected vector is the oracle's luck.

    python scripts/oracle_gap.py --checkpoint checkpoints/audio-hyper4-cpu \\
        --results docs/results/downstream-audio.csv --out docs/results/oracle-gap-audio

The suite's "best corner" is picked on the test split it is scored on, so on a small test
split it is ahead of any vector chosen without that split partly by luck. For each task of a
suite's results file (``--misses``: only those whose selected vector is more than a point
below the oracle), this fits every corner's readout and the selected vector's again, as the
suite did (the same task, precision and readouts: ``reproduced`` is the largest difference
from the file's test scores), keeps each test example's share of each score, and splits the
test split in random halves (:func:`amortinv.results.oracle_gaps`): the oracle picked on one
half and scored on the other is the lead without the luck. The same for the gradient-learned
vector (its test shares come with the refitted candidates; the same halves), against its
target's two points. ``--plain CHECKPOINT`` (the suite's plain encoder) fits its readout again
too and gives how far it is ahead of the selected vector, with one standard error of that
paired difference (nothing is picked on the test split there: no luck to take out). OUT.csv
holds one row a task, OUT.md a table for each comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import amortinv
from amortinv import results
from amortinv.checkpoint import CheckpointError
from amortinv.cli import add_config_arguments, config_values
from amortinv.data import DatasetUnavailable, UnknownDataset
from amortinv.downstream import DownstreamConfig, TaskMismatch, prepare
from amortinv.models import Encoder
from amortinv.readout import fit_readout, points
from amortinv.selection import GRADIENT, Features, candidates


def gap_row(encoder: Encoder, row: dict, suite: str, config: DownstreamConfig,
            halves: int, plain: Encoder | None = None) -> dict:
    """``row``'s task again: every corner's and the selected vector's test shares, and the
    oracle's lead over the selected vector with and without its luck; with ``plain``, the
    plain encoder's lead too."""
    task = prepare(encoder, row["task"], config)
    features = Features(encoder, task, row["precision"])
    shares = {}
    for candidate in candidates(features, row["learned"]):
        test = features(candidate.vector, "test")
        shares[candidate.name] = points(candidate.readout.predict(test), task.test.y,
                                        task.classification)
    if plain is not None:  # as the suite's baseline: a readout on its features
        train, val, test = Features(plain, task, row["precision"]).splits(1.0)
        readout = fit_readout(train, task.train.y, val, task.val.y, task.classes)
        shares["plain"] = points(readout.predict(test), task.test.y, task.classification)
    file_scores = row["baselines"] | {GRADIENT: row["learned_score"]}
    reproduced = max(abs(float(v.mean()) - file_scores[k]) for k, v in shares.items())
    corner_shares = {k: v for k, v in shares.items() if k not in (GRADIENT, "plain")}
    oracle = max(corner_shares, key=lambda k: corner_shares[k].mean())
    selected, gradient = shares[row["selected_name"]], shares[GRADIENT]
    against_plain = dict.fromkeys(("plain_score", "plain_gap", "plain_se"))
    if plain is not None:
        against_plain = {"plain_score": float(shares["plain"].mean()),
                         **{f"plain_{k}": v
                            for k, v in results.paired_gap(shares["plain"], selected).items()}}
    # the same halves for both vectors (oracle_gaps is seeded)
    against_gradient = results.oracle_gaps(corner_shares, gradient, halves)
    return {"suite": suite, "task": row["task"], "metric": row["metric"],
            "test_examples": len(selected), "selected_name": row["selected_name"],
            "selected_score": float(selected.mean()), "oracle_name": oracle,
            "oracle_score": float(corner_shares[oracle].mean()),
            **results.oracle_gaps(corner_shares, selected, halves),
            "gradient_score": float(gradient.mean()),
            **{f"gradient_{k}": v for k, v in against_gradient.items()}, **against_plain,
            "reproduced": reproduced}


def write(out: Path, rows: list[dict], command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_numbers(results.output(out, ".csv"), rows, results.GAP_FIELDS)
    tables = [results.gap_table(rows), results.gap_table(rows, "gradient")]
    if any(r["plain_gap"] is not None for r in rows):
        tables.append(results.plain_table(rows))
    results.output(out, ".md").write_text(f"Command: `{command}`\n\n" + "\n".join(tables))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the encoder the suite ran")
    parser.add_argument("--results", required=True, help="the suite's results CSV")
    parser.add_argument("--tasks", nargs="*", help="default: every scored task of the file")
    parser.add_argument("--misses", action="store_true",
                        help="only where the selected vector is more than a point below the "
                        "oracle")
    parser.add_argument("--halves", type=int, default=500, help="random halves (default 500)")
    parser.add_argument("--plain", help="the suite's plain encoder: how far it is ahead of the "
                        "selected vector, too")
    parser.add_argument("--out", required=True, help="OUT.csv and OUT.md are written")
    add_config_arguments(parser, DownstreamConfig)
    args = parser.parse_args(argv)
    try:
        config = DownstreamConfig(**config_values(args, DownstreamConfig))
        encoder = amortinv.load(args.checkpoint, "cpu")
        plain = amortinv.load(args.plain, "cpu") if args.plain else None
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        rows = {r["task"]: r for r in results.read_csv(Path(args.results))}
    except (OSError, ValueError, KeyError) as err:  # a folder, a truncated or foreign file
        print(f"error: --results {args.results} cannot be read as a benchmark_downstream.py "
              f"results file ({type(err).__name__}: {err})", file=sys.stderr)
        return 1
    scored = [t for t, r in rows.items() if "error" not in r]
    if not scored:
        print(f"error: {args.results} holds no scored task (is it a benchmark_downstream.py "
              "results file?)", file=sys.stderr)
        return 1
    if results.same_file(results.output(args.out, ".csv"), Path(args.results)):
        print(f"error: --out {args.out} would overwrite --results {args.results}: write "
              "elsewhere", file=sys.stderr)
        return 1
    names = args.tasks or scored
    unknown = [t for t in names if t not in scored]
    if unknown:
        print(f"error: {', '.join(unknown)}: not a scored task of {args.results} (its scored "
              f"tasks: {', '.join(scored)})", file=sys.stderr)
        return 1
    if args.misses:
        names = [t for t in names if results.selected_misses_oracle(rows[t])]
        if not names:
            print(f"nothing to do: no such task's selected vector in {args.results} is more "
                  "than a point below the oracle", file=sys.stderr)
            return 0
    command = "python scripts/oracle_gap.py " + " ".join(sys.argv[1:] if argv is None else argv)
    suite = Path(args.results).stem.removeprefix("downstream-")
    done = []
    for name in names:
        try:
            done.append(gap_row(encoder, rows[name], suite, config, args.halves, plain))
        except (TaskMismatch, UnknownDataset, DatasetUnavailable) as err:
            print(f"error: {name}: {err} (is {args.checkpoint} the encoder that ran "
                  f"{args.results}?)", file=sys.stderr)
            return 1
        print(results.gap_table(done[-1:]).splitlines()[-1], flush=True)
        if done[-1]["reproduced"] > 1.5 / done[-1]["test_examples"]:
            print(f"warning: {name}: the test scores differ from the file's by up to "
                  f"{done[-1]['reproduced']:.4f}: is {args.checkpoint} the encoder that ran "
                  f"{args.results}, with the same settings?", file=sys.stderr)
        write(Path(args.out), done, command)
    print(f"wrote {results.output(args.out, '.csv')} and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

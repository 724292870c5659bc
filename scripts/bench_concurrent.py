"""Benchmark: several app users learning at once in one server process.

Starts ``--jobs`` learning jobs (:func:`amortinv.workers.learning_job`, the Learn page's
settings on ``--max-train`` examples) at the same moment, as that many browser sessions
would, and prints one JSON object: the seconds until every job is done (``all_s``), and each
job's own seconds and stages (``each``; ``jobs`` is their count). Jobs take turns on the CPU
(:data:`amortinv.workers.TURNS`); compare ``--jobs 2`` with ``--jobs 1``. Run it on an idle
machine.

    python scripts/bench_concurrent.py --jobs 2 [--checkpoint checkpoints/fmnist-hyper4-w8-cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import amortinv
from amortinv.cli import checkpoint_path, positive_int, task_name
from amortinv.downstream import DownstreamConfig
from amortinv.workers import learning_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=positive_int, default=2)
    parser.add_argument("--checkpoint", type=checkpoint_path,
                        default="checkpoints/fmnist-hyper4-w8-cpu")
    parser.add_argument("--task", type=task_name, default="fashion-mnist")
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--steps", type=positive_int, default=DownstreamConfig().steps)
    parser.add_argument("--folds", type=int, default=DownstreamConfig().folds,
                        help="the selection's cross-validation folds (0: the validation split, "
                             "the Learn page's other 'choose by'; default %(default)s)")
    args = parser.parse_args()
    encoder = amortinv.load(args.checkpoint)  # one encoder shared by every session, as in the app
    config = DownstreamConfig(max_test=2000, max_train=args.max_train, steps=args.steps,
                              folds=args.folds)
    clock = time.perf_counter()
    jobs = [learning_job(encoder, args.task, config).start() for _ in range(args.jobs)]
    for job in jobs:
        job.join()
    snapshots = [job.snapshot() for job in jobs]
    failed = [s.error for s in snapshots if s.error]
    if failed:
        raise SystemExit(f"a job failed: {failed[0]}")
    print(json.dumps({"jobs": args.jobs, "all_s": round(time.perf_counter() - clock, 1),
                      "each": [{"s": round(s.seconds, 1),
                                "stages": {k: round(v, 1) for k, v in s.result["stages"].items()}}
                               for s in snapshots]}))


if __name__ == "__main__":
    main()

"""Benchmark: how the app's probe feels on this machine.

A slider change means: features of the probed points at the new vector (plus the training
points behind the live kNN and linear-probe figures), then a 2-D projection aligned to the last
one. This measures that path, with the page's own functions, over several slider moves, and
the time to the first rendered page after imports.

    python scripts/bench_app.py [--checkpoint checkpoints/fmnist-hyper4-cpu] [--points 2000]

Prints one JSON line: points, pca_median_s, umap_median_s, cold_start_s (and the machine).
Targets on the 2-core CPU: PCA <= 1 s, UMAP <= 3 s, first page <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COLD_START = """
import time, streamlit, torch, plotly, amortinv.ui, amortinv.downstream  # imports: not timed
from streamlit.testing.v1 import AppTest
start = time.perf_counter()
at = AppTest.from_file({app!r}, default_timeout=120)
at.run()
assert not at.exception, at.exception
print(time.perf_counter() - start)
"""


def slider_moves(encoder, dataset, points: int, method: str, moves: int) -> list[float]:
    from amortinv.projection import Projector
    from amortinv.ui import PROBE_TRAIN_POINTS

    test, train = dataset.test.x[:points], dataset.train.x[:PROBE_TRAIN_POINTS]
    projector = Projector(method)
    k = len(encoder.space)
    times = []
    for move in range(moves + 1):  # the first call builds the layout: not a slider move
        vector = [1.0] * k
        vector[move % k] = 1.0 - 0.05 * (1 + move // k)
        start = time.perf_counter()
        z = encoder.features(test, vector)
        encoder.features(train, vector)
        projector(z)
        if move:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "fmnist-hyper4-cpu"))
    parser.add_argument("--dataset", default="")
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--moves", type=int, default=8)
    args = parser.parse_args()

    import torch

    import amortinv
    import amortinv.data as data
    from amortinv.projection import warm_up_umap

    warm_up_umap(block=True)  # the app does this in the background at start
    encoder = amortinv.load(args.checkpoint)
    dataset = data.get(args.dataset or encoder.card["dataset"].split(",")[0])
    pca = slider_moves(encoder, dataset, args.points, "pca", args.moves)
    umap = slider_moves(encoder, dataset, args.points, "umap", args.moves)
    cold = subprocess.run([sys.executable, "-c", COLD_START.format(app=str(ROOT / "app.py"))],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    print(json.dumps({"points": args.points, "pca_median_s": round(statistics.median(pca), 3),
                      "umap_median_s": round(statistics.median(umap), 3),
                      "cold_start_s": round(float(cold.stdout.strip().splitlines()[-1]), 2),
                      "threads": torch.get_num_threads(), "checkpoint": args.checkpoint,
                      "dataset": dataset.name}))


if __name__ == "__main__":
    main()

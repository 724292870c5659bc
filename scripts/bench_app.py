"""Benchmark: where a slider move's time goes on Probe features, in-process.

A slider change means: features of the drawn test points at the new vector and of the training
points behind the live kNN and linear probe (bfloat16 where the CPU has it, as the page does),
a 2-D projection aligned to the last one, then the kNN and linear-probe figures. This times
each part with the library functions the page calls, over several moves, and the first
rendered page through AppTest after imports.

    python scripts/bench_app.py [--checkpoint checkpoints/fmnist-hyper4-w8-cpu]

Prints one JSON line of medians per part. What a user waits for (a real browser, the page's
rerun, the chart sent and drawn) is scripts/bench_browser.py's: this one shows where it goes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from amortinv.cli import checkpoint_path, positive_int, task_name

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


def slider_moves(encoder, dataset, method: str, moves: int) -> dict[str, list[float]]:
    from amortinv.measure import knn_accuracy
    from amortinv.projection import Projector
    from amortinv.readout import linear_probe
    from amortinv.ui import PROBE_POINTS, PROBE_TRAIN_POINTS

    modality = encoder.config.modality
    test, train = dataset.test.take(slice(PROBE_POINTS[modality])), dataset.train.take(
        slice(PROBE_TRAIN_POINTS[modality]))
    # converted once, as the page's cache does (audio: log-mel spectrograms); not timed
    test_x, train_x = encoder.reusable(test.x), encoder.reusable(train.x)
    projector = Projector(method)
    k = len(encoder.space)
    times: dict[str, list[float]] = {"features": [], "projection": [], "probe": [], "total": []}
    for move in range(moves + 1):  # the first call builds the layout: not a slider move
        vector = [1.0] * k
        vector[move % k] = 1.0 - 0.05 * (1 + move // k)
        start = time.perf_counter()
        z_test = encoder.features(test_x, vector, precision="bf16")
        z_train = encoder.features(train_x, vector, precision="bf16")
        features = time.perf_counter()
        projector(z_test)
        projection = time.perf_counter()
        if dataset.target_kind == "classification":
            knn_accuracy(z_train, train.y, z_test, test.y)
            linear_probe(z_train, train.y, z_test, test.y, len(dataset.class_names))
        end = time.perf_counter()
        if move:
            for key, seconds in (("features", features - start),
                                 ("projection", projection - features),
                                 ("probe", end - projection), ("total", end - start)):
                times[key].append(seconds)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=checkpoint_path,
                        default=str(ROOT / "checkpoints" / "fmnist-hyper4-w8-cpu"),
                        help="default: the encoder the app opens on")
    parser.add_argument("--dataset", type=task_name,
                        help="default: the encoder's pre-training dataset")
    parser.add_argument("--moves", type=positive_int, default=8)
    args = parser.parse_args()

    import torch

    import amortinv
    import amortinv.data as data
    from amortinv.downstream import TaskMismatch, check_compatible, check_modality
    from amortinv.projection import warm_up_umap
    from amortinv.ui import PROBE_POINTS

    encoder = amortinv.load(args.checkpoint, device="cpu")
    name = args.dataset or encoder.card["dataset"].split(",")[0]
    try:  # before the timing: a task the encoder cannot read
        if (entry := data.folder_or_info(name)) is not None:
            check_modality(encoder, name, entry.modality)  # from the registry: no loading
        dataset = data.get(name)
        check_compatible(encoder, dataset)  # a folder's modality shows once it is read
        dataset = data.adapt_channels(dataset, encoder.config.in_channels)[0]
    except (data.DatasetUnavailable, TaskMismatch) as err:
        parser.error(str(err))
    warm_up_umap(block=True)  # the app does this in the background at start
    result = {"points": min(PROBE_POINTS[encoder.config.modality], len(dataset.test))}
    for method in ("pca", "umap"):
        for part, values in slider_moves(encoder, dataset, method, args.moves).items():
            result[f"{method}_{part}_median_s"] = round(statistics.median(values), 3)
    cold = subprocess.run([sys.executable, "-c", COLD_START.format(app=str(ROOT / "app.py"))],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    result["cold_start_s"] = round(float(cold.stdout.strip().splitlines()[-1]), 2)
    print(json.dumps({**result, "threads": torch.get_num_threads(),
                      "checkpoint": args.checkpoint, "dataset": dataset.name}))


if __name__ == "__main__":
    main()

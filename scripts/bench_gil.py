"""Benchmark: a learning step while other Python threads run, eager against traced.

In the app, a Learn job is a thread of the Streamlit server, beside the threads that run the
pages' scripts (the Learn page redraws its live charts up to once a second). A learning step run
eagerly takes Python's GIL back after each of its few hundred operations; while another thread
holds the GIL, the step waits for it every time; traced into one TorchScript graph
(``torch.jit.trace``), the encoder runs without the GIL. This times one learning step (the encoder
forward at the vector, a linear readout, cross-entropy, the backward pass to the vector and
the readout), median of ``--steps``, both ways, with:

- ``alone``: nothing else running;
- ``redraws``: a thread building the Learn page's two live charts (``charts.vector_path``,
  ``charts.loss_and_validation``, 150 steps of history) once a second, as the page does;
- ``busy``: a thread running Python code without pause (the worst case).

    python scripts/bench_gil.py [--checkpoint checkpoints/fmnist-hyper4-w8-cpu]
        [--task fashion-mnist] [--steps 20]

Prints one JSON object: seconds per step by mode and way, and their ratios. Run it on an idle
machine. (On cpu-2-amd the two ways tied alone and beside the redraws, and the traced step was
ten times faster only beside the busy thread; served, learning was no faster traced, so the
app runs the encoder eagerly: ``docs/BENCHMARKS.md``.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from amortinv.cli import positive_int, task_name


def redraws(stop: threading.Event) -> None:
    from amortinv import charts

    steps = list(range(1, 151))
    vectors = [{"crop": s / 150, "flip": 0.5, "color": 0.5, "blur": 1 - s / 150} for s in steps]
    while not stop.wait(1.0):
        charts.vector_path(vectors, steps).to_json()
        charts.loss_and_validation(steps, [1.0] * 150, steps[::10], [0.5] * 15,
                                   "accuracy").to_json()


def busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def timed_steps(forward: Callable, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor,
                readout: torch.nn.Linear, steps: int) -> float:
    times = []
    for _ in range(steps):
        clock = time.perf_counter()
        loss = F.cross_entropy(readout(forward(x, vector)), y)
        loss.backward()
        times.append(time.perf_counter() - clock)
        vector.grad = None
        readout.zero_grad()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/fmnist-hyper4-w8-cpu")
    parser.add_argument("--task", type=task_name, default="fashion-mnist")
    parser.add_argument("--steps", type=positive_int, default=20)
    args = parser.parse_args()

    import amortinv
    from amortinv.downstream import DownstreamConfig, frozen, prepare

    encoder = amortinv.load(args.checkpoint)
    config = DownstreamConfig()
    task = prepare(encoder, args.task, config)
    x = encoder.to_input(task.train.x[:config.batch_size])
    y = torch.as_tensor(task.train.y[:config.batch_size], dtype=torch.long)
    readout = torch.nn.Linear(encoder.feature_dim, task.data.num_outputs)
    result: dict[str, object] = {"checkpoint": args.checkpoint, "task": args.task,
                                 "batch": len(x), "threads": torch.get_num_threads()}
    with frozen(encoder):
        vector = torch.full((len(encoder.space),), 0.5, requires_grad=True)
        with warnings.catch_warnings():  # its shape check is fixed when traced, as wanted
            warnings.simplefilter("ignore")
            ways = {"eager": encoder,
                    "traced": torch.jit.trace(encoder, (x, vector), check_trace=False)}
        for way in ways.values():  # warm both up
            timed_steps(way, x, y, vector, readout, 2)
        for mode, target in (("alone", None), ("redraws", redraws), ("busy", busy)):
            stop = threading.Event()
            thread = threading.Thread(target=target, args=(stop,), daemon=True) if target \
                else None
            if thread:
                thread.start()
            try:
                seconds = {name: timed_steps(way, x, y, vector, readout, args.steps)
                           for name, way in ways.items()}
            finally:
                stop.set()
                if thread:
                    thread.join()
            result[f"{mode}_s"] = {k: round(v, 4) for k, v in seconds.items()}
            result[f"{mode}_eager_over_traced"] = round(seconds["eager"] / seconds["traced"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

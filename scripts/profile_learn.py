"""Where a Learn-page job's time goes: the job's stages timed in-process, then the same work
as the app runs it (a :class:`amortinv.workers.Job` thread) and as a thread that is the only
one to compute.

    python scripts/profile_learn.py [--checkpoint checkpoints/fmnist-hyper4-w8-cpu]
        [--plain checkpoints/fmnist-plain-cpu] [--task fashion-mnist] [--only-stages]

Prints one JSON object: ``stages`` (seconds per stage, in the main thread, named as the Learn
page's job names them, :data:`amortinv.workers.STAGES`, each baseline apart), ``main_s``
(their sum), ``job_thread`` (the whole job in a Job thread, the main thread having computed
before, as the app's server threads do: ``s`` and the job's own ``stages``) and
``lone_thread_s`` (the start's corners alone, in a thread while the main thread has computed
nothing, against ``lone_main_s``, the same in the main thread of a fresh process). Settings are
the Learn page's defaults (``max_test=2000``). Run it on an idle machine; the browser's figure is
``scripts/bench_browser.py``'s ``learn_s``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from amortinv.cli import checkpoint_path, task_name

SNIPPET = """
import json, sys, threading, time
def start(checkpoint, task):
    import amortinv
    from amortinv.downstream import DownstreamConfig, corner_start, finish, prepare
    from amortinv.selection import Features
    encoder, config = amortinv.load(checkpoint), DownstreamConfig(max_test=2000)
    prepared = prepare(encoder, task, config)
    clock = time.perf_counter()
    finish(corner_start(encoder, prepared, config, Features(encoder, prepared, config.precision)))
    return time.perf_counter() - clock
out = {}
if sys.argv[1] == "thread":
    worker = threading.Thread(target=lambda: out.update(s=start(*sys.argv[2:])))
    worker.start()
    worker.join()
else:
    out["s"] = start(*sys.argv[2:])
print(json.dumps(round(out["s"], 1)))
"""


def stages(checkpoint: str, plain: str, task: str) -> dict[str, float]:
    import amortinv
    from amortinv.downstream import DownstreamConfig, assess, corner_start, finish, learn, prepare
    from amortinv.selection import Features
    from amortinv.workers import Laps, assessed_stage

    encoder, baseline = amortinv.load(checkpoint), amortinv.load(plain)
    config = DownstreamConfig(max_test=2000)
    lap = Laps()
    prepared = prepare(encoder, task, config)
    lap("preparing")
    features = Features(encoder, prepared, config.precision)
    begin, fitted = finish(corner_start(encoder, prepared, config, features))
    lap("start")
    *_, last = learn(encoder, prepared, config, start=begin, features=features)
    lap("learning")
    for record in assess(encoder, prepared, last.vector, config, baseline, features=features,
                         fitted=fitted):
        stage = assessed_stage(record)
        timed = lap(stage if stage != "baselines" else f"baseline: {record.name}")
    return {stage: round(seconds, 2) for stage, seconds in timed.items()}


def job_thread(checkpoint: str, plain: str, task: str) -> dict:
    import amortinv
    from amortinv.downstream import DownstreamConfig
    from amortinv.workers import learning_job

    encoder, baseline = amortinv.load(checkpoint), amortinv.load(plain)
    clock = time.perf_counter()
    job = learning_job(encoder, task, DownstreamConfig(max_test=2000), plain=baseline).start()
    job.join()
    snapshot = job.snapshot()
    if snapshot.error:
        raise SystemExit(snapshot.error)
    return {"s": round(time.perf_counter() - clock, 1),
            "stages": {k: round(v, 2) for k, v in snapshot.result["stages"].items()}}


def fresh(mode: str, checkpoint: str, task: str) -> float:
    """The start's corners in a fresh process: in its main thread, or in a thread alone."""
    done = subprocess.run([sys.executable, "-c", SNIPPET, mode, checkpoint, task], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=checkpoint_path,
                        default="checkpoints/fmnist-hyper4-w8-cpu")
    parser.add_argument("--plain", type=checkpoint_path,
                        default="checkpoints/fmnist-plain-cpu")
    parser.add_argument("--task", type=task_name, default="fashion-mnist")
    parser.add_argument("--only-stages", action="store_true",
                        help="time the stages in the main thread only (a third of the time)")
    args = parser.parse_args()
    import amortinv
    from amortinv.data import folder_or_info
    from amortinv.downstream import TaskMismatch, check_encoders, check_modality

    encoder = amortinv.load(args.checkpoint)
    try:  # the encoders and the task read the same kind of data: said before any timing
        check_encoders(encoder, amortinv.load(args.plain))
        if (entry := folder_or_info(args.task)) is not None:
            check_modality(encoder, args.task, entry.modality)
    except TaskMismatch as err:
        raise SystemExit(f"error: {err}") from None
    timed = stages(args.checkpoint, args.plain, args.task)
    result = {"stages": timed, "main_s": round(sum(timed.values()), 1)}
    if not args.only_stages:
        result.update(job_thread=job_thread(args.checkpoint, args.plain, args.task),
                      lone_main_s=fresh("main", args.checkpoint, args.task),
                      lone_thread_s=fresh("thread", args.checkpoint, args.task))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

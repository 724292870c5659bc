"""Background jobs for the app: invariance learning and pre-training in a thread.

A job never calls Streamlit: it runs library code in a daemon thread and records what happens
under a lock; a page polls :meth:`Job.snapshot` (e.g. from ``st.fragment(run_every=...)``) and
draws. Each browser session holds its own jobs, so two tabs never share one. ``stop()`` asks
the work to end at the next step and returns at once.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from amortinv.downstream import DownstreamConfig, State, Task, evaluate_vector, learn


@dataclass
class Snapshot:
    """A consistent copy of a job's progress."""

    records: list[Any]
    running: bool
    error: str | None
    result: dict = field(default_factory=dict)
    seconds: float = 0.0


class Job:
    """Runs ``work(stop_event)`` — a generator of records — in a background thread."""

    def __init__(self, work: Callable[[threading.Event], Iterator[Any]], name: str = "job"):
        self._work, self.name = work, name
        self._lock = threading.Lock()
        self._records: list[Any] = []
        self._result: dict = {}
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._ended = 0.0

    def start(self) -> Job:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for record in self._work(self._stop):
                with self._lock:
                    self._records.append(record)
        except Exception as err:  # shown to the user as a message, not a traceback
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        finally:
            self._ended = time.perf_counter()

    def set_result(self, **values: Any) -> None:
        with self._lock:
            self._result.update(values)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> Snapshot:
        with self._lock:
            end = self._ended or time.perf_counter()
            return Snapshot(list(self._records), self.running, self._error, dict(self._result),
                            end - self._started if self._started else 0.0)


#: The score name of the plain (non-amortised) encoder in a learning job's result.
PLAIN = "plain"


def learning_job(encoder, task: Task, config: DownstreamConfig,
                 compare: list[tuple[str, Any]] | None = None, plain=None) -> Job:
    """Learn ``task``'s vector in the background; afterwards score the learned vector, the
    ``plain`` encoder (if given, as ``plain``) and each of ``compare`` (name, vector) on
    the test split, stored as the job's result
    ``{"scores": {name: score}, "learned": {group: value}}``."""

    def work(stop: threading.Event) -> Iterator[State]:
        last = None
        for state in learn(encoder, task, config, stop=stop):
            last = state
            yield state
        if last is None:  # stopped before the first step
            return
        scores = {"learned": evaluate_vector(encoder, task, last.vector)[1]}
        job.set_result(learned=last.vector, scores=scores)
        others = [(PLAIN, plain, 1.0)] if plain is not None else []
        for name, model, vector in others + [(n, encoder, v) for n, v in compare or []]:
            if stop.is_set():
                break
            scores[name] = evaluate_vector(model, task, vector)[1]
            job.set_result(scores=dict(scores))

    job = Job(work, name=f"learn-{task.data.name}")
    return job


def pretraining_job(trainer) -> Job:
    """Run a :class:`amortinv.pretrain.Trainer` in the background; records are its log."""

    def work(stop: threading.Event) -> Iterator[dict]:
        run = trainer.run()
        try:
            for record in run:
                yield record
                if stop.is_set():
                    break
        finally:
            run.close()  # the run's own clean-up: close the log and the progress bar
        trainer.save(trainer.encoder.card.get("metrics", {}))

    return Job(work, name=f"pretrain-{trainer.config.preset}")

"""Background jobs for the app: invariance learning and pre-training in a thread.

A job never calls Streamlit: it runs library code in a daemon thread and records what happens
under a lock; a page polls :meth:`Job.snapshot` (e.g. from ``st.fragment(run_every=...)``) and
draws. Each browser session holds its own jobs, so two tabs never share one.

Two ways to end a job early, both returning at once:

- :meth:`Job.stop` asks the work to wrap up: a learning job stops learning and still scores what
  it learned so far against every comparison; a pre-training job saves its checkpoint.
- :meth:`Job.cancel` ends the job at the next record. A job whose ``alive`` check fails (its
  browser session closed or reloaded) for longer than ``grace`` seconds is cancelled, so it
  never keeps the machine busy for nobody.

Either one asked of a job that has already ended changes nothing: a click that races with the
job's end leaves its complete result shown as complete, not as cancelled.

Jobs take turns (:data:`TURNS`): the work between two records runs while the job holds the
process's one turn, handed over in the order asked for, so two users' jobs each go at about
half speed. Run at once, two learning jobs on a 2-core machine took 468 s where one alone
takes 47 s: two OpenMP teams on two cores make every parallel operation wait for a thread
the other team holds (``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import inspect
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from amortinv import data
from amortinv.data import Dataset
from amortinv.downstream import (
    GRADIENT,
    DownstreamConfig,
    Scored,
    State,
    Task,
    assess,
    check_encoders,
    corner_start,
    learn,
    prepare,
    start_name,
    usable_folds,
)
from amortinv.models import Encoder
from amortinv.selection import Candidate, Features, Selection

__all__ = ["KEPT", "PLAIN", "RAW", "STAGES", "TURNS", "Job", "KeptCorners", "Laps", "Scored",
           "Snapshot", "Turns", "assessed_stage", "learning_job", "pretraining_job"]


@dataclass
class Snapshot:
    """A consistent copy of a job's progress."""

    records: list[Any]
    running: bool
    error: str | None
    result: dict = field(default_factory=dict)
    seconds: float = 0.0
    stopping: bool = False
    #: Why the job was cancelled ("" if it was not): shown to the user.
    cancelled: str = ""
    #: Other jobs running in this process when the snapshot was taken (they take turns).
    sharing: int = 0


class Turns:
    """A lock handed over in the order it was asked for (``threading.Lock`` is not: a thread
    that releases it and asks again at once usually gets it back, and the other job would
    starve). ``with turns:`` holds it; :attr:`waiting` counts those in line."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._line: deque[threading.Lock] = deque()
        self._held = False

    def __enter__(self) -> Turns:
        with self._guard:
            if not self._held:
                self._held = True
                return self
            mine = threading.Lock()
            mine.acquire()
            self._line.append(mine)
        mine.acquire()  # released by __exit__ when this turn comes: the turn is handed over
        return self

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._line:
                self._line.popleft().release()
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        with self._guard:
            return len(self._line)


#: The process's one turn to compute, shared by every :class:`Job`.
TURNS = Turns()
#: Jobs started and not yet ended in this process, under their own lock.
_RUNNING: set[Job] = set()
_RUNNING_LOCK = threading.Lock()
_END = object()  # what next() gives back once a job's work is done


class Job:
    """Runs ``work(stop_event)`` (a generator function of records) in a background thread, taking
    turns with the other jobs (:data:`TURNS`) record by record."""

    def __init__(self, work: Callable[[threading.Event], Generator[Any, None, None]],
                 name: str = "job", alive: Callable[[], bool] | None = None,
                 grace: float = 10.0):
        self._work, self.name = work, name
        self._alive, self._grace = alive, grace
        self._lock = threading.Lock()
        self._records: list[Any] = []
        self._result: dict = {}
        self._error: str | None = None
        self._cancelled = ""
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._ended = 0.0
        self._lost_since: float | None = None

    def start(self) -> Job:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
        self._thread.start()
        return self

    def _run(self) -> None:
        work = self._work(self._stop)
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            while True:
                with TURNS:
                    record = next(work, _END)
                if record is _END:
                    break
                with self._lock:
                    self._records.append(record)
                if self._cancel.is_set() or self._orphaned():
                    break
        except Exception as err:  # shown to the user as a message, not a traceback
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        finally:
            if inspect.getgeneratorstate(work) == inspect.GEN_SUSPENDED:  # left mid-way
                with TURNS:  # its own clean-up computes too (e.g. a pre-training saves)
                    work.close()
            with self._lock:  # from now on, stop and cancel change nothing
                self._ended = time.perf_counter()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def sharing(self) -> int:
        """How many other jobs are running in this process, taking turns with this one."""
        with _RUNNING_LOCK:
            return len(_RUNNING - {self})

    def _orphaned(self) -> bool:
        """True once ``alive`` has failed for ``grace`` seconds (a reconnecting tab keeps its
        session, and so its job)."""
        if self._alive is None or self._alive():
            self._lost_since = None
            return False
        now = time.perf_counter()
        self._lost_since = self._lost_since or now
        if now - self._lost_since < self._grace:
            return False
        self.cancel("its browser session closed")
        print(f"[amortinv] {self.name}: cancelled, its browser session closed", flush=True)
        return True

    def set_result(self, **values: Any) -> None:
        with self._lock:
            self._result.update(values)

    def stop(self) -> None:
        """Ask the work to wrap up; nothing once the job has ended."""
        with self._lock:
            if not self._ended:
                self._stop.set()

    def cancel(self, reason: str = "cancelled") -> None:
        """End the job at its next record, ``reason`` shown to the user; nothing once the job
        has ended (finished, failed or cancelled before), whose result stands as it is."""
        with self._lock:
            if self._ended:
                return
            self._cancelled = self._cancelled or reason
            self._stop.set()
            self._cancel.set()

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
        sharing = self.sharing() if self.running else 0
        with self._lock:
            end = self._ended or time.perf_counter()
            return Snapshot(list(self._records), self.running, self._error, dict(self._result),
                            end - self._started if self._started else 0.0,
                            self._stop.is_set(), self._cancelled, sharing)


#: The score name of the plain (non-amortised) encoder in a learning job's result.
PLAIN = "plain"
#: The score name of the raw-input floor (a linear readout on pixels or log-mel).
RAW = "raw_linear"
#: A learning job's stages, in order, as its result's ``stages`` names them.
STAGES = ("preparing", "start", "learning", "selection", "test scores", "baselines")


class Laps:
    """Seconds spent per stage, summed as a job's records arrive: ``lap(stage)`` charges the
    time since the previous lap to ``stage``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, stage: str) -> dict[str, float]:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._clock
        self._clock = now
        return dict(self.seconds)


def assessed_stage(record: Scored | Selection) -> str:
    """The stage of :func:`amortinv.downstream.assess` that ``record`` ends: ``selection``
    (validation scores, the selection), ``test scores`` (the vectors and corners on the test
    split) or ``baselines`` (the plain encoder, the raw input, kNN)."""
    if not isinstance(record, Scored) or record.split == "val":
        return "selection"
    if record.name == PLAIN or record.name.startswith(("raw", "knn")):
        return "baselines"
    return "test scores"


@dataclass
class _Kept:
    encoder: Encoder
    task: Task
    features: Features
    corners: dict[str, Candidate]


class KeptCorners:
    """The last few learning jobs' corners, kept for the next job on the same registry task
    with the same encoder and the same settings of its data and scores (examples, validation
    fraction, test cap, seed, precision, folds): the prepared task, every corner's features
    and readout (cross-validated where the selection was). The corners do not depend on
    what is learned, so a second Learn with other steps, rates or starts skips the start's
    and the selection's fits, which are most of a job (the same scores: the fits are
    deterministic). A folder task's files may change and an upload is not named: neither
    is kept."""

    def __init__(self, size: int = 2):
        self.size = size
        self._lock = threading.Lock()
        self._kept: dict[tuple, _Kept] = {}  # oldest first

    @staticmethod
    def key(encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig
            ) -> tuple | None:
        if not isinstance(task, str) or data.folder_or_info(task) is None:
            return None
        return (id(encoder), task, config.max_train, config.val_fraction, config.max_test,
                config.seed, config.precision, config.folds)

    def get(self, encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig
            ) -> _Kept | None:
        """What a job on ``task`` with ``config`` may reuse (its features a copy of its own),
        or None."""
        key = self.key(encoder, task, config)
        with self._lock:
            kept = self._kept.get(key)
        if kept is None or kept.encoder is not encoder:
            return None
        return _Kept(encoder, kept.task, kept.features.copy(), kept.corners)

    def put(self, encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig,
            prepared: Task, features: Features, candidates: dict[str, Candidate]) -> None:
        """Keep a finished job's corners (``candidates`` without the gradient vector) and
        their features (and those at ``config.init``), dropping the oldest kept."""
        key = self.key(encoder, task, config)
        corners = {k: c for k, c in candidates.items() if k != GRADIENT}
        if key is None or len(corners) != 2 ** len(encoder.space):
            return
        vectors = [c.vector for c in corners.values()] + [config.init]
        kept = _Kept(encoder, prepared, features.only(vectors), corners)
        with self._lock:
            self._kept.pop(key, None)
            self._kept[key] = kept
            while len(self._kept) > self.size:
                self._kept.pop(next(iter(self._kept)))

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


#: The app's process-wide store of corners between learning jobs.
KEPT = KeptCorners()


def learning_job(encoder: Encoder, task: Task | Dataset | str, config: DownstreamConfig,
                 plain: Encoder | None = None, alive: Callable[[], bool] | None = None
                 ) -> Job:
    """Learn ``task``'s vector in the background, select the final vector (by
    cross-validation or on the validation split, ``config.folds``; the result's ``folds``),
    then score on the test split the gradient-learned vector, the selected one, every
    corner, the ``plain`` encoder (if given, as :data:`PLAIN`) and the raw input (:data:`RAW`):
    :func:`amortinv.downstream.assess`, so the corners' features serve both the selection and
    their own scores.

    A task given by name or as a dataset is prepared in the job (a first use may decode or
    render data for a while): the result's ``task``, ``metric`` and ``note`` are set then.
    Records are, unless ``config.start`` is ``init``, a :class:`Scored` per corner on the
    validation split (:func:`amortinv.downstream.corner_start` chooses the start from them: the
    result's ``start``, a corner's name or the value everywhere), then the learning's
    :class:`State` s, then one :class:`Scored` per score (``val`` while selecting, then
    ``test``). The result fills in as they come: ``val_scores`` and ``scores`` ({name:
    score}; the gradient vector is :data:`amortinv.downstream.GRADIENT`, corners by name),
    ``learned`` (the gradient vector, {group: value}) once learning ends, then ``selected``
    (vector), ``selected_name``, ``rounded`` and ``reason`` (why it was kept, a
    sentence) once the selection is made, and ``stages``: seconds so far per stage
    (:data:`STAGES`), where the time went.

    :meth:`Job.stop` ends the learning early: the best vector so far is still selected from
    and scored. :meth:`Job.cancel` ends the job. A ``plain`` encoder that cannot read what
    ``encoder`` reads is refused at once (:func:`amortinv.downstream.check_encoders`)."""
    check_encoders(encoder, plain)

    def work(stop: threading.Event) -> Iterator[State | Scored]:
        laps = Laps()
        kept = KEPT.get(encoder, task, config) if config.start != "init" else None
        prepared = kept.task if kept else task if isinstance(task, Task) else prepare(
            encoder, task, config)
        job.set_result(task=prepared.data.name, metric=prepared.metric, note=prepared.note,
                       steps=config.steps, folds=usable_folds(prepared, config.folds),
                       reused=kept is not None, stages=laps("preparing"))
        scores: dict[str, dict[str, float]] = {"val": {}, "test": {}}

        def published(run: Generator, stage: Callable[[Scored | Selection], str]
                      ) -> Generator[Scored, None, Any]:
            """``run``'s scores, each put in the result as it comes, its time charged to
            ``stage(record)``; returns what ``run`` returns."""
            while True:
                try:
                    record = next(run)
                except StopIteration as end:
                    return end.value
                job.set_result(stages=laps(stage(record)))
                if isinstance(record, Selection):
                    # every candidate's score as the selection weighed it: corners kept from
                    # an earlier job were cross-validated there, not published again here
                    scores["val"].update({k: c.val_score for k, c in record.candidates.items()})
                    job.set_result(val_scores=dict(scores["val"]), selected=record.chosen.vector,
                                   selected_name=record.chosen.name, rounded=record.rounded,
                                   reason=record.reason(readable=True))
                    continue
                scores[record.split][record.name] = record.score
                job.set_result(**{"val_scores" if record.split == "val" else "scores":
                                  dict(scores[record.split])})
                yield record

        features = kept.features if kept else Features(encoder, prepared, config.precision)
        begin, fitted = yield from published(
            corner_start(encoder, prepared, config, features, kept and kept.corners),
            lambda _: "start")
        if kept:  # the same readouts, with their folds' scores where they were cross-validated
            fitted = {name: kept.corners[name] for name in fitted}
        job.set_result(start=start_name(encoder.space, begin), stages=laps("start"),
                       learning_since=time.perf_counter())
        last = None
        for state in learn(encoder, prepared, config, stop=stop, start=begin,
                           features=features):
            last = state
            job.set_result(stages=laps("learning"))
            yield state
        job.set_result(stopped_early=stop.is_set())
        if last is None:  # stopped before the first step
            return
        job.set_result(learned=last.vector)
        outcome = yield from published(assess(encoder, prepared, last.vector, config, plain,
                                              features=features, fitted=fitted),
                                       assessed_stage)
        KEPT.put(encoder, task, config, prepared, features, outcome.selection.candidates)

    label = task.data.name if isinstance(task, Task) else getattr(task, "name", task)
    job = Job(work, name=f"learn-{label}", alive=alive)
    return job


def pretraining_job(trainer, alive: Callable[[], bool] | None = None) -> Job:
    """Run a :class:`amortinv.pretrain.Trainer` in the background; records are its log.
    Stopped or cancelled while it trains, it saves the encoder as it is (``--resume`` continues
    it), while the run still holds its folder. A run that ended by itself saves nothing more:
    done, it saved at its last step; diverged, its last good checkpoint must stay the last;
    refused before its first step (its folder holds a run, or another run is writing it), the
    folder is not its own. Done or diverged, the run has let go of its folder by then: a
    ``--resume`` that took the folder since would have its checkpoint overwritten."""

    def work(stop: threading.Event) -> Iterator[dict]:
        run = trainer.run()
        try:
            for record in run:
                yield record
                if stop.is_set():
                    break
        finally:
            try:
                if inspect.getgeneratorstate(run) == inspect.GEN_SUSPENDED:  # left mid-way
                    trainer.save(trainer.encoder.card.get("metrics", {}))
            finally:
                run.close()  # the run's own clean-up: its log, progress bar and folder

    return Job(work, name=f"pretrain-{trainer.config.preset}", alive=alive)

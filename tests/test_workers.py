import dataclasses
import threading
import time

import pytest
import torch

from amortinv import checkpoint, run_state
from amortinv.downstream import GRADIENT, DownstreamConfig, corner_name, prepare
from amortinv.invariance import GREY
from amortinv.models import Encoder, ModelConfig
from amortinv.pretrain import Trainer, preset
from amortinv.readout import fit_linear
from amortinv.selection import Features
from amortinv.workers import (
    KEPT,
    PLAIN,
    RAW,
    STAGES,
    TURNS,
    Job,
    Scored,
    learning_job,
    pretraining_job,
)


def small_encoder(conditioning: str = "hyper"):
    torch.manual_seed(0)
    return Encoder(ModelConfig(in_channels=1, image_size=16, width=4, bases=2,
                               conditioning=conditioning), GREY)


def test_learning_job_runs_in_the_background_selects_and_scores_the_comparison():
    enc, plain = small_encoder(), small_encoder("none")
    config = DownstreamConfig(steps=6, eval_every=3, max_train=300, start="init")
    task = prepare(enc, "sklearn-digits", config)
    job = learning_job(enc, task, config, plain=plain).start()
    job.join(120)
    snap = job.snapshot()
    assert not snap.running and snap.error is None
    states = [r for r in snap.records if not isinstance(r, Scored)]
    assert [s.step for s in states if not s.done] == list(range(1, 7))
    assert states[-1].done
    corners = {corner_name(GREY, c) for c in GREY.corners(min_on=0)}
    # Selection on validation: the gradient vector first, then every corner.
    val = [r.name for r in snap.records if isinstance(r, Scored) and r.split == "val"]
    assert val[0] == GRADIENT and set(val[1:]) == corners and len(val) == 17
    assert set(snap.result["val_scores"]) == {GRADIENT} | corners
    chosen = snap.result["selected_name"]
    assert snap.result["val_scores"][chosen] == max(snap.result["val_scores"].values())
    # Then the test split: the gradient vector, the selected one, the rest.
    test = [r.name for r in snap.records if isinstance(r, Scored) and r.split == "test"]
    assert test[0] == GRADIENT and (chosen == GRADIENT or test[1] == chosen)
    assert len(test) == len(set(test))  # each score once
    assert {GRADIENT, PLAIN, RAW} | corners <= set(snap.result["scores"])
    plain_features = Features(plain, task, config.precision).splits(1.0)
    assert snap.result["scores"][PLAIN] == fit_linear(plain_features, task.targets,
                                                      task.classes)[1]
    assert set(snap.result["learned"]) == set(GREY.names)
    assert set(snap.result["selected"]) == set(GREY.names)
    assert snap.result["task"] == "sklearn-digits" and snap.result["metric"] == "accuracy"
    assert snap.result["start"] == "0.5"  # config.init everywhere, as the paper starts
    # Where the time went: every stage, in order, summing to the job's own clock.
    stages = snap.result["stages"]
    assert list(stages) == list(STAGES) and all(s >= 0 for s in stages.values())
    assert 0.8 * snap.seconds - 0.5 <= sum(stages.values()) <= snap.seconds


def test_stop_ends_a_job_early_and_two_jobs_do_not_share_state():
    enc = small_encoder()
    # no corners before learning, the selection on the validation split: neither is the point
    quick = {"max_train": 300, "start": "init", "folds": 0}
    config = DownstreamConfig(steps=10_000, eval_every=1000, **quick)
    task = prepare(enc, "sklearn-digits", config)
    first = learning_job(enc, task, config).start()
    second = learning_job(small_encoder(), task, DownstreamConfig(steps=3, **quick))
    second.start()
    while len(first.snapshot().records) < 3:
        time.sleep(0.05)
    first.stop()
    first.join(60)
    second.join(60)
    a, b = first.snapshot(), second.snapshot()
    assert not a.running and a.records[-1].done and len(a.records) < 10_000
    assert [s.step for s in b.records if not s.done] == [1, 2, 3]
    with pytest.raises(RuntimeError, match="already started"):
        first.start()


def test_jobs_take_turns_record_by_record_and_know_they_share_the_server():
    # Two users' jobs at once: each record's work runs in the job's turn, handed over in the
    # order asked for, so neither starves (at once, two learning jobs on 2 cores took 10x
    # longer than one).
    order, gate = [], threading.Event()

    def work(label):
        def run(stop: threading.Event):
            gate.wait(30)  # the first job holds its turn here; the second waits in line
            for k in range(5):
                order.append(label)
                time.sleep(0.05)
                yield k
        return run

    first = Job(work("a"), name="a").start()
    time.sleep(0.3)  # a takes the turn and waits at the gate
    second = Job(work("b"), name="b").start()
    deadline = time.time() + 10
    while not TURNS.waiting and time.time() < deadline:  # b in line
        time.sleep(0.01)
    assert TURNS.waiting >= 1
    assert first.snapshot().sharing >= 1 and second.snapshot().sharing >= 1
    gate.set()
    first.join(30)
    second.join(30)
    assert order == ["a", "b"] * 5
    assert first.snapshot().sharing == 0  # an ended job shares nothing


def test_errors_become_messages_not_crashes():
    def broken(stop: threading.Event):
        yield 1
        raise ValueError("the data ran out")

    job = Job(broken).start()
    job.join(10)
    snap = job.snapshot()
    assert snap.records == [1] and snap.error == "ValueError: the data ran out"


@pytest.mark.parametrize("end", ["stop", "cancel"])
def test_pretraining_job_streams_the_log_and_saves_when_ended(tmp_path, end):
    trainer = Trainer(preset("smoke", out=str(tmp_path), steps=500, log_every=1,
                             checkpoint_every=1000))
    job = pretraining_job(trainer).start()
    while len(job.snapshot().records) < 2:
        time.sleep(0.05)
    getattr(job, end)()  # a Stop button, or a closed tab: either way the run is saved
    job.join(60)
    snap = job.snapshot()
    assert snap.error is None and 2 <= len(snap.records) < 500
    assert (tmp_path / "encoder.safetensors").exists()


def test_a_second_pretraining_job_on_the_same_folder_is_refused_and_writes_nothing(tmp_path):
    first = pretraining_job(Trainer(preset("smoke", out=str(tmp_path), steps=500, log_every=1,
                                           checkpoint_every=1000))).start()
    while len(first.snapshot().records) < 2:
        time.sleep(0.05)
    second = pretraining_job(Trainer(preset("smoke", out=str(tmp_path), steps=3))).start()
    second.join(60)
    snap = second.snapshot()
    assert snap.records == [] and "another pre-training is writing to" in snap.error
    assert not (tmp_path / "encoder.safetensors").exists()  # the first's folder, untouched
    first.stop()
    first.join(60)
    assert first.snapshot().error is None
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] >= 2  # the first's


def held_by_a_run(out) -> bool:
    """Whether a second run pointed at ``out`` now (a ``--resume`` in a terminal) is refused."""
    try:
        with run_state.claim_run_folder(out):
            return False
    except FileExistsError:
        return True


def spy_on_saves(trainer: Trainer, out) -> list[tuple[int, bool]]:
    """(step, folder held by a run) of each of ``trainer``'s saves from now on."""
    saves, save = [], trainer.save

    def spied(metrics: dict) -> None:
        saves.append((trainer.step, held_by_a_run(out)))
        save(metrics)

    trainer.save = spied
    return saves


@pytest.mark.parametrize("ending", ["done", "diverged"])
def test_a_pretraining_job_that_ends_by_itself_saves_nothing_after_its_run(tmp_path, ending):
    # The old job saved once more after its run had ended, when the run no longer held its
    # folder: [(2, True), (4, True), (4, False)], where a --resume that took the folder
    # meanwhile would have its checkpoint overwritten, and a diverged run's ruined weights
    # were saved again.
    out = tmp_path / "run"
    settings = {"done": {"steps": 4}, "diverged": {"steps": 40, "lr": 1e5, "warmup_steps": 4}}
    trainer = Trainer(preset("smoke", out=str(out), checkpoint_every=2, log_every=1,
                             **settings[ending]))
    saves = spy_on_saves(trainer, out)
    job = pretraining_job(trainer).start()
    job.join(60)
    snap = job.snapshot()
    assert saves and all(held for _, held in saves)
    if ending == "done":
        assert snap.error is None and saves == [(2, True), (4, True)]
    else:
        assert snap.error.startswith("TrainingDiverged")


def test_a_stopped_pretraining_job_saves_where_it_stopped_and_resumes_from_there(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(preset("smoke", out=str(out), steps=50, log_every=1,
                             checkpoint_every=1000))
    saves = spy_on_saves(trainer, out)
    job = pretraining_job(trainer)
    step = trainer.train_step

    def train_step() -> float:
        loss = step()
        if trainer.step == 3:  # Stop pressed during the third step: no race with the thread
            job.stop()
        return loss

    trainer.train_step = train_step
    job.start()
    job.join(60)
    snap = job.snapshot()
    assert snap.error is None and [r["step"] for r in snap.records] == [1, 2, 3]
    assert saves == [(3, True)]  # once, while the run still held its folder
    resumed = Trainer(preset("smoke", out=str(out), steps=5, log_every=1, resume=True))
    assert [r["step"] for r in resumed.run() if "loss" in r] == [4, 5]


@pytest.mark.parametrize("ending", ["finished", "failed"])
def test_stopping_or_cancelling_a_job_that_has_ended_changes_nothing(ending):
    # A Cancel click that raced with the job's end: the old job was marked cancelled and
    # stopping all the same, and the page said "Cancelled" over a complete result.
    def work(stop: threading.Event):
        yield 1
        job.set_result(answer=42)
        if ending == "failed":
            raise ValueError("the data ran out")

    job = Job(work)
    job.start()
    job.join(10)
    before = job.snapshot()
    job.cancel()
    job.stop()
    after = job.snapshot()
    assert after == before and not job.stopping
    assert not after.cancelled and not after.stopping and after.result == {"answer": 42}


def wait_for_steps(job, n: int) -> None:
    while len([r for r in job.snapshot().records if not isinstance(r, Scored)]) < n:
        time.sleep(0.02)


@pytest.mark.parametrize("folds", [0, 5])
def test_a_corner_start_scores_the_corners_first_and_learns_from_the_best_one(folds):
    enc = small_encoder()
    config = DownstreamConfig(steps=4, eval_every=2, max_train=300, start="corner", folds=folds)
    job = learning_job(enc, prepare(enc, "sklearn-digits", config), config).start()
    job.join(120)
    snap = job.snapshot()
    assert snap.error is None
    first = next(k for k, r in enumerate(snap.records) if not isinstance(r, Scored))
    opening = snap.records[:first]  # every corner on validation, before the first step
    corners = {corner_name(GREY, c) for c in GREY.corners(min_on=0)}
    assert {r.name for r in opening} == corners and {r.split for r in opening} == {"val"}
    assert [r.done for r in opening] == list(range(1, 17)) and opening[0].total == 17
    best = max(opening, key=lambda r: r.score)  # a tie: the corner met first
    assert snap.result["start"] == best.name
    # The corners' readouts are reused: after learning, only the gradient vector is fitted;
    # cross-validated, the start's corners (scored on validation) are cross-validated then.
    after = [r for r in snap.records[first:] if isinstance(r, Scored) and r.split == "val"]
    assert snap.result["folds"] == folds and set(snap.result["val_scores"]) == {GRADIENT} | corners
    if folds:
        assert [(r.done, r.total) for r in after] == [(k, 17) for k in range(1, 18)]
        assert after[0].name == GRADIENT and {r.name for r in after[1:]} == corners
        assert "cross-validated on 330 training and validation examples" in snap.result["reason"]
    else:
        assert [(r.name, r.done, r.total) for r in after] == [(GRADIENT, 17, 17)]
        assert snap.result["val_scores"][best.name] == best.score


def test_stop_ends_the_learning_but_still_scores_what_was_learned():
    enc, plain = small_encoder(), small_encoder("none")
    config = DownstreamConfig(steps=10_000, eval_every=2, patience=10_000, max_train=300,
                              start="init", folds=0)  # the corners are scored after the stop
    task = prepare(enc, "sklearn-digits", config)
    job = learning_job(enc, task, config, plain=plain).start()
    wait_for_steps(job, 4)
    job.stop()
    job.join(120)
    snap = job.snapshot()
    states = [r for r in snap.records if not isinstance(r, Scored)]
    assert snap.error is None and not snap.cancelled and snap.result["stopped_early"]
    assert len(states) < 10_000 and states[-1].done
    assert {GRADIENT, PLAIN, "all_ones", RAW} <= set(snap.result["scores"])
    assert snap.result["learned"] == states[-1].vector


def test_cancel_ends_the_job_without_scoring():
    enc = small_encoder()
    config = DownstreamConfig(steps=10_000, eval_every=1000, max_train=300, start="init")
    job = learning_job(enc, prepare(enc, "sklearn-digits", config), config).start()
    wait_for_steps(job, 2)
    job.cancel()
    job.join(60)
    snap = job.snapshot()
    assert not snap.running and snap.cancelled == "cancelled"
    assert "scores" not in snap.result


def test_a_job_whose_session_is_gone_is_cancelled_after_a_grace_period():
    connected = threading.Event()
    connected.set()

    def endless(stop: threading.Event):
        while True:
            yield time.perf_counter()
            time.sleep(0.01)

    job = Job(endless, alive=connected.is_set, grace=0.2).start()
    time.sleep(0.3)
    assert job.running  # connected: it goes on
    connected.clear()  # the tab closed; a reconnect within the grace period would keep it
    job.join(5)
    snap = job.snapshot()
    assert not snap.running and snap.cancelled == "its browser session closed"


def test_a_second_job_on_the_same_task_reuses_its_corners_and_scores_the_same(monkeypatch):
    KEPT.clear()
    enc = small_encoder()
    config = DownstreamConfig(steps=4, eval_every=2, max_train=300, start="corner")

    def run(config):
        job = learning_job(enc, "sklearn-digits", config).start()
        job.join(120)
        snapshot = job.snapshot()
        assert snapshot.error is None
        return snapshot.result

    first = run(config)
    assert first["reused"] is False
    computed = []
    features = enc.features
    monkeypatch.setattr(enc, "features", lambda x, vector, **kw: computed.append(tuple(vector))
                        or features(x, vector, **kw))
    again = run(config)
    # nothing about the corners was computed again, and every score is the same
    corners = {tuple(float(v) for v in c) for c in GREY.corners(min_on=0)}
    assert again["reused"] is True and computed and not corners & set(computed)
    for key in ("start", "learned", "selected_name", "val_scores", "scores", "reason"):
        assert again[key] == first[key], key
    assert again["stages"]["start"] < first["stages"]["start"] / 3
    # other examples, or other folds, make other corners; a start at 0.5 fits none first
    for other in (dataclasses.replace(config, max_train=200), dataclasses.replace(config, folds=0)):
        assert KEPT.get(enc, "sklearn-digits", other) is None
    assert KEPT.get(enc, "sklearn-digits", dataclasses.replace(config, steps=9)) is not None
    assert run(dataclasses.replace(config, start="init", folds=0, steps=2))["reused"] is False

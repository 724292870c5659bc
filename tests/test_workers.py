import threading
import time

import pytest
import torch

from amortinv.downstream import DownstreamConfig, evaluate_vector, prepare
from amortinv.invariance import GREY
from amortinv.models import Encoder, ModelConfig
from amortinv.pretrain import Trainer, preset
from amortinv.workers import PLAIN, Job, learning_job, pretraining_job


def small_encoder(conditioning: str = "hyper"):
    torch.manual_seed(0)
    return Encoder(ModelConfig(in_channels=1, image_size=16, width=4, bases=2,
                               conditioning=conditioning), GREY)


def test_learning_job_runs_in_the_background_and_scores_the_comparison():
    enc, plain = small_encoder(), small_encoder("none")
    config = DownstreamConfig(steps=6, eval_every=3, max_train=300)
    task = prepare(enc, "sklearn-digits", config)
    job = learning_job(enc, task, config, compare=[("all_ones", 1.0)], plain=plain).start()
    job.join(120)
    snap = job.snapshot()
    assert not snap.running and snap.error is None
    assert [s.step for s in snap.records if not s.done] == list(range(1, 7))
    assert snap.records[-1].done
    assert set(snap.result["scores"]) == {"learned", "all_ones", PLAIN}
    assert snap.result["scores"][PLAIN] == evaluate_vector(plain, task, 1.0)[1]
    assert set(snap.result["learned"]) == set(GREY.names)


def test_stop_ends_a_job_early_and_two_jobs_do_not_share_state():
    enc = small_encoder()
    config = DownstreamConfig(steps=10_000, eval_every=1000, max_train=300)
    task = prepare(enc, "sklearn-digits", config)
    first = learning_job(enc, task, config).start()
    second = learning_job(small_encoder(), task, DownstreamConfig(steps=3, max_train=300))
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


def test_errors_become_messages_not_crashes():
    def broken(stop: threading.Event):
        yield 1
        raise ValueError("the data ran out")

    job = Job(broken).start()
    job.join(10)
    snap = job.snapshot()
    assert snap.records == [1] and snap.error == "ValueError: the data ran out"


def test_pretraining_job_streams_the_log_and_saves_when_stopped(tmp_path):
    trainer = Trainer(preset("smoke", out=str(tmp_path), steps=500, log_every=1,
                             checkpoint_every=1000))
    job = pretraining_job(trainer).start()
    while len(job.snapshot().records) < 2:
        time.sleep(0.05)
    job.stop()
    job.join(60)
    snap = job.snapshot()
    assert snap.error is None and 2 <= len(snap.records) < 500
    assert (tmp_path / "encoder.safetensors").exists()

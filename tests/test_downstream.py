"""Downstream invariance learning: it moves toward what the task needs, scores honestly,
and refuses bad input clearly."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import amortinv
import amortinv.data as data
from amortinv import checkpoint
from amortinv.data import Dataset, Split
from amortinv.downstream import (
    DownstreamConfig,
    TaskMismatch,
    baselines,
    fit,
    frozen,
    learn,
    prepare,
)
from amortinv.invariance import GREY, RGB
from amortinv.models import Encoder, ModelConfig
from amortinv.readout import fit_linear
from amortinv.workers import learning_job

ROOT = Path(__file__).resolve().parents[1]
needs_fashion = pytest.mark.skipif(
    not data.registry.is_available("fashion-mnist"),
    reason="Fashion-MNIST missing: run `make test` (installs dataset-fashion-mnist)")


def small_encoder():
    torch.manual_seed(0)
    return Encoder(ModelConfig(in_channels=1, image_size=16, width=4, bases=2), GREY)


@needs_fashion
@pytest.mark.parametrize("parameterisation", ["clamp", "sigmoid"])
def test_learning_moves_toward_sensitivity_on_a_task_that_needs_it(parameterisation,
                                                                   mirror_encoder):
    config = DownstreamConfig(steps=80, max_train=1000, lr_invariance=0.05, eval_every=20,
                              patience=10, parameterisation=parameterisation, start="init")
    task = prepare(mirror_encoder(), "fmnist-flip", config)
    states = list(learn(mirror_encoder(), task, config))
    final = states[-1]
    assert final.done
    # From 0.5 toward 0: the task needs to see the mirror. (Sigmoid logits move ~4x slower
    # near 0.5, where the sigmoid's slope is 1/4.)
    assert final.vector["flip"] < 0.4
    for group in ("crop", "color", "blur"):  # no effect on the features: no reason to move
        assert final.vector[group] == pytest.approx(0.5, abs=0.02)
    assert final.best_score > 0.6  # a mirrored item is told apart well above chance


def test_encoder_stays_frozen_in_eval_mode_and_is_left_as_it_was_found():
    enc = small_encoder()
    enc.backbone.stem.requires_grad_(False)  # a caller's own mix of flags and modes
    enc.train()
    enc.backbone.stem.eval()
    flags = [p.requires_grad for p in enc.parameters()]
    modes = [m.training for m in enc.modules()]
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    ds = data.get("sklearn-digits")
    config = DownstreamConfig(steps=6, eval_every=3)
    for _ in learn(enc, prepare(enc, ds, config), config):  # while it learns: frozen, eval
        assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    after = enc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert [p.requires_grad for p in enc.parameters()] == flags
    assert [m.training for m in enc.modules()] == modes

    # Closed early (the caller stops iterating), or stopped by the event: the same (from a
    # given start: the corners' scoring, outside the learning, was run above).
    run = learn(enc, prepare(enc, ds, config), config, start=0.5)
    next(run)
    run.close()
    stop = threading.Event()
    states = []
    for state in learn(enc, prepare(enc, ds, config), config, stop=stop, start=0.5):
        states.append(state)
        stop.set()
    assert states[-1].done
    assert [p.requires_grad for p in enc.parameters()] == flags
    assert [m.training for m in enc.modules()] == modes


def test_two_threads_freezing_one_encoder_leave_it_as_it_was_in_either_order():
    # The app shares one encoder between sessions. With two jobs at once, the old frozen() let
    # the first to leave restore the flags under the second (still learning, now with
    # gradients), and the second restore the frozen flags it had saved: every later session
    # found the encoder with requires_grad False everywhere.
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    module[0].bias.requires_grad_(False)  # a flag that was False before stays False
    module[1].eval()
    flags = [p.requires_grad for p in module.parameters()]
    modes = [m.training for m in module.modules()]
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first() -> None:  # enters, then leaves while the second is inside
        with frozen(module):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second() -> None:
        a_in.wait(10)
        with frozen(module):
            b_in.set()
            a_out.wait(10)
            seen["flags"] = [p.requires_grad for p in module.parameters()]
            seen["modes"] = [m.training for m in module.modules()]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert a_out.is_set() and not any(seen["flags"]) and not any(seen["modes"])
    assert [p.requires_grad for p in module.parameters()] == flags
    assert [m.training for m in module.modules()] == modes


def test_learning_leaves_the_global_random_state_alone_and_repeats_exactly():
    enc = small_encoder()
    config = DownstreamConfig(steps=6, eval_every=3)
    task = prepare(enc, "sklearn-digits", config)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    first = list(learn(enc, task, config))
    assert torch.equal(torch.get_rng_state(), rng)  # neither reseeded nor drawn from
    torch.manual_seed(7)  # another global state: the same run
    second = list(learn(enc, task, config))
    assert [s.vector for s in first] == [s.vector for s in second]
    assert [s.loss for s in first[:-1]] == [s.loss for s in second[:-1]]


def test_validation_comes_from_train_and_test_is_untouched():
    ds = data.get("sklearn-digits")
    task = prepare(small_encoder(), ds, DownstreamConfig(val_fraction=0.2))
    train_rows = {r.tobytes() for r in ds.train.x}
    assert all(r.tobytes() in train_rows for r in task.val.x)
    assert len(task.test) == len(ds.test)


def test_stop_event_ends_learning_cleanly():
    enc, stop = small_encoder(), threading.Event()
    config = DownstreamConfig(steps=100, eval_every=2)
    states = []
    for state in learn(enc, prepare(enc, "sklearn-digits", config), config, stop=stop):
        states.append(state)
        if state.step == 3:
            stop.set()
    assert states[-1].done and len(states) == 4  # three steps, then the final state
    assert set(states[-1].vector) == set(GREY.names)


def test_fixed_feature_readouts_are_exact_on_easy_data():
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.standard_normal((300, 5)), dtype=torch.float32)
    labels = (z[:, 0] > 0).long().numpy()
    ds = Dataset("toy", "image", "classification", Split(np.zeros((200, 1, 2, 2), np.uint8),
                 labels[:200]), Split(np.zeros((100, 1, 2, 2), np.uint8), labels[200:]),
                 "toy", ("neg", "pos"))
    from amortinv.downstream import Task

    task = Task(ds, Split(ds.train.x[:150], labels[:150]), Split(ds.train.x[150:],
                labels[150:200]), ds.test)
    _, test = fit_linear((z[:150], z[150:200], z[200:]), task.targets, task.classes)
    assert test > 0.97
    target = (z @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])).numpy()[:, None].astype(np.float32)
    reg = Dataset("toy-r", "image", "regression", Split(ds.train.x, target[:200]),
                  Split(ds.test.x, target[200:]), "toy")
    task = Task(reg, Split(reg.train.x[:150], target[:150]), Split(reg.train.x[150:],
                target[150:200]), reg.test)
    assert task.classes is None
    _, r2 = fit_linear((z[:150], z[150:200], z[200:]), task.targets, task.classes)
    assert r2 > 0.99


def test_baselines_cover_every_corner_and_the_raw_floor():
    enc = small_encoder()
    task = prepare(enc, "sklearn-digits", DownstreamConfig(max_train=300))
    scores = baselines(enc, task, learned={"crop": 1, "flip": 0, "color": 1, "blur": 0})
    corners = [k for k in scores if not k.startswith(("raw_", "knn_"))]
    assert len(corners) == 2 ** len(GREY) and {"all_ones", "all_zeros"} <= set(corners)
    assert {"raw_linear", "raw_knn", "knn_all_ones", "knn_learned"} <= set(scores)
    assert all(0 <= v <= 1 for v in scores.values())
    assert scores["raw_linear"] > 0.8  # digits are easy from pixels: the floor is real


def test_bad_tasks_get_clear_errors():
    enc = small_encoder()
    with pytest.raises(data.UnknownDataset, match="fmnist-flip"):
        fit(enc, "fmnist-flipp")
    with pytest.raises(TaskMismatch, match="audio"):
        prepare(enc, "asterisk-digits", DownstreamConfig())
    rgb = Dataset("rgb", "image", "classification",
                  Split(np.zeros((20, 3, 8, 8), np.uint8), np.zeros(20, np.int64)),
                  Split(np.zeros((2, 3, 8, 8), np.uint8), np.zeros(2, np.int64)), "x", ("a",))
    grey = prepare(enc, rgb, DownstreamConfig())  # colour becomes luminance, with a note
    assert grey.train.x.shape[1:] == (1, 8, 8) and "luminance" in grey.note
    empty = Dataset("empty", "image", "classification",
                    Split(np.zeros((0, 1, 8, 8), np.uint8), np.zeros(0, np.int64)),
                    Split(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64)), "x", ("a",))
    with pytest.raises(TaskMismatch, match="empty") as err:
        prepare(enc, empty, DownstreamConfig())
    assert "give it examples in both splits" in str(err.value)  # the fix, not just the fault
    one = Dataset("one", "image", "classification",
                  Split(np.zeros((1, 1, 8, 8), np.uint8), np.zeros(1, np.int64)),
                  Split(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64)), "x", ("a",))
    with pytest.raises(TaskMismatch, match="more training examples"):
        prepare(enc, one, DownstreamConfig())
    with pytest.raises(TaskMismatch, match="audio"):  # a plain Python caller gets it too
        fit(enc, "asterisk-digits")
    with pytest.raises(ValueError, match="parameterisation"):
        list(learn(enc, prepare(enc, "sklearn-digits", DownstreamConfig()),
                   DownstreamConfig(parameterisation="tanh")))


def test_a_plain_baseline_of_another_kind_is_refused_before_any_work():
    enc = small_encoder()
    torch.manual_seed(0)
    colour = Encoder(ModelConfig(in_channels=3, image_size=16, width=4, bases=2), RGB)
    audio = amortinv.load(str(ROOT / "checkpoints" / "audio-plain-cpu"), "cpu")

    def loader():
        raise AssertionError("the data must not be loaded")

    data.register("test-grey-task", modality="image", target_kind="classification",
                  description="a grey task", cache=False)(loader)
    try:
        plain_grey = Encoder(ModelConfig(in_channels=1, image_size=16, width=4,
                                         conditioning="none"), GREY)
        with pytest.raises(TaskMismatch, match="plain encoder: it ignores the invariance"):
            fit(plain_grey, "test-grey-task", DownstreamConfig())  # nothing to learn
        for plain, reads in ((colour, "3-channel images"), (audio, "audio")):
            with pytest.raises(TaskMismatch, match=f"plain encoder reads {reads}"):
                fit(enc, "test-grey-task", DownstreamConfig(), plain=plain)
            with pytest.raises(TaskMismatch, match="pre-trained on the same kind of data"):
                learning_job(enc, "test-grey-task", DownstreamConfig(), plain=plain)
    finally:
        data.registry._REGISTRY.pop("test-grey-task")


def test_a_task_of_the_wrong_modality_is_refused_before_its_data_is_loaded():
    loads = []

    def loader():
        loads.append(1)
        raise AssertionError("the data must not be loaded")

    data.register("test-audio-task", modality="audio", target_kind="classification",
                  description="an audio task", cache=False)(loader)
    try:
        with pytest.raises(TaskMismatch, match="audio"):
            prepare(small_encoder(), "test-audio-task", DownstreamConfig())
    finally:
        data.registry._REGISTRY.pop("test-audio-task")
    assert not loads


def test_script_prints_the_documented_json(tmp_path, capsys, script):
    checkpoint.save_encoder(tmp_path / "encoder.safetensors", small_encoder())
    script = script("downstream")
    assert script.main(["--checkpoint", str(tmp_path), "--task", "sklearn-digits",
                        "--steps", "4", "--max-train", "300", "--plain", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"task", "metric", "learned", "learned_score", "baselines", "seconds", "selected",
            "selected_name", "selected_score", "precision", "select_seconds"} <= set(out)
    assert out["metric"] == "accuracy" and set(out["learned"]) == set(GREY.names)
    assert {"all_ones", "all_zeros", "plain"} <= set(out["baselines"])
    assert script.main(["--checkpoint", str(tmp_path), "--task", "no-such-task"]) == 1
    assert "unknown dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a string flag takes only its choices
        script.main(["--checkpoint", str(tmp_path), "--task", "sklearn-digits",
                     "--regression-loss", "foo"])
    assert stop.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err
    assert script.main(["--checkpoint", str(tmp_path), "--task", "sklearn-digits",
                        "--steps", "0"]) == 1
    assert "steps (--steps) must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="regression_loss"):
        DownstreamConfig(regression_loss="foo")
    # NaN passes every bound (each comparison with it is false): refused by kind, at once
    assert script.main(["--checkpoint", str(tmp_path), "--task", "sklearn-digits",
                        "--init", "nan"]) == 1
    assert "init (--init) must be a finite number; got nan" in capsys.readouterr().err
    for wrong, words in ((dict(lr_invariance=float("inf")), "a finite number"),
                         (dict(steps=2.5), "a whole number"), (dict(folds=True), "a whole number"),
                         (dict(round_vector="no"), "true or false")):
        with pytest.raises(ValueError, match=words):
            DownstreamConfig(**wrong)
    assert DownstreamConfig(steps=np.int64(10), init=np.float32(0.25)).steps == 10  # numpy


def test_raw_baseline_projection_copes_with_tiny_tasks():
    from amortinv.baselines import _pca
    from amortinv.readout import fit_linear

    rng = np.random.default_rng(0)
    zs = [torch.tensor(rng.standard_normal((n, 1000)), dtype=torch.float32) for n in (12, 4, 5)]
    projected = _pca(zs)
    # 12 centred examples span 11 directions: a twelfth would hold nothing but rounding
    assert [tuple(z.shape) for z in projected] == [(12, 11), (4, 11), (5, 11)]
    spread = projected[0].std(0)
    assert float(spread.min()) > 0.1 * float(spread.max())
    # Two classes 1,000 pixels apart in their mean, 12 training examples: the raw readout
    # tells them apart (with a twelfth, empty component it scored at chance on test)
    y = [np.arange(n) % 2 for n in (12, 4, 6)]
    zs = [torch.tensor(rng.standard_normal((len(t), 1000)) + 3.0 * t[:, None],
                       dtype=torch.float32) for t in y]
    assert fit_linear(_pca(zs), y, classes=2)[1] == 1.0


def test_suite_records_failed_tasks_writes_rows_as_they_finish_and_prepares_once(
        tmp_path, capsys, script, monkeypatch):
    import csv

    import amortinv.downstream as downstream

    checkpoint.save_encoder(tmp_path / "enc" / "encoder.safetensors", small_encoder())
    suite = script("benchmark_downstream")
    prepared = []
    real_prepare = downstream.prepare

    def counting_prepare(encoder, dataset, config):
        prepared.append(dataset if isinstance(dataset, str) else dataset.name)
        return real_prepare(encoder, dataset, config)

    monkeypatch.setattr(downstream, "prepare", counting_prepare)
    monkeypatch.setattr(suite, "prepare", counting_prepare)

    def interrupted():
        raise KeyboardInterrupt  # the user stops the suite while this task loads

    def broken():
        raise ValueError("the source files are damaged")

    data.register("test-interrupt", modality="image", target_kind="classification",
                  description="x", cache=False)(interrupted)
    data.register("test-broken", modality="image", target_kind="classification",
                  description="x", cache=False)(broken)
    out = tmp_path / "suite"
    args = ["--checkpoint", str(tmp_path / "enc"), "--out", str(out), "--steps", "2",
            "--max-train", "200"]
    try:
        # a misspelt name is refused before any work, with the names it may have meant
        with pytest.raises(SystemExit) as refused:
            suite.main([*args, "--tasks", "sklearn-digit", "sklearn-digits"])
        assert refused.value.code == 2
        assert "Did you mean sklearn-digits" in capsys.readouterr().err
        assert not out.with_suffix(".csv").exists() and prepared == []
        # a task that breaks while the suite runs is recorded, and the suite goes on
        assert suite.main([*args, "--tasks", "test-broken", "sklearn-digits"]) == 1
        rows = list(csv.DictReader(out.with_suffix(".csv").read_text().splitlines()))
        assert [r["task"] for r in rows] == ["test-broken", "sklearn-digits"]
        assert "damaged" in rows[0]["error"] and rows[1]["error"] == ""
        assert 0 <= float(rows[1]["learned_score"]) <= 1
        assert "Failed: test-broken (the source files" in out.with_suffix(".md").read_text()
        assert prepared.count("sklearn-digits") == 1  # the fit reuses the prepared task
        capsys.readouterr()

        with pytest.raises(KeyboardInterrupt):
            suite.main([*args, "--tasks", "sklearn-digits", "test-interrupt"])
        rows = list(csv.DictReader(out.with_suffix(".csv").read_text().splitlines()))
        assert [r["task"] for r in rows] == ["sklearn-digits"]  # finished rows are kept
    finally:
        data.registry._REGISTRY.pop("test-interrupt")
        data.registry._REGISTRY.pop("test-broken")

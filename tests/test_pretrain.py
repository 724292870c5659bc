"""Pre-training: every method and model runs, resume is exact, failures keep good state."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import amortinv
import amortinv.data as data
from amortinv import checkpoint
from amortinv.data import UnknownDataset
from amortinv.pretrain import PRESETS, Trainer, TrainingDiverged, preset
from amortinv.run_state import claim_run_folder

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run(config) -> tuple[Trainer, list[dict]]:
    trainer = Trainer(config)
    return trainer, list(trainer.run())


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def moved_by_gradients(before: dict, module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s parameters that moved since ``before`` other than by weight decay
    alone (which only rescales a tensor: its update would be parallel to it)."""
    moved = []
    for name, param in module.named_parameters():
        delta = (param.detach() - before[name]).flatten().double()
        if delta.abs().max() > 0 and abs(torch.nn.functional.cosine_similarity(
                delta, before[name].flatten().double(), dim=0)) < 0.99:
            moved.append(name)
    return moved


@pytest.mark.parametrize("overrides", [
    {},  # SimCLR, hypernetwork, corners
    {"method": "moco", "queue_size": 64},  # per-corner heads and queues
    {"method": "moco", "queue_size": 64, "per_corner": False, "sampling": "mixed"},
    {"conditioning": "film", "sampling": "continuous"},
    {"conditioning": "none"},
    {"arch": "vit-tiny", "optimizer": "adamw", "lr": 1e-3},
    {"dataset": "asterisk-digits", "stem": "imagenet", "batch_size": 16},
    {"dataset": "asterisk-digits", "stem": "imagenet", "batch_size": 16, "bands": 2,
     "input_stats": "per-bin"},
], ids=["simclr-hyper", "moco-per-corner", "moco-shared", "film-continuous", "plain", "vit",
        "audio", "audio-bands-per-bin"])
def test_each_setting_trains_and_writes_a_usable_checkpoint(tmp_path, overrides):
    trainer = Trainer(preset("smoke", out=str(tmp_path), **overrides))
    before = {n: p.detach().clone() for n, p in trainer.encoder.named_parameters()}
    records = list(trainer.run())
    # the encoder learned: most of its parameters (its conditioning's too) moved by gradients
    moved = moved_by_gradients(before, trainer.encoder)
    assert len(moved) > len(before) / 2, sorted(set(before) - set(moved))
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    knn = [r["knn"] for r in records if "knn" in r]
    assert knn and set(knn[-1]) == {"all_ones", "all_zeros", "half"}
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "img_s"} <= set(log[0])
    enc = amortinv.load(tmp_path)
    assert enc.card["steps"] == 4 and enc.card["metrics"]["knn_all_ones"] == knn[-1]["all_ones"]
    assert enc.config.conditioning == overrides.get("conditioning", "hyper")
    ds_x = trainer.inputs[:3].cpu().numpy()
    assert enc.features(ds_x, 1.0).shape == (3, enc.feature_dim)
    if overrides.get("input_stats") == "per-bin":  # one mean and std per mel bin, saved
        assert len(enc.config.input_mean) == len(enc.config.input_std) == enc.config.mel.n_mels
        assert enc.config.bands == 2 and enc.feature_dim == 2 * 8 * enc.config.width  # 2 bands


def test_image_size_trains_small_and_the_encoder_resizes_any_input(tmp_path):
    """--image-size 8 on 16-px digits: training sees 8 px, and the encoder resizes every input
    to 8 px itself (so 16- and 32-px images give the features of their 8-px versions)."""
    trainer, _ = run(preset("smoke", out=str(tmp_path), image_size=8))
    assert tuple(trainer.inputs.shape[-2:]) == (8, 8)
    enc = amortinv.load(tmp_path)
    assert enc.config.image_size == 8 and enc.config.resize
    x = data.get("sklearn-digits").test.x[:16]  # 16 x 16
    small = torch.nn.functional.interpolate(torch.from_numpy(x).float() / 255, size=(8, 8),
                                            mode="bilinear", antialias=True)
    big = x.repeat(2, axis=2).repeat(2, axis=3)  # 32 x 32, the same picture
    z = enc.features(x, 1.0)
    assert torch.allclose(z, enc.features(small, 1.0), atol=1e-4)
    assert torch.allclose(z, enc.features(big, 1.0), atol=0.05 * float(z.abs().max()))
    assert preset("smoke").image_size == "auto" and not amortinv.load(
        run(preset("smoke", out=str(tmp_path / "auto"), steps=2))[0].out).config.resize


def test_the_loss_goes_down(tmp_path):
    _, records = run(preset("smoke", out=str(tmp_path), steps=40, batch_size=64, lr=0.1,
                            sampling="corners", log_every=1, checkpoint_every=100,
                            min_on=4))  # grey space, K=4: always all on, one task to learn
    losses = [r["loss"] for r in records if "loss" in r]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first - 0.1, (first, last)  # step-to-step noise is ~0.05 here


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_resume_continues_exactly(tmp_path, method, interrupted_then_resumed):
    settings = dict(steps=6, checkpoint_every=3, method=method, queue_size=64)
    straight, _ = run(preset("smoke", out=str(tmp_path / "a"), **settings))
    # the same run, interrupted during step 5 (last checkpoint: step 3), then resumed
    resumed = interrupted_then_resumed(tmp_path / "b", settings)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    log = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    # step 4, logged before the interruption, is replaced by its rerun after the resume
    assert [json.loads(line)["step"] for line in log if "loss" in line] == [1, 2, 3, 4, 5, 6]


def test_a_run_is_never_silently_overwritten_or_resumed_with_other_settings(tmp_path):
    run(preset("smoke", out=str(tmp_path), steps=2))
    with pytest.raises(FileExistsError, match="--resume"):
        run(preset("smoke", out=str(tmp_path), steps=2))
    with pytest.raises(checkpoint.CheckpointError, match="width"):
        run(preset("smoke", out=str(tmp_path), steps=4, width=16, resume=True))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(preset("smoke", out=str(tmp_path / "new"), resume=True))
    assert not (tmp_path / "new").exists()  # a misspelt --out leaves no folder behind
    finished = tmp_path / "finished"  # a finished run's encoder, without its last.safetensors
    finished.mkdir()
    (finished / "encoder.safetensors").write_bytes((tmp_path / "encoder.safetensors")
                                                   .read_bytes())
    with pytest.raises(FileExistsError, match="already holds a trained encoder"):
        run(preset("smoke", out=str(finished), steps=2))  # was overwritten by 2 new steps
    assert (finished / "encoder.safetensors").read_bytes() == (
        tmp_path / "encoder.safetensors").read_bytes()
    # a header edited or damaged by hand: said at once, the run's files left as they were
    last = tmp_path / "last.safetensors"
    tensors, meta = checkpoint.load_tensors(last)
    for damage in ({"step": "two"}, {"model": [4]}, {"card": None}):
        checkpoint.save(last, tensors, meta | damage)
        with pytest.raises(checkpoint.CheckpointError, match="holds no usable run settings"):
            run(preset("smoke", out=str(tmp_path), steps=4, resume=True))
        assert checkpoint.read_meta(last) == meta | damage


def test_a_fresh_run_logs_alone_and_a_resume_clears_what_a_kill_left(tmp_path):
    killed = tmp_path / "killed"  # killed before its first checkpoint: a log, no checkpoint
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 9.9}\n')
    run(preset("smoke", out=str(killed), steps=2))
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").open()]
    assert steps.count(1) == 1  # the old log was appended to: two records of step 1
    stale = killed / ".last.safetensors.k1ll3d00.tmp"  # a save cut short by SIGKILL
    stale.write_bytes(b"half a checkpoint")
    run(preset("smoke", out=str(killed), steps=3, resume=True))
    assert not stale.exists() and checkpoint.read_meta(killed / "last.safetensors")["step"] == 3


def _claims_and_fails(out: Path, claimed: threading.Event) -> None:
    with contextlib.suppress(ValueError), claim_run_folder(out):
        claimed.set()
        raise ValueError("bad settings")  # a run that wrote nothing


def _claims_and_saves(out: Path, claimed: threading.Event) -> None:
    claimed.wait()
    while True:
        try:
            with claim_run_folder(out):
                (out / "last.safetensors").write_text("B's checkpoint")
                time.sleep(0.002)
                return
        except FileExistsError:  # the first run still holds it
            continue


def test_a_run_that_wrote_nothing_never_removes_the_next_runs_folder(tmp_path):
    lost = 0
    for i in range(100):  # the old clean-up let go of the lock first: 21 of 300 races lost
        out, claimed = tmp_path / f"r{i}", threading.Event()
        threads = [threading.Thread(target=f, args=(out, claimed))
                   for f in (_claims_and_fails, _claims_and_saves)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lost += not (out / "last.safetensors").exists()
    assert lost == 0


def test_two_runs_at_once_in_one_folder_the_second_is_refused(tmp_path):
    # Two app users who kept the default run name: the first has not saved yet, so the
    # folder holds no run to find; it is claimed while the first trains.
    first = Trainer(preset("smoke", out=str(tmp_path), steps=3))
    training = first.run()
    next(training)  # step 1 done, nothing saved yet
    assert not (tmp_path / "last.safetensors").exists()
    with pytest.raises(FileExistsError, match="another pre-training is writing to"):
        run(preset("smoke", out=str(tmp_path), steps=3))
    list(training)  # the first ends as if alone, and lets go of the folder
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] == 3
    resumed, _ = run(preset("smoke", out=str(tmp_path), steps=4, resume=True))
    assert resumed.step == 4


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(preset("smoke", out=str(tmp_path), steps=6, checkpoint_every=2))
    honest = trainer.loss

    def poisoned(batch):
        loss = honest(batch)
        return loss * float("nan") if trainer.step == 3 else loss

    monkeypatch.setattr(trainer, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3.*last good checkpoint"):
        list(trainer.run())
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] == 2
    assert torch.isfinite(amortinv.load(tmp_path).features(trainer.inputs[:2].numpy(), 1)).all()


def test_weights_ruined_before_the_loss_shows_it_are_not_saved(tmp_path, monkeypatch):
    trainer = Trainer(preset("smoke", out=str(tmp_path), steps=6, checkpoint_every=2))
    honest = trainer.train_step

    def ruinous() -> float:  # a step that leaves a running statistic NaN, its loss still finite
        loss = honest()
        if trainer.step == 3:
            next(b for n, b in trainer.model.named_buffers() if "running_var" in n).fill_(
                float("nan"))
        return loss

    monkeypatch.setattr(trainer, "train_step", ruinous)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite by step 4 \(e\.g\. .*running_var"):
        list(trainer.run())  # the old code saved step 4's NaN statistics as the "last good"
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] == 2
    assert checkpoint.read_meta(tmp_path / "encoder.safetensors")["card"]["steps"] == 2
    assert torch.isfinite(amortinv.load(tmp_path).features(trainer.inputs[:2].numpy(), 1)).all()


def test_bad_settings_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        preset("cpu-imagenet")
    with pytest.raises(ValueError, match="unknown setting"):
        preset("smoke", learning_rate=1.0)
    with pytest.raises(ValueError, match="corner sampling"):
        Trainer(preset("smoke", out=str(tmp_path), method="moco", sampling="continuous"))
    with pytest.raises(ValueError, match="share modality"):
        Trainer(preset("smoke", out=str(tmp_path), dataset="sklearn-digits,asterisk-digits"))
    with pytest.raises(UnknownDataset, match="Did you mean fashion-mnist"):  # before training
        Trainer(preset("smoke", out=str(tmp_path / "run"), knn_dataset="fashion-mnst"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="batch size"):
        list(Trainer(preset("smoke", out=str(tmp_path), batch_size=100_000)).run())
    with pytest.raises(ValueError, match="per-bin is for audio"):
        Trainer(preset("smoke", out=str(tmp_path), input_stats="per-bin"))


def test_settings_under_their_old_names_still_work(tmp_path, script):
    from amortinv.cli import config_values
    from amortinv.pretrain import PretrainConfig

    args = script("pretrain").parser().parse_args(["--no-per-config"])  # the old flag
    assert config_values(args, PretrainConfig)["per_corner"] is False
    assert preset("smoke", per_config=False).per_corner is False
    run(preset("smoke", out=str(tmp_path), steps=2))
    path = tmp_path / "last.safetensors"  # as a run written before the rename saved it
    tensors, meta = checkpoint.load_tensors(path)
    meta["config"]["per_config"] = meta["config"].pop("per_corner")
    meta["config"] |= {"min_on": -1, "space": ""}  # the sentinels before the word auto
    checkpoint.save(path, tensors, {k: v for k, v in meta.items()
                                    if k not in ("format", "version")})
    resumed, _ = run(preset("smoke", out=str(tmp_path), steps=4, resume=True))
    assert resumed.step == 4


def test_help_states_the_values_of_the_chosen_preset():
    def help_of(*args):
        text = subprocess.run([sys.executable, SCRIPTS / "pretrain.py", *args, "--help"],
                              capture_output=True, text=True, check=True).stdout
        return " ".join(text.split())

    cpu = help_of("--preset", "cpu-fmnist")
    assert "--width WIDTH channels of the first ResNet stage (standard: 64) (default: 16)" in cpu
    assert "--steps STEPS optimizer steps in total (default: 6000)" in cpu
    assert "(default: runs/cpu-fmnist)" in cpu
    gpu = help_of("--preset", "gpu-fmnist")
    assert "--batch-size BATCH_SIZE examples per step, across all processes (two views each) " \
        "(default: 512)" in gpu
    assert "(0: train --steps) (default: 3.0)" in gpu and "(0: train --steps) (default: 0.0)" in cpu
    assert "--method {simclr,moco}" in cpu and "(default: auto)" in cpu


def test_nonsense_on_the_command_line_is_refused_and_writes_nothing(tmp_path, script, capsys):
    pretrain = script("pretrain")
    out = tmp_path / "run"
    base = ["--preset", "smoke", "--out", str(out)]
    for flag, value in (("--method", "foo"), ("--sampling", "sometimes"),
                        ("--temperature", "warm"), ("--space", "")):
        with pytest.raises(SystemExit) as stop:  # argparse: a usage error names the choices
            pretrain.main([*base, flag, value])
        assert stop.value.code == 2
    capsys.readouterr()
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    for args, message in ((["--steps", "-5"], r"steps \(--steps\) must be at least 1; got -5"),
                          (["--temperature", "0"], r"temperature \(--temperature\) must be abo"),
                          (["--batch-size", "0"], r"batch_size \(--batch-size\) must be at le"),
                          (["--lr", "nan"], r"lr \(--lr\) must be a finite number; got nan"),
                          (["--device", missing], "no usable CUDA GPU|numbered from 0")):
        assert pretrain.main([*base, *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert re.search(message, err), err
    assert not out.exists()  # no untrained checkpoint
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    assert pretrain.main([*base[:3], str(a_file / "run")]) == 1  # was a NotADirectoryError
    assert "cannot make the run folder" in capsys.readouterr().err  # traceback
    assert a_file.read_text() == "kept"
    args = pretrain.parser().parse_args(["--temperature", "auto", "--min-on", "2"])
    assert (args.temperature, args.min_on) == ("auto", 2)


def test_warm_up_is_at_most_a_tenth_of_a_short_run(tmp_path):
    assert preset("cpu-fmnist").warmup == 200  # the presets' own runs are unchanged
    assert preset("cpu-fmnist", steps=200).warmup == 20  # the app's short run
    _, records = run(preset("smoke", out=str(tmp_path), steps=10, warmup_steps=10))
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs[-1] < 0.1 * max(lrs)  # it decays: the warm-up did not take the whole run


def test_a_training_checkpoint_loads_as_its_encoder(tmp_path):
    trainer, _ = run(preset("smoke", out=str(tmp_path), steps=2))
    x = trainer.inputs[:8].numpy()
    shipped = amortinv.load(tmp_path).features(x, 1)
    assert torch.equal(amortinv.load(tmp_path / "last.safetensors").features(x, 1), shipped)


def test_script_help_documents_presets_and_the_script_runs(tmp_path):
    help_text = subprocess.run([sys.executable, SCRIPTS / "pretrain.py", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for name in PRESETS:
        assert name in help_text
    assert "--resume" in help_text and "torchrun" in help_text
    done = subprocess.run([sys.executable, SCRIPTS / "pretrain.py", "--preset", "smoke",
                           "--out", str(tmp_path), "--steps", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "encoder.safetensors").exists()
    again = subprocess.run([sys.executable, SCRIPTS / "pretrain.py", "--preset", "smoke",
                            "--out", str(tmp_path), "--steps", "2"],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "--resume" in again.stderr
    assert "Traceback" not in again.stderr


def test_ctrl_c_saves_the_step_under_way_and_resume_continues_from_it(tmp_path):
    command = [sys.executable, SCRIPTS / "pretrain.py", "--preset", "smoke", "--out",
               str(tmp_path), "--checkpoint-every", "100000"]
    training = subprocess.Popen([*command, "--steps", "100000"], stderr=subprocess.PIPE,
                                text=True)
    log = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)  # training: a step logged
    training.send_signal(signal.SIGINT)
    _, err = training.communicate(timeout=120)
    # the old script: a KeyboardInterrupt traceback, every step since the last save lost
    assert training.returncode == 130 and "Traceback" not in err, err
    step = int(re.search(r"stopped at step (\d+) of 100000, saved", err)[1])
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] == step >= 1
    done = subprocess.run([*command, "--steps", str(step + 2), "--resume"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert checkpoint.read_meta(tmp_path / "last.safetensors")["step"] == step + 2


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_two_cpu_processes_keep_identical_replicas(tmp_path, method):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(29500 + os.getpid() % 1000 + (method == "moco")),
         Path(__file__).with_name("ddp_worker.py"), str(tmp_path), method],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    digests = [(tmp_path / f"rank{r}.sha").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert (tmp_path / "encoder.safetensors").exists()


def test_minutes_fix_the_steps_so_that_the_schedule_ends_on_time(tmp_path):
    """--minutes: the first steps are timed, then the total is fixed; the cosine schedule
    reaches its end as the time runs out. (A 3-second budget: the bounds are loose, since the
    machine may be shared; speed itself is never asserted.)"""
    budget = 3.0
    trainer = Trainer(preset("smoke", out=str(tmp_path), minutes=budget / 60, steps=5,
                             knn_every=40, checkpoint_every=40, log_every=1))
    start = time.perf_counter()
    records = list(trainer.run())
    wall = time.perf_counter() - start
    plan = next(r for r in records if "planned_steps" in r)
    assert plan["planned_steps"] > 5  # --steps 5 was overridden
    assert plan["timed_steps"] >= 5 and plan["fixed_at_step"] < plan["planned_steps"]
    assert wall < budget + 5
    card = amortinv.load(tmp_path).card
    if "ended_early_at" in card["time_budget"]:
        # a machine busy with other work fell behind the plan: the run ends on time, saying so
        # (test_a_timed_run_that_falls_behind_ends_early_and_says_so makes that happen)
        assert card["steps"] == trainer.step == card["time_budget"]["ended_early_at"]
        assert trainer.step < plan["planned_steps"]
    else:
        assert card["steps"] == card["pretrain"]["steps"]
        assert trainer.step == plan["planned_steps"]
        lrs = [r["lr"] for r in records if "lr" in r]
        assert lrs[-1] < 0.05 * max(lrs)  # the schedule ran to its end
    assert card["pretrain"]["steps"] == plan["planned_steps"]
    assert card["time_budget"]["minutes"] == card["pretrain"]["minutes"] == budget / 60
    assert card["hardware"].startswith("CPU")


def test_a_timed_run_that_falls_behind_ends_early_and_says_so(tmp_path):
    budget = 6.0
    trainer = Trainer(preset("smoke", out=str(tmp_path), minutes=budget / 60, knn_every=0))
    honest, stalled = trainer.train_step, []

    def stalls_once_the_total_is_fixed():
        if "time_budget" in trainer.encoder.card and not stalled:
            stalled.append(trainer.step)
            time.sleep(budget + 2.5)  # past the budget by more than its grace (2 s)
        return honest()

    trainer.train_step = stalls_once_the_total_is_fixed
    list(trainer.run())
    card = amortinv.load(tmp_path).card
    plan = card["time_budget"]
    assert card["steps"] == plan["ended_early_at"] == stalled[0] + 2  # the stalled one, one more
    assert card["steps"] < plan["planned_steps"]


def test_a_resumed_timed_run_keeps_the_total_it_fixed(tmp_path):
    settings = dict(minutes=0.05, knn_every=0, checkpoint_every=1)
    first = Trainer(preset("smoke", out=str(tmp_path), **settings))
    honest = first.train_step

    def stop_after_the_total_is_fixed():
        # at once: the last save is the one made when the total was fixed (a loaded machine
        # once stopped a run there, and its resume timed the run again)
        if "time_budget" in first.encoder.card:
            raise KeyboardInterrupt
        return honest()

    first.train_step = stop_after_the_total_is_fixed
    with pytest.raises(KeyboardInterrupt):
        list(first.run())
    planned = first.encoder.card["time_budget"]["planned_steps"]
    resumed = Trainer(preset("smoke", out=str(tmp_path), resume=True, **settings))
    records = list(resumed.run())
    assert resumed.step == planned
    assert not [r for r in records if "planned_steps" in r]  # not timed again

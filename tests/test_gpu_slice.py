"""`make gpu`: the GPU slice's command, run end to end at toy sizes on the CPU (its dry run), so
the GPU slice is never its first run; and the parts that keep it within its limits."""

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

import amortinv
from amortinv.data import is_available
from amortinv.presets import preset

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


#: The sets the dry run trains here: one per modality, and the next GPU run's
#: (fashion-mnist-large), and of them the runs: both of the next GPU run's, the amortised one
#: of the others. The fashion-mnist set's presets (the same recipe at another width, FiLM's
#: and plain's) and the other plain runs cost more trainings and evaluations (each set's
#: plain run 10-15 s of CI on 2 AMD cores; the fashion-mnist set 40 s): their settings are
#: checked in process below, and FiLM and plain train in test_pretrain.py.
DRY_SETS = ("fashion-mnist-large", "audio", "colour")
DRY_RUNS = ("fmnist-hyper4-w24-gpu", "fmnist-plain-w24-gpu", "audio-hyper4-gpu",
            "rgb-hyper4-gpu")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("slice")
    out, work = base / "out", base / "work"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_slice.py", "--dry-run",
                           "--sets", *DRY_SETS, "--runs", *DRY_RUNS, "--out", str(out),
                           "--work", str(work)],
                          capture_output=True, text=True, timeout=420)
    wall = time.perf_counter() - start
    summary_path = out / "summary.json"
    assert summary_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(summary_path.read_text()), out, work, wall


def test_the_dry_run_goes_through_every_stage(dry_run):
    done, summary, _, _, wall = dry_run
    stages = summary["stages"]
    assert list(stages) == ["data", "bench", "train", "evaluate", "ship"]
    bad = {name: s for name, s in stages.items() if s["status"] != "ok"}
    assert not bad, json.dumps(bad, indent=1)[-4000:]
    assert done.returncode == 0
    # within its budget (5 minutes: every stage has a deadline, none a length), plus the
    # process's start and end
    assert summary["dry_run"] and summary["wall_seconds"] <= 60 * summary["minutes"]
    assert wall < 60 * summary["minutes"] + 30


def test_the_dry_run_trains_evaluates_and_ships_every_run_it_has_data_for(dry_run):
    _, summary, out, _, _ = dry_run
    runs = summary["runs"]
    expected = set(DRY_RUNS)
    if not is_available("asterisk-digits"):  # CI has it; a user's machine may not
        expected.remove("audio-hyper4-gpu")
    trained = {name for name, run in runs.items() if run.get("file")}
    assert expected <= trained <= set(DRY_RUNS) and set(runs) == set(DRY_RUNS)
    for name in trained:
        run = runs[name]
        assert run["train"]["status"] == "ok" and run["evaluate"]["status"] == "ok"
        assert run["steps"] == run["planned_steps"] > 0  # --minutes fixed the steps
        assert 0 <= run["evaluation"]["knn"]["all_ones"] <= 1
        assert "linear" in run["evaluation"]
        holder = out / run["file"].split("/")[0]
        assert holder.exists()
        if holder.suffix == ".safetensors":  # in a bundle otherwise
            encoder = amortinv.load(holder, "cpu")
            assert encoder.card["evaluation"]["knn"] == run["evaluation"]["knn"]
            assert encoder.card["time_budget"]["planned_steps"] == run["steps"]
            assert next(encoder.parameters()).dtype.is_floating_point
    assert summary["stages"]["data"]["skipped_sets"] == {}


def test_the_files_that_come_back_fit_the_limits(dry_run):
    _, summary, out, _, _ = dry_run
    files = sorted(p for p in out.iterdir())
    assert all(p.is_file() for p in files)
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * MB for p in files)
    assert sum(p.stat().st_size for p in files) <= 64 * MB
    assert set(summary["files"]) == {p.name for p in files}
    with tarfile.open(out / "slice.tar.xz") as tar:
        names = tar.getnames()
    assert "slice/runs/fmnist-hyper4-w24-gpu/card.json" in names
    assert "slice/runs/fmnist-hyper4-w24-gpu/metrics.jsonl" in names
    assert "slice/tests/junit.xml" in names and "slice/logs/bench_pretrain.log" in names


def test_the_dry_run_runs_the_gpu_tests_and_the_benchmarks(dry_run):
    _, summary, _, _, _ = dry_run
    tests = summary["tests"]
    assert tests["status"] == "ok" and tests["failures"] == tests["errors"] == 0
    assert tests["tests"] >= 10 and tests["skipped"] == 0
    lines = summary["bench"]["bench_pretrain"]
    assert [x["conditioning"] for x in lines] == ["plain", "film", "hyper-4", "hyper-32"]
    assert all(x["img_s"] > 0 and x["width"] == 4 for x in lines)
    assert summary["bench"]["bench_augment"][0]["batched_img_s"] > 0


def test_unpack_rebuilds_run_folders(dry_run, tmp_path):
    _, summary, out, _, _ = dry_run
    done = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_slice.py", "unpack",
                           str(out), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shipped = {name for name, run in summary["runs"].items() if run.get("file")}
    assert {p.name for p in tmp_path.iterdir()} == shipped
    for name in shipped:
        assert {p.name for p in (tmp_path / name).iterdir()} == {
            "encoder.safetensors", "card.json", "metrics.jsonl"}
        assert amortinv.load(tmp_path / name).card["steps"] == summary["runs"][name]["steps"]


def test_unpack_says_what_is_wrong_with_what_came_back(tmp_path):
    unpack = [sys.executable, ROOT / "scripts" / "gpu_slice.py", "unpack"]
    missing = subprocess.run([*unpack, str(tmp_path / "nowhere"), str(tmp_path / "dest")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "holds no slice.tar.xz" in missing.stderr
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "slice.tar.xz").write_bytes(b"\xfd7zXZ\x00 cut short")
    done = subprocess.run([*unpack, str(torn), str(tmp_path / "dest")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "cannot unpack" in done.stderr and "Traceback" not in \
        done.stderr
    assert list((tmp_path / "dest").iterdir()) == []  # nothing half-made left behind


# -- the parts, in process -----------------------------------------------------------------------
def test_every_set_has_its_presets_and_their_dry_run_settings_are_valid(script, tmp_path):
    gpu_slice = script("gpu_slice")
    for dry_run in (False, True):
        run = gpu_slice.Slice(tmp_path / "out", tmp_path / "work", minutes=1.0,
                              dry_run=dry_run, data=None)
        assert run.choose_runs() == {}  # no set skipped: all of them, on the GPU too
        assert set(run.runs) == {name for runs in gpu_slice.SETS.values() for name in runs}
        for name, planned in run.runs.items():
            config = preset(planned["preset"], **planned["overrides"]).resolved()
            assert config.preset == planned["preset"], name
            if dry_run:  # toy sizes on data every machine with the packages has
                assert config.width == gpu_slice.DRY_SETTINGS["width"]
                assert config.dataset in gpu_slice.DRY_DATA.values()


def test_only_the_chosen_sets_train(script, tmp_path):
    gpu_slice = script("gpu_slice")
    run = gpu_slice.Slice(tmp_path / "out", tmp_path / "work", minutes=1.0, dry_run=True,
                          data=None, sets=("fashion-mnist-large", "audio"))
    assert run.choose_runs() == {}
    assert {r["set"] for r in run.runs.values()} == {"fashion-mnist-large", "audio"}
    assert set(run.runs) == {*gpu_slice.SETS["fashion-mnist-large"], *gpu_slice.SETS["audio"]}
    refused = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_slice.py", "--dry-run",
                              "--sets", "imagenet"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "fashion-mnist-large" in refused.stderr  # the choices


def test_a_work_folder_the_slice_did_not_make_is_never_emptied(tmp_path):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "important.md").write_text("keep me")
    refused = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_slice.py", "--dry-run",
                              "--work", str(mine), "--out", str(tmp_path / "out")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "holds files the slice did not write" in refused.stderr
    assert (mine / "important.md").read_text() == "keep me"


def test_only_the_chosen_runs_train(script, tmp_path):
    gpu_slice = script("gpu_slice")
    run = gpu_slice.Slice(tmp_path / "out", tmp_path / "work", minutes=1.0, dry_run=True,
                          data=None, sets=("audio", "colour"), only=("audio-plain-gpu",
                                                                     "rgb-hyper4-gpu"))
    assert run.choose_runs() == {}
    assert set(run.runs) == {"audio-plain-gpu", "rgb-hyper4-gpu"}
    slice_py = [sys.executable, ROOT / "scripts" / "gpu_slice.py", "--dry-run"]
    for argv, says in ((["--sets", "audio", "--runs", "rgb-hyper4-gpu"],
                        "rgb-hyper4-gpu is in colour"),  # a run outside the chosen sets
                       (["--runs", "audio-hyper5-gpu"], "audio-hyper4-gpu")):  # the choices
        refused = subprocess.run([*slice_py, *argv], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr


def test_a_failing_stage_is_recorded_and_the_next_one_runs(script, tmp_path):
    gpu_slice = script("gpu_slice")
    run = gpu_slice.Slice(tmp_path / "out", tmp_path / "work", minutes=1.0, dry_run=True,
                          data=None)
    ran = []

    def broken(deadline):
        raise RuntimeError("a broken stage")

    def fine(deadline):
        ran.append(deadline - time.perf_counter())
        return {"figure": 1}

    run.stage("bench", broken, ("train",))
    run.stage("train", fine, ())
    stages = json.loads((tmp_path / "out" / "summary.json").read_text())["stages"]
    assert stages["bench"]["status"] == "failed" and "a broken stage" in stages["bench"]["error"]
    assert stages["train"] == {**stages["train"], "status": "ok", "figure": 1}
    assert 0 < ran[0] <= gpu_slice.DRY_SHARES["train"] * 60 + 0.1


def test_children_past_their_deadline_are_killed(script, tmp_path):
    gpu_slice = script("gpu_slice")
    sleeper = gpu_slice.Job("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                            tmp_path / "sleeper.log")
    quick = gpu_slice.Job("quick", [sys.executable, "-c", "print('hello')"],
                          tmp_path / "quick.log")
    start = time.perf_counter()
    gpu_slice.run_jobs([sleeper, quick], start + 3.0, {})
    assert time.perf_counter() - start < 20
    assert sleeper.status == "timeout" and quick.status == "ok"
    assert "hello" in quick.log.read_text()


def test_encoders_share_bundles_only_when_the_file_count_needs_it(script, tmp_path):
    gpu_slice = script("gpu_slice")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "note.txt").write_text("logs")
    sizes = {"big": 9, "a": 3, "b": 2, "c": 2, "d": 1, "e": 1, "f": 1, "toolarge": 17}
    encoders = []
    for name, mb in sizes.items():
        path = tmp_path / "enc" / f"{name}.safetensors"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\0" * (mb * MB - 4096))
        encoders.append(path)
    placed = gpu_slice.place_files(encoders, archive, tmp_path / "out")
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 8 - 1  # summary.json is written by the slice itself
    assert all(p.stat().st_size <= 16 * MB for p in files)
    assert placed["left_out"] == ["toolarge.safetensors: 17.0 MB, over the 16 MB a file may "
                                  "have"]
    assert placed["where"]["big.safetensors"] == "big.safetensors"
    bundled = {k for k, v in placed["where"].items() if "/" in v}
    assert bundled == {"d.safetensors", "f.safetensors"}  # the 7th joins the lightest file
    assert len(files) == 8 - 1 and sum(p.suffix == ".tar" for p in files) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_slice_says_so_and_stops(tmp_path):
    done = subprocess.run([sys.executable, ROOT / "scripts" / "gpu_slice.py", "--out",
                           str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--dry-run" in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "no CUDA" in summary["error"] and "stages" not in summary


def test_leave_keeps_the_shipped_weights_back_and_restore_puts_them_back(script, tmp_path):
    gpu_slice = script("gpu_slice")
    repo = tmp_path / "repo"
    files = {"checkpoints/enc/encoder.safetensors": b"w" * MB, "checkpoints/enc/card.json": b"{}",
             "docs/screenshots/home.png": b"p" * 1000, "app.py": b"print()"}
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(content)
    (repo / ".gitignore").write_text(f"/{gpu_slice.LEFT}/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    everything = sum(len(c) for c in files.values()) + len(f"/{gpu_slice.LEFT}/\n")
    travels = everything - MB - 1000
    # Planned before leaving: the data budget already counts the tree without them.
    assert gpu_slice.tree_bytes(repo) == travels
    moved = gpu_slice.leave(repo)
    assert sorted(p.relative_to(repo).as_posix() for p in moved) == [
        "checkpoints/enc/encoder.safetensors", "docs/screenshots/home.png"]
    assert sum(p.stat().st_size for p in gpu_slice.tree_files(repo)) == travels
    assert (repo / "checkpoints/enc/card.json").exists()
    back = gpu_slice.restore(repo)
    assert len(back) == 2 and not (repo / gpu_slice.LEFT).exists()
    for name, content in files.items():
        assert (repo / name).read_bytes() == content

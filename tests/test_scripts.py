"""The benchmark, evaluation and shipping scripts run and print what their docs promise (tiny
settings: speed itself is measured by running them for real, see docs/BENCHMARKS.md)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import amortinv
from amortinv import checkpoint, results
from amortinv.pretrain import Trainer, preset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    list(Trainer(preset("smoke", out=str(out), steps=4)).run())
    return out


@pytest.mark.parametrize("name, flag", [
    ("bench_app", "--checkpoint"), ("bench_concurrent", "--checkpoint"),
    ("profile_learn", "--plain"), ("study_learner", "--checkpoint"),
    ("study_selection", "--checkpoint"), ("colour_statistics", "--checkpoint"),
    ("ship_checkpoint", None)])
def test_a_missing_checkpoint_is_a_usage_error(script, monkeypatch, capsys, tmp_path, name,
                                               flag):
    missing = str(tmp_path / "no-such-run")
    monkeypatch.setattr(sys, "argv", [name, *([flag] if flag else []), missing])
    with pytest.raises(SystemExit) as ended:
        script(name).main()
    assert ended.value.code == 2  # argparse's usage error, before any work
    assert f"no checkpoint at {missing}" in capsys.readouterr().err


@pytest.mark.parametrize("name, flag", [
    ("benchmark_downstream", "--tasks"), ("bench_concurrent", "--task"),
    ("bench_gil", "--task"), ("profile_learn", "--task"), ("study_learner", "--tasks"),
    ("study_selection", "--tasks")])
def test_a_misspelt_task_is_a_usage_error(script, monkeypatch, capsys, name, flag):
    monkeypatch.setattr(sys, "argv", [name, flag, "fashion-mnst"])
    with pytest.raises(SystemExit) as ended:
        script(name).main()
    assert ended.value.code == 2  # argparse's usage error, before any work
    assert "Did you mean fashion-mnist" in capsys.readouterr().err


def test_bench_augment_prints_its_json():
    line = json.loads(run(str(SCRIPTS / "bench_augment.py"), "--batch", "16", "--seconds",
                          "0.2").splitlines()[-1])
    assert {"device", "batched_img_s", "torchvision_img_s", "ratio"} <= set(line)
    # the rates are printed rounded to whole images a second (a loaded machine: a few tens),
    # the ratio to two decimals from the unrounded ones
    batched, single = line["batched_img_s"], line["torchvision_img_s"]
    assert (batched - 0.5) / (single + 0.5) - 0.005 <= line["ratio"] \
        <= (batched + 0.5) / (single - 0.5) + 0.005


def test_bench_pretrain_prints_a_line_per_conditioning():
    out = run(str(SCRIPTS / "bench_pretrain.py"), "--device", "cpu", "--batch", "16",
              "--width", "4", "--seconds", "0.3", "--warmup", "1", "--only", "film", "hyper-4")
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["conditioning"] for x in lines] == ["film", "hyper-4"]
    for x in lines:
        assert {"device", "amortised_img_s", "plain_img_s", "ratio"} <= set(x)


def test_bench_concurrent_runs_jobs_at_once_and_prints_their_stages():
    line = json.loads(run(str(SCRIPTS / "bench_concurrent.py"), "--jobs", "2", "--task",
                          "sklearn-digits", "--max-train", "300", "--steps", "3", "--folds", "0"
                          ).strip().splitlines()[-1])
    assert line["jobs"] == 2 and len(line["each"]) == 2
    for job in line["each"]:
        assert {"start", "learning", "selection"} <= set(job["stages"])
        assert 0 < job["s"] <= line["all_s"]


def test_bench_gil_times_both_ways_in_every_mode():
    line = json.loads(run(str(SCRIPTS / "bench_gil.py"), "--steps", "1").strip().splitlines()[-1])
    for mode in ("alone", "redraws", "busy"):
        seconds = line[f"{mode}_s"]
        assert set(seconds) == {"eager", "traced"} and min(seconds.values()) > 0
        assert line[f"{mode}_eager_over_traced"] == pytest.approx(
            seconds["eager"] / seconds["traced"], abs=0.02)


def test_evaluate_and_shipping(smoke_run, tmp_path):
    result = json.loads(run(str(SCRIPTS / "evaluate.py"), "--checkpoint", str(smoke_run)))
    assert set(result["knn"]) == set(result["linear"]) == {"all_ones", "all_zeros", "half"}
    assert 0 <= result["raw_input_knn"] <= 1 and result["dataset"] == "sklearn-digits"
    assert all(0 <= v <= 1 for v in result["linear"].values())
    assert result["raw_input_linear"] > 0.85  # logistic regression on 8x8 digit pixels: ~0.95
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps(result))
    dest = tmp_path / "shipped"
    run(str(SCRIPTS / "ship_checkpoint.py"), str(smoke_run), str(dest), "--eval",
        str(evaluation), "--hardware", "test machine")
    shipped = amortinv.load(dest)
    assert shipped.card["evaluation"]["knn"] == result["knn"]
    assert shipped.card["hardware"] == "test machine"
    assert json.loads((dest / "card.json").read_text())["card"]["steps"] == 4
    assert (dest / "metrics.jsonl").read_text() == (smoke_run / "metrics.jsonl").read_text()
    sizes = [(p / checkpoint.ENCODER_FILE).stat().st_size for p in (smoke_run, dest)]
    assert sizes[1] < 0.6 * sizes[0]  # fp16

    # Re-carding a shipped folder in place keeps its weights and log; the table reads the card.
    result["knn"]["all_ones"] = 0.5
    evaluation.write_text(json.dumps(result))
    run(str(SCRIPTS / "ship_checkpoint.py"), str(dest), str(dest), "--eval", str(evaluation))
    recarded = amortinv.load(dest)
    assert recarded.card["evaluation"]["knn"]["all_ones"] == 0.5
    assert recarded.state_dict().keys() == shipped.state_dict().keys()
    assert all(torch.equal(recarded.state_dict()[k], v) for k, v in shipped.state_dict().items())
    table = run(str(SCRIPTS / "checkpoint_table.py"), str(tmp_path)).splitlines()
    assert len(table) == 3 and table[2].startswith("| `shipped` | sklearn-digits |")
    assert "| 50.0% |" in table[2] and "test machine" in table[2]
    # one checkpoint's folder, not a folder of them: said, not an empty table
    empty = subprocess.run([sys.executable, SCRIPTS / "checkpoint_table.py", str(dest)],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "no checkpoint folders in" in empty.stderr


def test_the_docs_tables_are_the_results_files(script, tmp_path, monkeypatch):
    tables = script("results_tables")
    assert tables.main(["--check"]) == 0  # README.md and docs/DOWNSTREAM.md match their files
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- generated: images -->\nhand-edited\n<!-- end: images -->\n")
    monkeypatch.setattr(tables, "DOCS", [doc])
    assert tables.main(["--check"]) == 1  # a hand edit is caught
    assert tables.main([]) == 0 and tables.main(["--check"]) == 0
    text = doc.read_text()
    assert "hand-edited" not in text and "| fashion-mnist |" in text and text.startswith("before")


def test_oracle_gap_scores_the_suites_corners_again_and_splits_the_test_split(script, tmp_path,
                                                                            capsys):
    gap = script("oracle_gap")
    root = SCRIPTS.parent
    suite = root / "docs" / "results" / "downstream-images-a.csv"
    common = ["--checkpoint", str(root / "checkpoints" / "fmnist-hyper4-w8-cpu"),
              "--results", str(suite), "--out", str(tmp_path / "gap")]
    assert gap.main([*common, "--tasks", "no-such-task"]) == 1
    assert "not a scored task" in capsys.readouterr().err  # and the file's tasks are named
    copy = tmp_path / "suite.csv"
    copy.write_bytes(suite.read_bytes())
    assert gap.main([*common[:3], str(copy), "--out", str(tmp_path / "suite")]) == 1
    assert "would overwrite --results" in capsys.readouterr().err  # its own input, refused
    assert copy.read_bytes() == suite.read_bytes()
    for foreign in (tmp_path / "empty.csv", suite.with_name("selection-study.csv"), tmp_path):
        if foreign.suffix:
            foreign.touch(exist_ok=True)
        assert gap.main([*common[:3], str(foreign), "--out", str(tmp_path / "x")]) == 1
        assert "results file" in capsys.readouterr().err  # empty, another script's, a folder
    assert not (tmp_path / "x.csv").exists()
    audio = ["--results", str(suite.with_name("downstream-audio.csv")), "--tasks", "sonic-pi"]
    assert gap.main([*common[:2], *audio, "--out", str(tmp_path / "wrong")]) == 1
    assert "the encoder that ran" in capsys.readouterr().err  # an image encoder, audio rows
    assert gap.main([*common, "--misses", "--tasks", "fashion-mnist"]) == 0  # within a point
    assert "nothing to do" in capsys.readouterr().err and not (tmp_path / "gap.csv").exists()
    plain = ["--plain", str(root / "checkpoints" / "fmnist-plain-cpu")]
    assert gap.main([*common, *plain, "--tasks", "sklearn-digits", "--halves", "50"]) == 0
    (row,) = results.read_numbers([tmp_path / "gap.csv"])
    (file_row,) = [r for r in results.read_csv(suite) if r["task"] == "sklearn-digits"]
    # the suite's readouts again: its test scores within an example or two of the file's
    assert row["reproduced"] <= 2 / row["test_examples"]
    assert row["selected_score"] == pytest.approx(file_row["selected_score"], abs=0.006)
    assert row["gap"] == pytest.approx(row["oracle_score"] - row["selected_score"], abs=1e-3)
    assert row["picked_gap"] >= row["honest_gap"] and row["honest_se"] > 0
    # the gradient-learned vector against the same oracle, on the same halves
    assert row["gradient_score"] == pytest.approx(file_row["learned_score"], abs=0.006)
    assert row["gradient_gap"] == pytest.approx(row["oracle_score"] - row["gradient_score"],
                                                abs=1e-3)
    assert row["gradient_picked_gap"] >= row["gradient_honest_gap"]
    # the plain encoder's readout again, and its lead over the selected vector
    assert row["plain_score"] == pytest.approx(file_row["baselines"]["plain"], abs=0.006)
    assert row["plain_gap"] == pytest.approx(row["plain_score"] - row["selected_score"],
                                             abs=1e-3) and row["plain_se"] > 0
    tables = (tmp_path / "gap.md").read_text()
    assert tables.count("| sklearn-digits | 359 |") == 3 and "| gradient-learned |" in tables


def test_colour_statistics_tell_colour_but_not_category(script, tmp_path, capsys):
    stats = script("colour_statistics")
    root = SCRIPTS.parent
    suite = root / "docs" / "results" / "downstream-colour-a.csv"
    common = ["--checkpoint", str(root / "checkpoints" / "rgb-hyper4-cpu"), "--out",
              str(tmp_path / "stats")]
    assert stats.main([*common, "--results", str(suite), "--tasks", "openclipart"]) == 1
    assert "not a scored task" in capsys.readouterr().err  # and the file's tasks are named
    images = str(suite.with_name("downstream-images-a.csv"))
    assert stats.main([*common, "--results", images, "--tasks", "sklearn-digits"]) == 1
    assert "not of colour images" in capsys.readouterr().err  # grey digits, copied to RGB
    assert stats.main([*common, "--results", str(suite),
                       str(suite.with_name("downstream-colour-b.csv")),
                       "--tasks", "clipart-colour", "clipart-recoloured"]) == 0
    with open(tmp_path / "stats.csv", newline="") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    suite_rows = {r["task"]: r for name in ("a", "b")
                  for r in results.read_csv(suite.with_name(f"downstream-colour-{name}.csv"))}
    colour, recoloured = rows["clipart-colour"], rows["clipart-recoloured"]
    # colour is the label: colour statistics alone name it (7 classes: chance 0.14)
    assert float(colour["linear"]) > 0.8 and float(colour["forest"]) > 0.8
    # the category of drawings whose hues are noise: colour alone is far below the encoder
    assert float(recoloured["linear"]) < suite_rows["clipart-recoloured"]["selected_score"] - 0.1
    for name, row in rows.items():  # the suite's figures beside, read from its files
        assert float(row["selected_score"]) == suite_rows[name]["selected_score"]
        assert int(row["test_examples"]) > 100
    assert "| clipart-colour | accuracy |" in (tmp_path / "stats.md").read_text()


def test_evaluate_reads_colour_data_with_a_grey_encoder_and_refuses_k_below_one(script,
                                                                               capsys):
    evaluate = script("evaluate")
    grey = str(SCRIPTS.parent / "checkpoints" / "fmnist-hyper4-w8-cpu")
    for k in ("0", "-5"):
        with pytest.raises(SystemExit) as ended:
            evaluate.main(["--checkpoint", grey, "--dataset", "tuxpaint-photos", "--k", k])
        assert ended.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    assert evaluate.main(["--checkpoint", grey, "--dataset", "tuxpaint-photos", "--no-linear",
                          "--device", "cpu"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert "converted to luminance" in result["note"] and "converted to luminance" in out.err
    # scored on the 42 test photos, above chance (8 classes) at every vector
    assert result["test"] == 42 and min(result["knn"].values()) > 1 / 8


def test_a_suite_that_scores_nothing_keeps_the_results_file_it_would_replace(script, tmp_path,
                                                                            capsys):
    bench = script("benchmark_downstream")
    earlier = tmp_path / "downstream-audio.csv"
    earlier.write_bytes((SCRIPTS.parent / "docs" / "results" / "downstream-audio.csv")
                        .read_bytes())
    audio = str(SCRIPTS.parent / "checkpoints" / "audio-hyper4-cpu")
    assert bench.main(["--checkpoint", audio, "--tasks", "fmnist-flip",
                       "--out", str(earlier.with_suffix(""))]) == 1
    assert "no task was run" in capsys.readouterr().err
    assert earlier.read_bytes() == (SCRIPTS.parent / "docs" / "results"
                                    / "downstream-audio.csv").read_bytes()


def test_shipping_checks_everything_before_it_writes(script, tmp_path, capsys):
    ship = script("ship_checkpoint")
    shipped = SCRIPTS.parent / "checkpoints" / "fmnist-plain-cpu"
    dest = tmp_path / "dest"
    assert ship.main([str(shipped), str(dest)]) == 0  # an earlier shipment
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    no_log = tmp_path / "run"  # a run folder without its metrics.jsonl
    no_log.mkdir()
    (no_log / "encoder.safetensors").write_bytes(
        (SCRIPTS.parent / "checkpoints" / "audio-plain-cpu" / "encoder.safetensors").read_bytes())
    (tmp_path / "eval.json").write_text("not json")
    for args in ([str(no_log), str(dest)], [str(shipped / "encoder.safetensors"), str(dest)],
                 [str(shipped), str(dest), "--eval", str(tmp_path / "eval.json")],
                 [str(shipped), str(dest), "--wall-seconds", "nan"]):
        assert ship.main(args) == 1
        assert capsys.readouterr().err.startswith("error: ")
        assert {p.name: p.read_bytes() for p in dest.iterdir()} == before  # nothing changed


@pytest.mark.parametrize("name, args", [
    ("bench_augment", ["--batch", "0"]), ("bench_augment", ["--seconds", "-1"]),
    ("bench_widths", ["--repeats", "0"]), ("bench_pretrain", ["--seconds", "nan"]),
    ("bench_concurrent", ["--jobs", "0"]), ("bench_gil", ["--steps", "0"]),
    ("bench_app", ["--moves", "0"]), ("gpu_slice", ["--dry-run", "--minutes", "0"])])
def test_counts_and_times_below_one_are_usage_errors(script, monkeypatch, capsys, name, args):
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as ended:
        script(name).main()
    assert ended.value.code == 2  # argparse's usage error, before any work
    assert "must be" in capsys.readouterr().err


@pytest.mark.parametrize("dataset, says", [("fashion-mnst", "Did you mean fashion-mnist"),
                                            ("spoken-digits", "use an encoder trained on audio")])
def test_the_app_benchmark_refuses_a_dataset_before_timing(script, monkeypatch, capsys,
                                                           dataset, says):
    monkeypatch.setattr(sys, "argv", ["bench_app", "--dataset", dataset])
    with pytest.raises(SystemExit) as ended:  # was a traceback after UMAP's warm-up
        script("bench_app").main()
    assert ended.value.code == 2 and says in capsys.readouterr().err


def test_the_selection_study_appends_only_to_its_own_file(script, tmp_path, capsys):
    study = script("study_selection")
    foreign = tmp_path / "gaps.csv"
    foreign.write_bytes((SCRIPTS.parent / "docs" / "results" / "oracle-gap-audio.csv")
                        .read_bytes())
    grey = str(SCRIPTS.parent / "checkpoints" / "fmnist-hyper4-w8-cpu")
    audio = str(SCRIPTS.parent / "checkpoints" / "audio-hyper4-cpu")
    assert study.main(["--checkpoint", grey, "--tasks", "sklearn-digits", "--suite", "x",
                       "--out", str(foreign.with_suffix(""))]) == 1
    assert "is not this study's file" in capsys.readouterr().err
    assert foreign.read_bytes() == (SCRIPTS.parent / "docs" / "results"
                                    / "oracle-gap-audio.csv").read_bytes()
    assert study.main(["--checkpoint", audio, "--tasks", "sklearn-digits", "--suite", "x",
                       "--out", str(tmp_path / "new")]) == 1  # the wrong kind: not a skip
    assert "trained on audio" in capsys.readouterr().err
    assert not (tmp_path / "new.csv").exists()


def test_the_learner_study_refuses_before_it_makes_anything(script, tmp_path, capsys):
    study = script("study_learner")
    audio = str(SCRIPTS.parent / "checkpoints" / "audio-hyper4-cpu")
    grey = str(SCRIPTS.parent / "checkpoints" / "fmnist-hyper4-w8-cpu")
    assert study.main(["--checkpoint", audio, "--tasks", "sklearn-digits",
                       "--out", str(tmp_path / "new" / "study")]) == 1
    assert "trained on audio" in capsys.readouterr().err
    foreign = tmp_path / "gaps.csv"
    foreign.write_bytes((SCRIPTS.parent / "docs" / "results" / "oracle-gap-audio.csv")
                        .read_bytes())
    assert study.main(["--checkpoint", grey, "--tasks", "sklearn-digits",
                       "--out", str(foreign.with_suffix(""))]) == 1
    assert "is not this study's file" in capsys.readouterr().err
    assert study.main(["--checkpoint", grey, "--tasks", "sklearn-digits", "--out",
                       str(tmp_path / "none" / "study"), "--plot", str(tmp_path / "p.png")]) == 1
    assert "run the study with the same --out first" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and not (tmp_path / "none").exists()


def test_profile_learn_refuses_encoders_of_another_kind_before_timing(script, monkeypatch):
    audio_plain = str(SCRIPTS.parent / "checkpoints" / "audio-plain-cpu")
    monkeypatch.setattr(sys, "argv", ["profile_learn", "--plain", audio_plain, "--only-stages"])
    with pytest.raises(SystemExit) as ended:
        script("profile_learn").main()
    assert "the plain encoder reads audio" in str(ended.value.code)

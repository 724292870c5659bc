"""The benchmark, evaluation and shipping scripts run and print what their docs promise (tiny
settings: speed itself is measured by running them for real, see docs/BENCHMARKS.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import amortinv
from amortinv import checkpoint
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


def test_bench_augment_prints_its_json():
    line = json.loads(run(str(SCRIPTS / "bench_augment.py"), "--batch", "16", "--seconds",
                          "0.2").splitlines()[-1])
    assert {"device", "batched_img_s", "torchvision_img_s", "ratio"} <= set(line)
    assert line["ratio"] == pytest.approx(line["batched_img_s"] / line["torchvision_img_s"],
                                          rel=0.02)


def test_bench_pretrain_prints_a_line_per_conditioning():
    out = run(str(SCRIPTS / "bench_pretrain.py"), "--device", "cpu", "--batch", "16",
              "--width", "4", "--seconds", "0.3", "--warmup", "1", "--only", "film", "hyper-4")
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["conditioning"] for x in lines] == ["film", "hyper-4"]
    for x in lines:
        assert {"device", "amortised_img_s", "plain_img_s", "ratio"} <= set(x)


def test_knn_eval_and_shipping(smoke_run, tmp_path):
    result = json.loads(run(str(SCRIPTS / "knn_eval.py"), "--checkpoint", str(smoke_run)))
    assert set(result["knn"]) == {"all_ones", "all_zeros", "half"}
    assert 0 <= result["raw_input_knn"] <= 1 and result["dataset"] == "sklearn-digits"
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

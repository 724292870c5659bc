"""Devices: ``auto`` takes CUDA only when there is one; a device this machine lacks is refused
with a message (not a traceback) by the library and by every script that takes --device."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import amortinv
from amortinv import checkpoint
from amortinv.devices import DeviceUnavailable, resolve_device
from amortinv.invariance import GREY
from amortinv.models import Encoder, ModelConfig

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
#: A CUDA device this machine does not have.
MISSING = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    enc = Encoder(ModelConfig(in_channels=1, image_size=16, width=4, bases=2), GREY,
                  {"dataset": "sklearn-digits"})
    checkpoint.save_encoder(folder / checkpoint.ENCODER_FILE, enc)
    return folder


def test_auto_cpu_and_missing_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable, match=r"'cpu'|numbered from 0"):
        resolve_device(MISSING)
    with pytest.raises(DeviceUnavailable, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_load_takes_a_device(saved):
    assert amortinv.load(saved).device.type == resolve_device("auto").type
    assert amortinv.load(saved, "cpu").device == torch.device("cpu")
    with pytest.raises(DeviceUnavailable):
        amortinv.load(saved, MISSING)


@pytest.mark.parametrize("name, args", [
    ("evaluate.py", []),
    ("downstream.py", ["--task", "sklearn-digits"]),
    ("benchmark_downstream.py", ["--tasks", "sklearn-digits"]),
])
def test_scripts_refuse_a_missing_device_with_a_message(saved, name, args):
    done = subprocess.run([sys.executable, str(SCRIPTS / name), "--checkpoint", str(saved),
                           "--device", MISSING, *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith("error: device") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_evaluate_prints_a_message_for_a_truncated_checkpoint(saved, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((saved / checkpoint.ENCODER_FILE).read_bytes()[:-100])
    done = subprocess.run([sys.executable, str(SCRIPTS / "evaluate.py"), "--checkpoint",
                           str(broken)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and "corrupt or truncated" in done.stderr

"""Checkpoints: safe format, atomic writes, clear errors for bad files."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import amortinv
from amortinv import checkpoint
from amortinv.checkpoint import CheckpointError
from amortinv.invariance import GREY, RGB
from amortinv.models import Encoder, ModelConfig


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return Encoder(ModelConfig(in_channels=1, image_size=16, width=4, bases=2), GREY,
                   card={"dataset": "sklearn-digits"}).eval()


def test_round_trip_keeps_features_space_and_card(tmp_path, encoder):
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    checkpoint.save_encoder(tmp_path / "run" / "encoder.safetensors", encoder)
    loaded = amortinv.load(tmp_path / "run")  # a folder means its encoder.safetensors
    assert loaded.space == GREY and loaded.card == {"dataset": "sklearn-digits"}
    assert torch.equal(loaded.features(x, 1.0), encoder.features(x, 1.0))
    half = checkpoint.save_encoder(tmp_path / "half.safetensors", encoder, torch.float16)
    assert half.stat().st_size < (tmp_path / "run" / "encoder.safetensors").stat().st_size
    close = amortinv.load(half).features(x, 1.0)
    assert torch.allclose(close, encoder.features(x, 1.0), atol=1e-2)


def test_header_is_plain_json_with_format_and_model(tmp_path, encoder):
    path = checkpoint.save_encoder(tmp_path / "e.safetensors", encoder)
    meta = checkpoint.read_meta(path)
    assert meta["format"] == "amortinv-checkpoint" and meta["version"] == 1
    assert meta["model"]["width"] == 4 and meta["space"]["name"] == "grey"


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, encoder, monkeypatch):
    path = checkpoint.save_encoder(tmp_path / "e.safetensors", encoder)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_encoder(path, encoder)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]  # no temp file left


def test_truncated_and_garbage_files_give_clear_errors(tmp_path, encoder):
    path = checkpoint.save_encoder(tmp_path / "e.safetensors", encoder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        amortinv.load(path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        amortinv.load(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        amortinv.load(tmp_path / "missing")


def test_foreign_and_mismatched_checkpoints_are_refused(tmp_path, encoder):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an amortinv checkpoint"):
        amortinv.load(foreign)
    # weights of one model under the card of another
    meta = checkpoint.encoder_meta(encoder)
    meta["model"]["width"] = 8
    wrong = checkpoint.save(tmp_path / "wrong.safetensors", encoder.state_dict(), meta)
    with pytest.raises(CheckpointError, match="do not match the model in its card"):
        amortinv.load(wrong)
    meta = checkpoint.encoder_meta(encoder)
    meta["space"] = RGB.to_json()  # 5 groups where the weights expect 4
    with pytest.raises(CheckpointError, match="do not match"):
        amortinv.load(checkpoint.save(tmp_path / "space.safetensors", encoder.state_dict(),
                                      meta))


def test_newer_versions_and_settings_ask_for_an_upgrade(tmp_path, encoder):
    meta = checkpoint.encoder_meta(encoder)
    newer = checkpoint.save(tmp_path / "v9.safetensors", encoder.state_dict(), meta)
    header = checkpoint.read_meta(newer)
    header["version"] = 9
    save_file(encoder.state_dict(), newer, metadata={"amortinv": json.dumps(header)})
    with pytest.raises(CheckpointError, match="upgrade amortinv"):
        amortinv.load(newer)
    meta["model"]["new_knob"] = 1
    with pytest.raises(CheckpointError, match="newer amortinv"):
        amortinv.load(checkpoint.save(tmp_path / "knob.safetensors", encoder.state_dict(), meta))


def test_written_file_follows_the_umask_and_reading_it_leaves_it_alone(tmp_path, encoder):
    previous = os.umask(0o027)
    try:
        assert checkpoint._umask() == 0o027
        path = checkpoint.save_encoder(tmp_path / "enc.safetensors", encoder)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's private 0o600
        assert os.umask(0o027) == 0o027  # still set: reading it did not change it
    finally:
        os.umask(previous)

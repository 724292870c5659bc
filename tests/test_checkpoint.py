"""Checkpoints: safe format, atomic writes, clear errors for bad files."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import amortinv
from amortinv import checkpoint, files
from amortinv.checkpoint import CheckpointError
from amortinv.invariance import GREY, RGB
from amortinv.models import Encoder, ModelConfig

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist-hyper4-w8-cpu"


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
        assert files.umask() == 0o027
        path = checkpoint.save_encoder(tmp_path / "enc.safetensors", encoder)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's private 0o600
        assert os.umask(0o027) == 0o027  # still set: reading it did not change it
    finally:
        os.umask(previous)


def edited_copy(folder, edit):
    """A copy of the shipped grey width-8 encoder at ``folder``/encoder.safetensors, its
    header's JSON changed by ``edit`` (in place, or returning the new header's text)."""
    meta = checkpoint.read_meta(SHIPPED)
    header = edit(meta) or json.dumps(meta)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint.ENCODER_FILE
    save_file(load_file(SHIPPED / checkpoint.ENCODER_FILE), path, metadata={"amortinv": header})
    return path


def test_a_header_that_is_no_object_or_whose_version_is_no_number_is_refused(tmp_path):
    listed = edited_copy(tmp_path / "list", lambda meta: "[1, 2]")
    for read in (checkpoint.read_meta, amortinv.load):
        with pytest.raises(CheckpointError, match="a list, not an object"):
            read(listed)
    text = edited_copy(tmp_path / "text", lambda meta: meta.update(version="1"))
    with pytest.raises(CheckpointError, match="version '1' is not a whole number"):
        amortinv.load(text)


@pytest.mark.parametrize("setting, value, reason", [
    ("width", 0, "width must be a positive whole number, got 0"),
    ("width", -8, "width must be a positive whole number, got -8"),
    ("width", "8", "width must be a positive whole number, got '8'"),
    ("bases", 0, "bases must be a positive whole number"),
    ("input_std", 0, "input_std must be above 0"),
    ("input_std", "x", "input_std must be a finite number"),
    ("input_mean", None, "input_mean must be a finite number"),
    ("input_mean", float("inf"), "input_mean must be a finite number"),
    ("input_std", [0.3, 0.3, 0.3], "input_std has 3 values for 1 input channel"),
])
def test_model_settings_no_model_can_be_built_from_are_named_at_load(tmp_path, setting, value,
                                                                     reason):
    path = edited_copy(tmp_path, lambda meta: meta["model"].update({setting: value}))
    with pytest.raises(CheckpointError) as caught:
        amortinv.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path} describes a model that cannot be built: {reason}")
    assert "use an earlier checkpoint or write it again" in message


def test_a_model_description_that_is_no_object_is_refused(tmp_path):
    path = edited_copy(tmp_path, lambda meta: meta.update(model=[1, 2]))
    with pytest.raises(CheckpointError, match="cannot be built: 'model' is a list"):
        amortinv.load(path)


def test_per_channel_normalisation_of_the_right_length_still_loads(tmp_path):
    path = edited_copy(tmp_path, lambda meta: meta["model"].update(input_std=[0.35]))
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert torch.isfinite(amortinv.load(path).features(x, 1.0)).all()


def test_the_app_lists_damaged_checkpoints_and_still_loads_the_others(tmp_path, monkeypatch):
    from amortinv import ui

    runs = tmp_path / "runs"
    edited_copy(runs / "good", lambda meta: None)
    edited_copy(runs / "list-header", lambda meta: "[1, 2]")
    edited_copy(runs / "list-model", lambda meta: meta.update(model=[1, 2]))
    edited_copy(runs / "text-width", lambda meta: meta["model"].update(width="8"))
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS", (tmp_path / "checkpoints", runs))
    listed = ui.checkpoints()
    assert sorted(listed) == ["runs/good", "runs/list-header", "runs/list-model",
                              "runs/text-width"]
    assert isinstance(listed["runs/list-header"][1], CheckpointError)
    assert sorted(ui.find_checkpoints()) == sorted(listed)  # choosing one says why it fails
    for name in ("list-model", "text-width"):
        with pytest.raises(CheckpointError, match="cannot be built"):
            amortinv.load(runs / name)
    assert amortinv.load(runs / "good").space.names == ("crop", "flip", "color", "blur")

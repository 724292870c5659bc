"""The app on colour data with a colour encoder (streamlit's AppTest), and a colour upload all
the way to learned invariances."""

import io
import re
import shutil

import numpy as np
import pytest
from apptests import dataset_box
from PIL import Image
from streamlit.testing.v1 import AppTest
from zips import make_zip

import amortinv
from amortinv import ui
from amortinv.data import info
from amortinv.data.uploads import load_zip
from amortinv.downstream import DownstreamConfig, fit, prepare
from amortinv.pretrain import Trainer, preset

APP = "../app.py"
RGB_DATA = "tuxpaint-photos"
RGB_GROUPS = ("crop", "flip", "color", "grayscale", "blur")


@pytest.fixture(scope="module")
def colour_dirs(tmp_path_factory):
    """A checkpoint folder with a small amortised RGB encoder trained on colour photos."""
    entry = info(RGB_DATA)
    if not entry.available():
        pytest.skip(f"{RGB_DATA} is not installed here: {entry.hint}")
    root = tmp_path_factory.mktemp("app-colour")
    out = root / "checkpoints" / "rgb-smoke"
    list(Trainer(preset("smoke", dataset=RGB_DATA, image_size=16, out=str(out), steps=4,
                        checkpoint_every=4)).run())
    (root / "runs").mkdir()
    return root


@pytest.fixture
def app(colour_dirs, monkeypatch):
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS", (colour_dirs / "checkpoints", colour_dirs / "runs"))

    def open_page(page: str, dataset: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        if dataset is not None:
            dataset_box(at).select(dataset).run()
        if page != "home":
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    return open_page


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_home_previews_the_groups_on_colour_images(app):
    at = app("home")
    assert at.sidebar.selectbox(key="checkpoint").options == ["checkpoints/rgb-smoke"]
    assert dataset_box(at).value == RGB_DATA
    images = [img for element in at.get("image") for img in element.proto.imgs]
    assert len(images) == 3 * 6  # three vectors x six colour examples
    groups = at.dataframe[-1].value["group"].tolist()
    assert tuple(groups) == RGB_GROUPS
    assert any("colour suite" in md.value for md in at.markdown)  # what colour tasks learned
    assert "copied to red" not in captions(at) and "luminance" not in captions(at)


def test_probe_moves_with_the_colour_groups(app):
    at = app("probe")
    before = at.session_state["probe-xy"].copy()
    assert before.shape == (len(ui.adapted(RGB_DATA, 3).test), 2)
    assert {s.key for s in at.slider} >= {f"probe-{g}" for g in RGB_GROUPS}
    at.slider(key="probe-color").set_value(0.0)
    at.slider(key="probe-grayscale").set_value(0.0)
    at.run()
    assert not at.exception, at.exception
    assert not np.allclose(before, at.session_state["probe-xy"])
    labels = [m.label for m in at.metric]
    assert "linear probe accuracy" in labels
    # k is the suite's 200, or every training example the probe holds where it holds fewer
    # (the linear probe's help says how many it fitted to)
    held = int(re.search(r"fitted to (\d+) training", next(
        m.help for m in at.metric if m.label == "linear probe accuracy"))[1])
    assert f"kNN accuracy (k={min(200, held)})" in labels


def test_invariance_map_scores_the_colour_transforms(app):
    at = app("map")
    scores = at.session_state["map-scores"]
    assert {"hue", "saturation", "grayscale", "brightness", "crop", "flip", "blur"} <= set(scores)
    assert all(-1 <= v <= 1 for v in scores.values())


def test_grey_data_with_a_colour_encoder_says_it_is_converted(app):
    at = app("probe", dataset="sklearn-digits")
    assert "copied to red, green and blue" in captions(at)
    assert at.session_state["probe-xy"].shape == (359, 2)


def test_each_kind_of_encoder_keeps_its_own_dataset(colour_dirs, tmp_path, monkeypatch):
    """A colour encoder chosen after a grey one shows colour data (its own), not the grey
    encoder's dataset converted; back on the grey encoder, the grey dataset chosen before."""
    grey = tmp_path / "checkpoints" / "digits-smoke"
    list(Trainer(preset("smoke", out=str(grey), steps=2, checkpoint_every=2)).run())
    shutil.copytree(colour_dirs / "checkpoints" / "rgb-smoke", grey.parent / "rgb-smoke")
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS", (grey.parent, colour_dirs / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    encoders, datasets = at.sidebar.selectbox(key="checkpoint"), dataset_box(at)
    assert encoders.value == "checkpoints/digits-smoke" and datasets.value == "sklearn-digits"
    chosen = next(n for n in datasets.options if n != "sklearn-digits")
    datasets.select(chosen).run()
    at.sidebar.selectbox(key="checkpoint").select("checkpoints/rgb-smoke").run()
    assert dataset_box(at).value == RGB_DATA  # the encoder's own
    assert "luminance" not in captions(at) and "copied to red" not in captions(at)
    at.sidebar.selectbox(key="checkpoint").select("checkpoints/digits-smoke").run()
    assert dataset_box(at).value == chosen
    assert not at.exception, at.exception


def _colour_zip() -> bytes:
    """Two classes told apart by colour: reddish and bluish squares of varied shades, some
    saved as palette images, as a user's folder would mix them; and one broken file."""
    rng = np.random.default_rng(0)
    files = {}
    for cls, channel in (("red", 0), ("blue", 2)):
        for i in range(12):
            x = np.full((24, 24, 3), 255, dtype=np.uint8)
            x[4:20, 4:20] = rng.integers(0, 80, 3)
            x[4:20, 4:20, channel] = rng.integers(160, 256)
            im = Image.fromarray(x)
            out = io.BytesIO()
            (im.convert("P") if i % 4 == 0 else im).save(out, "PNG")
            files[f"shapes/{cls}/{i}.png"] = out.getvalue()
    files["shapes/red/broken.png"] = b"\x89PNG not really"
    return make_zip(files)


def test_a_colour_upload_learns_with_a_colour_encoder(colour_dirs):
    enc = amortinv.load(colour_dirs / "checkpoints" / "rgb-smoke")
    ds = load_zip(_colour_zip(), "colours.zip")
    assert ds.input_shape == (3, 32, 32) and [p for p, _ in ds.skipped] == ["red/broken.png"]
    assert any("palette" in note for note in ds.notes)
    task = prepare(enc, ds, DownstreamConfig(steps=5, eval_every=5))
    assert task.note is None  # colour data, colour encoder: nothing converted
    result = fit(enc, task, DownstreamConfig(steps=5, eval_every=5))
    assert set(result.learned) == set(RGB_GROUPS)
    # red against blue: pixels tell them apart, and so do the encoder's features at the
    # selected vector (at most one of the few test squares wrong)
    n_test = len(task.test.y)
    assert result.baselines["raw_linear"] == 1.0
    assert result.selected_score >= 1 - 1 / n_test, (result.selected_score, n_test)

"""Every app page through streamlit's AppTest, on a small encoder trained here."""

import shutil

import numpy as np
import pytest
from apptests import dataset_box
from streamlit.testing.v1 import AppTest

import amortinv
import amortinv.data as data
from amortinv import ui
from amortinv.downstream import GRADIENT
from amortinv.invariance_scores import invariance_scores
from amortinv.pretrain import Trainer, preset
from amortinv.workers import KEPT, PLAIN, RAW

APP = "../app.py"


@pytest.fixture(scope="module")
def encoder_dirs(tmp_path_factory):
    """A checkpoint folder with a small amortised encoder (sklearn digits, grey space) and a
    plain one trained on the same data (a baseline: never offered in the sidebar)."""
    root = tmp_path_factory.mktemp("app")
    for name, conditioning in (("digits-smoke", "hyper"), ("digits-smoke-plain", "none")):
        out = root / "checkpoints" / name
        list(Trainer(preset("smoke", out=str(out), steps=6, checkpoint_every=6,
                            conditioning=conditioning)).run())
    (root / "runs").mkdir()
    return root


@pytest.fixture
def app(encoder_dirs, monkeypatch):
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS",
                        (encoder_dirs / "checkpoints", encoder_dirs / "runs"))

    def open_page(page: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        if page != "home":
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    return open_page


def shown_images(at):
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def test_home_shows_the_card_and_what_the_vector_does(app):
    at = app("home")
    assert "amortised invariance learning" in at.title[0].value
    assert at.sidebar.selectbox(key="checkpoint").options == ["checkpoints/digits-smoke"]
    assert dataset_box(at).value == "sklearn-digits"
    assert len(shown_images(at)) == 3 * 6  # three vectors x six examples
    assert any("crop" in md.value for md in at.markdown)


def test_probe_slider_moves_the_projection_and_reports_accuracy(app):
    at = app("probe")
    before = at.session_state["probe-xy"].copy()
    assert before.shape == (359, 2)  # every sklearn-digits test example
    at.slider(key="probe-crop").set_value(0.0)
    at.slider(key="probe-color").set_value(0.0)
    at.run()
    assert not at.exception, at.exception
    after = at.session_state["probe-xy"]
    assert at.session_state["probe-vector"]["crop"] == 0.0
    assert not np.allclose(before, after)
    shown = {m.label: float(m.value) for m in at.metric if "accuracy" in m.label}
    assert set(shown) == {"kNN accuracy (k=200)", "linear probe accuracy"}
    # ten digits: chance is 0.1, and even this 6-step encoder's features read them far better
    assert all(0.3 < value <= 1 for value in shown.values()), shown
    at.selectbox(key="probe-preset").select("all zeros")
    at.button[0].click().run()
    assert all(at.session_state[f"probe-{g}"] == 0.0 for g in ("crop", "flip", "color", "blur"))


def learn(at, max_train: int, **choices):
    """Start a 10-step Learn job on ``max_train`` examples (and ``choices``: selectbox key ->
    value), wait for it, check it ended well, and return its snapshot."""
    at.number_input(key="learn-steps").set_value(10)
    at.number_input(key="learn-max-train").set_value(max_train)
    for key, value in choices.items():
        at.selectbox(key=key).set_value(value)
    at.button[0].click().run()  # Start
    assert not at.exception, at.exception
    job = at.session_state["learn-job"]
    job.join(180)
    snap = job.snapshot()
    assert snap.error is None and not snap.cancelled
    return snap


def test_learning_runs_live_and_ends_with_scores(app):
    KEPT.clear()  # a first job on this task: nothing kept from another test's
    at = app("learn")
    snap = learn(at, 300)
    assert {GRADIENT, "all_ones", PLAIN, RAW} <= set(snap.result["scores"])  # plain: a baseline
    assert snap.result["selected_name"] in snap.result["val_scores"]
    at.run()
    assert not at.exception, at.exception
    assert len(at.session_state["learn-history"]) == 10
    assert set(at.session_state["learned-vector"]) == {"crop", "flip", "color", "blur"}
    assert set(at.session_state["selected-vector"]) == {"crop", "flip", "color", "blur"}
    # The caption under the comparison says where the vector started, and why there.
    caption = next(c.value for c in at.caption if "where gradient descent" in c.value)
    start = snap.result["start"]
    assert (f"started at {start} everywhere (no corner beat it" in caption if start == "0.5"
            else "the best corner there" in caption)
    # ... and explains the bars in the encoder's own groups, plain's only where it was scored
    assert "'crop + flip' = crop and flip at 1" in caption and "**plain**" in caption
    # Under the finished bar: where the job's time went, stage by stage, as the job timed it.
    spent = next(c.value for c in at.caption if c.value.startswith("Where the time went"))
    stages = snap.result["stages"]
    assert "corners for the start" in spent and "learning" in spent and "baselines" in spent
    assert f"learning {stages['learning']:.{1 if stages['learning'] < 10 else 0}f} s" in spent
    assert "were not computed again" not in spent


def test_before_start_the_page_says_what_a_job_will_do_with_these_settings(app):
    at = app("learn")
    said = next(i.value for i in at.info if "press **Start**" in i.value)
    assert "clearly ahead of 0.5 everywhere, else at 0.5" in said  # the default start
    assert "the plain encoder, and the raw input" in said  # a plain twin is shipped here
    at.selectbox(key="learn-start").set_value("init").run()
    said = next(i.value for i in at.info if "press **Start**" in i.value)
    assert "the invariance vector starts at 0.5 everywhere" in said
    assert "every corner is scored" not in said


def test_a_finished_job_stays_with_the_encoder_it_learned_with(encoder_dirs, monkeypatch,
                                                                tmp_path):
    # a second amortised encoder of the same space (a copy under another name): another
    # encoder's vectors must not be shown, nor offered as Probe presets, under this one
    shutil.copytree(encoder_dirs / "checkpoints" / "digits-smoke", tmp_path / "runs" / "other")
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS", (encoder_dirs / "checkpoints", tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/learn.py").run()
    learn(at, 300)
    at.run()
    assert any(s.value.startswith("The learned vectors") for s in at.subheader)
    at.sidebar.selectbox(key="checkpoint").select("runs/other").run()
    assert not at.exception, at.exception
    assert not any(s.value.startswith("The learned vectors") for s in at.subheader)
    assert any("Your last job learned with **digits-smoke**" in c.value for c in at.caption)
    at.switch_page("pages/probe.py").run()
    offered = at.selectbox(key="probe-preset").options
    assert not any("Learn invariances" in o for o in offered)  # learned with another encoder
    at.sidebar.selectbox(key="checkpoint").select("checkpoints/digits-smoke").run()
    offered = at.selectbox(key="probe-preset").options
    assert "selected on 'Learn invariances'" in offered  # its own encoder: offered again
    at.switch_page("pages/learn.py").run()
    assert any(s.value.startswith("The learned vectors") for s in at.subheader)


def test_learning_again_on_the_same_task_reuses_the_corners_and_says_so(app):
    KEPT.clear()  # an earlier test's job on this task and these settings would be reused
    at = app("learn")
    first = learn(at, 300)
    again = learn(at, 300, **{"learn-start": "corner"})  # another start: the same corners
    assert not first.result["reused"] and again.result["reused"]
    assert again.result["val_scores"].keys() == first.result["val_scores"].keys()
    corners = [k for k in first.result["val_scores"] if k != GRADIENT]
    assert all(again.result["val_scores"][k] == first.result["val_scores"][k] for k in corners)
    at.run()
    spent = next(c.value for c in at.caption if c.value.startswith("Where the time went"))
    assert "were not computed again (the same scores)" in spent


def test_the_choice_is_cross_validated_or_made_on_the_validation_split(app):
    at = app("learn")
    snap = learn(at, 200)  # the default: cross-validated
    # 200 training examples and 20 for validation, pooled: every candidate scored on all 220
    assert "cross-validated on 220 training and validation examples" in snap.result["reason"]
    at.run()
    assert not at.exception, at.exception
    assert any(snap.result["reason"] in c.value for c in at.caption)
    assert any("chosen by 5-fold cross-validation" in c.value for c in at.caption)
    snap = learn(at, 200, **{"learn-folds": 0})
    assert snap.result["folds"] == 0 and " on validation)" in snap.result["reason"]


def test_live_charts_redraw_once_per_validation_score_every_1_to_3_s():
    # Seconds per learning step, served: ~0.09 on a 2-core Xeon, ~0.49 on a 2-core AVX2 CPU
    # while the page redrew every second (Chromium then took 0.65 of a core).
    assert ui.live_interval(0.09, 10) == 1.0
    assert ui.live_interval(0.17, 10) == 2.0
    assert ui.live_interval(0.49, 10) == 3.0
    assert ui.live_interval(0.001, 10) == 1.0 and ui.live_interval(0.1, 50) == 3.0


def test_a_slow_cpu_draws_fewer_probe_images_and_says_so(monkeypatch):
    # Timed on this CPU: a budget nothing meets draws the fewest; one anything meets, all.
    image, audio = (ui.CHECKPOINT_DIRS[0] / name for name in ("fmnist-hyper4-w8-cpu",
                                                               "audio-hyper4-cpu"))
    full = ui.PROBE_POINTS["image"]
    try:
        for budget, expected in ((1e-6, ui.PROBE_MIN_POINTS), (1e6, full)):
            monkeypatch.setattr(ui, "PROBE_MOVE_S", budget)
            ui._quick_points.clear()
            points, message = ui.probe_size(image)
            assert points == expected
            assert (f"Drawing {expected:,} of {full:,} test images" in message) == (
                expected < full)
        assert ui.probe_size(audio) == ui.probe_points(audio)  # audio probes its 500 clips
    finally:
        ui._quick_points.clear()


def test_invariance_map_draws_scores_for_every_transform(app, encoder_dirs):
    at = app("map")
    scores = at.session_state["map-scores"]
    assert {"crop", "flip", "brightness", "blur"} <= set(scores)
    # the page's scores are the library's, on the examples it says it used
    encoder = amortinv.load(encoder_dirs / "checkpoints" / "digits-smoke")
    used = next(s for s in at.select_slider if s.label == "examples used").value
    x = data.get("sklearn-digits").test.x[:used]
    assert scores == pytest.approx(invariance_scores(encoder, x, [1.0] * 4), abs=1e-5)
    assert len({round(v, 3) for v in scores.values()}) > 1  # transforms differ


def test_runs_page_lists_runs_and_starts_a_pretraining(app, encoder_dirs):
    at = app("runs")
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["run", "test linear, all ones", "test kNN, all ones"]
    rows = [str(row) for row in table.values]
    assert any("digits-smoke-plain" in row for row in rows)  # plain runs are listed here
    assert any("digits-smoke" in row and "plain" not in row for row in rows)
    at.number_input(key="runs-steps").set_value(4)
    for outside in ("..", ".", "a/b"):  # runs/ itself, the folder above it, a sub-folder
        at.text_input(key="runs-out").set_value(outside)
        at.button[0].click().run()
        assert any("not dots alone" in e.value for e in at.error)
        assert "runs-job" not in at.session_state
    assert not (encoder_dirs / "encoder.safetensors").exists()
    assert not (encoder_dirs / "runs" / "encoder.safetensors").exists()
    at.text_input(key="runs-out").set_value("from-app")
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = at.session_state["runs-job"]
    job.join(120)
    assert job.snapshot().error is None
    assert (encoder_dirs / "runs" / "from-app" / "encoder.safetensors").exists()


def test_an_encoder_probed_on_fewer_points_says_how_many_test_examples_are_drawn(monkeypatch):
    from amortinv.checkpoint import resolve
    from amortinv.models.cost import checkpoint_cost, probe_plan

    image = ui.CHECKPOINT_DIRS[0] / "fmnist-hyper4-w8-cpu"
    asked = ui.PROBE_POINTS["image"] + ui.PROBE_TRAIN_POINTS["image"]
    full = probe_plan(checkpoint_cost(resolve(image)), asked, budget_s=1e9)
    ui._probe_plan.clear()
    monkeypatch.setattr(ui, "PROBE_BUDGET_S", full.seconds / 2)  # half the points fit
    try:
        points, message = ui.probe_points(image)
    finally:
        ui._probe_plan.clear()
    assert 0 < points < ui.PROBE_POINTS["image"]
    # the plan counts training points too; the message says how many test examples are drawn
    assert f"The plot draws {points:,} test examples" in message


def test_an_encoder_too_slow_to_probe_is_refused_before_it_is_loaded(app, monkeypatch):
    ui._probe_plan.clear()
    ui.load_encoder.clear()
    monkeypatch.setattr(ui, "PROBE_BUDGET_S", 1e-9)  # as if it were the paper's ResNet-50 here
    monkeypatch.setattr(ui, "LARGE_FILE_BYTES", 0)
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page("pages/probe.py").run()
        assert any("too slow to probe" in e.value for e in at.error)
        assert "probe-xy" not in at.session_state
    finally:
        ui._probe_plan.clear()


def test_a_corrupt_checkpoint_among_the_runs_is_listed_and_refused_by_name(encoder_dirs,
                                                                          monkeypatch, tmp_path):
    broken = tmp_path / "runs" / "broken"
    broken.mkdir(parents=True)
    (broken / "encoder.safetensors").write_bytes(b"cut off by a full disk")
    monkeypatch.setattr(ui, "CHECKPOINT_DIRS", (encoder_dirs / "checkpoints", tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception  # every page's sidebar reads the headers
    box = at.sidebar.selectbox(key="checkpoint")
    assert box.value == "checkpoints/digits-smoke" and "runs/broken" in box.options
    box.select("runs/broken").run()
    assert not at.exception, at.exception
    assert any("cannot be loaded" in e.value and "corrupt or truncated" in e.value
               for e in at.error)
    at.switch_page("pages/runs.py").run()  # the Runs page lists it with its error, too
    assert not at.exception, at.exception


def test_the_app_opens_on_the_narrowest_amortised_image_encoder_shipped():
    # The shipped folder, as the app lists it: images before audio, the hypernetwork before
    # FiLM before plain, the narrowest (fastest on a CPU) first.
    listed = ui.checkpoints()
    shipped = [meta["model"] for path, meta in listed.values()
               if path.parent == ui.CHECKPOINT_DIRS[0]]
    keys = [(m["modality"] != "image", ui._CONDITIONING_ORDER[m["conditioning"]], m["width"])
            for m in shipped]
    assert len(keys) >= 2 and keys == sorted(keys)
    first = listed[next(iter(ui.find_checkpoints()))][1]["model"]
    assert (first["modality"], first["conditioning"]) == ("image", "hyper")
    assert first["width"] == min(m["width"] for m in shipped
                                 if (m["modality"], m["conditioning"]) == ("image", "hyper"))

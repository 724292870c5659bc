"""The app in a real headless Chromium (Debian's, driven by Playwright), served as `make run`
serves it: every page opens; a slider moved with the keyboard redraws the projection; a box
drawn around a cluster shows exactly the examples under it; bad uploads are refused at once;
learning can be stopped (what was learned is still scored) and cancelled; a reloaded tab's job
stops. Screenshots go to $AMORTINV_SCREENSHOTS (default tests/artifacts)."""

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from zips import make_zip

from amortinv.browser import CHROMIUM, browser, drawn, idle, serve

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("AMORTINV_SCREENSHOTS", ROOT / "tests" / "artifacts"))
LONG = 180_000  # ms: a cold 2-core machine computes features and compiles UMAP meanwhile


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `make test` (it installs it) or "
                    "`apt-get install chromium`")
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {"AMORTINV_RUNS": str(tmp_path_factory.mktemp("runs"))}
    with serve(log, env=env) as url:
        yield url, log


@pytest.fixture(scope="module")
def page(server):
    url, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser() as page:
        # Open the entry page first, as a user does: until one session has run
        # st.navigation, Streamlit serves deep links from pages/ the legacy way.
        page.goto(url)
        expect(page.get_by_text("What the vector switches on")).to_be_visible(timeout=LONG)
        yield page


def go(page, server, path: str, ready: str) -> None:
    page.goto(f"{server[0]}/{path}")
    expect(page.get_by_text(ready).first).to_be_visible(timeout=LONG)
    idle(page, LONG)


def test_home(page, server):
    go(page, server, "", "What the vector switches on")
    expect(page.get_by_text("Encoder card")).to_be_visible()
    expect(page.get_by_text("checkpoints/fmnist-hyper4-w8-cpu", exact=True)).to_be_visible()
    expect(page.get_by_text(str(ROOT))).to_have_count(0)  # the file, not where it sits here
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)  # a user's toolbar
    expect(page.get_by_test_id("stImage").first).to_be_visible(timeout=LONG)
    drawn(page, LONG)  # every preview image loads (and the tables are drawn)
    expect(page.get_by_test_id("stImage").locator("img")).to_have_count(3 * 6)  # 3 vectors x 6
    page.screenshot(path=SHOTS / "home.png", full_page=True)


def test_probe_slider_redraws_the_projection(page, server):
    go(page, server, "probe", "Features at")
    chart = page.locator(".js-plotly-plot").first
    before = chart.screenshot()
    slider = page.get_by_role("slider").first
    group = slider.get_attribute("aria-label")
    slider.focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_text(f"Features at {group} 0.95")).to_be_visible(timeout=LONG)
    idle(page, LONG)
    assert chart.screenshot() != before


# Pixel boxes of each trace's points, and which examples (rows, labels) lie in a box.
POINTS_JS = """() => {
  const el = document.querySelector('.js-plotly-plot');
  const fl = el._fullLayout, box = el.getBoundingClientRect();
  const x0 = box.left + fl._size.l, y0 = box.top + fl._size.t;
  return el._fullData.map(t => Array.from(t.x, (x, k) => ({
    px: x0 + fl.xaxis.l2p(x), py: y0 + fl.yaxis.l2p(t.y[k]),
    row: Number(t.customdata[k]), label: t.name})));
}"""


def test_a_box_around_a_cluster_shows_the_examples_under_it(page, server):
    go(page, server, "probe", "Features at")
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    traces = page.evaluate(POINTS_JS)

    def middle_half(points, axis):  # the interquartile range of the points' coordinates
        values = sorted(p[axis] for p in points)
        return values[len(values) // 4], values[3 * len(values) // 4]

    def area(points):
        (x0, x1), (y0, y1) = middle_half(points, "px"), middle_half(points, "py")
        return (x1 - x0) * (y1 - y0)

    # A box around the middle half of the class whose points sit most tightly together.
    cluster = min(traces, key=area)
    (left, right), (top, bottom) = middle_half(cluster, "px"), middle_half(cluster, "py")

    def under(margin):  # (row, label) of the points in the box grown by margin pixels
        return sorted((p["row"], p["label"]) for t in traces for p in t
                      if left - margin <= p["px"] <= right + margin
                      and top - margin <= p["py"] <= bottom + margin)

    # Plotly decides the points on the box's very edge as it likes: allow those either way.
    surely, maybe = under(-3), under(3)
    edge = set(maybe) - set(surely)
    assert len(surely) >= 5
    page.locator(".js-plotly-plot").first.hover()
    page.get_by_role("button", name="Box Select").click()
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move(right, bottom, steps=12)
    page.mouse.up()
    expect(page.get_by_text("Selected:")).to_be_visible(timeout=LONG)
    idle(page, LONG)
    heading = page.get_by_text("Selected:").inner_text()
    count = int(heading.split("Selected: ")[1].split(" ")[0])
    assert len(surely) <= count <= len(maybe)
    # The examples shown are the first rows under the box, with their own labels (the old
    # bug showed rows 0-11 of every class: the labels of the whole test set's start).
    # The heading arrives before the images in the same rerun: wait for the images themselves.
    shown = page.get_by_test_id("stImageCaption")
    expect(shown).to_have_count(min(12, count), timeout=LONG)
    captions = [c.inner_text() for c in shown.all()]
    assert shown_in_order(captions, maybe, edge)
    # The box is around that class's points: some are shown. (How many of the first 12 rows
    # under it are its own depends on the projection: 5 of 12 on fp32 features, more in bf16.)
    assert cluster[0]["label"] in captions
    drawn(page, LONG)
    page.screenshot(path=SHOTS / "probe.png", full_page=True)


def shown_in_order(captions: list[str], rows: list[tuple[int, str]], edge: set) -> bool:
    """Whether ``captions`` are the labels of the first rows of some selection made of every
    row not on the ``edge`` plus any of the edge rows (rows in order)."""
    matched = {0}  # numbers of captions matched so far, over the possible selections
    for row in rows:
        step = set()
        for j in matched:
            if j == len(captions):
                return True
            if row[1] == captions[j]:
                step.add(j + 1)  # the row was selected and shown
            if row in edge:
                step.add(j)  # an edge row may not have been selected
        matched = step
    return len(captions) in matched


def test_invariance_map(page, server):
    go(page, server, "map", "Score as one group moves")
    expect(page.locator(".js-plotly-plot")).to_have_count(1, timeout=LONG)  # the radar
    page.get_by_text("Draw").first.click()  # the line is drawn when asked for
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=LONG)
    drawn(page, LONG)
    page.screenshot(path=SHOTS / "map.png", full_page=True)


def test_bad_uploads_are_refused_at_once_by_their_own_name(page, server, tmp_path):
    go(page, server, "learn", "Downstream task")
    page.get_by_text("upload a zip").click()
    upload = page.locator("input[type=file]")
    bad = tmp_path / "photos.zip"
    bad.write_bytes(b"this is not a zip archive")
    upload.set_input_files(str(bad))
    expect(page.get_by_text("This upload cannot be used: this is not a zip file")
           ).to_be_visible(timeout=LONG)
    notes = tmp_path / "notes.zip"
    notes.write_bytes(make_zip({"a/readme.txt": b"hello", "b/todo.txt": b"world"}))
    upload.set_input_files(str(notes))
    expect(page.get_by_text("notes.zip holds no image or audio file")).to_be_visible(
        timeout=LONG)
    expect(page.get_by_text("/tmp/")).to_have_count(0)  # no temporary paths shown
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_disabled()
    page.get_by_text("from the registry").click()
    idle(page, LONG)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``, as a user does, and wait."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()
    idle(page, LONG)


def start_learning(page, server, steps: int, examples: int, task: str | None = None,
                   encoder: str | None = None, until: str = "learning, step") -> None:
    """Start a Learn job with these settings; return once the page shows ``until``."""
    go(page, server, "learn", "Downstream task")
    if encoder:
        choose(page, "Encoder", encoder)
    if task:
        choose(page, "Downstream task", task)
    page.get_by_text("Settings").click()
    for label, value in (("steps", steps), ("training examples", examples)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        box.blur()  # a box still focused commits again when Start takes the focus
        idle(page, LONG)
    start = page.get_by_role("button", name="Start", exact=True)
    start.click()
    # The job runs once its Cancel button is enabled. A click that lands while another rerun
    # is requested can be lost (seen once in CI, on a slow hour: the page still offered
    # Start, with no job); a user then presses Start again, and so does the test, once.
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    try:
        expect(cancel).to_be_enabled(timeout=20_000)
    except AssertionError:
        idle(page, LONG)
        start.click()
    expect(page.get_by_text(until)).to_be_visible(timeout=LONG)


def test_stop_still_scores_what_was_learned_and_cancel_ends_it(page, server):
    # A task with a small test split (359 digits): after the stop, every corner is scored on
    # it (Fashion-MNIST's 2,000 took 20 s of CI on a 2-core AVX2 CPU).
    start_learning(page, server, steps=2000, examples=500, task="sklearn-digits")
    page.get_by_role("button", name="Stop learning").click()
    # Learning ends early; the vector so far is scored against the corners, the plain encoder
    # and the raw input: the job ends saying so, with a bar for each (the progress line in
    # between changes too fast to be waited for: the next test waits for it).
    expect(page.get_by_text("learning stopped early by you")).to_be_visible(timeout=LONG)
    expect(page.get_by_text(re.compile(r"Where the time went: .*learning [\d.]+ s"))
           ).to_be_visible()
    bars = page.locator(".js-plotly-plot .ytick text")
    # all ones has its bar, named "selected (all ones)" when the rule kept it
    for label in ("plain", "raw input", r"(selected \()?all ones\)?", "gradient-learned"):
        expect(bars.filter(has_text=re.compile(f"^{label}$"))).to_have_count(1)
    # Why the selected vector was kept, with its cross-validated score (the default)
    expect(page.get_by_text(re.compile(
        r"Selected: .+ \(\d\.\d{3} cross-validated on [\d,]+ training and validation examples\)"))
           ).to_be_visible()
    page.mouse.move(0, 0)  # no tooltip in the picture
    page.screenshot(path=SHOTS / "learn.png", full_page=True)
    # Cancel, as a user leaving would: the job ends at once, without its comparison (the
    # fewest examples: its corners come first).
    start_learning(page, server, steps=2000, examples=100)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Cancelled (by you)")).to_be_visible(timeout=LONG)


def test_two_users_learning_at_once_take_turns_and_each_ends_as_asked(page, server):
    # A second user, in a browser context (and so a server session) of their own. Run at once,
    # two jobs would fight over the cores (10x slower); they take turns, and each page says so.
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        other.goto(server[0])
        expect(other.get_by_text("What the vector switches on")).to_be_visible(timeout=LONG)
        start_learning(page, server, steps=2000, examples=500)
        start_learning(other, server, steps=2000, examples=500, until="choosing where i starts")
        for user in (other, page):
            expect(user.get_by_text("1 other job(s) running on this server")
                   ).to_be_visible(timeout=LONG)
        # Turns, not a queue: the first job's steps and the second's corners both go on.
        watched = ((page, r"step (\d+) of"), (other, r"corner (\d+) of"))
        before = [progress(user, pattern) for user, pattern in watched]
        for (user, pattern), start in zip(watched, before, strict=True):
            wait_until(lambda: progress(user, pattern) > start,  # noqa: B023 (called here)
                       LONG / 1000, f"{pattern} stayed at {start}")
        # Each ends as its user says: the second is cancelled at once, the first stops early
        # and is scored, alone again (on 2,000 test examples: long enough to be seen doing so).
        other.get_by_role("button", name="Cancel").click()
        expect(other.get_by_text("Cancelled (by you)")).to_be_visible(timeout=LONG)
        expect(page.get_by_text("other job(s) running")).to_have_count(0, timeout=LONG)
        page.get_by_role("button", name="Stop learning").click()
        expect(page.get_by_text("scoring on the test split")).to_be_visible(timeout=LONG)
        expect(page.get_by_text("learning stopped early by you")).to_be_visible(timeout=LONG)
    finally:
        other.close()


def wait_until(condition, seconds: float, why: str) -> None:
    """Poll ``condition`` every half second; fail with ``why`` after ``seconds``."""
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, why
        time.sleep(0.5)


def progress(page, pattern: str) -> int:
    """The number ``pattern`` captures in the page's progress line (-1 while none shows it)."""
    line = page.get_by_text(re.compile(pattern))
    found = re.search(pattern, line.first.inner_text()) if line.count() else None
    return int(found.group(1)) if found else -1


def test_a_colour_task_end_to_end_with_the_colour_encoder(page, server):
    # The shipped RGB encoder on colour photos: learned, selected and scored against every
    # corner of the rgb space, drawn as bars. Tux Paint's photos are the smallest colour task
    # (165 training, 42 test): clip art's colour classes took 148 s of CI on a 2-core AVX2 CPU.
    # Its 10 steps take 2 s on a 2-core Xeon, between two of the page's redraws: the test
    # waits for the job's end (every corner, the plain encoder and the raw input scored), not
    # for its learning steps, which a fast CPU never shows (CI failed so once).
    start_learning(page, server, steps=10, examples=600, task="tuxpaint-photos",
                   encoder="checkpoints/rgb-hyper4-cpu", until="everything scored in")
    expect(page.get_by_text("best first").first).to_be_visible(timeout=LONG)
    bars = page.locator(".js-plotly-plot .ytick text")
    # a bar for each baseline and vector, the rgb space's corners among them
    for label in ("plain", "raw input", r"(selected \()?all ones\)?", "gradient-learned",
                  r"(selected \()?crop \+ flip \+ color \+ grayscale\)?"):
        expect(bars.filter(has_text=re.compile(f"^{label}$"))).to_have_count(1)
    expect(page.get_by_text(re.compile(r"Selected: .+ cross-validated on [\d,]+ training"))
           ).to_be_visible()
    idle(page, LONG)
    # the sidebar's dataset is the colour encoder's own, not the grey one's chosen before
    # (its one-line description, under the sidebar's Dataset box)
    expect(page.get_by_text(re.compile(r"^Colour pre-training images")).first).to_be_visible(
        timeout=LONG)
    page.mouse.move(0, 0)
    page.screenshot(path=SHOTS / "learn-colour.png", full_page=True)


def test_a_reloaded_tab_stops_its_learning_job(page, server):
    _, log = server
    # A job long enough to outlive the reload and the 10-s grace: the page's default 5,000
    # examples (17 corners, then 150 steps: about 30 s on a 2-core Xeon). With 500 it could
    # end on its own first, leaving nothing to cancel (it did in CI once the convolutions got
    # a third faster). Reloaded while it scores those corners: waiting for its learning steps
    # took minutes on a slow CPU; and a job checks its session once per corner, so 22,000
    # examples' corners (6 s each there) cost their time again.
    start_learning(page, server, steps=2000, examples=5000, until="choosing where i starts")
    page.reload()  # the old session is gone: its job must not run on, invisibly
    expect(page.get_by_text("Downstream task")).to_be_visible(timeout=LONG)
    wait_until(lambda: "cancelled, its browser session closed" in log.read_text(), 60,
               "the job of the closed session kept running")


def test_runs_page(page, server):
    go(page, server, "runs", "Start a pre-training on this machine")
    drawn(page, LONG)
    page.screenshot(path=SHOTS / "runs.png", full_page=True)

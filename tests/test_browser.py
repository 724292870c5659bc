"""The app in a real headless Chromium (Debian's, driven by Playwright): every page opens,
a slider moved with the keyboard redraws the projection, a bad upload gets a message, a short
learning run finishes with the shipped plain encoder's score beside it. Screenshots go to
$AMORTINV_SCREENSHOTS (default tests/artifacts)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path(os.environ.get("AMORTINV_SCREENSHOTS", ROOT / "tests" / "artifacts"))
LONG = 180_000  # ms: a cold 2-core machine computes features and compiles UMAP meanwhile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `make test` (it installs it) or "
                    "`apt-get install chromium`")
    port = free_port()
    env = {**os.environ, "AMORTINV_RUNS": str(tmp_path_factory.mktemp("runs"))}
    # The server's output goes to a file: an unread pipe fills up and blocks the server.
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
         "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start: " + log_path.read_text()[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Open the entry page first, as a user does: until one session has run
        # st.navigation, Streamlit serves deep links from pages/ the legacy way.
        page.goto(server)
        expect(page.get_by_text("What the vector switches on")).to_be_visible(timeout=LONG)
        yield page
        browser.close()


def idle(page) -> None:
    """Wait until the app has finished running its script (no 'Running…' status)."""
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=LONG)


def test_home(page, server):
    page.goto(server)
    expect(page.get_by_text("What the vector switches on")).to_be_visible(timeout=LONG)
    idle(page)
    expect(page.get_by_text("Encoder card")).to_be_visible()
    page.screenshot(path=SHOTS / "home.png", full_page=True)


def test_probe_slider_redraws_the_projection(page, server):
    page.goto(f"{server}/probe")
    expect(page.get_by_text("Features at")).to_be_visible(timeout=LONG)
    idle(page)
    chart = page.locator(".js-plotly-plot").first
    before = chart.screenshot()
    caption = page.get_by_text("Features at").inner_text()
    slider = page.get_by_role("slider").first
    slider.focus()
    page.keyboard.press("ArrowLeft")
    first_group = caption.split("Features at ")[1].split(" ")[0]
    expect(page.get_by_text(f"Features at {first_group} 0.95")).to_be_visible(timeout=LONG)
    idle(page)
    assert chart.screenshot() != before
    page.screenshot(path=SHOTS / "probe.png", full_page=True)


def test_invariance_map(page, server):
    page.goto(f"{server}/map")
    expect(page.get_by_text("Score over two groups")).to_be_visible(timeout=LONG)
    idle(page)
    expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=LONG)
    page.screenshot(path=SHOTS / "map.png", full_page=True)


def test_learning_page_rejects_a_bad_upload_and_learns(page, server, tmp_path):
    page.goto(f"{server}/learn")
    expect(page.get_by_text("Downstream task")).to_be_visible(timeout=LONG)
    idle(page)
    page.get_by_text("upload a zip").click()
    bad = tmp_path / "photos.zip"
    bad.write_bytes(b"this is not a zip archive")
    page.locator("input[type=file]").set_input_files(str(bad))
    expect(page.get_by_text("This upload cannot be used")).to_be_visible(timeout=LONG)
    page.get_by_text("from the registry").click()
    idle(page)
    steps = page.get_by_label("steps", exact=True)
    steps.fill("20")
    steps.press("Enter")
    idle(page)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("learned vector vs fixed corners")).to_be_visible(timeout=LONG)
    # The shipped plain encoder (same data, same budget) is scored next, as a bar.
    expect(page.get_by_text("and the plain encoder")).to_be_visible(timeout=LONG)
    page.screenshot(path=SHOTS / "learn.png", full_page=True)
    # Stop the scoring of the remaining corners, as a user leaving the page would: on a
    # 2-core machine it would otherwise keep both cores busy under the next test.
    page.get_by_role("button", name="Stop", exact=True).last.click()  # not the header's
    expect(page.get_by_text(", done (")).to_be_visible(timeout=LONG)


def test_runs_page(page, server):
    page.goto(f"{server}/runs")
    expect(page.get_by_text("Start a pre-training on this machine")).to_be_visible(
        timeout=LONG)
    idle(page)
    page.screenshot(path=SHOTS / "runs.png", full_page=True)

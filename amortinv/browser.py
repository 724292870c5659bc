"""Serve the app as ``make run`` does and drive it in a real browser (tests, benchmarks).

Debian's Chromium, driven by Playwright (a dev requirement), without Playwright's own browser
download. The networking flags matter on a closed network: without them Chromium stalls on
connections nobody answers.

    >>> with serve() as url, browser() as page:          # doctest: +SKIP
    ...     page.goto(url)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(log: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[str]:
    """Start the app as ``make run`` does (``python -m amortinv.serve``) from the project
    folder, so ``.streamlit/config.toml`` applies; yield its URL once healthy; stop it
    afterwards.
    The server's output goes to ``log`` (an unread pipe would fill up and block it)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amortinv.serve", "--server.port", str(port)],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log, timeout)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the app did not start: " + log.read_text()[-2000:])


@contextlib.contextmanager
def browser(width: int = 1400, height: int = 1600):
    """A Playwright page in headless Debian Chromium."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is missing: run `make test` (it installs it) "
                           "or `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=list(FLAGS))
        try:
            yield chromium.new_page(viewport={"width": width, "height": height})
        finally:
            chromium.close()


def idle(page, timeout_ms: float = 180_000) -> None:
    """Wait until the app has finished running its script (no 'Running…' status widget)."""
    from playwright.sync_api import expect

    page.wait_for_timeout(150)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout_ms)


#: A JavaScript predicate: every image has loaded (none pending, none broken) and every table
#: (Streamlit's data grid, drawn on a canvas once its code has loaded) has its canvas.
DRAWN = """() => [...document.images].every(i => i.complete && i.naturalWidth > 0)
  && [...document.querySelectorAll('[data-testid="stDataFrame"]')].every(
       d => d.querySelector('canvas[data-testid="data-grid-canvas"]'))"""


def drawn(page, timeout_ms: float = 180_000) -> None:
    """Wait until the page is idle (:func:`idle`) and what it shows is drawn: its images
    loaded, its tables on their canvas (a screenshot taken sooner has grey boxes there)."""
    idle(page, timeout_ms)
    page.wait_for_function(DRAWN, timeout=timeout_ms)


#: A JavaScript expression: a fingerprint of the first Plotly chart's data (or null).
PLOT_SIGNATURE = """() => {
  const el = document.querySelector('.js-plotly-plot');
  const data = el && el._fullData;
  if (!data || !data.length) return null;
  const t = data[0];
  return [data.length, t.x && t.x.length, t.x && t.x[0], t.y && t.y[0]].join('|');
}"""


def plot_signature(page) -> str | None:
    return page.evaluate(PLOT_SIGNATURE)

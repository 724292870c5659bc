"""Benchmark: what a user waits for, in a real browser, with the app served as `make run` does.

Starts the app as `make run` does (`python -m amortinv.serve` from the project folder, so
.streamlit/config.toml applies) on a fresh server, opens Debian's Chromium (Playwright) and times:

- first_page_s: from opening the address to Home drawn (card and preview) and idle;
- pages: each page opened from the sidebar, cold (first visit after the server started) and
  warm (again, later), until its content is drawn and the script is idle;
- slider -> plot: a slider on Probe features moved with the keyboard to a vector not seen
  before, until the "Features at ..." caption shows it, the chart's data changed and the
  script is idle; the median of --moves moves, with PCA and with UMAP;
- learn_s: Learn invariances on the default task (the encoder's own dataset) with default
  settings, from Start to the final comparison (every corner, plain, raw) drawn.

    python scripts/bench_browser.py [--moves 8] [--out docs/results/bench-browser.json]

Prints one JSON object. Run it on an idle machine: `uptime` before and after is recorded.
Targets (2-core CPU): slider -> plot median <= 0.8 s (PCA), <= 2 s (UMAP); first page <= 3 s;
every page ready <= 10 s cold; learning 5,000 examples with the full comparison <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from amortinv.browser import browser, idle, plot_signature, serve

LONG = 300_000  # ms
#: Text that shows a page is drawn (with the script idle), per page title in the sidebar.
PAGES = {
    "Home": "What the vector switches on",
    "Learn invariances": "Downstream task",
    "Probe features": "Features at",
    "Invariance map": "Score as one group moves",
    "Pre-training runs": "Start a pre-training on this machine",
}


def timed(action, ready) -> float:
    start = time.perf_counter()
    action()
    ready()
    return round(time.perf_counter() - start, 3)


def open_page(page, title: str) -> float:
    from playwright.sync_api import expect

    def ready():
        expect(page.get_by_text(PAGES[title]).first).to_be_visible(timeout=LONG)
        if title == "Home":
            expect(page.get_by_test_id("stImage").first).to_be_visible(timeout=LONG)
        if title in ("Probe features", "Invariance map"):
            page.wait_for_function("() => document.querySelector('.js-plotly-plot')",
                                   timeout=LONG)
        idle(page, LONG)

    link = page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True)
    return timed(link.click, ready)


def slider_moves(page, moves: int, start_at: int) -> list[float]:
    """Move the sliders in turn one step left: each move makes a vector not seen before."""
    from playwright.sync_api import expect

    sliders = page.get_by_role("slider")
    count = sliders.count()
    times = []
    for move in range(start_at, start_at + moves):
        slider = sliders.nth(move % count)
        slider.focus()
        value, group = float(slider.input_value()), slider.get_attribute("aria-label")
        before = plot_signature(page)
        expected = f"{group} {value - 0.05:.2f}"

        def ready(expected=expected, before=before):
            expect(page.get_by_text(expected, exact=False).first).to_be_visible(timeout=LONG)
            page.wait_for_function(f"() => ({_signature_js()})() !== {json.dumps(before)}",
                                   timeout=LONG)
            idle(page, LONG)

        times.append(timed(lambda: page.keyboard.press("ArrowLeft"), ready))
    return times


def _signature_js() -> str:
    from amortinv.browser import PLOT_SIGNATURE

    return PLOT_SIGNATURE


def learn(page) -> tuple[float, dict]:
    from playwright.sync_api import expect

    open_page(page, "Learn invariances")
    start = page.get_by_role("button", name="Start")

    def ready():
        expect(page.get_by_text("everything scored in")).to_be_visible(timeout=LONG)
        idle(page, LONG)

    seconds = timed(start.click, ready)
    text = page.get_by_text("everything scored in").inner_text()
    return seconds, {"status": text.strip()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=8, help="slider moves per projection")
    parser.add_argument("--skip-learning", action="store_true")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "streamlit.log"
        with serve(log, env={"AMORTINV_RUNS": str(Path(tmp) / "runs")}) as url, \
                browser() as page:
            from playwright.sync_api import expect

            def home_ready():
                expect(page.get_by_text(PAGES["Home"])).to_be_visible(timeout=LONG)
                expect(page.get_by_test_id("stImage").first).to_be_visible(timeout=LONG)
                idle(page, LONG)

            first = timed(lambda: page.goto(url), home_ready)
            cold = {title: open_page(page, title) for title in PAGES if title != "Home"}
            warm = {title: open_page(page, title) for title in PAGES}
            open_page(page, "Probe features")
            pca = slider_moves(page, args.moves, 0)
            page.get_by_text("UMAP (stable layout)").click()
            expect(page.get_by_text("UMAP is still warming up")).to_have_count(0, timeout=LONG)
            idle(page, LONG)
            umap = slider_moves(page, args.moves + 1, args.moves)[1:]  # the first builds it
            learned = learn(page) if not args.skip_learning else (None, {})
            storms = log.read_text().count("Inotify queue overflowed")
    result = {
        "first_page_s": first, "pages_cold_s": cold, "pages_warm_s": warm,
        "slider_pca_median_s": round(statistics.median(pca), 3), "slider_pca_s": pca,
        "slider_umap_median_s": round(statistics.median(umap), 3), "slider_umap_s": umap,
        "learn_s": learned[0], **learned[1], "watcher_overflows": storms,
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: what a user waits for, in a real browser, with the app served as `make run` does.

Starts the app as `make run` does (`python -m amortinv.serve` from the project folder, so
.streamlit/config.toml applies) on a fresh server, opens Debian's Chromium (Playwright) and times:

- first_page_s: from opening the address to Home drawn (card and preview) and idle;
- pages: each page opened from the sidebar, cold (first visit after the server started) and
  warm (again, later), until its content is drawn and the script is idle;
- slider -> plot: a slider on Probe features moved with the keyboard to a vector not seen
  before, until the "Features at ..." caption shows it and the chart's data changed; the
  median of --moves moves, with PCA and with UMAP (``*_settled``: until the script is idle
  too, the kNN and linear-probe figures beside the chart drawn);
- learn_s: Learn invariances on the default task (the encoder's own dataset) with default
  settings, from Start to the final comparison (every corner, plain, raw) drawn; selected_s:
  from Start to the selected vector's test score drawn (its bar), the suite's "s to
  selected" as a user meets it (the corners' test scores and the baselines come after);
  learn_again_s (``--again``): Start pressed once more, the same task and settings, whose
  corners the server kept from the first job.

    python scripts/bench_browser.py [--moves 8] [--out docs/results/bench-browser.json]
    python scripts/bench_browser.py --only-learning     # Learn alone, printed, not written
    python scripts/bench_browser.py --only-learning --again   # then Learn again (learn_again_s)

Prints one JSON object, with the encoder the app opened on (``encoder``, from Home's card).
Run it on an idle machine: `uptime` before and after is recorded.
Targets (2-core CPU): slider -> plot median <= 0.8 s (PCA), <= 2 s (UMAP); first page <= 3 s;
every page ready <= 10 s cold; learning 5,000 examples, selection included, <= 60 s
(selected_s; learn_s is the whole comparison).
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
from amortinv.cli import positive_int

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


def slider_moves(page, moves: int, start_at: int) -> tuple[list[float], list[float]]:
    """Move the sliders in turn one step left: each move makes a vector not seen before.
    Returns the seconds until the plot shows it (the caption names the new vector and the
    chart's data changed) and until the page has settled (the script idle: the kNN and
    linear-probe figures beside the chart are drawn after it)."""

    sliders = page.get_by_role("slider")
    count = sliders.count()
    plotted, settled = [], []
    for move in range(start_at, start_at + moves):
        slider = sliders.nth(move % count)
        slider.focus()
        value, group = float(slider.input_value()), slider.get_attribute("aria-label")
        before = plot_signature(page)
        expected = f"{group} {value - 0.05:.2f}"
        # One check polled on every animation frame (Playwright's expect() retries after 100,
        # 250, 500 and 1,000 ms, which would round the times up to those steps).
        shown = (f"() => document.body.innerText.includes({json.dumps(expected)})"
                 f" && ({_signature_js()})() !== {json.dumps(before)}")
        start = time.perf_counter()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(shown, timeout=LONG)
        plotted.append(round(time.perf_counter() - start, 3))
        idle(page, LONG)
        settled.append(round(time.perf_counter() - start, 3))
    return plotted, settled


def _signature_js() -> str:
    from amortinv.browser import PLOT_SIGNATURE

    return PLOT_SIGNATURE


#: A JavaScript predicate: the Learn page's comparison has the selected vector's test score
#: (its bar, "selected (...)", is drawn once that score is in).
SELECTED_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
  (el._fullData || []).some(t => Array.from(t.y || [], String).some(
    y => y.startsWith('selected ('))))"""


def learn(page, again: bool = False) -> tuple[float, dict]:
    """Learn with the page's defaults, from Start to the whole comparison drawn; ``again``:
    press Start once more on the page as the last job left it (the server keeps that job's
    corners: ``amortinv.workers.KEPT``). The status holds ``selected_s``: from Start to the
    selected vector's test score drawn (the suite's "s to selected", served)."""
    from playwright.sync_api import expect

    if not again:
        open_page(page, "Learn invariances")
    start = page.get_by_role("button", name="Start", exact=True)
    began = time.perf_counter()
    start.click()
    if again:  # the last job's line and bars first go, then the new job's come
        expect(page.get_by_text("everything scored in")).to_have_count(0, timeout=LONG)
        page.wait_for_function(f"() => !({SELECTED_DRAWN})()", timeout=LONG, polling=100)
    page.wait_for_function(SELECTED_DRAWN, timeout=LONG, polling=100)
    selected = round(time.perf_counter() - began, 3)
    expect(page.get_by_text("everything scored in")).to_be_visible(timeout=LONG)
    idle(page, LONG)
    seconds = round(time.perf_counter() - began, 3)
    text = page.get_by_text("everything scored in").inner_text()
    spent = page.get_by_text("Where the time went").inner_text()
    return seconds, {"selected_s": selected, "status": text.strip(), "stages": spent.strip()}


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
    parser.add_argument("--moves", type=positive_int, default=8, help="slider moves per projection")
    parser.add_argument("--skip-learning", action="store_true")
    parser.add_argument("--only-learning", action="store_true",
                        help="open Home, then time Learn alone (no pages, no sliders)")
    parser.add_argument("--again", action="store_true",
                        help="with --only-learning: then Learn again, the same task and "
                             "settings (learn_again_s)")
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
            encoder = page.locator("li", has_text="file:").first.inner_text()
            if args.only_learning:
                seconds, status = learn(page)
                found = {"learn_s": seconds, **status}
                if args.again:
                    seconds, status = learn(page, again=True)
                    found |= {"learn_again_s": seconds,
                              **{f"again_{k}": v for k, v in status.items()}}
                print(json.dumps({**found, "encoder": encoder.split(":", 1)[1].strip(),
                                  "load_before": [round(x, 2) for x in load_before]}))
                return
            cold = {title: open_page(page, title) for title in PAGES if title != "Home"}
            warm = {title: open_page(page, title) for title in PAGES}
            open_page(page, "Probe features")
            pca, pca_settled = slider_moves(page, args.moves, 0)
            page.get_by_text("UMAP (stable layout)").click()
            expect(page.get_by_text("UMAP is still warming up")).to_have_count(0, timeout=LONG)
            idle(page, LONG)
            umap, umap_settled = (t[1:] for t in slider_moves(page, args.moves + 1, args.moves))
            # (the first UMAP move builds the layout)
            learned = learn(page) if not args.skip_learning else (None, {})
            storms = log.read_text().count("Inotify queue overflowed")
    result = {
        "first_page_s": first, "pages_cold_s": cold, "pages_warm_s": warm,
        "slider_pca_median_s": round(statistics.median(pca), 3), "slider_pca_s": pca,
        "slider_pca_settled_median_s": round(statistics.median(pca_settled), 3),
        "slider_umap_median_s": round(statistics.median(umap), 3), "slider_umap_s": umap,
        "slider_umap_settled_median_s": round(statistics.median(umap_settled), 3),
        "learn_s": learned[0], **learned[1], "watcher_overflows": storms,
        "encoder": encoder.split(":", 1)[1].strip(),
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

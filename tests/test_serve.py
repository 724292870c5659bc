"""`make run`'s launcher: streamlit run app.py, with the pages' libraries imported first."""

import subprocess
import sys

import streamlit.web.cli

from amortinv import serve


def test_the_launcher_runs_streamlit_on_the_app_with_the_options_given(monkeypatch):
    seen = {}

    def fake_main(prog_name):
        seen["argv"], seen["prog"] = list(sys.argv), prog_name
        return 0

    monkeypatch.setattr(streamlit.web.cli, "main", fake_main)
    monkeypatch.setattr("amortinv.projection.warm_up_umap", lambda: seen.setdefault("umap", 1))
    monkeypatch.setattr(sys, "argv", ["serve"])
    assert serve.main(["--server.port", "8765"]) == 0
    assert seen["argv"] == ["streamlit", "run", str(serve.APP), "--server.port", "8765"]
    assert seen["prog"] == "streamlit" and seen["umap"] == 1
    assert serve.APP.name == "app.py" and serve.APP.exists()


def test_preloading_imports_the_heavy_libraries_but_not_the_apps_caches():
    # amortinv.ui makes Streamlit caches when imported: outside a running server they would
    # be made without one, so it is left to the first page.
    code = ("import importlib, sys; from amortinv import serve\n"
            "for m in serve.PRELOAD: importlib.import_module(m)\n"
            "print(sorted(m for m in ('torch', 'plotly', 'amortinv.downstream', 'amortinv.ui')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['amortinv.downstream', 'plotly', 'torch']"

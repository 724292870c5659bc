"""Serve the app: ``python -m amortinv.serve [streamlit options]``, what ``make run`` does.

The same server as ``streamlit run app.py`` (same ``.streamlit/config.toml``, same options),
started so that the first visitor does not wait for imports: Streamlit runs every page in the
server's own process, so the libraries the pages need (torch and its dynamo, plotly, the
models, the downstream code: about 3 s on 2 cores) and umap-learn (2 s more) are imported here
while the server starts, and UMAP's one-off compilation begins in the background
(:func:`amortinv.projection.warm_up_umap`).
``amortinv.ui`` and the pages are left to the first run: Streamlit's caches are made when a
script first runs inside the server.

    python -m amortinv.serve --server.port 8501
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"

#: What every page imports, in the order it costs (torch first).
#: ``torch._dynamo`` too: torch imports it when the first optimiser is made (its constructor
#: is wrapped to keep dynamo out), which is the first Learn job's or Probe readout's: 2 s on a
#: 2-core AVX2 CPU, 1 s on a Xeon.
PRELOAD = ("torch", "torch._dynamo", "plotly.graph_objects", "amortinv.models",
           "amortinv.checkpoint", "amortinv.data", "amortinv.augment", "amortinv.charts",
           "amortinv.downstream", "amortinv.workers", "amortinv.invariance_scores",
           "amortinv.data.uploads")


def main(argv: list[str] | None = None) -> int:
    for name in PRELOAD:
        importlib.import_module(name)
    from amortinv.projection import warm_up_umap

    warm_up_umap()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())

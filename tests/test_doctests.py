"""Every docstring example in the library runs (doctest), so what the docs show stays true.

Examples that need a file this project cannot ship (the paper's released checkpoints) are
marked ``# doctest: +SKIP`` in place, with the reason beside them."""

import doctest
import importlib
import io
import pkgutil
from pathlib import Path

import pytest

import amortinv

ROOT = Path(__file__).resolve().parents[1]
#: Streamlit's page helpers: importing them outside a running app is not their use, and they
#: hold no examples.
NOT_RUN = {"amortinv.ui"}
MODULES = sorted(m.name for m in pkgutil.walk_packages(amortinv.__path__, "amortinv.")
                 if m.name not in NOT_RUN)


def test_the_walk_finds_the_modules_with_examples():
    assert {"amortinv.readout", "amortinv.checkpoint", "amortinv.settings",
            "amortinv.data.channels", "amortinv.models.encoder"} <= set(MODULES)


@pytest.mark.parametrize("name", ["amortinv", *MODULES])
def test_docstring_examples_run(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name checkpoints/ relative to the project
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in finder.find(module, name):
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()

import pytest

from amortinv.data import registry


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A private, empty data folder: nothing decoded or rendered yet."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path))
    registry.forget()
    yield tmp_path
    registry.forget()

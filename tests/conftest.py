import os

import pytest

from amortinv.data import registry

_skipped_in_ci: list[str] = []


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A private, empty data folder: nothing decoded or rendered yet."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path))
    registry.forget()
    yield tmp_path
    registry.forget()


def pytest_runtest_logreport(report):
    # Tests skip where a data package is missing on a user's machine; CI installs everything,
    # so there a skip means the set-up missed something and must fail the run.
    if os.environ.get("CI") and report.skipped:
        _skipped_in_ci.append(f"{report.nodeid}: {report.longrepr[-1]}")


def pytest_sessionfinish(session, exitstatus):
    if _skipped_in_ci:
        print("\nCI must run every test, but these were skipped:")
        print("\n".join(f"  {line}" for line in _skipped_in_ci))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def script():
    """``script("downstream")``: a module of ``scripts/``, imported to call its ``main``."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_script", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def mirror_encoder():
    """``mirror_encoder(size)``: an encoder whose features have known invariance: the image
    blended with its mirror image by the flip value (flip=1 gives a left-right symmetric,
    flip-invariant image; flip=0 the image as is); the other groups have no effect at all."""
    from torch import nn

    from amortinv.invariance import GREY
    from amortinv.models import Encoder, ModelConfig

    class MirrorMix(nn.Module):
        def forward(self, x, invariance):
            w = invariance[GREY.names.index("flip")] / 2
            return ((1 - w) * x + w * x.flip(-1)).flatten(1)

    def make(size: int = 28) -> Encoder:
        enc = Encoder(ModelConfig(in_channels=1, image_size=size, width=4, bases=2), GREY)
        enc.backbone, enc.feature_dim = MirrorMix(), size * size
        return enc

    return make

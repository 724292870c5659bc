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


def pytest_collection_modifyitems(config, items):
    # GPU tests (marker `gpu`, tests/test_gpu.py) run where CUDA is, outside CI. Elsewhere they
    # are deselected, not skipped: CI fails on skips. The dry run of `make gpu` runs them on the
    # CPU (AMORTINV_GPU_TESTS_ON_CPU=1) so that the GPU slice is never their first run.
    if os.environ.get("AMORTINV_GPU_TESTS_ON_CPU") == "1":
        return
    import torch

    if torch.cuda.is_available() and not os.environ.get("CI"):
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


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
    import sys
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_script", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def interrupted_then_resumed():
    """``interrupted_then_resumed(out, settings)``: the smoke run of ``settings`` stopped
    during step 5 (last checkpoint: step 3), then resumed to its end; returns the resumed
    Trainer. ``break_resume(trainer)`` may tamper with the resumed one first."""
    from amortinv.pretrain import Trainer, preset

    def run(out, settings: dict, break_resume=None):
        first = Trainer(preset("smoke", out=str(out), **settings))
        honest = first.train_step

        def killed_at_step_5():
            if first.step == 4:
                raise KeyboardInterrupt
            return honest()

        first.train_step = killed_at_step_5
        with pytest.raises(KeyboardInterrupt):
            list(first.run())
        resumed = Trainer(preset("smoke", out=str(out), resume=True, **settings))
        if break_resume:
            break_resume(resumed)
        list(resumed.run())
        return resumed

    return run


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

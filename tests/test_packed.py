"""Packed datasets: the arrays that travel to a machine without the sources (make gpu-data)."""

import numpy as np
import pytest

import amortinv.data as data
from amortinv.data import Split, Splits, registry
from amortinv.data.__main__ import main as data_cli
from amortinv.data.packed import packed_path, read_packed, write_packed

RATE = 16000


def test_images_travel_bit_for_bit_and_the_registry_reads_them_first(fresh_cache):
    original = data.get("sklearn-digits")
    assert data_cli(["pack", "sklearn-digits", "--into", str(fresh_cache)]) == 0
    path = packed_path("sklearn-digits")  # in the data folder itself
    assert path.stat().st_size < 0.5 * original.train.x.nbytes  # compressed
    for cached in (fresh_cache / "cache").glob("sklearn-digits*"):
        cached.unlink()
    registry.forget()
    packed = data.get("sklearn-digits")
    assert data.info("sklearn-digits").packed()
    assert not list((fresh_cache / "cache").glob("sklearn-digits*"))  # neither decoded nor cached
    np.testing.assert_array_equal(packed.train.x, original.train.x)
    np.testing.assert_array_equal(packed.test.y, original.test.y)
    assert packed.class_names == original.class_names


def test_a_packed_dataset_loads_where_its_source_is_missing(fresh_cache):
    @registry.register("test-packed-only", modality="image", target_kind="classification",
                       description="a source this machine lacks",
                       requires=("/nonexistent/amortinv/source",), hint="not installable")
    def _loader():  # pragma: no cover - never called: the packed arrays are read
        raise AssertionError("must not be called")

    rng = np.random.default_rng(0)
    splits = Splits(Split(rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8),
                          np.arange(20, dtype=np.int64) % 2),
                    Split(rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8),
                          np.arange(6, dtype=np.int64) % 2), ("a", "b"))
    try:
        assert not registry.info("test-packed-only").available()
        write_packed(packed_path("test-packed-only"), splits)
        assert "test-packed-only" in data.names()
        ds = data.get("test-packed-only")
        np.testing.assert_array_equal(ds.train.x, splits.train.x)
        assert ds.class_names == ("a", "b")
    finally:
        registry._REGISTRY.pop("test-packed-only")
        registry.forget()


def test_audio_travels_as_16_bit_pcm(tmp_path):
    t = np.arange(RATE) / RATE
    rng = np.random.default_rng(0)
    broadband = (0.3 * rng.standard_normal((4, RATE))).clip(-1, 1).astype(np.float32)
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)[None].repeat(4, 0)).astype(np.float32)
    labels = np.zeros(4, dtype=np.int64)
    for x, rate, tolerance in ((broadband, RATE, 2e-5),  # 16 kHz: quantisation only
                               (tone, 8000, 2e-3)):  # 8 kHz: a 440 Hz tone loses nothing
        path = write_packed(tmp_path / f"{rate}.npz",
                            Splits(Split(x, labels), Split(x[:2], labels[:2]), ("a",)),
                            sample_rate=RATE, rate=rate)
        back = read_packed(path)
        assert back.train.x.dtype == np.float32 and back.train.x.shape == x.shape
        inner = slice(400, -400)  # the resampling filter's edges
        assert np.abs(back.train.x[:, inner] - x[:, inner]).max() <= tolerance, rate
    assert path.stat().st_size < 0.4 * tone.nbytes


def test_pack_limits_and_refuses_unknown_names(fresh_cache, tmp_path, capsys):
    into = tmp_path / "pack"
    assert data_cli(["pack", "sklearn-digits", "--into", str(into), "--limit", "50"]) == 0
    packed = read_packed(packed_path("sklearn-digits", into))
    assert len(packed.train) == len(packed.test) == 50
    assert len(np.unique(packed.train.y)) == 10  # evenly spread, not the first 50
    assert data_cli(["pack", "no-such-dataset", "--into", str(into)]) == 1
    assert "unknown dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_cli(["pack", "sklearn-digits"])  # --into is required

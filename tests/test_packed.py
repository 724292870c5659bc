"""Packed datasets: the arrays that travel to a machine without the sources (make gpu-data)."""

import numpy as np
import pytest

import amortinv.data as data
from amortinv.data import Split, Splits, registry
from amortinv.data.__main__ import main as data_cli
from amortinv.data.packed import AudioPacking, packed_path, read_packed, write_packed

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


def test_audio_codecs_and_rates(tmp_path):
    t = np.arange(RATE) / RATE
    rng = np.random.default_rng(0)
    speechlike = (0.3 * rng.standard_normal((4, RATE)) * np.sin(2 * np.pi * 3 * t)
                  ).clip(-1, 1).astype(np.float32)
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)[None].repeat(4, 0)).astype(np.float32)
    labels = np.zeros(4, dtype=np.int64)

    def round_trip(x, packing):
        path = write_packed(tmp_path / "x.npz",
                            Splits(Split(x, labels), Split(x[:2], labels[:2]), ("a",)),
                            sample_rate=RATE, train=packing)
        back = read_packed(path).train.x
        assert back.dtype == np.float32 and back.shape == x.shape
        inner = slice(400, -400)  # away from the resampling filter's edges
        error = back[:, inner] - x[:, inner]
        return np.sqrt((error**2).mean() / (x[:, inner] ** 2).mean()), path.stat().st_size

    pcm16, pcm16_size = round_trip(speechlike, AudioPacking("pcm16"))
    mulaw8, mulaw8_size = round_trip(speechlike, AudioPacking("mulaw8"))
    assert pcm16 < 1e-4 and mulaw8 < 0.03  # relative RMS error
    assert mulaw8_size < 0.7 * pcm16_size
    at_8k, _ = round_trip(tone, AudioPacking("pcm16", 8000))
    assert at_8k < 5e-3  # a band-limited source keeps all but the filter ripple at 8 kHz


def test_audio_packs_its_training_split_small_and_its_test_split_exact(fresh_cache, tmp_path):
    rng = np.random.default_rng(1)
    waves = (0.2 * rng.standard_normal((30, RATE))).clip(-1, 1).astype(np.float32)
    labels = np.arange(30, dtype=np.int64) % 3

    @registry.register("test-audio-pack", modality="audio", target_kind="classification",
                       description="synthetic clips", sample_rate=RATE)
    def _loader():
        return Splits(Split(waves[:20], labels[:20]), Split(waves[20:], labels[20:]),
                      ("a", "b", "c"))

    try:
        assert data_cli(["pack", "test-audio-pack", "--into", str(tmp_path)]) == 0
        path = packed_path("test-audio-pack", tmp_path)
        with np.load(path) as z:
            assert (str(z["train_codec"]), str(z["test_codec"])) == ("mulaw8", "pcm16")
        back = read_packed(path)
        assert np.abs(back.test.x - waves[20:]).max() < 2e-5
        assert np.abs(back.train.x - waves[:20]).max() < 0.05
    finally:
        registry._REGISTRY.pop("test-audio-pack")
        registry.forget()


def test_pack_limits_and_refuses_unknown_names(fresh_cache, tmp_path, capsys):
    into = tmp_path / "pack"
    assert data_cli(["pack", "sklearn-digits", "--into", str(into), "--limit", "50"]) == 0
    packed = read_packed(packed_path("sklearn-digits", into))
    assert len(packed.train) == len(packed.test) == 50
    assert len(np.unique(packed.train.y)) == 10  # evenly spread, not the first 50
    capsys.readouterr()
    assert data_cli(["pack", "sklearn-digits", "sklearn-digits", "--into", str(into),
                     "--limit", "50"]) == 0
    assert capsys.readouterr().out.count("sklearn-digits:") == 1  # a name given twice: once
    assert data_cli(["pack", "no-such-dataset", "--into", str(into)]) == 1
    assert "unknown dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_cli(["pack", "sklearn-digits"])  # --into is required


def test_pack_keeps_what_fits_in_its_budget(fresh_cache, tmp_path, capsys):
    whole = tmp_path / "whole"
    assert data_cli(["pack", "sklearn-digits", "--into", str(whole)]) == 0
    size_mb = packed_path("sklearn-digits", whole).stat().st_size / 2**20
    part = tmp_path / "part"
    assert data_cli(["pack", "sklearn-digits", "--into", str(part), "--max-mb",
                     str(0.6 * size_mb)]) == 0
    packed = read_packed(packed_path("sklearn-digits", part))
    full = data.get("sklearn-digits")
    assert packed_path("sklearn-digits", part).stat().st_size <= 0.6 * size_mb * 2**20
    assert len(packed.test) == len(full.test)  # the test split stays whole
    assert 0.3 * len(full.train) < len(packed.train) < 0.7 * len(full.train)
    assert "what fits" in capsys.readouterr().out
    assert data_cli(["pack", "sklearn-digits", "--into", str(tmp_path / "none"), "--max-mb",
                     "0.001"]) == 1  # not even its test split fits
    before = packed_path("sklearn-digits", whole).read_bytes()
    assert data_cli(["pack", "sklearn-digits", "--into", str(whole), "--max-mb",
                     "0.001"]) == 1  # and an earlier pack of it stays as it was
    assert packed_path("sklearn-digits", whole).read_bytes() == before
    assert [p.name for p in packed_path("sklearn-digits", whole).parent.iterdir()] == [
        "sklearn-digits.npz"]
    for bad in (["--limit", "-5"], ["--max-mb", "nan"], ["--max-mb", "-1"]):
        assert data_cli(["pack", "sklearn-digits", "--into", str(tmp_path / "bad"), *bad]) == 2
    assert not (tmp_path / "bad").exists()

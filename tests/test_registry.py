import time

import numpy as np
import pytest

import amortinv.data as data
from amortinv.data import Split, Splits, registry

needs_fashion = pytest.mark.skipif(
    not registry.is_available("fashion-mnist"),
    reason="Fashion-MNIST missing: run `make test` (installs dataset-fashion-mnist)",
)


def test_sklearn_digits_is_always_there():
    assert "sklearn-digits" in data.names()
    ds = data.get("sklearn-digits")
    assert ds.modality == "image" and ds.target_kind == "classification" and ds.num_outputs == 10
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (1, 16, 16)
    assert len(ds.train) + len(ds.test) == 1797
    assert ds.description and ds.needs


@needs_fashion
def test_fashion_mnist_loads_real_data_and_caches(fresh_cache):
    start = time.perf_counter()
    ds = data.get("fashion-mnist")
    first = time.perf_counter() - start
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.class_names[9] == "Ankle boot"
    assert np.bincount(ds.test.y).tolist() == [1000] * 10
    assert list(fresh_cache.glob("cache/fashion-mnist-*.npz"))
    registry.forget()
    start = time.perf_counter()
    again = data.get("fashion-mnist")
    assert np.array_equal(again.train.x, ds.train.x) and np.array_equal(again.test.y, ds.test.y)
    print(f"fashion-mnist first load {first:.2f}s, cached {time.perf_counter() - start:.2f}s")


def test_validation_split_is_carved_from_train_stratified_and_seeded():
    ds = data.get("sklearn-digits")
    train, val = ds.validation_split(0.2, seed=1)
    assert len(train) + len(val) == len(ds.train)
    counts = np.bincount(val.y, minlength=10) / np.bincount(ds.train.y, minlength=10)
    assert np.allclose(counts, 0.2, atol=0.03)
    again = ds.validation_split(0.2, seed=1)[1]
    assert np.array_equal(again.x, val.x)
    assert not np.array_equal(ds.validation_split(0.2, seed=2)[1].y, val.y)
    with pytest.raises(ValueError, match="fraction"):
        ds.validation_split(1.5)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(data.UnknownDataset) as err:
        data.get("fashion-mnis")
    assert "Did you mean fashion-mnist" in str(err.value)
    assert "folder:" in str(err.value)


def test_missing_source_says_how_to_get_it(fresh_cache):
    @registry.register("test-missing-source", modality="image", target_kind="classification",
                       description="a source that is not installed",
                       requires=("/nonexistent/amortinv/source",),
                       hint="Install it with `apt-get install imaginary-package`.")
    def _loader():  # pragma: no cover - never called
        raise AssertionError("must not be called")

    try:
        assert "test-missing-source" not in data.names()
        assert "test-missing-source" in data.names(available=False)
        with pytest.raises(data.DatasetUnavailable, match="apt-get install imaginary-package"):
            data.get("test-missing-source")
    finally:
        registry._REGISTRY.pop("test-missing-source")


def test_loaders_that_break_conventions_are_refused(fresh_cache):
    bad = Splits(Split(np.zeros((4, 3, 8, 8), np.float32), np.zeros(4, np.int64)),
                 Split(np.zeros((2, 3, 8, 8), np.uint8), np.zeros(2, np.int64)), ("a",))
    empty = Splits(Split(np.zeros((0, 1, 8, 8), np.uint8), np.zeros(0, np.int64)),
                   Split(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64)), ("a",))
    noisy = np.zeros((4, 16000), np.float32)
    noisy[2, 7] = np.nan
    nan_audio = Splits(Split(noisy, np.zeros(4, np.int64)),
                       Split(np.zeros((2, 16000), np.float32), np.zeros(2, np.int64)), ("a",))
    for name, splits, message, modality in (
            ("test-float", bad, "uint8", "image"), ("test-empty", empty, "empty", "image"),
            ("test-nan", nan_audio, "train split: 1 clip.s. hold NaN", "audio")):
        registry.register(name, modality=modality, target_kind="classification",
                          description="x", cache=False)(lambda s=splits: s)
        try:
            with pytest.raises(ValueError, match=message):
                data.get(name)
        finally:
            registry._REGISTRY.pop(name)


def test_a_corrupt_cache_file_is_rebuilt(fresh_cache):
    data.get("sklearn-digits")
    (path,) = fresh_cache.glob("cache/sklearn-digits-*.npz")
    path.write_bytes(b"not a zip file")
    registry.forget()
    ds = data.get("sklearn-digits")
    assert len(ds.train) > 0 and path.stat().st_size > 1000


def test_every_available_dataset_declares_what_it_needs():
    for entry in registry.entries():
        assert entry.description, entry.name
        assert entry.hint or entry.kind == "source", entry.name
        if entry.kind == "derived":
            assert entry.needs, entry.name


def test_cli_lists_datasets(capsys):
    from amortinv.data.__main__ import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "sklearn-digits" in out and "classification" in out

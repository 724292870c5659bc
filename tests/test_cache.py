"""The on-disk cache of decoded data: built once, even when several ask at once; a torn file
is built again; what comes back is what was built."""

import os
import stat
import threading
import time

import numpy as np

from amortinv.data.cache import cache_path, cached, cached_arrays
from amortinv.data.dataset import Split, Splits


def counting_build(calls: list[int], seconds: float = 0.0):
    def build():
        calls.append(1)
        time.sleep(seconds)  # long enough for the others to ask meanwhile
        return {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "n": np.array(len(calls))}

    return build


def test_several_asking_at_once_wait_for_one_build(fresh_cache):
    calls: list[int] = []
    build = counting_build(calls, seconds=0.5)
    got: list[dict] = []
    users = [threading.Thread(target=lambda: got.append(cached_arrays("shared", build)))
             for _ in range(3)]  # three app sessions opening the same dataset
    for user in users:
        user.start()
    for user in users:
        user.join(30)
    assert len(calls) == 1 and len(got) == 3
    for arrays in got:
        np.testing.assert_array_equal(arrays["x"], np.arange(12).reshape(3, 4))
        assert int(arrays["n"]) == 1  # every one read the one build
    assert cached_arrays("shared", build)["x"].dtype == np.uint8 and len(calls) == 1


def test_a_torn_file_is_built_again(fresh_cache):
    calls: list[int] = []
    build = counting_build(calls)
    path = cache_path("torn")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 half a file")  # a write cut short
    assert int(cached_arrays("torn", build)["n"]) == 1 and len(calls) == 1
    assert int(cached_arrays("torn", build)["n"]) == 1 and len(calls) == 1  # now it reads


def test_splits_come_back_as_they_were_built(fresh_cache):
    rng = np.random.default_rng(0)
    splits = Splits(Split(rng.integers(0, 255, (5, 1, 4, 4), dtype=np.uint8), np.arange(5)),
                    Split(rng.integers(0, 255, (2, 1, 4, 4), dtype=np.uint8), np.arange(2)),
                    ("a", "b"))
    loads: list[int] = []
    first = cached("tiny", lambda: loads.append(1) or splits)
    again = cached("tiny", lambda: loads.append(1) or splits)
    assert len(loads) == 1 and again.class_names == ("a", "b")
    for got in (first, again):
        np.testing.assert_array_equal(got.train.x, splits.train.x)
        np.testing.assert_array_equal(got.test.y, splits.test.y)


def test_a_cache_file_is_readable_by_the_others_sharing_the_data_folder(fresh_cache):
    previous = os.umask(0o022)
    try:
        cached_arrays("shared-mode", counting_build([]))
    finally:
        os.umask(previous)
    path = cache_path("shared-mode")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # was mkstemp's private 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []

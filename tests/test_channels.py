import numpy as np
import pytest

from amortinv.data import Dataset, Split, adapt_channels, to_channels


def rgb_dataset() -> Dataset:
    x = np.zeros((4, 3, 2, 2), np.uint8)
    x[:, 0] = 255  # pure red
    return Dataset("reds", "image", "classification", Split(x, np.zeros(4, np.int64)),
                   Split(x[:2], np.zeros(2, np.int64)), "red squares", ("red",))


def test_colour_becomes_luminance_and_grey_becomes_three_equal_channels():
    grey = to_channels(rgb_dataset().train.x, 1)
    assert grey.shape == (4, 1, 2, 2) and grey.dtype == np.uint8
    assert (grey == 76).all()  # 0.299 * 255, as PIL's "L" mode gives
    colour = to_channels(grey, 3)
    assert colour.shape == (4, 3, 2, 2) and (colour == grey).all()


def test_adapting_a_dataset_says_what_it_did():
    data = rgb_dataset()
    same, note = adapt_channels(data, 3)
    assert same is data and note is None
    grey, note = adapt_channels(data, 1)
    assert grey.input_shape == (1, 2, 2) and "luminance" in note and "reds" in note
    back, note = adapt_channels(grey, 3)
    assert back.input_shape == (3, 2, 2) and "copied" in note


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 1\|3, H, W\)"):
        to_channels(np.zeros((2, 4, 2, 2), np.uint8), 1)

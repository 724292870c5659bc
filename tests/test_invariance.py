import math

import numpy as np
import pytest
import torch

from amortinv.invariance import (
    AUDIO,
    GREY,
    RGB,
    SPACES,
    SPATIAL_APPEARANCE,
    InvalidInvarianceVector,
    InvarianceSpace,
    default_space,
    get_space,
)


def test_spaces_match_the_design():
    assert RGB.names == ("crop", "flip", "color", "grayscale", "blur")
    assert GREY.names == ("crop", "flip", "color", "blur")
    assert SPATIAL_APPEARANCE.names == ("spatial", "appearance")
    assert AUDIO.names == ("pitch", "time", "noise", "mask", "filter")
    assert default_space("image", channels=1) is GREY
    assert default_space("image", channels=3) is RGB
    assert default_space("audio") is AUDIO


def test_vector_round_trips_through_a_named_dict():
    named = {"crop": 1.0, "flip": 0.0, "color": 0.25, "grayscale": 1.0, "blur": 0.5}
    vec = RGB.vector(named)
    assert vec.dtype == torch.float32 and vec.tolist() == [1.0, 0.0, 0.25, 1.0, 0.5]
    assert RGB.to_dict(vec) == named
    assert list(RGB.to_dict(vec)) == list(RGB.names)  # ordered like the space
    assert RGB.vector([1, 0, 0.25, 1, 0.5]).tolist() == vec.tolist()
    assert RGB.vector(0.5).tolist() == [0.5] * 5
    # one number for every group, whichever library it comes from
    for one in (np.float32(0.5), torch.tensor(0.5), np.array(0.5), 1):
        assert RGB.vector(one).tolist() == [float(one)] * 5


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([1, 0, 1], ["5 groups", "crop, flip, color, grayscale, blur", "length 3"]),
        ([1, 0, 1, 1, 2.0], ["blur=2.0", "[0, 1]"]),
        ([1, 0, 1, 1, -0.1], ["blur=-0.1"]),
        ([1, math.nan, 1, 1, 1], ["flip=nan"]),
        ({"crop": 1, "flip": 0}, ["missing group(s) color, grayscale, blur"]),
        ({"crop": 1, "flip": 0, "color": 1, "grayscale": 1, "blur": 1, "hue": 1},
         ["unknown group(s) hue"]),
        ({"crop": "a", "flip": 0, "color": 1, "grayscale": 1, "blur": 1}, ["'crop'", "'a'"]),
        ("half", ["one number, 5 numbers", "crop, flip, color, grayscale, blur", "'half'"]),
        (None, ["or a mapping group -> number", "got None"]),
        ({0: 1, 1: 0, 2: 1, 3: 1, 4: 0}, ["unknown group(s) 0, 1, 2, 3, 4", "missing group(s)"]),
        ({"crop": 1, "flip": 0, "color": 1, "grayscale": 1, "blur": 1, 5: 1},
         ["unknown group(s) 5"]),
        ([[1, 0, 1, 1, 0], [1, 0, 1, 1, 0]], ["one row of 5 numbers", "shape (2, 5)"]),
        (10**400, ["one number, 5 numbers", "got 1000"]),
    ],
)
def test_invalid_vectors_name_the_groups(value, words):
    with pytest.raises(InvalidInvarianceVector) as err:
        RGB.vector(value)
    for word in words:
        assert word in str(err.value)


def test_corners_follow_the_paper():
    assert len(RGB.corners()) == 26  # K=5, at least two groups on
    assert len(GREY.corners()) == 11  # K=4, at least two on
    assert SPATIAL_APPEARANCE.corners().tolist() == [[0, 1], [1, 0], [1, 1]]
    assert len(RGB.corners(min_on=0)) == 32
    assert (RGB.corners().sum(1) >= 2).all()


def test_sampling_is_seeded_and_in_range():
    for mode in ("corners", "continuous", "mixed"):
        a = RGB.sample(64, mode, generator=torch.Generator().manual_seed(3))
        b = RGB.sample(64, mode, generator=torch.Generator().manual_seed(3))
        c = RGB.sample(64, mode, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.shape == (64, 5) and a.min() >= 0 and a.max() <= 1
    corners = RGB.sample(200, "corners", generator=torch.Generator().manual_seed(0))
    assert set(corners.unique().tolist()) == {0.0, 1.0}
    continuous = RGB.sample(200, "continuous", generator=torch.Generator().manual_seed(0))
    assert ((continuous > 0) & (continuous < 1)).float().mean() > 0.99
    mixed = RGB.sample(400, "mixed", generator=torch.Generator().manual_seed(0))
    is_corner = ((mixed == 0) | (mixed == 1)).all(1).float().mean()
    assert 0.35 < is_corner < 0.65
    with pytest.raises(ValueError, match="mode"):
        RGB.sample(4, "grid")


def test_space_serialises_to_json_and_back():
    for space in SPACES.values():
        assert InvarianceSpace.from_json(space.to_json()) == space
        assert get_space(space.name) is space
    with pytest.raises(ValueError, match="not a valid invariance space"):
        InvarianceSpace.from_json({"name": "x"})
    with pytest.raises(KeyError, match="known: rgb"):
        get_space("hsv")

"""Colour data: the pre-training set holds out every image a downstream test split uses; the
colour-label and colour-noise tasks mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amortinv.augment import vision as ops
from amortinv.data import colour, entries, get, info
from amortinv.data.colour import COLOURS, dominant_colour

#: A training image counts as a test image when, either way round, their luminance lies this
#: close (RMS over 0..255, 32x32 block means) ...
SAME = 4.0
#: ... or their outlines correlate this well: the same drawing recoloured (the hue tasks'
#: test images, and OpenClipart's own coloured and bare-outline copies). Both are a little
#: stricter than the loader's (6.0 and 0.9), so its rounding cannot decide the test.
SAME_OUTLINE = 0.95


def _need(name: str):
    entry = info(name)
    if not entry.available():
        pytest.skip(f"{name} is not installed here: {entry.hint}")
    return get(name)


def _luminance(x: np.ndarray, mirror: bool = False) -> torch.Tensor:
    """Block means of the luminance at 32x32, flattened: an independent re-implementation of
    what the loader compares (float, no rounding)."""
    y = torch.from_numpy(x).float()
    y = 0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]
    y = torch.nn.functional.adaptive_avg_pool2d(y[:, None], 32)[:, 0]
    return (y.flip(-1) if mirror else y).reshape(len(x), -1)


def _outlines(x: np.ndarray, mirror: bool = False) -> torch.Tensor:
    """Outline maps (an independent re-implementation of the loader's): the largest colour
    step to the right or below, at 32x32, blurred, centred and of unit length."""
    outs = []
    for i in range(0, len(x), 1024):
        f = torch.from_numpy(x[i:i + 1024]).float() / 255
        f = f.flip(-1) if mirror else f
        dx = torch.nn.functional.pad((f[..., 1:] - f[..., :-1]).abs(), (0, 1))
        dy = torch.nn.functional.pad((f[..., 1:, :] - f[..., :-1, :]).abs(), (0, 0, 0, 1))
        g = torch.maximum(dx, dy).amax(1, keepdim=True)
        g = torch.nn.functional.avg_pool2d(g, 2)
        g = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(g, (1, 1, 1, 1),
                                                                   mode="replicate"), 3, 1)
        g = g.flatten(1) - g.flatten(1).mean(1, keepdim=True)
        outs.append(g / g.norm(dim=1, keepdim=True).clamp_min(1e-6))
    return torch.cat(outs)


def _nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS distance from each row of ``a`` to its nearest row of ``b``."""
    out = [torch.cdist(a[i:i + 512], b).min(1).values for i in range(0, len(a), 512)]
    return torch.cat(out) / a.shape[1] ** 0.5


def _best_outline(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation of each outline map of ``a`` with its best match in ``b``."""
    return torch.cat([(a[i:i + 512] @ b.T).max(1).values for i in range(0, len(a), 512)])


def _matched(test: np.ndarray, lum: torch.Tensor, outlines: torch.Tensor) -> torch.Tensor:
    """Which test images are, either way round, an image whose luminance and outline maps
    are ``lum`` and ``outlines``."""
    found = torch.zeros(len(test), dtype=torch.bool)
    for mirror in (False, True):
        found |= _nearest(_luminance(test, mirror), lum) <= SAME
        found |= _best_outline(_outlines(test, mirror), outlines) >= SAME_OUTLINE
    return found


def _colour_tasks() -> list[str]:
    return [e.name for e in entries() if e.modality == "image" and e.kind != "pretraining"
            and e.available() and get(e.name).input_shape[0] == 3]


def test_no_test_image_of_any_colour_task_is_in_the_pretraining_set():
    pre = _need("colour-pretraining")
    _need("clipart-colour")
    tasks = _colour_tasks()
    assert {"openclipart", "tuxpaint-photos", "flags-mirrored", "clipart-hue",
            "clipart-grayscale", "clipart-colour", "clipart-recoloured"} <= set(tasks)
    train = _luminance(pre.train.x), _outlines(pre.train.x)
    held = _luminance(pre.test.x), _outlines(pre.test.x)
    for name in tasks:
        test = get(name).test.x
        leaked = _matched(test, *train)
        assert not leaked.any(), f"{name}: {int(leaked.sum())} test image(s) in pre-training"
        # The check has teeth: it finds (nearly) every one of them in the held-out split.
        assert _matched(test, *held).float().mean() > 0.97, name


def test_crops_come_only_from_drawings_in_the_training_split():
    pre = _need("colour-pretraining")
    pool = colour.pool()
    rows = {row.tobytes() for row in pre.train.x}
    held = {row.tobytes() for row in pre.test.x}
    parents: dict[bytes, list[int]] = {}
    for crop, parent in zip(pool["crop_x"], pool["crop_parent"], strict=True):
        parents.setdefault(crop.tobytes(), []).append(int(parent))
    used = [crop for crop in parents if crop in rows]
    assert len(used) > 1000  # the crops are used
    for crop in used:  # each comes from a drawing that is itself trained on, not held out
        drawings = [pool["x"][i].tobytes() for i in parents[crop]]
        assert any(d in rows and d not in held for d in drawings)


def test_pretraining_set_is_large_and_varied():
    pre = _need("colour-pretraining")
    assert len(pre.train) > 6000 and pre.input_shape == (3, 64, 64)
    names = pre.class_names
    assert "tuxpaint" in names and "animals" in names and "computer" in names
    assert len(np.unique(pre.train.y)) >= 20  # every top folder, not only the labelled seven
    assert len({row.tobytes() for row in pre.train.x}) == len(pre.train)  # no exact copies


# -- the colour-label task ------------------------------------------------------------------------
def _drawing(rgb: tuple[int, int, int], second: tuple[int, int, int] | None = None
             ) -> np.ndarray:
    """A 64x64 white canvas with a filled square (two halves when ``second`` is given)."""
    x = np.full((64, 64, 3), 255, dtype=np.uint8)
    x[16:48, 16:48] = rgb
    if second is not None:
        x[16:48, 32:48] = second
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize(("rgb", "name"), [
    ((220, 20, 30), "red"), ((250, 200, 0), "yellow"), ((30, 160, 40), "green"),
    ((0, 200, 210), "cyan"), ((20, 40, 200), "blue"), ((200, 0, 180), "magenta"),
    ((90, 90, 90), "grey"), ((0, 0, 0), "grey"),
])
def test_dominant_colour_names_the_colour(rgb, name):
    assert COLOURS[dominant_colour(_drawing(rgb))] == name


def test_ambiguous_or_blank_drawings_get_no_colour():
    assert dominant_colour(_drawing((220, 20, 30), (30, 160, 40))) is None  # half and half
    assert dominant_colour(np.full((3, 64, 64), 255, dtype=np.uint8)) is None  # blank
    # A red accent on a mostly grey drawing is neither grey nor clearly red.
    mostly_grey = _drawing((90, 90, 90))
    mostly_grey[:, 16:48, 16:22] = np.array([220, 20, 30])[:, None, None]
    assert dominant_colour(mostly_grey) is None


def test_clipart_colour_labels_follow_the_pixels():
    data = _need("clipart-colour")
    assert data.class_names == COLOURS and data.input_shape == (3, 64, 64)
    for split in (data.train, data.test):
        assert set(np.unique(split.y)) == set(range(len(COLOURS)))
        sample = np.random.default_rng(0).choice(len(split), 50, replace=False)
        assert [dominant_colour(split.x[i]) for i in sample] == split.y[sample].tolist()
    assert len(data.test) >= 300


def test_clipart_recoloured_keeps_classes_and_outlines():
    base, task = _need("openclipart"), get("clipart-recoloured")
    assert task.class_names == base.class_names
    assert len(task.test) == len(base.test)  # every test drawing, recoloured
    # Each recoloured test image is a base test image with its hue turned: the same outlines
    # and label, other colours.
    best, pairs = (_outlines(task.test.x[:200]) @ _outlines(base.test.x).T).max(1)
    assert (best >= SAME_OUTLINE).float().mean() > 0.97
    assert (base.test.y[pairs.numpy()] == task.test.y[:200]).mean() > 0.97
    assert not np.array_equal(task.test.x[:200], base.test.x[pairs.numpy()])


def test_hue_rotation_keeps_white_and_grey():
    x = torch.tensor([[[[1.0]], [[1.0]], [[1.0]]], [[[0.3]], [[0.3]], [[0.3]]]])
    assert torch.allclose(ops.adjust_hue(x, torch.tensor([0.3, -0.4])), x, atol=1e-5)

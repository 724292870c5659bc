"""Colour images for pre-training, and a task where colour is the label.

Both come from one *pool*, decoded once and cached: every OpenClipart PNG (all top folders,
not only the labelled seven) and every Tux Paint stamp, composited on white at 64x64, plus a
random crop of each larger drawing (a detail at a resolution the whole drawing never shows),
near-duplicates removed (OpenClipart files many drawings twice, and Tux Paint ships mirrored
copies).

- ``clipart-colour``: the pool's drawings labelled by their dominant colour (six hues and
  grey), an 80/20 holdout: colour IS the label, so hue and grayscale invariance hurt.
- ``colour-pretraining``: what colour encoders pre-train on. Every image that a downstream
  test split uses is held out of it (:data:`HELD_OUT`): its training split is the pool less
  those, and its test split is exactly what was held out, so anyone can check.

The test splits of the derived colour tasks (``clipart-hue``, ``clipart-grayscale``,
``clipart-recoloured``) are transformed ``openclipart`` test images, so holding out
``openclipart``'s test split holds them out too; ``tests/test_colour_data.py`` checks every
colour task's test split against the pre-training images.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from amortinv.data.cache import cached_arrays
from amortinv.data.dataset import Split, Splits
from amortinv.data.images import (
    MAX_PIXELS,
    OPENCLIPART_DIR,
    TUXPAINT_DIR,
    _png_pixels,
    crop_to_content,
    decode_parallel,
    duplicate_groups,
    fit_and_pad,
    holdout_splits,
    near_matches,
    on_white,
)
from amortinv.data.registry import get, is_available, register

SIZE = 64
#: A drawing at least this big (shorter side, pixels) also gives one random square crop.
CROP_MIN_SIDE = 256
#: The crop's side, as a fraction of the drawing's shorter side.
CROP_FRACTION = 0.5
#: A crop is kept only if at least this fraction of it is drawn (not white background).
CROP_MIN_INK = 0.3
#: Downstream datasets whose test images are held out of ``colour-pretraining``. The derived
#: colour tasks are made from openclipart's test split, so they are covered by it.
HELD_OUT = ("openclipart", "tuxpaint-photos", "flags-mirrored", "clipart-colour")
#: A pool image this close (RMS over 0..255 at 32x32, either way round) to a held-out test
#: image is held out. Twice the duplicate threshold: when in doubt, leave it out.
HOLD_OUT_RMS = 6.0
TUXPAINT = "tuxpaint"


# -- the pool ------------------------------------------------------------------------------------
def _pool_files() -> tuple[list[Path], list[str]]:
    """Every OpenClipart PNG and Tux Paint stamp (not the mirrored copies), with its folder:
    the OpenClipart top folder, or 'tuxpaint'."""
    paths, folders = [], []
    if OPENCLIPART_DIR.exists():
        for path in sorted(OPENCLIPART_DIR.rglob("*.png")):
            paths.append(path)
            folders.append(path.relative_to(OPENCLIPART_DIR).parts[0])
    if TUXPAINT_DIR.exists():
        for path in sorted(TUXPAINT_DIR.rglob("*.png")):
            if "_mirror" not in path.stem and "_flip" not in path.stem:
                paths.append(path)
                folders.append(TUXPAINT)
    return paths, folders


def ink(image: np.ndarray) -> float:
    """Fraction of an ``(3, H, W)`` image's pixels that are drawn: not near-white."""
    return float((image.min(axis=0) < 235).mean())


def _whole_and_crop(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The drawing as :func:`~amortinv.data.images.clip_art` makes it (so a pool image and a
    task's copy of it are equal), and a seeded random crop of a large one (or None)."""
    try:
        if _png_pixels(path) > MAX_PIXELS:
            return None, None
        with Image.open(path) as im:
            rgb = on_white(crop_to_content(im))
    except (OSError, ValueError):  # a damaged file costs itself only
        return None, None
    whole = np.asarray(fit_and_pad(rgb, SIZE)).transpose(2, 0, 1)
    w, h = rgb.size
    if min(w, h) < CROP_MIN_SIDE:
        return whole, None
    side = round(min(w, h) * CROP_FRACTION)
    rng = np.random.default_rng(zlib.crc32(f"{path.parent.name}/{path.name}".encode()))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    piece = rgb.crop((left, top, left + side, top + side))
    crop = np.asarray(piece.resize((SIZE, SIZE), Image.Resampling.LANCZOS,
                                   reducing_gap=3.0)).transpose(2, 0, 1)
    return whole, (crop if ink(crop) >= CROP_MIN_INK else None)


def _decode_pool() -> dict[str, np.ndarray]:
    paths, folders = _pool_files()
    names = sorted(set(folders))
    decoded = decode_parallel(paths, _whole_and_crop, "colour pool (OpenClipart, Tux Paint)")
    wholes = [i for i, (w, _) in enumerate(decoded) if w is not None]
    x = np.stack([decoded[i][0] for i in wholes])
    folder = np.array([names.index(folders[i]) for i in wholes], dtype=np.int64)
    # One copy per drawing (either way round); crops only of the copies kept.
    keep = np.array(sorted(g[0] for g in duplicate_groups(x, mirror=True)), dtype=np.int64)
    crops = [(n, decoded[wholes[i]][1]) for n, i in enumerate(keep)
             if decoded[wholes[i]][1] is not None]
    return {
        "x": np.ascontiguousarray(x[keep]),
        "folder": folder[keep],
        "crop_x": np.stack([c for _, c in crops]) if crops else np.zeros((0, 3, SIZE, SIZE),
                                                                         np.uint8),
        "crop_parent": np.array([n for n, _ in crops], dtype=np.int64),
        "folder_names": np.array(names, dtype=str),
        "files": np.array(len(paths)),
    }


def pool() -> dict[str, np.ndarray]:
    """The decoded pool (cached): ``x`` (N, 3, 64, 64) unique drawings, ``folder`` their
    folder index into ``folder_names``, ``crop_x`` crops and ``crop_parent`` the index of the
    drawing each crop comes from; ``files``: how many files were read."""
    return cached_arrays("colour-pool", _decode_pool)


def _pool_available() -> bool:
    return (OPENCLIPART_DIR / "animals").exists()


# -- dominant colour ------------------------------------------------------------------------------
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta", "grey")
#: A pixel counts as coloured above this saturation (HSV) and value.
SATURATED, BRIGHT = 0.35, 0.25
#: A drawing is grey when under this fraction of its ink is coloured; coloured above
#: ``COLOURED``; in between it is ambiguous and left out.
GREY_BELOW, COLOURED = 0.05, 0.3
#: A coloured drawing's label is the hue (six bins of 60 degrees, centred on red, yellow,
#: ...) holding at least this fraction of its coloured pixels; others are left out.
DOMINANT = 0.6
#: Drawings with less ink than this are blank or nearly: left out.
MIN_INK = 0.05


def dominant_colour(image: np.ndarray) -> int | None:
    """Index into :data:`COLOURS` of an ``(3, H, W)`` uint8 drawing on white, or None when
    it has no clear dominant colour (or is nearly blank)."""
    rgb = image.reshape(3, -1).T.astype(np.float32) / 255.0
    hi, lo = rgb.max(1), rgb.min(1)
    drawn = lo < 235 / 255
    if drawn.mean() < MIN_INK:
        return None
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)
    coloured = drawn & (saturation >= SATURATED) & (hi >= BRIGHT)
    share = coloured.sum() / drawn.sum()
    if share < GREY_BELOW:
        return COLOURS.index("grey")
    if share < COLOURED:
        return None
    bins = np.bincount(_hue_bin(rgb[coloured]), minlength=6)
    best = int(bins.argmax())
    return best if bins[best] >= DOMINANT * bins.sum() else None


def _hue_bin(rgb: np.ndarray) -> np.ndarray:
    """HSV hue of ``(N, 3)`` colours in [0, 1], as one of six 60-degree bins centred on red
    (0), yellow (1), green, cyan, blue, magenta (5)."""
    r, g, b = rgb.T
    hi, lo = rgb.max(1), rgb.min(1)
    span = np.maximum(hi - lo, 1e-6)
    hue = np.where(hi == r, ((g - b) / span) % 6,
                   np.where(hi == g, (b - r) / span + 2, (r - g) / span + 4))  # in [0, 6)
    return np.floor(hue + 0.5).astype(np.int64) % 6


@register(
    "clipart-colour",
    modality="image",
    target_kind="classification",
    description="Clip art by dominant colour: OpenClipart and Tux Paint drawings labelled red, "
    "yellow, green, cyan, blue, magenta or grey, 64x64 RGB, 80/20 holdout",
    requires=(_pool_available,),
    hint="Install it with `sudo apt-get install --no-install-recommends openclipart-png "
    "tuxpaint-stamps-default`.",
    needs="colour itself: hue and grayscale invariance erase the label",
)
def clipart_colour() -> Splits:
    p = pool()
    labels = [dominant_colour(im) for im in p["x"]]
    keep = np.array([i for i, c in enumerate(labels) if c is not None], dtype=np.int64)
    y = np.array([labels[i] for i in keep], dtype=np.int64)
    return holdout_splits(p["x"][keep], y, COLOURS)


# -- the pre-training set ------------------------------------------------------------------------
def held_out_images() -> np.ndarray:
    """Every test image of the :data:`HELD_OUT` datasets that is on this machine."""
    return np.concatenate([get(name).test.x for name in HELD_OUT if is_available(name)])


@register(
    "colour-pretraining",
    modality="image",
    target_kind="classification",
    kind="pretraining",
    description="Colour pre-training images: every OpenClipart drawing and Tux Paint stamp, "
    "plus crops of the larger ones, 64x64 RGB, less every image a downstream test split uses "
    "(the test split is what was held out); labels: source folder",
    requires=(_pool_available,),
    hint="Install it with `sudo apt-get install --no-install-recommends openclipart-png "
    "tuxpaint-stamps-default`.",
    needs="pre-training data: its folder labels are a rough check, not a task",
)
def colour_pretraining() -> Splits:
    p = pool()
    held = near_matches(p["x"], held_out_images(), HOLD_OUT_RMS, mirror=True)
    crops = ~held[p["crop_parent"]]  # a crop of a held-out drawing is part of a test image
    x = np.concatenate([p["x"][~held], p["crop_x"][crops]])
    y = np.concatenate([p["folder"][~held], p["folder"][p["crop_parent"][crops]]])
    names = tuple(str(n) for n in p["folder_names"])
    return Splits(Split(np.ascontiguousarray(x), y), Split(p["x"][held], p["folder"][held]),
                  names)

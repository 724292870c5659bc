"""Colour images for pre-training, and a task where colour is the label.

Both come from one *pool*, decoded once and cached: every OpenClipart PNG (all top folders,
not only the labelled seven) and every Tux Paint stamp, composited on white at 64x64, plus
random crops of the larger drawings (details at a resolution the whole drawing never shows),
near-duplicates removed (OpenClipart files many drawings twice, and Tux Paint ships mirrored
copies), blank drawings and flat crops left out.

- ``clipart-colour``: the pool's drawings labelled by their dominant colour (six hues and
  grey), an 80/20 holdout: colour IS the label, so hue and grayscale invariance hurt.
- ``colour-pretraining``: what colour encoders pre-train on. Every image that a downstream
  test split uses is held out of it (:data:`HELD_OUT`): its training split is the pool less
  those (and their crops), and its test split is exactly what was held out, so anyone can
  check. "Used" is broad: another render, a mirror image, or the same outlines in other
  colours (:func:`same_drawing`).

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
from amortinv.data.channels import to_channels
from amortinv.data.dataset import Split, Splits
from amortinv.data.images import (
    MAX_PIXELS,
    OPENCLIPART_DIR,
    TUXPAINT_DIR,
    crop_to_content,
    decode_parallel,
    duplicate_groups,
    fit_and_pad,
    holdout_splits,
    near_matches,
    on_white,
    png_pixels,
)
from amortinv.data.registry import get, is_available, register

SIZE = 64
#: Random square crops of the larger drawings: (side as a fraction of the drawing's shorter
#: side, the shorter side a drawing needs, in pixels). A crop shows a detail at a resolution
#: the 64-pixel whole drawing never does.
CROPS = ((0.5, 256), (0.3, 512))
#: A crop is kept only if at least this fraction of it is drawn (not white background), and
#: it is not flat: some channel varies by at least ``CROP_MIN_STD`` (over 0..255).
CROP_MIN_INK, CROP_MIN_STD = 0.3, 5.0
#: A drawing is left out of the pool when less than this fraction of it is drawn: blank
#: at 64 pixels (white on white, or a hairline).
POOL_MIN_INK = 0.01
#: Downstream datasets whose test images are held out of ``colour-pretraining``. The derived
#: colour tasks are made from openclipart's test split, so they are covered by it.
HELD_OUT = ("openclipart", "tuxpaint-photos", "flags-mirrored", "clipart-colour")
#: A pool image is the same drawing as a held-out test image, either way round, when their
#: luminance is this close (RMS over 0..255 at 32x32: other renders and copies; twice the
#: duplicate threshold) ...
HOLD_OUT_RMS = 6.0
#: ... or when their outlines correlate this well (:func:`edge_maps`): OpenClipart ships many
#: drawings twice, coloured and as bare outlines, or in two colour schemes. Looking at the
#: pairs, recoloured copies score 0.9-1.0 and different drawings mostly below 0.85; when in
#: doubt, a drawing is left out.
HOLD_OUT_EDGES = 0.9
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


def _whole_and_crops(path: Path) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The drawing as :func:`~amortinv.data.images.clip_art` makes it (so a pool image and a
    task's copy of it are equal), and seeded random :data:`CROPS` of a large one."""
    try:
        if png_pixels(path) > MAX_PIXELS:
            return None, []
        with Image.open(path) as im:
            rgb = on_white(crop_to_content(im))
    except (OSError, ValueError):  # a damaged file costs itself only
        return None, []
    whole = np.asarray(fit_and_pad(rgb, SIZE)).transpose(2, 0, 1)
    if ink(whole) < POOL_MIN_INK:
        return None, []
    w, h = rgb.size
    rng = np.random.default_rng(zlib.crc32(f"{path.parent.name}/{path.name}".encode()))
    crops = []
    for fraction, min_side in CROPS:
        if min(w, h) < min_side:
            continue
        side = round(min(w, h) * fraction)
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        piece = rgb.crop((left, top, left + side, top + side))
        crop = np.asarray(piece.resize((SIZE, SIZE), Image.Resampling.LANCZOS,
                                       reducing_gap=3.0)).transpose(2, 0, 1)
        if ink(crop) >= CROP_MIN_INK and crop.std(axis=(1, 2)).max() >= CROP_MIN_STD:
            crops.append(crop)
    return whole, crops


def _decode_pool() -> dict[str, np.ndarray]:
    paths, folders = _pool_files()
    names = sorted(set(folders))
    decoded = decode_parallel(paths, _whole_and_crops, "colour pool (OpenClipart, Tux Paint)")
    wholes = [i for i, (w, _) in enumerate(decoded) if w is not None]
    x = np.stack([decoded[i][0] for i in wholes])
    folder = np.array([names.index(folders[i]) for i in wholes], dtype=np.int64)
    # One copy per drawing (either way round); crops only of the copies kept.
    keep = np.array(sorted(g[0] for g in duplicate_groups(x, mirror=True)), dtype=np.int64)
    crops = [(n, c) for n, i in enumerate(keep) for c in decoded[wholes[i]][1]]
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


#: What the datasets made from the pool require, and how to install it.
POOL_SOURCE = dict(requires=(_pool_available,),
                   hint="Install it with `sudo apt-get install --no-install-recommends "
                   "openclipart-png tuxpaint-stamps-default`.")


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
#: At most this many drawings per colour (a seeded choice): grey drawings outnumber the
#: others four to one, and every test drawing is one fewer to pre-train on.
MAX_PER_COLOUR = 600


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
    "yellow, green, cyan, blue, magenta or grey (at most 600 each), 64x64 RGB, 80/20 holdout",
    **POOL_SOURCE,
    needs="colour itself: hue and grayscale invariance erase the label",
)
def clipart_colour() -> Splits:
    p = pool()
    labels = np.array([-1 if c is None else c for c in map(dominant_colour, p["x"])])
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[:MAX_PER_COLOUR]
        for c in range(len(COLOURS))]))
    return holdout_splits(p["x"][keep], labels[keep].astype(np.int64), COLOURS)


# -- the pre-training set ------------------------------------------------------------------------
def edge_maps(x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``(N, 3, 64, 64)`` uint8 drawings as ``(N, 32*32)`` outline maps: the largest colour
    step to a neighbouring pixel, averaged over 2x2 blocks and a 3x3 window, centred and of
    unit length, so a dot product is a correlation. Recolouring a drawing keeps its outlines."""
    out = []
    for i in range(0, len(x), chunk):
        f = x[i:i + chunk].astype(np.float32) / 255.0
        dx = np.pad(np.abs(np.diff(f, axis=3)), ((0, 0), (0, 0), (0, 0), (0, 1)))
        dy = np.pad(np.abs(np.diff(f, axis=2)), ((0, 0), (0, 0), (0, 1), (0, 0)))
        g = np.maximum(dx, dy).max(axis=1)
        n, h, w = g.shape
        g = g.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        padded = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="edge")
        g = sum(padded[:, a:a + h // 2, b:b + w // 2] for a in range(3) for b in range(3)) / 9
        g = g.reshape(n, -1)
        g -= g.mean(axis=1, keepdims=True)
        out.append(g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6))
    return np.concatenate(out) if out else np.zeros((0, 1024), np.float32)


def same_drawing(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Boolean mask of the drawings of ``x`` that are a drawing of ``reference``, either way
    round: a copy or another render (:data:`HOLD_OUT_RMS`, on luminance) or the same outlines
    in other colours (:data:`HOLD_OUT_EDGES`)."""
    found = near_matches(to_channels(x, 1), to_channels(reference, 1), HOLD_OUT_RMS,
                         mirror=True)
    refs = edge_maps(reference)
    for view in (x, x[..., ::-1]):
        maps = edge_maps(np.ascontiguousarray(view))
        for i in range(0, len(maps), 1024):
            found[i:i + 1024] |= (maps[i:i + 1024] @ refs.T).max(axis=1) >= HOLD_OUT_EDGES
    return found


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
    **POOL_SOURCE,
    needs="pre-training data: its folder labels are a rough check, not a task",
)
def colour_pretraining() -> Splits:
    p = pool()
    held = same_drawing(p["x"], held_out_images())
    crops = ~held[p["crop_parent"]]  # a crop of a held-out drawing is part of a test image
    x = np.concatenate([p["x"][~held], p["crop_x"][crops]])
    y = np.concatenate([p["folder"][~held], p["folder"][p["crop_parent"][crops]]])
    names = tuple(str(n) for n in p["folder_names"])
    return Splits(Split(np.ascontiguousarray(x), y), Split(p["x"][held], p["folder"][held]),
                  names)

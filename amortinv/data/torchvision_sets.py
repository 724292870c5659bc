"""The paper's torchvision datasets, read from ``cache_dir()/torchvision`` (never downloaded here).

Each is registered but unavailable until its files sit under ``cache_dir()/torchvision`` in
torchvision's own layout: :data:`FETCHERS` (run by ``python -m amortinv.data fetch NAME`` on a
machine with internet) puts them there, or copy an existing torchvision root there.

Decoding, once, into the registry's cached arrays:
- CIFAR-10/100 (32x32) and SVHN (32x32) keep their size;
- STL-10 (96x96) is downscaled to 64x64, and the variable-size photo sets (Flowers-102, DTD,
  Oxford-IIIT Pets, Caltech-101) are resized so the shorter side is 64 and centre-cropped to
  64x64 RGB: small enough to cache and train on a laptop, like the paper's low-resolution runs.
CIFAR and STL are read straight from their documented files (pickles, raw binaries): the same
bytes torchvision reads, without its full-file checksums on every first load.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from amortinv.data.cache import cache_dir
from amortinv.data.dataset import Split, Splits
from amortinv.data.images import decode_parallel, holdout_splits
from amortinv.data.registry import register

#: Side of the square images the variable-size datasets are resized to.
SIZE = 64


def root() -> Path:
    """torchvision's ``root`` for every dataset here (follows ``$AMORTINV_DATA``)."""
    return cache_dir() / "torchvision"


def _present(*relative: str) -> Callable[[], bool]:
    """A cheap availability check: every path exists under :func:`root` (no decoding)."""
    return lambda: all((root() / rel).exists() for rel in relative)


def _hint(name: str, relative: str) -> str:
    """How to get a dataset; ``relative`` is where its files go under ``data/torchvision``."""
    return (f"It is a torchvision dataset that is never downloaded automatically: on a machine "
            f"with internet run `python -m amortinv.data fetch {name}`, or put torchvision's "
            f"files for it at data/torchvision/{relative} (data/ is $AMORTINV_DATA when set, "
            "else the repository's data/ folder).")


def _center_square(im: Image.Image, size: int = SIZE) -> np.ndarray:
    """RGB, shorter side resized to ``size``, centre-cropped: ``(3, size, size)`` uint8."""
    im.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: much faster
    im = im.convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


def _decode_dataset(ds: Any, desc: str) -> Split:
    """Every ``(PIL image, label)`` of a torchvision dataset (no transform), as 64x64 RGB."""

    def one(i: int) -> tuple[np.ndarray, int]:
        image, label = ds[i]
        return _center_square(image), int(label)

    pairs = decode_parallel(range(len(ds)), one, desc)
    return Split(np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], dtype=np.int64))


def _concat(*splits: Split) -> Split:
    return Split(np.concatenate([s.x for s in splits]), np.concatenate([s.y for s in splits]))


# -- CIFAR -------------------------------------------------------------------------------------
def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar_split(folder: Path, files: list[str], label_key: str) -> Split:
    """CIFAR python batches: ``data`` rows of 3072 bytes (R, G, B planes of 32x32)."""
    batches = [_unpickle(folder / f) for f in files]
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return Split(np.ascontiguousarray(x.reshape(-1, 3, 32, 32)), y)


CIFAR10 = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)]


@register(
    "cifar10",
    modality="image",
    target_kind="classification",
    description="CIFAR-10: 50k + 10k colour photos, 32x32 RGB, 10 classes",
    requires=(_present(*(f"{CIFAR10}/{f}" for f in [*CIFAR10_FILES, "test_batch",
                                                    "batches.meta"])),),
    hint=_hint("cifar10", CIFAR10),
    needs="object class: invariance to flips, crops and colour jitter helps",
)
def cifar10() -> Splits:
    folder = root() / CIFAR10
    names = tuple(_unpickle(folder / "batches.meta")["label_names"])
    return Splits(_cifar_split(folder, CIFAR10_FILES, "labels"),
                  _cifar_split(folder, ["test_batch"], "labels"), names)


CIFAR100 = "cifar-100-python"


@register(
    "cifar100",
    modality="image",
    target_kind="classification",
    description="CIFAR-100: 50k + 10k colour photos, 32x32 RGB, 100 fine classes",
    requires=(_present(f"{CIFAR100}/train", f"{CIFAR100}/test", f"{CIFAR100}/meta"),),
    hint=_hint("cifar100", CIFAR100),
    needs="fine-grained object class: invariance to flips and crops helps; colour carries "
    "some of the label",
)
def cifar100() -> Splits:
    folder = root() / CIFAR100
    names = tuple(_unpickle(folder / "meta")["fine_label_names"])
    return Splits(_cifar_split(folder, ["train"], "fine_labels"),
                  _cifar_split(folder, ["test"], "fine_labels"), names)


# -- STL-10 ------------------------------------------------------------------------------------
STL10 = "stl10_binary"


def _stl_split(folder: Path, prefix: str) -> Split:
    """STL-10 binaries: 96x96x3 images stored column-major; labels 1..10."""
    raw = np.fromfile(folder / f"{prefix}_X.bin", dtype=np.uint8)
    x = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)  # -> (N, H, W, C)
    small = np.stack([
        np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.Resampling.LANCZOS))
        for im in x
    ]).transpose(0, 3, 1, 2)
    y = np.fromfile(folder / f"{prefix}_y.bin", dtype=np.uint8).astype(np.int64) - 1
    return Split(np.ascontiguousarray(small), y)


@register(
    "stl10",
    modality="image",
    target_kind="classification",
    description="STL-10 (labelled part): 5k + 8k colour photos, 96x96 resized to 64x64 RGB, "
    "10 classes",
    requires=(_present(*(f"{STL10}/{f}" for f in ("train_X.bin", "train_y.bin", "test_X.bin",
                                                  "test_y.bin", "class_names.txt"))),),
    hint=_hint("stl10", STL10),
    needs="object class: invariance to flips, crops and colour jitter helps",
)
def stl10() -> Splits:
    folder = root() / STL10
    names = tuple((folder / "class_names.txt").read_text().split())
    return Splits(_stl_split(folder, "train"), _stl_split(folder, "test"), names)


# -- SVHN --------------------------------------------------------------------------------------
@register(
    "svhn",
    modality="image",
    target_kind="classification",
    description="SVHN: 73k + 26k house-number digits cropped from street photos, 32x32 RGB",
    requires=(_present("train_32x32.mat", "test_32x32.mat"),),
    hint=_hint("svhn", "train_32x32.mat and test_32x32.mat"),
    needs="digit identity: invariance to colour and small shifts helps, not to flips",
)
def svhn() -> Splits:
    from torchvision.datasets import SVHN

    def split(name: str) -> Split:
        ds = SVHN(str(root()), split=name)  # labels already mapped 10 -> 0
        return Split(np.ascontiguousarray(ds.data), np.asarray(ds.labels, dtype=np.int64))

    return Splits(split("train"), split("test"), tuple(str(d) for d in range(10)))


# -- variable-size photo sets ------------------------------------------------------------------
@register(
    "flowers102",
    modality="image",
    target_kind="classification",
    description="Oxford Flowers-102: 2,040 train+val and 6,149 test photos, 64x64 RGB, "
    "102 classes",
    requires=(_present("flowers-102/jpg", "flowers-102/imagelabels.mat",
                       "flowers-102/setid.mat"),),
    hint=_hint("flowers102", "flowers-102"),
    needs="flower species: colour is part of the label, so colour jitter hurts; flips and "
    "rotations are harmless",
)
def flowers102() -> Splits:
    from torchvision.datasets import Flowers102

    part = {s: _decode_dataset(Flowers102(str(root()), split=s), f"flowers {s}")
            for s in ("train", "val", "test")}
    return Splits(_concat(part["train"], part["val"]), part["test"], tuple(Flowers102.classes))


@register(
    "dtd",
    modality="image",
    target_kind="classification",
    description="Describable Textures (DTD, partition 1): 3,760 train+val and 1,880 test "
    "photos, 64x64 RGB, 47 classes",
    requires=(_present("dtd/dtd/images", "dtd/dtd/labels"),),
    hint=_hint("dtd", "dtd/dtd"),
    needs="texture class: invariance to rotation, flips and crops helps",
)
def dtd() -> Splits:
    from torchvision.datasets import DTD

    sets = {s: DTD(str(root()), split=s) for s in ("train", "val", "test")}
    part = {s: _decode_dataset(ds, f"dtd {s}") for s, ds in sets.items()}
    return Splits(_concat(part["train"], part["val"]), part["test"],
                  tuple(sets["train"].classes))


@register(
    "pets",
    modality="image",
    target_kind="classification",
    description="Oxford-IIIT Pets: 3,680 trainval and 3,669 test photos, 64x64 RGB, 37 breeds",
    requires=(_present("oxford-iiit-pet/images", "oxford-iiit-pet/annotations"),),
    hint=_hint("pets", "oxford-iiit-pet"),
    needs="pet breed: invariance to flips and crops helps; coat colour carries the label",
)
def pets() -> Splits:
    from torchvision.datasets import OxfordIIITPet

    sets = {s: OxfordIIITPet(str(root()), split=s) for s in ("trainval", "test")}
    return Splits(_decode_dataset(sets["trainval"], "pets trainval"),
                  _decode_dataset(sets["test"], "pets test"), tuple(sets["trainval"].classes))


@register(
    "caltech101",
    modality="image",
    target_kind="classification",
    description="Caltech-101: 8,677 photos, 64x64 RGB, 101 classes, 80/20 holdout",
    requires=(_present("caltech101/101_ObjectCategories"),),
    hint=_hint("caltech101", "caltech101/101_ObjectCategories"),
    needs="object class: invariance to flips and crops helps, objects are mostly centred",
)
def caltech101() -> Splits:
    from torchvision.datasets import Caltech101

    ds = Caltech101(str(root()))
    every = _decode_dataset(ds, "caltech101")
    return holdout_splits(every.x, every.y, tuple(ds.categories))


# -- downloads (only when a user asks) ---------------------------------------------------------
def _fetcher(cls_name: str, *calls: dict[str, Any]) -> Callable[[Path], None]:
    """A function(root) building ``torchvision.datasets.<cls_name>`` with ``download=True``,
    once per keyword set in ``calls`` (each split that downloads its own files)."""

    def fetch_into(target: Path) -> None:
        import torchvision.datasets as tvd

        for kwargs in calls or ({},):
            getattr(tvd, cls_name)(str(target), download=True, **kwargs)

    return fetch_into


#: Dataset name -> function(root) that downloads it with torchvision into ``root``. One call
#: per archive: Fashion-MNIST, CIFAR, STL-10, Flowers, DTD and Pets fetch every split at once.
FETCHERS: dict[str, Callable[[Path], None]] = {
    "fashion-mnist": _fetcher("FashionMNIST"),
    "cifar10": _fetcher("CIFAR10"),
    "cifar100": _fetcher("CIFAR100"),
    "stl10": _fetcher("STL10"),
    "svhn": _fetcher("SVHN", {"split": "train"}, {"split": "test"}),
    "flowers102": _fetcher("Flowers102"),
    "dtd": _fetcher("DTD"),
    "pets": _fetcher("OxfordIIITPet"),
    "caltech101": _fetcher("Caltech101"),
}


def fetch(name: str, target: Path | None = None) -> Path:
    """Download dataset ``name`` with torchvision (needs internet) into ``target`` (default
    :func:`root`, where the registry reads it: ``python -m amortinv.data fetch NAME``);
    returns the folder used."""
    if name not in FETCHERS:
        raise ValueError(f"no download known for {name!r}; these can be fetched: "
                         f"{', '.join(sorted(FETCHERS))}")
    target = root() if target is None else target
    target.mkdir(parents=True, exist_ok=True)
    FETCHERS[name](target)
    return target

"""A user's own folder of images or audio clips as a :class:`~amortinv.data.dataset.Dataset`.

Layout (``ImageFolder``-style), for images or audio alike::

    my_data/                      my_data/
      cats/  a.jpg b.png ...        train/ cats/ ...  dogs/ ...
      dogs/  c.jpg ...              test/  cats/ ...  dogs/ ...

Without ``train/`` and ``test/`` a seeded, class-stratified 20% of each class is held out for
testing (at least one file per class that has two or more). Files may sit in nested folders
inside a class folder. The kind of data is told by file extensions:

- images (png, jpg, jpeg, bmp, gif, webp): transparency is composited onto white; each image is
  resized keeping its aspect ratio to fit a square and padded with its own border colour
  (so square images are not padded at all). The square is 64x64, or 32x32 when most images are
  32 pixels or smaller, unless ``size`` says otherwise. Images stay grey (C=1) when every one
  is grey, else all become RGB;
- audio (wav, flac, ogg, mp3 where libsndfile reads it): mono 16 kHz clips of 1 s, through
  :func:`amortinv.data.audio_io.decode_many`.

A file that cannot be decoded is skipped and listed in :attr:`FolderDataset.skipped` (with the
reason) for the app to show. Images of mixed kinds (grey, colour, palette, with transparency,
16-bit) are all made 8-bit RGB (or all grey) and :attr:`FolderDataset.notes` says what was
done, so nothing is converted silently. A layout that cannot make a dataset (no such folder,
nothing to read, a single class, images and audio mixed, a class with no readable file)
raises ``ValueError`` saying what is wrong and what is expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from amortinv.data.dataset import Dataset, Modality, Split, Splits, check
from amortinv.data.images import decode_parallel, fit_and_pad, holdout_splits, on_white

#: What a task name starts with to load a folder of your own: ``folder:PATH``.
FOLDER = "folder:"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3"})
SAMPLE_RATE = 16000
SECONDS = 1.0
#: Images at most this big (longer side, for most of them) are kept at 32x32, not upscaled.
SMALL = 32
LAYOUT = (
    "Expected one sub-folder per class (e.g. cats/ and dogs/), each holding images "
    f"({', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}) or audio clips "
    f"({', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))}), at least two classes; "
    "optionally train/ and test/ folders, each laid out that way."
)


@dataclass(frozen=True)
class FolderDataset(Dataset):
    """A :class:`Dataset` from a folder, with the files that were skipped and why."""

    skipped: tuple[tuple[str, str], ...] = ()  # (file relative to the folder, reason)
    notes: tuple[str, ...] = ()  # what was done to make mixed images one kind


# -- finding files -----------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    """Dot files, macOS zip debris and thumbnail caches: never data, never worth reporting."""
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS | AUDIO_EXTENSIONS


def _visible_files(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(_hidden(p) for p in path.relative_to(folder).parts):
            yield path


@dataclass
class _Scan:
    """Media files per class of one split folder, and the files that were set aside."""

    folder: Path
    classes: dict[str, list[Path]]
    skipped: list[tuple[Path, str]]


def _scan(folder: Path) -> _Scan:
    classes: dict[str, list[Path]] = {}
    skipped: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir()):
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            files = list(_visible_files(entry))
            classes[entry.name] = [f for f in files if _media(f)]
            skipped += [(f, f"not an image or audio file ({f.suffix or 'no extension'})")
                        for f in files if not _media(f)]
        elif _media(entry):
            skipped.append((entry, "not inside a class sub-folder"))
        else:
            skipped.append((entry, "not an image or audio file, and not in a class folder"))
    return _Scan(folder, classes, skipped)


def _split_folders(root: Path) -> tuple[Path, Path | None]:
    """``(train, test)`` folders: ``train/`` and ``test/`` when both exist, else the root."""
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir():
        return train, test
    if train.is_dir() or test.is_dir():
        have, lack = ("train", "test") if train.is_dir() else ("test", "train")
        raise ValueError(
            f"{root} has a {have}/ folder but no {lack}/ folder. Add {lack}/ laid out like "
            f"{have}/, or move the class folders up one level for an automatic 80/20 split. "
            + LAYOUT)
    return root, None


def _modality(root: Path, scans: list[_Scan]) -> Modality:
    files = [f for s in scans for fs in s.classes.values() for f in fs]
    images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
    audio = [f for f in files if f.suffix.lower() in AUDIO_EXTENSIONS]
    if images and audio:
        raise ValueError(
            f"{root} mixes {len(images)} image file(s) (e.g. {images[0].relative_to(root)}) with "
            f"{len(audio)} audio file(s) (e.g. {audio[0].relative_to(root)}). Keep one kind "
            "per dataset: move the others to a folder of their own.")
    if not files:
        loose = [f for s in scans for f, _ in s.skipped if _media(f)]
        where = (f"{root} holds {len(loose)} image or audio file(s) (e.g. "
                 f"{loose[0].relative_to(root)}) but none in a class sub-folder: put each "
                 "class's files in a folder of its own, side by side (one folder is one class, "
                 "and a classifier needs at least two)") if loose else (
                 f"{root} holds no image or audio file in a class sub-folder")
        raise ValueError(f"{where}. {LAYOUT}")
    return "image" if images else "audio"


def _class_names(root: Path, train: _Scan, test: _Scan | None) -> tuple[str, ...]:
    names = tuple(sorted(train.classes))
    if len(names) < 2:
        found = f"only the class {names[0]!r}" if names else "no class sub-folder"
        raise ValueError(f"{root}: found {found}; a classifier needs at least two. {LAYOUT}")
    if test is not None:
        unknown = sorted(set(test.classes) - set(names))
        if unknown:
            raise ValueError(
                f"{root}: test/ has class folder(s) {', '.join(unknown)} that train/ lacks. "
                "Give train/ and test/ the same class folders.")
    return names


# -- decoding ----------------------------------------------------------------------------------
def _probe(path: Path) -> tuple[int, int] | str:
    """Pixel size from the header (cheap), or why the file is not a readable image."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:  # any decoder failure costs this file only
        return f"not a readable image ({err})"


def _eight_bit(im: Image.Image) -> Image.Image:
    """16-bit grey (PNG mode I or I;16) scaled to 8 bits; PIL would clip it to white instead."""
    if im.mode not in ("I", "I;16", "I;16B", "I;16L"):
        return im
    a = np.asarray(im, dtype=np.float64)
    a = a / 257.0 if a.max() > 255 else a
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def _form(im: Image.Image) -> str:
    """What kind of image a file holds: transparent, palette, 16-bit, grey or colour."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return "transparent"
    if im.mode == "P":
        return "palette"
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        return "16-bit"
    return "grey" if im.mode in ("1", "L") else "colour"


def _decode_image(path: Path, size: int) -> tuple[np.ndarray, str] | str:
    """``(size, size, 3)`` uint8 and the file's :func:`_form`, or why it could not be
    decoded."""
    try:
        with Image.open(path) as im:
            form = _form(im)
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            upright = ImageOps.exif_transpose(im)  # phone photos store their rotation apart
            rgb = on_white(_eight_bit(upright))  # the first frame of an animated gif or webp
    except Exception as err:  # any decoder failure costs this file only
        return f"not a readable image ({err})"
    border = np.concatenate([np.asarray(rgb)[[0, -1]].reshape(-1, 3),
                             np.asarray(rgb)[:, [0, -1]].reshape(-1, 3)])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    return np.asarray(fit_and_pad(rgb, size, fill)), form


def _image_size(paths: list[Path], requested: int | None) -> int:
    if requested is not None:
        return requested
    sides = [max(s) for s in decode_parallel(paths, _probe, "reading sizes") if
             isinstance(s, tuple)]
    return SMALL if sides and float(np.median(sides)) <= SMALL else 64


def _decode(paths: list[Path], modality: Modality, size: int
            ) -> tuple[list, list[str | None], list[str | None]]:
    """Decoded arrays (None where failed), failure reasons (None where decoded) and the
    images' forms (:func:`_form`; None for audio and failures)."""
    if modality == "image":
        out = decode_parallel(paths, lambda p: _decode_image(p, size), "decoding images")
        return ([o[0] if isinstance(o, tuple) else None for o in out],
                [o if isinstance(o, str) else None for o in out],
                [o[1] if isinstance(o, tuple) else None for o in out])
    from amortinv.data.audio_io import decode_many

    decoded = decode_many(paths, sample_rate=SAMPLE_RATE, seconds=SECONDS,
                          progress="decoding audio" if len(paths) > 100 else None)
    clips: list = [None] * len(paths)
    for clip, i in zip(decoded.clips, decoded.kept, strict=True):
        clips[int(i)] = clip
    reasons: list[str | None] = [None] * len(paths)
    reason_of = {str(p): r for p, r in decoded.skipped}
    for i, p in enumerate(paths):
        if clips[i] is None:
            reasons[i] = reason_of.get(str(p), "could not be decoded")
    return clips, reasons, [None] * len(paths)


@dataclass
class _Decoded:
    items: list[np.ndarray]
    labels: list[int]
    skipped: list[tuple[Path, str]]
    forms: list[str | None]


def _decode_scan(scan: _Scan, names: tuple[str, ...], modality: Modality,
                 size: int) -> _Decoded:
    paths = [f for c in names for f in scan.classes.get(c, [])]
    labels = [i for i, c in enumerate(names) for _ in scan.classes.get(c, [])]
    arrays, reasons, forms = _decode(paths, modality, size)
    out = _Decoded([], [], list(scan.skipped), [])
    for path, label, array, reason, form in zip(paths, labels, arrays, reasons, forms,
                                                strict=True):
        if array is None:
            out.skipped.append((path, reason or "could not be decoded"))
        else:
            out.items.append(array)
            out.labels.append(label)
            out.forms.append(form)
    present = set(out.labels)
    for i, c in enumerate(names):
        if c in scan.classes and i not in present:
            folder = scan.folder / c
            tried = [f"{p.name}: {r}" for p, r in out.skipped if p.is_relative_to(folder)]
            detail = f" Skipped: {'; '.join(tried[:3])}." if tried else ""
            raise ValueError(
                f"class folder {folder} has no readable {modality} file.{detail} Add files "
                f"that open, or remove the folder. {LAYOUT}")
    return out


def _stack(modality: Modality, items: list[np.ndarray]) -> np.ndarray:
    if modality == "audio":
        return np.stack(items).astype(np.float32, copy=False)
    x = np.stack(items)  # (N, H, W, 3)
    grey = bool((x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all())
    x = x[..., :1] if grey else x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.uint8, copy=False)


def normalisation_notes(forms: list[str | None], x: np.ndarray) -> tuple[str, ...]:
    """What was done to images of mixed kinds (``forms`` from :func:`_form`) to make the
    stacked ``x`` ``(N, C, H, W)`` one kind: one sentence each, for the user."""
    n = len(forms)
    notes = []
    for form, done in (("transparent", "have transparency: composited onto white"),
                       ("palette", "are palette images: expanded to full colour"),
                       ("16-bit", "are 16-bit: scaled to 8 bits")):
        k = forms.count(form)
        if k:
            notes.append(f"{k} of {n} images {done}.")
    if x.ndim == 4 and x.shape[1] == 3:
        grey = int(((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).all(axis=(1, 2)).sum())
        if 0 < grey < n:
            notes.append(f"{grey} of {n} images are grey and the others in colour: every "
                         "image is made RGB (a grey image's channel is copied to red, green "
                         "and blue).")
    return tuple(notes)


# -- the entry point ---------------------------------------------------------------------------
def load_folder(path: str | Path, size: int | None = None) -> FolderDataset:
    """Load a folder laid out as described in this module's docstring.

    ``size`` fixes the side of the square images (default: 64, or 32 for small images).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder. {LAYOUT}")
    train_dir, test_dir = _split_folders(root)
    train_scan = _scan(train_dir)
    test_scan = _scan(test_dir) if test_dir is not None else None
    scans = [train_scan] + ([test_scan] if test_scan is not None else [])
    modality = _modality(root, scans)
    names = _class_names(root, train_scan, test_scan)
    all_files = [f for s in scans for fs in s.classes.values() for f in fs]
    side = _image_size(all_files, size) if modality == "image" else 0

    train = _decode_scan(train_scan, names, modality, side)
    labels = np.asarray(train.labels, dtype=np.int64)
    skipped = train.skipped
    if test_scan is None:
        x = _stack(modality, train.items)
        splits = holdout_splits(x, labels, names, min_per_class=1)
        notes = normalisation_notes(train.forms, x) if modality == "image" else ()
    else:
        test = _decode_scan(test_scan, names, modality, side)
        if not test.items:
            raise ValueError(f"{root}: test/ has no readable {modality} file. {LAYOUT}")
        both = _stack(modality, train.items + test.items)  # one grey-or-RGB decision
        notes = normalisation_notes(train.forms + test.forms, both) if modality == "image" \
            else ()
        n = len(train.items)
        splits = Splits(Split(both[:n], labels),
                        Split(both[n:], np.asarray(test.labels, dtype=np.int64)), names)
        skipped = skipped + test.skipped
    if len(splits.test) == 0:
        raise ValueError(f"{root}: too few readable files to hold out a test split; put at "
                         "least two files in some class folder, or add a test/ folder.")
    return _dataset(root, modality, splits, skipped, notes)


def _dataset(root: Path, modality: Modality, splits: Splits,
             skipped: list[tuple[Path, str]], notes: tuple[str, ...] = ()) -> FolderDataset:
    n = len(splits.train) + len(splits.test)
    kind = "images" if modality == "image" else "audio clips"
    shape = "x".join(str(d) for d in splits.train.x.shape[1:])
    data = FolderDataset(
        name=f"{FOLDER}{root}", modality=modality, target_kind="classification", train=splits.train,
        test=splits.test, class_names=splits.class_names,
        description=f"your folder {root}: {n} {kind} ({shape}) in "
                    f"{len(splits.class_names)} classes",
        sample_rate=SAMPLE_RATE if modality == "audio" else None,
        needs="unknown: a folder of your own says nothing about which invariances help",
        source=str(root),
        skipped=tuple((str(p.relative_to(root)), reason) for p, reason in skipped),
        notes=notes,
    )
    check(data)
    return data

"""Image sources, torchvision datasets (offline behaviour) and user folders."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from amortinv.data import Dataset, DatasetUnavailable, get, images, info, registry, torchvision_sets
from amortinv.data.folders import FolderDataset, load_folder

#: name -> (input shape, number of classes) for every offline image source built here.
SOURCES = {
    "mnist-subset": ((1, 28, 28), 10),
    "opencv-digits": ((1, 20, 20), 10),
    "textures": ((1, 32, 32), 3),
    "tuxpaint-photos": ((3, 64, 64), 8),
    "openclipart": ((3, 64, 64), 7),
    "flags-mirrored": ((3, 64, 64), 2),
}
TORCHVISION = ("cifar10", "cifar100", "stl10", "svhn", "flowers102", "dtd", "pets", "caltech101")


@pytest.fixture(scope="module")
def clean_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every source decodes from scratch into a private cache (not the repository's data/)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMORTINV_DATA", str(tmp_path_factory.mktemp("amortinv-data")))
        registry.forget()
        yield
    registry.forget()


def _load(name: str) -> Dataset:
    entry = info(name)
    if not entry.available():
        pytest.skip(f"{name} is not installed here: {entry.hint}")
    return get(name)


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


def _label_of(data: Dataset, example: np.ndarray) -> list[int]:
    """Labels of every copy of ``example`` in either split (byte-equal)."""
    found = []
    for split in (data.train, data.test):
        hits = np.flatnonzero((split.x == example).reshape(len(split), -1).all(axis=1))
        found += [int(split.y[i]) for i in hits]
    return found


# -- offline sources ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SOURCES))
def test_source_shapes_and_fast_reload(clean_cache, name: str) -> None:
    shape, n_classes = SOURCES[name]
    data = _load(name)
    assert data.modality == "image" and data.target_kind == "classification"
    assert data.input_shape == shape and len(data.class_names) == n_classes
    for split in (data.train, data.test):
        assert split.x.dtype == np.uint8 and split.y.dtype == np.int64
        assert set(np.unique(split.y)) == set(range(n_classes))
    assert not _rows(data.train.x) & _rows(data.test.x)  # no image on both sides

    registry.forget()
    start = time.perf_counter()
    again = get(name)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(again.test.x, data.test.x)


def test_mnist_subset_labels_follow_their_files(clean_cache) -> None:
    data = _load("mnist-subset")
    folder = images._mnist_dir()
    assert folder is not None
    assert len(data.train) + len(data.test) == sum(
        len(json.loads((folder / f"{d}.json").read_text())["data"]) // 784 for d in range(10))
    for digit in (3, 8):
        flat = np.asarray(json.loads((folder / f"{digit}.json").read_text())["data"][-784:])
        example = np.round(flat * 255).astype(np.uint8).reshape(1, 28, 28)
        labels = _label_of(data, example)
        assert labels and set(labels) == {digit}


def test_opencv_digit_cells_are_labelled_by_their_rows(clean_cache) -> None:
    data = _load("opencv-digits")
    sheet = np.asarray(Image.open(images.OPENCV_DIGITS).convert("L"))
    for row, col in ((15, 7), (0, 99), (49, 0)):  # rows 15-19 hold 3s; row 0 0s; row 49 9s
        cell = sheet[row * 20:(row + 1) * 20, col * 20:(col + 1) * 20][None]
        assert row // 5 in _label_of(data, cell)
    assert np.bincount(data.train.y).tolist() == [400] * 10


def test_textures_splits_come_from_disjoint_image_bands(clean_cache) -> None:
    data = _load("textures")
    from skimage import data as skdata

    brick = skdata.brick()
    top_left_train = brick[:images.PATCH, :images.PATCH][None]
    top_left_test = brick[-images.TEST_ROWS:][:images.PATCH, :images.PATCH][None]
    assert _label_of(data, top_left_train) == [0]
    assert (data.test.x[0] == top_left_test).all() and data.test.y[0] == 0
    assert not _rows(data.train.x) & _rows(data.test.x)


def test_tuxpaint_keeps_photos_only(clean_cache) -> None:
    paths, _ = images._tux_files()
    assert not [p for p in paths if "cartoon" in p.parts or "_mirror" in p.stem]
    data = _load("tuxpaint-photos")
    drawings = [p for p in paths if images._tux_photo(p) is None]
    assert len(data.train) + len(data.test) == len(paths) - len(drawings)
    pig = images.TUXPAINT_DIR / "animals/mammals/pig.png"
    assert _label_of(data, images.clip_art(pig)) == [data.class_names.index("mammal")]


def test_openclipart_labels_are_top_folders(clean_cache) -> None:
    data = _load("openclipart")
    for top in ("tools", "plants"):
        first = sorted((images.OPENCLIPART_DIR / top).rglob("*.png"))[0]
        assert data.class_names.index(top) in _label_of(data, images.clip_art(first))
    # Composited on white: corners of drawings are white far more often than not.
    corners = data.train.x[:, :, 0, 0]
    assert (corners == 255).all(axis=1).mean() > 0.5


def test_flags_mirrored_pairs_and_disjoint_flags(clean_cache) -> None:
    data = _load("flags-mirrored")
    for split in (data.train, data.test):
        n = len(split) // 2
        assert (split.y[:n] == 0).all() and (split.y[n:] == 1).all()
        np.testing.assert_array_equal(split.x[n:], split.x[:n, :, :, ::-1])
        assert images._asymmetric(split.x).all()  # symmetric flags would make label noise
    assert not _rows(data.train.x) & _rows(data.test.x)


# -- torchvision datasets ----------------------------------------------------------------------
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_sets_are_unavailable_offline_with_a_hint(clean_cache, name: str) -> None:
    assert not info(name).available()
    with pytest.raises(DatasetUnavailable, match=f"python -m amortinv.data fetch {name}"):
        get(name)
    assert name in torchvision_sets.FETCHERS


def test_fetch_knows_fashion_mnist_and_refuses_unknown_names() -> None:
    assert "fashion-mnist" in torchvision_sets.FETCHERS
    with pytest.raises(ValueError, match="can be fetched"):
        torchvision_sets.fetch("imagenet")


def test_cifar10_decoding_path_on_a_fake_batch(tmp_path, monkeypatch) -> None:
    """Test fixture, not CIFAR: tiny batches in CIFAR-10's python format (what torchvision
    downloads and reads: pickled dicts with 3072-byte rows, R then G then B planes)."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path))
    registry.forget()
    folder = tmp_path / "torchvision" / torchvision_sets.CIFAR10
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [*torchvision_sets.CIFAR10_FILES, "test_batch"]:
        planes = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
        batches[name] = (planes, rng.integers(0, 10, 3).tolist())
        with open(folder / name, "wb") as f:
            pickle.dump({"data": planes.reshape(3, -1), "labels": batches[name][1]}, f)
    names = [f"class{i}" for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)

    data = get("cifar10")
    assert data.train.x.shape == (15, 3, 32, 32) and data.test.x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(data.train.x[3:6], batches["data_batch_2"][0])
    np.testing.assert_array_equal(data.test.y, batches["test_batch"][1])
    assert data.class_names == tuple(names)
    registry.forget()


def test_stl10_decoding_path_on_a_fake_binary(tmp_path, monkeypatch) -> None:
    """Test fixture, not STL-10: its binary layout (uint8, each channel column-major)."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path))
    registry.forget()
    folder = tmp_path / "torchvision" / torchvision_sets.STL10
    folder.mkdir(parents=True)
    hwc = np.zeros((2, 96, 96, 3), dtype=np.uint8)
    hwc[:, :48, :, 0] = 255  # top half red: tells rows from columns
    for prefix in ("train", "test"):
        hwc.transpose(0, 3, 2, 1).tofile(folder / f"{prefix}_X.bin")
        np.array([1, 10], dtype=np.uint8).tofile(folder / f"{prefix}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))

    data = get("stl10")
    assert data.train.x.shape == (2, 3, 64, 64) and data.train.y.tolist() == [0, 9]
    red = data.train.x[0, 0]
    assert red[:28].min() == 255 and red[36:].max() == 0
    registry.forget()


def test_photo_set_decoding_path_on_a_fake_dtd(tmp_path, monkeypatch) -> None:
    """Test fixture, not DTD: torchvision's DTD layout (images/<class>/*.jpg and split lists in
    labels/), read by torchvision itself, then resized and centre-cropped to 64x64."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path))
    registry.forget()
    data_dir = tmp_path / "torchvision" / "dtd" / "dtd"
    colours = {"banded": (200, 30, 30), "woven": (30, 30, 200)}
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        lines = []
        for cls, colour in colours.items():
            for i in range(count):
                name = f"{split}_{i}.jpg"
                _png(data_dir / "images" / cls / name, colour, size=(120 + 10 * i, 90))
                lines.append(f"{cls}/{name}")
        (data_dir / "labels").mkdir(exist_ok=True)
        (data_dir / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")

    data = get("dtd")
    assert data.class_names == tuple(colours)
    assert (len(data.train), len(data.test)) == (8, 4) and data.input_shape == (3, 64, 64)
    for label, colour in enumerate(colours.values()):
        mean = data.train.x[data.train.y == label].reshape(-1, 3, 64 * 64).mean(axis=(0, 2))
        np.testing.assert_allclose(mean, colour, atol=3)
    registry.forget()


# -- user folders ------------------------------------------------------------------------------
def _png(path: Path, colour: tuple[int, ...], size: tuple[int, int] = (40, 30),
         mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def _image_folder(root: Path, per_class: int = 5) -> None:
    for i in range(per_class):
        _png(root / "red" / f"{i}.png", (200, 10 * i, 0))
        _png(root / "blue" / f"sub/{i}.jpg", (0, 10 * i, 200), size=(30, 40))


def test_folder_of_images_with_a_corrupt_file_and_transparency(tmp_path) -> None:
    _image_folder(tmp_path)
    _png(tmp_path / "blue" / "clear.png", (0, 0, 255, 100), size=(50, 50), mode="RGBA")
    (tmp_path / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("a stray file")

    data = get(f"folder:{tmp_path}")
    assert isinstance(data, FolderDataset)
    assert data.class_names == ("blue", "red") and data.input_shape == (3, 64, 64)
    skipped = dict(data.skipped)
    assert set(skipped) == {"red/broken.png", "notes.txt"}
    assert "not a readable image" in skipped["red/broken.png"]
    assert len(data.train) + len(data.test) == 11
    assert set(data.test.y.tolist()) == {0, 1}  # at least one held out per class
    # RGBA (0, 0, 255) at alpha 100 over white: 255 - 100 = 155 in red and green.
    rgba_pixel = np.array([155, 155, 255], dtype=np.uint8)
    centres = np.concatenate([data.train.x, data.test.x])[:, :, 32, 32]
    assert (np.abs(centres.astype(int) - rgba_pixel).max(axis=1) <= 1).sum() == 1


def test_grey_small_images_stay_grey_at_32(tmp_path) -> None:
    for i in range(4):
        _png(tmp_path / "dark" / f"{i}.png", 20 + i, size=(16, 16), mode="L")
        _png(tmp_path / "light" / f"{i}.bmp", (220, 220, 220), size=(16, 16))
    data = load_folder(tmp_path)
    assert data.input_shape == (1, 32, 32)
    light = data.class_names.index("light")
    assert (np.concatenate([data.train.x, data.test.x])[
        np.concatenate([data.train.y, data.test.y]) == light] == 220).all()


def test_exif_rotation_is_applied(tmp_path) -> None:
    """A phone photo stored sideways with an EXIF orientation is loaded upright."""
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:, 20:] = 255  # left half black, right half white, as stored
    for cls in ("sideways", "other"):
        for i in range(2):
            im = Image.fromarray(stored)
            exif = im.getexif()
            exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
            (tmp_path / cls).mkdir(exist_ok=True)
            im.save(tmp_path / cls / f"{i}.jpg", exif=exif, quality=95)
    data = load_folder(tmp_path, size=40)
    column = np.concatenate([data.train.x, data.test.x])[:, 0, :, 20].astype(int)
    assert (column[:, 2:18] < 40).all() and (column[:, 22:38] > 215).all()  # black on top


def test_train_and_test_folders_are_kept(tmp_path) -> None:
    _image_folder(tmp_path / "train", per_class=4)
    _image_folder(tmp_path / "test", per_class=2)
    data = load_folder(tmp_path, size=24)
    assert (len(data.train), len(data.test)) == (8, 4)
    assert data.input_shape == (3, 24, 24)
    red = data.class_names.index("red")
    assert (data.test.x[data.test.y == red][:, 0] == 200).all()


def test_folder_of_audio(tmp_path) -> None:
    t = np.arange(8000) / 8000
    for i in range(3):
        for name, hz in (("low", 220), ("high", 880)):
            (tmp_path / name).mkdir(exist_ok=True)
            sf.write(tmp_path / name / f"{i}.wav", 0.5 * np.sin(2 * np.pi * hz * t), 8000)
    (tmp_path / "low" / "empty.wav").write_bytes(b"")
    data = load_folder(tmp_path)
    assert data.modality == "audio" and data.sample_rate == 16000
    assert data.train.x.dtype == np.float32 and data.input_shape == (16000,)
    assert len(data.train) + len(data.test) == 6
    assert [f for f, _ in data.skipped] == ["low/empty.wav"]


@pytest.mark.parametrize(("layout", "message"), [
    ("missing", "is not a folder"),
    ("empty", "holds no image or audio file"),
    ("no class folders", "holds 2 image or audio file.* but none in a class sub-folder"),
    ("one class", "only the class 'red'"),
    ("mixed", "mixes 10 image file"),
    ("unreadable class", "has no readable image file"),
    ("train only", "has a train/ folder but no test/"),
    ("unknown test class", "test/ has class folder"),
])
def test_bad_layouts_say_what_is_wrong(tmp_path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "one class":
        _png(root / "red" / "a.png", (200, 0, 0))
    elif layout == "no class folders":  # e.g. a zip of one folder of images: its root
        _png(root / "a.png", (200, 0, 0))
        _png(root / "b.png", (0, 0, 200))
    elif layout == "mixed":
        _image_folder(root)
        (root / "red" / "beep.wav").write_bytes(b"RIFF")
    elif layout == "unreadable class":
        _png(root / "red" / "a.png", (200, 0, 0))
        (root / "blue").mkdir()
        (root / "blue" / "b.png").write_text("not an image")
    elif layout == "train only":
        _image_folder(root / "train")
    elif layout == "unknown test class":
        _image_folder(root / "train")
        _png(root / "test" / "green" / "a.png", (0, 200, 0))
    with pytest.raises(ValueError, match=message) as err:
        load_folder(root)
    if layout not in ("mixed", "unknown test class"):
        assert "sub-folder per class" in str(err.value)

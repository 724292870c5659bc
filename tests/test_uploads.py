import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from zips import make_zip

from amortinv.data.folders import load_folder
from amortinv.data.uploads import UploadError, extract_zip, load_zip


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_class_folder_zip_unpacks_and_loads(tmp_path):
    files = {f"pets/{c}/{i}.png": png(i + 10 * k) for k, c in enumerate(("cat", "dog"))
             for i in range(5)}
    files["pets/cat/broken.png"] = b"not an image"
    files["__MACOSX/pets/._cat"] = b"junk"
    root = extract_zip(make_zip(files), tmp_path / "u")
    assert root.name == "pets" and sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    ds = load_folder(str(root))
    assert ds.class_names == ("cat", "dog") and len(ds.train) + len(ds.test) == 10
    assert any("broken.png" in str(path) for path, _ in ds.skipped)


@pytest.mark.parametrize(("name", "words"), [
    ("../evil.png", "unsafe path"),
    ("/etc/evil.png", "unsafe path"),
    ("a/../../evil.png", "unsafe path"),
])
def test_unsafe_paths_are_refused_and_nothing_is_written(tmp_path, name, words):
    with pytest.raises(UploadError, match=words):
        extract_zip(make_zip({"ok/a.png": png(0), name: png(1)}), tmp_path / "u")
    assert not any((tmp_path / "u").iterdir())
    assert not (tmp_path / "evil.png").exists()


def test_links_size_and_count_limits_and_junk(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        link = zipfile.ZipInfo("cls/link.png")
        link.external_attr = (0o120777 << 16)  # a symbolic link
        z.writestr(link, "/etc/passwd")
    with pytest.raises(UploadError, match="link"):
        extract_zip(buf.getvalue(), tmp_path / "a")
    big = make_zip({"c/a.bin": b"\0" * 5000})
    with pytest.raises(UploadError, match="unpacks to more"):
        extract_zip(big, tmp_path / "b", max_unpacked=1000)
    assert not (tmp_path / "b").exists()  # a partial unpack is removed
    with pytest.raises(UploadError, match="limit is"):
        extract_zip(make_zip({f"c/{i}.png": b"x" for i in range(5)}), tmp_path / "c",
                    max_files=3)
    with pytest.raises(UploadError, match="MB"):
        extract_zip(b"x" * 2000, tmp_path / "d", max_upload=1000)
    with pytest.raises(UploadError, match="not a zip"):
        extract_zip(b"plain text", tmp_path / "e")
    with pytest.raises(UploadError, match="no files"):
        extract_zip(make_zip({".hidden": b"x"}), tmp_path / "f")


def test_an_upload_loads_into_memory_and_leaves_nothing_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the zip is unpacked, then removed
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    files = {f"{c}/{i}.png": png(i + 10 * k) for k, c in enumerate(("cat", "dog"))
             for i in range(4)}
    files["cat/notes.png"] = b"not an image"
    ds = load_zip(make_zip(files), "my pets.zip")
    assert ds.name == "upload:my pets.zip" and ds.class_names == ("cat", "dog")
    assert "my pets.zip" in ds.description and str(tmp_path) not in ds.description
    assert [path for path, _ in ds.skipped] == ["cat/notes.png"]
    assert list(tmp_path.iterdir()) == []


def test_an_upload_without_images_or_audio_is_refused_by_its_own_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    text_only = make_zip({"a/readme.txt": b"hello", "b/notes.txt": b"world"})
    with pytest.raises(UploadError) as err:
        load_zip(text_only, "notes.zip")
    assert "notes.zip" in str(err.value) and str(tmp_path) not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def test_mixed_kinds_of_images_are_made_one_kind_with_notes(tmp_path):
    """Grey, RGB, RGBA, palette and 16-bit images in one upload all become 8-bit RGB, each
    conversion said in a note; unreadable files are listed by name and the rest used."""
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 200
    files = {
        "a/rgb.png": encoded(Image.fromarray(red)),
        "a/photo.jpg": encoded(Image.fromarray(red), "JPEG", quality=95),
        "a/grey.png": encoded(Image.fromarray(np.full((16, 16), 90, np.uint8))),
        "a/sixteen.png": encoded(Image.fromarray(np.full((16, 16), 40000, np.uint16))),
        "b/clear.png": encoded(Image.new("RGBA", (16, 16), (0, 0, 255, 0))),
        "b/palette.gif": encoded(Image.fromarray(red).convert("P"), "GIF"),
        "b/grey2.png": encoded(Image.fromarray(np.full((16, 16), 30, np.uint8))),
        "b/cut.png": png(3)[:200],  # a noise image cut short
        "b/empty.jpg": b"",
    }
    ds = load_zip(make_zip(files), "mixed.zip")
    assert ds.input_shape == (3, 32, 32)  # colour wins; small images stay at 32 px
    assert sorted(path for path, _ in ds.skipped) == ["b/cut.png", "b/empty.jpg"]
    assert len(ds.train) + len(ds.test) == 7
    notes = " ".join(ds.notes)
    assert "1 of 7 images have transparency" in notes
    assert "1 of 7 images are palette images" in notes
    assert "1 of 7 images are 16-bit" in notes
    assert "4 of 7 images are grey" in notes  # grey, grey2, 16-bit and the white clear one
    x = np.concatenate([ds.train.x, ds.test.x])
    # The fully transparent image is white; the 16-bit one is 40000 / 257 = 156 grey.
    assert ((x == 255).all(axis=(1, 2, 3))).sum() == 1
    assert (np.abs(x.astype(int) - 156) <= 1).all(axis=(1, 2, 3)).sum() == 1


def test_an_all_grey_upload_stays_grey_without_notes(tmp_path):
    files = {f"{c}/{i}.png": encoded(Image.fromarray(np.full((8, 8), 20 * i + k, np.uint8)))
             for k, c in enumerate(("x", "y")) for i in range(3)}
    ds = load_zip(make_zip(files), "grey.zip")
    assert ds.input_shape[0] == 1 and ds.notes == ()

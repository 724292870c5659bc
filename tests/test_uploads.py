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

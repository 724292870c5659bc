import io
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from zips import damaged, make_zip, with_headers

import amortinv.data
from amortinv.data.audio_io import AudioDecodeError, read_clip
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
    root = extract_zip(make_zip(files), tmp_path / "u").root
    assert root.name == "pets" and sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    ds = load_folder(str(root))
    assert ds.class_names == ("cat", "dog") and len(ds.train) + len(ds.test) == 10
    assert any("broken.png" in str(path) for path, _ in ds.skipped)


@pytest.mark.parametrize(("name", "words"), [
    ("../evil.png", "unsafe path"),
    ("/etc/evil.png", "unsafe path"),
    ("a/../../evil.png", "unsafe path"),
    ("..\\evil.png", "unsafe path"),  # a backslash is a separator, checked all the same
    ("a\\..\\..\\evil.png", "unsafe path"),
    ("C:\\evil.png", "unsafe path"),
    ("\\\\server\\share\\evil.png", "unsafe path"),
    ("../evil/", "unsafe path"),  # folders are unpacked too, so they are checked too
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


# -- zips other tools write, and damaged zips -------------------------------------------------
def pets(n: int = 3) -> dict[str, bytes]:
    return {f"{c}/{i}.png": png(i + 10 * k) for k, c in enumerate(("cat", "dog"))
            for i in range(n)}


def test_a_password_protected_zip_is_refused_saying_to_zip_it_without_one(tmp_path):
    locked = with_headers(make_zip(pets()), flag_bits=0x1)  # what `zip -P` writes
    with pytest.raises(UploadError, match="password-protected: zip the folder again without"):
        load_zip(locked, "locked.zip")


def test_an_unreadable_compression_method_is_refused_saying_to_use_deflate(tmp_path):
    deflate64 = with_headers(make_zip(pets(), zipfile.ZIP_DEFLATED), method=9)
    with pytest.raises(UploadError) as err:
        extract_zip(deflate64, tmp_path / "u")
    assert "deflate64" in str(err.value) and "standard (Deflate) method" in str(err.value)
    assert not (tmp_path / "u").exists()  # what was unpacked before is removed


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_damaged_file_is_left_out_and_listed_and_the_rest_used(tmp_path, method):
    files = {f"pets/{name}": data for name, data in pets().items()}
    ds = load_zip(damaged(make_zip(files, method), "pets/cat/0.png"), "p.zip")  # bzip2: was
    # "the zip is damaged (Invalid data stream)", the whole zip refused
    assert len(ds.train) + len(ds.test) == 5
    assert [name for name, _ in ds.skipped] == ["cat/0.png"]  # below the top folder
    assert "damaged in the zip" in ds.skipped[0][1] and "zip the folder again" in ds.skipped[0][1]


def test_a_zip_whose_files_are_all_damaged_is_refused(tmp_path):
    data = make_zip(pets(1), zipfile.ZIP_DEFLATED)
    for name in ("cat/0.png", "dog/0.png"):
        data = damaged(data, name)
    with pytest.raises(UploadError, match="the zip is damaged: none of its files"):
        extract_zip(data, tmp_path / "u")
    assert not (tmp_path / "u").exists()


def test_a_damaged_file_is_named_when_its_class_is_left_empty(tmp_path):
    files = pets()
    files["bird/0.png"] = png(99)
    with pytest.raises(UploadError) as err:
        load_zip(damaged(make_zip(files, zipfile.ZIP_DEFLATED), "bird/0.png"), "p.zip")
    assert "bird has no readable image file" in str(err.value)
    assert "damaged in the zip and were left out (bird/0.png)" in str(err.value)


def test_backslashes_in_names_are_folder_separators(tmp_path):
    files = {name.replace("/", "\\"): data for name, data in pets().items()}  # old Windows tools
    ds = load_zip(make_zip(files), "pets.zip")
    assert ds.class_names == ("cat", "dog") and len(ds.train) + len(ds.test) == 6


@pytest.mark.parametrize("empty", ["dog", "bird"])
def test_an_empty_class_folder_in_a_zip_reads_as_it_does_on_disk(tmp_path, empty):
    """An empty folder (dog/ next to cat/, or a third class bird/) is unpacked: the message is
    the one the same folder on disk gets, with the zip's name for the folder's path."""
    files = pets() if empty == "bird" else {k: v for k, v in pets().items() if "cat" in k}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.mkdir(empty)
    with pytest.raises(UploadError) as from_zip:
        load_zip(buf.getvalue(), "pets.zip")
    buf.seek(0)
    zipfile.ZipFile(buf).extractall(tmp_path / "disk")
    with pytest.raises(ValueError) as from_disk:
        load_folder(tmp_path / "disk")
    assert f"{empty} has no readable image file" in str(from_zip.value)
    assert str(from_zip.value) == str(from_disk.value).replace(
        f"{(tmp_path / 'disk').resolve()}/", "pets.zip: ")


def wav(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def tone(seconds: float = 0.5, hz: float = 440.0, level: float = 0.5,
         rate: int = 16000) -> np.ndarray:
    return level * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)


def test_skipped_reasons_name_files_in_the_zip_not_the_temporary_folder(tmp_path):
    files = {f"pets/{name}": data for name, data in pets().items()}
    files["pets/cat/broken.png"] = b"not an image"
    ds = load_zip(make_zip(files), "pets.zip")
    assert ds.skipped == (  # named below the zip's top folder, as skipped files are
        ("cat/broken.png", "not a readable image (cannot identify image file "
                           "'cat/broken.png')"),)
    sounds = {f"{c}/{i}.wav": wav(tone(hz=300 + 200 * k + 20 * i))
              for k, c in enumerate(("low", "high")) for i in range(3)}
    sounds["low/broken.wav"] = b"not audio"
    ((name, reason),) = load_zip(make_zip(sounds), "sounds.zip").skipped
    assert name == "low/broken.wav" and reason.startswith("not a readable audio file")
    assert "amortinv-upload" not in reason and "'low/broken.wav'" in reason


def rate_in_header(data: bytes, rate: int) -> bytes:
    """A WAV file ``data`` whose header says ``rate`` samples per second, samples unchanged."""
    raw = bytearray(data)
    raw[24:28] = rate.to_bytes(4, "little")
    return bytes(raw)


def test_an_implausible_sample_rate_is_unreadable_and_the_rest_used(tmp_path):
    sounds = {f"{c}/{i}.wav": wav(tone(hz=300 + 200 * k + 20 * i))
              for k, c in enumerate(("low", "high")) for i in range(3)}
    sounds["low/slow.wav"] = rate_in_header(wav(tone(seconds=0.125)), 1)  # 2,000 samples
    sounds["high/fast.wav"] = rate_in_header(wav(tone(seconds=0.125)), 10_000_000)
    start = time.perf_counter()
    ds = load_zip(make_zip(sounds), "sounds.zip")
    assert time.perf_counter() - start < 20
    assert len(ds.train) + len(ds.test) == 6
    reasons = dict(ds.skipped)
    assert sorted(reasons) == ["high/fast.wav", "low/slow.wav"]
    assert "sample rate of 1 Hz; audio is recorded at 1,000 to 1,000,000 Hz" in \
        reasons["low/slow.wav"]
    assert "sample rate of 10,000,000 Hz" in reasons["high/fast.wav"]
    (tmp_path / "slow.wav").write_bytes(sounds["low/slow.wav"])
    with pytest.raises(AudioDecodeError, match="sample rate of 1 Hz"):
        read_clip(tmp_path / "slow.wav")


def test_a_long_recording_is_read_only_as_far_as_its_clip_needs(tmp_path):
    """A quiet tone at the start, silence, then a loud burst 40 s in: only the first 31 s are
    read, so the tone is the clip (reading everything, the burst made the tone "silence")."""
    rate = 8000
    x = np.zeros(45 * rate)
    x[: rate // 2] = tone(hz=500.0, level=0.004, rate=rate)
    x[40 * rate: 41 * rate] = tone(seconds=1.0, hz=2000.0, level=0.9, rate=rate)
    (tmp_path / "long.wav").write_bytes(wav(x, rate))
    clip = read_clip(tmp_path / "long.wav")
    spectrum = np.abs(np.fft.rfft(clip))
    assert abs(np.argmax(spectrum) * 16000 / len(clip) - 500.0) < 5


@pytest.mark.parametrize("name", ["folder:", "folder:  "])
def test_a_folder_task_without_a_path_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # what `folder:` read before: the current folder
    with pytest.raises(ValueError, match=r"folder: needs a path, e\.g\. folder:/path/to/classes"):
        amortinv.data.get(name)

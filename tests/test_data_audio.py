"""Audio sources: decoding, rendering (tiny subsets) and the registered audio datasets."""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from amortinv.data import audio, registry
from amortinv.data.audio_io import PEAK, AudioDecodeError, decode_many, read_clip
from amortinv.data.render import (
    DIGIT_WORDS,
    GM_FAMILIES,
    Note,
    digit_grid,
    render_notes,
    render_spoken_digits,
)

SR = 16000
needs_tts = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                               reason="espeak-ng and flite are not installed")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
needs_asterisk = pytest.mark.skipif(not audio.asterisk_digit_files() or not shutil.which("sox"),
                                    reason="no Asterisk digit prompts (or no sox)")
needs_fluidsynth = pytest.mark.skipif(
    not (shutil.which("fluidsynth") and audio.SOUNDFONT.exists()),
    reason="fluidsynth or fluid-soundfont-gm is not installed")


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test renders and caches into its own empty data folder."""
    monkeypatch.setenv("AMORTINV_DATA", str(tmp_path / "data"))
    registry.forget()
    yield tmp_path / "data"
    registry.forget()


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5,
         channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def semitones(f: float, reference: float) -> float:
    return abs(12 * np.log2(f / reference))


# -- read_clip / decode_many ------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "rate", "channels"),
                         [(".wav", 8000, 1), (".flac", 22050, 2), (".ogg", 44100, 2)])
def test_read_clip_formats_resample_to_fixed_mono_clip(tmp_path: Path, suffix: str, rate: int,
                                                       channels: int) -> None:
    path = tmp_path / f"tone{suffix}"
    sf.write(str(path), tone(440.0, 0.5, rate, channels=channels), rate)
    clip = read_clip(path)
    assert clip.shape == (SR,) and clip.dtype == np.float32
    assert np.abs(clip).max() == pytest.approx(PEAK, abs=1e-3)
    assert semitones(dominant_hz(clip), 440.0) < 0.5  # right frequency => resampled correctly


@needs_sox
def test_read_clip_headerless_gsm(tmp_path: Path) -> None:
    wav, gsm = tmp_path / "tone.wav", tmp_path / "tone.gsm"
    sf.write(str(wav), tone(300.0, 0.6, 8000), 8000)
    subprocess.run(["sox", str(wav), "-t", "gsm", "-r", "8000", "-c", "1", str(gsm)], check=True)
    clip = read_clip(gsm)
    assert clip.shape == (SR,)
    assert semitones(dominant_hz(clip), 300.0) < 1.0


def test_read_clip_pads_centred_and_cuts_after_start(tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    x = np.concatenate([np.zeros(4000), tone(500.0, 0.25, SR), np.zeros(4000)])
    sf.write(str(short), x, SR)
    clip = read_clip(short)
    loud = np.flatnonzero(np.abs(clip) > 0.05)
    # leading/trailing silence trimmed, then the 0.25 s tone centred in 1 s
    assert abs((loud[0] + loud[-1]) / 2 - SR / 2) < 0.02 * SR
    assert abs((loud[-1] - loud[0]) - 0.25 * SR) < 0.03 * SR

    long = tmp_path / "long.wav"
    sf.write(str(long), np.concatenate([tone(500.0, 1.0, SR), tone(2000.0, 1.0, SR)]), SR)
    assert semitones(dominant_hz(read_clip(long)), 500.0) < 0.5  # kept the first second
    assert read_clip(long, seconds=2.0).shape == (2 * SR,)


def test_read_clip_without_normalize_keeps_level(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(str(path), tone(440.0, 1.0, SR, amplitude=0.1), SR)
    clip = read_clip(path, trim=False, normalize=False)
    assert np.abs(clip).max() == pytest.approx(0.1, abs=0.005)


def test_bad_files_raise_audio_decode_error_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00 this is not audio" * 10)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    no_frames = tmp_path / "no_frames.wav"
    sf.write(str(no_frames), np.zeros(0, dtype=np.float32), SR)
    for path in (corrupt, empty, no_frames):
        with pytest.raises(AudioDecodeError, match=path.name):
            read_clip(path)
    with pytest.raises(FileNotFoundError):
        read_clip(tmp_path / "missing.wav")


def test_decode_many_skips_and_lists_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(str(good), tone(440.0, 0.5, SR), SR)
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS garbage")
    empty = tmp_path / "empty.wav"
    empty.touch()
    paths = [bad, good, empty, tmp_path / "missing.wav", good]
    decoded = decode_many(paths)
    assert decoded.clips.shape == (2, SR) and decoded.clips.dtype == np.float32
    assert decoded.kept.tolist() == [1, 4]
    assert [p.name for p, _ in decoded.skipped] == ["bad.ogg", "empty.wav", "missing.wav"]
    assert all(reason for _, reason in decoded.skipped)


# -- spoken digits ----------------------------------------------------------------------------
@needs_tts
def test_render_spoken_digits_is_labelled_and_idempotent(data_dir: Path) -> None:
    rendered = render_spoken_digits(limit=12, progress=False)
    assert len(rendered) == 12
    for path, clip in rendered:
        assert path.exists() and path.is_relative_to(data_dir)
        assert path.name.startswith(f"{clip.digit}_")
        info = sf.info(str(path))
        assert info.channels == 1 and info.frames > 0.1 * info.samplerate
    mtimes = [p.stat().st_mtime_ns for p, _ in rendered]
    again = render_spoken_digits(limit=12, progress=False)
    assert [p.stat().st_mtime_ns for p, _ in again] == mtimes  # nothing rendered twice
    seven = next(c for c in digit_grid() if c.digit == 7 and c.voice.startswith("en"))
    assert DIGIT_WORDS[7] in seven.argv(Path("out.wav"))


@needs_tts
@needs_asterisk
def test_spoken_digits_trains_on_renders_and_tests_on_real_prompts() -> None:
    splits = audio.spoken_digits(limit=12)
    data = registry.from_splits(registry.info("spoken-digits"), splits)
    assert data.sample_rate == SR and data.input_shape == (SR,)
    assert data.train.x.dtype == np.float32 and np.abs(data.train.x).max() <= 1.0
    rendered = render_spoken_digits(limit=12, progress=False)
    assert data.train.y.tolist() == [c.digit for _, c in rendered]
    real = audio.asterisk_digit_files()
    assert data.test.y.tolist() == [d for _, d in real]
    assert all(p.stem == str(d) for p, d in real)  # 3.wav is labelled 3
    assert len(data.test) == len(real) and set(data.test.y.tolist()) == set(range(10))


@needs_asterisk
def test_asterisk_digits_loads_through_the_registry_cache(data_dir: Path) -> None:
    first = registry.get("asterisk-digits")
    assert first.target_kind == "classification" and first.class_names == tuple("0123456789")
    assert first.train.x.shape[1:] == (SR,) and len(first.train) > len(first.test) > 0
    assert list(data_dir.glob("cache/asterisk-digits-*.npz"))
    registry.forget()
    second = registry.get("asterisk-digits")  # from the npz now
    np.testing.assert_array_equal(first.test.x, second.test.x)
    np.testing.assert_array_equal(first.train.y, second.train.y)


def test_missing_tool_gives_dataset_unavailable_with_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    for name, package in (("spoken-digits", "espeak-ng"), ("notes-family", "fluidsynth")):
        assert name not in registry.names("audio")
        with pytest.raises(registry.DatasetUnavailable, match=package):
            registry.get(name)


# -- instrument notes -------------------------------------------------------------------------
@needs_fluidsynth
def test_rendered_notes_have_the_right_pitch_and_loudness() -> None:
    notes = [Note(73, 60, 100), Note(73, 69, 100), Note(73, 69, 30)]  # flute: strong fundamental
    rendered = render_notes(notes=notes, progress=False)
    clips = [read_clip(p, trim=False, normalize=False) for p, _ in rendered]
    for clip, (_, note) in zip(clips, rendered, strict=True):
        assert clip.shape == (SR,)
        expected = 440.0 * 2 ** ((note.pitch - 69) / 12)
        assert semitones(dominant_hz(clip[: int(0.8 * SR)]), expected) < 1.0
    rms = [float(np.sqrt((c**2).mean())) for c in clips]
    assert rms[1] > 2 * rms[2]  # velocity 100 is much louder than velocity 30


@needs_fluidsynth
def test_notes_datasets_share_clips_and_carry_metadata(data_dir: Path) -> None:
    limit = 40
    family = registry.from_splits(registry.info("notes-family"), audio.notes_family(limit))
    pitch = registry.from_splits(registry.info("notes-pitch"), audio.notes_pitch(limit))
    velocity = registry.from_splits(registry.info("notes-velocity"), audio.notes_velocity(limit))
    assert family.class_names == GM_FAMILIES and len(set(family.train.y.tolist())) > 8
    for data in (pitch, velocity):
        np.testing.assert_array_equal(data.test.x, family.test.x)  # same clips, other labels
        assert data.train.y.shape == (len(data.train), 1) and data.train.y.dtype == np.float32
        assert data.train.y.min() >= 0.0 and data.train.y.max() <= 1.0
    assert np.abs(family.train.x).max() <= 1.0 and family.input_shape == (SR,)

    with open(data_dir / "render" / "notes" / "notes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == limit
    for row in rows:
        assert int(row["family"]) == int(row["program"]) // 8
        assert row["family_name"] == GM_FAMILIES[int(row["family"])]
        assert row["file"] == Note(int(row["program"]), int(row["pitch"]),
                                   int(row["velocity"])).filename
    arrays = audio.rendered_notes(limit)
    kept = set(zip(arrays["program"].tolist(), arrays["pitch"].tolist(),
                   arrays["velocity"].tolist(), strict=True))
    listed = {(int(r["program"]), int(r["pitch"]), int(r["velocity"])) for r in rows}
    assert kept <= listed and len(kept) == len(family.train) + len(family.test)


# -- real recordings --------------------------------------------------------------------------
@pytest.mark.skipif(not audio.SONIC_PI_DIR.is_dir(), reason="sonic-pi-samples is not installed")
def test_sonic_pi_categories_from_file_names() -> None:
    data = registry.get("sonic-pi")
    assert len(data.class_names) == 14 and "bd" in data.class_names
    assert data.input_shape == (round(audio.SONIC_PI_SECONDS * SR),)
    assert len(data.train) + len(data.test) == len(list(audio.SONIC_PI_DIR.glob("*.flac")))
    assert set(data.test.y.tolist()) == set(range(14))  # every category is tested


@pytest.mark.skipif(not audio.TUXPAINT_DIR.is_dir(),
                    reason="tuxpaint-stamps-default is not installed")
def test_tuxpaint_speech_holds_out_whole_stamps() -> None:
    files = audio.tuxpaint_files(per_language=6)
    assert {lang for _, lang, _ in files} == set(audio.TUXPAINT_LANGUAGES)
    assert all(p.name.endswith(f"_desc_{lang}.ogg") for p, lang, _ in files)
    test = audio.grouped_holdout([stamp for _, _, stamp in files])
    stamps = np.array([stamp for _, _, stamp in files])
    assert 0 < test.sum() < len(files)
    assert not set(stamps[test]) & set(stamps[~test])
    data = registry.from_splits(registry.info("tuxpaint-speech"), audio.tuxpaint_speech(6))
    assert len(data.train) + len(data.test) == len(files)
    assert data.class_names == tuple(audio.TUXPAINT_LANGUAGES.values())
    assert data.train.x.shape[1:] == (SR,) and data.train.x.dtype == np.float32

"""Render synthetic audio with system tools: spoken digits (espeak-ng, flite), notes (fluidsynth).

Renders are written once under ``cache_dir()/render/`` and reused: every function here skips
files that already exist, so an interrupted render resumes and a second call costs nothing.
``limit`` renders an evenly spread subset (for tests and quick looks).
"""

from __future__ import annotations

import csv
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from amortinv.data.audio_io import resample
from amortinv.data.cache import cache_dir

T = TypeVar("T")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Rendered speech is kept at telephone bandwidth, like the real Asterisk recordings it is
#: tested on: a model should not learn to rely on energy above 4 kHz that the test set lacks.
DIGITS_RATE = 8000
ENGLISH_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                   "en-gb-x-gbcwmd", "en-us-nyc")
#: The languages of the real test voices (es, fr, it, ru); espeak-ng says a numeral in the
#: voice's language. Italian and Russian have one espeak-ng voice each, so they render twice.
OTHER_VOICES = ("es", "es-419", "fr-fr", "fr-be", "it", "it", "ru", "ru-lv")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
            "klatt3", "croak", "whisperf")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
#: Speaking rates: isolated digits in the real prompts last ~0.6 s (median, after trimming);
#: espeak-ng's default 175 wpm gives ~0.4 s, so rates lean slow.
ESPEAK_WPM = (80, 170)
ESPEAK_PITCH = (20, 80)
FLITE_STRETCHES = (1.0, 1.1, 1.2, 1.3, 1.45, 1.6)

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
NOTES_RATE = 16000
NOTE_SECONDS = 0.8  # key held down
CLIP_SECONDS = 1.0  # note plus release; everything still sounding is cut here
_SLOT_SECONDS = 1.1  # spacing of notes in one rendered MIDI file
_TICKS_PER_SECOND = 960  # 480 ticks per quarter note at 120 bpm
#: fluidsynth master gain (its default is 0.2): the loudest note of the full grid peaks near
#: 0.7, so no note clips and soft notes keep enough 16-bit resolution.
NOTE_GAIN = 1.0
PITCH_LOW, PITCH_HIGH = 36, 84  # C2 .. C6: a range every GM program can play
PITCHES_PER_PROGRAM = 8
VELOCITY_BANDS = ((24, 56), (64, 96), (104, 127))  # soft, medium, loud
GM_FAMILIES = ("Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings",
               "Ensemble", "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects",
               "Ethnic", "Percussive", "Sound Effects")


class RenderError(RuntimeError):
    """A system tool failed to render; the message shows the command and its error output."""


def render_dir(name: str) -> Path:
    path = cache_dir() / "render" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` items evenly spread over ``items`` (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, max(0, limit)).round().astype(int)]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RenderError(f"`{' '.join(argv)}` failed ({done.returncode}): "
                          f"{done.stderr.strip()[-500:]}")


def _parallel(work: Callable[[T], None], items: Sequence[T], workers: int, desc: str,
              progress: bool, unit: str) -> None:
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in tqdm(pool.map(work, items), total=len(items), desc=desc, unit=unit,
                      disable=not progress or not items):
            pass


# -- spoken digits -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitClip:
    """One rendered word: which digit, by which engine and voice, how fast, how high."""

    digit: int
    engine: str  # "espeak-ng" or "flite"
    voice: str  # espeak-ng "lang+variant", or a flite voice
    speed: int  # espeak-ng words per minute, or flite duration stretch in percent
    pitch: int  # espeak-ng pitch 0..99 (flite: 0, its voice's own)

    @property
    def filename(self) -> str:
        return f"{self.digit}_{self.engine}_{self.voice}_s{self.speed}_p{self.pitch}.wav"

    def argv(self, out: Path) -> list[str]:
        if self.engine == "flite":
            return ["flite", "-voice", self.voice, "--setf",
                    f"duration_stretch={self.speed / 100:.2f}", "-t", DIGIT_WORDS[self.digit],
                    "-o", str(out)]
        english = self.voice.startswith("en")
        text = DIGIT_WORDS[self.digit] if english else str(self.digit)
        return ["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p",
                str(self.pitch), "-w", str(out), text]


def digit_grid(seed: int = 0) -> list[DigitClip]:
    """The full render list: 2,860 clips, voice-major (``limit`` spreads over voices).

    English accents x variants, the test languages x variants, and flite's voices at several
    speeds; each espeak-ng clip draws its own speed and pitch (seeded).
    """
    rng = np.random.default_rng(seed)
    clips: dict[str, DigitClip] = {}
    for lang in ENGLISH_ACCENTS + OTHER_VOICES:
        for variant in VARIANTS:
            for digit in range(10):
                clip = DigitClip(digit, "espeak-ng", f"{lang}+{variant}",
                                 int(rng.integers(ESPEAK_WPM[0], ESPEAK_WPM[1] + 1)),
                                 int(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1)))
                clips.setdefault(clip.filename, clip)
    for voice in FLITE_VOICES:
        for stretch in FLITE_STRETCHES:
            for digit in range(10):
                clip = DigitClip(digit, "flite", voice, round(stretch * 100), 0)
                clips[clip.filename] = clip
    return list(clips.values())


def _render_digit(clip: DigitClip, folder: Path) -> None:
    """Render with the engine's own rate, then store mono 16-bit at :data:`DIGITS_RATE`."""
    import soundfile as sf  # here: the GPU image pre-trains on packed arrays without it

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        raw = Path(tmp) / "raw.wav"
        _run(clip.argv(raw))
        x, rate = sf.read(str(raw), dtype="float32", always_2d=True)
        if len(x) == 0:
            raise RenderError(f"`{' '.join(clip.argv(raw))}` produced no audio")
        part = Path(tmp) / clip.filename
        sf.write(str(part), resample(x.mean(axis=1), rate, DIGITS_RATE), DIGITS_RATE,
                 subtype="PCM_16")
        os.replace(part, folder / clip.filename)


def render_spoken_digits(limit: int | None = None, *, workers: int = 2,
                         progress: bool = True) -> list[tuple[Path, DigitClip]]:
    """Render (or reuse) the spoken-digit clips; returns ``(wav, clip)`` in grid order."""
    for tool, package in (("espeak-ng", "espeak-ng"), ("flite", "flite")):
        if shutil.which(tool) is None:
            raise RenderError(f"`{tool}` is not installed: `sudo apt-get install "
                              f"--no-install-recommends {package}`")
    folder = render_dir("spoken-digits")
    clips = spread(digit_grid(), limit)
    missing = [c for c in clips if not (folder / c.filename).exists()]
    _parallel(lambda c: _render_digit(c, folder), missing, workers,
              "rendering spoken digits", progress, "clip")
    return [(folder / c.filename, c) for c in clips]


# -- instrument notes --------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Note:
    """One rendered note of a General MIDI program."""

    program: int  # 0..127
    pitch: int  # MIDI note number
    velocity: int  # 1..127

    @property
    def family(self) -> int:
        """GM family (0..15): programs come in groups of eight."""
        return self.program // 8

    @property
    def filename(self) -> str:
        return f"p{self.program:03d}_n{self.pitch:03d}_v{self.velocity:03d}.wav"


def note_grid(seed: int = 0) -> list[Note]:
    """Every GM program x 8 pitches x 3 velocities (3,072 notes), program-major.

    Pitches step by half-octaves from C2 with a seeded random offset of 0-5 semitones, and
    velocities fall at random inside a soft, a medium and a loud band, so pitch and velocity
    take many values (a regression target, not a few classes) and no pitch class dominates.
    """
    rng = np.random.default_rng(seed)
    step = (PITCH_HIGH - PITCH_LOW) // PITCHES_PER_PROGRAM
    notes = []
    for program in range(128):
        for k in range(PITCHES_PER_PROGRAM):
            pitch = PITCH_LOW + step * k + int(rng.integers(0, step))
            for low, high in VELOCITY_BANDS:
                notes.append(Note(program, pitch, int(rng.integers(low, high + 1))))
    return notes


def _vlq(n: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def notes_midi(program: int, notes: Sequence[tuple[int, int]]) -> bytes:
    """A format-0 MIDI file: ``program``, then each (pitch, velocity) in its own slot.

    Each note is held for :data:`NOTE_SECONDS`; an All-Sound-Off at :data:`CLIP_SECONDS` kills
    its release so nothing leaks into the next slot.
    """
    slot = round(_SLOT_SECONDS * _TICKS_PER_SECOND)
    events = [(0, b"\xff\x51\x03" + (500_000).to_bytes(3, "big")), (0, bytes([0xC0, program]))]
    for i, (pitch, velocity) in enumerate(notes):
        t = i * slot
        events += [(t, bytes([0x90, pitch, velocity])),
                   (t + round(NOTE_SECONDS * _TICKS_PER_SECOND), bytes([0x80, pitch, 0])),
                   (t + round(CLIP_SECONDS * _TICKS_PER_SECOND), bytes([0xB0, 120, 0]))]
    events.sort(key=lambda e: e[0])
    track, last = b"", 0
    for t, data in events:
        track += _vlq(t - last) + data
        last = t
    track += _vlq(len(notes) * slot - last) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS_PER_SECOND // 2)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def _render_program(program: int, notes: Sequence[Note], folder: Path) -> None:
    """One fluidsynth run per program (loading the soundfont once), cut into one wav a note."""
    import soundfile as sf  # here: the GPU image pre-trains on packed arrays without it

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        mid, out = Path(tmp) / "notes.mid", Path(tmp) / "notes.wav"
        mid.write_bytes(notes_midi(program, [(n.pitch, n.velocity) for n in notes]))
        _run(["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(NOTE_GAIN), "-r",
              str(NOTES_RATE), "-T", "wav", "-O", "float", "-F", str(out), str(SOUNDFONT),
              str(mid)])
        x, _ = sf.read(str(out), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        length = round(CLIP_SECONDS * NOTES_RATE)
        for i, note in enumerate(notes):
            start = round(i * _SLOT_SECONDS * NOTES_RATE)
            clip = np.zeros(length, dtype=np.float32)
            part = x[start: start + length]
            clip[: len(part)] = part
            tmp_wav = Path(tmp) / note.filename
            sf.write(str(tmp_wav), np.clip(clip, -1, 1), NOTES_RATE, subtype="PCM_16")
            os.replace(tmp_wav, folder / note.filename)


def write_notes_metadata(notes: Sequence[Note], path: Path) -> None:
    """CSV with one row per note: file, program, family, family name, pitch, velocity."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "program", "family", "family_name", "pitch", "velocity"])
        for n in notes:
            writer.writerow([n.filename, n.program, n.family, GM_FAMILIES[n.family], n.pitch,
                             n.velocity])


def render_notes(limit: int | None = None, *, notes: Sequence[Note] | None = None,
                 workers: int = 2, progress: bool = True) -> list[tuple[Path, Note]]:
    """Render (or reuse) instrument notes; returns ``(wav, note)`` in grid order.

    ``notes`` overrides the grid (e.g. a few chosen notes); ``limit`` spreads a subset over
    it. Writes ``notes.csv`` (the metadata of the returned notes) beside the wavs.
    """
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        raise RenderError("instrument notes need fluidsynth and the FluidR3 GM soundfont: "
                          "`sudo apt-get install fluidsynth fluid-soundfont-gm`")
    folder = render_dir("notes")
    chosen = spread(list(notes) if notes is not None else note_grid(), limit)
    missing = [n for n in chosen if not (folder / n.filename).exists()]
    by_program: dict[int, list[Note]] = {}
    for n in missing:
        by_program.setdefault(n.program, []).append(n)
    _parallel(lambda p: _render_program(p, by_program[p], folder), sorted(by_program), workers,
              "rendering notes", progress, "program")
    write_notes_metadata(chosen, folder / "notes.csv")
    return [(folder / n.filename, n) for n in chosen]

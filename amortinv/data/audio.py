"""Offline audio sources (see docs/DATA.md for where each comes from and its licence).

Every clip is mono float32 at :data:`SAMPLE_RATE` Hz, decoded by :mod:`amortinv.data.audio_io`.
Synthetic sources (spoken digits, instrument notes) are rendered by :mod:`amortinv.data.render`
on the first load, so ``requires`` checks only for the tools, never for rendered files.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from amortinv.data.audio_io import decode_many
from amortinv.data.cache import CACHE_VERSION
from amortinv.data.dataset import Split, Splits
from amortinv.data.images import DIGITS, holdout_splits
from amortinv.data.registry import register
from amortinv.data.render import (
    CLIP_SECONDS,
    GM_FAMILIES,
    PITCH_HIGH,
    PITCH_LOW,
    SOUNDFONT,
    render_dir,
    render_notes,
    render_spoken_digits,
)

SAMPLE_RATE = 16000
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")

#: Languages with 300+ spoken stamp descriptions in tuxpaint-stamps-default.
TUXPAINT_LANGUAGES = {"be": "Belarusian", "bg": "Bulgarian", "ca": "Catalan", "da": "Danish",
                      "el": "Greek", "es": "Spanish", "fr": "French", "ro": "Romanian",
                      "ru": "Russian"}
TUXPAINT_PER_LANGUAGE = 300  # 9 x 300 one-second clips: ~170 MB cached
SONIC_PI_SECONDS = 2.0  # loops and pads need more than an attack to tell apart
_SILENT = 1e-4  # peak below which a rendered note is silence (outside the instrument's range)

ASTERISK_HINT = (
    "The real digit recordings come from Debian's Asterisk prompts: `sudo apt-get install "
    "--no-install-recommends sox asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav "
    "asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav "
    "asterisk-prompt-it-menardi-wav asterisk-prompt-es-co asterisk-prompt-fr-armelle` "
    "(any one voice is enough; sox decodes the GSM ones)."
)
TTS_HINT = "The synthetic digits are rendered with `sudo apt-get install --no-install-recommends " \
    "espeak-ng flite`."
NOTES_HINT = "Rendered from a soundfont: `sudo apt-get install --no-install-recommends " \
    "fluidsynth fluid-soundfont-gm`."


def _which(tool: str) -> Callable[[], bool]:
    return lambda: shutil.which(tool) is not None


def _decode(paths: Sequence[Path], labels: np.ndarray, what: str, seconds: float = 1.0, *,
            trim: bool = True, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` with a progress bar; drop (and warn about) files that fail."""
    decoded = decode_many(paths, SAMPLE_RATE, seconds, trim=trim, normalize=normalize,
                          progress=f"decoding {what}")
    if decoded.skipped:
        shown = "; ".join(f"{p.name}: {why}" for p, why in decoded.skipped[:3])
        warnings.warn(f"{what}: skipped {len(decoded.skipped)} undecodable file(s) ({shown})",
                      stacklevel=2)
    return decoded.clips, np.asarray(labels)[decoded.kept]


# -- spoken digits -----------------------------------------------------------------------------
def asterisk_digit_files() -> list[tuple[Path, int]]:
    """``(file, digit)`` for every installed Asterisk voice that has all ten digits."""
    if not ASTERISK_DIR.is_dir():
        return []
    found, seen = [], set()
    for voice in sorted(ASTERISK_DIR.iterdir()):
        folder = voice / "digits"
        files = []
        for digit in range(10):
            wav, gsm = folder / f"{digit}.wav", folder / f"{digit}.gsm"
            files += [(p, digit) for p in (wav if wav.exists() else gsm,) if p.exists()]
        if len(files) == 10 and folder.resolve() not in seen:  # links may repeat a voice
            seen.add(folder.resolve())
            found += files
    return found


def _real_digits() -> tuple[np.ndarray, np.ndarray]:
    files = asterisk_digit_files()
    return _decode([p for p, _ in files], np.array([d for _, d in files], dtype=np.int64),
                   "Asterisk digits")


@register(
    "spoken-digits",
    modality="audio",
    target_kind="classification",
    description="Spoken digits 0-9: train on 2,860 synthetic clips (espeak-ng, flite), test on "
    "80 real recordings (Asterisk prompts, 8 voices, 5 languages)",
    requires=(_which("espeak-ng"), _which("flite"), _which("sox"),
              lambda: bool(asterisk_digit_files())),
    hint=f"{TTS_HINT} {ASTERISK_HINT}",
    needs="digit identity across voices: invariance to pitch, speaking rate, speaker, "
    "language and noise, to bridge the synthetic-to-real gap",
    sample_rate=SAMPLE_RATE,
)
def spoken_digits(limit: int | None = None) -> Splits:
    """Synthetic-to-real transfer: nothing in the training set was recorded by a person.

    The renders are telephone-band (8 kHz) like the real prompts, and cover the prompts'
    languages (English, Spanish, French, Italian, Russian), so what is left between train and
    test is the gap between synthetic and real voices. ``limit`` renders a subset.
    """
    rendered = render_spoken_digits(limit)
    x, y = _decode([p for p, _ in rendered],
                   np.array([c.digit for _, c in rendered], dtype=np.int64), "spoken digits")
    return Splits(Split(x, y), Split(*_real_digits()), DIGITS)


@register(
    "asterisk-digits",
    modality="audio",
    target_kind="classification",
    description="Asterisk digit prompts 0-9: 80 real recordings, 8 voices in 5 languages "
    "(20% held out)",
    requires=(_which("sox"), lambda: bool(asterisk_digit_files())),
    hint=ASTERISK_HINT,
    needs="digit identity from very few examples: invariance to speaker, pitch and gain",
    sample_rate=SAMPLE_RATE,
)
def asterisk_digits() -> Splits:
    return holdout_splits(*_real_digits(), DIGITS)


# -- instrument notes --------------------------------------------------------------------------
def _notes_cache() -> Path:
    return render_dir("notes") / f"clips-v{CACHE_VERSION}.npz"


def rendered_notes(limit: int | None = None) -> dict[str, np.ndarray]:
    """Clips and labels (``x``, ``program``, ``pitch``, ``velocity``) of the rendered notes.

    Not peak-normalised: velocity is mostly loudness, so levels stay as rendered. Notes that
    came out silent (a pitch outside the instrument's samples) are dropped. The three notes
    datasets share these arrays, cached once beside the renders rather than three times.
    """
    cached = _notes_cache()
    if limit is None and cached.exists():
        with np.load(cached) as z:
            return dict(z)
    rendered = render_notes(limit)
    labels = np.array([(n.program, n.pitch, n.velocity) for _, n in rendered], dtype=np.int64)
    x, labels = _decode([p for p, _ in rendered], labels, "notes", CLIP_SECONDS, trim=False,
                        normalize=False)
    audible = np.abs(x).max(axis=1) > _SILENT
    arrays = {"x": x[audible], "program": labels[audible, 0], "pitch": labels[audible, 1],
              "velocity": labels[audible, 2]}
    if limit is None:
        part = cached.with_suffix(".part.npz")
        np.savez(part, **arrays)
        os.replace(part, cached)  # atomic: an interrupted save leaves no torn cache
    return arrays


def _notes_splits(limit: int | None, target: Callable[[dict[str, np.ndarray]], np.ndarray],
                  class_names: tuple[str, ...] = ()) -> Splits:
    """One fixed split for all three notes tasks (stratified by family): same clips, new label."""
    notes = rendered_notes(limit)
    family = notes["program"] // 8
    index = holdout_splits(np.arange(len(family)), family, GM_FAMILIES)
    y = target(notes)
    return Splits(Split(notes["x"][index.train.x], y[index.train.x]),
                  Split(notes["x"][index.test.x], y[index.test.x]), class_names)


_NOTES_DESCRIPTION = "~3,000 FluidR3 GM notes (128 programs x 8 pitches x 3 velocities, 1 s)"


@register(
    "notes-family",
    modality="audio",
    target_kind="classification",
    description=f"Instrument family (16 GM families) of {_NOTES_DESCRIPTION}",
    requires=(_which("fluidsynth"), SOUNDFONT),
    hint=NOTES_HINT,
    cache=False,  # rendered_notes() caches the shared arrays once
    needs="instrument timbre: invariance to pitch and loudness helps",
    sample_rate=SAMPLE_RATE,
)
def notes_family(limit: int | None = None) -> Splits:
    return _notes_splits(limit, lambda n: n["program"] // 8, GM_FAMILIES)


@register(
    "notes-pitch",
    modality="audio",
    target_kind="regression",
    description=f"MIDI pitch {PITCH_LOW}-{PITCH_HIGH} scaled to [0, 1] of {_NOTES_DESCRIPTION}",
    requires=(_which("fluidsynth"), SOUNDFONT),
    hint=NOTES_HINT,
    cache=False,  # rendered_notes() caches the shared arrays once
    needs="pitch itself: a pitch-shift invariance destroys the label, timbre invariance helps",
    sample_rate=SAMPLE_RATE,
    target_names=("pitch",),
)
def notes_pitch(limit: int | None = None) -> Splits:
    scale = float(PITCH_HIGH - PITCH_LOW)
    return _notes_splits(
        limit, lambda n: ((n["pitch"] - PITCH_LOW) / scale).astype(np.float32)[:, None])


@register(
    "notes-velocity",
    modality="audio",
    target_kind="regression",
    description=f"Key velocity / 127 (loudness) of {_NOTES_DESCRIPTION}",
    requires=(_which("fluidsynth"), SOUNDFONT),
    hint=NOTES_HINT,
    cache=False,  # rendered_notes() caches the shared arrays once
    needs="loudness itself: gain and noise invariance destroy the label, pitch invariance helps",
    sample_rate=SAMPLE_RATE,
    target_names=("velocity",),
)
def notes_velocity(limit: int | None = None) -> Splits:
    return _notes_splits(limit, lambda n: (n["velocity"] / 127.0).astype(np.float32)[:, None])


# -- real recordings ---------------------------------------------------------------------------
@register(
    "sonic-pi",
    modality="audio",
    target_kind="classification",
    description="Sonic Pi samples: 165 real drum, bass, ambient, loop and effect sounds in "
    "14 categories, 2 s (20% held out)",
    requires=(SONIC_PI_DIR,),
    hint="Install it with `sudo apt-get install --no-install-recommends sonic-pi-samples`.",
    needs="sound category from few examples: invariance to gain, small shifts and pitch",
    sample_rate=SAMPLE_RATE,
)
def sonic_pi() -> Splits:
    files = sorted(SONIC_PI_DIR.glob("*.flac"))
    categories = tuple(sorted({f.name.split("_")[0] for f in files}))
    labels = np.array([categories.index(f.name.split("_")[0]) for f in files], dtype=np.int64)
    x, y = _decode(files, labels, "Sonic Pi samples", SONIC_PI_SECONDS)
    return holdout_splits(x, y, categories)


_DESC = re.compile(r"^(?P<stamp>.+)_desc_(?P<lang>[a-z]+)\.ogg$")


def tuxpaint_files(per_language: int = TUXPAINT_PER_LANGUAGE,
                   seed: int = 0) -> list[tuple[Path, str, str]]:
    """``(file, language, stamp)`` for up to ``per_language`` descriptions of each language.

    ``stamp`` names the picture a description belongs to (the same for every language).
    """
    rng = np.random.default_rng(seed)
    by_lang: dict[str, list[tuple[Path, str, str]]] = {lang: [] for lang in TUXPAINT_LANGUAGES}
    for path in sorted(TUXPAINT_DIR.rglob("*_desc_*.ogg")):
        match = _DESC.match(path.name)
        if match and match["lang"] in by_lang:
            stamp = str(path.parent.relative_to(TUXPAINT_DIR) / match["stamp"])
            by_lang[match["lang"]].append((path, match["lang"], stamp))
    chosen = []
    for files in by_lang.values():
        chosen += [files[i] for i in sorted(rng.permutation(len(files))[:per_language])]
    return chosen


def grouped_holdout(groups: Sequence[str], fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask that holds out whole groups (seeded), so no group is on both sides."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    test = {names[i] for i in rng.permutation(len(names))[: round(len(names) * fraction)]}
    return np.array([g in test for g in groups], dtype=bool)


@register(
    "tuxpaint-speech",
    modality="audio",
    target_kind="classification",
    description="Spoken language (9 languages) of real Tux Paint stamp descriptions: 2,700 "
    "clips, first second of speech (stamps held out)",
    requires=(TUXPAINT_DIR,),
    hint="Install it with `sudo apt-get install --no-install-recommends tuxpaint-stamps-default`.",
    needs="language identity: invariance to speaker, pitch, gain and noise, not to phonetic "
    "content",
    sample_rate=SAMPLE_RATE,
)
def tuxpaint_speech(per_language: int = TUXPAINT_PER_LANGUAGE) -> Splits:
    """Test stamps are held out as groups: a picture described in the training set never has
    a description (in any language) in the test set."""
    files = tuxpaint_files(per_language)
    codes = tuple(TUXPAINT_LANGUAGES)
    labels = np.array([codes.index(lang) for _, lang, _ in files], dtype=np.int64)
    test = grouped_holdout([stamp for _, _, stamp in files])
    x, y = _decode([p for p, _, _ in files], np.stack([labels, test], axis=1),
                   "Tux Paint descriptions")
    is_test = y[:, 1].astype(bool)
    names = tuple(TUXPAINT_LANGUAGES.values())
    return Splits(Split(x[~is_test], y[~is_test, 0]), Split(x[is_test], y[is_test, 0]), names)

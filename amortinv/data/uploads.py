"""A user's zip of images or audio (one folder per class), unpacked safely for the registry.

Every member is checked before anything is written: no absolute paths, no ``..``, no links or
devices, a cap on the number of files and on the unpacked size (declared sizes are not
trusted: the bytes written are counted too), so a hostile or broken zip cannot escape the
target folder or fill the disk. Hidden files and macOS resource forks are skipped.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UNPACKED_BYTES = 1 * 2**30
MAX_FILES = 20_000


class UploadError(ValueError):
    """A zip that cannot be used; the message says why and what to upload instead."""


def extract_zip(data: bytes, dest: str | Path, *, max_upload: int = MAX_UPLOAD_BYTES,
                max_unpacked: int = MAX_UNPACKED_BYTES, max_files: int = MAX_FILES) -> Path:
    """Unpack ``data`` into ``dest`` (created, must be empty) and return the dataset root.

    A zip that holds a single top folder has that folder as its root, so both
    ``classes/cat/1.png`` and ``cat/1.png`` layouts work.
    """
    if len(data) > max_upload:
        raise UploadError(f"the upload is {len(data) / 2**20:.0f} MB; the limit is "
                          f"{max_upload / 2**20:.0f} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("this is not a zip file: upload a .zip with one folder per class"
                          ) from None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise UploadError(f"{dest} is not empty")
    members = [m for m in archive.infolist() if not m.is_dir()]
    for m in members:  # every member, hidden ones included: one unsafe path refuses the zip
        _check_member(m)
    members = [m for m in members if _wanted(m.filename)]
    if not members:
        raise UploadError("the zip holds no files: put one folder per class inside")
    if len(members) > max_files:
        raise UploadError(f"the zip holds {len(members)} files; the limit is {max_files}")
    try:
        written = 0
        for m in members:
            target = dest.joinpath(*PurePosixPath(m.filename).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_unpacked:
                        raise UploadError(f"the zip unpacks to more than "
                                          f"{max_unpacked / 2**30:.1f} GB")
                    out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(f"the zip is damaged ({err})") from None
    except UploadError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    entries = [p for p in dest.iterdir()]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _wanted(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _check_member(m: zipfile.ZipInfo) -> None:
    path = PurePosixPath(m.filename)
    if path.is_absolute() or ".." in path.parts or "\\" in m.filename or ":" in path.parts[0]:
        raise UploadError(f"unsafe path in the zip: {m.filename!r}")
    mode = m.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
        raise UploadError(f"the zip holds a link or special file: {m.filename!r}")

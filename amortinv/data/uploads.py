"""A user's zip of images or audio (one folder per class), unpacked safely for the registry.

Every member is checked before anything is written: no absolute paths, no ``..``, no links or
devices, a cap on the number of files and on the unpacked size (declared sizes are not
trusted: the bytes written are counted too), so a hostile or broken zip cannot escape the
target folder or fill the disk. Hidden files and macOS resource forks are skipped.

:func:`load_zip` goes all the way to a dataset in memory and leaves nothing on disk: what the
app does with an upload.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amortinv.data.folders import FolderDataset

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


def load_zip(data: bytes, filename: str) -> FolderDataset:
    """The dataset in the zip ``data`` (uploaded as ``filename``), decoded into memory.

    It is unpacked into a temporary folder that is removed before this returns, whatever
    happens. Messages name the zip and the files inside it, never the temporary folder; files
    that cannot be read are listed in ``skipped`` by their path inside the zip. Raises
    :class:`UploadError` when the zip holds no usable dataset (e.g. only text files).
    """
    from amortinv.data.folders import load_folder

    with tempfile.TemporaryDirectory(prefix="amortinv-upload-") as tmp:
        try:
            root = extract_zip(data, Path(tmp) / "zip")
            dataset = load_folder(root)
        except ValueError as err:  # UploadError included: say it with the zip's own name
            raise UploadError(_without(str(err), tmp, filename)) from None
    inside = root.relative_to(Path(tmp) / "zip")
    where = f"{filename}" + (f" ({inside}/)" if str(inside) != "." else "")
    n = len(dataset.train) + len(dataset.test)
    kind = "images" if dataset.modality == "image" else "audio clips"
    return dataclasses.replace(
        dataset, name=f"upload:{filename}", source=filename,
        description=f"your upload {where}: {n} {kind} in {len(dataset.class_names)} classes")


def _without(message: str, tmp: str, filename: str) -> str:
    """``message`` with the temporary folder's paths replaced by the zip's name."""
    for root in (str(Path(tmp).resolve() / "zip"), str(Path(tmp) / "zip"), tmp):
        message = message.replace(root + "/", f"{filename}: ").replace(root, filename)
    return message

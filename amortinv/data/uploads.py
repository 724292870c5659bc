"""A user's zip of images or audio (one folder per class), unpacked safely for the registry.

Every member is checked before anything is written: no absolute paths, no ``..``, no links or
devices, a cap on the number of files and on the unpacked size (declared sizes are not
trusted: the bytes written are counted too), so a hostile or broken zip cannot escape the
target folder or fill the disk. Hidden files and macOS resource forks are skipped. A zip reads
like the folder it was made from: empty folders are unpacked too, and backslashes in names
(as some Windows tools write them) are folder separators.

A zip that needs a password, or whose files are compressed with a method Python cannot read
(e.g. Deflate64), is refused saying how to zip it again; a damaged file in a zip that is
otherwise readable is left out and listed, like a file that is not an image.

:func:`load_zip` goes all the way to a dataset in memory and leaves nothing on disk: what the
app does with an upload.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from amortinv.data.folders import FolderDataset

MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UNPACKED_BYTES = 1 * 2**30
MAX_FILES = 20_000
#: What reading a member with damaged bytes raises (bad CRC or header, a broken or cut stream).
_DAMAGED = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError)
_ENCRYPTED = 0x1  # general purpose flag bit 0: the member needs a password
_AGAIN = "zip the folder again and upload the new zip"


class UploadError(ValueError):
    """A zip that cannot be used; the message says why and what to upload instead."""


@dataclasses.dataclass(frozen=True)
class Unpacked:
    """What :func:`extract_zip` unpacked: the dataset's root folder and the files left out."""

    root: Path
    damaged: tuple[tuple[str, str], ...] = ()  # (name in the zip, reason) of each damaged file


def extract_zip(data: bytes, dest: str | Path, *, max_upload: int = MAX_UPLOAD_BYTES,
                max_unpacked: int = MAX_UNPACKED_BYTES, max_files: int = MAX_FILES) -> Unpacked:
    """Unpack ``data`` into ``dest`` (created, must be empty): the dataset root, and the files
    that were left out because their bytes in the zip are damaged.

    A zip that holds a single top folder has that folder as its root, so both
    ``classes/cat/1.png`` and ``cat/1.png`` layouts work. The whole zip is refused when every
    file in it is damaged, when it needs a password or when it uses a compression method that
    cannot be read.
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
    # every member, hidden ones included: one unsafe path refuses the zip
    entries = [(m, _member_path(m)) for m in archive.infolist()]
    entries = [(m, path) for m, path in entries if path.parts and _wanted(path)]
    files = [(m, path) for m, path in entries if not _is_dir(m)]
    if not files:
        raise UploadError("the zip holds no files: put one folder per class inside")
    for count, what in ((len(files), "files"), (len(entries) - len(files), "folders")):
        if count > max_files:
            raise UploadError(f"the zip holds {count} {what}; the limit is {max_files}")
    if any(m.flag_bits & _ENCRYPTED for m, _ in files):
        raise UploadError("the zip is password-protected: zip the folder again without a "
                          "password and upload the new zip")
    damaged: list[tuple[str, str]] = []
    try:
        written = 0
        for m, path in entries:
            target = dest.joinpath(*path.parts)
            if _is_dir(m):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                written = _copy(archive, m, path, target, written, max_unpacked)
            except _DAMAGED as err:
                target.unlink(missing_ok=True)
                damaged.append((str(path), f"damaged in the zip ({err}): {_AGAIN}"))
        if len(damaged) == len(files):
            raise UploadError(f"the zip is damaged: none of its files can be unpacked (e.g. "
                              f"{damaged[0][0]}: {damaged[0][1]})")
    except OSError as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(f"the zip is damaged ({err})") from None
    except UploadError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    tops = list(dest.iterdir())
    root = tops[0] if len(tops) == 1 and tops[0].is_dir() else dest
    return Unpacked(root, tuple(damaged))


def _copy(archive: zipfile.ZipFile, m: zipfile.ZipInfo, path: PurePosixPath, target: Path,
          written: int, max_unpacked: int) -> int:
    """Write member ``m`` (``path`` in the zip) to ``target``; return the bytes written so far,
    this file's included. Damaged bytes raise one of :data:`_DAMAGED`."""
    try:
        src = archive.open(m)
    except NotImplementedError:  # zipfile's word for a compression method it cannot read
        method = zipfile.compressor_names.get(m.compress_type, f"method {m.compress_type}")
        raise UploadError(
            f"the zip is compressed with {method} (e.g. {path}), which cannot be read here: "
            "zip the folder again with the standard (Deflate) method and upload the new zip"
        ) from None
    with src, open(target, "wb") as out:
        while chunk := _read(src):
            written += len(chunk)
            if written > max_unpacked:
                raise UploadError(f"the zip unpacks to more than "
                                  f"{max_unpacked / 2**30:.1f} GB")
            out.write(chunk)
    return written


def _read(src: IO[bytes]) -> bytes:
    """The next chunk of a member. bzip2 says its bytes are damaged with an OSError ("Invalid
    data stream"): raised as :class:`zipfile.BadZipFile`, like the other methods' damage, so
    that the file is left out and the rest used (writing's errors, a full disk, stay OSError
    and refuse the zip)."""
    try:
        return src.read(1 << 20)
    except OSError as err:
        raise zipfile.BadZipFile(str(err)) from None


def _is_dir(m: zipfile.ZipInfo) -> bool:
    return m.filename.endswith(("/", "\\"))


def _wanted(path: PurePosixPath) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in path.parts)


def _member_path(m: zipfile.ZipInfo) -> PurePosixPath:
    """Where member ``m`` goes, relative to the target folder, a backslash read as a folder
    separator; raises :class:`UploadError` for a path that would leave it, or a link."""
    path = PurePosixPath(m.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UploadError(f"unsafe path in the zip: {m.filename!r}")
    mode = m.external_attr >> 16
    if mode & 0o170000 and not (stat.S_ISREG(mode) or (_is_dir(m) and stat.S_ISDIR(mode))):
        raise UploadError(f"the zip holds a link or special file: {m.filename!r}")
    return path


def load_zip(data: bytes, filename: str) -> FolderDataset:
    """The dataset in the zip ``data`` (uploaded as ``filename``), decoded into memory.

    It is unpacked into a temporary folder that is removed before this returns, whatever
    happens. Messages name the zip and the files inside it, never the temporary folder; files
    that cannot be read, or are damaged in the zip, are listed in ``skipped`` by their path
    inside the zip (below its top folder, when it has just one), with the reason. Raises
    :class:`UploadError` when the zip holds no usable dataset (e.g. only text files).
    """
    from amortinv.data.folders import load_folder

    with tempfile.TemporaryDirectory(prefix="amortinv-upload-") as tmp:
        top = Path(tmp) / "zip"
        unpacked = Unpacked(top)
        try:
            unpacked = extract_zip(data, top)
            dataset = load_folder(unpacked.root)
        except ValueError as err:  # UploadError included: say it with the zip's own name
            raise UploadError(_without(str(err), tmp, filename)
                              + _left_out(unpacked.damaged)) from None
        inside = PurePosixPath(unpacked.root.relative_to(top).as_posix())
        skipped = [(path, _reason(reason, unpacked.root, path))
                   for path, reason in dataset.skipped]
        skipped += [(str(PurePosixPath(name).relative_to(inside)), reason)
                    for name, reason in unpacked.damaged]
    where = f"{filename}" + (f" ({inside}/)" if str(inside) != "." else "")
    n = len(dataset.train) + len(dataset.test)
    kind = "images" if dataset.modality == "image" else "audio clips"
    return dataclasses.replace(
        dataset, name=f"upload:{filename}", source=filename, skipped=tuple(skipped),
        description=f"your upload {where}: {n} {kind} in {len(dataset.class_names)} classes")


def _without(message: str, tmp: str, filename: str) -> str:
    """``message`` with the temporary folder's paths replaced by the zip's name."""
    for root in (str(Path(tmp).resolve() / "zip"), str(Path(tmp) / "zip"), tmp):
        message = message.replace(root + "/", f"{filename}: ").replace(root, filename)
    return message


def _reason(reason: str, root: Path, path: str) -> str:
    """Why the file ``path`` (below the unpacked ``root``) was skipped, naming files by their
    paths below ``root`` too, and without a leading repeat of ``path``."""
    for spelling in (str(root.resolve()), str(root)):
        reason = reason.replace(spelling + "/", "")
    return reason.removeprefix(f"{path}: ")


def _left_out(damaged: tuple[tuple[str, str], ...]) -> str:
    """A sentence naming the damaged files that were left out, for an error message."""
    if not damaged:
        return ""
    names = ", ".join(name for name, _ in damaged[:5]) + (" …" if len(damaged) > 5 else "")
    return f" Also, {len(damaged)} file(s) are damaged in the zip and were left out ({names}): " \
           f"{_AGAIN}."

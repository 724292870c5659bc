"""Zip archives built in memory, for the upload tests (unit and browser)."""

import io
import struct
import zipfile


def make_zip(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def with_headers(data: bytes, *, flag_bits: int = 0, method: int | None = None) -> bytes:
    """The zip ``data`` with ``flag_bits`` set and, if given, the compression ``method``
    replaced in every member's local and central headers: how a zip written by another tool
    (password-protected, or Deflate64) looks to a reader."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos, at = z.infolist(), z.start_dir
    headers = [(m.header_offset + 6) for m in infos]  # local header: flags, then method
    for _ in infos:  # central directory entries: flags at 8, then method
        headers.append(at + 8)
        name, extra, comment = struct.unpack("<HHH", raw[at + 28:at + 34])
        at += 46 + name + extra + comment
    for flags in headers:
        old = int.from_bytes(raw[flags:flags + 2], "little")
        raw[flags:flags + 2] = (old | flag_bits).to_bytes(2, "little")
        if method is not None:
            raw[flags + 2:flags + 4] = method.to_bytes(2, "little")
    return bytes(raw)


def damaged(data: bytes, name: str) -> bytes:
    """The zip ``data`` with the compressed bytes of member ``name`` overwritten in part."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        m = z.getinfo(name)
    at = m.header_offset  # the local header's own name and extra lengths, then the data
    name_length, extra_length = struct.unpack("<HH", raw[at + 26:at + 30])
    start = at + 30 + name_length + extra_length
    for i in range(start, start + min(m.compress_size, 16)):
        raw[i] ^= 0xFF
    return bytes(raw)

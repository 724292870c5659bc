"""Files written whole or not at all: checkpoints, the data cache, packed datasets.

A file is written to a temporary file beside it (``.NAME.XXXXXXXX.tmp``), flushed to disk and
moved over ``NAME`` in one step, so a reader (another app user, a resumed run) sees the old file
or the new one, never half of one; a process killed while writing leaves only the temporary
file, which the next run in that folder removes (:func:`amortinv.run_state.claim_run_folder`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: The temporary files of writes under way (:func:`written_whole`), as a glob pattern.
TEMPORARY = ".*.tmp"


@contextlib.contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; once the block ends without an error, the
    file replaces ``path``, with the permissions a plain ``open`` would have given it (the
    umask's, not ``mkstemp``'s private 0o600: a data folder or a run may be shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def umask() -> int:
    """The process umask, read without changing it where Linux says it (setting it to read
    it, the portable way, races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask

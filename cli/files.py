"""``write_atomically``: replace a file whole or not at all, and make the replacement durable.

A lamp's settings file, its colour and owner's password, the broker's credentials and config,
an installed unit: a Pi is often stopped by pulling its plug, and after that each of these
must hold its old content or its new one, never a mix or nothing (RELIABILITY.md, "Files
written whole").

The new content goes into a temporary file beside the old one, is flushed to the disk (fsync),
and is renamed over it; then the directory is flushed too, since the rename is only an entry
in it and a power cut before that flush can bring the old entry back or lose both. The
temporary file has its final mode before the first byte is written, so a secret is never
readable by others, whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: str | bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), with permissions ``mode``.

    The directory must exist. On any error the old file (or its absence) is left as it was, the
    temporary file is removed, and the ``OSError`` propagates: the caller names the file and the
    fix in its own error.

    Raises: OSError.
    Thread: any; writers racing on one path each leave a whole file (the last rename wins).
    """
    content = data.encode("utf-8") if isinstance(data, str) else data
    # A name of its own per write (not a fixed ".tmp"), so racing writers cannot truncate each
    # other's temporary file; mkstemp creates it 0600, and fchmod (no umask) sets ``mode``.
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        # Some filesystems cannot sync a directory (EINVAL); the rename is as durable as they
        # make it, and the file itself was synced.
        if error.errno != errno.EINVAL:
            raise
    finally:
        os.close(descriptor)

"""Files the sidecar writes: whole or absent, even if it dies mid-write or a reader looks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"
"""Names of files being written; one left behind by a crash is safe to delete."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` durably: a reader (SGLang-Omni, a restart) sees all or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    # A rename or unlink is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

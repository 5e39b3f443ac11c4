"""Cache files shared by concurrent processes: locks, and writes that are atomic.

A sweep runs several trainings at once against one cache directory. Whoever builds an entry holds
an exclusive `file_lock` while doing so, readers a shared one while they open it; every file is
written to a temporary name and renamed into place, so a build that is killed never leaves a file
that looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import tempfile
from typing import Iterator


@contextlib.contextmanager
def file_lock(lock_path: pathlib.Path, shared: bool = False) -> Iterator[None]:
    """Hold an `fcntl` lock on `lock_path` (created if needed) for the duration of the block:
    exclusive by default, shared (many readers, no writer) with `shared=True`. Not re-entrant.

    The kernel drops the lock if the process dies, so a killed build never blocks the next one."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_output(path: pathlib.Path, mode: str = "wb") -> Iterator:
    """A file object writing to a temporary sibling of `path`, renamed onto `path` only if the
    block finishes; on an exception the temporary file is removed and `path` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename."""
    with atomic_output(path) as handle:
        handle.write(data)

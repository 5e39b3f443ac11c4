"""Files that other processes read while they are written: locks, and writes that are atomic.

A sweep runs several trainings at once against one cache directory. Whoever builds an entry holds
an exclusive `file_lock` while doing so, readers a shared one while they open it. Every file a
reader may open at any moment — cache entries, summary.json, results.csv — is written to a
temporary name and renamed into place, so a writer that is killed never leaves a file that looks
complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator


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


def write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename."""
    with atomic_output(path) as handle:
        handle.write(data)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: pathlib.Path, payload: Any) -> None:
    """JSON (indented, keys sorted; values JSON lacks written as text) in one rename."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")

"""Files that other processes read while they are written: locks, and writes that are atomic.

One process writes a workdir at a time: a run (and a sweep) holds `workdir_lock` while it works,
and a second one on the same workdir is refused, naming the holder.

A sweep runs several trainings at once against one cache directory. Whoever builds an entry holds
an exclusive `file_lock` while doing so, readers a shared one while they open it. Every file a
reader may open at any moment — cache entries, summary.json, results.csv — is written to a
temporary name and renamed into place, so a writer that is killed never leaves a file that looks
complete.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import sys
import tempfile
import threading
from typing import Any, Iterator

from scaling.errors import ConfigError, WorkdirBusy


WORKDIR_LOCK = "workdir.lock"

# The errors of writing where this process may not: a read-only file system, or permissions.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
# ... and where there is no room: a full disk, a quota used up.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space_in(text: str) -> int | None:
    """The errno of a write refused for want of room whose words (`os.strerror`) `text` holds,
    as a library's error that wraps it says them, or None."""
    return next((number for number in NO_SPACE if os.strerror(number) in text), None)


@contextlib.contextmanager
def file_lock(lock_path: pathlib.Path, shared: bool = False) -> Iterator[None]:
    """Hold an `fcntl` lock on `lock_path` (created if needed) for the duration of the block:
    exclusive by default, shared (many readers, no writer) with `shared=True`. Not re-entrant.

    The kernel drops the lock if the process dies, so a killed build never blocks the next one.
    A shared lock in a folder this process cannot write (a read-only copy of a cache) is not
    taken: what is there can only be read."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(lock_path, "a+")
    except OSError as error:
        if not (shared and error.errno in UNWRITABLE):
            raise
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_mode() -> int:
    """The mode `open` gives a new file under this process's umask (read once: setting it is
    process-wide, so it is not done per write)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_output(path: pathlib.Path, mode: str = "wb") -> Iterator:
    """A file object writing to a temporary sibling of `path`, renamed onto `path` only if the
    block finishes; on an exception the temporary file is removed and `path` is untouched. The
    file gets the mode a plain `open` would (FILE_MODE), not the temporary file's private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


STAGING_PREFIX = ".staging"


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


@contextlib.contextmanager
def staged_outputs(folder: pathlib.Path, names: tuple[str, ...]) -> Iterator[pathlib.Path]:
    """A fresh hidden folder inside `folder` for the block to write a command's outputs in, by
    their names. When the block finishes, they replace the files of `names` in `folder` (each
    renamed in; a name the block did not write is removed, so that `folder` holds one command's
    outputs), with Ctrl-C and SIGTERM held until the last rename and one command's renames at a
    time: a command stopped or failing before then leaves the earlier outputs whole, and one
    stopped after has written them all. A folder in the place of an output is refused
    (IsADirectoryError) before anything is replaced.
    The staging folder is removed either way; one a killed process of this host left is
    removed by the next."""
    host = socket.gethostname()
    for entry in folder.glob(f"{STAGING_PREFIX}.*"):
        # .staging.<host>.<pid>.<random>
        owner, _, pid = entry.name[len(STAGING_PREFIX) + 1:].rpartition(".")[0].rpartition(".")
        if owner == host and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    stage = pathlib.Path(tempfile.mkdtemp(dir=folder,
                                          prefix=f"{STAGING_PREFIX}.{host}.{os.getpid()}."))
    try:
        yield stage
        # Renamed over a folder, one output would fail after others had replaced theirs.
        blocking = [name for name in names if (folder / name).is_dir()]
        if blocking:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR),
                                    str(folder / blocking[0]))
        # One command's swap at a time in `folder` (a lock on the folder itself), so that two
        # writing there together leave all of one's outputs.
        handle = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            with signals_held():
                for name in names:
                    if (stage / name).exists():
                        os.replace(stage / name, folder / name)
                    else:
                        (folder / name).unlink(missing_ok=True)
        finally:
            os.close(handle)  # (closing releases the lock)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM noted during the block and delivered to their handlers after it (in
    the main thread; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came = []
    handlers = {signum: signal.signal(signum, lambda number, frame: came.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(signum) is not None}  # one set outside Python stays
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)


def save_figure(figure, path: pathlib.Path, dpi: int) -> None:
    """A matplotlib `figure` laid out, saved as `path` (in the format its suffix names) and
    replaced atomically, so a command stopped while writing leaves the earlier file whole; then
    closed."""
    import matplotlib.pyplot as plt  # here: only the commands that draw load matplotlib

    if figure.get_layout_engine() is None:  # one the figure chose (constrained) stays
        figure.tight_layout()
    with atomic_output(path) as handle:
        figure.savefig(handle, dpi=dpi, format=path.suffix[1:].lower())
    plt.close(figure)


def write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename."""
    with atomic_output(path) as handle:
        handle.write(data)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_csv_atomic(path: pathlib.Path, columns, rows) -> None:
    """A CSV of `rows` (dicts) under the header `columns`, replacing `path` atomically."""
    with atomic_output(path, "w") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json_atomic(path: pathlib.Path, payload: Any) -> None:
    """JSON (indented, keys sorted; values JSON lacks written as text) in one rename."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_summary(workdir: pathlib.Path) -> dict | None:
    """A run's `summary.json`; None where it has none, or none that reads as a JSON object."""
    try:
        summary = json.loads((pathlib.Path(workdir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def describe_holder(record: str) -> str:
    """'pid 123 on host h (scaling-train, since …)' from a lock file's JSON, or the raw text."""
    try:
        holder = json.loads(record)
        return (f"pid {holder['pid']} on host {holder['host']} ({holder.get('program', '?')}, "
                f"since {holder.get('since', '?')})")
    except (ValueError, KeyError, TypeError):
        return record or "an unknown process"


@contextlib.contextmanager
def workdir_lock(workdir: pathlib.Path, program: str) -> Iterator[None]:
    """Hold `<workdir>/workdir.lock` for the block, or raise `WorkdirBusy` at once, naming the
    holder's pid and host, when another process holds it.

    The lock is an `fcntl` lock, which the kernel drops when its holder dies; the file records
    who holds it. A record left by a holder that died (the lock free, the record still there) is
    taken over with a warning."""
    path = pathlib.Path(workdir) / WORKDIR_LOCK
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise WorkdirBusy(
                f"{workdir} is in use by {describe_holder(handle.read().strip())}: one process "
                "per workdir; wait for it to end, stop it, or use another --workdir") from None
        handle.seek(0)
        stale = handle.read().strip()
        if stale:
            print(f"{program}: warning: taking over the workdir lock of "
                  f"{describe_holder(stale)}, which is no longer running", file=sys.stderr,
                  flush=True)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "program": program,
            "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # released cleanly: no record for the next holder to warn about
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def made_workdir(workdir: pathlib.Path, option: str = "--workdir") -> Iterator[pathlib.Path]:
    """`check_workdir(workdir)` for the block. The folders it makes are removed again after the
    block if it left nothing in them but a released `workdir_lock`: a run refused before it wrote
    anything (too big for the device's memory, data that cannot be read) leaves no trace."""
    workdir = check_workdir(workdir, option, create=False)
    made = [path for path in (workdir, *workdir.parents) if not path.exists()]
    checked = check_workdir(workdir, option)
    try:
        yield checked
    finally:
        if made:
            _remove_unused(made)


def _remove_unused(made: list[pathlib.Path]) -> None:
    """Remove the folders in `made` (deepest first) that hold nothing, or only a lock file that
    is empty and free, and empty folders (a `checkpoints/` before its first save)."""
    lock = made[0] / WORKDIR_LOCK
    with contextlib.suppress(OSError):
        for entry in made[0].iterdir():
            if entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir()):
                entry.rmdir()
    with contextlib.suppress(OSError):
        if [entry.name for entry in made[0].iterdir()] == [WORKDIR_LOCK] and \
                lock.stat().st_size == 0:
            with open(lock, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no one else holds it
                lock.unlink()
    for path in made:
        try:
            path.rmdir()
        except OSError:  # not empty: the run wrote there
            return


CACHE_ENV = "SCALING_CACHE"


def cache_home() -> pathlib.Path:
    """Where caches go by default: `$SCALING_CACHE`, else `~/.cache/scaling`."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or "~/.cache/scaling").expanduser()


def check_writable_folder(folder: pathlib.Path) -> None:
    """Create `folder` if missing and write a temporary file in it (removed at once); OSError
    where either fails (a folder that exists but takes no file, such as /proc, says so rather
    than "No such file or directory" alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OSError(error.errno, f"no file can be created in it: {error.strerror}") from None


def check_folder_can_be_made(folder: pathlib.Path) -> None:
    """`check_writable_folder` without creating `folder`: an existing one must take a file, a
    missing one's nearest existing parent must (so a command refused later leaves no empty folder
    behind). OSError where it would fail."""
    if folder.exists():
        check_writable_folder(folder)
    else:
        check_writable_folder(next(parent for parent in folder.parents if parent.exists()))


def check_workdir(workdir: pathlib.Path, option: str = "--workdir", *,
                  create: bool = True) -> pathlib.Path:
    """`workdir` created if missing (unless not `create`: a dry run writes nothing); ConfigError
    (one line) when it is empty, a file, cannot be made, or a folder this user cannot write in."""
    if not str(workdir).strip():  # pathlib reads "" as the current folder
        raise ConfigError(option, str(workdir), "a directory path (this one is empty)")
    workdir = pathlib.Path(workdir)
    try:
        if workdir.exists() and not workdir.is_dir():
            raise ConfigError(option, str(workdir), "a directory (this path is a file)")
        # A dry run creates nothing, and must refuse what mkdir would: a folder under a file.
        existing = next((path for path in workdir.parents if path.exists()), None)
    except PermissionError:  # a folder above it that this user may not enter
        raise ConfigError(option, str(workdir), "a directory this user can reach (a folder "
                          "above it may not be entered: permission denied)") from None
    except OSError as error:  # a name longer than the file system allows, a looping link
        raise ConfigError(option, str(workdir), f"a path the file system can hold "
                                                f"({error.strerror})") from None
    if existing is not None and not existing.is_dir():
        raise ConfigError(option, str(workdir),
                          f"a directory that can be created ({existing} is a file)")
    if workdir.is_dir() and not os.access(workdir, os.W_OK | os.X_OK):
        raise ConfigError(option, str(workdir), "a directory this user can write in")
    if not create:
        return workdir
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(option, str(workdir),
                          f"a directory that can be created ({error.strerror})") from None
    return workdir

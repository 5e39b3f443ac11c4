"""One writer per workdir (`scaling.files.workdir_lock`), the workdir check and atomic writes."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from scaling import files
from scaling.errors import ConfigError, WorkdirBusy

HOLD = """
import pathlib, sys, time
from scaling import files
with files.workdir_lock(pathlib.Path(sys.argv[1]), "holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_held_workdir_is_refused_naming_pid_and_host(repo, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=repo,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(repo)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusy) as refused:
            with files.workdir_lock(tmp_path, "second"):
                pass
        message = str(refused.value)
        assert f"pid {holder.pid} on host {socket.gethostname()} (holder" in message
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its record is stale and is taken over.
    with files.workdir_lock(tmp_path, "third"):
        record = json.loads((tmp_path / files.WORKDIR_LOCK).read_text())
        assert record["pid"] == os.getpid() and record["program"] == "third"


def test_a_stale_record_is_taken_over_with_a_warning(tmp_path, capsys):
    stale = {"pid": 999999, "host": "gone-host", "program": "scaling-train", "since": "then"}
    (tmp_path / files.WORKDIR_LOCK).write_text(json.dumps(stale))
    with files.workdir_lock(tmp_path, "scaling-train"):
        pass
    warning = capsys.readouterr().err
    assert "taking over the workdir lock of pid 999999 on host gone-host" in warning
    # Released cleanly: the next holder has nothing to warn about.
    assert (tmp_path / files.WORKDIR_LOCK).read_text() == ""
    with files.workdir_lock(tmp_path, "scaling-train"):
        pass
    assert capsys.readouterr().err == ""


def test_the_take_over_warning_is_printed_once_where_logging_prints_too(tmp_path):
    # scaling-train logs to stderr (logging.basicConfig): the warning is one line there, not a
    # log record and a printed line saying the same.
    import subprocess
    import sys

    stale = {"pid": 999999, "host": "gone-host", "program": "scaling-train", "since": "then"}
    (tmp_path / files.WORKDIR_LOCK).write_text(json.dumps(stale))
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
            "from scaling import files\n"
            "with files.workdir_lock(sys.argv[1], 'scaling-train'): pass")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stderr.count("taking over") == 1, result.stderr


def test_a_lock_is_released_when_its_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with files.workdir_lock(tmp_path, "a"):
            raise RuntimeError("boom")
    with files.workdir_lock(tmp_path, "b"):
        pass


def test_a_workdir_that_is_a_file_is_a_config_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match=r"^--workdir='.*file' is not allowed: a directory"):
        files.check_workdir(path)
    assert files.check_workdir(tmp_path / "new" / "dir").is_dir()
    # "" is the current folder to pathlib: a run or sweep wrote its files wherever it started.
    for empty in ("", " "):
        with pytest.raises(ConfigError, match=r"^--workdir='\s*' is not allowed: a directory "
                                              r"path \(this one is empty\)$"):
            files.check_workdir(empty, create=False)
    # A name past the file system's 255 bytes: an OSError traceback (exists() raised it).
    for create in (False, True):
        with pytest.raises(ConfigError, match=r"is not allowed: a path the file system can hold "
                                              r"\(File name too long\)$"):
            files.check_workdir(tmp_path / ("b" * 300), create=create)



def test_folders_made_for_a_block_that_wrote_nothing_are_removed_again(repo, tmp_path):
    with pytest.raises(RuntimeError):  # refused after taking the lock: nothing of it is left
        with files.made_workdir(tmp_path / "a" / "b" / "run") as workdir:
            with files.workdir_lock(workdir, "scaling-train"):
                raise RuntimeError("refused")
    assert list(tmp_path.iterdir()) == []
    with files.made_workdir(tmp_path / "a" / "run") as workdir:  # a run that wrote is kept
        (workdir / "summary.json").write_text("{}")
    assert (tmp_path / "a" / "run" / "summary.json").is_file()
    with files.made_workdir(tmp_path / "a" / "old") as workdir:  # nor a lock taken
        pass
    assert not (tmp_path / "a" / "old").exists()
    # A folder that was there before is left there, and so is its lock file.
    (tmp_path / "a" / "old").mkdir()
    with files.made_workdir(tmp_path / "a" / "old") as workdir:
        with files.workdir_lock(workdir, "scaling-train"):
            pass
    assert [path.name for path in (tmp_path / "a" / "old").iterdir()] == [files.WORKDIR_LOCK]
    # Another process that holds the lock of the new folder keeps it.
    holder = None
    try:
        with files.made_workdir(tmp_path / "held") as workdir:
            holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=repo,
                                      stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONPATH=str(repo)))
            assert holder.stdout.readline().strip() == "held"
            (workdir / files.WORKDIR_LOCK).write_text("")  # as if its record were not written yet
        assert (tmp_path / "held" / files.WORKDIR_LOCK).is_file()
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()



def test_a_workdir_this_user_cannot_write_in_or_reach_is_a_config_error(repo):
    """A read-only workdir passed the check, and the lock file's open then raised PermissionError,
    a traceback (scaling-sweep, scaling-train); so did a workdir under a folder it may not enter."""
    import shutil
    import tempfile

    top = pathlib.Path(tempfile.mkdtemp(prefix="workdir-permissions-"))
    try:
        top.chmod(0o755)
        (top / "read-only").mkdir(mode=0o555)
        (top / "closed").mkdir(mode=0o700)
        code = ("import sys; from scaling import files\n"
                "for path in sys.argv[1:]:\n"
                "    for create in (True, False):\n"
                "        try: files.check_workdir(path, create=create)\n"
                "        except Exception as error: print(type(error).__name__, error)\n")
        command = [sys.executable, "-c", code, str(top / "read-only"), str(top / "closed" / "run")]
        if os.geteuid() == 0:  # root may write anywhere: check as an unprivileged user
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv to drop to an unprivileged user")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
            probe = subprocess.run([*command[:4], sys.executable, "-c", "import scaling"],
                                   capture_output=True, timeout=120, cwd=repo,
                                   env=dict(os.environ, PYTHONPATH=str(repo)))
            if probe.returncode != 0:
                pytest.skip("an unprivileged user cannot run this checkout's interpreter")
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=repo,
                                env=dict(os.environ, PYTHONPATH=str(repo)))
        read_only = (f"ConfigError --workdir='{top / 'read-only'}' is not allowed: a directory "
                     "this user can write in")
        closed = (f"ConfigError --workdir='{top / 'closed' / 'run'}' is not allowed: a directory "
                  "this user can reach (a folder above it may not be entered: permission denied)")
        assert result.stdout.splitlines() == [read_only, read_only, closed, closed], \
            result.stdout + result.stderr
    finally:
        shutil.rmtree(top)


WRITE_UNDER_UMASK = """
import os, pathlib, stat, sys
os.umask(int(sys.argv[2], 8))
from scaling import files
folder = pathlib.Path(sys.argv[1])
files.write_text_atomic(folder / "atomic.txt", "x")
(folder / "plain.txt").write_text("x")
print(*(oct(stat.S_IMODE((folder / name).stat().st_mode)) for name in ("atomic.txt", "plain.txt")))
"""


@pytest.mark.parametrize("umask", ["022", "027"])
def test_an_atomic_write_gets_the_mode_a_plain_write_would(tmp_path, umask):
    printed = subprocess.run([sys.executable, "-c", WRITE_UNDER_UMASK, str(tmp_path), umask],
                             capture_output=True, text=True, check=True).stdout.split()
    assert printed == [oct(0o666 & ~int(umask, 8))] * 2


def test_staged_outputs_replace_the_earlier_ones_together_or_not_at_all(tmp_path):
    names = ("a.txt", "b.txt", "c.txt")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"earlier {name}")
    (tmp_path / "mine.txt").write_text("not an output")
    with pytest.raises(RuntimeError):
        with files.staged_outputs(tmp_path, names) as stage:
            (stage / "a.txt").write_text("later a.txt")
            raise RuntimeError("stopped part-way")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt", "b.txt", "mine.txt"]
    assert (tmp_path / "a.txt").read_text() == "earlier a.txt"
    with files.staged_outputs(tmp_path, names) as stage:
        (stage / "a.txt").write_text("later a.txt")
        (stage / "c.txt").write_text("later c.txt")
    # b.txt, which the later outputs lack, is gone; what is not an output stays.
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == {
        "a.txt": "later a.txt", "c.txt": "later c.txt", "mine.txt": "not an output"}


def test_a_signal_while_outputs_are_swapped_in_comes_after_the_last(tmp_path):
    import signal

    names = tuple(f"{index}.txt" for index in range(5))
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(
        sorted(path.name for path in tmp_path.glob("*.txt"))))
    original = os.replace

    def replace_and_signal(source, target):
        original(source, target)
        if pathlib.Path(target).name == "0.txt":
            signal.raise_signal(signal.SIGTERM)  # arrives after the first of five renames

    try:
        os.replace = replace_and_signal
        with files.staged_outputs(tmp_path, names) as stage:
            for name in names:
                (stage / name).write_text(name)
    finally:
        os.replace = original
        signal.signal(signal.SIGTERM, previous)
    assert received == [list(names)]  # handled once, with every output in place


def test_staging_a_killed_process_left_is_removed_by_the_next(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    left = tmp_path / f"{files.STAGING_PREFIX}.{host}.{dead.pid}.abcd1234"
    elsewhere = tmp_path / f"{files.STAGING_PREFIX}.another-host.{dead.pid}.abcd1234"
    running = tmp_path / f"{files.STAGING_PREFIX}.{host}.{os.getpid()}.abcd1234"
    for folder in (left, elsewhere, running):
        folder.mkdir()
        (folder / "fit.json").write_text("{}")
    with files.staged_outputs(tmp_path, ("fit.json",)) as stage:
        (stage / "fit.json").write_text("[]")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["fit.json", elsewhere.name, running.name])


def test_a_folder_in_the_place_of_an_output_is_refused_before_anything_is_replaced(tmp_path):
    # The figure was renamed in, then the array's rename failed on a folder: the new figure sat
    # beside the earlier outputs.
    (tmp_path / "x.png").write_text("earlier")
    (tmp_path / "x.npy").mkdir()
    with pytest.raises(IsADirectoryError, match="x.npy"):
        with files.staged_outputs(tmp_path, ("x.png", "x.npy")) as stage:
            (stage / "x.png").write_text("later")
            (stage / "x.npy").write_text("later")
    assert (tmp_path / "x.png").read_text() == "earlier"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.npy", "x.png"]


def test_two_commands_swapping_outputs_into_one_folder_leave_all_of_one(tmp_path):
    # Each one's renames are held until the other's are done: never a mix of the two.
    import threading

    names = tuple(f"{index}.txt" for index in range(200))
    original, entered = os.replace, threading.Event()

    def slow_replace(source, target):  # the first command's: its swap takes a second
        if threading.current_thread() is first:
            entered.set()
            time.sleep(0.005)
        original(source, target)

    def swap(label):
        with files.staged_outputs(tmp_path, names) as stage:
            for name in names:
                (stage / name).write_text(label)

    os.replace = slow_replace
    try:
        first = threading.Thread(target=swap, args=("first",))
        first.start()
        entered.wait(10)
        swap("second")  # its renames wait for the first's lock
        first.join(10)
    finally:
        os.replace = original
    assert {(tmp_path / name).read_text() for name in names} == {"second"}

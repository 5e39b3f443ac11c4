"""Ctrl-C (SIGINT) for the commands: at any moment, one line on stderr and exit code 130. A
SIGTERM stops a command the same way, with exit code 75 (`scaling-train` and a running sweep
save first: their own handlers take it).

`run(program, module)` is what a command's console script calls (`scaling.scripts`). Before
it imports the command's module (JAX, Orbax, TensorFlow Datasets: seconds), it installs a SIGINT
handler that records the request and raises KeyboardInterrupt (a second Ctrl-C exits at once),
except where Python cannot propagate it: inside a garbage collection callback (JAX's
`_xla_gc_callback`) or a `__del__`, a KeyboardInterrupt is printed as `Exception ignored in:
...` and lost, and the command ran on to exit 0. There the handler delivers it again 10 ms later
(SIGALRM); an unraisable hook does the same, silently, for one raised in such a place unseen.

An interrupted command then ends with `<program>: interrupted` (or its own line, `report`),
stdout and stderr flushed, and `os._exit(130)`: interpreter shutdown with XLA's threads alive
(compiling, a dataset import under way) can crash, and nothing is left for it to do.

`scaling-train` runs under the same handler until its own stop handler (`train.StopSignal`,
which saves at a step boundary) takes over; its second Ctrl-C uses `exit_now`. Until then a
SIGTERM (preemption) ends it the same way with its own line and exit code 75: nothing of the run
is written before that handler is in place, so nothing is lost.

This module imports nothing beyond the standard library, so that it is in place before them.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import signal
import sys
import threading
import time
import traceback

EXIT_INTERRUPTED = 130  # as scaling.status.EXIT_INTERRUPTED: 128 + SIGINT
EXIT_PREEMPTED = 75  # as scaling.status.EXIT_PREEMPTED
EXIT_FAILED = 1  # as scaling.status.EXIT_FAILED
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a program that signal ends
SWEEP_PID = "SCALING_SWEEP_PID"  # set by scaling-sweep for each run it starts: the sweep's pid
PR_SET_PDEATHSIG = 1  # prctl(2)


class _State:
    requested = False  # a Ctrl-C reached the handler
    pending = False  # ... and is yet to be raised where it propagates (`_defer`)
    reported = False  # the interrupted line is written
    line = ""  # what to write if nothing else was
    code = EXIT_INTERRUPTED  # the exit code of the stop asked for: 75 once a SIGTERM asked
    # One process of several (`jax.distributed`): a failure ends it at once, not in JAX's exit
    # barrier, which waits for partners that may be gone and then aborts.
    exit_on_failure = False
    # What the unraisable hook leaves out (`drop_unraisable`).
    dropped: list = []


def _where(frame) -> str | None:
    """"import" when `frame` runs inside an import, "swallowed" when a KeyboardInterrupt raised
    in it would be printed and dropped (a garbage collection callback, a `__del__`, the
    unraisable hook), else None."""
    swallowing = {_unraisable.__code__, *(getattr(callback, "__code__", None)
                                          for callback in gc.callbacks)}
    found = None
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return "import"
        if frame.f_code in swallowing or frame.f_code.co_name == "__del__":
            found = "swallowed"
        frame = frame.f_back
    return found


def _defer() -> None:
    """Deliver the interrupt again in 10 ms (SIGALRM), once out of where it could not be
    raised."""
    _State.requested = _State.pending = True
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.01)


def _on_sigint(signum, frame):
    del signum
    where = _where(frame)
    if where == "import":  # nothing done yet to undo; raised, it can crash a native module's
        exit_now()         # initialisation or come out as an ImportError
    if where == "swallowed":
        _defer()
        return
    if _State.pending:  # the one deferred (or a second Ctrl-C before it came): raised now
        _State.pending = False
    elif _State.requested:  # a second Ctrl-C: at once
        exit_now()
    _State.requested = True
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    """A SIGTERM to a command other than `scaling-train` stops it as a Ctrl-C does (what it had
    started is stopped and said, as for a Ctrl-C), with exit code 75."""
    _State.code = EXIT_PREEMPTED
    _on_sigint(signum, frame)


def exit_code() -> int:
    """The exit code of the stop that was asked for: 130 for a Ctrl-C, 75 for a SIGTERM."""
    return _State.code


def _on_alarm(signum, frame):
    del signum
    if not _State.pending:
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is _on_sigint:
        _on_sigint(signal.SIGINT, frame)
    else:  # the stop handler that took over (train.StopSignal) takes it; SIG_IGN: done
        _State.requested = _State.pending = False
        if callable(handler):
            handler(signal.SIGINT, frame)


def drop_unraisable(predicate) -> None:
    """Leave out the notices of exceptions Python could not raise (`sys.unraisablehook`, once
    `install`ed) that `predicate` accepts: a library's own, about work the command gave up and
    has said so in its own words."""
    if predicate not in _State.dropped:
        _State.dropped.append(predicate)


def _unraisable(unraisable):
    if (_State.requested and unraisable.exc_type is not None
            and issubclass(unraisable.exc_type, KeyboardInterrupt)):
        _defer()  # swallowed where the frame check did not see it coming: raised again
        return
    if any(predicate(unraisable) for predicate in _State.dropped):
        return
    sys.__unraisablehook__(unraisable)


def install(line: str) -> None:
    """Handle SIGINT as the module says; `line` is what an interrupted command writes."""
    _State.line = line
    sys.unraisablehook = _unraisable
    signal.signal(signal.SIGINT, _on_sigint)


def say_when_interrupted(line: str) -> None:
    """Make `line` what an interrupted command writes, from here on (it can name what the
    command has started by then). Installs nothing: a command's `main` called in a process that
    did not install the handler leaves SIGINT as it was."""
    _State.line = line


def requested() -> bool:
    return _State.requested


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came (one swallowed on the way included): called
    before a command writes its result, so that an interrupted command does not finish."""
    if _State.requested:
        raise KeyboardInterrupt


def report(line: str) -> None:
    """Write `line` (`<program>: interrupted`) to stderr, once."""
    _State.reported = True
    print(line, file=sys.stderr, flush=True)


def exit_on_failure() -> None:
    """Have `run` end this process at once when its command fails (exit 1, its traceback
    written): for one process of a multi-process run, whose failed partners would leave it in
    JAX's exit barrier, and then aborted, with no exit code the docs give."""
    _State.exit_on_failure = True


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe, a flush this one interrupted: nothing to add
            pass


def exit_now(line: str | None = None, code: int | None = None) -> None:
    """Exit with `code` (else `exit_code()`: 130, or 75 after a SIGTERM) at once: further
    SIGINTs and SIGTERMs ignored, `line` (else the installed one) written unless a line was,
    stdout and stderr flushed, no interpreter shutdown."""
    code = _State.code if code is None else code
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _flush()
    if not _State.reported:
        _State.reported = True
        try:
            os.write(2, f"{line or _State.line}\n".encode())
        except OSError:
            pass
    os._exit(code)


def die_with_sweep() -> None:
    """A run that `scaling-sweep` started (`SWEEP_PID` set) asks Linux to SIGKILL it when the
    sweep dies. Each run sits in a process group of its own, so that a signal sent to the
    sweep's group reaches it once, through the sweep; without this, a `kill -9` of that group, or
    the OOM killer's of the sweep, would leave the runs training on unwatched, as orphans. The
    variable is removed, so that what the run starts is not tied to the sweep."""
    sweep_pid = os.environ.pop(SWEEP_PID, "")
    if not sweep_pid:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no such link
        return
    if os.getppid() != int(sweep_pid):  # the sweep died before the link was made
        os.kill(os.getpid(), signal.SIGKILL)


# How long a command's leftover background threads get to end after its main returns.
THREAD_GRACE_SECONDS = 10.0


def _exit_if_threads_hang(code: int, crashed: bool = False) -> None:
    """Exit with `code` now (after the traceback of the exception being handled, when
    `crashed`) if threads other than daemons outlive main by `THREAD_GRACE_SECONDS`: the
    interpreter would wait for them at exit, and a failed asynchronous checkpoint save leaves
    Orbax's waiting forever."""
    def background() -> list[threading.Thread]:  # what the interpreter waits for at exit
        return [thread for thread in threading.enumerate()
                if thread is not threading.main_thread() and not thread.daemon]

    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    for thread in background():
        try:
            thread.join(max(0.0, deadline - time.monotonic()))
        except Exception:  # Orbax's raise their own errors from join (a timeout, the save's)
            pass
    if any(thread.is_alive() for thread in background()):
        if crashed:
            traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)  # the command has said all it had to


def run(program: str, module: str, line: str | None = None,
        preempted_line: str | None = None) -> int:
    """`module.main()` as the console command `program`, Ctrl-C handled from before the module
    is imported; returns main's exit code, or does not return after an interrupt or when
    background threads outlive main (`_exit_if_threads_hang`). A SIGTERM stops the command as a
    Ctrl-C does, with exit code 75; with `preempted_line`, a SIGTERM until `module` installs its
    own handler exits 75 at once with that line."""
    die_with_sweep()
    install(line or f"{program}: interrupted")
    signal.signal(signal.SIGTERM, _on_sigterm if not preempted_line else
                  lambda signum, frame: exit_now(preempted_line, EXIT_PREEMPTED))
    try:
        code = importlib.import_module(module).main()
        sys.stdout.flush()  # here, not at exit: a reader that went away is met below
        # The command is done: a Ctrl-C (or a SIGTERM, where ours still takes it) from here on
        # has nothing left to stop. (One `module` installed stays: replaced as a multi-process
        # scaling-train ended, that process sat in JAX's exit barrier until JAX aborted it.)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        check()
        if _State.exit_on_failure and code == EXIT_FAILED:
            _flush()
            os._exit(code)
        _exit_if_threads_hang(code)
    except BrokenPipeError:
        # Whoever read the output stopped (`| head`): as a program killed by SIGPIPE, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except BaseException:
        if _State.requested:  # KeyboardInterrupt, or what code it interrupted made of it
            exit_now()  # main's own line (`report`), if it caught it, else `line`
        if _State.exit_on_failure:
            traceback.print_exc()
            _flush()
            os._exit(EXIT_FAILED)
        _exit_if_threads_hang(1, crashed=True)
        raise
    return code

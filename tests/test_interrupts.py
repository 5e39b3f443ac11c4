"""Ctrl-C at any moment of `scaling-eval`, `scaling-sample`, `scaling-attention` and `scaling-fit`: the real
command in a subprocess, SIGINT sent while Python imports JAX and later while it works; each time
one line `<program>: interrupted` on stderr and exit code 130, never a traceback, a swallowed
interrupt (`Exception ignored in: ...`, then exit 0) or a crash at exit (`scaling.interrupts`)."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import tomllib

import numpy as np
import pytest

from conftest import REPO
from saved_runs import save_initialized_run, tiny_config
from scaling import attention_maps, evaluate, sample


def console_script(program: str) -> list[str]:
    """The command line of `program`'s console script as pyproject.toml declares it (what an
    install generates: import the entry point, call it, exit with what it returns)."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts[program].split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {program!r}; "
            f"from {module} import {function}; sys.exit({function}())"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("interrupted") / "run"
    save_initialized_run(workdir, tiny_config())
    # Points for scaling-fit: 5 sizes x 6 budgets of a Chinchilla law, with 1% noise.
    rng = np.random.default_rng(0)
    rows = [(n, d, (1.7 + 400 / n**0.34 + 410 / d**0.28) * (1 + 0.01 * rng.standard_normal()))
            for n in (1e7, 3e7, 1e8, 3e8, 1e9) for d in (1e9, 2e9, 4e9, 8e9, 16e9, 32e9)]
    (workdir.parent / "points.csv").write_text(
        "N,D,loss\n" + "".join(f"{n:g},{d:g},{loss:.6f}\n" for n, d, loss in rows))
    return workdir


def arguments(program: str, workdir: pathlib.Path) -> list[str]:
    return {"scaling-eval": ["--workdir", str(workdir), "--whole-split"],
            "scaling-sample": ["--workdir", str(workdir), "--prompt", "def ",
                               "--max-new-tokens", "20000"],
            # 2,800 tokens: still drawing 1.5 s after JAX has loaded (28 tokens were done by then)
            "scaling-attention": ["--workdir", str(workdir), "--text", "def add(a, b):" * 200,
                                  "--out", str(workdir.parent / "attention.png")],
            # The law and the backtest, 500 resamples each: 10 s.
            "scaling-fit": ["--csv", str(workdir.parent / "points.csv"), "--n-col", "N",
                            "--d-col", "D", "--loss-col", "loss", "--law", "chinchilla",
                            "--backtest", "--out", str(workdir.parent / "fit")]}[program]


def loaded(pid: int, library: str) -> bool:
    """Whether the process has mapped a shared library whose path holds `library`."""
    try:
        return library in pathlib.Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def jaxlib_loaded(pid: int) -> bool:
    return loaded(pid, "jaxlib")


def catches_sigint(pid: int, signum: int = signal.SIGINT) -> bool:
    """Whether the process has a SIGINT (or `signum`) handler: Python installs its own SIGINT
    handler as the interpreter starts, before any of our code runs (until then a SIGINT kills
    it, as it would any program)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & 1 << (signum - 1))


def interrupted(command: list[str], moment, signum: int = signal.SIGINT
                ) -> subprocess.CompletedProcess:
    """Run `command`, send it SIGINT (or `signum`) at `moment` (seconds after our code has
    started, or ("jaxlib", s): s seconds after JAX's native library is loaded), and wait for it.

    Our code starts once Python's own start-up is done: a SIGINT before, while the interpreter
    still imports its `site` module, is Python's "Fatal Python error", whatever a program does.
    Its first import, `scaling.interrupts`, maps ctypes' library (under load, 0.1 s after
    Python's own SIGINT handler was not always that late)."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # no terminal: SIGINT to it alone
    try:
        deadline = time.monotonic() + 60  # under load the start can take a second or more
        while not (catches_sigint(process.pid, signum) and loaded(process.pid, "_ctypes")) \
                and process.poll() is None:
            assert time.monotonic() < deadline, "the interpreter did not start in 60 s"
            time.sleep(0.005)
        if isinstance(moment, tuple):
            deadline = time.monotonic() + 60
            while not jaxlib_loaded(process.pid) and process.poll() is None:
                assert time.monotonic() < deadline, "JAX not loaded in 60 s"
                time.sleep(0.01)
            moment = moment[1]
        time.sleep(moment)
        assert process.poll() is None, "finished before the interrupt: send it earlier"
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def assert_interrupted(result: subprocess.CompletedProcess, program: str,
                       code: int = 130) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Exception ignored" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert result.stderr.endswith(f"\n{program}: interrupted\n") or \
        result.stderr == f"{program}: interrupted\n", result.stderr[-3000:]
    assert result.stderr.count("interrupted") == 1, result.stderr[-3000:]


# While importing (from 0.1 s: Python's own start-up comes first; as JAX's native library
# loads; after it, Orbax, TensorFlow Datasets) and while working (restoring, compiling,
# scoring, decoding, drawing).
MOMENTS = [0.1, 0.3, ("jaxlib", 0.0), ("jaxlib", 0.5), ("jaxlib", 1.5)]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
@pytest.mark.parametrize("program", ["scaling-eval", "scaling-sample", "scaling-attention"])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(program, moment, workdir):
    assert_interrupted(interrupted(console_script(program) + arguments(program, workdir), moment),
                       program)


@pytest.mark.parametrize("moment", [0.1, 0.5, 1.5, 4.0], ids=str)
@pytest.mark.parametrize("how", ["console", "python -m"])
def test_ctrl_c_while_fitting_is_one_line_and_exit_130(moment, how, workdir):
    # scaling-fit (NumPy and SciPy, no JAX) gave a traceback of whatever it was fitting.
    command = (console_script("scaling-fit") if how == "console"
               else [sys.executable, "-m", "analysis.cli"])
    assert_interrupted(interrupted(command + arguments("scaling-fit", workdir), moment),
                       "scaling-fit")


@pytest.mark.parametrize("program, moment", [
    ("scaling-eval", 0.1), ("scaling-eval", ("jaxlib", 1.5)), ("scaling-sample", ("jaxlib", 1.5)),
    ("scaling-attention", ("jaxlib", 1.5)), ("scaling-fit", 0.1), ("scaling-fit", 1.5)], ids=str)
def test_sigterm_stops_the_other_commands_as_ctrl_c_does_with_exit_75(program, moment, workdir):
    # They died by the signal (exit 143) without a word, skipping what a Ctrl-C stops and says
    # (scaling-slurm's sbatch went on to submit its job; scaling-tpu named no queued slice).
    assert_interrupted(interrupted(console_script(program) + arguments(program, workdir), moment,
                                   signal.SIGTERM), program, code=75)


@pytest.mark.parametrize("moment", [0.3, ("jaxlib", 0.0), ("jaxlib", 1.5)], ids=str)
def test_python_dash_m_is_the_console_script(moment, workdir):
    """`python -m scaling.evaluate` (as scaling-sweep --eval runs it) handles Ctrl-C from its
    first import too."""
    command = [sys.executable, "-m", "scaling.evaluate", *arguments("scaling-eval", workdir)]
    assert_interrupted(interrupted(command, moment), "scaling-eval")


@pytest.mark.parametrize("moment", [0.1, ("jaxlib", 0.0), ("jaxlib", 0.2)], ids=str)
@pytest.mark.parametrize("how", ["console", "python -m"])
def test_sigterm_while_scaling_train_starts_is_one_line_and_exit_75(moment, how, tmp_path):
    # Before its stop handler, imported with JAX, a SIGTERM killed it (exit 143, no line).
    command = (console_script("scaling-train") if how == "console"
               else [sys.executable, "-m", "scaling.train"])
    result = interrupted(command + ["--config", "configs/demo.py:runlocal",
                                    "--workdir", str(tmp_path / "run")], moment, signal.SIGTERM)
    assert result.returncode == 75, (result.returncode, result.stderr[-3000:])
    assert result.stderr == "scaling-train: preempted before training started; rerun to start\n"
    assert not (tmp_path / "run").exists()


def test_each_console_script_reports_its_own_program_name():
    from scaling import scripts

    for module, entry in ((evaluate, scripts.evaluate), (sample, scripts.sample),
                          (attention_maps, scripts.attention)):
        assert module.PROGRAM in entry.__code__.co_consts, (module.PROGRAM, entry)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for program in ("scaling-train", "scaling-sweep", "scaling-eval", "scaling-fit",
                    "scaling-sample", "scaling-attention"):
        assert scripts[program].startswith("scaling.scripts:"), program



@pytest.mark.parametrize("moment", [0.1, ("jaxlib", 0.0), ("jaxlib", 0.5)], ids=str)
@pytest.mark.parametrize("how", ["console", "python -m"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_ctrl_c_while_a_sweep_plans_is_one_line_and_exit_130(moment, how, signum, tmp_path):
    """While `scaling-sweep` imported JAX and planned, a Ctrl-C was swallowed by JAX's gc
    callback (the sweep went on to train), or came out as a traceback."""
    command = (console_script("scaling-sweep") if how == "console"
               else [sys.executable, "-m", "launch.sweep"])
    result = interrupted(command + ["--config", "configs/sweeps/demo.py", "--workdir",
                                    str(tmp_path / "sweep"), "--dry-run"], moment, signum)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, \
        result.stderr[-3000:]
    # A SIGTERM the same, with exit code 75: it was 143, without a line.
    assert result.returncode == (75 if signum == signal.SIGTERM else 130), (
        result.returncode, result.stderr[-3000:])
    assert result.stderr.splitlines()[-1:] == ["scaling-sweep: interrupted before any run started"]
    assert result.stderr.count("interrupted") == 1, result.stderr[-3000:]


SWALLOWING = {
    # JAX's `_xla_gc_callback` is one: an exception raised in it is printed and dropped.
    "a garbage collection callback": """
        def callback(phase, info):
            if phase == "start":
                signal.raise_signal(signal.SIGINT)
        gc.callbacks.append(callback)
        gc.collect()
        gc.callbacks.remove(callback)
        """,
    "a __del__": """
        class Finalised:
            def __del__(self):
                signal.raise_signal(signal.SIGINT)
        Finalised()
        """,
    # Not recognised by the handler: the unraisable hook catches it.
    "a weakref callback": """
        class Referent:
            pass
        referent = Referent()
        reference = weakref.ref(referent, lambda _: signal.raise_signal(signal.SIGINT))
        del referent
        """,
}


@pytest.mark.parametrize("where", sorted(SWALLOWING))
def test_an_interrupt_where_python_drops_exceptions_is_still_an_interrupt(where, tmp_path):
    """A Ctrl-C landing where Python prints and drops exceptions (`Exception ignored in: ...`)
    ends the command all the same: before, it ran on to exit 0."""
    (tmp_path / "swallow.py").write_text("import gc, signal, time, weakref\n\n\ndef main():\n"
                                         + textwrap.indent(textwrap.dedent(SWALLOWING[where]),
                                                           "    ")
                                         + "    time.sleep(5)\n    print('finished')\n"
                                         "    return 0\n")
    command = [sys.executable, "-c", "import sys; from scaling import interrupts; "
               "sys.exit(interrupts.run('swallow', 'swallow'))"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert_interrupted(result, "swallow")
    assert result.stdout == "" and time.monotonic() - started < 4


def test_output_whose_reader_went_away_ends_quietly(tmp_path):
    """`scaling-train --dry-run | head -1`: once head exits, the rest of the output meets a closed
    pipe. That was a BrokenPipeError traceback; it ends as a program that SIGPIPE ends, 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    process = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(tmp_path / "run"), "--dry-run"], stdout=write_end, stderr=subprocess.PIPE,
        text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    os.close(write_end)
    assert (process.returncode, process.stderr) == (141, "")

"""Shared test settings.

- W&B never reaches the network: offline unless a test says otherwise.
- The token cache lives in one folder for the whole session (`build/test-cache`), so the embedded
  corpus is prepared once and shared by every test and subprocess.
- Tests that need several devices run their JAX code in a subprocess with
  `--xla_force_host_platform_device_count=8`. On a 2-core machine XLA's CPU collectives can deadlock
  between simulated devices when PJRT's thread pool is smaller than the device count's needs;
  `PJRT_NPROC=16` (set here for every subprocess) gives each device its thread and the deadlock
  disappears.
- XLA optimises the code it generates at level 1 (`--xla_backend_optimization_level=1`, not 3):
  on this CPU, LLVM's optimisation of each fused loop is most of a test's time (a tiny decoder's
  init compiles in 5 s at level 3, 2.6 s at level 1), and level 1's code trains as fast. Results
  are compared within the setting (or against NumPy), never against numbers another build made;
  benchmarks and users' runs keep XLA's defaults.
- JAX's persistent compilation cache, which `scaling-train` already uses (`train.compilation_cache`,
  in `<cache>/jax-compilation`), is switched on here for the tests' own interpreters too: the
  pytest workers and the `run_python` subprocesses. Entries are keyed by the program, the compiler
  flags and the devices, so a hit is the executable the same compilation would have made; a
  program compiled once (by another test, another worker or an earlier session) is loaded instead
  of compiled again. The `scaling-train` subprocesses the tests start keep deciding for themselves
  (the tests of `train.compilation_cache=false` rely on it), so it is set through `jax.config` in
  this process and through `run_python`'s environment only.
- Ctrl-C is Python's default in every worker, and so in what they start: a suite started in the
  background by a shell without job control (`(make test &)` in a script) inherits SIGINT
  ignored, which every process it starts inherits too, and each Ctrl-C test would then test
  nothing but that.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# A handled signal is reset to the default in a process started from here; an ignored one would
# stay ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("PJRT_NPROC", "16")
os.environ.setdefault("SCALING_CACHE", str(REPO / "build" / "test-cache"))
COMPILE_FLAGS = "--xla_backend_optimization_level=1"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {COMPILE_FLAGS}".strip()
# As `scaling.train.enable_compilation_cache` sets it for a run of the test cache.
COMPILATION_CACHE = {
    "jax_compilation_cache_dir": str(pathlib.Path(os.environ["SCALING_CACHE"]) / "jax-compilation"),
    "jax_persistent_cache_min_compile_time_secs": 0.2,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


def _use_the_compilation_cache() -> None:
    import jax

    for name, value in COMPILATION_CACHE.items():
        jax.config.update(name, value)


_use_the_compilation_cache()


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a subprocess with `devices` simulated CPU devices."""
    return f"{COMPILE_FLAGS} --xla_force_host_platform_device_count={devices}"


def run_python(code: str, *, devices: int = 1, timeout: float = 600, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with `devices` simulated CPU devices."""
    environment = dict(os.environ, **(env or {}))
    environment["XLA_FLAGS"] = xla_flags(devices)
    environment.update({name.upper(): str(value) for name, value in COMPILATION_CACHE.items()})
    environment["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout, env=environment, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def run_in_process(main, argv, capture, program: str) -> subprocess.CompletedProcess:
    """A command's `main(argv)` in this process, ended as its subprocess would be: its exit code
    (argparse's SystemExit included) and what it printed, read from `capture` (pytest's capsys,
    or capfd to include the output of the processes it starts)."""
    capture.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capture.readouterr()
    return subprocess.CompletedProcess([program, *argv], code, out, err)


def write_sweep_config(path: pathlib.Path, **fields) -> pathlib.Path:
    """A sweep config file at `path`: `configs/sweeps/demo.py` with `fields` replaced (nested
    dicts become ConfigDicts, as in the file itself)."""
    demo = REPO / "configs" / "sweeps" / "demo.py"
    path.write_text(
        "import importlib.util\n"
        "import ml_collections\n\n\n"
        "def get_config():\n"
        f"    spec = importlib.util.spec_from_file_location('demo_sweep', {str(demo)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    sweep = module.get_config()\n"
        f"    for key, value in {fields!r}.items():\n"
        "        sweep[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value\n"
        "    return sweep\n")
    return path


@contextlib.contextmanager
def small_disk(folder: pathlib.Path, size: str):
    """A tmpfs of `size` (`2m`) mounted at `folder` for the block (the test is skipped where it
    cannot be mounted)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs (mount, as root): " + mounted.stderr.decode().strip())
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def repo() -> pathlib.Path:
    return REPO


def count_parameters(params) -> int:
    """Number of scalars in a parameter tree (arrays, ShapeDtypeStructs, or boxed in
    `nn.LogicallyPartitioned`): the reference the hand-formula counts are checked against."""
    import math

    import flax.linen as nn
    import jax

    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nn.unbox(params))))

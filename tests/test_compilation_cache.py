"""The persistent compilation cache: a second identical run compiles nothing new, it loads every
program the first one wrote; `train.compilation_cache=false` writes none."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["--config.model.d_model=32", "--config.model.num_heads=2", "--config.model.num_layers=1",
         "--config.model.d_ff=64", "--config.data.seq_len=32", "--config.model.max_seq_len=32",
         "--config.train.batch_size=4", "--config.train.steps=3", "--config.train.eval_every=3",
         "--config.train.eval_batches=1"]


def _run(repo, workdir, cache, *extra, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(workdir), f"--config.data.cache_dir={cache}", *SMALL, *extra],
        capture_output=True, text=True, cwd=repo, timeout=300, env=dict(os.environ, **(env or {})))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text())


def _entries(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_second_identical_run_loads_every_program_from_the_cache(repo, tmp_path):
    cache = tmp_path / "cache"
    folder = cache / "jax-compilation"
    # Every program cached, however long it took to compile: under the default 0.2 s threshold a
    # program compiled in 0.19 s by one run and 0.21 s by a busier second one is written by the
    # second only, which says nothing about the cache.
    every = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    first = _run(repo, tmp_path / "first", cache, env=every)
    written = _entries(folder)
    # At least the train step, the eval step and the initialisation.
    assert len([name for name in written if "train_step" in name]) >= 1, sorted(written)
    assert len([name for name in written if "eval" in name]) >= 1, sorted(written)
    assert len(written) >= 3, sorted(written)
    second = _run(repo, tmp_path / "second", cache, env=every)
    assert _entries(folder) == written, "the second run compiled something the first did not"
    assert second["final_eval_loss"] == first["final_eval_loss"]  # same program, same numbers


def test_compilation_cache_can_be_switched_off(repo, tmp_path):
    cache = tmp_path / "cache"
    _run(repo, tmp_path / "run", cache, "--config.train.compilation_cache=false")
    assert not (cache / "jax-compilation").exists()


@pytest.mark.parametrize("environment, threshold", [({}, 0.2), (
    {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}, 0.0)])
def test_jaxs_own_threshold_variable_wins(repo, environment, threshold):
    code = ("import jax; from scaling.config import default_config; "
            "from scaling.train import enable_compilation_cache; "
            "enable_compilation_cache(default_config()); "
            "print(jax.config.jax_persistent_cache_min_compile_time_secs)")
    environment = {**{name: value for name, value in os.environ.items()
                      if name != "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"}, **environment}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=repo, timeout=120, env=environment, check=True)
    assert float(result.stdout.split()[-1]) == threshold


def test_a_read_only_cache_is_read_without_a_warning_at_every_compilation(repo, tmp_path):
    # Training on a complete cache copy mounted read-only printed JAX's two-line "Error writing
    # persistent compilation cache entry ... Read-only file system" for each program compiled.
    import shutil

    if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare to bind-mount a folder read-only")
    cache = tmp_path / "cache"
    _run(repo, tmp_path / "first", cache)
    folder = cache / "jax-compilation"
    written = _entries(folder)
    command = [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
               str(tmp_path / "second"), f"--config.data.cache_dir={cache}", *SMALL,
               "--config.model.d_model=48", "--config.model.d_ff=96"]  # programs it lacks
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount --bind -o ro {cache} {cache} && exec "$@"', "sh",
         *command], capture_output=True, text=True, cwd=repo, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error writing persistent compilation cache" not in result.stderr, result.stderr
    assert _entries(folder) == written

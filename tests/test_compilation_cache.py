"""The persistent compilation cache: a second identical run compiles nothing new, it loads every
program the first one wrote; `train.compilation_cache=false` writes none."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["--config.model.d_model=32", "--config.model.num_heads=2", "--config.model.num_layers=1",
         "--config.model.d_ff=64", "--config.data.seq_len=32", "--config.model.max_seq_len=32",
         "--config.train.batch_size=4", "--config.train.steps=3", "--config.train.eval_every=3",
         "--config.train.eval_batches=1"]


def _run(repo, workdir, cache, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(workdir), f"--config.data.cache_dir={cache}", *SMALL, *extra],
        capture_output=True, text=True, cwd=repo, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text())


def _entries(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_second_identical_run_loads_every_program_from_the_cache(repo, tmp_path):
    cache = tmp_path / "cache"
    folder = cache / "jax-compilation"
    first = _run(repo, tmp_path / "first", cache)
    written = _entries(folder)
    # At least the train step, the eval step and the initialisation.
    assert len([name for name in written if "train_step" in name]) >= 1, sorted(written)
    assert len(written) >= 3, sorted(written)
    second = _run(repo, tmp_path / "second", cache)
    assert _entries(folder) == written, "the second run compiled something the first did not"
    assert second["final_eval_loss"] == first["final_eval_loss"]  # same program, same numbers


def test_compilation_cache_can_be_switched_off(repo, tmp_path):
    cache = tmp_path / "cache"
    _run(repo, tmp_path / "run", cache, "--config.train.compilation_cache=false")
    assert not (cache / "jax-compilation").exists()

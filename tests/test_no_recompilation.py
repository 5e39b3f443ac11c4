"""The training loop compiles its train step and eval step once each: no recompilation between
steps or around evaluations and checkpoints (checked with `jax_log_compiles`, which logs every
XLA compilation by function name)."""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["--config.model.d_model=32", "--config.model.num_heads=2", "--config.model.num_layers=2",
         "--config.model.d_ff=64", "--config.data.seq_len=32", "--config.model.max_seq_len=32",
         "--config.train.batch_size=4", "--config.train.eval_every=3", "--config.train.eval_batches=2",
         "--config.train.log_every=1", "--config.checkpoint.every_steps=3",
         "--config.train.compilation_cache=false"]


def _compiled(repo, workdir, steps, *overrides):
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(workdir), f"--config.train.steps={steps}", *SMALL, *overrides],
        capture_output=True, text=True, cwd=repo, timeout=300,
        env={**os.environ, "JAX_LOG_COMPILES": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    names = re.findall(r"Compiling jit\((\w+)\)", result.stderr)
    assert names, "jax_log_compiles logged nothing: the check would be empty"
    return names


def test_train_and_eval_steps_compile_once_across_steps_evals_and_checkpoints(repo, tmp_path):
    names = _compiled(repo, tmp_path / "run", steps=7)  # evals and checkpoints at 3, 6 and 7
    assert names.count("_train_step") == 1, names
    assert names.count("eval_batch") == 1, names


def test_a_run_of_several_steps_per_call_compiles_one_train_program_once(repo, tmp_path):
    # Two steps a call, boundaries every 3 steps: calls of two steps from steps 0, 4 and 6 and
    # of one from 2, 3 and 8 interleave, all in the one program of two slots.
    names = _compiled(repo, tmp_path / "run", 9, "--config.train.steps_per_call=2",
                      "--config.train.log_every=3")
    assert names.count("_train_steps") == 1, names
    assert names.count("_train_step") == 0, names
    assert names.count("eval_batch") == 1, names

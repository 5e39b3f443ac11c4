"""`scaling-train`'s edge: bad configurations fail before anything is built, in one line that names
the field, the value and what is allowed; overrides parse to the field's type."""

import subprocess
import sys

import pytest

from scaling.config import ConfigError, default_config
from scaling.overrides import apply_overrides, split_argv


def _train(repo, tmp_path, *overrides):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(workdir), *overrides], capture_output=True, text=True, cwd=repo, timeout=120)
    return result, workdir


@pytest.mark.parametrize("override, field, allowed", [
    ("--config.model.d_model=130", "model.d_model", "multiple of model.num_heads=4"),
    ("--config.data.dataset=no_such_corpus", "data.dataset", "python_stdlib"),
    ("--config.optim.lr=-0.001", "optim.lr", "> 0"),
    ("--config.model.posiiton=rope", "model.posiiton", "position"),
    ("--config.model.ffn=swish", "model.ffn", "gelu, relu, swiglu"),
    ("--config.train.batch_size=3.5", "train.batch_size", "integer"),
])
def test_bad_config_fails_before_building(repo, tmp_path, override, field, allowed):
    result, workdir = _train(repo, tmp_path, override)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0] and allowed in lines[0], lines[0]
    assert override.split("=", 1)[1] in lines[0]
    assert not workdir.exists(), "nothing may be written before the config is valid"


def test_overrides_parse_to_field_types():
    config = default_config()
    rest, overrides = split_argv(["--workdir", "w", "--config.model.d_model=256",
                                  "--config.model.qk_norm", "true", "--config.optim.lr=1e-3",
                                  "--config.wandb.tags=a,b"])
    assert rest == ["--workdir", "w"]
    apply_overrides(config, overrides)
    assert config.model.d_model == 256 and config.model.qk_norm is True
    assert config.optim.lr == 1e-3 and config.wandb.tags == "a,b"
    with pytest.raises(ConfigError, match="did you mean d_model"):
        apply_overrides(config, ["model.d_modle=3"])
    with pytest.raises(ConfigError, match="model.num_layers"):
        apply_overrides(config, ["model.num_layers=two"])


def test_config_errors_found_at_run_time_exit_2(repo, tmp_path):
    """Mesh vs device count is known only once devices are up: still exit 2 and one clear line."""
    result, _ = _train(repo, tmp_path, "--config.mesh.fsdp=3", "--config.mesh.data=1")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("scaling-train: error:") and "mesh" in last and "device count 1" in last

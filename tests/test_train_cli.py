"""`scaling-train`'s edge: bad configurations fail before anything is built, in one line that names
the field, the value and what is allowed; overrides parse to the field's type."""

import json
import os
import subprocess
import sys

import jax
import pytest

from scaling import train
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
    ("--config.optim.lr=-0.001", "optim.lr", "a number in [1.2e-38, "),
    ("--config.model.posiiton=rope", "model.posiiton", "position"),
    ("--config.model.ffn=swish", "model.ffn", "gelu, relu, swiglu"),
    ("--config.train.batch_size=3.5", "train.batch_size", "integer"),
    ("--config.data.eval_split=train", "data.eval_split", "a split held out from data.train_split"),
    # A slice of the training split is training data too: it was accepted.
    ("--config.data.eval_split=train[:2%]", "data.eval_split",
     "a split held out from data.train_split='train'"),
    # A part of a training split that sums two ("train[:50%]+validation").
    ("--config.data.train_split=train[:50%]+validation", "data.eval_split",
     "a split held out from data.train_split='train[:50%]+validation'"),
    # Ran and "diverged at step 1" (ids past the embedding table), excluded from every fit.
    ("--config.model.vocab_size=100", "model.vocab_size", "at least the 257 ids"),
    # A vocabulary past int32 overflowed while the memory check traced the model: a traceback.
    ("--config.model.vocab_size=2147483648", "model.vocab_size", "at most 2147483647"),
    # A state saved in the cooldown (600 steps, the last 20% decaying) is no stable state.
    ("--config.train.branch_steps=(100, 500)", "train.branch_steps",
     "whole steps of the stable phase of this run of 600 steps (1 to 480"),

    # Overflowed in jax.random.key after the data was read: a traceback.
    ("--config.seed=1180591620717411303424", "seed", "an integer from 0 to 2**32 - 1"),
    # JAX keeps a seed's low 32 bits: these would initialise as seeds 0 and 2**32 - 1 do.
    ("--config.seed=4294967296", "seed", "an integer from 0 to 2**32 - 1"),
    ("--config.seed=-1", "seed", "an integer from 0 to 2**32 - 1"),
    # The optimizer's step count is int32: the WSD schedule overflowed at step 0 in a traceback.
    ("--config.train.steps=2147483648", "train.steps", "at most 2,147,483,647 optimizer steps"),
    ("--config.train.tokens=100000000000000", "train.tokens",
     "at most 2,147,483,647 optimizer steps (the step count is an int32 number); this is "
     "24,414,062,500"),
    # Adam's bias correction 1 - β^t is 0 at β = 1: "diverged at step 2" (0/0) after compiling.
    ("--config.optim.b1=1.0", "optim.b1", "a number in [0, 1)"),
    ("--config.optim.b2=1.0", "optim.b2", "a number in [0, 1)"),
    # A base below 1 makes RoPE's frequencies rise across the head; one that underflows float32
    # made them infinite: a RuntimeWarning and "diverged at step 1" after compiling.
    ("--config.model.rope_theta=1e-50", "model.rope_theta", "a finite number > 1 and <= 3.4e+38"),
    # Sizing the run (parameters, memory, position tables) hung the dry run, or was a traceback.
    ("--config.data.seq_len=2097152", "data.seq_len", "an integer from 1 to 1,048,576"),
    ("--config.model.d_model=4294967296", "model.d_model", "an integer from 1 to 131,072"),
    # Ignored without a coordinator: the run trained as one process.
    ("--config.distributed.num_processes=2", "distributed.num_processes",
     "0 without distributed.coordinator_address"),
    # Infinite in float32: a RuntimeWarning, and every rotation frequency but the first 0.
    ("--config.model.rope_theta=1e+300", "model.rope_theta", "a finite number > 1 and <= 3.4e+38"),
    # JAX's runtime takes a C int: a TypeError traceback from jax.distributed.initialize.
    ("--config.distributed.heartbeat_seconds=2147483648", "distributed.heartbeat_seconds",
     "an integer from 1 to 2**31 - 1"),
    # A traceback from jax.distributed.initialize: "IndexError: list index out of range".
    ("--config.distributed.coordinator_address=nonsense", "distributed.coordinator_address",
     "HOST:PORT, the port from 1 to 65535"),
    # Infinite in float32: "overflow encountered in cast", then diverged at step 1 or 2, or (eps)
    # a run that learned nothing, exit 0.
    ("--config.optim.lr=1e+39", "optim.lr", "a number in [1.2e-38, 3.4e+38]"),
    # Below float32's smallest normal number: 0 in the step, a run that learned nothing (exit 0).
    ("--config.optim.lr=1e-50", "optim.lr", "a number in [1.2e-38, 3.4e+38]"),
    ("--config.model.init_std=1e-50", "model.init_std", "a number in [1.2e-38, 3.4e+38]"),
    ("--config.optim.eps=1e-50", "optim.eps", "a number in [1.2e-38, 3.4e+38]"),
    ("--config.optim.weight_decay=1e+300", "optim.weight_decay", "a number in [0, 3.4e+38]"),
    ("--config.optim.eps=1e+300", "optim.eps", "a number in [1.2e-38, 3.4e+38]"),
    ("--config.model.z_loss=1e+300", "model.z_loss", "a number in [0, 3.4e+38]"),
    ("--config.model.init_std=1e+39", "model.init_std", "a number in [1.2e-38, 3.4e+38]"),
    # Fields the run does not read: it trained full attention, causal LM, a cosine schedule.
    ("--config.model.window=64", "model.window",
     "read only with model.attention='sliding', and this run's is 'full'"),
    ("--config.train.mean_span_length=3", "train.mean_span_length",
     "read only with train.objective='span_corruption', and this run's is 'causal_lm'"),
    ("--config.optim.decay_fraction=0.5", "optim.decay_fraction",
     "read only with optim.schedule='wsd', and this run's is 'cosine'"),
    # A logged step among every 25 (configs/demo.py logs every 25): no call could run 30.
    ("--config.train.steps_per_call=30", "train.steps_per_call",
     "at most train.log_every=25, best a divisor of it"),
    # Blamed data.dataset='python_stdlib', which was not what was set.
    ("--config.data.source_feature=question", "data.source_feature",
     "'' with train.objective='causal_lm' (pairs are read only by train.objective='seq2seq')"),
])
@pytest.mark.filterwarnings("error")  # in this process a warning would not reach stderr
def test_bad_config_fails_before_building(repo, tmp_path, monkeypatch, capsys, override, field,
                                          allowed):
    # In this process; the next test makes such a refusal through `python -m scaling.train`.
    wsd = ["--config.optim.schedule=wsd"] if "branch_steps" in override else []
    workdir = tmp_path / "run"
    monkeypatch.chdir(repo)
    code = train.main(["--config", "configs/demo.py", "--workdir", str(workdir), override, *wsd])
    assert code == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert field in lines[0] and allowed in lines[0], lines[0]
    assert override.split("=", 1)[1] in lines[0]
    assert not workdir.exists(), "nothing may be written before the config is valid"


def test_a_value_with_a_newline_is_refused_in_one_line(repo, tmp_path, monkeypatch, capsys):
    # The missing entries were quoted raw: "... (not found: a" and "b)" on a second line.
    monkeypatch.chdir(repo)
    code = train.main(["--config", "configs/demo.py", "--workdir", str(tmp_path / "run"),
                       "--config.data.dataset=text_files", "--config.data.files=a\nb"])
    assert code == 2
    assert capsys.readouterr().err == (
        "scaling-train: error: config.data.files='a\\nb' is not allowed: existing files or "
        "folders, or patterns that match some (not found: a\\nb)\n")


def test_a_batch_far_beyond_memory_is_refused_before_a_batch_is_made(repo, tmp_path, monkeypatch,
                                                                     capsys):
    # The held-out memory check made one batch first: "Unable to allocate 96.1 GiB", a traceback.
    monkeypatch.chdir(repo)
    code = train.main(["--config", "configs/demo.py", "--workdir", str(tmp_path / "run"),
                       "--config.train.batch_size=100000000"])
    # (after "[data] tokenized ..." where the corpus's cache is built first)
    *progress, error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and all(line.startswith("[data] ") for line in progress), progress
    assert error.startswith("scaling-train: error: the run is estimated at ") and (
        "lower train.batch_size=100000000" in error), error


@pytest.mark.parametrize("position, k, allowed", [
    # 128 + 2 - k encoder tokens and k + 2 decoder tokens in a table of 128 rows: k from 2 to 126.
    # "at most data.seq_len=128" was said of 129, and 127 and 128 named no bound at all.
    ("learned", 1, "from 2 to 126 with model.position='learned' (the encoder reads data.seq_len "
                   "+ 2 - k tokens, 129 here, the decoder k + 2, and both must fit "
                   "model.max_seq_len=128)"),
    ("learned", 128, "from 2 to 126 with model.position='learned'"),
    ("learned", 129, "at most data.seq_len=128"),
    # RoPE has no table: a continuation of 1 token was refused for a 129-token encoder input.
    ("rope", 1, None),
    ("rope", 128, None),
])
def test_a_span_corruption_continuation_fits_the_position_table(repo, monkeypatch, position, k,
                                                                allowed):
    from scaling.train import load_and_validate

    monkeypatch.chdir(repo)
    overrides = ["model.layout=encoder_decoder", "train.objective=span_corruption",
                 f"model.position={position}", f"train.continuation_tokens={k}"]
    if allowed is None:
        load_and_validate("configs/demo.py", overrides)
        return
    with pytest.raises(ConfigError) as refused:
        load_and_validate("configs/demo.py", overrides)
    assert str(refused.value).startswith(f"config.train.continuation_tokens={k} is not allowed: "
                                         f"{allowed}"), str(refused.value)


def test_init_std_is_refused_under_a_scheme_that_sets_its_own(repo, tmp_path, monkeypatch, capsys):
    # Xavier, He and small-init draw every weight, embeddings included, from their own std: the
    # run trained as if init_std had not been given.
    monkeypatch.chdir(repo)
    code = train.main(["--config", "configs/demo.py", "--workdir", str(tmp_path / "run"),
                       "--config.model.init=xavier", "--config.model.init_std=0.05"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "scaling-train: error: config.model.init_std=0.05 is not allowed: it is read only with "
        "model.init='normal' or 'scaled_normal', and this run's is 'xavier'; drop the override, "
        "or set model.init too")


def test_an_infinite_number_is_refused_before_building(repo, tmp_path):
    # 1e999 parses to inf, which is "> 0": it compiled and diverged at step 2 (exit 3).
    result, workdir = _train(repo, tmp_path, "--config.optim.lr=1e999")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("scaling-train: error: config.optim.lr=inf is not allowed: "
                                     "a number in [1.2e-38, 3.4e+38]")
    assert not workdir.exists()


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
    # A field under a field: "unknown key 'x' in config.optim.lr; allowed: " and nothing after.
    with pytest.raises(ConfigError, match=r"^config.optim.lr.x='1' is not allowed: a config "
                                          r"field; optim.lr is a field, not a section$"):
        apply_overrides(config, ["optim.lr.x=1"])
    with pytest.raises(ConfigError, match="model.num_layers"):
        apply_overrides(config, ["model.num_layers=two"])



@pytest.mark.parametrize("arguments", [["--config.wandb.group", "--dry-run"],
                                       ["--dry-run", "--config.data.seq_len"]])
def test_an_override_without_a_value_never_takes_the_next_option(repo, tmp_path, arguments):
    """`--config.wandb.group --dry-run` set the group to '--dry-run' and trained for real; a
    trailing `--config.data.seq_len` was reported as `config.data.seq_len=None`."""
    result, workdir = _train(repo, tmp_path, *arguments)
    field = arguments[0] if arguments[0] != "--dry-run" else arguments[1]
    assert _one_error_line(result) == (f"scaling-train: error: {field} has no value: give it as "
                                       f"{field}=VALUE")
    assert not workdir.exists()


def test_config_errors_found_at_run_time_exit_2(repo, tmp_path):
    """Mesh vs device count is known only once devices are up: still exit 2 and one clear line."""
    result, _ = _train(repo, tmp_path, "--config.mesh.fsdp=3", "--config.mesh.data=1")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("scaling-train: error:") and "mesh" in last and "device count 1" in last


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling-train: error: "), result.stderr
    return lines[0]


def test_a_run_many_times_the_devices_memory_is_one_line_before_compiling(repo, tmp_path):
    # 2e11 parameters: 2.3 TB of weights, gradients and AdamW state. XLA's out-of-memory came as a
    # traceback after compiling (the shipped Chinchilla-106M config at its default batch, too).
    result, workdir = _train(repo, tmp_path, "--config.model.d_model=65536")
    line = _one_error_line(result)
    assert line.startswith("scaling-train: error: the run is estimated at 2,338.4 GiB per device "
                           "(weights, gradients and optimizer state 2,304.4, activations 34.0")
    assert line.endswith("shard the weights over more devices (mesh.fsdp, mesh.tensor) or train "
                         "a smaller model")
    assert not workdir.exists()  # refused before writing anything: it leaves no empty folder
    result, _ = _train(repo, tmp_path, "--config.model.d_model=65536", "--dry-run")
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1].endswith(
        "GiB: training here would be refused")



def test_more_eval_batches_than_memory_holds_is_one_line_before_compiling(repo, tmp_path,
                                                                         monkeypatch, capsys):
    # Every periodic evaluation's batches are made once and held: more than memory holds filled
    # it until the kernel killed the run (exit 137, no message). Here memory is 4 MiB, and 200
    # of the demo's batches (of the held-out split's 249) are 9.4 MiB.
    from scaling import hardware

    monkeypatch.setattr(hardware, "host_available_bytes", lambda: 4 * 2**20)
    monkeypatch.chdir(repo)
    workdir = tmp_path / "run"
    code = train.main(["--config", "configs/demo.py", "--workdir", str(workdir),
                       "--config.train.eval_batches=200"])
    line = capsys.readouterr().err
    assert code == 2 and line.count("\n") == 1, line
    # One batch: inputs, targets and segment ids of 32 rows of 128 int32 tokens; it allows a
    # quarter of the free memory.
    allowed = 4 * 2**20 // 4 // (3 * 32 * 128 * 4)
    assert line.startswith("scaling-train: error: config.train.eval_batches=200 is not "
                           f"allowed: at most {allowed} here: ")
    assert "each evaluation's batches are held for the whole run" in line
    assert not workdir.exists()


def test_a_dry_run_checks_the_mesh_and_the_workdir_in_one_line(repo, tmp_path):
    result, workdir = _train(repo, tmp_path, "--config.mesh.data=3", "--dry-run")
    assert "data × fsdp × tensor = 3 must equal the device count 1" in _one_error_line(result)
    workdir.write_text("not a folder")
    result, _ = _train(repo, tmp_path, "--dry-run")
    assert "a directory (this path is a file)" in _one_error_line(result)


def _data_files(folder, case: str):
    """`data.files` for each case of the test below, made in `folder` (created empty)."""
    if case == "binary file":
        (folder / "c.gz").write_bytes(b"\x1f\x8b\0")
        return folder / "c.gz"
    if case == "folder of binary files":
        (folder / "x.txt").write_bytes(b"a\0b")
    if case == "unreadable pairs":  # its read fails with EIO, as a failing disk's would
        (folder / "p.tsv").symlink_to("/proc/self/mem")
        return folder / "p.tsv"
    return folder


@pytest.mark.parametrize("case, dataset, allowed", [
    ("binary file", "text_files", "c.gz is binary"),
    ("folder of binary files", "text_files", "found none"),
    ("empty folder", "text_files", "found none"),
    ("unreadable pairs", "text_pairs", "cannot be read: Input/output error"),
])
def test_a_dry_run_checks_the_data_files_as_the_run_would(repo, tmp_path, monkeypatch, capsys,
                                                           case, dataset, allowed):
    # The dry run printed the model and exited 0; the run, and a sweep's dry run, refused these.
    (tmp_path / "corpus").mkdir()
    files = _data_files(tmp_path / "corpus", case)
    pairs = (["--config.train.objective=seq2seq", "--config.model.layout=encoder_decoder"]
             if dataset == "text_pairs" else [])
    monkeypatch.chdir(repo)
    code = train.main(["--config", "configs/demo.py", "--workdir", str(tmp_path / "run"),
                       f"--config.data.dataset={dataset}", f"--config.data.files={files}",
                       *pairs, "--dry-run"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("scaling-train: error: config.data.files=") and allowed in lines[0]


def test_a_malformed_command_line_is_one_line(repo, tmp_path):
    result = subprocess.run([sys.executable, "-m", "scaling.train", "--config", "configs/demo.py"],
                            capture_output=True, text=True, cwd=repo, timeout=120)
    assert _one_error_line(result) == ("scaling-train: error: the following arguments are "
                                       "required: --workdir")


@pytest.mark.parametrize("module, argv, line", [
    ("scaling.train", ["--config", "configs/demo.py", "--workdr", "runs/a"],
     "scaling-train: error: unrecognized arguments: --workdr runs/a"),
    ("launch.registry", ["--wandb-dir", "runs/a", "--output", "a.csv"],
     "python -m launch.registry: error: unrecognized arguments: --output a.csv"),
    ("launch.tpu", ["create", "--zone-name", "z"],  # a subcommand's required options too
     "scaling-tpu: error: unrecognized arguments: --zone-name z"),
    ("launch.registry", ["--wandb-dir", "runs/a"],
     "python -m launch.registry: error: the following arguments are required: --out"),
])
def test_an_unknown_option_is_named_before_a_missing_one(repo, module, argv, line):
    """argparse checks the required options first: a misspelt --workdir was answered
    "the following arguments are required: --workdir"."""
    result = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True,
                            text=True, cwd=repo, timeout=120)
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [line]), result.stderr


def test_a_workdir_that_is_a_file_is_one_line(repo, tmp_path):
    workdir = tmp_path / "run"
    workdir.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
         "--workdir", str(workdir)], capture_output=True, text=True, cwd=repo, timeout=300)
    line = _one_error_line(result)
    assert f"--workdir={str(workdir)!r} is not allowed: a directory (this path is a file)" in line


@pytest.mark.parametrize("config, expected", [
    ("configs/nope.py", "--config='configs/nope.py' is not allowed: an existing ml-collections "
                        "config file"),
    ("configs/demo.py:bogus", "--config='configs/demo.py:bogus' is not allowed: a variant of this "
                              "file: runlocal"),
    ("README.md", "--config='README.md' is not allowed: a Python config file that runs"),
    # A sweep's config validated as a run's: a KeyError traceback ("Did you mean seeds").
    ("configs/sweeps/demo.py", "--config='configs/sweeps/demo.py' is not allowed: a run config "
                               "(this is a sweep config: `scaling-sweep --config` runs it)"),
])
def test_config_file_errors_name_the_option(repo, tmp_path, config, expected):
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", config, "--workdir",
         str(tmp_path / "run")], capture_output=True, text=True, cwd=repo, timeout=120)
    line = _one_error_line(result)
    assert expected in line and "config.--config" not in line


def test_a_variant_given_to_a_config_without_variants_is_refused(tmp_path):
    from scaling.overrides import load_config

    plain = tmp_path / "plain.py"
    plain.write_text("from scaling.config import default_config\n\n"
                     "def get_config():\n    return default_config()\n")
    with pytest.raises(ConfigError, match="no variant: this file's get_config"):
        load_config(f"{plain}:small")
    declared = tmp_path / "declared.py"
    declared.write_text("from scaling.config import default_config\nVARIANTS = ('a', 'b')\n\n"
                        "def get_config(variant=''):\n    return default_config()\n")
    with pytest.raises(ConfigError, match="a variant of this file: a, b"):
        load_config(f"{declared}:c")
    assert load_config(f"{declared}:a") is not None


def test_an_unprepared_tfds_dataset_without_network_is_one_line(repo, tmp_path):
    """No network (every download goes to a closed local port): exit 2, one line saying which
    dataset and what to do, no traceback."""
    closed = "http://127.0.0.1:9"
    env = dict(os.environ, HTTP_PROXY=closed, HTTPS_PROXY=closed, http_proxy=closed,
               https_proxy=closed, NO_PROXY="", no_proxy="", SCALING_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
         "--workdir", str(tmp_path / "run"), "--config.data.dataset=tiny_shakespeare"],
        capture_output=True, text=True, cwd=repo, timeout=300, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("scaling-train: error: could not prepare TFDS dataset"), last
    assert "tiny_shakespeare" in last and "data.tfds_data_dir" in last


def test_learned_positions_too_short_for_the_objectives_decoder_fail_before_building(repo,
                                                                                     tmp_path):
    """span_corruption of 8 tokens at density 0.5 in spans of 1 decodes 9 tokens: a learned table
    of data.seq_len=8 rows failed while compiling, with a traceback."""
    result, workdir = _train(repo, tmp_path, "--config.model.layout=encoder_decoder",
                             "--config.train.objective=span_corruption",
                             "--config.model.position=learned", "--config.data.seq_len=8",
                             "--config.train.noise_density=0.5",
                             "--config.train.mean_span_length=1.0")
    line = _one_error_line(result)
    assert "config.model.max_seq_len=0 is not allowed: at least 9" in line
    assert not workdir.exists()


def test_running_out_of_device_memory_is_one_line_and_the_run_ends_failed(repo, tmp_path,
                                                                         monkeypatch, capsys):
    # Past the estimate's check the device can still run out (an estimate 1-2x its memory only
    # warns): XLA's RESOURCE_EXHAUSTED ended the run in a traceback. Here a real allocation no
    # machine can make (256 TiB, past the address space) fails inside the training loop.
    import jax.numpy as jnp

    from scaling import trainer

    def steps(self, iterator):
        jnp.ones(2**48, jnp.uint8).block_until_ready()

    monkeypatch.setattr(trainer.Trainer, "_steps", steps)
    monkeypatch.chdir(repo)
    workdir = tmp_path / "run"
    code = train.main(["--config", "configs/demo.py:runlocal", "--workdir", str(workdir),
                       "--config.wandb.mode=disabled"])
    assert code == 1  # failed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "scaling-train: error: the device ran out of memory (RESOURCE_EXHAUSTED: Out of memory "
        "allocating 281474976710656 bytes.); `scaling-train --dry-run` itemises the run's "
        "estimate. Lower train.batch_size=32 or data.seq_len=128, raise "
        "train.grad_accum_steps=1, set model.remat=full (now 'none'), or shard the batch or the "
        "weights over more devices (mesh)")
    assert json.loads((workdir / "summary.json").read_text())["status"] == "failed"



def test_running_out_of_device_memory_as_it_resumes_sets_no_checkpoint_aside(repo, tmp_path,
                                                                            monkeypatch, capsys):
    # Every checkpoint was filed as unreadable, moved to unreadable-<step>, and the run told to
    # start from scratch: the device was full, not the files.
    from scaling.checkpoint import Checkpointer

    monkeypatch.chdir(repo)
    workdir = tmp_path / "run"
    run = ["--config", "configs/demo.py:runlocal", "--workdir", str(workdir),
           "--config.wandb.mode=disabled"]
    # (in a process of its own: a run that ends leaves SIGINT and SIGTERM ignored in its process)
    subprocess.run([sys.executable, "-m", "scaling.train", *run], cwd=repo, check=True,
                   capture_output=True, env=dict(os.environ, PYTHONPATH=str(repo)))
    saved = sorted(path.name for path in (workdir / "checkpoints").iterdir())
    (workdir / "summary.json").unlink()  # as a run killed before it wrote its summary: it resumes
    capsys.readouterr()

    def out_of_memory(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes.")

    monkeypatch.setattr(Checkpointer, "restore", out_of_memory)
    assert train.main(run) == 1  # failed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "scaling-train: error: the device ran out of memory (RESOURCE_EXHAUSTED: Out of memory "
        "allocating 9 bytes.); "), err
    assert sorted(path.name for path in (workdir / "checkpoints").iterdir()) == saved


def test_a_run_says_when_its_warmup_is_cut(repo, tmp_path):
    # budget.warmup_steps cuts a warmup as long as the run to leave one step after it: the run
    # trained another schedule than the config's, without a word.
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
         "--workdir", str(tmp_path / "run"), "--config.optim.warmup_steps=30",
         "--config.wandb.mode=disabled"], capture_output=True, text=True, cwd=repo, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == ("note: optim.warmup_steps=30 is not shorter than the "
                                            "run's 20 steps: it warms up over 19")


def test_a_config_without_a_field_every_run_config_has_is_one_line(repo, tmp_path):
    # A config built from an empty ConfigDict: a KeyError traceback from validation.
    config = tmp_path / "partial.py"
    config.write_text("import ml_collections\n\n\ndef get_config():\n"
                      "    config = ml_collections.ConfigDict()\n    config.name = 'x'\n"
                      "    return config\n")
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", str(config), "--workdir",
         str(tmp_path / "run"), "--dry-run"], capture_output=True, text=True, cwd=repo, timeout=120)
    assert result.returncode == 2
    assert _one_error_line(result) == ("scaling-train: error: config.seed is missing: every run "
                                       "config has it (build the config from "
                                       "scaling.config.default_config())")


def test_every_command_that_takes_config_overrides_says_how_in_its_help(capsys):
    """`--help` named no `--config.*` override (the way every field is set); scaling-eval's gave
    no way to choose the data it scores."""
    from launch import slurm, sweep, tpu
    from scaling import evaluate

    parsers = {"scaling-train": lambda: train.main(["--help"]),
               "scaling-sweep": lambda: sweep.parse_args(["--help"]),
               "scaling-eval": lambda: evaluate.parse_args(["--help"]),
               "scaling-slurm": lambda: slurm._parser().parse_args(["--help"]),
               "scaling-tpu": lambda: tpu._parser().parse_args(["--help"])}
    for program, show_help in parsers.items():
        with pytest.raises(SystemExit):
            show_help()
        text = " ".join(capsys.readouterr().out.split())
        assert "--config." in text and "=VALUE" in text, program
        if program == "scaling-eval":
            assert ("--config.data.dataset=tiny_shakespeare --config.data.eval_split=test" in text
                    and "data.tokenizer" in text), text
        if program == "scaling-train":  # resuming and what each exit code says: docs only
            assert "Rerunning the same command in the same workdir resumes" in text
            assert "75 preempted" in text and "130 interrupted" in text and "3 diverged" in text

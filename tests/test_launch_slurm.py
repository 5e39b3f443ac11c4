"""`scaling-slurm`: the sbatch script it writes, its submission to a fake `sbatch`, and the explicit
per-node commands."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest
from conftest import run_in_process

from launch import slurm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The fake records its arguments and the script it was given, and answers like sbatch does.
FAKE_SBATCH = textwrap.dedent("""\
    #!{python} -S
    import json, os, sys
    with open(sys.argv[-1]) as script:
        entry = {{"argv": sys.argv[1:], "script": script.read()}}
    with open(os.environ["FAKE_SBATCH_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")
    print("Submitted batch job 4242")
    """)
DEMO = os.path.join(REPO, "configs", "demo.py")
TINY_SWEEP = textwrap.dedent(f"""\
    from launch.plans import default_sweep

    def get_config():
        sweep = default_sweep()
        sweep.name = "tiny"
        sweep.base_config = {DEMO + ":runlocal"!r}
        sweep.sizes = "d32-L1"
        return sweep
    """)
RUN_CONFIG = textwrap.dedent(f"""\
    import importlib.util

    def get_config():
        spec = importlib.util.spec_from_file_location("demo_config", {DEMO!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config("runlocal")
    """)


@pytest.fixture
def cluster(tmp_path, monkeypatch, capfd):
    """A fake sbatch on PATH and a folder with configs; `cluster.launch(*args)` runs scaling-slurm
    in this process (sbatch is a real subprocess) and returns its exit code and what it printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable))
    sbatch.chmod(0o755)
    home = tmp_path / "checkout"
    (home / "configs" / "sweeps").mkdir(parents=True)
    # Real configs: the launcher validates every run they plan before anything is submitted.
    (home / "configs" / "sweeps" / "tiny.py").write_text(TINY_SWEEP)
    (home / "configs" / "run.py").write_text(RUN_CONFIG)
    log = tmp_path / "sbatch.jsonl"

    class Cluster:
        folder = home

        @staticmethod
        def launch(*args):
            with monkeypatch.context() as patch:
                patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
                patch.setenv("FAKE_SBATCH_LOG", str(log))
                patch.chdir(home)
                return run_in_process(slurm.main, args, capfd, "scaling-slurm")

        @staticmethod
        def submissions():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Cluster


SWEEP = ["--sweep-config", "configs/sweeps/tiny.py", "--workdir", "runs/tiny"]


def directives(script):
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH")]


def test_sbatch_script_has_the_directives_and_srun_line(cluster):
    result = cluster.launch(*SWEEP, "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu",
                            "--time", "12:00:00", "--setup", "source .venv/bin/activate")
    assert result.returncode == 0, result.stderr
    [submission] = cluster.submissions()
    assert submission["argv"] == ["runs/tiny/scaling.sbatch"]
    script = submission["script"]
    workdir = os.path.join(str(cluster.folder), "runs", "tiny")
    assert script.startswith("#!/bin/bash\n")
    assert directives(script) == [
        "--job-name=scaling", "--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8",
        "--partition=gpu", "--time=12:00:00", f"--output={workdir}/slurm-%j.out",
        "--open-mode=append", f"--chdir={cluster.folder}", "--requeue", "--signal=TERM@120"]
    lines = script.splitlines()
    srun = lines.index("srun scaling-sweep --config configs/sweeps/tiny.py --processes 1 --workdir runs/tiny")
    assert lines[srun - 1] == "source .venv/bin/activate"
    assert "Submitted batch job 4242" in result.stdout


def test_script_requeues_only_on_exit_code_75(cluster, tmp_path):
    result = cluster.launch(*SWEEP, "--nodes", "1", "--gpus-per-node", "1", "--dry-run")
    assert result.returncode == 0, result.stderr
    script = result.stdout.rsplit("sbatch ", 1)[0]
    # Run the script's tail with stand-ins for srun and scontrol that record what they were asked.
    bin_dir = tmp_path / "standins"
    bin_dir.mkdir()
    for name, body in (("srun", 'exit "$SRUN_EXIT"'), ("scontrol", 'echo "$@" >> "$CALLS"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for srun_exit, requeued in ((75, True), (0, False), (1, False)):
        calls = tmp_path / f"calls-{srun_exit}"
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "SRUN_EXIT": str(srun_exit), "CALLS": str(calls), "SLURM_JOB_ID": "4242"}
        ran = subprocess.run(["bash", "-c", script], env=env, timeout=30)
        assert ran.returncode == srun_exit
        assert (calls.read_text() == "requeue 4242\n") if requeued else not calls.exists()


def test_train_config_runs_scaling_train(cluster):
    result = cluster.launch("--train-config", "configs/run.py", "--workdir", "runs/one",
                            "--nodes", "2", "--gpus-per-node", "4", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "srun scaling-train --config configs/run.py --workdir runs/one\n" in result.stdout


def test_dry_run_prints_the_script_and_sbatch_command_and_submits_nothing(cluster):
    result = cluster.launch(*SWEEP, "--nodes", "2", "--gpus-per-node", "8", "--dry-run",
                            "--job-name", "chin")
    assert result.returncode == 0, result.stderr
    assert cluster.submissions() == []
    assert not (cluster.folder / "runs").exists()
    assert result.stdout.startswith("#!/bin/bash\n")
    assert result.stdout.splitlines()[-1] == "sbatch runs/tiny/chin.sbatch"
    assert "#SBATCH --nodes=2\n" in result.stdout
    # The installed command prints the same.
    installed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "scaling-slurm"),
                                *SWEEP, "--nodes", "2", "--gpus-per-node", "8", "--dry-run",
                                "--job-name", "chin"], cwd=cluster.folder, capture_output=True,
                               text=True, timeout=300)
    assert (installed.returncode, installed.stdout) == (0, result.stdout), installed.stderr


def test_explicit_coordinator_prints_one_command_per_node(cluster):
    result = cluster.launch("--train-config", "configs/run.py", "--workdir", "/shared/run",
                            "--nodes", "4", "--coordinator", "10.0.0.1:12345")
    assert result.returncode == 0, result.stderr
    assert cluster.submissions() == []
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    base = ["scaling-train", "--config", "configs/run.py", "--workdir", "/shared/run",
            "--config.distributed.coordinator_address=10.0.0.1:12345",
            "--config.distributed.num_processes=4"]
    assert commands == [base + [f"--config.distributed.process_id={i}"] for i in range(4)]


@pytest.mark.parametrize("args, message", [
    (SWEEP + ["--nodes", "0", "--gpus-per-node", "8"], "--nodes=0 is not allowed: an integer > 0"),
    (SWEEP + ["--nodes", "2", "--gpus-per-node", "-1"], "--gpus-per-node=-1 is not allowed"),
    (SWEEP + ["--nodes", "2"], "--gpus-per-node is missing: it needs an integer > 0"),
    (["--sweep-config", "configs/sweeps/nope.py", "--workdir", "w", "--nodes", "1",
      "--gpus-per-node", "1"], "--sweep-config='configs/sweeps/nope.py' is not allowed"),
    (["--workdir", "w", "--nodes", "1", "--gpus-per-node", "1"], "exactly one of the two"),
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2",
      "--coordinator", "node0"], "--coordinator='node0' is not allowed: HOST:PORT"),
    (SWEEP + ["--nodes", "2", "--coordinator", "node0:1234"], "used with --train-config"),
    # Each node's scaling-train refused these once all had joined: the batch of 32 rows among 3
    # processes, and a mesh whose batch axes (data × fsdp = 1) leave 2 processes the same rows.
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "3",
      "--coordinator", "node0:1234"], "config.train.batch_size=32 is not allowed: a multiple of 3 "
                                      "per micro-batch (train.grad_accum_steps=1): each of the 3 "
                                      "processes feeds rows of its own"),
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2",
      "--coordinator", "node0:1234", "--config.mesh.data=1"],
     "config.mesh={'data': 1, 'fsdp': 1, 'tensor': 1} is not allowed: a mesh whose batch axes "
     "split the batch among the 2 processes"),
    # Printed into every node's command as given.
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2",
      "--coordinator", "node 0:1234"], "--coordinator='node 0:1234' is not allowed: HOST:PORT "
                                       "with a host name or address"),
    # A dry run printed `sbatch FOLDER`, which the real run refuses.
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--script", ".", "--dry-run"],
     "--script='.' is not allowed: a file to write (this path is a folder)"),
    # A sweep config given as the run config: a KeyError traceback.
    (["--train-config", "configs/sweeps/tiny.py", "--workdir", "w", "--nodes", "1",
      "--gpus-per-node", "1", "--dry-run"], "--train-config='configs/sweeps/tiny.py' is not "
                                            "allowed: a run config (this is a sweep config"),
    # Values on #SBATCH lines, which sbatch splits at whitespace without shell quoting.
    (["--sweep-config", "configs/sweeps/tiny.py", "--workdir", "my runs/tiny", "--nodes", "1",
      "--gpus-per-node", "1"], "my runs/tiny' is not allowed: a value without whitespace"),
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--job-name", "ladder run"],
     "--job-name='ladder run' is not allowed: a value without whitespace"),
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--partition", 'gpu"'],
     "--partition='gpu\"' is not allowed"),
    # Given empty, each was dropped from the script without a word (an empty --job-name wrote
    # `#SBATCH --job-name=` and a script named `.sbatch`).
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--partition", ""],
     "--partition='' is not allowed: a non-empty value (or leave it out)"),
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--job-name", ""],
     "--job-name='' is not allowed: a non-empty value (or leave it out)"),
    # Each run's mesh over the job's 2 × 8 GPUs: the runlocal batch of 32 splits, 3-way tensor
    # parallelism does not (the job was submitted and every run refused on the cluster).
    (SWEEP + ["--nodes", "2", "--gpus-per-node", "8", "--dry-run",
              "--config.overrides.mesh.tensor=3"],
     "run tiny-d32-L1: config.mesh={'data': -1, 'fsdp': 1, 'tensor': 3} is not allowed: axis "
     "sizes whose product divides the 16 devices"),
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "1", "--gpus-per-node",
      "3", "--dry-run"], "config.train.batch_size=32 is not allowed: a multiple of mesh data × "
                         "fsdp = 3 × 1 = 3"),
    # Tensor parallelism across the job's 2 processes (one per GPU): each process feeds rows of
    # its own, which the mesh would hold twice; every process was refused at step 0.
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2", "--gpus-per-node",
      "1", "--dry-run", "--config.mesh.data=1", "--config.mesh.tensor=2"],
     "config.mesh={'data': 1, 'fsdp': 1, 'tensor': 2} is not allowed: a mesh whose batch axes "
     "split the batch among the 2 processes, each feeding rows of its own: data × fsdp a "
     "multiple of 2 (it is 1; keep mesh.tensor within a process's devices)"),
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--time", ""],
     "--time='' is not allowed: a non-empty value (or leave it out)"),
    # Written into the script, and refused only by sbatch on submission.
    (SWEEP + ["--nodes", "1", "--gpus-per-node", "1", "--time", "12h"],
     "--time='12h' is not allowed: a time limit sbatch reads: MINUTES, HOURS:MINUTES:SECONDS, "
     "DAYS-HOURS[:MINUTES[:SECONDS]] or UNLIMITED"),
    # The commands printed for an explicit coordinator ignored them.
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2",
      "--coordinator", "node0:1234", "--gpus-per-node", "8"],
     "--gpus-per-node=8 is not allowed: used without --coordinator"),
    (["--train-config", "configs/run.py", "--workdir", "w", "--nodes", "2",
      "--coordinator", "node0:1234", "--setup", "source .venv/bin/activate"],
     "--setup='source .venv/bin/activate' is not allowed: used without --coordinator"),
])
def test_bad_input_is_one_line_and_exit_code_2(cluster, args, message):
    result = cluster.launch(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("scaling-slurm: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert cluster.submissions() == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["submit", "dry-run"])
def test_a_sweep_scaling_train_would_refuse_is_refused_before_sbatch(cluster, dry_run):
    (cluster.folder / "configs" / "sweeps" / "bad.py").write_text(TINY_SWEEP.replace(
        'sweep.sizes = "d32-L1"',
        'sweep.sizes = "d32-L1"\n    sweep.size_overrides = {"d32-L1": {"optim": {"lr": -1.0}}}'))
    result = cluster.launch("--sweep-config", "configs/sweeps/bad.py", "--workdir", "runs/bad",
                            "--nodes", "1", "--gpus-per-node", "8", *dry_run)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("scaling-slurm: error: run tiny-d32-L1")
    assert "config.optim.lr=-1.0 is not allowed" in result.stderr
    assert cluster.submissions() == [] and result.stdout == ""
    assert not (cluster.folder / "runs").exists()


def test_a_run_config_scaling_train_would_refuse_is_refused_before_sbatch(cluster):
    (cluster.folder / "configs" / "bad_run.py").write_text(RUN_CONFIG.replace(
        'return module.get_config("runlocal")',
        'config = module.get_config("runlocal")\n    config.optim.lr = -1.0\n    return config'))
    result = cluster.launch("--train-config", "configs/bad_run.py", "--workdir", "runs/bad",
                            "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("scaling-slurm: error: config.optim.lr=-1.0 is not allowed: "
                                     + result.stderr.strip().split("is not allowed: ", 1)[1])
    assert cluster.submissions() == []


def test_config_overrides_are_checked_and_reach_every_process(cluster):
    result = cluster.launch(*SWEEP, "--nodes", "1", "--gpus-per-node", "2", "--dry-run",
                            "--config.overrides.optim.lr=0.01", "--config.steps", "12")
    assert result.returncode == 0, result.stderr
    assert ("srun scaling-sweep --config configs/sweeps/tiny.py --processes 1 --workdir runs/tiny "
            "--config.overrides.optim.lr=0.01 --config.steps=12\n") in result.stdout
    result = cluster.launch("--train-config", "configs/run.py", "--workdir", "/shared/run",
                            "--nodes", "2", "--coordinator", "10.0.0.1:12345",
                            "--config.train.steps=7")
    assert result.returncode == 0, result.stderr
    assert all(shlex.split(line)[5] == "--config.train.steps=7"
               for line in result.stdout.splitlines())
    for args, message in ((SWEEP + ["--gpus-per-node", "2", "--config.plan=nope"],
                           "config.plan='nope' is not allowed"),
                          (["--train-config", "configs/run.py", "--workdir", "w",
                            "--gpus-per-node", "2", "--config.optim.lr=-1"],
                           "config.optim.lr=-1.0 is not allowed")):
        result = cluster.launch(*args, "--nodes", "1")
        assert result.returncode == 2 and result.stderr.startswith("scaling-slurm: error: ")
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert cluster.submissions() == []


def test_a_config_variant_is_accepted_and_a_wrong_one_named(cluster):
    # `file.py:variant` was refused as "an existing config file" although the file exists.
    (cluster.folder / "configs" / "demo.py").write_text(open(DEMO).read())
    result = cluster.launch("--train-config", "configs/demo.py:runlocal", "--workdir", "runs/r",
                            "--nodes", "1", "--gpus-per-node", "8", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "srun scaling-train --config configs/demo.py:runlocal --workdir" in result.stdout
    result = cluster.launch("--train-config", "configs/demo.py:nope", "--workdir", "runs/r",
                            "--nodes", "1", "--gpus-per-node", "8", "--dry-run")
    assert result.returncode == 2
    assert result.stderr == ("scaling-slurm: error: --train-config='configs/demo.py:nope' is not "
                             "allowed: a variant of this file: runlocal\n")


def test_a_bad_base_config_variant_is_named_as_the_sweeps_base_config(cluster):
    # It was blamed on --sweep-config, whose file has no variant.
    sweep = cluster.folder / "configs" / "sweeps" / "variant.py"
    sweep.write_text((cluster.folder / "configs" / "sweeps" / "tiny.py").read_text().replace(
        ":runlocal", ":nope"))
    assert ":nope" in sweep.read_text()
    result = cluster.launch("--sweep-config", "configs/sweeps/variant.py", "--workdir", "w",
                            "--nodes", "1", "--gpus-per-node", "1", "--dry-run")
    assert result.returncode == 2
    assert result.stderr == ("scaling-slurm: error: config.base_config (in "
                             f"configs/sweeps/variant.py)='{DEMO}:nope' is not allowed: a variant "
                             "of this file: runlocal\n")


def test_a_workdir_that_is_a_file_is_one_line(cluster):
    # A FileExistsError traceback (os.makedirs) after every config had been validated.
    (cluster.folder / "afile").write_text("")
    result = cluster.launch("--train-config", "configs/run.py", "--workdir", "afile",
                            "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("scaling-slurm: error: --workdir='afile' is not allowed: a "
                             "directory (this path is a file)\n")
    assert cluster.submissions() == []


def test_a_script_path_under_a_file_is_one_line(cluster):
    # A NotADirectoryError traceback (open) before; a missing folder is made.
    (cluster.folder / "afile").write_text("")
    common = ("--train-config", "configs/run.py", "--workdir", "out", "--nodes", "1",
              "--gpus-per-node", "8")
    result = cluster.launch(*common, "--script", "afile/job.sbatch")
    assert result.returncode == 2, result.stderr
    folder = cluster.folder / "afile"
    assert result.stderr == ("scaling-slurm: error: --script='afile/job.sbatch' is not allowed: a "
                             f"file in a folder that exists or can be made (its folder {folder}: "
                             "a directory (this path is a file))\n")
    assert cluster.submissions() == []
    result = cluster.launch(*common, "--script", "jobs/job.sbatch")
    assert result.returncode == 0, result.stderr
    assert (cluster.folder / "jobs" / "job.sbatch").is_file()


@pytest.mark.parametrize("option", ["--script", "--job-name"])
def test_a_script_that_cannot_be_written_is_one_line_before_sbatch(cluster, option):
    # An OSError traceback (File name too long) before.
    name = "j" * 300  # longer than a file name may be (255 bytes on common file systems)
    value = f"{name}.sbatch" if option == "--script" else name
    result = cluster.launch("--train-config", "configs/run.py", "--workdir", "out", "--nodes", "1",
                            "--gpus-per-node", "8", option, value)
    assert result.returncode == 2, result.stderr
    path = f"{name}.sbatch" if option == "--script" else os.path.join("out", f"{name}.sbatch")
    assert result.stderr == (f"scaling-slurm: error: {option}={value!r} is not allowed: a value "
                             f"that makes a script file this user can write ({path}: File name "
                             "too long)\n")
    assert cluster.submissions() == []


def test_cpus_per_task_is_an_sbatch_directive_and_checked(cluster):
    # Not settable before: each task (one per GPU) got SLURM's default of 1 CPU where cores are
    # confined.
    result = cluster.launch(*SWEEP, "--nodes", "2", "--gpus-per-node", "8", "--cpus-per-task",
                            "12", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert directives(result.stdout)[:5] == ["--job-name=scaling", "--nodes=2",
                                             "--ntasks-per-node=8", "--gpus-per-node=8",
                                             "--cpus-per-task=12"]
    for value in ("0", "-4"):
        refused = cluster.launch(*SWEEP, "--nodes", "1", "--gpus-per-node", "8",
                                 "--cpus-per-task", value)
        assert refused.returncode == 2
        assert refused.stderr == (f"scaling-slurm: error: --cpus-per-task={value} is not "
                                  "allowed: an integer > 0\n")
    assert cluster.submissions() == []

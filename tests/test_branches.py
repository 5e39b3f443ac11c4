"""Cooldown branches of a warmup–stable–decay run (`scaling.branches`, the `ladder` plan).

- The schedule: warmup, stable, then the cooldown over the last `decay_fraction` of the steps
  (linear or 1 − √t), against the formula; a run of S steps and one of T > S steps use the same
  rate at every step before S's cooldown, which is what lets a branch start from T's state.
- A branch trained from its parent's stable state ends bit for bit where an independent WSD run of
  its length ends, and a branch killed mid-cooldown and rerun ends bit for bit where an
  uninterrupted branch ends.
- A tiny `ladder` sweep end to end: one row per budget, branches after their parent, the study's
  compute, and a sweep killed mid-way that reruns only what is unfinished.
"""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, write_sweep_config
from scaling import branches, budget, optim
from scaling.checkpoint import Checkpointer
from scaling.config import default_config
from scaling.errors import IncompatibleCheckpoint
from test_resume import assert_same_state, committed_steps, restored_state, wait_until
from test_sweep import cannot_resume


def _optim(**changes):
    config = default_config()
    config.optim.update(schedule="wsd", lr=1.0, min_lr_ratio=0.1, **changes)
    return config.optim


@pytest.mark.parametrize("shape", ["linear", "sqrt"])
def test_wsd_schedule_matches_its_formula(shape):
    o = _optim(warmup_steps=10, decay_fraction=0.25, decay_shape=shape)
    total = 100
    schedule = optim.learning_rate_schedule(o, total)
    start = budget.wsd_decay_start(o, total)
    assert start == 75
    for step in range(total + 1):
        if step < 10:
            expected = step / 10
        elif step < start:
            expected = 1.0
        else:
            progress = (step - start) / (total - start)
            shrink = progress if shape == "linear" else math.sqrt(progress)
            expected = 1.0 - 0.9 * shrink
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-7), step


def test_a_short_run_shares_the_long_runs_rates_until_its_cooldown():
    o = _optim(warmup_steps=8, decay_fraction=0.2)
    long_schedule = optim.learning_rate_schedule(o, 200)
    for short in (40, 80, 120, 199):
        start = budget.wsd_decay_start(o, short)
        assert start == short - round(0.2 * short)
        short_schedule = optim.learning_rate_schedule(o, short)
        assert all(float(short_schedule(k)) == float(long_schedule(k)) for k in range(start))
        assert float(short_schedule(start + 1)) < 1.0  # and then it cools down


def test_runs_that_differ_only_in_length_share_one_compiled_train_program():
    """The schedule's placement is read at run time: a branch's train step (and the K-step call)
    lowers to the program its parent's does, so the compilation cache serves every branch of a
    size from one compilation. The rates it passes still follow each run's own schedule."""
    import jax

    from scaling import parallel, step
    from scaling.config import model_config

    def lowered(total_steps: int, steps_per_call: int) -> tuple[str, dict]:
        config = default_config()
        config.optim.update(schedule="wsd", decay_fraction=0.2, warmup_steps=5)
        config.model.update(d_model=32, num_heads=2, num_layers=1, d_ff=64)
        config.train.update(batch_size=4, steps_per_call=steps_per_call)
        config.data.seq_len = 16
        program = step.build_program(config, model_config(config, 257), total_steps,
                                     parallel.make_mesh(config.mesh))
        function = program.train_step if steps_per_call == 1 else program.train_steps
        rows = (4, 16) if steps_per_call == 1 else (steps_per_call, 4, 16)
        sharding = program.batch_sharding if steps_per_call == 1 else program.stacked_batch_sharding
        batch = {name: jax.ShapeDtypeStruct(rows, jax.numpy.int32, sharding=sharding)
                 for name in ("inputs", "targets", "segment_ids")}
        extra = () if steps_per_call == 1 else (jax.ShapeDtypeStruct((steps_per_call,), bool),)
        with program.context():
            text = function.lower(program.abstract_state, batch, *extra).as_text()
        return text, function.schedule_arguments

    for per_call in (1, 3):
        parent, parent_arguments = lowered(200, per_call)
        branch, branch_arguments = lowered(40, per_call)
        assert branch == parent
        assert (int(parent_arguments["decay_start"]), int(branch_arguments["decay_start"])) == (160, 32)


# ----------------------------------------------------------------------------------------------
# Training: parent, branch, independent run, killed branch

PARENT_STEPS, BRANCH_STEPS = 60, 40
BRANCH_START = BRANCH_STEPS - round(0.2 * BRANCH_STEPS)  # wsd_decay_start, decay_fraction 0.2
COMMON = ["--config", "configs/demo.py:runlocal", "--config.optim.schedule=wsd",
          "--config.train.log_every=2", "--config.train.eval_every=20",
          "--config.checkpoint.every_steps=2", "--config.checkpoint.keep=2"]


def _train(workdir, *overrides, wait=True):
    process = subprocess.Popen([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                                str(workdir), *overrides], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO)))
    if not wait:
        return process
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def _branch_args(parent):
    return [f"--config.train.steps={BRANCH_STEPS}", f"--config.train.init_from={parent}",
            f"--config.train.init_step={BRANCH_START}"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("parent")
    _train(workdir, f"--config.train.steps={PARENT_STEPS}",
           f"--config.train.branch_steps=({BRANCH_START},)")
    return workdir


@pytest.mark.slow
def test_branch_equals_an_independent_run_of_its_length(parent, tmp_path):
    assert sorted(int(p.name) for p in (parent / "stable").iterdir() if p.name.isdigit()) == [
        BRANCH_START]
    branch, independent = tmp_path / "branch", tmp_path / "independent"
    out = _train(branch, *_branch_args(parent))
    assert f"resuming from step {BRANCH_START}" in out
    _train(independent, f"--config.train.steps={BRANCH_STEPS}")
    assert_same_state(branch, independent, step=BRANCH_STEPS)
    summary = json.loads((branch / "summary.json").read_text())
    reference = json.loads((independent / "summary.json").read_text())
    assert summary["final_eval_loss"] == reference["final_eval_loss"]
    assert summary["start_step"] == BRANCH_START and summary["steps"] == BRANCH_STEPS


@pytest.mark.slow
def test_killed_branch_resumes_bitwise(parent, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _train(reference, *_branch_args(parent))
    process = _train(killed, *_branch_args(parent), wait=False)
    wait_until(lambda: any(step > BRANCH_START for step in committed_steps(killed)), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert max(committed_steps(killed)) < BRANCH_STEPS
    out = _train(killed, *_branch_args(parent))
    assert "resuming from step" in out and "stable-phase state" not in out  # its own checkpoint
    assert_same_state(killed, reference, step=BRANCH_STEPS)
    assert restored_state(killed, BRANCH_STEPS).keys() == restored_state(reference,
                                                                         BRANCH_STEPS).keys()


def test_a_branchs_wandb_run_names_its_parent_and_is_tagged_a_branch(parent, tmp_path):
    # In the W&B UI a sweep's cooldown branches sit beside their parents in one group: the
    # `branch` tag filters them, and the config's `parent` (results.csv's column) says which run
    # each one continues; `train.init_from` alone is a path on the machine that trained it.
    from launch.registry import read_local_run, read_run_file_records

    branch = tmp_path / "branch"
    _train(branch, *_branch_args(parent), "--config.wandb.mode=offline")
    [run_file] = branch.glob("wandb/offline-run-*/run-*.wandb")
    header = next(record.run for record in read_run_file_records(run_file)
                  if record.WhichOneof("record_type") == "run")
    assert "branch" in list(header.tags)
    config = read_local_run(run_file)["config"]
    assert config["parent"] == parent.name and config["train"]["init_step"] == BRANCH_START


def test_branch_of_a_parent_without_that_state_is_refused(parent, tmp_path):
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(tmp_path / "b"), "--config.train.steps=30",
                             f"--config.train.init_from={parent}", "--config.train.init_step=24"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no stable state at step 24" in result.stderr and len(result.stderr.splitlines()) == 1



@pytest.mark.parametrize("dry_run", [True, False])
def test_branch_of_a_parent_that_never_trained_is_one_line(tmp_path, dry_run):
    # The dry run passed; the real run's one line was followed by a traceback of Orbax's
    # background thread at exit.
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(tmp_path / "b"), "--config.train.steps=30",
                             f"--config.train.init_from={tmp_path / 'none'}",
                             "--config.train.init_step=24", *(["--dry-run"] if dry_run else [])],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == (f"scaling-train: error: config.train.init_from="
                             f"'{tmp_path / 'none'}' is not allowed: the workdir of a parent run "
                             "that saved stable-phase states (stable/): train it with "
                             "train.branch_steps first\n")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("override, refusal", [
    # Its stable phase would not be the parent's: the branch would be neither run.
    ("--config.optim.lr=0.01", "the parent run {parent} was trained with another optimizer or "
                               "learning-rate schedule (optim.lr: 0.003, config 0.01)"),
    # "the workdir's checkpoint was trained with a different model ...; use a new --workdir":
    # the branch's workdir was new and empty, and a new one would not have helped.
    ("--config.model.d_ff=64", "the stable state of train.init_from='{parent}' was trained with "
                               "a different model (model.d_ff, set by model.d_model unless "
                               "given: checkpoint "),
    # Another optimizer state's layout: "holds a different train state (44 entries differ, e.g.
    # opt_state/0/count)", naming no setting.
    ("--config.optim.grad_clip=0.0", "the parent run {parent} was trained with another optimizer "
                                     "or learning-rate schedule (optim.grad_clip: 1.0, config "
                                     "0.0)"),
])
def test_a_branch_its_parent_does_not_fit_is_refused_naming_the_parent(parent, tmp_path,
                                                                       override, refusal):
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(tmp_path / "b"), *_branch_args(parent), override],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert refusal.format(parent=parent) in line, line
    assert line.endswith("; give the run the settings its parent was trained with, or another "
                         "train.init_from"), line
    # Refused before it wrote anything: its new workdir (an empty checkpoints/ and a lock) is gone.
    assert not (tmp_path / "b").exists()


def test_a_branch_of_a_damaged_stable_state_is_one_line(parent, tmp_path):
    # A truncated file of the parent's stable state: a 156-line traceback, exit 1.
    damaged = tmp_path / "parent"
    shutil.copytree(parent, damaged)
    largest = max((path for path in (damaged / "stable" / str(BRANCH_START)).rglob("*")
                   if path.is_file()), key=lambda path: path.stat().st_size)
    with open(largest, "r+b") as file:
        file.truncate(100)
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(tmp_path / "b"), *_branch_args(damaged)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    # Orbax's reader threads may still print asyncio's "Event loop is closed" around it (known).
    [line] = [line for line in result.stderr.splitlines() if line.startswith("scaling-train: ")]
    assert "/scaling/" not in result.stderr.replace(str(damaged), ""), result.stderr[-3000:]
    assert line.startswith(f"scaling-train: error: the stable state of train.init_from="
                           f"'{damaged}' at step {BRANCH_START} cannot be read ("), line
    assert line.endswith("train the parent run again (delete its workdir and rerun it, or its "
                         "sweep), or use another train.init_from"), line


@pytest.mark.slow
def test_a_branch_chooses_its_own_cooldown_and_resumes_only_under_it(parent, tmp_path):
    """A branch starts from its parent's stable state with a cooldown of its own (length and
    shape); its own checkpoints then hold it to that cooldown."""
    branch = tmp_path / "branch"
    out = _train(branch, *_branch_args(parent), "--config.optim.decay_shape=sqrt")
    assert f"resuming from step {BRANCH_START} (the stable-phase state" in out
    (branch / "summary.json").unlink()  # as if killed after its last checkpoint
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(branch), *_branch_args(parent)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("the workdir's checkpoint belongs to a run with another optimizer "
                                "or learning-rate schedule (optim.decay_shape: 'sqrt', config "
                                "'linear')" in lines[0]), result.stderr


def test_a_branch_with_its_own_checkpoints_keeps_its_start_step(parent, tmp_path):
    # Rerun with another train.init_step, it resumed from its own checkpoints and recorded the
    # new step as its start: a sweep counted the compute of steps it never trained.
    branch = tmp_path / "branch"
    _train(branch, *_branch_args(parent))
    moved = [arg.replace(f"init_step={BRANCH_START}", "init_step=24")
             for arg in _branch_args(parent)]
    for completed in (True, False):
        if not completed:
            (branch / "summary.json").unlink()  # as if killed after its last checkpoint
        result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                                 str(branch), *moved], cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        [line] = result.stderr.strip().splitlines()
        assert (f"train.init_step: {'completed run ' if completed else ''}{BRANCH_START}, "
                "config 24" in line), line


def _refused(workdir, *overrides):
    """The one line of a `scaling-train` in `workdir` that exits 2."""
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(workdir), *overrides], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    return line


def test_a_branch_step_the_parent_has_passed_is_refused_not_silently_skipped(tmp_path):
    # Rerun with 12 added after step 12, the parent went on without saving it, and its branch of
    # 12 was told to "train it with 12 in train.branch_steps", which the parent already had.
    parent, run = tmp_path / "parent", ["--config.train.steps=30",
                                        "--config.checkpoint.every_steps=10"]
    _train(parent, *run, "--config.train.branch_steps=(4,)")
    metrics = (parent / "metrics.jsonl").read_text()
    line = _refused(parent, *run, "--config.train.branch_steps=(4,12)")
    assert f"train.branch_steps lists [12], which the run in {parent} has passed (it is at step " \
           "30) without saving a stable state there" in line, line
    # Its stable states removed once its branches were done, the completed run is left alone:
    # it saved them as it passed them (it was refused as having "passed without saving").
    shutil.copytree(parent, tmp_path / "cleared")
    shutil.rmtree(tmp_path / "cleared" / "stable")
    again = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                            str(tmp_path / "cleared"), *run, "--config.train.branch_steps=(4,)"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-3000:]
    line = _refused(tmp_path / "branch", "--config.train.steps=20",
                    f"--config.train.init_from={parent}", "--config.train.init_step=12")
    assert line.endswith("saved no stable state at step 12 (it has [4]), and it trained past that "
                         "step: train the parent again in a new workdir with 12 in "
                         "train.branch_steps, and use that as train.init_from"), line
    shutil.rmtree(parent / "checkpoints" / "30")  # as if killed after its checkpoint of 20
    (parent / "summary.json").unlink()
    line = _refused(parent, *run, "--config.train.branch_steps=(4,12,22)")
    assert "lists [12], which the run in" in line and "(it is at step 20)" in line, line
    assert _stable_steps(parent) == [4]
    assert (parent / "metrics.jsonl").read_text() == metrics


def test_a_stable_state_is_committed_when_its_save_returns(tmp_path):
    # The trainer saves it before the step's checkpoint, so a kill at any moment after that
    # checkpoint commits cannot leave the run resumed past a branch step without its state.
    states = branches.StableStates(tmp_path)
    try:
        states.save(7, {"w": np.ones((16, 1024, 1024), np.float32)}, {"step": 7})  # 64 MiB
        stable = tmp_path / branches.STABLE_FOLDER
        assert [p.name for p in stable.iterdir()] == ["7"]
        assert Checkpointer(tmp_path, keep=1, folder=branches.STABLE_FOLDER,
                            read_only=True).steps() == [7]
    finally:
        states.close()


def _stable_steps(workdir):
    return sorted(int(path.name) for path in (workdir / "stable").iterdir() if path.name.isdigit())


def test_a_parent_resumed_with_other_branch_steps_keeps_the_states_it_saved(tmp_path):
    # Resumed with train.branch_steps=(22,) after saving 4 and 8, it kept one state (22): the
    # branches of 4 and 8 could no longer start.
    workdir, run = tmp_path / "parent", ["--config.train.steps=30",
                                         "--config.checkpoint.every_steps=10"]
    _train(workdir, *run, "--config.train.branch_steps=(4,8)")
    assert _stable_steps(workdir) == [4, 8]
    shutil.rmtree(workdir / "checkpoints" / "30")  # as if killed after its checkpoint of 20
    (workdir / "summary.json").unlink()
    out = _train(workdir, *run, "--config.train.branch_steps=(22,)")
    assert "resuming from step 20" in out
    assert _stable_steps(workdir) == [4, 8, 22]


def test_a_branch_leaves_its_parents_save_in_flight_alone(tmp_path):
    # The parent still writing the state of step 30 (orbax's temporary folder for it) while a
    # branch that wants it opens the stable folder: refused, and the parent's save untouched.
    stable = tmp_path / "parent" / branches.STABLE_FOLDER
    in_flight = stable / "30.orbax-checkpoint-tmp-1764547200"
    (in_flight / "state").mkdir(parents=True)
    config = default_config()
    config.train.init_from, config.train.init_step = str(tmp_path / "parent"), 30
    with pytest.raises(IncompatibleCheckpoint, match="no stable state at step 30"):
        branches.restore_parent(config, {}, config.model)
    # A clean-up of unfinished saves would run in the background: give it time to show.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and (in_flight / "state").is_dir():
        time.sleep(0.05)
    assert [p.name for p in stable.iterdir()] == [in_flight.name]
    assert (in_flight / "state").is_dir()


def test_branch_outside_its_stable_phase_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scaling.train", *COMMON, "--workdir",
                             str(tmp_path / "b"), "--config.train.steps=30",
                             f"--config.train.init_from={tmp_path}", "--config.train.init_step=29"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "train.init_step=29" in result.stderr
    assert "at most 24" in result.stderr and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------
# The ladder plan

LADDER = dict(name="lad", base_config="configs/demo.py:runlocal", sizes="d16-L1,d32-L1",
              plan="ladder", ladder_tokens=(256 * 16, 256 * 32, 256 * 64), processes=2,
              overrides={"train": {"batch_size": 8, "log_every": 4, "eval_every": 8},
                         "data": {"seq_len": 32},
                         "optim": {"warmup_steps": 2}, "checkpoint": {"every_steps": 4}})


def _rows(workdir):
    with open(workdir / "results.csv", newline="") as file:
        return {row["name"]: row for row in csv.DictReader(file)}


def test_a_budget_added_below_a_stopped_parent_is_refused_before_any_run(repo, tmp_path):
    # The parent stopped at step 56 of 64; a budget of 8 steps added to the plan branches it at
    # step 6, which it passed without saving. The sweep started it, it was refused, and its
    # three branches failed saying "rerun the sweep", which failed them again.
    workdir = tmp_path / "sweep"
    sweep = [sys.executable, "-m", "launch.sweep", "--workdir", str(workdir), "--config"]
    ladder = dict(LADDER, sizes="d16-L1", processes=1)
    first = write_sweep_config(tmp_path / "first.py", **ladder)
    parent = "lad-d16-L1-D1.6e4"
    done = subprocess.run(sweep + [str(first), "--only", parent], cwd=repo, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = workdir / "runs" / parent
    for step in (60, 64):  # as if stopped after its checkpoint of step 56
        shutil.rmtree(run_dir / "checkpoints" / str(step))
    (run_dir / "summary.json").unlink()
    added = write_sweep_config(tmp_path / "added.py",
                               **dict(ladder, ladder_tokens=(256 * 8, *LADDER["ladder_tokens"])))
    for extra in (["--dry-run"], []):
        result = subprocess.run(sweep + [str(added), *extra], cwd=repo, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr == cannot_resume(
            workdir, parent, "the plan branches it at steps [6], which it has passed (its "
            "checkpoint is at step 56) without saving a stable state there")
    assert committed_steps(run_dir) == [56] and _stable_steps(run_dir) == [13, 26]
    # The plan it stopped under resumes it.
    result = subprocess.run(sweep + [str(first), "--dry-run"], cwd=repo, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_ladder_sweep_end_to_end_and_rerun_after_a_kill(repo, tmp_path):
    config, workdir = write_sweep_config(tmp_path / "lad.py", **LADDER), tmp_path / "sweep"
    sweep = [sys.executable, "-m", "launch.sweep", "--config", str(config), "--workdir",
             str(workdir)]
    dry = subprocess.run(sweep + ["--dry-run"], cwd=repo, capture_output=True, text=True,
                         timeout=120)
    # Per size: 64 steps alone, plus branches of 16 and 32 steps that train only their last
    # 20% (3 and 6 steps): (64 + 3 + 6) / (64 + 16 + 32) of the compute.
    assert "of that" in dry.stdout and f"{73 / 112:.2f}" in dry.stdout, dry.stdout
    process = subprocess.Popen(sweep + ["--processes", "1"], cwd=repo, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (workdir / "runs").exists() or not any(
            json.loads(p.read_text()).get("status") == "completed"
            for p in (workdir / "runs").glob("*/summary.json")):
        assert time.time() < deadline and process.poll() is None, "no run completed in time"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = {p.parent.name: p.read_text() for p in (workdir / "runs").glob("*/summary.json")
            if json.loads(p.read_text()).get("status") == "completed"}
    result = subprocess.run(sweep, cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(done)} already finished" in result.stdout
    for name, text in done.items():  # finished before the kill: not trained again
        assert (workdir / "runs" / name / "summary.json").read_text() == text
    rows = _rows(workdir)
    assert len(rows) == 6 and {row["status"] for row in rows.values()} == {"completed"}
    for size in ("d16-L1", "d32-L1"):
        mine = {int(row["steps"]): row for row in rows.values() if row["size"] == size}
        assert sorted(mine) == [16, 32, 64]
        parent = mine[64]
        assert parent["parent"] == "" and int(parent["start_step"]) == 0
        for steps, start in ((16, 13), (32, 26)):
            branch = mine[steps]
            assert branch["parent"] == parent["name"] and int(branch["start_step"]) == start
            assert int(branch["tokens"]) == steps * 256
            assert float(branch["study_flops"]) == pytest.approx(
                float(branch["flops"]) * (steps - start) / steps)
        losses = [float(mine[s]["final_eval_loss"]) for s in (16, 32, 64)]
        assert losses[0] > losses[1] > losses[2]  # more tokens, lower held-out loss

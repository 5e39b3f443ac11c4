"""A run that is killed, preempted, finds a broken checkpoint or moves to another mesh ends exactly
where an uninterrupted run ends.

Every run here is the `scaling-train` command in a subprocess (`python -m scaling.train`). The
reference is one uninterrupted run of the same command; "exact" means its final parameters and
optimizer state, restored with Orbax directly (not through `scaling.checkpoint`), equal the
interrupted run's bit for bit, and so do the losses in `metrics.jsonl`.
"""

import inspect
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, run_python, small_disk, xla_flags
from test_tracking import logged_history

from scaling.tracking import WANDB_ID_FILE, read_metrics

STEPS, LOG_EVERY, EVAL_EVERY, SAVE_EVERY = 30, 5, 15, 10
OVERRIDES = [f"train.steps={STEPS}", f"train.log_every={LOG_EVERY}",
             f"train.eval_every={EVAL_EVERY}", f"checkpoint.every_steps={SAVE_EVERY}",
             "checkpoint.keep=3", "wandb.mode=offline"]
RUN = ["--config", "configs/demo.py:runlocal", *("--config." + item for item in OVERRIDES)]
LOGGED_STEPS = list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
EVAL_STEPS = [15, 30]  # every EVAL_EVERY steps and the last step
EXACT_FIELDS = ("step", "tokens", "train_loss", "eval_loss", "lr", "grad_norm", "skipped_steps")

pytestmark = pytest.mark.slow


def _environment(devices: int = 1) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO),
                XLA_FLAGS=xla_flags(devices))


def start(workdir: pathlib.Path, *overrides: str, config: str = "") -> subprocess.Popen:
    """`scaling-train` of RUN (its config file replaced by `config`) in `workdir`."""
    run = ["--config", config, *RUN[2:]] if config else RUN
    return subprocess.Popen([sys.executable, "-m", "scaling.train", *run, "--workdir", str(workdir),
                             *overrides], cwd=REPO, env=_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def train(workdir: pathlib.Path, *overrides: str, config: str = "") -> subprocess.CompletedProcess:
    process = start(workdir, *overrides, config=config)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_until(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"run ended early:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def last_logged_step(workdir: pathlib.Path) -> int:
    path = workdir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return max((json.loads(line)["step"] for line in lines if line.endswith("}")), default=0)


def committed_steps(workdir: pathlib.Path) -> list[int]:
    """Checkpoint steps Orbax has finished (a step directory appears only by the final rename)."""
    directory = workdir / "checkpoints"
    return sorted(int(path.name) for path in directory.iterdir()
                  if path.name.isdigit()) if directory.exists() else []


def restored_state(workdir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
    """The train state saved at `step`, read by Orbax alone, as {key path: array}."""
    import jax

    state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    return {entry_names(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def entry_names(path) -> str:
    """A tree path as "opt_state/1/mu/...": Orbax restores named tuples as dicts."""
    return "/".join(str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))
                    for entry in path)


def assert_same_state(workdir: pathlib.Path, reference: pathlib.Path, step: int = STEPS) -> None:
    got, want = restored_state(workdir, step), restored_state(reference, step)
    assert got.keys() == want.keys()
    differing = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not differing, f"state differs bitwise from the uninterrupted run at {differing[:5]}"


def assert_same_metrics(workdir: pathlib.Path, reference: pathlib.Path) -> None:
    records = read_metrics(workdir / "metrics.jsonl")
    assert [record["step"] for record in records] == LOGGED_STEPS  # none doubled, none missing
    expected = read_metrics(reference / "metrics.jsonl")
    for record, want in zip(records, expected):
        assert {field: record[field] for field in EXACT_FIELDS} == {
            field: want[field] for field in EXACT_FIELDS}


def killed_after_last_checkpoint(reference: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the uninterrupted run as if killed right after its final save: every checkpoint,
    no summary."""
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    (workdir / "summary.json").unlink()
    return workdir


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pathlib.Path:
    """One uninterrupted run."""
    workdir = tmp_path_factory.mktemp("reference")
    result = train(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_uninterrupted_run_logs_and_evaluates_at_its_boundaries(reference):
    records = read_metrics(reference / "metrics.jsonl")
    assert [record["step"] for record in records] == LOGGED_STEPS
    assert [record["step"] for record in records if record["eval_loss"] is not None] == EVAL_STEPS
    assert all(np.isfinite(record["eval_loss"]) for record in records if record["step"] in EVAL_STEPS)
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert summary["final_eval_loss"] == records[-1]["eval_loss"]
    assert committed_steps(reference) == [10, 20, 30]


def test_final_eval_loss_is_the_held_out_loss_of_the_final_parameters(reference):
    """Recomputed from the saved final state with a NumPy cross-entropy over the model's logits."""
    code = f"""
import jax, numpy as np, orbax.checkpoint as ocp
from scaling import data, model as model_lib
from scaling.config import model_config
from scaling.overrides import apply_overrides, load_config
config = load_config("configs/demo.py:runlocal")
apply_overrides(config, {OVERRIDES!r})
loader = data.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed)
model = model_config(config, loader.vocab_size)
state = ocp.StandardCheckpointer().restore("{reference}/checkpoints/{STEPS}/state")
losses = []
for batch in loader.eval_batches(config.train.eval_batches):
    logits = np.asarray(model_lib.Transformer(model).apply({{"params": state["params"]}},
                        batch["inputs"], deterministic=True), np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    losses.append(-np.take_along_axis(log_probs, batch["targets"][..., None], -1).mean())
loader.close()
print("LOSS", float(np.mean(losses)))
"""
    output = run_python(code).stdout
    recomputed = float(output.split("LOSS ")[1])
    logged = read_metrics(reference / "metrics.jsonl")[-1]["eval_loss"]
    assert logged == pytest.approx(recomputed, rel=1e-4)


def test_sigkill_then_sigterm_then_rerun_matches_the_uninterrupted_run(reference, tmp_path):
    """Killed at a random step after the first checkpoint; the rerun is preempted (SIGTERM: exit
    75, status `preempted`, a checkpoint at the step it stopped); the third run finishes."""
    delay = random.uniform(0.0, 0.5)
    process = start(tmp_path)
    wait_until(lambda: SAVE_EVERY in committed_steps(tmp_path), process)
    time.sleep(delay)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    killed_after = last_logged_step(tmp_path)
    context = f"killed {delay:.2f} s after the first checkpoint, last logged step {killed_after}: "
    assert killed_after < STEPS and not (tmp_path / "summary.json").exists(), context

    process = start(tmp_path)
    # Wait for the restart's own step 20: its W&B directory (the second) appears only after it
    # has cut metrics.jsonl back to its checkpoint, so the killed run's steps cannot count.
    wait_until(lambda: len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
               and last_logged_step(tmp_path) >= 20, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, context + stderr[-3000:]
    assert "resuming from step" in stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    stopped = summary["steps"]
    assert summary["status"] == "preempted" and 20 <= stopped < STEPS, context
    assert committed_steps(tmp_path)[-1] == stopped  # saved at the step it stopped
    assert "rerun the same command to resume" in stdout

    result = train(tmp_path)
    assert result.returncode == 0, context + result.stderr[-3000:]
    assert f"resuming from step {stopped}" in result.stdout
    assert_same_state(tmp_path, reference)
    assert_same_metrics(tmp_path, reference)
    # W&B: every restart continued the same run (one id; an offline directory per process, named
    # with the id when the run starts). The two processes that exited wrote their run file; the
    # SIGKILLed one may have died before W&B's writer flushed it.
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    offline_runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 3
    assert all(path.name.endswith(f"-{run_id}") for path in offline_runs), offline_runs
    assert all((path / f"run-{run_id}.wandb").is_file() for path in offline_runs[1:])
    assert json.loads((tmp_path / "summary.json").read_text())["wandb_run_id"] == run_id


def test_a_run_started_by_a_process_that_used_wandb_keeps_its_wandb_log_across_a_kill(tmp_path):
    """A launcher that used W&B (a notebook, a script) leaves its service in WANDB_SERVICE;
    the run starts its own, so the SIGKILLed first process's stream, left open in a shared
    service, cannot swallow the restart's log."""
    workdir = tmp_path / "run"
    launcher = f"""
import os, pathlib, subprocess, sys, time
import wandb
wandb.init(project="launcher", mode="offline", dir={str(tmp_path)!r}).finish()
assert os.environ.get("WANDB_SERVICE"), "W&B no longer exports its service: the test needs one"
command = [sys.executable, "-m", "scaling.train", *{RUN!r}, "--workdir", {str(workdir)!r}]
log = open({str(tmp_path / "first.log")!r}, "w")
first = subprocess.Popen(command, stdout=log, stderr=log)
while not (pathlib.Path({str(workdir)!r}) / "checkpoints" / "{SAVE_EVERY}").exists():
    assert first.poll() is None, "the first process ended before its checkpoint: see first.log"
    time.sleep(0.05)
assert first.poll() is None, "the first process finished before it could be killed"
first.kill()
first.wait()
subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
"""
    run_python(launcher)
    run_id = (workdir / WANDB_ID_FILE).read_text().strip()
    killed, restart = sorted((workdir / "wandb").glob("offline-run-*"))
    assert killed.name.endswith(f"-{run_id}") and restart.name.endswith(f"-{run_id}")
    steps = [row["step"] for row in logged_history(restart / f"run-{run_id}.wandb")]
    # The restart resumed from a checkpoint after step 10 and logged every step to the end.
    assert steps and steps == LOGGED_STEPS[LOGGED_STEPS.index(steps[0]):] and steps[0] > SAVE_EVERY


def test_a_signal_after_the_run_ended_cannot_change_its_exit_code(reference, tmp_path):
    """Once `scaling-train` has its outcome on disk it ignores SIGINT and SIGTERM, so a Ctrl-C
    that reaches a run while it exits cannot turn a completed run into a killed one."""
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    code = f"""
import signal
from scaling.train import main
code = main({RUN + ["--workdir", str(workdir)]!r})
ignored = [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)]
print("RESULT", code, ignored)
"""
    assert "RESULT 0 [True, True]" in run_python(code).stdout


def test_ctrl_c_saves_exits_130_and_the_rerun_matches_the_uninterrupted_run(reference, tmp_path):
    """The first SIGINT saves at the next step and exits 130 with one line, no traceback, status
    `interrupted`; the rerun resumes there and ends bitwise where the uninterrupted run ends."""
    process = start(tmp_path)
    wait_until(lambda: last_logged_step(tmp_path) >= 5, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    stopped = summary["steps"]
    assert summary["status"] == "interrupted" and 5 <= stopped < STEPS
    assert f"interrupted at step {stopped}; rerun to resume" in stdout
    assert committed_steps(tmp_path)[-1] == stopped  # saved at the step it stopped

    result = train(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from step {stopped}" in result.stdout
    assert_same_state(tmp_path, reference)
    assert_same_metrics(tmp_path, reference)


def test_a_second_ctrl_c_exits_at_once_without_saving(monkeypatch, capfd):
    """The handler itself (two signals sent back to back to a process can reach Python as one):
    the first SIGINT asks for a save, the second exits 130 at once (its line written straight to
    the stderr file descriptor, hence capfd)."""
    from scaling import interrupts
    from scaling import train as train_module

    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(interrupts._State, "reported", False)  # this process goes on
    stop = train_module.StopSignal(install=True)
    try:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == "interrupted" and exits == []
        with pytest.raises(SystemExit):
            signal.raise_signal(signal.SIGINT)
        assert exits == [130]
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    err = capfd.readouterr().err
    assert "interrupt: saving at the next step boundary" in err
    assert "interrupted again: exiting without saving" in err


def test_a_second_process_on_a_busy_workdir_is_refused_and_the_first_is_unharmed(tmp_path):
    """One writer per workdir: the second `scaling-train` exits 2 naming the holder's pid and
    host and writes nothing; the first (long enough to still be training) goes on, and stops
    cleanly when preempted, its logs and checkpoints its own."""
    import socket

    long_run = ["--config.train.steps=1500", "--config.train.log_every=100",
                "--config.train.eval_every=500", "--config.checkpoint.every_steps=500"]
    process = start(tmp_path, *long_run)
    wait_until(lambda: last_logged_step(tmp_path) >= 100, process)
    second = train(tmp_path, *long_run)
    assert process.poll() is None, "the first run ended before the second started: not a test"
    assert second.returncode == 2, second.stderr[-3000:]
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("scaling-train: error:") and "in use by" in line, second.stderr
    assert f"pid {process.pid} on host {socket.gethostname()}" in line
    assert "Traceback" not in second.stderr
    refused_at = last_logged_step(tmp_path)
    wait_until(lambda: last_logged_step(tmp_path) > refused_at, process)  # still training
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 75, stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    stopped = summary["steps"]
    assert summary["status"] == "preempted" and refused_at < stopped < 1500, summary
    # One run's log: each logged step once, in order; the checkpoint at the step it stopped.
    assert [record["step"] for record in read_metrics(tmp_path / "metrics.jsonl")] == list(
        range(100, stopped + 1, 100))
    assert committed_steps(tmp_path)[-1] == stopped


@pytest.mark.parametrize("damage", ["the largest array file cut in half",
                                    "every array file cut to 10 bytes"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, damage):
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    data_files = [path for path in (workdir / "checkpoints" / str(STEPS) / "state").rglob("*")
                  if path.is_file() and "/d/" in str(path)]
    largest = max(data_files, key=lambda path: path.stat().st_size)
    sizes = ({largest: largest.stat().st_size // 2} if "half" in damage
             else dict.fromkeys(data_files, 10))
    for path, size in sizes.items():
        with open(path, "r+b") as file:
            file.truncate(size)

    result = train(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint at step {STEPS} is unreadable" in result.stderr
    # Orbax's reads of it, given up, finished into its closed event loop: some sixty tracebacks.
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"resuming from step {STEPS - SAVE_EVERY}" in result.stdout
    assert (workdir / "checkpoints" / f"unreadable-{STEPS}").is_dir()  # kept for inspection
    assert_same_state(workdir, reference)
    assert_same_metrics(workdir, reference)


def test_a_run_killed_before_its_first_summary_is_sampled_and_evaluated_from_its_checkpoint(
        reference, tmp_path, capsys):
    """Each checkpoint records the run's config: the commands that read a run give the same
    samples and held-out loss from the killed copy as from the run itself."""
    from scaling import evaluate, sample

    completed = shutil.copytree(reference, tmp_path / "completed")
    killed = killed_after_last_checkpoint(reference, tmp_path)
    samples, losses = [], []
    for workdir in (completed, killed):
        assert sample.main(["--workdir", str(workdir), "--prompt", "def ", "--max-new-tokens",
                            "24", "--temperature", "0"]) == 0
        samples.append(capsys.readouterr().out)
        assert evaluate.main(["--workdir", str(workdir), "--batches", "2"]) == 0
        capsys.readouterr()
        [record] = (workdir / "eval").iterdir()
        losses.append(json.loads(record.read_text())["loss"])
    assert samples[0].startswith("def ") and samples[1] == samples[0]
    assert np.isfinite(losses[0]) and losses[1] == losses[0]


@pytest.mark.parametrize("remove_summary", [False, True], ids=["completed", "checkpoint"])
def test_a_different_model_is_refused_with_exit_code_2(reference, tmp_path, remove_summary):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    if remove_summary:
        (workdir / "summary.json").unlink()
    before = (workdir / "metrics.jsonl").read_text()
    result = train(workdir, "--config.model.parametrization=mup")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "model.parametrization" in result.stderr and "mup" in result.stderr
    assert (workdir / "metrics.jsonl").read_text() == before
    assert committed_steps(workdir) == [10, 20, 30]


def test_a_completed_run_under_another_optimizer_is_refused_with_exit_code_2(reference, tmp_path):
    # Finished at the same step count: "nothing to do" would pass another run's results off as
    # this config's.
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = (workdir / "summary.json").read_text()
    result = train(workdir, "--config.optim.lr=0.5")
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert "holds a completed run under other settings" in line
    assert "optim.lr: completed run 0.003, config 0.5" in line
    assert (workdir / "summary.json").read_text() == before
    # Which tokens the model's attention sees: "run already completed ...; nothing to do".
    result = train(workdir, "--config.data.document_mask=true")
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert "data.document_mask: completed run False, config True" in line


@pytest.mark.parametrize("steps", [20, 40])
def test_a_completed_run_without_its_checkpoints_is_not_trained_again_to_another_length(
        reference, tmp_path, steps):
    # With checkpoints/ deleted, a rerun of another length trained from scratch over the
    # completed run: exit 0, its metrics cut, its summary another run's.
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints")
    before = {name: (workdir / name).read_text() for name in ("summary.json", "metrics.jsonl")}
    result = train(workdir, f"--config.train.steps={steps}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr == (f"scaling-train: error: {workdir} holds a completed run of {STEPS} "
                             f"steps, the config asks for {steps} (train.steps / train.tokens); "
                             "use a new --workdir or the run's settings\n")
    assert {name: (workdir / name).read_text() for name in before} == before
    assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("completed", [False, True], ids=["checkpoint", "completed"])
def test_a_rerun_under_another_flop_convention_is_refused_with_exit_code_2(reference, tmp_path,
                                                                          completed):
    # Resumed, its metrics.jsonl counted the FLOPs of its first steps in one convention and of
    # the rest in the other.
    workdir = (tmp_path / "run" if completed
               else killed_after_last_checkpoint(reference, tmp_path))
    if completed:
        shutil.copytree(reference, workdir)
    before = (workdir / "metrics.jsonl").read_text()
    result = train(workdir, "--config.train.flop_convention=6N")
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert (f"train.flop_convention: {'completed run ' if completed else ''}'full', config '6N'"
            in line), line
    assert (workdir / "metrics.jsonl").read_text() == before


def test_a_completed_run_rerun_with_its_derived_fields_given_is_the_same_model(reference,
                                                                              tmp_path):
    # 0 means "derive it": a rerun giving the value 0 stood for (d_ff 4·32, one key-value head per
    # head, 32/4 per head) was refused as "another model", where a resume accepted it.
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    again = train(workdir, "--config.model.d_ff=128", "--config.model.num_kv_heads=4",
                  "--config.model.head_dim=8")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-3000:]
    other = train(workdir, "--config.model.d_ff=96")
    assert other.returncode == 2, other.stderr[-3000:]
    assert "(model.d_ff: completed run 128, config 96)" in other.stderr


@pytest.mark.parametrize("override, change", [("--config.seed=7", "seed: 0, config 7"),
                                              ("--config.train.batch_size=16",
                                               "batch_size: 32, config 16")])
def test_a_resume_on_other_batches_is_refused_with_exit_code_2(reference, tmp_path, override,
                                                               change):
    # The run as if killed after its last checkpoint; rerun with another seed or batch size, it
    # would train its remaining steps on batches neither run saw.
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    result = train(workdir, override)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "with other batches (" + change in lines[0], result.stderr
    assert committed_steps(workdir) == [10, 20, 30]


@pytest.mark.parametrize("overrides, change", [
    (["--config.optim.lr=0.5", "--config.optim.schedule=constant"],
     "another optimizer or learning-rate schedule (optim.lr: 0.003, config 0.5; "
     "optim.schedule: 'cosine', config 'constant')"),
    (["--config.optim.warmup_steps=2", "--config.optim.b2=0.99"],
     "another optimizer or learning-rate schedule (optim.b2: 0.95, config 0.99; "
     "optim.warmup_steps: 5, config 2)"),
    (["--config.data.dataset=text_files", "--config.data.files=CORPUS"],
     "other batches (data.dataset: 'python_stdlib', config 'text_files'; data.files: '', "
     "config 'CORPUS')"),
    (["--config.data.train_split=train[:50%]"],
     "other batches (data.train_split: 'train', config 'train[:50%]')"),
    # Without clipping the optimizer's state has another layout: "a different train state (44
    # entries differ, e.g. opt_state/0/count)", naming no setting.
    (["--config.optim.grad_clip=0.0"],
     "another optimizer or learning-rate schedule (optim.grad_clip: 1.0, config 0.0)"),
    # Every field that differs, in one line: the batches' alone were named, and the rerun that
    # mended them was refused again for the learning rate.
    (["--config.train.batch_size=16", "--config.optim.lr=0.5"],
     "other batches (batch_size: 32, config 16) and another optimizer or learning-rate schedule "
     "(optim.lr: 0.003, config 0.5)"),
], ids=["schedule", "optimizer", "dataset", "split", "clip", "both"])
def test_a_resume_under_another_schedule_or_corpus_is_refused_with_exit_code_2(
        reference, tmp_path, overrides, change):
    # The run as if killed after its last checkpoint; rerun under another learning rate or
    # optimizer, its remaining steps would update the restored moments by neither run's plan, and
    # on another corpus or split train on batches neither run saw.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(random.Random(line).choices(["alpha", "beta", "gamma"],
                                                                       k=12))
                                for line in range(4000)))
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    before = (workdir / "metrics.jsonl").read_text()
    result = train(workdir, *(item.replace("CORPUS", str(corpus)) for item in overrides))
    assert result.returncode == 2, result.stderr[-3000:]
    # One line, after what preparing a new corpus logs.
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("scaling-train: error: the workdir's checkpoint belongs to a run with "
                           + change.replace("CORPUS", str(corpus))), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert (workdir / "metrics.jsonl").read_text() == before
    assert committed_steps(workdir) == [10, 20, 30]


@pytest.mark.parametrize("field, value", [("train.mask_fraction", 0.3), ("data.target_len", 64)])
def test_a_resume_with_a_field_its_objective_does_not_read_changed_continues(reference, tmp_path,
                                                                            field, value):
    # A causal_lm run reads no mask fraction nor seq2seq target length, so changing either
    # changes none of its batches: the resumed run ends exactly where the uninterrupted one did.
    # (Changed in a config file: as an override, a field the run does not read is refused.)
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    config = tmp_path / "unread.py"
    config.write_text("from configs.demo import get_config as demo\n\n\ndef get_config():\n"
                      f"    config = demo('runlocal')\n    config.{field} = {value!r}\n"
                      "    return config\n")
    result = train(workdir, config=str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((workdir / "summary.json").read_text())
    uninterrupted = json.loads((reference / "summary.json").read_text())
    assert resumed["final_eval_loss"] == uninterrupted["final_eval_loss"]


@pytest.mark.parametrize("override", ["--config.model.remat=full", "--config.model.scan_unroll=1"])
def test_a_run_resumes_and_completes_under_another_remat_or_layer_loop(reference, tmp_path,
                                                                      override):
    # Running out of memory advises model.remat=full, which the resume then refused as "a
    # different model": the same parameters and mathematics, computed another way.
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    shutil.rmtree(workdir / "checkpoints" / "30")  # resume from step 20: steps left to train
    result = train(workdir, override)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from step 20" in result.stdout
    resumed = json.loads((workdir / "summary.json").read_text())
    uninterrupted = json.loads((reference / "summary.json").read_text())
    assert resumed["final_eval_loss"] == pytest.approx(uninterrupted["final_eval_loss"], rel=1e-4)
    completed = tmp_path / "completed"  # the uninterrupted run, completed without the override
    shutil.copytree(reference, completed)
    again = train(completed, override)  # "holds a completed run of another model" before
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-3000:]


def test_a_resumed_runs_wall_time_adds_up_its_attempts(reference, tmp_path):
    # An earlier attempt stopped at step 20 after 1,000 s, as its summary says; the rerun's summary
    # (and results.csv's column) gave only the rerun's own seconds.
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    shutil.rmtree(workdir / "checkpoints" / "30")
    earlier = {**json.loads((reference / "summary.json").read_text()), "status": "preempted",
               "steps": 20, "wall_seconds": 1000.0}
    (workdir / "summary.json").write_text(json.dumps(earlier))
    started = time.monotonic()
    result = train(workdir)
    took = time.monotonic() - started
    assert result.returncode == 0 and "resuming from step 20" in result.stdout, result.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert 1000.0 < summary["wall_seconds"] < 1000.0 + took


def test_batch_fields_hold_the_objective_and_only_the_fields_it_reads():
    from scaling.trainer import batch_fields

    config = {"train": {"mask_fraction": 0.3, "noise_density": 0.2, "mean_span_length": 4.0},
              "data": {"source_feature": "", "target_feature": "", "target_len": 64}}
    objective_fields = {"train.objective", "train.mask_fraction", "train.noise_density",
                        "train.mean_span_length", "data.source_feature", "data.target_feature",
                        "data.target_len"}
    by_objective = {}
    for objective in ("causal_lm", "masked_lm", "span_corruption", "seq2seq"):
        fields = batch_fields({**config, "train": {**config["train"], "objective": objective}})
        by_objective[objective] = set(fields) & objective_fields
    assert by_objective == {
        "causal_lm": {"train.objective"},
        "masked_lm": {"train.objective", "train.mask_fraction"},
        "span_corruption": {"train.objective", "train.noise_density", "train.mean_span_length"},
        "seq2seq": {"train.objective", "data.source_feature", "data.target_feature",
                    "data.target_len"}}


def test_a_checkpoint_that_predates_the_recorded_plan_still_resumes(reference, tmp_path):
    """A checkpoint written before its record named the optimizer and the corpus: those are
    unknown, not different, so the rerun resumes (here at its last step, and completes)."""
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    record = workdir / "checkpoints" / str(STEPS) / "meta" / "metadata"
    meta = json.loads(record.read_text())
    assert "optim.lr" in meta and "data.dataset" in meta
    record.write_text(json.dumps({name: value for name, value in meta.items() if "." not in name}))
    result = train(workdir, "--config.optim.lr=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from step {STEPS}" in result.stdout
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed"
    # It trained no step here: its speed is the median its earlier attempt logged (it was null).
    logged = [json.loads(line)["tokens_per_second"]
              for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert summary["tokens_per_second"] == pytest.approx(float(np.median(
        [speed for speed in logged if speed])))
    assert summary["mfu"] > 0


MESH_RESTORE = """
import json, sys
import jax, numpy as np
from scaling import data, parallel
from scaling.checkpoint import Checkpointer
from scaling.config import model_config
from scaling.overrides import apply_overrides, load_config
from scaling.step import build_program
from scaling.train import main

workdir, overrides = WORKDIR, OVERRIDES
saved = np.load(SAVED)
for mesh in [(2, 2, 1), (2, 1, 2)]:
    config = load_config("configs/demo.py:runlocal")
    apply_overrides(config, overrides + [f"mesh.data={mesh[0]}", f"mesh.fsdp={mesh[1]}",
                                         f"mesh.tensor={mesh[2]}"])
    loader = data.make_loader(config.data, batch_size=32, seed=config.seed)
    model = model_config(config, loader.vocab_size)
    loader.close()
    program = build_program(config, model, config.train.steps, parallel.make_mesh(config.mesh))
    checkpointer = Checkpointer(workdir, keep=3)
    with program.context():
        state, meta = checkpointer.restore_latest(program.abstract_state, model)
    checkpointer.close()
    assert meta["step"] == 20
    leaves = {entry_names(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state)}
    assert sorted(leaves) == sorted(saved.files)
    for name, leaf in leaves.items():
        assert np.array_equal(np.asarray(leaf), saved[name]), name
    meshes = {tuple(leaf.sharding.mesh.shape.items()) for leaf in jax.tree.leaves(state)}
    assert meshes == {(("data", mesh[0]), ("fsdp", mesh[1]), ("tensor", mesh[2]))}, meshes
sys.exit(main(["--config", "configs/demo.py:runlocal", "--workdir", workdir,
               *("--config." + item for item in overrides), "--config.mesh.data=2",
               "--config.mesh.fsdp=2"]))
"""


def test_checkpoint_from_one_device_restores_on_four_and_continues(reference, tmp_path):
    # The run as if it had stopped after its step-20 checkpoint: resumed on 4 devices, it finishes.
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(STEPS))
    (workdir / "summary.json").unlink()
    saved = tmp_path / "saved.npz"
    np.savez(saved, **restored_state(reference, STEPS - SAVE_EVERY))
    overrides = list(OVERRIDES)
    run_python(inspect.getsource(entry_names) + MESH_RESTORE.replace("WORKDIR", repr(str(workdir))).replace(
        "OVERRIDES", repr(overrides)).replace("SAVED", repr(str(saved))), devices=4)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert summary["devices"] == 4 and summary["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}
    records = read_metrics(workdir / "metrics.jsonl")
    assert [record["step"] for record in records] == LOGGED_STEPS
    assert all(np.isfinite(record["train_loss"]) for record in records)


def test_a_resume_on_an_edited_corpus_is_refused_and_one_rewritten_as_it_was_continues(
        tmp_path):
    # data.files names files whose content can change between attempts: the run resumed on the
    # edited corpus ("resuming from step 54") and matched neither.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "".join(f"def function_{i}(a, b):\n    return a * {i} + b\n\n" for i in range(400))
    (corpus / "module.py").write_text(text)
    workdir = tmp_path / "run"
    files = ["--config.data.dataset=text_files", f"--config.data.files={corpus}",
             f"--config.data.cache_dir={tmp_path / 'cache'}"]
    first = train(workdir, *files)
    assert first.returncode == 0, first.stderr[-3000:]
    (workdir / "summary.json").unlink()  # killed after its last save: it resumes at step 30
    (corpus / "module.py").write_text(text)  # the same text written again: a new mtime
    again = train(workdir, *files)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 30" in again.stdout
    (workdir / "summary.json").unlink()
    (corpus / "module.py").write_text(text + "def extra():\n    pass\n")
    edited = train(workdir, *files)
    assert edited.returncode == 2, edited.stderr[-3000:]
    line = edited.stderr.strip().splitlines()[-1]
    assert line.startswith("scaling-train: error: the workdir's checkpoint belongs to a run on "
                           "another corpus (data.corpus: '"), line
    assert line.endswith(": its training split is not this one, by a file added, removed or "
                         "edited, or a file chosen otherwise); use a new --workdir or the run's "
                         "settings")


def test_a_resume_on_another_held_out_split_is_refused(tmp_path):
    # Another data.eval_split, or an edited validation file, resumed with exit 0, and
    # metrics.jsonl held the eval losses of two held-out sets.
    from scaling.data import text_files

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index in range(12):
        (corpus / f"m{index}.py").write_text(
            "".join(f"def f_{index}_{i}(a):\n    return a * {i}\n\n" for i in range(60)))
    workdir = tmp_path / "run"
    files = ["--config.data.dataset=text_files", f"--config.data.files={corpus}",
             f"--config.data.cache_dir={tmp_path / 'cache'}"]
    first = train(workdir, *files)
    assert first.returncode == 0, first.stderr[-3000:]
    (workdir / "summary.json").unlink()  # killed after its last save: it would resume at step 30
    other_split = train(workdir, *files, "--config.data.eval_split=validation[:50%]")
    assert other_split.returncode == 2, other_split.stderr[-3000:]
    assert other_split.stderr.strip().splitlines()[-1] == (
        "scaling-train: error: the workdir's checkpoint belongs to a run evaluated on another "
        "held-out split (data.eval_split: 'validation', config 'validation[:50%]'); use a new "
        "--workdir or the run's settings")
    [held_out, *_] = text_files.assign_splits(text_files.expand_files([str(corpus)]))["validation"]
    held_out.write_text(held_out.read_text() + "def extra():\n    pass\n")
    edited = train(workdir, *files)
    assert edited.returncode == 2, edited.stderr[-3000:]
    line = edited.stderr.strip().splitlines()[-1]
    assert line.startswith("scaling-train: error: the workdir's checkpoint belongs to a run "
                           "evaluated on another held-out split (data.held_out: '"), line
    assert line.endswith(": by a file added, removed or edited); use a new --workdir or the run's "
                         "settings"), line


def test_a_full_disk_ends_the_run_in_one_line(tmp_path):
    """The first checkpoint does not fit on a 2 MB file system: Orbax logged each of its save
    threads' errors with a traceback (some 900 lines), the run ended in a traceback of its own
    and then in "Exception ignored" ones as the interpreter shut down."""
    with small_disk(tmp_path / "disk", "2m") as disk:
        result = train(disk / "run", "--config.model.d_model=128")
        summary = json.loads((disk / "run" / "summary.json").read_text())
    assert result.returncode == 1, result.stderr[-3000:]
    assert "ERROR:absl" not in result.stderr and "Exception ignored" not in result.stderr, \
        result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        "scaling-train: error: the run failed on a file or connection (OSError: No space left on "
        f"device: {disk / 'run' / 'checkpoints'})")
    assert summary["status"] == "failed"


def test_a_full_disk_under_the_token_cache_is_named_in_the_line(tmp_path):
    # "the run failed on a file or connection (OSError: No space left on device)": which disk?
    with small_disk(tmp_path / "disk", "6m") as disk:
        result = train(tmp_path / "run", f"--config.data.cache_dir={disk}")
    assert result.returncode == 1, result.stderr[-3000:]
    line = result.stderr.splitlines()[-1]
    assert line.startswith("scaling-train: error: the run failed on a file or connection "
                           "(OSError: No space left on device: the token cache of "
                           "python_stdlib/"), line
    assert f"is built in {disk / 'tokens'}/python_stdlib_" in line, line


def test_a_checkpoint_the_file_system_refuses_ends_the_run_in_one_line(reference, tmp_path):
    """A checkpoints folder that turned read-only: the asynchronous save of step 20 fails in
    Orbax's background threads. The run said "run failed", printed a traceback, and then never
    exited: the interpreter waited for Orbax's threads, which wait for each other forever."""
    workdir = killed_after_last_checkpoint(reference, tmp_path)
    for step in (20, 30):
        shutil.rmtree(workdir / "checkpoints" / str(step))
    folder = workdir / "checkpoints"
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a read-only bind mount (mount, as root): "
                    + mounted.stderr.decode().strip())
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        result = train(workdir)  # it hung here, until the helper's timeout
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("scaling-train: ")]
    assert errors == [f"scaling-train: error: the run failed on a file or connection (OSError: "
                      f"Read-only file system: {folder}/20.orbax-checkpoint-tmp)"], errors
    assert "run failed at step 30; rerun the same command to resume from its last checkpoint" \
        in result.stdout
    assert json.loads((workdir / "summary.json").read_text())["status"] == "failed"
    assert committed_steps(workdir) == [10]


def call_plan(steps_per_call: int, total: int, *, log_every: int, eval_every: int,
              save_every: int, branch_steps: tuple = ()) -> list[tuple[int, int]]:
    """The (first step, steps) of each call a run makes from step 0, by `Trainer._chunk_starts`."""
    import types

    import ml_collections

    from scaling.trainer import Trainer

    config = ml_collections.ConfigDict({
        "train": {"steps_per_call": steps_per_call, "log_every": log_every,
                  "eval_every": eval_every, "branch_steps": branch_steps},
        "checkpoint": {"every_steps": save_every}})
    trainer = types.SimpleNamespace(config=config, total_steps=total,
                                    stable=object() if branch_steps else None)
    trainer._scheduled = lambda count: Trainer._scheduled(trainer, count)
    calls, count = [], 0
    while count < total:
        steps = steps_per_call if Trainer._chunk_starts(trainer, count) else 1
        calls.append((count, steps))
        count += steps
    return calls


def test_several_steps_run_in_one_call_only_between_boundaries():
    # RUN's boundaries (logs every 5, evals every 15, saves every 10, the last step 30) at 4 steps
    # a call: 0–4, 16–20 and 20–24 have none before their last step, and start at multiples of 4.
    calls = call_plan(4, STEPS, log_every=LOG_EVERY, eval_every=EVAL_EVERY, save_every=SAVE_EVERY)
    assert [call for call in calls if call[1] > 1] == [(0, 4), (16, 4), (20, 4)]
    assert sum(steps for _, steps in calls) == STEPS and len(calls) == STEPS - 3 * 3
    # The demo's shape: logs every 25, a branch's stable state at 879: 875–879 step singly.
    calls = call_plan(25, 1000, log_every=25, eval_every=1000, save_every=200, branch_steps=(879,))
    singles = [first for first, steps in calls if steps == 1]
    assert singles == [875, 876, 877, 878, 879, 880, 881, 882, 883, 884, 885, 886, 887, 888, 889,
                       890, 891, 892, 893, 894, 895, 896, 897, 898, 899]
    assert len(calls) == 39 + len(singles)
    # One step a call: the plan is every step.
    assert call_plan(1, 7, log_every=2, eval_every=3, save_every=0) == [(k, 1) for k in range(7)]


def test_each_step_of_a_call_is_reported_to_the_preemption_service_in_order():
    """JAX's service stops every process at the step after the highest any has reported (Orbax
    reports each save's step): a call of 25 steps ending at 75 reports 51, 52, ... and ends the
    run when the agreed step lies inside it."""
    import types

    from scaling.trainer import Trainer

    reported = []

    def reached_preemption(step: int) -> bool:  # the service, agreed on step 60
        reported.append(step)
        return step == 60

    trainer = types.SimpleNamespace(
        checkpointer=types.SimpleNamespace(reached_preemption=reached_preemption))
    assert not Trainer._preemption_reached(trainer, 50, 25)
    assert reported == list(range(26, 51))
    reported.clear()
    assert Trainer._preemption_reached(trainer, 75, 25)
    assert reported == list(range(51, 61))
    reported.clear()
    assert not Trainer._preemption_reached(trainer, 59, 1) and reported == [59]


def test_several_steps_per_call_train_the_same_run_and_resume_where_interrupted(reference,
                                                                               tmp_path):
    """Four steps a call (`call_plan`): on CPU the same run bit for bit, and a Ctrl-C (at
    whatever call it lands) and a rerun end where the uninterrupted run of one step a call ends."""
    process = start(tmp_path, "--config.train.steps_per_call=4")
    wait_until(lambda: last_logged_step(tmp_path) >= 5, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    stopped = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert 5 <= stopped < STEPS and committed_steps(tmp_path)[-1] == stopped

    result = train(tmp_path, "--config.train.steps_per_call=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from step {stopped}" in result.stdout
    assert_same_state(tmp_path, reference)
    assert_same_metrics(tmp_path, reference)

"""`scaling-sweep` end to end with real `scaling-train` subprocesses: results.csv, resuming a
killed sweep, isolating a failed run, and the plan table."""

import concurrent.futures
import csv
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from launch import plans, results
from launch import sweep as sweep_module
from scaling import files, status
from scaling.errors import ConfigError
from scaling.overrides import load_config
from conftest import run_in_process, write_sweep_config

TINY = dict(name="tiny", base_config="configs/demo.py:runlocal",
            sizes="d32-L1,d48-L2,d64-L2,d96-L3", plan="steps", min_steps=1, processes=2,
            overrides={"train": {"log_every": 2, "eval_every": 4, "batch_size": 8},
                       "data": {"seq_len": 32}, "optim": {"warmup_steps": 2},
                       "checkpoint": {"every_steps": 4}})


# The planning time on this machine of a step or a held-out batch beyond its FLOPs, as measured
# (hardware.py).
STEP_SECONDS = 0.004


def _write_sweep(tmp_path, steps=8, size_overrides=None):
    return write_sweep_config(tmp_path / "tiny_sweep.py", **TINY, steps=steps,
                              size_overrides=size_overrides or {})


def _sweep(repo, config, workdir, *extra, **kwargs):
    return subprocess.run([sys.executable, "-m", "launch.sweep", "--config", str(config),
                           "--workdir", str(workdir), *extra], cwd=repo, capture_output=True,
                          text=True, **kwargs)


def _sweep_here(capsys, config, workdir, *extra):
    """`scaling-sweep` in this process: its exit code, stdout and stderr."""
    return run_in_process(sweep_module.main, ["--config", str(config), "--workdir", str(workdir),
                                              *extra], capsys, "scaling-sweep")


def _rows(workdir):
    with open(workdir / "results.csv", newline="") as file:
        return {row["name"]: row for row in csv.DictReader(file)}


def cannot_resume(workdir, run: str, why: str) -> str:
    """The sweep's one line (with its newline) refusing a started `run` that cannot resume."""
    return (f"scaling-sweep: error: --workdir='{workdir}' is not allowed: run {run} cannot "
            f"resume: {why}; use a new --workdir, or delete {workdir / 'runs' / run} to train it "
            "from the start\n")


def _expand(sweep, path):
    return plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))


def test_plan_names_and_budgets(tmp_path):
    path = _write_sweep(tmp_path)
    sweep = load_config(str(path))
    runs = _expand(sweep, path)
    assert [run.name for run in runs] == ["tiny-d32-L1", "tiny-d48-L2", "tiny-d64-L2", "tiny-d96-L3"]
    assert all(run.tokens == 8 * 8 * 32 for run in runs)
    assert runs[0].overrides["model.d_model"] == 32 and runs[3].overrides["model.num_layers"] == 3
    sweep.plan, sweep.isoflop_budgets = "isoflop", (1e11, 3e11)
    iso = _expand(sweep, path)
    # Named by the sweep, the size and the budget (they were isoflop-C<budget>-N<params>: two
    # sweeps shared names, and sizes whose N agree to two digits, one name).
    assert {run.name.rsplit("-C", 1)[1] for run in iso} == {"1e11", "3e11"}
    assert all(run.name in (f"tiny-{run.size}-C1e11", f"tiny-{run.size}-C3e11") for run in iso)
    for run in iso:  # D = C / FLOPs-per-token, rounded to whole steps
        budget = float(run.name.rsplit("-C", 1)[1])
        assert run.flops == pytest.approx(budget, rel=0.5 / run.steps + 1e-9)


def test_dry_run_prints_the_plan(repo, tmp_path):
    result = _sweep(repo, _write_sweep(tmp_path), tmp_path / "w", "--dry-run", timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("tiny-d32-L1", "tiny-d96-L3", "N (non-emb)", "est. time"):
        assert name in result.stdout
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_sweep_end_to_end_resume_and_failure(repo, tmp_path):
    # A mesh the machine cannot make passes validation and fails when the run starts.
    config = _write_sweep(tmp_path, size_overrides={"d48-L2": {"mesh": {"data": 3}}})
    workdir = tmp_path / "sweep"
    # Start the sweep, kill it once the first run has finished, then rerun.
    process = subprocess.Popen([sys.executable, "-m", "launch.sweep", "--config", str(config),
                                "--workdir", str(workdir), "--processes", "1"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.time() + 300
    first_done = None
    while time.time() < deadline:
        summaries = list((workdir / "runs").glob("*/summary.json")) if workdir.exists() else []
        completed = [s for s in summaries if json.loads(s.read_text()).get("status") == "completed"]
        if completed:
            first_done = completed[0].parent.name
            break
        time.sleep(0.5)
    assert first_done, "no run completed in time"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first_summary = (workdir / "runs" / first_done / "summary.json").read_text()

    result = _sweep(repo, config, workdir, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr  # one run failed
    assert "1 already finished" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "sweep ended with 1 run(s) failed: results.csv has their status and error")
    # It failed as it started and will on every rerun: said apart from the failures a rerun mends.
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-sweep: run tiny-d48-L2 refused the settings the sweep gave it (scaling-train: "
        "error: config.mesh={'data': 3, 'fsdp': 1, 'tensor': 1} is not allowed: data × fsdp × "
        "tensor = 3 must equal the device count 1 (use -1 on one axis for 'the rest')); change "
        "them and rerun")
    rows = _rows(workdir)
    assert set(rows) == {"tiny-d32-L1", "tiny-d48-L2", "tiny-d64-L2", "tiny-d96-L3"}
    assert rows["tiny-d48-L2"]["status"] == "failed"
    assert "config.mesh" in rows["tiny-d48-L2"]["error"]
    for name in ("tiny-d32-L1", "tiny-d64-L2", "tiny-d96-L3"):
        row = rows[name]
        assert row["status"] == "completed", row
        assert int(row["tokens"]) == 8 * 8 * 32
        assert float(row["final_eval_loss"]) < 5.6  # below the uniform 257-way loss, ln 257 = 5.55
    # The run finished before the kill was not trained again: its summary is untouched.
    assert (workdir / "runs" / first_done / "summary.json").read_text() == first_summary
    # Curves hold every logged step of every completed run.
    with open(workdir / "curves.csv", newline="") as file:
        curves = list(csv.DictReader(file))
    for name in ("tiny-d32-L1", "tiny-d64-L2", "tiny-d96-L3"):
        assert [int(r["step"]) for r in curves if r["name"] == name] == [2, 4, 6, 8]

    # A third invocation trains nothing new.
    again = _sweep(repo, config, workdir, timeout=300)
    assert "3 already finished" in again.stdout

    # --only restricts what trains, never what the table holds.
    only = _sweep(repo, config, workdir, "--only", "tiny-d32-L1", timeout=300)
    assert set(_rows(workdir)) == set(rows), only.stdout + only.stderr
    # (A changed plan over a finished run: test_a_run_that_cannot_resume_under_the_changed_plan_...)


def test_a_bad_run_config_is_refused_before_any_run_naming_run_and_field(tmp_path, capsys):
    config = _write_sweep(tmp_path, size_overrides={"d48-L2": {"optim": {"lr": -1.0}}})
    result = _sweep_here(capsys, config, tmp_path / "w")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "config.optim.lr=-1.0" in result.stderr and "tiny-d48-L2" in result.stderr
    assert not (tmp_path / "w").exists()


def test_dry_run_estimates_for_the_target_accelerator(tmp_path, capsys):
    """The study's time on a v5e-16 slice: its study FLOPs and its evaluations' over 16 chips ×
    197 TFLOP/s at 40%, the runs one after another (each spans the slice)."""
    config = _write_sweep(tmp_path)
    # A batch of 8 rows cannot be split over the slice's 16 chips.
    refused = _sweep_here(capsys, config, tmp_path / "w", "--dry-run", "--accelerator",
                          "v5litepod-16")
    assert refused.returncode == 2 and "a multiple of mesh data × fsdp = 16 × 1" in refused.stderr
    batch = "--config.overrides.train.batch_size=16"
    result = _sweep_here(capsys, config, tmp_path / "w", "--dry-run", "--accelerator",
                         "v5litepod-16", batch)
    assert result.returncode == 0, result.stderr
    # The slice's 4 hosts each feed rows of their own: data × fsdp = 2 leaves them no share.
    hosts = _sweep_here(capsys, config, tmp_path / "w", "--dry-run", "--accelerator",
                        "v5litepod-16", batch, "--config.overrides.mesh.data=2",
                        "--config.overrides.mesh.tensor=8",
                        "--config.size_overrides.d32-L1.model.num_heads=8",
                        "--config.size_overrides.d48-L2.model.num_heads=8")
    assert hosts.returncode == 2 and "a multiple of 4" in hosts.stderr, hosts.stderr
    runs = sweep_module.load_plan(str(config), [batch.removeprefix("--config.")])[2]
    # In PaLM's count, each run whole (no branches). Each run of 8 steps evaluates one batch
    # (eval_batches=1) at step 4 and one at step 8: two steps' tokens at a third of a training
    # token's FLOPs. Nothing is added per step there.
    seconds = sum(run.mfu_flops for run in runs) * (1 + 2 / 8 / 3) / (0.4 * 16 * 197e12)
    assert (f"about {seconds:.2g} s on v5litepod-16 (16 chips at 40% MFU of the float32 peak; "
            "FLOPs only, no time per step), one run at a time" in result.stdout)
    bad = _sweep_here(capsys, config, tmp_path / "w", "--dry-run", "--accelerator", "v9-1")
    assert bad.returncode == 2 and bad.stderr.startswith(
        "scaling-sweep: error: --accelerator='v9-1' is not allowed: a Cloud TPU type")
    # Without --dry-run it was ignored, and the sweep trained here.
    here = _sweep_here(capsys, config, tmp_path / "w", "--accelerator", "v5litepod-16")
    assert (here.returncode, here.stderr) == (2, (
        "scaling-sweep: error: --accelerator='v5litepod-16' is not allowed without --dry-run (it "
        "estimates the plan's time there; the runs train on this machine)\n"))
    assert not (tmp_path / "w").exists()


def test_only_with_an_unknown_run_is_refused(tmp_path, capsys):
    result = _sweep_here(capsys, _write_sweep(tmp_path), tmp_path / "w", "--only", "nope",
                         "--dry-run")
    assert result.returncode == 2 and "nope" in result.stderr and "tiny-d32-L1" in result.stderr


@pytest.mark.parametrize("only, message", [
    # "--only : not in the plan (...)", naming an empty run.
    (",", "--only=',' is not allowed: comma-separated run names"),
    # The branch alone was listed, then failed at once in a real run ("parent run ... did not
    # complete; rerun the sweep"), and again at every rerun.
    ("tiny-d32-L1-D2e3", "--only='tiny-d32-L1-D2e3' is not allowed: run names with the parent of "
                         "each branch not yet finished (add tiny-d32-L1-D4.1e3: tiny-d32-L1-D2e3 "
                         "starts from its step 6)"),
])
def test_only_of_no_run_or_of_a_branch_without_its_parent_is_refused(tmp_path, capsys, only,
                                                                      message):
    path = write_sweep_config(tmp_path / "ladder.py", **{**TINY, "sizes": "d32-L1",
                                                         "plan": "ladder"},
                              ladder_tokens=(256 * 8, 256 * 16))
    args = ["--config", str(path), "--workdir", str(tmp_path / "w"), "--dry-run", "--only", only]
    assert sweep_module.main(args) == 2
    assert capsys.readouterr().err == f"scaling-sweep: error: {message}\n"
    if "," in only:
        return
    # Once the parent has finished there (its stable state saved where the branch starts), the
    # branch alone is what a rerun trains.
    _, base_config, runs = sweep_module.load_plan(str(path), [])
    parent = next(run for run in runs if run.name == "tiny-d32-L1-D4.1e3")
    _finish_as_trained(tmp_path / "w", parent, base_config)
    (tmp_path / "w" / "runs" / parent.name / "stable" / "6").mkdir(parents=True)
    assert sweep_module.main(args) == 0, capsys.readouterr().err
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:-1]] == [only]


def test_mup_transfer_plan_sets_the_parametrization(tmp_path):
    path = _write_sweep(tmp_path)
    sweep = load_config(str(path))
    sweep.hparams, sweep.overrides.optim.lr = "mup_transfer", 0.01
    runs = _expand(sweep, path)
    assert {run.overrides["model.parametrization"] for run in runs} == {"mup"}
    assert {run.overrides["model.mup_base_width"] for run in runs} == {32}  # the smallest width
    assert {run.overrides["optim.lr"] for run in runs} == {0.01}


def _wait_for(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.time() < deadline, "condition not reached in time"
        time.sleep(0.2)


def _logged_steps(workdir, name):
    path = workdir / "runs" / name / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_sweep_whose_terminal_is_gone_trains_on_and_logs_to_its_workdir(repo, tmp_path):
    # The ssh session that started a sweep on a TPU host ends: its stdout pipe closes. The sweep
    # died at its next line (BrokenPipeError); it now finishes every run, and what it printed
    # is in WORKDIR/sweep.log.
    config = _write_sweep(tmp_path)
    workdir = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "launch.sweep", "--config", str(config),
                                "--workdir", str(workdir), "--status-every", "1"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    assert first.startswith("sweep tiny: 4 runs"), first
    process.stdout.close()  # the terminal is gone
    process.stderr.close()
    assert process.wait(timeout=600) == 0
    assert {row["status"] for row in _rows(workdir).values()} == {"completed"}
    log = (workdir / "sweep.log").read_text()
    assert log.startswith(first) and "[4/4] " in log and f"results: {workdir / 'results.csv'}" in log


# A run that writes its process group, then each signal it receives, a second after the first.
_COUNTING_RUN = """
import os, signal, sys, time
seen = []
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, lambda signum, frame: seen.append(signal.Signals(signum).name))
print("group", os.getpgrp(), flush=True)
while not seen:
    time.sleep(0.05)
time.sleep(1.0)
print("received", ",".join(seen), flush=True)
"""

# A sweep's handlers and one run started as the sweep starts its runs; SIGHUP as a terminal
# leaves it (not ignored, as under `nohup`), unless argv[3] says "nohup".
_SWEEP_WITH_ONE_RUN = """
import signal, sys
from launch import sweep
nohup = sys.argv[3:] == ["nohup"]
signal.signal(signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL)
with sweep.CHILDREN.handling(), open(sys.argv[1], "ab") as log:
    sweep.CHILDREN.start([sys.executable, "-c", sys.argv[2]], log).wait()
"""


@pytest.mark.parametrize("sent, received", [("SIGINT", "SIGINT"), ("SIGTERM", "SIGTERM"),
                                            ("SIGHUP", "SIGTERM"), ("SIGHUP under nohup", "")])
def test_a_signal_to_the_sweeps_process_group_reaches_each_run_once(repo, tmp_path, sent,
                                                                     received):
    # A Ctrl-C at the terminal, `kill -INT -- -PGID` and `timeout -s INT` signal the whole group.
    # The runs shared the sweep's group, and without a terminal the sweep also passed the SIGINT
    # on: each run saw two, the second of which made it exit without saving. A SIGHUP (the
    # terminal closed) killed the runs unsaved; it now stops them as a SIGTERM does.
    log, nohup = tmp_path / "run.log", sent.endswith("nohup")
    sweep = subprocess.Popen([sys.executable, "-c", _SWEEP_WITH_ONE_RUN, str(log), _COUNTING_RUN,
                              *(["nohup"] if nohup else [])],
                             cwd=repo, start_new_session=True)  # its own group, no terminal
    _wait_for(lambda: log.is_file() and "group" in log.read_text(), sweep, timeout=120)
    # Not the sweep's group (which start_new_session numbered by its pid): a signal to that
    # group reaches the run only through the sweep. Two deliveries of one signal can merge into
    # one, so counting alone would not show that.
    assert log.read_text().split()[:2] != ["group", str(sweep.pid)]
    os.killpg(sweep.pid, getattr(signal, sent.split()[0]))
    if nohup:  # ignored, so never passed on: the runs train on
        time.sleep(2)
        assert sweep.poll() is None and "received" not in log.read_text()
        os.killpg(sweep.pid, signal.SIGTERM)
        received = "SIGTERM"
    assert sweep.wait(timeout=60) == 0
    assert log.read_text().splitlines()[-1] == f"received {received}"


def test_a_stop_while_a_run_starts_reaches_that_run(tmp_path, monkeypatch):
    """The handler runs in the thread that may be starting a run, holding the children's lock:
    that deadlocked the sweep. Now the run is started, and the stop passed on to it too."""
    real_popen = subprocess.Popen

    def stopped_while_starting(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        sweep_module.CHILDREN.interrupt_all()  # as a Ctrl-C handled at this moment would
        return process

    monkeypatch.setattr(subprocess, "Popen", stopped_while_starting)
    started = []
    with sweep_module.CHILDREN.handling(), open(tmp_path / "run.log", "ab") as log:
        starting = threading.Thread(target=lambda: started.append(sweep_module.CHILDREN.start(
            [sys.executable, "-c", "import time; time.sleep(60)"], log)), daemon=True)
        starting.start()
        starting.join(timeout=20)
        assert started, "the sweep deadlocked starting a run"
        assert started[0].wait(timeout=20) != 0  # interrupted, not slept out
        sweep_module.CHILDREN.finished(started[0])
        assert sweep_module.CHILDREN.start([sys.executable, "-c", "pass"], log) is None


def test_a_run_dies_with_its_sweep(repo, tmp_path):
    # Runs sit in process groups of their own, so a SIGKILL to the sweep's group reaches the
    # sweep alone; the runs must not train on as orphans (a rerun would find them busy).
    log = tmp_path / "run.log"
    run = ("import os, time\nfrom scaling import interrupts\ninterrupts.die_with_sweep()\n"
           "print('pid', os.getpid(), os.environ.get(interrupts.SWEEP_PID), flush=True)\n"
           "time.sleep(120)")
    sweep = subprocess.Popen([sys.executable, "-c", _SWEEP_WITH_ONE_RUN, str(log), run],
                             cwd=repo, start_new_session=True)
    _wait_for(lambda: log.is_file() and "pid" in log.read_text(), sweep, timeout=120)
    _, pid, inherited = log.read_text().split()
    assert inherited == "None"  # what the run starts is not tied to the sweep
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.time() + 30
    while pathlib.Path(f"/proc/{pid}").exists():  # reaped by init once killed
        assert time.time() < deadline, "the run outlived its sweep"
        time.sleep(0.1)


@pytest.mark.slow
def test_ctrl_c_leaves_the_rows_resumable_and_a_second_sweep_is_refused(repo, tmp_path):
    """A second sweep on a busy workdir exits 2 naming the first; a SIGINT to the sweep reaches
    its runs, which save and stop: rows `interrupted` (running) and `pending` (not started), none
    `failed`, no traceback in any train.log; the rerun finishes them, resuming the interrupted."""
    import socket

    # Long enough that neither of the first two runs can finish before the other has started
    # (under the suite's load a run's start-up can lag the other's by tens of seconds; 300 steps
    # took 6 s alone); no
    # periodic evaluation or checkpoint to pay for: the SIGINT saves where each run stops.
    steps = 3000
    overrides = {**TINY["overrides"], "train": {**TINY["overrides"]["train"], "eval_every": steps},
                 "checkpoint": {"every_steps": 0}}
    config = write_sweep_config(tmp_path / "tiny_sweep.py", **{
        **TINY, "sizes": "d32-L1,d48-L2,d64-L2", "overrides": overrides}, steps=steps)
    workdir = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "launch.sweep", "--config", str(config),
                                "--workdir", str(workdir), "--status-every", "1"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # no terminal: the sweep passes SIGINT on
    lock = workdir / files.WORKDIR_LOCK
    _wait_for(lambda: lock.is_file() and lock.read_text().strip(), process)  # the sweep holds it
    second = _sweep(repo, config, workdir, timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"in use by pid {process.pid} on host {socket.gethostname()} (scaling-sweep" \
        in second.stderr
    assert "Traceback" not in second.stderr

    names = ("tiny-d32-L1", "tiny-d48-L2", "tiny-d64-L2")
    _wait_for(lambda: sum(_logged_steps(workdir, name) >= 2 for name in names) == 2, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-3000:]
    assert "sweep interrupted; rerun the same command to resume" in output
    assert "[sweep] 0 done, 2 running, 1 pending, ETA " in output  # the status line
    # Once stopping, nothing more starts: no status line with a time left ("0 done, 0 running,
    # 3 pending, ETA >0m09s" after the runs had stopped).
    lines = output.splitlines()
    first_stop = next(index for index, line in enumerate(lines) if ": interrupted" in line)
    assert not [line for line in lines[first_stop:] if line.startswith("[sweep]")], output
    assert f"log {workdir / 'runs'}" in output
    rows = _rows(workdir)
    statuses = sorted(row["status"] for row in rows.values())
    assert statuses == ["interrupted", "interrupted", "pending"], rows
    for name, row in rows.items():
        log = workdir / "runs" / name / "train.log"
        if row["status"] == "interrupted":
            text = log.read_text()
            assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
            assert "; rerun to resume" in text

    [pending] = [row for row in rows.values() if row["status"] == "pending"]

    rerun = _sweep(repo, config, workdir, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    finished = _rows(workdir)
    assert {row["status"] for row in finished.values()} == {"completed"}
    # The pending row showed the plan's D, steps and C: what the run then trained.
    trained = finished[pending["name"]]
    for key in ("tokens", "steps"):
        assert pending[key] == trained[key], (key, pending, trained)
    assert float(pending["flops"]) == pytest.approx(float(trained["flops"]), rel=1e-12)
    for name, row in rows.items():
        if row["status"] == "interrupted":
            assert "resuming from step" in (workdir / "runs" / name / "train.log").read_text()


def test_a_kill_between_the_two_tables_leaves_no_finished_run_without_its_curve(tmp_path,
                                                                                monkeypatch):
    # results.csv was written first: killed before curves.csv, it listed a completed run whose
    # curve the table of curves lacked.
    runs = [plans.PlannedRun(name=name, overrides={}, size="s", params=1, non_embedding_params=1,
                             tokens=10, steps=10, flops=1.0, flop_convention="6N")
            for name in ("a", "b")]
    sweep_module.gather(tmp_path, runs, {})  # both pending
    run_dir = tmp_path / "runs" / "a"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": step, "eval_loss": 3.0 - step / 10, "tokens": step,
                            "flops": step}) + "\n" for step in (5, 10)))
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "steps": 10,
                                                      "final_eval_loss": 2.0}))
    write = files.write_csv_atomic
    written = []

    def killed_at_the_second(path, columns, rows):
        if written:
            raise KeyboardInterrupt  # as a kill: the second table is never replaced
        written.append(path.name)
        write(path, columns, rows)

    monkeypatch.setattr(files, "write_csv_atomic", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.gather(tmp_path, runs, {})
    completed = {row["name"] for row in _rows(tmp_path).values() if row["status"] == "completed"}
    with open(tmp_path / "curves.csv", newline="") as file:
        curved = {row["name"] for row in csv.DictReader(file)}
    assert completed <= curved, (completed, curved)
    monkeypatch.setattr(files, "write_csv_atomic", write)
    sweep_module.gather(tmp_path, runs, {})  # the next rewrite has both
    assert _rows(tmp_path)["a"]["status"] == "completed" and curved == {"a"}


def test_a_run_that_cannot_resume_under_the_changed_plan_is_one_line_before_any_run(
        tmp_path, capsys):
    # A longer plan over a run that finished (or stopped) at 8 steps: its scaling-train refused
    # the checkpoint as it started, the row was marked failed and the other runs trained on.
    workdir = tmp_path / "sweep"
    handlers = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    first = _sweep_here(capsys, _write_sweep(tmp_path), workdir, "--only", "tiny-d32-L1")
    assert first.returncode == 0, first.stdout + first.stderr
    # The sweep's signal handlers are gone with it (they caught a later test's Ctrl-C).
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == handlers
    rows = (workdir / "results.csv").read_text()
    config = _write_sweep(tmp_path, steps=12)
    result = _sweep_here(capsys, config, workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == cannot_resume(
        workdir, "tiny-d32-L1", "the workdir's checkpoint belongs to a run of 8 steps, the config "
        "asks for 12 (train.steps / train.tokens)")
    assert sorted(path.name for path in (workdir / "runs").iterdir()) == ["tiny-d32-L1"]
    assert (workdir / "results.csv").read_text() == rows
    # Stopped after its last checkpoint, under another model (dropout): every run started and
    # failed as its state was restored, one after another.
    (workdir / "runs" / "tiny-d32-L1" / "summary.json").unlink()
    result = _sweep_here(capsys, _write_sweep(tmp_path), workdir, "--dry-run",
                         "--config.overrides.model.dropout=0.1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == cannot_resume(
        workdir, "tiny-d32-L1", "the workdir's checkpoint was trained with a different model "
        "(model.dropout: checkpoint 0.0, config 0.1)")


@pytest.mark.parametrize("text", ['{"status": "completed", "steps": 8, "conf', '[]'])
def test_a_run_whose_summary_is_unreadable_is_one_line_before_any_run_trains(tmp_path, capsys,
                                                                              text):
    # A truncated summary.json read as no summary: the run's row said `pending`, without its
    # losses, and the sweep exited 0.
    config = _write_sweep(tmp_path)
    name = _expand(load_config(str(config)), config)[0].name
    run_dir = tmp_path / "sweep" / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(text)
    code = sweep_module.main(["--config", str(config), "--workdir", str(tmp_path / "sweep")])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"scaling-sweep: error: --workdir='{tmp_path / 'sweep'}' is not "
                            f"allowed: run {name}'s summary.json is unreadable (")
    assert f"delete {run_dir / 'summary.json'} to have the sweep run {name} again" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "sweep" / "results.csv").exists()


@pytest.mark.parametrize("damage", ["binary", "folder", "foreign"])
def test_a_results_table_the_sweep_cannot_read_is_one_line_before_any_run(tmp_path, capsys,
                                                                         damage):
    # Random bytes: UnicodeDecodeError; a folder: IsADirectoryError after the runs had started.
    workdir = tmp_path / "sweep"
    workdir.mkdir()
    table = workdir / "results.csv"
    if damage == "binary":
        table.write_bytes(bytes(range(128, 256)) * 4)
    elif damage == "folder":
        table.mkdir()
    else:
        table.write_text("run,loss\na,1.0\n")
    code = sweep_module.main(["--config", str(_write_sweep(tmp_path)), "--workdir", str(workdir)])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"scaling-sweep: error: --workdir='{workdir}' is not allowed: a "
                            "workdir whose results.csv the sweep can read (")
    assert error.rstrip().endswith("move results.csv away, and the sweep writes it again from "
                                   "its runs' files") and error.count("\n") == 1
    assert not (workdir / "runs").exists()


def test_another_sweeps_workdir_is_one_line_before_any_run(tmp_path, capsys):
    # A second sweep in the same workdir silently replaced the first's results.csv with its own.
    workdir = tmp_path / "sweep"
    workdir.mkdir()
    (workdir / "sweep.json").write_text(json.dumps({"name": "other"}))
    (workdir / "results.csv").write_text("name,status\nother-d8-L1,completed\n")
    code = sweep_module.main(["--config", str(_write_sweep(tmp_path)), "--workdir", str(workdir)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"scaling-sweep: error: --workdir='{workdir}' is not allowed: the workdir of sweep "
        "'tiny': it holds sweep 'other' (its sweep.json), whose results.csv this sweep would "
        "replace; use another --workdir\n")
    assert (workdir / "results.csv").read_text() == "name,status\nother-d8-L1,completed\n"


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_sweep_workdir_under_a_file_is_one_line(tmp_path, capsys, dry_run):
    # A dry run listed the plan and exited 0; the same command without it was refused.
    (tmp_path / "file").write_text("not a folder")
    workdir = tmp_path / "file" / "sweep"
    code = sweep_module.main(["--config", str(_write_sweep(tmp_path)), "--workdir", str(workdir),
                              *(["--dry-run"] if dry_run else [])])
    assert code == 2
    assert capsys.readouterr().err == (
        f"scaling-sweep: error: --workdir={str(workdir)!r} is not allowed: a directory that can "
        f"be created ({tmp_path / 'file'} is a file)\n")


@pytest.mark.parametrize("extra", [(), ("--dry-run",)])
def test_a_sweep_workdir_that_is_a_file_is_one_line(tmp_path, capsys, extra):
    workdir = tmp_path / "sweep"
    workdir.write_text("not a folder")
    result = _sweep_here(capsys, _write_sweep(tmp_path), workdir, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"scaling-sweep: error: --workdir={str(workdir)!r} is not "
                                     "allowed: a directory (this path is a file)")


@pytest.mark.parametrize("extra, expected", [
    (("--config.size_overrides.d999.model.d_ff=4",),
     "config.size_overrides.d999={'model': {'d_ff': 4}} is not allowed: keys that name members "
     "of family 'cpu_demo': d8-L2"),
    (("--status-every", "-1"), "--status-every=-1 is not allowed: seconds between status lines"),
    # inf ended the sweep in an OverflowError traceback once its first run had started; NaN
    # polled without pause.
    (("--status-every", "inf"), "--status-every=inf is not allowed: seconds between status "
                                "lines, a finite number 0 or more"),
    (("--status-every", "nan"), "--status-every=nan is not allowed: seconds between status "
                                "lines, a finite number 0 or more"),
    (("--processes", "two"), "argument --processes: invalid int value: 'two'"),
    (("--processes", "0"), "--processes=0 is not allowed: an integer >= 1 (runs at a time)"),
])
def test_bad_sweep_settings_are_one_line(tmp_path, capsys, extra, expected):
    result = _sweep_here(capsys, _write_sweep(tmp_path), tmp_path / "w", "--dry-run", *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling-sweep: error: "), result.stderr
    assert expected in lines[0] and not (tmp_path / "w").exists()


def test_a_run_config_given_to_the_sweep_is_one_line_naming_the_file(repo, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(repo)
    result = _sweep_here(capsys, "configs/demo.py", tmp_path / "w", "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "scaling-sweep: error: --config='configs/demo.py' is not allowed: a sweep config")
    assert "is this a run config?" in lines[0]


@pytest.mark.parametrize("status, steps", [("completed", 100), ("diverged", 84), ("preempted", 90),
                                           ("interrupted", 80), ("diverged", 0)])
def test_a_branchs_study_compute_counts_the_steps_it_ran_after_its_start(status, steps):
    # A branch of 100 steps from its parent's step 80, at 1,000 FLOPs a step: the study trained
    # its steps 81..steps (the summary's FLOPs are those of the steps it ran).
    summary = {"status": status, "steps": steps, "total_steps": 100, "start_step": 80,
               "flops": 1000.0 * steps}
    row = results.result_row(summary, {"train.init_step": 80}, name="b", status=status,
                             planned={"study_flops": 20_000.0})
    assert row["study_flops"] == 1000.0 * max(steps - 80, 0)


@pytest.mark.parametrize("run_status", ["preempted", "interrupted", "diverged", "failed"])
def test_a_run_that_did_not_complete_has_no_final_loss_in_its_row(run_status):
    # Its summary's "final" losses are from its last evaluation before it stopped: a preempted
    # run's row gave its step-1000 evaluation of 1500 steps as its final_eval_loss.
    losses = {"final_train_loss": 2.4, "final_eval_loss": 2.5, "final_eval_stderr": 0.01,
              "final_continuation_loss": 2.6, "final_continuation_stderr": 0.02}
    summary = {"status": run_status, "steps": 1474, "wall_seconds": 9.5, **losses}
    row = results.result_row(summary, {}, name="r", status=run_status)
    assert all(row[column] == "" for column in losses) and row["wall_seconds"] == 9.5
    completed = results.result_row({**summary, "status": "completed"}, {}, name="r",
                                   status="completed")
    assert {column: completed[column] for column in losses} == losses


def test_an_encoder_decoders_encoder_depth_is_a_column_of_its_row(tmp_path):
    # Only the size's name gave it: a sweep varying it could not be told apart by column.
    row = results.result_row({"model": {"layout": "encoder_decoder", "num_layers": 2,
                                        "num_encoder_layers": 3}}, {}, name="r", status="completed")
    assert (row["num_layers"], row["num_encoder_layers"]) == (2, 3)
    # A config's 0 is "as deep as the decoder"; a run not started has its planned depth.
    config = {"model": {"layout": "encoder_decoder", "num_layers": 4, "num_encoder_layers": 0}}
    assert results.result_row({}, config, name="r", status="failed")["num_encoder_layers"] == 4
    planned = results.result_row({}, {}, name="r", status="pending",
                                 planned={"layout": "encoder_decoder", "num_encoder_layers": 6})
    assert planned["num_encoder_layers"] == 6
    # Another layout has one stack: no encoder depth to give.
    for layout in ("decoder", "encoder"):
        row = results.result_row({"model": {"layout": layout, "num_layers": 2,
                                            "num_encoder_layers": 2}}, {}, name="r",
                                 status="completed")
        assert row["num_encoder_layers"] == "" and row["num_layers"] == 2
    assert list(row) == list(results.RESULT_COLUMNS)


def test_a_row_gives_the_training_splits_tokens_against_which_its_own_say_if_it_repeated_data():
    row = results.result_row({"tokens": 2048, "train_tokens_available": 1000}, {}, name="r",
                             status="completed")
    assert (row["tokens"], row["unique_tokens"]) == (2048, 1000)


def test_a_branch_waits_for_its_parent_of_the_plans_length(tmp_path):
    # The parent's workdir holds a completed run of another length (the plan changed since): a
    # branch must not start from its stable states, whether the parent is queued to train again
    # or its rerun was refused.
    def planned(name, steps, parent=""):
        return plans.PlannedRun(name=name, overrides={}, size="d8-L2", params=1,
                                non_embedding_params=1, tokens=steps, steps=steps, flops=1.0,
                                flop_convention="full", parent=parent,
                                start_step=steps - 1 if parent else 0)
    main, branch = planned("m", 64), planned("b", 16, parent="m")

    def ready(todo, total_steps):
        files.write_json_atomic(tmp_path / "runs" / "m" / "summary.json",
                                {"status": "completed", "total_steps": total_steps})
        scheduler = sweep_module.Scheduler(tmp_path, [main, branch], todo, "", {}, 1)
        return scheduler._ready(branch)

    (tmp_path / "runs" / "m").mkdir(parents=True)
    assert ready([main, branch], 32) is False  # the parent trains again first
    assert ready([branch], 32) is None  # it did not: the branch cannot start
    assert ready([branch], 64) is True


def test_the_status_line_counts_the_runs_that_replace_a_finished_one(tmp_path, monkeypatch,
                                                                     capsys):
    # Two processes, four runs: when one ends, the next starts before the line is shown, so the
    # line says 2 running (it said 1, the place just freed not yet filled).
    runs = [plans.PlannedRun(name=f"r{index}", overrides={}, size="d8-L2", params=1,
                             non_embedding_params=1, tokens=8, steps=8, flops=float(8 - index),
                             flop_convention="full") for index in range(4)]
    seconds = {"r0": 1.0, "r1": 0.05, "r2": 2.0, "r3": 0.2}  # r1, r0, r3, r2 end in turn

    def execute(command, run_dir):
        time.sleep(seconds[run_dir.name])
        return 0, ""

    monkeypatch.setattr(sweep_module, "execute", execute)
    monkeypatch.setattr(sweep_module, "train_command", lambda run, base, workdir: [run.name])
    monkeypatch.setattr(sweep_module, "gather", lambda *args, **kwargs: None)
    sweep_module.Scheduler(tmp_path, runs, runs, "", {}, 2, status_every=60).run()
    lines = [line.split(", ETA")[0] for line in capsys.readouterr().out.splitlines()
             if line.startswith("[sweep]")]
    assert lines[:2] == ["[sweep] 1 done, 2 running, 1 pending",
                         "[sweep] 2 done, 2 running, 0 pending"]



def test_status_lines_further_apart_than_the_platform_can_wait_are_never(tmp_path, monkeypatch,
                                                                          capsys):
    # --status-every=1e10 passed the check, then the first wait overflowed (OverflowError) with
    # the runs started and results.csv left saying `pending`.
    runs = [plans.PlannedRun(name=f"r{index}", overrides={}, size="d8-L2", params=1,
                             non_embedding_params=1, tokens=8, steps=8, flops=1.0,
                             flop_convention="full") for index in range(2)]
    monkeypatch.setattr(sweep_module, "execute", lambda command, run_dir: (0, ""))
    monkeypatch.setattr(sweep_module, "train_command", lambda run, base, workdir: [run.name])
    monkeypatch.setattr(sweep_module, "gather", lambda *args, **kwargs: None)
    sweep_module.Scheduler(tmp_path, runs, runs, "", {}, 1, status_every=1e10).run()
    out = capsys.readouterr().out
    assert "[1/2] r0: " in out and "[2/2] r1: " in out  # both reported at their end


@pytest.mark.parametrize("summary, said", [
    ('{"status": "preempted", "steps": 5, "final_eval_loss": 2.5}', "preempted at step 5"),
    # Stopped before it wrote a summary: "preempted at step ?".
    (None, "preempted")])
def test_a_run_stopped_to_resume_counts_as_pending_not_done(tmp_path, monkeypatch, capsys,
                                                            summary, said):
    # A run preempted (exit 75) or interrupted (130) is to be resumed: the status line counts it
    # with the pending runs (it said "1 done").
    runs = [plans.PlannedRun(name=f"r{index}", overrides={}, size="d8-L2", params=1,
                             non_embedding_params=1, tokens=8, steps=8, flops=float(8 - index),
                             flop_convention="full") for index in range(4)]
    ends = {"r0": (1.0, 0), "r1": (0.05, status.EXIT_PREEMPTED), "r2": (2.0, 0), "r3": (0.2, 0)}

    def execute(command, run_dir):
        seconds, code = ends[run_dir.name]
        time.sleep(seconds)
        return code, ""

    monkeypatch.setattr(sweep_module, "execute", execute)
    monkeypatch.setattr(sweep_module, "train_command", lambda run, base, workdir: [run.name])
    monkeypatch.setattr(sweep_module, "gather", lambda *args, **kwargs: None)
    # Stopped at step 5, after an evaluation at step 4 (its summary's latest "final_eval_loss").
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    if summary:
        (tmp_path / "runs" / "r1" / "summary.json").write_text(summary)
    scheduler = sweep_module.Scheduler(tmp_path, runs, runs, "", {}, 2, status_every=60)
    scheduler.run()
    out = capsys.readouterr().out.splitlines()
    lines = [line.split(", ETA")[0] for line in out if line.startswith("[sweep]")]
    assert lines[:2] == ["[sweep] 0 done, 2 running, 2 pending",
                         "[sweep] 1 done, 2 running, 1 pending"]
    assert scheduler.preempted and scheduler.stopped == {"r1": status.PREEMPTED}
    # Not counted as done ("[1/4] r1: preempted, eval loss 2.5000" before: a mid-run evaluation
    # printed as the run's loss), and said to resume.
    ended = [line.split(" — ")[0] for line in out if line.startswith("[")
             and not line.startswith("[sweep]")]
    assert ended[0] == f"[0/4] r1: {said}, resumes on a rerun"
    assert [line.split(":")[0] for line in ended[1:]] == ["[1/4] r0", "[2/4] r3", "[3/4] r2"]


def test_a_branch_whose_finished_parent_lacks_its_stable_state_is_refused(tmp_path):
    # The parent finished at the plan's length under another decay_fraction: it saved the state
    # of step 40, the plan's branch starts from step 48. Rerunning would not train it again.
    main = plans.PlannedRun(name="m", overrides={}, size="d8-L2", params=1, non_embedding_params=1,
                            tokens=64, steps=64, flops=1.0, flop_convention="full")
    branch = dataclasses.replace(main, name="b", steps=60, parent="m", start_step=48)
    (tmp_path / "runs" / "m" / "stable" / "40").mkdir(parents=True)
    summary = tmp_path / "runs" / "m" / "summary.json"
    summary.write_text('{"status": "completed", "total_steps": 64}')
    with pytest.raises(ConfigError, match=r"run b starts from step 48 of m, which finished without "
                                          r"saving it .* delete .*runs/m to train it again"):
        sweep_module.check_stable_states(tmp_path, [branch], {"m"})
    sweep_module.check_stable_states(tmp_path, [branch], set())  # the parent trains first
    # A parent that diverged fails its branches alone (Scheduler._ready), not the whole sweep.
    summary.write_text('{"status": "diverged", "total_steps": 64}')
    sweep_module.check_stable_states(tmp_path, [branch], {"m"})
    summary.write_text('{"status": "completed", "total_steps": 64}')
    (tmp_path / "runs" / "m" / "stable" / "48").mkdir()
    sweep_module.check_stable_states(tmp_path, [branch], {"m"})


@pytest.mark.parametrize("parent_status, error", [
    # "change its settings ... or delete its folder": changed settings on the diverged run's
    # folder are refused (a finished run of another lr).
    ('{"status": "diverged", "diverged_step": 7, "total_steps": 64}',
     "parent run m diverged at step 7; delete its folder and rerun the sweep, with other "
     "settings for it (e.g. optim.lr in size_overrides)"),
    ('{"status": "failed", "total_steps": 64}', "parent run m did not complete; rerun the sweep"),
    # Stopped on request, it resumes on the next sweep: its branches were marked failed, with
    # an error, though nothing failed.
    ('{"status": "preempted", "total_steps": 64}', None),
    ('{"status": "interrupted", "total_steps": 64}', None),
])
def test_a_branch_of_a_parent_that_ended_unfinished_says_what_would_start_it(
        tmp_path, monkeypatch, parent_status, error):
    # A diverged parent is final: "rerun the sweep" left it diverged and the branch failed again.
    main = plans.PlannedRun(name="m", overrides={}, size="d8-L2", params=1, non_embedding_params=1,
                            tokens=64, steps=64, flops=1.0, flop_convention="full")
    branch = dataclasses.replace(main, name="b", steps=60, parent="m", start_step=48)
    (tmp_path / "runs" / "m").mkdir(parents=True)
    (tmp_path / "runs" / "m" / "summary.json").write_text(parent_status)
    reported = []
    monkeypatch.setattr(sweep_module, "gather", lambda *args, **kwargs: None)
    scheduler = sweep_module.Scheduler(tmp_path, [main, branch], [branch], "", {}, 1,
                                       status_every=1e10)
    monkeypatch.setattr(scheduler, "_report", lambda run, code, text: reported.append(
        (run.name, code, text)))
    scheduler.run()
    assert reported == ([("b", status.EXIT_FAILED, error)] if error else [])
    if parent_status.startswith('{"status": "failed"'):
        # Exit 2 for a busy workdir or a dataset out of reach is no refusal of settings.
        for busy in ("scaling-train: error: /w/runs/m is in use by pid 7 on host h",
                     "scaling-train: error: could not prepare TFDS dataset 'x': no network"):
            scheduler = sweep_module.Scheduler(tmp_path, [main, branch], [main], "", {}, 1,
                                               status_every=1e10)
            sweep_module.Scheduler._report(scheduler, main, status.EXIT_BAD_CONFIG, busy)
            assert scheduler.refused == {}
        sweep_module.Scheduler._report(scheduler, main, status.EXIT_BAD_CONFIG,
                                       "scaling-train: error: config.mesh={} is not allowed: x")
        assert list(scheduler.refused) == ["m"]
        # Failed as it started, refusing its settings: a rerun alone fails it again.
        scheduler = sweep_module.Scheduler(tmp_path, [main, branch], [branch], "", {}, 1,
                                           status_every=1e10)
        scheduler.refused["m"] = "scaling-train: error: config.mesh=..."
        reported.clear()
        monkeypatch.setattr(scheduler, "_report", lambda run, code, text: reported.append(text))
        scheduler.run()
        assert reported == ["parent run m refused the settings the sweep gave it; change them "
                            "and rerun the sweep"]
    assert [run.name for run in scheduler.waiting] == ([] if error else ["b"])


@pytest.mark.slow
def test_a_sweep_whose_run_diverged_does_not_end_as_a_success(repo, tmp_path):
    # Its one run diverged: "[1/1] ...: diverged", "results: ...", and exit 0.
    config = _write_sweep(tmp_path, size_overrides={"d32-L1": {"optim": {"lr": 1e6}}})
    result = _sweep(repo, config, tmp_path / "w", "--only", "tiny-d32-L1", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _rows(tmp_path / "w")["tiny-d32-L1"]["status"] == "diverged"
    # The step, and a column that has it: the "error" column of a diverged run is empty.
    [line] = [line for line in result.stdout.splitlines() if line.startswith("[1/1] ")]
    step = _rows(tmp_path / "w")["tiny-d32-L1"]["diverged_step"]
    assert line.startswith(f"[1/1] tiny-d32-L1: diverged at step {step} — ") and step, line
    assert result.stdout.strip().splitlines()[-1] == (
        "sweep ended with 1 diverged: results.csv has their status (diverged_step: the first "
        "non-finite step)")
    # Rerun: the diverged run is final, trains nothing, and still is the sweep's outcome.
    again = _sweep(repo, config, tmp_path / "w", "--only", "tiny-d32-L1", timeout=300)
    assert again.returncode == 1 and "0 to train" in again.stdout, again.stdout
    assert again.stdout.strip().splitlines()[-1] == result.stdout.strip().splitlines()[-1]


def test_a_mesh_no_run_can_use_is_refused_by_the_dry_run(repo, tmp_path):
    # Tensor parallelism over 3 devices: no run can split over this machine's devices. The dry run
    # printed the plan and exited 0; each run then failed as it started.
    config = _write_sweep(tmp_path)
    dry = _sweep(repo, config, tmp_path / "w", "--config.overrides.mesh.tensor=3", "--dry-run",
                 timeout=300)
    assert dry.returncode == 2, dry.stdout + dry.stderr
    assert dry.stderr.startswith("scaling-sweep: error: run tiny-d32-L1: config.mesh=")
    assert dry.stderr.count("\n") == 1 and "product divides the" in dry.stderr
    assert dry.stdout == ""


def test_a_run_far_beyond_the_devices_memory_is_refused_by_the_dry_run(tmp_path, capsys):
    # The plan was printed and exit 0; the run then failed as it started, after the others.
    config = _write_sweep(tmp_path, size_overrides={"d64-L2": {"train": {"batch_size": 2**24}}})
    result = _sweep_here(capsys, config, tmp_path / "w", "--dry-run")
    code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 2 and out == "", out
    assert err.startswith("scaling-sweep: error: run tiny-d64-L2: the run is estimated at "), err
    assert err.count("\n") == 1 and "; lower train.batch_size=16777216" in err


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_scaling_train_runs_folder_is_no_sweeps_workdir(tmp_path, capsys, dry_run):
    # The sweep trained beside the run, its own runs under runs/, its tables over the folder.
    config = _write_sweep(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "completed"}')
    result = _sweep_here(capsys, config, run, *dry_run)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"scaling-sweep: error: --workdir={str(run)!r} is not allowed: a "
                             "sweep's folder; this one holds a scaling-train run (summary.json, "
                             "checkpoints): give the sweep a folder of its own\n")
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints", "summary.json"]


def _finish_as_trained(workdir, run, base_config):
    """The summary.json `scaling-train` writes for `run` trained to its end: the config resolved
    from the run's own command line (a branch's parent as the absolute path it gets there)."""
    from scaling.train import load_and_validate

    command = sweep_module.train_command(run, base_config, workdir)
    overrides = [arg.removeprefix("--config.") for arg in command if arg.startswith("--config.")]
    config = load_and_validate(base_config, overrides)
    files.write_json_atomic(workdir / "runs" / run.name / "summary.json", {
        "name": run.name, "status": "completed", "steps": run.steps, "total_steps": run.steps,
        "config": config.to_dict()})


def _finished_sweep(tmp_path):
    """A two-run sweep whose runs have finished (their summaries written, nothing trained)."""
    config = write_sweep_config(tmp_path / "tiny_sweep.py", **{**TINY, "sizes": "d32-L1,d64-L2"},
                                steps=8)
    _, base_config, runs = sweep_module.load_plan(str(config), [])
    for run in runs:
        _finish_as_trained(tmp_path / "sweep", run, base_config)
    return config, tmp_path / "sweep"


@pytest.mark.parametrize("extra, field, recorded, planned", [
    (["--config.overrides.optim.lr=0.01"], "optim.lr", 0.003, 0.01),
    (["--config.overrides.seed=7"], "seed", 0, 7),
    (["--config.size_overrides.d32-L1.model.num_heads=2"], "model.num_heads", 1, 2),
])
def test_a_finished_run_of_another_config_is_refused_naming_run_and_field(
        tmp_path, capsys, extra, field, recorded, planned):
    config, workdir = _finished_sweep(tmp_path)
    # The dry run makes the same check (it printed the whole plan and exited 0).
    for dry_run in (["--dry-run"], []):
        code = sweep_module.main(["--config", str(config), "--workdir", str(workdir), *extra,
                                  *dry_run])
        error = capsys.readouterr().err
        assert code == 2 and error.strip().splitlines() == [error.strip()], error
        assert error.strip() == (
            f"scaling-sweep: error: --workdir={str(workdir)!r} is not allowed: run tiny-d32-L1 "
            f"finished there with {field}={recorded!r}, the plan sets {planned!r}; use a new "
            f"--workdir, or delete {workdir / 'runs' / 'tiny-d32-L1'} to train it again")
    assert not (workdir / "results.csv").exists()  # refused before anything was written


def test_a_finished_run_given_the_value_a_derived_field_stood_for_is_the_same_run(tmp_path,
                                                                                  capsys):
    # num_kv_heads 0 means one per query head: "finished there with model.num_kv_heads=0, the
    # plan sets 1".
    config, workdir = _finished_sweep(tmp_path)
    assert sweep_module.main(["--config", str(config), "--workdir", str(workdir), "--dry-run",
                              "--config.size_overrides.d32-L1.model.num_kv_heads=1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"2 of these runs finished in {workdir}: " \
                                                      "0 to train"


def test_a_dry_run_in_a_workdir_lists_only_the_runs_left_to_train(tmp_path, capsys):
    # It listed and timed every run of the plan, finished or not.
    config, workdir = _finished_sweep(tmp_path)
    (workdir / "runs" / "tiny-d64-L2" / "summary.json").unlink()  # not finished: to train
    assert sweep_module.main(["--config", str(config), "--workdir", str(workdir),
                              "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"1 of these runs finished in {workdir}: 1 to train"
    assert [line.split()[0] for line in out if line.startswith("tiny-")] == ["tiny-d64-L2"]
    assert out[-1].startswith("1 runs, ")
    assert not (workdir / "results.csv").exists() and not (workdir / "sweep.json").exists()


def test_a_finished_run_under_other_logging_and_checkpoint_settings_is_finished(repo, tmp_path):
    # Where and how often a run logs, evaluates and saves does not change what it trained.
    config, workdir = _finished_sweep(tmp_path)
    result = _sweep(repo, config, workdir, "--config.overrides.train.log_every=1",
                    "--config.overrides.train.eval_every=2",
                    "--config.overrides.checkpoint.every_steps=0",
                    "--config.overrides.wandb.mode=offline", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 runs, 2 already finished, 0 to train" in result.stdout
    assert {row["status"] for row in _rows(workdir).values()} == {"completed"}


def test_a_narrowed_plan_says_which_finished_runs_results_csv_leaves_out(tmp_path, capsys):
    # Rerun with fewer sizes, results.csv lost the other sizes' rows without a word.
    config, workdir = _finished_sweep(tmp_path)
    assert sweep_module.main(["--config", str(config), "--workdir", str(workdir),
                              "--config.sizes=d32-L1"]) == 0
    assert (f"note: results.csv lists this plan's runs only: 1 run(s) in {workdir / 'runs'} are "
            "outside it (tiny-d64-L2); rerun with the plan that has them to list them again"
            ) in capsys.readouterr().out
    assert list(_rows(workdir)) == ["tiny-d32-L1"]
    # A run an older version named (IsoFLOP runs were isoflop-C<budget>-N<params>) is outside
    # every plan now: the note says how to keep it.
    older = workdir / "runs" / "isoflop-C1e11-N1.6e3"
    older.mkdir()
    (older / "summary.json").write_text('{"status": "completed"}')
    assert sweep_module.main(["--config", str(config), "--workdir", str(workdir),
                              "--config.sizes=d32-L1"]) == 0
    assert ("; 1 of them carry the names an older version gave IsoFLOP runs "
            "(isoflop-C<budget>-N<params>): "
            "this version names them <sweep>-<size>-C<budget>, so rename their folders to keep them"
            ) in capsys.readouterr().out


def test_a_finished_branch_matches_its_plan_wherever_its_parent_lay(tmp_path):
    # A cooldown branch records its parent's absolute path; the plan holds a placeholder. Its
    # config differs from its parent's on purpose: each is compared with its own plan.
    path = write_sweep_config(tmp_path / "ladder.py",
                              **{**TINY, "sizes": "d32-L1", "plan": "ladder"},
                              ladder_tokens=(64 * 32 * 8, 64 * 32 * 16))
    sweep, base_config, runs = sweep_module.load_plan(str(path), [])
    assert [bool(run.parent) for run in runs] == [False, True]
    for run in runs:
        _finish_as_trained(tmp_path / "old", run, base_config)
    (tmp_path / "old").rename(tmp_path / "moved")
    planner = plans.Planner(sweep, base_config)
    names = {run.name for run in runs}
    sweep_module.check_finished_configs(tmp_path / "moved", runs, names, planner)
    # The branch finished from another parent's state (a parent name of the plan that changed).
    summary = tmp_path / "moved" / "runs" / runs[1].name / "summary.json"
    recorded = json.loads(summary.read_text())
    recorded["config"]["train"]["init_from"] = str(tmp_path / "moved" / "runs" / "other")
    summary.write_text(json.dumps(recorded))
    with pytest.raises(ConfigError, match=rf"run {runs[1].name} finished there with "
                                          rf"train.init_from='other', the plan sets "
                                          rf"'{runs[0].name}'"):
        sweep_module.check_finished_configs(tmp_path / "moved", runs, names, planner)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_run_the_passed_on_stop_kills_before_its_handler_is_stopped_not_failed(
        tmp_path, monkeypatch, signum, code):
    # The run dies of the signal the stopping sweep passed on, too early to save and exit 75 or
    # 130 itself: stopped. Without the stop, the same death is a failure.
    go = tmp_path / "go"
    command = [sys.executable, "-c", "import os, time\n"
               f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
               f"os.kill(os.getpid(), {int(signum)})"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        outcome = pool.submit(sweep_module.execute, command, tmp_path / "stopped")
        deadline = time.time() + 60
        while not sweep_module.CHILDREN._processes:  # started
            assert time.time() < deadline and not outcome.done()
            time.sleep(0.01)
        monkeypatch.setattr(sweep_module.CHILDREN, "terminating", True)
        go.touch()
        assert outcome.result(timeout=60) == (code, "")
    monkeypatch.setattr(sweep_module.CHILDREN, "terminating", False)
    returncode, error = sweep_module.execute(command, tmp_path / "failed")
    assert returncode == -signum and error


def test_the_error_is_this_attempts_and_a_death_by_signal_says_so(tmp_path):
    # The log holds an earlier attempt's error; this attempt prints progress, then dies as the
    # OOM killer would kill it (SIGKILL), or exits 1 saying nothing.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    earlier = ("scaling-train: error: the workdir's checkpoint was trained with a different "
               "model (d_model: 32, config 48); use a new --workdir or the run's settings\n")
    (run_dir / "train.log").write_text(earlier)
    progress = "print('step 25/60 | loss 4.8999 | 1,234 tok/s', flush=True)\n"
    killed = [sys.executable, "-c", progress + "import os, signal\n"
              "os.kill(os.getpid(), signal.SIGKILL)"]
    assert sweep_module.execute(killed, run_dir) == (-9, "killed by signal 9 (SIGKILL)")
    silent = [sys.executable, "-c", "raise SystemExit(1)"]
    assert sweep_module.execute(silent, run_dir) == (1, "exit code 1")
    failing = [sys.executable, "-c", "raise ValueError('bad shard')"]
    assert sweep_module.execute(failing, run_dir) == (1, "ValueError: bad shard")
    # Every attempt's output stays in the log, in order.
    log = (run_dir / "train.log").read_text()
    assert log.startswith(earlier) and log.index("step 25/60") < log.index("ValueError")


def test_each_host_of_a_slice_appends_to_its_own_log(tmp_path, monkeypatch):
    # Hosts share the workdir (a bucket): host k writes train.host<k>.log, only the first host
    # writes train.log and command.txt.
    command = [sys.executable, "-c", "print('hello from', __import__('os').environ['ME'])"]
    for variable in ("TPU_WORKER_ID", "SLURM_PROCID", "SCALING_PROCESS_ID"):
        monkeypatch.delenv(variable, raising=False)
    for worker in ("0", "1", "2"):
        monkeypatch.setenv("TPU_WORKER_ID", worker)
        monkeypatch.setenv("ME", worker)
        assert sweep_module.execute(command, tmp_path / "run") == (0, "")
    names = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert names == ["command.txt", "train.host1.log", "train.host2.log", "train.log"]
    assert (tmp_path / "run" / "train.log").read_text() == "hello from 0\n"
    assert (tmp_path / "run" / "train.host2.log").read_text() == "hello from 2\n"


# ----------------------------------------------------------------------------------------------
# The dry run's estimate: training, held-out evaluations, runs at once

def _ladder(tmp_path, **train):
    """Sizes d32-L1 and d48-L2 of the tiny sweep as ladders of 8 and 16 steps of 256 tokens: per
    size a main run of 16 steps, evaluated at steps 4, 8, 12 and 16, and a branch that trains its
    steps 7 and 8 and evaluates at step 8 (`eval_every=4`, one batch per evaluation)."""
    overrides = {**TINY["overrides"], "train": {**TINY["overrides"]["train"], **train}}
    return write_sweep_config(tmp_path / "ladder.py", **{**TINY, "sizes": "d32-L1,d48-L2",
                                                         "plan": "ladder",
                                                         "overrides": overrides},
                              ladder_tokens=(256 * 8, 256 * 16))


@pytest.mark.parametrize("train, main, branch", [
    # Periodic evaluations at steps 4, 8 and 12 of the main run, then the whole split (-1).
    ({"final_eval_batches": -1}, ((3, 1), (1, -1)), ((1, -1),)),
    # 0: the final evaluation reads eval_batches=1 like the others
    ({}, ((3, 1), (1, 1)), ((1, 1),)),
    ({"final_eval_batches": 5, "continuation_tokens": 4}, ((3, 1), (2, 5)), ((2, 5),)),
])
def test_planned_runs_count_their_held_out_evaluations(tmp_path, train, main, branch):
    path = _ladder(tmp_path, **train)
    runs = {run.name: run for run in _expand(load_config(str(path)), path)}
    parent, child = runs["tiny-d32-L1-D4.1e3"], runs["tiny-d32-L1-D2e3"]
    assert (parent.steps, parent.start_step, child.steps, child.start_step) == (16, 0, 8, 6)
    assert (parent.evaluations, child.evaluations) == (main, branch)
    # Each evaluation reads what it asks for, at most the 50 batches the split fills; each batch
    # holds a step's tokens, each at a third of a training token's FLOPs.
    read = {-1: 50, 1: 1, 5: 5}
    batches = sum(count * read[asked] for count, asked in branch)
    assert child.evaluated_batches(50) == batches
    assert child.eval_flops(50) == pytest.approx(batches * child.flops / 8 / 3)
    # A split of 3 batches cuts the requests of 5 to 3, as the loader does.
    read = {-1: 3, 1: 1, 5: 3}
    assert parent.evaluated_batches(3) == sum(count * read[asked] for count, asked in main)
    # A split of unknown size: the whole-split evaluations are left out, the others as asked.
    assert parent.evaluated_batches(None) == sum(count * asked for count, asked in main
                                                 if asked != -1)


def _hand_estimate(runs, whole_split_batches, seconds_per_flop):
    """(seconds per run, FLOPs of the held-out evaluations), counted by hand: the steps each
    trains of its own, and the held-out batches of `_ladder(final_eval_batches=-1)` with the
    whole split `whole_split_batches`, each a step's tokens at a third of the FLOPs, and each of
    both taking `STEP_SECONDS` more."""
    seconds, evaluated_flops = {}, 0.0
    for run in runs:
        per_step = run.flops / run.steps
        trained, evaluated = (16, 3 + whole_split_batches) if not run.parent else (
            2, whole_split_batches)
        seconds[run.name] = ((trained * per_step + evaluated * per_step / 3) * seconds_per_flop
                             + (trained + evaluated) * STEP_SECONDS)
        evaluated_flops += evaluated * per_step / 3
    return seconds, evaluated_flops


@pytest.mark.parametrize("processes", [1, 2])
def test_dry_run_estimates_training_evaluations_and_runs_at_once(tmp_path, monkeypatch, capsys,
                                                                  processes):
    from scaling import data

    path = _ladder(tmp_path, final_eval_batches=-1)
    runs = _expand(load_config(str(path)), path)
    monkeypatch.setattr(sweep_module, "estimated_pace", lambda *_: sweep_module.Pace(
        1e-8, STEP_SECONDS, "this machine"))
    monkeypatch.setattr(data, "held_out_batches", lambda data_cfg, train_cfg: 50)
    assert sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", "--processes", str(processes)]) == 0
    lines = capsys.readouterr().out.splitlines()
    seconds, evaluated = _hand_estimate(runs, 50, 1e-8)
    for run in runs:
        row = next(line for line in lines if line.startswith(run.name + " "))
        assert row.endswith(" " + sweep_module.format_minutes(seconds[run.name] / 60))
    total = sum(seconds.values())
    if processes == 1:
        assert lines[-1].endswith(f"about {sweep_module.format_minutes(total / 60)} on this "
                                  "machine, one run at a time")
    else:
        # Both main runs at once, then both branches: the longer main run and its branch.
        wall = max(seconds["tiny-d32-L1-D4.1e3"] + seconds["tiny-d32-L1-D2e3"],
                   seconds["tiny-d48-L2-D4.1e3"] + seconds["tiny-d48-L2-D2e3"])
        assert lines[-1].endswith(f"about {sweep_module.format_minutes(wall / 60)} on this "
                                  f"machine with 2 processes "
                                  f"({sweep_module.format_minutes(total / 60)} of runs)")
    assert f"; held-out evaluations add {evaluated:.3g}, about" in lines[-1]


def test_dry_run_counts_no_more_held_out_batches_than_the_split_fills(tmp_path, monkeypatch,
                                                                      capsys):
    # A final evaluation of 500 batches on a split of 50 reads the 50, as the whole split does.
    from scaling import data

    path = _ladder(tmp_path, final_eval_batches=500)
    runs = _expand(load_config(str(path)), path)
    monkeypatch.setattr(sweep_module, "estimated_pace", lambda *_: sweep_module.Pace(
        1e-8, STEP_SECONDS, "this machine"))
    monkeypatch.setattr(data, "held_out_batches", lambda data_cfg, train_cfg: 50)
    assert sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", "--processes", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    seconds, evaluated = _hand_estimate(runs, 50, 1e-8)
    for run in runs:
        row = next(line for line in lines if line.startswith(run.name + " "))
        assert row.endswith(" " + sweep_module.format_minutes(seconds[run.name] / 60))
    assert f"; held-out evaluations add {evaluated:.3g}, about" in lines[-1]


def test_dry_run_says_when_the_whole_held_out_split_is_not_counted(tmp_path, monkeypatch, capsys):
    from scaling import data

    path = _ladder(tmp_path, final_eval_batches=-1)
    runs = _expand(load_config(str(path)), path)
    monkeypatch.setattr(sweep_module, "estimated_pace", lambda *_: sweep_module.Pace(
        1e-8, STEP_SECONDS, "this machine"))
    monkeypatch.setattr(data, "held_out_batches", lambda data_cfg, train_cfg: None)
    assert sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", "--processes", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    seconds, evaluated = _hand_estimate(runs, 0, 1e-8)  # the periodic evaluations only
    for run in runs:
        row = next(line for line in lines if line.startswith(run.name + " "))
        assert row.endswith(" " + sweep_module.format_minutes(seconds[run.name] / 60) + "+")
    total = sum(seconds.values())
    assert lines[-1].endswith(
        f"; held-out evaluations add at least {evaluated:.3g}, about {sweep_module.format_minutes(total / 60)} on this machine, one run at a time; "
        "not counting the final evaluation of the whole held-out split in 4 runs (its size is "
        "known once the data is prepared)")


def _planned(name, flops, parent=""):
    return plans.PlannedRun(name=name, overrides={}, size="s", params=1, non_embedding_params=1,
                            tokens=10, steps=10, flops=flops, flop_convention="full",
                            parent=parent)


def test_the_wall_clock_time_follows_the_schedulers_order():
    seconds = {"a": 10.0, "b": 10.0, "c": 10.0}
    three = [_planned(name, 10.0) for name in seconds]
    # Two places, three equal runs: the third starts when one ends.
    assert sweep_module.wall_seconds(three, seconds, 2) == 20.0
    assert sweep_module.wall_seconds(three, seconds, 3) == 10.0
    assert sweep_module.wall_seconds(three, seconds, 1) == 30.0
    # A main run m, another run x, and m's two branches: x ends at 5, and the place it frees
    # stays empty until m ends at 10 and its branches start.
    runs = [_planned("m", 10.0), _planned("x", 5.0), _planned("b1", 2.0, "m"),
            _planned("b2", 2.0, "m")]
    seconds = {"m": 10.0, "x": 5.0, "b1": 2.0, "b2": 2.0}
    assert sweep_module.wall_seconds(runs, seconds, 2) == 12.0
    assert sweep_module.wall_seconds(runs, seconds, 1) == 19.0
    # A branch whose parent is not in the list (finished before) starts at once.
    assert sweep_module.wall_seconds(runs[2:], seconds, 2) == 2.0


def test_the_held_out_batches_of_a_plan_are_those_the_loader_evaluates(repo, tmp_path):
    from scaling import data
    from scaling.train import load_and_validate

    config = load_and_validate(f"{repo}/configs/demo.py:runlocal", [
        "train.batch_size=8", "data.seq_len=32", "train.final_eval_batches=-1"])
    with data.make_loader(config.data, batch_size=8, seed=0, train_cfg=config.train) as loader:
        expected = loader.eval_batch_count(-1)
    assert data.held_out_batches(config.data, config.train) == expected > 1
    # A dataset that needs a download is not prepared for an estimate.
    remote = config.copy_and_resolve_references()
    remote.data.dataset, remote.data.tfds_data_dir = "tiny_shakespeare", str(tmp_path / "tfds")
    assert data.held_out_batches(remote.data, remote.train) is None
    assert not (tmp_path / "tfds" / "tiny_shakespeare").exists()
    # Nor is a SentencePiece model trained for one.
    trained = config.copy_and_resolve_references()
    trained.data.tokenizer, trained.data.vocab_size = "sentencepiece", 300
    trained.data.cache_dir = str(tmp_path / "cache")
    assert data.held_out_batches(trained.data, trained.train) is None
    assert not (tmp_path / "cache" / "tokenizers").exists()


def _readme_sweep_commands(repo):
    """The `scaling-sweep` commands of README.md's "Sweeps" section, continuation lines joined."""
    import re
    import shlex
    section = (repo / "README.md").read_text().split("\n## Sweeps\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = block.replace("\\\n", " ").splitlines()
    return [shlex.split(re.sub(r"\s+#.*$", "", line))[1:] for line in commands
            if line.startswith(".venv/bin/scaling-sweep ")]


def test_the_readme_sweep_commands_plan(repo, tmp_path, capsys, monkeypatch):
    """Every sweep command README.md shows is accepted: its dry run plans the study (a bad
    override in the example would exit 2 instead)."""
    monkeypatch.chdir(repo)
    commands = _readme_sweep_commands(repo)
    assert len(commands) == 2, commands
    for argv in commands:
        workdir = argv.index("--workdir") + 1
        argv[workdir] = str(tmp_path / "w")
        argv += [] if "--dry-run" in argv else ["--dry-run"]
        result = run_in_process(sweep_module.main, argv, capsys, "scaling-sweep")
        assert result.returncode == 0, (argv, result.stderr)
        assert "FLOPs if each were trained alone" in result.stdout.splitlines()[-1]
    assert not (tmp_path / "w").exists()


def test_the_time_estimate_is_of_palms_flops_whatever_the_runs_report(tmp_path):
    # The MFU an estimate assumes is PaLM's count; a run that reports 6N FLOPs (fewer) took as
    # long as one that reports the full count. A GPU's float32 peak is half its bf16 one.
    path = _write_sweep(tmp_path)
    times = {}
    for convention in ("6N", "full"):
        for dtype in ("float32", "bfloat16"):
            _, _, runs = sweep_module.load_plan(str(path), [
                f"overrides.train.flop_convention={convention}",
                f"overrides.model.compute_dtype={dtype}"])
            pace = sweep_module.estimated_pace("8xH100", sweep_module.runs_dtype(runs))
            times[convention, dtype] = sum(sweep_module.run_seconds(run, pace, {})[0]
                                           for run in runs)
            if convention == "6N":
                assert sum(run.flops for run in runs) < 0.9 * sum(run.mfu_flops for run in runs)
    assert times["6N", "float32"] == pytest.approx(times["full", "float32"], rel=1e-12)
    assert times["6N", "bfloat16"] == pytest.approx(times["full", "bfloat16"], rel=1e-12)
    assert times["full", "float32"] == pytest.approx(2 * times["full", "bfloat16"], rel=1e-12)
    # Each run's PaLM count, by hand: 6 × (matmul parameters + readout) + 12·L·H·d_head·L_seq.
    run = runs[0]
    model = run.config.model
    layers, width, length = model.num_layers, model.d_model, run.config.data.seq_len
    matmul = layers * (4 * width * width + 2 * width * 4 * width) + width * 257
    per_token = 6 * matmul + 12 * layers * width * length
    assert run.mfu_flops == pytest.approx(run.tokens * per_token, rel=1e-12), (run.name, model)
    assert "float32 peak; FLOPs only" in sweep_module.estimated_pace("8xH100", "float32").device

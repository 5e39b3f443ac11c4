"""`launch.progress`: the sweep's status line and its time left, against a hand count."""

import io
import json

import pytest

from launch.plans import PlannedRun
from launch.progress import SweepProgress, last_record


def planned(name, steps, flops, start_step=0):
    return PlannedRun(name=name, overrides={}, size="s", params=1, non_embedding_params=1,
                      tokens=steps, steps=steps, flops=flops, flop_convention="6N",
                      start_step=start_step)


def log_steps(run_dir, *records):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "a") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def test_status_line_and_time_left(tmp_path):
    # a: 100 steps, 1000 FLOPs. b: a branch from step 50 of 100, 2000 FLOPs alone, so 1000 of
    # study. c: 100 steps, 3000 FLOPs, pending. Total study FLOPs: 5000.
    runs = [planned("a", 100, 1000.0), planned("b", 100, 2000.0, start_step=50),
            planned("c", 100, 3000.0)]
    now = [0.0]
    stream = io.StringIO()
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=stream,
                             clock=lambda: now[0])
    log_steps(tmp_path / "a", {"step": 20, "train_loss": 5.0})  # resumed: 200 FLOPs done before
    progress.started("a")
    progress.started("b")
    assert f"started a: log {tmp_path / 'a' / 'train.log'}" in stream.getvalue()
    assert progress.seconds_left() is None  # nothing trained yet in this invocation
    now[0] = 10.0
    log_steps(tmp_path / "a", {"step": 60, "train_loss": 4.25})  # +400 FLOPs
    log_steps(tmp_path / "b", {"step": 60, "train_loss": 3.5})  # 10 of 50 steps: +200 FLOPs
    # 600 FLOPs in 10 s; left: 5000 - (600 + 200 trained of a and b) = 4200 → 70 s.
    assert progress.seconds_left() == pytest.approx(70.0)
    assert progress.line() == ("[sweep] 0 done, 2 running, 1 pending, ETA 1m10s | "
                               "a step 60/100 loss 4.2500 | b step 60/100 loss 3.5000")
    now[0] = 20.0
    log_steps(tmp_path / "a", {"step": 100, "train_loss": 4.0})
    progress.ended("a")
    # Trained now: a 800, b 200 → 1000 in 20 s; left: 5000 - 1000 (a) - 200 (b) = 3800 → 76 s.
    assert progress.seconds_left() == pytest.approx(76.0)
    assert progress.line().startswith("[sweep] 1 done, 1 running, 1 pending, ETA 1m16s | b step")


def test_a_pending_run_trained_in_part_before_counts_only_what_it_has_left(tmp_path):
    # a: 100 steps, 1000 FLOPs, running. c: 100 steps, 3000 FLOPs, pending, preempted at step 40
    # by an earlier invocation: 1800 of its FLOPs are left.
    runs = [planned("a", 100, 1000.0), planned("c", 100, 3000.0)]
    now = [0.0]
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=io.StringIO(),
                             clock=lambda: now[0])
    log_steps(tmp_path / "c", {"step": 40, "train_loss": 4.0})
    progress.started("a")
    now[0] = 10.0
    log_steps(tmp_path / "a", {"step": 50, "train_loss": 4.5})  # 500 FLOPs in 10 s
    # Left: a 500 + c 1800 = 2300 at 50 FLOP/s → 46 s.
    assert progress.seconds_left() == pytest.approx(46.0)


def test_last_record_skips_a_line_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n{"step": 4}\n{"step": ')
    assert last_record(path) == {"step": 4}
    assert last_record(tmp_path / "missing.jsonl") is None

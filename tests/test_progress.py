"""`launch.progress`: the sweep's status line and its time left, against a hand count; and a run's own
progress line (`scaling.tracking.Progress`)."""

import io
import json

import pytest

from launch.plans import PlannedRun
from launch.progress import SweepProgress, last_record
from scaling.tracking import Progress


def planned(name, steps, flops, start_step=0, size="s", params=1, parent=""):
    return PlannedRun(name=name, overrides={}, size=size, params=params, non_embedding_params=1,
                      tokens=10 * steps, steps=steps, flops=flops, flop_convention="6N",
                      parent=parent, start_step=start_step)


def log_steps(run_dir, *records):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "a") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def speed(step, tokens_per_second, flops_per_token=1.0, **record):
    """A logged step of a run of 10 tokens per step."""
    return {"step": step, "tokens": 10 * step, "flops": 10 * step * flops_per_token,
            "tokens_per_second": tokens_per_second, **record}


def test_status_line_and_time_left(tmp_path):
    # Two processes. a: 100 steps of 10 tokens, resumed at step 20. b: a branch of the same size
    # from step 50. c: pending, another size 10x larger in parameters, 3 FLOPs per token.
    runs = [planned("a", 100, 1000.0), planned("b", 100, 1000.0, start_step=50, parent="a"),
            planned("c", 100, 3000.0, size="big", params=10)]
    now = [0.0]
    stream = io.StringIO()
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=stream,
                             clock=lambda: now[0], processes=2)
    log_steps(tmp_path / "a", {"step": 20, "train_loss": 5.0})  # an earlier invocation's
    (tmp_path / "a" / "checkpoints" / "20").mkdir(parents=True)  # and its checkpoint
    progress.started("a")
    progress.started("b")
    assert f"started a: log {tmp_path / 'a' / 'train.log'}" in stream.getvalue()
    assert progress.seconds_left() is None  # no speed logged yet
    now[0] = 10.0
    log_steps(tmp_path / "a", speed(60, 100.0, train_loss=4.25))
    log_steps(tmp_path / "b", speed(60, 100.0, train_loss=3.5))
    # a: 40 steps left at 100 tokens/s = 4 s (its expected 8 s since step 20 already passed).
    # b: 4 s likewise. c: 1000 tokens x 3 FLOPs at the FLOP rate of size s (100 FLOP/s): 30 s.
    # Shared by two processes: 38 / 2 = 19 s, but c alone takes 30 s.
    assert progress.seconds_left() == pytest.approx(30.0)
    # No run has ended, so the time each spends outside its steps (start-up, compiling, the
    # final evaluation) is unknown: the ETA is a lower bound (it read 0m00s for short runs).
    assert progress.line() == ("[sweep] 0 done, 2 running, 1 pending, ETA >0m30s | "
                               "a step 60/100 loss 4.2500 | b step 60/100 loss 3.5000")
    now[0] = 20.0
    log_steps(tmp_path / "a", speed(100, 100.0, train_loss=4.0))
    progress.ended("a")
    # a trained 80 steps (8 s) in 20 s: 12 s outside its steps, which every run then adds.
    # b: expected 12 + 5 s, 20 s gone: its 4 s of steps left. c: 12 + 30 = 42 s.
    assert progress.seconds_left() == pytest.approx(42.0)
    assert progress.line().startswith("[sweep] 1 done, 1 running, 1 pending, ETA 0m42s | b step")
    progress.started("c")
    now[0] = 25.0
    log_steps(tmp_path / "c", speed(10, 50.0, flops_per_token=3.0))
    # c at its own speed: expected 12 + 1000 / 50 = 32 s, 5 s gone: 27 s (more than its 18 s
    # of steps left). b: 4 s. (27 + 4) / 2 < 27.
    assert progress.seconds_left() == pytest.approx(27.0)


def test_branches_left_count_the_time_outside_their_steps(tmp_path):
    # Six short branches (2 steps each) after a main run: training them takes 0.2 s each, but
    # each run spent 5 s outside its steps; on one process that is most of the time left.
    runs = [planned("main", 100, 1000.0)] + [
        planned(f"b{i}", 100, 1000.0, start_step=98, parent="main") for i in range(6)]
    now = [0.0]
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=io.StringIO(),
                             clock=lambda: now[0])
    progress.started("main")
    now[0] = 15.0
    # Its last window logged 50 tokens/s; its summary, the median over its steps, 100: 10 s of
    # steps.
    log_steps(tmp_path / "main", speed(100, 50.0))
    (tmp_path / "main" / "summary.json").write_text(json.dumps(speed(100, 100.0)))
    progress.ended("main")
    assert progress.seconds_left() == pytest.approx(6 * (5.0 + 0.2))
    # Once a branch has finished, branches count the time branches spend outside their steps.
    progress.started("b0")
    now[0] = 17.0
    log_steps(tmp_path / "b0", speed(100, 100.0))  # 0.2 s of steps in 2 s: 1.8 s outside them
    progress.ended("b0")
    assert progress.seconds_left() == pytest.approx(5 * (1.8 + 0.2))


def test_a_run_that_never_started_teaches_nothing_of_the_time_outside_the_steps(tmp_path):
    # Branches of a parent that diverged end without starting. Each was counted as a branch
    # that spent 0 s outside its steps, and the median over branches, 0, made the ETA of the
    # branches still running 0m00s.
    runs = [planned("main", 100, 1000.0), planned("lost", 100, 1000.0),
            *(planned(f"b{i}", 100, 1000.0, start_step=98, parent="main") for i in range(4))]
    now = [0.0]
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=io.StringIO(),
                             clock=lambda: now[0])
    progress.started("b0")
    now[0] = 3.0
    log_steps(tmp_path / "b0", speed(100, 100.0))  # 0.2 s of steps in 3 s: 2.8 s outside them
    progress.ended("b0")
    progress.ended("b1")  # never started
    progress.ended("b2")
    # b3: 2.8 + 0.2 s. main and lost: 100 steps (10 s) each, plus the only time measured
    # outside the steps, a branch's.
    assert progress.seconds_left() == pytest.approx((2.8 + 0.2) + 2 * (2.8 + 10.0))


def test_a_pending_run_trained_in_part_before_counts_only_what_it_has_left(tmp_path):
    # a: 100 steps, running. c: 100 steps of the same size, pending, preempted at step 40 by an
    # earlier invocation: 60 steps are left.
    runs = [planned("a", 100, 1000.0), planned("c", 100, 1000.0)]
    now = [0.0]
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=io.StringIO(),
                             clock=lambda: now[0])
    log_steps(tmp_path / "c", {"step": 40, "train_loss": 4.0})
    (tmp_path / "c" / "checkpoints" / "40").mkdir(parents=True)
    progress.started("a")
    now[0] = 10.0
    log_steps(tmp_path / "a", speed(50, 50.0))
    # a: expected 100 steps x 10 tokens / 50 = 20 s, 10 s gone: 10 s. c: 600 tokens: 12 s.
    assert progress.seconds_left() == pytest.approx(22.0)


def test_steps_logged_past_the_checkpoint_a_run_resumes_from_are_trained_again(tmp_path):
    # a: killed at step 900 of 1000, its newest checkpoint at 200; it resumes at 200 and rewrites
    # its log without steps 201-900 as it starts. Counted from 900, its ETA read 100 steps while
    # 800 were left, and the 700 steps between were taken for start-up time, which every later
    # run then added (the next run's ETA 1,710 s for 1,010).
    runs = [planned("a", 1000, 1e4), planned("b", 1000, 1e4), planned("c", 1000, 1e4)]
    now = [0.0]
    progress = SweepProgress(runs, lambda name: tmp_path / name, stream=io.StringIO(),
                             clock=lambda: now[0])
    log_steps(tmp_path / "a", *(speed(step, 10.0) for step in (100, 200, 900)))
    (tmp_path / "a" / "checkpoints" / "200").mkdir(parents=True)
    # b, pending, was killed the same way: it has 1000 - 300 steps left, not 1000 - 600.
    log_steps(tmp_path / "b", speed(300, 10.0), speed(600, 10.0))
    (tmp_path / "b" / "checkpoints" / "300").mkdir(parents=True)
    progress.started("a")
    # 10 tokens a step at 10 tokens/s: a second a step. a: 800 s; b: 700 s; c: 1000 s.
    assert progress.seconds_left() == pytest.approx(800 + 700 + 1000)
    assert " a step 200/1000 " in progress.line() + " "
    now[0] = 10.0  # a has restored its checkpoint and dropped the steps past it
    path = tmp_path / "a" / "metrics.jsonl"
    replaced = path.with_suffix(".new")
    replaced.write_text("".join(json.dumps(speed(step, 10.0)) + "\n" for step in (100, 200, 210)))
    replaced.replace(path)
    assert " a step 210/1000 " in progress.line() + " "
    now[0] = 810.0
    log_steps(tmp_path / "a", speed(1000, 10.0))
    progress.ended("a")
    # 800 steps (800 s) in 810 s: 10 s outside them, which b and c each add.
    assert progress.finished["a"] == pytest.approx(10.0)
    assert progress.seconds_left() == pytest.approx((10 + 700) + (10 + 1000))


def test_last_record_skips_a_line_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n{"step": 4}\n{"step": ')
    assert last_record(path) == {"step": 4}
    assert last_record(tmp_path / "missing.jsonl") is None


def test_a_runs_first_line_says_how_long_its_first_call_took():
    # Logged after the first call, which compiles, the line had no speed and an ETA of "?".
    progress = Progress(total_steps=100, start_step=0, stream=io.StringIO())
    progress.restart_clock(25, first_call_seconds=6.14)
    assert progress.line({"step": 25, "train_loss": 4.9}) == (
        "step 25/100 | loss 4.9000 | first call 6.1s (incl. compile) | ETA ?")
    assert "first call" not in progress.line({"step": 50, "train_loss": 3.0})

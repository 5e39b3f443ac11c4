"""What a sweep prints while it trains: which runs are done, running and pending, each running
run's step and loss, and the time left from the throughput measured so far.

The numbers come from the runs' own `metrics.jsonl` (the last logged step), so the status costs
the training processes nothing; steps an earlier invocation logged past a run's newest checkpoint
(a run killed between saves) are not counted until the run has dropped them on resuming: it trains
them again. The time left adds up what each unfinished run has left, over the
processes that train them side by side: its steps left at the tokens per second its size last
logged (a size none has logged yet: at the FLOP rate of the measured size nearest in parameters),
plus the time a run spends outside its training steps — starting, compiling, its final evaluation,
saving — measured on the runs finished so far (the median, over cooldown branches for a branch
and over the other runs for the others when they have any). FLOPs alone would not do: a cooldown
branch trains few steps but spends seconds starting and evaluating, and a small model trains far
fewer FLOPs per second than a large one.
"""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import sys
import time
from typing import Callable

from scaling.checkpoint import committed_steps
from scaling.tracking import format_duration


def _inode(path: pathlib.Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def last_record(metrics_path: pathlib.Path) -> dict | None:
    """The last complete record of a metrics.jsonl, or None."""
    try:
        lines = metrics_path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(record, dict):
            return record
    return None


class SweepProgress:
    """Counts and clocks for the runs a sweep trains in this invocation, `processes` at a time;
    `line()` says where it stands in one line."""

    def __init__(self, runs, run_dir: Callable[[str], pathlib.Path], stream=None,
                 clock: Callable[[], float] = time.monotonic, log_file: str = "train.log",
                 processes: int = 1):
        self.runs = {run.name: run for run in runs}
        self.run_dir, self.stream, self.clock = run_dir, stream or sys.stdout, clock
        self.log_file, self.processes = log_file, max(1, processes)
        self.running: dict[str, tuple[float, int]] = {}  # name → (clock, step) when it started
        # name → the metrics.jsonl a running run started with, while it holds steps logged past
        # the checkpoint it resumes from (the run rewrites the file without them as it starts)
        self.stale: dict[str, int | None] = {}
        # name → its seconds outside its training steps (None: no size measured when it ended)
        self.finished: dict[str, float | None] = {}
        self.speeds: dict[str, tuple[float, float]] = {}  # size → (tokens/s, FLOPs per token)

    def _note_speed(self, size: str, record: dict) -> None:
        speed, tokens, flops = (record.get(key) for key in ("tokens_per_second", "tokens", "flops"))
        if all(isinstance(value, (int, float)) and value > 0 for value in (speed, tokens, flops)):
            self.speeds[size] = (float(speed), flops / tokens)

    def _resume_step(self, name: str) -> int:
        """The step the run (re)starts from: its newest committed checkpoint's, else its start."""
        run = self.runs[name]
        saved = committed_steps(self.run_dir(name))
        return min(max(saved[-1] if saved else run.start_step, run.start_step), run.steps)

    def _step(self, name: str) -> int:
        """The run's last logged step (its start step before any), not past the checkpoint it
        resumes from while its log holds an earlier invocation's steps; notes its size's speed."""
        run = self.runs[name]
        path = self.run_dir(name) / "metrics.jsonl"
        record = last_record(path) or {}
        self._note_speed(run.size, record)
        step = min(max(int(record.get("step", run.start_step)), run.start_step), run.steps)
        if name in self.running:
            stale = self.stale.get(name) is not None and self.stale[name] == _inode(path)
            return min(step, self.running[name][1]) if stale else step
        return min(step, self._resume_step(name))

    def _steps_seconds(self, name: str, steps: int) -> float | None:
        """Seconds to train `steps` of a run at its size's speed (None: no size measured)."""
        run = self.runs[name]
        tokens = steps * run.tokens / run.steps
        if run.size in self.speeds:
            return tokens / self.speeds[run.size][0]
        if not self.speeds:
            return None
        # The FLOP rate of the measured size nearest in parameters.
        nearest = min(self.speeds, key=lambda size: abs(math.log(
            self._params(size) / max(run.params, 1))))
        speed, flops_per_token = self.speeds[nearest]
        return tokens * (run.flops / run.tokens) / (speed * flops_per_token)

    def _params(self, size: str) -> int:
        return max(next(run.params for run in self.runs.values() if run.size == size), 1)

    def started(self, name: str) -> None:
        resume, path = self._resume_step(name), self.run_dir(name) / "metrics.jsonl"
        logged = (last_record(path) or {}).get("step", self.runs[name].start_step)
        self.stale[name] = _inode(path) if int(logged) > resume else None
        self.running[name] = (self.clock(), resume)
        log = self.run_dir(name) / self.log_file
        print(f"started {name}: log {log}", file=self.stream, flush=True)

    def ended(self, name: str) -> None:
        if name not in self.running:  # it never started (a branch of a parent that failed):
            self.finished[name] = None  # no time outside its steps to learn from
            return
        step = self._step(name)  # while it counts as running: its own log, not a stale one
        started, first_step = self.running.pop(name)
        self.stale.pop(name, None)
        # An ended run's summary has its median speed; the last logged window's can be far off.
        try:
            summary = json.loads((self.run_dir(name) / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None
        if isinstance(summary, dict):
            self._note_speed(self.runs[name].size, summary)
        training = self._steps_seconds(name, step - first_step)
        self.finished[name] = (None if training is None
                               else max(self.clock() - started - training, 0.0))

    def _overhead(self, run) -> float:
        """The median time the finished runs spent outside their steps: those of the same kind
        (cooldown branches, which restore a checkpoint, or runs from scratch, which save theirs
        for the branches) when any has finished, else all."""
        measured = [(bool(self.runs[name].parent), seconds)
                    for name, seconds in self.finished.items() if seconds is not None]
        alike = [seconds for branch, seconds in measured if branch == bool(run.parent)]
        overheads = alike or [seconds for _, seconds in measured]
        return statistics.median(overheads) if overheads else 0.0

    def seconds_left(self) -> float | None:
        """What the unfinished runs have left, shared among the processes (at least the longest
        one's); None before any size has logged a speed. A running run has left its expected time
        less what it has run, and at least its steps left; a pending run that an earlier
        invocation trained part of (to resume from its checkpoint) counts only the rest."""
        steps = {name: self._step(name) for name in self.runs if name not in self.finished}
        if not self.speeds:
            return None
        left = []
        for name, step in steps.items():
            run = self.runs[name]
            overhead = self._overhead(run)
            rest = self._steps_seconds(name, run.steps - step)
            if name in self.running:
                started, first_step = self.running[name]
                expected = overhead + self._steps_seconds(name, run.steps - first_step)
                left.append(max(expected - (self.clock() - started), rest))
            else:
                left.append(overhead + rest)
        return max(sum(left) / self.processes, max(left, default=0.0))

    def line(self) -> str:
        pending = len(self.runs) - len(self.finished) - len(self.running)
        left = self.seconds_left()
        eta = "?" if left is None else format_duration(left)
        if left is not None and not any(s is not None for s in self.finished.values()):
            eta = ">" + eta  # no run has ended: the time outside the steps is not yet known
        parts = [f"[sweep] {len(self.finished)} done, {len(self.running)} running, "
                 f"{pending} pending, ETA {eta}"]
        for name in sorted(self.running):
            record, step = last_record(self.run_dir(name) / "metrics.jsonl") or {}, self._step(name)
            loss = record.get("train_loss") if record.get("step") == step else None  # not stale
            parts.append(f"{name} step {step}/{self.runs[name].steps}"
                         + (f" loss {loss:.4f}" if isinstance(loss, (int, float)) else ""))
        return " | ".join(parts)

    def show(self) -> None:
        print(self.line(), file=self.stream, flush=True)

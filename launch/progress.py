"""What a sweep prints while it trains: which runs are done, running and pending, each running
run's step and loss, and the time left from the throughput measured so far.

The numbers come from the runs' own `metrics.jsonl` (the last logged step), so the status costs
the training processes nothing. The time left is the sweep's remaining FLOPs (each run's share of
the study, `PlannedRun.study_flops`) over the FLOPs per second its runs have trained since this
invocation started — all runs at once, so running several in parallel is accounted for.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Callable

from scaling.tracking import format_duration


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
    """Counts and clocks for the runs a sweep trains in this invocation; `line()` says where it
    stands in one line."""

    def __init__(self, runs, run_dir: Callable[[str], pathlib.Path], stream=None,
                 clock: Callable[[], float] = time.monotonic, log_file: str = "train.log"):
        self.runs = {run.name: run for run in runs}
        self.run_dir, self.stream, self.clock = run_dir, stream or sys.stdout, clock
        self.log_file = log_file
        self.start = clock()
        self.running: dict[str, float] = {}  # name → study FLOPs trained when it started
        self.finished: dict[str, float] = {}  # name → study FLOPs trained in this invocation

    def trained_flops(self, name: str) -> float:
        """The study FLOPs a run has trained so far, from its last logged step."""
        run = self.runs[name]
        record = last_record(self.run_dir(name) / "metrics.jsonl") or {}
        span = run.steps - run.start_step
        done = min(max(record.get("step", run.start_step) - run.start_step, 0), span)
        return run.study_flops * done / span if span else 0.0

    def started(self, name: str) -> None:
        self.running[name] = self.trained_flops(name)
        log = self.run_dir(name) / self.log_file
        print(f"started {name}: log {log}", file=self.stream, flush=True)

    def ended(self, name: str) -> None:
        baseline = self.running.pop(name, 0.0)
        self.finished[name] = max(self.trained_flops(name) - baseline, 0.0)

    def seconds_left(self) -> float | None:
        """Remaining FLOPs over the FLOP/s measured since start; None before any step. A run
        not finished counts what it has left past its last logged step, so a pending run that an
        earlier invocation trained part of (to resume from its checkpoint) counts only the rest."""
        progress = {name: self.trained_flops(name) for name in self.running}
        trained_now = sum(self.finished.values()) + sum(
            max(progress[name] - baseline, 0.0) for name, baseline in self.running.items())
        elapsed = self.clock() - self.start
        if trained_now <= 0 or elapsed <= 0:
            return None
        remaining = sum(run.study_flops - (progress[name] if name in progress
                                           else self.trained_flops(name))
                        for name, run in self.runs.items() if name not in self.finished)
        return max(remaining, 0.0) / (trained_now / elapsed)

    def line(self) -> str:
        pending = len(self.runs) - len(self.finished) - len(self.running)
        left = self.seconds_left()
        parts = [f"[sweep] {len(self.finished)} done, {len(self.running)} running, "
                 f"{pending} pending, ETA {format_duration(left) if left is not None else '?'}"]
        for name in sorted(self.running):
            record = last_record(self.run_dir(name) / "metrics.jsonl") or {}
            loss = record.get("train_loss")
            parts.append(f"{name} step {record.get('step', self.runs[name].start_step)}/"
                         f"{self.runs[name].steps}"
                         + (f" loss {loss:.4f}" if isinstance(loss, (int, float)) else ""))
        return " | ".join(parts)

    def show(self) -> None:
        print(self.line(), file=self.stream, flush=True)

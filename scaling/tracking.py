"""Where a run's numbers go: `metrics.jsonl` always, `summary.json` at the end, W&B when enabled,
and a progress line for the human watching.

Only process 0 writes. Files are replaced atomically; `metrics.jsonl` is cut back to the resumed
step on restart, so it never holds a step twice or skips one. W&B is best effort: any W&B error
is logged once and training goes on with W&B off.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import secrets
import string
import sys
import time

from scaling import files

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id.txt"


class MetricsLog:
    """Append-only `metrics.jsonl`, one JSON object per logged step."""

    def __init__(self, path: pathlib.Path, resume_step: int):
        self.path = path
        self.records = self._truncate_after(resume_step)
        self._file = open(path, "a")

    def _truncate_after(self, step: int) -> list[dict]:
        """Drop records past `step` (written after the checkpoint the run resumes from) and any
        half-written line; return the records kept."""
        if not self.path.exists():
            return []
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(record)
        files.write_text_atomic(
            self.path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept))
        return kept

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """All records of a metrics.jsonl."""
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def new_run_id() -> str:
    """A fresh W&B run id: 8 lowercase letters and digits, as W&B makes them."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbRun:
    """A W&B run that resumes with the workdir and never stops training when W&B fails."""

    def __init__(self, config, workdir: pathlib.Path, *, name: str, config_dict: dict):
        self._run = None
        mode = config.wandb.mode
        if mode == "disabled":
            return
        if mode == "online" and not os.environ.get("WANDB_API_KEY"):
            log.warning("wandb.mode='online' but WANDB_API_KEY is not set: logging offline; "
                        "upload later with `wandb sync %s/wandb/offline-run-*`", workdir)
            mode = "offline"
        try:
            import wandb  # 1.5 s to import: only for runs that log to W&B

            id_file = workdir / WANDB_ID_FILE
            run_id = (id_file.read_text().strip() if id_file.exists() else "") or new_run_id()
            # Written before init, so a restart reuses the id even if this init fails.
            files.write_text_atomic(id_file, run_id + "\n")
            self._run = wandb.init(
                project=config.wandb.project, entity=config.wandb.entity or None,
                group=config.wandb.group or None, name=name, id=run_id, resume="allow",
                tags=[tag for tag in config.wandb.tags.split(",") if tag], config=config_dict,
                dir=str(workdir), mode=mode,
                settings=wandb.Settings(init_timeout=60, silent=True))
            for axis in ("tokens", "flops"):
                self._run.define_metric(axis)
            self._run.define_metric("*", step_metric="step")
        except Exception as error:  # W&B is optional: note it and train on
            log.warning("W&B could not start (%s: %s); continuing without it",
                        type(error).__name__, error)
            self._run = None

    @property
    def run_id(self) -> str | None:
        return self._run.id if self._run is not None else None

    def log(self, record: dict) -> None:
        if self._run is None:
            return
        try:
            self._run.log({key: value for key, value in record.items() if value is not None})
        except Exception as error:
            log.warning("W&B logging failed (%s); continuing without it", error)
            self._run = None

    def finish(self, summary: dict) -> None:
        if self._run is None:
            return
        try:
            for key, value in summary.items():
                if isinstance(value, (int, float, str)):
                    self._run.summary[key] = value
            self._run.finish(exit_code=0 if summary.get("status") == "completed" else 1)
        except Exception as error:
            log.warning("W&B finish failed (%s)", error)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
    """One line per log step: step, loss, eval loss, tokens/s, MFU and the time left."""

    def __init__(self, total_steps: int, start_step: int, stream=None):
        self.total_steps = total_steps
        self._stream = stream or sys.stdout
        self._start_step, self._start_time = start_step, time.perf_counter()

    def restart_clock(self, step: int) -> None:
        """Measure speed from here (after compilation), so the ETA is not skewed by it."""
        self._start_step, self._start_time = step, time.perf_counter()

    def line(self, record: dict) -> str:
        step = record["step"]
        elapsed = time.perf_counter() - self._start_time
        done = step - self._start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else float("nan")
        parts = [f"step {step}/{self.total_steps}", f"loss {record['train_loss']:.4f}"]
        if record.get("eval_loss") is not None:
            parts.append(f"eval {record['eval_loss']:.4f}")
        parts.append(f"{record['tokens_per_second']:,.0f} tok/s")
        if record.get("mfu") is not None:
            parts.append(f"MFU {100 * record['mfu']:.1f}%")
        parts.append(f"ETA {format_duration(eta) if eta == eta else '?'}")
        return " | ".join(parts)

    def show(self, record: dict) -> None:
        print(self.line(record), file=self._stream, flush=True)

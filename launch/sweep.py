"""`scaling-sweep`: run a sweep's planned runs as `scaling-train` subprocesses and gather the results.

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo [--processes 2] [--dry-run]
                  [--config.tokens_per_param=10 --config.overrides.wandb.mode=offline ...]

Each run trains in `<workdir>/runs/<name>/` in its own process (a crash or an out-of-memory kill
takes down one run, not the sweep). Finished runs are skipped (one recorded with another config
than the plan's is refused, naming the field), preempted or interrupted ones resume from their
checkpoints, failed ones are marked with their error while the rest go on; a cooldown branch
starts once its parent run has completed. After every run, `<workdir>/results.csv` (one row
per run) and `<workdir>/curves.csv` (every logged point of every run) are rewritten atomically from
the runs' own files, so a killed sweep never leaves a half-written table and a rerun only trains
what is unfinished.
"""

from __future__ import annotations

# `python -m launch.sweep` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.sweep())

import concurrent.futures
import contextlib
import csv
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import jax

from launch import evaluation, plans
from launch.plans import format_value
from launch import results
from launch.progress import SweepProgress
from launch.results import CURVE_COLUMNS, RESULT_COLUMNS
from scaling import branches, budget, files, hardware, interrupts, memory, status, tracking
from scaling.config import (COMPUTE_ONLY_MODEL_FIELDS, derive_model_fields, differing_fields,
                            model_config)
from scaling.data import text_files
from scaling.errors import NOT_ALLOWED, ArgumentParser, ConfigError, WorkdirBusy
from scaling.overrides import SWEEP_OVERRIDES_HELP, load_config, split_argv
from scaling.trained import newest_checkpoint_record
from scaling.trainer import model_fields, resume_conflict

PARENT_PLACEHOLDER = "<parent>"
EXIT_NOT_STARTED = -1  # `execute` when the sweep stopped before the run could start


def run_directory(workdir: pathlib.Path, name: str) -> pathlib.Path:
    return workdir / "runs" / name


def is_finished(run_dir: pathlib.Path, run: plans.PlannedRun) -> bool:
    """Completed or diverged runs of this plan's length are final; preempted, failed or
    interrupted ones run again. A run of another length (the plan changed) is not finished, and
    `check_resumable` refuses its checkpoint before any run starts."""
    summary = files.read_summary(run_dir)
    return (summary is not None and summary.get("status") in status.FINAL
            and summary.get("total_steps", run.steps) == run.steps)


# Run-config fields that say where and how a run is computed, logged and saved, not what it
# computes: a finished run recorded with other values is still the run the plan asks for. (The
# stable states a parent saved for its branches, `train.branch_steps`, are checked by
# `check_stable_states`.)
OPERATIONAL_FIELDS = ("wandb.", "checkpoint.", "distributed.", "mesh.", "data.cache_dir",
                      "data.tfds_data_dir", "data.prefetch", "train.log_every",
                      "train.eval_every", "train.compilation_cache", "train.grad_accum_steps",
                      "train.steps_per_call",
                      "train.branch_steps",
                      *(f"model.{name}" for name in COMPUTE_ONLY_MODEL_FIELDS))


def _comparable(config: dict, parent_field: str) -> dict:
    """A run config's fields, dotted, without the operational ones; its data paths absolute
    (`text_files.absolute_paths`), and a branch's `train.init_from` as the parent's run name,
    not its path; its model's derived fields derived (`derive_model_fields`)."""
    if isinstance(config.get("model"), dict):
        config = {**config, "model": derive_model_fields(config["model"])}
    flat = text_files.absolute_paths(plans.flatten(config))
    if flat.get(parent_field):
        flat[parent_field] = pathlib.PurePath(flat[parent_field]).name
    return {key: value for key, value in flat.items() if not key.startswith(OPERATIONAL_FIELDS)}


def check_summaries(workdir: pathlib.Path, runs: list[plans.PlannedRun]) -> None:
    """A run folder whose summary.json is not a JSON object (truncated by a copy, or written by
    something else) would read as a pending run and its row lose what the run recorded:
    ConfigError naming the file and what to do."""
    for run in runs:
        path = run_directory(workdir, run.name) / "summary.json"
        try:
            summary = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            reason = str(error) or type(error).__name__
        else:
            if isinstance(summary, dict):
                continue
            reason = f"a JSON {type(summary).__name__}, not an object"
        raise ConfigError("--workdir", str(workdir), (
            f"run {run.name}'s summary.json is unreadable ({reason}); restore it, or delete "
            f"{path} to have the sweep run {run.name} again"))


def check_finished_configs(workdir: pathlib.Path, runs: list[plans.PlannedRun],
                           finished: set[str], planner: plans.Planner) -> None:
    """A finished run whose recorded config differs from the one the plan resolves for it (a
    changed override, seed or model field) would never train again and keep its old row:
    ConfigError naming the run and its first differing field, and what to do."""
    for run in runs:
        run_dir = run_directory(workdir, run.name)
        recorded = (files.read_summary(run_dir) or {}).get("config")
        if run.name not in finished or not recorded:
            continue
        planned = _comparable(planner.resolve(run_overrides(run, workdir), run.name).to_dict(),
                              "train.init_from")
        recorded = _comparable(recorded, "train.init_from")
        field = next(iter(differing_fields(recorded, planned)), None)
        if field:
            raise ConfigError("--workdir", str(workdir), (
                f"run {run.name} finished there with {field}={recorded[field]!r}, the plan sets "
                f"{planned[field]!r}; use a new --workdir, or delete {run_dir} to train it again"))


def check_stable_states(workdir: pathlib.Path, todo: list[plans.PlannedRun],
                        finished: set[str]) -> None:
    """A branch to train whose parent finished without the stable state it starts from (the
    parent trained under other budgets or another `decay_fraction`, at the same length) could
    never start, and rerunning would not train the parent again: ConfigError saying what to do."""
    for run in todo:
        parent_dir = run_directory(workdir, run.parent)
        completed = (run.parent in finished
                     and (files.read_summary(parent_dir) or {}).get("status") == status.COMPLETED)
        # (A diverged parent fails its branches one by one, in `Scheduler._ready`.) Its stable
        # folder holds one folder per committed step, named by the step.
        stable = parent_dir / branches.STABLE_FOLDER
        if completed and not (stable / str(run.start_step)).is_dir():
            raise ConfigError("--workdir", str(workdir), (
                f"run {run.name} starts from step {run.start_step} of {run.parent}, which "
                "finished without saving it (it trained under other budgets or decay_fraction); "
                f"delete {parent_dir} to train it again"))


def check_resumable(workdir: pathlib.Path, todo: list[plans.PlannedRun],
                    planner: plans.Planner) -> None:
    """A started run whose newest checkpoint was saved under another length, other batches,
    another optimizer or another model than the plan now gives it (a changed token budget, batch
    size, rate or dropout), or that has passed a step the plan now branches it at (a budget added
    below it), would be refused by `scaling-train` as it started, and its row marked failed, one
    run at a time: ConfigError naming the run and the difference, before any run starts."""
    for run in todo:
        run_dir = run_directory(workdir, run.name)
        record = newest_checkpoint_record(run_dir)
        if record is None:
            continue
        config = planner.resolve(run_overrides(run, workdir), run.name)
        why = resume_conflict(record, config, budget.steps_for(config))
        saved, current = model_fields(record.get("config") or {}), model_fields(config)
        differing = differing_fields(saved, current)
        if not why and differing:  # what restoring its state would refuse, as it started
            why = ("the workdir's checkpoint was trained with a different model (" + ", ".join(
                f"{name}: checkpoint {saved[name]!r}, config {current[name]!r}"
                for name in differing) + ")")
        step = record.get("step", 0)
        if not why and (passed := branches.passed_steps(config, run_dir, step)):
            # A budget added below where a stopped parent stands: its branch could never start.
            why = (f"the plan branches it at steps {passed}, which it has passed (its checkpoint "
                   f"is at step {step}) without saving a stable state there")
        if why:
            raise ConfigError("--workdir", str(workdir), (
                f"run {run.name} cannot resume: {why}; use a new --workdir, or delete {run_dir} "
                "to train it from the start"))


def branch_without_parent(runs: list[plans.PlannedRun], wanted: set[str],
                          workdir: pathlib.Path) -> plans.PlannedRun | None:
    """A wanted branch whose parent is neither wanted nor finished in `workdir`: it could only
    fail, waiting for a run this sweep does not train."""
    by_name = {run.name: run for run in runs}
    return next((run for run in runs if run.name in wanted and run.parent
                 and run.parent not in wanted
                 and not is_finished(run_directory(workdir, run.parent), by_name[run.parent])),
                None)


def run_overrides(run: plans.PlannedRun, workdir: pathlib.Path) -> dict:
    """The run's overrides, a branch's parent placeholder replaced by the parent's folder."""
    return {key: (run_directory(workdir, run.parent).absolute() if value == PARENT_PLACEHOLDER
                  else value) for key, value in run.overrides.items()}


def train_command(run: plans.PlannedRun, base_config: str, workdir: pathlib.Path) -> list[str]:
    """The `scaling-train` command line of one run (what a user would type)."""
    return [sys.executable, "-m", "scaling.train", "--config", base_config,
            "--workdir", str(run_directory(workdir, run.name)),
            *(f"--config.{key}={format_value(value)}"
              for key, value in run_overrides(run, workdir).items())]


class _Children:
    """The running training processes, so a stop reaches every one of them, once.

    Each run is started in a process group of its own, so a signal sent to the sweep's group (a
    Ctrl-C at the terminal, `kill -INT -- -PGID`, `timeout`) reaches the runs only through the
    sweep, which passes it on once; a run dies with the sweep (`interrupts.die_with_sweep`). A
    SIGTERM to the sweep (or a SIGHUP: the terminal that started it closed) makes each run save a
    checkpoint and exit 75, and the sweep exits 75 (rerun to resume). Ctrl-C (SIGINT): the first
    makes each run save and exit 130, a second makes them exit at once; the sweep starts nothing
    more and exits 130."""

    def __init__(self):
        # Re-entrant: the signal handlers take it in the main thread, which may hold it already
        # (a stop that arrives while a process starts).
        self._lock = threading.RLock()
        self._processes: set[subprocess.Popen] = set()
        self.terminating = False
        self.stop_status: str | None = None  # status.PREEMPTED or status.INTERRUPTED
        self._sent: list[int] = []  # the signals passed on so far

    def start(self, command: list[str], log_file) -> subprocess.Popen | None:
        with self._lock:
            if self.terminating:
                return None
            # Its own process group, and no terminal input (which would stop it, as a background
            # group, were it ever read).
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                       stderr=subprocess.STDOUT, process_group=0,
                                       env=dict(os.environ, PYTHONUNBUFFERED="1",
                                                **{interrupts.SWEEP_PID: str(os.getpid())}))
            self._processes.add(process)
            for signum in self._sent:  # a stop that came while it started (in this thread)
                process.send_signal(signum)
            return process

    def finished(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def _stop_all(self, signum: int, stop_status: str) -> None:
        with self._lock:
            self.terminating = True
            if self.stop_status != status.INTERRUPTED:
                self.stop_status = stop_status
            self._sent.append(signum)
            for process in self._processes:
                process.send_signal(signum)

    def terminate_all(self, signum=None, frame=None) -> None:
        del signum, frame
        self._stop_all(signal.SIGTERM, status.PREEMPTED)

    def interrupt_all(self, signum=None, frame=None) -> None:
        del signum, frame
        again = self.stop_status == status.INTERRUPTED
        print("scaling-sweep: interrupted again: the runs exit at once" if again else
              "scaling-sweep: interrupt: each running run saves at its next step and stops; "
              "starting no more (Ctrl-C again to stop them at once)", file=sys.stderr, flush=True)
        self._stop_all(signal.SIGINT, status.INTERRUPTED)

    @contextlib.contextmanager
    def handling(self):
        """SIGTERM, SIGINT and SIGHUP handled as the class says, from a fresh start, until the
        block ends (the handlers before are then put back, and the stop forgotten); a SIGHUP
        that is ignored (`nohup`) stays ignored."""
        self.terminating, self.stop_status, self._sent = False, None, []
        handlers = {signal.SIGTERM: self.terminate_all, signal.SIGINT: self.interrupt_all}
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            handlers[signal.SIGHUP] = self.terminate_all
        previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            # What this block saw stays with it: a later start outside one is not refused.
            self.terminating, self.stop_status, self._sent = False, None, []


CHILDREN = _Children()


def last_error_line(log_text: str) -> str:
    """The line of a training log that says what went wrong: the one-line `error:` of a bad
    configuration, else the exception line of a traceback, else the last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ": error: " in line or line.startswith(("Error", "error")):
            return line
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.isidentifier() and head[0].isupper() and (
                head.endswith(("Error", "Exception")) or head == "KeyboardInterrupt"):
            return line
    return lines[-1] if lines else ""


def signal_death(returncode: int) -> str:
    """What a negative exit code says: the signal that killed the process (the OOM killer's
    SIGKILL, a segfault's SIGSEGV), which left no error line of its own."""
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-returncode}{name}"


def execute(command: list[str], run_dir: pathlib.Path) -> tuple[int, str]:
    """Run one training process, its output appended to `<run_dir>/train.log` (`log_name`); return
    the exit code and the error line of this attempt's output for the results table."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / log_name("train")
    if is_leader_host():
        (run_dir / "command.txt").write_text(" ".join(command) + "\n")
    with open(log_path, "ab") as log_file:
        # Every attempt appends to the log: the error is read from what this one wrote.
        attempt_start = log_file.tell()
        process = CHILDREN.start(command, log_file)
        if process is None:  # the sweep is stopping: not started, still pending
            return EXIT_NOT_STARTED, ""
        returncode = process.wait()
        CHILDREN.finished(process)
    with open(log_path, "rb") as log_file:
        log_file.seek(attempt_start)
        log_text = log_file.read().decode(errors="replace")
    if CHILDREN.terminating and (returncode in (-signal.SIGTERM, -signal.SIGINT) or (
            returncode == 1 and log_text.rstrip().endswith("KeyboardInterrupt"))):
        # The stop passed on reached it in its first second, before it could save and exit
        # 75 or 130 itself: nothing was trained, so it is stopped, not failed.
        returncode = (status.EXIT_PREEMPTED if returncode == -signal.SIGTERM
                      else status.EXIT_INTERRUPTED)
    if returncode in status.SELF_REPORTED_EXITS:
        return returncode, ""
    # A process killed by a signal printed no error: its last line is a step's progress.
    error = signal_death(returncode) if returncode < 0 else last_error_line(log_text)
    return returncode, (error or f"exit code {returncode}")[:300]


def runs_outside_the_plan(workdir: pathlib.Path, runs: list[plans.PlannedRun]) -> list[str]:
    """The runs in `workdir/runs/` that trained a step (they have a summary.json) and that the
    plan does not name, sorted: left out of results.csv, which lists the plan's runs (a narrowed
    `sizes` or `seeds`)."""
    planned = {run.name for run in runs}
    return sorted(path.parent.name for path in (workdir / "runs").glob("*/summary.json")
                  if path.parent.name not in planned)


def result_row(run: plans.PlannedRun, run_dir: pathlib.Path, error: str = "",
               stopped: str = "") -> dict:
    """One results.csv row from the run's summary (or from the plan, for a run not started or
    failed early). `stopped` is the status of a run this sweep saw stop on request."""
    summary = files.read_summary(run_dir) or {}
    planned = {"size": run.size, "parent": run.parent, "start_step": run.start_step,
               "params": run.params, "non_embedding_params": run.non_embedding_params,
               "embedding_params": run.params - run.non_embedding_params,
               "tokens": run.tokens, "steps": run.steps, "flops": run.flops,
               "flop_convention": run.flop_convention, "study_flops": run.study_flops,
               "num_layers": run.overrides.get("model.num_layers"),
               "d_model": run.overrides.get("model.d_model")}
    if run.config is not None:  # planned from the resolved config: a run not started has them
        model = run.config.model
        planned.update(layout=model.layout,
                       num_encoder_layers=model.num_encoder_layers or model.num_layers)
    return results.result_row(
        summary, summary.get("config") or {}, name=run.name, error=error, planned=planned,
        status=status.FAILED if error else (stopped or summary.get("status") or status.PENDING))


def curve_rows(run: plans.PlannedRun, run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [{"name": run.name, **{key: ("" if record.get(key) is None else record[key])
                                  for key in CURVE_COLUMNS[1:]}}
            for record in tracking.read_metrics(path)]


def host_id() -> str:
    """This host's index on a multi-host slice or SLURM job ("0" elsewhere): every host runs the
    sweep (each run spans all hosts)."""
    for variable in ("TPU_WORKER_ID", "SLURM_PROCID", "SCALING_PROCESS_ID"):
        if os.environ.get(variable, "0") != "0":
            return os.environ[variable]
    return "0"


def is_leader_host() -> bool:
    """Only the first host writes the sweep's tables and files."""
    return host_id() == "0"


def log_name(stem: str) -> str:
    """`<stem>.log` on the first host, `<stem>.host<k>.log` on host k: hosts sharing the workdir
    (a bucket) must not append to one file, which their mounts would overwrite in turn."""
    return f"{stem}.log" if is_leader_host() else f"{stem}.host{host_id()}.log"


def gather(workdir: pathlib.Path, runs: list[plans.PlannedRun], errors: dict,
           stopped: dict | None = None) -> None:
    """Rewrite curves.csv and results.csv from every run's files (first host only); results.csv
    keeps an `eval_loss_*` column for every evaluation on disk (`--eval`, of this or an earlier
    invocation). results.csv, the table of runs the fits read their curves by, is written last:
    a sweep killed between the two leaves no run in it without its curve."""
    if not is_leader_host():
        return
    stopped = stopped or {}
    run_dirs = {run.name: run_directory(workdir, run.name) for run in runs}
    evals = evaluation.eval_columns(run_dirs, evaluation.table_columns(workdir / "results.csv"))
    files.write_csv_atomic(workdir / "curves.csv", CURVE_COLUMNS,
                           [row for run in runs for row in curve_rows(run, run_dirs[run.name])])
    files.write_csv_atomic(workdir / "results.csv", RESULT_COLUMNS + tuple(evals),
                           [{**result_row(run, run_dirs[run.name], errors.get(run.name, ""),
                                          stopped.get(run.name, "")),
                             **{column: losses.get(run.name, "")
                                for column, losses in evals.items()}}
                            for run in runs])


def check_not_a_run(workdir: pathlib.Path) -> None:
    """ConfigError (one line, before the sweep writes anything) when the workdir is a
    `scaling-train` run's: the sweep would train beside it, its runs under it."""
    run_files = [name for name in ("summary.json", "checkpoints", "metrics.jsonl")
                 if (workdir / name).exists()]
    if run_files and not (workdir / "sweep.json").exists():
        raise ConfigError("--workdir", str(workdir),
                          f"a sweep's folder; this one holds a scaling-train run ("
                          f"{', '.join(run_files)}): give the sweep a folder of its own")


def check_owned_tables(workdir: pathlib.Path, sweep) -> None:
    """ConfigError (one line, before any run starts) when the workdir's `sweep.json` is another
    sweep's, whose table this one would replace, or its `results.csv` is not a table the sweep can
    read and write again (a folder, a binary file, a table without run names)."""
    path = workdir / "sweep.json"
    try:
        owner = json.loads(path.read_text()).get("name") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        owner = None  # unreadable: rewritten from this sweep
    if owner is not None and owner != sweep.name:
        raise ConfigError("--workdir", str(workdir),
                          f"the workdir of sweep {sweep.name!r}: it holds sweep {owner!r} (its "
                          "sweep.json), whose results.csv this sweep would replace; use another "
                          "--workdir")
    table = workdir / "results.csv"
    if not table.exists():
        return
    reason = "it is not a file" if not table.is_file() else None
    if reason is None:
        try:
            header = next(csv.reader(io.StringIO(table.read_text(encoding="utf-8"))), [])
            if header and "name" not in header:
                reason = "it has no name column: not a sweep's table"
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            reason = str(error).splitlines()[0]
    if reason:
        raise ConfigError("--workdir", str(workdir),
                          f"a workdir whose results.csv the sweep can read ({reason}); move "
                          "results.csv away, and the sweep writes it again from its runs' files")


def load_errors(workdir: pathlib.Path) -> dict:
    """Errors of failed runs from an earlier invocation (kept until the run succeeds)."""
    try:
        with open(workdir / "results.csv", newline="") as file:
            return {row["name"]: row["error"] for row in csv.DictReader(file) if row.get("error")}
    except OSError:
        return {}


def format_minutes(minutes: float) -> str:
    if minutes < 1:
        seconds = minutes * 60
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes:.1f} min"
    if minutes < 60 * 48:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 60 / 24:.1f} days"


def print_plan(runs: list[plans.PlannedRun], pace: Pace | None, processes: int = 1,
               split_batches: dict[str, int | None] | None = None) -> None:
    """The plan as a table, with each run's time (its training and held-out evaluations) at
    `pace` (None: no estimate) and the study's with `processes` runs at once; `split_batches` as
    `plan_totals` takes it. A time ending in "+" leaves out a whole-split evaluation of unknown
    size."""
    split_batches = split_batches or {}
    header = (f"{'name':<34} {'N (non-emb)':>12} {'D tokens':>10} {'C FLOPs':>10} {'conv':>5} "
              f"{'branch of':>20} {'est. time':>10}")
    print(header)
    print("-" * len(header))
    for run in runs:
        estimate = "?"
        if pace:
            seconds, known = run_seconds(run, pace, split_batches)
            estimate = format_minutes(seconds / 60) + ("" if known else "+")
        print(f"{run.name:<34} {run.non_embedding_params:>12,} {run.tokens:>10.3g} "
              f"{run.flops:>10.3g} {run.flop_convention:>5} {run.parent or '-':>20} {estimate:>10}")
    print(plan_totals(runs, pace, processes, split_batches))


def held_out_batches(runs: list[plans.PlannedRun]) -> dict[str, int | None]:
    """For each run that evaluates, the full batches its held-out split fills
    (`scaling.data.held_out_batches`, looked up once per data config and batch size; None where
    it cannot be counted without preparing the data)."""
    from scaling import data  # the data pipeline, TFDS with it: only where a plan is estimated

    found, counts = {}, {}
    for run in runs:
        if not run.evaluations or run.config is None:
            continue
        train = run.config.train
        key = json.dumps([run.config.data.to_dict(), train.batch_size, train.objective],
                         sort_keys=True, default=str)
        if key not in found:
            found[key] = data.held_out_batches(run.config.data, train)
        counts[run.name] = found[key]
    return counts


def run_seconds(run: plans.PlannedRun, pace: Pace,
                split_batches: dict[str, int | None]) -> tuple[float, bool]:
    """The run's estimated seconds at `pace`: its study FLOPs and its evaluations' (`eval_flops`,
    the held-out split filling `split_batches[run.name]` batches), and each step it trains and
    each batch it evaluates; and whether they count every evaluation (False: a whole-split one of
    unknown size is left out)."""
    batches = split_batches.get(run.name)
    # In PaLM's count, as the MFU of the pace: the run's own convention is a choice of report.
    scale = run.mfu_flops / run.flops if run.mfu_flops and run.flops else 1.0
    flops = (run.study_flops + run.eval_flops(batches)) * scale
    calls = run.steps - run.start_step + run.evaluated_batches(batches)
    return (flops * pace.seconds_per_flop + calls * pace.seconds_per_step,
            batches is not None or not run.whole_split_evals)


def wall_seconds(runs: list[plans.PlannedRun], seconds: dict[str, float], processes: int) -> float:
    """The sweep's wall-clock time if each run took `seconds[name]` and `processes` ran at once,
    in the order `Scheduler` starts them: the largest study FLOPs first, each branch once its
    parent (when in `runs`) has ended, a free place going to the first run ready."""
    names = {run.name for run in runs}
    waiting = sorted(runs, key=lambda run: -run.study_flops)
    now, ends, ended = 0.0, {}, set()
    while waiting or ends:
        for run in list(waiting):
            if len(ends) >= processes:
                break
            if not run.parent or run.parent not in names or run.parent in ended:
                waiting.remove(run)
                ends[run.name] = now + seconds[run.name]
        if not ends:  # only branches of runs that never end: cannot happen in a valid plan
            break
        name = min(ends, key=ends.get)
        now = ends.pop(name)
        ended.add(name)
    return now


def plan_totals(runs: list[plans.PlannedRun], pace: Pace | None, processes: int = 1,
                split_batches: dict[str, int | None] | None = None) -> str:
    """One line: how many runs, their FLOPs and their evaluations', and the study's wall-clock
    time at `pace` (None: none) with `processes` runs at once (`wall_seconds`, each run's
    `run_seconds`), and with more than one the runs' summed time. `split_batches` maps a run
    to the full batches its held-out split fills (`held_out_batches`); a run missing there or
    mapped to None has its evaluations counted as asked, but for those of the whole split, which
    are left out, and the line says so."""
    split_batches = split_batches or {}
    alone, study = sum(run.flops for run in runs), sum(run.study_flops for run in runs)
    unknown = sum(1 for run in runs
                  if run.whole_split_evals and split_batches.get(run.name) is None)
    evaluated = sum(run.eval_flops(split_batches.get(run.name)) for run in runs)
    line = (f"{len(runs)} runs, {alone:.3g} FLOPs if each were trained alone"
            + (f"; the study trains {study:.3g} (shared stable phases counted once: "
               f"{study / alone:.2f} of that)" if study < alone else "")
            + (f"; held-out evaluations add {'at least ' if unknown else ''}{evaluated:.3g}"
               if evaluated or unknown else ""))
    if not pace:
        return line
    seconds = {run.name: run_seconds(run, pace, split_batches)[0] for run in runs}
    wall, summed = wall_seconds(runs, seconds, processes), sum(seconds.values())
    line += (f", about {format_minutes(wall / 60)} on {pace.device}"
             + (f" with {processes} processes ({format_minutes(summed / 60)} of runs)"
                if processes > 1 else ", one run at a time"))
    if unknown:
        line += (f"; not counting the final evaluation of the whole held-out split in "
                 f"{unknown} run{'s' if unknown > 1 else ''} (its size is known once the data is "
                 "prepared)")
    return line


class Pace(NamedTuple):
    """How fast a planned run goes: seconds per FLOP it trains or evaluates, seconds per step and
    per evaluated batch on top of those, and on what."""
    seconds_per_flop: float
    seconds_per_step: float
    device: str


def check_meshes(runs: list[plans.PlannedRun], device_count: int,
                 device_memory: int | None = None, processes: int = 1) -> None:
    """Each run's mesh resolved for `device_count` devices, and its model and batch split over it
    (its batch among `processes` processes too), and (given `device_memory`, one device's bytes)
    its memory estimate, as `scaling-train` checks them before it builds: ConfigError naming the
    field and the run."""
    for run in runs:
        try:
            model = model_config(run.config, None)
            shape = memory.check_mesh(run.config, device_count, model, processes)
            if device_memory is not None:
                memory.check_fits(run.config, model, shape, device_memory)
        except ConfigError as error:
            raise error.in_run(run.name) from None


def runs_dtype(runs: list[plans.PlannedRun]) -> str:
    """The compute dtype of the runs' matmuls for a time estimate: bfloat16 when every run's is,
    else float32 (the slower, on a GPU half the peak)."""
    dtypes = {run.config.model.compute_dtype for run in runs if run.config is not None}
    return "bfloat16" if dtypes == {"bfloat16"} else "float32"


def estimated_pace(accelerator: str = "", compute_dtype: str = "bfloat16") -> Pace:
    """A planning figure, not a promise. On `accelerator` (a Cloud TPU type or COUNTxGPU): its
    published peak for `compute_dtype` at `hardware.PLANNING_MFU`, nothing per step (not measured
    there, so the FLOPs alone, which for small models is far too little). Else on this machine,
    per process: its measured matmul peak at the 30% MFU small CPU models reach, and
    `hardware.PLANNING_STEP_SECONDS` per step and per evaluated batch (both fitted together to
    the demo's runs on a 2-core CPU)."""
    if accelerator:
        peak, chips = hardware.accelerator_peak_flops(accelerator, compute_dtype)
        return Pace(1.0 / (hardware.PLANNING_MFU * peak), 0.0,
                    f"{accelerator} ({chips} chips at {hardware.PLANNING_MFU:.0%} MFU of the "
                    f"{compute_dtype} peak; FLOPs only, no time per step)")
    return Pace(1.0 / (0.3 * hardware.device_peak_flops("float32")),
                hardware.PLANNING_STEP_SECONDS, "this machine")


def evaluate_completed_runs(workdir: pathlib.Path, runs: list[plans.PlannedRun],
                            eval_sets: list[str], wanted: set[str]) -> int:
    """`--eval`: run `scaling-eval` on every completed run of `wanted` (`--only`'s) for each eval
    set and add a column per set to results.csv, every run's results in it (see
    launch.evaluation); returns the number of failed evaluations."""
    return evaluation.evaluate_sweep(
        workdir, {run.name: run_directory(workdir, run.name) for run in runs}, eval_sets,
        CHILDREN, write_table=is_leader_host(), log=log_name("eval"), only=wanted)


def parse_args(argv: list[str]):
    rest, overrides = split_argv(argv)
    parser = ArgumentParser(prog="scaling-sweep", description=__doc__.split("\n\n")[0],
                            epilog=SWEEP_OVERRIDES_HELP)
    parser.add_argument("--config", required=True, help="sweep config file (configs/sweeps/*.py)")
    parser.add_argument("--workdir", required=True, help="directory for the runs and results.csv")
    parser.add_argument("--processes", type=int, default=None,
                        help="runs trained at once (default: the sweep config's)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--accelerator", default="",
                        help="with --dry-run: estimate times for this accelerator "
                             "(v5litepod-16, v4-8, 8xH100, ...), one run at a time, instead of "
                             "this machine")
    parser.add_argument("--only", default="", help="comma-separated run names to run (and, with "
                                                    "--eval, to evaluate)")
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET[:SPLIT]",
                        help="evaluate every completed run on this data set (repeatable) and add "
                             "an eval_loss_* column to results.csv per set")
    parser.add_argument("--status-every", type=float, default=30.0,
                        help="seconds between status lines while runs train (0: only when a "
                             "run ends)")
    return parser.parse_args(rest), overrides


def load_plan(config: str, overrides: list[str], processes: int | None = None):
    """The sweep config with its overrides, the base run config's path and the validated runs.
    Raises ConfigError naming the field (of the sweep, or of the planned run that fails)."""
    sweep = load_config(config)
    try:
        plans.validate_sweep_shape(sweep)
    except ConfigError as error:  # name the file given, not the name inside it
        raise ConfigError("--config", config, error.allowed) from None
    plans.apply_sweep_overrides(sweep, overrides)
    if processes is not None:
        if processes < 1:  # named as typed, not as the sweep field it sets
            raise ConfigError("--processes", processes, "an integer >= 1 (runs at a time)")
        sweep.processes = processes
    base_config = plans.resolve_base_config(sweep.base_config, config)
    return sweep, base_config, plans.expand(sweep, base_config)


class Scheduler:
    """Trains the runs still to do, `processes` at a time, each branch after its parent; rewrites
    the tables after every run and reports progress."""

    def __init__(self, workdir, runs, todo, base_config, errors, processes,
                 status_every: float = 30.0):
        self.workdir, self.runs, self.base_config = workdir, runs, base_config
        self.errors, self.processes = errors, processes
        self.status_every = status_every
        self.progress = SweepProgress(todo, lambda name: run_directory(workdir, name),
                                      log_file=log_name("train"), processes=processes)
        # The longest runs first: they set the sweep's wall-clock time.
        self.waiting = sorted(todo, key=lambda run: -run.study_flops)
        self.total, self.done, self.start = len(todo), 0, time.perf_counter()
        self.preempted = False
        self.interrupted = False
        # Runs that refused the settings the sweep gave them, with their error line: exit 2 and a
        # field's refusal (`ConfigError`), not a busy workdir or a dataset out of reach, which
        # exit 2 as well and a rerun can mend.
        self.refused: dict[str, str] = {}
        self.running_names: set[str] = set()
        # Runs that stopped on request (exit 75 / 130): resumable, whatever their summary says.
        self.stopped: dict[str, str] = {}

    def _ready(self, run: plans.PlannedRun) -> bool | None:
        """True if it can start, False if it must wait for its parent, None if it never can."""
        if not run.parent:
            return True
        if run.parent in {r.name for r in self.waiting} | self.running_names:
            return False  # to be trained (again: a completed run of another length is stale)
        parent = next(r for r in self.runs if r.name == run.parent)
        summary = files.read_summary(run_directory(self.workdir, run.parent)) or {}
        if run.parent in self.stopped or summary.get("status") in (status.PREEMPTED,
                                                                   status.INTERRUPTED):
            return False  # resumes on the next sweep, and its branches after it
        return True if (summary.get("status") == status.COMPLETED
                        and summary.get("total_steps", parent.steps) == parent.steps) else None

    def _parent_unfinished(self, run: plans.PlannedRun) -> str:
        """Why `run` cannot start from its parent, and what would let it: a diverged parent
        stays diverged on a rerun."""
        if run.parent in self.refused:
            return (f"parent run {run.parent} refused the settings the sweep gave it; change them "
                    "and rerun the sweep")
        summary = files.read_summary(run_directory(self.workdir, run.parent)) or {}
        if summary.get("status") == status.DIVERGED:
            return (f"parent run {run.parent} diverged at step {summary.get('diverged_step')}; "
                    "delete its folder and rerun the sweep, with other settings for it (e.g. "
                    "optim.lr in size_overrides)")
        return f"parent run {run.parent} did not complete; rerun the sweep"

    def run(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.processes) as pool:
            futures: dict = {}
            while self.waiting or futures:
                self._submit(pool, futures)
                if not futures:
                    break
                # A wait longer than the platform's limit overflows: that long is never.
                finished, _ = concurrent.futures.wait(
                    futures, timeout=min(self.status_every, threading.TIMEOUT_MAX) or None,
                    return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    self._report(futures.pop(future), *future.result())
                if (futures or self.waiting) and not CHILDREN.terminating:
                    self._submit(pool, futures)  # the freed places first: the line counts them
                    self.progress.show()  # (stopping, nothing more starts: no time left to say)

    def _submit(self, pool, futures: dict) -> None:
        for run in list(self.waiting):
            if len(futures) >= self.processes or CHILDREN.terminating:
                return
            ready = self._ready(run)
            if ready is None:  # its parent ended without completing: it cannot start
                self.waiting.remove(run)
                self._report(run, status.EXIT_FAILED, self._parent_unfinished(run))
            elif ready:
                self.waiting.remove(run)
                self.running_names.add(run.name)
                command = train_command(run, self.base_config, self.workdir)
                self.progress.started(run.name)
                futures[pool.submit(execute, command, run_directory(self.workdir, run.name))] = run

    def _report(self, run: plans.PlannedRun, code: int, error: str) -> None:
        self.running_names.discard(run.name)
        if code == EXIT_NOT_STARTED:
            self.progress.running.pop(run.name, None)
            return  # the sweep stopped first: the run stays pending
        stop = {status.EXIT_PREEMPTED: status.PREEMPTED,
                status.EXIT_INTERRUPTED: status.INTERRUPTED}.get(code)
        if stop:  # to resume: pending again, and its partial time says nothing of a run's
            self.progress.running.pop(run.name, None)
        else:
            self.progress.ended(run.name)
            self.done += 1
        if error:
            self.errors[run.name] = error
        else:
            self.errors.pop(run.name, None)
        self.preempted |= code == status.EXIT_PREEMPTED
        self.interrupted |= code == status.EXIT_INTERRUPTED
        if code == status.EXIT_BAD_CONFIG and NOT_ALLOWED in error:
            self.refused[run.name] = error
        summary = files.read_summary(run_directory(self.workdir, run.name)) or {}
        if stop:  # also when a second Ctrl-C ended it before it could write its summary
            self.stopped[run.name] = stop
        ended = stop or summary.get("status", status.FAILED) if not error else status.FAILED
        loss = summary.get("final_eval_loss")
        # Where it stopped: a run stopped before it wrote its summary has no step to give.
        at = {status.DIVERGED: summary.get("diverged_step")}.get(ended, summary.get("steps"))
        at = f" at step {at}" if at is not None and (stop or ended == status.DIVERGED) else ""
        # A stopped run's last evaluation is no final loss: it resumes, and counts once it ends.
        print(f"[{self.done}/{self.total}] {run.name}: {ended}{at}"
              + (", resumes on a rerun" if stop else "")
              + (f", eval loss {loss:.4f}" if isinstance(loss, float) and ended == status.COMPLETED
                 else "")
              + (f" ({error})" if error else "")
              + f" — {time.perf_counter() - self.start:.0f}s elapsed", flush=True)
        gather(self.workdir, self.runs, self.errors, self.stopped)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, overrides)
    except KeyboardInterrupt:  # Ctrl-C while planning, before the sweep's own handler
        interrupts.report("scaling-sweep: interrupted before any run started")
        return status.EXIT_INTERRUPTED


def _main(args, overrides: list[str]) -> int:
    if args.accelerator and not args.dry_run:  # it only estimates: the sweep trains here
        print(f"scaling-sweep: error: --accelerator={args.accelerator!r} is not allowed without "
              "--dry-run (it estimates the plan's time there; the runs train on this machine)",
              file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    try:
        sweep, base_config, runs = load_plan(args.config, overrides, args.processes)
        if args.eval and runs:  # checked against the first run's config, before any run trains
            evaluation.check_eval_sets(args.eval, plans.Planner(sweep, base_config).resolve(
                runs[0].overrides, runs[0].name))
    except ConfigError as error:
        print(f"scaling-sweep: error: {error}", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    wanted = ({name.strip() for name in args.only.split(",") if name.strip()} if args.only
              else {run.name for run in runs})
    if not wanted:
        print(f"scaling-sweep: error: --only={args.only!r} is not allowed: comma-separated run "
              f"names", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    unknown = wanted - {run.name for run in runs}
    if unknown:
        print(f"scaling-sweep: error: --only {','.join(sorted(unknown))}: not in the plan "
              f"({', '.join(run.name for run in runs)})", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    orphan = branch_without_parent(runs, wanted, pathlib.Path(args.workdir))
    if orphan:
        print(f"scaling-sweep: error: --only={args.only!r} is not allowed: run names with the "
              f"parent of each branch not yet finished (add {orphan.parent}: {orphan.name} starts "
              f"from its step {orphan.start_step})", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    if not 0 <= args.status_every < float("inf"):  # NaN would poll without pause, inf overflow
        print(f"scaling-sweep: error: --status-every={args.status_every:g} is not allowed: "
              "seconds between status lines, a finite number 0 or more", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    if args.dry_run:
        try:
            files.check_workdir(args.workdir, create=False)
            check_not_a_run(pathlib.Path(args.workdir))
            pace = estimated_pace(args.accelerator, runs_dtype(runs))
            # The runs see this machine's devices, or the accelerator's (whose memory is not
            # known here).
            if args.accelerator:
                check_meshes(runs, hardware.accelerator_devices(args.accelerator),
                             processes=hardware.accelerator_hosts(args.accelerator))
            else:
                check_meshes(runs, jax.device_count(), hardware.device_memory_bytes())
        except ConfigError as error:
            print(f"scaling-sweep: error: {error}", file=sys.stderr)
            return status.EXIT_BAD_CONFIG
        except ValueError as error:
            print(f"scaling-sweep: error: --accelerator={args.accelerator!r} is not allowed: "
                  f"{error}", file=sys.stderr)
            return status.EXIT_BAD_CONFIG
        listed = [run for run in runs if run.name in wanted]
        try:
            if pathlib.Path(args.workdir).is_dir():  # what a sweep there would train, or refuse
                finished, listed = workdir_plan(pathlib.Path(args.workdir), sweep, base_config,
                                                runs, wanted)
                if finished & wanted:
                    print(f"{len(finished & wanted)} of these runs finished in {args.workdir}: "
                          f"{len(listed)} to train", flush=True)
            split_batches = held_out_batches(listed)
        except ConfigError as error:  # e.g. a held-out split the prepared dataset lacks
            print(f"scaling-sweep: error: {error}", file=sys.stderr)
            return status.EXIT_BAD_CONFIG
        # On an accelerator each run spans it, one at a time (as scaling-tpu and scaling-slurm
        # run sweeps); here each process trains at the one-process rate.
        print_plan(listed, pace, 1 if args.accelerator else sweep.processes, split_batches)
        return status.EXIT_COMPLETED

    try:
        check_not_a_run(pathlib.Path(args.workdir))
        workdir = files.check_workdir(args.workdir)
        # One sweep per workdir. On a multi-host slice every host runs the sweep: the first holds it.
        lock = (files.workdir_lock(workdir, "scaling-sweep") if is_leader_host()
                else contextlib.nullcontext())
        with lock:
            return _run_sweep(sweep, base_config, runs, wanted, workdir, args.status_every,
                              args.eval)
    except (ConfigError, WorkdirBusy) as error:
        print(f"scaling-sweep: error: {error}", file=sys.stderr)
        return status.EXIT_BAD_CONFIG


class TeeToLog:
    """A standard stream copied to the sweep's log file, and kept going when the terminal is gone:
    after a failed write (the ssh session that started the sweep ended, its pipe closed) the
    stream's descriptor is pointed at /dev/null and only the file is written, so the sweep goes
    on, its progress stays readable, and nothing fails later on the dead stream."""

    def __init__(self, stream, log_file):
        self.stream, self.log_file = stream, log_file

    def _call(self, method: str, *args) -> None:
        if self.stream is None:
            return
        try:
            getattr(self.stream, method)(*args)
        except (OSError, ValueError):  # BrokenPipeError among them
            with contextlib.suppress(OSError, ValueError, AttributeError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.stream.fileno())
                os.close(null)
            self.stream = None

    def write(self, text: str) -> int:
        self.log_file.write(text)
        self._call("write", text)
        return len(text)

    def flush(self) -> None:
        self.log_file.flush()
        self._call("flush")


def _run_sweep(sweep, base_config: str, runs: list[plans.PlannedRun], wanted: set[str],
               workdir: pathlib.Path, status_every: float, eval_sets: list[str]) -> int:
    """`_train_sweep` with what it prints also appended to the workdir's sweep.log."""
    with open(workdir / log_name("sweep"), "a", encoding="utf-8") as log_file:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = TeeToLog(stdout, log_file), TeeToLog(stderr, log_file)
        try:
            return _train_sweep(sweep, base_config, runs, wanted, workdir, status_every, eval_sets)
        finally:
            sys.stdout, sys.stderr = stdout, stderr


def workdir_plan(workdir: pathlib.Path, sweep, base_config: str, runs: list[plans.PlannedRun],
                 wanted: set[str]) -> tuple[set[str], list[plans.PlannedRun]]:
    """The plan's runs already finished in `workdir`, and those of `wanted` left to train, once
    the workdir passes every check a sweep makes before it trains (ConfigError otherwise). Reads
    only: a dry run makes the same checks."""
    check_summaries(workdir, runs)
    check_owned_tables(workdir, sweep)
    finished = {run.name for run in runs if is_finished(run_directory(workdir, run.name), run)}
    todo = [run for run in runs if run.name in wanted and run.name not in finished]
    planner = plans.Planner(sweep, base_config)
    check_finished_configs(workdir, runs, finished, planner)
    check_resumable(workdir, todo, planner)
    check_stable_states(workdir, todo, finished)
    return finished, todo


def _train_sweep(sweep, base_config: str, runs: list[plans.PlannedRun], wanted: set[str],
                 workdir: pathlib.Path, status_every: float, eval_sets: list[str]) -> int:
    finished, todo = workdir_plan(workdir, sweep, base_config, runs, wanted)
    if is_leader_host():
        files.write_json_atomic(workdir / "sweep.json", sweep.to_dict())
    errors = load_errors(workdir)
    for name in finished:
        errors.pop(name, None)  # finished since (e.g. by hand): its old error no longer holds
    outside = runs_outside_the_plan(workdir, runs)
    if outside:
        older = [name for name in outside if re.fullmatch(r"isoflop-C[^-]+-N[^-]+(-s\d+)?", name)]
        print(f"note: results.csv lists this plan's runs only: {len(outside)} run(s) in "
              f"{workdir / 'runs'} are outside it ({', '.join(outside[:3])}"
              f"{', ...' if len(outside) > 3 else ''}); rerun with the plan that has them to "
              "list them again"
              + (f"; {len(older)} of them carry the names an older version gave IsoFLOP runs "
                 "(isoflop-C<budget>-N<params>): this version names them <sweep>-<size>-C<budget>, "
                 "so rename their folders to keep them" if older else ""), flush=True)
    print(f"sweep {sweep.name}: {len(runs)} runs, {len(finished)} already finished, "
          f"{len(todo)} to train, {sweep.processes} at a time; logs in "
          f"{run_directory(workdir, '<name>')}/{log_name('train')}", flush=True)
    gather(workdir, runs, errors)
    with CHILDREN.handling():
        scheduler = Scheduler(workdir, runs, todo, base_config, errors, sweep.processes,
                              status_every)
        scheduler.run()
        stopped = scheduler.preempted or scheduler.interrupted or CHILDREN.terminating
        eval_failures = (evaluate_completed_runs(workdir, runs, eval_sets, wanted)
                         if eval_sets and not stopped else 0)
        print(f"results: {workdir / 'results.csv'}", flush=True)
        if scheduler.interrupted or CHILDREN.stop_status == status.INTERRUPTED:
            print("sweep interrupted; rerun the same command to resume", flush=True)
            return status.EXIT_INTERRUPTED
        if scheduler.preempted or CHILDREN.terminating:
            print("sweep preempted; rerun the same command to resume", flush=True)
            return status.EXIT_PREEMPTED
        # Of the runs asked for, those that ended without their result: this time or before
        # (a diverged run is final, and stays diverged on every rerun).
        ended = {name: (files.read_summary(run_directory(workdir, name)) or {}).get("status")
                 for name in wanted}
        diverged = [name for name, end in ended.items() if end == status.DIVERGED]
        failed = [name for name in wanted if name in errors and name not in diverged]
        for name, error in scheduler.refused.items():  # failed at once, and will on a rerun
            print(f"scaling-sweep: run {name} refused the settings the sweep gave it ({error}); "
                  "change them and rerun", file=sys.stderr, flush=True)
        if failed or diverged or eval_failures:
            print("sweep ended with "
                  + ", ".join(part for part in (
                      f"{len(failed)} run(s) failed" if failed else "",
                      f"{len(diverged)} diverged" if diverged else "",
                      f"{eval_failures} evaluation(s) failed" if eval_failures else "") if part)
                  + ": results.csv has their status"
                  + (" and error" if failed or eval_failures else "")
                  + (" (diverged_step: the first non-finite step)" if diverged else ""),
                  flush=True)
            return status.EXIT_FAILED
        return status.EXIT_COMPLETED

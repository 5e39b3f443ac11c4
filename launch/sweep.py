"""`scaling-sweep`: run a sweep's planned runs as `scaling-train` subprocesses and gather the results.

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo [--processes 2] [--dry-run]
                  [--config.tokens_per_param=10 ...]

Each run trains in `<workdir>/runs/<name>/` in its own process (a crash or an out-of-memory kill
takes down one run, not the sweep). Finished runs are skipped, preempted or interrupted ones resume
from their checkpoints, failed ones are marked with their error while the rest go on. After every
run, `<workdir>/results.csv` (one row per run) and `<workdir>/curves.csv` (every logged point of
every run) are rewritten atomically from the runs' own files, so a killed sweep never leaves a
half-written table and a rerun only trains what is unfinished.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from launch import plans
from scaling.config import ConfigError
from scaling.overrides import apply_overrides, load_config, split_argv

RESULT_COLUMNS = (
    "name", "status", "num_layers", "d_model", "params", "embedding_params", "non_embedding_params",
    "tokens", "steps", "batch_size", "seq_len", "lr", "parametrization", "flop_convention", "flops",
    "flops_6N", "flops_full", "final_train_loss", "final_eval_loss", "wall_seconds",
    "diverged_step", "error")
CURVE_COLUMNS = ("name", "step", "tokens", "flops", "flops_6N", "flops_full", "train_loss",
                 "eval_loss")
EXIT_PREEMPTED = 75


def run_directory(workdir: pathlib.Path, name: str) -> pathlib.Path:
    return workdir / "runs" / name


def read_summary(run_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(run_dir: pathlib.Path, run: plans.PlannedRun) -> bool:
    """Completed or diverged runs of this plan's length are final; preempted, failed or
    interrupted ones run again. A run of another length (the plan changed) is not finished: its
    `scaling-train` refuses the mismatched checkpoint, and the row says so."""
    summary = read_summary(run_dir)
    return (summary is not None and summary.get("status") in ("completed", "diverged")
            and summary.get("total_steps", run.steps) == run.steps)


def resolve_base_config(base_config: str, sweep_config: str) -> str:
    """The base run config's path: as given, or relative to the sweep file's folders."""
    path, _, arg = base_config.partition(":")
    candidates = [pathlib.Path(path)] + [parent / path for parent in
                                         pathlib.Path(sweep_config).absolute().parents]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate) + (f":{arg}" if arg else "")
    raise ConfigError("base_config", base_config, "an existing run config file")


def train_command(run: plans.PlannedRun, base_config: str, run_dir: pathlib.Path) -> list[str]:
    """The `scaling-train` command line of one run (what a user would type)."""
    command = [sys.executable, "-m", "scaling.train", "--config", base_config,
               "--workdir", str(run_dir)]
    command += [f"--config.{key}={_format_value(value)}" for key, value in run.overrides.items()]
    return command


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return repr(value)
    return str(value)


class _Children:
    """The running training processes, so a SIGTERM to the sweep reaches every one of them: each
    saves a checkpoint and exits 75, and the sweep exits 75 too (rerun to resume)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()
        self.terminating = False

    def start(self, command: list[str], log_file) -> subprocess.Popen:
        with self._lock:
            if self.terminating:
                raise _Terminated()
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=dict(os.environ, PYTHONUNBUFFERED="1"))
            self._processes.add(process)
            return process

    def finished(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def terminate_all(self, signum=None, frame=None) -> None:
        del signum, frame
        with self._lock:
            self.terminating = True
            for process in self._processes:
                process.send_signal(signal.SIGTERM)


class _Terminated(Exception):
    pass


CHILDREN = _Children()


def execute(command: list[str], run_dir: pathlib.Path) -> tuple[int, str]:
    """Run one training process, its output appended to `<run_dir>/train.log`; return the exit
    code and the last error line for the results table."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "command.txt").write_text(" ".join(command) + "\n")
    with open(run_dir / "train.log", "ab") as log_file:
        try:
            process = CHILDREN.start(command, log_file)
        except _Terminated:
            return EXIT_PREEMPTED, ""
        returncode = process.wait()
        CHILDREN.finished(process)
    error = ""
    if returncode not in (0, 3, EXIT_PREEMPTED):
        lines = [line for line in (run_dir / "train.log").read_text(errors="replace").splitlines()
                 if line.strip()]
        error = next((line for line in reversed(lines) if "rror" in line), lines[-1] if lines else "")
        error = error.strip() or f"exit code {returncode}"
    return returncode, error.strip()[:300]


def result_row(run: plans.PlannedRun, run_dir: pathlib.Path, error: str = "") -> dict:
    """One results.csv row from the run's summary (or from the plan, for a run that failed early)."""
    summary = read_summary(run_dir) or {}
    model = summary.get("model", {})
    overrides = run.overrides
    status = "failed" if error else (summary.get("status") or "pending")
    return {
        "name": run.name, "status": status,
        "num_layers": model.get("num_layers", overrides.get("model.num_layers", "")),
        "d_model": model.get("d_model", overrides.get("model.d_model", "")),
        "params": summary.get("params", run.params),
        "embedding_params": summary.get("embedding_params", run.params - run.non_embedding_params),
        "non_embedding_params": summary.get("non_embedding_params", run.non_embedding_params),
        "tokens": summary.get("tokens", ""), "steps": summary.get("steps", ""),
        "batch_size": overrides.get("train.batch_size", ""),
        "seq_len": overrides.get("data.seq_len", ""), "lr": overrides.get("optim.lr", ""),
        "parametrization": model.get("parametrization",
                                     overrides.get("model.parametrization", "standard")),
        "flop_convention": run.flop_convention, "flops": summary.get("flops", ""),
        "flops_6N": summary.get("flops_6N", ""), "flops_full": summary.get("flops_full", ""),
        "final_train_loss": summary.get("final_train_loss", ""),
        "final_eval_loss": summary.get("final_eval_loss", ""),
        "wall_seconds": summary.get("wall_seconds", ""),
        "diverged_step": summary.get("diverged_step") or "",
        "error": error,
    }


def curve_rows(run: plans.PlannedRun, run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        rows.append({"name": run.name, **{key: record.get(key) for key in CURVE_COLUMNS[1:]}})
        rows[-1] = {key: ("" if value is None else value) for key, value in rows[-1].items()}
    return rows


def write_csv_atomic(path: pathlib.Path, columns, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def is_leader_host() -> bool:
    """On a multi-host slice every host runs the sweep (each run spans all hosts); only the first
    host writes the sweep's tables."""
    for variable in ("TPU_WORKER_ID", "SLURM_PROCID", "SCALING_PROCESS_ID"):
        if os.environ.get(variable, "0") != "0":
            return False
    return True


def gather(workdir: pathlib.Path, runs: list[plans.PlannedRun], errors: dict) -> None:
    """Rewrite results.csv and curves.csv from every run's files (first host only)."""
    if not is_leader_host():
        return
    write_csv_atomic(workdir / "results.csv", RESULT_COLUMNS,
                     [result_row(run, run_directory(workdir, run.name), errors.get(run.name, ""))
                      for run in runs])
    write_csv_atomic(workdir / "curves.csv", CURVE_COLUMNS,
                     [row for run in runs for row in curve_rows(run, run_directory(workdir, run.name))])


def load_errors(workdir: pathlib.Path) -> dict:
    """Errors of failed runs from an earlier invocation (kept until the run succeeds)."""
    try:
        with open(workdir / "results.csv", newline="") as file:
            return {row["name"]: row["error"] for row in csv.DictReader(file) if row.get("error")}
    except OSError:
        return {}


def print_plan(runs: list[plans.PlannedRun], seconds_per_flop: float | None) -> None:
    header = f"{'name':<34} {'N (non-emb)':>12} {'D tokens':>10} {'C FLOPs':>10} {'conv':>5} {'est. time':>10}"
    print(header)
    print("-" * len(header))
    for run in runs:
        estimate = (f"{run.flops * seconds_per_flop / 60:.1f} min" if seconds_per_flop else "?")
        print(f"{run.name:<34} {run.non_embedding_params:>12,} {run.tokens:>10.3g} "
              f"{run.flops:>10.3g} {run.flop_convention:>5} {estimate:>10}")
    total = sum(run.flops for run in runs)
    print(f"{len(runs)} runs, {total:.3g} FLOPs in total"
          + (f", about {total * seconds_per_flop / 60:.1f} min of one process on this machine"
             if seconds_per_flop else ""))


def estimated_seconds_per_flop() -> float | None:
    """Seconds per training FLOP on this machine, from its measured matmul peak at the 30% MFU
    small CPU models reach (a planning figure, not a promise)."""
    try:
        from scaling import hardware

        return 1.0 / (0.3 * hardware.device_peak_flops("float32"))
    except Exception:
        return None


def evaluate_completed_runs(workdir: pathlib.Path, runs: list[plans.PlannedRun],
                            eval_sets: list[str]) -> int:
    """`--eval`: run `scaling-eval` on every completed run for each eval set and add a column per
    set to results.csv (see launch.evaluation); returns the number of failed evaluations."""
    from launch import evaluation

    return evaluation.evaluate_sweep(
        workdir, {run.name: run_directory(workdir, run.name) for run in runs}, eval_sets,
        write_table=is_leader_host())


def parse_args(argv: list[str]):
    rest, overrides = split_argv(argv)
    parser = argparse.ArgumentParser(prog="scaling-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="sweep config file (configs/sweeps/*.py)")
    parser.add_argument("--workdir", required=True, help="directory for the runs and results.csv")
    parser.add_argument("--processes", type=int, default=None,
                        help="runs trained at once (default: the sweep config's)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--only", default="", help="comma-separated run names to run")
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET[:SPLIT]",
                        help="evaluate every completed run on this data set (repeatable) and add "
                             "an eval_loss_* column to results.csv per set")
    return parser.parse_args(rest), overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sweep = load_config(args.config)
        apply_overrides(sweep, overrides)
        if args.processes is not None:
            sweep.processes = args.processes
        runs = plans.expand(sweep)
        base_config = resolve_base_config(sweep.base_config, args.config)
    except ConfigError as error:
        print(f"scaling-sweep: error: {error}", file=sys.stderr)
        return 2
    wanted = set(args.only.split(",")) if args.only else {run.name for run in runs}
    unknown = wanted - {run.name for run in runs}
    if unknown:
        print(f"scaling-sweep: error: --only {','.join(sorted(unknown))}: not in the plan "
              f"({', '.join(run.name for run in runs)})", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan([run for run in runs if run.name in wanted], estimated_seconds_per_flop())
        return 0

    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "sweep.json").write_text(json.dumps(sweep.to_dict(), indent=2, default=str) + "\n")
    errors = load_errors(workdir)
    finished = {run.name for run in runs if is_finished(run_directory(workdir, run.name), run)}
    for name in finished:
        errors.pop(name, None)  # finished since (e.g. by hand): its old error no longer holds
    todo = [run for run in runs if run.name in wanted and run.name not in finished]
    print(f"sweep {sweep.name}: {len(runs)} runs, {len(finished)} already finished, "
          f"{len(todo)} to train, {sweep.processes} at a time", flush=True)
    gather(workdir, runs, errors)
    signal.signal(signal.SIGTERM, CHILDREN.terminate_all)
    start, done, preempted = time.perf_counter(), 0, False
    with concurrent.futures.ThreadPoolExecutor(max_workers=sweep.processes) as pool:
        futures = {pool.submit(execute, train_command(run, base_config, run_directory(workdir, run.name)),
                               run_directory(workdir, run.name)): run for run in todo}
        for future in concurrent.futures.as_completed(futures):
            run = futures[future]
            code, error = future.result()
            done += 1
            if error:
                errors[run.name] = error
            else:
                errors.pop(run.name, None)
            preempted |= code == EXIT_PREEMPTED
            summary = read_summary(run_directory(workdir, run.name)) or {}
            status = summary.get("status", "failed") if code in (0, 3, EXIT_PREEMPTED) else "failed"
            loss = summary.get("final_eval_loss")
            print(f"[{done}/{len(todo)}] {run.name}: {status}"
                  + (f", eval loss {loss:.4f}" if isinstance(loss, float) else "")
                  + (f" ({error})" if error else "")
                  + f" — {time.perf_counter() - start:.0f}s elapsed", flush=True)
            gather(workdir, runs, errors)
    eval_failures = (evaluate_completed_runs(workdir, runs, args.eval)
                     if args.eval and not (preempted or CHILDREN.terminating) else 0)
    print(f"results: {workdir / 'results.csv'}", flush=True)
    if preempted or CHILDREN.terminating:
        return EXIT_PREEMPTED
    return 1 if errors or eval_failures else 0


if __name__ == "__main__":
    sys.exit(main())

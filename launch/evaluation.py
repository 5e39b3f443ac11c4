"""`scaling-sweep --eval DATASET[:SPLIT]`: every completed run of a sweep evaluated on other data.

Each (run, eval set) is one `scaling-eval` subprocess, as a user would type it (its output goes to
`<run>/eval.log`, on host k of a slice `eval.host<k>.log`); an evaluation of the run's current
checkpoint step already on disk is not repeated. Then results.csv gains one column per eval set,
`eval_loss_<dataset>[-<split>]` in nats per token (empty for runs not completed), which
`scaling-fit --results ... --loss-col` fits. Every later rewrite of results.csv (a rerun without
`--eval`, a stopped sweep) keeps a column for every evaluation on disk of a run's current
checkpoint step (`eval_columns`).
SPLIT defaults to each run's own `data.eval_split`: `--eval DATASET` and `--eval DATASET:SPLIT`
are columns of their own, which hold the same loss for a run whose own split is SPLIT.
"""

from __future__ import annotations

import csv
import json
import pathlib
import sys

from scaling import files
from scaling.errors import ConfigError
from scaling.evaluate import eval_data_config, eval_set_name
from scaling.trained import RunError

COLUMN_PREFIX = "eval_loss_"


def parse_eval_set(spec: str) -> tuple[str, str | None]:
    """`DATASET[:SPLIT]` → (dataset, split or None). Split slicing such as `test[:10%]` is kept."""
    dataset, _, split = spec.partition(":")
    return dataset.strip(), (split.strip() or None)


def column_name(spec: str) -> str:
    dataset, split = parse_eval_set(spec)
    return COLUMN_PREFIX + (eval_set_name(dataset, split) if split else dataset.replace("/", "_"))


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _own_split(summary: dict) -> str:
    return (summary.get("config") or {}).get("data", {}).get("eval_split", "validation")


def _current_record(run_dir: pathlib.Path, set_name: str, summary: dict) -> dict | None:
    """`<run_dir>/eval/<set_name>.json` if it was written for the run's current checkpoint step
    on the batches `--eval` scores (those of the run's final evaluation): one made by hand with
    `scaling-eval --batches N` or `--whole-split` measured another loss and is not reported."""
    record = _read_json(run_dir / "eval" / f"{set_name}.json")
    if (record is None or record.get("step") != summary.get("steps")
            or record.get("batches_requested") is not None or record.get("whole_split")):
        return None
    return record


def eval_record(run_dir: pathlib.Path, spec: str) -> dict | None:
    """The run's evaluation on `spec` if one was written for its current checkpoint step."""
    summary = _read_json(run_dir / "summary.json") or {}
    dataset, split = parse_eval_set(spec)
    return _current_record(run_dir, eval_set_name(dataset, split or _own_split(summary)), summary)


def table_columns(results: pathlib.Path) -> list[str]:
    """The `eval_loss_*` columns of a results.csv (none when it is missing or empty)."""
    try:
        with open(results, newline="") as file:
            header = next(csv.reader(file), [])
    except OSError:
        return []
    return [column for column in header if column.startswith(COLUMN_PREFIX)]


def _column_record(run_dir: pathlib.Path, column: str, summary: dict) -> tuple[str, dict | None]:
    """(the eval set `column` reports for this run, its current evaluation or None):
    `eval_loss_<dataset>-<split>` reports `eval/<dataset>-<split>.json`, `eval_loss_<dataset>`
    the evaluation on the run's own `data.eval_split`."""
    set_name = column[len(COLUMN_PREFIX):]
    if not (run_dir / "eval" / f"{set_name}.json").exists():
        set_name = eval_set_name(set_name, _own_split(summary))
    return set_name, _current_record(run_dir, set_name, summary)


def eval_columns(run_dirs: dict[str, pathlib.Path], columns: list[str]) -> dict[str, dict]:
    """{`eval_loss_*` column: {run name: loss}} from the runs' evaluations of their current
    checkpoint steps on disk, so that a rewritten results.csv keeps them. `columns` (those of the
    table so far) keep their names: `eval_loss_<dataset>-<split>` (`--eval DATASET:SPLIT`) reports
    `eval/<dataset>-<split>.json`, `eval_loss_<dataset>` (`--eval DATASET`) the evaluation on the
    run's own `data.eval_split`. An evaluation none of them reports gets a column of its own,
    named as `--eval` names it: by its data set alone on the run's own split. Every column is
    then filled for every run, so a table rebuilt from the runs' files holds what it held."""
    columns = list(columns)
    summaries = {name: _read_json(run_dir / "summary.json") or {}
                 for name, run_dir in run_dirs.items()}
    for name, run_dir in run_dirs.items():
        summary = summaries[name]
        reported = {_column_record(run_dir, column, summary)[0] for column in columns}
        for path in sorted((run_dir / "eval").glob("*.json")):
            record = _current_record(run_dir, path.stem, summary)
            if path.stem in reported or record is None:
                continue
            dataset, split = record.get("dataset"), record.get("split")
            own_split = split == _own_split(summary)
            # One of other files or features of a data set (`data_overrides`) is named by its
            # file: `--eval` never scores those.
            column = (COLUMN_PREFIX + path.stem
                      if not (dataset and split) or record.get("data_overrides") else
                      column_name(dataset if own_split else f"{dataset}:{split}"))
            if column not in columns:
                columns.append(column)
            reported.add(_column_record(run_dir, column, summary)[0])
    losses: dict[str, dict] = {column: {} for column in columns}
    for name, run_dir in run_dirs.items():
        for column in columns:
            record = _column_record(run_dir, column, summaries[name])[1]
            if record is not None:
                losses[column][name] = record["loss"]
    return losses


def eval_overrides(spec: str) -> list[str]:
    """The `data.*` overrides `scaling-eval` gets for `DATASET[:SPLIT]`."""
    dataset, split = parse_eval_set(spec)
    return [f"data.dataset={dataset}"] + ([f"data.eval_split={split}"] if split else [])


def eval_command(run_dir: pathlib.Path, spec: str) -> list[str]:
    return [sys.executable, "-m", "scaling.evaluate", "--workdir", str(run_dir),
            *(f"--config.{override}" for override in eval_overrides(spec))]


def check_eval_sets(specs: list[str], run_config) -> None:
    """Checks each `DATASET[:SPLIT]` as `scaling-eval` will check it against a run of
    `run_config`, before any run trains; ConfigError names `--eval` and says what is wrong."""
    for spec in specs:
        if not parse_eval_set(spec)[0]:
            raise ConfigError("--eval", spec, "DATASET or DATASET:SPLIT")
        try:
            eval_data_config(run_config, eval_overrides(spec))
        except RunError as error:
            raise ConfigError("--eval", spec, str(error)) from None


def evaluate_sweep(workdir: pathlib.Path, run_dirs: dict[str, pathlib.Path],
                   specs: list[str], children, write_table: bool = True,
                   log: str = "eval.log", only: set[str] | None = None) -> int:
    """Evaluate every completed run (of `only`, when given) on every eval set (output appended
    to `<run>/<log>`), then add the columns to results.csv, with what every run of `run_dirs`
    has; returns how many evaluations failed (each printed with its error line). Each
    evaluation is started through `children` (the sweep's `CHILDREN`), so a stop reaches it,
    and none starts once the sweep is stopping."""
    failures = 0
    for name, run_dir in run_dirs.items():
        if only is not None and name not in only:
            continue
        summary = _read_json(run_dir / "summary.json") or {}
        if summary.get("status") != "completed":
            continue
        for spec in specs:
            if eval_record(run_dir, spec) is not None:
                continue
            with open(run_dir / log, "ab") as log_file:
                process = children.start(eval_command(run_dir, spec), log_file)
                if process is None:  # the sweep is stopping
                    break
                returncode = process.wait()
                children.finished(process)
            record = eval_record(run_dir, spec)
            if children.terminating and record is None:
                print(f"[eval] {name} on {spec}: stopped", flush=True)
            elif returncode or record is None:
                failures += 1
                lines = (run_dir / log).read_text(errors="replace").strip().splitlines()
                print(f"[eval] {name} on {spec}: failed ({lines[-1] if lines else returncode})",
                      flush=True)
            else:
                print(f"[eval] {name} on {spec}: loss {record['loss']:.4f} nats/token", flush=True)
        if children.terminating:
            break
    if write_table:  # a set that no run has a result for yet (stopped first) adds no column
        measured = [spec for spec in specs
                    if any(eval_record(run_dir, spec) is not None for run_dir in run_dirs.values())]
        add_columns(workdir / "results.csv", run_dirs, measured)
    return failures


def add_columns(results: pathlib.Path, run_dirs: dict[str, pathlib.Path], specs: list[str]) -> None:
    """Rewrite results.csv (atomically) with one `eval_loss_*` column per eval set, beside those
    it has (`eval_columns`)."""
    with open(results, newline="") as file:
        reader = csv.DictReader(file)
        header, rows = list(reader.fieldnames or []), list(reader)
    kept = [column for column in header if not column.startswith(COLUMN_PREFIX)]
    wanted = list(dict.fromkeys([column for column in header if column not in kept]
                                + [column_name(spec) for spec in specs]))
    evals = eval_columns(run_dirs, wanted)
    files.write_csv_atomic(results, kept + list(evals), [
        {**{column: row.get(column, "") for column in kept},
         **{column: losses.get(row.get("name", ""), "") for column, losses in evals.items()}}
        for row in rows])

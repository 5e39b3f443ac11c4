"""Read the points to fit: a sweep's results.csv (+ curves.csv), any CSV with named columns, a
W&B runs export, or Epoch AI's extraction of the Chinchilla data.

Every reader returns plain pandas DataFrames with the same column names (`N` parameters,
`D` tokens, `C` FLOPs, `loss` nats/token) and raises a one-line ValueError naming the file and
the column when something is missing.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib

import numpy as np
import pandas as pd

from launch.results import FIT_COLUMNS, WANDB_NAMES

# What a fit needs of a sweep's results.csv, whose columns `launch.results` declares (a plain
# module of names: the analysis still imports no training code).
RESULTS_COLUMNS = FIT_COLUMNS
CURVES_COLUMNS = ("name", "flops", "eval_loss")
# The results columns that describe how a run was set up: two runs equal in all of them but their
# seed are replicates of one point (`average_seeds`).
SETUP_COLUMNS = ("size", "num_layers", "d_model", "params", "non_embedding_params", "tokens",
                 "steps", "start_step", "batch_size", "seq_len", "lr", "schedule",
                 "parametrization", "layout", "objective", "flop_convention")
# Losses every objective that records them scores alike (the continuation task of
# docs/architectures.md); any other loss column is each run's own objective's, comparable only
# within one objective.
SHARED_LOSS_COLUMNS = ("final_continuation_loss",)
SHARED_LOSS_HINT = (f"--loss-col {' or '.join(SHARED_LOSS_COLUMNS)} (runs with "
                    "train.continuation_tokens)")
# What a sweep with `seeds` appends to a replicate's name; replicates share the name without it.
REPLICATE_SUFFIX = r"-s\d+$"
FLOP_CONVENTIONS = ("6N", "full")
EPOCH_CHINCHILLA_FILE = "epoch_chinchilla/svg_extracted_data.csv"
# W&B run states, mapped onto the sweep's statuses.
WANDB_STATES = {"finished": "completed", "crashed": "failed", "failed": "failed",
                "killed": "preempted", "running": "running"}
# How many of a column's values an error lists when a --where filter matches none.
MAX_VALUES_SHOWN = 10
# Parameter counts this close (relative) are one model size: a table read off a figure (Epoch's
# extraction of Chinchilla's runs) gives one model's size with jitter in its last digits.
SAME_SIZE_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep's runs ready to fit.

    `runs`: completed runs with positive N, D, C and loss (columns name, N, D, C, loss, plus the
    original results columns); N is `non_embedding_params` under the 6N convention and `params`
    under the full one, matching what that convention counts. `excluded`: the runs left out with
    the reason for each (columns name, status, reason). `curves`: eval points of the fitted runs
    (columns name, step, tokens, flops, loss) or None when there is no curves.csv. `skipped`:
    the fitted runs that dropped updates for a non-finite loss or gradient
    (`train.on_nonfinite="skip"`), each as {name, skipped_steps, steps}. `repeating`: the fitted
    runs trained on more tokens than their training split holds (`unique_tokens`), each as
    {name, tokens, unique_tokens}.
    """

    runs: pd.DataFrame
    excluded: pd.DataFrame
    curves: pd.DataFrame | None
    flop_convention: str
    source: str
    skipped: list = dataclasses.field(default_factory=list)
    repeating: list = dataclasses.field(default_factory=list)


def _read_csv(path, *, empty_is_missing: bool = False) -> pd.DataFrame:
    """The CSV at `path`. `empty_is_missing`: only an empty cell is missing (NaN); text such as
    `nan` or `inf` is kept as written, so that a value recorded wrong can be told from one not
    recorded. A row with fewer fields than the header (a file cut off mid-row) is a ValueError:
    pandas would fill the rest with NaN, or fit a number cut short."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    options = {"keep_default_na": False, "na_values": [""]} if empty_is_missing else {}
    try:
        table = pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    except OSError as error:  # no permission, a device that cannot be read
        raise ValueError(f"{path}: not a readable file ({error.strerror or error})") from None
    short = _short_row(path)
    if short:
        line, fields, header = short
        raise ValueError(f"{path}: line {line} has {fields} field(s), the header {header}: a row "
                         "cut short (a file copied or written only in part?)")
    return table


def _short_row(path) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first data row of `path` with fewer fields than its
    header, else None (blank lines, which pandas skips, are not rows)."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader, header, start = csv.reader(handle), None, 1
            for record in reader:
                if record and not (len(record) == 1 and not record[0].strip()):
                    if header is None:
                        header = len(record)
                    elif len(record) < header:
                        return start, len(record), header
                start = reader.line_num + 1
    except (OSError, csv.Error):
        return None
    return None


def _file_lines(path, rows: int) -> np.ndarray:
    """The line of `path` on which each of the `rows` data rows that `_read_csv` read starts (the
    header is line 1; blank lines, which pandas skips, and quoted line breaks are counted), so that
    an error can point at the line a user sees in an editor. Data row i is line i + 2 when the
    file cannot be read that way."""
    starts = []
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader, previous = csv.reader(handle), 0
            for record in reader:
                if record and not (len(record) == 1 and not record[0].strip()):
                    starts.append(previous + 1)
                previous = reader.line_num
    except (OSError, csv.Error):
        starts = []
    if len(starts) == rows + 1:  # the header, then one start per data row
        return np.asarray(starts[1:], dtype=int)
    return np.arange(rows, dtype=int) + 2


def csv_columns(path) -> list[str]:
    """The column names of a CSV file (a one-line ValueError if it cannot be read)."""
    return [str(column) for column in _read_csv(path).columns]


def require_columns(table: pd.DataFrame, columns, where: str) -> None:
    """Raise a ValueError naming the missing columns and listing the available ones."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}; available: "
                         f"{', '.join(map(str, table.columns)) or 'none'}")


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)


def _cell(value) -> str:
    """How a bad cell reads in a message: "is empty", or "has '<its text>'"."""
    return "is empty" if pd.isna(value) or not str(value).strip() else f"has {str(value)!r}"


def table_objectives(table: pd.DataFrame) -> list[str]:
    """The training objectives of a results table's runs (none for a table without the column)."""
    if "objective" not in table.columns:
        return []
    return sorted(set(table["objective"].dropna().astype(str)) - {""})


def n_column(convention: str) -> str:
    """The results.csv column a fit under FLOP `convention` takes N from: what it counts."""
    return "non_embedding_params" if convention == "6N" else "params"


def sweep_from_table(table: pd.DataFrame, source: str, curves: pd.DataFrame | None = None,
                     loss_column: str = "final_eval_loss") -> Sweep:
    """Select the fittable runs of a results table (the columns of results.csv), their loss read
    from `loss_column` (curves, which hold only eval_loss, are dropped for any other column)."""
    require_columns(table, tuple(dict.fromkeys(RESULTS_COLUMNS + (loss_column,))), source)
    if loss_column != "final_eval_loss":
        curves = None
    conventions = sorted(set(table["flop_convention"].dropna().astype(str)))
    unknown = [c for c in conventions if c not in FLOP_CONVENTIONS]
    if unknown or len(conventions) > 1:
        raise ValueError(f"{source}: flop_convention must be one of {', '.join(FLOP_CONVENTIONS)} and "
                         f"the same for every run; found {', '.join(conventions) or 'none'}")
    convention = conventions[0] if conventions else "6N"
    objectives = table_objectives(table)
    if len(objectives) > 1 and loss_column not in SHARED_LOSS_COLUMNS:
        raise ValueError(f"{source}: runs of train.objective {', '.join(objectives)}: their "
                         f"{loss_column} are different quantities; fit each objective's runs "
                         f"apart, or a loss they score alike, {SHARED_LOSS_HINT}")
    repeated = table["name"][table["name"].duplicated()].astype(str).unique()
    if len(repeated):  # two runs under one name: their curves would merge into one
        raise ValueError(f"{source}: run names must be unique; repeated: {', '.join(repeated)}")
    runs = table.copy()
    runs["N"] = _numeric(runs, n_column(convention))
    runs["D"] = _numeric(runs, "tokens")
    runs["C"] = _numeric(runs, "flops")
    runs["loss"] = _numeric(runs, loss_column)
    status = runs["status"].fillna("(blank)").astype(str)  # a blank cell is no status
    _check_recorded_values(table, runs, status == "completed", source, {
        "N": n_column(convention), "D": "tokens",
        "C": "flops", "loss": loss_column})
    loss_name = "eval loss" if loss_column == "final_eval_loss" else loss_column
    values_ok = np.ones(len(runs), dtype=bool)
    for column in ("N", "D", "C", "loss"):
        values_ok &= np.isfinite(runs[column].to_numpy()) & (runs[column].to_numpy() > 0)
    reason = np.where(status != "completed", "status " + status,
                      np.where(values_ok, "", f"missing or non-positive N, D, FLOPs or {loss_name}"))
    fitted = reason == ""
    excluded = pd.DataFrame({"name": runs["name"][~fitted], "status": status[~fitted],
                             "reason": reason[~fitted]}).reset_index(drop=True)
    runs = runs[fitted].reset_index(drop=True)
    skipped = []
    if "skipped_steps" in runs.columns:  # results.csv of a version that records them
        dropped = pd.to_numeric(runs["skipped_steps"], errors="coerce").fillna(0)
        skipped = [{"name": str(name), "skipped_steps": int(k), "steps": int(steps)}
                   for name, k, steps in zip(runs["name"], dropped, runs["steps"]) if k > 0]
    repeating = []
    if "unique_tokens" in runs.columns:  # results.csv of a version that records them
        unique = pd.to_numeric(runs["unique_tokens"], errors="coerce").to_numpy(dtype=float)
        repeating = [{"name": str(name), "tokens": float(d), "unique_tokens": float(u)}
                     for name, d, u in zip(runs["name"], runs["D"], unique) if d > u > 0]
    if runs.empty:
        reasons = ", ".join(f"{count} {reason}" for reason, count in excluded["reason"].value_counts().items())
        raise ValueError(f"{source}: no run to fit; every run was excluded ({reasons or 'the file has no rows'})")
    if curves is not None:
        curves = curves[curves["name"].isin(set(runs["name"]))].reset_index(drop=True)
    runs, curves = average_seeds(runs, curves, loss_column)
    return Sweep(runs=runs, excluded=excluded, curves=curves, flop_convention=convention,
                 source=source, skipped=skipped, repeating=repeating)


def _check_recorded_values(table: pd.DataFrame, runs: pd.DataFrame, completed: pd.Series,
                           source: str, columns: dict[str, str]) -> None:
    """A ValueError for the first completed run whose N, D, C or loss (`columns`: the fitted
    name → the table's column) is recorded but is no positive number (`nan`, `-1.5`, `abc`):
    left out, its point would be missing from the fit with nothing said on the command line. A
    value not recorded (an empty cell) leaves the run out, as its row of the report says."""
    for fitted, column in columns.items():
        recorded = table[column].notna().to_numpy()
        values = runs[fitted].to_numpy()
        bad = completed.to_numpy() & recorded & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = table[column].iloc[row]
            shown = repr(value) if isinstance(value, str) else f"{float(value):g}"
            raise ValueError(f"{source}: run {table['name'].iloc[row]} is completed, and its "
                             f"{column} is {shown}; a completed run's is a positive number "
                             "(correct the row, or remove it)")


def average_seeds(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
                  loss_column: str = "final_eval_loss"):
    """Runs that differ only in their seed (equal in every `SETUP_COLUMNS` column present, and in
    their names but for a sweep's `-s<k>` replicate suffix) as one point: its loss (and
    `loss_column`) is their mean, `seeds` their number and `seed_sd` the sample standard deviation
    of their losses; it keeps the row and name of the lowest seed, and their curves averaged at
    the steps every replicate evaluated, under that name. Rows that share all this but not
    distinct seeds stay apart. A table without a `seed` column, or without replicates, comes back
    as it was, with `seeds` 1."""
    if "seed" not in runs.columns:
        return runs.assign(seeds=1, seed_sd=np.nan), curves
    keys = [column for column in SETUP_COLUMNS if column in runs.columns]
    stem = runs["name"].astype(str).str.replace(REPLICATE_SUFFIX, "", regex=True)
    group = pd.concat([runs[keys], stem.rename("_stem")], axis=1).groupby(
        keys + ["_stem"], dropna=False, sort=False).ngroup().to_numpy()
    seed = pd.to_numeric(runs["seed"], errors="coerce").to_numpy()
    # Rows that share a setup and a seed differ in something the columns do not show: not
    # replicates, so each stays a point of its own.
    clash = pd.Series(seed).groupby(group).transform(
        lambda s: s.isna().any() or s.duplicated().any()).to_numpy(dtype=bool)
    group = np.where(clash, group.max(initial=0) + 1 + np.arange(len(runs)), group)
    stats = runs.groupby(group)["loss"].agg(["mean", "std", "size"])
    seed = np.nan_to_num(seed, nan=np.inf)
    order = np.lexsort((seed, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    points = runs.iloc[np.sort(first)].copy()
    point_group = group[np.sort(first)]
    points["loss"] = stats.loc[point_group, "mean"].to_numpy()
    points[loss_column] = points["loss"]
    points["seeds"] = stats.loc[point_group, "size"].to_numpy()
    points["seed_sd"] = stats.loc[point_group, "std"].to_numpy()
    if curves is not None and len(points) < len(runs):
        representative = dict(zip(runs["name"], points.set_index(point_group)["name"]
                                  .loc[group].to_numpy()))
        seeds = dict(zip(points["name"], points["seeds"]))
        by = ["name", "step" if "step" in curves.columns else "flops"]
        merged = curves.assign(name=curves["name"].map(representative)).groupby(by)
        # Only the evaluations every replicate logged: a mean over fewer would jump between seeds.
        counts = merged.size()
        complete = counts.to_numpy() == np.array([seeds[name] for name, _ in counts.index])
        curves = merged.mean(numeric_only=True)[complete].reset_index()
    return points.reset_index(drop=True), curves


def read_curves(path) -> pd.DataFrame:
    """curves.csv as (name, step, tokens, flops, loss) with loss = eval_loss; rows without an
    evaluation are dropped."""
    table = _read_csv(path)
    require_columns(table, CURVES_COLUMNS, str(path))
    curves = pd.DataFrame({"name": table["name"], "flops": _numeric(table, "flops"),
                           "loss": _numeric(table, "eval_loss")})
    for optional in ("step", "tokens"):
        if optional in table.columns:
            curves[optional] = _numeric(table, optional)
    return curves[np.isfinite(curves["loss"]) & np.isfinite(curves["flops"])].reset_index(drop=True)


def read_results(path, loss_column: str = "final_eval_loss") -> Sweep:
    """A sweep's results.csv, with the curves.csv beside it when there is one; the loss fitted
    is `loss_column`'s."""
    path = pathlib.Path(path)
    table = _read_csv(path, empty_is_missing=True)
    curves_path = path.with_name("curves.csv")
    curves = read_curves(curves_path) if curves_path.is_file() else None
    return sweep_from_table(table, str(path), curves, loss_column)


def sweep_summary(sweep: Sweep, loss_column: str = "final_eval_loss") -> dict:
    """What a fit's report says of a sweep's runs: its source, the loss column fitted, how many
    runs it has (each seed counted), the seeds per fitted point and their spread, and the runs
    left out with the reason for each."""
    runs = sweep.runs
    return {"source": sweep.source, "loss_column": loss_column,
            "runs_total": int(runs["seeds"].sum()) + len(sweep.excluded),
            "seeds_per_point": sorted(int(k) for k in runs["seeds"].unique()),
            "seed_sd_median_relative": float(np.nanmedian(runs["seed_sd"] / runs["loss"]))
            if (runs["seeds"] > 1).any() else None,
            "excluded": sweep.excluded.to_dict("records"), "skipped_updates": sweep.skipped,
            "repeating_data": sweep.repeating, "n_column": n_column(sweep.flop_convention)}


def _strip_wandb_prefix(column: str) -> str:
    for prefix in ("summary.", "summary/", "config.", "config/", "summary_", "config_"):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def read_wandb_export(path, loss_column: str = "final_eval_loss") -> Sweep:
    """A W&B runs-table CSV export of this project's runs: the summary and config fields carry
    the results.csv column names, or the names the runs logged them under (`eval/final_loss`,
    `launch.results.WANDB_NAMES`), optionally prefixed `summary.` / `config.`; `Name` is the run
    name and `State` stands in for `status` when no status field was logged."""
    table = _read_csv(path, empty_is_missing=True)
    flat_names = {wandb_name: name for name, wandb_name in WANDB_NAMES.items()}
    renamed = {}
    for column in table.columns:
        plain = _strip_wandb_prefix(str(column))
        plain = flat_names.get(plain, plain)
        plain = {"Name": "name", "State": "state"}.get(plain, plain)
        renamed.setdefault(plain, column)
    table = pd.DataFrame({plain: table[column] for plain, column in renamed.items()})
    if "status" not in table.columns and "state" in table.columns:
        table["status"] = table["state"].astype(str).str.lower().map(WANDB_STATES).fillna(table["state"])
    return sweep_from_table(table, f"{path} (W&B export)", loss_column=loss_column)


def parse_filters(texts) -> dict[str, str]:
    """`COLUMN=VALUE` strings as a dict; a ValueError names a malformed one, or a second filter
    on one column (which would replace the first)."""
    filters = {}
    for text in texts or ():
        column, equals, value = text.partition("=")
        if not equals or not column:
            raise ValueError(f"--where={text!r} is not allowed; give COLUMN=VALUE")
        if column in filters:
            raise ValueError(f"--where={text!r} is not allowed: --where={column}="
                             f"{filters[column]} filters {column} already (each column once)")
        filters[column] = value
    return filters


def read_named_csv(path, *, n_col: str, loss_col: str, d_col: str | None = None,
                   c_col: str | None = None, where: dict[str, str] | None = None,
                   drop_highest_losses: int = 0, best_per_point: bool = False,
                   u_col: str | None = None) -> pd.DataFrame:
    """Points (N, D, C, loss) from any CSV: parameters in `n_col`, loss in `loss_col`, and either
    tokens in `d_col` or FLOPs in `c_col` (then D = C / (6N), and C = 6ND when only D is given).
    `where` keeps the rows whose column equals the value (as text, or as numbers when both are)
    for every (column, value); `drop_highest_losses` leaves out the rows with the K highest losses
    (Epoch's preprocessing of the Chinchilla data: K = 5). `best_per_point` keeps, of the rows
    that share (N, D) (e.g. a learning-rate sweep), or (N, D, U) with `u_col`, the one with the
    lowest loss. `u_col` names a
    column of unique training tokens U (for the data-constrained law). A `name` column, when
    there is one, names the runs; without one, a run is named by its line in the file. Missing
    or non-positive values are an error naming the column and the row. A row that repeats an earlier kept row in every column of the file is a copy, not
    a second run (it would count twice in the fit and narrow its bootstrap intervals): it is left
    out, and `attrs["duplicates"]` lists (row, earlier row) for each, rows counted from 0 after
    the header. `attrs["shared_points"]` counts the (N, D) points several rows give (unless
    `best_per_point`), `attrs["point"]` says what a point is ("(N, D)" or "(N, D, U)"), and
    `attrs["rows"]` the rows the points were made of."""
    if (d_col is None) == (c_col is None):
        raise ValueError("give exactly one of --d-col (tokens) and --c-col (FLOPs, D = C/(6N))")
    table = _read_csv(path, empty_is_missing=True)
    table.index = _file_lines(path, len(table))  # kept through the filters, for the messages
    columns = [n_col, loss_col, d_col or c_col] + ([u_col] if u_col else [])
    require_columns(table, columns + list(where or {}), str(path))
    if table.empty:
        raise ValueError(f"{path}: no row to fit (the file has a header and nothing under it)")
    for column, value in (where or {}).items():
        kept = table[_matches(table[column], value)]
        if kept.empty:
            values = table[column].drop_duplicates().astype(str).tolist()
            shown = ", ".join(values[:MAX_VALUES_SHOWN])
            shown += ", ..." if len(values) > MAX_VALUES_SHOWN else ""
            raise ValueError(f"{path}: no row has {column}={value!r}; its values: "
                             f"{shown or 'none'}")
        table = kept
    objectives = table_objectives(table)  # a results.csv read as any CSV: as --results reads it
    if len(objectives) > 1 and loss_col not in SHARED_LOSS_COLUMNS:
        raise ValueError(f"{path}: runs of train.objective {', '.join(objectives)}: their "
                         f"{loss_col} are different quantities; fit each objective's runs apart "
                         f"(--where objective=...), or a loss they score alike, "
                         f"{SHARED_LOSS_HINT}")
    same_row = table.groupby(list(table.columns), dropna=False, sort=False).ngroup().to_numpy()
    first_row = table.index.to_series().groupby(same_row).transform("first")
    copies = (first_row != table.index).to_numpy()
    duplicates = [(int(row), int(first)) for row, first in zip(table.index[copies], first_row[copies])]
    table = table[~copies]
    if drop_highest_losses >= len(table) > 0:  # said before the rows' values are checked
        raise ValueError(f"--drop-highest-losses={drop_highest_losses} leaves no row of {len(table)}")
    lines = table.index.to_numpy()
    table = table.reset_index(drop=True)
    points = pd.DataFrame({"N": _numeric(table, n_col), "loss": _numeric(table, loss_col)})
    points["N_given"] = points["N"]
    if np.isfinite(points["N"]).all():  # else the check below names the bad row
        points["N"] = same_sizes(points["N"].to_numpy())
    if d_col is not None:
        points["D"] = _numeric(table, d_col)
        points["C"] = 6.0 * points["N"] * points["D"]
    else:
        points["C"] = _numeric(table, c_col)
        points["D"] = points["C"] / (6.0 * points["N"])
    for column, source_column in (("N", n_col), ("loss", loss_col), ("D" if d_col else "C", d_col or c_col)):
        values = points[column].to_numpy()
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: column {source_column!r} must be a positive number at every "
                             f"row; line {lines[row]} {_cell(table[source_column].iloc[row])} "
                             f"({int(bad.sum())} bad rows)")
    columns = ["N", "D", "C", "loss"]
    if u_col:
        points["U"] = _numeric(table, u_col)
        bad = ~(np.isfinite(points["U"].to_numpy()) & (points["U"].to_numpy() > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: column {u_col!r} must be a positive number at every row; "
                             f"line {lines[row]} {_cell(table[u_col].iloc[row])}")
        columns.append("U")
    # Runs without a name column are named by their line in the file (the header is line 1).
    points["name"] = (table["name"].astype(str) if "name" in table.columns
                      else [f"line {line}" for line in lines])
    columns = ["name"] + columns
    if drop_highest_losses > 0:  # once every loss is known to be a number
        points = without_highest_losses(points, drop_highest_losses)
    # Runs that differ in their unique tokens are different points of the data-constrained law.
    point = ["N", "D"] + (["U"] if u_col else [])
    shared = int((points.groupby(point).size() > 1).sum())
    rows = len(points)
    if best_per_point:
        points = points.loc[points.groupby(point)["loss"].idxmin()].reset_index(drop=True)
    # (values of the N column, model sizes they make) where `same_sizes` merged some
    given, sizes = int(points["N_given"].nunique()), int(points["N"].nunique())
    points = points[columns]
    points.attrs["merged_sizes"] = (given, sizes) if sizes < given else None
    points.attrs["duplicates"] = duplicates
    # (N, D) points several rows give, with different losses (another setting swept at each):
    # each row is fitted as a point unless `best_per_point`.
    points.attrs["shared_points"] = 0 if best_per_point else shared
    points.attrs["point"] = f"({', '.join(point)})"
    points.attrs["rows"] = rows  # those the points are made of, after filters and drops
    return points


def same_sizes(values: np.ndarray) -> np.ndarray:
    """`values` (parameter counts) with each group of values that lie within
    `SAME_SIZE_TOLERANCE` of the next smaller one replaced by the smallest of the group."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ascending = values[order]
    starts = np.concatenate([[True], ascending[1:] > ascending[:-1] * (1 + SAME_SIZE_TOLERANCE)])
    merged = np.empty_like(values)
    merged[order] = ascending[starts][np.cumsum(starts) - 1]
    return merged


def _matches(column: pd.Series, value: str) -> np.ndarray:
    """Which cells equal `value`: as text, or as numbers when both are (pandas reads a column of
    numbers as floats, so its text is '1.0' where the file says 1, and 0.002 stays 0.002 when the
    filter says 2e-3)."""
    matches = (column.astype(str) == value).to_numpy()
    try:
        number = float(value)
    except ValueError:
        return matches
    return matches | (pd.to_numeric(column, errors="coerce").to_numpy(dtype=float) == number)


def without_highest_losses(points: pd.DataFrame, count: int) -> pd.DataFrame:
    """`points` less the `count` with the highest losses (Epoch's preprocessing of the Chinchilla
    data), index reset; ValueError when that leaves none."""
    if count >= len(points) > 0:
        raise ValueError(f"--drop-highest-losses={count} leaves no row of {len(points)}")
    keep = np.ones(len(points), dtype=bool)
    keep[_highest(points["loss"].to_numpy(), count)] = False
    return points[keep].reset_index(drop=True)


def _highest(values: np.ndarray, count: int) -> np.ndarray:
    """The indices of the `count` highest values (of equal ones, the last rows)."""
    return np.argsort(values, kind="stable")[len(values) - count:]


def shared_data_dir() -> pathlib.Path:
    """The published reference datasets: $SCALING_SHARED_DATA, else `<repo>/../shared/data`."""
    override = os.environ.get("SCALING_SHARED_DATA")
    if override:
        return pathlib.Path(override)
    return pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load_epoch_chinchilla(path=None, drop_highest_losses: int = 5) -> pd.DataFrame:
    """Epoch AI's extraction of the Chinchilla runs as (N, D, C, loss), with D = C / (6N) and
    Epoch's preprocessing: the `drop_highest_losses` highest losses left out (240 of 245 rows with
    the default 5)."""
    path = pathlib.Path(path) if path is not None else shared_data_dir() / EPOCH_CHINCHILLA_FILE
    table = _read_csv(path)
    require_columns(table, ("Model Size", "Training FLOP", "loss"), str(path))
    losses = _numeric(table, "loss")
    if not np.isfinite(losses).all():
        raise ValueError(f"{path}: column 'loss' must be a number at every row; line "
                         f"{_file_lines(path, len(table))[int(np.flatnonzero(~np.isfinite(losses))[0])]}"
                         " is not")
    if drop_highest_losses > 0:
        table = table.drop(index=table.index[_highest(losses, drop_highest_losses)])
    params = same_sizes(table["Model Size"].to_numpy(dtype=float))
    flops = table["Training FLOP"].to_numpy(dtype=float)
    return pd.DataFrame({"N": params, "D": flops / (6.0 * params), "C": flops,
                         "loss": table["loss"].to_numpy(dtype=float)}).reset_index(drop=True)

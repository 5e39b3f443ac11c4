"""Backtests: hold out the largest model sizes of a table of runs, fit every applicable method on
the rest, and predict the held-out runs with prediction intervals.

Prediction interval (fixed in advance, the same for every method): the law is refitted to
bootstrap resamples of the fitted points (`analysis.bootstrap`); each resample's prediction is
perturbed, in log loss, by one residual of the full fit drawn at random, so that the interval
holds both the uncertainty of the fitted law and the scatter of single runs around it. A
bootstrap of points knows nothing of how wrong the law's form is away from the data, so a third
term measures that on the fitted runs themselves (`extrapolation_error_scale`): the law is
refitted without the top quarter of the fitted log-N range and the RMS log error of its
predictions there, per unit of log N extrapolated, is scaled by each target's distance in log N
beyond the fitted sizes and added as Gaussian noise. The interval is the central `level`
percentile range of these draws.

Which method a report puts first is chosen by `headline_law`, a rule on the shape of the table
that never looks at the held-out runs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings

import numpy as np
import pandas as pd

from analysis.bootstrap import CONFIDENCE_LEVEL, bootstrap_fits
from analysis.fit import FitResult, fit_law
from analysis.frontier import final_point_frontier
from analysis.inputs import without_highest_losses
from analysis.laws import get_law, predict_loss
from scaling.errors import ArgumentParser

PARAMETRIC_METHODS = ("overtraining", "chinchilla", "kaplan")
# Only for tables that give unique tokens U.
DATA_CONSTRAINED = "data_constrained"
# Token budgets per model size from which a table counts as an over-training grid.
MIN_BUDGETS_PER_SIZE = 3


def budgets_per_size(runs: pd.DataFrame) -> float:
    """Median number of distinct token counts D per model size N."""
    return float(runs.groupby("N")["D"].nunique().median())


def headline_law(runs: pd.DataFrame) -> str:
    """The default L(N, D) law for a table of runs, by a rule fixed in advance.

    A table that trains most sizes at `MIN_BUDGETS_PER_SIZE` or more token budgets (an
    over-training grid or a ladder) gets Gadre et al.'s over-training form: it measures the
    curvature in D at every size, and tying the N and D exponents (one parameter fewer) is what
    lets a fit on small models carry to larger ones. A table with about one budget per size (a
    family of models each trained once) gets Chinchilla's form. Sizes are N values as the table
    gives them; `analysis.inputs.same_sizes` has merged those that differ only by jitter. A
    table that gives unique tokens U with some runs repeating data (D > U) gets Muennighoff et
    al.'s data-constrained form, the one form that models repetition.
    """
    if "U" in runs.columns and bool((runs["D"] > runs["U"]).any()):
        return DATA_CONSTRAINED
    return "overtraining" if budgets_per_size(runs) >= MIN_BUDGETS_PER_SIZE else "chinchilla"


def prediction_interval(result: FitResult, variables: dict[str, np.ndarray], *,
                        num_resamples: int, seed: int, level: float = CONFIDENCE_LEVEL,
                        bootstrap_theta: np.ndarray | None = None,
                        extra_log_sd: np.ndarray | float = 0.0,
                        clusters: np.ndarray | None = None,
                        along_curve: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the `level` prediction interval of the loss at the points `variables`
    (see the module docstring). `bootstrap_theta` reuses resamples already fitted, else the fit
    is bootstrapped (by `clusters` of points when given: `bootstrap_fits`); `extra_log_sd` (per
    point or one value) is the standard deviation, in log loss, of the law's own extrapolation
    error. Each point's scatter is drawn on its own, or with `along_curve` (points along one
    curve, for a band) once per resample for all of them: the same interval at each point, whose
    edges do not carry each point's own sampling noise."""
    law = result.law
    if bootstrap_theta is None:
        bootstrap_theta = bootstrap_fits(result, num_resamples, seed, clusters=clusters)
    log_x = np.stack([np.log(np.asarray(variables[v], dtype=float)) for v in law.variables])
    with np.errstate(over="ignore", invalid="ignore"):
        log_predicted, _ = law.log_prediction(bootstrap_theta, log_x)
        fitted, _ = law.log_prediction(result.theta[None], result.log_x)
    residuals = result.log_loss - fitted[0]
    rng = np.random.default_rng(seed + 1)
    shape = (log_predicted.shape[0], 1) if along_curve else log_predicted.shape
    draws = log_predicted + rng.choice(residuals, size=shape)
    draws = draws + rng.normal(size=shape) * np.broadcast_to(extra_log_sd, draws.shape[1:])
    draws = np.where(np.isfinite(draws), draws, np.nan)
    tail = 50.0 * (1.0 - level)
    with warnings.catch_warnings():
        # A point where every draw overflowed gets a NaN interval, not a warning.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
    return np.exp(low), np.exp(high)


INNER_HOLD_OUT_FRACTION = 0.25


def extrapolation_error_scale(method: str, kept: pd.DataFrame) -> float:
    """RMS log error per unit of log N extrapolated, measured on `kept` alone: `method` refitted
    without the runs in the top `INNER_HOLD_OUT_FRACTION` of kept's log-N range predicts them.
    0 when that inner split leaves too little to fit."""
    log_n = np.log(kept["N"].to_numpy())
    threshold = log_n.max() - INNER_HOLD_OUT_FRACTION * (log_n.max() - log_n.min())
    inner_held = log_n >= threshold
    inner_kept, inner_out = kept[~inner_held], kept[inner_held]
    if method == "compute":
        frontier = final_point_frontier(np.arange(len(kept)), kept["C"], kept["loss"])
        inner_out = kept.iloc[[i for i in frontier.run if inner_held[i]]]
    elif method == "n":  # L(N) predicts the best run at a size
        inner_out = envelope(inner_out, "N")
    law = get_law(method)
    variables, loss = method_points(method, inner_kept) if len(inner_kept) else ({}, [])
    if inner_out.empty or np.size(loss) < law.num_params + 1 or inner_kept["N"].nunique() < 2:
        return 0.0
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            result = fit_law(law, variables, loss)
            predicted = predict_loss(law, result.theta, {v: inner_out[v].to_numpy()
                                                         for v in law.variables})
    except ValueError:
        return 0.0
    distance = np.log(inner_out["N"].to_numpy() / inner_kept["N"].max())
    log_error = np.log(predicted / inner_out["loss"].to_numpy())
    if not np.all(np.isfinite(log_error)) or not distance.mean() > 0:
        return 0.0
    return float(np.sqrt(np.mean(log_error**2)) / distance.mean())


def extrapolation_sd(method: str, kept: pd.DataFrame,
                     targets_n: np.ndarray) -> tuple[np.ndarray, float]:
    """Per target: `extrapolation_error_scale` × its distance in log N beyond the kept sizes;
    and that scale (0 when it could not be measured: the intervals then lack this term)."""
    distance = np.maximum(np.log(np.asarray(targets_n, dtype=float) / kept["N"].max()), 0.0)
    scale = extrapolation_error_scale(method, kept)
    return scale * distance, scale


# Said of intervals whose extrapolation term could not be measured (its scale is 0).
NO_EXTRAPOLATION_TERM = ("its intervals lack the extrapolation term (refitted without the top "
                         "quarter of its own log-N range, the fitted runs could not measure it): "
                         "bootstrap and residual only")


@dataclasses.dataclass(frozen=True)
class MethodBacktest:
    """One method's predictions of the held-out runs (`held_out` gains predicted, ci_low,
    ci_high, relative_error, covered), or the reason it could not be run."""

    method: str
    held_out: pd.DataFrame | None
    fit: FitResult | None
    skipped: str | None = None
    extrapolation_scale: float | None = None  # `extrapolation_sd`'s; None without intervals


def split_largest(runs: pd.DataFrame, drop_largest: int = 1, hold_out_from: float | None = None,
                  drop_highest_losses: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held_out): the runs of the `drop_largest` largest model sizes are held out, or,
    when `hold_out_from` is given, every run with N ≥ `hold_out_from`. The
    `drop_highest_losses` highest losses of the kept runs are left out of them (Epoch's
    preprocessing, applied to the runs fitted): a held-out run is never chosen by its loss."""
    sizes = np.sort(runs["N"].unique())
    if hold_out_from is not None:
        held = runs["N"] >= hold_out_from
        if not held.any() or held.all():
            raise ValueError(f"hold_out_from={hold_out_from:g} holds out {int(held.sum())} of "
                             f"{len(runs)} runs; need at least one run on each side")
    elif sizes.size < 2:
        raise ValueError(f"the runs have {sizes.size} model size; holding out the largest needs "
                         "at least 2")
    else:
        if drop_largest < 1 or drop_largest >= sizes.size:
            raise ValueError(f"drop_highest={drop_largest} is not allowed with {sizes.size} "
                             f"model sizes; need 1 <= drop_highest < {sizes.size}")
        held = runs["N"] >= sizes[-drop_largest]
    kept = runs[~held].reset_index(drop=True)
    if drop_highest_losses:
        kept = without_highest_losses(kept, drop_highest_losses)
    return kept, runs[held].reset_index(drop=True)


def _score(held_out: pd.DataFrame, predicted, low, high) -> pd.DataFrame:
    held_out = held_out.copy()
    held_out["predicted"] = predicted
    held_out["ci_low"], held_out["ci_high"] = low, high
    held_out["relative_error"] = held_out["predicted"] / held_out["loss"] - 1.0
    held_out["covered"] = (held_out["loss"] >= held_out["ci_low"]) & (held_out["loss"] <= held_out["ci_high"])
    return held_out


def envelope(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """For each distinct value of `key` (N or D), the run with the lowest loss: L(N) and L(D)
    describe the best loss reachable at a size, not every run at it."""
    return runs.loc[runs.groupby(key)["loss"].idxmin()].sort_values(key)


def method_points(method: str, kept: pd.DataFrame):
    """(variables, loss) a method is fitted to: every run for L(N, D); for L(C), the frontier of
    the runs' final points (the lowest final loss reached at each compute); for L(N) and L(D),
    the best run at each N or D."""
    if method == "compute":
        frontier = final_point_frontier(kept["name"] if "name" in kept else np.arange(len(kept)),
                                        kept["C"], kept["loss"])
        return {"C": frontier.flops}, frontier.loss
    if method in ("n", "d"):
        key = method.upper()
        best = envelope(kept, key)
        return {key: best[key].to_numpy()}, best["loss"].to_numpy()
    variables = {"N": kept["N"].to_numpy(), "D": kept["D"].to_numpy()}
    if method == DATA_CONSTRAINED:
        variables["U"] = kept["U"].to_numpy()
    return variables, kept["loss"].to_numpy()


def backtest_method(method: str, kept: pd.DataFrame, held_out: pd.DataFrame, *,
                    num_resamples: int, seed: int) -> MethodBacktest:
    """Fit `method` to `kept` and predict `held_out` with intervals."""
    law = get_law(method)
    if method == "compute":
        # L(C) is the lowest loss reachable at C, so it is scored on the held-out runs that are on
        # the frontier of every run's final point, not on runs trained off the optimum.
        runs = pd.concat([kept, held_out], ignore_index=True)
        frontier = final_point_frontier(np.arange(len(runs)), runs["C"], runs["loss"])
        on_frontier = set(frontier.run[frontier.run >= len(kept)] - len(kept))
        held_out = held_out.iloc[sorted(on_frontier)].reset_index(drop=True)
        if held_out.empty:
            return MethodBacktest(method, None, None,
                                  skipped="no held-out run is on the compute frontier")
    variables, loss = method_points(method, kept)
    needed = law.num_params + 1
    if np.size(loss) < needed:
        return MethodBacktest(method, None, None,
                              skipped=f"{np.size(loss)} points to fit; {method} needs at least {needed}")
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            result = fit_law(law, variables, loss)
            targets = {v: held_out[v].to_numpy() for v in law.variables}
            predicted = predict_loss(law, result.theta, targets)
            scale = None
            if num_resamples > 0:
                extra, scale = extrapolation_sd(method, kept, held_out["N"].to_numpy())
                low, high = prediction_interval(result, targets, num_resamples=num_resamples,
                                                seed=seed, extra_log_sd=extra)
            else:
                low = high = np.full(len(held_out), np.nan)
    except ValueError as error:
        return MethodBacktest(method, None, None, skipped=str(error))
    return MethodBacktest(method, _score(held_out, predicted, low, high), result,
                          extrapolation_scale=scale)


def applicable_methods(kept: pd.DataFrame) -> list[str]:
    """L(N, D) forms when the kept runs vary both N and D (and the data-constrained form when
    they give unique tokens U); L(C) when they hold two model sizes or more."""
    methods = []
    if kept["N"].nunique() >= 3 and kept["D"].nunique() >= 3:
        methods += ([DATA_CONSTRAINED] if "U" in kept.columns else []) + list(PARAMETRIC_METHODS)
    return methods + (["compute"] if kept["N"].nunique() >= 2 else [])


def run_backtest(runs: pd.DataFrame, *, drop_largest: int = 1, hold_out_from: float | None = None,
                 drop_highest_losses: int = 0, num_resamples: int = 500, seed: int = 0, methods=None,
                 level: float = CONFIDENCE_LEVEL, headline: str | None = None,
                 headline_reason: str = "the law the fit leads with") -> dict:
    """Every applicable method (or `methods`) fitted without the largest sizes, scored on them.

    The headline method is `headline` when given and applicable (the law the fit beside it leads
    with, chosen for `headline_reason`), else `headline_law`'s rule on the fitted runs. Returns a
    JSON-ready dict: the split, the headline method and the rule that chose it, and per method the
    fitted parameters, each held-out run (N, D, C, loss, predicted, interval, relative error,
    covered), the mean absolute relative error and the coverage.
    """
    runs = runs.reset_index(drop=True)
    if "name" not in runs.columns:
        runs = runs.assign(name=[f"run{i}" for i in range(len(runs))])
    kept, held_out = split_largest(runs, drop_largest, hold_out_from, drop_highest_losses)
    methods = list(methods) if methods else applicable_methods(kept)
    if not methods:
        raise ValueError(f"the runs fitted without the held-out ones have "
                         f"{kept['N'].nunique()} model size; a backtest needs at least 2")
    rule = (f"over-training form when the fitted runs have >= {MIN_BUDGETS_PER_SIZE} token "
            "budgets per size (median), else Chinchilla's form; decided on the fitted runs only")
    by_rule = headline_law(kept)
    if headline in methods and headline != by_rule:
        rule = headline_reason
    else:
        headline = by_rule if by_rule in methods else methods[0]
    results = {}
    for method in methods:
        outcome = backtest_method(method, kept, held_out, num_resamples=num_resamples, seed=seed)
        if outcome.skipped:
            results[method] = {"skipped": outcome.skipped}
            continue
        table = outcome.held_out
        results[method] = {
            "formula": outcome.fit.law.formula, "n_fit_points": outcome.fit.num_points,
            "params": outcome.fit.params,
            "mean_abs_relative_error": float(table["relative_error"].abs().mean()),
            "max_abs_relative_error": float(table["relative_error"].abs().max()),
            "coverage": float(table["covered"].mean()) if num_resamples > 0 else None,
            "extrapolation_error_scale": outcome.extrapolation_scale,
            "held_out": [{"name": str(row["name"]), "N": float(row["N"]), "D": float(row["D"]),
                          "C": float(row["C"]), "loss": float(row["loss"]),
                          "predicted": float(row["predicted"]), "ci_low": float(row["ci_low"]),
                          "ci_high": float(row["ci_high"]),
                          "relative_error": float(row["relative_error"]),
                          "covered": covered_or_none(row)} for _, row in table.iterrows()],
        }
    return {
        "held_out_sizes": sorted(float(n) for n in held_out["N"].unique()),
        "n_kept": int(len(kept)), "n_held_out": int(len(held_out)),
        "dropped_highest_losses_of_kept": int(drop_highest_losses),
        "budgets_per_size": budgets_per_size(kept),
        "headline": headline,
        "headline_rule": rule,
        "interval": {"level": level, "resamples": num_resamples,
                     "method": "bootstrap refits of the fitted points, plus a resampled "
                                "residual, plus the law's extrapolation error measured on the "
                                "fitted runs (top quarter of their log-N range held out) and "
                                "scaled by each target's log-N distance"},
        "methods": results,
    }


def covered_or_none(row) -> bool | None:
    """Whether a held-out run's loss lies inside its prediction interval; None when no interval
    was computed (no bootstrap)."""
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return None
    return bool(row["covered"])


def yes_no(covered: bool | None) -> str:
    return "n/a" if covered is None else "yes" if covered else "no"


def coverage(backtests: list[dict], level: float = CONFIDENCE_LEVEL) -> dict:
    """Empirical coverage of the intervals over every held-out prediction in `backtests` that
    has one, per method and over all, beside the nominal `level`."""
    per_method: dict[str, list[bool]] = {}
    for backtest in backtests:
        for method, result in backtest["methods"].items():
            for row in result.get("held_out", []):
                if row["covered"] is not None:
                    per_method.setdefault(method, []).append(row["covered"])
    everything = [covered for rows in per_method.values() for covered in rows]
    return {"nominal": level,
            "all": {"covered": int(sum(everything)), "predictions": len(everything),
                    "coverage": float(np.mean(everything)) if everything else None},
            "per_method": {method: {"covered": int(sum(rows)), "predictions": len(rows),
                                    "coverage": float(np.mean(rows))}
                           for method, rows in per_method.items()}}


def sizes_text(sizes: list[float]) -> str:
    """`N = a, b, c` for a few sizes, each shown once; the range and the count for many (sizes
    read off a figure differ in digits no one can tell apart)."""
    shown = list(dict.fromkeys(f"{n:.3g}" for n in sizes))
    if len(shown) <= 6:
        return "N = " + ", ".join(shown)
    return f"{len(sizes)} sizes, N = {min(sizes):.3g} to {max(sizes):.3g}"


def render_backtest(backtest: dict, title: str = "Backtest") -> str:
    """A markdown table per method: predicted, measured, relative error, interval, covered."""
    level = backtest["interval"]["level"]
    lines = [f"## {title}", "",
             f"Fitted on {backtest['n_kept']} runs; held out {backtest['n_held_out']} runs of the "
             f"largest size(s) ({sizes_text(backtest['held_out_sizes'])}). "
             f"Headline method: **{backtest['headline']}** (rule: {backtest['headline_rule']}).", "",
             f"| method | run | N | D | measured | predicted | rel. error | {level:.0%} interval | covered |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = [backtest["headline"]] + [m for m in backtest["methods"] if m != backtest["headline"]]
    summary_lines = []
    for method in order:
        result = backtest["methods"].get(method)
        if result is None:
            continue
        if "skipped" in result:
            summary_lines.append(f"- {method}: skipped ({result['skipped']})")
            continue
        for row in result["held_out"]:
            interval = (f"{row['ci_low']:.4f} – {row['ci_high']:.4f}"
                        if row["ci_low"] is not None and np.isfinite(row["ci_low"])
                        else "none (--bootstrap 0)")
            lines.append(f"| {method} | {row['name']} | {row['N']:.3g} | {row['D']:.3g} | "
                         f"{row['loss']:.4f} | {row['predicted']:.4f} | {row['relative_error']:+.2%} | "
                         f"{interval} | {yes_no(row['covered'])} |")
        covered = "" if result["coverage"] is None else f", coverage {result['coverage']:.0%}"
        if result.get("extrapolation_error_scale") == 0:
            covered += f"; {NO_EXTRAPOLATION_TERM}"
        summary_lines.append(f"- {method}: mean |relative error| "
                             f"{result['mean_abs_relative_error']:.2%}, max "
                             f"{result['max_abs_relative_error']:.2%}{covered}")
    return "\n".join(lines + [""] + summary_lines + [""])


def _check_backtest(backtest) -> None:
    """ValueError saying what a backtest.json lacks that `main` reads."""
    missing = [key for key in ("methods", "headline", "interval")
               if not isinstance(backtest, dict) or key not in backtest]
    if missing:
        raise ValueError(f"no {', '.join(missing)}: written by scaling-fit --backtest?")
    if not isinstance(backtest["methods"], dict) or not all(
            isinstance(result, dict) for result in backtest["methods"].values()):
        raise ValueError("methods is not a mapping of method names to results: written by "
                         "scaling-fit --backtest?")
    if not isinstance(backtest["headline"], str):
        raise ValueError(f"headline is {backtest['headline']!r}, not a method's name")
    for method, result in backtest["methods"].items():
        rows = result.get("held_out", [])
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and row.get("covered", "") in (True, False, None)
                and isinstance(row.get("relative_error"), (int, float))
                and math.isfinite(row["relative_error"]) for row in rows):
            raise ValueError(f"methods.{method}.held_out is not a list of held-out runs, each "
                             "with its relative_error (a number) and covered (true, false or "
                             "null)")


def main(argv=None) -> int:
    """`python -m analysis.backtest A/backtest.json B/backtest.json ...`: the coverage of the
    prediction intervals over all of them, per method and in all, and the mean |relative error|
    per method."""
    import json
    import pathlib

    parser = ArgumentParser(prog="python -m analysis.backtest",
                            description=main.__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="backtest.json files written by scaling-fit --backtest")
    args = parser.parse_args(argv)
    backtests, seen = [], {}
    for path in args.paths:
        try:
            same = seen.get(pathlib.Path(path).resolve())
            if same is not None:
                raise ValueError(f"the same file as {same}, given twice (its predictions would "
                                 "count twice)")
            seen[pathlib.Path(path).resolve()] = path
            backtest = json.loads(pathlib.Path(path).read_text())
            _check_backtest(backtest)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            print(f"analysis.backtest: error: {path}: not a readable backtest.json ({reason})",
                  file=sys.stderr)
            return 2
        backtests.append(backtest)
    summary = coverage(backtests)
    errors: dict[str, list[float]] = {}
    for backtest in backtests:
        for method, result in backtest["methods"].items():
            errors.setdefault(method, []).extend(
                abs(row["relative_error"]) for row in result.get("held_out", []))
    if not any(errors.values()):
        reasons = sorted({f"{method}: {result['skipped']}" for backtest in backtests
                          for method, result in backtest["methods"].items()
                          if "skipped" in result})
        print("analysis.backtest: error: no held-out prediction in "
              f"{', '.join(args.paths)}: every method was skipped"
              + (f" ({'; '.join(reasons)})" if reasons else ""), file=sys.stderr)
        return 2
    level = f"{summary['nominal']:.0%}"
    print(f"| method | held-out predictions | mean abs. rel. error | with a {level} interval | "
          "inside it | coverage |")
    print("|---|---|---|---|---|---|")

    def interval_columns(row: dict | None) -> str:
        return (f"{row['predictions']} | {row['covered']} | {row['coverage']:.0%}" if row
                else "0 | | n/a")

    for method, absolute in errors.items():
        if absolute:
            print(f"| {method} | {len(absolute)} | {np.mean(absolute):.2%} | "
                  f"{interval_columns(summary['per_method'].get(method))} |")
    headline = [row for b in backtests
                for row in b["methods"].get(b["headline"], {}).get("held_out", [])]
    covered = [row["covered"] for row in headline if row["covered"] is not None]
    print(f"| headline method of each backtest | {len(headline)} | "
          f"{np.mean([abs(row['relative_error']) for row in headline]):.2%} | "
          + interval_columns({"predictions": len(covered), "covered": sum(covered),
                              "coverage": np.mean(covered)} if covered else None) + " |")
    everything = [error for absolute in errors.values() for error in absolute]
    print(f"| all | {len(everything)} | {np.mean(everything):.2%} | "
          + interval_columns(summary["all"] if summary["all"]["predictions"] else None) + " |")
    if not summary["all"]["predictions"]:
        print("(no held-out prediction has an interval: the fits ran without a bootstrap)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

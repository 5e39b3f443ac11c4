"""Write an analysis as fit.json (machine-readable) and report.md (for people)."""

from __future__ import annotations

import json
import math
import pathlib
import shlex
import sys

from analysis.backtest import NO_EXTRAPOLATION_TERM, yes_no
from analysis.diagnostics import se_is_unbounded
from analysis.pipeline import Analysis
from scaling import files

VARIABLE_UNITS = {"C": "FLOPs", "6ND": "FLOPs", "N": "parameters", "D": "tokens"}


def json_ready(value):
    """Floats that JSON cannot hold (inf, NaN) become strings; numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_fit_json(analysis: Analysis, path) -> None:
    """fit.json: the headline law's parameters each under its own name with SE and CI, the
    objective, the law, the FLOP convention and the number of points, then every other fit."""
    files.write_text_atomic(pathlib.Path(path),
                            json.dumps(json_ready(analysis.summary), indent=2) + "\n")


def _number(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "never" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _interval(summary: dict, infinite: str = "∞") -> str:
    """"95% CI low – high"; an infinite bound reads `infinite`."""
    def bound(value):
        return infinite if isinstance(value, float) and math.isinf(value) and value > 0 \
            else _number(value)

    return f"{summary['ci_level']:.0%} CI {bound(summary['ci_low'])} – {bound(summary['ci_high'])}"


def _with_interval(summary: dict, infinite: str = "∞", failed: str = "") -> str:
    """Value, SE and interval; an infinite bound reads `infinite` ("never" for a budget that is
    not reached, "∞" for a parameter); `failed` says why resamples gave no value, where most
    did not (`failed_resamples_note`)."""
    text = _number(summary["value"])
    interval = _interval(summary, infinite)
    if se_is_unbounded(summary):
        text += f" (SE unbounded; {interval})"
    elif not math.isnan(summary.get("se", float("nan"))):
        text += f" (SE {_number(summary['se'], 2)}; {interval})"
    elif "failed_resamples" in summary:
        text += f" ({failed_resamples_note(summary, failed)})"
    return text


def repeating_note(repeating: list[dict], results: str | None, n_column: str) -> str:
    """What to know of runs trained on more tokens than their training split holds: the laws
    fitted here count each repeated token as a new one. With `results` (the results.csv they
    were read from), the command that fits the data-constrained form to it, N from `n_column`
    as the fits here take it."""
    passes = max(row["tokens"] / row["unique_tokens"] for row in repeating)
    note = (f"{len(repeating)} fitted run(s) repeat their training data (up to {passes:.3g} "
            "passes over it; tokens > unique_tokens), and the laws here count a repeated token "
            "as a new one; Muennighoff et al.'s data-constrained form models repetition")
    if results is None:
        return note
    return (f"{note}: scaling-fit --csv {shlex.quote(str(results))} --where status=completed "
            f"--n-col {n_column} --d-col tokens --u-col unique_tokens --loss-col final_eval_loss")


# Why an IsoFLOP exponent's resample gives no value: its runs are redrawn within each budget.
ISOFLOP_FAILED = ("left fewer than 2 budgets with a minimum inside their sizes; redrawn with "
                  "replacement, a budget's runs often keep fewer than 3 sizes")


def failed_resamples_note(summary: dict, why: str = "") -> str:
    """Why a bootstrapped estimate has no interval: most of its resamples gave no value, `why`
    (by default: they failed to fit or overflowed)."""
    return (f"no interval: {summary['failed_resamples']} of {summary['resamples']} bootstrap "
            f"resamples {why or 'failed to fit or overflowed'}")


def _diagnostic_lines(fit: dict) -> list[str]:
    flags = fit.get("diagnostics", [])
    if not flags:
        return []
    return (["**Warning: this fit is degenerate or poorly determined.**", ""]
            + [f"- {flag['problem']}; would help: {flag['fix']}." for flag in flags] + [""])


def _params_table(fit: dict) -> list[str]:
    header = "value (bootstrap SE; percentile CI)" if fit["bootstrap_resamples"] else "value"
    lines = [f"| parameter | {header} |", "|---|---|"]
    lines += [f"| {name} | {_with_interval(summary)} |" for name, summary in fit["params"].items()]
    return lines


def _returns_lines(derived: dict, prefix: str, variable: str, settings: dict,
                   irreducible: float | None, one_of_two: bool = False,
                   irreducible_identified: bool = True) -> list[str]:
    """Plain-language diminishing returns for the term in `variable` (`one_of_two`: the law's
    reducible loss has a term in another variable too, which the last line leaves out) over the
    `irreducible` loss E; where the data do not identify E (`irreducible_identified`), the
    share of it the term falls below is not given."""
    if f"{prefix}loss_drop_per_10x_at_smallest" not in derived:
        return []
    unit = VARIABLE_UNITS[variable]
    fraction = settings["reducible_fraction_of_E"]
    improvement = settings["improvement_nats"]
    term = f"The {variable} term of the reducible loss" if one_of_two else "The reducible loss"
    next_budget, below = (derived[prefix + key] for key in ("next_improvement_budget",
                                                            "reducible_below_fraction_budget"))
    # A term that still falls over a positive E falls below any share of it somewhere: an
    # infinite budget then is one beyond floating point, not "never".
    still_falling = (derived[prefix + "loss_drop_per_10x_at_largest"]["value"] > 0
                     and irreducible is not None and irreducible > 0)
    left = derived[prefix + "reducible_at_largest"]["value"]
    return [
        f"- 10× more {variable} lowers the loss by {_with_interval(derived[prefix + 'loss_drop_per_10x_at_smallest'])}"
        f" nats at the smallest {variable} of the data, and by "
        f"{_with_interval(derived[prefix + 'loss_drop_per_10x_at_largest'])} nats at the largest.",
        (f"- No {variable} lowers the loss {improvement} nats below its value at the largest "
         f"{variable}: the fitted exponent of {variable} is not positive (more {variable} does "
         f"not lower the loss)" + _needed(next_budget, variable) + "."
         if math.isinf(next_budget["value"]) and not derived[prefix + "exponent"]["value"] > 0 else
         f"- The next {improvement} nats beyond the largest {variable} need {variable} beyond "
         f"{sys.float_info.max:.1e} {unit}, past floating point ({left:.3g} nats of "
         f"{term[0].lower() + term[1:]} are left there)" + _needed(next_budget, variable) + "."
         if math.isinf(next_budget["value"]) and left > improvement else
         f"- No {variable} lowers the loss {improvement} nats below its value at the largest "
         f"{variable}: {term[0].lower() + term[1:]} left there is less than that"
         + _needed(next_budget, variable) + "."
         if math.isinf(next_budget["value"]) else
         f"- The next {improvement} nats beyond the largest {variable} need "
         f"{variable} = {_with_interval(next_budget, 'never')} {unit}, i.e. "
         f"{_with_interval(derived[prefix + 'next_improvement_multiple'], 'never')}× the largest."),
        (f"- Where {term[0].lower() + term[1:]} falls below {fraction:.0%} of E is not "
         "determined: the data do not identify E (see the warnings above)."
         if not irreducible_identified else
         f"- {term} never falls below {fraction:.0%} of E" + _needed(below, variable) + "."
         if math.isinf(below["value"]) and not still_falling else
         f"- {term} falls below {fraction:.0%} of E only beyond {sys.float_info.max:.1e} {unit}, "
         f"past floating point (E = {irreducible:.3g})" + _needed(below, variable) + "."
         if math.isinf(below["value"]) else
         f"- {term} falls below {fraction:.0%} of E at {variable} = "
         f"{_with_interval(below, 'never')} {unit}."),
    ]


def _needed(summary: dict, variable: str) -> str:
    """The interval of a budget the point estimate never reaches, when some resamples reach it."""
    if not math.isfinite(summary.get("ci_low", math.nan)):
        return ""
    return f" ({variable} needed: {_interval(summary, 'never')})"


MAX_GAIN_ROWS = 12  # beyond this many sizes the table is in fit.json only


def _data_gain_lines(fit: dict) -> list[str]:
    rows = fit.get("data_gain", [])
    if not rows or len(rows) > MAX_GAIN_ROWS:
        return []
    lines = ["How much the loss falls from each size's smallest to its largest D, measured and as "
             "the law has it (nats):", "", "| N | D | measured | law |", "|---|---|---|---|"]
    lines += [f"| {_number(row['N'])} | {_number(row['D_low'])} → {_number(row['D_high'])} | "
              f"{row['measured']:.4f} | {row['law']:.4f} |" for row in rows]
    return lines + [""] + _shared_exponent_lines(fit)


def _shared_exponent_lines(fit: dict) -> list[str]:
    shared = fit.get("shared_data_exponent")
    if not shared or len(shared["sizes"]) > MAX_GAIN_ROWS:
        return []
    resampled = (f"; interval from {shared['resamples']} resamples of each size's runs"
                 if shared["resamples"] else "")
    lines = [f"With its own E_N and B_N for each size and one data exponent for all, "
             f"L = E_N + B_N/D^β (weighted least squares on relative residuals{resampled}): "
             f"β = {_with_interval(shared['beta'])}; residuals {shared['rms']:.2%} rms, against "
             f"{shared['law_rms']:.2%} for this law. Where they are much smaller, the sizes share "
             f"the exponent and differ in how large their data term is:", "",
             "| N | E_N | B_N |", "|---|---|---|"]
    lines += [f"| {_number(row['N'])} | {_number(row['E'])} | {_number(row['B'])} |"
              for row in shared["sizes"]]
    return lines + [""]


def _fit_section(title: str, fit: dict, settings: dict) -> list[str]:
    lines = [f"## {title}", "", f"`{fit['formula']}` fitted to {fit['n_points']} points: sum of "
             f"Huber losses (δ = {fit['huber_delta']}) on log loss, objective "
             f"{fit['objective']:.6e}, best of {fit['num_starts']} L-BFGS starts; "
             + (f"uncertainty from {fit['bootstrap_resamples']} bootstrap resamples of the points."
                if fit["bootstrap_resamples"] else
                "no bootstrap (--bootstrap 0): no intervals, and whether the data identify each "
                "parameter was not checked."), ""]
    lines += _diagnostic_lines(fit) + _params_table(fit) + [""] + _data_gain_lines(fit)
    derived = fit["derived"]
    irreducible = fit["params"].get("E", {}).get("value")
    returns_lines = []
    two_terms = all(f"{prefix}loss_drop_per_10x_at_smallest" in derived for prefix in ("N_", "D_"))
    identified = not any(flag["parameter"] == "E" for flag in fit.get("diagnostics", []))
    for prefix, variable in (("C_", "C"), ("N_", "N"), ("D_", "D")):
        returns_lines += _returns_lines(derived, prefix, variable, settings, irreducible,
                                        two_terms, identified)
    if "a" in derived:
        exponents = (f"N_opt ∝ C^a with a = {_with_interval(derived['a'])}, D_opt ∝ C^b with b = "
                     f"{_with_interval(derived['b'])}")
        if fit.get("law") == "overtraining":  # alpha = beta = 2·eta: no data can move them
            exponents = ("N_opt and D_opt ∝ C^0.5, fixed by this form (its N and D exponents "
                         "are both 2·eta), not measured")
        largest = (f" (6ND = {_number(fit['compute_6ND']['max'])} FLOPs)"
                   if "compute_6ND" in fit else "")
        returns_lines += [
            f"- Compute-optimal allocation (C = 6ND, whatever FLOP convention the data use): "
            f"{exponents}.",
            f"- At the largest budget of the data{largest}: N_opt = "
            f"{_with_interval(derived['N_opt_at_largest_C'])}, D_opt = "
            f"{_with_interval(derived['D_opt_at_largest_C'])}.",
            f"- Along that optimum L_opt(C) = E + K·C^-gamma with gamma = "
            f"{_with_interval(derived['optimal_loss_exponent_gamma'])}:",
        ]
        returns_lines += ["  " + line for line in _returns_lines(derived, "optimal_C_", "6ND",
                                                                 settings, irreducible,
                                                                 irreducible_identified=identified)]
    if returns_lines:
        lines += ["Diminishing returns:", ""] + returns_lines + [""]
    return lines


def _preprocessing_lines(data: dict) -> list[str]:
    """What was done to a --csv's rows before the fit, a sentence each: the filters, the
    highest losses left out, and the best row kept of each (N, D)."""
    said = []
    if data.get("where"):
        said.append("rows kept: those with " + ", ".join(
            f"{column} = {value}" for column, value in data["where"].items()) + " (--where)")
    if data.get("dropped_highest_losses"):
        said.append(f"left out of each fit: the {data['dropped_highest_losses']} highest losses "
                    "of the runs it fits (--drop-highest-losses); every held-out run is "
                    "predicted, whatever its loss")
    if data.get("best_per_point"):
        points = data.get("points", data["runs_fitted"])
        said.append(f"{points} points from {data['rows']} rows: of rows that share "
                    f"{data.get('point', '(N, D)')}, the one with the lowest loss "
                    "(--best-per-point)")
    return said


def render_report(analysis: Analysis, plots: list[str] | None = None) -> str:
    """report.md: the headline law, then the three Chinchilla approaches, the extrapolation check,
    what was skipped and why, and the plots."""
    summary = analysis.summary
    settings, data = summary["settings"], summary["data"]
    lines = ["# Scaling-law fit", ""]
    convention = summary["flop_convention"]
    meaning = {"6N": " (6·non-embedding parameters·tokens, Kaplan).",
               "full": " (embeddings, attention and unembedding counted, Chinchilla-style)."}
    lines.append(f"Source: {data.get('source', 'points')}. FLOP convention: **{convention}**"
                 + meaning.get(convention, "."))
    if data.get("loss_column", "final_eval_loss") != "final_eval_loss":
        lines.append(f"Loss fitted: column `{data['loss_column']}`.")
    fitted = f"{data['runs_fitted']} runs fitted"
    if "runs_total" in data:
        fitted = f"{data['runs_total']} runs in the sweep, {data['runs_fitted']} fitted"
    if max(data.get("seeds_per_point", [1])) > 1:
        seeds = "–".join(str(k) for k in sorted({min(data["seeds_per_point"]),
                                                   max(data["seeds_per_point"])}))
        fitted = (f"{data['runs_total']} runs in the sweep, fitted as {data['runs_fitted']} "
                  f"points, each the mean of its {seeds} seeds (seed-to-seed standard "
                  f"deviation, median over points: {100 * data['seed_sd_median_relative']:.2f}% of the loss)")
    lines.append(fitted + ".")
    lines += [f"- {line}" for line in _preprocessing_lines(data)]
    for row in data.get("excluded", []):
        lines.append(f"- excluded {row['name']}: {row['reason']}")
    for row in data.get("skipped_updates", []):
        lines.append(f"- fitted, but {row['name']} skipped {row['skipped_steps']} of its "
                     f"{row['steps']} updates for a non-finite loss or gradient "
                     "(train.on_nonfinite='skip')")
    repeating = data.get("repeating_data", [])
    if repeating:
        lines.append(f"- {repeating_note(repeating, data.get('results'), data['n_column'])}")
    lines += ["", f"Headline law: **{summary['law']}**, `{summary['formula']}`."
              + (f" ({data['headline_note']}.)" if data.get("headline_note") else ""),
              ""]
    fits = summary["fits"]
    order = [summary["law"]] + [name for name in fits if name != summary["law"]]
    titles = {"compute": "Approach 1: loss vs compute on the compute-efficient frontier",
              "chinchilla": "Approach 3: parametric L(N, D) (Chinchilla form)",
              "kaplan": "Parametric L(N, D) (Kaplan form)",
              "overtraining": "Parametric L(N, D) (Gadre et al.'s over-training form)",
              "data_constrained": "Parametric L(N, D, U) (Muennighoff et al.'s data-constrained form)",
              "n": "L(N): best loss at each model size", "d": "L(D): best loss at each token count"}
    for name in order:
        title = titles[name]
        if name == "compute":
            title += f" ({data['frontier_points']} frontier points from {data['frontier_source']})"
        lines += _fit_section(title, fits[name], settings)
    if summary["isoflop"] is not None:
        iso = summary["isoflop"]
        grouped = (["No `--isoflop-budgets` were given: the budgets are the runs' compute where "
                    "it coincides, whether or not the runs were planned as profiles around it "
                    "(a ladder's are not).", ""] if iso.get("grouped") else [])
        lines += ["## Approach 2: IsoFLOP profiles", ""] + _diagnostic_lines(iso) + grouped + [
                  f"Parabola of loss vs log N per budget; N_opt ∝ C^a with a = "
                  f"{_with_interval(iso['a'], failed=ISOFLOP_FAILED)}, D_opt ∝ C^b with b = "
                  f"{_with_interval(iso['b'], failed=ISOFLOP_FAILED)} (resampling runs within "
                  "budgets).", "",
                  "| budget C (FLOPs) | sizes | runs' C within | N_opt | D_opt | min loss |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {row['C']:.3g} | {row['sizes']} | ×{row['farthest']:.3g} | {_number(row['N_opt'])}"
                  f" | {_number(row['D_opt'])} | {_number(row['min_loss'])} |" for row in iso["budgets"]]
        if any(row["N_opt"] is None or math.isnan(row["N_opt"]) for row in iso["budgets"]):
            lines += ["", "n/a: the budget's parabola has no minimum inside the sizes trained at "
                          "it (its lowest loss is at the smallest or largest size, or it opens "
                          "downwards); such a budget does not enter the exponent fits."]
        lines.append("")
    for name, check in summary["extrapolation"].items():
        sizes = ", ".join(_number(n) for n in check["held_out_sizes"])
        lines += [f"## Extrapolation check ({name})", "",
                  f"Refitted on {check['n_fit_points']} points without the largest model size(s) "
                  f"(N = {sizes}) and predicted their {check['n_held_out']} "
                  + ("compute-optimal run(s) (on the frontier of all runs)" if name == "compute"
                     else "run(s)") + ": mean absolute error "
                  f"{check['mean_abs_error']:.4f} nats, max {check['max_abs_error']:.4f} nats, "
                  f"mean |relative error| {check['mean_abs_relative_error']:.2%}"
                  + ("" if check.get("coverage") is None else
                     f"; {check['coverage']:.0%} of the runs inside their "
                     f"{check['interval_level']:.0%} prediction interval")
                  + (f"; {NO_EXTRAPOLATION_TERM}" if check.get("extrapolation_error_scale") == 0
                     else "") + ".", "",
                  "| run | N | D | actual loss | predicted | rel. error | prediction interval | covered |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {row['name']} | {_number(row['N'])} | {_number(row['D'])} | {row['loss']:.4f}"
                  + (f" (mean of {row['seeds']} seeds, sd {row['seed_sd']:.4f})" if "seeds" in row
                     else "") + f" | {row['predicted']:.4f} | {row['relative_error']:+.2%} | "
                  f"{_number(row['ci_low'])} – {_number(row['ci_high'])} | "
                  f"{yes_no(row['covered'])} |" for row in check["held_out"]]
        lines.append("")
    if summary["skipped"]:
        lines += ["## Skipped", ""] + [f"- {name}: {reason}" for name, reason in summary["skipped"].items()]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in plots]
        lines.append("")
    return "\n".join(lines)

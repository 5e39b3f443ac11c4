"""The whole analysis of one set of runs: every applicable fit, with uncertainty and checks.

Given runs (final N, D, C, loss per run; optionally training curves), `analyze` runs
- Approach 1: L(C) = E + A·C^-alpha on the compute-efficient frontier;
- Approach 2: IsoFLOP parabolas, when at least two budgets hold three or more model sizes;
- Approach 3: the parametric L(N, D), when N and D each take three or more distinct values;
- the law asked for (compute, chinchilla, kaplan, n or d) as the headline;
- an extrapolation check: refit without the largest model(s) and predict them;
and returns an `Analysis` holding both the JSON-ready summary and the arrays the plots need.
Steps that the data cannot support are recorded as skipped with the reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis import allocation, returns
from analysis.backtest import (covered_or_none, envelope, extrapolation_sd, method_points,
                               prediction_interval, split_largest)
from analysis.bootstrap import CONFIDENCE_LEVEL, bootstrap_fits, summarize
from analysis.diagnostics import (data_gain_by_size, diagnose, isoflop_flags,
                                  shared_data_exponent, unequal_exponents)
from analysis.fit import HUBER_DELTA, FitResult, fit_law
from analysis.frontier import (DEFAULT_FRONTIER_POINTS, DEFAULT_SKIP_FRACTION, Frontier,
                               curve_frontier, final_point_frontier)
from analysis.inputs import without_highest_losses
from analysis.isoflop import IsoflopFit, fit_isoflops, group_budgets
from analysis.laws import get_law, predict_loss

DEFAULT_RESAMPLES = 500
MAX_RESAMPLES = 100_000  # each resample a fit; their weights one row each
MIN_DISTINCT_FOR_PARAMETRIC = 3


@dataclasses.dataclass(frozen=True)
class Settings:
    """What an analysis computes. `improvement` (nats) and `reducible_fraction` (of E) set the
    diminishing-returns figures; `drop_largest` is how many of the largest model sizes the
    extrapolation check holds out; `drop_highest_losses` the highest losses left out of each fit
    (of all runs for the fits, of the runs it keeps for the extrapolation check, which scores
    every held-out run); `budgets` optionally gives the IsoFLOP budget of each run (FLOPs)
    instead of grouping runs by their FLOP counts."""

    law: str = "compute"
    num_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    improvement: float = 0.01
    reducible_fraction: float = 0.1
    drop_largest: int = 1
    hold_out_from: float | None = None
    drop_highest_losses: int = 0
    frontier_points: int = DEFAULT_FRONTIER_POINTS
    skip_fraction: float = DEFAULT_SKIP_FRACTION
    parametric_law: str = "chinchilla"


@dataclasses.dataclass(frozen=True)
class LawFit:
    """A law fitted with bootstrap uncertainty: `summary` is JSON-ready; `variables` and `loss`
    are the points it was fitted to."""

    fit: FitResult
    bootstrap_theta: np.ndarray
    variables: dict[str, np.ndarray]
    loss: np.ndarray
    summary: dict


@dataclasses.dataclass(frozen=True)
class Extrapolation:
    """Held-out runs (the largest model sizes) with their actual and predicted losses."""

    law: str
    held_out: pd.DataFrame
    fit: FitResult
    summary: dict


@dataclasses.dataclass(frozen=True)
class Analysis:
    """`summary` is what fit.json holds; the rest are the arrays behind it (`run_budgets`: the
    IsoFLOP budget of each run, FLOPs)."""

    summary: dict
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    frontier: Frontier | None
    fits: dict[str, LawFit]
    isoflop: IsoflopFit | None
    run_budgets: np.ndarray
    extrapolations: dict[str, Extrapolation]

    @property
    def headline(self) -> LawFit:
        return self.fits[self.summary["law"]]


def _derived_samples(law_name: str, params: dict[str, np.ndarray], variables: dict[str, np.ndarray],
                     settings: Settings) -> dict[str, np.ndarray]:
    """Quantities that follow from the parameters, elementwise over parameter samples."""
    improvement, fraction = settings.improvement, settings.reducible_fraction

    def table(prefix, coefficient, exponent, values):
        rows = returns.diminishing_returns(coefficient, exponent, params["E"], values.min(), values.max(),
                                           improvement=improvement, reducible_fraction=fraction)
        return {f"{prefix}{name}": value for name, value in rows.items()}

    if law_name in ("compute", "n"):
        variable = "C" if law_name == "compute" else "N"
        return table(f"{variable}_", params["A"], params["alpha"], variables[variable])
    if law_name == "d":
        return table("D_", params["B"], params["beta"], variables["D"])
    if law_name in ("chinchilla", "overtraining"):
        if law_name == "chinchilla":
            A, B, alpha, beta = params["A"], params["B"], params["alpha"], params["beta"]
        else:
            # Gadre et al.'s form is Chinchilla's with alpha = beta = 2·eta (see analysis.laws).
            eta = params["eta"]
            A, B = params["a"] * np.power(120.0, -eta), params["b"] * np.power(10.0 / 3.0, eta)
            alpha = beta = 2.0 * eta
        a, b = allocation.allocation_exponents(alpha, beta)
        coefficient, gamma = allocation.optimal_loss_law(A, B, alpha, beta)
        compute = 6.0 * variables["N"] * variables["D"]
        largest = compute.max()
        derived = {"a": a, "b": b, "G": allocation.allocation_coefficient(A, B, alpha, beta),
                   "N_opt_at_largest_C": allocation.optimal_params(largest, A, B, alpha, beta),
                   "D_opt_at_largest_C": allocation.optimal_tokens(largest, A, B, alpha, beta),
                   "optimal_loss_coefficient_K": coefficient, "optimal_loss_exponent_gamma": gamma}
        derived.update(table("N_", A, alpha, variables["N"]))
        derived.update(table("D_", B, beta, variables["D"]))
        derived.update(table("optimal_C_", coefficient, gamma, compute))
        return derived
    return {}


def fit_with_uncertainty(law_name: str, variables: dict[str, np.ndarray], loss: np.ndarray,
                         settings: Settings, *, reduction: str = "sum",
                         clusters: np.ndarray | None = None) -> LawFit:
    """Fit `law_name` to the points, bootstrap it (resampling whole `clusters` when given: see
    `bootstrap_fits`) and summarise every parameter and derived quantity as value, standard error
    and percentile interval."""
    law = get_law(law_name)
    # Resamples that run off along a flat direction overflow; they are summarised (and flagged by
    # the diagnostics), not warned about one operation at a time.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = fit_law(law, variables, loss, reduction=reduction)
        samples = (bootstrap_fits(result, settings.num_resamples, settings.seed, clusters=clusters)
                   if settings.num_resamples > 0 else np.empty((0, law.num_params)))
        point_params = law.natural(result.theta[None])
        sample_params = law.natural(samples)
        point_derived = _derived_samples(law_name, point_params, variables, settings)
        sample_derived = _derived_samples(law_name, sample_params, variables, settings)
        params_summary = {name: summarize(point_params[name][0], sample_params[name])
                          for name in law.reported_params}
        derived_summary = {name: summarize(point_derived[name][0], sample_derived[name])
                           for name in point_derived}
    summary = {
        "law": law.name, "formula": law.formula, "variables": list(law.variables),
        "n_points": result.num_points, "objective": result.objective,
        "objective_reduction": result.reduction, "huber_delta": result.delta,
        "num_starts": result.num_starts,
        "fit_params": dict(zip(law.fit_params, map(float, result.theta))),
        "params": params_summary,
        "derived": derived_summary,
        "bootstrap_resamples": int(len(samples)),
    }
    summary["diagnostics"] = diagnose(law.name, summary["params"], variables, loss)
    if law.name in ("chinchilla", "overtraining"):
        # The compute-optimal figures take C = 6ND whatever the data's FLOP convention.
        compute = 6.0 * np.asarray(variables["N"], float) * np.asarray(variables["D"], float)
        summary["compute_6ND"] = {"min": float(compute.min()), "max": float(compute.max())}
    gains = data_gain_by_size(law, result.theta, variables, loss)
    if gains:
        summary["data_gain"] = gains
    return LawFit(fit=result, bootstrap_theta=samples, variables=variables, loss=np.asarray(loss),
                  summary=summary)


MIN_BOOTSTRAP_RUNS = 4  # fewer runs than this give a run-level bootstrap too few distinct draws


def decaying_curve_frontier(runs: pd.DataFrame, frontier: Frontier) -> list[dict]:
    """A diagnostic when the frontier is read off the training curves of runs whose learning
    rate decays: a point partway through such a run lies above the loss of a run planned for
    that compute, so the frontier between the runs' final points, and L(C), are biased."""
    schedules = set(runs["schedule"].dropna().astype(str)) if "schedule" in runs else set()
    decaying = sorted(schedules - {"constant", ""})
    if frontier.source != "curves" or not decaying:
        return []
    return [{"parameter": "frontier",
             "problem": (f"the frontier is read off the training curves of runs with a decaying "
                         f"learning rate ({', '.join(decaying)}), whose intermediate losses lie "
                         "above those of runs planned for that compute: L(C) is biased"),
             "fix": "a ladder sweep (plan='ladder'), whose cooldown branches give each budget "
                    "its own final loss"}]


def frontier_clusters(frontier: Frontier) -> np.ndarray | None:
    """The run of each frontier point when several points come from one training curve (they
    share its offset, so a bootstrap draws runs); None for a frontier of final points, or of
    fewer than MIN_BOOTSTRAP_RUNS runs (every resample would be one of a handful; its points are
    drawn then, and the interval understates the runs' scatter)."""
    if frontier.source != "curves" or np.unique(frontier.run).size < MIN_BOOTSTRAP_RUNS:
        return None
    return frontier.run


def _points_for(law_name: str, runs: pd.DataFrame, frontier: Frontier | None):
    """(variables, loss) that `law_name` is fitted to."""
    if law_name == "compute":
        return {"C": frontier.flops}, frontier.loss
    return method_points(law_name, runs)


def is_ladder(runs: pd.DataFrame) -> bool:
    """Whether most model sizes were trained at two or more token budgets (a ladder of cooldown
    branches, or an over-training grid)."""
    return len(runs) > 0 and float(runs.groupby("N")["D"].nunique().median()) >= 2


class LawNotFitted(ValueError):
    """The headline law (`Settings.law`) cannot be fitted to the runs, and why (`reason`)."""

    def __init__(self, law: str, reason: str):
        super().__init__(f"law={law!r} cannot be fitted: {reason}")
        self.law, self.reason = law, reason


def default_law(runs: pd.DataFrame, preferred: str | None = None,
                which: str = "these runs") -> tuple[str, str | None]:
    """The law to lead with when none is asked for, and why it is not `preferred` when the runs
    cannot support that: `preferred` (by default Chinchilla's L(N, D) for a ladder, L(C) on the
    compute frontier otherwise), or L(C) with the reason (`which` says what the runs are)."""
    preferred = preferred or ("chinchilla" if is_ladder(runs) else "compute")
    reason = parametric_skip_reason(runs, preferred) if preferred != "compute" else None
    if reason:
        return "compute", f"{preferred}, the default for {which}, cannot be fitted: {reason}"
    return preferred, None


def compute_frontier(runs: pd.DataFrame, curves: pd.DataFrame | None, settings: Settings) -> Frontier:
    """The compute frontier from training curves; from the runs' final points when there are no
    curves with two or more eval points per run, or when the runs form a ladder (intermediate
    points of a decaying schedule are not the loss a run of that length would reach)."""
    if curves is not None and len(curves) and not is_ladder(runs):
        try:
            return curve_frontier(curves, num_points=settings.frontier_points,
                                  skip_fraction=settings.skip_fraction)
        except ValueError:
            pass
    return final_point_frontier(runs["name"], runs["C"], runs["loss"])


def one_size_reason(runs: pd.DataFrame, which: str = "the runs") -> str | None:
    """Why L(C) cannot be fitted to `runs` of a single model size (their points trace that
    size's L(D), and a law fitted to them would say nothing of other sizes), or None."""
    sizes = runs["N"].unique()
    if len(sizes) >= 2:
        return None
    return (f"{which} have one model size (N = {sizes[0]:.4g}), so they trace that size's L(D), "
            "not a compute frontier across sizes (--law d fits it)")


def parametric_skip_reason(runs: pd.DataFrame, law_name: str) -> str | None:
    """Why the runs cannot support a parametric L(N, D) fit, or None if they can."""
    if law_name == "data_constrained" and "U" not in runs.columns:
        return ("the runs have no unique-token counts U (the data-constrained law needs them: "
                "--csv with --u-col)")
    needed = get_law(law_name).num_params + 1
    distinct_n, distinct_d = runs["N"].nunique(), runs["D"].nunique()
    if len(runs) < needed or min(distinct_n, distinct_d) < MIN_DISTINCT_FOR_PARAMETRIC:
        return (f"{len(runs)} runs with {distinct_n} distinct N and {distinct_d} "
                f"distinct D; fitting {law_name} needs at least {needed} runs and "
                f"{MIN_DISTINCT_FOR_PARAMETRIC} distinct values of each")
    ratios = np.unique(np.round(np.log(runs["D"] / runs["N"]), 2))
    if ratios.size < 2:
        return (f"every run has the same tokens per parameter (D/N = "
                f"{float(np.median(runs['D'] / runs['N'])):.3g}), so N and D move together and "
                f"fitting {law_name} cannot tell their effects apart; it needs runs at two or more "
                "D/N")
    return None


def extrapolation_check(law_name: str, runs: pd.DataFrame, curves: pd.DataFrame | None,
                        settings: Settings, frontier: Frontier) -> Extrapolation:
    """Refit `law_name` without the runs of the `settings.drop_largest` largest model sizes (or
    of N ≥ `settings.hold_out_from`) and predict their final losses with prediction intervals
    (`analysis.backtest.prediction_interval`); for the compute law at their final FLOPs, from a
    frontier rebuilt without them. L(C) describes only compute-optimal runs, so it predicts only
    the held-out runs on `frontier`, the frontier of all runs."""
    if law_name == "d":
        raise ValueError("L(D) describes the best loss at each D over every size, so holding out "
                         "the largest sizes does not test it")
    kept, held_out = split_largest(runs, settings.drop_largest, settings.hold_out_from,
                                   settings.drop_highest_losses)
    if law_name == "n":  # the best loss at a size: predicted for the best run of each held-out size
        held_out = envelope(held_out, "N").reset_index(drop=True)
    if law_name == "compute":
        held_out = held_out[held_out["name"].isin(set(frontier.run))].reset_index(drop=True)
        if held_out.empty:
            raise ValueError("no run of the held-out sizes is on the compute frontier, so L(C) "
                             "has nothing it should predict")
    if law_name == "compute" and (reason := one_size_reason(kept, "the runs it keeps")):
        raise ValueError(reason)
    kept_curves = None if curves is None else curves[curves["name"].isin(set(kept["name"]))]
    law = get_law(law_name)
    kept_frontier = (compute_frontier(kept, kept_curves, settings) if law_name == "compute"
                     else None)
    variables, loss = _points_for(law_name, kept, kept_frontier)
    targets = {v: held_out[v].to_numpy() for v in law.variables}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = fit_law(law, variables, loss)
        held_out["predicted"] = predict_loss(law, result.theta, targets)
        scale = None
        if settings.num_resamples > 0:
            extra, scale = extrapolation_sd(law_name, kept, held_out["N"].to_numpy())
            low, high = prediction_interval(
                result, targets, num_resamples=settings.num_resamples, seed=settings.seed,
                clusters=frontier_clusters(kept_frontier) if kept_frontier is not None else None,
                extra_log_sd=extra)
        else:
            low = high = np.full(len(held_out), np.nan)
    held_out["ci_low"], held_out["ci_high"] = low, high
    held_out["error"] = held_out["predicted"] - held_out["loss"]
    held_out["relative_error"] = held_out["error"] / held_out["loss"]
    held_out["covered"] = (held_out["loss"] >= low) & (held_out["loss"] <= high)
    errors = held_out["error"].to_numpy()
    summary = {
        "law": law_name, "held_out_sizes": [float(n) for n in np.sort(held_out["N"].unique())],
        "n_fit_points": int(np.size(loss)), "n_held_out": int(len(held_out)),
        "mean_abs_error": float(np.abs(errors).mean()), "max_abs_error": float(np.abs(errors).max()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "mean_abs_relative_error": float(np.abs(held_out["relative_error"]).mean()),
        "max_abs_relative_error": float(np.abs(held_out["relative_error"]).max()),
        "interval_level": CONFIDENCE_LEVEL,
        "coverage": float(held_out["covered"].mean()) if settings.num_resamples > 0 else None,
        "extrapolation_error_scale": scale,
        "fit_params": {name: float(value[0]) for name, value in
                       law.natural(result.theta[None]).items()},
        "held_out": [{"name": str(row.get("name", i)), "N": float(row["N"]), "D": float(row["D"]),
                      "C": float(row["C"]), "loss": float(row["loss"]),
                      "predicted": float(row["predicted"]), "ci_low": float(row["ci_low"]),
                      "ci_high": float(row["ci_high"]),
                      "relative_error": float(row["relative_error"]), "covered": covered_or_none(row),
                      **({"seeds": int(row["seeds"]), "seed_sd": float(row["seed_sd"])}
                         if row.get("seeds", 1) > 1 else {})}
                     for i, row in held_out.iterrows()],
    }
    return Extrapolation(law=law_name, held_out=held_out, fit=result, summary=summary)


def _isoflop_summary(isoflop: IsoflopFit, flops: np.ndarray, run_budgets: np.ndarray) -> dict:
    """What fit.json holds of Approach 2; `farthest` is the largest factor between a budget and
    the compute of a run counted at it (runs snapped to a grid can lie far from it)."""
    off = np.exp(np.abs(np.log(np.asarray(flops, dtype=float) / run_budgets)))
    farthest = [float(off[run_budgets == budget].max()) for budget in isoflop.budgets]
    summary = {
        "a": summarize(isoflop.params_exponent, isoflop.bootstrap_params_exponent),
        "b": summarize(isoflop.tokens_exponent, isoflop.bootstrap_tokens_exponent),
        "N_opt_coefficient": isoflop.params_coefficient, "D_opt_coefficient": isoflop.tokens_coefficient,
        "budgets": [{"C": float(c), "sizes": int(s), "N_opt": float(n), "D_opt": float(d),
                     "min_loss": float(m), "used": bool(u), "farthest": f}
                    for c, s, n, d, m, u, f in zip(isoflop.budgets, isoflop.sizes_per_budget,
                                                   isoflop.optimal_params, isoflop.optimal_tokens,
                                                   isoflop.minimum_loss, isoflop.used, farthest)],
    }
    summary["diagnostics"] = isoflop_flags(summary["budgets"])
    return summary


def analyze(runs: pd.DataFrame, settings: Settings = Settings(), *, curves: pd.DataFrame | None = None,
            budgets: np.ndarray | None = None, flop_convention: str = "6N",
            data_summary: dict | None = None) -> Analysis:
    """Every applicable fit for `runs` (columns N, D, C, loss, optionally name; one row per run,
    final values), the training `curves` (name, flops, loss) when available, and the IsoFLOP
    budget of each run (`budgets`, FLOPs; by default runs are grouped by their FLOP counts)."""
    get_law(settings.law)
    runs = runs.reset_index(drop=True)
    if "name" not in runs.columns:
        runs = runs.assign(name=[f"run{i}" for i in range(len(runs))])
    # The extrapolation check's held-out runs are scored whatever their loss.
    every_run, every_curve = runs, curves
    if settings.drop_highest_losses:
        runs = without_highest_losses(runs.assign(_row=np.arange(len(runs))),
                                      settings.drop_highest_losses)
        if budgets is not None:
            budgets = np.asarray(budgets)[runs["_row"].to_numpy()]
        runs = runs.drop(columns="_row")
        if curves is not None:
            curves = curves[curves["name"].isin(set(runs["name"]))]
    fits, extrapolations, skipped = {}, {}, {}
    frontier = compute_frontier(runs, curves, settings)
    parametric = ("chinchilla", "kaplan", "overtraining", "data_constrained")
    parametric_law = settings.law if settings.law in parametric else settings.parametric_law
    wanted = ["compute", parametric_law] + ([settings.law] if settings.law in ("n", "d") else [])
    if parametric_law in ("overtraining", "data_constrained"):
        wanted.append("chinchilla")
    for law_name in wanted:
        reason = (parametric_skip_reason(runs, law_name) if law_name in parametric else
                  one_size_reason(runs) if law_name == "compute" else None)
        if reason is None:
            variables, loss = _points_for(law_name, runs, frontier)
            try:
                fits[law_name] = fit_with_uncertainty(
                    law_name, variables, loss, settings,
                    clusters=frontier_clusters(frontier) if law_name == "compute" else None)
            except ValueError as error:
                reason = str(error)
            if law_name == "compute" and law_name in fits:
                fits[law_name].summary["diagnostics"] += decaying_curve_frontier(runs, frontier)
        if reason is not None:
            if law_name == settings.law:
                raise LawNotFitted(law_name, reason)
            skipped[law_name] = reason
    if "overtraining" in fits and "chinchilla" in fits:
        chinchilla = fits["chinchilla"]
        point, samples = (chinchilla.fit.law.natural(theta) for theta in
                          (chinchilla.fit.theta[None], chinchilla.bootstrap_theta))
        fits["overtraining"].summary["diagnostics"] += unequal_exponents(
            {name: (float(point[name][0]), samples[name]) for name in ("alpha", "beta")})
    with_gains = [law_fit for law_fit in fits.values() if "data_gain" in law_fit.summary]
    if with_gains:
        shared = shared_data_exponent({"N": runs["N"].to_numpy(), "D": runs["D"].to_numpy()},
                                      runs["loss"].to_numpy(),
                                      num_resamples=settings.num_resamples, seed=settings.seed)
        for law_fit in with_gains if shared else []:
            predicted = predict_loss(law_fit.fit.law, law_fit.fit.theta, law_fit.variables)
            law_rms = float(np.sqrt(np.mean(((law_fit.loss - predicted) / law_fit.loss) ** 2)))
            law_fit.summary["shared_data_exponent"] = {**shared, "law_rms": law_rms}
    grouped = budgets is None  # the runs' compute, grouped where it coincides: none were given
    if grouped:
        budgets = group_budgets(runs["C"].to_numpy())
    isoflop = None
    try:
        isoflop = fit_isoflops(runs["N"], runs["D"], runs["loss"], budgets,
                               num_resamples=settings.num_resamples, seed=settings.seed)
    except ValueError as error:
        skipped["isoflop"] = str(error)
    for law_name in fits:
        try:
            extrapolations[law_name] = extrapolation_check(law_name, every_run, every_curve,
                                                           settings, frontier)
        except ValueError as error:
            skipped[f"extrapolation_{law_name}"] = str(error)

    headline = fits[settings.law].summary
    summary = {
        "law": settings.law, "formula": headline["formula"], "flop_convention": flop_convention,
        "n_points": headline["n_points"], "objective": headline["objective"],
        "objective_reduction": headline["objective_reduction"], "huber_delta": HUBER_DELTA,
        **headline["params"],
        "derived": headline["derived"],
        "bootstrap_resamples": headline["bootstrap_resamples"],
        "settings": {"improvement_nats": settings.improvement,
                     "reducible_fraction_of_E": settings.reducible_fraction,
                     "drop_largest_sizes": settings.drop_largest,
                     "hold_out_from_N": settings.hold_out_from,
                     "drop_highest_losses": settings.drop_highest_losses, "seed": settings.seed,
                     "frontier_points": settings.frontier_points,
                     "frontier_skip_fraction": settings.skip_fraction},
        "data": {"runs_fitted": int(len(runs)), "distinct_N": int(runs["N"].nunique()),
                 "distinct_D": int(runs["D"].nunique()),
                 "frontier_source": frontier.source, "frontier_points": int(frontier.flops.size),
                 "frontier": {"flops": frontier.flops.tolist(), "loss": frontier.loss.tolist(),
                              "run": [str(name) for name in frontier.run]},
                 **(data_summary or {})},
        "fits": {name: law_fit.summary for name, law_fit in fits.items()},
        "isoflop": ({**_isoflop_summary(isoflop, runs["C"].to_numpy(),
                                        np.asarray(budgets, dtype=float)), "grouped": grouped}
                    if isoflop is not None else None),
        "extrapolation": {name: e.summary for name, e in extrapolations.items()},
        "skipped": skipped,
    }
    return Analysis(summary=summary, runs=runs, curves=curves, frontier=frontier, fits=fits,
                    isoflop=isoflop, run_budgets=np.asarray(budgets, dtype=float),
                    extrapolations=extrapolations)

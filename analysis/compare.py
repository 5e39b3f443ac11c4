"""Compare two recipes: how much compute recipe B saves (or costs) over recipe A.

Each recipe's compute frontier (`analysis.frontier`) is fitted jointly by
    L_A(C) = E + A_A·C^-alpha_A,    L_B(C) = E_B + A_B·C^-alpha_B,
with E_B = E (a shared irreducible loss, the default: two recipes on the same data and tokenizer
approach the same floor) or E_B free. B's effective-compute multiplier at a budget C is how much
more compute A needs to reach the loss B reaches with C: m(C) = C_A(L_B(C)) / C, where
C_A(L) = ((L − E)/A_A)^(-1/alpha_A); m > 1 means B is better. Uncertainty comes from a bootstrap
of the frontier points, each recipe's resampled on its own. Where the two laws cross (L_A = L_B) the
ranking of the recipes flips; how often the resampled laws cross, and where, says whether the
data show a crossing at all.

The joint law is written with a recipe indicator g (0 for A, 1 for B) as
    log L = LSE(e + Δe·g, a + Δa·g − (alpha + Δalpha·g)·log C),
which is a formula in (log C, g) like any other law; `recipe` carries g as e^g so that the law's
variables stay positive.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.bootstrap import CONFIDENCE_LEVEL, bootstrap_fits, summarize
from analysis.diagnostics import diagnose
from analysis.fit import FitResult, fit_law
from analysis.frontier import Frontier
from analysis.laws import Law, formula_law, get_law


def _joint_log_loss(shared_irreducible: bool):
    def log_loss(theta_P, log_x_V):
        import jax.numpy as jnp

        log_c, g = log_x_V[0], log_x_V[1]
        a, alpha, delta_a, delta_alpha, e = (theta_P[k] for k in range(5))
        delta_e = 0.0 if shared_irreducible else theta_P[5]
        return jnp.logaddexp(e + delta_e * g, a + delta_a * g - (alpha + delta_alpha * g) * log_c)

    return log_loss


def _joint_shift(theta_SxP, log_x_offset_V):
    """Parameters for log C → log C + c and g → g + m (the bilinear g·log C term moves the
    others)."""
    c, m = log_x_offset_V[0], log_x_offset_V[1]
    theta = np.array(theta_SxP, dtype=float, copy=True)
    a, alpha, delta_a, delta_alpha, e = (theta_SxP[..., k] for k in range(5))
    # (a + Δa·(g'+m)) − (alpha + Δalpha·(g'+m))·(log C' + c) in g' and log C':
    theta[..., 0] = a + delta_a * m - (alpha + delta_alpha * m) * c
    theta[..., 1] = alpha + delta_alpha * m
    theta[..., 2] = delta_a - delta_alpha * c
    if theta.shape[-1] == 6:
        theta[..., 4] = e + theta_SxP[..., 5] * m
    return theta


def joint_law(shared_irreducible: bool = True) -> Law:
    """The two-recipe law over variables (C, recipe) with recipe = 1 for A and e for B."""
    fit_params = ("a", "alpha", "delta_a", "delta_alpha", "e") + (() if shared_irreducible else ("delta_e",))

    def natural(theta):
        values = {"E_A": np.exp(theta[..., 4]), "A_A": np.exp(theta[..., 0]), "alpha_A": theta[..., 1],
                  "A_B": np.exp(theta[..., 0] + theta[..., 2]), "alpha_B": theta[..., 1] + theta[..., 3]}
        values["E_B"] = values["E_A"] if shared_irreducible else np.exp(theta[..., 4] + theta[..., 5])
        return values

    return formula_law(
        name="compare_shared_E" if shared_irreducible else "compare",
        formula="L_A = E + A_A·C^-alpha_A, L_B = E" + ("" if shared_irreducible else "_B")
                + " + A_B·C^-alpha_B",
        variables=("C", "recipe"), fit_params=fit_params,
        reported_params=("E_A", "A_A", "alpha_A", "E_B", "A_B", "alpha_B"),
        log_loss=_joint_log_loss(shared_irreducible), shift=_joint_shift, natural=natural)


def effective_compute_multiplier(params: dict, C):
    """m(C) = C_A(L_B(C)) / C, elementwise over parameter samples (inf where B reaches a loss A
    never does)."""
    C = np.asarray(C, dtype=float)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss_b = params["E_B"] + params["A_B"] * np.power(C, -params["alpha_B"])
        reducible = loss_b - params["E_A"]
        compute_a = np.power(reducible / params["A_A"], -1.0 / params["alpha_A"])
        return np.where(reducible > 0, compute_a / C, np.inf)


# Losses of the two laws closer than this, relative, are equal: two fits of the same points
# differ by rounding, whose sign flips at random along C.
CROSSING_TOLERANCE = 1e-9


def crossing_compute(params: dict, low: float, high: float) -> float | None:
    """The first compute in [low/100, high·100] where L_A = L_B, or None if the laws do not
    cross there (`crossings`)."""
    found = crossings(params, low, high)
    return found[0] if found else None


def crossings(params: dict, low: float, high: float) -> list[float]:
    """Every compute in [low/100, high·100] where L_A = L_B, ascending (searched on a log grid,
    refined by bisection); laws equal within `CROSSING_TOLERANCE` along the grid do not cross.
    With a shared E the laws cross at most once; each with its own E, they can cross twice."""
    grid = np.geomspace(low / 100.0, high * 100.0, 2001)

    def difference(C):
        return (params["E_A"] + params["A_A"] * C ** -params["alpha_A"]
                - params["E_B"] - params["A_B"] * C ** -params["alpha_B"])

    values = difference(grid)
    loss_a = params["E_A"] + params["A_A"] * grid ** -params["alpha_A"]
    signs = np.where(np.abs(values) > CROSSING_TOLERANCE * loss_a, np.sign(values), 0.0)
    apart = np.flatnonzero(signs)
    found = []
    for change in np.flatnonzero(signs[apart[:-1]] != signs[apart[1:]]):
        lo, hi = grid[apart[change]], grid[apart[change + 1]]
        for _ in range(60):
            mid = np.sqrt(lo * hi)
            lo, hi = (mid, hi) if np.sign(difference(mid)) == np.sign(difference(lo)) else (lo, mid)
        found.append(float(np.sqrt(lo * hi)))
    return found


def crossing_summary(point: dict, samples: dict, low: float, high: float,
                     shared: tuple[float, float] | None, level: float = CONFIDENCE_LEVEL) -> dict:
    """Where the point fit's laws cross (`crossing_compute`; None: not within 100x of the data's
    compute [low, high]), whether that is inside the data (the range `shared` both recipes
    cover; None: there is none), and how sure the bootstrap is: the share of resamples whose
    laws cross within 100x of the data, and inside it, and the percentile interval of the
    crossings of those that cross (when most do)."""
    def inside(values):
        if shared is None:
            return np.zeros(np.shape(values), bool)
        return (values >= shared[0]) & (values <= shared[1])

    every = crossings(point, low, high)
    crossing = every[0] if every else None
    summary = {"C": crossing, "inside_data": crossing is not None and bool(inside(crossing)),
               "all_C": every, "all_inside_data": [bool(inside(c)) for c in every],
               "shared_range": list(shared) if shared is not None else None}
    count = len(next(iter(samples.values()))) if samples else 0
    if count == 0:
        return summary
    firsts = np.array([np.nan if c is None else c for c in (
        crossing_compute({name: float(values[i]) for name, values in samples.items()}, low, high)
        for i in range(count))])
    crossed = firsts[np.isfinite(firsts)]
    summary.update(resamples_crossing=float(crossed.size / count),
                   resamples_crossing_inside=float(np.sum(inside(crossed)) / count))
    if crossed.size >= count / 2 and crossed.size >= 2:
        tail = 50.0 * (1.0 - level)
        summary["ci_low"], summary["ci_high"] = (float(b) for b in np.percentile(
            crossed, [tail, 100.0 - tail]))
    return summary


def multiplier_identified(row: dict) -> bool:
    """False where a multiplier's bootstrap interval is unbounded (0 or inf at an end): the point
    fit's value is then no better supported than any other. True without a bootstrap."""
    low, high = row.get("ci_low", float("nan")), row.get("ci_high", float("nan"))
    return bool(np.isnan(low) or np.isnan(high) or (0.0 < low and np.isfinite(high)))


def multiplier_text(row: dict) -> str:
    """A multiplier's value for the reader; "not identified" with the point fit's value where
    its interval is unbounded."""
    value = f"{row['value']:.3g}"
    return value if multiplier_identified(row) else f"not identified (point fit {value})"


def crossing_sentence(summary: dict) -> str:
    """The crossing in words, with what the bootstrap says of it and whether the multiplier's
    intervals can tell the recipes apart at all."""
    crossing, said = summary["crossing"], []
    every, inside = crossing["all_C"], crossing["all_inside_data"]
    overlap = crossing["shared_range"] is not None
    if not every:
        said.append("The point fit's laws do not cross within 100x of the data's compute range")
    else:
        if not overlap:
            where = ["the recipes share no compute range: an extrapolation"] * len(every)
        else:
            where = ["inside the compute range both recipes have data in" if here else
                     "outside the compute range both recipes have data in: an extrapolation"
                     for here in inside]
        at = " and ".join(f"C = {c:.3g} FLOPs ({w})" for c, w in zip(every, where))
        said.append(f"The point fit's laws cross at {at}" if len(every) == 1 else
                    f"The point fit's laws cross {_times(len(every))}, at {at}, so the ranking of "
                    "the recipes flips at each")
    if "resamples_crossing" in crossing:
        share = (f"{crossing['resamples_crossing']:.0%} of the bootstrap resamples cross within "
                 f"100x of the data"
                 + (f", {crossing['resamples_crossing_inside']:.0%} inside it" if overlap else ""))
        if "ci_low" in crossing:
            first = "first " if len(every) > 1 else ""
            share += (f"; where they {first}cross, 95% interval {crossing['ci_low']:.3g} – "
                      f"{crossing['ci_high']:.3g} FLOPs")
        said.append(share)
    else:
        said.append("no bootstrap: how sure this is was not measured")
    text = "; ".join(said) + "."
    rows = summary["multiplier"]
    if rows and all(row.get("ci_low", np.inf) <= 1.0 <= row.get("ci_high", -np.inf)
                    for row in rows):
        text += (" Every multiplier interval contains 1: the data do not tell the recipes apart, "
                 "nor whether their laws cross.")
    return text


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The joint fit, its bootstrap, the budgets the multiplier is reported at and the
    JSON-ready `summary`."""

    fit: FitResult
    bootstrap_theta: np.ndarray
    frontier_a: Frontier
    frontier_b: Frontier
    budgets: np.ndarray
    summary: dict


def compare_recipes(frontier_a: Frontier, frontier_b: Frontier, *, shared_irreducible: bool = True,
                    num_resamples: int = 500, seed: int = 0, num_budgets: int = 9,
                    level: float = CONFIDENCE_LEVEL) -> Comparison:
    """Fit the two frontiers jointly and report B's effective-compute multiplier over A at
    `num_budgets` log-spaced budgets across the compute both recipes cover (or both together
    when they do not overlap), with bootstrap intervals, and where the laws cross."""
    compute = get_law("compute")
    separate = [fit_law(compute, {"C": f.flops}, f.loss) for f in (frontier_a, frontier_b)]
    (a_a, alpha_a, e_a), (a_b, alpha_b, e_b) = (r.theta for r in separate)
    law = joint_law(shared_irreducible)
    starts = []
    for e in (e_a, e_b, 0.5 * (e_a + e_b), min(e_a, e_b) - 0.1):
        row = [a_a, alpha_a, a_b - a_a, alpha_b - alpha_a, e]
        if not shared_irreducible:
            row.append(0.0)
        starts.append(row)
    flops = np.concatenate([frontier_a.flops, frontier_b.flops])
    recipe = np.concatenate([np.ones(frontier_a.flops.size), np.full(frontier_b.flops.size, np.e)])
    loss = np.concatenate([frontier_a.loss, frontier_b.loss])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = fit_law(law, {"C": flops, "recipe": recipe}, loss, starts=np.array(starts))
        # Frontier points read off one training curve are drawn together (`bootstrap_fits`).
        clusters = (np.concatenate([frontier_a.run, frontier_b.run])
                    if "curves" in (frontier_a.source, frontier_b.source) else None)
        samples = (bootstrap_fits(result, num_resamples, seed, strata=recipe, clusters=clusters)
                   if num_resamples > 0 else np.empty((0, law.num_params)))
    low = max(frontier_a.flops.min(), frontier_b.flops.min())
    high = min(frontier_a.flops.max(), frontier_b.flops.max())
    shared = (low, high) if low < high else None
    if shared is None:
        low, high = flops.min(), flops.max()
    budgets = np.geomspace(low, high, num_budgets)
    point = {k: float(v) for k, v in law.natural(result.theta).items()}
    sample_params = law.natural(samples)
    point_multiplier = effective_compute_multiplier(point, budgets)
    sample_multiplier = effective_compute_multiplier(
        {k: v[:, None] for k, v in sample_params.items()}, budgets[None, :])
    crossing = crossing_summary(point, sample_params, flops.min(), flops.max(), shared, level)
    params = {name: summarize(point[name], sample_params[name], level)
              for name in law.reported_params}
    summary = {
        "law": law.formula, "shared_irreducible": shared_irreducible,
        "n_points": {"A": int(frontier_a.flops.size), "B": int(frontier_b.flops.size)},
        "objective": result.objective,
        "params": params,
        "diagnostics": (_diagnostics(params, frontier_a, frontier_b, shared_irreducible)
                        + _contradictions(frontier_a, frontier_b, budgets, point_multiplier,
                                          shared_irreducible)
                        + ([] if shared else _apart(frontier_a, frontier_b))),
        "multiplier": [{"C": float(c), **summarize(m, sample_multiplier[:, i], level)}
                       for i, (c, m) in enumerate(zip(budgets, point_multiplier))],
        "crossing_C": crossing["C"],
        "crossing": crossing,
        "bootstrap_resamples": int(len(samples)),
    }
    return Comparison(fit=result, bootstrap_theta=samples, frontier_a=frontier_a,
                      frontier_b=frontier_b, budgets=budgets, summary=summary)


def _diagnostics(params: dict, frontier_a: Frontier, frontier_b: Frontier,
                 shared_irreducible: bool) -> list[dict]:
    """Each recipe's L(C) parameters checked as a single fit's are (`analysis.diagnostics`):
    an irreducible loss at its bound 0, say, which the bootstrap cannot move off (its interval
    then collapses onto the point, and the multiplier's intervals are conditional on it)."""
    flags = []
    for recipe, frontier in (("A", frontier_a), ("B", frontier_b)):
        names = ("A", "alpha") if shared_irreducible and recipe == "B" else ("E", "A", "alpha")
        recipe_params = {name: params[f"{name}_{recipe}"] for name in names}
        for flag in diagnose("compute", recipe_params, {"C": frontier.flops}, frontier.loss):
            name = f"{flag['parameter']}_{recipe}" if flag["parameter"] in names else None
            flags.append({**flag, "parameter": name or f"recipe {recipe}"})
    return flags


def _apart(frontier_a: Frontier, frontier_b: Frontier) -> list[dict]:
    """The flag of recipes whose frontiers share no compute range: each multiplier then compares
    one recipe's measured loss with the other's law outside its data."""
    ranges = "; ".join(f"{name}'s {f.flops.min():.3g} – {f.flops.max():.3g}"
                       for name, f in (("A", frontier_a), ("B", frontier_b)))
    return [{"parameter": "budgets", "problem": (
        f"the recipes' frontiers share no compute range (FLOPs: {ranges}): every multiplier "
        "extrapolates one recipe's law beyond its data"),
        "fix": "runs of both recipes at some common budgets"}]


def _frontier_loss(frontier: Frontier, flops: np.ndarray) -> np.ndarray:
    """The frontier's loss at `flops`, straight between its points (FLOPs ascending) on
    log-log axes."""
    return np.exp(np.interp(np.log(flops), np.log(frontier.flops), np.log(frontier.loss)))


def _contradictions(frontier_a: Frontier, frontier_b: Frontier, budgets: np.ndarray,
                    multiplier: np.ndarray, shared_irreducible: bool) -> list[dict]:
    """A flag when B's measured frontier lies below A's at every budget both cover (or above
    at every one) and the joint law ranks the recipes the other way at one of them: the law's
    form (a shared E, say) overrides the data there."""
    both = ((budgets >= max(frontier_a.flops.min(), frontier_b.flops.min()))
            & (budgets <= min(frontier_a.flops.max(), frontier_b.flops.max())))
    if not both.any():
        return []
    measured = _frontier_loss(frontier_b, budgets[both]) / _frontier_loss(frontier_a, budgets[both])
    if not (np.all(measured < 1) or np.all(measured > 1)):
        return []
    b_better = bool(measured[0] < 1)
    against = (multiplier[both] < 1) if b_better else (multiplier[both] > 1)
    if not against.any():
        return []
    first = int(np.flatnonzero(against)[0])
    low, high = (f"{gap:.1%}" for gap in (np.abs(measured - 1).min(), np.abs(measured - 1).max()))
    return [{"parameter": "fit", "problem": (
        f"B's frontier is {low if low == high else f'{low}–{high}'} "
        f"{'below' if b_better else 'above'} "
        f"A's at every budget both cover, but the joint law ranks B "
        f"{'worse' if b_better else 'better'} at C = {budgets[both][first]:.3g} (multiplier "
        f"{multiplier[both][first]:.3g}): the law's form, not the data, ranks them there"),
        "fix": ("--separate-e (one irreducible loss for both bends their laws together)"
                if shared_irreducible else "more frontier points")}]


def _loss_columns(columns: dict | None) -> str:
    """'; loss: column `x`' (or one per recipe) unless both are the default final_eval_loss."""
    if not columns or set(columns.values()) <= {None, "final_eval_loss"}:
        return ""
    if columns["A"] == columns["B"]:
        return f"; loss: column `{columns['A']}`"
    return f"; loss: A's column `{columns['A']}`, B's `{columns['B']}`"


def render_comparison(summary: dict, names: tuple[str, str]) -> str:
    """compare.md: the joint law, the multiplier table and the crossing."""
    a, b = names
    params = summary["params"]
    lines = ["# Recipe comparison", "",
             f"A = {a}, B = {b}. Joint fit of the compute frontiers: `{summary['law']}` "
             f"({'shared' if summary['shared_irreducible'] else 'separate'} irreducible loss; "
             f"{summary['n_points']['A']} + {summary['n_points']['B']} frontier points, "
             f"{summary['bootstrap_resamples']} bootstrap resamples)"
             + _loss_columns(summary.get("loss_columns")) + ".", "",
             "| parameter | value | 95% interval |", "|---|---|---|"]
    for name, row in params.items():
        lines.append(f"| {name} | {row['value']:.4g} | {_interval(row, '.4g')} |")
    if summary.get("diagnostics"):
        lines += ["", "**Warning: the joint fit is degenerate or poorly determined; read the "
                      "intervals above and below with care.**", ""]
        lines += [f"- {flag['parameter']}: {flag['problem']}; would help: {flag['fix']}."
                  for flag in summary["diagnostics"]]
    lines += ["", "B's effective-compute multiplier over A (the compute A needs for B's loss, "
              "÷ B's compute; > 1: B is better):", "",
              f"| budget C ({_flops_unit(summary.get('flop_convention'))}) | multiplier | "
              "95% interval |", "|---|---|---|"]
    for row in summary["multiplier"]:
        lines.append(f"| {row['C']:.3g} | {multiplier_text(row)} | {_interval(row, '.3g')} |")
    lines += ["", crossing_sentence(summary), ""]
    if any((summary.get("excluded") or {}).values()):
        lines += ["Runs left out of the frontiers:", ""]
        lines += [f"- {recipe}: {row['name']}: {row['reason']}"
                  for recipe in ("A", "B") for row in summary["excluded"].get(recipe, [])]
        lines.append("")
    return "\n".join(lines)


def _times(count: int) -> str:
    return {2: "twice", 3: "three times"}.get(count, f"{count} times")


def _interval(row: dict, spec: str) -> str:
    """`low – high`, or "not measured" without a bootstrap."""
    low, high = row.get("ci_low", float("nan")), row.get("ci_high", float("nan"))
    if "failed_resamples" in row:
        from analysis.report import failed_resamples_note

        return failed_resamples_note(row)
    if np.isnan(low) or np.isnan(high):
        return "not measured (no bootstrap)"
    return f"{low:{spec}} – {high:{spec}}"


def _flops_unit(convention: str | None) -> str:
    """The budgets' unit: FLOPs, by the results tables' convention when they give it."""
    if convention == "6N":
        return "FLOPs, counted as 6ND"
    if convention == "full":
        return "FLOPs, counted in full: matmuls, attention and the output layer"
    return "FLOPs"


def frontier_table(frontier: Frontier) -> pd.DataFrame:
    """A frontier as a (C, loss) table, for plotting and JSON."""
    return pd.DataFrame({"C": frontier.flops, "loss": frontier.loss})

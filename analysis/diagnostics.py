"""Fit diagnostics: parameters that the data do not pin down, said plainly with what would fix it.

The rules are fixed thresholds on the fitted value and its bootstrap interval:
- a positive scale parameter (E, A, B, ...) whose interval spans more than `MAX_INTERVAL_RATIO`
  (two orders of magnitude) is not identified;
- a negative exponent makes the loss rise with scale; one below `MIN_EXPONENT` or above
  `MAX_EXPONENT`, or whose interval spans more than `MAX_INTERVAL_RATIO` / reaches 0 or below, is
  at a bound or not identified;
- an irreducible loss E below `MIN_IRREDUCIBLE_FRACTION` of the lowest loss has run to its bound 0;
- a standard error that is not finite or exceeds `MAX_RELATIVE_SE` times the value is unbounded;
- a variable spanning less than `MIN_SPAN` (one decade) is too narrow to fit a power law over;
- more than `MAX_INTERPOLATING_SHARE` of the bootstrap's resamples (n points drawn from n) holding
  no more distinct points than the law has parameters (`interpolating_share`) makes its intervals
  too narrow: the law passes through those resamples.

For a law of N and D, `data_gain_by_size` shows its shape rather than its parameters: at each model
size trained at several token counts, how much the loss falls from its smallest D to its largest,
measured and as the fitted law has it. A separable law (E + A/N^α + B/D^β) gives every size the same
fall over the same D; small models that saturate gain less from data than large ones, and a law
fitted across both predicts a larger size's gain wrongly. `shared_data_exponent` says which part of
that shape the sizes differ in: it gives every size its own E_N and B_N and all of them one data
exponent, L = E_N + B_N/D^β. Residuals near the evaluation noise mean the sizes share β and differ in
how much data term they have; a separable law then misfits the amplitude B, not the exponent.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.optimize.elementwise

from analysis.bootstrap import CONFIDENCE_LEVEL, summarize
from analysis.laws import Law, predict_loss

MAX_INTERVAL_RATIO = 100.0
MIN_EXPONENT = 0.01
MAX_EXPONENT = 3.0
MIN_IRREDUCIBLE_FRACTION = 0.05
MAX_RELATIVE_SE = 10.0
MIN_SPAN = 10.0
MAX_INTERPOLATING_SHARE = 0.05

EXPONENTS = {"alpha": "N", "beta": "D", "eta": None, "alpha_N": "N", "alpha_D": "D", "gamma": None}
SCALES = ("E", "A", "B", "a", "b", "N_c", "D_c")
FIXES = {
    "N": "more model sizes, over a wider range of N",
    "D": "more token budgets per size, over a wider range of D",
    "C": "more compute budgets, over a wider range of C",
    "U": "runs that repeat their data over a wider range of repetitions (D/U)",
}


def se_is_unbounded(summary: dict) -> bool:
    """Whether a parameter's bootstrap standard error carries no information."""
    se, value = summary.get("se", float("nan")), summary.get("value", float("nan"))
    if math.isnan(se):
        return False
    return not math.isfinite(se) or se > MAX_RELATIVE_SE * abs(value)


def _fix(law_variables, parameter: str) -> str:
    variable = EXPONENTS.get(parameter)
    if parameter in ("A", "N_c"):
        variable = "N"
    elif parameter in ("B", "D_c"):
        variable = "D"
    elif parameter == "R_star":  # what a repeated token is worth: only repetition measures it
        variable = "U"
    if variable is None or variable not in law_variables:
        variable = law_variables[0] if len(law_variables) == 1 else None
    if variable is None:
        return " or ".join(FIXES[v] for v in law_variables if v != "U")
    return FIXES[variable]


def interpolating_share(num_points: int, num_params: int) -> float:
    """The chance that a bootstrap resample (`num_points` draws from as many points) holds at most
    `num_params` distinct points: Σ_k C(n, k)·S(n, k)·k! / n^n over k ≤ num_params, S the Stirling
    numbers of the second kind."""
    n = num_points
    # S(m, k) for k = 0..num_params, row m built from row m - 1: S(m, k) = k·S(m-1, k) + S(m-1, k-1).
    stirling = [1] + [0] * num_params
    for _ in range(n):
        stirling = [0] + [k * stirling[k] + stirling[k - 1] for k in range(1, num_params + 1)]
    ways = sum(math.comb(n, k) * stirling[k] * math.factorial(k)
               for k in range(1, min(num_params, n) + 1))
    return ways / n ** n


def diagnose(law_name: str, params: dict, variables: dict, loss) -> list[dict]:
    """Problems with a fit: one dict per flag with `parameter`, `problem` and `fix`.

    `params` maps each reported parameter to its summary (value, se, ci_low, ci_high) as
    `analysis.bootstrap.summarize` writes it; `variables` and `loss` are the fitted points.
    """
    law_variables = list(variables)
    flags = []

    def flag(parameter, problem, fix):
        flags.append({"parameter": parameter, "problem": problem, "fix": fix})

    for name, values in variables.items():
        if name == "U":  # unique tokens enter as the repetitions D/U: a fixed corpus is the norm
            continue
        values = np.asarray(values, dtype=float)
        span = float(values.max() / values.min())
        if span < MIN_SPAN:
            flag(name, f"the data span only {span:.3g}x in {name}", FIXES.get(name, "a wider range"))
    if "U" in variables and "D" in variables and "R_star" in params and np.all(
            np.asarray(variables["D"], dtype=float) <= np.asarray(variables["U"], dtype=float)):
        # D' = D for every run: no prediction depends on R*, whatever its interval says.
        flag("R_star", "no run repeats its data (D <= U for every run): R_star, what repeated "
             "tokens are worth, is not identified", "runs trained on more tokens than their "
             "unique ones (D > U)")
    if np.size(loss) <= len(params):
        # The law can pass through every point: zero residuals, resamples that all refit the
        # same curve, and intervals of width 0 that measure nothing.
        flag("fit", f"{np.size(loss)} points for {len(params)} parameters: the law passes "
             "through them, and its intervals are no uncertainty", "more points (runs)")
    elif (any(not math.isnan(summary.get("ci_low", math.nan))  # a bootstrap ran
              for summary in params.values())
          and (share := interpolating_share(np.size(loss), len(params)))
          > MAX_INTERPOLATING_SHARE):
        flag("fit", f"{np.size(loss)} points for {len(params)} parameters: {share:.0%} of the "
             f"bootstrap's resamples hold {len(params)} or fewer distinct points, which the law "
             "passes through, so its intervals are too narrow", "more points (runs)")
    lowest = float(np.min(loss))
    for name, summary in params.items():
        value = summary["value"]
        low, high = summary.get("ci_low", float("nan")), summary.get("ci_high", float("nan"))
        has_interval = math.isfinite(low) and math.isfinite(high)
        if name == "E" and value < MIN_IRREDUCIBLE_FRACTION * lowest:
            flag(name, f"irreducible loss E = {value:.3g} is at its bound 0", _fix(law_variables, name))
        elif name in EXPONENTS:
            if value < 0:  # the exponents are not bounded below: this is no bound, the sign is wrong
                flag(name, f"exponent {name} = {value:.3g} is negative: the fitted loss rises with "
                     f"{EXPONENTS[name] or 'scale'}", _fix(law_variables, name))
            elif value < MIN_EXPONENT:
                flag(name, f"exponent {name} = {value:.3g} is at its bound 0", _fix(law_variables, name))
            elif value > MAX_EXPONENT:
                flag(name, f"exponent {name} = {value:.3g} is implausibly large",
                     _fix(law_variables, name))
            elif has_interval and (low <= 0 or high / low > MAX_INTERVAL_RATIO):
                flag(name, f"exponent {name} is not identified (interval {low:.3g} to {high:.3g})",
                     _fix(law_variables, name))
        elif name in SCALES and has_interval and low > 0 and high / low > MAX_INTERVAL_RATIO:
            flag(name, f"{name} is not identified (interval {low:.3g} to {high:.3g}, "
                 f"{math.log10(high / low):.0f} orders of magnitude)", _fix(law_variables, name))
        if se_is_unbounded(summary) and not any(f["parameter"] == name for f in flags):
            flag(name, f"the standard error of {name} is unbounded", _fix(law_variables, name))
    return flags


def isoflop_flags(budgets: list[dict]) -> list[dict]:
    """Problems with an IsoFLOP fit (Approach 2), from its budgets as fit.json lists them (each
    with `sizes`, the distinct model sizes trained at it, and `used`, whether its parabola's
    minimum entered the exponent fits): parabolas that pass through every point they are fitted
    to, and exponents read off two budgets (a line through two points) or fewer (none)."""
    used = [budget for budget in budgets if budget["used"]]
    flags = []
    exact = [budget for budget in used if budget["sizes"] <= 3]
    if exact:
        flags.append({"parameter": "N_opt",
                      "problem": (("every budget used has" if len(exact) == len(used) else
                                   f"{len(exact)} of the {len(used)} budgets used "
                                   f"ha{'ve' if len(exact) > 1 else 's'}")
                                  + " 3 model sizes, which a parabola passes through exactly: "
                                  "their N_opt carry their runs' noise, with no residual to show "
                                  "it"),
                      "fix": "4 or more model sizes at each budget"})
    if len(used) < 2:
        flags.append({"parameter": "a",
                      "problem": f"{'only 1 budget has' if used else 'no budget has'} its "
                                 "minimum inside the sizes trained at it: no exponent can be "
                                 "read off",
                      "fix": "more compute budgets, each with its minimum inside its sizes"})
    elif len(used) == 2:
        flags.append({"parameter": "a",
                      "problem": "only 2 budgets have their minimum inside the sizes trained at "
                                 "them: the exponents are the line through 2 points",
                      "fix": "more compute budgets, each with its minimum inside its sizes"})
    return flags


def unequal_exponents(chinchilla_params: dict, level: float = CONFIDENCE_LEVEL) -> list[dict]:
    """A flag for Gadre et al.'s over-training form, which ties the N and D exponents (alpha =
    beta = 2·eta), when Chinchilla's form fitted to the same points puts alpha - beta's interval
    away from 0: the data then reject the tie, and the form's compute-optimal allocation
    (N_opt, D_opt ∝ C^0.5) and N_opt follow from the form, not the data.

    `chinchilla_params` maps "alpha" and "beta" to (point estimate, bootstrap samples), the
    samples paired resample by resample. Empty when the interval holds 0 or there is none."""
    (alpha, alpha_samples), (beta, beta_samples) = (chinchilla_params[name]
                                                    for name in ("alpha", "beta"))
    summary = summarize(alpha - beta, np.asarray(alpha_samples) - np.asarray(beta_samples), level)
    low, high = summary.get("ci_low", math.nan), summary.get("ci_high", math.nan)
    if not (low > 0 or high < 0):  # holds 0, or no interval (NaN compares false)
        return []
    return [{"parameter": "eta",
             "problem": (f"Chinchilla's form fitted to the same points puts alpha - beta at "
                         f"{alpha - beta:.3g} ({level:.0%} CI {low:.3g} to {high:.3g}), away from "
                         "the 0 this form assumes (alpha = beta = 2·eta): its compute-optimal "
                         "allocation and N_opt follow from that assumption, not from the data"),
             "fix": ("read the allocation off Chinchilla's form (its section below, or "
                     "`--law chinchilla`)")}]


def data_gain_by_size(law: Law, theta: np.ndarray, variables: dict, loss) -> list[dict]:
    """For each model size with points at two or more token counts (sizes ascending): `N`, its
    smallest and largest token count `D_low`, `D_high`, and how much the loss falls between them,
    `measured` (the mean loss of the points at each end) and `law` (the law with parameters `theta`),
    in nats. Empty unless the law's variables are N and D."""
    if sorted(law.variables) != ["D", "N"]:
        return []
    N, D = (np.asarray(variables[name], dtype=float) for name in ("N", "D"))
    loss = np.asarray(loss, dtype=float)
    rows = []
    for size in np.unique(N):
        at = N == size
        low, high = D[at].min(), D[at].max()
        if not high > low:
            continue
        predicted = predict_loss(law, theta, {"N": np.full(2, size), "D": np.array([low, high])})
        rows.append({"N": float(size), "D_low": float(low), "D_high": float(high),
                     "measured": float(loss[at & (D == low)].mean() - loss[at & (D == high)].mean()),
                     "law": float(predicted[0] - predicted[1])})
    return rows


MIN_BUDGETS_FOR_EXPONENT = 3  # an E_N and a B_N per size: a third budget is the first to test β
EXPONENT_RANGE = (0.01, 3.0)


def _per_size_fits(betas_RxK: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray]],
                   counts: list[np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each resample r and each β in `betas_RxK[r]`: each size's E_N, B_N ≥ 0 minimising
    Σ ((L − E_N − B_N·D^−β)/L)² (weighted least squares, exactly: the unconstrained solution where
    both are ≥ 0, else the better edge) and the sum over all sizes. `counts[k]` (R × points of
    size k) says how often resample r draws each point; None: every point once, R = 1. Returns
    (total R×K, E R×K×sizes, B R×K×sizes)."""
    betas = np.asarray(betas_RxK, dtype=float)
    total = np.zeros(betas.shape)
    E_all, B_all = np.zeros((*betas.shape, len(groups))), np.zeros((*betas.shape, len(groups)))
    for k, (D, L) in enumerate(groups):
        drawn = np.ones((1, D.size)) if counts is None else counts[k]
        x, w = D ** -betas[..., None], (drawn / L ** 2)[:, None, :]

        def weighted_sum(values):
            return (w * values).sum(-1)

        sw, sy = weighted_sum(1.0), weighted_sum(L)
        sx, sxx, sxy = weighted_sum(x), weighted_sum(x * x), weighted_sum(x * L)
        det = sw * sxx - sx * sx
        with np.errstate(divide="ignore", invalid="ignore"):
            E, B = (sy * sxx - sx * sxy) / det, (sw * sxy - sx * sy) / det
        inside = (det > 1e-12 * sw * sxx) & (E >= 0) & (B >= 0)
        zero = np.zeros(betas.shape)
        candidates = [(np.where(inside, E, 0.0), np.where(inside, B, 0.0)),
                      (np.broadcast_to(sy / sw, betas.shape), zero), (zero, sxy / sxx)]
        values = np.stack([weighted_sum((L - e[..., None] - b[..., None] * x) ** 2)
                           for e, b in candidates])
        values[0] = np.where(inside, values[0], np.inf)
        best = np.argmin(values, axis=0)
        E_all[..., k] = np.choose(best, [e for e, _ in candidates])
        B_all[..., k] = np.choose(best, [b for _, b in candidates])
        total += np.take_along_axis(values, best[None], axis=0)[0]
    return total, E_all, B_all


def _best_exponents(groups: list[tuple[np.ndarray, np.ndarray]],
                    counts: list[np.ndarray] | None = None) -> np.ndarray:
    """The β minimising `_per_size_fits`' total for each resample (see there): the best of a grid,
    refined between its neighbours by bracketing minimisation, all resamples at once."""
    grid = np.geomspace(*EXPONENT_RANGE, 200)
    resamples = 1 if counts is None else counts[0].shape[0]
    k = np.argmin(_per_size_fits(np.broadcast_to(grid, (resamples, grid.size)), groups,
                                 counts)[0], axis=1)
    best = grid[k]
    inner = np.flatnonzero((k > 0) & (k < grid.size - 1))

    def total(beta, rows):  # elementwise in the resamples `rows`, as find_minimum asks
        rows = rows.astype(int).ravel()
        drawn = None if counts is None else [c[rows] for c in counts]
        return _per_size_fits(beta.reshape(-1, 1), groups, drawn)[0][:, 0].reshape(beta.shape)

    if inner.size:
        found = scipy.optimize.elementwise.find_minimum(
            total, (grid[k[inner] - 1], grid[k[inner]], grid[k[inner] + 1]),
            args=(inner.astype(float),), tolerances={"xatol": 1e-9})
        best[inner] = found.x
    for row in np.flatnonzero((k == 0) | (k == grid.size - 1)):  # no bracket: bounded search
        found = scipy.optimize.minimize_scalar(
            lambda beta: total(np.array([beta]), np.array([row]))[0],
            bounds=(grid[max(k[row] - 1, 0)], grid[min(k[row] + 1, grid.size - 1)]),
            method="bounded", options={"xatol": 1e-6})
        best[row] = found.x
    return best


def shared_data_exponent(variables: dict, loss, *, num_resamples: int = 200, seed: int = 0,
                         level: float = CONFIDENCE_LEVEL) -> dict | None:
    """One data exponent β for every size, each with its own E_N and B_N: L = E_N + B_N/D^β, fitted
    by weighted least squares on relative residuals to the sizes with `MIN_BUDGETS_FOR_EXPONENT` or
    more token budgets (two such sizes at least; None otherwise). Returns `beta` summarised as the
    laws' parameters are (`analysis.bootstrap.summarize`) over `num_resamples` bootstrap resamples
    of each size's points, `rms` (root mean square relative residual) and per size `N`, `E`, `B`."""
    N, D = (np.asarray(variables[name], dtype=float) for name in ("N", "D"))
    loss = np.asarray(loss, dtype=float)
    sizes = [size for size in np.unique(N)
             if np.unique(D[N == size]).size >= MIN_BUDGETS_FOR_EXPONENT]
    if len(sizes) < 2:
        return None
    groups = [(D[N == size], loss[N == size]) for size in sizes]
    beta = float(_best_exponents(groups)[0])
    total, E, B = (values[0, 0] for values in _per_size_fits(np.array([[beta]]), groups))
    rng = np.random.default_rng(seed)
    counts = [np.zeros((num_resamples, D_n.size)) for D_n, _ in groups]
    for r in range(num_resamples):  # each resample draws every size's points from its own
        for k, (D_n, _) in enumerate(groups):
            counts[k][r] = np.bincount(rng.integers(0, D_n.size, D_n.size), minlength=D_n.size)
    samples = _best_exponents(groups, counts) if num_resamples else np.empty(0)
    return {"beta": summarize(beta, samples, level), "resamples": num_resamples,
            "rms": math.sqrt(total / sum(d.size for d, _ in groups)),
            "sizes": [{"N": float(size), "E": float(e), "B": float(b)}
                      for size, e, b in zip(sizes, E, B)]}


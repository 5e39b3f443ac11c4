"""Fit diagnostics: parameters that the data do not pin down, said plainly with what would fix it.

The rules are fixed thresholds on the fitted value and its bootstrap interval:
- a positive scale parameter (E, A, B, ...) whose interval spans more than `MAX_INTERVAL_RATIO`
  (two orders of magnitude) is not identified;
- a negative exponent makes the loss rise with scale; one below `MIN_EXPONENT` or above
  `MAX_EXPONENT`, or whose interval spans more than `MAX_INTERVAL_RATIO` / reaches 0 or below, is
  at a bound or not identified;
- an irreducible loss E below `MIN_IRREDUCIBLE_FRACTION` of the lowest loss has run to its bound 0;
- a standard error that is not finite or exceeds `MAX_RELATIVE_SE` times the value is unbounded;
- a variable spanning less than `MIN_SPAN` (one decade) is too narrow to fit a power law over.

For a law of N and D, `data_gain_by_size` shows its shape rather than its parameters: at each model
size trained at several token counts, how much the loss falls from its smallest D to its largest,
measured and as the fitted law has it. A separable law (E + A/N^α + B/D^β) gives every size the same
fall over the same D; small models that saturate gain less from data than large ones, and a law
fitted across both predicts a larger size's gain wrongly.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.laws import Law, predict_loss

MAX_INTERVAL_RATIO = 100.0
MIN_EXPONENT = 0.01
MAX_EXPONENT = 3.0
MIN_IRREDUCIBLE_FRACTION = 0.05
MAX_RELATIVE_SE = 10.0
MIN_SPAN = 10.0

EXPONENTS = {"alpha": "N", "beta": "D", "eta": None, "alpha_N": "N", "alpha_D": "D", "gamma": None}
SCALES = ("E", "A", "B", "a", "b", "N_c", "D_c")
FIXES = {
    "N": "more model sizes, over a wider range of N",
    "D": "more token budgets per size, over a wider range of D",
    "C": "more compute budgets, over a wider range of C",
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
    if variable is None or variable not in law_variables:
        variable = law_variables[0] if len(law_variables) == 1 else None
    if variable is None:
        return " or ".join(FIXES[v] for v in law_variables)
    return FIXES[variable]


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
        values = np.asarray(values, dtype=float)
        span = float(values.max() / values.min())
        if span < MIN_SPAN:
            flag(name, f"the data span only {span:.3g}x in {name}", FIXES.get(name, "a wider range"))
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


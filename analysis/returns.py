"""Diminishing returns of a power law with an irreducible term, in plain numbers.

For a term R(x) = A·x^-alpha on top of an irreducible loss E (x is compute, parameters or
tokens), these say how much 10× more x buys, how much x the next small improvement costs, and
where the reducible part becomes a small fraction of E. Every function is elementwise, so it
applies to a point estimate and to bootstrap samples alike; a budget that can never be reached
is +inf.
"""

from __future__ import annotations

import numpy as np


def loss_drop_per_decade(coefficient, exponent, x):
    """Loss reduction (nats) from x to 10·x: A·x^-alpha·(1 − 10^-alpha)."""
    return coefficient * np.power(x, -exponent) * (1.0 - np.power(10.0, -exponent))


def budget_for_improvement(coefficient, exponent, x, improvement):
    """The x' > x at which A·x'^-alpha is `improvement` nats below A·x^-alpha; +inf when the
    whole reducible term at x is no larger than `improvement` (or the exponent is not positive)."""
    coefficient, exponent, x = np.broadcast_arrays(*(np.asarray(v, dtype=float)
                                                     for v in (coefficient, exponent, x)))
    remaining = coefficient * np.power(x, -exponent) - improvement
    reachable = (remaining > 0) & (exponent > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        budget = np.power(remaining / coefficient, -1.0 / exponent)
    return np.where(reachable, budget, np.inf)


def budget_where_reducible_below(coefficient, exponent, irreducible, fraction):
    """The x at which A·x^-alpha equals `fraction`·E: (A / (fraction·E))^(1/alpha); +inf for a
    non-positive exponent."""
    coefficient, exponent, irreducible = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (coefficient, exponent, irreducible)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        budget = np.power(coefficient / (fraction * irreducible), 1.0 / exponent)
    return np.where(exponent > 0, budget, np.inf)


def diminishing_returns(coefficient, exponent, irreducible, smallest, largest, *,
                        improvement: float = 0.01, reducible_fraction: float = 0.1) -> dict:
    """The diminishing-returns table for one power-law term over data spanning
    [`smallest`, `largest`] of its variable: its exponent, loss drop per 10× at both ends, the
    term itself at `largest`, the variable needed for `improvement` nats beyond `largest` (absolute and as a
    multiple of `largest`), and where the reducible term falls below `reducible_fraction`·E."""
    next_budget = budget_for_improvement(coefficient, exponent, largest, improvement)
    return {
        "exponent": np.asarray(exponent, dtype=float),
        "reducible_at_largest": np.asarray(coefficient) * np.power(largest, -np.asarray(exponent)),
        "loss_drop_per_10x_at_smallest": loss_drop_per_decade(coefficient, exponent, smallest),
        "loss_drop_per_10x_at_largest": loss_drop_per_decade(coefficient, exponent, largest),
        "next_improvement_budget": next_budget,
        "next_improvement_multiple": next_budget / largest,
        "reducible_below_fraction_budget": budget_where_reducible_below(
            coefficient, exponent, irreducible, reducible_fraction),
    }

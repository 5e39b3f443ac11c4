"""Chinchilla's Approach 2: IsoFLOP profiles.

Runs that spent (nearly) the same training compute form one IsoFLOP profile. For each budget a
parabola of loss against log N gives the loss-minimising model size N*(C) (and the matching token
count D*(C)); power laws N_opt = k_N·C^a and D_opt = k_D·C^b fitted across budgets give the
allocation exponents a and b. Uncertainty comes from resampling runs within each budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.bootstrap import resample_weights

# Hoffmann et al. (2022), Section 3.2: the nine IsoFLOP budgets of Approach 2, in FLOPs.
CHINCHILLA_ISOFLOP_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)
MIN_SIZES_PER_BUDGET = 3


@dataclasses.dataclass(frozen=True)
class IsoflopFit:
    """Approach 2 result.

    Per budget (shape (K,), budgets in FLOPs): `optimal_params` N*, `optimal_tokens` D*,
    `minimum_loss` (nats/token) and `parabolas` (K, 3): coefficients (c2, c1, c0) of
    loss = c2·u² + c1·u + c0 with u = log N − `log_n_centres`. `used` marks the budgets whose
    parabola opens upwards with its minimum inside the sizes trained at that budget; only those
    enter the exponent fits.
    N_opt(C) = params_coefficient·C^params_exponent, D_opt(C) = tokens_coefficient·C^tokens_exponent.
    `bootstrap_params_exponent` / `bootstrap_tokens_exponent` hold one value per resample.
    """

    budgets: np.ndarray
    optimal_params: np.ndarray
    optimal_tokens: np.ndarray
    minimum_loss: np.ndarray
    parabolas: np.ndarray
    log_n_centres: np.ndarray
    used: np.ndarray
    sizes_per_budget: np.ndarray
    params_exponent: float
    params_coefficient: float
    tokens_exponent: float
    tokens_coefficient: float
    bootstrap_params_exponent: np.ndarray
    bootstrap_tokens_exponent: np.ndarray


def snap_to_budgets(flops: np.ndarray, budgets=CHINCHILLA_ISOFLOP_BUDGETS) -> np.ndarray:
    """Each FLOP count replaced by the nearest of `budgets` in log space."""
    log_budgets = np.log(np.asarray(budgets, dtype=float))
    nearest = np.abs(np.log(np.asarray(flops, dtype=float))[:, None] - log_budgets).argmin(axis=1)
    return np.asarray(budgets, dtype=float)[nearest]


def group_budgets(flops: np.ndarray, tolerance_decades: float = 0.05,
                  max_width_decades: float = 0.1) -> np.ndarray:
    """Cluster FLOP counts (sorted in log10) into budgets and label each run with its cluster's
    geometric mean: runs a sweep planned at one budget differ slightly because steps are whole
    numbers. A new cluster starts at a gap wider than `tolerance_decades` and also wherever the
    cluster would grow wider than `max_width_decades`, so a chain of closely spaced FLOP counts
    (compute spread continuously, as in Chinchilla's extracted runs) is not one budget."""
    log_flops = np.log10(np.asarray(flops, dtype=float))
    order = np.argsort(log_flops)
    sorted_log = log_flops[order]
    cluster_of_sorted = np.zeros(sorted_log.size, dtype=int)
    start = 0
    for i in range(1, sorted_log.size):
        new = (sorted_log[i] - sorted_log[i - 1] > tolerance_decades
               or sorted_log[i] - sorted_log[start] > max_width_decades)
        if new:
            start = i
        cluster_of_sorted[i] = cluster_of_sorted[i - 1] + int(new)
    clusters = np.empty_like(cluster_of_sorted)
    clusters[order] = cluster_of_sorted
    means = np.array([log_flops[clusters == k].mean() for k in range(clusters.max() + 1)])
    return 10.0 ** means[clusters]


def _weighted_polynomial(u_N, y_N, weights_BxN, degree):
    """Weighted least-squares polynomial coefficients (highest power first) per resample row,
    shape (B, degree + 1); rows with fewer than degree + 1 distinct u are NaN."""
    powers = np.stack([u_N**k for k in range(degree, -1, -1)], axis=1)  # N × (degree+1)
    gram = np.einsum("bn,ni,nj->bij", weights_BxN, powers, powers)
    moments = np.einsum("bn,ni,n->bi", weights_BxN, powers, y_N)
    distinct = np.array([np.unique(u_N[row > 0]).size for row in weights_BxN])
    solvable = distinct > degree
    coefficients = np.full(moments.shape, np.nan)
    if solvable.any():
        coefficients[solvable] = np.linalg.solve(gram[solvable], moments[solvable][..., None])[..., 0]
    return coefficients


def _budget_optima(log_n, log_d, loss, members, weights_BxN):
    """Per resample: parabola, log N*, log D* and minimum loss for one budget."""
    u = log_n[members]
    centre = u.mean()
    u = u - centre
    weights = weights_BxN[:, members]
    parabola = _weighted_polynomial(u, loss[members], weights, 2)
    line = _weighted_polynomial(u, log_d[members], weights, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        best_u = -parabola[:, 1] / (2.0 * parabola[:, 0])
    # A minimum outside the sizes trained at this budget is an extrapolation, not a measurement:
    # such a budget (or a parabola that opens downwards) does not enter the exponent fits.
    inside = (best_u >= u.min()) & (best_u <= u.max())
    best_u = np.where((parabola[:, 0] > 0) & inside, best_u, np.nan)
    minimum = parabola[:, 0] * best_u**2 + parabola[:, 1] * best_u + parabola[:, 2]
    return parabola, centre, centre + best_u, line[:, 0] * best_u + line[:, 1], minimum


def _power_law_across_budgets(log_c_K, log_optimum_BxK):
    """Slope and intercept of log optimum against log C per row, over finite entries (NaN where
    fewer than two budgets are usable)."""
    usable = np.isfinite(log_optimum_BxK)
    count = usable.sum(axis=1)
    x = np.where(usable, log_c_K, 0.0)
    y = np.where(usable, log_optimum_BxK, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x = x.sum(axis=1) / count
        mean_y = y.sum(axis=1) / count
        dx = np.where(usable, log_c_K - mean_x[:, None], 0.0)
        slope = (dx * (y - mean_y[:, None])).sum(axis=1) / (dx**2).sum(axis=1)
    slope = np.where(count >= 2, slope, np.nan)
    return slope, mean_y - slope * mean_x


def fit_isoflops(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, budgets: np.ndarray, *,
                 num_resamples: int = 500, seed: int = 0) -> IsoflopFit:
    """Approach 2 on runs with `params` N, `tokens` D, final `loss` (nats/token) and the IsoFLOP
    budget (FLOPs) each belongs to (`snap_to_budgets` / `group_budgets` produce these labels).

    Needs at least two budgets with `MIN_SIZES_PER_BUDGET` distinct model sizes each.
    """
    params, tokens, loss, budgets = (np.asarray(v, dtype=float) for v in (params, tokens, loss, budgets))
    for name, values in (("params", params), ("tokens", tokens), ("loss", loss), ("budget", budgets)):
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            raise ValueError(f"{name} must be positive and finite for an IsoFLOP fit; "
                             f"run {int(np.flatnonzero(bad)[0])} has {name}={float(values[bad][0])!r}")
    unique_budgets = np.unique(budgets)
    sizes = np.array([np.unique(params[budgets == c]).size for c in unique_budgets])
    eligible = unique_budgets[sizes >= MIN_SIZES_PER_BUDGET]
    if eligible.size < 2:
        found = ", ".join(f"C={c:.3g}: {s} size(s)" for c, s in zip(unique_budgets, sizes))
        raise ValueError(f"an IsoFLOP fit needs at least 2 budgets with {MIN_SIZES_PER_BUDGET} or more "
                         f"distinct model sizes each; got {unique_budgets.size} budget(s) ({found})")

    log_n, log_d = np.log(params), np.log(tokens)
    weights = np.ones((1 + num_resamples, loss.size))
    rng_seed = seed
    for budget in eligible:
        members = np.flatnonzero(budgets == budget)
        # Resample within each budget so every resample keeps the same budgets.
        counts = resample_weights(members.size, num_resamples, rng_seed)
        weights[1:, members] = counts
        rng_seed += 1
    results = [_budget_optima(log_n, log_d, loss, np.flatnonzero(budgets == c), weights) for c in eligible]
    parabolas = np.array([r[0][0] for r in results])
    centres = np.array([r[1] for r in results])
    log_n_opt = np.stack([r[2] for r in results], axis=1)
    log_d_opt = np.stack([r[3] for r in results], axis=1)
    minimum = np.stack([r[4] for r in results], axis=1)
    log_c = np.log(eligible)
    params_slope, params_intercept = _power_law_across_budgets(log_c, log_n_opt)
    tokens_slope, tokens_intercept = _power_law_across_budgets(log_c, log_d_opt)
    return IsoflopFit(
        budgets=eligible, optimal_params=np.exp(log_n_opt[0]), optimal_tokens=np.exp(log_d_opt[0]),
        minimum_loss=minimum[0], parabolas=parabolas, log_n_centres=centres,
        used=np.isfinite(log_n_opt[0]), sizes_per_budget=sizes[sizes >= MIN_SIZES_PER_BUDGET],
        params_exponent=float(params_slope[0]), params_coefficient=float(np.exp(params_intercept[0])),
        tokens_exponent=float(tokens_slope[0]), tokens_coefficient=float(np.exp(tokens_intercept[0])),
        bootstrap_params_exponent=params_slope[1:], bootstrap_tokens_exponent=tokens_slope[1:])

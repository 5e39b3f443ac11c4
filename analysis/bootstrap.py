"""Bootstrap uncertainty for a fitted law: refit on resampled points, summarise any quantity.

A resample draws the fitted points with replacement; it is expressed as integer weights on the
original points, so all resamples are refitted together as one batched L-BFGS run
(`analysis.lbfgs`), each starting from the full-data optimum.
"""

from __future__ import annotations

import numpy as np

from analysis.fit import FitResult, huber_objective
from analysis.lbfgs import minimize_batched

CONFIDENCE_LEVEL = 0.95


def resample_weights(num_points: int, num_resamples: int, seed: int) -> np.ndarray:
    """How often each point is drawn in each resample, shape (num_resamples, num_points); every
    row sums to num_points."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_points, size=(num_resamples, num_points))
    flat = draws + num_points * np.arange(num_resamples)[:, None]
    return np.bincount(flat.ravel(), minlength=num_resamples * num_points).reshape(
        num_resamples, num_points).astype(float)


def bootstrap_fits(result: FitResult, num_resamples: int = 500, seed: int = 0,
                   strata: np.ndarray | None = None,
                   clusters: np.ndarray | None = None) -> np.ndarray:
    """Fitted parameters (in `result.law.fit_params` order) for `num_resamples` resamples of the
    points `result` was fitted to, shape (num_resamples, P). With `strata` (a label per point),
    each stratum is resampled on its own, so every resample keeps its size. With `clusters` (a
    label per point), whole clusters are drawn, all their points together: the points of a
    compute frontier read off a few training curves share each curve's offset, so the runs, not
    the points, are the independent draws."""
    if num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples} is not allowed; need at least 1")
    law = result.law
    centre = law.centre(result.log_x)
    strata = np.zeros(result.num_points) if strata is None else np.asarray(strata)
    clusters = np.arange(result.num_points) if clusters is None else np.asarray(clusters)
    weights = np.zeros((num_resamples, result.num_points))
    for offset, label in enumerate(np.unique(strata)):
        members = np.flatnonzero(strata == label)
        names, index = np.unique(clusters[members], return_inverse=True)
        weights[:, members] = resample_weights(names.size, num_resamples, seed + offset)[:, index]
    scale = 1.0 / result.num_points if result.reduction == "mean" else 1.0
    objective = huber_objective(law, result.log_x - centre[:, None], result.log_loss,
                                delta=result.delta, weights=weights, scale=scale)
    starts = np.repeat(law.shift(result.theta[None], centre), num_resamples, axis=0)
    ends, _, _ = minimize_batched(objective, starts, max_iterations=2000,
                                  relative_decrease_tolerance=1e-13,
                                  relative_gradient_tolerance=1e-12)
    return law.shift(ends, -centre)


# A larger share of resamples that could not be fitted (an IsoFLOP parabola through too few
# distinct sizes) leaves the estimate without an interval.
MAX_FAILED_SHARE = 0.1


def summarize(point: float, samples: np.ndarray, level: float = CONFIDENCE_LEVEL) -> dict:
    """The point estimate with the bootstrap standard error and the central `level` percentile
    interval of `samples`. An infinite sample is an answer (a budget that resample never reaches:
    "never") and counts in the interval, which then reaches infinity when enough resamples do;
    the standard error is then infinite. NaN samples (failed resamples) are left out and counted;
    when more than `MAX_FAILED_SHARE` of them failed, the rest are the resamples that happened to
    be fittable, not a sample of the estimate's spread, and no interval is given."""
    samples = np.asarray(samples, dtype=float)
    kept = samples[~np.isnan(samples)]
    finite = kept[np.isfinite(kept)]
    summary = {"value": float(point)}
    failed = int(samples.size - kept.size)
    if failed > MAX_FAILED_SHARE * samples.size:
        summary.update(failed_resamples=failed, resamples=int(samples.size))
    if kept.size >= 2 and "failed_resamples" not in summary:
        tail = 50.0 * (1.0 - level)
        # Percentiles with ±inf stood in for by huge finite values (a quarter of the largest
        # float, so differences do not overflow); a bound past every finite sample is infinite.
        big = np.finfo(float).max / 4
        bounds = np.percentile(np.clip(kept, -big, big), [tail, 100.0 - tail])
        top = finite.max() if finite.size else -np.inf
        bottom = finite.min() if finite.size else np.inf
        low, high = (np.inf if np.isposinf(kept).any() and b > top
                     else -np.inf if np.isneginf(kept).any() and b < bottom else float(b)
                     for b in bounds)
        with np.errstate(over="ignore", invalid="ignore"):
            # A runaway resample (e.g. B → 1e300 along a flat ridge) makes the SE infinite, not an error.
            standard_error = float(finite.std(ddof=1)) if finite.size == kept.size else np.inf
        summary.update(se=standard_error, ci_low=float(low), ci_high=float(high))
    else:
        summary.update(se=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    summary["ci_level"] = level
    if finite.size < samples.size:
        summary["non_finite_resamples"] = int(samples.size - finite.size)
    return summary

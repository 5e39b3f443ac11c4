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
                   strata: np.ndarray | None = None) -> np.ndarray:
    """Fitted parameters (in `result.law.fit_params` order) for `num_resamples` resamples of the
    points `result` was fitted to, shape (num_resamples, P). With `strata` (a label per point),
    each stratum is resampled on its own, so every resample keeps its size."""
    if num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples} is not allowed; need at least 1")
    law = result.law
    centre = law.centre(result.log_x)
    if strata is None:
        weights = resample_weights(result.num_points, num_resamples, seed)
    else:
        strata = np.asarray(strata)
        weights = np.zeros((num_resamples, result.num_points))
        for offset, label in enumerate(np.unique(strata)):
            members = np.flatnonzero(strata == label)
            weights[:, members] = resample_weights(members.size, num_resamples, seed + offset)
    scale = 1.0 / result.num_points if result.reduction == "mean" else 1.0
    objective = huber_objective(law, result.log_x - centre[:, None], result.log_loss,
                                delta=result.delta, weights=weights, scale=scale)
    starts = np.repeat(law.shift(result.theta[None], centre), num_resamples, axis=0)
    ends, _, _ = minimize_batched(objective, starts, max_iterations=2000,
                                  relative_decrease_tolerance=1e-13,
                                  relative_gradient_tolerance=1e-12)
    return law.shift(ends, -centre)


def summarize(point: float, samples: np.ndarray, level: float = CONFIDENCE_LEVEL) -> dict:
    """The point estimate with the bootstrap standard error and the central `level` percentile
    interval of `samples`; non-finite samples (e.g. a budget that a resample never reaches) are
    left out and counted."""
    samples = np.asarray(samples, dtype=float)
    finite = samples[np.isfinite(samples)]
    summary = {"value": float(point)}
    if finite.size >= 2:
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        with np.errstate(over="ignore", invalid="ignore"):
            # A runaway resample (e.g. B → 1e300 along a flat ridge) makes the SE infinite, not an error.
            standard_error = float(finite.std(ddof=1))
        summary.update(se=standard_error, ci_low=float(low), ci_high=float(high))
    else:
        summary.update(se=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    summary["ci_level"] = level
    if finite.size < samples.size:
        summary["non_finite_resamples"] = int(samples.size - finite.size)
    return summary

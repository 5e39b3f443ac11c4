"""Chinchilla's Approach 1 / Kaplan's L(C): the compute-efficient frontier of training curves.

At each FLOP count, the frontier is the lowest eval loss any run reached at that compute. Each
curve is interpolated (linearly in log FLOPs, log loss) onto common log-spaced FLOP values and the
minimum is taken across runs, so the frontier points are evenly spread in log compute rather than
crowded where evaluations happened to be dense.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

DEFAULT_FRONTIER_POINTS = 50
DEFAULT_SKIP_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Frontier:
    """Frontier points: `flops` (FLOPs, ascending), `loss` (nats/token) and the `run` that reached
    it; `source` says whether they come from training curves or from runs' final points."""

    flops: np.ndarray
    loss: np.ndarray
    run: np.ndarray
    source: str


def curve_frontier(curves: pd.DataFrame, *, num_points: int = DEFAULT_FRONTIER_POINTS,
                   skip_fraction: float = DEFAULT_SKIP_FRACTION) -> Frontier:
    """The frontier of `curves` (columns `name`, `flops`, `loss`; one row per eval point).

    The first `skip_fraction` of each run's FLOPs is left out: early in training the loss is set
    by warm-up and initialisation rather than by model size, which would bend the frontier's low
    end. Runs with fewer than two usable points are ignored. Where no run's curve covers a grid
    point (a gap between runs' FLOP ranges) there is no frontier point.
    """
    if not 0.0 <= skip_fraction < 1.0:
        raise ValueError(f"skip_fraction={skip_fraction} is not allowed; need 0 <= skip_fraction < 1")
    usable = curves[np.isfinite(curves["flops"]) & np.isfinite(curves["loss"])
                    & (curves["flops"] > 0) & (curves["loss"] > 0)]
    runs = []
    for name, curve in usable.groupby("name", sort=True):
        curve = curve.sort_values("flops")
        curve = curve[curve["flops"] >= skip_fraction * curve["flops"].max()]
        # Repeated FLOP values (e.g. a resumed run re-logging a step) keep their mean loss.
        curve = curve.groupby("flops", as_index=False)["loss"].mean()
        if len(curve) >= 2:
            runs.append((name, np.log(curve["flops"].to_numpy()), np.log(curve["loss"].to_numpy())))
    if not runs:
        raise ValueError("curves: no run has two or more eval points with positive flops and loss")
    low = min(log_flops[0] for _, log_flops, _ in runs)
    high = max(log_flops[-1] for _, log_flops, _ in runs)
    distinct = np.unique(np.concatenate([log_flops for _, log_flops, _ in runs])).size
    grid = np.linspace(low, high, min(num_points, distinct))
    log_loss = np.full((len(runs), grid.size), np.inf)
    for row, (_, log_flops, run_log_loss) in enumerate(runs):
        inside = (grid >= log_flops[0]) & (grid <= log_flops[-1])
        log_loss[row, inside] = np.interp(grid[inside], log_flops, run_log_loss)
    # Compute between the ranges of the runs' curves (a gap) has no frontier point.
    covered = np.isfinite(log_loss).any(axis=0)
    grid, log_loss = grid[covered], log_loss[:, covered]
    best = log_loss.argmin(axis=0)
    names = np.array([name for name, _, _ in runs], dtype=object)
    return Frontier(flops=np.exp(grid), loss=np.exp(log_loss[best, np.arange(grid.size)]),
                    run=names[best], source="curves")


# Runs within this share of each other's compute are at equal compute on the final points'
# frontier: a sweep's runs planned at one budget differ by their rounding to whole steps, and the
# cheapest of them by that rounding is no better. An IsoFLOP plan's runs have at least
# `min_steps` (50) steps each, so each is within 0.5/49.5 of its budget: 49.5 steps' worth of
# tokens trains 50 (+1.01%), 50.5 steps' 50 (−0.99%), two runs 2.02% apart.
EQUAL_COMPUTE = 0.025


def final_point_frontier(names, flops, loss) -> Frontier:
    """The frontier of runs' final points: each run whose final loss is lower than that of every
    run that used less compute, as much, or up to `EQUAL_COMPUTE` more (of runs at about equal
    compute only the lowest loss). Runs without a finite compute and loss are not on it."""
    flops, loss = np.asarray(flops, dtype=float), np.asarray(loss, dtype=float)
    names, finite = np.asarray(names, dtype=object), np.isfinite(flops) & np.isfinite(loss)
    names, flops, loss = names[finite], flops[finite], loss[finite]
    order = np.lexsort((loss, flops))  # by compute, then by loss
    sorted_flops, sorted_loss = flops[order], loss[order]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(sorted_loss)[:-1]])
    limits = np.searchsorted(sorted_flops, sorted_flops * (1.0 + EQUAL_COMPUTE), side="right")
    # Lower than every run before it in that order (of equal losses the first is kept), and than
    # every run after it within EQUAL_COMPUTE.
    kept = [position for position, limit in enumerate(limits)
            if sorted_loss[position] < best_before[position]
            and not (sorted_loss[position + 1:limit] < sorted_loss[position]).any()]
    on_frontier = order[kept]
    return Frontier(flops=flops[on_frontier], loss=loss[on_frontier],
                    run=names[on_frontier], source="final points")

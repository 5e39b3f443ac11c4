"""Many independent L-BFGS minimisations run side by side in NumPy.

A start grid of thousands of points (or a bootstrap of hundreds of resamples) is one batch: each
iteration evaluates the objective for every unfinished start in one vectorised call, so the cost is
a few hundred array operations instead of thousands of Python-level optimiser loops.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# value_and_grad(x_KxP, rows_K) -> (values_K, gradients_KxP); `rows` are the indices of the
# starts being evaluated, so an objective may use per-start data (bootstrap weights).
ValueAndGrad = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _two_loop_direction(grad_KxP, steps_KxMxP, grad_changes_KxMxP, inv_curvatures_KxM):
    """The L-BFGS search direction -H·g from the stored pairs (oldest first; empty pairs are zeros
    and drop out of the recursion)."""
    history = steps_KxMxP.shape[1]
    q = grad_KxP.copy()
    coefficients = np.zeros(inv_curvatures_KxM.shape)
    for i in reversed(range(history)):
        coefficients[:, i] = inv_curvatures_KxM[:, i] * np.einsum("kp,kp->k", steps_KxMxP[:, i], q)
        q -= coefficients[:, i, None] * grad_changes_KxMxP[:, i]
    newest_s, newest_y = steps_KxMxP[:, -1], grad_changes_KxMxP[:, -1]
    yy = np.einsum("kp,kp->k", newest_y, newest_y)
    has_history = inv_curvatures_KxM[:, -1] > 0
    grad_norm = np.maximum(np.linalg.norm(grad_KxP, axis=1), 1e-300)
    # Without curvature information the first step is scaled to unit length in parameter space.
    initial_scale = np.where(has_history, np.einsum("kp,kp->k", newest_s, newest_y)
                             / np.maximum(yy, 1e-300), 1.0 / grad_norm)
    r = initial_scale[:, None] * q
    for i in range(history):
        correction = inv_curvatures_KxM[:, i] * np.einsum("kp,kp->k", grad_changes_KxMxP[:, i], r)
        r += steps_KxMxP[:, i] * (coefficients[:, i] - correction)[:, None]
    return -r


def minimize_batched(value_and_grad: ValueAndGrad, starts_SxP: np.ndarray, *,
                     max_iterations: int = 1000, history: int = 10,
                     relative_decrease_tolerance: float = 1e-12,
                     relative_gradient_tolerance: float = 1e-10,
                     max_backtracks: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise from every row of `starts_SxP` independently with L-BFGS and an Armijo
    backtracking line search.

    A start stops when one step lowers its value by no more than
    `relative_decrease_tolerance`·|value|, when its largest gradient component is below
    `relative_gradient_tolerance`·|value|, when the line search finds no lower value, or after
    `max_iterations`. Both tolerances are relative, so multiplying the objective by a positive
    constant leaves the path and the answer unchanged.

    Returns the final points (S, P), their values (S,) and the iterations each took (S,).
    """
    x = np.array(starts_SxP, dtype=float, copy=True)
    num_starts, num_params = x.shape
    values, grads = value_and_grad(x, np.arange(num_starts))
    values = np.where(np.isfinite(values), values, np.inf)
    steps = np.zeros((num_starts, history, num_params))
    grad_changes = np.zeros_like(steps)
    inv_curvatures = np.zeros((num_starts, history))
    iterations = np.zeros(num_starts, dtype=int)
    active = np.isfinite(values)
    for _ in range(max_iterations):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        grad = grads[rows]
        direction = _two_loop_direction(grad, steps[rows], grad_changes[rows], inv_curvatures[rows])
        slope = np.einsum("kp,kp->k", grad, direction)
        not_descent = ~(slope < 0)
        if not_descent.any():
            # A stale curvature history can point uphill; forget it and take a gradient step.
            reset = rows[not_descent]
            steps[reset], grad_changes[reset], inv_curvatures[reset] = 0.0, 0.0, 0.0
            norm = np.maximum(np.linalg.norm(grad[not_descent], axis=1, keepdims=True), 1e-300)
            direction[not_descent] = -grad[not_descent] / norm
            slope[not_descent] = -norm[:, 0]

        step_length = np.ones(rows.size)
        new_values = np.full(rows.size, np.inf)
        new_grads = np.zeros_like(grad)
        pending = np.arange(rows.size)
        for _ in range(max_backtracks):
            trial = x[rows[pending]] + step_length[pending, None] * direction[pending]
            trial_values, trial_grads = value_and_grad(trial, rows[pending])
            accepted = np.isfinite(trial_values) & (
                trial_values <= values[rows[pending]] + 1e-4 * step_length[pending] * slope[pending])
            new_values[pending[accepted]] = trial_values[accepted]
            new_grads[pending[accepted]] = trial_grads[accepted]
            rejected = ~accepted
            pending, trial_values = pending[rejected], trial_values[rejected]
            if pending.size == 0:
                break
            # Next trial: the minimum of the quadratic through f(0), f'(0) and f(t), kept within
            # [t/10, t/2] (plain halving where f(t) is not finite).
            t = step_length[pending]
            excess = trial_values - values[rows[pending]] - slope[pending] * t
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                interpolated = -slope[pending] * t**2 / (2.0 * excess)
            interpolated = np.where(np.isfinite(interpolated), interpolated, 0.5 * t)
            step_length[pending] = np.clip(interpolated, 0.1 * t, 0.5 * t)

        moved = np.isfinite(new_values)
        step = step_length[:, None] * direction
        grad_change = new_grads - grad
        curvature = np.einsum("kp,kp->k", step, grad_change)
        # Keep a pair only with clearly positive curvature (and far from under/overflow).
        keep_pair = moved & (curvature > np.maximum(
            1e-12 * np.linalg.norm(step, axis=1) * np.linalg.norm(grad_change, axis=1), 1e-200))
        stored = rows[keep_pair]
        steps[stored] = np.roll(steps[stored], -1, axis=1)
        grad_changes[stored] = np.roll(grad_changes[stored], -1, axis=1)
        inv_curvatures[stored] = np.roll(inv_curvatures[stored], -1, axis=1)
        steps[stored, -1] = step[keep_pair]
        grad_changes[stored, -1] = grad_change[keep_pair]
        inv_curvatures[stored, -1] = 1.0 / curvature[keep_pair]

        old_values = values[rows]
        moved_rows = rows[moved]
        x[moved_rows] += step[moved]
        values[moved_rows] = new_values[moved]
        grads[moved_rows] = new_grads[moved]
        iterations[rows] += 1
        scale = np.maximum(np.abs(values[rows]), 1e-300)
        finished = (~moved
                    | (old_values - values[rows] <= relative_decrease_tolerance * scale)
                    | (np.abs(grads[rows]).max(axis=1) <= relative_gradient_tolerance * scale))
        active[rows[finished]] = False
    return x, values, iterations

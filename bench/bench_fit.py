"""Time the Chinchilla Approach 3 fit on Epoch AI's 240 points: the batched 4,500-start grid fit,
a 500-resample bootstrap, the same grid fit with gradients derived by jax.grad from the law's
formula (`analysis.laws.formula_law`) instead of the hand-written ones, and the plain reference of
one SciPy L-BFGS-B call per start. Then the per-size data exponent (`scaling-fit`'s diagnostic
L = E_N + B_N/D^β, one β for the 38 sizes with three token counts or more) with its 500-resample
bootstrap, all resamples at once, against the reference of one bounded SciPy minimisation per
resample (every 10th resample timed, × 10).

The reference loop over all 4,500 starts takes minutes, so it runs on every 15th start of the grid
(300 starts) and its full-grid time is that measurement × 15; the timings alternate with the
batched fit so that both see the same machine load.

    python -m bench.bench_fit              # all three
    python -m bench.bench_fit --no-scipy   # skip the reference loop
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.optimize

from analysis import diagnostics
from analysis.bootstrap import bootstrap_fits
from analysis.fit import HUBER_DELTA, chinchilla_start_grid, fit_law
from analysis.inputs import EPOCH_CHINCHILLA_FILE, load_epoch_chinchilla, shared_data_dir
from analysis.laws import get_law
from bench.record import markdown_table, record

REPEATS = 3
RESAMPLES = 500
REFERENCE_STRIDE = 15
EXPONENT_REFERENCE_STRIDE = 10


def scipy_loop(variables, loss, starts):
    """One SciPy L-BFGS-B minimisation (default tolerances) per start, in the original variables,
    with a lean single-start NumPy objective and analytic gradient: the straightforward way to
    run Hoffmann et al.'s grid."""
    log_n, log_d, log_loss = np.log(variables["N"]), np.log(variables["D"]), np.log(loss)

    def value_and_grad(theta):
        a, alpha, b, beta, e = theta
        terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
        largest = terms.max(axis=0)
        exps = np.exp(terms - largest)
        total = exps.sum(axis=0)
        residual = largest + np.log(total) - log_loss
        slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
        weighted = slope * exps / total
        grad = [weighted[0].sum(), -(weighted[0] @ log_n), weighted[1].sum(), -(weighted[1] @ log_d),
                weighted[2].sum()]
        return float((slope * (residual - 0.5 * slope)).sum()), np.array(grad)

    best = (np.inf, None)
    for start in starts:
        result = scipy.optimize.minimize(value_and_grad, start, jac=True, method="L-BFGS-B")
        if result.fun < best[0]:
            best = (float(result.fun), result.x)
    return best


def exponent_one_resample_at_a_time(variables, loss, num_resamples, stride):
    """The per-size data exponent's bootstrap the straightforward way: each resample's points drawn
    (as `diagnostics.shared_data_exponent` draws them), its β the best of the grid refined by one
    bounded SciPy minimisation. Only every `stride`-th resample is fitted; returns their β and
    the largest difference from this package's β for the same resamples, all fitted at once."""
    N, D = variables["N"], variables["D"]
    sizes = [size for size in np.unique(N)
             if np.unique(D[N == size]).size >= diagnostics.MIN_BUDGETS_FOR_EXPONENT]
    groups = [(D[N == size], loss[N == size]) for size in sizes]
    grid = np.geomspace(*diagnostics.EXPONENT_RANGE, 200)
    rng = np.random.default_rng(0)
    betas, counts = [], [[] for _ in groups]
    for resample in range(num_resamples):
        drawn = []
        for k, (D_n, L_n) in enumerate(groups):
            pick = rng.integers(0, D_n.size, D_n.size)
            drawn.append((D_n[pick], L_n[pick]))
            if resample % stride == 0:
                counts[k].append(np.bincount(pick, minlength=D_n.size))
        if resample % stride:
            continue

        def total(beta):
            return diagnostics._per_size_fits(np.reshape(beta, (1, -1)), drawn)[0][0]

        k = int(np.argmin(total(grid)))
        found = scipy.optimize.minimize_scalar(
            lambda beta: total(beta)[0], bounds=(grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]),
            method="bounded", options={"xatol": 1e-6})
        betas.append(float(found.x))
    together = diagnostics._best_exponents(groups, [np.array(c, dtype=float) for c in counts])
    return np.array(betas), float(np.max(np.abs(together - betas)))


def automatic_chinchilla():
    """Chinchilla's law built from its formula alone (gradients by jax.grad)."""
    import jax.numpy as jnp

    from analysis.laws import formula_law

    law = get_law("chinchilla")

    def log_loss(theta, log_x):
        return jnp.logaddexp(theta[4], jnp.logaddexp(theta[0] - theta[1] * log_x[0],
                                                     theta[2] - theta[3] * log_x[1]))

    return formula_law(name=law.name, formula=law.formula, variables=law.variables,
                       fit_params=law.fit_params, reported_params=law.reported_params,
                       log_loss=log_loss, shift=law.shift, natural=law.natural)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-scipy", action="store_true", help="skip the SciPy reference loop")
    args = parser.parse_args()
    path = shared_data_dir() / EPOCH_CHINCHILLA_FILE
    if not path.is_file():
        raise SystemExit(f"{path} not found: set SCALING_SHARED_DATA to the reference data folder")
    points = load_epoch_chinchilla(path)
    variables = {"N": points["N"].to_numpy(), "D": points["D"].to_numpy()}
    loss = points["loss"].to_numpy()
    law = get_law("chinchilla")

    reference_starts = chinchilla_start_grid()[::REFERENCE_STRIDE]
    fit_seconds, bootstrap_seconds, loop_seconds = [], [], []
    for repeat in range(REPEATS):
        started = time.perf_counter()
        result = fit_law(law, variables, loss)
        fit_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        samples = law.natural(bootstrap_fits(result, RESAMPLES, seed=0))
        bootstrap_seconds.append(time.perf_counter() - started)
        if not args.no_scipy and repeat < 2:
            started = time.perf_counter()
            value, theta = scipy_loop(variables, loss, reference_starts)
            loop_seconds.append(time.perf_counter() - started)
    automatic = automatic_chinchilla()
    fit_law(automatic, variables, loss)  # compiles for the batch sizes the fit uses
    automatic_seconds = []
    for _ in range(2):
        started = time.perf_counter()
        automatic_result = fit_law(automatic, variables, loss)
        automatic_seconds.append(time.perf_counter() - started)
    exponent_seconds, exponent_loop_seconds = [], []
    for repeat in range(REPEATS):
        started = time.perf_counter()
        shared = diagnostics.shared_data_exponent(variables, loss, num_resamples=RESAMPLES)
        exponent_seconds.append(time.perf_counter() - started)
        if repeat < 2:
            started = time.perf_counter()
            reference_betas, difference = exponent_one_resample_at_a_time(
                variables, loss, RESAMPLES, EXPONENT_REFERENCE_STRIDE)
            exponent_loop_seconds.append(time.perf_counter() - started)
    fit_time, bootstrap_time = statistics.median(fit_seconds), statistics.median(bootstrap_seconds)
    params = result.params
    rows = [["batched NumPy L-BFGS grid + SciPy polish (this package)", "4,500", f"{fit_time:.2f}",
             f"{result.objective:.6e}", f"{params['alpha']:.4f}", f"{params['beta']:.4f}"],
            [f"bootstrap, {RESAMPLES} resamples (batched, from the optimum)", f"{RESAMPLES}",
             f"{bootstrap_time:.2f}", "", f"SE {np.std(samples['alpha'], ddof=1):.4f}",
             f"SE {np.std(samples['beta'], ddof=1):.4f}"],
            ["the same grid fit, gradients by jax.grad from the formula (compiled beforehand)",
             "4,500", f"{statistics.median(automatic_seconds):.2f}",
             f"{automatic_result.objective:.6e}", f"{automatic_result.params['alpha']:.4f}",
             f"{automatic_result.params['beta']:.4f}"]]
    if loop_seconds:
        loop_time = statistics.median(loop_seconds) * REFERENCE_STRIDE
        reference = law.natural(theta)
        rows.append([f"reference: one SciPy L-BFGS-B call per start ({len(reference_starts)} starts "
                     f"timed, × {REFERENCE_STRIDE})", "4,500", f"{loop_time:.0f}",
                     f"{value:.6e} (best of {len(reference_starts)})", f"{reference['alpha']:.4f}",
                     f"{reference['beta']:.4f}"])
        speedup = (f"The batched grid fit is {loop_time / fit_time:.0f}× faster than the SciPy loop in this "
                   "run (an earlier quiet-machine measurement of that loop was ~46 s).\n")
    else:
        speedup = "The SciPy loop was not run; an earlier quiet-machine measurement put it at ~46 s.\n"
    beta = shared["beta"]
    exponent_time = statistics.median(exponent_seconds)
    exponent_loop_time = statistics.median(exponent_loop_seconds) * EXPONENT_REFERENCE_STRIDE
    rows += [[f"per-size data exponent, {RESAMPLES}-resample bootstrap, all resamples at once "
              "(this package)", f"{RESAMPLES}", f"{exponent_time:.2f}", "", "",
              f"{beta['value']:.4f} (95% CI {beta['ci_low']:.4f}–{beta['ci_high']:.4f})"],
             [f"reference: one bounded SciPy minimisation per resample "
              f"({len(reference_betas)} timed, × {EXPONENT_REFERENCE_STRIDE})", f"{RESAMPLES}",
              f"{exponent_loop_time:.1f}", "", "",
              f"median of the {len(reference_betas)}: {np.median(reference_betas):.4f}; at most "
              f"{difference:.1e} from this package's"]]
    speedup += (f"The per-size exponent's bootstrap is {exponent_loop_time / exponent_time:.0f}× "
                "faster than the loop over resamples.\n")
    load = os.getloadavg()[0]
    body = (markdown_table(["method", "starts / resamples", "seconds", "objective (sum of Huber)",
                            "alpha", "beta"], rows)
            + f"\nMedian of {REPEATS} runs for the first two rows and the fifth, of 2 for the third, "
              "fourth and sixth; Epoch AI's grid fit reports objective "
              "1.01827e-3, alpha 0.34731, beta 0.36718, bootstrap SE(alpha) 0.0154, SE(beta) 0.0206.\n"
            + speedup + f"Load average at the end of the run: {load:.1f} on {os.cpu_count()} cores.\n")
    print(body)
    record("fit", "Scaling-law fit (Chinchilla Approach 3, 240 points)", body)


if __name__ == "__main__":
    main()

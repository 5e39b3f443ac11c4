"""Fitting: law forms against direct formulas, the batched L-BFGS against SciPy, recovery of known
laws from synthetic data, and Epoch AI's published replication of Chinchilla's Approach 3."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from analysis import allocation, returns
from analysis.bootstrap import bootstrap_fits, resample_weights, summarize
from analysis.diagnostics import diagnose
from analysis.fit import chinchilla_start_grid, fit_law, huber
from analysis.inputs import EPOCH_CHINCHILLA_FILE, load_epoch_chinchilla, shared_data_dir
from analysis.isoflop import fit_isoflops, snap_to_budgets
from analysis.laws import get_law, predict_loss
from analysis.lbfgs import minimize_batched

EPOCH_DATA = shared_data_dir() / EPOCH_CHINCHILLA_FILE
needs_epoch_data = pytest.mark.skipif(
    not EPOCH_DATA.is_file(),
    reason=f"published Chinchilla data not found at {EPOCH_DATA} (set SCALING_SHARED_DATA or place "
           "the shared data beside the repository)")


def test_huber_matches_its_definition():
    residual = np.array([-0.01, -1e-3, -2e-4, 0.0, 5e-4, 1e-3, 0.3])
    delta = 1e-3
    expected = [0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta) for r in residual]
    np.testing.assert_allclose(huber(residual, delta), expected, rtol=1e-12, atol=0)


def test_law_predictions_match_direct_formulas():
    rng = np.random.default_rng(1)
    N, D, C = 10 ** rng.uniform(6, 10, 7), 10 ** rng.uniform(8, 12, 7), 10 ** rng.uniform(15, 22, 7)
    E, A, B, alpha, beta = 1.7, 400.0, 1500.0, 0.33, 0.29
    chinchilla = [np.log(A), alpha, np.log(B), beta, np.log(E)]
    np.testing.assert_allclose(predict_loss(get_law("chinchilla"), chinchilla, {"N": N, "D": D}),
                               E + A / N**alpha + B / D**beta, rtol=1e-12)
    np.testing.assert_allclose(predict_loss(get_law("compute"), [np.log(A), alpha, np.log(E)], {"C": C}),
                               E + A * C**-alpha, rtol=1e-12)
    np.testing.assert_allclose(predict_loss(get_law("d"), [np.log(B), beta, np.log(E)], {"D": D}),
                               E + B / D**beta, rtol=1e-12)
    # Kaplan et al. (2020), eq. 1.5, with their fitted constants.
    n_c, d_c, alpha_n, alpha_d = 8.8e13, 5.4e13, 0.076, 0.095
    kaplan = [alpha_n / alpha_d * np.log(n_c), alpha_n / alpha_d, np.log(d_c), alpha_d]
    np.testing.assert_allclose(predict_loss(get_law("kaplan"), kaplan, {"N": N, "D": D}),
                               ((n_c / N) ** (alpha_n / alpha_d) + d_c / D) ** alpha_d, rtol=1e-12)
    reported = get_law("kaplan").natural(np.array(kaplan))
    np.testing.assert_allclose([reported["N_c"], reported["D_c"], reported["alpha_N"]], [n_c, d_c, alpha_n],
                               rtol=1e-12)


@pytest.mark.parametrize("law_name", ["chinchilla", "kaplan", "compute"])
def test_law_gradients_match_finite_differences(law_name):
    law = get_law(law_name)
    rng = np.random.default_rng(2)
    log_x = rng.normal(size=(len(law.variables), 9))
    theta = rng.normal(size=(3, law.num_params)) * 0.3 + 0.5
    cotangent = rng.normal(size=(3, 9))
    _, pullback = law.log_prediction(theta, log_x)
    step = 1e-6
    numeric = np.zeros_like(theta)
    for p in range(law.num_params):
        shift = np.zeros(law.num_params)
        shift[p] = step
        up, _ = law.log_prediction(theta + shift, log_x)
        down, _ = law.log_prediction(theta - shift, log_x)
        numeric[:, p] = ((up - down) / (2 * step) * cotangent).sum(axis=1)
    np.testing.assert_allclose(pullback(cotangent), numeric, rtol=1e-6, atol=1e-8)


def test_batched_lbfgs_agrees_with_scipy_on_rosenbrock():
    def rosenbrock(x, rows):
        value = (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2
        grad = np.stack([-2 * (1 - x[:, 0]) - 400 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2),
                         200 * (x[:, 1] - x[:, 0] ** 2)], axis=1)
        return value, grad

    starts = np.array([[-1.2, 1.0], [2.0, -1.0], [0.0, 0.0], [-3.0, 4.0]])
    ends, values, _ = minimize_batched(rosenbrock, starts, max_iterations=5000,
                                       relative_decrease_tolerance=0.0, relative_gradient_tolerance=0.0)
    for start, end in zip(starts, ends):
        reference = scipy.optimize.minimize(lambda x: rosenbrock(x[None], None)[0][0], start,
                                            method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10}).x
        np.testing.assert_allclose(end, [1.0, 1.0], atol=1e-6)
        np.testing.assert_allclose(end, reference, atol=1e-4)
    assert np.all(values < 1e-12)


def test_chinchilla_start_grid_is_hoffmanns():
    grid = chinchilla_start_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]  # a
    assert sorted(set(grid[:, 1])) == [0, 0.5, 1, 1.5, 2]  # alpha
    assert sorted(set(grid[:, 4])) == [-1, -0.5, 0, 0.5, 1]  # e


def synthetic_compute_points(noise: float, seed: int = 0):
    """L(C) = 1.7 + 500·C^-0.15 at 60 log-spaced budgets, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    C = np.geomspace(1e15, 1e22, 60)
    loss = (1.7 + 500.0 * C**-0.15) * np.exp(noise * rng.normal(size=C.size))
    return C, loss


def test_compute_law_recovers_a_known_law_exactly():
    C, loss = synthetic_compute_points(noise=0.0)
    params = fit_law(get_law("compute"), {"C": C}, loss).params
    assert params["E"] == pytest.approx(1.7, rel=1e-5)
    assert params["A"] == pytest.approx(500.0, rel=1e-4)
    assert params["alpha"] == pytest.approx(0.15, rel=1e-5)


def test_compute_law_recovers_a_known_law_under_noise_within_its_interval():
    C, loss = synthetic_compute_points(noise=0.003, seed=3)
    result = fit_law(get_law("compute"), {"C": C}, loss)
    samples = get_law("compute").natural(bootstrap_fits(result, num_resamples=300, seed=1))
    for name, truth in (("E", 1.7), ("A", 500.0), ("alpha", 0.15)):
        interval = summarize(result.params[name], samples[name], level=0.99)
        assert interval["ci_low"] < truth < interval["ci_high"], (name, interval)
    assert result.params["alpha"] == pytest.approx(0.15, rel=0.1)


def test_a_cluster_bootstrap_draws_whole_clusters():
    # Each of 12 points repeated 4 times, the copies one cluster: drawing clusters is drawing the
    # 12 points (the same draws, seed for seed), and 4 copies of a point weigh as one point
    # does (a sum of Huber losses scaled by 4), so the resampled fits are the points' own.
    C, loss = synthetic_compute_points(noise=0.003, seed=3)
    law = get_law("compute")
    single = fit_law(law, {"C": C}, loss)
    copies = fit_law(law, {"C": np.repeat(C, 4)}, np.repeat(loss, 4))
    by_point = law.natural(bootstrap_fits(single, num_resamples=40, seed=5))
    by_cluster = law.natural(bootstrap_fits(copies, num_resamples=40, seed=5,
                                            clusters=np.repeat(np.arange(C.size), 4)))
    naive = law.natural(bootstrap_fits(copies, num_resamples=40, seed=5))
    np.testing.assert_allclose(by_cluster["alpha"], by_point["alpha"], rtol=1e-4)
    # Resampling the 48 copies as if independent halves the spread: the defect clusters avoid.
    assert np.std(naive["alpha"]) < 0.7 * np.std(by_cluster["alpha"])


def test_resamples_that_never_reach_a_budget_count_in_its_interval():
    # 30 of 100 resamples never reach it (+inf): the upper bound is "never", the lower one the
    # 2.5th percentile of all 100 (a huge number standing in for infinity does not move it).
    finite = np.linspace(1e22, 5e22, 70)
    summary = summarize(2e22, np.r_[finite, np.full(30, np.inf), np.nan])
    assert summary["ci_high"] == np.inf and summary["se"] == np.inf
    assert summary["ci_low"] == pytest.approx(np.percentile(np.r_[finite, np.full(30, 1e300)], 2.5))
    assert summary["non_finite_resamples"] == 31
    # A few that never reach it, inside the tail: the interval stays finite.
    few = summarize(2e22, np.r_[finite, np.full(1, np.inf)])
    assert few["ci_high"] == pytest.approx(np.percentile(np.r_[finite, 1e300], 97.5))


def test_an_estimate_most_of_whose_resamples_failed_has_no_interval():
    # An IsoFLOP fit of three sizes per budget: 174 of 200 resamples drew too few distinct sizes
    # and failed; the 26 left, the resamples that redrew the original runs, gave "a = 0.522
    # (95% CI 0.503 - 0.541)" around a truth of 0.452, and one seed an interval of width 0.
    from analysis.report import _with_interval

    survivors = np.full(26, 0.5217)
    summary = summarize(0.5217, np.r_[survivors, np.full(174, np.nan)])
    assert np.isnan(summary["ci_low"]) and np.isnan(summary["ci_high"]) and np.isnan(summary["se"])
    assert (summary["failed_resamples"], summary["resamples"]) == (174, 200)
    assert _with_interval(summary) == ("0.5217 (no interval: 174 of 200 bootstrap resamples "
                                       "failed to fit or overflowed)")
    # A few failures (at most a tenth) leave the interval of the rest.
    few = summarize(0.5, np.r_[np.linspace(0.4, 0.6, 90), np.full(10, np.nan)])
    assert few["ci_low"] == pytest.approx(np.percentile(np.linspace(0.4, 0.6, 90), 2.5))
    assert "failed_resamples" not in few and few["non_finite_resamples"] == 10


def test_an_interval_unbounded_above_reads_never_for_a_budget_and_infinity_otherwise():
    from analysis.report import _with_interval

    summary = summarize(2e22, np.r_[np.linspace(1e22, 5e22, 70), np.full(30, np.inf)])
    assert _with_interval(summary, "never").endswith("95% CI 1.143e+22 – never)")
    assert _with_interval(summary).endswith("95% CI 1.143e+22 – ∞)")


def test_a_frontier_of_few_curves_is_bootstrapped_by_point():
    # A run-level bootstrap of one to three runs has a handful of distinct resamples.
    from analysis.frontier import Frontier
    from analysis.pipeline import MIN_BOOTSTRAP_RUNS, frontier_clusters

    def frontier(runs, source="curves"):
        return Frontier(flops=np.geomspace(1, 100, 12), loss=np.linspace(3, 2, 12),
                        run=np.array([f"r{i % runs}" for i in range(12)], dtype=object),
                        source=source)
    assert frontier_clusters(frontier(MIN_BOOTSTRAP_RUNS - 1)) is None
    assert list(frontier_clusters(frontier(MIN_BOOTSTRAP_RUNS))) == list(
        frontier(MIN_BOOTSTRAP_RUNS).run)
    assert frontier_clusters(frontier(12, source="final points")) is None


def test_chinchilla_law_recovers_known_parameters():
    rng = np.random.default_rng(4)
    N, D = 10 ** rng.uniform(7, 10, 80), 10 ** rng.uniform(9, 12, 80)
    loss = 1.8 + 480 / N**0.34 + 2100 / D**0.37
    params = fit_law(get_law("chinchilla"), {"N": N, "D": D}, loss).params
    for name, truth in (("E", 1.8), ("A", 480), ("B", 2100), ("alpha", 0.34), ("beta", 0.37)):
        assert params[name] == pytest.approx(truth, rel=1e-3), name


def test_resample_weights_count_draws():
    weights = resample_weights(7, 5, seed=0)
    assert weights.shape == (5, 7)
    np.testing.assert_array_equal(weights.sum(axis=1), 7)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 7, size=(5, 7))
    np.testing.assert_array_equal(weights, [np.bincount(row, minlength=7) for row in draws])


def test_allocation_closed_form_matches_a_numerical_minimum():
    E, A, B, alpha, beta = 1.69, 406.4, 410.7, 0.34, 0.28
    for C in (1e20, 1e23):
        N = np.geomspace(1e6, 1e13, 200001)
        loss = E + A / N**alpha + B / (C / (6 * N)) ** beta
        best = N[loss.argmin()]
        assert allocation.optimal_params(C, A, B, alpha, beta) == pytest.approx(best, rel=1e-3)
        K, gamma = allocation.optimal_loss_law(A, B, alpha, beta)
        assert E + K * C**-gamma == pytest.approx(loss.min(), rel=1e-9)
    a, b = allocation.allocation_exponents(alpha, beta)
    assert a == pytest.approx(0.28 / 0.62) and a + b == pytest.approx(1.0)


def test_allocation_in_another_flop_convention_matches_a_numerical_minimum():
    """A model of N parameters costing 6·c·N^(1+s) FLOPs per token: the N minimising the loss at
    compute C on a fine grid, and with s = 0 the 6ND optimum at C/c."""
    E, A, B, alpha, beta = 1.69, 406.4, 410.7, 0.34, 0.28
    for c, s in ((2.0, 0.0), (3.0, -0.1), (0.5, 0.05)):
        for C in (1e20, 1e23):
            N = np.geomspace(1e5, 1e14, 400001)
            D = C / (6 * c * N ** (1 + s))
            loss = E + A / N**alpha + B / D**beta
            params, tokens, a, b = allocation.allocation_at_flops(C, A, B, alpha, beta, c, s)
            assert params == pytest.approx(N[loss.argmin()], rel=1e-3)
            assert tokens == pytest.approx(D[loss.argmin()], rel=1e-3)
            if s == 0.0:
                assert params == pytest.approx(allocation.optimal_params(C / c, A, B, alpha, beta))
        # The exponents: the optimum's slope in log C.
        low, high = (allocation.allocation_at_flops(C, A, B, alpha, beta, c, s) for C in (1e20, 1e22))
        assert a == pytest.approx(np.log(high[0] / low[0]) / np.log(100))
        assert b == pytest.approx(np.log(high[1] / low[1]) / np.log(100))


def test_diminishing_returns_hand_numbers():
    # A = 1, alpha = 1: R(x) = 1/x.
    assert returns.loss_drop_per_decade(1.0, 1.0, 1.0) == pytest.approx(0.9)
    assert returns.budget_for_improvement(1.0, 1.0, 1.0, 0.5) == pytest.approx(2.0)
    assert returns.budget_for_improvement(1.0, 1.0, 4.0, 0.5) == np.inf  # only 0.25 nats left
    assert returns.budget_where_reducible_below(1.0, 1.0, 2.0, 0.1) == pytest.approx(5.0)


def test_isoflop_exponent_matches_the_generating_law():
    E, A, B, alpha, beta = 1.8, 480.0, 2100.0, 0.34, 0.37
    budgets, params, tokens = [], [], []
    for C in np.geomspace(1e18, 1e22, 6):
        centre = allocation.optimal_params(C, A, B, alpha, beta)
        for N in centre * np.geomspace(0.25, 4.0, 9):
            budgets.append(C)
            params.append(N)
            tokens.append(C / (6 * N))
    params, tokens = np.array(params), np.array(tokens)
    loss = E + A / params**alpha + B / tokens**beta
    fit = fit_isoflops(params, tokens, loss, np.array(budgets), num_resamples=50)
    assert fit.params_exponent == pytest.approx(beta / (alpha + beta), abs=0.01)
    assert fit.tokens_exponent == pytest.approx(alpha / (alpha + beta), abs=0.01)


@pytest.fixture(scope="module")
def epoch_points():
    if not EPOCH_DATA.is_file():
        pytest.skip(f"published Chinchilla data not found at {EPOCH_DATA}")
    return load_epoch_chinchilla()


@pytest.fixture(scope="module")
def epoch_fit(epoch_points):
    return fit_law(get_law("chinchilla"), {"N": epoch_points["N"].to_numpy(),
                                           "D": epoch_points["D"].to_numpy()},
                   epoch_points["loss"].to_numpy())


@needs_epoch_data
def test_epoch_preprocessing_keeps_240_rows(epoch_points):
    assert len(epoch_points) == 240
    np.testing.assert_allclose(epoch_points["D"] * 6 * epoch_points["N"], epoch_points["C"], rtol=1e-12)


@needs_epoch_data
def test_reproduces_epochs_chinchilla_fit(epoch_fit):
    # Besiroglu et al. (2024): E 1.817, A 482 / 478, B 2085 / 2144, alpha 0.3478 / 0.3473,
    # beta 0.3658 / 0.3672; grid L-BFGS-B objective 1.01827e-3.
    params = epoch_fit.params
    assert params["E"] == pytest.approx(1.817, abs=0.005)
    assert params["alpha"] == pytest.approx(0.3475, abs=0.006)
    assert params["beta"] == pytest.approx(0.3665, abs=0.006)
    assert params["A"] == pytest.approx(480, rel=0.10)
    assert params["B"] == pytest.approx(2100, rel=0.12)
    assert epoch_fit.objective <= 1.01828e-3 * (1 + 1e-4)
    assert epoch_fit.num_starts == 4500


@needs_epoch_data
def test_mean_objective_gives_the_same_optimum(epoch_points, epoch_fit):
    mean_fit = fit_law(get_law("chinchilla"), {"N": epoch_points["N"].to_numpy(),
                                               "D": epoch_points["D"].to_numpy()},
                       epoch_points["loss"].to_numpy(), reduction="mean")
    assert mean_fit.objective * 240 == pytest.approx(epoch_fit.objective, rel=1e-7)
    for name, value in epoch_fit.params.items():
        assert mean_fit.params[name] == pytest.approx(value, rel=1e-4), name


@needs_epoch_data
def test_bootstrap_uncertainty_matches_epochs(epoch_fit):
    law = get_law("chinchilla")
    samples = law.natural(bootstrap_fits(epoch_fit, num_resamples=500, seed=0))
    alpha = summarize(epoch_fit.params["alpha"], samples["alpha"])
    beta = summarize(epoch_fit.params["beta"], samples["beta"])
    # Epoch: SE(alpha) = 0.0154, 95% CI of beta (0.331, 0.415); Hoffmann et al.'s beta = 0.28.
    assert 0.011 <= alpha["se"] <= 0.019
    assert not beta["ci_low"] <= 0.28 <= beta["ci_high"]
    a = samples["beta"] / (samples["alpha"] + samples["beta"])
    assert 0.013 <= a.std(ddof=1) <= 0.027  # Epoch: a = 0.513, SE 0.020


@needs_epoch_data
def test_approach_two_on_snapped_budgets(epoch_points):
    fit = fit_isoflops(epoch_points["N"], epoch_points["D"], epoch_points["loss"],
                       snap_to_budgets(epoch_points["C"]), num_resamples=100)
    assert fit.budgets.size == 9
    assert fit.params_exponent == pytest.approx(0.50, abs=0.04)  # Hoffmann et al.: 0.49


def test_isoflop_budget_with_its_minimum_outside_the_sampled_sizes_is_not_used():
    E, A, B, alpha, beta = 1.8, 480.0, 2100.0, 0.34, 0.37
    budgets, params = [], []
    for C, spread in ((1e19, (0.25, 4.0)), (1e20, (0.25, 4.0)), (1e21, (0.25, 4.0)), (1e22, (4.0, 64.0))):
        centre = allocation.optimal_params(C, A, B, alpha, beta)
        for N in centre * np.geomspace(*spread, 7):
            budgets.append(C)
            params.append(N)
    params, budgets = np.array(params), np.array(budgets)
    tokens = budgets / (6 * params)
    fit = fit_isoflops(params, tokens, E + A / params**alpha + B / tokens**beta, budgets, num_resamples=20)
    # Only models larger than optimal were trained at 1e22: its parabola's minimum is extrapolated.
    np.testing.assert_array_equal(fit.used, [True, True, True, False])
    assert fit.params_exponent == pytest.approx(beta / (alpha + beta), abs=0.01)


def test_a_negative_exponent_is_called_negative_not_at_its_bound():
    # Losses that rise with N fit alpha = -0.1 exactly; the warning said "alpha = -0.1 is at its
    # bound 0", a bound the exponents do not have.
    N = np.repeat([1e7, 1e8, 1e9], 3)
    D = np.tile([1e9, 1e10, 1e11], 3)
    params = {"E": {"value": 2.0}, "A": {"value": 0.02}, "B": {"value": 400.0},
              "alpha": {"value": -0.1}, "beta": {"value": 0.3}, "gamma": {"value": -0.2}}
    problems = {flag["parameter"]: flag["problem"]
                for flag in diagnose("chinchilla", params, {"N": N, "D": D}, 2 + 0.02 * N**0.1)}
    assert problems["alpha"] == "exponent alpha = -0.1 is negative: the fitted loss rises with N"
    assert problems["gamma"] == "exponent gamma = -0.2 is negative: the fitted loss rises with scale"
    assert "beta" not in problems


def test_a_law_fitted_to_no_more_points_than_it_has_parameters_says_so(tmp_path):
    # L(C) = E + A·C^-alpha through 3 frontier points: zero residuals and resamples that all
    # refit the same curve, so "E = 2.39 (95% CI 2.39 – 2.39)" with no word of why.
    from analysis.cli import main

    pd.DataFrame({"N": [1e6, 4e6, 1.6e7], "D": [2e7, 8e7, 3.2e8],
                  "loss": [3.1, 2.8, 2.6]}).to_csv(tmp_path / "three.csv", index=False)
    assert main(["--csv", str(tmp_path / "three.csv"), "--n-col", "N", "--d-col", "D",
                 "--loss-col", "loss", "--law", "compute", "--bootstrap", "20",
                 "--out", str(tmp_path / "fit")]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert {"parameter": "fit", "problem": "3 points for 3 parameters: the law passes through "
            "them, and its intervals are no uncertainty", "fix": "more points (runs)"} in (
        fit["fits"]["compute"]["diagnostics"])


def test_the_share_of_resamples_a_law_passes_through_is_the_hand_count():
    from analysis.diagnostics import interpolating_share

    # 4 draws from 4 points: all 4 distinct in 4! of the 4^4 ways.
    assert interpolating_share(4, 3) == 1 - 24 / 4**4
    # 5 from 5, at most 3 distinct: 1 − (5!/5^5 + C(5,4)·S(5,4)·4!/5^5), S(5,4) = 10.
    assert interpolating_share(5, 3) == pytest.approx(1 - (120 + 5 * 10 * 24) / 5**5, rel=1e-12)
    assert interpolating_share(3, 3) == 1.0
    assert interpolating_share(36, 5) < 1e-20


def test_a_law_that_passes_through_many_resamples_says_its_intervals_are_too_narrow(tmp_path):
    # L(C) on 4 frontier points: "E = 3.261 (95% CI 3.26 – 3.26)" and only A flagged, while
    # 91% of the resamples held 3 distinct points or fewer, which the law passes through.
    from analysis.cli import main

    def diagnostics(count, bootstrap="20"):
        n = np.geomspace(1e6, 1.6e7, count)
        pd.DataFrame({"N": n, "D": 20 * n, "loss": 2.0 + 40 * (n * 20 * n) ** -0.15}).to_csv(
            tmp_path / f"{count}.csv", index=False)
        assert main(["--csv", str(tmp_path / f"{count}.csv"), "--n-col", "N", "--d-col", "D",
                     "--loss-col", "loss", "--law", "compute", "--bootstrap", bootstrap,
                     "--out", str(tmp_path / f"fit{count}")]) == 0
        fit = json.loads((tmp_path / f"fit{count}" / "fit.json").read_text())
        return [flag for flag in fit["fits"]["compute"]["diagnostics"] if flag["parameter"] == "fit"]

    # Without a bootstrap there are no resamples and no intervals to speak of.
    assert diagnostics(4, bootstrap="0") == []
    assert diagnostics(4) == [{"parameter": "fit", "problem": "4 points for 3 parameters: 91% of "
                               "the bootstrap's resamples hold 3 or fewer distinct points, which "
                               "the law passes through, so its intervals are too narrow",
                               "fix": "more points (runs)"}]
    assert diagnostics(12) == []


def test_an_isoflop_budget_of_three_sizes_is_flagged_beside_larger_ones():
    # A ladder's coincident budgets: one of 4 sizes hid two of 3, which parabolas pass through
    # exactly (the flag asked that every budget have 3).
    from analysis.diagnostics import isoflop_flags

    budgets = [{"sizes": 4, "used": True}, {"sizes": 3, "used": True},
               {"sizes": 3, "used": True}, {"sizes": 3, "used": False}]
    [flag] = isoflop_flags(budgets)
    assert flag["parameter"] == "N_opt"
    assert flag["problem"].startswith("2 of the 3 budgets used have 3 model sizes, which a parabola")
    flag, _ = isoflop_flags(budgets[1:3])  # and the "line through 2 points" one
    assert flag["problem"].startswith("every budget used has 3 model sizes")
    assert isoflop_flags([{"sizes": 4, "used": True}] * 3) == []

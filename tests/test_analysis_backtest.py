"""Backtests, prediction intervals, fit diagnostics, the over-training law, and the inputs the
issue of degenerate and irregular tables brought: Epoch's preprocessing from the command line,
IsoFLOP grouping, frontier gaps, final-eval-only sweeps and ladders of token budgets."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.backtest import (budgets_per_size, headline_law, prediction_interval, run_backtest,
                               split_largest)
from analysis.cli import main
from analysis.fit import fit_law
from analysis.frontier import curve_frontier
from analysis.inputs import EPOCH_CHINCHILLA_FILE, load_epoch_chinchilla, shared_data_dir
from analysis.isoflop import group_budgets
from analysis.laws import get_law, predict_loss
from analysis.pipeline import Settings, analyze, fit_with_uncertainty

EPOCH_DATA = shared_data_dir() / EPOCH_CHINCHILLA_FILE
OVERTRAINING_TRUTH = {"E": 1.9, "a": 180.0, "b": 150.0, "eta": 0.125}


def overtraining_loss(N, D, E=1.9, a=180.0, b=150.0, eta=0.125):
    """Gadre et al.'s form written directly: E + (a·M^eta + b·M^-eta)·C^-eta."""
    M, C = D / (20 * N), 6 * N * D
    return E + (a * M**eta + b * M**-eta) * C**-eta


def overtraining_grid(sizes=(1e7, 3e7, 1e8, 3e8, 1e9), multipliers=(0.5, 1, 2, 4, 8, 16)):
    N = np.repeat(np.asarray(sizes, dtype=float), len(multipliers))
    D = N * 20 * np.tile(np.asarray(multipliers, dtype=float), len(sizes))
    return N, D


def test_overtraining_law_matches_its_formula_and_gradients():
    law = get_law("overtraining")
    N, D = overtraining_grid()
    theta = [np.log(180.0), 0.125, np.log(150.0), np.log(1.9)]
    np.testing.assert_allclose(predict_loss(law, theta, {"N": N, "D": D}), overtraining_loss(N, D),
                               rtol=1e-12)
    rng = np.random.default_rng(0)
    log_x = rng.normal(size=(2, 7))
    thetas = rng.normal(size=(3, 4)) * 0.3 + 0.5
    cotangent = rng.normal(size=(3, 7))
    _, pullback = law.log_prediction(thetas, log_x)
    numeric = np.zeros_like(thetas)
    for p in range(4):
        step = np.zeros(4)
        step[p] = 1e-6
        up, _ = law.log_prediction(thetas + step, log_x)
        down, _ = law.log_prediction(thetas - step, log_x)
        numeric[:, p] = ((up - down) / 2e-6 * cotangent).sum(axis=1)
    np.testing.assert_allclose(pullback(cotangent), numeric, rtol=1e-6, atol=1e-8)


def test_overtraining_law_recovers_a_synthetic_truth():
    N, D = overtraining_grid()
    params = fit_law(get_law("overtraining"), {"N": N, "D": D}, overtraining_loss(N, D)).params
    for name, truth in OVERTRAINING_TRUTH.items():
        assert params[name] == pytest.approx(truth, rel=1e-3), name


@pytest.mark.parametrize("law_name", ["chinchilla", "kaplan"])
def test_two_variable_laws_recover_a_synthetic_truth(law_name):
    law = get_law(law_name)
    truth = {"chinchilla": [np.log(480.0), 0.34, np.log(2100.0), 0.37, np.log(1.8)],
             "kaplan": [0.076 / 0.095 * np.log(8.8e13), 0.076 / 0.095, np.log(5.4e13), 0.095]}[law_name]
    rng = np.random.default_rng(5)
    N, D = 10 ** rng.uniform(7, 10, 60), 10 ** rng.uniform(9, 12, 60)
    loss = predict_loss(law, truth, {"N": N, "D": D})
    fitted = fit_law(law, {"N": N, "D": D}, loss)
    expected = law.natural(np.array(truth))
    for name, value in fitted.params.items():
        assert value == pytest.approx(float(expected[name]), rel=2e-3), name


def test_headline_rule_reads_the_shape_of_the_table():
    N, D = overtraining_grid()
    assert headline_law(pd.DataFrame({"N": N, "D": D})) == "overtraining"
    sizes = np.geomspace(1e7, 1e9, 8)
    assert headline_law(pd.DataFrame({"N": sizes, "D": 20 * sizes})) == "chinchilla"


@pytest.mark.slow
def test_backtest_on_a_known_law_predicts_and_covers_the_held_out_sizes():
    rng = np.random.default_rng(1)
    N, D = overtraining_grid()
    loss = overtraining_loss(N, D) * np.exp(0.003 * rng.normal(size=N.size))
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": loss})
    backtest = run_backtest(runs, drop_largest=1, num_resamples=40, seed=0, methods=["overtraining"])
    assert backtest["headline"] == "overtraining" and backtest["n_held_out"] == 6
    result = backtest["methods"]["overtraining"]
    assert result["mean_abs_relative_error"] < 0.01
    for row in result["held_out"]:
        assert row["ci_low"] < row["predicted"] < row["ci_high"]
        assert {"N", "D", "loss", "predicted", "relative_error", "covered"} <= set(row)
    assert result["coverage"] >= 0.5


def test_holding_out_the_largest_of_one_size_says_two_are_needed():
    runs = pd.DataFrame({"N": [1e6, 1e6], "D": [1e8, 2e8], "loss": [3.0, 2.9]})
    with pytest.raises(ValueError) as one:
        split_largest(runs)
    assert str(one.value) == "the runs have 1 model size; holding out the largest needs at least 2"
    two = pd.concat([runs, runs.assign(N=2e6)])
    with pytest.raises(ValueError, match=r"drop_highest=2 is not allowed with 2 model sizes; "
                                         r"need 1 <= drop_highest < 2"):
        split_largest(two, drop_largest=2)
    kept, held_out = split_largest(two)
    assert list(kept["N"]) == [1e6, 1e6] and list(held_out["N"]) == [2e6, 2e6]


def test_data_gain_by_size_shows_a_data_term_that_depends_on_n():
    """Small models that saturate: the data term is scaled by N/(N + 4e7), so the smallest size
    gains a fifth of what the largest does from the same budgets; a separable fit cannot follow."""
    N = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 4)
    D = np.tile([1e9, 2e9, 4e9, 8e9], 5)
    saturation = N / (N + 4e7)
    loss = 1.8 + 400 / N**0.34 + saturation * 2000 / D**0.37
    law_fit = fit_with_uncertainty("chinchilla", {"N": N, "D": D}, loss, Settings(num_resamples=0))
    gains = law_fit.summary["data_gain"]
    params = {name: summary["value"] for name, summary in law_fit.summary["params"].items()}
    fitted_fall = params["B"] * (1e9**-params["beta"] - 8e9**-params["beta"])
    assert [row["N"] for row in gains] == [1e7, 3e7, 1e8, 3e8, 1e9]
    for row, size in zip(gains, (1e7, 3e7, 1e8, 3e8, 1e9)):
        assert (row["D_low"], row["D_high"]) == (1e9, 8e9)
        true_fall = size / (size + 4e7) * 2000 * (1e9**-0.37 - 8e9**-0.37)
        assert row["measured"] == pytest.approx(true_fall, rel=1e-9)
        assert row["law"] == pytest.approx(fitted_fall, rel=1e-9)  # the same at every size
    ratios = [row["measured"] / row["law"] for row in gains]
    assert ratios == sorted(ratios) and ratios[-1] / ratios[0] > 4


def test_one_data_exponent_with_each_sizes_own_amplitude_is_recovered_and_reported():
    """The same saturating data term: E_N = 1.8 + 400/N^0.34 and B_N = 2000·N/(N + 4e7) per size,
    one β = 0.37 for all. The per-size fit recovers them exactly where the separable law cannot."""
    from analysis.diagnostics import shared_data_exponent
    from analysis.report import render_report

    sizes = np.array([1e7, 3e7, 1e8, 3e8, 1e9])
    N, D = np.repeat(sizes, 4), np.tile([1e9, 2e9, 4e9, 8e9], 5)
    loss = 1.8 + 400 / N**0.34 + N / (N + 4e7) * 2000 / D**0.37
    shared = shared_data_exponent({"N": N, "D": D}, loss, num_resamples=20)
    beta = shared["beta"]
    assert beta["value"] == pytest.approx(0.37, abs=1e-5) and shared["rms"] < 1e-6
    assert beta["ci_low"] == pytest.approx(0.37, abs=1e-5)
    assert beta["ci_high"] == pytest.approx(0.37, abs=1e-5)
    for row, size in zip(shared["sizes"], sizes):
        assert row["N"] == size
        assert row["E"] == pytest.approx(1.8 + 400 / size**0.34, rel=1e-4)
        assert row["B"] == pytest.approx(2000 * size / (size + 4e7), rel=1e-3)
    # Noise of 0.5%: the interval covers the exponent.
    rng = np.random.default_rng(0)
    noisy = loss * np.exp(0.005 * rng.normal(size=loss.size))
    shared = shared_data_exponent({"N": N, "D": D}, noisy, num_resamples=100)
    assert shared["beta"]["ci_low"] < 0.37 < shared["beta"]["ci_high"]
    # Two budgets per size say nothing about β beyond E_N and B_N: no result.
    two = D <= 2e9
    assert shared_data_exponent({"N": N[two], "D": D[two]}, loss[two]) is None
    # In the analysis, beside the law's own residuals, and in the report.
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": loss})
    analysis = analyze(runs, Settings(num_resamples=0, law="chinchilla", drop_largest=1))
    fitted = analysis.summary["fits"]["chinchilla"]["shared_data_exponent"]
    assert fitted["beta"]["value"] == pytest.approx(0.37, abs=1e-5)
    assert fitted["law_rms"] > 100 * fitted["rms"]
    report = render_report(analysis)
    assert "one data exponent for all, L = E_N + B_N/D^β" in report and "β = 0.37;" in report
    assert "| 1.000e+07 | " in report.split("| N | E_N | B_N |")[1]


def test_the_data_exponents_resamples_are_fitted_as_the_points_they_draw():
    """The bootstrap fits every resample at once, as how often it draws each point; each must be
    the exponent of its drawn points fitted on their own (repeats as separate points)."""
    from analysis.diagnostics import _best_exponents, shared_data_exponent

    rng = np.random.default_rng(1)
    sizes = np.array([1e7, 1e8, 1e9])
    N, D = np.repeat(sizes, 5), np.tile([1e9, 2e9, 4e9, 8e9, 16e9], 3)
    loss = (1.8 + 400 / N**0.34 + N / (N + 4e7) * 2000 / D**0.37) * np.exp(
        0.005 * rng.normal(size=N.size))
    groups = [(D[N == size], loss[N == size]) for size in sizes]
    picks = [[rng.integers(0, 5, 5) for _ in groups] for _ in range(6)]
    counts = [np.array([np.bincount(draw[k], minlength=5) for draw in picks])
              for k in range(len(groups))]
    together = _best_exponents(groups, counts)
    compared = 0
    for draw, beta in zip(picks, together):
        if min(np.unique(pick).size for pick in draw) < 3:
            continue  # a size the fit on its own would leave out (too few budgets to test β)
        alone = shared_data_exponent(
            {"N": np.concatenate([np.full(5, size) for size in sizes]),
             "D": np.concatenate([groups[k][0][pick] for k, pick in enumerate(draw)])},
            np.concatenate([groups[k][1][pick] for k, pick in enumerate(draw)]), num_resamples=0)
        assert beta == pytest.approx(alone["beta"]["value"], abs=1e-6)
        compared += 1
    assert compared >= 3


def test_a_two_term_laws_returns_say_which_term_falls_below_the_fraction_of_e():
    # "The reducible loss falls below 10% of E at N = ..." counted only A/N^alpha, whatever D.
    from analysis.report import render_report

    N, D = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 4), np.tile([1e9, 2e9, 4e9, 8e9], 5)
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D,
                         "loss": 1.8 + 400 / N**0.34 + 2000 / D**0.37})
    report = render_report(analyze(runs, Settings(num_resamples=0, law="chinchilla")))
    chinchilla, compute = (report.split(heading)[1].split("\n## ")[0] for heading in
                           ("## Approach 3", "## Approach 1"))
    for variable in ("N", "D"):
        assert f"- The {variable} term of the reducible loss falls below 10% of E at {variable} = " \
            in chinchilla
    # Along the optimum, L_opt(C) has one term: the whole reducible loss (indented under it).
    assert "\n- The reducible loss falls below" not in chinchilla
    assert "\n  - The reducible loss falls below 10% of E at 6ND = " in chinchilla
    assert "\n- The reducible loss falls below 10% of E at C = " in compute


def test_prediction_interval_holds_the_residual_scatter():
    rng = np.random.default_rng(2)
    C = np.geomspace(1e15, 1e20, 40)
    noise = 0.01
    draws = rng.normal(size=C.size)
    loss = (1.7 + 500 * C**-0.15) * np.exp(noise * draws)
    result = fit_law(get_law("compute"), {"C": C}, loss)
    low, high = prediction_interval(result, {"C": C}, num_resamples=200, seed=0)
    inside = ((loss >= low) & (loss <= high)).mean()
    assert 0.85 <= inside <= 1.0
    # ±1.96 standard deviations of the noise drawn, and a little more for the fitted curve's own
    # uncertainty (3 parameters from 40 points: √(1 + 3/40), 4%) and the percentiles of 200
    # resamples; not padded (it was 1.08 here, and a scatter drawn 1.3 times too wide passed).
    width = np.median(np.log(high / low)) / (2 * 1.96 * noise * draws.std(ddof=1))
    assert 1.0 <= width <= 1.15


def test_a_band_along_a_curve_draws_one_scatter_per_resample():
    # Drawn on its own at each of 200 grid points, the scatter's sampling noise made the band's
    # edges jagged in loss_vs_compute.png. Without parameter uncertainty (every resample the fit
    # itself), one draw per resample puts the band at the same log distance from the curve at
    # every point; independent draws do not.
    rng = np.random.default_rng(2)
    C = np.geomspace(1e15, 1e20, 40)
    loss = (1.7 + 500 * C**-0.15) * np.exp(0.01 * rng.normal(size=C.size))
    result = fit_law(get_law("compute"), {"C": C}, loss)
    grid = np.geomspace(1e15, 1e21, 200)
    same = np.repeat(result.theta[None], 300, axis=0)
    predicted = predict_loss(result.law, result.theta, {"C": grid})

    def edges(along_curve):
        low, high = prediction_interval(result, {"C": grid}, num_resamples=0, seed=0,
                                        bootstrap_theta=same, along_curve=along_curve)
        return np.log(low / predicted), np.log(high / predicted)

    smooth, jagged = edges(True), edges(False)
    for edge in smooth:
        assert np.ptp(edge) < 1e-9
    assert min(np.ptp(edge) for edge in jagged) > 1e-3
    # Either way the interval at a point is the same distribution's: about the same width.
    assert np.median(smooth[1] - smooth[0]) == pytest.approx(np.median(jagged[1] - jagged[0]),
                                                             rel=0.2)


def test_degenerate_fit_is_flagged_without_numpy_warnings():
    rng = np.random.default_rng(0)
    N = np.geomspace(1e8, 1.5e8, 5)
    loss = (2.0 + 40 * N**-0.2) * np.exp(0.01 * rng.normal(size=N.size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law_fit = fit_with_uncertainty("n", {"N": N}, loss, Settings(num_resamples=200))
    flags = law_fit.summary["diagnostics"]
    assert flags, "a fit to five sizes spanning 1.5x must be flagged"
    text = " ".join(flag["problem"] + " " + flag["fix"] for flag in flags)
    assert "span only 1.5x in N" in text and "more model sizes" in text


def test_well_determined_fit_has_no_flags():
    rng = np.random.default_rng(0)
    N, D = overtraining_grid()
    loss = overtraining_loss(N, D) * np.exp(0.002 * rng.normal(size=N.size))
    law_fit = fit_with_uncertainty("overtraining", {"N": N, "D": D}, loss, Settings(num_resamples=100))
    assert law_fit.summary["diagnostics"] == []


def test_frontier_with_a_gap_between_runs_has_only_finite_points():
    curves = pd.DataFrame({"name": ["a"] * 5 + ["b"] * 5,
                           "flops": np.concatenate([np.geomspace(1e15, 1e16, 5),
                                                    np.geomspace(1e18, 1e19, 5)]),
                           "loss": np.concatenate([np.linspace(4.0, 3.5, 5), np.linspace(3.0, 2.8, 5)])})
    frontier = curve_frontier(curves, num_points=40, skip_fraction=0.0)
    assert np.isfinite(frontier.loss).all() and frontier.flops.size >= 4
    assert not ((frontier.flops > 1.01e16) & (frontier.flops < 0.99e18)).any()
    runs = pd.DataFrame({"name": list("abcdef"), "N": np.geomspace(1e6, 1e8, 6)})
    runs["D"] = 20 * runs["N"]
    runs["C"] = 6 * runs["N"] * runs["D"]
    runs["loss"] = 1.8 + 400 * runs["C"] ** -0.15
    gap_curves = pd.concat([curves.assign(name=n, flops=curves["flops"] * 10.0**k)
                            for k, n in enumerate(runs["name"])])
    frontier = curve_frontier(gap_curves, num_points=50)
    assert np.isfinite(frontier.loss).all()
    fit_law(get_law("compute"), {"C": frontier.flops}, frontier.loss)


def test_final_eval_only_sweep_is_fitted_from_its_final_points():
    sizes = np.geomspace(1e6, 1e8, 6)
    runs = pd.DataFrame({"name": [f"r{i}" for i in range(6)], "N": sizes, "D": 20 * sizes})
    runs["C"] = 6 * runs["N"] * runs["D"]
    runs["loss"] = 1.8 + 400 * runs["C"] ** -0.15
    curves = runs[["name", "C", "loss"]].rename(columns={"C": "flops"})  # one eval point per run
    analysis = analyze(runs, Settings(num_resamples=0), curves=curves)
    assert analysis.frontier.source == "final points"
    assert analysis.fits["compute"].fit.params["alpha"] == pytest.approx(0.15, rel=1e-3)


def test_the_extrapolation_check_of_l_of_n_predicts_the_best_run_of_each_held_out_size():
    # Six sizes at five budgets of a noise-free Chinchilla law: the best run at each size (its
    # largest D) lies on L(N) = (E + B/D_max^beta) + A/N^alpha exactly, so L(N) fitted to the
    # best run of the five smaller sizes predicts the best run of the largest, and only that run.
    N, D = np.meshgrid(np.geomspace(1e6, 1e8, 6), np.geomspace(1e8, 1e10, 5), indexing="ij")
    runs = pd.DataFrame({"name": [f"r{i}" for i in range(N.size)], "N": N.ravel(),
                         "D": D.ravel()})
    runs["C"] = 6 * runs["N"] * runs["D"]
    runs["loss"] = 1.7 + 400 * runs["N"] ** -0.34 + 1500 * runs["D"] ** -0.28
    analysis = analyze(runs, Settings(num_resamples=0, law="n"))
    check = analysis.extrapolations["n"]
    assert check.held_out[["N", "D"]].values.tolist() == [[1e8, 1e10]]
    assert check.summary["n_fit_points"] == 5
    assert check.summary["max_abs_relative_error"] < 1e-4
    analysis = analyze(runs, Settings(num_resamples=0, law="d"))
    assert "d" not in analysis.extrapolations
    assert "holding out the largest sizes does not test it" in analysis.summary["skipped"][
        "extrapolation_d"]


def test_isoflop_groups_do_not_chain_across_budgets():
    flops = np.concatenate([np.geomspace(1e18, 1e19, 60), [3e20, 3.1e20, 2.95e20]])
    budgets = group_budgets(flops)
    widths = [np.log10(flops[budgets == b].max() / flops[budgets == b].min()) for b in np.unique(budgets)]
    assert max(widths) <= 0.1 + 1e-12
    assert np.unique(budgets[-3:]).size == 1


def ladder_results(directory, noise=0.0):
    """results.csv of a ladder: each size's cooldown branches at several token budgets, one row
    each with its final eval loss (the Chinchilla law below), plus curves of intermediate points."""
    rng = np.random.default_rng(3)
    rows, curves = [], []
    for size in (2e6, 4e6, 8e6, 16e6, 32e6):
        for multiplier in (5, 10, 20, 40):
            D = multiplier * size
            loss = (1.8 + 400 / size**0.34 + 2000 / D**0.37) * np.exp(noise * rng.normal())
            name = f"s{size:.0e}_m{multiplier}"
            rows.append({"name": name, "status": "completed", "params": 1.2 * size,
                         "non_embedding_params": size, "tokens": D, "flops": 6 * size * D,
                         "flops_6N": 6 * size * D, "flops_full": 6.6 * size * D,
                         "flop_convention": "6N", "final_eval_loss": loss, "size": f"{size:.0e}",
                         "budget": multiplier})
            for fraction in (0.25, 0.5, 0.75):  # intermediate points of the decaying schedule
                curves.append({"name": name, "step": int(100 * fraction), "tokens": fraction * D,
                               "flops": 6 * size * fraction * D, "eval_loss": loss + 0.3 * (1 - fraction)})
    pd.DataFrame(rows).to_csv(directory / "results.csv", index=False)
    pd.DataFrame(curves).to_csv(directory / "curves.csv", index=False)
    return directory / "results.csv"


def test_ladder_results_get_a_parametric_headline_and_a_final_point_frontier(tmp_path, capsys):
    results = ladder_results(tmp_path)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap", "20"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["law"] == "chinchilla"
    assert fit["alpha"]["value"] == pytest.approx(0.34, rel=1e-3)
    assert fit["data"]["frontier_source"] == "final points"
    check = fit["extrapolation"]["chinchilla"]
    assert check["n_held_out"] == 4 and check["max_abs_relative_error"] < 1e-3
    for row in check["held_out"]:
        assert {"N", "D", "loss", "predicted", "ci_low", "ci_high", "covered"} <= set(row)
    # L(C) predicts only the held-out size's compute-optimal runs: those whose loss is below that
    # of every run with less compute.
    runs = pd.read_csv(results).sort_values("flops")
    optimal = runs["final_eval_loss"] < runs["final_eval_loss"].cummin().shift(fill_value=np.inf)
    expected = runs[optimal & (runs["non_embedding_params"] == 32e6)]["name"]
    assert 0 < len(expected) < 4
    assert sorted(row["name"] for row in fit["extrapolation"]["compute"]["held_out"]) == sorted(
        expected)
    out = capsys.readouterr().out
    assert "chinchilla: L = E + A/N^alpha + B/D^beta" in out and "mean |relative error|" in out
    # The law is separable and recovered, so each size's fall in loss from its smallest to its
    # largest budget is the law's: 2000·(D_low^-0.37 − D_high^-0.37) with D from 5 to 40 × N.
    gains = fit["fits"]["chinchilla"]["data_gain"]
    assert [row["N"] for row in gains] == [2e6, 4e6, 8e6, 16e6, 32e6]
    for row in gains:
        expected = 2000 * ((5 * row["N"])**-0.37 - (40 * row["N"])**-0.37)
        assert row["measured"] == pytest.approx(expected, rel=1e-9)
        assert row["law"] == pytest.approx(expected, rel=1e-3)
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "| N | D | measured | law |" in report
    assert f"| 2.000e+06 | 1.000e+07 → 8.000e+07 | {gains[0]['measured']:.4f} | {gains[0]['law']:.4f} |" in report


@pytest.mark.slow
def test_csv_default_on_an_overtraining_grid_with_backtest(tmp_path):
    N, D = overtraining_grid()
    path = tmp_path / "grid.csv"
    pd.DataFrame({"name": [f"r{i}" for i in range(N.size)], "dataset": "x", "n": N, "d": D,
                  "loss": overtraining_loss(N, D)}).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["--csv", str(path), "--where", "dataset=x", "--n-col", "n", "--d-col", "d",
                 "--loss-col", "loss", "--drop-highest", "1", "--bootstrap", "30", "--backtest",
                 "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"] == "overtraining" and "column 'n'" in fit["flop_convention"]
    assert fit["extrapolation"]["overtraining"]["max_abs_relative_error"] < 1e-3
    backtest = json.loads((out / "backtest.json").read_text())
    assert backtest["headline"] == "overtraining"
    assert "| overtraining |" in (out / "backtest.md").read_text()


def test_the_highest_losses_are_left_out_of_the_fits_never_of_the_held_out_runs(tmp_path):
    """--drop-highest-losses picked its rows from the whole table: a held-out run with a high
    loss was dropped before the backtest (Epoch's table: one of the 18 runs at N >= 5e9, missed
    by 24%), and the kept runs it displaced were fitted."""
    sizes, tokens = np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e10, 4)
    N, D = (grid.ravel() for grid in np.meshgrid(sizes, tokens, indexing="ij"))
    loss = 1.8 + 400 / N**0.34 + 410 / D**0.28
    names = [f"r{i}" for i in range(N.size)]
    loss[-1] *= 3.0  # a held-out run (the largest size) with the highest loss of the table
    loss[0] *= 2.0  # and a kept one with the second
    path = tmp_path / "runs.csv"
    pd.DataFrame({"name": names, "N": N, "D": D, "loss": loss}).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--drop-highest-losses", "2", "--law", "chinchilla", "--bootstrap", "0",
                 "--backtest", "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n_points"] == 18  # the whole table's two highest left out of the fit
    held = fit["extrapolation"]["chinchilla"]["held_out"]
    assert sorted(row["name"] for row in held) == names[-4:]  # the outlier predicted too
    backtest = json.loads((out / "backtest.json").read_text())
    # The kept runs' own two highest: the kept outlier r0 and r1 (the smallest size at the next
    # fewest tokens), by hand from the formula.
    assert (backtest["n_kept"], backtest["n_held_out"]) == (14, 4)
    rows = backtest["methods"]["chinchilla"]["held_out"]
    outlier = next(row for row in rows if row["name"] == names[-1])
    assert outlier["loss"] == pytest.approx(loss[-1]) and outlier["relative_error"] < -0.6


@pytest.mark.slow
@pytest.mark.skipif(not EPOCH_DATA.is_file(), reason=f"published data not found at {EPOCH_DATA}")
def test_epoch_preprocessing_from_the_command_line_reproduces_epochs_fit(tmp_path):
    out = tmp_path / "epoch"
    assert main(["--csv", str(EPOCH_DATA), "--preset", "epoch-chinchilla", "--bootstrap", "0",
                 "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"] == "chinchilla" and fit["n_points"] == 240
    assert fit["objective"] <= 1.01828e-3 * (1 + 1e-4)
    assert fit["E"]["value"] == pytest.approx(1.817, abs=0.005)
    assert fit["beta"]["value"] == pytest.approx(0.3665, abs=0.006)
    points = load_epoch_chinchilla()
    assert fit["data"]["runs_fitted"] == len(points)


@pytest.mark.skipif(not EPOCH_DATA.is_file(), reason=f"published data not found at {EPOCH_DATA}")
def test_chinchillas_sizes_are_counted_once_and_held_out_whole():
    # Epoch's table gives 142 values of N for Chinchilla's sizes; as read, one model, each size
    # of it, is held out or fitted as a whole.
    points = load_epoch_chinchilla()
    assert points["N"].nunique() == 43
    kept, held_out = split_largest(points, 2)
    assert set(held_out["N"]).isdisjoint(kept["N"])
    assert np.all(np.abs(kept["N"].to_numpy()[:, None] / held_out["N"].to_numpy() - 1) > 1e-4)
    # IsoFLOP profiles train most sizes at several budgets: the rule reads it as a grid.
    assert budgets_per_size(points) == 6
    assert headline_law(points) == "overtraining"


def test_compare_recovers_a_known_compute_multiplier(tmp_path, capsys):
    # B's runs reach A's loss at half the compute: a 2x effective-compute multiplier everywhere.
    rng = np.random.default_rng(0)
    sizes = np.geomspace(1e6, 3e8, 12)

    def table(multiplier):
        C = 6 * sizes * 20 * sizes
        loss = (1.8 + 300 * (multiplier * C) ** -0.12) * np.exp(0.002 * rng.normal(size=C.size))
        return pd.DataFrame({"name": [f"r{i}" for i in range(C.size)], "n": sizes, "c": C, "loss": loss})

    table(1.0).to_csv(tmp_path / "a.csv", index=False)
    table(2.0).to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "cmp"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--n-col", "n",
                 "--c-col", "c", "--loss-col", "loss", "--bootstrap", "40", "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    # Inside the interval where the two frontiers are best determined (the middle of their common
    # range); close to 2 at every budget.
    middle = summary["multiplier"][len(summary["multiplier"]) // 2]
    assert middle["ci_low"] < 2.0 < middle["ci_high"], middle
    for row in summary["multiplier"]:
        assert row["value"] == pytest.approx(2.0, rel=0.1), row
    assert summary["crossing_C"] is None
    assert summary["crossing"]["resamples_crossing"] == 0.0  # no resample's laws cross either
    assert (out / "compare.png").stat().st_size > 10_000
    assert "B is worth" in capsys.readouterr().out


def test_a_multiplier_whose_interval_is_unbounded_is_not_identified():
    # Two tiny sweeps: "B is worth 3.16e-52x A's compute (95% interval 1.25e-67 to inf)" led the
    # output, nine times, before the warning that the fit was degenerate.
    from analysis.compare import multiplier_identified, multiplier_text

    unbounded = {"C": 4.63e9, "value": 3.16e-52, "ci_low": 1.25e-67, "ci_high": float("inf"),
                 "ci_level": 0.95}
    assert not multiplier_identified(unbounded)
    assert multiplier_text(unbounded) == "not identified (point fit 3.16e-52)"
    assert not multiplier_identified({**unbounded, "value": 1.2, "ci_low": 0.0, "ci_high": 3.0})
    bounded = {**unbounded, "value": 2.04, "ci_low": 1.61, "ci_high": 2.58}
    assert multiplier_identified(bounded) and multiplier_text(bounded) == "2.04"
    no_bootstrap = {"C": 1e10, "value": 2.04}
    assert multiplier_identified(no_bootstrap) and multiplier_text(no_bootstrap) == "2.04"


def test_a_crossing_of_two_samples_of_one_recipe_is_reported_as_the_noise_it_is(tmp_path,
                                                                                capsys):
    """Two noisy samples of one truth: the point fit's laws may well cross, which was stated as a
    fact. Now the bootstrap's share of crossings and the multiplier's intervals come with it."""
    sizes = np.geomspace(1e6, 3e8, 12)
    C = 6 * sizes * 20 * sizes
    for name, seed in (("a", 1), ("b", 2)):
        noise = np.exp(0.01 * np.random.default_rng(seed).normal(size=C.size))
        pd.DataFrame({"n": sizes, "c": C, "loss": (1.8 + 300 * C ** -0.12) * noise}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "cmp"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--n-col", "n",
                 "--c-col", "c", "--loss-col", "loss", "--bootstrap", "100", "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    crossing = summary["crossing"]
    assert all(row["ci_low"] < 1.0 < row["ci_high"] for row in summary["multiplier"])
    assert 0.0 < crossing["resamples_crossing"] < 1.0  # some resamples cross, some do not
    sentence = capsys.readouterr().out.strip().splitlines()[-2]
    assert sentence.endswith("Every multiplier interval contains 1: the data do not tell the "
                             "recipes apart, nor whether their laws cross.")
    assert f"{crossing['resamples_crossing']:.0%} of the bootstrap resamples cross" in sentence
    assert sentence in (out / "compare.md").read_text()


@pytest.mark.parametrize("law_name", ["chinchilla", "overtraining"])
def test_automatic_gradients_of_a_formula_match_the_hand_written_ones(law_name):
    import jax.numpy as jnp

    from analysis.laws import formula_law, overtraining_log_loss

    def chinchilla_log_loss(theta, log_x):
        return jnp.logaddexp(theta[4], jnp.logaddexp(theta[0] - theta[1] * log_x[0],
                                                     theta[2] - theta[3] * log_x[1]))

    law = get_law(law_name)
    automatic = formula_law(
        name=law.name, formula=law.formula, variables=law.variables, fit_params=law.fit_params,
        reported_params=law.reported_params, shift=law.shift, natural=law.natural,
        log_loss={"chinchilla": chinchilla_log_loss, "overtraining": overtraining_log_loss}[law_name])
    rng = np.random.default_rng(3)
    log_x = rng.normal(size=(2, 11)) + 3.0
    theta = rng.normal(size=(5, law.num_params)) * 0.3 + 0.5
    cotangent = rng.normal(size=(5, 11))
    expected, expected_pullback = law.log_prediction(theta, log_x)
    value, pullback = automatic.log_prediction(theta, log_x)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(pullback(cotangent), expected_pullback(cotangent), rtol=1e-10, atol=1e-12)


def test_degenerate_sweep_is_flagged_in_fit_json_report_and_stderr(tmp_path, capsys):
    rng = np.random.default_rng(0)
    N = np.geomspace(1e8, 1.5e8, 5)
    D = 20 * N
    loss = (1.8 + 400 / N**0.34 + 2000 / D**0.37) * np.exp(0.01 * rng.normal(size=5))
    pd.DataFrame({"name": [f"r{i}" for i in range(5)], "status": "completed", "params": N,
                  "non_embedding_params": N, "tokens": D, "flops": 6 * N * D,
                  "flop_convention": "6N", "final_eval_loss": loss}).to_csv(tmp_path / "results.csv",
                                                                           index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "fit"),
                     "--bootstrap", "20"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    flags = fit["fits"]["compute"]["diagnostics"]
    assert any("span only" in flag["problem"] for flag in flags)
    captured = capsys.readouterr()
    assert "scaling-fit: warning: compute:" in captured.err and "would help" in captured.err
    assert "RuntimeWarning" not in captured.err
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "degenerate or poorly determined" in report


def test_compare_with_separate_irreducible_losses_recovers_both_laws():
    from analysis.compare import compare_recipes
    from analysis.frontier import Frontier

    C = np.geomspace(1e16, 1e20, 15)
    law_a, law_b = 1.8 + 300 * C**-0.12, 1.7 + 200 * C**-0.10
    comparison = compare_recipes(Frontier(C, law_a, np.arange(15), "final points"),
                                 Frontier(C, law_b, np.arange(15), "final points"),
                                 shared_irreducible=False, num_resamples=0)
    assert comparison.summary["diagnostics"] == []
    params = {name: row["value"] for name, row in comparison.summary["params"].items()}
    for name, truth in (("E_A", 1.8), ("A_A", 300), ("alpha_A", 0.12), ("E_B", 1.7), ("A_B", 200),
                        ("alpha_B", 0.10)):
        assert params[name] == pytest.approx(truth, rel=2e-3), name
    # B's loss at C, reached by A at m·C: m = ((L_B − E_A)/A_A)^(−1/alpha_A) / C.
    for row in comparison.summary["multiplier"]:
        loss_b = 1.7 + 200 * row["C"] ** -0.10
        expected = ((loss_b - 1.8) / 300) ** (-1 / 0.12) / row["C"]
        assert row["value"] == pytest.approx(expected, rel=0.02)


def test_compare_flags_an_irreducible_loss_at_its_bound(tmp_path, capsys):
    # Pure power laws (no floor): the joint fit puts E at its bound 0, where the bootstrap cannot
    # move it, so its interval is no interval; the comparison says so, as a single fit would.
    C = np.geomspace(1e16, 1e20, 15)
    rng = np.random.default_rng(3)
    for name, (a, alpha) in (("a", (300, 0.12)), ("b", (250, 0.115))):
        loss = a * C ** -alpha * np.exp(0.002 * rng.normal(size=C.size))
        pd.DataFrame({"n": np.sqrt(C / 120), "c": C, "loss": loss}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "cmp"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--n-col", "n",
                 "--c-col", "c", "--loss-col", "loss", "--bootstrap", "20", "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["params"]["E_A"]["value"] < 0.05
    [flag] = [f for f in summary["diagnostics"] if f["parameter"] == "E_A"]
    assert "at its bound 0" in flag["problem"]
    assert "- E_A: irreducible loss E" in (out / "compare.md").read_text()
    assert "scaling-fit: warning: E_A: irreducible loss E" in capsys.readouterr().err


def test_compare_refuses_results_counted_in_two_flop_conventions(tmp_path, capsys):
    sizes = np.geomspace(1e6, 3e8, 6)
    for name, convention in (("a", "6N"), ("b", "full")):
        C = 6 * sizes * 20 * sizes
        pd.DataFrame({"name": [f"r{i}" for i in range(sizes.size)], "status": "completed",
                      "params": sizes, "non_embedding_params": sizes, "tokens": 20 * sizes,
                      "flops": C, "flop_convention": convention,
                      "final_eval_loss": 1.8 + 300 * C ** -0.12}).to_csv(tmp_path / f"{name}.csv",
                                                                         index=False)
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--bootstrap", "0",
                 "--out", str(tmp_path / "cmp")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "counts FLOPs by the '6N' convention" in error
    assert not (tmp_path / "cmp").exists()
    # A plain CSV's C is 6ND: against runs counted in full, B "was worth" up to 1.7x A's compute.
    table = pd.read_csv(tmp_path / "b.csv")
    table.to_csv(tmp_path / "plain.csv", columns=["name", "params", "tokens", "final_eval_loss"],
                 index=False)
    assert main(["--compare", str(tmp_path / "b.csv"), str(tmp_path / "plain.csv"), "--n-col",
                 "params", "--d-col", "tokens", "--loss-col", "final_eval_loss", "--bootstrap",
                 "0", "--out", str(tmp_path / "cmp")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "counts FLOPs by the 'full' convention and " \
        f"{tmp_path / 'plain.csv'} by '6N'" in error


def test_compare_flags_a_law_that_ranks_the_recipes_against_their_frontiers():
    # The demo's results against themselves 2% lower (and without the largest size): the shared-E
    # law said B was worse below 1.35e11 FLOPs, "the laws cross inside the data", with no word
    # that B's measured frontier was below A's at every budget both cover.
    from analysis.compare import _contradictions
    from analysis.frontier import Frontier

    def frontier(flops, loss):
        return Frontier(np.array(flops, float), np.array(loss, float), np.zeros(len(flops)), "runs")

    a = frontier([1e10, 1e11, 1e12, 1e13], [2.0, 1.8, 1.6, 1.4])
    b = frontier([1e10, 1e11, 1e12], [1.96, 1.764, 1.568])  # 2% below A at each of its points
    budgets = np.array([1e10, 1e11, 1e12, 1e13])
    # B ranked worse (multiplier < 1) at 1e11, which both cover: flagged, at the first such.
    flags = _contradictions(a, b, budgets, np.array([1.2, 0.9, 0.8, 0.5]), True)
    assert flags == [{"parameter": "fit", "problem": (
        "B's frontier is 2.0% below A's at every budget both cover, but the joint law ranks B "
        "worse at C = 1e+11 (multiplier 0.9): the law's form, not the data, ranks them there"),
        "fix": "--separate-e (one irreducible loss for both bends their laws together)"}]
    # Ranked better wherever both have data (1e13 is A's alone): nothing to flag.
    assert _contradictions(a, b, budgets, np.array([1.2, 1.1, 1.05, 0.5]), True) == []
    # Frontiers that cross in the data (B above A at 1e12): the data rank neither everywhere.
    crossing = frontier([1e10, 1e11, 1e12], [1.96, 1.764, 1.65])
    assert _contradictions(a, crossing, budgets, np.array([0.5, 0.5, 0.5, 0.5]), True) == []


def test_compare_names_the_recipe_with_too_few_frontier_points(tmp_path, capsys):
    # "law='compute' has 3 parameters (a, alpha, e); need at least that many points, got 2",
    # naming neither file nor which points.
    for name, count in (("a", 6), ("b", 2)):
        sizes = np.geomspace(1e6, 3e8, count)
        C = 6 * sizes * 20 * sizes
        pd.DataFrame({"name": [f"r{i}" for i in range(count)], "status": "completed",
                      "params": sizes, "non_embedding_params": sizes, "tokens": 20 * sizes,
                      "flops": C, "flop_convention": "6N",
                      "final_eval_loss": 1.8 + 300 * C ** -0.12}).to_csv(tmp_path / f"{name}.csv",
                                                                         index=False)
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--bootstrap", "0",
                 "--out", str(tmp_path / "cmp")]) == 2
    assert capsys.readouterr().err == (
        f"scaling-fit: error: --compare: {tmp_path / 'b.csv'} has 2 point(s) on its "
        "compute-efficient frontier; its L(C) needs at least 3 (more runs, or runs at more "
        "compute budgets)\n")
    assert not (tmp_path / "cmp").exists()


def test_losses_of_different_objectives_are_not_fitted_or_compared_as_one(tmp_path, capsys):
    """A decoder's next-token loss and an encoder–decoder's span-corruption loss are different
    quantities: compared (or fitted together) only on the continuation loss both score."""
    sizes = np.geomspace(1e6, 3e8, 6)
    C = 6 * sizes * 20 * sizes
    tables = {}
    for name, objective in (("a", "causal_lm"), ("b", "span_corruption")):
        tables[name] = pd.DataFrame({
            "name": [f"{name}{i}" for i in range(sizes.size)], "status": "completed",
            "params": sizes, "non_embedding_params": sizes, "tokens": 20 * sizes, "flops": C,
            "flop_convention": "6N", "objective": objective,
            "final_eval_loss": 1.8 + 300 * C ** -0.12,
            "final_continuation_loss": 2.1 + 200 * C ** -0.1})
        tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
    pd.concat(tables.values()).to_csv(tmp_path / "both.csv", index=False)
    compare = ["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--bootstrap", "0"]
    assert main([*compare, "--out", str(tmp_path / "cmp")]) == 2
    assert capsys.readouterr().err == (
        f"scaling-fit: error: --compare: {tmp_path / 'a.csv'} holds runs of train.objective "
        f"causal_lm and {tmp_path / 'b.csv'} of span_corruption: their final_eval_loss are "
        "different quantities; compare a loss both score alike, --loss-col "
        "final_continuation_loss (runs with train.continuation_tokens)\n")
    assert not (tmp_path / "cmp").exists()
    assert main(["--results", str(tmp_path / "both.csv"), "--bootstrap", "0",
                 "--out", str(tmp_path / "fit")]) == 2
    assert ("both.csv: runs of train.objective causal_lm, span_corruption: their final_eval_loss "
            "are different quantities" in capsys.readouterr().err)
    assert main([*compare, "--loss-col", "final_continuation_loss",
                 "--out", str(tmp_path / "cmp")]) == 0


def data_constrained_points(seed=0):
    """Runs that repeat their unique data up to 40 times, from Muennighoff et al.'s form written
    directly: D' = U + U·R*·(1 − exp(−(D/U − 1)/R*)) for D > U."""
    rng = np.random.default_rng(seed)
    N = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 8)
    U = np.tile([1e9, 3e9, 1e10, 3e10], 10)
    D = U * rng.choice([0.5, 1, 2, 4, 8, 16, 40], size=U.size)
    effective = np.where(D > U, U + U * 15.4 * (1 - np.exp(-(D / U - 1) / 15.4)), D)
    return N, D, U, 1.8 + 480 / N**0.34 + 2100 / effective**0.37


def test_data_constrained_law_from_its_formula_recovers_a_synthetic_truth():
    law = get_law("data_constrained")
    N, D, U, loss = data_constrained_points()
    truth = [np.log(480.0), 0.34, np.log(2100.0), 0.37, np.log(1.8), np.log(15.4)]
    np.testing.assert_allclose(predict_loss(law, truth, {"N": N, "D": D, "U": U}), loss, rtol=1e-12)
    # Every tenth start of its grid keeps the test short; the grid's own coverage is not at stake.
    fitted = fit_law(law, {"N": N, "D": D, "U": U}, loss, starts=law.start_grid()[::10])
    assert len(law.start_grid()) == 2250
    for name, value in {"E": 1.8, "A": 480, "B": 2100, "alpha": 0.34, "beta": 0.37,
                        "R_star": 15.4}.items():
        assert fitted.params[name] == pytest.approx(value, rel=2e-3), name


def test_unique_tokens_are_judged_by_the_repetitions_they_allow():
    from analysis.diagnostics import diagnose

    N, D, U, loss = data_constrained_points()
    params = {name: {"value": value} for name, value in
              {"E": 1.8, "A": 480, "B": 2100, "alpha": 0.34, "beta": 0.37, "R_star": 15.4}.items()}
    # One fixed corpus (U the same for every run), the usual design: "the data span only 1x
    # in U" was flagged though R* was recovered.
    one_corpus = {"N": N, "D": D, "U": np.full(U.size, 1e10)}
    assert not [flag for flag in diagnose("data_constrained", params, one_corpus, loss)
                if "U" in flag["problem"] or flag["parameter"] == "R_star"]
    # No run repeats its data: no prediction depends on R*, which was reported as "15 (95% CI 15
    # - 15)" with only that span warning.
    fresh = {"N": N, "D": D, "U": D * 2}
    [flag] = [flag for flag in diagnose("data_constrained", params, fresh, loss)
              if flag["parameter"] == "R_star"]
    assert flag["problem"].startswith("no run repeats its data (D <= U for every run)")


def test_unidentified_parameters_of_the_data_constrained_law_say_what_would_help():
    # E not identified and R*'s error unbounded: the fix for E joined a fix per variable and had
    # none for U (a KeyError traceback from scaling-fit).
    from analysis.diagnostics import diagnose

    N, D, U, loss = data_constrained_points()
    params = {name: {"value": value, "se": 0.1 * value, "ci_low": 0.9 * value,
                     "ci_high": 1.1 * value} for name, value in
              {"E": 1.8, "A": 480, "B": 2100, "alpha": 0.34, "beta": 0.37, "R_star": 15.4}.items()}
    params["E"].update(ci_low=1e-12, ci_high=2.0)
    params["R_star"].update(se=float("inf"))
    flags = {flag["parameter"]: flag for flag in
             diagnose("data_constrained", params, {"N": N, "D": D, "U": U}, loss)}
    assert flags["E"]["fix"] == ("more model sizes, over a wider range of N or more token budgets "
                                 "per size, over a wider range of D")
    assert flags["R_star"]["fix"] == ("runs that repeat their data over a wider range of "
                                      "repetitions (D/U)")


@pytest.mark.slow
def test_csv_with_unique_tokens_defaults_to_the_data_constrained_law(tmp_path):
    N, D, U, loss = data_constrained_points()
    path = tmp_path / "repeated.csv"
    pd.DataFrame({"n": N, "d": D, "u": U, "loss": loss}).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["--csv", str(path), "--n-col", "n", "--d-col", "d", "--u-col", "u",
                 "--loss-col", "loss", "--bootstrap", "10", "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"] == "data_constrained"
    assert fit["R_star"]["value"] == pytest.approx(15.4, rel=1e-2)
    assert fit["extrapolation"]["data_constrained"]["max_abs_relative_error"] < 1e-3


def test_compare_fits_the_results_column_loss_col_names(tmp_path):
    """Two results.csv whose final_eval_loss follow one law and whose final_continuation_loss put
    B at 2x A's compute: the comparison sees 1x by default and 2x with --loss-col."""
    rng = np.random.default_rng(1)
    sizes = np.geomspace(1e6, 3e8, 12)
    C = 6 * sizes * 20 * sizes

    def results(path, multiplier):
        noise = np.exp(0.002 * rng.normal(size=C.size))
        pd.DataFrame({
            "name": [f"r{i}" for i in range(C.size)], "status": "completed", "params": sizes,
            "non_embedding_params": sizes, "tokens": 20 * sizes, "flops": C,
            "flop_convention": "6N", "final_eval_loss": (1.8 + 300 * C ** -0.12) * noise,
            "final_continuation_loss": (2.1 + 200 * (multiplier * C) ** -0.1) * noise,
        }).to_csv(path, index=False)

    results(tmp_path / "a.csv", 1.0)
    results(tmp_path / "b.csv", 2.0)
    multipliers = {}
    for column in (None, "final_continuation_loss"):
        out = tmp_path / f"cmp-{column}"
        extra = ["--loss-col", column] if column else []
        assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), *extra,
                     "--bootstrap", "0", "--out", str(out)]) == 0
        summary = json.loads((out / "compare.json").read_text())
        multipliers[column] = [row["value"] for row in summary["multiplier"]]
    assert multipliers[None] == pytest.approx([1.0] * 9, rel=0.05)
    assert multipliers["final_continuation_loss"] == pytest.approx([2.0] * 9, rel=0.1)
    assert "`final_continuation_loss`" in (out / "compare.md").read_text()
    # A results.csv against a plain CSV whose loss column --loss-col names: the results.csv keeps
    # its final_eval_loss.
    table = pd.read_csv(tmp_path / "b.csv")
    table.rename(columns={"non_embedding_params": "n", "flops": "c", "final_eval_loss": "loss"})[
        ["n", "c", "loss"]].to_csv(tmp_path / "plain.csv", index=False)
    out = tmp_path / "cmp-plain"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "plain.csv"), "--n-col", "n",
                 "--c-col", "c", "--loss-col", "loss", "--bootstrap", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["loss_columns"] == {"A": "final_eval_loss", "B": "loss"}
    assert [row["value"] for row in summary["multiplier"]] == pytest.approx([1.0] * 9, rel=0.05)
    # A single fit of that column, and a column the file lacks named in one line.
    assert main(["--results", str(tmp_path / "a.csv"), "--loss-col", "final_continuation_loss",
                 "--bootstrap", "0", "--out", str(tmp_path / "fit")]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["E"]["value"] == pytest.approx(2.1, abs=0.05)
    # Every run at D/N = 20: L(N, D) cannot separate N from D, and says so rather than fitting.
    assert "same tokens per parameter (D/N = 20)" in fit["skipped"]["chinchilla"]
    assert "Loss fitted: column `final_continuation_loss`" in (tmp_path / "fit" / "report.md").read_text()
    with pytest.raises(ValueError, match="missing column.*final_loss_typo") as error:
        from analysis.inputs import read_results
        read_results(tmp_path / "a.csv", "final_loss_typo")
    assert "\n" not in str(error.value)
    # Two results.csv and a column neither has: an error, not a silent fallback.
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--loss-col",
                 "final_loss_typo", "--bootstrap", "0", "--out", str(tmp_path / "typo")]) == 2


def test_laws_that_coincide_do_not_cross_and_laws_that_cross_do():
    from analysis.compare import crossing_compute

    # Equal parameters (a recipe compared with itself): rounding in L_A − L_B flipped its sign
    # along C, and the laws were said to cross at C = 9.3e14.
    same = {"E_A": 0.3733625761098905, "A_A": 58.026639069641206, "alpha_A": 0.1379887048153201}
    same.update({name.replace("_A", "_B"): value for name, value in same.items()})
    assert crossing_compute(same, 4.6e10, 1.4e13) is None
    # 300·C^-0.12 = 200·C^-0.10 at C = 1.5^50.
    crossing = {"E_A": 1.8, "A_A": 300.0, "alpha_A": 0.12, "E_B": 1.8, "A_B": 200.0, "alpha_B": 0.10}
    assert crossing_compute(crossing, 1e8, 1e10) == pytest.approx(1.5**50, rel=1e-9)


def test_intervals_without_their_extrapolation_term_say_so():
    # Three sizes, the largest held out: the two fitted sizes cannot be split again to measure
    # the law's extrapolation error, so that term of the intervals was 0, with nothing said
    # (the interval's description still listed it).
    from analysis.backtest import render_backtest

    rng = np.random.default_rng(0)
    rows = [{"N": n, "D": d, "C": 6 * n * d,
             "loss": (1.7 + 400 / n**0.34 + 410 / d**0.28) * np.exp(0.01 * rng.normal())}
            for n in (1e7, 1e8, 1e9) for d in np.geomspace(2e8, 2e10, 5)]
    backtest = run_backtest(pd.DataFrame(rows), num_resamples=20, methods=["chinchilla"])
    assert backtest["methods"]["chinchilla"]["extrapolation_error_scale"] == 0.0
    assert ("; its intervals lack the extrapolation term (refitted without the top quarter of "
            "its own log-N range, the fitted runs could not measure it): bootstrap and residual "
            "only") in render_backtest(backtest)


def test_many_held_out_sizes_are_shown_once_each_or_as_a_range():
    from analysis.backtest import sizes_text

    assert sizes_text([6.8e9, 6.8001e9, 9.29e9]) == "N = 6.8e+09, 9.29e+09"
    assert sizes_text([float(n) for n in range(1, 9)]) == "8 sizes, N = 1 to 8"


def test_a_crossing_where_only_one_recipe_has_data_is_an_extrapolation(tmp_path, capsys):
    # A at 1e14–1e16 FLOPs, B at 1e10–1e12: their laws cross near 1e13, where neither has a run.
    for name, flops, amplitude, exponent in (("a", np.geomspace(1e14, 1e16, 6), 30.0, 0.10),
                                             ("b", np.geomspace(1e10, 1e12, 6), 54.6, 0.12)):
        pd.DataFrame({"N": flops ** 0.5, "C": flops,
                      "loss": 1.0 + amplitude * flops ** -exponent}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "cmp"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--n-col", "N",
                 "--c-col", "C", "--loss-col", "loss", "--bootstrap", "40", "--out", str(out)]) == 0
    crossing = json.loads((out / "compare.json").read_text())["crossing"]
    # The laws are exact: 30·C^-0.1 = 54.6·C^-0.12 at C = (54.6/30)^50.
    assert crossing["C"] == pytest.approx((54.6 / 30) ** 50, rel=1e-3)
    assert crossing["inside_data"] is False and crossing["resamples_crossing_inside"] == 0
    # They share no compute range, which the report says (it spoke of "the compute range both
    # recipes have data in", and of the share of resamples crossing "inside it").
    text = (out / "compare.md").read_text()
    assert "(the recipes share no compute range: an extrapolation)" in text
    assert "inside it" not in text
    assert ("- budgets: the recipes' frontiers share no compute range (FLOPs: A's 1e+14 – 1e+16; "
            "B's 1e+10 – 1e+12): every multiplier extrapolates one recipe's law beyond its data"
            in text)
    assert "scaling-fit: warning: budgets: the recipes' frontiers share no compute range" in (
        capsys.readouterr().err)


def test_laws_with_their_own_irreducible_losses_that_cross_twice_are_said_to():
    # 1.5 + 30·C^-0.1 and 2 + 1.78e7·C^-0.5: B is better only between two crossings, and only
    # the first was reported.
    from scipy.optimize import brentq

    from analysis.compare import crossing_sentence, crossings

    laws = {"E_A": 1.5, "A_A": 30.0, "alpha_A": 0.1, "E_B": 2.0, "A_B": 17782794.1,
            "alpha_B": 0.5}

    def difference(log_c):
        C = np.exp(log_c)
        return 1.5 + 30.0 * C ** -0.1 - 2.0 - 17782794.1 * C ** -0.5

    # The difference peaks at C = (0.5·1.78e7 / (0.1·30))^(1/0.4): one root on either side.
    peak = np.log((0.5 * 17782794.1 / 3.0) ** 2.5)
    expected = [np.exp(brentq(difference, np.log(1e12), peak)),
                np.exp(brentq(difference, peak, np.log(1e20)))]
    assert crossings(laws, 1e13, 1e18) == pytest.approx(expected, rel=1e-9)
    assert crossings(laws, 1e18, 1e18) == pytest.approx(expected[1:], rel=1e-9)  # 1e16–1e20
    crossing = {"C": expected[0], "inside_data": True, "all_C": expected,
                "all_inside_data": [True, False], "shared_range": [1e13, 1e16]}
    assert crossing_sentence({"crossing": crossing, "multiplier": []}) == (
        f"The point fit's laws cross twice, at C = {expected[0]:.3g} FLOPs (inside the compute "
        f"range both recipes have data in) and C = {expected[1]:.3g} FLOPs (outside the compute "
        "range both recipes have data in: an extrapolation), so the ranking of the recipes flips "
        "at each; no bootstrap: how sure this is was not measured.")


def _results_table(path, flops, loss, status=None):
    sizes = np.sqrt(np.asarray(flops) / 120)
    pd.DataFrame({"name": [f"r{i}" for i in range(sizes.size)],
                  "status": status or ["completed"] * sizes.size, "params": sizes,
                  "non_embedding_params": sizes, "tokens": 20 * sizes, "flops": flops,
                  "flop_convention": "full", "final_eval_loss": loss}).to_csv(path, index=False)


def test_compare_says_what_it_left_out_its_flop_convention_and_an_unmeasured_interval(
        tmp_path, capsys):
    # A failed and a diverged run were dropped without a word; the budgets' convention was
    # named only on the plot's axes; without a bootstrap the intervals read "nan – nan".
    C = np.geomspace(1e16, 1e20, 8)
    _results_table(tmp_path / "a.csv", C, 1.8 + 300 * C ** -0.12)
    _results_table(tmp_path / "b.csv", C, 1.8 + 250 * C ** -0.12,
                   status=["completed"] * 5 + ["failed", "completed", "diverged"])
    out = tmp_path / "cmp"
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--bootstrap",
                 "0", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for name, status in (("r5", "failed"), ("r7", "diverged")):
        assert (f"scaling-fit: note: left out {name} of {tmp_path / 'b.csv'}: status {status}\n"
                in err)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["n_points"] == {"A": 8, "B": 6}
    assert [row["name"] for row in summary["excluded"]["B"]] == ["r5", "r7"]
    assert summary["excluded"]["A"] == [] and summary["flop_convention"] == "full"
    text = (out / "compare.md").read_text()
    assert "- B: r5: status failed\n- B: r7: status diverged" in text
    assert ("| budget C (FLOPs, counted in full: matmuls, attention and the output layer) | "
            "multiplier | 95% interval |") in text
    assert "nan" not in text and "| E_A | 1.8 | not measured (no bootstrap) |" in text


def test_compare_refuses_one_table_compared_with_itself(tmp_path, capsys):
    C = np.geomspace(1e16, 1e20, 8)
    _results_table(tmp_path / "a.csv", C, 1.8 + 300 * C ** -0.12)
    (tmp_path / "link.csv").symlink_to(tmp_path / "a.csv")
    assert main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "link.csv"),
                 "--out", str(tmp_path / "cmp")]) == 2
    assert capsys.readouterr().err == (
        f"scaling-fit: error: --compare: {tmp_path / 'a.csv'} and {tmp_path / 'link.csv'} are "
        "one file; compare two recipes' tables\n")
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("truth", ["chinchilla", "overtraining"])
def test_the_overtraining_form_is_flagged_when_the_data_reject_its_equal_exponents(truth):
    # Hoffmann et al.'s law has alpha = 0.34 and beta = 0.28; Gadre et al.'s form ties them. On
    # an over-training grid from the Chinchilla law, the tied form still fits closely but its
    # N_opt is the tie's; Chinchilla's form fitted beside it shows alpha - beta away from 0.
    rng = np.random.default_rng(0)
    N, D = overtraining_grid()
    exact = (overtraining_loss(N, D) if truth == "overtraining"
             else 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28)
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D,
                         "loss": exact * np.exp(0.002 * rng.normal(size=N.size))})
    analysis = analyze(runs, Settings(law="overtraining", num_resamples=100))
    flags = [flag for flag in analysis.summary["fits"]["overtraining"]["diagnostics"]
             if flag["parameter"] == "eta"]
    if truth == "overtraining":
        assert flags == []
        return
    chinchilla = analysis.summary["fits"]["chinchilla"]["params"]
    difference = chinchilla["alpha"]["value"] - chinchilla["beta"]["value"]
    assert difference == pytest.approx(0.06, abs=0.02)
    assert len(flags) == 1 and f"alpha - beta at {difference:.3g}" in flags[0]["problem"]
    assert "--law chinchilla" in flags[0]["fix"]

"""`scaling-fit` end to end on small synthetic sweeps drawn from a known law."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from conftest import small_disk

from analysis.cli import main
from analysis.inputs import shared_data_dir

E, A, B, ALPHA, BETA = 1.8, 400.0, 2000.0, 0.34, 0.37


def true_loss(N, D):
    return E + A / N**ALPHA + B / D**BETA


def write_sweep(directory, sizes_and_tokens, *, extra_rows=(), eval_points=30):
    """results.csv + curves.csv for runs at the given (non-embedding params, tokens), with the
    eval curve of each run following the true law along its tokens."""
    rows, curves = [], []
    for index, (N, D) in enumerate(sizes_and_tokens):
        flops = 6 * N * D
        rows.append({"name": f"run{index}", "status": "completed", "num_layers": 2, "d_model": 64,
                     "params": 1.2 * N, "embedding_params": 0.2 * N, "non_embedding_params": N,
                     "tokens": D, "steps": 100, "batch_size": 8, "seq_len": 128, "lr": 1e-3,
                     "parametrization": "sp", "flop_convention": "6N", "flops": flops,
                     "flops_6N": flops, "flops_full": 1.1 * flops,
                     "final_train_loss": true_loss(N, D), "final_eval_loss": true_loss(N, D),
                     "wall_seconds": 1.0, "diverged_step": "", "error": ""})
        for fraction in np.linspace(1 / eval_points, 1.0, eval_points):
            tokens = fraction * D
            curves.append({"name": f"run{index}", "step": int(100 * fraction), "tokens": tokens,
                           "flops": 6 * N * tokens, "flops_6N": 6 * N * tokens,
                           "flops_full": 6.6 * N * tokens, "train_loss": true_loss(N, tokens),
                           "eval_loss": true_loss(N, tokens)})
    rows += [dict(rows[0], **extra) for extra in extra_rows]
    pd.DataFrame(rows).to_csv(directory / "results.csv", index=False)
    pd.DataFrame(curves).to_csv(directory / "curves.csv", index=False)
    return directory / "results.csv"


def fit_true_law(tmp_path, N, D, *options) -> dict:
    """fit.json of `scaling-fit --csv` (Chinchilla's form, no bootstrap) on points of the true
    law at N, D, written to tmp_path/fit with `options` added."""
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": N, "D": D, "loss": true_loss(N, D)}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--law", "chinchilla", "--bootstrap", "0", *options,
                 "--out", str(tmp_path / "fit")]) == 0
    return json.loads((tmp_path / "fit" / "fit.json").read_text())


def test_demo_sweep_writes_fit_report_and_plot(tmp_path):
    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    results = write_sweep(tmp_path, [(N, 20 * N) for N in sizes], extra_rows=(
        {"name": "blew_up", "status": "diverged", "final_eval_loss": ""},
        {"name": "oom", "status": "failed", "final_eval_loss": ""}))
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap", "50"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["law"] == "compute" and fit["flop_convention"] == "6N"
    for name in ("E", "A", "alpha"):
        assert {"value", "se", "ci_low", "ci_high"} <= set(fit[name])
    assert fit["data"]["runs_total"] == 7 and fit["data"]["runs_fitted"] == 5
    assert {row["name"] for row in fit["data"]["excluded"]} == {"blew_up", "oom"}
    assert fit["n_points"] == fit["data"]["frontier_points"] > 5
    assert fit["objective"] >= 0
    # Each frontier point is the best, by the true law, of the runs whose curve covers that
    # compute (the first 10% of each run's FLOPs is left out of the frontier).
    frontier = fit["data"]["frontier"]
    for flops, loss in zip(frontier["flops"], frontier["loss"]):
        reached = [N for N in sizes if 0.1 * (1 - 1e-9) <= flops / (6 * N * 20 * N) <= 1 + 1e-9]
        assert loss == pytest.approx(min(true_loss(N, flops / (6 * N)) for N in reached), rel=2e-3)
    assert "chinchilla" in fit["skipped"] and "isoflop" in fit["skipped"]
    assert fit["extrapolation"]["compute"]["n_held_out"] == 1
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "L = E + A·C^-alpha" in report and "excluded blew_up: status diverged" in report
    assert "10× more C lowers the loss by" in report and "next 0.01 nats" in report
    assert (tmp_path / "fit" / "loss_vs_compute.png").stat().st_size > 10_000


def test_seed_replicates_are_fitted_at_their_mean(tmp_path):
    # Every (N, D) at two seeds, 2% above and below the true law: their mean is the law, so the
    # fit recovers it, while either seed alone is off.
    points = [(N, D) for N in (1e6, 2e6, 4e6, 8e6, 16e6) for D in (5e6, 1e7, 2e7, 4e7)]
    results = write_sweep(tmp_path, points)
    table = pd.read_csv(results)
    sign = np.where(np.arange(len(table)) % 2 == 0, 1.0, -1.0)
    replicas = [table.assign(seed=seed, name=table["name"] + f"-s{seed}",
                             final_eval_loss=table["final_eval_loss"] * (1 + 0.02 * sign * side))
                for seed, side in ((0, 1.0), (1, -1.0))]
    pd.concat(replicas).to_csv(results, index=False)
    (tmp_path / "curves.csv").unlink()
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--law", "chinchilla",
                 "--bootstrap", "0"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["data"]["runs_total"] == 40 and fit["data"]["runs_fitted"] == 20
    for name, value in (("E", E), ("A", A), ("B", B), ("alpha", ALPHA), ("beta", BETA)):
        assert fit[name]["value"] == pytest.approx(value, rel=1e-3), name
    held_out = fit["extrapolation"]["chinchilla"]["held_out"]
    assert max(abs(row["relative_error"]) for row in held_out) < 1e-4
    assert all(row["seeds"] == 2 for row in held_out)
    assert held_out[0]["seed_sd"] == pytest.approx(0.02 * held_out[0]["loss"] * np.sqrt(2),
                                                   rel=1e-9)
    # In nats for each point, and as a share of the loss for the sweep (its name says so).
    assert fit["data"]["seed_sd_median_relative"] == pytest.approx(0.02 * np.sqrt(2), rel=1e-9)
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "40 runs in the sweep, fitted as 20 points, each the mean of its 2 seeds" in report
    assert "(mean of 2 seeds, sd " in report


def test_isoflop_sweep_gets_all_three_approaches(tmp_path):
    runs = []
    for C in (1e15, 4e15, 1.6e16):
        for N in np.geomspace(1e6, 1.6e7, 5):
            runs.append((N, C / (6 * N)))
    results = write_sweep(tmp_path, runs, eval_points=10)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap", "30",
                 "--law", "chinchilla", "--drop-highest", "1"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["law"] == "chinchilla"
    # Noiseless data from the true law: Approach 3 recovers it.
    assert fit["E"]["value"] == pytest.approx(E, rel=1e-3)
    assert fit["alpha"]["value"] == pytest.approx(ALPHA, rel=1e-3)
    assert fit["beta"]["value"] == pytest.approx(BETA, rel=1e-3)
    assert fit["derived"]["a"]["value"] == pytest.approx(BETA / (ALPHA + BETA), rel=1e-3)
    assert len(fit["isoflop"]["budgets"]) == 3
    assert fit["extrapolation"]["chinchilla"]["max_abs_error"] < 1e-3
    for name in ("loss_vs_compute", "isoflop", "optimal_allocation", "residuals", "predicted_vs_actual"):
        assert (tmp_path / "fit" / f"{name}.png").is_file(), name
    # Budgets read off the runs' compute are said to be so; given ones are not.
    note = "No `--isoflop-budgets` were given: the budgets are the runs' compute where it coincides"
    assert fit["isoflop"]["grouped"] and note in (tmp_path / "fit" / "report.md").read_text()
    assert main(["--results", str(results), "--out", str(tmp_path / "given"), "--bootstrap", "0",
                 "--isoflop-budgets", "1e15,4e15,1.6e16"]) == 0
    assert note not in (tmp_path / "given" / "report.md").read_text()


def test_named_csv_with_compute_column(tmp_path):
    rng = np.random.default_rng(0)
    N, C = 10 ** rng.uniform(7, 9, 40), 10 ** rng.uniform(17, 20, 40)
    path = tmp_path / "points.csv"
    pd.DataFrame({"size": N, "flop": C, "final": true_loss(N, C / (6 * N))}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "size", "--c-col", "flop", "--loss-col", "final",
                 "--bootstrap", "0", "--out", str(tmp_path / "out")]) == 0
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["law"] == "chinchilla" and fit["B"]["value"] == pytest.approx(B, rel=1e-2)


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "points.csv"
    pd.DataFrame({"size": [1e8], "tokens": [1e9], "l": [3.0]}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "size", "--d-col", "tokens", "--loss-col", "loss"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing column(s) loss; available: size, tokens, l" in error
    assert main(["--results", str(tmp_path / "nowhere.csv")]) == 2
    assert capsys.readouterr().err == (f"scaling-fit: error: --results="
                                       f"{str(tmp_path / 'nowhere.csv')!r} is not allowed: an "
                                       "existing CSV file (no such file)\n")


def three_sizes(tmp_path) -> list[str]:
    """The arguments that read a CSV of three sizes at one D (too few runs for any law)."""
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8, 2e8, 4e8], "D": [1e9] * 3, "loss": [3.0, 2.9, 2.8]}).to_csv(
        path, index=False)
    return ["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss"]


def test_bad_output_and_hold_out_settings_are_one_line_errors(tmp_path, capsys):
    common = three_sizes(tmp_path) + ["--bootstrap", "0"]
    (tmp_path / "afile").write_text("")
    assert main(common + ["--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err == (f"scaling-fit: error: --out={str(tmp_path / 'afile')!r} "
                                       "is not allowed: a directory (this path is a file)\n")
    assert main(common + ["--drop-highest", "3", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --drop-highest=3 is not allowed: the "
                                       "runs have 3 model sizes, and at least 2 must be left to "
                                       "fit; need 1 <= K <= 1\n")
    # Two sizes held out of three left one to fit: L(C) of one size's points was "backtested".
    assert main(common + ["--drop-highest", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--drop-highest=2 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(common + ["--bootstrap", "many"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("scaling-fit: error: argument --bootstrap: invalid int "
                                       "value: 'many'\n")


@pytest.mark.parametrize("schedule, flagged", [("cosine", True), ("constant", False)])
def test_a_frontier_read_off_decaying_curves_is_flagged(tmp_path, capsys, schedule, flagged):
    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    results = write_sweep(tmp_path, [(N, 20 * N) for N in sizes])
    pd.read_csv(results).assign(schedule=schedule).to_csv(results, index=False)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap", "0"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["data"]["frontier_source"] == "curves"
    problems = [flag["problem"] for flag in fit["fits"]["compute"]["diagnostics"]]
    message = "training curves of runs with a decaying learning rate (cosine)"
    assert any(message in problem for problem in problems) == flagged
    report = (tmp_path / "fit" / "report.md").read_text()
    assert (message in report) == flagged and (message in capsys.readouterr().err) == flagged


@pytest.mark.parametrize("source, flags, message", [
    ("results", ["--where", "size=d8"], "--where: not used here (--results reads the columns of a "
                                        "results table; --where is for --csv)"),
    ("results", ["--best-per-point", "--u-col", "U"], "--u-col, --best-per-point: not used here"),
    ("results", ["--separate-e"], "--separate-e: not used here (--results reads the columns of a "
                                  "results table; --separate-e is for --compare)\n"),
    ("results", ["--separate-e", "--where", "size=d8", "--preset", "epoch-chinchilla"],
     "--where, --preset, --separate-e: not used here (--results reads the columns of a results "
     "table; --where and --preset are for --csv; --separate-e is for --compare)\n"),
    ("compare", ["--backtest", "--law", "chinchilla"], "--law, --backtest: not used here "
                                                       "(--compare fits the two recipes' compute "
                                                       "frontiers only)"),
    ("compare", ["--wandb-project", "p"], "--wandb-project: not used here"),
    ("compare", ["--improvement", "0.02"], "--improvement: not used here"),
    ("results", ["--wandb-group", "g"], "--wandb-group='g': not used here (it is the group of the "
                                        "run --wandb-project logs; give --wandb-project too)"),
    ("results", ["--wandb-project", ""], "--wandb-project='' is not allowed; need a value (this "
                                         "one is empty)"),
    # An unset shell variable: another column was fitted (--loss-col), the default grouping used.
    ("results", ["--loss-col", " "], "--loss-col=' ' is not allowed; need a value (this one is "
                                     "empty)"),
    ("results", ["--isoflop-budgets", ""], "--isoflop-budgets='' is not allowed; need a value"),
    # Two results tables read no --csv option: a filter matching no row was taken in silence.
    ("compare", ["--where", "seed=99", "--best-per-point"],
     "--where, --best-per-point: not used here (both inputs are results tables, read by their own "
     "columns)\n"),
    ("compare", ["--preset", "epoch-chinchilla"], "--preset: not used here (both inputs are "
                                                  "results tables"),
])
def test_an_option_the_input_does_not_read_is_refused(tmp_path, capsys, source, flags, message):
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6)])
    inputs = (["--results", str(results)] if source == "results"
              else ["--compare", str(results), str(results)])
    assert main(inputs + flags + ["--bootstrap", "0", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"scaling-fit: error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arguments, refusal", [
    # Written to the default folder, fit/ beside the table: the sweep's own fit was replaced.
    (["--results", "{results}", "--out", ""], "--out='' is not allowed; need a value (this one "
                                              "is empty)"),
    # A TypeError traceback.
    (["--results", "", "--out", "{out}"], "--results='' is not allowed; need a value (this one "
                                          "is empty)"),
    # An OSError traceback from pandas.
    (["--results", "/proc/self/mem", "--out", "{out}"], "/proc/self/mem: not a readable file "
                                                        "(Input/output error)"),
])
def test_an_empty_or_unreadable_path_is_one_line(tmp_path, capsys, arguments, refusal):
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6)])
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "report.md").write_text("the sweep's own fit")
    filled = [argument.format(results=results, out=tmp_path / "o") for argument in arguments]
    assert main(filled + ["--bootstrap", "0"]) == 2
    assert capsys.readouterr().err == f"scaling-fit: error: {refusal}\n"
    assert (tmp_path / "fit" / "report.md").read_text() == "the sweep's own fit"
    assert not (tmp_path / "o").exists()


def test_a_default_headline_law_the_runs_cannot_support_falls_back_to_compute(tmp_path, capsys):
    # Two sizes at several budgets each: a ladder, so chinchilla would lead, but it needs three
    # distinct N. Not asked for, so L(C) leads and the note says why; asked for, it is an error.
    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6) for k in (1, 2, 4)])
    assert main(["--results", str(results), "--bootstrap", "0", "--out", str(tmp_path / "a")]) == 0
    fit = json.loads((tmp_path / "a" / "fit.json").read_text())
    assert fit["law"] == "compute"
    assert ("scaling-fit: note: chinchilla, the default for these runs, cannot be fitted: 6 runs "
            "with 2 distinct N") in capsys.readouterr().err
    assert ("Headline law: **compute**, `L = E + A·C^-alpha`. (chinchilla, the default for these "
            "runs, cannot be fitted: 6 runs with 2 distinct N") in (tmp_path / "a" / "report.md"
                                                                     ).read_text()
    assert main(["--results", str(results), "--bootstrap", "0", "--law", "chinchilla",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--law='chinchilla' is not allowed for these runs: 6 runs with 2 distinct N" in (
        capsys.readouterr().err)


def test_the_data_constrained_law_without_unique_tokens_is_one_line(tmp_path, capsys):
    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6) for k in (1, 2, 4)])
    assert main(["--results", str(results), "--bootstrap", "0", "--law", "data_constrained",
                 "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error == ("scaling-fit: error: --law='data_constrained' is not allowed for these "
                     "runs: the runs have "
                     "no unique-token counts U (the data-constrained law needs them: --csv with "
                     "--u-col)\n")


def test_the_headline_law_on_stdout_gives_each_parameter_its_interval(tmp_path, capsys):
    """The printed law is not a bare point estimate: each parameter carries the 95% bootstrap
    interval that fit.json and the report give it; without a bootstrap there is none to print."""

    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6, 8e6, 16e6)
                                     for k in (1, 2, 4)])
    table = pd.read_csv(results)
    noise = 1 + 0.01 * np.random.default_rng(0).standard_normal(len(table))
    table["final_eval_loss"] *= noise
    table.to_csv(results, index=False)
    assert main(["--results", str(results), "--bootstrap", "20", "--law", "chinchilla",
                 "--out", str(tmp_path / "o")]) == 0
    law_line = capsys.readouterr().out.splitlines()[0]
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    printed = {name: tuple(float(x) for x in numbers) for name, *numbers in re.findall(
        r"(\w+) = (\S+) \(95% CI (\S+) – (\S+)\)", law_line)}
    assert set(printed) == {"E", "A", "B", "alpha", "beta"}, law_line
    for name, (value, low, high) in printed.items():
        expected = (fit[name]["value"], fit[name]["ci_low"], fit[name]["ci_high"])
        assert np.allclose((value, low, high), expected, rtol=6e-3), (name, law_line)
        assert low < high
    assert main(["--results", str(results), "--bootstrap", "0", "--law", "chinchilla",
                 "--out", str(tmp_path / "o")]) == 0
    assert "CI" not in capsys.readouterr().out.splitlines()[0]


def test_without_a_bootstrap_no_run_is_called_inside_or_outside_its_interval(tmp_path, capsys):
    from analysis.backtest import main as aggregate

    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (1, 2, 4)])
    assert main(["--results", str(results), "--bootstrap", "0", "--backtest",
                 "--out", str(tmp_path / "o")]) == 0
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    rows = [row for check in fit["extrapolation"].values() for row in check["held_out"]]
    assert rows and all(row["covered"] is None for row in rows)
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| n/a |" in report and "| no |" not in report and "| yes |" not in report
    table = (tmp_path / "o" / "backtest.md").read_text()
    assert "| none (--bootstrap 0) | n/a |" in table and "nan" not in table
    backtest = json.loads((tmp_path / "o" / "backtest.json").read_text())
    assert all(row["covered"] is None for method in backtest["methods"].values()
               for row in method.get("held_out", []))
    # The backtest leads with the law the fit leads with (a ladder's: Chinchilla's), not with
    # the over-training form its own rule would pick for three budgets per size.
    assert fit["law"] == "chinchilla" and backtest["headline"] == "chinchilla"
    assert backtest["headline_rule"] == "the law the fit leads with"
    capsys.readouterr()
    assert aggregate([str(tmp_path / "o" / "backtest.json")]) == 0
    printed = capsys.readouterr().out
    # No coverage (a whole percentage) is printed; the mean errors (two decimals) are.
    assert not re.search(r"\| \d+% \|", printed), printed
    assert "| 0 | | n/a |" in printed and "no held-out prediction has an interval" in printed
    # With one of bootstrap: the predictions it counts coverage over are counted apart (they
    # were counted with all, as if those without an interval had been missed).
    assert main(["--results", str(results), "--bootstrap", "20", "--backtest",
                 "--out", str(tmp_path / "o2")]) == 0
    capsys.readouterr()
    assert aggregate([str(tmp_path / "o" / "backtest.json"),
                      str(tmp_path / "o2" / "backtest.json")]) == 0
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:4]
            for line in capsys.readouterr().out.splitlines()[2:]}
    held = len(backtest["methods"]["chinchilla"]["held_out"])
    assert rows["chinchilla"][0] == str(2 * held) and rows["chinchilla"][2] == str(held)


def test_unique_tokens_for_a_law_without_them_are_refused(tmp_path, capsys):
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8, 2e8, 4e8], "D": [1e9] * 3, "U": [1e9] * 3,
                  "loss": [3.0, 2.9, 2.8]}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--u-col", "U",
                 "--loss-col", "loss", "--law", "chinchilla", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "scaling-fit: error: --u-col: not used here (--law chinchilla has no unique-token term; "
        "only --law data_constrained reads it)\n")
    assert main(["--csv", str(path), "--preset", "epoch-chinchilla", "--n-col", "N", "--d-col",
                 "D", "--u-col", "U", "--loss-col", "loss", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "scaling-fit: error: --u-col: not used here (the law of --preset epoch-chinchilla, "
        "chinchilla, has no unique-token term; only --law data_constrained reads it)\n")


def test_compare_warns_that_a_flop_column_may_count_otherwise(tmp_path, capsys):
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6)])
    sizes = np.array([1e6, 2e6, 4e6, 8e6])
    pd.DataFrame({"n": sizes, "c": 6 * sizes * 20 * sizes,
                  "loss": true_loss(sizes, 20 * sizes) * 0.98}).to_csv(tmp_path / "b.csv",
                                                                        index=False)
    common = ["--n-col", "n", "--loss-col", "loss", "--bootstrap", "0"]
    assert main(["--compare", str(results), str(tmp_path / "b.csv"), "--c-col", "c", *common,
                 "--out", str(tmp_path / "o")]) == 0
    warning = (f"scaling-fit: warning: --compare: {tmp_path / 'b.csv'} gives its FLOPs in --c-col "
               "'c', by a convention not known here, and the other recipe counts them by ")
    assert warning in capsys.readouterr().err
    # Tokens given instead: C = 6ND, a known convention, checked against the results' own.
    main(["--compare", str(results), str(tmp_path / "b.csv"), "--d-col", "c", *common,
          "--out", str(tmp_path / "o2")])
    assert "by a convention not known here" not in capsys.readouterr().err


def test_a_rerun_leaves_no_file_of_the_earlier_fit(tmp_path):
    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (1, 2, 4)])
    out = ["--results", str(results), "--bootstrap", "0", "--out", str(tmp_path / "o")]
    assert main(out + ["--backtest"]) == 0
    assert (tmp_path / "o" / "backtest.json").is_file()
    assert main(out) == 0
    assert not (tmp_path / "o" / "backtest.json").exists()
    assert not (tmp_path / "o" / "backtest.md").exists()


def test_a_fit_stopped_while_writing_leaves_the_earlier_fit_whole(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from analysis.cli import FIT_FILES
    from analysis.plots import PLOT_FILES

    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (1, 2, 4)])
    out = ["--results", str(results), "--bootstrap", "0", "--out", str(tmp_path / "o")]
    assert main(out + ["--backtest"]) == 0
    assert {path.name for path in (tmp_path / "o").iterdir()} <= set(FIT_FILES + PLOT_FILES)
    earlier = {path.name: path.read_bytes() for path in (tmp_path / "o").iterdir()}

    def killed_mid_write(figure, target, **_):
        if not hasattr(target, "write"):
            target = open(target, "wb")
        target.write(b"\x89PNG\r\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        main(out + ["--law", "compute"])
    # The earlier fit whole (the new fit.json had replaced its own and the rest were deleted),
    # nothing of the new one, no half-written figure.
    assert {path.name: path.read_bytes() for path in (tmp_path / "o").iterdir()} == earlier
    monkeypatch.undo()
    assert main(out + ["--law", "compute"]) == 0  # replaced as a whole, without the backtest
    assert json.loads((tmp_path / "o" / "fit.json").read_text())["law"] == "compute"
    assert not (tmp_path / "o" / "backtest.json").exists()
    assert {path.name for path in (tmp_path / "o").iterdir()} <= set(FIT_FILES + PLOT_FILES)


def test_the_backtest_summary_of_an_unreadable_file_is_one_line(tmp_path, capsys):
    from analysis.backtest import main as aggregate

    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "fit.json").write_text('{"law": "compute"}')
    # An AttributeError traceback before (a list has no .items()).
    (tmp_path / "listed.json").write_text('{"methods": [], "headline": "x", "interval": 0.95}')
    # Below the top level: KeyError, TypeError or ValueError tracebacks, exit 1.
    nested = {"row without covered": '[{"x": 1}]', "covered a string":
              '[{"relative_error": 0.1, "covered": "yes"}]', "held_out a number": "5",
              "held_out of numbers": "[1]", "covered NaN": '[{"relative_error": 0.1, "covered": NaN}]'}
    for name, rows in nested.items():
        (tmp_path / f"{name}.json").write_text(
            '{"methods": {"a": {"held_out": %s}}, "headline": "a", "interval": {}}' % rows)
    (tmp_path / "listed headline.json").write_text(
        '{"methods": {}, "headline": ["a"], "interval": {}}')
    cases = [(tmp_path / "missing.json", "No such file or directory"),
             (tmp_path / "broken.json", "Expecting property name"),
             (tmp_path / "fit.json", "no methods, headline, interval: written by"),
             (tmp_path / "listed.json", "methods is not a mapping of method names"),
             (tmp_path / "listed headline.json", "headline is ['a'], not a method's name")]
    cases += [(tmp_path / f"{name}.json", "methods.a.held_out is not a list of held-out runs")
              for name in nested]
    for path, reason in cases:
        assert aggregate([str(path)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1
        assert error.startswith(f"analysis.backtest: error: {path}: not a readable backtest.json "
                                f"({reason}"), error
    # The same file twice counted its predictions twice; a table of skipped methods only was an
    # empty table said to lack a bootstrap.
    skipped = tmp_path / "skipped.json"
    skipped.write_text('{"methods": {"chinchilla": {"skipped": "3 points to fit"}}, '
                       '"headline": "chinchilla", "interval": {"level": 0.95}}')
    assert aggregate([str(skipped), str(tmp_path / ".." / tmp_path.name / "skipped.json")]) == 2
    assert "skipped.json: not a readable backtest.json (the same file as " in \
        capsys.readouterr().err
    assert aggregate([str(skipped)]) == 2
    assert capsys.readouterr().err == (
        f"analysis.backtest: error: no held-out prediction in {skipped}: every method was "
        "skipped (chinchilla: 3 points to fit)\n")


def test_bad_seed_download_folder_and_budgets_are_one_line_errors(tmp_path, capsys):
    common = three_sizes(tmp_path) + ["--out", str(tmp_path / "o")]
    # numpy's "law='chinchilla' cannot be fitted: expected non-negative integer" named no option.
    assert main(common + ["--bootstrap", "2", "--seed", "-1"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --seed=-1 is not allowed; need an "
                                       "integer >= 0\n")
    # inf snapped every run to one infinite budget and fitted on.
    assert main(common + ["--bootstrap", "0", "--isoflop-budgets", "1e18,inf"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --isoflop-budgets='1e18,inf' is not "
                                       "allowed; give positive, finite FLOP counts separated by "
                                       "commas, or 'chinchilla'\n")
    # A FileExistsError traceback before.
    (tmp_path / "afile").write_text("")
    assert main(["--download-chinchilla", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err == (f"scaling-fit: error: --download-chinchilla="
                                       f"{str(tmp_path / 'afile')!r} is not allowed: a directory "
                                       "(this path is a file)\n")
    # Options beside --download-chinchilla did nothing, and it went on to download.
    assert main(["--download-chinchilla", str(tmp_path / "data"), "--law", "chinchilla",
                 "--wandb-project", "p"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --law, --wandb-project: not used here "
                                       "(--download-chinchilla only saves the data; fit it with "
                                       "--csv)\n")
    assert not (tmp_path / "data").exists()
    # Accepted before, and every "cost of the next improvement" in the report became infinite.
    assert main(common + ["--bootstrap", "0", "--improvement", "inf"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --improvement=inf is not allowed; "
                                       "need a positive, finite number of nats\n")


def test_contradictory_hold_outs_and_one_resample_are_one_line_errors(tmp_path, capsys):
    common = three_sizes(tmp_path) + ["--out", str(tmp_path / "o")]
    # --hold-out-from won and --drop-highest was ignored without a word.
    assert main(common + ["--bootstrap", "0", "--drop-highest", "1", "--hold-out-from", "3e8"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --drop-highest=1 is not allowed with "
                                       "--hold-out-from=3e+08; give one of them\n")
    # One resample: each held-out run's "95% interval" was one draw, and 0% of runs inside them.
    assert main(common + ["--bootstrap", "1"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --bootstrap=1 is not allowed; need 0 "
                                       "(no intervals) or 2 to 100,000 resamples\n")
    # 10^11 resamples: a MemoryError traceback for 16 TiB of resample weights.
    assert main(common + ["--bootstrap", "99999999999"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --bootstrap=99999999999 is not "
                                       "allowed; need 0 (no intervals) or 2 to 100,000 "
                                       "resamples\n")
    assert not (tmp_path / "o").exists()
    # A threshold past every size: the line named the flag and then the argument again.
    assert main(common + ["--bootstrap", "0", "--hold-out-from", "1e15"]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --hold-out-from=1e+15 is not allowed: "
                                       "it holds out 0 of 3 runs; need at least one run on each "
                                       "side\n")


def test_a_backtest_of_one_model_size_is_one_line_naming_backtest(tmp_path, capsys):
    # Before: the fallback's note, then "drop_highest=1 is not allowed with 1 model sizes; need
    # 1 <= drop_highest < 1", an option not given and a range with no value in it.
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8] * 4, "D": [1e9, 2e9, 4e9, 8e9],
                  "loss": [3.0, 2.9, 2.8, 2.75]}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--bootstrap", "0", "--backtest", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --backtest is not allowed: the runs "
                                       "have 1 model size(s); holding out the largest and "
                                       "fitting the others needs at least 3\n")
    assert not (tmp_path / "o").exists()


def test_when_the_fallback_law_fails_too_the_error_is_one_line_saying_why_both(tmp_path, capsys):
    # Before: a note that compute leads, then an error about law='compute', which was not asked for.
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8, 2e8], "D": [1e9, 1e9], "loss": [3.0, 2.9]}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--bootstrap", "0", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(
        "scaling-fit: error: chinchilla, the default for these runs, cannot be fitted: 2 runs with "
        "2 distinct N")
    assert "the headline law is compute, and compute cannot be fitted either: " in error


def test_an_explicit_token_column_overrides_the_compute_column_of_a_preset(tmp_path, capsys):
    # --preset's help says explicit flags override it; --d-col was refused with "give exactly one
    # of --d-col (tokens) and --c-col" because the preset had set --c-col.
    N = np.repeat([1e8, 2e8, 4e8, 8e8], 2)
    D = np.tile([2e9, 8e9], 4)
    path = tmp_path / "points.csv"
    pd.DataFrame({"Model Size": N, "Training FLOP": 1e30, "tokens": D,
                  "loss": true_loss(N, D)}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--preset", "epoch-chinchilla", "--d-col", "tokens",
                 "--drop-highest-losses", "0", "--law", "compute", "--bootstrap", "0",
                 "--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert fit["flop_convention"] == "6ND with N = column 'Model Size'"
    assert fit["data"]["runs_fitted"] == 8


def test_a_row_repeated_in_every_column_is_fitted_once_and_named(tmp_path, capsys):
    # Li et al. (2025)'s published table holds one run twice, every column equal; counted twice,
    # it weighed double in the fit and narrowed the bootstrap intervals.
    rng = np.random.default_rng(1)
    N, D = np.repeat([1e7, 3e7, 1e8, 3e8], 3), np.tile([2e8, 1e9, 5e9], 4)
    table = pd.DataFrame({"N": N, "D": D, "loss": true_loss(N, D) * rng.normal(1, 0.01, N.size)})
    once, twice = tmp_path / "once.csv", tmp_path / "twice.csv"
    table.to_csv(once, index=False)
    pd.concat([table, table.iloc[[4]]], ignore_index=True).to_csv(twice, index=False)
    fits = {}
    for path in (once, twice):
        assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                     "--law", "chinchilla", "--bootstrap", "40",
                     "--out", str(tmp_path / path.stem)]) == 0
        fits[path.stem] = json.loads((tmp_path / path.stem / "fit.json").read_text())
    # Named by the file's lines, the header being line 1: data rows 12 and 4 (from 0).
    assert (f"scaling-fit: note: left out line 14 of {twice}: it repeats line 6 in every column"
            in capsys.readouterr().err.splitlines())
    assert fits["twice"]["data"]["runs_fitted"] == 12
    for name in ("alpha", "beta"):
        assert (fits["twice"]["fits"]["chinchilla"]["params"][name]
                == fits["once"]["fits"]["chinchilla"]["params"][name]), name
    assert "- excluded line 14: repeats line 6 in every column" in (
        tmp_path / "twice" / "report.md").read_text()


def test_runs_snapped_far_from_their_isoflop_budget_are_flagged(tmp_path, capsys):
    # --isoflop-budgets snaps every run to the nearest budget however far it is; the report says
    # how far each budget's runs are, and a stderr warning names the budgets with a run over 2x.
    rows = [(N, C / (6 * N)) for C in (1e15, 1e16) for N in np.geomspace(1e6, 1.6e7, 5)]
    rows.append((5e6, 3e15 / (6 * 5e6)))  # 3x the 1e15 budget, nearer to it than to 1e16
    path = tmp_path / "points.csv"
    N, D = np.array(rows).T
    pd.DataFrame({"N": N, "D": D, "loss": true_loss(N, D)}).to_csv(path, index=False)
    common = ["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
              "--law", "chinchilla", "--bootstrap", "0"]
    assert main(common + ["--isoflop-budgets", "1e15,1e16", "--out", str(tmp_path / "far")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--isoflop-budgets" in line]
    assert warnings == ["scaling-fit: warning: --isoflop-budgets: some runs are more than 2x from "
                        "the budget they were snapped to (C = 1e+15: x3); each such profile mixes "
                        "runs of different compute"]
    budgets = json.loads((tmp_path / "far" / "fit.json").read_text())["isoflop"]["budgets"]
    assert [row["farthest"] for row in budgets] == pytest.approx([3.0, 1.0])
    assert "| 1e+15 | 6 | ×3 |" in (tmp_path / "far" / "report.md").read_text()
    # Runs on their budgets raise nothing.
    assert main(common + ["--isoflop-budgets", "1e15,3e15,1e16", "--out", str(tmp_path / "on")]) == 0
    assert "--isoflop-budgets" not in capsys.readouterr().err
    assert "n/a: the budget's parabola" not in (tmp_path / "on" / "report.md").read_text()


def test_an_isoflop_budget_without_a_minimum_inside_its_sizes_says_why(tmp_path):
    # At 1e18 FLOPs the law's optimum is far above the largest size trained (1.6e7): the loss
    # falls across every size, so the parabola has no minimum among them.
    rows = [(N, C / (6 * N)) for C in (1e15, 1e16, 1e18) for N in np.geomspace(1e6, 1.6e7, 5)]
    N, D = np.array(rows).T
    assert np.all(np.diff(true_loss(N[10:], D[10:])) < 0)
    fit_true_law(tmp_path, N, D, "--isoflop-budgets", "1e15,1e16,1e18")
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "| 1e+18 | 5 | ×1 | n/a | n/a | n/a |" in report
    assert "| 1e+16 | 5 | ×1 | n/a" not in report
    assert ("n/a: the budget's parabola has no minimum inside the sizes trained at it (its lowest "
            "loss is at the smallest or largest size, or it opens downwards); such a budget does "
            "not enter the exponent fits.") in report


def test_runs_far_from_their_isoflop_budget_are_flagged_when_no_profile_can_be_fitted(tmp_path,
                                                                                        capsys):
    # The warning read the IsoFLOP fit's summary, which is None when Approach 2 is skipped (here
    # every run snaps to one budget, 1e20 FLOPs, and one profile gives no exponent): it was lost.
    N, D = np.repeat([1e7, 2e7, 4e7], 3), np.tile([2e8, 1e9, 5e9], 3)
    fit = fit_true_law(tmp_path, N, D, "--isoflop-budgets", "1e20")
    assert fit["isoflop"] is None and "isoflop" in fit["skipped"]
    farthest = 1e20 / (6 * N * D).min()  # the smallest run's compute is the farthest from 1e20
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--isoflop-budgets" in line]
    assert warnings == ["scaling-fit: warning: --isoflop-budgets: some runs are more than 2x from "
                        f"the budget they were snapped to (C = 1e+20: x{farthest:.3g}); each such "
                        "profile mixes runs of different compute"]


def mixed_grid(path, held_out_budgets: int) -> None:
    """Three small sizes at three token budgets each, then four larger sizes at
    `held_out_budgets` budgets each: the rows a backtest of the four largest holds out."""
    small = [(N, D) for N in (1e7, 2e7, 4e7) for D in (2e8, 1e9, 5e9)]
    large = [(N, 20 * N * k) for N in (8e7, 1.6e8, 3.2e8, 6.4e8) for k in range(1, held_out_budgets + 1)]
    N, D = np.array(small + large).T
    pd.DataFrame({"N": N, "D": D, "loss": true_loss(N, D)}).to_csv(path, index=False)


@pytest.mark.parametrize("held_out_budgets", [1, 3])
def test_the_backtest_headline_is_decided_on_the_fitted_runs_only(tmp_path, held_out_budgets):
    # docs/backtests.md: the headline method is decided on the fitted runs only. The default law
    # was decided on the whole table, so one budget at each held-out size (median 1 budget per
    # size over all seven sizes) made it Chinchilla's form although every fitted size has three.
    path = tmp_path / "points.csv"
    mixed_grid(path, held_out_budgets)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--drop-highest", "4", "--backtest", "--bootstrap", "0",
                 "--out", str(tmp_path / "o")]) == 0
    table = pd.read_csv(path)
    fitted = table[table["N"] < 8e7]
    per_size = fitted.groupby("N")["D"].nunique().median()
    assert per_size == 3  # the rule: the over-training form from 3 token budgets per size
    backtest = json.loads((tmp_path / "o" / "backtest.json").read_text())
    assert backtest["budgets_per_size"] == per_size and backtest["headline"] == "overtraining"
    assert "Headline method: **overtraining**" in (tmp_path / "o" / "backtest.md").read_text()
    assert json.loads((tmp_path / "o" / "fit.json").read_text())["law"] == "overtraining"


def test_the_law_asked_for_that_cannot_be_fitted_names_the_flag_and_leaves_no_folder(tmp_path,
                                                                                        capsys):
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8] * 4, "D": [1e9, 2e9, 4e9, 8e9], "loss": [3.0, 2.9, 2.8, 2.7]}).to_csv(
        path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--law", "kaplan", "--bootstrap", "0", "--out", str(tmp_path / "o17")]) == 2
    assert capsys.readouterr().err == (
        "scaling-fit: error: --law='kaplan' is not allowed for these runs: 4 runs with 1 distinct N "
        "and 4 distinct D; fitting kaplan needs at least 5 runs and 3 distinct values of each\n")
    assert not (tmp_path / "o17").exists()


def test_a_fit_that_fails_creates_no_output_folder(tmp_path, capsys):
    # run() writes nothing until everything is computed; the --out folder was made before.
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6)])
    assert main(["--results", str(results), "--isoflop-budgets", "0,-1", "--bootstrap", "0",
                 "--out", str(tmp_path / "o16" / "fit")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "o16").exists()
    # Two runs: no law can be fitted, the default nor L(C) after it.
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8, 2e8], "D": [1e9, 1e9], "loss": [3.0, 2.9]}).to_csv(path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--bootstrap", "0", "--out", str(tmp_path / "o")]) == 2
    assert "compute cannot be fitted either" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_bad_value_in_a_csv_is_named_by_its_line_in_the_file(tmp_path, capsys):
    # Rows were counted from 0 after the header, and after --where had dropped some: 'row 1'.
    # The line an editor shows counts the header (line 1) and the blank line pandas skips.
    path = tmp_path / "points.csv"
    path.write_text("size,tokens,l,set\n1e8,1e9,3.0,a\n\n2e8,1e9,2.9,b\n3e8,1e9,abc,b\n")
    assert main(["--csv", str(path), "--n-col", "size", "--d-col", "tokens", "--loss-col", "l",
                 "--where", "set=b", "--bootstrap", "0", "--out", str(tmp_path / "o")]) == 2
    bad_line = path.read_text().splitlines().index("3e8,1e9,abc,b") + 1
    assert bad_line == 5
    assert capsys.readouterr().err == (f"scaling-fit: error: {path}: column 'l' must be a positive "
                                       f"number at every row; line {bad_line} has 'abc' (1 bad "
                                       "rows)\n")


LI_DATA = shared_data_dir() / "li2025_misfitting" / "scaling_results_last_ckpt_only.csv"


@pytest.mark.skipif(not LI_DATA.is_file(), reason=f"published data not found at {LI_DATA}")
def test_the_run_li_et_al_list_twice_is_named_by_its_lines_in_the_file(tmp_path, capsys):
    # The note said 'left out row 161 ... repeats row 156': rows from 0 after the header.
    lines = LI_DATA.read_text().splitlines()
    repeats = [(number, lines.index(text) + 1) for number, text in enumerate(lines, start=1)
               if lines.index(text) + 1 != number]
    assert repeats == [(163, 158)]
    assert main(["--csv", str(LI_DATA), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--law", "compute", "--bootstrap", "0", "--out", str(tmp_path / "o")]) == 0
    assert (f"scaling-fit: note: left out line 163 of {LI_DATA}: it repeats line 158 in every "
            "column") in capsys.readouterr().err.splitlines()
    assert "- excluded line 163: repeats line 158 in every column" in (
        tmp_path / "o" / "report.md").read_text()


def test_one_model_size_is_no_compute_frontier(tmp_path, capsys):
    # L(C) of one size's budgets was reported with confident intervals ("alpha = 0.63 (95% CI
    # 0.60 – 0.71)"): that size's L(D), read as a law across sizes.
    path = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e8] * 6, "D": [1e9, 2e9, 4e9, 8e9, 16e9, 32e9],
                  "loss": [3.0, 2.9, 2.82, 2.77, 2.74, 2.72]}).to_csv(path, index=False)
    common = ["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
              "--bootstrap", "0", "--out", str(tmp_path / "o")]
    assert main(common) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scaling-fit: error: ")
    assert ("compute cannot be fitted either: the runs have one model size (N = 1e+08), so they "
            "trace that size's L(D), not a compute frontier across sizes (--law d fits it)") in err
    assert main(common + ["--law", "compute"]) == 2
    assert "--law='compute' is not allowed for these runs: the runs have one model size" in \
        capsys.readouterr().err
    assert main(common + ["--law", "d"]) == 0


def test_a_folder_where_the_fit_writes_a_file_is_one_line_before_fitting(tmp_path, capsys):
    # The whole fit ran, then unlinking report.md raised IsADirectoryError: a traceback, exit 1.
    (tmp_path / "o" / "report.md").mkdir(parents=True)
    assert main(three_sizes(tmp_path) + ["--bootstrap", "0", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        f"scaling-fit: error: --out={str(tmp_path / 'o')!r} is not allowed: it holds a folder "
        "report.md, where the fit writes that file\n")


def test_a_fit_the_disk_has_no_room_for_is_one_line_and_leaves_the_earlier_fit(tmp_path, capsys):
    # A full disk under --out ended the whole fit in an OSError traceback.
    arguments = three_sizes(tmp_path) + ["--bootstrap", "0", "--law", "compute"]
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "o"
        assert main(arguments + ["--out", str(out)]) == 0
        earlier = {path.name: path.read_bytes() for path in out.iterdir()}
        capsys.readouterr()
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError):
            while True:
                os.write(filler, bytes(4096))
        os.close(filler)
        assert main(arguments + ["--out", str(out)]) == 2
        assert capsys.readouterr().err == (f"scaling-fit: error: --out={str(out)!r}: cannot be "
                                           "written (No space left on device)\n")
        assert {path.name: path.read_bytes() for path in out.iterdir()} == earlier


def test_a_second_filter_on_one_column_is_refused(tmp_path, capsys):
    # The second replaced the first: `--where N=1 --where N=2` fitted the N=2 rows alone.
    assert main(three_sizes(tmp_path) + ["--where", "N=1e8", "--where", "N=2e8", "--bootstrap",
                                         "0", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("scaling-fit: error: --where='N=2e8' is not allowed: "
                                       "--where=N=1e8 filters N already (each column once)\n")


def test_points_several_rows_give_with_different_losses_are_noted(tmp_path, capsys):
    # A learning-rate sweep's rows at one (N, D) were fitted as separate points without a word.
    path = tmp_path / "points.csv"
    n, d = np.meshgrid([1e7, 3e7, 1e8, 3e8], [1e9, 3e9, 1e10, 3e10])
    table = pd.DataFrame({"N": n.ravel(), "D": d.ravel(),
                          "loss": 1.7 + 400 / n.ravel()**0.34 + 410 / d.ravel()**0.28})
    pd.concat([table, table.iloc[:2].assign(loss=table["loss"].iloc[:2] * 1.05)]).to_csv(
        path, index=False)
    arguments = ["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss"]
    assert main(arguments + ["--bootstrap", "0", "--out", str(tmp_path / "o")]) == 0
    assert (f"scaling-fit: note: 2 (N, D) point(s) of {path} have several rows with different "
            "losses (another setting swept at each?), each fitted as a point; --best-per-point "
            "keeps the lowest") in capsys.readouterr().err
    assert main(arguments + ["--bootstrap", "0", "--best-per-point", "--out",
                             str(tmp_path / "o")]) == 0
    assert "several rows" not in capsys.readouterr().err


def test_a_law_without_an_extrapolation_check_says_why_and_compare_names_a_folder(tmp_path,
                                                                                 capsys):
    # L(D) printed its law and no word of its extrapolation error (the reason was only in the
    # report); `--compare A FOLDER` said "FOLDER: no such file".
    path = tmp_path / "points.csv"
    n, d = np.meshgrid([1e7, 3e7, 1e8, 3e8], [1e9, 3e9, 1e10, 3e10])
    pd.DataFrame({"N": n.ravel(), "D": d.ravel(),
                  "loss": 1.7 + 400 / n.ravel()**0.34 + 410 / d.ravel()**0.28}).to_csv(
        path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--law", "d", "--bootstrap", "0", "--out", str(tmp_path / "o")]) == 0
    assert ("no extrapolation check: L(D) describes the best loss at each D over every size, so "
            "holding out the largest sizes does not test it\n") in capsys.readouterr().out
    assert main(["--compare", str(path), str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == (f"scaling-fit: error: --compare={str(tmp_path)!r} is not "
                                       "allowed: an existing CSV file (a directory)\n")


@pytest.mark.parametrize("flags, line", [
    (["--drop-highest-losses", "2", "--backtest"], "--drop-highest-losses=2 is not allowed: of the "
     "4 runs fitted without the held-out ones, it leaves one model size; need at least 2 sizes"),
    (["--drop-highest-losses", "4", "--drop-highest", "1"], "--drop-highest-losses=4 is not "
     "allowed: of the 4 runs fitted without the held-out ones, it leaves none; need at least 2 "
     "sizes"),
])
def test_highest_losses_that_leave_too_little_to_fit_are_named(tmp_path, capsys, flags, line):
    # Left out of the runs fitted (never of the held-out ones), they were blamed on --backtest
    # ("the runs have 3 model size(s) ... needs at least 3") or on --drop-highest.
    path = tmp_path / "runs.csv"
    n, d = np.repeat([1e6, 2e6, 4e6], 2), np.tile([1e9, 2e9], 3)
    pd.DataFrame({"N": n, "D": d, "loss": 1.7 + 400 / n**0.34 + 410 / d**0.28}).to_csv(
        path, index=False)
    assert main(["--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--bootstrap", "0", *flags, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"scaling-fit: error: {line}\n"


def test_a_run_left_out_for_its_loss_draws_no_frontier_point(tmp_path):
    """Through the API with training curves: the run Settings.drop_highest_losses left out of
    the fits still gave points of the L(C) frontier."""
    from analysis.inputs import read_results
    from analysis.pipeline import Settings, analyze

    sweep = read_results(write_sweep(tmp_path, [(N, 40 * N) for N in (1e6, 2e6, 4e6, 8e6)]),
                         "final_eval_loss")
    worst = sweep.runs.loc[sweep.runs["loss"].idxmax(), "name"]
    analysis = analyze(sweep.runs, Settings(law="compute", num_resamples=0,
                                            drop_highest_losses=1), curves=sweep.curves)
    assert analysis.summary["data"]["runs_fitted"] == 3
    assert worst not in set(analysis.frontier.run) and len(set(analysis.frontier.run)) > 1


def test_the_report_says_what_was_done_to_the_rows_before_the_fit(tmp_path):
    """--where, --drop-highest-losses and --best-per-point change what is fitted; the report
    said none of them (fit.json recorded only the first two)."""
    rows = []
    for n in (1e6, 2e6, 4e6, 8e6):
        for d in (1e8, 2e8, 4e8, 8e8):
            loss = 1.7 + 400 / n ** 0.34 + 410 / d ** 0.28
            for lr, worse in (("good", 1.0), ("bad", 1.05)):
                rows.append({"set": "a", "lr": lr, "N": n, "D": d, "loss": loss * worse})
            rows.append({"set": "b", "lr": "good", "N": n, "D": d, "loss": loss})
    pd.DataFrame(rows).to_csv(tmp_path / "points.csv", index=False)
    out = tmp_path / "fit"
    assert main(["--csv", str(tmp_path / "points.csv"), "--n-col", "N", "--d-col", "D",
                 "--loss-col", "loss", "--where", "set=a", "--drop-highest-losses", "3",
                 "--best-per-point", "--bootstrap", "0", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    # 32 rows of set a, one per (N, D) the good one: 16 points; the 3 highest losses of those,
    # at the smallest N and D, 2D, 4D (7.71, 7.29 and 6.95 by hand), left out: 13 fitted.
    assert "\n13 runs fitted.\n" in report
    assert ("- rows kept: those with set = a (--where)\n"
            "- left out of each fit: the 3 highest losses of the runs it fits "
            "(--drop-highest-losses); every held-out run is predicted, whatever its loss\n"
            "- 16 points from 32 rows: of rows that share (N, D), the one with the lowest loss "
            "(--best-per-point)\n") in report
    data = json.loads((out / "fit.json").read_text())["data"]
    assert (data["where"], data["dropped_highest_losses"], data["best_per_point"],
            data["rows"]) == ({"set": "a"}, 3, True, 32)
    # Without a bootstrap there are no intervals to read identification from: it says so (it
    # said "uncertainty from 0 bootstrap resamples", and headed the values "bootstrap SE; CI").
    assert ("L-BFGS starts; no bootstrap (--bootstrap 0): no intervals, and whether the data "
            "identify each parameter was not checked.") in report
    assert "| parameter | value |" in report and "bootstrap SE" not in report
    # The headline, Gadre et al.'s form, ties both exponents to one: its allocation is 0.5 by
    # construction, which read as measured ("a = 0.5 (SE 0; 95% CI 0.5 – 0.5)").
    assert "Headline law: **overtraining**" in report
    assert ("- Compute-optimal allocation (C = 6ND, whatever FLOP convention the data use): "
            "N_opt and D_opt ∝ C^0.5, fixed by this form (its N and D exponents are both 2·eta), "
            "not measured.") in report


def test_a_run_that_skipped_updates_is_fitted_and_named(tmp_path):
    # A run that skipped 19 of its 100 updates (train.on_nonfinite="skip") was fitted like any
    # other, with nothing said.
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6, 16e6)])
    table = pd.read_csv(results)
    table["skipped_steps"] = [0, 0, 19, 0, 0]
    table.to_csv(results, index=False)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap",
                 "0"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["data"]["runs_fitted"] == 5
    assert fit["data"]["skipped_updates"] == [{"name": "run2", "skipped_steps": 19, "steps": 100}]
    assert ("- fitted, but run2 skipped 19 of its 100 updates for a non-finite loss or gradient "
            "(train.on_nonfinite='skip')\n") in (tmp_path / "fit" / "report.md").read_text()


@pytest.mark.parametrize("sizes, budgets, flagged", [
    (5, (1e15, 4e15, 1.6e16), []),
    # Three sizes: each parabola passes through its points (Gadre et al.'s table had a = 0.32
    # reported with no warning).
    (3, (1e15, 4e15, 1.6e16), ["N_opt"]),
    # The 1e18 budget's optimum lies past every size trained: two budgets give the exponents.
    (5, (1e15, 1e16, 1e18), ["a"]),
    # Only the 1e15 budget has its minimum inside: no exponent (nothing was said but "n/a").
    (5, (1e15, 1e18), ["a"]),
])
def test_an_isoflop_fit_the_runs_cannot_check_is_flagged(tmp_path, capsys, sizes, budgets, flagged):
    rows = [(N, C / (6 * N)) for C in budgets for N in np.geomspace(1e6, 1.6e7, sizes)]
    N, D = np.array(rows).T
    isoflop = fit_true_law(tmp_path, N, D, "--isoflop-budgets", ",".join(map(str, budgets)))[
        "isoflop"]
    assert [flag["parameter"] for flag in isoflop["diagnostics"]] == flagged
    err = capsys.readouterr().err
    report = (tmp_path / "fit" / "report.md").read_text()
    section = report[report.index("## Approach 2"):]
    for flag in isoflop["diagnostics"]:
        assert f"scaling-fit: warning: isoflop: {flag['problem']}" in err
        assert f"- {flag['problem']}; would help: {flag['fix']}." in section
    assert ("**Warning" in section.split("| budget C")[0]) == bool(flagged)


def test_the_reports_compute_optimal_figures_say_they_count_6nd_and_an_unreachable_gain_is_said(
        tmp_path):
    N = np.repeat(np.geomspace(1e6, 1e8, 5), 4)
    D = N * np.tile([5.0, 10.0, 20.0, 40.0], 5)
    # 5 nats is more than either term has left at the largest N or D (A/N^alpha < 1 at 1e8).
    fit = fit_true_law(tmp_path, N, D, "--improvement", "5")
    assert fit["fits"]["chinchilla"]["compute_6ND"] == {"min": pytest.approx(6 * 1e6 * 5e6),
                                                        "max": pytest.approx(6 * 1e8 * 4e9)}
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "- At the largest budget of the data (6ND = 2.400e+18 FLOPs): N_opt = " in report
    assert "  - 10× more 6ND lowers the loss by " in report
    # "need N = never parameters, i.e. never× the largest" before.
    assert ("- No N lowers the loss 5.0 nats below its value at the largest N: the N term of the "
            "reducible loss left there is less than that.") in report
    assert "= never" not in report and "never×" not in report


def test_runs_that_repeat_their_training_data_are_said_with_the_law_that_models_it(tmp_path,
                                                                                      capsys):
    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    results = write_sweep(tmp_path, [(N, k * N) for N in sizes for k in (10, 20)])
    table = pd.read_csv(results)
    # A 1.6e8-token training split: the largest run (3.2e8 tokens) passes over it twice; two
    # runs of 1.6e8 tokens read it once and repeat nothing.
    table["unique_tokens"] = 1.6e8
    table.to_csv(results, index=False)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap",
                 "0"]) == 0
    err = capsys.readouterr().err
    # The sweep counts FLOPs as 6N: its fits take N from non_embedding_params, as the command.
    note = ("1 fitted run(s) repeat their training data (up to 2 passes over it; tokens > "
            "unique_tokens), and the laws here count a repeated token as a new one; Muennighoff "
            f"et al.'s data-constrained form models repetition: scaling-fit --csv {results} "
            "--where status=completed --n-col non_embedding_params --d-col tokens --u-col "
            "unique_tokens --loss-col final_eval_loss")
    assert f"scaling-fit: note: {note}\n" in err
    assert f"- {note}\n" in (tmp_path / "fit" / "report.md").read_text()
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["data"]["repeating_data"] == [{"name": "run9", "tokens": 3.2e8,
                                              "unique_tokens": 1.6e8}]
    # The command it gives fits the data-constrained form to the table, a failed run's row in it.
    table.loc[len(table)] = dict(table.iloc[0], name="failed", status="failed",
                                 final_eval_loss=float("nan"))
    table.to_csv(results, index=False)
    command = note.split("scaling-fit ")[-1].split()
    assert main(command + ["--bootstrap", "0", "--out", str(tmp_path / "repeated")]) == 0
    assert json.loads((tmp_path / "repeated" / "fit.json").read_text())["law"] == "data_constrained"
    # Without the column (an older results.csv), or no run past its split: nothing said.
    table["unique_tokens"] = 1e12
    table.to_csv(results, index=False)
    assert main(["--results", str(results), "--out", str(tmp_path / "fit"), "--bootstrap",
                 "0"]) == 0
    assert "repeat" not in capsys.readouterr().err


@pytest.mark.parametrize("irreducible, exponent", [(3.78e-68, 0.1553), (1.8, -0.05), (0.0, 0.3)])
def test_a_budget_beyond_floating_point_is_not_said_to_be_never(irreducible, exponent):
    # E = 3.78e-68 at its bound, B = 15.61, beta = 0.1553: D falls below 10% of E at
    # (B / (0.1·E))^(1/beta) = 10^448 tokens, which overflows to inf; the report said "never".
    from analysis import returns
    from analysis.bootstrap import summarize
    from analysis.report import _returns_lines

    B, largest = 15.61, 1e6
    values = returns.diminishing_returns(B, exponent, irreducible, 1e5, largest)
    derived = {f"D_{name}": summarize(float(value), np.full(2, float(value)))
               for name, value in values.items()}
    lines = _returns_lines(derived, "D_", "D", {"reducible_fraction_of_E": 0.1,
                                                "improvement_nats": 0.01}, irreducible)
    assert derived["D_reducible_below_fraction_budget"]["value"] == np.inf
    if exponent > 0 and irreducible > 0:  # log10 of the budget, independently: 448.3
        assert (np.log10(B / (0.1 * irreducible)) / exponent) == pytest.approx(448.3, abs=0.05)
        assert lines[-1] == ("- The reducible loss falls below 10% of E only beyond 1.8e+308 "
                             "tokens, past floating point (E = 3.78e-68).")
    else:  # a term that does not fall, or an E of 0 it can never fall below a share of
        assert lines[-1] == "- The reducible loss never falls below 10% of E."


@pytest.mark.parametrize("coefficient, exponent, said", [
    # A·x^-alpha at 1e22 is 0.0497 nats, more than the 0.01 asked for; the x that buys 0.01 of it
    # is 1e22 · (0.0397 / 0.0497)^(-1/1e-4) ≈ 10^997: past floating point, not "less than that".
    (0.05, 1e-4, "- The next 0.01 nats beyond the largest D need D beyond 1.8e+308 tokens, past "
                 "floating point (0.0497 nats of the reducible loss are left there)."),
    # A term that grows with D: it was said to have less than 0.01 nats left (it has 1.9e-9·1e22^0.73).
    (1.854e-9, -0.73, "- No D lowers the loss 0.01 nats below its value at the largest D: the "
                      "fitted exponent of D is not positive (more D does not lower the loss)."),
    (1e-3, 0.3, "- No D lowers the loss 0.01 nats below its value at the largest D: the "
                "reducible loss left there is less than that."),
    # An exponent so small that 10× more D lowers the loss by exactly 0.0 in floating point: it
    # is positive, and the budget past floating point (it was said not to be positive).
    (0.05, 1e-17, "- The next 0.01 nats beyond the largest D need D beyond 1.8e+308 tokens, past "
                  "floating point (0.05 nats of the reducible loss are left there).")])
def test_an_unreachable_next_improvement_is_said_with_its_reason(coefficient, exponent, said):
    from analysis import returns
    from analysis.bootstrap import summarize
    from analysis.report import _returns_lines

    values = returns.diminishing_returns(coefficient, exponent, 1.7, 1e20, 1e22)
    assert values["reducible_at_largest"] == pytest.approx(coefficient * 1e22 ** -exponent)
    assert values["next_improvement_budget"] == np.inf
    derived = {f"D_{name}": summarize(float(value), np.full(2, float(value)))
               for name, value in values.items()}
    lines = _returns_lines(derived, "D_", "D", {"reducible_fraction_of_E": 0.1,
                                                "improvement_nats": 0.01}, 1.7)
    assert lines[1] == said


def test_where_the_term_falls_below_a_share_of_an_unidentified_e_is_not_given():
    # The demo's E: 0.85 with a 95% interval from 1e-11 to 0.91. "Falls below 10% of E at
    # N = 1.3e7 (95% CI 5.1e6 – 2.4e45)" was a figure the data do not give.
    from analysis import returns
    from analysis.bootstrap import summarize
    from analysis.report import _returns_lines

    values = returns.diminishing_returns(15.7, 0.318, 0.848, 3.6e3, 2.5e5)
    derived = {f"N_{name}": summarize(float(value), np.full(2, float(value)))
               for name, value in values.items()}
    settings = {"reducible_fraction_of_E": 0.1, "improvement_nats": 0.01}
    shown, withheld = (_returns_lines(derived, "N_", "N", settings, 0.848, True, identified)
                       for identified in (True, False))
    assert shown[:-1] == withheld[:-1]
    assert shown[-1].startswith("- The N term of the reducible loss falls below 10% of E at N = ")
    assert withheld[-1] == ("- Where the N term of the reducible loss falls below 10% of E is not "
                            "determined: the data do not identify E (see the warnings above).")

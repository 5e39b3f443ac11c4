"""Input readers, the frontier, bad-input errors and the Chinchilla download (up to the network)."""

import hashlib
import io
import urllib.error

import numpy as np
import pandas as pd
import pytest

from analysis import download
from analysis.cli import main
from analysis.fit import fit_law
from analysis.frontier import curve_frontier, final_point_frontier
from analysis.inputs import read_named_csv, read_results, read_wandb_export, sweep_from_table
from analysis.isoflop import fit_isoflops, group_budgets
from analysis.laws import get_law


def results_row(name, status="completed", params=1.2e6, non_embedding=1e6, tokens=2e7, loss=4.0):
    flops = 6 * non_embedding * tokens
    return {"name": name, "status": status, "num_layers": 2, "d_model": 64, "params": params,
            "embedding_params": params - non_embedding, "non_embedding_params": non_embedding,
            "tokens": tokens, "steps": 100, "batch_size": 8, "seq_len": 128, "lr": 1e-3,
            "parametrization": "sp", "flop_convention": "6N", "flops": flops, "flops_6N": flops,
            "flops_full": 1.1 * flops, "final_train_loss": loss, "final_eval_loss": loss,
            "wall_seconds": 1.0, "diverged_step": "", "error": ""}


def test_only_completed_runs_with_values_are_fitted():
    table = pd.DataFrame([results_row("a"), results_row("b", status="diverged"),
                          results_row("c", status="failed", loss=float("nan")),
                          results_row("d", loss=float("nan")), results_row("e", status="preempted"),
                          # A blank cell, read as NaN: its reason was "nan".
                          results_row("f", status=float("nan"))])
    sweep = sweep_from_table(table, "results.csv")
    assert list(sweep.runs["name"]) == ["a"]
    assert dict(zip(sweep.excluded["name"], sweep.excluded["reason"])) == {
        "b": "status diverged", "c": "status failed",
        "d": "missing or non-positive N, D, FLOPs or eval loss", "e": "status preempted",
        "f": "status (blank)"}
    # Under the 6N convention N is the non-embedding count; under the full one, all parameters.
    assert sweep.runs["N"][0] == 1e6
    full = sweep_from_table(table.assign(flop_convention="full"), "results.csv")
    assert full.runs["N"][0] == 1.2e6


@pytest.mark.parametrize("value, shown", [("nan", "'nan'"), ("-1.5", "-1.5"), ("abc", "'abc'"),
                                          ("0", "0"), ("inf", "inf")])
def test_a_completed_run_with_a_value_recorded_wrong_is_an_error(tmp_path, value, shown):
    # Left out without a word (only the report's list of excluded runs said so), its point was
    # missing from the fit; `--csv` already refused such values. An empty cell, a value not
    # recorded, still leaves the run out.
    rows = [results_row(name, loss=4.0 - k / 10) for k, name in enumerate("abc")]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    text = (tmp_path / "results.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[2].split(",")
    cells[header.index("final_eval_loss")] = value
    (tmp_path / "results.csv").write_text("\n".join([*text[:2], ",".join(cells), *text[3:]]) + "\n")
    with pytest.raises(ValueError) as error:
        read_results(tmp_path / "results.csv")
    assert str(error.value) == (f"{tmp_path / 'results.csv'}: run b is completed, and its "
                                f"final_eval_loss is {shown}; a completed run's is a positive "
                                "number (correct the row, or remove it)")
    cells[header.index("final_eval_loss")] = ""
    (tmp_path / "results.csv").write_text("\n".join([*text[:2], ",".join(cells), *text[3:]]) + "\n")
    assert list(read_results(tmp_path / "results.csv").runs["name"]) == ["a", "c"]


def test_a_row_cut_short_is_an_error_naming_its_line(tmp_path):
    # A results.csv copied in part: pandas filled the rest of the last row with NaN (or read a
    # loss cut to "1.3" as 1.3), and the fit went on.
    rows = [results_row(name, loss=4.0 - k / 10) for k, name in enumerate("abc")]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    text = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").write_text(text[:text.rindex("3.8") + 2])
    fields = len(rows[0])
    cut = text[:text.rindex("3.8") + 2].splitlines()[-1].count(",") + 1
    with pytest.raises(ValueError, match=rf"results.csv: line 4 has {cut} field\(s\), the header "
                                         rf"{fields}: a row cut short"):
        read_results(tmp_path / "results.csv")


def test_seed_replicates_are_fitted_as_one_point_at_their_mean():
    rows = []
    for seed, (small, large) in enumerate([(4.0, 3.0), (4.2, 3.3), (4.1, 3.6)]):
        suffix = f"-s{seed}" if seed else ""
        rows += [{**results_row(f"s{suffix}", loss=small), "seed": seed + 7},
                 {**results_row(f"l{suffix}", non_embedding=2e6, loss=large), "seed": seed + 7}]
    # A run at another learning rate is a point of its own; so are the small model's runs, once
    # a fourth repeats one's setup and seed (something the columns do not show differs).
    rows += [{**results_row("s-lr", loss=5.0), "lr": 3e-3, "seed": 7},
             {**results_row("s-s4", loss=6.0), "seed": 8},
             # The same setup and another seed, but not a replicate's name: its own point.
             {**results_row("other", non_embedding=2e6, loss=9.0), "seed": 10}]
    curves = pd.DataFrame({"name": ["s", "s", "s-s1", "s-s1", "s-s2", "s-s2", "s-lr"],
                           "step": [50, 100] * 3 + [100], "flops": [1e12, 2e12] * 3 + [2e12],
                           "loss": [5.0, 4.0, 5.3, 4.2, 5.6, 4.1, 5.0]})
    sweep = sweep_from_table(pd.DataFrame(rows), "results.csv", curves)
    points = sweep.runs.set_index("name")
    assert sorted(points.index) == ["l", "other", "s", "s-lr", "s-s1", "s-s2", "s-s4"]
    assert points.loc["l", "loss"] == pytest.approx(np.mean([3.0, 3.3, 3.6]))
    assert points.loc["l", "seed_sd"] == pytest.approx(np.std([3.0, 3.3, 3.6], ddof=1))
    assert points.loc["l", "final_eval_loss"] == points.loc["l", "loss"]
    assert points.loc["l", "seeds"] == 3
    for single in ("s", "s-s1", "s-s2", "s-lr", "s-s4", "other"):
        assert points.loc[single, "seeds"] == 1 and points.loc[single, "loss"] == next(
            row["final_eval_loss"] for row in rows if row["name"] == single)
    assert sweep.curves[sweep.curves["name"] == "s"]["loss"].tolist() == [5.0, 4.0]
    # Without a seed column nothing is merged.
    plain = sweep_from_table(pd.DataFrame(rows).drop(columns="seed"), "results.csv")
    assert len(plain.runs) == len(rows) and set(plain.runs["seeds"]) == {1}


def test_seed_replicates_average_their_curves_step_by_step():
    rows = [{**results_row("r" + (f"-s{seed}" if seed else ""), loss=4.0 + seed / 10), "seed": seed}
            for seed in range(2)]
    # Seed 1 also evaluated at step 75, which seed 0 did not: no mean there.
    curves = pd.DataFrame({"name": ["r-s1", "r", "r-s1", "r-s1", "r"], "step": [50, 50, 75, 100, 100],
                           "flops": [1e12, 1e12, 1.5e12, 2e12, 2e12],
                           "loss": [5.2, 5.0, 4.5, 4.1, 4.0]})
    sweep = sweep_from_table(pd.DataFrame(rows), "results.csv", curves)
    assert list(sweep.runs["name"]) == ["r"] and sweep.runs["loss"][0] == pytest.approx(4.05)
    assert sweep.curves["step"].tolist() == [50, 100]
    assert sweep.curves["loss"].tolist() == pytest.approx([5.1, 4.05])
    assert set(sweep.curves["name"]) == {"r"}


def test_a_sweep_without_completed_runs_is_an_error():
    table = pd.DataFrame([results_row("a", status="failed"), results_row("b", status="failed")])
    with pytest.raises(ValueError, match=r"no run to fit; every run was excluded \(2 status failed\)"):
        sweep_from_table(table, "results.csv")


def test_missing_results_column_lists_the_available_ones(tmp_path):
    path = tmp_path / "results.csv"
    pd.DataFrame([results_row("a")]).drop(columns=["final_eval_loss"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) final_eval_loss; available: name, status"):
        read_results(path)


def test_mixed_flop_conventions_are_an_error():
    table = pd.DataFrame([results_row("a"), {**results_row("b"), "flop_convention": "full"}])
    with pytest.raises(ValueError, match="flop_convention"):
        sweep_from_table(table, "results.csv")


def test_two_runs_under_one_name_are_an_error():
    table = pd.DataFrame([results_row("a"), results_row("b", tokens=4e7), results_row("c"),
                          results_row("b", non_embedding=2e6)])
    with pytest.raises(ValueError, match=r"^results.csv: run names must be unique; repeated: b$"):
        sweep_from_table(table, "results.csv")


def test_named_csv_with_compute_column_derives_tokens(tmp_path):
    path = tmp_path / "points.csv"
    pd.DataFrame({"size": [1e8, 2e8], "flop": [6e18, 2.4e19], "l": [3.0, 2.9]}).to_csv(path, index=False)
    points = read_named_csv(path, n_col="size", c_col="flop", loss_col="l")
    np.testing.assert_allclose(points["D"], [1e10, 2e10])


def test_parameter_counts_that_differ_by_jitter_are_one_size(tmp_path):
    # A table read off a figure: one model's size in its last digits differently on every row.
    sizes = [1e8, 1e8 * (1 + 1e-6), 1e8 * (1 - 2e-6), 1.01e8, 2e8, 2e8 * (1 + 3e-6)]
    flops = [6e18, 1.2e19, 2.4e19, 6e18, 6e18, 1.2e19]
    path = tmp_path / "points.csv"
    pd.DataFrame({"size": sizes, "flop": flops, "l": [3.0, 2.9, 2.8, 3.0, 2.9, 2.8]}).to_csv(
        path, index=False)
    points = read_named_csv(path, n_col="size", c_col="flop", loss_col="l")
    # Each group takes its smallest value; 1% apart is another size.
    np.testing.assert_array_equal(points["N"], [1e8 * (1 - 2e-6)] * 3 + [1.01e8, 2e8, 2e8])
    np.testing.assert_allclose(points["D"] * 6 * points["N"], flops, rtol=1e-12)
    assert points.attrs["merged_sizes"] == (6, 3)
    assert read_named_csv(path, n_col="size", c_col="flop", loss_col="l",
                          where={"size": "100000000.0"}).attrs["merged_sizes"] is None
    # Counted on the rows kept: the two highest losses left out (a row of 1e8 and 1.01e8's one),
    # four values make two sizes.
    dropped = read_named_csv(path, n_col="size", c_col="flop", loss_col="l",
                             drop_highest_losses=2)
    assert dropped.attrs["merged_sizes"] == (4, 2)
    # Without jitter nothing is merged, whatever the rows left out (it said 3 values, 2 sizes).
    exact = tmp_path / "exact.csv"
    pd.DataFrame({"size": [1e6, 1e6, 2e6, 4e6], "flop": [6e16, 1.2e17, 6e17, 6e18],
                  "l": [5.0, 4.9, 3.0, 2.9]}).to_csv(exact, index=False)
    assert read_named_csv(exact, n_col="size", c_col="flop", loss_col="l",
                          drop_highest_losses=2).attrs["merged_sizes"] is None


@pytest.mark.parametrize("bad_value, column, said", [
    (0.0, "size", "has '0.0'"), (-5.0, "size", "has '-5.0'"),
    (float("nan"), "l", "is empty"),  # pandas writes NaN as an empty cell
    ("nan", "l", "has 'nan'"), ("inf", "size", "has 'inf'"),  # written so: not missing (was "is empty")
    ("abc", "l", "has 'abc'"), ("abc", "u", "has 'abc'"), (float("nan"), "u", "is empty")])
def test_named_csv_rejects_non_positive_or_missing_values(tmp_path, bad_value, column, said):
    table = pd.DataFrame({"size": [1e8, 2e8], "tokens": [1e9, 2e9], "u": [1e9, 1e9],
                          "l": [3.0, 2.9]}, dtype=object)
    table.loc[1, column] = bad_value
    path = tmp_path / "points.csv"
    table.to_csv(path, index=False)
    # Data row 1 (from 0) is the file's line 3: the header is line 1.
    with pytest.raises(ValueError, match=rf"column '{column}' must be a positive number at every "
                                         rf"row; line 3 {said}"):
        read_named_csv(path, n_col="size", d_col="tokens", loss_col="l", u_col="u")


def test_dropping_the_highest_losses_drops_exactly_that_many_rows(tmp_path):
    table = pd.DataFrame({"size": [1e8, 2e8, 3e8, 4e8, 5e8], "tokens": [1e9] * 5,
                          "l": [3.0, 3.5, 2.9, 3.5, 2.8]})
    path = tmp_path / "points.csv"
    table.to_csv(path, index=False)
    # The two highest (a tie at 3.5) go; nothing else.
    points = read_named_csv(path, n_col="size", d_col="tokens", loss_col="l", drop_highest_losses=2)
    assert list(points["loss"]) == [3.0, 2.9, 2.8]
    assert len(read_named_csv(path, n_col="size", d_col="tokens", loss_col="l",
                              drop_highest_losses=1)) == 4
    # A missing loss is an error naming its row, never one of the rows dropped.
    table.loc[3, "l"] = float("nan")
    table.to_csv(path, index=False)
    with pytest.raises(ValueError, match="column 'l' must be a positive number at every row; "
                                         "line 5 is empty"):
        read_named_csv(path, n_col="size", d_col="tokens", loss_col="l", drop_highest_losses=2)


def test_named_csv_missing_column_lists_the_available_ones(tmp_path):
    path = tmp_path / "points.csv"
    pd.DataFrame({"size": [1.0], "tokens": [1.0], "l": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) loss; available: size, tokens, l"):
        read_named_csv(path, n_col="size", d_col="tokens", loss_col="loss")


def test_named_csv_with_only_a_header_is_an_error(tmp_path):
    # It reached the fit, which failed with an IndexError traceback.
    path = tmp_path / "points.csv"
    path.write_text("N,D,loss\n")
    with pytest.raises(ValueError, match=r"points.csv: no row to fit \(the file has a header and "
                                         r"nothing under it\)"):
        read_named_csv(path, n_col="N", d_col="D", loss_col="loss")


def test_where_matches_numbers_as_numbers_and_lists_the_values_when_none_match(tmp_path):
    # Gadre et al.'s table writes a token multiplier as both 4 and 4.0; pandas reads the column
    # as floats, so compared as text --where multiplier=4 kept no row and said none had it.
    path = tmp_path / "points.csv"
    path.write_text("size,tokens,l,multiplier,lr,set\n1e8,1e9,3.0,4,0.002,a\n2e8,2e9,2.9,4.0,0.002,a\n"
                    "3e8,3e9,2.8,0.5,0.001,b\n")
    points = read_named_csv(path, n_col="size", d_col="tokens", loss_col="l",
                            where={"multiplier": "4"})
    assert list(points["N"]) == [1e8, 2e8]
    assert list(read_named_csv(path, n_col="size", d_col="tokens", loss_col="l",
                               where={"lr": "2e-3", "set": "a"})["N"]) == [1e8, 2e8]
    with pytest.raises(ValueError, match=r"^.*points.csv: no row has set='c'; its values: a, b$"):
        read_named_csv(path, n_col="size", d_col="tokens", loss_col="l", where={"set": "c"})


def test_a_csv_of_several_objectives_needs_one_or_a_loss_they_share(tmp_path):
    # A decoder's and an encoder–decoder's results.csv joined: --results refused them, --csv
    # fitted one law to two kinds of loss.
    path = tmp_path / "results.csv"
    path.write_text("N,D,final_eval_loss,final_continuation_loss,objective\n"
                    "1e6,1e8,3.0,3.1,causal_lm\n2e6,2e8,2.9,3.0,causal_lm\n"
                    "1e6,1e8,2.0,3.2,span_corruption\n2e6,2e8,1.9,3.1,span_corruption\n")
    with pytest.raises(ValueError, match=r"results.csv: runs of train.objective causal_lm, "
                                         r"span_corruption: their final_eval_loss are different "
                                         r"quantities; fit each objective's runs apart \(--where "
                                         r"objective=...\), or a loss they score alike, "
                                         r"--loss-col final_continuation_loss"):
        read_named_csv(path, n_col="N", d_col="D", loss_col="final_eval_loss")
    one = read_named_csv(path, n_col="N", d_col="D", loss_col="final_eval_loss",
                         where={"objective": "span_corruption"})
    assert list(one["loss"]) == [2.0, 1.9]
    assert len(read_named_csv(path, n_col="N", d_col="D",
                              loss_col="final_continuation_loss")) == 4


def test_fit_rejects_bad_points():
    law = get_law("chinchilla")
    good = {"N": np.geomspace(1e7, 1e9, 8), "D": np.geomspace(1e9, 1e11, 8)}
    loss = np.linspace(3.0, 2.5, 8)
    with pytest.raises(ValueError, match=r"N must be positive.*point 2 has N=0.0"):
        fit_law(law, {**good, "N": np.where(np.arange(8) == 2, 0.0, good["N"])}, loss)
    with pytest.raises(ValueError, match=r"loss must be positive.*point 0 has loss=nan"):
        fit_law(law, good, np.where(np.arange(8) == 0, np.nan, loss))
    with pytest.raises(ValueError, match=r"has 5 parameters .* need at least that many points, got 4"):
        fit_law(law, {k: v[:4] for k, v in good.items()}, loss[:4])
    with pytest.raises(ValueError, match=r"needs variable 'D'"):
        fit_law(law, {"N": good["N"]}, loss)
    with pytest.raises(ValueError, match=r"law='power' is not a known law; allowed: compute"):
        get_law("power")


def test_isoflop_with_one_budget_is_an_error():
    params = np.array([1e7, 2e7, 4e7, 8e7])
    with pytest.raises(ValueError, match=r"at least 2 budgets .* got 1 budget\(s\) \(C=1e\+18: 4 size"):
        fit_isoflops(params, 1e18 / (6 * params), np.array([3.0, 2.9, 2.95, 3.1]), np.full(4, 1e18))


def test_group_budgets_merges_nearby_flop_counts():
    labels = group_budgets(np.array([1e18, 1.02e18, 0.99e18, 1e19, 1.03e19]))
    assert len(set(labels)) == 2
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4]


def test_curve_frontier_takes_the_lowest_run_at_each_compute():
    # Run "small" is better below C = 100, run "big" above; both straight lines in log-log.
    flops = np.geomspace(10, 1000, 21)
    curves = pd.concat([
        pd.DataFrame({"name": "small", "flops": flops[:15], "loss": 10 * flops[:15] ** -0.1}),
        pd.DataFrame({"name": "big", "flops": flops[5:], "loss": 20 * flops[5:] ** -0.25})])
    frontier = curve_frontier(curves, num_points=21, skip_fraction=0.0)
    expected = np.minimum(np.where(frontier.flops <= flops[14] * 1.0000001, 10 * frontier.flops ** -0.1, np.inf),
                          np.where(frontier.flops >= flops[5] / 1.0000001, 20 * frontier.flops ** -0.25, np.inf))
    np.testing.assert_allclose(frontier.loss, expected, rtol=1e-9)
    crossover = (20 / 10) ** (1 / 0.15)  # 10·C^-0.1 = 20·C^-0.25
    assert set(frontier.run[frontier.flops < crossover * 0.99]) == {"small"}
    assert set(frontier.run[frontier.flops > crossover * 1.01]) == {"big"}


def test_final_point_frontier_keeps_runs_that_beat_every_cheaper_run():
    frontier = final_point_frontier(["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 4.5, 3.0])
    assert list(frontier.run) == ["a", "b", "d"]
    # A run without a loss is not on it, and hides no later run (the frontier was ['a']).
    frontier = final_point_frontier(list("abcd"), [1.0, 1.5, 2.0, 3.0], [3.0, np.nan, 2.9, 2.5])
    assert list(frontier.run) == ["a", "c", "d"]


def test_of_runs_at_equal_compute_the_frontier_keeps_only_the_lowest_loss():
    # Whatever their order in the table: "worse" is beaten by "better" at the same compute, and
    # "same" is no lower than a cheaper run.
    frontier = final_point_frontier(["worse", "better", "cheap", "same"], [2.0, 2.0, 1.0, 3.0],
                                    [3.0, 2.9, 3.5, 2.9])
    assert list(frontier.run) == ["cheap", "better"]
    assert list(frontier.loss) == [3.5, 2.9]


def test_runs_a_sweep_planned_at_one_budget_are_at_equal_compute_on_the_frontier():
    # An IsoFLOP profile at 3e10: its runs differ by 0.3% in FLOPs from rounding to whole steps.
    # The worst but one, the cheapest by 0.26%, was a frontier point 0.33 nats above the best.
    names = ["d32", "d8", "d16", "d48", "next"]
    flops = [2.9916e10, 2.9994e10, 3.0002e10, 2.9960e10, 1.0001e11]
    loss = [2.703, 2.371, 2.398, 2.911, 2.20]
    frontier = final_point_frontier(names, flops, loss)
    assert list(frontier.run) == ["d8", "next"]
    # An IsoFLOP plan's runs at their fewest steps, 50: 49.5 steps' worth of tokens rounds to 50
    # (+1.01%), 50.5 steps' to 50 (-0.99%), 2.02% apart. Both were frontier points.
    frontier = final_point_frontier(["fewer", "more"], [50 / 50.5, 50 / 49.5], [3.0, 2.9])
    assert list(frontier.run) == ["more"]
    # Runs more than 2.5% apart in compute are not: the cheaper one is a point of its own.
    frontier = final_point_frontier(["cheap", "dear"], [1.0, 1.026], [3.0, 2.9])
    assert list(frontier.run) == ["cheap", "dear"]
    frontier = final_point_frontier(["cheap", "dear"], [1.0, 1.024], [3.0, 2.9])
    assert list(frontier.run) == ["dear"]


def test_wandb_export_maps_states_and_prefixes(tmp_path):
    rows = []
    for name, state, loss in (("a", "finished", 3.0), ("b", "crashed", 5.0)):
        row = {f"summary.{k}" if k.startswith("final") or k == "flops" else k: v
               for k, v in results_row(name, loss=loss).items() if k != "status"}
        rows.append({**row, "Name": name, "State": state})
    path = tmp_path / "export.csv"
    pd.DataFrame(rows).drop(columns=["name"]).to_csv(path, index=False)
    sweep = read_wandb_export(path)
    assert list(sweep.runs["name"]) == ["a"]
    assert list(sweep.excluded["reason"]) == ["status failed"]


def test_wandb_export_under_the_names_runs_log(tmp_path):
    """An export as W&B holds this project's runs: summary fields under the names the runs logged
    (`eval/final_loss`, `eval/final_continuation_loss`), read back as results columns."""
    from scaling.tracking import to_wandb_names

    rows = []
    for name, loss in (("a", 3.0), ("b", 2.5)):
        row = dict(results_row(name, loss=loss), final_continuation_loss=loss + 0.5)
        logged = to_wandb_names({k: v for k, v in row.items() if k not in ("name", "status")})
        assert "eval/final_loss" in logged and "final_eval_loss" not in logged
        rows.append({**{f"summary.{k}": v for k, v in logged.items()}, "Name": name,
                     "State": "finished"})
    path = tmp_path / "export.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert list(read_wandb_export(path).runs["loss"]) == [3.0, 2.5]
    assert list(read_wandb_export(path, "final_continuation_loss").runs["loss"]) == [3.5, 3.0]


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_fetches_the_pinned_epoch_file(tmp_path, monkeypatch):
    content = b"x,y,color,Model Size,Training FLOP,hex_color,loss\n"
    requested = []

    def fake_open(url, timeout):
        requested.append(url)
        return FakeResponse(content)

    monkeypatch.setattr(download, "open_url", fake_open)
    monkeypatch.setattr(download, "EPOCH_CHINCHILLA_SHA256", hashlib.sha256(content).hexdigest())
    path = download.download_chinchilla(tmp_path / "data")
    assert requested == ["https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
                         "92258837425e1b5f2851d624287f0120583a3d0e/data/svg_extracted_data.csv"]
    assert path.read_bytes() == content
    assert [p.name for p in path.parent.iterdir()] == ["svg_extracted_data.csv"]


def test_failed_download_is_a_clear_error_and_leaves_no_file(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(download, "open_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download https://raw\.githubusercontent\.com/"
                                           r"epoch-research/analyzing-chinchilla/.*name resolution"):
        download.download_chinchilla(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_with_unexpected_content_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "open_url", lambda url, timeout: FakeResponse(b"<html>rate limited</html>"))
    with pytest.raises(RuntimeError, match="sha256 is .* expected 193478df"):
        download.download_chinchilla(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_download_failure_is_reported(tmp_path, monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr(download, "open_url", offline)
    assert main(["--download-chinchilla", str(tmp_path / "data")]) == 2
    assert "could not download https://raw.githubusercontent.com/" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # not even the folder it would have saved into


def test_best_per_point_with_unique_tokens_keeps_each_repetition(tmp_path):
    # Runs at one (N, D) with different unique tokens U are different points of the
    # data-constrained law; --best-per-point kept only the lowest loss of each (N, D).
    from analysis.inputs import read_named_csv

    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": [1e8] * 4 + [3e8] * 2, "D": [4e9] * 4 + [4e9] * 2,
                  "U": [1e9, 1e9, 4e9, 4e9, 1e9, 1e9],
                  "loss": [3.1, 3.0, 2.9, 2.95, 2.8, 2.7]}).to_csv(path, index=False)
    points = read_named_csv(path, n_col="N", d_col="D", u_col="U", loss_col="loss",
                            best_per_point=True)
    assert sorted(zip(points["N"], points["U"], points["loss"])) == [
        (1e8, 1e9, 3.0), (1e8, 4e9, 2.9), (3e8, 1e9, 2.7)]
    assert points.attrs["point"] == "(N, D, U)"
    shared = read_named_csv(path, n_col="N", d_col="D", u_col="U", loss_col="loss")
    assert shared.attrs["shared_points"] == 3 and len(shared) == 6
    assert read_named_csv(path, n_col="N", d_col="D", loss_col="loss").attrs["shared_points"] == 2

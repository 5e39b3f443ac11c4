"""`analysis.plots`: runs coloured by size along a sequential colormap, legends sorted by size,
plain tick labels on log axes."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import ticker
from test_analysis_cli import write_sweep

from analysis import allocation, plots
from analysis.inputs import read_results
from analysis.pipeline import Settings, analyze

# Names whose text order (d128 < d32 < d48 < d64 < d96) is not their size order.
SIZES = {"d32": 1e6, "d48": 2e6, "d64": 4e6, "d96": 8e6, "d128": 16e6}


@pytest.fixture
def captured(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or str(path))
    yield figures
    for figure in figures:  # _save would have closed them
        matplotlib.pyplot.close(figure)


def test_loss_vs_compute_colours_and_lists_runs_by_size(tmp_path, captured):
    names = list(SIZES)[::-1]  # written largest first
    results = write_sweep(tmp_path, [(SIZES[name], 20 * SIZES[name]) for name in names])
    for file in ("results.csv", "curves.csv"):
        table = pd.read_csv(tmp_path / file)
        table["name"] = table["name"].map({f"run{i}": name for i, name in enumerate(names)})
        table.to_csv(tmp_path / file, index=False)
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0), curves=sweep.curves)
    plots.plot_loss_vs_compute(analysis, tmp_path / "plot.png")
    [figure] = captured
    axes = figure.axes[0]
    curves = [line for line in axes.get_lines() if line.get_label().startswith("N = ")]
    assert [line.get_label() for line in curves] == [f"N = {n:.3g}" for n in sorted(SIZES.values())]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend[:len(SIZES)] == [f"N = {n:.3g}" for n in sorted(SIZES.values())]
    # Colours: viridis along log N, smallest darkest, evenly spaced in log N.
    logs = np.log(sorted(SIZES.values()))
    expected = matplotlib.colormaps["viridis"](0.05 + 0.85 * (logs - logs[0]) / (logs[-1] - logs[0]))
    assert np.allclose([matplotlib.colors.to_rgba(line.get_color()) for line in curves], expected)


@pytest.mark.parametrize("value, text", [(3.0, "3"), (2.0, "2"), (5.0, "5"), (10.0, "10"),
                                         (0.3, "0.3"), (4.0, ""), (7.0, ""), (1e12, "1e+12")])
def test_plain_log_tick_labels(value, text):
    figure, axes = matplotlib.pyplot.subplots()
    axes.set_yscale("log")
    plots.plain_log_ticks(axes.yaxis)
    formatter = axes.yaxis.get_major_formatter()
    assert isinstance(formatter, ticker.FuncFormatter)
    assert formatter(value, 0) == text
    matplotlib.pyplot.close(figure)


@pytest.mark.parametrize("column, label", [(None, "eval loss (nats/token)"),
                                           ("final_train_loss", "final_train_loss (nats/token)")])
def test_the_loss_axis_names_the_column_fitted(tmp_path, captured, column, label):
    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6) for k in (1, 2)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0), curves=sweep.curves,
                       data_summary={"loss_column": column} if column else None)
    plots.write_plots(analysis, tmp_path)
    loss_labels = [axes.get_ylabel() for figure in captured for axes in figure.axes
                   if "nats/token" in axes.get_ylabel()]
    assert loss_labels and all(text.endswith(label) for text in loss_labels)


def _labelled_log_ticks(losses) -> list[tuple[float, str]]:
    """(location, label) of the labelled ticks inside a log loss axis drawn over `losses`."""
    figure, axes = matplotlib.pyplot.subplots()
    axes.plot(np.geomspace(1e11, 1e14, len(losses)), losses)
    axes.set(xscale="log", yscale="log")
    plots.plain_log_ticks(axes.yaxis)
    figure.canvas.draw()
    low, high = axes.get_ylim()
    labels = [(tick.get_loc(), tick.label1.get_text()) for tick in axes.yaxis.get_major_ticks()
              if low <= tick.get_loc() <= high and tick.label1.get_text()]
    matplotlib.pyplot.close(figure)
    return labels


def test_a_narrow_log_axis_still_has_labelled_ticks():
    # Losses between 3.39 and 4.44: no 1, 2, 3 or 5 multiple of a decade falls inside.
    labels = _labelled_log_ticks([4.44, 3.39])
    assert len(labels) >= 3
    assert all(float(text) == pytest.approx(loc) for loc, text in labels)


def test_a_log_axis_under_a_decade_is_labelled_between_1_and_2():
    # The demo's losses, 0.64 to 2.4: the decade rule labels only 1 and 2 (0.5 and 3 fall
    # outside), too few to read a frontier point off.
    labels = [text for _, text in _labelled_log_ticks([2.4, 0.64])]
    assert {"1", "1.5", "2"} <= set(labels), labels


def test_an_allocation_plot_survives_a_fit_with_no_finite_allocation(tmp_path, captured):
    """A degenerate L(N, D) (here beta < 0, as a fit to runs whose loss does not fall with D can
    give) has no compute-optimal allocation: the figure says so instead of failing to draw."""
    import dataclasses

    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    results = write_sweep(tmp_path, [(N, k * N) for N in sizes for k in (10, 40)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"), curves=sweep.curves)
    law_fit = analysis.fits["chinchilla"]
    theta = np.array(law_fit.fit.theta, dtype=float)
    theta[3] = -0.5  # beta, in the law's fit_params order (a, alpha, b, beta, e)
    broken = dataclasses.replace(law_fit, fit=dataclasses.replace(law_fit.fit, theta=theta))
    analysis = dataclasses.replace(analysis, fits={**analysis.fits, "chinchilla": broken})
    plots.plot_optimal_allocation(analysis, tmp_path / "allocation.png")
    [figure] = captured
    for axes in figure.axes:
        assert not axes.get_lines()
        assert [text.get_text() for text in axes.texts] == ["no fit gives a finite allocation"]


def test_loss_vs_compute_dashes_the_law_beyond_the_data(tmp_path, captured):
    """L(C) is drawn solid over the frontier's compute and dashed (and so labelled) beyond it."""
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0), curves=sweep.curves)
    plots.plot_loss_vs_compute(analysis, tmp_path / "plot.png")
    [figure] = captured
    largest = analysis.frontier.flops.max()
    law = [line for line in figure.axes[0].get_lines()
           if matplotlib.colors.same_color(line.get_color(), "crimson")]
    solid = [line for line in law if line.get_linestyle() == "-"]
    dashed = [line for line in law if line.get_linestyle() == "--"]
    assert len(solid) == 1 and len(dashed) == 1

    def drawn(line):
        x, y = (np.asarray(values, dtype=float) for values in line.get_data())
        return x[np.isfinite(y)]

    assert drawn(solid[0]).max() <= largest
    assert drawn(dashed[0]).max() == pytest.approx(10 * largest)
    assert drawn(dashed[0]).min() <= drawn(solid[0]).max()  # the two meet
    assert "extrapolated" in dashed[0].get_label()


def test_predicted_vs_actual_names_the_level_of_its_error_bars(tmp_path, captured):
    """The held-out runs' error bars are their prediction intervals: the legend gives the level."""
    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=20), curves=sweep.curves)
    assert "compute" in analysis.extrapolations
    plots.plot_predicted_vs_actual(analysis, tmp_path / "plot.png")
    [figure] = captured
    axes = figure.axes[0]
    assert any(isinstance(container, matplotlib.container.ErrorbarContainer)
               for container in axes.containers)
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "compute law: 95% prediction interval" in legend


def test_predicted_vs_actual_gives_each_law_one_colour_and_its_own_place(tmp_path, captured):
    # A law's held-out stars took the next colour of the cycle, not its fitted points' (orange
    # points, red stars), and laws' intervals at one x hid each other.
    results = write_sweep(tmp_path, [(N, k * 20 * N) for N in (1e6, 2e6, 4e6, 8e6)
                                     for k in (1, 2, 4)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=20), curves=sweep.curves)
    laws = sorted(analysis.extrapolations)
    assert len(laws) >= 2, laws
    plots.plot_predicted_vs_actual(analysis, tmp_path / "plot.png")
    [figure] = captured
    axes = figure.axes[0]
    by_label = {collection.get_label(): collection for collection in axes.collections}
    stars = {}
    for law in laws:
        fitted = by_label[f"{law} law: fitted"].get_facecolor()[0][:3]
        star = by_label[f"{law} law: held-out largest model(s)"]
        assert np.allclose(star.get_facecolor()[0][:3], fitted), law
        bars = next(c for c in axes.containers if c.get_label().startswith(f"{law} law: 95%"))
        assert np.allclose(bars.lines[2][0].get_color()[0][:3], fitted), law
        stars[law] = star.get_offsets()[:, 0]
    # The same held-out runs, each law's a little apart along x.
    first, second = (stars[law] for law in laws[:2])
    assert len(first) and not np.allclose(np.sort(first), np.sort(second))


def test_a_long_flop_convention_label_fits_under_each_panel(tmp_path, captured):
    """A --csv input's FLOP convention names its columns; the compute axis label stays inside the
    figure and the two allocation panels' labels do not overlap."""
    convention = ("C = column 'Training FLOP'; D = C/(6N) with N = column 'Model Size'")
    results = write_sweep(tmp_path, [(N, k * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (10, 40)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"),
                       curves=sweep.curves, flop_convention=convention)
    plots.plot_optimal_allocation(analysis, tmp_path / "allocation.png")
    plots.plot_loss_vs_compute(analysis, tmp_path / "loss.png")
    for figure in captured:
        figure.tight_layout()
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        inside = figure.bbox
        boxes = [axes.xaxis.label.get_window_extent(renderer) for axes in figure.axes]
        for axes, box in zip(figure.axes, boxes):
            assert "Training FLOP" in axes.get_xlabel().replace("\n", " ")
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_the_allocation_plot_marks_where_it_extrapolates(tmp_path, captured):
    """N_opt(C) and D_opt(C) run on past the largest IsoFLOP budget: that stretch is shaded and
    named in the legend, from the largest budget to the end of the lines."""
    results = write_sweep(tmp_path, [(N, k * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (10, 40)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"),
                       curves=sweep.curves)
    plots.plot_optimal_allocation(analysis, tmp_path / "allocation.png")
    [figure] = captured
    largest = analysis.isoflop.budgets.max() if analysis.isoflop is not None else analysis.runs["C"].max()
    for axes in figure.axes:
        ends = max(np.nanmax(np.asarray(line.get_xdata(), dtype=float)) for line in axes.get_lines())
        assert ends > largest
        shaded = [patch for patch in axes.patches
                  if patch.get_label().startswith("extrapolated")]
        assert len(shaded) == 1
        corners = shaded[0].get_path().transformed(shaded[0].get_patch_transform()).vertices[:, 0]
        assert corners.min() == pytest.approx(largest) and corners.max() == pytest.approx(ends)
        assert shaded[0].get_label() in [text.get_text() for text in axes.get_legend().get_texts()]


def test_approach_3_is_drawn_at_the_datas_flop_count(tmp_path, captured):
    """Under the full convention a run costs more than 6ND (here exactly 12ND): the parametric
    fit's N_opt and D_opt are drawn where that compute is spent, not where 6ND would be."""
    results = write_sweep(tmp_path, [(N, k * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (10, 40)])
    table = pd.read_csv(results)
    table["flop_convention"] = "full"
    table["flops"] = table["flops_full"] = 12 * table["params"] * table["tokens"]
    table.to_csv(results, index=False)
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"),
                       curves=sweep.curves, flop_convention=sweep.flop_convention)
    plots.plot_optimal_allocation(analysis, tmp_path / "allocation.png")
    [figure] = captured
    p = analysis.fits["chinchilla"].fit.params
    for axes, closed_form in zip(figure.axes, (allocation.optimal_params, allocation.optimal_tokens)):
        [line] = [line for line in axes.get_lines() if line.get_label().startswith("Approach 3")]
        C, drawn = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        np.testing.assert_allclose(drawn, closed_form(C / 2, p["A"], p["B"], p["alpha"], p["beta"]),
                                   rtol=1e-5)


def test_every_compute_axis_names_the_flop_convention(tmp_path, captured):
    """C means different FLOP counts under different conventions: each figure's compute axis,
    the residuals' included, says which."""
    results = write_sweep(tmp_path, [(N, k * N) for N in (1e6, 2e6, 4e6, 8e6) for k in (10, 40)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"),
                       curves=sweep.curves, flop_convention="full")
    plots.write_plots(analysis, tmp_path)
    compute_labels = [axes.get_xlabel() for figure in captured for axes in figure.axes
                      if "FLOPs" in axes.get_xlabel()]
    assert len(compute_labels) == 4  # loss vs compute, the two allocation panels, L(C) residuals
    assert all("full convention" in label for label in compute_labels)


def test_the_multiplier_is_dashed_where_only_one_recipe_has_data(tmp_path, captured):
    # It was drawn solid with its band over both recipes' ranges, where compare.md's table stops
    # at the top of the range both cover.
    from analysis.compare import compare_recipes
    from analysis.frontier import Frontier

    C = np.geomspace(1e16, 1e20, 15)
    rng = np.random.default_rng(0)
    law_a = (1.8 + 300 * C**-0.12) * np.exp(rng.normal(0, 0.01, C.size))
    law_b = (1.8 + 280 * C[:10]**-0.12) * np.exp(rng.normal(0, 0.01, 10))
    comparison = compare_recipes(Frontier(C, law_a, np.arange(15), "final points"),
                                 Frontier(C[:10], law_b, np.arange(10), "final points"),
                                 num_resamples=0)
    plots.plot_comparison(comparison, tmp_path / "compare.png", ("a", "b"))
    right = captured[0].axes[1]
    solid, dashed = (next(line for line in right.get_lines() if line.get_label() == label)
                     for label in ("multiplier where both have data",
                                   "extrapolated (one recipe's data)"))
    drawn = {line: line.get_xdata()[np.isfinite(line.get_ydata())] for line in (solid, dashed)}
    assert drawn[solid].min() >= C[0] and drawn[solid].max() <= C[9]
    assert drawn[dashed].min() >= C[9] * 0.999 and drawn[dashed].max() == pytest.approx(C[-1])
    assert dashed.get_linestyle() == "--"
    # The left panel's legend names the laws, not only the points.
    import re

    legend = [text.get_text() for text in captured[0].axes[0].get_legend().get_texts()]
    assert legend[0] == "A: a (frontier)" and legend[2] == "A's law beyond its data", legend
    assert re.fullmatch(r"A's law: [\d.]+ \+ [\d.e+]+·C\^-[\d.]+", legend[1]), legend[1]
    assert "B's law beyond its data" in legend


def test_the_effective_compute_axis_has_plain_tick_labels(tmp_path, captured):
    """The multiplier axis reads 0.5, 1, 2 like the loss axes, not 5×10⁻¹, 10⁰, 2×10⁰."""
    from analysis.compare import compare_recipes
    from analysis.frontier import Frontier

    C = np.geomspace(1e16, 1e20, 15)
    rng = np.random.default_rng(0)
    law_a = (1.8 + 300 * C**-0.12) * np.exp(rng.normal(0, 0.01, C.size))
    law_b = (1.8 + 280 * C**-0.12) * np.exp(rng.normal(0, 0.01, C.size))
    comparison = compare_recipes(Frontier(C, law_a, np.arange(15), "final points"),
                                 Frontier(C, law_b, np.arange(15), "final points"),
                                 num_resamples=20)
    plots.plot_comparison(comparison, tmp_path / "compare.png", ("a", "b"))
    [figure] = captured
    right = figure.axes[1]
    figure.canvas.draw()
    low, high = right.get_ylim()
    labels = [(tick.get_loc(), tick.label1.get_text())
              for tick in right.yaxis.get_major_ticks() + right.yaxis.get_minor_ticks()
              if low <= tick.get_loc() <= high and tick.label1.get_text()]
    assert labels
    assert all(float(text) == pytest.approx(loc) for loc, text in labels)
    assert [axes.get_xlabel() for axes in figure.axes] == ["training compute C (FLOPs)"] * 2
    # With the results tables' FLOP convention, both compute axes name it.
    plots.plot_comparison(comparison, tmp_path / "compare.png", ("a", "b"), convention="6N")
    assert [axes.get_xlabel() for axes in captured[1].axes] == [
        "training compute C (FLOPs, 6N convention)"] * 2


def test_isoflop_budgets_read_as_the_report_and_one_without_a_minimum_is_marked(tmp_path, captured):
    # At 1e18 FLOPs the loss falls across every size trained: no minimum among them.
    from test_analysis_cli import true_loss

    rows = [(N, C / (6 * N)) for C in (1.23e15, 1e16, 1e18) for N in np.geomspace(1e6, 1.6e7, 5)]
    N, D = np.array(rows).T
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": true_loss(N, D)})
    analysis = analyze(runs, Settings(num_resamples=0), budgets=np.repeat([1.23e15, 1e16, 1e18], 5))
    assert list(analysis.isoflop.used) == [True, True, False]
    plots.plot_isoflops(analysis, tmp_path / "isoflop.png")
    [figure] = captured
    axes = figure.axes[0]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend[:3] == ["C = 1.23e+15 FLOPs", "C = 1e+16 FLOPs",
                          "C = 1e+18 FLOPs (no minimum inside: not fitted)"]
    assert [line.get_linestyle() for line in axes.get_lines()] == ["-", "-", ":"]


@pytest.mark.parametrize("convention, label", [
    ("full", "training compute C (FLOPs, full convention)"),
    ("6N", "training compute C (FLOPs, 6N convention)"),
    # A --csv input describes its columns: not followed by "convention".
    ("6ND with N = column 'Model Size'", "training compute C (FLOPs, 6ND with N = column 'Model Size')"),
])
def test_the_compute_axis_label_names_the_convention_once(convention, label):
    assert " ".join(plots._compute_label(convention).split()) == label


@pytest.mark.parametrize("num_budgets, beside", [(3, False), (10, True)])
def test_a_long_isoflop_legend_goes_beside_the_profiles(tmp_path, captured, num_budgets, beside):
    from test_analysis_cli import true_loss

    budgets = np.geomspace(1e15, 1e16, num_budgets)
    rows = [(N, C / (6 * N)) for C in budgets for N in np.geomspace(1e6, 1.6e7, 5)]
    N, D = np.array(rows).T
    runs = pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "loss": true_loss(N, D)})
    analysis = analyze(runs, Settings(num_resamples=0), budgets=np.repeat(budgets, 5))
    plots.plot_isoflops(analysis, tmp_path / "isoflop.png")
    [figure] = captured
    axes = figure.axes[0]
    figure.canvas.draw()
    legend, inside = axes.get_legend().get_window_extent(), axes.get_window_extent()
    assert bool(legend.x0 >= inside.x1) == beside


def test_the_allocation_plot_does_not_call_a_ladders_long_runs_extrapolation(tmp_path, captured):
    """A ladder's longest runs spend more compute than its largest IsoFLOP budget: the shaded
    stretch starts at that budget, so its legend names the budget, not the data's compute."""
    # Every size at every token budget: N·D of 4e13, 8e13 and 1.6e14 hold three or four sizes
    # each (IsoFLOP budgets); 3.2e14 and 6.4e14 hold two and one.
    results = write_sweep(tmp_path, [(N, D) for N in (1e6, 2e6, 4e6, 8e6) for D in (1e7, 2e7, 4e7, 8e7)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0, law="chinchilla"), curves=sweep.curves)
    assert analysis.isoflop is not None
    plots.plot_optimal_allocation(analysis, tmp_path / "allocation.png")
    [figure] = captured
    most = 6 * 8e6 * 8e7  # the largest run's 6ND FLOPs, as write_sweep counts them
    for axes in figure.axes:
        [shaded] = [patch for patch in axes.patches if patch.get_label().startswith("extrapolated")]
        corners = shaded.get_path().transformed(shaded.get_patch_transform()).vertices[:, 0]
        assert corners.min() < most  # runs were trained inside the shaded stretch
        assert "data's compute" not in shaded.get_label()
        assert "largest IsoFLOP budget" in shaded.get_label()


@pytest.mark.parametrize("flagged", [False, True])
def test_loss_vs_compute_says_when_its_irreducible_loss_is_not_identified(tmp_path, captured, flagged):
    """The dotted line at E is labelled as not identified when the fit's diagnostics flag E (its
    interval spans orders of magnitude), and plainly otherwise."""
    import dataclasses

    results = write_sweep(tmp_path, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6)])
    sweep = read_results(results)
    analysis = analyze(sweep.runs, Settings(num_resamples=0), curves=sweep.curves)
    law_fit = analysis.fits["compute"]
    diagnostics = [{"parameter": "E", "problem": "E is not identified (interval 1e-11 to 1.2)",
                    "fix": "more compute budgets"}] if flagged else []
    law_fit = dataclasses.replace(law_fit, summary={**law_fit.summary, "diagnostics": diagnostics})
    analysis = dataclasses.replace(analysis, fits={**analysis.fits, "compute": law_fit})
    plots.plot_loss_vs_compute(analysis, tmp_path / "plot.png")
    [figure] = captured
    E = law_fit.fit.params["E"]
    [line] = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == ":"]
    expected = f"irreducible E = {E:.3g}" + (" (not identified by the data)" if flagged else "")
    assert line.get_label() == expected

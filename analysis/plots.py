"""Paste-ready figures of an analysis: every axis labelled with units, every mark in a legend."""

from __future__ import annotations

import pathlib
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from analysis import allocation  # noqa: E402
from analysis.backtest import prediction_interval  # noqa: E402
from analysis.bootstrap import summarize  # noqa: E402
from analysis.inputs import FLOP_CONVENTIONS  # noqa: E402
from analysis.laws import get_law, predict_loss  # noqa: E402
from analysis.pipeline import Analysis  # noqa: E402
from scaling import files  # noqa: E402

LOSS_LABEL = "eval loss (nats/token)"
AXIS_LABELS = {"C": "training compute C (FLOPs)", "N": "parameters N", "D": "training tokens D"}
DPI = 150


def _loss_label(analysis: Analysis) -> str:
    """The loss axis's label: the results column fitted, when it is not the final eval loss."""
    column = analysis.summary["data"].get("loss_column", "final_eval_loss")
    return LOSS_LABEL if column == "final_eval_loss" else f"{column} (nats/token)"


def _compute_label(convention: str) -> str:
    """The compute axis's label: a results table's FLOP convention by name, a --csv input's
    description of its columns as it is; on several lines when long, so that it fits under a
    half-width panel."""
    named = f"{convention} convention" if convention in FLOP_CONVENTIONS else convention
    return textwrap.fill(f"training compute C (FLOPs, {named})", width=50)


NARROW_LOG_RANGE = 10.0  # an axis spanning less than a decade gets evenly spaced ticks


def plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (3, 4, 5 rather than 3×10⁰): every decade, and the
    2, 3 and 5 multiples between decades; an axis (as plotted so far) spanning less than a
    factor of `NARROW_LOG_RANGE`, where those could all fall outside it, gets a handful of evenly
    spaced round values instead (3.4, 3.6, ...)."""
    axes = axis.axes
    low, high = sorted(axes.get_ylim() if axis is axes.yaxis else axes.get_xlim())
    if 0 < low and high / low < NARROW_LOG_RANGE:
        axis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        axis.set_minor_locator(ticker.NullLocator())
        axis.set_major_formatter(ticker.FuncFormatter(lambda value, _position: f"{value:g}"))
        return

    def label(value, _position) -> str:
        if value <= 0:
            return ""
        mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
        return f"{value:g}" if round(mantissa, 6) in (1, 2, 3, 5) else ""

    axis.set_major_formatter(ticker.FuncFormatter(label))
    axis.set_minor_formatter(ticker.FuncFormatter(label))


def size_colours(sizes) -> dict:
    """{size: colour}: model sizes (N) along viridis, a sequential colormap, from dark (smallest)
    to yellow (largest), spaced by log N."""
    distinct = sorted({float(n) for n in sizes if np.isfinite(n) and n > 0})
    if not distinct:
        return {}
    logs = np.log(distinct)
    span = logs[-1] - logs[0]
    positions = (logs - logs[0]) / span if span > 0 else np.zeros_like(logs)
    return dict(zip(distinct, plt.cm.viridis(0.05 + 0.85 * positions)))


def _save(figure, path) -> str:
    path = pathlib.Path(path)
    files.save_figure(figure, path, DPI)
    return str(path)


def plot_loss_vs_compute(analysis: Analysis, path) -> str:
    """All training curves, the compute-efficient frontier and the fitted L(C), log–log."""
    figure, axes = plt.subplots(figsize=(7, 5))
    convention = analysis.summary["flop_convention"]
    if analysis.curves is not None and len(analysis.curves):
        # Coloured by model size, smallest first in the legend (one entry per size).
        size_of = (dict(zip(analysis.runs["name"], analysis.runs["N"]))
                   if "name" in analysis.runs else {})
        colours = size_colours(size_of.values())
        curves = sorted(analysis.curves.groupby("name", sort=True),
                        key=lambda item: (size_of.get(item[0], np.inf), str(item[0])))
        labelled = set()
        for name, curve in curves:
            size = float(size_of.get(name, np.nan))
            curve = curve.sort_values("flops")
            label = None if size in labelled else (f"N = {size:.3g}" if np.isfinite(size)
                                                   else str(name))
            labelled.add(size)
            axes.plot(curve["flops"], curve["loss"], color=colours.get(size, "0.5"), lw=1,
                      alpha=0.7, label=label)
    else:
        axes.scatter(analysis.runs["C"], analysis.runs["loss"], s=12, color="0.6", label="runs (final)")
    frontier = analysis.frontier
    axes.scatter(frontier.flops, frontier.loss, s=18, color="black", zorder=3,
                 label=f"frontier ({frontier.source})")
    if "compute" in analysis.fits:
        law_fit = analysis.fits["compute"]
        params = law_fit.fit.params
        grid = np.geomspace(frontier.flops.min(), frontier.flops.max() * 10, 200)
        fitted = predict_loss(law_fit.fit.law, law_fit.fit.theta, {"C": grid})
        inside = grid <= frontier.flops.max()
        axes.plot(grid, np.where(inside, fitted, np.nan), color="crimson", lw=2,
                  label=f"fit: {params['E']:.3g} + {params['A']:.3g}·C^-{params['alpha']:.3g}")
        beyond = grid >= grid[inside][-1]  # from the last point inside, so the two lines meet
        axes.plot(grid, np.where(beyond, fitted, np.nan), color="crimson", lw=2, ls="--",
                  label="fit, extrapolated beyond the data")
        if len(law_fit.bootstrap_theta):
            # 95% prediction band: bootstrap refits plus the scatter of points around the fit.
            low, high = prediction_interval(law_fit.fit, {"C": grid}, num_resamples=0, seed=0,
                                            bootstrap_theta=law_fit.bootstrap_theta,
                                            along_curve=True)
            axes.fill_between(grid, low, high, color="crimson", alpha=0.15, lw=0,
                              label="95% band: bootstrap + scatter")
        if params["E"] > 0.2 * frontier.loss.min():  # an E at its bound 0 would squash the plot
            # An E the diagnostics flag (its interval spans orders of magnitude) is no measurement.
            flagged = any(flag["parameter"] == "E" for flag in law_fit.summary.get("diagnostics", []))
            axes.axhline(params["E"], color="crimson", ls=":", lw=1,
                         label=f"irreducible E = {params['E']:.3g}"
                               + (" (not identified by the data)" if flagged else ""))
    axes.set(xscale="log", yscale="log", xlabel=_compute_label(convention), ylabel=_loss_label(analysis),
             title="Loss vs compute")
    plain_log_ticks(axes.yaxis)
    axes.legend(fontsize=7, ncol=2 if analysis.curves is not None else 1)
    return _save(figure, path)


MAX_BUDGETS_IN_AXES = 8  # an IsoFLOP legend longer than this goes beside the axes


def plot_isoflops(analysis: Analysis, path) -> str:
    """Loss against N for each IsoFLOP budget, its parabola and the minimum."""
    isoflop = analysis.isoflop
    beside = isoflop.budgets.size > MAX_BUDGETS_IN_AXES  # the legend: beside the profiles
    figure, axes = plt.subplots(figsize=(10.5 if beside else 7, 5))
    colours = plt.cm.plasma(np.linspace(0, 0.85, isoflop.budgets.size))
    runs = analysis.runs
    for colour, budget, parabola, centre, best_n, best_loss, used in zip(
            colours, isoflop.budgets, isoflop.parabolas, isoflop.log_n_centres, isoflop.optimal_params,
            isoflop.minimum_loss, isoflop.used):
        members = analysis.run_budgets == budget
        sizes = runs["N"].to_numpy()[members]
        # Budgets as the report writes them; one whose parabola has no minimum among its sizes
        # is dotted and says it does not enter the exponent fits.
        label = f"C = {budget:.3g} FLOPs" + ("" if used else " (no minimum inside: not fitted)")
        axes.scatter(sizes, runs["loss"].to_numpy()[members], s=12, color=colour, label=label)
        grid = np.linspace(np.log(sizes.min()), np.log(sizes.max()), 100)
        u = grid - centre
        axes.plot(np.exp(grid), parabola[0] * u**2 + parabola[1] * u + parabola[2], color=colour, lw=1,
                  ls="-" if used else ":")
        if used:
            axes.scatter([best_n], [best_loss], marker="*", s=120, color=colour, edgecolor="black", zorder=4)
    axes.scatter([], [], marker="*", s=120, color="white", edgecolor="black", label="minimum (N_opt)")
    axes.set(xscale="log", xlabel=AXIS_LABELS["N"], ylabel=_loss_label(analysis),
             title="IsoFLOP profiles")
    if beside:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                    ncol=1 + isoflop.budgets.size // 25)
    else:
        axes.legend(fontsize=7, ncol=2)
    return _save(figure, path)


def _approach_3_allocation(analysis: Analysis, C: np.ndarray) -> dict:
    """The fitted L(N, D)'s N_opt and D_opt at compute `C` counted as the data counts it, with
    their exponents there ("a", "b") and under C = 6ND ("a_6ND", "b_6ND"). The runs' FLOPs over
    6·N·D are fitted as c·N^s: under the full convention embeddings and attention make a small
    model cost well over 6ND (2.1x at the demo's smallest size, 1.2x at its largest)."""
    p = analysis.fits["chinchilla"].fit.params
    runs = analysis.runs
    ratio = (runs["C"] / (6.0 * runs["N"] * runs["D"])).groupby(runs["N"]).median()
    if len(ratio) > 1:
        s, log_c = np.polyfit(np.log(ratio.index.to_numpy()), np.log(ratio.to_numpy()), 1)
    else:
        s, log_c = 0.0, float(np.log(ratio.iloc[0]))
    with np.errstate(all="ignore"):
        params, tokens, a, b = allocation.allocation_at_flops(C, p["A"], p["B"], p["alpha"], p["beta"],
                                                              np.exp(log_c), s)
    a_6nd, b_6nd = allocation.allocation_exponents(p["alpha"], p["beta"])
    return {"N": params, "D": tokens, "a": a, "b": b, "a_6ND": a_6nd, "b_6ND": b_6nd}


def plot_optimal_allocation(analysis: Analysis, path) -> str:
    """N_opt(C) and D_opt(C): IsoFLOP minima with their power laws, and the parametric fit's
    optimum at each compute, counted as the data counts it, when there is one."""
    figure, (params_axes, tokens_axes) = plt.subplots(1, 2, figsize=(10, 4.5))
    isoflop = analysis.isoflop
    budgets = isoflop.budgets if isoflop is not None else np.geomspace(
        analysis.runs["C"].min(), analysis.runs["C"].max(), 10)
    grid = np.geomspace(budgets.min(), budgets.max() * 10, 100)
    approach_3 = _approach_3_allocation(analysis, grid) if "chinchilla" in analysis.fits else None
    for axes, name in ((params_axes, "N"), (tokens_axes, "D")):
        if isoflop is not None:
            optimum = isoflop.optimal_params if name == "N" else isoflop.optimal_tokens
            exponent = isoflop.params_exponent if name == "N" else isoflop.tokens_exponent
            coefficient = isoflop.params_coefficient if name == "N" else isoflop.tokens_coefficient
            axes.scatter(isoflop.budgets[isoflop.used], optimum[isoflop.used], color="black", zorder=3,
                         label="IsoFLOP minima (Approach 2)")
            axes.plot(grid, coefficient * grid**exponent, color="black", ls="--",
                      label=f"Approach 2: ∝ C^{exponent:.3f}")
        if approach_3 is not None:
            curve = approach_3[name]
            if np.any(np.isfinite(curve) & (curve > 0)):  # a degenerate fit has no allocation
                exponent, exponent_6nd = (approach_3[k] for k in (("a", "a_6ND") if name == "N"
                                                                   else ("b", "b_6ND")))
                label = f"Approach 3: ∝ C^{exponent:.3f}"
                if f"{exponent:.3f}" != f"{exponent_6nd:.3f}":
                    label += f" (∝ (6ND)^{exponent_6nd:.3f})"
                axes.plot(grid, curve, color="crimson", label=label)
        axes.set(xscale="log", xlabel=_compute_label(analysis.summary["flop_convention"]),
                 ylabel=f"compute-optimal {AXIS_LABELS[name]}", title=f"{name}_opt vs compute")
        if axes.lines or axes.collections:
            # Runs may spend more than the largest IsoFLOP budget (a ladder's long runs): the
            # allocation is extrapolated beyond that budget, not beyond the data's compute.
            axes.axvspan(budgets.max(), grid.max(), color="0.9", lw=0, zorder=0,
                         label="extrapolated: beyond the largest IsoFLOP budget" if isoflop is not None
                         else "extrapolated: beyond the data's compute")
            axes.set_yscale("log")
            axes.legend(fontsize=7)
        else:
            axes.text(0.5, 0.5, "no fit gives a finite allocation", ha="center", va="center",
                      transform=axes.transAxes)
    return _save(figure, path)


def _main_variable(law_name: str) -> str:
    return get_law(law_name).variables[0]


def plot_residuals(analysis: Analysis, path) -> str:
    """Actual − predicted loss (nats) for every fitted law against its main variable."""
    names = list(analysis.fits)
    figure, axes_row = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axes, name in zip(axes_row[0], names):
        law_fit = analysis.fits[name]
        predicted = predict_loss(law_fit.fit.law, law_fit.fit.theta, law_fit.variables)
        variable = _main_variable(name)
        axes.scatter(law_fit.variables[variable], law_fit.loss - predicted, s=10, color="steelblue",
                     label="fitted points")
        axes.axhline(0.0, color="black", lw=1)
        xlabel = (_compute_label(analysis.summary["flop_convention"]) if variable == "C"
                  else AXIS_LABELS[variable])
        axes.set(xscale="log", xlabel=xlabel, ylabel="actual − predicted loss (nats)",
                 title=f"Residuals: {name} law")
        axes.legend(fontsize=7)
    return _save(figure, path)


def plot_predicted_vs_actual(analysis: Analysis, path) -> str:
    """Predicted against actual loss for every fit, with the extrapolation check's held-out runs
    (predicted by a fit that never saw them). Each law has one colour for its fitted points, its
    held-out stars and their intervals; several laws' held-out runs are drawn side by side, each
    law's moved along the x axis by 1% of the actual losses' range, so that no interval hides
    another."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    markers = iter("osD^v")
    names = list(dict.fromkeys([*analysis.fits, *analysis.extrapolations]))
    colours = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    for name, law_fit in analysis.fits.items():
        predicted = predict_loss(law_fit.fit.law, law_fit.fit.theta, law_fit.variables)
        axes.scatter(law_fit.loss, predicted, s=10, marker=next(markers), alpha=0.7,
                     color=colours[name], label=f"{name} law: fitted")
    checks = list(analysis.extrapolations.items())
    actual = np.concatenate([np.asarray(check.held_out["loss"], float) for _, check in checks]
                            or [np.zeros(1)])
    step = 0.01 * (np.ptp(actual) or actual.mean())
    for index, (name, check) in enumerate(checks):
        held_out = check.held_out
        x = np.asarray(held_out["loss"], float) + (index - (len(checks) - 1) / 2) * step
        axes.scatter(x, held_out["predicted"], s=70, marker="*", color=colours[name],
                     edgecolor="black", zorder=4, label=f"{name} law: held-out largest model(s)")
        if np.isfinite(held_out["ci_low"]).all():
            # The prediction interval of each held-out run, as a vertical band.
            axes.errorbar(x, held_out["predicted"],
                          yerr=[np.maximum(held_out["predicted"] - held_out["ci_low"], 0.0),
                                np.maximum(held_out["ci_high"] - held_out["predicted"], 0.0)],
                          fmt="none", ecolor=colours[name], capsize=3, zorder=3,
                          label=f"{name} law: {check.summary['interval_level']:.0%} prediction "
                                "interval")
    low, high = axes.get_xlim()
    axes.plot([low, high], [low, high], color="black", lw=1, label="predicted = actual")
    label = _loss_label(analysis)
    axes.set(xlabel=f"actual {label}", ylabel=f"predicted {label}", title="Predicted vs actual")
    axes.legend(fontsize=7)
    return _save(figure, path)


def plot_comparison(comparison, path, names: tuple[str, str], loss_label: str = LOSS_LABEL,
                    convention: str | None = None) -> str:
    """Two panels: both recipes' frontiers with the jointly fitted laws (dashed beyond each
    recipe's data), and B's effective-compute multiplier over A with its bootstrap band (dashed
    where only one recipe has data). The
    compute axes name the FLOP `convention` when the results tables give it."""
    from analysis.compare import effective_compute_multiplier

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    law, theta = comparison.fit.law, comparison.fit.theta
    params = {k: float(v) for k, v in law.natural(theta).items()}
    low = min(comparison.frontier_a.flops.min(), comparison.frontier_b.flops.min())
    high = max(comparison.frontier_a.flops.max(), comparison.frontier_b.flops.max())
    grid = np.geomspace(low, high, 200)
    for label, frontier, key, color in ((names[0], comparison.frontier_a, "A", "steelblue"),
                                        (names[1], comparison.frontier_b, "B", "crimson")):
        left.scatter(frontier.flops, frontier.loss, s=12, color=color,
                     label=f"{key}: {label} (frontier)")
        fitted = params[f"E_{key}"] + params[f"A_{key}"] * grid ** -params[f"alpha_{key}"]
        inside = (grid >= frontier.flops.min()) & (grid <= frontier.flops.max())
        left.plot(grid, np.where(inside, fitted, np.nan), color=color,
                  label=f"{key}'s law: {params[f'E_{key}']:.3g} + {params[f'A_{key}']:.3g}"
                        f"·C^-{params[f'alpha_{key}']:.3g}")
        left.plot(grid, np.where(inside, np.nan, fitted), color=color, ls="--", lw=1,
                  label=f"{key}'s law beyond its data")
    compute_label = _compute_label(convention) if convention else "training compute C (FLOPs)"
    left.set(xscale="log", xlabel=compute_label, ylabel=loss_label, title="Frontiers and joint fit")
    left.legend(fontsize=7)
    multiplier = effective_compute_multiplier(params, grid)
    # Where one recipe has no data the multiplier is extrapolated: dashed, as on the left.
    both = ((grid >= max(comparison.frontier_a.flops.min(), comparison.frontier_b.flops.min()))
            & (grid <= min(comparison.frontier_a.flops.max(), comparison.frontier_b.flops.max())))
    right.plot(grid, np.where(both, multiplier, np.nan), color="black",
               label="multiplier where both have data")
    right.plot(grid, np.where(both, np.nan, multiplier), color="black", ls="--", lw=1,
               label="extrapolated (one recipe's data)")
    if len(comparison.bootstrap_theta):
        samples = law.natural(comparison.bootstrap_theta)
        draws = effective_compute_multiplier({k: v[:, None] for k, v in samples.items()}, grid[None, :])
        # The intervals compare.md reports: a resample in which B never reaches A's loss (+inf)
        # counts, and a band unbounded above runs off the top of the axes.
        bounds = [summarize(m, draws[:, i]) for i, m in enumerate(multiplier)]
        low, high = (np.array([b[key] for b in bounds]) for key in ("ci_low", "ci_high"))
        shown = np.concatenate([multiplier, low, high, [1.0]])
        shown = shown[np.isfinite(shown) & (shown > 0)]
        right.set_ylim(shown.min() / 2, shown.max() * 2)
        high = np.where(np.isposinf(high), shown.max() * 10, high)
        right.fill_between(grid, low, high, color="grey", alpha=0.3, label="95% interval")
    right.legend(fontsize=7)
    right.axhline(1.0, color="grey", lw=1, ls="--")
    right.set(xscale="log", yscale="log", xlabel=compute_label,
              ylabel="B's effective-compute multiplier over A", title="Effective compute")
    plain_log_ticks(right.yaxis)
    return _save(figure, path)


# The figures write_plots may draw, each under its file name in the output folder.
PLOT_FILES = ("loss_vs_compute.png", "isoflop.png", "optimal_allocation.png", "residuals.png",
              "predicted_vs_actual.png")


def write_plots(analysis: Analysis, out_dir) -> list[str]:
    """Every figure the analysis supports, as PNGs in `out_dir` (named in PLOT_FILES); returns
    their paths."""
    out_dir = pathlib.Path(out_dir)
    loss_vs_compute, isoflop, allocation, residuals, predicted = (out_dir / name
                                                                  for name in PLOT_FILES)
    paths = [plot_loss_vs_compute(analysis, loss_vs_compute)]
    if analysis.isoflop is not None:
        paths.append(plot_isoflops(analysis, isoflop))
    if analysis.isoflop is not None or "chinchilla" in analysis.fits:
        paths.append(plot_optimal_allocation(analysis, allocation))
    paths.append(plot_residuals(analysis, residuals))
    paths.append(plot_predicted_vs_actual(analysis, predicted))
    return paths

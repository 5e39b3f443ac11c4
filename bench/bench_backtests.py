"""Backtests on every published dataset of the shared reference data: hold out the largest sizes,
fit every method on the rest, predict the held-out runs with 95% prediction intervals.

Each backtest is one `scaling-fit --backtest` command (listed in the output); this script runs
them, writes the full tables to docs/backtests.md and the summary with the intervals' coverage
to BENCHMARKS.md.

    python -m bench.bench_backtests                 # outputs under runs/backtests/
    python -m bench.bench_backtests --out DIR
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import statistics
import time

from analysis.backtest import coverage, render_backtest
from analysis.cli import main as scaling_fit
from analysis.inputs import shared_data_dir
from bench.record import markdown_table, record

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "backtests.md"
GADRE = "gadre2024_overtraining/gadre2024_models_tidy.csv"


def backtests(data: pathlib.Path) -> dict[str, list[str]]:
    """Name → scaling-fit arguments. The splits are fixed by the datasets' papers or by size:
    Gadre et al. fit the four small architectures and predict the 1.4B and 6.9B runs (the two
    largest sizes); Chinchilla's runs from 5e9 parameters up (its largest sizes) are held out;
    Li et al.'s best run over learning rates per (N, D), the two largest sizes held out."""
    runs = {}
    for dataset in ("c4_original", "rpj", "rw_original"):
        runs[f"gadre_{dataset}"] = ["--csv", str(data / GADRE), "--where", f"dataset={dataset}",
                                    "--n-col", "params", "--d-col", "tokens",
                                    "--loss-col", "loss_c4_val", "--drop-highest", "2"]
    runs["epoch_chinchilla"] = ["--csv", str(data / "epoch_chinchilla/svg_extracted_data.csv"),
                                "--preset", "epoch-chinchilla", "--hold-out-from", "5e9"]
    runs["li2025"] = ["--csv", str(data / "li2025_misfitting/scaling_results_last_ckpt_only.csv"),
                      "--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--best-per-point",
                      "--drop-highest", "2"]
    return runs


def _display(arguments: list[str], data: pathlib.Path) -> str:
    """The command as a user types it, with the data folder written as ../shared/data."""
    return "scaling-fit " + shlex.join(arguments).replace(str(data), "../shared/data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/backtests", help="output folder (default runs/backtests)")
    parser.add_argument("--reuse", action="store_true",
                        help="re-render the tables from backtest.json files already in --out")
    args = parser.parse_args()
    if args.reuse and not pathlib.Path(args.out).is_dir():
        parser.error(f"--reuse reads backtest.json files in --out={args.out!r}, which is no "
                     "folder: run without --reuse first")
    data = shared_data_dir()
    if not (data / GADRE).is_file():
        raise SystemExit(f"{data} has no reference data: set SCALING_SHARED_DATA")
    missing = [name for name in backtests(data) if args.reuse and
               not (pathlib.Path(args.out) / name / "backtest.json").is_file()]
    if missing:
        parser.error(f"--reuse reads backtest.json files in --out={args.out!r}, which has none "
                     f"for {', '.join(missing)}: run without --reuse first")
    out = pathlib.Path(args.out)
    results, commands, seconds = {}, {}, {}
    for name, arguments in backtests(data).items():
        full = arguments + ["--backtest", "--out", str(out / name)]
        started = time.perf_counter()
        if not args.reuse and scaling_fit(full) != 0:
            raise SystemExit(f"scaling-fit failed on {name}")
        seconds[name] = time.perf_counter() - started
        commands[name] = _display(arguments + ["--backtest", "--out", f"runs/backtests/{name}"], data)
        results[name] = json.loads((out / name / "backtest.json").read_text())

    summary = coverage(list(results.values()))
    rows = []
    for name, backtest in results.items():
        for method, result in backtest["methods"].items():
            if "skipped" in result:
                continue
            half_widths = [(r["ci_high"] - r["ci_low"]) / (2 * r["predicted"]) for r in result["held_out"]]
            rows.append([name, method + (" (headline)" if method == backtest["headline"] else ""),
                         len(result["held_out"]), f"{result['mean_abs_relative_error']:.2%}",
                         f"{result['max_abs_relative_error']:.2%}",
                         f"{sum(r['covered'] for r in result['held_out'])}/{len(result['held_out'])}",
                         f"±{statistics.median(half_widths):.1%}"])
    table = markdown_table(["backtest", "method", "held-out runs", "mean abs. rel. error",
                            "max abs. rel. error", "inside 95% interval",
                            "median interval half-width"], rows)
    coverage_rows = [[method, row["predictions"], row["covered"], f"{row['coverage']:.0%}"]
                     for method, row in summary["per_method"].items()]
    headline = [r["covered"] for b in results.values()
                for r in b["methods"].get(b["headline"], {}).get("held_out", [])]
    coverage_rows.append(["headline method of each backtest", len(headline), sum(headline),
                          f"{sum(headline) / len(headline):.0%}"])
    coverage_rows.append(["all", summary["all"]["predictions"], summary["all"]["covered"],
                          f"{summary['all']['coverage']:.0%}"])
    coverage_table = markdown_table(["method", "held-out predictions", "inside the interval",
                                     "coverage (nominal 95%)"], coverage_rows)
    gadre = [r for name in results if name.startswith("gadre")
             for r in results[name]["methods"][results[name]["headline"]]["held_out"]]
    gadre_line = (f"Gadre et al., headline method, {len(gadre)} held-out runs: mean |relative "
                  f"error| {sum(abs(r['relative_error']) for r in gadre) / len(gadre):.2%} "
                  "(the paper reports 0.7% for its own fit).\n")
    body = (table + "\n\n" + gadre_line + "\nCoverage of the 95% prediction intervals over all backtests:\n\n"
            + coverage_table + "\n\nCommands (each also writes fit.json, report.md and plots):\n\n"
            + "\n".join(f"- `{command}`" + ("" if args.reuse else f" ({seconds[name]:.0f} s)")
                    for name, command in commands.items()) + "\n")
    print(body)
    record("backtests", "Backtests on published runs", body + "\nFull tables: docs/backtests.md.\n",
           command="python -m bench.bench_backtests")
    sections = [render_backtest(results[name], f"{name}") + f"\nCommand: `{commands[name]}`\n"
                for name in results]
    DOCS.write_text(DOCS_HEADER.format(**summary["all"]) + "\n## Summary\n\n" + body + "\n"
                    + "\n".join(sections))


DOCS_HEADER = """# Backtests on published runs

A law earns trust by predicting runs it never saw, with an interval that turns out honest. Each
backtest below holds out the largest model sizes of a published table of runs, fits every
applicable method on the rest and predicts the held-out runs:

- **overtraining**: Gadre et al. (2024), L = E + (a·M^η + b·M^−η)·C^−η with M = D/(20N), C = 6ND;
- **chinchilla**: Hoffmann et al. (2022) approach 3, L = E + A/N^α + B/D^β;
- **kaplan**: Kaplan et al. (2020), L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D;
- **compute**: approach 1, L(C) = E + A·C^−α fitted to the frontier of the runs' final points,
  scored only on held-out runs that lie on the frontier of all runs (L(C) is the best loss at C,
  not the loss of a run trained off the optimum).

Approach 2 (IsoFLOP profiles) gives compute-optimal allocations, not losses, so it predicts no
held-out loss. Muennighoff et al.'s data-constrained form (`--law data_constrained`, with
unique tokens in `--u-col`) needs repeated-data counts that none of these tables has; Porian et al.'s corrections concern how FLOPs and hyperparameters are set when
training, not the law's form.

**Which method comes first** (`analysis.backtest.headline_law`), decided on the fitted runs only,
by the shape of the table: the over-training form when the runs have 3 or more token budgets per
model size (median), Chinchilla's form otherwise. It is also the default law of
`scaling-fit --csv`; with `--backtest` that default is decided on the same fitted runs, so the
held-out rows (not even their shape) never choose the method. A law given by `--law` or a preset
comes first instead: the Chinchilla backtest uses `--preset epoch-chinchilla`, Epoch AI's refit
of Chinchilla's form, so that form leads it. The rule alone would choose the over-training form
there: Chinchilla's IsoFLOP profiles train the median size at 6 budgets. (Epoch's table gives
one model's size with jitter in the sixth digit, 142 values for 43 sizes; `scaling-fit` takes
values within 0.01% as one size. Before it did, the rule counted one budget per size.) The rule was fixed before these backtests were run, though not in ignorance:
the issue that asked for them already reported that a plain fit of the over-training form
predicts Gadre et al.'s held-out runs well. The rule reads the table's shape, never a held-out
loss; the Li et al. row below shows it is not tuned to win.

**Prediction intervals** (95%, `analysis.backtest.prediction_interval`), one recipe for every
method: bootstrap refits of the fitted points, plus a residual of the fit drawn at random, plus
the law's own extrapolation error: the law is refitted without the top quarter of the fitted
runs' log-N range, its RMS log error on them per unit of log N extrapolated is scaled by each
target's log-N distance beyond the fitted sizes and added as Gaussian noise. In full honesty:
the third term was added after a first run of these backtests, in which the first two terms
alone covered 67% of the held-out predictions (L(C) was then scored on every held-out run). It
has no parameter fitted to the held-out runs (the quarter and the linear growth in log N were set
once and not varied); it measures the extrapolation error on the fitted runs only.

What the backtests show:

- On Gadre et al.'s three training sets the headline over-training form predicts the 9 held-out
  1.4B/6.9B runs with a mean |relative error| of 0.95% (the paper reports 0.7% for its own fit);
  every RedPajama and RefinedWeb run is within 0.8%, but the C4 6.9B run is 5.2% too low
  (Chinchilla's free-exponent form: 7.9%).
- On Li et al.'s runs the rule also picks the over-training form (several token budgets per
  size), and there it is the worse law (3.0% against Chinchilla's 0.7%): the rule is not tuned to
  win every table, and a user with such a table should read the backtest before trusting either.
  `scaling-fit`'s report on this table warns of it: the over-training form ties the N and
  D exponents, and Chinchilla's form fitted to the same runs puts α − β at −0.53 (95% CI −0.65
  to −0.25), away from 0; on Gadre et al.'s tables that interval holds 0 and no warning is given.
- Kaplan's form, which has no irreducible loss, extrapolates worst on Gadre et al.'s three
  tables (up to 14–17% off, on the 6.9B runs); its intervals there are no wider than the other
  forms' (median ±10–11%) and still hold its misses. On Li et al.'s runs it is second only to
  Chinchilla's form (1.6% against 0.7%).
- On Chinchilla's runs every parametric form misses one held-out run by 23–25%: line 2 of Epoch's
  table (6.8B parameters, 245M tokens, loss 5.01, the highest of the table; 2.6B and 3.0B models
  at the same compute reached 3.77 and 4.67), which Epoch's preprocessing leaves out of its fit.
  `--drop-highest-losses` leaves the highest losses out of the runs each fit is fitted to, never
  out of the runs held out to be predicted, which are chosen by size alone: the run is scored, and
  is a miss. The other 17 held-out runs are within 2.5% (over-training form), 3.4% (Chinchilla's)
  and 4.5% (Kaplan's).
- The intervals cover ({covered} of {predictions} held-out predictions against a nominal 95%) but are wide where
  the extrapolation is long: median half-widths of ±7–14% on Gadre et al.'s 1.4B/6.9B runs (3.5–17× beyond
  the largest fitted size), ±1.5–7% on Chinchilla's and ±4–7% on Li et al.'s. Without the outlier
  above they over-cover; the extrapolation term, measured on one inner split of four or so sizes,
  is a coarse estimate.

Reproduce with `python -m bench.bench_backtests` (it runs the commands listed below, writing
their output under `runs/backtests/` or `--out DIR`, and rewrites this page and its section of BENCHMARKS.md).
"""


if __name__ == "__main__":
    main()

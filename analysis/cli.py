"""`scaling-fit`: fit scaling laws to a sweep's results (or any CSV) and write fit.json,
report.md and plots.

    scaling-fit --results SWEEP/results.csv --out SWEEP/fit            # L(C) on the frontier, ...
    scaling-fit --csv runs.csv --n-col params --d-col tokens --loss-col loss --law chinchilla
    scaling-fit --wandb export.csv --law chinchilla
    scaling-fit --download-chinchilla data/
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from analysis.download import download_chinchilla
from analysis.inputs import read_named_csv, read_results, read_wandb_export
from analysis.isoflop import CHINCHILLA_ISOFLOP_BUDGETS, snap_to_budgets
from analysis.laws import LAWS
from analysis.pipeline import DEFAULT_RESAMPLES, Settings, analyze


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling-fit", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="a sweep's results.csv (curves.csv beside it is used too)")
    source.add_argument("--csv", help="any CSV; name its columns with --n-col, --d-col/--c-col, --loss-col")
    source.add_argument("--wandb", help="a W&B runs-table CSV export of this project's runs")
    source.add_argument("--download-chinchilla", metavar="DIR",
                        help="download Epoch AI's svg_extracted_data.csv into DIR and exit")
    parser.add_argument("--n-col", help="--csv: column of parameter counts N")
    parser.add_argument("--d-col", help="--csv: column of training tokens D")
    parser.add_argument("--c-col", help="--csv: column of training FLOPs C (then D = C / (6N))")
    parser.add_argument("--loss-col", help="--csv: column of losses (nats/token)")
    parser.add_argument("--law", choices=sorted(LAWS), default=None,
                        help="headline law (default: compute for --results/--wandb, chinchilla for --csv)")
    parser.add_argument("--out", help="output directory (default: fit/ beside the input file)")
    parser.add_argument("--drop-highest", type=int, default=1, metavar="K",
                        help="extrapolation check: refit without the K largest model sizes (default 1)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples (default {DEFAULT_RESAMPLES}; 0 for none)")
    parser.add_argument("--improvement", type=float, default=0.01,
                        help="loss improvement (nats) whose cost is reported (default 0.01)")
    parser.add_argument("--reducible-fraction", type=float, default=0.1,
                        help="report where the reducible loss falls below this fraction of E (default 0.1)")
    parser.add_argument("--isoflop-budgets", metavar="C1,C2,...|chinchilla",
                        help="snap each run to the nearest of these IsoFLOP budgets (FLOPs), or to "
                             "Chinchilla's nine; default: group runs whose FLOPs agree within 12%%")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--wandb-project", help="also log the fit as a W&B run of this project")
    parser.add_argument("--wandb-group", help="its W&B group (default: the sweep's name)")
    return parser


def _check_settings(args) -> None:
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap={args.bootstrap} is not allowed; need 0 or more resamples")
    if args.drop_highest < 1:
        raise ValueError(f"--drop-highest={args.drop_highest} is not allowed; need at least 1")
    if not args.improvement > 0:
        raise ValueError(f"--improvement={args.improvement} is not allowed; need a positive number of nats")
    if not 0 < args.reducible_fraction:
        raise ValueError(f"--reducible-fraction={args.reducible_fraction} is not allowed; need > 0")
    if args.csv and not (args.n_col and args.loss_col):
        raise ValueError("--csv needs --n-col and --loss-col, and one of --d-col or --c-col")


def _parse_budgets(text: str) -> tuple[float, ...]:
    if text == "chinchilla":
        return CHINCHILLA_ISOFLOP_BUDGETS
    try:
        budgets = tuple(float(part) for part in text.split(","))
    except ValueError:
        budgets = ()
    if not budgets or not all(budget > 0 for budget in budgets):
        raise ValueError(f"--isoflop-budgets={text!r} is not allowed; give positive FLOP counts "
                         "separated by commas, or 'chinchilla'")
    return budgets


def run(args) -> pathlib.Path:
    """Load, analyse and write everything; returns the output directory."""
    from analysis.plots import write_plots
    from analysis.report import render_report, write_fit_json

    _check_settings(args)
    data_summary, curves, convention = {}, None, "6N"
    if args.csv:
        runs = read_named_csv(args.csv, n_col=args.n_col, d_col=args.d_col, c_col=args.c_col,
                              loss_col=args.loss_col)
        input_path, default_law = pathlib.Path(args.csv), "chinchilla"
        data_summary["source"] = str(input_path)
    else:
        input_path = pathlib.Path(args.results or args.wandb)
        sweep = read_results(input_path) if args.results else read_wandb_export(input_path)
        runs, curves, convention, default_law = sweep.runs, sweep.curves, sweep.flop_convention, "compute"
        data_summary.update(source=sweep.source, runs_total=len(sweep.runs) + len(sweep.excluded),
                            excluded=sweep.excluded.to_dict("records"))
    settings = Settings(law=args.law or default_law, num_resamples=args.bootstrap, seed=args.seed,
                        improvement=args.improvement, reducible_fraction=args.reducible_fraction,
                        drop_largest=args.drop_highest)
    out_dir = pathlib.Path(args.out) if args.out else input_path.parent / "fit"
    out_dir.mkdir(parents=True, exist_ok=True)
    budgets = (snap_to_budgets(runs["C"].to_numpy(), _parse_budgets(args.isoflop_budgets))
               if args.isoflop_budgets else None)
    analysis = analyze(runs, settings, curves=curves, budgets=budgets, flop_convention=convention,
                       data_summary=data_summary)
    write_fit_json(analysis, out_dir / "fit.json")
    plots = write_plots(analysis, out_dir)
    (out_dir / "report.md").write_text(render_report(analysis, plots))
    return out_dir


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if args.download_chinchilla:
            path = download_chinchilla(args.download_chinchilla)
            print(f"saved {path}")
            return 0
        out_dir = run(args)
    except (ValueError, RuntimeError) as error:
        print(f"scaling-fit: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out_dir}/fit.json, report.md and plots in {time.perf_counter() - started:.1f} s")
    if args.wandb_project:
        from analysis.wandb_log import log_fit

        where = log_fit(out_dir, pathlib.Path(args.results or args.csv or args.wandb),
                        args.wandb_project, args.wandb_group)
        print(f"W&B fit run: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

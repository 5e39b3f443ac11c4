"""`scaling-fit`: fit scaling laws to a sweep's results (or any CSV) and write fit.json,
report.md and plots.

    scaling-fit --results SWEEP/results.csv --out SWEEP/fit            # L(C) on the frontier, ...
    scaling-fit --csv runs.csv --n-col params --d-col tokens --loss-col loss --law chinchilla
    scaling-fit --csv svg_extracted_data.csv --preset epoch-chinchilla   # Epoch's preprocessing
    scaling-fit --csv runs.csv ... --drop-highest 2 --backtest          # every method, held out
    scaling-fit --compare A/results.csv B/results.csv --out compare/   # B's compute multiplier
    scaling-fit --wandb export.csv --law chinchilla
    scaling-fit --download-chinchilla data/
"""

from __future__ import annotations

# `python -m analysis.cli` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.fit())

import argparse
import contextlib
import json
import os
import pathlib
import sys
import time

import numpy as np

from analysis.backtest import (DATA_CONSTRAINED, headline_law, render_backtest, run_backtest,
                               split_largest)
from analysis.download import download_chinchilla
from analysis.inputs import (SAME_SIZE_TOLERANCE, parse_filters, read_named_csv, read_results,
                             read_wandb_export, sweep_summary, without_highest_losses)
from analysis.isoflop import CHINCHILLA_ISOFLOP_BUDGETS, snap_to_budgets
from analysis.laws import LAWS, get_law
from analysis.pipeline import DEFAULT_RESAMPLES, MAX_RESAMPLES, LawNotFitted, Settings, analyze
from analysis.pipeline import default_law as pipeline_default_law
from scaling import files, interrupts
from scaling.config import (SWEEP_TAG, WANDB_PROJECT_RULE, WANDB_TAG_LIMIT, is_wandb_project,
                            wandb_environment_problem)
from scaling.errors import ArgumentParser, empty_option, flag_name

FAR_FROM_BUDGET = 2.0  # a run snapped to an IsoFLOP budget more than this factor away is flagged
# Column names and preprocessing of published tables, for --preset.
PRESETS = {
    # Epoch AI's refit of Chinchilla's runs: its law, D = C/(6N), the 5 highest losses left out.
    "epoch-chinchilla": {"n_col": "Model Size", "c_col": "Training FLOP", "loss_col": "loss",
                         "drop_highest_losses": 5, "law": "chinchilla"},
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="scaling-fit", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="a sweep's results.csv (curves.csv beside it is used too)")
    source.add_argument("--csv", help="any CSV; name its columns with --n-col, --d-col/--c-col, --loss-col")
    source.add_argument("--wandb", help="a W&B runs-table CSV export of this project's runs")
    source.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="compare two recipes: two results.csv files (or CSVs named with "
                             "--n-col ...); writes compare.json, compare.md and compare.png")
    source.add_argument("--download-chinchilla", metavar="DIR",
                        help="download Epoch AI's svg_extracted_data.csv into DIR and exit")
    parser.add_argument("--n-col", help="--csv: column of parameter counts N")
    parser.add_argument("--d-col", help="--csv: column of training tokens D")
    parser.add_argument("--c-col", help="--csv: column of training FLOPs C (then D = C / (6N))")
    parser.add_argument("--loss-col", help="column of losses (nats/token): --csv's; for "
                        "--results, --wandb and --compare a results column to fit instead of "
                        "final_eval_loss (e.g. final_continuation_loss)")
    parser.add_argument("--u-col", help="--csv: column of unique training tokens U (repeated data; "
                                        "enables the data-constrained law)")
    parser.add_argument("--where", action="append", metavar="COLUMN=VALUE",
                        help="--csv: keep only the rows where COLUMN equals VALUE (repeatable)")
    parser.add_argument("--drop-highest-losses", type=int, default=None, metavar="K",
                        help="--csv: leave the K highest losses out of each fit (Epoch's "
                             "Chinchilla preprocessing uses 5); never a held-out run, which the "
                             "extrapolation check and --backtest predict whatever its loss")
    parser.add_argument("--best-per-point", action="store_true",
                        help="--csv: of the rows with the same (N, D), e.g. a learning-rate sweep, "
                             "keep the one with the lowest loss")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="--csv: the columns, preprocessing and law of a published "
                             "analysis (epoch-chinchilla: Model Size, Training FLOP, loss; 5 "
                             "highest losses dropped; Chinchilla's law); explicit flags override "
                             "it")
    parser.add_argument("--law", choices=sorted(LAWS), default=None,
                        help="headline law (default: --results/--wandb: chinchilla for a ladder of "
                             "token budgets per size, else compute; --csv: data_constrained when "
                             "--u-col shows repeated data, else overtraining when the runs have 3 "
                             "or more token budgets per size (median), else chinchilla; with "
                             "--backtest, decided on the runs fitted without the held-out sizes)")
    parser.add_argument("--out", help="output directory (default: fit/ beside the input file)")
    parser.add_argument("--drop-highest", "--hold-out-largest", dest="drop_highest", type=int,
                        default=None, metavar="K",
                        help="extrapolation check: refit without the K largest model sizes (default 1)")
    parser.add_argument("--hold-out-from", type=float, default=None, metavar="N",
                        help="extrapolation check: hold out every run with N >= this instead of "
                             "the largest sizes (not with --drop-highest)")
    parser.add_argument("--backtest", action="store_true",
                        help="also fit every applicable method without the held-out sizes and "
                             "write backtest.json and backtest.md")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples (default {DEFAULT_RESAMPLES}; 0 for none, else 2 "
                             f"to {MAX_RESAMPLES:,})")
    parser.add_argument("--improvement", type=float, default=None,
                        help="loss improvement (nats) whose cost is reported (default "
                             f"{Settings.improvement:g})")
    parser.add_argument("--reducible-fraction", type=float, default=None,
                        help="report where the reducible loss falls below this fraction of E "
                             f"(default {Settings.reducible_fraction:g})")
    parser.add_argument("--isoflop-budgets", metavar="C1,C2,...|chinchilla",
                        help="snap each run to the nearest of these IsoFLOP budgets (FLOPs), or to "
                             "Chinchilla's nine (runs more than 2x from theirs are flagged); "
                             "default: group runs whose FLOPs are within 12%% of a neighbour's, "
                             "no group wider than 0.1 decade (26%%)")
    parser.add_argument("--separate-e", action="store_true",
                        help="--compare: fit each recipe its own irreducible loss E (default: shared)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--wandb-project", help="also log the fit as a W&B run of this project")
    parser.add_argument("--wandb-group", help="its W&B group (default: the sweep's name)")
    return parser


# Options that only some inputs read: given with another input they would do nothing.
CSV_ONLY = ("n_col", "d_col", "c_col", "u_col", "where", "drop_highest_losses", "best_per_point",
            "preset")
NOT_WITH_COMPARE = ("law", "drop_highest", "hold_out_from", "backtest", "improvement",
                    "reducible_fraction", "isoflop_budgets", "wandb_project", "wandb_group",
                    "u_col")
COMPARE_ONLY = ("separate_e",)


def _listed(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_options_apply(args) -> None:
    """An option the chosen input does not read is an error, not silently ignored."""
    given = [option for option in dict.fromkeys(CSV_ONLY + NOT_WITH_COMPARE + COMPARE_ONLY)
             if getattr(args, option) not in (None, False)]
    if args.compare:
        unused = [option for option in given if option in NOT_WITH_COMPARE]
        why = "--compare fits the two recipes' compute frontiers only"
    elif args.results or args.wandb:
        unused = [option for option in given if option in CSV_ONLY + COMPARE_ONLY]
        purposes = [f"{_listed([flag_name(option) for option in unused if option in group])} "
                    f"{'is' if sum(option in group for option in unused) == 1 else 'are'} for {what}"
                    for group, what in ((CSV_ONLY, "--csv"), (COMPARE_ONLY, "--compare"))
                    if any(option in group for option in unused)]
        why = (f"{'--results' if args.results else '--wandb'} reads the columns of a results "
               f"table; {'; '.join(purposes)}")
    else:
        unused = [option for option in given if option in COMPARE_ONLY]
        why = "it is for --compare"
    if unused:
        raise ValueError(f"{', '.join(map(flag_name, unused))}: not used here ({why})")
    if args.wandb_project is not None and not is_wandb_project(args.wandb_project):
        raise ValueError(f"--wandb-project={args.wandb_project!r} is not allowed; need "
                         f"{WANDB_PROJECT_RULE}")
    if args.wandb_group is not None and not args.wandb_project:
        raise ValueError(f"--wandb-group={args.wandb_group!r}: not used here (it is the group of "
                         "the run --wandb-project logs; give --wandb-project too)")
    longest = WANDB_TAG_LIMIT - len(SWEEP_TAG)
    if args.wandb_group is not None and not 0 < len(args.wandb_group) <= longest:
        raise ValueError(f"--wandb-group={args.wandb_group!r} is not allowed; need 1 to {longest} "
                         f"characters (the fit's run is tagged {SWEEP_TAG}<group>, and W&B's "
                         f"tags hold at most {WANDB_TAG_LIMIT})")
    if args.wandb_project and (problem := wandb_environment_problem()):
        raise ValueError(f"--wandb-project: W&B would not start, because {problem}")
    # Unset (None) so that --compare can tell they were not given; the fits' defaults otherwise.
    if args.improvement is None:
        args.improvement = Settings.improvement
    if args.reducible_fraction is None:
        args.reducible_fraction = Settings.reducible_fraction


def _check_resampling(args) -> None:
    # One resample gives no interval: its "95% interval" is that one draw.
    # Each resample is a fit, and their weights one row each: 10^11 asked for 16 TiB at once.
    if args.bootstrap < 0 or args.bootstrap == 1 or args.bootstrap > MAX_RESAMPLES:
        raise ValueError(f"--bootstrap={args.bootstrap} is not allowed; need 0 (no intervals) or "
                         f"2 to {MAX_RESAMPLES:,} resamples")
    if args.seed < 0:  # numpy's own "expected non-negative integer" named no option
        raise ValueError(f"--seed={args.seed} is not allowed; need an integer >= 0")


def _check_settings(args) -> None:
    _check_resampling(args)
    if args.drop_highest is not None and args.drop_highest < 1:
        raise ValueError(f"--drop-highest={args.drop_highest} is not allowed; need at least 1")
    if not 0 < args.improvement < float("inf"):
        raise ValueError(f"--improvement={args.improvement} is not allowed; need a positive, finite "
                         "number of nats")
    if not 0 < args.reducible_fraction < float("inf"):
        raise ValueError(f"--reducible-fraction={args.reducible_fraction} is not allowed; need a "
                         "finite number > 0")
    if args.csv and not (args.n_col and args.loss_col):
        raise ValueError("--csv needs --n-col and --loss-col, and one of --d-col or --c-col "
                         "(or --preset)")
    if args.drop_highest_losses is not None and args.drop_highest_losses < 0:
        raise ValueError(f"--drop-highest-losses={args.drop_highest_losses} is not allowed; need >= 0")
    if args.hold_out_from is not None and not args.hold_out_from > 0:
        raise ValueError(f"--hold-out-from={args.hold_out_from} is not allowed; need a positive N")
    if args.hold_out_from is not None and args.drop_highest is not None:
        raise ValueError(f"--drop-highest={args.drop_highest} is not allowed with --hold-out-from="
                         f"{args.hold_out_from:g}; give one of them")


def _check_input(flag: str, path: str) -> None:
    if not pathlib.Path(path).is_file():
        what = "a directory" if pathlib.Path(path).is_dir() else "no such file"
        raise ValueError(f"--{flag}={path!r} is not allowed: an existing CSV file ({what})")


def _check_hold_out(args, runs) -> None:
    """A held-out set the user asked for (with --backtest, the default one) that the runs cannot
    give (all sizes, or none) is an error; otherwise the default (the largest size) is only
    skipped, with the reason in the report."""
    if args.drop_highest is None and args.hold_out_from is None and not args.backtest:
        return
    try:
        kept = split_largest(runs, args.drop_highest or 1, args.hold_out_from)[0]
        if kept["N"].nunique() < 2:  # one size traces its L(D): there is no law to test
            raise ValueError("it leaves one model size to fit; need at least 2")
    except ValueError as error:
        if args.hold_out_from is not None:
            # split_largest names its own argument: here the flag leads the line once.
            reason = str(error).replace(f"hold_out_from={args.hold_out_from:g} ", "it ", 1)
            raise ValueError(f"--hold-out-from={args.hold_out_from:g} is not allowed: {reason}"
                             ) from None
        sizes = runs["N"].nunique()
        if args.drop_highest is None:
            raise ValueError(f"--backtest is not allowed: the runs have {sizes} model size(s); "
                             "holding out the largest and fitting the others needs at least "
                             "3") from None
        raise ValueError(f"--drop-highest={args.drop_highest} is not allowed: the runs have "
                         f"{sizes} model sizes, and at least 2 must be left to fit; need "
                         f"1 <= K <= {sizes - 2}") from None
    losses = args.drop_highest_losses or 0
    if losses and (losses >= len(kept)
                   or without_highest_losses(kept, losses)["N"].nunique() < 2):
        raise ValueError(f"--drop-highest-losses={losses} is not allowed: of the {len(kept)} runs "
                         "fitted without the held-out ones, it leaves "
                         + ("none" if losses >= len(kept) else "one model size")
                         + "; need at least 2 sizes")


# Everything a fit (a comparison) may write in its --out folder besides the figures of
# analysis.plots.PLOT_FILES, its report first.
FIT_FILES = ("report.md", "fit.json", "backtest.json", "backtest.md")
COMPARE_FILES = ("compare.md", "compare.json", "compare.png")


def _out_dir(path: pathlib.Path, flag: str = "--out", *, create: bool = True,
             writes: tuple[str, ...] = ()) -> pathlib.Path:
    """`path` checked as a folder to write to (a file or a folder in the place of one of the files
    it `writes` is an error), and created unless `create` is False."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}={str(path)!r} is not allowed: a directory (this path is a file)")
    blocking = [name for name in writes if (path / name).is_dir()]
    if blocking:
        raise ValueError(f"{flag}={str(path)!r} is not allowed: it holds a folder "
                         f"{blocking[0]}, where the fit writes that file")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag}={str(path)!r} is not allowed: a directory that can be created "
                         f"({error.strerror})") from None
    return path


@contextlib.contextmanager
def _outputs_written(folder: pathlib.Path, names: tuple[str, ...]):
    """`files.staged_outputs` of `names` in `folder`, where a write the file system refuses (a
    full disk, a read-only folder) is a ValueError naming --out: the command says it in one
    line, and the earlier outputs stay whole."""
    try:
        with files.staged_outputs(folder, names) as stage:
            yield stage
    except OSError as error:
        raise ValueError(f"--out={str(folder)!r}: cannot be written ({error.strerror or error})"
                         ) from None


def _apply_preset(args) -> None:
    """The preset's fields where the command line gives none; then a law that has no use for
    --u-col, given either way, refuses it."""
    # --d-col and --c-col are two ways to give the second variable: either one overrides both.
    overridden = {"d_col", "c_col"} if args.d_col or args.c_col else set()
    for key, value in (PRESETS[args.preset].items() if args.preset else ()):
        if getattr(args, key) is None and key not in overridden:
            setattr(args, key, value)
            if key == "law":
                args.law_from_preset = True
    if args.u_col and args.law not in (None, DATA_CONSTRAINED):
        law = (f"{_law_source(args)}, {args.law}," if getattr(args, "law_from_preset", False)
               else _law_source(args))
        raise ValueError(f"--u-col: not used here ({law} has no unique-token term; only --law "
                         f"{DATA_CONSTRAINED} reads it)")


def _law_source(args) -> str:
    """Where the headline law comes from, in the messages: the preset's, --law's, or the rule
    that picks one for the runs."""
    if getattr(args, "law_from_preset", False):
        return f"the law of --preset {args.preset}"
    return f"--law {args.law}" if args.law else "the law the fit leads with"


def _parse_budgets(text: str) -> tuple[float, ...]:
    if text == "chinchilla":
        return CHINCHILLA_ISOFLOP_BUDGETS
    try:
        budgets = tuple(float(part) for part in text.split(","))
    except ValueError:
        budgets = ()
    if not budgets or not all(0 < budget < float("inf") for budget in budgets):
        raise ValueError(f"--isoflop-budgets={text!r} is not allowed; give positive, finite FLOP "
                         "counts separated by commas, or 'chinchilla'")
    return budgets


def far_from_budget(flops: np.ndarray, budgets: np.ndarray) -> list[tuple[float, float]]:
    """(budget, factor) for each budget some run was snapped to from more than FAR_FROM_BUDGET
    times away, with the largest such factor between the budget and a run's compute `flops`:
    whether or not the IsoFLOP profiles could then be fitted."""
    flops, budgets = np.asarray(flops, dtype=float), np.asarray(budgets, dtype=float)
    off = np.exp(np.abs(np.log(flops / budgets)))
    farthest = [(float(budget), float(off[budgets == budget].max()))
                for budget in np.unique(budgets)]
    return [(budget, factor) for budget, factor in farthest if factor > FAR_FROM_BUDGET]


def run(args) -> pathlib.Path:
    """Load, analyse and write everything; returns the output directory. Nothing is written
    until everything is computed; each file is replaced atomically, report.md last."""
    from analysis.plots import PLOT_FILES, write_plots
    from analysis.report import json_ready, render_report, repeating_note, write_fit_json

    _check_options_apply(args)
    _apply_preset(args)
    _check_settings(args)
    data_summary, curves, convention = {}, None, "6N"
    flag = "csv" if args.csv else "results" if args.results else "wandb"
    _check_input(flag, getattr(args, flag))
    if args.csv:
        where = parse_filters(args.where)
        # Every run read: the highest losses are left out of each fit (Settings), never of the
        # runs held out to be predicted.
        runs = read_named_csv(args.csv, n_col=args.n_col, d_col=args.d_col, c_col=args.c_col,
                              loss_col=args.loss_col, where=where,
                              best_per_point=args.best_per_point, u_col=args.u_col)
        input_path = pathlib.Path(args.csv)
        # C is 6·N·D with N whatever the column holds; say which.
        convention = f"6ND with N = column '{args.n_col}'"
        if args.c_col:
            convention = f"C = column '{args.c_col}'; D = C/(6N) with N = column '{args.n_col}'"
        copies = [{"name": f"line {line}", "reason": f"repeats line {first} in every column"}
                  for line, first in runs.attrs["duplicates"]]
        data_summary.update(source=str(input_path), where=where, loss_column=args.loss_col,
                            dropped_highest_losses=args.drop_highest_losses or 0, excluded=copies,
                            best_per_point=bool(args.best_per_point), rows=runs.attrs["rows"],
                            points=len(runs), point=runs.attrs["point"])
    else:
        input_path = pathlib.Path(args.results or args.wandb)
        loss_column = args.loss_col or "final_eval_loss"
        sweep = (read_results(input_path, loss_column) if args.results
                 else read_wandb_export(input_path, loss_column))
        runs, curves, convention = sweep.runs, sweep.curves, sweep.flop_convention
        data_summary.update(sweep_summary(sweep, loss_column))
        if args.results:  # a table the data-constrained form can be fitted to with --csv
            data_summary["results"] = str(input_path)
        if sweep.repeating:
            note = repeating_note(sweep.repeating, data_summary.get("results"),
                                  data_summary["n_column"])
            print(f"scaling-fit: note: {note}", file=sys.stderr)
    _check_hold_out(args, runs)
    drop_largest, drop_losses = args.drop_highest or 1, args.drop_highest_losses or 0
    # With --backtest the default law is decided on the runs the backtest fits, so that its
    # headline method never depends on the held-out runs, not even on their shape.
    basis, which = without_highest_losses(runs, drop_losses), "these runs"
    if args.backtest:
        basis = split_largest(runs, drop_largest, args.hold_out_from, drop_losses)[0]
        which = "the runs fitted without the held-out ones"
    default_law, fallback = (headline_law(basis) if args.csv else None), None
    if args.law is None:
        default_law, fallback = pipeline_default_law(basis, default_law, which)
        if fallback:  # not asked for: L(C) leads, and the report says why
            data_summary["headline_note"] = fallback
            fallback += "; the headline law is compute"
    settings = Settings(law=args.law or default_law, num_resamples=args.bootstrap, seed=args.seed,
                        improvement=args.improvement, reducible_fraction=args.reducible_fraction,
                        drop_largest=drop_largest, hold_out_from=args.hold_out_from,
                        drop_highest_losses=drop_losses)
    # Checked now, created only once everything is computed: a failed fit leaves no folder.
    out_dir = _out_dir(pathlib.Path(args.out) if args.out else input_path.parent / "fit",
                       create=False, writes=FIT_FILES + PLOT_FILES)
    budgets = (snap_to_budgets(runs["C"].to_numpy(), _parse_budgets(args.isoflop_budgets))
               if args.isoflop_budgets else None)
    try:
        analysis = analyze(runs, settings, curves=curves, budgets=budgets,
                           flop_convention=convention, data_summary=data_summary)
    except LawNotFitted as error:
        if fallback:  # the user asked for neither law: say why each is out
            raise ValueError(f"{fallback}, and {error.law} cannot be fitted either: "
                             f"{error.reason}") from None
        if args.law:
            raise ValueError(f"--law={args.law!r} is not allowed for these runs: "
                             f"{error.reason}") from None
        raise ValueError(f"{error.law}, the default for {which}, cannot be fitted: "
                         f"{error.reason} (choose another with --law)") from None
    backtest = (run_backtest(runs, drop_largest=drop_largest, hold_out_from=args.hold_out_from,
                             drop_highest_losses=drop_losses, num_resamples=args.bootstrap, seed=args.seed, headline=settings.law,
                             headline_reason=_law_source(args))
                if args.backtest else None)
    if fallback:  # once the fits have succeeded: a failed one is its error line alone
        print(f"scaling-fit: note: {fallback}", file=sys.stderr)
    far = far_from_budget(runs["C"].to_numpy(), budgets) if budgets is not None else []
    if far:
        where = ", ".join(f"C = {budget:.3g}: x{factor:.3g}" for budget, factor in far)
        print(f"scaling-fit: warning: --isoflop-budgets: some runs are more than "
              f"{FAR_FROM_BUDGET:g}x from the budget they were snapped to ({where}); each such "
              "profile mixes runs of different compute", file=sys.stderr)
    if args.csv:
        for row in data_summary["excluded"]:
            print(f"scaling-fit: note: left out {row['name']} of {input_path}: it {row['reason']}",
                  file=sys.stderr)
        if runs.attrs.get("merged_sizes"):
            given, sizes = runs.attrs["merged_sizes"]
            print(f"scaling-fit: note: {given} values of {args.n_col!r} in {input_path} are "
                  f"{sizes} model sizes: values within {SAME_SIZE_TOLERANCE:.0e} of each other "
                  "(relative) are taken as one size", file=sys.stderr)
        if runs.attrs.get("shared_points"):
            print(f"scaling-fit: note: {runs.attrs['shared_points']} {runs.attrs['point']} "
                  f"point(s) of {input_path} have several rows with different losses (another setting swept "
                  "at each?), each fitted as a point; --best-per-point keeps the lowest",
                  file=sys.stderr)
    # The earlier fit's files are replaced all together once every new one is written, so that
    # the folder holds one fit's files, and a fit stopped part-way leaves the earlier one whole.
    with _outputs_written(_out_dir(out_dir), FIT_FILES + PLOT_FILES) as stage:
        write_fit_json(analysis, stage / "fit.json")
        plots = write_plots(analysis, stage)
        if backtest is not None:
            files.write_text_atomic(stage / "backtest.json",
                                    json.dumps(json_ready(backtest), indent=2) + "\n")
            files.write_text_atomic(stage / "backtest.md",
                                    render_backtest(backtest, f"Backtest: {input_path.name}"))
        files.write_text_atomic(stage / "report.md", render_report(analysis, plots))
        interrupts.check()  # a Ctrl-C taken by no KeyboardInterrupt replaces nothing
    _print_summary(analysis.summary)
    return out_dir


def _recipe_frontier(path: str, args, columns: set[str], other_is_results: bool):
    """The compute frontier of one recipe's runs (a CSV of `columns`), the loss column it used,
    its FLOP convention, its runs' objectives and the runs it left out: a results.csv (with its curves.csv) with its
    loss from --loss-col, or from final_eval_loss when --loss-col is absent or names the column of
    the other recipe's plain CSV; or a CSV named with --n-col etc."""
    from analysis.inputs import RESULTS_COLUMNS, table_objectives
    from analysis.pipeline import compute_frontier, one_size_reason

    loss_column = args.loss_col or "final_eval_loss"
    convention, objectives, excluded = None, [], []
    if set(RESULTS_COLUMNS) <= columns:
        if loss_column not in columns and not other_is_results:
            loss_column = "final_eval_loss"
        sweep = read_results(path, loss_column)
        runs, curves, convention = sweep.runs, sweep.curves, sweep.flop_convention
        objectives = table_objectives(runs)
        excluded = sweep.excluded.to_dict("records")
    else:
        if not (args.n_col and args.loss_col):
            raise ValueError(f"{path}: not a results.csv; name its columns with --n-col, --loss-col "
                             "and --d-col or --c-col")
        runs = read_named_csv(path, n_col=args.n_col, d_col=args.d_col, c_col=args.c_col,
                              loss_col=args.loss_col, where=parse_filters(args.where),
                              drop_highest_losses=args.drop_highest_losses or 0,
                              best_per_point=args.best_per_point)
        if "name" not in runs.columns:
            runs = runs.assign(name=[f"run{i}" for i in range(len(runs))])
        curves = None
        if args.d_col:  # C = 6ND: the 6N convention, checked against the other recipe's
            convention = "6N"
    reason = one_size_reason(runs, f"the runs of {path}")
    if reason:  # compared as a law across sizes, one size's L(D) gave a confident multiplier
        raise ValueError(f"--compare: {reason}")
    return (compute_frontier(runs, curves, Settings()), loss_column, convention, objectives,
            excluded)


def run_compare(args) -> pathlib.Path:
    """`--compare A B`: the joint fit, the multiplier table and the figure."""
    from analysis.compare import (compare_recipes, crossing_sentence, multiplier_identified,
                                  render_comparison)
    from analysis.inputs import (RESULTS_COLUMNS, SHARED_LOSS_COLUMNS, SHARED_LOSS_HINT,
                                 csv_columns)
    from analysis.plots import LOSS_LABEL, plot_comparison
    from analysis.report import json_ready

    _check_options_apply(args)
    _check_resampling(args)
    path_a, path_b = args.compare
    for path in (path_a, path_b):
        _check_input("compare", path)
    columns = [set(csv_columns(path)) for path in (path_a, path_b)]
    results = [set(RESULTS_COLUMNS) <= names for names in columns]
    unread = [option for option in CSV_ONLY if getattr(args, option) not in (None, False)]
    if all(results) and unread:
        raise ValueError(f"{', '.join(map(flag_name, unread))}: not used here (both inputs are "
                         "results tables, read by their own columns)")
    if os.path.samefile(path_a, path_b):
        raise ValueError(f"--compare: {path_a} and {path_b} are one file; compare two recipes' "
                         "tables")
    _apply_preset(args)
    (frontier_a, column_a, convention_a, objectives_a, excluded_a), (
        frontier_b, column_b, convention_b, objectives_b, excluded_b) = (
        _recipe_frontier(path_a, args, columns[0], results[1]),
        _recipe_frontier(path_b, args, columns[1], results[0]))
    shared = column_a == column_b and column_a in SHARED_LOSS_COLUMNS
    if objectives_a and objectives_b and objectives_a != objectives_b and not shared:
        losses = column_a if column_a == column_b else f"{column_a} and {column_b}"
        raise ValueError(f"--compare: {path_a} holds runs of train.objective "
                         f"{', '.join(objectives_a)} and {path_b} of {', '.join(objectives_b)}: "
                         f"their {losses} are different quantities; compare a loss both score "
                         f"alike, {SHARED_LOSS_HINT}")
    if convention_a and convention_b and convention_a != convention_b:
        raise ValueError(f"--compare: {path_a} counts FLOPs by the {convention_a!r} convention and "
                         f"{path_b} by {convention_b!r}; compute multipliers need one convention "
                         "(run both sweeps with the same train.flop_convention)")
    if (convention_a is None) != (convention_b is None):  # a --c-col CSV's count is its own
        given = path_a if convention_a is None else path_b
        print(f"scaling-fit: warning: --compare: {given} gives its FLOPs in --c-col "
              f"{args.c_col!r}, by a convention not known here, and the other recipe counts them "
              f"by {convention_a or convention_b!r}: the multipliers hold only if both count "
              "alike",
              file=sys.stderr)
    needed = get_law("compute").num_params  # each recipe's own L(C) starts the joint fit
    for path, frontier in ((path_a, frontier_a), (path_b, frontier_b)):
        if frontier.flops.size < needed:
            raise ValueError(f"--compare: {path} has {frontier.flops.size} point(s) on its "
                             f"compute-efficient frontier; its L(C) needs at least {needed} "
                             "(more runs, or runs at more compute budgets)")
    out_dir = _out_dir(pathlib.Path(args.out) if args.out
                       else pathlib.Path(path_b).parent / "compare", create=False,
                       writes=COMPARE_FILES)
    comparison = compare_recipes(frontier_a, frontier_b, shared_irreducible=not args.separate_e,
                                 num_resamples=args.bootstrap, seed=args.seed)
    _out_dir(out_dir)
    summary = dict(comparison.summary, A=str(path_a), B=str(path_b),
                   loss_columns={"A": column_a, "B": column_b},
                   flop_convention=convention_a or convention_b,
                   excluded={"A": excluded_a, "B": excluded_b})
    for path, excluded in ((path_a, excluded_a), (path_b, excluded_b)):
        for row in excluded:
            print(f"scaling-fit: note: left out {row['name']} of {path}: {row['reason']}",
                  file=sys.stderr)
    loss_label = LOSS_LABEL
    if column_a == column_b and column_a != "final_eval_loss":
        loss_label = f"{column_a} (nats/token)"
    with _outputs_written(out_dir, COMPARE_FILES) as stage:  # as a fit's (`run`)
        files.write_text_atomic(stage / "compare.json",
                                json.dumps(json_ready(summary), indent=2) + "\n")
        plot_comparison(comparison, stage / "compare.png", (path_a, path_b), loss_label,
                        convention_a or convention_b)
        files.write_text_atomic(stage / "compare.md",
                                render_comparison(summary, (path_a, path_b)))
        interrupts.check()
    for row in summary["multiplier"]:
        interval = ("" if "ci_low" not in row or np.isnan(row["ci_low"]) else
                    f" ({row['ci_level']:.0%} interval {row['ci_low']:.3g} to {row['ci_high']:.3g})")
        print(f"C = {row['C']:.3g} FLOPs: B is worth {row['value']:.3g}x A's compute{interval}"
              if multiplier_identified(row) else
              f"C = {row['C']:.3g} FLOPs: B's worth in A's compute not identified (point fit "
              f"{row['value']:.3g}x){interval}")
    for flag in summary["diagnostics"]:
        print(f"scaling-fit: warning: {flag['parameter']}: {flag['problem']}; would help: "
              f"{flag['fix']}", file=sys.stderr)
    print(crossing_sentence(summary))
    return out_dir


def _with_interval(name: str, parameter: dict) -> str:
    """`name = value (95% CI low – high)`; the value alone when there was no bootstrap."""
    low, high = parameter.get("ci_low", float("nan")), parameter.get("ci_high", float("nan"))
    if np.isnan(low) or np.isnan(high):
        from analysis.report import failed_resamples_note

        note = (f" ({failed_resamples_note(parameter)})" if "failed_resamples" in parameter
                else "")
        return f"{name} = {parameter['value']:.4g}{note}"
    return (f"{name} = {parameter['value']:.4g} ({parameter['ci_level']:.0%} CI {low:.3g} – "
            f"{high:.3g})")


def _print_summary(summary: dict) -> None:
    """The headline law with each parameter's bootstrap interval, and its extrapolation error,
    on stdout; diagnostics on stderr."""
    params = ", ".join(_with_interval(name, summary[name])
                       for name in summary["fits"][summary["law"]]["params"])
    print(f"{summary['law']}: {summary['formula']} with {params}")
    check = summary["extrapolation"].get(summary["law"])
    if check is not None:
        coverage = ("" if check.get("coverage") is None else
                    f", {check['coverage']:.0%} inside their {check['interval_level']:.0%} intervals")
        print(f"extrapolation to the {check['n_held_out']} held-out run(s): mean |relative error| "
              f"{check['mean_abs_relative_error']:.2%}, max {check['max_abs_relative_error']:.2%}{coverage}")
    else:  # said where the law is, not only in the report
        reason = summary.get("skipped", {}).get(f"extrapolation_{summary['law']}", "not run")
        print(f"no extrapolation check: {reason}")
    fits = dict(summary["fits"], isoflop=summary.get("isoflop") or {})
    for name, fit in fits.items():
        for flag in fit.get("diagnostics", []):
            print(f"scaling-fit: warning: {name}: {flag['problem']}; would help: {flag['fix']}",
                  file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if empty := empty_option(args):
            raise ValueError(f"{empty[0]}={empty[1]!r} is not allowed; need a value (this one "
                             "is empty)")
        if args.download_chinchilla:
            others = [name for name, value in vars(args).items()
                      if name != "download_chinchilla" and value != parser.get_default(name)]
            if others:
                raise ValueError(f"{', '.join(map(flag_name, others))}: not used here "
                                 "(--download-chinchilla only saves the data; fit it with --csv)")
            folder = pathlib.Path(args.download_chinchilla)
            _out_dir(folder, "--download-chinchilla", create=False)  # once the file is in hand
            path = download_chinchilla(folder)
            print(f"saved {path}")
            return 0
        out_dir = run_compare(args) if args.compare else run(args)
    except (ValueError, RuntimeError) as error:
        print(f"scaling-fit: error: {error}", file=sys.stderr)
        return 2
    written = "compare.json, compare.md and compare.png" if args.compare else "fit.json, report.md and plots"
    print(f"wrote {out_dir}/{written} in {time.perf_counter() - started:.1f} s")
    if args.wandb_project:
        from analysis.wandb_log import log_fit

        try:
            where = log_fit(out_dir, pathlib.Path(args.results or args.csv or args.wandb),
                            args.wandb_project, args.wandb_group)
        except Exception as error:  # W&B is best effort, as for a training run: the fit is written
            from scaling.tracking import one_line

            reason = one_line(error)
            print(f"scaling-fit: warning: W&B could not log the fit ({type(error).__name__}"
                  f"{': ' + reason if reason else ''}); the fit is in {out_dir}", file=sys.stderr)
        else:
            print(f"W&B fit run: {where}" if where else
                  "note: the fit was not logged to W&B: $WANDB_MODE=disabled turns W&B off")
    return 0

"""Seed replicates of the demo ladder: how much of its extrapolation error is the held-out runs' own
run-to-run noise, and how much the law's?

Trains the demo sweep (`configs/sweeps/demo.py`) at `--seeds` seeds — seed 0 in `runs/demo`, the
workdir `make demo` writes, seed k in `runs/demo-seed<k>`; `scaling-sweep` reuses finished runs —
then reports
- each size's seed-to-seed spread at each token budget (sample standard deviation, % of the mean);
- Chinchilla's L(N, D) fitted without the largest size, for each seed's runs and for the mean over
  seeds (`analysis.inputs.average_seeds`, as `scaling-fit` fits a sweep with `seeds`), and its
  relative error at each of the largest size's runs;
- the same one size down (fitted without the two largest sizes, predicting the second largest).

Writes the `demo_seeds` section of BENCHMARKS.md.

Run: python -m bench.bench_demo_seeds [--seeds 3] [--root runs]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.inputs import average_seeds, read_results
from analysis.pipeline import Settings, extrapolation_check
from bench.record import at_least, markdown_table, record

SWEEP = "configs/sweeps/demo.py"
LAW = "chinchilla"


def seed_workdir(root: pathlib.Path, seed: int) -> pathlib.Path:
    return root / ("demo" if seed == 0 else f"demo-seed{seed}")


def train_seed(root: pathlib.Path, seed: int) -> pd.DataFrame:
    """The demo sweep's runs at `seed` (trained unless finished), as the fit reads them."""
    workdir = seed_workdir(root, seed)
    command = [sys.executable, "-m", "launch.sweep", "--config", SWEEP, "--workdir", str(workdir)]
    if seed:
        command += [f"--config.overrides.seed={seed}", f"--config.name=demo-seed{seed}"]
    subprocess.run(command, check=True)
    runs = read_results(workdir / "results.csv").runs
    if seed:  # named as a sweep with `seeds` names its replicates, for `average_seeds`
        runs["name"] = runs["name"].str.replace(f"demo-seed{seed}-", "demo-") + f"-s{seed}"
    return runs


def held_out_errors(runs: pd.DataFrame, drop_largest: int) -> pd.Series:
    """Relative error (%) of the law fitted without the `drop_largest` largest sizes at each run of
    the largest size it was fitted without, by D."""
    sizes = np.sort(runs["N"].unique())
    kept = runs[runs["N"] <= sizes[len(sizes) - drop_largest]]
    check = extrapolation_check(LAW, kept.reset_index(drop=True), None,
                                Settings(num_resamples=0, parametric_law=LAW), None)
    held_out = check.held_out
    return pd.Series(100 * held_out["relative_error"].to_numpy(), index=held_out["D"].to_numpy()
                     ).sort_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=at_least(2), default=3)  # a spread needs two
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("runs"))
    args = parser.parse_args(argv)
    by_seed = {seed: train_seed(args.root, seed) for seed in range(args.seeds)}
    stacked = pd.concat([runs.assign(seed=seed) for seed, runs in by_seed.items()])
    mean, _ = average_seeds(stacked.reset_index(drop=True))
    if not (mean["seeds"] == args.seeds).all():
        raise SystemExit("the seeds' sweeps do not have the same runs, each completed")

    budgets = sorted(mean["D"].unique())
    spread = (100 * mean["seed_sd"] / mean["loss"]).groupby([mean["size"], mean["D"]]).first()
    by_size = mean.groupby("size")["N"].first().sort_values().index
    spread_rows = [[size] + [f"{spread[size, d]:.2f}%" for d in budgets] for size in by_size]
    millions = [f"{d / 1e6:.0f}M" for d in budgets]
    spread_table = markdown_table(["size"] + millions, spread_rows)

    rows = []
    for drop in (1, 2):
        target = by_size[-drop]
        for label, runs in [*((f"seed {seed}", by_seed[seed]) for seed in by_seed),
                            (f"mean of {args.seeds} seeds", mean)]:
            errors = held_out_errors(runs, drop)
            rows.append([target, label] + [f"{errors[d]:+.2f}%" for d in budgets]
                        + [f"{errors.abs().max():.2f}%"])
    error_table = markdown_table(["held out", "fitted to"] + millions + ["max"], rows)
    body = (f"Seed-to-seed spread of the final held-out loss (sample sd over {args.seeds} seeds, % "
            f"of the mean), by size and token budget:\n\n{spread_table}\n"
            f"Relative error of {LAW}'s L(N, D), fitted without the held-out size and every size "
            f"above it, at the held-out size's runs (+: predicted above measured):\n\n"
            f"{error_table}")
    print(body)
    record("demo_seeds", "The demo's extrapolation across seeds", body)


if __name__ == "__main__":
    main()

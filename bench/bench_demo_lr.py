"""Is the demo's learning rate right at every size? A grid around it, at the demo's own settings.

For every size of the demo sweep (`configs/sweeps/demo.py`, as `scaling-sweep` plans it), trains
its budget nearest `--tokens` as an independent WSD run (the branch's settings without the parent)
at that size's learning rate times each `--factors` entry, for each of `--seeds` seeds, and
reports the final held-out losses (mean over seeds) with each size's best. Writes the `demo_lr`
section of BENCHMARKS.md.

Run: python -m bench.bench_demo_lr [--tokens 2000000] [--factors 0.5,1,2] [--seeds 2]
    [--processes 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import pathlib
import statistics
import tempfile

from bench.bench_ladder import SWEEP, independent_overrides, train_planned
from bench.record import at_least, markdown_table, record
from launch.sweep import load_plan


def factor_list(text: str) -> list[float]:
    """An argparse `type`: comma-separated learning-rate factors, each a number > 0."""
    try:
        factors = [float(factor) for factor in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") \
            from None
    if not all(0 < factor < float("inf") for factor in factors):
        raise argparse.ArgumentTypeError(f"{text!r}: every factor must be a finite number > 0")
    return factors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=at_least(1), default=2_000_000)
    parser.add_argument("--factors", type=factor_list, default="0.5,1,2")
    parser.add_argument("--seeds", type=at_least(1), default=2)
    parser.add_argument("--processes", type=at_least(1), default=2)
    args = parser.parse_args(argv)
    factors = sorted({1.0, *args.factors})
    sweep, base_config, runs = load_plan(SWEEP, [])
    sizes = [run.size for run in runs if not run.parent]
    chosen = {size: min((run for run in runs if run.size == size),
                        key=lambda run: abs(run.tokens - args.tokens)) for size in sizes}
    rate = {size: run.overrides["optim.lr"] for size, run in chosen.items()}
    seeds = range(args.seeds)  # seed 0 is the demo's
    with tempfile.TemporaryDirectory() as root, \
            concurrent.futures.ThreadPoolExecutor(args.processes) as pool:
        jobs = {}
        for size, run in chosen.items():
            alone = independent_overrides(run)
            for factor, seed in itertools.product(factors, seeds):
                lr = rate[size] * factor
                jobs[size, factor, seed] = pool.submit(
                    train_planned, run, base_config, pathlib.Path(root),
                    name=f"{run.name}-lr{lr:g}-s{seed}",
                    overrides={**alone, "optim.lr": lr, "seed": seed})
        finals = {key: job.result()["final_eval_loss"] for key, job in jobs.items()}
    losses = {(size, factor): statistics.mean(finals[size, factor, seed] for seed in seeds)
              for size in chosen for factor in factors}

    def label(factor: float) -> str:
        return f"×{factor:g}" + (" (demo)" if factor == 1.0 else "")

    rows = []
    for size, run in chosen.items():
        best = min(factors, key=lambda factor: losses[size, factor])
        cells = [f"**{losses[size, f]:.4f}**" if f == best else f"{losses[size, f]:.4f}"
                 for f in factors]
        gap = losses[size, 1.0] - losses[size, best]
        spread = (f"{statistics.stdev(finals[size, 1.0, seed] for seed in seeds):.4f}"
                  if args.seeds > 1 else "n/a")
        rows.append([size, f"{run.tokens:,}", f"{rate[size]:.3g}", *cells,
                     label(best).replace(" (demo)", ""),
                     f"{gap:.4f} ({100 * gap / losses[size, best]:.1f}%)",
                     spread])
    table = markdown_table(["size", "D tokens", "demo's lr", *map(label, factors), "best",
                            "demo's rate above the best", "seed sd at the demo's rate"], rows)
    which = (f"seed {seeds.start}" if len(seeds) == 1
             else f"mean of seeds {seeds.start}–{seeds.stop - 1}")
    body = (f"{table}\n\nFinal held-out loss ({which}) of independent WSD runs with the demo "
            f"sweep's settings ({sweep.overrides.to_dict()}) but the learning rate, each size's "
            "rate times the column's factor; each size's weight decay is the sweep's (its "
            "size_overrides).\n")
    print(body)
    record("demo_lr", "The demo's learning rate at every size", body)


if __name__ == "__main__":
    main()

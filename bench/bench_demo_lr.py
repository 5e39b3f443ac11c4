"""Is the demo's learning rate right at every size? A grid around it, at the demo's own settings.

For every size of the demo sweep (`configs/sweeps/demo.py`, as `scaling-sweep` plans it), trains
its budget nearest `--tokens` as an independent WSD run (the branch's settings without the parent)
at the sweep's learning rate times each `--factors` entry, and reports the final held-out losses
with each size's best. Under µP one rate serves every width; this shows whether it does here.
Writes the `demo_lr` section of BENCHMARKS.md.

Run: python -m bench.bench_demo_lr [--tokens 2000000] [--factors 0.5,1,2] [--processes 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import pathlib
import tempfile

from bench.bench_ladder import SWEEP, independent_overrides, train_planned
from bench.record import markdown_table, record
from launch.sweep import load_plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2_000_000)
    parser.add_argument("--factors", default="0.5,1,2")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    factors = sorted({1.0, *(float(factor) for factor in args.factors.split(","))})
    sweep, base_config, runs = load_plan(SWEEP, [])
    sizes = [run.size for run in runs if not run.parent]
    chosen = {size: min((run for run in runs if run.size == size),
                        key=lambda run: abs(run.tokens - args.tokens)) for size in sizes}
    rate = sweep.overrides.optim.lr
    rates = [rate * factor for factor in factors]
    with tempfile.TemporaryDirectory() as root, \
            concurrent.futures.ThreadPoolExecutor(args.processes) as pool:
        jobs = {}
        for size, run in chosen.items():
            alone = independent_overrides(run)
            for lr in rates:
                jobs[size, lr] = pool.submit(
                    train_planned, run, base_config, pathlib.Path(root),
                    name=f"{run.name}-lr{lr:g}", overrides={**alone, "optim.lr": lr})
        losses = {key: job.result()["final_eval_loss"] for key, job in jobs.items()}

    def label(lr: float) -> str:
        return f"2^{math.log2(lr):g}" + (" (demo)" if lr == rate else "")

    rows = []
    for size, run in chosen.items():
        best = min(rates, key=lambda lr: losses[size, lr])
        cells = [f"**{losses[size, lr]:.4f}**" if lr == best else f"{losses[size, lr]:.4f}"
                 for lr in rates]
        gap = losses[size, rate] - losses[size, best]
        rows.append([size, f"{run.tokens:,}", *cells, label(best).replace(" (demo)", ""),
                     f"{gap:.4f} ({100 * gap / losses[size, best]:.1f}%)"])
    table = markdown_table(["size", "D tokens", *map(label, rates), "best",
                            "demo's rate above the best"], rows)
    body = (f"{table}\n\nFinal held-out loss of independent WSD runs with the demo sweep's "
            f"settings ({sweep.overrides.to_dict()}, µP) but the learning rate.\n")
    print(body)
    record("demo_lr", "The demo's learning rate at every size", body)


if __name__ == "__main__":
    main()

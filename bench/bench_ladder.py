"""Cooldown branches against independent runs: is a branch at D the run of D tokens?

For one size of the demo sweep (`configs/sweeps/demo.py`, its runs exactly as `scaling-sweep`
plans them), trains
- the size's main WSD run, which saves its stable state where each branch starts its cooldown,
  and its branch nearest `--tokens`;
- independent WSD runs of that branch's budget from scratch (the branch's settings without the
  parent) with `--seeds` seeds (seed 0 is the parent's);
and reports the branch's final held-out loss, the seed-0 independent run's, their difference, the
seed-to-seed spread (sample standard deviation) and the final evaluation's own noise (standard
error over its batches); then the main run again with the other seeds, for the spread at the
largest budget. Writes the `ladder` section of BENCHMARKS.md.

Run: python -m bench.bench_ladder [--size d64-L2] [--tokens 1000000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

from bench.record import at_least, markdown_table, record
from launch.plans import PlannedRun
from launch.sweep import load_plan, run_directory, train_command

SWEEP = "configs/sweeps/demo.py"
# Not what is measured: no W&B, no periodic checkpoints (the stable states are saved regardless).
QUIET = {"wandb.mode": "disabled", "checkpoint.every_steps": 0}


def train_planned(run: PlannedRun, base_config: str, root: pathlib.Path, *, name: str = "",
                  overrides: dict | None = None) -> dict:
    """Train a planned run (under another `name`, with its `overrides` replaced if given) in
    `root/runs/<name>` with `scaling-sweep`'s own command line; return its summary."""
    run = dataclasses.replace(run, name=name or run.name,
                              overrides={**(run.overrides if overrides is None else overrides),
                                         **QUIET})
    subprocess.run(train_command(run, base_config, root), check=True, capture_output=True,
                   text=True)
    return json.loads((run_directory(root, run.name) / "summary.json").read_text())


def independent_overrides(run: PlannedRun) -> dict:
    """The planned run as a run of its own: no parent to start from, no states to save."""
    return {key: value for key, value in run.overrides.items()
            if key not in ("train.init_from", "train.init_step", "train.branch_steps")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="d64-L2")
    parser.add_argument("--tokens", type=at_least(1), default=1_000_000)
    parser.add_argument("--seeds", type=at_least(2), default=3)  # their spread needs two
    args = parser.parse_args(argv)
    _, base_config, runs = load_plan(SWEEP, [])
    sizes = [run.size for run in runs if not run.parent]
    if args.size not in sizes:
        parser.error(f"--size={args.size!r} is not a size of the demo sweep ({', '.join(sizes)})")
    main_run = next(run for run in runs if run.size == args.size and not run.parent)
    branch_run = min((run for run in runs if run.parent == main_run.name),
                     key=lambda run: abs(run.tokens - args.tokens))
    steps, start = branch_run.steps, branch_run.start_step
    alone = independent_overrides(branch_run)
    with tempfile.TemporaryDirectory() as root:
        root = pathlib.Path(root)
        main_losses = [train_planned(main_run, base_config, root)["final_eval_loss"]]
        branch = train_planned(branch_run, base_config, root)
        independent = [train_planned(branch_run, base_config, root, name=f"seed{seed}",
                                     overrides={**alone, "seed": seed})
                       for seed in range(args.seeds)]
        main_losses += [train_planned(main_run, base_config, root, name=f"main-seed{seed}",
                                      overrides={**independent_overrides(main_run), "seed": seed}
                                      )["final_eval_loss"]
                        for seed in range(1, args.seeds)]
    losses = [run["final_eval_loss"] for run in independent]
    spread = statistics.stdev(losses)
    difference = branch["final_eval_loss"] - losses[0]
    rows = [[args.size, f"{branch_run.tokens:,}", f"{branch['final_eval_loss']:.5f}",
             f"{losses[0]:.5f}", f"{difference:+.2e}", f"{spread:.5f}",
             f"{branch['final_eval_stderr']:.5f} "
             f"({100 * branch['final_eval_stderr'] / branch['final_eval_loss']:.2f}%)",
             f"{branch['final_eval_tokens']:,}"]]
    table = markdown_table(["size", "D tokens", "branch loss", "independent (seed 0)",
                            "difference", f"seed spread (sd, {args.seeds} seeds)",
                            "final-eval stderr", "eval tokens"], rows)
    body = (f"{table}\n\nIndependent losses by seed: {', '.join(f'{x:.5f}' for x in losses)}. "
            f"The branch starts from the {main_run.steps}-step main run at step {start} (its "
            f"cooldown is the last {steps - start} of {steps} steps). |difference| / seed spread "
            f"= {abs(difference) / spread:.2g}.\n\nAt the main run's budget "
            f"({main_run.tokens:,} tokens) the {args.seeds} seeds give "
            f"{', '.join(f'{x:.5f}' for x in main_losses)}: spread (sd) "
            f"{statistics.stdev(main_losses):.5f} "
            f"({100 * statistics.stdev(main_losses) / statistics.mean(main_losses):.2f}% of the "
            f"loss).\n")
    print(body)
    record("ladder", "Cooldown branches against independent runs", body)


if __name__ == "__main__":
    main()

"""Cooldown branches against independent runs: is a branch at D the run of D tokens?

For one demo size (µP, the demo sweep's learning rate and WSD schedule), trains
- a parent WSD run of `--parent-tokens` that saves its stable state where a run of `--tokens`
  starts its cooldown, and the branch of `--tokens` from it;
- independent WSD runs of `--tokens` from scratch with `--seeds` seeds (seed 0 is the parent's);
and reports the branch's final held-out loss, the seed-0 independent run's, their difference, the
seed-to-seed spread (sample standard deviation) and the final evaluation's own noise (standard
error over its batches). Writes the `ladder` section of BENCHMARKS.md.

Run: python -m bench.bench_ladder [--size d64-L2] [--tokens 1000000] [--parent-tokens 4000000]
                                  [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

from bench.record import markdown_table, record
from scaling import budget, families
from scaling.config import default_config

DEMO = ["optim.schedule=wsd", f"optim.lr={2.0**-6}", "optim.warmup_steps=50",
        "model.parametrization=mup", "model.mup_base_width=16", "train.eval_every=250",
        "train.final_eval_batches=32", "checkpoint.every_steps=0"]
TOKENS_PER_STEP = 32 * 128


def _train(workdir: pathlib.Path, overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py",
               "--workdir", str(workdir)] + [f"--config.{item}" for item in overrides]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads((workdir / "summary.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="d64-L2")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--parent-tokens", type=int, default=4_000_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    shape = dict(families.cpu_demo_family())[args.size]
    model = [f"model.{key}={value}" for key, value in shape.items()]
    steps = round(args.tokens / TOKENS_PER_STEP)
    parent_steps = round(args.parent_tokens / TOKENS_PER_STEP)
    optim = default_config().optim
    optim.update(schedule="wsd", warmup_steps=50)
    start = budget.wsd_decay_start(optim, steps)
    with tempfile.TemporaryDirectory() as root:
        root = pathlib.Path(root)
        _train(root / "parent", DEMO + model + [f"train.steps={parent_steps}",
                                                f"train.branch_steps=({start},)"])
        branch = _train(root / "branch", DEMO + model + [
            f"train.steps={steps}", f"train.init_from={root / 'parent'}",
            f"train.init_step={start}"])
        independent = [_train(root / f"seed{seed}", DEMO + model + [f"train.steps={steps}",
                                                                     f"seed={seed}"])
                       for seed in range(args.seeds)]
    losses = [run["final_eval_loss"] for run in independent]
    spread = statistics.stdev(losses)
    difference = branch["final_eval_loss"] - losses[0]
    rows = [[args.size, f"{steps * TOKENS_PER_STEP:,}", f"{branch['final_eval_loss']:.5f}",
             f"{losses[0]:.5f}", f"{difference:+.2e}", f"{spread:.5f}",
             f"{branch['final_eval_stderr']:.5f} "
             f"({100 * branch['final_eval_stderr'] / branch['final_eval_loss']:.2f}%)",
             f"{branch['final_eval_tokens']:,}"]]
    table = markdown_table(["size", "D tokens", "branch loss", "independent (seed 0)",
                            "difference", f"seed spread (sd, {args.seeds} seeds)",
                            "final-eval stderr", "eval tokens"], rows)
    body = (f"{table}\n\nIndependent losses by seed: {', '.join(f'{x:.5f}' for x in losses)}. "
            f"The branch starts from the {parent_steps}-step parent at step {start} (its "
            f"cooldown is the last 20% of {steps} steps). |difference| / seed spread = "
            f"{abs(difference) / spread:.2g}.\n")
    print(body)
    record("ladder", "Cooldown branches against independent runs", body)


if __name__ == "__main__":
    main()

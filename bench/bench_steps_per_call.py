"""Steps per call: the demo's models trained one step per compiled call and `train.steps_per_call`
at a time, as `scaling-train` runs them.

Each run is the demo sweep's run of one width (two layers, batches of 8 rows of 128 bytes, its
learning rate and weight decay, logging every 25 steps) for `--steps` steps in a subprocess; the
two settings alternate, `--repeats` times, so that both see the same load on the machine. The
table gives the medians of the runs' own tokens/s (the median over their logged intervals) and
of their loop and compile seconds, and whether the two settings ended on the same train loss.

Writes the `steps_per_call` section of BENCHMARKS.md.

Run: python -m bench.bench_steps_per_call [--steps 2000] [--repeats 3] [--per-call 25]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

from bench.record import at_least, markdown_table, record
from configs.sweeps import demo

REPO = pathlib.Path(__file__).resolve().parent.parent
WIDTHS = (8, 32, 96)


def train(workdir: pathlib.Path, width: int, steps: int, per_call: int) -> dict:
    """The summary of the demo's run of `width` for `steps` steps at `per_call` steps a call."""
    overrides = {"model.num_layers": 2, "model.d_model": width, "model.num_heads": 1,
                 "model.head_dim": width, "model.d_ff": 4 * width, "train.batch_size": 8,
                 "train.steps": steps, "train.log_every": 25, "train.eval_every": steps,
                 "train.eval_batches": 1, "optim.schedule": "wsd", "optim.warmup_steps": 50,
                 "optim.lr": demo.LR_TIMES_WIDTH / width,
                 "optim.weight_decay": demo.DECAY_AT_96 * width / 96,
                 "train.steps_per_call": per_call, "wandb.mode": "disabled"}
    subprocess.run([sys.executable, "-m", "scaling.train", "--config", "configs/demo.py",
                    "--workdir", str(workdir), *(f"--config.{key}={value}"
                                                 for key, value in overrides.items())],
                   check=True, cwd=REPO, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    return json.loads((workdir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=at_least(100), default=2000)
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--per-call", type=at_least(2), default=25)
    args = parser.parse_args()
    settings = (1, args.per_call)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for width in WIDTHS:
            summaries = {setting: [] for setting in settings}
            for repeat in range(args.repeats):
                for setting in settings:
                    workdir = pathlib.Path(folder) / f"d{width}-{setting}-{repeat}"
                    summaries[setting].append(train(workdir, width, args.steps, setting))

            def median(setting, field):
                return statistics.median(summary[field] for summary in summaries[setting])

            speeds = [median(setting, "tokens_per_second") for setting in settings]
            losses = {summary["final_train_loss"] for setting in settings
                      for summary in summaries[setting]}
            rows.append([f"d{width}-L2", f"{summaries[1][0]['non_embedding_params']:,}",
                         *(f"{speed:,.0f}" for speed in speeds), f"{speeds[1] / speeds[0]:.2f}",
                         *(f"{median(setting, 'loop_seconds'):.1f}" for setting in settings),
                         *(f"{median(setting, 'compile_seconds'):.1f}" for setting in settings),
                         "yes" if len(losses) == 1 else f"no ({len(losses)} values)"])
    headers = ["model", "non-emb params", "tokens/s, 1 a call", f"tokens/s, {args.per_call}",
               "ratio", "loop s, 1", f"loop s, {args.per_call}", "compile s, 1",
               f"compile s, {args.per_call}", "same final loss"]
    table = markdown_table(headers, rows)
    print(table)
    record("steps_per_call", "Steps per compiled call on the demo's models", table + "\n\n"
           f"{args.steps} steps per run, the median of {args.repeats} runs per cell, the two "
           "settings alternating. Tokens/s is each run's median over its logged intervals; loop "
           "seconds are every call after the first, with logging and the one evaluation of a "
           "batch; compile seconds the first call (its compilation, or its load from JAX's "
           f"compilation cache after the first run, and its steps: one, or {args.per_call}). "
           "One process at a time: the demo runs two.")


if __name__ == "__main__":
    main()

"""How noisy is a run's final held-out loss, alone and against another run on the same batches?

Restores the final checkpoints of runs of a finished sweep (default: the demo's two largest
sizes at its largest budget, and the largest size at its smallest), evaluates each on the final
evaluation's batches exactly as the run did (`train.final_eval_batches` of the run's loader), and
reports per run the loss and its batch-to-batch standard error, and per pair the difference and
the standard error of the per-batch differences: the noise that matters when runs sharing one
evaluation set are compared or fitted together. Neighbouring batches often hold windows of one
file, so each standard error is also given over `BLOCKS` contiguous blocks of batches, which
counts such correlation instead of assuming it away. Writes the `eval_noise` section of
BENCHMARKS.md.

Run: python -m bench.bench_eval_noise [--workdir runs/demo] [--runs NAME,NAME,...]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import pathlib

import jax
import numpy as np

from bench.record import markdown_table, record
from bench.bench_ladder import SWEEP
from launch.sweep import load_plan, run_directory
from scaling import data, model as model_lib, parallel, step, trained


def batch_losses(workdir: pathlib.Path) -> tuple[np.ndarray, float]:
    """The run's per-batch held-out losses on its final evaluation's batches, and the final loss
    it recorded."""
    run = trained.load(workdir, single_device=True)
    config = run.config
    loader = data.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed,
                              train_cfg=config.train)
    # The training loop's own evaluation of a batch.
    evaluate = jax.jit(functools.partial(step.eval_batch, net=model_lib.Transformer(run.model),
                                         model=run.model))
    state = {"params": run.params}
    with run.context():
        losses = [float(evaluate(state, parallel.global_batch(batch,
                                                              run.program.batch_sharding))["loss"])
                  for batch in loader.eval_batches(config.train.final_eval_batches)]
    loader.close()
    return np.array(losses), run.summary["final_eval_loss"]


BLOCKS = 32


def standard_error(values: np.ndarray, blocks: int | None = None) -> float:
    """The standard error of the mean of `values`, treating them as independent or (`blocks`)
    as that many contiguous blocks whose means are independent (a remainder is left out)."""
    if blocks is not None and len(values) >= 2 * blocks:
        values = values[:len(values) // blocks * blocks].reshape(blocks, -1).mean(axis=1)
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def default_runs() -> list[str]:
    """The demo's two largest sizes at its largest budget, and its largest at its smallest."""
    _, _, runs = load_plan(SWEEP, [])
    params = {run.size: run.params for run in runs}
    second, largest = sorted(params, key=params.get)[-2:]

    def budgets(size: str) -> list[str]:
        return [run.name for run in sorted(runs, key=lambda run: run.tokens) if run.size == size]

    return [budgets(second)[-1], budgets(largest)[-1], budgets(largest)[0]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--runs", default="", help="NAME,NAME,...; default: `default_runs()`")
    args = parser.parse_args(argv)
    names = args.runs.split(",") if args.runs else default_runs()
    if len(set(names)) < 2:  # the noise that matters is the paired one
        parser.error(f"--runs={args.runs!r}: need two or more runs, to compare on the same "
                     "batches")
    try:
        results = {name: batch_losses(run_directory(pathlib.Path(args.workdir), name))
                   for name in names}
    except trained.RunError as error:  # a sweep not trained in --workdir
        parser.error(f"--workdir={args.workdir!r} (--runs): {error}")
    rows = []
    for name, (losses, recorded) in results.items():
        error, blocked = standard_error(losses), standard_error(losses, BLOCKS)
        rows.append([name, f"{losses.mean():.5f}", f"{recorded:.5f}", f"{error:.5f}",
                     f"{100 * error / losses.mean():.2f}%",
                     f"{100 * blocked / losses.mean():.2f}%", len(losses)])
    table = markdown_table(["run", "final loss", "recorded by the run", "batch-to-batch stderr",
                            "relative", f"relative, {BLOCKS} blocks", "batches"], rows)
    pairs = []
    for a, b in itertools.combinations(names, 2):
        difference = results[b][0] - results[a][0]
        error, blocked = standard_error(difference), standard_error(difference, BLOCKS)
        pairs.append([f"{b} − {a}", f"{difference.mean():+.5f}", f"{error:.5f}",
                      f"{100 * error / results[b][0].mean():.2f}%",
                      f"{100 * blocked / results[b][0].mean():.2f}%"])
    paired = markdown_table(["pair", "difference", "paired stderr", "relative to the loss",
                             f"relative, {BLOCKS} blocks"], pairs)
    body = (f"{table}\n{paired}\nEvery run of a sweep is evaluated on the same batches, so a "
            "comparison or a fit across runs sees the paired noise, not each run's own.\n")
    print(body)
    record("eval_noise", "Noise of the final held-out loss", body)


if __name__ == "__main__":
    main()

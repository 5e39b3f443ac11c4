"""Checkpoint save time and what logging plus asynchronous checkpointing cost the train loop.

For the demo's largest model (d_model 128, 4 layers, batch 32 x seq 128, fp32 Adam state):
- the save of one checkpoint, synchronous, and asynchronous (time until `save` returns, and until
  the checkpoint is committed);
- the train loop (`scaling.train.train`, `loop_seconds`: every step after the compiling one) run
  bare (one log, one eval and one save, all at the last step) and with logging every
  `--log-every` steps (metrics.jsonl, W&B offline, progress line) plus an asynchronous save every
  `--save-every` steps. The runs alternate, since CPU speed here drifts between minutes; the
  overhead is the ratio of the medians.
Target: logging + async checkpointing < 5% of the step time.

Run: python -m bench.bench_checkpoint [--steps 120] [--log-every 10] [--save-every 40] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

from bench.record import at_least, markdown_table, record

TARGET_OVERHEAD = 0.05
MODEL = ["model.d_model=128", "model.num_layers=4", "model.num_heads=4"]


def _config(overrides: list[str]):
    from scaling.train import load_and_validate

    return load_and_validate("configs/demo.py", MODEL + overrides)


def save_times(repeats: int) -> dict[str, float]:
    """Median seconds: synchronous save; asynchronous save until it returns and until committed."""
    import jax

    from scaling import data, parallel
    from scaling.checkpoint import Checkpointer
    from scaling.config import model_config
    from scaling.step import build_program

    config = _config([])
    loader = data.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed)
    model = model_config(config, loader.vocab_size)
    loader.close()
    program = build_program(config, model, config.train.steps, parallel.make_mesh(config.mesh))
    with program.context():
        state = program.init(jax.random.key(0))
    jax.block_until_ready(state)
    times: dict[str, list[float]] = {"sync": [], "async_returns": [], "async_committed": []}
    with tempfile.TemporaryDirectory() as workdir:
        for async_save in (False, True):
            checkpointer = Checkpointer(os.path.join(workdir, str(async_save)), keep=2,
                                        async_save=async_save)
            checkpointer.save(0, state, {"step": 0}, wait=True)  # the first save sets things up
            for step in range(1, repeats + 1):
                started = time.perf_counter()
                checkpointer.save(step, state, {"step": step})
                returned = time.perf_counter() - started
                checkpointer.wait()
                committed = time.perf_counter() - started
                if async_save:
                    times["async_returns"].append(returned)
                    times["async_committed"].append(committed)
                else:
                    times["sync"].append(committed)
            checkpointer.close()
    parameters = sum(leaf.size for leaf in jax.tree.leaves(state["params"]))
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    return {"parameters": parameters, "state_mib": state_bytes / 2**20,
            **{name: statistics.median(values) for name, values in times.items()}}


def loop_seconds(steps: int, overrides: list[str]) -> tuple[float, float]:
    """(seconds per step, tokens/s) of one train() run, progress output swallowed."""
    from scaling.train import train

    config = _config([f"train.steps={steps}", "optim.warmup_steps=10", *overrides])
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
        summary = train(config, workdir)
    assert summary["status"] == "completed", summary["status"]
    return summary["loop_seconds"] / (steps - 1), summary["tokens_per_second"] or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=at_least(2), default=120)  # the first one compiles
    parser.add_argument("--log-every", type=at_least(1), default=10)
    parser.add_argument("--save-every", type=at_least(1), default=40)
    parser.add_argument("--repeats", type=at_least(1), default=2)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")

    saves = save_times(repeats=3)
    bare = [f"train.log_every={args.steps}", f"train.eval_every={args.steps}",
            "checkpoint.every_steps=0", "wandb.mode=disabled"]
    logged = [f"train.log_every={args.log_every}", f"train.eval_every={args.steps}",
              f"checkpoint.every_steps={args.save_every}", "checkpoint.async_save=True",
              "wandb.mode=offline"]
    per_step = {"bare": [], "logged": []}
    for _ in range(args.repeats):
        for name, overrides in (("bare", bare), ("logged", logged)):
            per_step[name].append(loop_seconds(args.steps, overrides)[0])
    bare_step, logged_step = (statistics.median(per_step[name]) for name in ("bare", "logged"))
    overhead = logged_step / bare_step - 1

    rows = [
        ["checkpoint save, synchronous", f"{saves['sync'] * 1e3:.0f} ms"],
        ["checkpoint save, asynchronous: `save` returns", f"{saves['async_returns'] * 1e3:.0f} ms"],
        ["checkpoint save, asynchronous: committed", f"{saves['async_committed'] * 1e3:.0f} ms"],
        ["train step, bare (median of runs)", f"{bare_step * 1e3:.1f} ms"],
        [f"train step, logging every {args.log_every} + async save every {args.save_every}",
         f"{logged_step * 1e3:.1f} ms"],
        ["overhead of logging + async checkpointing", f"{100 * overhead:+.1f}% "
         f"({'meets' if overhead < TARGET_OVERHEAD else 'misses'} the < 5% target)"],
    ]
    load = os.getloadavg()[0]
    body = (f"Load average at the end: {load:.1f} on {os.cpu_count()} cores (other work on the "
            "machine makes the per-run spread larger than the overhead measured).\n"
            f"Model: d_model 128, 4 layers, {saves['parameters']:,} parameters; train state "
            f"{saves['state_mib']:.1f} MiB. Loop: {args.steps} steps of batch 32 x 128 tokens, "
            f"{args.repeats} alternating runs per variant (per-step seconds: bare "
            f"{', '.join(f'{value * 1e3:.1f}' for value in per_step['bare'])} ms; logged "
            f"{', '.join(f'{value * 1e3:.1f}' for value in per_step['logged'])} ms).\n\n"
            + markdown_table(["measure", "value"], rows))
    print(body)
    record("checkpoint", "Checkpointing and logging overhead", body)


if __name__ == "__main__":
    main()

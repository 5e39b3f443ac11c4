"""The largest model that trains on this machine at sequence length 1024.

    python -m bench.bench_memory [--seq-len 1024] [--steps 3] [--budget 1.0]

Walks the Chinchilla family (Table A9 shapes, byte vocabulary, fp32, AdamW, full
rematerialisation, one sequence per step: a larger batch is the same step repeated by gradient
accumulation) from the largest member down. `scaling.memory` estimates each member's bytes; the
first whose estimate fits in `budget` × this machine's RAM is trained for `steps` steps in a
fresh process, which reports its step time and peak resident memory. If that process fails, the
next smaller member is tried. The table shows every member considered, estimated and measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil

from bench.record import at_least, markdown_table, positive_fraction, record
from scaling import flops, memory
from scaling.config import default_config, model_config
from scaling.families import chinchilla_family, set_model_fields

GIB = 2**30

# Runs in a fresh interpreter: train `steps` steps of one member, print one JSON line.
TRAIN = r"""
import json, resource, sys, time
import jax, numpy as np
from scaling import parallel
from scaling.config import default_config, model_config
from scaling.families import set_model_fields
from scaling.step import build_program

overrides, seq_len, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = set_model_fields(default_config(), overrides)
config.model.update(vocab_size=257, max_seq_len=seq_len, remat="full")
config.data.seq_len, config.train.batch_size, config.optim.warmup_steps = seq_len, 1, 1
model = model_config(config, 257)
mesh = parallel.make_mesh(config.mesh)
program = build_program(config, model, 1000, mesh)
tokens = np.random.default_rng(0).integers(0, 257, (1, seq_len + 1)).astype(np.int32)
with program.context():
    state = program.init(jax.random.key(0))
    batch = parallel.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                                   "segment_ids": np.ones((1, seq_len), np.int32)},
                                  program.batch_sharding)
    started = time.perf_counter()
    state, metrics = program.train_step(state, batch)
    first_loss = float(metrics["loss"])
    compile_and_first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps - 1):
        state, metrics = program.train_step(state, batch)
    last_loss = float(metrics["loss"])
    per_step = (time.perf_counter() - started) / max(steps - 1, 1)
print(json.dumps({"first_loss": first_loss, "last_loss": last_loss,
                  "compile_and_first_step_s": compile_and_first, "step_s": per_step,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=at_least(1), default=1024)
    parser.add_argument("--steps", type=at_least(2), default=3)  # the first one compiles
    parser.add_argument("--budget", type=positive_fraction, default=1.0,
                        help="fraction of this machine's RAM a run may be estimated to use")
    args = parser.parse_args()
    ram = psutil.virtual_memory().total
    members = []
    for name, overrides in chinchilla_family():
        config = set_model_fields(default_config(), overrides)
        config.model.update(vocab_size=257, max_seq_len=args.seq_len, remat="full")
        model = model_config(config, 257)
        estimate = memory.estimate_bytes(model, seq_len=args.seq_len, batch_size=1,
                                         grad_accum_steps=1, mesh_shape=(1, 1, 1))["total"]
        members.append((name, overrides, flops.parameter_counts(model).total, estimate))
    members.sort(key=lambda member: member[2])

    rows, trained = [], None
    fitting = [member for member in members if member[3] <= args.budget * ram]
    too_large = [member for member in members if member[3] > args.budget * ram]
    if too_large:  # the smallest member that does not fit: why the search stops where it does
        name, _, params, estimate = too_large[0]
        rows.append([name, f"{params / 1e6:,.0f}M", f"{estimate / GIB:.1f}", "not run: over budget",
                     "", "", ""])
    for name, overrides, params, estimate in reversed(fitting):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(overrides),
                                 str(args.seq_len), str(args.steps)],
                                capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            rows.append([name, f"{params / 1e6:,.0f}M", f"{estimate / GIB:.1f}",
                         f"failed (exit {result.returncode})", "", "", f"{wall:.0f}"])
            print(result.stderr[-2000:], file=sys.stderr)
            continue
        report = json.loads(result.stdout.strip().splitlines()[-1])
        peak = report["peak_rss_bytes"]
        rows.append([name, f"{params / 1e6:,.0f}M", f"{estimate / GIB:.1f}", "trained",
                     f"{peak / GIB:.1f} ({peak / params:.0f} B/param)",
                     f"{report['step_s']:.1f}", f"{wall:.0f}"])
        trained = (name, params, report)
        print(" | ".join(rows[-1]), flush=True)
        break

    table = markdown_table(["member", "parameters", "estimated GiB", "outcome",
                            "peak RSS GiB (measured)", "step s", "process wall s"], rows)
    if trained:
        name, params, report = trained
        summary = (f"Largest Chinchilla-family member that trains here at sequence length "
                   f"{args.seq_len}: **{name}** ({params / 1e6:,.0f}M parameters), loss "
                   f"{report['first_loss']:.3f} → {report['last_loss']:.3f} over {args.steps} steps (finite; "
                   "one sequence per step at the default learning rate).")
    else:
        summary = "No member trained."
    body = (f"{table}\n{summary} Machine RAM {ram / GIB:.1f} GiB, budget {args.budget:.0%} of it. "
            "fp32 weights, AdamW moments, gradients and the update's temporaries (24 bytes per "
            "parameter in the estimate), full "
            "rematerialisation, one sequence per step (larger batches by gradient accumulation), "
            "byte vocabulary. Estimates from `scaling.memory` (what `scaling-train --dry-run` "
            "prints); peak RSS is the training process's maximum resident set.\n")
    print(body)
    record("memory", f"Largest model at sequence length {args.seq_len}", body)


if __name__ == "__main__":
    main()

"""Train-step speed: tokens/s, achieved FLOP/s and MFU for each demo size and the reference shapes.

    python -m bench.bench_train_step [--repeats 5] [--steps 5] [--only demo|reference|all]

MFU is measured against this machine's matmul peak, measured in the same run and interleaved with
the workloads (CPU speed here drifts by 2x between minutes), in fp32 and bf16. Each workload is the
real jitted train step of `scaling.step` (AdamW, clipping, donated state) on a fixed batch. The
achieved FLOP/s count `scaling.flops`' `full` convention (what the step actually computes); MFU
counts PaLM's, as the trainer's progress line does (`flops.mfu_flops_per_token`: the same here but
for blocked attention). Reported: the median over `repeats` timings of `steps` steps each, after
compilation, and the compile time.

Each reference shape also runs `bench.minimal_decoder` (the same architecture written as plainly
as possible) interleaved with our step, and reports our tokens/s over its tokens/s as measured in
the same run, besides the ratio to the tokens/s quoted for a minimal implementation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil

from bench import minimal_decoder
from bench.record import at_least, markdown_table, record
from scaling import flops, hardware, parallel
from scaling.config import default_config, model_config
from scaling.families import cpu_demo_family
from scaling.step import build_program

# (width, heads, layers, ffn, sequence, batch) with a byte vocabulary, AdamW, fp32.
REFERENCE_SHAPES = ((128, 4, 2, 512, 128, 32), (256, 4, 4, 1024, 256, 16), (512, 8, 6, 2048, 512, 8))
# Tokens/s a minimal decoder-only JAX/Flax implementation reached on these shapes on a 2-core CPU.
REFERENCE_TOKENS_PER_SECOND = (17_500, 2_500, 640)


def workload(model_overrides: dict, seq_len: int, batch_size: int):
    config = default_config()
    config.model.update(model_overrides)
    config.data.seq_len, config.train.batch_size = seq_len, batch_size
    config.optim.warmup_steps = 1
    model = model_config(config, 257)
    mesh = parallel.make_mesh(config.mesh)
    start = time.perf_counter()
    program = build_program(config, model, 1000, mesh)
    tokens = np.random.default_rng(0).integers(0, 257, (batch_size, seq_len + 1)).astype(np.int32)
    with program.context():
        state = program.init(jax.random.key(0))
        batch = parallel.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                                       "segment_ids": np.ones((batch_size, seq_len), np.int32)},
                                      program.batch_sharding)
        state, metrics = program.train_step(state, batch)
        jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def run(steps: int) -> float:
        with program.context():
            begin = time.perf_counter()
            for _ in range(steps):
                holder["state"], out = program.train_step(holder["state"], batch)
            jax.block_until_ready(out)
        return (time.perf_counter() - begin) / steps

    per_token = {"full": flops.training_flops_per_token(model, seq_len, "full"),
                 "mfu": flops.mfu_flops_per_token(model, seq_len)}
    return run, per_token, batch_size * seq_len, compile_seconds, flops.parameter_counts(model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--steps", type=at_least(1), default=5)
    parser.add_argument("--only", choices=("demo", "reference", "all"), default="all")
    args = parser.parse_args()

    cases = []
    if args.only in ("demo", "all"):
        for name, overrides in cpu_demo_family():
            cases.append((f"demo {name}", overrides, 128, 32, None, None))
    if args.only in ("reference", "all"):
        for shape, reference in zip(REFERENCE_SHAPES, REFERENCE_TOKENS_PER_SECOND):
            width, heads, layers, ffn, seq, batch = shape
            cases.append((f"ref {width}/{heads}/{layers}/{ffn}/{seq}/{batch}",
                          dict(d_model=width, num_heads=heads, num_layers=layers, d_ff=ffn,
                               vocab_size=257, max_seq_len=seq), seq, batch, reference, shape))

    peak_bf16 = hardware.measure_matmul_peak(jnp.bfloat16, size=1024)
    rows = []
    for label, overrides, seq, batch, reference, shape in cases:
        run, per_token, tokens_per_step, compile_seconds, counts = workload(overrides, seq, batch)
        run_minimal = minimal_decoder.workload(*shape) if shape else None
        speeds, peaks, minimal_ratios = [], [], []
        for _ in range(args.repeats):
            peaks.append(hardware.measure_matmul_peak(jnp.float32, size=2048, repeats=3))
            seconds = run(args.steps)
            speeds.append(tokens_per_step / seconds)
            if run_minimal:
                minimal_ratios.append(run_minimal(args.steps) / seconds)
        speed, peak = statistics.median(speeds), statistics.median(peaks)
        achieved = speed * per_token["full"]
        row = [label, f"{counts.non_embedding:,}", f"{speed:,.0f}", f"{achieved / 1e9:.1f}",
               f"{peak / 1e9:.0f}", f"{100 * speed * per_token['mfu'] / peak:.0f}%",
               f"{compile_seconds:.1f}"]
        row.append(f"{statistics.median(minimal_ratios):.2f}x" if minimal_ratios else "")
        row.append(f"{speed / reference:.2f}x" if reference else "")
        rows.append(row)
        print(" | ".join(row), flush=True)
    rss = psutil.Process().memory_info().rss / 2**30
    table = markdown_table(
        ["workload", "non-emb params", "tokens/s", "GFLOP/s", "fp32 matmul peak GFLOP/s", "MFU",
         "compile s", "vs minimal decoder (same run)", "vs quoted minimal"], rows)
    body = (f"{table}\nbf16 matmul peak in the same run: {peak_bf16 / 1e9:.0f} GFLOP/s. "
            f"Peak host memory of the benchmark process: {rss:.1f} GiB. "
            f"Median of {args.repeats} timings of {args.steps} steps; GFLOP/s under the `full` "
            "convention, MFU under PaLM's (the trainer's). 'vs minimal decoder (same run)' is the median over the repeats of our "
            "tokens/s over `bench.minimal_decoder`'s, timed back to back with ours. 'vs quoted "
            "minimal' compares with the tokens/s quoted for a minimal decoder-only JAX/Flax "
            "implementation on the same shapes on a 2-core CPU "
            f"({', '.join(f'{t:,}' for t in REFERENCE_TOKENS_PER_SECOND)}).\n")
    print(body)
    record("train_step", "Train-step speed on CPU", body)


if __name__ == "__main__":
    main()

"""Training throughput of each (data, fsdp, tensor) mesh shape on 8 simulated CPU devices.

All programs are compiled first; then timed steps are taken round-robin over the meshes (each
step waited for), so a change in the machine's speed touches every mesh alike. Reports the median
step time and tokens/s, and each mesh's step time relative to pure data parallelism (8, 1, 1).
The 8 simulated devices share this machine's cores: the figures show what each axis adds in
communication and re-layout work, not how fast real accelerators would be.

    python -m bench.bench_mesh [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

DEVICES = 8
# Must be set before JAX starts its CPU client; PJRT_NPROC=16 avoids the collective deadlock
# between simulated devices on small machines (tests/conftest.py).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={DEVICES}").strip()
os.environ.setdefault("PJRT_NPROC", "16")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.record import at_least, record  # noqa: E402
from scaling import parallel  # noqa: E402
from scaling.config import default_config, model_config  # noqa: E402
from scaling.step import build_program  # noqa: E402

MESH_SHAPES = [(8, 1, 1), (1, 8, 1), (2, 4, 1), (2, 1, 4), (1, 2, 4)]


def make_config(shape: tuple[int, int, int]):
    config = default_config()
    config.model.num_layers = 2
    config.model.d_model = 128
    config.model.num_heads = 4
    config.model.vocab_size = 256
    config.data.seq_len = 128
    config.train.batch_size = 16
    config.optim.warmup_steps = 2
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = shape
    return config


def random_batch(config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shape = (config.train.batch_size, config.data.seq_len)
    tokens = rng.integers(0, config.model.vocab_size, size=shape, dtype=np.int32)
    return {"inputs": tokens, "targets": np.roll(tokens, -1, axis=1),
            "segment_ids": np.ones(shape, np.int32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=at_least(1), default=15, help="timed steps per mesh")
    args = parser.parse_args()
    assert jax.device_count() == DEVICES, jax.devices()

    rng = np.random.default_rng(0)
    runs = {}
    for shape in MESH_SHAPES:
        config = make_config(shape)
        program = build_program(config, model_config(config), 1000, parallel.make_mesh(config.mesh))
        with program.context():
            state = program.init(jax.random.key(0))
            batch = parallel.global_batch(random_batch(config, rng), program.batch_sharding)
            for _ in range(2):  # compile, then one step with everything warm
                state, metrics = program.train_step(state, batch)
                jax.block_until_ready(metrics)
        runs[shape] = {"program": program, "state": state, "batch": batch, "times": []}

    for _ in range(args.rounds):
        for shape, run in runs.items():
            with run["program"].context():
                start = time.perf_counter()
                run["state"], metrics = run["program"].train_step(run["state"], run["batch"])
                jax.block_until_ready(metrics)
                run["times"].append(time.perf_counter() - start)

    config = make_config(MESH_SHAPES[0])
    tokens_per_step = config.train.batch_size * config.data.seq_len
    baseline = statistics.median(runs[MESH_SHAPES[0]]["times"])
    rows = ["| mesh (data, fsdp, tensor) | median step (ms) | fastest–slowest (ms) | tokens/s "
            "| step time vs (8, 1, 1) |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for shape, run in runs.items():
        step = statistics.median(run["times"])
        rows.append(f"| {shape} | {step * 1e3:.1f} | {min(run['times']) * 1e3:.0f}–"
                    f"{max(run['times']) * 1e3:.0f} | {tokens_per_step / step:,.0f} | "
                    f"{step / baseline:.2f}× |")
    model = model_config(config)
    body = (
        f"Decoder with {model.num_layers} layers, d_model {model.d_model}, {model.num_heads} heads, "
        f"d_ff {model.d_ff}, vocabulary {model.vocab_size}; batch {config.train.batch_size} × "
        f"{config.data.seq_len} tokens, fp32. Median of {args.rounds} steps per mesh, taken "
        "round-robin after compiling.\n\n" + "\n".join(rows) + "\n\n"
        f"The {DEVICES} devices are simulated (`--xla_force_host_platform_device_count`) and share "
        "this machine's cores, so these figures check that every layout runs and show the relative "
        "cost of its collectives and re-layouts; they say nothing about speed on real accelerators. "
        "A difference between meshes smaller than their fastest–slowest spread is noise.\n")
    print(body)
    record("mesh", "Mesh shapes on 8 simulated devices", body)


if __name__ == "__main__":
    main()

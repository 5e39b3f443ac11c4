"""The demo scaling study: a ladder of six two-layer decoders, widths 8 to 96 (141x in
non-embedding parameters), each at six token budgets from 1M to 8M (8x), on the embedded corpus
(Python's standard library), on a 2-core CPU in under fifteen minutes.

Each size trains one warmup–stable–decay run of 8M tokens; the 1M–6M budgets are cooldown
branches of it (`scaling.branches`), so the study trains 0.40 of the FLOPs of the same 36 runs
trained one by one. Every cooldown is the last 10% of its run (Hägele et al. 2024 find 10–20%
enough to match a cosine schedule). The sizes differ in width only, the one dimension µP
transfers hyperparameters across; batches are 8 rows of 128 bytes, so the smallest budget is 977
steps. Of 2^-6, 2^-5 and 2^-4, the learning rate 2^-5 is the best at five of the six sizes and
1.0% above the best at d64-L2, within the seed-to-seed spread (`python -m bench.bench_demo_lr`,
`python -m bench.bench_ladder`, BENCHMARKS.md). Every budget's final held-out loss is measured on
the whole validation split in full batches of 8 windows (1.02M tokens; the few windows left over
are not read).

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo
    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo --dry-run
"""

from launch.plans import default_sweep

MILLION = 1_000_000


def get_config():
    sweep = default_sweep()
    sweep.name = "demo"
    sweep.base_config = "configs/demo.py"
    sweep.family = "cpu_demo"
    sweep.sizes = "d8-L2,d16-L2,d32-L2,d48-L2,d64-L2,d96-L2"
    sweep.plan = "ladder"
    sweep.ladder_tokens = tuple(m * MILLION for m in (1, 2, 3, 4, 6, 8))
    sweep.hparams = "mup_transfer"
    sweep.overrides = {
        "optim": {"lr": 2.0**-5, "schedule": "wsd", "warmup_steps": 50, "decay_fraction": 0.1},
        "train": {"batch_size": 8, "eval_every": 1000, "final_eval_batches": -1},
    }
    return sweep

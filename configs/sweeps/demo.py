"""The demo scaling study: a ladder of five model sizes spanning 107x in non-embedding parameters,
each at five token budgets from 0.5M to 4M (8x), on the embedded corpus (Python's standard
library), on a 2-core CPU in under fifteen minutes.

Each size trains one warmup–stable–decay run of 4M tokens; the 0.5M, 1M, 2M and 3M budgets are
cooldown branches of it (`scaling.branches`), so the study trains about half the tokens of the
same 25 runs trained one by one. Hyperparameters transfer across widths by µP, with the learning
rate that is best at every width of docs/mup.md's grid (2^-6). Every budget's final held-out loss
is measured on 32 batches (131k tokens).

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
    sweep.sizes = "d16-L1,d32-L1,d48-L2,d64-L2,d96-L3"
    sweep.plan = "ladder"
    sweep.ladder_tokens = tuple(int(m * MILLION) for m in (0.5, 1, 2, 3, 4))
    sweep.hparams = "mup_transfer"
    sweep.overrides = {"optim": {"lr": 2.0**-6, "schedule": "wsd", "warmup_steps": 50},
                       "train": {"eval_every": 250, "final_eval_batches": 32}}
    return sweep

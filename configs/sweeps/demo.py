"""The demo scaling study: a ladder of six two-layer decoders, widths 8 to 96 (141x in
non-embedding parameters), each at six token budgets from 1M to 8M (8x), on the embedded corpus
(Python's standard library), on a 2-core CPU in under fifteen minutes.

Each size trains one warmup–stable–decay run of 8M tokens; the 1M–6M budgets are cooldown
branches of it (`scaling.branches`), so the study trains 0.40 of the FLOPs of the same 36 runs
trained one by one. Every cooldown is the last 10% of its run (Hägele et al. 2024 find 10–20%
enough to match a cosine schedule). Batches are 8 rows of 128 bytes, so the smallest budget is 977
steps. The sizes differ in width only and use the standard parametrization with a learning rate ∝
1/width, 0.24/width (0.03 at d8, 0.0025 at d96): `python -m bench.bench_demo_lr` measures it against
half and twice at every size (BENCHMARKS.md). AdamW's weight decay is multiplied by the rate, so the
decay is 0.1·width/96 (0.1 at d96): rate × decay, and with it the number of steps over which the
weights forget (4,000), is the same at every width, where a decay of 0.1 at every width forgot over
~330 steps at d8. µP with base width 8 and the rate tuned
there (2^-5) left widths 32–96 2–5% above these losses, and the seed-to-seed spread of d96 was
1.6–2.5% of the loss under it against 0.2–0.7% here (`bench_demo_seeds`). Every budget's final
held-out loss is measured on the whole validation split in full batches of 8 windows (1.02M tokens;
the few windows left over are not read). Steps between the logged ones (every 25) run 25 to a
compiled call (`train.steps_per_call`): the same run, in fewer dispatches of these small models.

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo
    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo --dry-run
"""

from launch.plans import default_sweep

MILLION = 1_000_000
WIDTHS = (8, 16, 32, 48, 64, 96)
LR_TIMES_WIDTH = 0.24  # each size's learning rate is LR_TIMES_WIDTH / width
DECAY_AT_96 = 0.1  # AdamW's weight decay at width 96, in proportion to width below it


def get_config():
    sweep = default_sweep()
    sweep.name = "demo"
    sweep.base_config = "configs/demo.py"
    sweep.family = "cpu_demo"
    sweep.sizes = ",".join(f"d{width}-L2" for width in WIDTHS)
    sweep.plan = "ladder"
    sweep.ladder_tokens = tuple(m * MILLION for m in (1, 2, 3, 4, 6, 8))
    sweep.hparams = "fixed"
    sweep.overrides = {
        "optim": {"schedule": "wsd", "warmup_steps": 50, "decay_fraction": 0.1},
        "train": {"batch_size": 8, "eval_every": 1000, "final_eval_batches": -1,
                  "steps_per_call": 25},
    }
    # rate × decay = LR_TIMES_WIDTH / width × DECAY_AT_96 · width / 96: the same at every width
    sweep.size_overrides = {f"d{width}-L2": {"optim": {"lr": LR_TIMES_WIDTH / width,
                                                       "weight_decay": DECAY_AT_96 * width / 96}}
                            for width in WIDTHS}
    return sweep

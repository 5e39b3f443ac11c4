"""The demo scaling study: five model sizes spanning over 30x in non-embedding parameters,
trained on the embedded corpus (Python's standard library) at a fixed token budget each, on a
2-core CPU in about ten minutes.

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo
    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo --dry-run
"""

import ml_collections


def get_config():
    sweep = ml_collections.ConfigDict()
    sweep.name = "demo"
    sweep.base_config = "configs/demo.py"
    sweep.family = "cpu_demo"
    sweep.sizes = "d32-L1,d48-L2,d64-L2,d96-L3,d128-L4"  # a subset of the family; "" means all
    sweep.plan = "steps"
    sweep.steps = 500
    sweep.tokens = 0
    sweep.tokens_per_param = 20.0
    sweep.isoflop_budgets = ()
    sweep.min_steps = 50
    sweep.flop_convention = "full"
    sweep.batch_size = 32
    sweep.seq_len = 128
    sweep.vocab_size = 257
    sweep.hparams = "fixed"
    sweep.lr = 3e-3
    sweep.warmup_steps = 50
    sweep.lr_exponent = 0.0
    sweep.reference_params = 1
    sweep.processes = 2
    # Overrides of the base run config (nested like it) for every run, and for single sizes.
    sweep.overrides = ml_collections.ConfigDict({"checkpoint": {"every_steps": 200}})
    sweep.size_overrides = ml_collections.ConfigDict()
    return sweep

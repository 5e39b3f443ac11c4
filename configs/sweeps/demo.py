"""The demo scaling study: five model sizes spanning 64x in non-embedding parameters, each
trained for the base config's 500 steps on the embedded corpus (Python's standard library), on a
2-core CPU in about four minutes.

    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo
    scaling-sweep --config configs/sweeps/demo.py --workdir runs/demo --dry-run
"""

from launch.plans import default_sweep


def get_config():
    sweep = default_sweep()
    sweep.name = "demo"
    sweep.base_config = "configs/demo.py"
    sweep.family = "cpu_demo"
    sweep.sizes = "d32-L1,d48-L2,d64-L2,d96-L3,d128-L4"
    sweep.overrides = {"train": {"steps": 500}, "optim": {"warmup_steps": 50}}
    return sweep

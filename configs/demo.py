"""A small decoder on the embedded corpus (the defaults' Python standard library, bytes, 128-token
sequences, batches of 32): the base of the demo sweep (which trains batches of 8), and a quick
single run.

    scaling-train --config configs/demo.py --workdir runs/tiny
    scaling-train --config configs/demo.py:runlocal --workdir runs/smoke   # a few seconds
"""

from scaling.config import default_config

VARIANTS = ("runlocal",)  # `--config configs/demo.py:<variant>`; checked by scaling.overrides


def get_config(variant: str = ""):
    config = default_config()
    config.name = "demo"
    config.model.d_model = 64
    config.train.steps = 600
    config.train.log_every = 25
    config.train.eval_every = 50
    config.optim.warmup_steps = 50
    if variant == "runlocal":
        config.model.d_model = 32
        config.model.num_layers = 1
        config.train.steps = 20
        config.train.log_every = 5
        config.train.eval_every = 10
        config.train.eval_batches = 1
        config.optim.warmup_steps = 5
        config.checkpoint.every_steps = 10
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return config

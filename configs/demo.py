"""A small decoder on the embedded corpus: the base of the demo sweep, and a quick single run.

    scaling-train --config configs/demo.py --workdir runs/tiny
    scaling-train --config configs/demo.py:runlocal --workdir runs/smoke   # a few seconds
"""

from scaling.config import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.name = "demo"
    config.model.num_layers = 2
    config.model.d_model = 64
    config.model.num_heads = 4
    config.data.dataset = "python_stdlib"
    config.data.seq_len = 128
    config.train.batch_size = 32
    config.train.steps = 600
    config.train.log_every = 25
    config.train.eval_every = 50
    config.train.eval_batches = 4
    config.optim.lr = 3e-3
    config.optim.warmup_steps = 50
    config.checkpoint.every_steps = 200
    if variant == "runlocal":
        config.model.d_model = 32
        config.model.num_layers = 1
        config.train.steps = 20
        config.train.log_every = 5
        config.train.eval_every = 10
        config.train.eval_batches = 1
        config.optim.warmup_steps = 5
        config.checkpoint.every_steps = 10
    return config

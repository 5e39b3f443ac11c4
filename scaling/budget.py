"""A run's length and the shape of its warmup–stable–decay schedule, as plain arithmetic (no JAX):
the config's checks, the sweep planner and the optimizer all read them from here.
"""

from __future__ import annotations

import math

from scaling.data import objectives


def steps_for(config) -> int:
    """Total optimizer steps: `train.steps`, or enough steps to see `train.tokens` corpus tokens
    (a seq2seq row reads its source and its target)."""
    t = config.train
    if t.tokens > 0:
        row = objectives.shapes_of(config.data, t).shapes.corpus
        return max(1, math.ceil(t.tokens / (t.batch_size * row)))
    return t.steps


def warmup_steps(optim, total_steps: int) -> int:
    """The warmup actually run: `optim.warmup_steps`, leaving at least one step after it."""
    return min(optim.warmup_steps, max(total_steps - 1, 0))


def warmup_cut(config) -> str | None:
    """What to say when `optim.warmup_steps` is not shorter than the run (`warmup_steps` cuts
    it), else None."""
    total = steps_for(config)
    run = warmup_steps(config.optim, total)
    if run == config.optim.warmup_steps:
        return None
    return (f"optim.warmup_steps={config.optim.warmup_steps} is not shorter than the run's "
            f"{count(total, 'step')}: it warms up over {run:,}")


def count(number: int, noun: str) -> str:
    """`number` `noun`s: "1 step", "1,200 steps"."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def wsd_decay_start(optim, total_steps: int) -> int:
    """The step at which a WSD run of `total_steps` starts its cooldown: the cooldown takes
    `optim.decay_fraction` of the run's steps (at least one), never eating into the warmup."""
    cooldown = max(1, round(total_steps * optim.decay_fraction))
    return max(warmup_steps(optim, total_steps), total_steps - cooldown)

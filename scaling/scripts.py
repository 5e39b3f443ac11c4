"""The console scripts of `scaling-train`, `scaling-eval`, `scaling-sample` and
`scaling-attention` (pyproject.toml): each runs its module's `main` with Ctrl-C handled from
before that module's imports (`scaling.interrupts`). `python -m scaling.<module>` comes here too.

Imports nothing heavy: the module is imported under the handler.
"""

from __future__ import annotations

from scaling import interrupts


def train() -> int:
    return interrupts.run("scaling-train", "scaling.train",
                          "scaling-train: interrupted before training started; rerun to start")


def evaluate() -> int:
    return interrupts.run("scaling-eval", "scaling.evaluate")


def sample() -> int:
    return interrupts.run("scaling-sample", "scaling.sample")


def attention() -> int:
    return interrupts.run("scaling-attention", "scaling.attention_maps")

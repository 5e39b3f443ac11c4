"""The optimizer: learning-rate schedules, gradient clipping, AdamW with a weight-decay mask, and
µP's per-parameter-group learning rates — all as one optax chain.

Parameter groups are read from the logical axis names the model gives its weights, never from
parameter paths, so the rules hold for every layout:
- *width dimensions* are `embed`, `mlp` and the attention head dimensions (`heads`, `kv_heads`,
  `head_dim` together count as one dimension: heads × head size);
- a weight with two width dimensions is *matrix-like* (hidden weights: attention and MLP
  projections); one with a single width dimension is *vector-like* (embeddings, the readout,
  biases, norm scales).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from scaling import axes, budget

# Parameter names (the last path entry) of the weights that are never decayed: biases and norm
# scales (a LayerNorm's shift is named "bias" too).
NO_DECAY_SUFFIXES = ("bias", "scale")


def schedule_arguments(optim: ml_collections.ConfigDict, total_steps: int) -> dict[str, np.ndarray]:
    """The numbers that place a run's schedule: its peak and floor rates, where warmup ends, where
    the decay starts and where it ends (`total_steps`). The compiled train step reads them at run
    time, so runs that differ only here (a ladder's cooldown branches, which differ in their
    length) share one compiled program."""
    warmup = budget.warmup_steps(optim, total_steps)
    decay_start = budget.wsd_decay_start(optim, total_steps) if optim.schedule == "wsd" else warmup
    return {"peak": np.float32(optim.lr), "floor": np.float32(optim.lr * optim.min_lr_ratio),
            "warmup": np.int32(warmup), "decay_start": np.int32(decay_start),
            "total": np.int32(total_steps)}


def learning_rate(count: jax.Array, arguments: dict, *, schedule: str,
                  decay_shape: str) -> jax.Array:
    """The rate at step `count`: linear warmup from 0 to `peak` until `warmup`; then the named
    decay to `floor` at `total` (cosine, linear), or constant, or warmup-stable-decay: `peak`
    until `decay_start`, then down to `floor` at `total`, linearly or as 1 − √progress
    (`decay_shape`). `arguments` are `schedule_arguments`; `schedule` and `decay_shape` are fixed
    when compiled."""
    # Steps are subtracted as integers, then divided: float32 holds every integer only up to
    # 2^24, and a run may be longer.
    count = jnp.asarray(count, jnp.int32)
    peak, floor = arguments["peak"], arguments["floor"]
    warmup, start, total = (jnp.asarray(arguments[name], jnp.int32)
                            for name in ("warmup", "decay_start", "total"))
    progress = jnp.clip((count - start).astype(jnp.float32)
                        / jnp.maximum(total - start, 1).astype(jnp.float32), 0.0, 1.0)
    if schedule == "cosine":
        decayed = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    elif schedule == "constant":
        decayed = peak
    else:  # linear; wsd: after its stable phase
        shrink = jnp.sqrt(progress) if schedule == "wsd" and decay_shape == "sqrt" else progress
        decayed = peak - (peak - floor) * shrink
    warming = peak * count.astype(jnp.float32) / jnp.maximum(warmup, 1).astype(jnp.float32)
    return jnp.where(count < warmup, warming, decayed)


def learning_rate_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The run's schedule as a function of the step alone (`learning_rate` at its arguments)."""
    return functools.partial(learning_rate, arguments=schedule_arguments(optim, total_steps),
                             schedule=optim.schedule, decay_shape=optim.decay_shape)


def width_dimensions(logical_axes: tuple[str | None, ...]) -> int:
    """How many of a weight's dimensions grow with model width (heads × head size counts once)."""
    names = [name for name in logical_axes if name is not None]
    return sum(name in axes.WIDTH for name in names) + any(name in axes.HEAD for name in names)


def _leaf_name(path) -> str:
    entry = path[-1] if path else None
    return str(getattr(entry, "key", getattr(entry, "name", entry)))


def decay_mask(logical_axes_tree: Any) -> Any:
    """True for weights that get weight decay, decided by role: kernels and embeddings (two or more
    dimensions besides a stacked `layers` axis) are decayed; biases (of any shape, such as the
    attention's per-head [heads, head_dim] biases) and norm scales never are."""
    def decays(path, logical_axes) -> bool:
        if _leaf_name(path).endswith(NO_DECAY_SUFFIXES):
            return False
        return sum(name != axes.LAYERS for name in logical_axes) >= 2

    return jax.tree_util.tree_map_with_path(decays, logical_axes_tree,
                                            is_leaf=lambda x: isinstance(x, tuple))


def learning_rate_multipliers(logical_axes_tree: Any, model: ml_collections.ConfigDict) -> Any:
    """Per-weight learning-rate multiplier. Standard parametrization: 1 everywhere.

    µP (Yang et al. 2022, Table 8, Adam): matrix-like (hidden) weights get base_width / width;
    vector-like weights (embeddings, biases, norm scales, and the readout, whose logits the model
    multiplies by base_width / width instead) keep the base rate."""
    if model.parametrization != "mup":
        return jax.tree.map(lambda _: 1.0, logical_axes_tree, is_leaf=lambda x: isinstance(x, tuple))
    ratio = model.mup_base_width / model.d_model
    return jax.tree.map(lambda names: ratio if width_dimensions(names) >= 2 else 1.0,
                        logical_axes_tree, is_leaf=lambda x: isinstance(x, tuple))


def _scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
    """Multiply each update by its weight's fixed multiplier."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m if m != 1.0 else u, updates, multipliers), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _scale_by_learning_rate() -> optax.GradientTransformationExtraArgs:
    """Multiply each update by −`learning_rate`, the step's rate, given to `update` as a keyword
    (computed in the train step from `schedule_arguments`, which are not compiled in)."""

    def update(updates, state, params=None, *, learning_rate, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda u: jnp.asarray(-learning_rate, u.dtype) * u, updates), state

    return optax.GradientTransformationExtraArgs(lambda _: optax.EmptyState(), update)


def make_optimizer(config: ml_collections.ConfigDict,
                   logical_axes_tree: Any) -> optax.GradientTransformationExtraArgs:
    """AdamW with global-norm clipping, the decay mask and µP group rates; its `update` takes the
    step's rate as the keyword `learning_rate` (see `learning_rate`).

    `logical_axes_tree` mirrors the parameters, each leaf the tuple of the weight's logical axis
    names (see `scaling.parallel.logical_axes`)."""
    optim = config.optim
    mask = decay_mask(logical_axes_tree)
    parts = []
    if optim.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(optim.grad_clip))
    parts += [
        optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
        optax.add_decayed_weights(optim.weight_decay, mask=mask),
        _scale_by_tree(learning_rate_multipliers(logical_axes_tree, config.model)),
        _scale_by_learning_rate(),
    ]
    return optax.chain(*parts)


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, in fp32."""
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))



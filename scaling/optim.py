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

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

WIDTH_AXES = ("embed", "mlp")
HEAD_AXES = ("heads", "kv_heads", "head_dim")


def learning_rate_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `optim.lr` over `warmup_steps`, then the named decay to
    `lr * min_lr_ratio` at `total_steps` (cosine, linear), or constant, or warmup-stable-decay
    (constant until the last `decay_fraction` of the steps, then linear to the floor)."""
    peak, floor = optim.lr, optim.lr * optim.min_lr_ratio
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    warmup_schedule = optax.linear_schedule(0.0, peak, max(warmup, 1))
    if optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.min_lr_ratio)
    elif optim.schedule == "linear":
        decay = optax.linear_schedule(peak, floor, decay_steps)
    elif optim.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:  # wsd
        cooldown = max(int(round(decay_steps * optim.decay_fraction)), 1)
        decay = optax.join_schedules(
            [optax.constant_schedule(peak), optax.linear_schedule(peak, floor, cooldown)],
            [decay_steps - cooldown])
    if warmup == 0:
        return decay
    return optax.join_schedules([warmup_schedule, decay], [warmup])


def width_dimensions(logical_axes: tuple[str | None, ...]) -> int:
    """How many of a weight's dimensions grow with model width (heads × head size counts once)."""
    names = [name for name in logical_axes if name is not None]
    return sum(name in WIDTH_AXES for name in names) + any(name in HEAD_AXES for name in names)


def _non_layer_rank(logical_axes: tuple[str | None, ...]) -> int:
    return sum(name != "layers" for name in logical_axes)


def decay_mask(logical_axes_tree: Any) -> Any:
    """True for weights that get weight decay: every weight with two or more dimensions
    (besides a stacked `layers` axis); never biases or norm scales."""
    return jax.tree.map(lambda axes: _non_layer_rank(axes) >= 2, logical_axes_tree,
                        is_leaf=lambda x: isinstance(x, tuple))


def learning_rate_multipliers(logical_axes_tree: Any, model: ml_collections.ConfigDict) -> Any:
    """Per-weight learning-rate multiplier. Standard parametrization: 1 everywhere.

    µP (Yang et al. 2022, Table 8, Adam): matrix-like (hidden) weights get base_width / width;
    vector-like weights (embeddings, biases, norm scales, and the readout, whose logits the model
    multiplies by base_width / width instead) keep the base rate."""
    if model.parametrization != "mup":
        return jax.tree.map(lambda _: 1.0, logical_axes_tree, is_leaf=lambda x: isinstance(x, tuple))
    ratio = model.mup_base_width / model.d_model
    return jax.tree.map(lambda axes: ratio if width_dimensions(axes) >= 2 else 1.0,
                        logical_axes_tree, is_leaf=lambda x: isinstance(x, tuple))


def _scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
    """Multiply each update by its weight's fixed multiplier."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m if m != 1.0 else u, updates, multipliers), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   logical_axes_tree: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with global-norm clipping, the schedule, the decay mask and µP group rates.

    `logical_axes_tree` mirrors the parameters, each leaf the tuple of the weight's logical axis
    names (see `scaling.parallel.logical_axes`). Returns the optimizer and its schedule (for logging)."""
    optim = config.optim
    schedule = learning_rate_schedule(optim, total_steps)
    mask = decay_mask(logical_axes_tree)
    parts = []
    if optim.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(optim.grad_clip))
    parts += [
        optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
        optax.add_decayed_weights(optim.weight_decay, mask=mask),
        _scale_by_tree(learning_rate_multipliers(logical_axes_tree, config.model)),
        optax.scale_by_learning_rate(schedule),
    ]
    return optax.chain(*parts), schedule


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, in fp32."""
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def steps_for(config: ml_collections.ConfigDict) -> int:
    """Total optimizer steps: `train.steps`, or enough steps to see `train.tokens` tokens."""
    t = config.train
    if t.tokens > 0:
        return max(1, math.ceil(t.tokens / (t.batch_size * config.data.seq_len)))
    return t.steps

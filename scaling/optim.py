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

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from scaling import axes, budget

# Parameter names (the last path entry) of the weights that are never decayed: biases and norm
# scales (a LayerNorm's shift is named "bias" too).
NO_DECAY_SUFFIXES = ("bias", "scale")


def learning_rate_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `optim.lr` over `warmup_steps`, then the named decay to
    `lr * min_lr_ratio` at `total_steps` (cosine, linear), or constant, or warmup-stable-decay:
    constant until `budget.wsd_decay_start`, then down to the floor over the last
    `decay_fraction` of the steps, linearly or as 1 − √progress (`optim.decay_shape`)."""
    peak, floor = optim.lr, optim.lr * optim.min_lr_ratio
    warmup = budget.warmup_steps(optim, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    warmup_schedule = optax.linear_schedule(0.0, peak, max(warmup, 1))
    if optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.min_lr_ratio)
    elif optim.schedule == "linear":
        decay = optax.linear_schedule(peak, floor, decay_steps)
    elif optim.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:  # wsd
        stable = budget.wsd_decay_start(optim, total_steps) - warmup
        cooldown = _cooldown(peak, floor, max(total_steps - warmup - stable, 1), optim.decay_shape)
        decay = optax.join_schedules([optax.constant_schedule(peak), cooldown], [stable])
    if warmup == 0:
        return decay
    return optax.join_schedules([warmup_schedule, decay], [warmup])


def _cooldown(peak: float, floor: float, steps: int, shape: str) -> optax.Schedule:
    if shape == "linear":
        return optax.linear_schedule(peak, floor, steps)

    def sqrt_decay(count):
        progress = jnp.clip(count / steps, 0.0, 1.0)
        return floor + (peak - floor) * (1.0 - jnp.sqrt(progress))

    return sqrt_decay


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



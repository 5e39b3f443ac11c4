"""Weight initialisation schemes, chosen by `ModelConfig.init` (and `parametrization`).

Every weight is created in float32. The schemes, for a matrix with fan-in `fan_in`:

- `normal`: every weight ~ N(0, init_std²).
- `scaled_normal` (GPT-2): like `normal`, but the projections that write into the residual stream
  (attention output, MLP output) get std init_std / √(number of residual branches in the stack);
  a decoder-only or encoder stack has 2·num_layers branches, the decoder of an encoder–decoder
  3·num_layers (self-attention, cross-attention, MLP).
- `xavier` (Glorot uniform): U(±√(6 / (fan_in + fan_out))), as in "Attention Is All You Need".
- `he` (Kaiming): truncated normal with variance 2 / fan_in.
- `small` (small-init of Nguyen & Salazar, "Transformers without Tears", as used by GPT-NeoX):
  every weight, embeddings included, ~ N(0, 2 / (5·d_model)).

Token embeddings get N(0, init_std²) under `normal`/`scaled_normal`, N(0, 2/(5·d_model)) under
`small`, and N(0, 1/d_model) under the fan-based `xavier`/`he` (the table doubles as the tied
read-out, whose fan-in is d_model).

µP (`parametrization="mup"`): hidden matrices must have variance ∝ 1/fan_in. The fan-based and
small schemes already do; for `normal`/`scaled_normal` the std is multiplied by
√(mup_base_width / d_model), so it equals init_std at the base width. Embeddings (token and learned
position tables) keep a width-independent std: init_std, or under `small`/`xavier`/`he` the std
the scheme gives at d_model = mup_base_width (Yang et al. 2022, Tables 3 and 8: input weights have
variance 1/fan_in, and their fan-in is the vocabulary, not the width). The read-out is instead
scaled in the forward pass (see `scaling.model`); an untied read-out is initialised like the
embedding, width-independent: `init_std`, or under `small`/`xavier`/`he` the scheme's init at
d_model = mup_base_width.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp

from scaling.config import ModelConfig

Initializer = jax.nn.initializers.Initializer

HIDDEN = "hidden"
RESIDUAL_OUTPUT = "residual_output"
READOUT = "readout"


def small_init_std(d_model: int) -> float:
    """The small-init standard deviation √(2 / (5·d_model))."""
    return math.sqrt(2.0 / (5.0 * d_model))


def embedding_std(cfg: ModelConfig) -> float:
    """The standard deviation of the token embedding table and learned position tables; under µP
    the same at every width (the scheme's std at d_model = mup_base_width)."""
    width = cfg.mup_base_width if cfg.parametrization == "mup" else cfg.d_model
    if cfg.init == "small":
        return small_init_std(width)
    if cfg.init in ("xavier", "he"):
        return 1.0 / math.sqrt(width)
    return cfg.init_std


def embedding_init(cfg: ModelConfig) -> Initializer:
    """Initializer for the token embedding table (vocab, d_model) and learned position tables."""
    return jax.nn.initializers.normal(embedding_std(cfg))


def dense_init(cfg: ModelConfig, role: str, *, in_axis: int | Sequence[int],
               out_axis: int | Sequence[int], residual_branches: int = 1) -> Initializer:
    """Initializer for a projection matrix whose fan-in axes are `in_axis`, fan-out `out_axis`.

    `role` is `HIDDEN` (q/k/v, MLP input), `RESIDUAL_OUTPUT` (attention and MLP output, scaled
    down under `scaled_normal`) or `READOUT` (the untied output projection, exempt from the µP
    width multiplier). `residual_branches` is the number of residual branches in the stack.
    """
    if role == READOUT and cfg.parametrization == "mup" and cfg.init in ("xavier", "he", "small"):
        return _at_base_width(cfg, dense_init(dataclasses.replace(cfg, parametrization="standard"),
                                              role, in_axis=in_axis, out_axis=out_axis), out_axis)
    if cfg.init == "xavier":
        return jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=in_axis,
                                                    out_axis=out_axis)
    if cfg.init == "he":
        return jax.nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal",
                                                    in_axis=in_axis, out_axis=out_axis)
    if cfg.init == "small":
        return jax.nn.initializers.normal(small_init_std(cfg.d_model))
    std = cfg.init_std
    if cfg.init == "scaled_normal" and role == RESIDUAL_OUTPUT:
        std /= math.sqrt(residual_branches)
    if cfg.parametrization == "mup" and role != READOUT:
        std *= math.sqrt(cfg.mup_base_width / cfg.d_model)
    return jax.nn.initializers.normal(std)


def _at_base_width(cfg: ModelConfig, initializer: Initializer,
                   out_axis: int | Sequence[int]) -> Initializer:
    """`initializer` (a fan-based or small scheme for a matrix whose fan-in is d_model) rescaled to
    the std it has at d_model = mup_base_width, at every width."""
    out_axes = (out_axis,) if isinstance(out_axis, int) else tuple(out_axis)

    def init(key, shape, dtype=jnp.float32):
        width, base = cfg.d_model, cfg.mup_base_width
        if cfg.init == "xavier":  # variance 2 / (fan_in + fan_out)
            fan_out = math.prod(shape[axis] for axis in out_axes)
            factor = math.sqrt((width + fan_out) / (base + fan_out))
        else:  # he, small: variance ∝ 1 / d_model
            factor = math.sqrt(width / base)
        return initializer(key, shape, dtype) * jnp.asarray(factor, dtype)

    return init


def ones(key, shape, dtype=jnp.float32):
    """Norm scales start at one."""
    del key
    return jnp.ones(shape, dtype)


def zeros(key, shape, dtype=jnp.float32):
    """Biases start at zero."""
    del key
    return jnp.zeros(shape, dtype)

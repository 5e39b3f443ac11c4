"""Projections of activations by weight tensors, as one 2-D matrix multiplication.

`project(x_BxLxD, w_DxF)` computes the same as `einsum("BLD,DF->BLF")`, and likewise for
multi-axis weights such as (D, H, K) or (H, K, D), but first folds every leading axis of the
activations into one token axis and the weight's input and output axes into one each. The
backward pass then contracts over a single token axis for the weight gradient: XLA's CPU backend
multiplies that directly, where a contraction over (batch, length) made it materialise a
transposed copy of the activation gradient in every layer (2× slower MLPs on a 2-core CPU; see
BENCHMARKS.md, `train_step`). On accelerators the two forms compile alike.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def project(x: jax.Array, kernel: jax.Array, input_axes: int = 1) -> jax.Array:
    """x (..., *in) · kernel (*in, *out) → (..., *out), where `in` is kernel's first
    `input_axes` axes and matches x's last ones."""
    in_shape, out_shape = kernel.shape[:input_axes], kernel.shape[input_axes:]
    if x.shape[x.ndim - input_axes:] != in_shape:
        raise ValueError(f"activations {x.shape} do not end in the kernel's input axes {in_shape}")
    leading = x.shape[:x.ndim - input_axes]
    fan_in, fan_out = math.prod(in_shape), math.prod(out_shape)
    y = jnp.matmul(x.reshape(-1, fan_in), kernel.reshape(fan_in, fan_out))
    return y.reshape(*leading, *out_shape)


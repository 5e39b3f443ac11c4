"""RMSNorm and LayerNorm over the last axis, computed in float32.

RMSNorm: x / √(mean(x²) + ε) · scale. LayerNorm: (x − mean) / √(var + ε) · scale + bias (always
with a bias, as in the original LayerNorm). Both return the input's dtype.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling import axes
from scaling.layers import initializers

EPSILON = 1e-6


class Norm(nn.Module):
    """`kind` is "rmsnorm" or "layernorm"; `axis_name` names the normalised axis for sharding."""

    kind: str
    axis_name: Sequence[str] = (axes.EMBED,)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(initializers.ones, self.axis_name),
                           (size,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if self.kind == "layernorm":
            bias = self.param("bias", nn.with_logical_partitioning(initializers.zeros, self.axis_name),
                              (size,), jnp.float32)
            centered = x32 - jnp.mean(x32, axis=-1, keepdims=True)
            variance = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
            y = centered * jax.lax.rsqrt(variance + EPSILON) * scale + bias
        else:
            mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
            y = x32 * jax.lax.rsqrt(mean_square + EPSILON) * scale
        return y.astype(x.dtype)


def norm_parameter_count(kind: str, size: int) -> int:
    """Parameters of one `Norm` over an axis of `size`: scale (+ bias for LayerNorm)."""
    return 2 * size if kind == "layernorm" else size

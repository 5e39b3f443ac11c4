"""Position information: sinusoidal tables, rotary embeddings (RoPE) and ALiBi biases.

All functions compute in float32 from integer positions; none has parameters (the learned table
lives in `scaling.model`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def sinusoidal_table(length: int, d_model: int, offset: jax.Array | int | None = None) -> jax.Array:
    """(length, d_model) float32: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...).

    As in "Attention Is All You Need"; `d_model` must be even. Rows are positions 0..length−1, or
    offset..offset+length−1 when `offset` (possibly traced, e.g. a decoding position) is given.
    """
    positions_L = jnp.arange(length, dtype=jnp.float32)
    if offset is not None:
        positions_L = positions_L + jnp.asarray(offset, jnp.float32)
    inverse_frequencies = jnp.power(10000.0, -jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model)
    angles_LxHalf = positions_L[:, None] * inverse_frequencies[None, :]
    # Interleave: even columns sin, odd columns cos.
    table_LxHalfx2 = jnp.stack([jnp.sin(angles_LxHalf), jnp.cos(angles_LxHalf)], axis=-1)
    return table_LxHalfx2.reshape(length, d_model)


def apply_rope(x_BxLxHxK: jax.Array, theta: float,
               positions_L: jax.Array | None = None) -> jax.Array:
    """Rotate query or key vectors by their position (RoPE, rotate-half / GPT-NeoX pairing).

    Dimension i of the first half pairs with dimension i of the second half and is rotated by the
    angle pos · theta^(−2i/K). Positions are 0..L−1 along axis 1, or `positions_L` (int, possibly
    traced: decoding with a cache). Returns x's dtype and shape.
    """
    length, head_dim = x_BxLxHxK.shape[1], x_BxLxHxK.shape[-1]
    half = head_dim // 2
    # Trace-time constants: computed inside the step, XLA fuses cos and sin into the rotation
    # and evaluates them once per element of x rather than once per (position, frequency).
    inverse_frequencies = np.power(theta, -np.arange(half, dtype=np.float32) * 2.0 / head_dim,
                                   dtype=np.float32)
    if positions_L is None:
        angles_LxHalf = np.arange(length, dtype=np.float32)[:, None] * inverse_frequencies[None, :]
        cos_1xLx1xHalf = np.cos(angles_LxHalf)[None, :, None, :]
        sin_1xLx1xHalf = np.sin(angles_LxHalf)[None, :, None, :]
    else:
        angles_LxHalf = (jnp.asarray(positions_L, jnp.float32)[:, None]
                         * inverse_frequencies[None, :])
        cos_1xLx1xHalf = jnp.cos(angles_LxHalf)[None, :, None, :]
        sin_1xLx1xHalf = jnp.sin(angles_LxHalf)[None, :, None, :]
    x32 = x_BxLxHxK.astype(jnp.float32)
    first, second = x32[..., :half], x32[..., half:]
    rotated = jnp.concatenate([first * cos_1xLx1xHalf - second * sin_1xLx1xHalf,
                               second * cos_1xLx1xHalf + first * sin_1xLx1xHalf], axis=-1)
    return rotated.astype(x_BxLxHxK.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """ALiBi head slopes (Press et al. 2022): 2^(−8i/n) for i = 1..n when n is a power of two;
    otherwise the slopes of the nearest lower power of two followed by every other slope of the
    next power of two, as in the paper's reference code. Shape (num_heads,), float32."""
    def power_of_two_slopes(n: int) -> list[float]:
        return [2.0 ** (-8.0 * i / n) for i in range(1, n + 1)]

    lower = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two_slopes(lower)
    if lower < num_heads:
        slopes += power_of_two_slopes(2 * lower)[0::2][: num_heads - lower]
    return np.asarray(slopes, dtype=np.float32)


def alibi_bias(slopes_H: np.ndarray, query_positions_L: jax.Array, key_positions_S: jax.Array,
               *, causal: bool) -> jax.Array:
    """(1, H, L, S) float32 bias −slope·distance added to attention logits.

    The distance is query − key position for causal attention (keys in the future are masked
    anyway) and |query − key| for bidirectional attention.
    """
    distance_LxS = (query_positions_L[:, None] - key_positions_S[None, :]).astype(jnp.float32)
    if not causal:
        distance_LxS = jnp.abs(distance_LxS)
    return -jnp.asarray(slopes_H)[None, :, None, None] * distance_LxS[None, None]

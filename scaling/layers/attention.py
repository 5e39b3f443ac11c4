"""Scaled dot-product attention and the multi-head attention layer.

softmax(Q·Kᵀ · scale + bias, masked) · V with scale 1/√d_head (1/d_head under µP), for multi-head,
grouped-query and multi-query attention (num_kv_heads divides num_heads; query head h reads
key/value head h // (num_heads / num_kv_heads)). Logits and softmax are float32 whatever the
compute dtype. Sliding-window attention is blocked so that its memory grows with
length × window, not length².
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaling.config import ModelConfig
from scaling.layers import initializers, positions
from scaling.layers.norms import Norm

ATTENTION_AXES = ("batch", "length", "act_heads", "head_dim")
KV_AXES = ("batch", "length", "act_kv_heads", "head_dim")


def attention_core(q_BxLxHxK: jax.Array, k_BxSxGxK: jax.Array, v_BxSxGxK: jax.Array, *,
                   scale: float, causal: bool, mask_BxHxLxS: jax.Array | None = None,
                   bias_BxHxLxS: jax.Array | None = None, dropout_rate: float = 0.0,
                   dropout_rng: jax.Array | None = None) -> jax.Array:
    """Attention output (B, L, H, K) in q's dtype.

    `mask_BxHxLxS` (bool, True = may attend) and `bias_BxHxLxS` (float32) broadcast over batch and
    heads; `causal` additionally masks keys after the query (L = S). Dropout on the attention
    weights applies when `dropout_rate` > 0 and `dropout_rng` is given.
    """
    # Spelled out in einsums rather than `jax.nn.dot_product_attention`: a few percent faster per
    # CPU train step, and the causal mask is a trace-time constant shared by all layers.
    batch, length, num_heads, head_dim = q_BxLxHxK.shape
    key_length, num_kv_heads = k_BxSxGxK.shape[1], k_BxSxGxK.shape[2]
    group = num_heads // num_kv_heads
    q_BxLxGxRxK = q_BxLxHxK.reshape(batch, length, num_kv_heads, group, head_dim)
    logits_BxGxRxLxS = jnp.einsum("BLGRK,BSGK->BGRLS", q_BxLxGxRxK, k_BxSxGxK,
                                  preferred_element_type=jnp.float32) * scale
    logits_BxHxLxS = logits_BxGxRxLxS.reshape(batch, num_heads, length, key_length)
    if bias_BxHxLxS is not None:
        logits_BxHxLxS = logits_BxHxLxS + bias_BxHxLxS
    allowed = mask_BxHxLxS
    if causal:
        causal_1x1xLxS = np.tril(np.ones((1, 1, length, key_length), bool))
        allowed = causal_1x1xLxS if allowed is None else allowed & causal_1x1xLxS
    if allowed is not None:
        logits_BxHxLxS = jnp.where(allowed, logits_BxHxLxS, jnp.finfo(jnp.float32).min)
    weights_BxHxLxS = jax.nn.softmax(logits_BxHxLxS, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights_BxHxLxS.shape)
        weights_BxHxLxS = jnp.where(keep, weights_BxHxLxS / (1.0 - dropout_rate), 0.0)
    weights_BxGxRxLxS = weights_BxHxLxS.reshape(batch, num_kv_heads, group, length, key_length)
    out_BxLxGxRxK = jnp.einsum("BGRLS,BSGK->BLGRK", weights_BxGxRxLxS.astype(v_BxSxGxK.dtype),
                               v_BxSxGxK)
    return out_BxLxGxRxK.reshape(batch, length, num_heads, head_dim)


def full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, *, scale: float, causal: bool,
                   segment_ids_BxL: jax.Array | None = None, alibi_slopes_H=None,
                   dropout_rate: float = 0.0, dropout_rng=None) -> jax.Array:
    """Every query against every key (self-attention when `causal`, `segment_ids_BxL` or ALiBi is
    used, since those compare query and key positions of one sequence)."""
    mask = None
    if segment_ids_BxL is not None:
        mask = segment_ids_BxL[:, None, :, None] == segment_ids_BxL[:, None, None, :]
    bias = None
    if alibi_slopes_H is not None:
        length, key_length = q_BxLxHxK.shape[1], k_BxSxGxK.shape[1]
        bias = positions.alibi_bias(alibi_slopes_H, jnp.arange(length), jnp.arange(key_length),
                                    causal=causal)
    return attention_core(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, scale=scale, causal=causal,
                          mask_BxHxLxS=mask, bias_BxHxLxS=bias, dropout_rate=dropout_rate,
                          dropout_rng=dropout_rng)


def _blocks(x_BxLxR: jax.Array, block: int, num_blocks: int, fill) -> jax.Array:
    """Pad axis 1 to num_blocks·block with `fill` and split it: (B, num_blocks, block, ...)."""
    pad = num_blocks * block - x_BxLxR.shape[1]
    widths = [(0, 0), (0, pad)] + [(0, 0)] * (x_BxLxR.ndim - 2)
    x = jnp.pad(x_BxLxR, widths, constant_values=fill)
    return x.reshape(x.shape[0], num_blocks, block, *x.shape[2:])


def _neighbour_blocks(x_BxNxWxR: jax.Array, causal: bool, fill) -> jax.Array:
    """Concatenate each block with its predecessor (and successor unless `causal`) along axis 2."""
    edge = jnp.full_like(x_BxNxWxR[:, :1], fill)
    previous = jnp.concatenate([edge, x_BxNxWxR[:, :-1]], axis=1)
    parts = [previous, x_BxNxWxR]
    if not causal:
        parts.append(jnp.concatenate([x_BxNxWxR[:, 1:], edge], axis=1))
    return jnp.concatenate(parts, axis=2)


def sliding_window_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, *, window: int, scale: float,
                             causal: bool, segment_ids_BxL: jax.Array | None = None,
                             alibi_slopes_H=None, dropout_rate: float = 0.0,
                             dropout_rng=None) -> jax.Array:
    """Self-attention in which query i sees keys j with 0 ≤ i − j < window (causal) or
    |i − j| < window (bidirectional).

    The sequence is split into blocks of `window` positions; each query block attends to its own
    block and the previous one (and the next one when bidirectional), so the logits take
    B·H·L·2·window (3·window) floats instead of B·H·L². Lengths up to `window` use plain full
    attention, which the window then does not restrict.
    """
    batch, length, num_heads, head_dim = q_BxLxHxK.shape
    if length <= window:
        return full_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, scale=scale, causal=causal,
                              segment_ids_BxL=segment_ids_BxL, alibi_slopes_H=alibi_slopes_H,
                              dropout_rate=dropout_rate, dropout_rng=dropout_rng)
    num_blocks = -(-length // window)
    keys_per_block = (2 if causal else 3) * window

    def flatten_blocks(x):
        return x.reshape(batch * num_blocks, *x.shape[2:])

    q_blocks = flatten_blocks(_blocks(q_BxLxHxK, window, num_blocks, 0))
    k_blocks = flatten_blocks(_neighbour_blocks(_blocks(k_BxLxGxK, window, num_blocks, 0), causal, 0))
    v_blocks = flatten_blocks(_neighbour_blocks(_blocks(v_BxLxGxK, window, num_blocks, 0), causal, 0))

    query_positions_NxW = jnp.arange(num_blocks * window).reshape(num_blocks, window)
    key_positions_NxC = _neighbour_blocks(query_positions_NxW[None], causal, -1)[0]
    key_positions_NxC = jnp.where(key_positions_NxC >= length, -1, key_positions_NxC)
    distance_NxWxC = query_positions_NxW[:, :, None] - key_positions_NxC[:, None, :]
    in_window = (distance_NxWxC >= 0) if causal else (distance_NxWxC > -window)
    allowed_NxWxC = in_window & (distance_NxWxC < window) & (key_positions_NxC[:, None, :] >= 0)
    allowed_BxNxWxC = jnp.broadcast_to(allowed_NxWxC[None], (batch, *allowed_NxWxC.shape))
    if segment_ids_BxL is not None:
        query_segments = _blocks(segment_ids_BxL, window, num_blocks, -1)
        key_segments = _neighbour_blocks(query_segments, causal, -1)
        allowed_BxNxWxC = allowed_BxNxWxC & (query_segments[..., :, None] == key_segments[..., None, :])
    mask = allowed_BxNxWxC.reshape(batch * num_blocks, 1, window, keys_per_block)

    bias = None
    if alibi_slopes_H is not None:
        # The query-key distance pattern is the same in every block; masked entries don't matter.
        bias = positions.alibi_bias(alibi_slopes_H, query_positions_NxW[1],
                                    jnp.arange(keys_per_block), causal=causal)
    out = attention_core(q_blocks, k_blocks, v_blocks, scale=scale, causal=False,
                         mask_BxHxLxS=mask, bias_BxHxLxS=bias, dropout_rate=dropout_rate,
                         dropout_rng=dropout_rng)
    return out.reshape(batch, num_blocks * window, num_heads, head_dim)[:, :length]


class Attention(nn.Module):
    """Multi-head (grouped-query) attention with projections, positions and optional QK-norm.

    Self-attention (`context_BxSxD` None) reads queries, keys and values from x; cross-attention
    reads keys and values from the context and uses neither RoPE, ALiBi, masks nor windows.
    """

    cfg: ModelConfig
    causal: bool
    residual_branches: int
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, segment_ids_BxL: jax.Array | None = None,
                 context_BxSxD: jax.Array | None = None) -> jax.Array:
        cfg = self.cfg
        dtype = jnp.dtype(cfg.compute_dtype)
        is_cross = context_BxSxD is not None
        source_BxSxD = context_BxSxD if is_cross else x_BxLxD
        hidden = initializers.HIDDEN

        def kernel(name, shape, axes, role=hidden, in_axis=0, out_axis=(1, 2)):
            init = initializers.dense_init(cfg, role, in_axis=in_axis, out_axis=out_axis,
                                           residual_branches=self.residual_branches)
            return self.param(name, nn.with_logical_partitioning(init, axes), shape,
                              jnp.float32).astype(dtype)

        def bias(name, shape, axes):
            return self.param(name, nn.with_logical_partitioning(initializers.zeros, axes), shape,
                              jnp.float32).astype(dtype)

        heads, kv_heads, head_dim, d_model = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_model
        w_query = kernel("query", (d_model, heads, head_dim), ("embed", "heads", "head_dim"))
        w_key = kernel("key", (d_model, kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
        w_value = kernel("value", (d_model, kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
        w_out = kernel("out", (heads, head_dim, d_model), ("heads", "head_dim", "embed"),
                       role=initializers.RESIDUAL_OUTPUT, in_axis=(0, 1), out_axis=2)

        q_BxLxHxK = jnp.einsum("BLD,DHK->BLHK", x_BxLxD, w_query)
        k_BxSxGxK = jnp.einsum("BSD,DGK->BSGK", source_BxSxD, w_key)
        v_BxSxGxK = jnp.einsum("BSD,DGK->BSGK", source_BxSxD, w_value)
        if cfg.use_bias:
            q_BxLxHxK += bias("query_bias", (heads, head_dim), ("heads", "head_dim"))
            k_BxSxGxK += bias("key_bias", (kv_heads, head_dim), ("kv_heads", "head_dim"))
            v_BxSxGxK += bias("value_bias", (kv_heads, head_dim), ("kv_heads", "head_dim"))
        if cfg.qk_norm:
            q_BxLxHxK = Norm(cfg.norm, ("head_dim",), name="query_norm")(q_BxLxHxK)
            k_BxSxGxK = Norm(cfg.norm, ("head_dim",), name="key_norm")(k_BxSxGxK)
        if cfg.position == "rope" and not is_cross:
            q_BxLxHxK = positions.apply_rope(q_BxLxHxK, cfg.rope_theta)
            k_BxSxGxK = positions.apply_rope(k_BxSxGxK, cfg.rope_theta)
        q_BxLxHxK = nn.with_logical_constraint(q_BxLxHxK, ATTENTION_AXES)
        k_BxSxGxK = nn.with_logical_constraint(k_BxSxGxK, KV_AXES)
        v_BxSxGxK = nn.with_logical_constraint(v_BxSxGxK, KV_AXES)

        # µP keeps attention logits O(1) as head_dim grows when q and k become correlated.
        scale = 1.0 / head_dim if cfg.parametrization == "mup" else 1.0 / math.sqrt(head_dim)
        dropout_rate, dropout_rng = 0.0, None
        if not self.deterministic and cfg.attention_dropout > 0.0:
            dropout_rate, dropout_rng = cfg.attention_dropout, self.make_rng("dropout")
        if is_cross:
            out_BxLxHxK = full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, scale=scale, causal=False,
                                         dropout_rate=dropout_rate, dropout_rng=dropout_rng)
        else:
            common = dict(scale=scale, causal=self.causal, segment_ids_BxL=segment_ids_BxL,
                          alibi_slopes_H=positions.alibi_slopes(heads) if cfg.position == "alibi" else None,
                          dropout_rate=dropout_rate, dropout_rng=dropout_rng)
            if cfg.attention == "sliding":
                out_BxLxHxK = sliding_window_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK,
                                                       window=cfg.window, **common)
            else:
                out_BxLxHxK = full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, **common)
        out_BxLxHxK = nn.with_logical_constraint(out_BxLxHxK, ATTENTION_AXES)
        out_BxLxD = jnp.einsum("BLHK,HKD->BLD", out_BxLxHxK, w_out)
        if cfg.use_bias:
            out_BxLxD += bias("out_bias", (d_model,), ("embed",))
        return out_BxLxD

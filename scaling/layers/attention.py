"""Scaled dot-product attention and the multi-head attention layer.

softmax(Q·Kᵀ · scale + bias, masked) · V with scale 1/√d_head (1/d_head under µP), for multi-head,
grouped-query and multi-query attention (num_kv_heads divides num_heads; query head h reads
key/value head h // (num_heads / num_kv_heads)). Logits and softmax are float32 whatever the
compute dtype. Sliding-window attention is blocked so that its memory grows with
length × window, not length².

Two additive paths serve a trained model: decoding with a key/value cache
(`cached_self_attention`: new queries against the cached keys plus their own, the cache a ring
buffer of `capacity` slots, the window's width under sliding attention), and the explicit
attention weights (`attention_weights`) for figures. Both mask by absolute positions
(`position_mask`); tests check both against the training path.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaling import axes
from scaling.config import ModelConfig
from scaling.layers import initializers, positions
from scaling.layers.linear import project
from scaling.layers.norms import Norm

ATTENTION_AXES = (axes.BATCH, axes.LENGTH, axes.ACT_HEADS, axes.HEAD_DIM)
KV_AXES = (axes.BATCH, axes.LENGTH, axes.ACT_KV_HEADS, axes.HEAD_DIM)


# Causal self-attention is computed in blocks of this many queries, each against the keys up to
# its last position only: (n + 1) / 2n of the full L × L work for n blocks (BENCHMARKS.md).
CAUSAL_QUERY_BLOCK = 128


def attention_core(q_BxLxHxK: jax.Array, k_BxSxGxK: jax.Array, v_BxSxGxK: jax.Array, *,
                   scale: float, causal: bool, mask_BxHxLxS: jax.Array | None = None,
                   bias_BxHxLxS: jax.Array | None = None, dropout_rate: float = 0.0,
                   dropout_rng: jax.Array | None = None,
                   query_block: int = CAUSAL_QUERY_BLOCK) -> jax.Array:
    """Attention output (B, L, H, K) in q's dtype.

    `mask_BxHxLxS` (bool, True = may attend) and `bias_BxHxLxS` (float32) broadcast over batch and
    heads; `causal` additionally masks keys after the query (L = S). Dropout on the attention
    weights applies when `dropout_rate` > 0 and `dropout_rng` is given.

    Causal attention longer than `query_block` runs block by block: queries [a, b) against keys
    [0, b), which holds every key they may see, so each block's softmax is exact and the keys
    after b, all masked, are never multiplied.
    """
    # Spelled out in einsums rather than `jax.nn.dot_product_attention`: faster per CPU train
    # step, and the causal mask is a trace-time constant shared by all layers.
    batch, length, num_heads, head_dim = q_BxLxHxK.shape
    key_length, num_kv_heads = k_BxSxGxK.shape[1], k_BxSxGxK.shape[2]
    group = num_heads // num_kv_heads
    # Heads before positions: each (batch, head) is then one contiguous matrix product. Query
    # heads sharing a key/value head get their own axis R only when they share (GQA, MQA): the
    # 4-axis products of plain multi-head attention run faster on CPU.
    if group > 1:
        heads_shape, qk_spec, pv_spec = (num_kv_heads, group), "BGRLK,BGSK->BGRLS", "BGRLS,BGSK->BGRLK"
        q_Bx_xLxK = q_BxLxHxK.reshape(batch, length, num_kv_heads, group, head_dim).transpose(
            0, 2, 3, 1, 4)
    else:
        heads_shape, qk_spec, pv_spec = (num_heads,), "BGLK,BGSK->BGLS", "BGLS,BGSK->BGLK"
        q_Bx_xLxK = q_BxLxHxK.transpose(0, 2, 1, 3)
    k_BxGxSxK = k_BxSxGxK.transpose(0, 2, 1, 3)
    v_BxGxSxK = v_BxSxGxK.transpose(0, 2, 1, 3)
    keep_BxHxLxS = None
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep_BxHxLxS = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate,
                                            (batch, num_heads, length, key_length))

    def attend(start: int, stop: int, keys: int) -> jax.Array:
        """Queries [start, stop) against keys [0, keys): (B, *heads_shape, stop - start, K)."""
        def rows(x):  # a (.., L, S)-shaped mask, bias or keep pattern, cut to this block
            if x is None:
                return None
            x = jnp.asarray(x)
            return x[..., start:stop, :keys] if x.shape[-2] != 1 else x[..., :keys]

        logits_Bx_xLxS = jnp.einsum(qk_spec, q_Bx_xLxK[..., start:stop, :], k_BxGxSxK[:, :, :keys],
                                    preferred_element_type=jnp.float32) * scale
        logits_BxHxLxS = logits_Bx_xLxS.reshape(batch, num_heads, stop - start, keys)
        if bias_BxHxLxS is not None:
            logits_BxHxLxS = logits_BxHxLxS + rows(bias_BxHxLxS)
        allowed = rows(mask_BxHxLxS)
        if causal:
            causal_1x1xLxS = np.tril(np.ones((length, key_length), bool))[None, None,
                                                                          start:stop, :keys]
            allowed = causal_1x1xLxS if allowed is None else allowed & causal_1x1xLxS
        if allowed is not None:
            logits_BxHxLxS = jnp.where(allowed, logits_BxHxLxS, jnp.finfo(jnp.float32).min)
        return _softmax_values(logits_BxHxLxS, v_BxGxSxK[:, :, :keys], pv_spec, heads_shape,
                               rows(keep_BxHxLxS), dropout_rate)

    if causal and length == key_length and length > query_block:
        bounds = list(range(0, length, query_block)) + [length]
        out_Bx_xLxK = jnp.concatenate([attend(start, stop, stop)
                                       for start, stop in zip(bounds, bounds[1:])], axis=-2)
    else:
        out_Bx_xLxK = attend(0, length, key_length)
    return out_Bx_xLxK.reshape(batch, num_heads, length, head_dim).transpose(0, 2, 1, 3)


def _softmax_values(logits_BxHxLxS: jax.Array, v_BxGxSxK: jax.Array, pv_spec: str,
                    heads_shape: tuple, keep_BxHxLxS: jax.Array | None,
                    dropout_rate: float) -> jax.Array:
    """softmax(logits)·V in the value dtype, shaped (B, *heads_shape, L, K), with the
    normalisation after the product: (exp(logits − max)·V) / Σexp divides (L, K) numbers instead
    of (L, S), and its gradient needs no (L, S)-sized sum. The max only shifts the exponent
    (softmax is shift-invariant): no gradient through it. `keep_BxHxLxS` drops weights (dropout)."""
    batch, _, length, keys = logits_BxHxLxS.shape
    peak_BxHxLx1 = jax.lax.stop_gradient(jnp.max(logits_BxHxLxS, axis=-1, keepdims=True))
    unnormalized_BxHxLxS = jnp.exp(logits_BxHxLxS - peak_BxHxLx1)
    normalizer_BxHxLx1 = jnp.sum(unnormalized_BxHxLxS, axis=-1, keepdims=True)
    if keep_BxHxLxS is not None:
        unnormalized_BxHxLxS = jnp.where(keep_BxHxLxS,
                                         unnormalized_BxHxLxS / (1.0 - dropout_rate), 0.0)
    unnormalized_Bx_xLxS = unnormalized_BxHxLxS.reshape(batch, *heads_shape, length, keys)
    out_Bx_xLxK = jnp.einsum(pv_spec, unnormalized_Bx_xLxS.astype(v_BxGxSxK.dtype), v_BxGxSxK,
                             preferred_element_type=jnp.float32)
    normalizer_Bx_xLx1 = normalizer_BxHxLx1.reshape(batch, *heads_shape, length, 1)
    return (out_Bx_xLxK / normalizer_Bx_xLx1).astype(v_BxGxSxK.dtype)


def full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, *, scale: float, causal: bool,
                   segment_ids_BxL: jax.Array | None = None, alibi_slopes_H=None,
                   key_mask_BxS: jax.Array | None = None,
                   dropout_rate: float = 0.0, dropout_rng=None) -> jax.Array:
    """Every query against every key (self-attention when `causal`, `segment_ids_BxL` or ALiBi is
    used, since those compare query and key positions of one sequence); `key_mask_BxS` (bool,
    True = may be attended) leaves out keys such as a source's padding."""
    mask = None
    if segment_ids_BxL is not None:
        mask = segment_ids_BxL[:, None, :, None] == segment_ids_BxL[:, None, None, :]
    if key_mask_BxS is not None:
        keys = key_mask_BxS[:, None, None, :]
        mask = keys if mask is None else mask & keys
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


def position_mask(query_positions_L: jax.Array, key_positions_S: jax.Array, *, causal: bool,
                  window: int = 0) -> jax.Array:
    """(L, S) bool, True where query i may see key j: keys at negative positions (empty cache
    slots) never; causal: key ≤ query; window > 0: 0 ≤ query − key < window (causal) or
    |query − key| < window (bidirectional), as in `sliding_window_attention`."""
    distance_LxS = query_positions_L[:, None] - key_positions_S[None, :]
    allowed_LxS = jnp.broadcast_to(key_positions_S[None, :] >= 0, distance_LxS.shape)
    if causal:
        allowed_LxS = allowed_LxS & (distance_LxS >= 0)
    if window:
        allowed_LxS = allowed_LxS & (distance_LxS < window) & (distance_LxS > -window)
    return allowed_LxS


def attention_weights(q_BxLxHxK: jax.Array, k_BxSxGxK: jax.Array, *, scale: float,
                      mask_BxHxLxS: jax.Array | None = None,
                      bias_BxHxLxS: jax.Array | None = None) -> jax.Array:
    """softmax(Q·Kᵀ · scale + bias) over the allowed keys: (B, H, L, S) float32, each row summing
    to 1 and exactly 0 on masked keys. The whole L × S matrix at once (for reading, not training)."""
    group = q_BxLxHxK.shape[2] // k_BxSxGxK.shape[2]
    k_BxSxHxK = jnp.repeat(k_BxSxGxK, group, axis=2)  # query head h reads key head h // group
    logits_BxHxLxS = jnp.einsum("BLHK,BSHK->BHLS", q_BxLxHxK, k_BxSxHxK,
                                preferred_element_type=jnp.float32) * scale
    if bias_BxHxLxS is not None:
        logits_BxHxLxS = logits_BxHxLxS + bias_BxHxLxS
    if mask_BxHxLxS is not None:
        logits_BxHxLxS = jnp.where(mask_BxHxLxS, logits_BxHxLxS, jnp.finfo(jnp.float32).min)
    weights_BxHxLxS = jax.nn.softmax(logits_BxHxLxS, axis=-1)
    if mask_BxHxLxS is not None:
        weights_BxHxLxS = jnp.where(mask_BxHxLxS, weights_BxHxLxS, 0.0)
    return weights_BxHxLxS


def weighted_values(weights_BxHxLxS: jax.Array, v_BxSxGxK: jax.Array) -> jax.Array:
    """Σ_s weights · V: (B, L, H, K) in v's dtype, query head h reading value head h // group."""
    group = weights_BxHxLxS.shape[1] // v_BxSxGxK.shape[2]
    v_BxSxHxK = jnp.repeat(v_BxSxGxK, group, axis=2)
    out_BxLxHxK = jnp.einsum("BHLS,BSHK->BLHK", weights_BxHxLxS.astype(v_BxSxGxK.dtype), v_BxSxHxK,
                             preferred_element_type=jnp.float32)
    return out_BxLxHxK.astype(v_BxSxGxK.dtype)


def cache_slot_positions(index: jax.Array, capacity: int) -> jax.Array:
    """(capacity,) int32: the position held by each slot of a ring-buffer cache that holds
    positions < `index`, position p living in slot p mod capacity; −1 for a slot never written."""
    slots_C = jnp.arange(capacity, dtype=jnp.int32)
    return index - 1 - jnp.mod(index - 1 - slots_C, capacity)


def cached_self_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, cache: dict, index: jax.Array, *,
                          scale: float, causal: bool, window: int = 0,
                          alibi_slopes_H=None) -> tuple[jax.Array, dict]:
    """Self-attention of L new tokens at positions index..index+L−1 against the cached keys and
    values (`cache["key"]`, `cache["value"]`: (B, C, G, K)) and their own; returns the output and
    the cache with the newest min(L, C) keys and values written into their slots.

    The capacity C must hold every key a new query may see besides the new ones: the whole
    sequence for full attention, `window` for sliding attention (older slots are overwritten)."""
    length, capacity = q_BxLxHxK.shape[1], cache["key"].shape[1]
    query_positions_L = index + jnp.arange(length, dtype=jnp.int32)
    key_positions_S = jnp.concatenate([cache_slot_positions(index, capacity), query_positions_L])
    k_BxSxGxK = jnp.concatenate([cache["key"], k_BxLxGxK.astype(cache["key"].dtype)], axis=1)
    v_BxSxGxK = jnp.concatenate([cache["value"], v_BxLxGxK.astype(cache["value"].dtype)], axis=1)
    mask = position_mask(query_positions_L, key_positions_S, causal=causal, window=window)[None, None]
    bias = None
    if alibi_slopes_H is not None:
        bias = positions.alibi_bias(alibi_slopes_H, query_positions_L, key_positions_S, causal=causal)
    out_BxLxHxK = attention_core(q_BxLxHxK, k_BxSxGxK.astype(q_BxLxHxK.dtype),
                                 v_BxSxGxK.astype(q_BxLxHxK.dtype), scale=scale, causal=False,
                                 mask_BxHxLxS=mask, bias_BxHxLxS=bias)
    kept = min(length, capacity)
    slots = jnp.mod(index + length - kept + jnp.arange(kept, dtype=jnp.int32), capacity)
    new_cache = {"key": cache["key"].at[:, slots].set(k_BxSxGxK[:, capacity + length - kept:]),
                 "value": cache["value"].at[:, slots].set(v_BxSxGxK[:, capacity + length - kept:])}
    return out_BxLxHxK, new_cache


class Attention(nn.Module):
    """Multi-head (grouped-query) attention with projections, positions and optional QK-norm.

    Self-attention (`context_BxSxD` None) reads queries, keys and values from x; cross-attention
    reads keys and values from the context and uses neither RoPE, ALiBi nor windows, and masks
    only the context positions `key_mask_BxS` leaves out (a source's padding).

    Returns the output (B, L, D), or `(output, extras)` for self-attention when decoding with a
    `cache` (tokens at positions `index`.., extras["cache"] the updated cache) or when
    `return_weights` (extras["weights"]: (B, H, L, L) float32, computed explicitly).
    """

    cfg: ModelConfig
    causal: bool
    residual_branches: int
    deterministic: bool = True
    return_weights: bool = False

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, segment_ids_BxL: jax.Array | None = None,
                 context_BxSxD: jax.Array | None = None, cache: dict | None = None,
                 index: jax.Array | None = None, key_mask_BxS: jax.Array | None = None):
        cfg = self.cfg
        is_cross = context_BxSxD is not None
        decoding = cache is not None and not is_cross
        positions_L = index + jnp.arange(x_BxLxD.shape[1], dtype=jnp.int32) if decoding else None
        q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, w_out = self._projections(
            x_BxLxD, context_BxSxD if is_cross else x_BxLxD, is_cross, positions_L)
        # µP keeps attention logits O(1) as head_dim grows when q and k become correlated.
        scale = 1.0 / cfg.head_dim if cfg.parametrization == "mup" else 1.0 / math.sqrt(cfg.head_dim)
        dropout_rate, dropout_rng = 0.0, None
        if not self.deterministic and cfg.attention_dropout > 0.0:
            dropout_rate, dropout_rng = cfg.attention_dropout, self.make_rng("dropout")
        extras = {}
        slopes_H = positions.alibi_slopes(cfg.num_heads) if cfg.position == "alibi" else None
        window = cfg.window if cfg.attention == "sliding" else 0
        if decoding:
            out_BxLxHxK, extras["cache"] = cached_self_attention(
                q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, cache, index, scale=scale, causal=self.causal,
                window=window, alibi_slopes_H=slopes_H)
        elif self.return_weights and not is_cross:
            out_BxLxHxK, extras["weights"] = self._explicit_attention(
                q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, segment_ids_BxL, scale=scale, window=window,
                alibi_slopes_H=slopes_H)
        elif is_cross:
            out_BxLxHxK = full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, scale=scale, causal=False,
                                         key_mask_BxS=key_mask_BxS, dropout_rate=dropout_rate,
                                         dropout_rng=dropout_rng)
        else:
            common = dict(scale=scale, causal=self.causal, segment_ids_BxL=segment_ids_BxL,
                          alibi_slopes_H=slopes_H,
                          dropout_rate=dropout_rate, dropout_rng=dropout_rng)
            if cfg.attention == "sliding":
                out_BxLxHxK = sliding_window_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK,
                                                       window=cfg.window, **common)
            else:
                out_BxLxHxK = full_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, **common)
        out_BxLxHxK = nn.with_logical_constraint(out_BxLxHxK, ATTENTION_AXES)
        out_BxLxD = project(out_BxLxHxK, w_out, input_axes=2)
        if cfg.use_bias:
            out_BxLxD += self._bias("out_bias", (cfg.d_model,), (axes.EMBED,))
        return (out_BxLxD, extras) if extras else out_BxLxD

    def _bias(self, name, shape, names):
        return self.param(name, nn.with_logical_partitioning(initializers.zeros, names), shape,
                          jnp.float32).astype(jnp.dtype(self.cfg.compute_dtype))

    def _projections(self, x_BxLxD, source_BxSxD, is_cross: bool, positions_L):
        """Queries, keys and values (biases, QK-norm and RoPE applied) and the output weight."""
        cfg = self.cfg
        dtype = jnp.dtype(cfg.compute_dtype)

        def kernel(name, shape, names, role=initializers.HIDDEN, in_axis=0, out_axis=(1, 2)):
            init = initializers.dense_init(cfg, role, in_axis=in_axis, out_axis=out_axis,
                                           residual_branches=self.residual_branches)
            return self.param(name, nn.with_logical_partitioning(init, names), shape,
                              jnp.float32).astype(dtype)

        heads, kv_heads, head_dim, d_model = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_model
        w_query = kernel("query", (d_model, heads, head_dim), (axes.EMBED, axes.HEADS, axes.HEAD_DIM))
        w_key = kernel("key", (d_model, kv_heads, head_dim), (axes.EMBED, axes.KV_HEADS, axes.HEAD_DIM))
        w_value = kernel("value", (d_model, kv_heads, head_dim), (axes.EMBED, axes.KV_HEADS, axes.HEAD_DIM))
        w_out = kernel("out", (heads, head_dim, d_model), (axes.HEADS, axes.HEAD_DIM, axes.EMBED),
                       role=initializers.RESIDUAL_OUTPUT, in_axis=(0, 1), out_axis=2)
        q_BxLxHxK = project(x_BxLxD, w_query)
        k_BxSxGxK = project(source_BxSxD, w_key)
        v_BxSxGxK = project(source_BxSxD, w_value)
        if cfg.use_bias:
            q_BxLxHxK += self._bias("query_bias", (heads, head_dim), (axes.HEADS, axes.HEAD_DIM))
            k_BxSxGxK += self._bias("key_bias", (kv_heads, head_dim), (axes.KV_HEADS, axes.HEAD_DIM))
            v_BxSxGxK += self._bias("value_bias", (kv_heads, head_dim), (axes.KV_HEADS, axes.HEAD_DIM))
        if cfg.qk_norm:
            q_BxLxHxK = Norm(cfg.norm, (axes.HEAD_DIM,), name="query_norm")(q_BxLxHxK)
            k_BxSxGxK = Norm(cfg.norm, (axes.HEAD_DIM,), name="key_norm")(k_BxSxGxK)
        if cfg.position == "rope" and not is_cross:
            q_BxLxHxK = positions.apply_rope(q_BxLxHxK, cfg.rope_theta, positions_L)
            k_BxSxGxK = positions.apply_rope(k_BxSxGxK, cfg.rope_theta, positions_L)
        return (nn.with_logical_constraint(q_BxLxHxK, ATTENTION_AXES),
                nn.with_logical_constraint(k_BxSxGxK, KV_AXES),
                nn.with_logical_constraint(v_BxSxGxK, KV_AXES), w_out)

    def _explicit_attention(self, q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL, *, scale,
                            window, alibi_slopes_H):
        """The output and the (B, H, L, L) weights, from the whole weight matrix."""
        positions_L = jnp.arange(q_BxLxHxK.shape[1], dtype=jnp.int32)
        mask = position_mask(positions_L, positions_L, causal=self.causal, window=window)[None, None]
        if segment_ids_BxL is not None:
            mask = mask & (segment_ids_BxL[:, None, :, None] == segment_ids_BxL[:, None, None, :])
        bias = None
        if alibi_slopes_H is not None:
            bias = positions.alibi_bias(alibi_slopes_H, positions_L, positions_L, causal=self.causal)
        weights_BxHxLxL = attention_weights(q_BxLxHxK, k_BxLxGxK, scale=scale, mask_BxHxLxS=mask,
                                            bias_BxHxLxS=bias)
        return weighted_values(weights_BxHxLxL, v_BxLxGxK), weights_BxHxLxL

"""Attention kernels and the attention layer against a float64 NumPy reference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.config import ModelConfig
from scaling.layers import attention, positions


def reference_attention(q, k, v, *, scale, allowed=None, bias=None, keep=None, keep_prob=1.0):
    """float64 softmax(Q·Kᵀ·scale + bias, masked)·V; q (B,L,H,K), k/v (B,S,G,K), allowed (B,L,S) or
    (L,S), bias (H,L,S); query head h reads kv head h // (H/G); keep (B,H,L,S) drops weights."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, length, heads, _ = q.shape
    group = heads // k.shape[2]
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            logits = q[b, :, h] @ k[b, :, h // group].T * scale
            if bias is not None:
                logits = logits + np.asarray(bias, np.float64)[h]
            if allowed is not None:
                mask = allowed[b] if np.ndim(allowed) == 3 else allowed
                logits = np.where(mask, logits, -np.inf)
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            if keep is not None:
                weights = np.where(keep[b, h], weights / keep_prob, 0.0)
            out[b, :, h] = weights @ v[b, :, h // group]
    return out


def random_qkv(seed, batch=2, length=12, heads=4, kv_heads=4, head_dim=8, key_length=None):
    rng = np.random.default_rng(seed)
    key_length = key_length or length
    q = rng.normal(size=(batch, length, heads, head_dim)).astype(np.float32)
    k = rng.normal(size=(batch, key_length, kv_heads, head_dim)).astype(np.float32)
    v = rng.normal(size=(batch, key_length, kv_heads, head_dim)).astype(np.float32)
    return q, k, v


def relative_error(actual, expected):
    return np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_full_attention_matches_numpy(causal, kv_heads):
    q, k, v = random_qkv(0, kv_heads=kv_heads)
    scale = 1 / np.sqrt(q.shape[-1])
    out = attention.full_attention(q, k, v, scale=scale, causal=causal)
    allowed = np.tril(np.ones((12, 12), bool)) if causal else None
    assert relative_error(out, reference_attention(q, k, v, scale=scale, allowed=allowed)) <= 1e-5


def test_cross_attention_with_different_key_length_matches_numpy():
    q, k, v = random_qkv(1, length=5, key_length=9, kv_heads=2)
    out = attention.full_attention(q, k, v, scale=0.3, causal=False)
    assert relative_error(out, reference_attention(q, k, v, scale=0.3)) <= 1e-5


def test_document_mask_and_alibi_match_numpy():
    q, k, v = random_qkv(2)
    segments = np.array([[0] * 5 + [1] * 7, [0] * 12])
    slopes = positions.alibi_slopes(4)
    out = attention.full_attention(q, k, v, scale=0.25, causal=True, segment_ids_BxL=segments,
                                   alibi_slopes_H=slopes)
    i, j = np.arange(12)[:, None], np.arange(12)[None, :]
    allowed = (segments[:, :, None] == segments[:, None, :]) & (j <= i)
    bias = -slopes.astype(np.float64)[:, None, None] * (i - j)
    assert relative_error(out, reference_attention(q, k, v, scale=0.25, allowed=allowed, bias=bias)) <= 1e-5


def test_attention_dropout_path_matches_numpy_with_the_same_keep_mask():
    q, k, v = random_qkv(3, kv_heads=2)
    rng, rate = jax.random.key(7), 0.3
    out = attention.full_attention(q, k, v, scale=0.35, causal=True, dropout_rate=rate,
                                   dropout_rng=rng)
    keep = np.asarray(jax.random.bernoulli(rng, 1 - rate, (2, 4, 12, 12)))
    expected = reference_attention(q, k, v, scale=0.35, allowed=np.tril(np.ones((12, 12), bool)),
                                   keep=keep, keep_prob=1 - rate)
    assert relative_error(out, expected) <= 1e-5


@pytest.mark.parametrize("query_block", [4, 5, 19])
def test_causal_attention_in_query_blocks_matches_numpy(query_block):
    """Blocks of queries against only the keys up to their last position (uneven last block
    included): same output as the full masked softmax, with documents, ALiBi, GQA and the same
    dropout pattern."""
    length, rate, rng = 20, 0.25, jax.random.key(3)
    q, k, v = random_qkv(8, length=length, kv_heads=2)
    segments = np.array([[0] * 7 + [1] * 13, [0] * 20])
    slopes = positions.alibi_slopes(4)
    out = attention.full_attention(q, k, v, scale=0.3, causal=True, segment_ids_BxL=segments,
                                   alibi_slopes_H=slopes, dropout_rate=rate, dropout_rng=rng)
    blocked = attention.attention_core(
        q, k, v, scale=0.3, causal=True,
        mask_BxHxLxS=segments[:, None, :, None] == segments[:, None, None, :],
        bias_BxHxLxS=positions.alibi_bias(slopes, jnp.arange(length), jnp.arange(length),
                                          causal=True),
        dropout_rate=rate, dropout_rng=rng, query_block=query_block)
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = (segments[:, :, None] == segments[:, None, :]) & (j <= i)
    bias = -slopes.astype(np.float64)[:, None, None] * (i - j)
    keep = np.asarray(jax.random.bernoulli(rng, 1 - rate, (2, 4, length, length)))
    expected = reference_attention(q, k, v, scale=0.3, allowed=allowed, bias=bias, keep=keep,
                                   keep_prob=1 - rate)
    assert relative_error(blocked, expected) <= 1e-5
    assert relative_error(out, expected) <= 1e-5


def window_mask(length, window, causal):
    distance = np.arange(length)[:, None] - np.arange(length)[None, :]
    return (distance >= 0) & (distance < window) if causal else np.abs(distance) < window


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length,window", [(12, 4), (13, 4), (10, 3), (6, 8)])
def test_sliding_window_equals_full_attention_masked_to_the_window(causal, length, window):
    q, k, v = random_qkv(4, length=length, kv_heads=2)
    out = attention.sliding_window_attention(q, k, v, window=window, scale=0.3, causal=causal)
    expected = reference_attention(q, k, v, scale=0.3, allowed=window_mask(length, window, causal))
    assert relative_error(out, expected) <= 1e-5


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_with_documents_and_alibi_matches_numpy(causal):
    length, window = 14, 4
    q, k, v = random_qkv(5, length=length)
    segments = np.array([[0] * 6 + [1] * 8, [0] * 3 + [1] * 11])
    slopes = positions.alibi_slopes(4)
    out = attention.sliding_window_attention(q, k, v, window=window, scale=0.3, causal=causal,
                                             segment_ids_BxL=segments, alibi_slopes_H=slopes)
    distance = np.arange(length)[:, None] - np.arange(length)[None, :]
    if not causal:
        distance = np.abs(distance)
    allowed = window_mask(length, window, causal)[None] & (segments[:, :, None] == segments[:, None, :])
    bias = -slopes.astype(np.float64)[:, None, None] * distance
    expected = reference_attention(q, k, v, scale=0.3, allowed=allowed, bias=bias)
    assert relative_error(out, expected) <= 1e-5


def test_sliding_window_memory_grows_with_length_times_window():
    """No intermediate of the blocked computation has length² elements per batch·head."""
    batch, length, heads, head_dim, window = 1, 512, 2, 8, 16
    q = jnp.zeros((batch, length, heads, head_dim))
    jaxpr = jax.make_jaxpr(lambda q: attention.sliding_window_attention(
        q, q, q, window=window, scale=1.0, causal=True))(q)
    largest = max(np.prod(var.aval.shape) for eqn in jaxpr.jaxpr.eqns for var in eqn.outvars
                  if hasattr(var.aval, "shape"))
    assert largest <= batch * heads * length * 2 * window
    assert largest < batch * heads * length * length / 8


def layer_config(**overrides):
    return dataclasses.replace(ModelConfig(d_model=16, num_heads=4, num_kv_heads=4, head_dim=4,
                                           position="none"), **overrides)


def test_attention_layer_matches_numpy_multi_head_attention():
    cfg = layer_config()
    layer = attention.Attention(cfg, causal=True, residual_branches=2)
    x = np.random.default_rng(6).normal(size=(2, 7, 16)).astype(np.float32)
    params = layer.init(jax.random.key(0), x)["params"]
    w = {name: np.asarray(box.value, np.float64) for name, box in params.items()}
    q = np.einsum("bld,dhk->blhk", x, w["query"])
    k = np.einsum("bld,dhk->blhk", x, w["key"])
    v = np.einsum("bld,dhk->blhk", x, w["value"])
    heads = reference_attention(q, k, v, scale=0.5, allowed=np.tril(np.ones((7, 7), bool)))
    expected = np.einsum("blhk,hkd->bld", heads, w["out"])
    assert relative_error(layer.apply({"params": params}, x), expected) <= 1e-5


def test_grouped_query_attention_equals_multi_head_with_repeated_key_value_weights():
    gqa_cfg = layer_config(num_kv_heads=2)
    x = np.random.default_rng(7).normal(size=(2, 7, 16)).astype(np.float32)
    gqa = attention.Attention(gqa_cfg, causal=True, residual_branches=2)
    gqa_params = gqa.init(jax.random.key(1), x)["params"]
    mha_params = dict(gqa_params)
    for name in ("key", "value"):
        box = gqa_params[name]
        mha_params[name] = box.replace_boxed(jnp.repeat(box.value, 2, axis=1))
    mha = attention.Attention(layer_config(num_kv_heads=4), causal=True, residual_branches=2)
    np.testing.assert_allclose(gqa.apply({"params": gqa_params}, x),
                               mha.apply({"params": mha_params}, x), rtol=1e-5, atol=1e-6)

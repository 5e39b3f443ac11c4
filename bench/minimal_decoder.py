"""A minimal decoder-only Transformer train step: the yardstick for `bench.bench_train_step`.

The same architecture as `scaling`'s default decoder (pre-norm RMSNorm, RoPE, causal multi-head
attention, GELU MLP, tied embeddings, float32) written as plainly as possible: parameters in a
dict, layers in a Python loop (unrolled at trace time), attention as two einsums around a float32
softmax, AdamW with global-norm clipping. Nothing is shared with `scaling.model`, so the ratio of
the two speeds measures the framework's overheads, not the architecture.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

EPSILON = 1e-6
ROPE_THETA = 10000.0


def init_params(key: jax.Array, *, vocab: int, width: int, heads: int, layers: int,
                ffn: int) -> dict:
    """Normal(0, 0.02) weights, residual outputs scaled by 1/√(2·layers), unit norm scales."""
    keys = iter(jax.random.split(key, 1 + 6 * layers))
    std, residual_std = 0.02, 0.02 / math.sqrt(2 * layers)
    head_dim = width // heads

    def normal(shape, scale):
        return scale * jax.random.normal(next(keys), shape, jnp.float32)

    blocks = []
    for _ in range(layers):
        blocks.append({
            "attention_scale": jnp.ones((width,), jnp.float32),
            "query": normal((width, heads, head_dim), std),
            "key": normal((width, heads, head_dim), std),
            "value": normal((width, heads, head_dim), std),
            "out": normal((heads, head_dim, width), residual_std),
            "mlp_scale": jnp.ones((width,), jnp.float32),
            "mlp_in": normal((width, ffn), std),
            "mlp_out": normal((ffn, width), residual_std),
        })
    return {"embedding": normal((vocab, width), std), "blocks": blocks,
            "final_scale": jnp.ones((width,), jnp.float32)}


def _rms_norm(x_BxLxD, scale_D):
    return x_BxLxD * jax.lax.rsqrt(jnp.mean(jnp.square(x_BxLxD), -1, keepdims=True) + EPSILON) * scale_D


def _rope(x_BxLxHxK, cos_LxHalf, sin_LxHalf):
    half = x_BxLxHxK.shape[-1] // 2
    cos, sin = cos_LxHalf[None, :, None], sin_LxHalf[None, :, None]
    first, second = x_BxLxHxK[..., :half], x_BxLxHxK[..., half:]
    return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def forward(params: dict, tokens_BxL: jax.Array) -> jax.Array:
    """Token ids (B, L) → logits (B, L, vocab), float32."""
    length = tokens_BxL.shape[1]
    head_dim = params["blocks"][0]["query"].shape[-1]
    inverse_frequencies = ROPE_THETA ** (-np.arange(head_dim // 2, dtype=np.float32) * 2 / head_dim)
    angles_LxHalf = np.arange(length, dtype=np.float32)[:, None] * inverse_frequencies[None]
    cos_LxHalf, sin_LxHalf = jnp.asarray(np.cos(angles_LxHalf)), jnp.asarray(np.sin(angles_LxHalf))
    causal_LxS = jnp.asarray(np.tril(np.ones((length, length), bool)))

    x_BxLxD = params["embedding"][tokens_BxL]
    for block in params["blocks"]:
        h_BxLxD = _rms_norm(x_BxLxD, block["attention_scale"])
        q_BxLxHxK = _rope(jnp.einsum("BLD,DHK->BLHK", h_BxLxD, block["query"]), cos_LxHalf, sin_LxHalf)
        k_BxSxHxK = _rope(jnp.einsum("BSD,DHK->BSHK", h_BxLxD, block["key"]), cos_LxHalf, sin_LxHalf)
        v_BxSxHxK = jnp.einsum("BSD,DHK->BSHK", h_BxLxD, block["value"])
        logits_BxHxLxS = jnp.einsum("BLHK,BSHK->BHLS", q_BxLxHxK, k_BxSxHxK) / math.sqrt(head_dim)
        logits_BxHxLxS = jnp.where(causal_LxS, logits_BxHxLxS, jnp.finfo(jnp.float32).min)
        weights_BxHxLxS = jax.nn.softmax(logits_BxHxLxS, axis=-1)
        attended_BxLxHxK = jnp.einsum("BHLS,BSHK->BLHK", weights_BxHxLxS, v_BxSxHxK)
        x_BxLxD = x_BxLxD + jnp.einsum("BLHK,HKD->BLD", attended_BxLxHxK, block["out"])
        h_BxLxD = _rms_norm(x_BxLxD, block["mlp_scale"])
        hidden_BxLxF = jax.nn.gelu(h_BxLxD @ block["mlp_in"])
        x_BxLxD = x_BxLxD + hidden_BxLxF @ block["mlp_out"]
    x_BxLxD = _rms_norm(x_BxLxD, params["final_scale"])
    return jnp.einsum("BLD,VD->BLV", x_BxLxD, params["embedding"])


def loss(params: dict, inputs_BxL: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy in nats."""
    log_probs_BxLxV = jax.nn.log_softmax(forward(params, inputs_BxL), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs_BxLxV, targets_BxL[..., None], axis=-1))


def make_train_step(optimizer: optax.GradientTransformation) -> Callable:
    """A jitted `(params, opt_state, inputs, targets) → (params, opt_state, loss)` with donated
    params and optimizer state."""

    def train_step(params, opt_state, inputs_BxL, targets_BxL):
        value, grads = jax.value_and_grad(loss)(params, inputs_BxL, targets_BxL)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(train_step, donate_argnums=(0, 1))


def workload(width: int, heads: int, layers: int, ffn: int, seq_len: int, batch_size: int,
             vocab: int = 257) -> Callable[[int], float]:
    """Compile the minimal train step for one shape; return `run(steps)` → seconds per step."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adamw(3e-4, b1=0.9, b2=0.95, weight_decay=0.1))
    params = init_params(jax.random.key(0), vocab=vocab, width=width, heads=heads, layers=layers,
                         ffn=ffn)
    opt_state = optimizer.init(params)
    tokens = np.random.default_rng(0).integers(0, vocab, (batch_size, seq_len + 1)).astype(np.int32)
    inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    step = make_train_step(optimizer)
    params, opt_state, value = step(params, opt_state, inputs, targets)
    jax.block_until_ready(value)
    holder = {"params": params, "opt_state": opt_state}

    def run(steps: int) -> float:
        begin = time.perf_counter()
        for _ in range(steps):
            holder["params"], holder["opt_state"], value = step(holder["params"], holder["opt_state"],
                                                                inputs, targets)
        jax.block_until_ready(value)
        return (time.perf_counter() - begin) / steps

    return run

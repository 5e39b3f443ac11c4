"""Autoregressive decoding with a key/value cache, for decoder-only and encoder–decoder models.

`generate(model, params, prompt_BxP, rng, settings)` feeds the prompt through the model once
(prefill), then one token per step, each step reading the keys and values of the earlier ones
from the cache instead of recomputing the prefix. The whole loop is one jitted function per
(shapes, settings): the steps run in `lax.scan`, so a run of N tokens compiles once.

The cache holds, per decoder layer, `capacity` key/value slots: the whole sequence (prompt plus
new tokens) under full attention, only the window under sliding attention (older slots are
overwritten, see `scaling.layers.attention.cached_self_attention`). An encoder–decoder's source is
encoded once, in the prefill, and kept in the cache.

Sampling (`sample_logits`): temperature 0 is greedy (argmax); otherwise (logits − their max) /
temperature (so a temperature near 0 tends to greedy), restricted to the `top_k` largest (0: all)
and to the smallest set whose probability reaches `top_p` (1: all), then one categorical draw. A
step's random key is the seed's key split per step, so the same seed, prompt and settings give the
same tokens.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from scaling import model as model_lib
from scaling.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How each new token is chosen; hashable, so one compiled loop serves each setting."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def cache_capacity(model: ModelConfig, total_length: int) -> int:
    """Key/value slots per layer for sequences of `total_length` tokens: all of them, or only the
    sliding window."""
    if model.attention == "sliding":
        return min(model.window, total_length)
    return total_length


def memory_bytes(model: ModelConfig, batch: int, prompt_length: int, max_new_tokens: int,
                 source_length: int = 0) -> int:
    """A lower bound on the bytes `generate` holds: the cache's keys and values (and encoded
    source) twice, as the loop's carry in and out; the prefill's float32 logits; each step's
    random key and the sampled ids. (A compiled loop holds 1–2× this.)"""
    itemsize = jnp.dtype(model.compute_dtype).itemsize
    capacity = cache_capacity(model, prompt_length + max_new_tokens)
    cache = 2 * model.num_layers * batch * capacity * model.num_kv_heads * model.head_dim
    encoded = batch * source_length * model.d_model
    logits = batch * prompt_length * model.vocab_size * 4
    # Each step's threefry key (split, then sliced) and its sampled ids.
    steps = max_new_tokens * (2 * 8 + batch * 4)
    return 2 * (cache + encoded) * itemsize + logits + steps


def init_cache(model: ModelConfig, batch: int, capacity: int, source_length: int = 0) -> dict:
    """An empty cache: `index` 0, zero keys and values (num_layers, B, capacity, G, K) in the
    compute dtype, and for an encoder–decoder a zero encoded source (B, source_length, D) and
    its non-padding mask (B, source_length), both set by the prefill."""
    dtype = jnp.dtype(model.compute_dtype)
    shape = (model.num_layers, batch, capacity, model.num_kv_heads, model.head_dim)
    cache = {"index": jnp.zeros((), jnp.int32),
             "layers": {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype)}}
    if model.layout == "encoder_decoder":
        cache["encoded"] = jnp.zeros((batch, source_length, model.d_model), dtype)
        cache["source_mask"] = jnp.ones((batch, source_length), bool)
    return cache


def sample_logits(logits_BxV: jax.Array, rng: jax.Array, settings: SamplingSettings) -> jax.Array:
    """One token id per row (int32), chosen from float32 logits per `settings`."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    if settings.temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    # From the largest logit down: a tiny temperature sends the others to -inf, not past +inf.
    logits_BxV = (logits_BxV - jnp.max(logits_BxV, axis=-1, keepdims=True)) / settings.temperature
    excluded = -jnp.inf
    if 0 < settings.top_k < logits_BxV.shape[-1]:
        kth_largest_Bx1 = jax.lax.top_k(logits_BxV, settings.top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_largest_Bx1, excluded, logits_BxV)
    if settings.top_p < 1.0:
        sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
        probabilities_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        # A token stays while the tokens more likely than it hold less than top_p (the first
        # always stays); the smallest kept logit is the cut.
        before_BxV = jnp.cumsum(probabilities_BxV, axis=-1) - probabilities_BxV
        kept_BxV = before_BxV < settings.top_p
        cut_Bx1 = jnp.min(jnp.where(kept_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV < cut_Bx1, excluded, logits_BxV)
    return jax.random.categorical(rng, logits_BxV, axis=-1).astype(jnp.int32)


def _generate(params, prompt_BxP, rng, source_BxS, *, model: ModelConfig,
              settings: SamplingSettings):
    net = model_lib.Transformer(model)
    batch, prompt_length = prompt_BxP.shape
    capacity = cache_capacity(model, prompt_length + settings.max_new_tokens)
    cache = init_cache(model, batch, capacity,
                       source_BxS.shape[1] if source_BxS is not None else 0)
    step_rngs = jax.random.split(rng, settings.max_new_tokens)
    logits_BxPxV, extras = net.apply({"params": params}, prompt_BxP, encoder_tokens_BxS=source_BxS,
                                     cache=cache)
    first_B = sample_logits(logits_BxPxV[:, -1], step_rngs[0], settings)

    def step(carry, step_rng):
        token_B, cache = carry
        logits_Bx1xV, extras = net.apply({"params": params}, token_B[:, None], cache=cache)
        next_B = sample_logits(logits_Bx1xV[:, -1], step_rng, settings)
        return (next_B, extras["cache"]), next_B

    _, rest_NxB = jax.lax.scan(step, (first_B, extras["cache"]), step_rngs[1:])
    return jnp.concatenate([first_B[:, None], rest_NxB.T], axis=1)


@functools.cache
def _compiled_generate(model: ModelConfig, settings: SamplingSettings):
    return jax.jit(functools.partial(_generate, model=model, settings=settings))


def generate(model: ModelConfig, params, prompt_BxP, rng: jax.Array, settings: SamplingSettings,
             source_BxS=None) -> jax.Array:
    """(B, max_new_tokens) int32: the tokens sampled after each row of `prompt_BxP` (at least one
    token per row), for an encoder–decoder conditioned on `source_BxS`. Compiled once per model,
    settings and shapes."""
    if model.layout == "encoder":
        raise ValueError("an encoder-only model (layout 'encoder') cannot generate")
    if settings.max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    source_BxS = None if source_BxS is None else jnp.asarray(source_BxS, jnp.int32)
    return _compiled_generate(model, settings)(params, prompt_BxP, rng, source_BxS)

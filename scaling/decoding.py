"""Autoregressive decoding with a key/value cache, for decoder-only and encoder–decoder models.

`generate(model, params, prompt_BxP, rng, settings)` feeds the prompt through the model once
(prefill), then one token per step, each step reading the keys and values of the earlier ones
from the cache instead of recomputing the prefix. The prefill is one jitted call; the steps run
up to `STEPS_PER_CALL` at a time in a jitted `lax.scan` (`steps_per_call`), so a run of N tokens
compiles two programs, and can be stopped between calls (Ctrl-C, or every row having sampled a
stop token).

The cache holds, per decoder layer, `capacity` key/value slots: the whole sequence (prompt plus
new tokens) under full attention, only the window under sliding attention (older slots are
overwritten, see `scaling.layers.attention.cached_self_attention`). An encoder–decoder's source is
encoded once, in the prefill, and kept in the cache.

Sampling (`sample_logits`): temperature 0 is greedy (argmax); otherwise (logits − their max) /
temperature (so a temperature near 0 tends to greedy), restricted to the `top_k` largest (0: all)
and to the smallest set whose probability reaches `top_p` (1: all), then one categorical draw. New
token number i is drawn with the seed's key folded with i, so the same seed, prompt and settings
give the same tokens, however the steps are grouped into calls.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from scaling import model as model_lib
from scaling.config import ModelConfig

# New tokens per compiled call: the granularity of Ctrl-C and of stopping at a stop token.
STEPS_PER_CALL = 64


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
    """A lower bound on the bytes `generate` holds on the device besides the parameters: the
    cache's keys and values (and encoded source) twice, as a call's input and output; the
    prefill's float32 logits; one call's sampled ids. (A compiled call holds 1–2× this.)"""
    itemsize = jnp.dtype(model.compute_dtype).itemsize
    capacity = cache_capacity(model, prompt_length + max_new_tokens)
    cache = 2 * model.num_layers * batch * capacity * model.num_kv_heads * model.head_dim
    encoded = batch * source_length * model.d_model
    logits = batch * prompt_length * model.vocab_size * 4
    ids = steps_per_call(max_new_tokens) * batch * 4
    return 2 * (cache + encoded) * itemsize + logits + ids


def steps_per_call(max_new_tokens: int) -> int:
    """Steps each call runs after the prefill: the same in every call (one compiled loop), at most
    `STEPS_PER_CALL`, in as few calls as that allows. The last call may run past
    `max_new_tokens`, by less than one step per call; its extra tokens are dropped."""
    steps = max_new_tokens - 1
    if steps == 0:
        return 0
    calls = -(-steps // STEPS_PER_CALL)
    return -(-steps // calls)


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
    batch, vocab = logits_BxV.shape
    top_k = settings.top_k if 0 < settings.top_k < vocab else 0
    if top_k:
        # Exactly the k likeliest (of equal logits, the lowest ids), chosen before the
        # temperature: the same set at every temperature, where a huge one makes the logits'
        # differences float32 subnormals, flushed to 0 (every token tied with the largest).
        top_ids_BxK = jax.lax.top_k(logits_BxV, top_k)[1]
        top_BxV = jnp.zeros((batch, vocab), bool).at[jnp.arange(batch)[:, None],
                                                      top_ids_BxK].set(True)
    # From the largest logit down: a tiny temperature sends the others to -inf, not past +inf.
    logits_BxV = (logits_BxV - jnp.max(logits_BxV, axis=-1, keepdims=True)) / settings.temperature
    excluded = -jnp.inf
    if top_k:
        logits_BxV = jnp.where(top_BxV, logits_BxV, excluded)
    if settings.top_p < 1.0:
        # Likeliest first (of equal logits, the lowest ids: a huge temperature ties them all).
        order_BxV = jnp.argsort(-logits_BxV, axis=-1, stable=True)
        sorted_BxV = jnp.take_along_axis(logits_BxV, order_BxV, axis=-1)
        probabilities_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        # A token stays while the tokens before it hold less than top_p (the first always stays).
        before_BxV = jnp.cumsum(probabilities_BxV, axis=-1) - probabilities_BxV
        # (The first by its position too: a top_p below float32's smallest number is 0 here.)
        kept_BxV = (before_BxV < settings.top_p) | (jnp.arange(vocab) == 0)
        nucleus_BxV = jnp.zeros((batch, vocab), bool).at[jnp.arange(batch)[:, None],
                                                         order_BxV].set(kept_BxV)
        logits_BxV = jnp.where(nucleus_BxV, logits_BxV, excluded)
    return jax.random.categorical(rng, logits_BxV, axis=-1).astype(jnp.int32)


def _prefill(params, prompt_BxP, rng, source_BxS, *, model: ModelConfig,
             settings: SamplingSettings):
    """The cache after the prompt (and the encoded source), and the first new token."""
    batch, prompt_length = prompt_BxP.shape
    capacity = cache_capacity(model, prompt_length + settings.max_new_tokens)
    cache = init_cache(model, batch, capacity,
                       source_BxS.shape[1] if source_BxS is not None else 0)
    logits_BxPxV, extras = model_lib.Transformer(model).apply(
        {"params": params}, prompt_BxP, encoder_tokens_BxS=source_BxS, cache=cache)
    return sample_logits(logits_BxPxV[:, -1], step_key(rng, 0), settings), extras["cache"]


def _steps(params, token_B, cache, rng, first, *, model: ModelConfig, settings: SamplingSettings,
           count: int):
    """`count` steps from `token_B`, the new token number `first`: each feeds the last token
    through the model and samples the next. Returns the last token, the cache and the
    (count, B) sampled ids."""
    net = model_lib.Transformer(model)

    def step(carry, key):
        token_B, cache = carry
        logits_Bx1xV, extras = net.apply({"params": params}, token_B[:, None], cache=cache)
        next_B = sample_logits(logits_Bx1xV[:, -1], key, settings)
        return (next_B, extras["cache"]), next_B

    # The call's keys at once: hashed one by one inside the loop, they cost a CPU step 15-20%.
    keys_K = jax.vmap(step_key, in_axes=(None, 0))(rng, first + jnp.arange(count))
    (token_B, cache), tokens_KxB = jax.lax.scan(step, (token_B, cache), keys_K)
    return token_B, cache, tokens_KxB


def step_key(rng: jax.Array, number) -> jax.Array:
    """The random key that draws new token number `number` (0: the prefill's)."""
    return jax.random.fold_in(rng, number)


@functools.cache
def _compiled_prefill(model: ModelConfig, settings: SamplingSettings):
    return jax.jit(functools.partial(_prefill, model=model, settings=settings))


@functools.cache
def _compiled_steps(model: ModelConfig, settings: SamplingSettings, count: int):
    return jax.jit(functools.partial(_steps, model=model, settings=settings, count=count))


def generate(model: ModelConfig, params, prompt_BxP, rng: jax.Array, settings: SamplingSettings,
             source_BxS=None, stop_id: int | None = None) -> jax.Array:
    """(B, n) int32: the tokens sampled after each row of `prompt_BxP` (at least one token per
    row), for an encoder–decoder conditioned on `source_BxS`. n is `max_new_tokens`, or with
    `stop_id` less once every row has sampled it: generation then ends after the call in which
    the last row did (tokens after a row's first `stop_id` are whatever was drawn).

    The prompt is one compiled call; the new tokens come `steps_per_call` to a call, each
    waited for, so Ctrl-C (KeyboardInterrupt) ends a long generation after the call under way.
    Compiled once per model, settings and shapes."""
    if model.layout == "encoder":
        raise ValueError("an encoder-only model (layout 'encoder') cannot generate")
    if settings.max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    source_BxS = None if source_BxS is None else jnp.asarray(source_BxS, jnp.int32)
    token_B, cache = _compiled_prefill(model, settings)(params, prompt_BxP, rng, source_BxS)
    pieces = [np.asarray(token_B)[:, None]]
    stopped_B = pieces[0][:, 0] == stop_id  # all False without a stop token
    count = steps_per_call(settings.max_new_tokens)
    done = 1
    while done < settings.max_new_tokens and not (stop_id is not None and stopped_B.all()):
        token_B, cache, tokens_KxB = _compiled_steps(model, settings, count)(
            params, token_B, cache, rng, done)
        pieces.append(np.asarray(tokens_KxB).T)
        stopped_B |= np.any(pieces[-1] == stop_id, axis=1)
        done += count
    return jnp.asarray(np.concatenate(pieces, axis=1)[:, :settings.max_new_tokens])

"""Decoding with a key/value cache against full forward passes of the same model, and the
sampling rules against NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import decoding
from scaling import model as model_lib
from scaling.config import ModelConfig

VOCAB, LENGTH, SOURCE = 50, 20, 7


def tiny_model(**fields) -> ModelConfig:
    base = dict(num_layers=2, d_model=32, num_heads=4, num_kv_heads=4, head_dim=8, d_ff=64,
                vocab_size=VOCAB, max_seq_len=40, num_encoder_layers=1)
    base.update(fields)
    return ModelConfig(**base)


def init(model: ModelConfig, seed: int = 0):
    tokens = jnp.zeros((1, LENGTH), jnp.int32)
    source = tokens[:, :SOURCE] if model.layout == "encoder_decoder" else None
    return model_lib.Transformer(model).init(jax.random.key(seed), tokens,
                                             encoder_tokens_BxS=source)["params"]


@functools.cache
def cached_apply(model: ModelConfig):
    net = model_lib.Transformer(model)
    return jax.jit(lambda params, tokens, cache, source: net.apply(
        {"params": params}, tokens, encoder_tokens_BxS=source, cache=cache))


CASES = {
    "rope-gqa": dict(num_kv_heads=2),
    "alibi": dict(position="alibi"),
    "learned-post-norm-qk-norm-bias": dict(position="learned", norm_position="post", qk_norm=True,
                                           use_bias=True, norm="layernorm"),
    "sinusoidal": dict(position="sinusoidal"),
    "none": dict(position="none"),
    "sliding": dict(attention="sliding", window=5),
    "sliding-alibi-mqa": dict(attention="sliding", window=4, position="alibi", num_kv_heads=1),
    "encoder-decoder": dict(layout="encoder_decoder"),
}


@pytest.mark.parametrize("case", CASES)
def test_cached_logits_equal_full_forward_logits(case):
    """Prefill 6 tokens, then feed the rest two at a time: every position's logits equal the full
    forward pass's within 1e-5 (sliding windows wrap the ring buffer several times)."""
    model = tiny_model(**CASES[case])
    params = init(model)
    tokens = jax.random.randint(jax.random.key(1), (2, LENGTH), 0, VOCAB)
    source = tokens[:, :SOURCE] if model.layout == "encoder_decoder" else None
    full = model_lib.Transformer(model).apply({"params": params}, tokens, encoder_tokens_BxS=source)
    capacity = decoding.cache_capacity(model, LENGTH)
    if model.attention == "sliding":
        assert capacity == model.window  # the cache keeps only the window
    cache = decoding.init_cache(model, 2, capacity, SOURCE if source is not None else 0)
    pieces, start, outputs = [6] + [2] * 7, 0, []
    assert sum(pieces) == LENGTH
    for index, size in enumerate(pieces):
        logits, extras = cached_apply(model)(params, tokens[:, start:start + size], cache,
                                             source if index == 0 else None)
        cache = extras["cache"]
        outputs.append(logits)
        start += size
        assert int(cache["index"]) == start
    incremental = jnp.concatenate(outputs, axis=1)
    np.testing.assert_allclose(incremental, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["sliding", "encoder-decoder"])
def test_greedy_decoding_is_the_argmax_of_a_full_forward_pass_at_every_step(case):
    model = tiny_model(**CASES[case])
    params = init(model, seed=3)
    prompt = jax.random.randint(jax.random.key(2), (2, 5), 0, VOCAB)
    source = prompt[:, :SOURCE] if model.layout == "encoder_decoder" else None
    settings = decoding.SamplingSettings(max_new_tokens=12, temperature=0.0)
    generated = decoding.generate(model, params, prompt, jax.random.key(0), settings, source)
    assert generated.shape == (2, 12)
    sequence = jnp.concatenate([prompt, generated], axis=1)
    logits = model_lib.Transformer(model).apply({"params": params}, sequence[:, :-1],
                                                encoder_tokens_BxS=source)
    expected = jnp.argmax(logits[:, prompt.shape[1] - 1:], axis=-1)
    np.testing.assert_array_equal(generated, expected)


def held_by_generate(model: ModelConfig, batch: int, new_tokens: int) -> int:
    """Bytes held, besides the parameters, by the larger of `generate`'s two compiled calls (the
    prefill, and a call of `STEPS_PER_CALL` steps)."""
    params = jax.eval_shape(lambda: init(model))
    prompt = jax.ShapeDtypeStruct((batch, 5), jnp.int32)
    source = (jax.ShapeDtypeStruct((batch, SOURCE), jnp.int32)
              if model.layout == "encoder_decoder" else None)
    settings = decoding.SamplingSettings(max_new_tokens=new_tokens)
    token, cache = jax.eval_shape(functools.partial(decoding._prefill, model=model,
                                                    settings=settings),
                                  params, prompt, jax.random.key(0), source)
    calls = [decoding._compiled_prefill(model, settings).lower(params, prompt, jax.random.key(0),
                                                               source),
             decoding._compiled_steps(model, settings, decoding.steps_per_call(new_tokens)).lower(
                 params, token, cache, jax.random.key(0), 1)]
    held = max(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
               + analysis.output_size_in_bytes
               for analysis in (call.compile().memory_analysis() for call in calls))
    return held - sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("case, fields", [
    ("rope-gqa", {}), ("encoder-decoder", {}),
    ("rope-gqa", {"compute_dtype": "bfloat16", "num_layers": 3}),
])
def test_the_memory_estimate_is_a_lower_bound_of_the_compiled_calls(case, fields):
    """What `scaling-sample` refuses a request on: the compiled calls hold at least as much and,
    at lengths where the cache dominates, less than twice as much."""
    model = tiny_model(**{**CASES[case], **fields, "max_seq_len": 0})
    for batch, new_tokens in [(1, 20_000), (3, 20_000)]:
        estimate = decoding.memory_bytes(model, batch, 5, new_tokens,
                                         SOURCE if model.layout == "encoder_decoder" else 0)
        assert estimate <= held_by_generate(model, batch, new_tokens) < 2 * estimate


def test_a_sliding_window_decodes_any_length_in_the_same_memory():
    """Only the window is cached and the sampled ids leave the device call by call."""
    model = tiny_model(**CASES["sliding"], max_seq_len=0)
    # Both in calls of 64 steps: 4 calls, and 4,000.
    short, long = held_by_generate(model, 2, 257), held_by_generate(model, 2, 256_001)
    assert decoding.memory_bytes(model, 2, 5, 256_001) <= long == short


def test_same_seed_same_sample_and_another_seed_another():
    model = tiny_model()
    params = init(model)
    prompt = jnp.zeros((3, 4), jnp.int32)
    settings = decoding.SamplingSettings(max_new_tokens=16, temperature=1.0, top_k=20, top_p=0.95)
    first = decoding.generate(model, params, prompt, jax.random.key(7), settings)
    again = decoding.generate(model, params, prompt, jax.random.key(7), settings)
    other = decoding.generate(model, params, prompt, jax.random.key(8), settings)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0], first[1])  # the rows of one call are separate samples


def nucleus_numpy(logits, top_p):
    """The token ids of the smallest set of likeliest tokens whose probability reaches top_p."""
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")
    cumulative = np.cumsum(probabilities[order])
    count = int(np.searchsorted(cumulative, top_p) + 1)
    return set(order[:count].tolist())


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.6), (3, 0.9), (0, 1.0)])
def test_sampling_draws_only_from_the_allowed_tokens_and_all_of_them(top_k, top_p):
    logits = np.random.default_rng(0).normal(size=VOCAB).astype(np.float32) * 2
    allowed = set(range(VOCAB))
    if top_k:
        allowed &= set(np.argsort(-logits)[:top_k].tolist())
    if top_p < 1.0:
        allowed &= nucleus_numpy(logits.astype(np.float64), top_p)
    settings = decoding.SamplingSettings(max_new_tokens=1, temperature=1.0, top_k=top_k,
                                         top_p=top_p)
    draws = decoding.sample_logits(jnp.tile(logits, (20000, 1)), jax.random.key(0), settings)
    drawn = set(np.asarray(draws).tolist())
    assert drawn <= allowed
    # Every allowed token with probability > 1e-3 among them turns up in 20,000 draws.
    kept = np.array(sorted(allowed))
    probabilities = np.exp(logits[kept] - logits[kept].max())
    probabilities /= probabilities.sum()
    assert set(kept[probabilities > 1e-3].tolist()) <= drawn


@pytest.mark.parametrize("top_p", [1e-30, 1e-39, 1e-45, 1e-300])
def test_the_tiniest_top_p_keeps_the_likeliest_token(top_p):
    # Below float32's smallest number top_p is 0 in the comparison: no token was kept, every
    # logit became -inf and each draw was token 0 (NUL bytes from scaling-sample).
    logits = jax.random.normal(jax.random.key(1), (8, VOCAB))
    draws = decoding.sample_logits(logits, jax.random.key(0),
                                   decoding.SamplingSettings(1, 1.0, top_p=top_p))
    np.testing.assert_array_equal(draws, np.argmax(np.asarray(logits), axis=-1))


def test_temperature_zero_and_top_k_one_are_greedy():
    logits = jax.random.normal(jax.random.key(1), (8, VOCAB))
    greedy = decoding.sample_logits(logits, jax.random.key(0), decoding.SamplingSettings(1, 0.0))
    top_one = decoding.sample_logits(logits, jax.random.key(0),
                                     decoding.SamplingSettings(1, 1.5, top_k=1))
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(logits), axis=-1))
    np.testing.assert_array_equal(top_one, greedy)


@pytest.mark.parametrize("temperature", [1.0, 1e37, 1e38, 3e38])
def test_top_k_keeps_exactly_k_tokens_at_any_temperature(temperature):
    """Cut after dividing by the temperature, the logits' differences from the largest were
    float32 subnormals at 1e38, flushed to 0: every token tied with the k-th, and --top-k 1
    drew at random. Tied logits let more than k through too ([1, 1, 1, 0, -1], k = 2: three)."""
    logits = jnp.asarray(np.random.default_rng(3).normal(size=(4, VOCAB)), jnp.float32)
    draws = decoding.sample_logits(jnp.repeat(logits, 500, axis=0), jax.random.key(0),
                                   decoding.SamplingSettings(1, temperature, top_k=1))
    np.testing.assert_array_equal(draws, np.repeat(np.argmax(np.asarray(logits), axis=-1), 500))
    tied = jnp.tile(jnp.asarray([[1.0, 1.0, 1.0, 0.0, -1.0]]), (3000, 1))
    drawn = decoding.sample_logits(tied, jax.random.key(1),
                                   decoding.SamplingSettings(1, temperature, top_k=2))
    assert set(np.asarray(drawn).tolist()) == {0, 1}  # the two lowest ids of the tied three



@pytest.mark.parametrize("temperature", [1e38, 3e38])
def test_top_p_keeps_the_smallest_set_at_a_huge_temperature(temperature):
    """All but equally likely there, the smallest set reaching 0.3 of four tokens is two; the
    scaled logits all tied with the cut, and all four were drawn."""
    logits = jnp.tile(jnp.asarray([[0.0, 1.0, 2.0, 5.0]]), (2000, 1))
    drawn = decoding.sample_logits(logits, jax.random.key(0),
                                   decoding.SamplingSettings(1, temperature, top_p=0.3))
    # Two: the likeliest two, or, where the scaled logits flushed to 0 and tie, the lowest ids.
    assert set(np.asarray(drawn).tolist()) in ({2, 3}, {0, 1})


@pytest.mark.parametrize("temperature", [1e-20, 1e-45])
def test_a_tiny_temperature_is_greedy(temperature):
    """Logits of either sign over a temperature near zero (1e-45: a float32 subnormal) pick the
    likeliest token, as temperature 0 does."""
    logits = jax.random.normal(jax.random.key(1), (64, VOCAB)) * 3
    settings = decoding.SamplingSettings(max_new_tokens=1, temperature=temperature)
    np.testing.assert_array_equal(decoding.sample_logits(logits, jax.random.key(2), settings),
                                  jnp.argmax(logits, axis=-1))


@pytest.mark.parametrize("case", ["rope-gqa", "sliding", "encoder-decoder"])
def test_the_tokens_do_not_depend_on_how_many_steps_a_call_runs(case, monkeypatch):
    """29 new tokens sampled in one call of 28 steps, and in calls of 3 (the last running two
    steps past the end, its extras dropped): the same tokens, each drawn with its own key."""
    model = tiny_model(**CASES[case])
    params = init(model, seed=4)
    prompt = jax.random.randint(jax.random.key(5), (2, 5), 0, VOCAB)
    source = prompt if model.layout == "encoder_decoder" else None
    settings = decoding.SamplingSettings(max_new_tokens=29, temperature=1.0)
    one_call = decoding.generate(model, params, prompt, jax.random.key(6), settings, source)
    monkeypatch.setattr(decoding, "STEPS_PER_CALL", 3)
    calls = decoding.generate(model, params, prompt, jax.random.key(6), settings, source)
    assert one_call.shape == calls.shape == (2, 29)
    np.testing.assert_array_equal(calls, one_call)


def test_the_steps_after_the_prefill_come_in_as_few_calls_as_allowed_with_little_overrun():
    for new_tokens in range(1, 1000):
        steps, count = new_tokens - 1, decoding.steps_per_call(new_tokens)
        if steps == 0:
            assert count == 0
            continue
        calls = -(-steps // count)
        assert count <= decoding.STEPS_PER_CALL
        assert calls == -(-steps // decoding.STEPS_PER_CALL)  # no fewer calls could do it
        assert 0 <= calls * count - steps < calls  # under one extra step per call
    assert [decoding.steps_per_call(n) for n in (2, 65, 66, 112, 129)] == [1, 64, 33, 56, 64]


def test_generation_ends_after_the_call_in_which_every_row_reached_the_stop_token(monkeypatch):
    model = tiny_model()
    params = init(model, seed=3)
    prompt = jax.random.randint(jax.random.key(2), (2, 5), 0, VOCAB)
    settings = decoding.SamplingSettings(max_new_tokens=40, temperature=1.0)
    monkeypatch.setattr(decoding, "STEPS_PER_CALL", 4)
    full = np.asarray(decoding.generate(model, params, prompt, jax.random.key(1), settings))
    # Stop at a token both rows sample; each row stops at its first one, the call at the later.
    stop_id = int(next(token for token in full[0, 6:] if token in full[1, 6:]))
    last_row_stops = max(int(np.flatnonzero(row == stop_id)[0]) for row in full)
    calls = 1 + -(-last_row_stops // 4)  # the prefill's token, then calls of 4 (ceil)
    stopped = decoding.generate(model, params, prompt, jax.random.key(1), settings,
                                stop_id=stop_id)
    np.testing.assert_array_equal(stopped, full[:, :min(1 + 4 * (calls - 1), 40)])
    never = decoding.generate(model, params, prompt, jax.random.key(1), settings, stop_id=VOCAB)
    np.testing.assert_array_equal(never, full)


def test_an_encoder_only_model_cannot_generate():
    model = tiny_model(layout="encoder")
    with pytest.raises(ValueError, match="encoder-only"):
        decoding.generate(model, init(model), jnp.zeros((1, 3), jnp.int32), jax.random.key(0),
                          decoding.SamplingSettings(4))


PAD = VOCAB - 1


def test_a_sources_padding_changes_no_logit_in_training_or_decoding():
    """Rows of 7 and 4 source tokens padded to 9 and to 15: the same logits from a full forward
    pass and from a decoding step that reads the encoded source from the cache, since padding is
    masked from the encoder's self-attention and the decoder's cross-attention (the cache keeps
    the mask). Without the mask (no pad id) both change: the check can fail."""
    rng = np.random.default_rng(0)
    source = rng.integers(0, PAD, (2, 7)).astype(np.int32)
    source[1, 4:] = PAD
    tokens = jnp.asarray(rng.integers(0, PAD, (2, 6)), jnp.int32)
    padded = {width: jnp.asarray(np.pad(source, ((0, 0), (0, width - 7)), constant_values=PAD))
              for width in (9, 15)}
    full, step = {}, {}
    for pad_id in (PAD, -1):
        model = tiny_model(layout="encoder_decoder", position="sinusoidal", source_pad_id=pad_id)
        params = jax.tree.map(lambda x: x * 3.0, init(model))  # sharper attention than at init
        apply = cached_apply(model)
        for width, src in padded.items():
            full[pad_id, width] = np.asarray(model_lib.Transformer(model).apply(
                {"params": params}, tokens, encoder_tokens_BxS=src))
            # Prefill the first five tokens with the source, then one step from the cache alone.
            cache = decoding.init_cache(model, 2, tokens.shape[1], width)
            _, extras = apply(params, tokens[:, :5], cache, src)
            logits, _ = apply(params, tokens[:, 5:], extras["cache"], None)
            step[pad_id, width] = np.asarray(logits)
    for logits in (full, step):
        np.testing.assert_allclose(logits[PAD, 9], logits[PAD, 15], rtol=1e-5, atol=1e-5)
        assert not np.allclose(logits[-1, 9], logits[-1, 15], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(step[PAD, 9][:, 0], full[PAD, 9][:, 5], rtol=1e-4, atol=1e-4)

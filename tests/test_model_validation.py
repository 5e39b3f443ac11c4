"""Bad model configurations fail at `scaling.config.validate` with the allowed values."""

import jax
import jax.numpy as jnp
import pytest

from scaling import config as config_lib
from scaling import model as model_lib


def validation_error(**model_fields):
    config = config_lib.default_config()
    for field, value in model_fields.items():
        config.model[field] = value
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    return str(error.value)


def test_default_config_is_valid():
    config_lib.validate(config_lib.default_config())


def test_heads_must_divide_width():
    message = validation_error(d_model=100, num_heads=3)
    assert "model.d_model" in message and "multiple of model.num_heads=3" in message


def test_kv_heads_must_divide_heads():
    message = validation_error(num_heads=4, num_kv_heads=3)
    assert "model.num_kv_heads" in message and "divisor of model.num_heads=4" in message


def test_scan_unroll_must_not_be_negative():
    message = validation_error(scan_unroll=-1)
    assert "model.scan_unroll" in message and ">= 0" in message


@pytest.mark.parametrize("window", [0, -2])
def test_sliding_window_must_be_positive(window):
    message = validation_error(attention="sliding", window=window)
    assert "model.window" in message


@pytest.mark.parametrize("field,allowed", [
    ("layout", config_lib.LAYOUTS), ("position", config_lib.POSITIONS),
    ("attention", config_lib.ATTENTIONS), ("ffn", config_lib.FFNS), ("norm", config_lib.NORMS),
    ("norm_position", config_lib.NORM_POSITIONS), ("init", config_lib.INITS),
    ("compute_dtype", config_lib.DTYPES), ("parametrization", config_lib.PARAMETRIZATIONS),
    ("remat", config_lib.REMAT_POLICIES),
])
def test_unknown_option_names_list_the_allowed_values(field, allowed):
    message = validation_error(**{field: "nonsense"})
    assert f"model.{field}" in message and "'nonsense'" in message
    for value in allowed:
        assert value in message


@pytest.mark.parametrize("field,value", [
    (field, value) for field, values in (
        ("layout", config_lib.LAYOUTS), ("position", config_lib.POSITIONS),
        ("attention", config_lib.ATTENTIONS), ("ffn", config_lib.FFNS),
        ("norm", config_lib.NORMS), ("norm_position", config_lib.NORM_POSITIONS),
        ("init", config_lib.INITS), ("compute_dtype", config_lib.DTYPES),
        ("parametrization", config_lib.PARAMETRIZATIONS), ("remat", config_lib.REMAT_POLICIES))
    for value in values])
def test_every_option_validation_allows_is_one_the_model_builds(field, value):
    # Ask the model itself: an option the config allows but the model lacks fails here rather
    # than deep inside a run.
    config = config_lib.default_config()
    config.model.update(d_model=16, num_heads=2, num_layers=1, window=4)
    config.model[field] = value
    config.data.seq_len = 8
    if field == "layout":  # each layout trains its own objective (scaling.data.objectives)
        config.train.objective = {"decoder": "causal_lm", "encoder": "masked_lm",
                                  "encoder_decoder": "span_corruption"}[value]
    config_lib.validate(config)
    cfg = config_lib.model_config(config)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = jax.eval_shape(lambda: model_lib.Transformer(cfg).init(
        jax.random.key(0), tokens, encoder_tokens_BxS=tokens))
    logits = jax.eval_shape(lambda p: model_lib.Transformer(cfg).apply(
        p, tokens, encoder_tokens_BxS=tokens), params)
    assert logits.shape == (1, 8, cfg.vocab_size)


def objective_config(objective: str, **fields):
    """The default config training `objective` with the layout it needs; `fields` are
    'section.name' overrides."""
    config = config_lib.default_config()
    config.train.objective = objective
    config.model.layout = {"causal_lm": "decoder", "masked_lm": "encoder"}.get(
        objective, "encoder_decoder")
    for dotted, value in fields.items():
        section, name = dotted.split(".")
        config[section][name] = value
    return config


@pytest.mark.parametrize("objective", ["causal_lm", "masked_lm"])
def test_encoder_layers_are_refused_outside_the_encoder_decoder(objective):
    # An encoder-only model's blocks are model.num_layers: 6 encoder layers would train 2.
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(objective_config(objective, **{"model.num_encoder_layers": 6}))
    layout = "decoder" if objective == "causal_lm" else "encoder"
    assert str(error.value).startswith(
        f"config.model.num_encoder_layers=6 is not allowed: 0 with model.layout={layout!r}")
    config_lib.validate(objective_config("span_corruption", **{"model.num_encoder_layers": 6}))


def test_learned_positions_must_hold_the_span_corruption_decoder():
    # By hand: 8 tokens at density 0.5 drop 4 in 4 spans of 1; the decoder reads BOS, then
    # sentinel + token per span: 1 + 4 + 4 = 9 positions, one more than data.seq_len.
    fields = {"model.position": "learned", "data.seq_len": 8, "train.noise_density": 0.5,
              "train.mean_span_length": 1.0}
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(objective_config("span_corruption", **fields))
    message = str(error.value)
    assert message.startswith("config.model.max_seq_len=0 is not allowed: at least 9 ")
    assert "9 tokens (4 dropped + 4 sentinels + 1)" in message
    config = objective_config("span_corruption", **fields, **{"model.max_seq_len": 9})
    config_lib.validate(config)
    # What validation lets through, the model builds: a 9-row table for the 9-token decoder.
    model = config_lib.model_config(config, 257)
    shapes = jax.eval_shape(model_lib.Transformer(model).init, jax.random.key(0),
                            jnp.zeros((1, 9), jnp.int32),
                            encoder_tokens_BxS=jnp.zeros((1, 8), jnp.int32))
    assert shapes["params"]["position_embedding"].value.shape == (9, model.d_model)


def test_learned_positions_must_hold_the_seq2seq_target(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"source {i}\ttarget {i}\n" for i in range(20)))
    fields = {"model.position": "learned", "data.dataset": "text_pairs", "data.files": str(pairs),
              "data.seq_len": 16, "model.max_seq_len": 16}
    config_lib.validate(objective_config("seq2seq", **fields, **{"data.target_len": 16}))
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(objective_config("seq2seq", **fields, **{"data.target_len": 24}))
    assert str(error.value).startswith("config.data.target_len=24 is not allowed: at most "
                                       "model.max_seq_len=16 with model.position='learned'")


@pytest.mark.parametrize("objective", ["causal_lm", "masked_lm", "span_corruption"])
def test_a_model_vocabulary_below_the_tokenizers_is_refused(objective):
    # The byte tokenizer has 256 byte ids and end-of-document: 257.
    config = objective_config(objective, **{"model.vocab_size": 100})
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    assert str(error.value).startswith("config.model.vocab_size=100 is not allowed: 0 (the "
                                       "tokenizer's vocabulary) or at least the 257 ids")
    for allowed in (0, 257, 300):
        config_lib.validate(objective_config(objective, **{"model.vocab_size": allowed}))

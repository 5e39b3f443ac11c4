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

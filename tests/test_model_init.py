"""Initialisation schemes: the standard deviations each scheme promises."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import model as model_lib
from scaling.config import ModelConfig
from scaling.layers import initializers

D_MODEL = 256
CFG = ModelConfig(d_model=D_MODEL, init_std=0.02, mup_base_width=64, num_layers=6)


def sample_std(init, shape=(D_MODEL, 4, 64)):
    return float(np.std(np.asarray(init(jax.random.key(0), shape, jnp.float32), np.float64)))


def close(actual, expected):
    # 65,536 samples estimate a std to ~0.3% (1/√(2n)); 2% leaves room for the truncated normal.
    return abs(actual / expected - 1) < 0.02


@pytest.mark.parametrize("role,branches,expected", [
    (initializers.HIDDEN, 12, 0.02),
    (initializers.RESIDUAL_OUTPUT, 12, 0.02 / math.sqrt(12)),
])
def test_scaled_normal(role, branches, expected):
    cfg = dataclasses.replace(CFG, init="scaled_normal")
    init = initializers.dense_init(cfg, role, in_axis=0, out_axis=(1, 2), residual_branches=branches)
    assert close(sample_std(init), expected)


def test_normal_ignores_the_residual_role():
    cfg = dataclasses.replace(CFG, init="normal")
    init = initializers.dense_init(cfg, initializers.RESIDUAL_OUTPUT, in_axis=0, out_axis=(1, 2),
                                   residual_branches=12)
    assert close(sample_std(init), 0.02)


def test_xavier_uniform_bound_uses_fan_in_plus_fan_out():
    cfg = dataclasses.replace(CFG, init="xavier")
    init = initializers.dense_init(cfg, initializers.HIDDEN, in_axis=0, out_axis=(1, 2))
    values = np.asarray(init(jax.random.key(0), (D_MODEL, 4, 64), jnp.float32))
    bound = math.sqrt(6 / (D_MODEL + 4 * 64))
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.99 * bound
    assert close(values.std(), bound / math.sqrt(3))


def test_he_variance_is_two_over_fan_in():
    cfg = dataclasses.replace(CFG, init="he")
    init = initializers.dense_init(cfg, initializers.HIDDEN, in_axis=(0, 1), out_axis=2)
    assert close(sample_std(init, (4, 64, D_MODEL)), math.sqrt(2 / (4 * 64)))


def test_small_init_and_its_embeddings():
    cfg = dataclasses.replace(CFG, init="small")
    expected = math.sqrt(2 / (5 * D_MODEL))
    init = initializers.dense_init(cfg, initializers.RESIDUAL_OUTPUT, in_axis=0, out_axis=1)
    assert close(sample_std(init), expected)
    assert close(sample_std(initializers.embedding_init(cfg), (1024, D_MODEL)), expected)


def test_mup_hidden_std_shrinks_with_width_but_not_the_readout():
    cfg = dataclasses.replace(CFG, init="normal", parametrization="mup")
    hidden = initializers.dense_init(cfg, initializers.HIDDEN, in_axis=0, out_axis=(1, 2))
    readout = initializers.dense_init(cfg, initializers.READOUT, in_axis=0, out_axis=1)
    assert close(sample_std(hidden), 0.02 * math.sqrt(64 / D_MODEL))
    assert close(sample_std(readout, (D_MODEL, 1024)), 0.02)


def test_model_scales_residual_outputs_by_the_number_of_branches():
    cfg = ModelConfig(num_layers=3, d_model=128, num_heads=2, num_kv_heads=2, head_dim=64, d_ff=512,
                      vocab_size=300, init="scaled_normal", init_std=0.02)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = nn.unbox(jax.jit(model_lib.Transformer(cfg).init)(jax.random.key(0), tokens))["params"]
    layers = params["decoder"]["layers"]
    # Decoder-only: 2 residual branches per layer, 6 in all.
    assert close(float(np.std(layers["self_attention"]["out"])), 0.02 / math.sqrt(6))
    assert close(float(np.std(layers["mlp"]["wo"])), 0.02 / math.sqrt(6))
    assert close(float(np.std(layers["mlp"]["wi"])), 0.02)
    assert close(float(np.std(params["token_embedding"])), 0.02)
    np.testing.assert_array_equal(layers["mlp_norm"]["scale"], 1.0)
    # Layers are initialised independently.
    assert not np.allclose(layers["mlp"]["wi"][0], layers["mlp"]["wi"][1])

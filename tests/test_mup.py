"""µP end to end: the coordinate check, the group learning rates on the real parameter tree, and
what the parametrization must leave alone (parameter counts, FLOPs).

Resuming a run under a different parametrization is refused with exit code 2 and a message naming
`model.parametrization`: tests/test_resume.py::test_a_different_model_is_refused_with_exit_code_2.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import coord_check, flops, optim, parallel
from scaling import model as model_lib
from scaling.config import ModelConfig, default_config

WIDTHS = (64, 128, 256, 512, 1024)
STEPS = 4


def _coordinate_config(parametrization: str):
    config = default_config()
    config.model.update(num_layers=1, num_heads=4, parametrization=parametrization,
                        mup_base_width=WIDTHS[0])
    # The default learning rate, held constant; no clipping or decay, so the only width
    # dependence of an update is the one the parametrization puts there.
    config.optim.update(lr=3e-3, warmup_steps=0, schedule="constant", weight_decay=0.0,
                        grad_clip=0.0)
    return config


def _exponents(records, steps):
    final = [r for r in records if r.step == steps]
    assert [r.width for r in final] == list(WIDTHS)
    return {name: coord_check.width_exponent(WIDTHS, [r.change[name] for r in final])
            for name in coord_check.LAYERS}


@pytest.mark.slow
def test_coordinate_check_is_flat_under_mup_and_grows_under_standard():
    tokens = np.random.default_rng(0).integers(0, 256, (8, 17)).astype(np.int32)
    mup = _exponents(coord_check.coordinate_check(_coordinate_config("mup"), WIDTHS, STEPS, tokens),
                     STEPS)
    standard = _exponents(coord_check.coordinate_check(_coordinate_config("standard"), WIDTHS,
                                                       STEPS, tokens), STEPS)
    # Theory (Tensor Programs V): under µP every layer's change x_t − x_0 has a width-independent
    # limit, so the exponent is 0 up to finite-width corrections of relative size O(n^-1/2).
    # Standard parametrization's smallest exponent is 1/2 (tied logits at init already grow as
    # √n with a width-independent init std), and an Adam step moves a hidden matrix's output by
    # ~lr·n, exponent 1. 0.15 sits far below both, and a 16x width change at exponent 0.15 is
    # still a 1.5x change, generous for O(n^-1/2) corrections between widths 64 and 1024.
    for name, exponent in mup.items():
        assert abs(exponent) <= 0.15, (name, mup)
    assert standard["logits"] >= 0.3, standard
    for name in ("attention", "mlp"):
        assert standard[name] >= 0.5, (name, standard)


def test_sinusoidal_positions_keep_the_embedding_flat_under_mup():
    # The token embedding is scaled before the unit-amplitude sinusoidal table is added; by
    # √d_model, under µP too, its output and its change grew as √width (exponent 0.5).
    widths = WIDTHS[:3]
    tokens = np.random.default_rng(0).integers(0, 256, (8, 17)).astype(np.int32)
    config = _coordinate_config("mup")
    config.model.position = "sinusoidal"
    records = coord_check.coordinate_check(config, widths, STEPS, tokens)
    for attribute in ("size", "change"):
        values = [getattr(r, attribute)["embedding"] for r in records if r.step == STEPS]
        assert abs(coord_check.width_exponent(widths, values)) <= 0.15, (attribute, values)


def test_the_coordinate_check_holds_the_learning_rate_whatever_the_schedule():
    # It followed the config's schedule: a warmup's first step trained at lr/warmup_steps.
    tokens = np.random.default_rng(0).integers(0, 256, (4, 9)).astype(np.int32)
    constant = _coordinate_config("mup")
    scheduled = _coordinate_config("mup")
    scheduled.optim.update(schedule="cosine", warmup_steps=5)
    held, followed = (coord_check.coordinate_check(config, WIDTHS[:1], 2, tokens)
                      for config in (constant, scheduled))
    assert held == followed and held[-1].change["logits"] > 0
    assert scheduled.optim.schedule == "cosine"  # the caller's config is left as it was


def _tiny(**overrides) -> ModelConfig:
    base = dict(d_model=32, num_heads=4, num_kv_heads=4, head_dim=8, d_ff=64, vocab_size=61,
                max_seq_len=12, num_layers=2, parametrization="mup", mup_base_width=16)
    return ModelConfig(**{**base, **overrides})


def test_layer_activations_add_up_to_the_models_logits():
    """The blocks walked one by one must reproduce the scanned model: with pre-norm the final
    residual stream is the embedding plus every attention and MLP branch output."""
    cfg = _tiny()
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, cfg.vocab_size)
    params = nn.unbox(model_lib.Transformer(cfg).init(jax.random.key(0), tokens)["params"])
    acts = coord_check.layer_activations(cfg, params, tokens)
    assert acts["attention"].shape == acts["mlp"].shape == (2, 2, 12, 32)
    residual = np.asarray(acts["embedding"]) + np.asarray(acts["attention"]).sum(0) \
        + np.asarray(acts["mlp"]).sum(0)
    normed = residual / np.sqrt(np.mean(residual ** 2, axis=-1, keepdims=True) + 1e-6)
    normed = normed * np.asarray(params["decoder"]["final_norm"]["scale"])
    expected = normed @ np.asarray(params["token_embedding"]).T * (16 / 32)
    np.testing.assert_allclose(acts["logits"], expected, rtol=2e-4, atol=2e-5)
    direct = model_lib.Transformer(cfg).apply({"params": params}, tokens)
    np.testing.assert_allclose(acts["logits"], direct, rtol=1e-5, atol=1e-6)


def test_width_exponent_recovers_a_power_law():
    widths = [64, 128, 256, 512]
    assert coord_check.width_exponent(widths, [3.0 * w ** 0.75 for w in widths]) == pytest.approx(0.75)
    assert coord_check.width_exponent(widths, [2.0] * 4) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(tie_embeddings=False, use_bias=True, ffn="swiglu", d_ff=96),
    dict(position="learned", num_kv_heads=2, norm="layernorm"),
], ids=["tied", "untied-bias-swiglu", "learned-gqa-layernorm"])
def test_parametrization_changes_neither_parameters_nor_flops(overrides):
    mup = _tiny(**overrides)
    standard = dataclasses.replace(mup, parametrization="standard")
    assert flops.parameter_counts(mup) == flops.parameter_counts(standard)
    for convention in ("6N", "full"):
        assert flops.training_flops_per_token(mup, 12, convention) == \
            flops.training_flops_per_token(standard, 12, convention)
    tokens = jnp.zeros((1, 12), jnp.int32)
    shapes = [jax.tree.map(lambda x: x.shape, nn.unbox(
        jax.eval_shape(model_lib.Transformer(cfg).init, jax.random.key(0), tokens)["params"]))
        for cfg in (mup, standard)]
    assert shapes[0] == shapes[1]


def test_mup_group_rates_on_the_real_parameter_tree():
    """Hidden matrices (attention q/k/v/out, MLP in/out) get base_width / width; the embedding,
    the untied read-out, biases and norm scales keep the base rate. Names, not axes, decide the
    expectation here, independently of the optimizer's axis-based rule."""
    cfg = _tiny(tie_embeddings=False, use_bias=True, d_model=64, head_dim=16)
    tokens = jnp.zeros((1, 12), jnp.int32)
    boxed = jax.eval_shape(model_lib.Transformer(cfg).init, jax.random.key(0), tokens)["params"]
    config = default_config()
    config.model.update(parametrization="mup", mup_base_width=16, d_model=64)
    multipliers = optim.learning_rate_multipliers(parallel.logical_axes(boxed), config.model)
    hidden = {"query", "key", "value", "out", "wi", "wo"}
    flat = jax.tree_util.tree_flatten_with_path(multipliers)[0]
    assert len(flat) == 17
    for path, multiplier in flat:
        name = path[-1].key
        assert multiplier == (16 / 64 if name in hidden else 1.0), (name, multiplier)


@pytest.mark.parametrize("init", ["scaled_normal", "normal", "xavier", "he", "small"])
def test_mup_embeddings_keep_the_base_widths_std_at_every_width(init):
    """Input weights have variance 1/fan_in under µP (Yang et al. 2022, Tables 3 and 8), and an
    embedding's fan-in is the vocabulary: its std must not change with width. Measured on the
    initialised token and learned position tables at two widths, against the scheme's std at the
    base width by hand (√(1/16) for xavier/he, √(2/(5·16)) for small, init_std otherwise)."""
    expected = {"xavier": 0.25, "he": 0.25, "small": np.sqrt(2 / 80)}.get(init, 0.02)
    for width in (64, 512):
        cfg = _tiny(init=init, d_model=width, head_dim=width // 4, d_ff=2 * width,
                    vocab_size=512, position="learned", max_seq_len=256)
        tokens = jnp.zeros((1, 12), jnp.int32)
        init_fn = jax.jit(model_lib.Transformer(cfg).init)
        params = nn.unbox(init_fn(jax.random.key(0), tokens)["params"])
        for name in ("token_embedding", "position_embedding"):
            std = float(np.std(np.asarray(params[name])))
            assert std == pytest.approx(expected, rel=0.03), (init, width, name, std)


@pytest.mark.parametrize("init", ["xavier", "he", "small"])
def test_an_untied_mup_read_out_keeps_the_base_widths_init_at_every_width(init):
    """Under µP the logits carry the 1/width (the output multiplier), so an untied read-out is
    initialised like the embedding: with the std its scheme gives at the base width (16), at every
    width — by hand √(2/(16 + 512)) for xavier (fan-in 16, fan-out the vocabulary), √(2/16) for he,
    √(2/(5·16)) for small. At the base width it is the standard model's read-out, bit for bit."""
    expected = {"xavier": np.sqrt(2 / (16 + 512)), "he": np.sqrt(2 / 16), "small": np.sqrt(2 / 80)}
    tokens = jnp.zeros((1, 12), jnp.int32)

    def readout(**overrides):
        cfg = _tiny(init=init, tie_embeddings=False, vocab_size=512, **overrides)
        params = nn.unbox(jax.jit(model_lib.Transformer(cfg).init)(jax.random.key(0), tokens))
        return np.asarray(params["params"]["unembedding"])

    for width in (64, 256):
        std = float(np.std(readout(d_model=width, head_dim=width // 4, d_ff=2 * width)))
        assert std == pytest.approx(expected[init], rel=0.03), (init, width, std)
    base = dict(d_model=16, head_dim=4, d_ff=32)
    np.testing.assert_array_equal(readout(**base), readout(parametrization="standard", **base))

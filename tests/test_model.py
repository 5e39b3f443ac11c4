"""The Transformer: causality, documents, axis names, precision, µP, remat, dropout, the loss."""

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import model as model_lib
from scaling.config import ModelConfig

VOCAB = 23
LENGTH = 12


def tiny_config(**overrides) -> ModelConfig:
    base = ModelConfig(num_layers=2, num_encoder_layers=2, d_model=16, num_heads=4, num_kv_heads=2,
                       head_dim=4, d_ff=32, vocab_size=VOCAB, max_seq_len=LENGTH)
    return dataclasses.replace(base, **overrides)


def random_params(net, tokens, encoder_tokens=None, seed=0, std=0.3):
    """Parameters of `net` drawn from NumPy (no init compile): N(0, std²) for every leaf."""
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), tokens,
                                             encoder_tokens_BxS=encoder_tokens))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(scale=std, size=s.shape), s.dtype),
                        nn.unbox(shapes))["params"]


def random_tokens(seed, shape=(2, LENGTH)):
    return jnp.asarray(np.random.default_rng(seed).integers(0, VOCAB, size=shape), jnp.int32)


# Every positional and attention option, for both layouts with a causal decoder; the other options
# rotate through the cases so each is exercised at least once.
_EXTRAS = [dict(), dict(norm_position="post", norm="layernorm"), dict(qk_norm=True, ffn="swiglu"),
           dict(use_bias=True, ffn="relu", num_kv_heads=1), dict(tie_embeddings=False, num_kv_heads=4)]
LEAKAGE_CASES = [
    dict(layout=layout, position=position, attention=attention, window=3 if attention == "sliding" else 0,
         **_EXTRAS[index % len(_EXTRAS)])
    for index, (layout, position, attention) in enumerate(itertools.product(
        ("decoder", "encoder_decoder"), ("rope", "sinusoidal", "learned", "alibi", "none"),
        ("full", "sliding")))
]


@pytest.mark.parametrize("overrides", LEAKAGE_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_no_future_leakage(overrides):
    cfg = tiny_config(**overrides)
    net = model_lib.Transformer(cfg)
    tokens = random_tokens(0, (1, LENGTH))
    encoder_tokens = random_tokens(1, (1, LENGTH)) if cfg.layout == "encoder_decoder" else None
    params = random_params(net, tokens, encoder_tokens)
    cut = 5
    perturbed = tokens.at[:, cut + 1:].set((tokens[:, cut + 1:] + 1 + jnp.arange(LENGTH - cut - 1)) % VOCAB)
    both = jnp.concatenate([tokens, perturbed])
    if encoder_tokens is not None:
        encoder_tokens = jnp.concatenate([encoder_tokens, encoder_tokens])
    logits = jax.jit(net.apply)({"params": params}, both, encoder_tokens_BxS=encoder_tokens)
    np.testing.assert_allclose(logits[0, :cut + 1], logits[1, :cut + 1], rtol=1e-5, atol=1e-5)
    assert np.abs(logits[0, cut + 1:] - logits[1, cut + 1:]).max() > 1e-3  # the change is seen later


def test_encoder_is_bidirectional():
    cfg = tiny_config(layout="encoder")
    net = model_lib.Transformer(cfg)
    tokens = random_tokens(2, (1, LENGTH))
    params = random_params(net, tokens)
    both = jnp.concatenate([tokens, tokens.at[0, -1].set((tokens[0, -1] + 1) % VOCAB)])
    logits = jax.jit(net.apply)({"params": params}, both)
    assert np.abs(logits[0, 0] - logits[1, 0]).max() > 1e-3


@pytest.mark.parametrize("attention", ["full", "sliding"])
def test_document_mask_keeps_attention_within_a_document(attention):
    cfg = tiny_config(document_mask=True, attention=attention, window=4)
    net = model_lib.Transformer(cfg)
    tokens = random_tokens(3, (1, LENGTH))
    params = random_params(net, tokens)
    segments = jnp.asarray([[0] * 5 + [1] * 7] * 2)
    # Change the first document only: the second document's logits must not move.
    perturbed = tokens.at[0, :5].set((tokens[0, :5] + 1) % VOCAB)
    logits = jax.jit(net.apply)({"params": params}, jnp.concatenate([tokens, perturbed]),
                                segment_ids_BxL=segments)
    np.testing.assert_allclose(logits[0, 5:], logits[1, 5:], rtol=1e-5, atol=1e-5)
    assert np.abs(logits[0, :5] - logits[1, :5]).max() > 1e-3


WEIGHT_AXES = {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "layers", "position"}


@pytest.mark.parametrize("layout", ["decoder", "encoder", "encoder_decoder"])
def test_every_weight_has_logical_axis_names(layout):
    cfg = tiny_config(layout=layout, position="learned", tie_embeddings=False, use_bias=True,
                      qk_norm=True, norm="layernorm")
    tokens = random_tokens(0)
    boxed = jax.eval_shape(lambda: model_lib.Transformer(cfg).init(
        jax.random.key(0), tokens, encoder_tokens_BxS=tokens))["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned)
        assert len(leaf.names) == len(leaf.value.shape) and set(leaf.names) <= WEIGHT_AXES
        assert leaf.value.dtype == jnp.float32
    stacks = ("decoder", "encoder") if layout == "encoder_decoder" else (next(iter(
        k for k in boxed if k in ("decoder", "encoder"))),)
    for stack in stacks:
        for leaf in jax.tree.leaves(boxed[stack]["layers"], is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)):
            assert leaf.names[0] == "layers" and leaf.value.shape[0] == 2
    assert boxed["token_embedding"].names == ("vocab", "embed")
    assert boxed["unembedding"].names == ("embed", "vocab")
    assert boxed["position_embedding"].names == ("position", "embed")


def test_bfloat16_compute_gives_float32_logits_close_to_float32():
    cfg = tiny_config()
    tokens = random_tokens(4)
    params = random_params(model_lib.Transformer(cfg), tokens, std=0.1)
    logits32 = jax.jit(model_lib.Transformer(cfg).apply)({"params": params}, tokens)
    logits16 = jax.jit(model_lib.Transformer(dataclasses.replace(cfg, compute_dtype="bfloat16")).apply)(
        {"params": params}, tokens)
    assert logits16.dtype == jnp.float32
    assert np.abs(logits16 - logits32).max() < 0.05 * np.abs(logits32).max()


def test_mup_multiplies_logits_by_base_width_over_width():
    # head_dim = 1 makes the µP attention scale 1/d_head equal the standard 1/√d_head, and
    # without a position table the embedding is not scaled by √width (√base under µP), isolating
    # the read-out multiplier.
    cfg = tiny_config(d_model=16, num_heads=16, num_kv_heads=16, head_dim=1, position="none")
    mup = dataclasses.replace(cfg, parametrization="mup", mup_base_width=4)
    tokens = random_tokens(5)
    params = random_params(model_lib.Transformer(cfg), tokens)
    standard = jax.jit(model_lib.Transformer(cfg).apply)({"params": params}, tokens)
    scaled = jax.jit(model_lib.Transformer(mup).apply)({"params": params}, tokens)
    np.testing.assert_allclose(scaled, standard * 4 / 16, rtol=1e-5, atol=1e-6)


def test_remat_policies_give_the_same_loss_and_gradients():
    tokens = random_tokens(6)
    params = random_params(model_lib.Transformer(tiny_config()), tokens)

    def loss_and_grads(remat):
        net = model_lib.Transformer(tiny_config(remat=remat))

        def loss(p):
            return model_lib.cross_entropy_loss(net.apply({"params": p}, tokens), tokens)[0]
        return jax.jit(jax.value_and_grad(loss))(params)

    reference = loss_and_grads("none")
    for remat in ("full", "dots"):
        value, grads = loss_and_grads(remat)
        np.testing.assert_allclose(value, reference[0], rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, reference[1])


def test_dropout_only_when_not_deterministic():
    cfg = tiny_config(dropout=0.2, attention_dropout=0.2)
    net = model_lib.Transformer(cfg)
    tokens = random_tokens(7)
    params = random_params(net, tokens)
    apply = jax.jit(net.apply, static_argnames="deterministic")
    eval_a = apply({"params": params}, tokens, deterministic=True, rngs={"dropout": jax.random.key(0)})
    eval_b = apply({"params": params}, tokens, deterministic=True, rngs={"dropout": jax.random.key(1)})
    train_a = apply({"params": params}, tokens, deterministic=False, rngs={"dropout": jax.random.key(0)})
    train_b = apply({"params": params}, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(eval_a, eval_b)
    assert np.abs(train_a - train_b).max() > 1e-3 and np.abs(train_a - eval_a).max() > 1e-3


def test_cross_entropy_and_z_loss_match_numpy():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32) * 3
    targets = rng.integers(0, 11, size=(3, 5))
    mask = rng.random((3, 5)) > 0.3
    loss, aux = model_lib.cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets), z_loss=1e-2,
                                             mask_BxL=jnp.asarray(mask))
    x = logits.astype(np.float64)
    log_z = np.log(np.exp(x).sum(-1))
    ce = log_z - np.take_along_axis(x, targets[..., None], -1)[..., 0]
    expected_ce = ce[mask].mean()
    expected_z = 1e-2 * (log_z[mask] ** 2).mean()
    np.testing.assert_allclose(aux["ce"], expected_ce, rtol=1e-6)
    np.testing.assert_allclose(aux["z_loss"], expected_z, rtol=1e-6)
    np.testing.assert_allclose(loss, expected_ce + expected_z, rtol=1e-6)
    unmasked, _ = model_lib.cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(unmasked, ce.mean(), rtol=1e-6)


def test_encoder_decoder_requires_encoder_tokens():
    net = model_lib.Transformer(tiny_config(layout="encoder_decoder"))
    with pytest.raises(ValueError, match="encoder_tokens_BxS"):
        jax.eval_shape(lambda: net.init(jax.random.key(0), random_tokens(0)))


def test_scan_unroll_does_not_change_the_numbers():
    """Unrolling is a compile-time choice: all layers traced (0), a rolled loop (1), and an unroll
    that does not divide the depth (2 of 3) give the same loss and gradients."""
    tokens = random_tokens(6)
    params = random_params(model_lib.Transformer(tiny_config(num_layers=3)), tokens)

    def loss_and_grads(unroll):
        net = model_lib.Transformer(tiny_config(num_layers=3, scan_unroll=unroll))

        def loss(p):
            return model_lib.cross_entropy_loss(net.apply({"params": p}, tokens), tokens)[0]
        return jax.jit(jax.value_and_grad(loss))(params)

    reference = loss_and_grads(0)
    for unroll in (1, 2):
        value, grads = loss_and_grads(unroll)
        np.testing.assert_allclose(value, reference[0], rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     grads, reference[1])

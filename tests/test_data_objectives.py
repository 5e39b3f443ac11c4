"""Objectives as batch transforms: BERT's and T5's corruptions against hand counts and an
independent reconstruction, determinism in (seed, row), and no leak of what was hidden — each by
perturbation through the model."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import model as model_lib
from scaling.config import ModelConfig
from scaling.data import objectives

BASE = 50
EOD = 49
LENGTH = 40


def rows(seed, count=4, length=LENGTH):
    return np.random.default_rng(seed).integers(0, BASE, size=(count, length)).astype(np.int32)


def objective(name, **fields):
    return objectives.Objective(name, LENGTH, BASE, EOD, **fields)


def packed(tokens):
    return {"inputs": tokens, "targets": tokens, "segment_ids": np.ones_like(tokens)}


def test_special_tokens_follow_the_tokenizer_and_causal_lm_adds_none():
    assert objective("causal_lm").vocab_size == BASE
    masked = objective("masked_lm")
    assert (masked.special.pad, masked.special.mask, masked.special.bos) == (50, 51, 52)
    assert masked.vocab_size == 53
    spans = objective("span_corruption")
    noise, count = objectives.span_counts(LENGTH, 0.15, 3.0)
    assert (noise, count) == (6, 2)  # round(0.15 · 40) = 6 tokens, 6 / 3 = 2 spans
    assert spans.vocab_size == 53 + count
    assert spans.shapes == objectives.Shapes(corpus=40, encoder=40 - 6 + 2, decoder=6 + 2 + 1)


def test_masked_lm_selects_a_fixed_share_and_splits_80_10_10():
    tokens = rows(0, count=400)
    obj = objective("masked_lm")
    batch = obj.apply(packed(tokens), obj.row_keys(np.arange(400), seed=3, held_out=False))
    selected = batch["loss_mask"].astype(bool)
    np.testing.assert_array_equal(selected.sum(axis=1), round(0.15 * LENGTH))
    np.testing.assert_array_equal(batch["targets"], tokens)
    np.testing.assert_array_equal(batch["inputs"][~selected], tokens[~selected])
    masked = batch["inputs"][selected] == obj.special.mask
    changed = (batch["inputs"][selected] != tokens[selected]) & ~masked
    total = selected.sum()  # 2400 selections: binomial spread about ±0.8% around 80%, ±0.6% around 10%
    assert abs(masked.sum() / total - 0.8) < 0.03
    # A random replacement equals the original with probability 1/50, so "changed" is ~9.8%.
    assert abs(changed.sum() / total - 0.1 * (1 - 1 / BASE)) < 0.02
    assert batch["inputs"].max() < obj.vocab_size and (batch["inputs"][selected][changed] < BASE).all()


def reconstruct(encoder_inputs, targets, special, eod):
    """The original row from T5's inputs and targets: each sentinel in the input replaced by the
    tokens after the same sentinel in the targets."""
    assert targets[-1] == eod
    spans, current = {}, None
    for token in targets[:-1]:
        if token >= special.sentinel(0):
            current = token
            spans[current] = []
        else:
            spans[current].append(int(token))
    out = []
    for token in encoder_inputs:
        out.extend(spans[token] if token >= special.sentinel(0) else [int(token)])
    return np.asarray(out)


def test_span_corruption_inputs_and_targets_rebuild_the_row():
    tokens = rows(1, count=50)
    obj = objective("span_corruption")
    batch = obj.apply(packed(tokens), obj.row_keys(np.arange(50), seed=0, held_out=False))
    noise, count = objectives.span_counts(LENGTH, 0.15, 3.0)
    sentinels = obj.special.sentinel(np.arange(count))
    for row in range(50):
        targets = batch["targets"][row]
        assert targets[-1] == EOD
        np.testing.assert_array_equal(targets[np.isin(targets, sentinels)], sentinels)
        np.testing.assert_array_equal(batch["encoder_inputs"][row][
            np.isin(batch["encoder_inputs"][row], sentinels)], sentinels)
        np.testing.assert_array_equal(
            reconstruct(batch["encoder_inputs"][row], targets, obj.special, EOD), tokens[row])
    np.testing.assert_array_equal(batch["inputs"][:, 0], obj.special.bos)
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_transforms_depend_only_on_seed_and_row():
    tokens = rows(2, count=8)
    for name in ("masked_lm", "span_corruption"):
        obj = objective(name)
        whole = obj.apply(packed(tokens), obj.row_keys(np.arange(8), 5, False))
        # A host building rows 4..7 alone gets the same rows.
        half = obj.apply(packed(tokens[4:]), obj.row_keys(np.arange(4, 8), 5, False))
        for key in whole:
            np.testing.assert_array_equal(whole[key][4:], half[key])
        other_seed = obj.apply(packed(tokens), obj.row_keys(np.arange(8), 6, False))
        assert not np.array_equal(whole["inputs"], other_seed["inputs"])
        held_out = [obj.apply(packed(tokens), obj.row_keys(np.arange(8), seed, True))
                    for seed in (5, 6)]
        np.testing.assert_array_equal(held_out[0]["inputs"], held_out[1]["inputs"])


def tiny_model(layout, vocab):
    return ModelConfig(layout=layout, num_layers=2, num_encoder_layers=2, d_model=16, num_heads=4,
                       head_dim=4, d_ff=32, vocab_size=vocab, max_seq_len=LENGTH)


def random_params(net, tokens, encoder_tokens=None):
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), tokens,
                                             encoder_tokens_BxS=encoder_tokens))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(scale=0.3, size=s.shape), s.dtype),
                        nn.unbox(shapes))["params"]


def test_masked_lm_no_leak_of_replaced_tokens():
    """Changing the original token where the mask or a random token replaced it changes no
    logit anywhere; changing a kept token does (the check can fail)."""
    obj = objective("masked_lm")
    tokens = rows(3, count=1)
    keys = obj.row_keys(np.arange(1), 0, False)
    batch = obj.apply(packed(tokens), keys)
    net = model_lib.Transformer(tiny_model("encoder", obj.vocab_size))
    params = random_params(net, jnp.asarray(batch["inputs"]))
    apply = jax.jit(lambda tokens: net.apply({"params": params}, tokens))
    logits = lambda b: np.asarray(apply(jnp.asarray(b["inputs"])))
    reference = logits(batch)
    replaced = np.flatnonzero(batch["loss_mask"][0] & (batch["inputs"][0] != tokens[0]))
    assert len(replaced) >= 3
    for position in replaced:
        perturbed = tokens.copy()
        perturbed[0, position] = (perturbed[0, position] + 7) % BASE
        other = obj.apply(packed(perturbed), keys)
        assert other["targets"][0, position] != batch["targets"][0, position]
        np.testing.assert_array_equal(logits(other), reference)
    kept = np.flatnonzero(batch["loss_mask"][0] == 0)[0]
    perturbed = tokens.copy()
    perturbed[0, kept] = (perturbed[0, kept] + 7) % BASE
    assert not np.array_equal(logits(obj.apply(packed(perturbed), keys)), reference)


def test_span_corruption_no_leak_into_the_encoder():
    """Changing a token inside a dropped span leaves the encoder's output unchanged; changing a
    kept token changes it."""
    obj = objective("span_corruption")
    tokens = rows(4, count=1)
    keys = obj.row_keys(np.arange(1), 0, False)
    dropped = objectives.noise_mask(np.random.default_rng(keys[0]), LENGTH, 0.15, 3.0)
    batch = obj.apply(packed(tokens), keys)
    net = model_lib.Transformer(tiny_model("encoder_decoder", obj.vocab_size))
    params = random_params(net, jnp.asarray(batch["inputs"]), jnp.asarray(batch["encoder_inputs"]))

    @jax.jit
    def encoder_output(tokens, encoder_tokens):
        _, state = net.apply({"params": params}, tokens, encoder_tokens_BxS=encoder_tokens,
                             capture_intermediates=lambda module, _: module.name == "encoder",
                             mutable=["intermediates"])
        return state["intermediates"]["encoder"]["__call__"][0]

    def encoded(b):
        return np.asarray(encoder_output(jnp.asarray(b["inputs"]), jnp.asarray(b["encoder_inputs"])))

    reference = encoded(batch)
    for position in np.flatnonzero(dropped):
        perturbed = tokens.copy()
        perturbed[0, position] = (perturbed[0, position] + 7) % BASE
        other = obj.apply(packed(perturbed), keys)
        assert not np.array_equal(other["targets"], batch["targets"])  # the target did change
        np.testing.assert_array_equal(encoded(other), reference)
    kept = np.flatnonzero(~dropped)[0]
    perturbed = tokens.copy()
    perturbed[0, kept] = (perturbed[0, kept] + 7) % BASE
    assert not np.array_equal(encoded(obj.apply(packed(perturbed), keys)), reference)


def window_batch(k_rows=3, seed=6):
    """A packed batch of `k_rows` random windows of LENGTH + 1 tokens, and the windows."""
    from scaling.data import packing

    windows = rows(seed, count=k_rows, length=LENGTH + 1)
    return packing.make_batch(windows, EOD), windows


def test_continuation_scores_the_same_tokens_from_the_same_context_in_both_layouts():
    """The continuation task by hand: the last k tokens of each window w, the decoder reading
    w[:-1], the encoder–decoder encoding w[:-k] then sentinel 0 and writing sentinel 0, the k
    tokens, EOS; both score the k tokens and nothing else."""
    k = 7
    batch, w = window_batch()
    decoder = objective("causal_lm").continuation(batch, k)
    np.testing.assert_array_equal(decoder["inputs"], w[:, :-1])
    np.testing.assert_array_equal(decoder["targets"], w[:, 1:])
    np.testing.assert_array_equal(decoder["loss_mask"], np.tile([0] * (LENGTH - k) + [1] * k, (3, 1)))
    spans = objective("span_corruption")
    sentinel, bos = spans.special.sentinel(0), spans.special.bos
    encdec = spans.continuation(batch, k)
    for row in range(3):
        np.testing.assert_array_equal(encdec["encoder_inputs"][row],
                                      list(w[row, :LENGTH + 1 - k]) + [sentinel])
        np.testing.assert_array_equal(encdec["targets"][row],
                                      [sentinel] + list(w[row, -k:]) + [EOD])
        np.testing.assert_array_equal(encdec["inputs"][row], [bos, sentinel] + list(w[row, -k:]))
    np.testing.assert_array_equal(encdec["loss_mask"], np.tile([0] + [1] * k + [0], (3, 1)))
    scored = lambda b: b["targets"][b["loss_mask"] == 1]
    np.testing.assert_array_equal(scored(decoder), scored(encdec))
    with pytest.raises(ValueError, match="cannot score a continuation"):
        objective("masked_lm").continuation(batch, k)


def test_continuation_no_leak_of_a_scored_token_into_its_own_or_earlier_predictions():
    """Changing the m-th scored token leaves the encoder's input and the encoder–decoder's logits
    up to the position that predicts it unchanged, and changes the next position's."""
    k = 6
    batch, w = window_batch(k_rows=1)
    spans = objective("span_corruption")
    net = model_lib.Transformer(tiny_model("encoder_decoder", spans.vocab_size))
    reference_batch = spans.continuation(batch, k)
    params = random_params(net, jnp.asarray(reference_batch["inputs"]),
                           jnp.asarray(reference_batch["encoder_inputs"]))
    apply = jax.jit(lambda tokens, source: net.apply({"params": params}, tokens,
                                                     encoder_tokens_BxS=source))
    logits = lambda b: np.asarray(apply(jnp.asarray(b["inputs"]), jnp.asarray(b["encoder_inputs"])))
    reference = logits(reference_batch)
    from scaling.data import packing
    for m in range(k):
        perturbed = w.copy()
        perturbed[0, LENGTH + 1 - k + m] = (perturbed[0, LENGTH + 1 - k + m] + 7) % BASE
        other = spans.continuation(packing.make_batch(perturbed, EOD), k)
        np.testing.assert_array_equal(other["encoder_inputs"], reference_batch["encoder_inputs"])
        got = logits(other)
        # Decoder position p reads targets[p - 1]; the m-th scored token is targets[1 + m].
        np.testing.assert_array_equal(got[:, :m + 2], reference[:, :m + 2])
        assert not np.allclose(got[:, m + 2], reference[:, m + 2])


@pytest.mark.parametrize("layout, name", [("decoder", "causal_lm"),
                                          ("encoder_decoder", "span_corruption")])
def test_continuation_loss_is_the_mean_over_the_scored_tokens(layout, name):
    """The eval step on a continuation batch against a NumPy cross-entropy over the k scored
    tokens only, each scored by the model's distribution over the corpus vocabulary (the
    encoder–decoder's special tokens left out)."""
    from scaling.step import eval_batch

    k = 5
    obj = objective(name)
    batch = obj.continuation(window_batch()[0], k)
    cfg = tiny_model(layout, obj.vocab_size)
    net = model_lib.Transformer(cfg)
    source = jnp.asarray(batch["encoder_inputs"]) if "encoder_inputs" in batch else None
    params = random_params(net, jnp.asarray(batch["inputs"]), source)
    got = eval_batch({"params": params}, {key: jnp.asarray(v) for key, v in batch.items()},
                     net=net, model=cfg, scored_vocab=BASE)
    logits = np.asarray(net.apply({"params": params}, jnp.asarray(batch["inputs"]),
                                  encoder_tokens_BxS=source), np.float64)[..., :BASE]
    logits -= logits.max(axis=-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    mask = batch["loss_mask"].astype(bool)
    nll = -np.take_along_axis(log_p, np.where(mask, batch["targets"], 0)[..., None], axis=-1)[..., 0]
    assert mask.sum() == 3 * k and (batch["targets"][mask] < BASE).all()
    assert float(got["loss"]) == pytest.approx(nll[mask].mean(), rel=1e-5)
    assert float(got["target_tokens"]) == 3 * k


@pytest.mark.parametrize("objective_name, layout, words", [
    ("causal_lm", "encoder", "every position would see its own target"),
    ("causal_lm", "encoder_decoder", "needs a source"),
    ("masked_lm", "decoder", "cannot see the context right"),
    ("span_corruption", "decoder", "model.layout='encoder_decoder'"),
    ("seq2seq", "encoder", "model.layout='encoder_decoder'"),
])
def test_layouts_that_cannot_train_an_objective_fail_validation(objective_name, layout, words):
    from scaling.config import ConfigError, default_config, validate

    config = default_config()
    config.model.layout = layout
    config.train.objective = objective_name
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert "train.objective" in message and words in message and "\n" not in message


def test_valid_pairs_pass_validation():
    from scaling.config import default_config, validate

    for name, layout in (("causal_lm", "decoder"), ("masked_lm", "encoder"),
                         ("span_corruption", "encoder_decoder")):
        config = default_config()
        config.model.layout, config.train.objective = layout, name
        validate(config)


@pytest.mark.parametrize("objective_name, layout, k, words", [
    ("masked_lm", "encoder", 19, "0 with train.objective='masked_lm'"),
    ("causal_lm", "decoder", 129, "at most data.seq_len=128"),
    # A learned position table of 128 rows: 129 encoder tokens (test_train_cli has the range).
    ("span_corruption", "encoder_decoder", 1, "both must fit model.max_seq_len=128"),
])
def test_continuation_tokens_that_cannot_be_scored_fail_validation(objective_name, layout, k, words):
    from scaling.config import ConfigError, default_config, validate

    config = default_config()
    config.model.layout, config.train.objective = layout, objective_name
    config.model.position = "learned"
    config.train.continuation_tokens = k
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert "train.continuation_tokens" in message and words in message and "\n" not in message


@pytest.mark.parametrize("objective_name, layout, fields, field, allowed", [
    # The objectives select at least one position per row: at 0 they trained another share.
    ("masked_lm", "encoder", {"train.mask_fraction": 0.0}, "train.mask_fraction",
     "a finite number > 0 and < 1"),
    ("span_corruption", "encoder_decoder", {"train.noise_density": 0.0}, "train.noise_density",
     "a finite number > 0 and < 1"),
    # A one-token target is its EOS alone: the model learned to write nothing else.
    ("seq2seq", "encoder_decoder", {"data.target_len": 1}, "data.target_len",
     "at least 2 with train.objective='seq2seq'"),
    ("seq2seq", "encoder_decoder", {"data.seq_len": 1}, "data.seq_len",
     "at least 2 with train.objective='seq2seq'"),
])
def test_shares_and_targets_that_leave_nothing_to_learn_fail_validation(
        tmp_path, objective_name, layout, fields, field, allowed):
    from scaling.config import ConfigError, default_config, validate

    config = default_config()
    config.model.layout, config.train.objective = layout, objective_name
    if objective_name == "seq2seq":
        (tmp_path / "pairs.tsv").write_text("a source\ta target\n")
        config.data.dataset, config.data.files = "text_pairs", str(tmp_path / "pairs.tsv")
    for dotted, value in fields.items():
        section, name = dotted.split(".")
        config[section][name] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert error.value.field == field and allowed in error.value.allowed
    config[section][name] = 2 if isinstance(value, int) else 0.5
    validate(config)


def test_span_corruption_settings_the_config_accepts_are_the_ones_that_corrupt():
    # Accepted: every row can alternate kept and dropped spans (T5's layout), so a row corrupts.
    # Refused, naming the field: a density whose spans outnumber the tokens it keeps.
    from scaling.config import default_config, validate
    from scaling.errors import ConfigError

    accepted = refused = 0
    for density in np.linspace(0.05, 0.95, 19):
        for mean in (1.0, 2.0, 3.0, 10.0):
            config = default_config()
            config.model.layout, config.train.objective = "encoder_decoder", "span_corruption"
            config.train.noise_density, config.train.mean_span_length = float(density), mean
            try:
                validate(config)
            except ConfigError as error:
                assert str(error).startswith("config.train.noise_density=")
                noise, spans = objectives.span_counts(config.data.seq_len, density, mean)
                assert spans > config.data.seq_len - noise  # refused only when it cannot corrupt
                refused += 1
                continue
            mask = objectives.noise_mask(np.random.default_rng(0), config.data.seq_len, density,
                                         mean)
            assert mask.size == config.data.seq_len and not mask[0]
            accepted += 1
    assert accepted and refused

"""The optimizer against hand formulas: schedules, decay mask, µP group rates."""

import math

import numpy as np
import optax
import pytest

from scaling import budget, optim
from scaling.config import default_config


def _optim(**changes):
    config = default_config()
    for key, value in changes.items():
        config.optim[key] = value
    return config.optim


def test_cosine_schedule_matches_formula():
    o = _optim(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    schedule = optim.learning_rate_schedule(o, 110)
    for step in (0, 5, 10):
        assert float(schedule(step)) == pytest.approx(1e-3 * step / 10, rel=1e-6, abs=1e-12)
    for step in (10, 35, 60, 85, 110):
        progress = (step - 10) / 100
        expected = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_linear_and_wsd_schedules():
    linear = optim.learning_rate_schedule(_optim(lr=1.0, warmup_steps=0, min_lr_ratio=0.0,
                                                 schedule="linear"), 100)
    assert float(linear(50)) == pytest.approx(0.5)
    wsd = optim.learning_rate_schedule(_optim(lr=1.0, warmup_steps=0, min_lr_ratio=0.0,
                                              schedule="wsd", decay_fraction=0.2), 100)
    assert float(wsd(79)) == pytest.approx(1.0)
    assert float(wsd(90)) == pytest.approx(0.5)
    assert float(wsd(100)) == pytest.approx(0.0, abs=1e-7)


def test_width_dimensions_and_groups():
    axes = {
        "embedding": ("vocab", "embed"),
        "query": ("layers", "embed", "heads", "head_dim"),
        "mlp_in": ("layers", "embed", "mlp"),
        "norm": ("layers", "embed"),
        "bias": ("layers", "mlp"),
    }
    assert {k: optim.width_dimensions(v) for k, v in axes.items()} == {
        "embedding": 1, "query": 2, "mlp_in": 2, "norm": 1, "bias": 1}
    assert optim.decay_mask(axes) == {"embedding": True, "query": True, "mlp_in": True,
                                      "norm": False, "bias": False}
    model = default_config().model
    model.parametrization, model.mup_base_width, model.d_model = "mup", 64, 256
    multipliers = optim.learning_rate_multipliers(axes, model)
    assert multipliers == {"embedding": 1.0, "query": 0.25, "mlp_in": 0.25, "norm": 1.0, "bias": 1.0}
    model.parametrization = "standard"
    assert set(optim.learning_rate_multipliers(axes, model).values()) == {1.0}


def test_adamw_update_matches_numpy():
    """One AdamW step with clipping, decay mask and a µP multiplier, against a NumPy re-derivation."""
    config = default_config()
    config.optim.update(lr=0.1, warmup_steps=0, schedule="constant", weight_decay=0.5,
                        grad_clip=1.0, b1=0.9, b2=0.95, eps=1e-8)
    config.model.update(parametrization="mup", mup_base_width=32, d_model=64)
    axes = {"w": ("embed", "mlp"), "b": ("mlp",)}
    tx, _ = optim.make_optimizer(config, 10, axes)
    params = {"w": np.full((2, 2), 2.0, np.float32), "b": np.ones((2,), np.float32)}
    grads = {"w": np.full((2, 2), 3.0, np.float32), "b": np.full((2,), 4.0, np.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    norm = math.sqrt(4 * 9 + 2 * 16)
    clipped = {k: v / norm for k, v in grads.items()}
    expected = {}
    for name, ratio, decay in (("w", 0.5, True), ("b", 1.0, False)):
        m = 0.1 * clipped[name] / (1 - 0.9)
        v = 0.05 * clipped[name] ** 2 / (1 - 0.95)
        step = m / (np.sqrt(v) + 1e-8) + (0.5 * params[name] if decay else 0.0)
        expected[name] = -0.1 * ratio * step
    for name in params:
        np.testing.assert_allclose(np.asarray(updates[name]), expected[name], rtol=1e-5)


def test_steps_for_token_budget():
    config = default_config()
    config.train.tokens, config.train.batch_size, config.data.seq_len = 10_000, 8, 128
    assert budget.steps_for(config) == math.ceil(10_000 / 1024)

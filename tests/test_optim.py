"""The optimizer against hand formulas: schedules, decay mask, µP group rates."""

import math

import jax
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


def test_a_schedule_past_two_to_the_24_steps_moves_at_every_step():
    # float32 holds every integer only up to 2^24 (16.8M): there, a step read as a float is
    # rounded to a multiple of 8, and 1 − √progress would stand still for several steps and jump.
    total, start = 100_000_000, 99_000_000
    wsd = optim.learning_rate_schedule(_optim(lr=1.0, warmup_steps=0, min_lr_ratio=0.0,
                                              schedule="wsd", decay_fraction=0.01,
                                              decay_shape="sqrt"), total)
    for step in (start + 1, start + 4, start + 5, start + 7, start + 9, total - 3):
        expected = 1.0 - math.sqrt((step - start) / (total - start))
        assert float(wsd(step)) == pytest.approx(expected, abs=1e-6), step  # of the peak, 1


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
    """Three AdamW steps with clipping, decay mask and a µP multiplier, against a NumPy
    re-derivation. One step from a fresh state would not do: Adam's first update is about
    sign(g) whatever the clipping, b1 and b2, so an eps as large as the clipped gradients and
    steps with different gradients (the second below the clip) make each of them show."""
    lr, wd, clip, b1, b2, eps = 0.1, 0.5, 1.0, 0.9, 0.95, 0.05
    config = default_config()
    config.optim.update(lr=lr, warmup_steps=0, schedule="constant", weight_decay=wd,
                        grad_clip=clip, b1=b1, b2=b2, eps=eps)
    config.model.update(parametrization="mup", mup_base_width=32, d_model=64)
    axes = {"w": ("embed", "mlp"), "b": ("mlp",)}
    tx = optim.make_optimizer(config, axes)
    params = {"w": np.array([[2.0, -1.0], [0.5, 3.0]], np.float32),
              "b": np.array([1.0, -2.0], np.float32)}
    steps = [{"w": np.array([[3.0, 1.0], [-2.0, 0.5]], np.float32),
              "b": np.array([4.0, -1.0], np.float32)},  # norm 5.9: clipped to 1
             {"w": np.array([[0.1, -0.2], [0.3, 0.1]], np.float32),
              "b": np.array([-0.2, 0.1], np.float32)},  # norm 0.45: left as it is
             {"w": np.array([[-1.0, 2.0], [1.0, -3.0]], np.float32),
              "b": np.array([0.5, 2.0], np.float32)}]
    state = tx.init(params)
    expected = {name: value.astype(np.float64) for name, value in params.items()}
    m = {name: np.zeros_like(value) for name, value in expected.items()}
    v = {name: np.zeros_like(value) for name, value in expected.items()}
    for t, grads in enumerate(steps, start=1):
        updates, state = tx.update(grads, state, params, learning_rate=np.float32(lr))
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
        scale = min(1.0, clip / norm)
        for name, ratio, decay in (("w", 0.5, True), ("b", 1.0, False)):
            g = grads[name].astype(np.float64) * scale
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g**2
            adam = (m[name] / (1 - b1**t)) / (np.sqrt(v[name] / (1 - b2**t)) + eps)
            expected[name] = expected[name] - lr * ratio * (
                adam + (wd * expected[name] if decay else 0.0))
        for name in params:
            np.testing.assert_allclose(np.asarray(params[name]), expected[name], rtol=1e-5,
                                       atol=1e-6, err_msg=f"step {t}, {name}")


def test_steps_for_token_budget():
    config = default_config()
    config.train.tokens, config.train.batch_size, config.data.seq_len = 10_000, 8, 128
    assert budget.steps_for(config) == math.ceil(10_000 / 1024)

"""Sinusoidal tables, RoPE and ALiBi against their published definitions."""

import math

import numpy as np

from scaling.layers import positions


def test_sinusoidal_table_equals_the_formula():
    length, d_model = 50, 16
    table = np.asarray(positions.sinusoidal_table(length, d_model))
    for pos in range(length):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert abs(table[pos, 2 * i] - math.sin(angle)) < 2e-5
            assert abs(table[pos, 2 * i + 1] - math.cos(angle)) < 2e-5


def rope_reference(x, theta):
    """float64 rotate-half RoPE of x (L, K) at positions 0..L-1."""
    length, head_dim = x.shape
    half = head_dim // 2
    out = np.empty_like(x, dtype=np.float64)
    for pos in range(length):
        for i in range(half):
            angle = pos * theta ** (-2 * i / head_dim)
            a, b = x[pos, i], x[pos, i + half]
            out[pos, i] = a * math.cos(angle) - b * math.sin(angle)
            out[pos, i + half] = b * math.cos(angle) + a * math.sin(angle)
    return out


def test_rope_matches_reference_and_preserves_norms():
    x = np.random.default_rng(0).normal(size=(1, 20, 3, 8)).astype(np.float32)
    rotated = np.asarray(positions.apply_rope(x, 10000.0))
    for head in range(3):
        np.testing.assert_allclose(rotated[0, :, head], rope_reference(x[0, :, head], 10000.0),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_array_equal(rotated[:, 0], x[:, 0])


def test_rope_dot_product_depends_only_on_the_offset():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=8), rng.normal(size=8)
    length = 40
    queries = np.asarray(positions.apply_rope(np.tile(q, (1, length, 1, 1)).astype(np.float32), 500.0))[0, :, 0]
    keys = np.asarray(positions.apply_rope(np.tile(k, (1, length, 1, 1)).astype(np.float32), 500.0))[0, :, 0]
    for offset in (0, 3, 17):
        scores = [queries[m + offset] @ keys[m] for m in range(length - offset)]
        np.testing.assert_allclose(scores, scores[0], rtol=1e-4, atol=1e-4)
    assert abs(queries[5] @ keys[0] - queries[9] @ keys[0]) > 1e-3  # and it does depend on it


def test_alibi_slopes_follow_the_paper():
    np.testing.assert_allclose(positions.alibi_slopes(8), [2.0 ** -k for k in range(1, 9)])
    # 6 heads: the 4-head slopes, then every other one of the 8-head slopes (Press et al. code).
    np.testing.assert_allclose(positions.alibi_slopes(6),
                               [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3])


def test_alibi_bias_is_minus_slope_times_distance():
    slopes = positions.alibi_slopes(2)
    bias = np.asarray(positions.alibi_bias(slopes, np.arange(4), np.arange(4), causal=False))
    assert bias.shape == (1, 2, 4, 4)
    assert bias[0, 0, 3, 1] == -slopes[0] * 2 and bias[0, 1, 1, 3] == -slopes[1] * 2

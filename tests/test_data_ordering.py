"""The data order: a keyed permutation per epoch, a pure function of (seed, row)."""

import numpy as np
import pytest

from scaling.data import ordering


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 4097])
def test_permute_is_a_bijection(size):
    image = ordering.permute(np.arange(size), size, key=12345)
    assert sorted(image.tolist()) == list(range(size))


def test_permute_depends_on_key_and_is_not_identity():
    a = ordering.permute(np.arange(500), 500, key=1)
    b = ordering.permute(np.arange(500), 500, key=2)
    assert not np.array_equal(a, b)
    assert (a == np.arange(500)).mean() < 0.05
    np.testing.assert_array_equal(a, ordering.permute(np.arange(500), 500, key=1))
    # Any subset maps the same as within the whole array (no hidden state).
    np.testing.assert_array_equal(ordering.permute(np.array([499, 3]), 500, key=1), a[[499, 3]])


def test_each_epoch_reads_every_window_once():
    num_windows, seq_len, slack = 37, 8, 5
    starts = ordering.window_starts(np.arange(3 * num_windows), num_windows, slack, seq_len, seed=7)
    for epoch in range(3):
        epoch_starts = starts[epoch * num_windows:(epoch + 1) * num_windows]
        offset = epoch_starts.min()
        assert 0 <= offset <= slack
        assert sorted(((epoch_starts - offset) // seq_len).tolist()) == list(range(num_windows))
        assert np.all((epoch_starts - offset) % seq_len == 0)
    # Epochs are shuffled differently.
    first, second = starts[:num_windows], starts[num_windows:2 * num_windows]
    assert not np.array_equal(first - first.min(), second - second.min())


def test_window_starts_is_pure_and_seeded():
    rows = np.arange(100, 164)
    a = ordering.window_starts(rows, 50, 3, 4, seed=0)
    np.testing.assert_array_equal(a, ordering.window_starts(rows, 50, 3, 4, seed=0))
    assert not np.array_equal(a, ordering.window_starts(rows, 50, 3, 4, seed=1))
    np.testing.assert_array_equal(a[10:20], ordering.window_starts(rows[10:20], 50, 3, 4, seed=0))


# SplitMix64's first five outputs for seed 1234567 (Vigna's reference generator): the finalizer
# applied to seed + k·0x9E3779B97F4A7C15.
SPLITMIX64_1234567 = [6457827717110365317, 3203168211198807973, 9817491932198370423,
                      4593380528125082431, 16408922859458223821]


def test_mixers_are_splitmix64():
    states = [(1234567 + k * 0x9E3779B97F4A7C15) % 2**64 for k in range(1, 6)]
    assert ordering._mix64(np.array(states, dtype=np.uint64)).tolist() == SPLITMIX64_1234567
    assert [ordering._mix64_int(state) for state in states] == SPLITMIX64_1234567


def test_batch_order_is_unchanged():
    """The keys, permutation and window starts that every earlier run was trained on (a change
    would silently give resumed runs and reruns other batches)."""
    assert [ordering.derive_key(*parts) for parts in [(0,), (7, 0, 1), (123456789, 2**40, 3),
                                                       (-1,)]] == [
        16294208416658607535, 14284191158949232335, 9903037064952624170, 15999695513772384452]
    assert ordering.permute(np.array([0, 1, 2, 9, 10_000, 86_000]), 86_681,
                            ordering.derive_key(0, 0, 1)).tolist() == [
        13169, 35199, 41572, 20538, 30269, 58947]
    assert ordering.window_starts(np.arange(7032, 7040), 86_681, 57, 128, 0).tolist() == [
        54669, 9464589, 10740365, 2741133, 10372621, 7305997, 10294029, 6922765]

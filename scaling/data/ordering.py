"""Which window a batch row reads: a pure function of (seed, global row index).

Global row `r` (row `j` of step `s` with global batch `B` is `r = s*B + j`) falls in epoch
`r // W` for `W` windows per epoch, and reads window `permute(r % W)` of that epoch's permutation.
Each epoch has its own pseudo-random permutation and its own start offset in the stream (within the
slack that whole windows leave), so window edges move between epochs.

The permutation is a keyed Feistel network with cycle walking: a bijection on [0, W) computed for
any index in O(1) memory, so no permutation array grows with the corpus and resuming needs only
the step.
"""

from __future__ import annotations

import numpy as np

_ROUNDS = 4
_MASK64 = 2**64 - 1
_MULTIPLIERS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijective scramble of uint64 values (wrapping arithmetic)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_MULTIPLIERS[0])
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_MULTIPLIERS[1])
    return x ^ (x >> np.uint64(31))


def _mix64_int(x: int) -> int:
    """`_mix64` of one value, in Python integers (a one-element NumPy array costs ~30x more, and
    a batch derives dozens of keys)."""
    x = ((x ^ (x >> 30)) * _MULTIPLIERS[0]) & _MASK64
    x = ((x ^ (x >> 27)) * _MULTIPLIERS[1]) & _MASK64
    return x ^ (x >> 31)


def derive_key(*parts: int) -> int:
    """A 64-bit key from integers (seed, epoch, purpose...), mixed so nearby inputs differ."""
    key = 0x9E3779B97F4A7C15
    for part in parts:
        key = _mix64_int(key ^ (part & _MASK64))
    return key


def _feistel(x: np.ndarray, half_bits: int, round_keys: list) -> np.ndarray:
    """A bijection on [0, 2**(2*half_bits)) applied to each element of uint64 `x`."""
    mask = np.uint64((1 << half_bits) - 1)
    left, right = x >> np.uint64(half_bits), x & mask
    for round_key in round_keys:
        left, right = right, left ^ (_mix64(right ^ round_key) & mask)
    return (left << np.uint64(half_bits)) | right


def permute(indices: np.ndarray, size: int, key: int) -> np.ndarray:
    """int64 array: the images of `indices` (each in [0, size)) under a pseudo-random permutation
    of [0, size) chosen by `key`."""
    indices = np.asarray(indices, dtype=np.int64)
    if size <= 1:
        return np.zeros_like(indices)
    half_bits = max(1, ((size - 1).bit_length() + 1) // 2)
    values = indices.astype(np.uint64)
    round_keys = [np.uint64(derive_key(key, index)) for index in range(_ROUNDS)]
    outside = np.ones(values.shape, dtype=bool)
    # Cycle walking: re-apply until inside [0, size); the domain is under 4*size, so few rounds.
    while outside.any():
        values[outside] = _feistel(values[outside], half_bits, round_keys)
        outside = values >= np.uint64(size)
    return values.astype(np.int64)


def window_starts(rows: np.ndarray, num_windows: int, slack: int, seq_len: int,
                  seed: int) -> np.ndarray:
    """int64 stream offsets of the windows that global `rows` read (see the module docstring).

    `slack` is how many stream positions are left over after `num_windows` whole windows; each
    epoch starts at a pseudo-random offset in [0, slack]."""
    rows = np.asarray(rows, dtype=np.int64)
    epochs, positions = rows // num_windows, rows % num_windows
    starts = np.empty_like(rows)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        window = permute(positions[in_epoch], num_windows, derive_key(seed, int(epoch), 1))
        offset = derive_key(seed, int(epoch), 2) % (slack + 1)
        starts[in_epoch] = offset + window * seq_len
    return starts

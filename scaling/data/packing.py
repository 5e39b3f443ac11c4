"""Packing: documents into one token stream, the stream into fixed windows, windows into batches.

The stream is every document followed by end-of-document (EOD): `d0 EOD d1 EOD ...`. Window `w`
(with a start offset `o`) is `stream[o + w*L : o + w*L + L + 1]` for sequence length `L`, so
consecutive windows share one token: each window's inputs are its first L tokens and its targets
the last L, and every stream token is a target exactly once per pass. Documents cross window
edges; nothing is padded.
"""

from __future__ import annotations

import numpy as np


def pack_documents(documents: list[np.ndarray], eod_id: int, dtype) -> np.ndarray:
    """The documents' tokens, each followed by `eod_id`, as one 1-D array of `dtype`."""
    pieces = []
    eod = np.array([eod_id], dtype=dtype)
    for document in documents:
        pieces.append(document.astype(dtype, copy=False))
        pieces.append(eod)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype)


def num_windows(num_tokens: int, seq_len: int) -> int:
    """How many whole windows of `seq_len` + 1 tokens (overlapping by one) fit in the stream."""
    return max(num_tokens - 1, 0) // seq_len


def read_windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """int32 [len(starts), seq_len + 1]: the windows beginning at stream positions `starts`."""
    positions = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(seq_len + 1)
    return np.asarray(tokens[positions], dtype=np.int32)


def segment_ids(inputs: np.ndarray, eod_id: int) -> np.ndarray:
    """int32, same shape as `inputs` [rows, L]: the document index within each row, from 1.

    An EOD starts a new segment: it is the start marker of the next document, so under a
    document mask the next document's first token is predicted from the EOD alone."""
    is_eod = (inputs == eod_id).astype(np.int32)
    is_eod[:, 0] = 0  # a row always starts in segment 1
    return (1 + np.cumsum(is_eod, axis=1)).astype(np.int32)


def make_batch(windows: np.ndarray, eod_id: int) -> dict[str, np.ndarray]:
    """The batch dict for windows int32 [rows, L + 1]: `inputs`, `targets` (inputs shifted by
    one) and `segment_ids`, each int32 [rows, L]."""
    inputs = np.ascontiguousarray(windows[:, :-1])
    return {
        "inputs": inputs,
        "targets": np.ascontiguousarray(windows[:, 1:]),
        "segment_ids": segment_ids(inputs, eod_id),
    }

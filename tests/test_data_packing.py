"""Packing: documents → stream with EOD → windows → batches, against plain-Python
references."""

import numpy as np

from scaling.data import packing

EOD = 9


def _documents(rng, count):
    return [rng.integers(0, EOD, size=rng.integers(0, 30)).astype(np.int64) for _ in range(count)]


def test_stream_puts_eod_after_every_document_and_loses_nothing():
    documents = _documents(np.random.default_rng(0), 40)
    stream = packing.pack_documents(documents, EOD, np.uint16)
    reference = []
    for document in documents:
        reference += [int(t) for t in document] + [EOD]
    assert stream.dtype == np.uint16
    assert stream.tolist() == reference
    # Splitting at EOD gives the documents back, in order.
    pieces = np.split(stream, np.flatnonzero(stream == EOD) + 1)[:-1]
    assert [p[:-1].tolist() for p in pieces] == [d.tolist() for d in documents]


def test_windows_tile_the_stream_with_one_token_overlap():
    stream = packing.pack_documents(_documents(np.random.default_rng(1), 50), EOD, np.uint32)
    seq_len = 16
    count = packing.num_windows(len(stream), seq_len)
    assert count == (len(stream) - 1) // seq_len
    windows = packing.read_windows(stream, np.arange(count) * seq_len, seq_len)
    assert windows.dtype == np.int32 and windows.shape == (count, seq_len + 1)
    batch = packing.make_batch(windows, EOD)
    # Every target position of the covered stream appears exactly once, in order.
    assert batch["targets"].reshape(-1).tolist() == stream[1:count * seq_len + 1].tolist()
    assert batch["inputs"].reshape(-1).tolist() == stream[:count * seq_len].tolist()
    # Only the tail shorter than one window is outside this pass.
    assert len(stream) - (count * seq_len + 1) < seq_len
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])


def test_num_windows_edges():
    assert packing.num_windows(0, 4) == 0
    assert packing.num_windows(4, 4) == 0  # needs seq_len + 1 tokens
    assert packing.num_windows(5, 4) == 1
    assert packing.num_windows(9, 4) == 2


def test_segment_ids_count_documents_from_one_with_eod_starting_a_segment():
    rng = np.random.default_rng(2)
    inputs = rng.integers(0, EOD + 1, size=(6, 25)).astype(np.int32)
    inputs[0, 0] = EOD
    ids = packing.segment_ids(inputs, EOD)
    for row, row_ids in zip(inputs, ids):
        segment, expected = 1, []
        for position, token in enumerate(row):
            if token == EOD and position > 0:
                segment += 1
            expected.append(segment)
        assert row_ids.tolist() == expected
    assert ids.dtype == np.int32

"""The loader: batches are a pure function of (seed, step), host slices tile the global batch,
every row is a real window of the packed corpus, evaluation batches are fixed."""

import re

import numpy as np
import pytest

from scaling import config as config_lib
from scaling import data
from scaling.data import text_files

SEQ_LEN = 32


def _write_corpus(folder, count=30):
    """Text files of different lengths; returns {name: bytes}."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "x = 1", "\n", "def f():", "    return"]
    folder.mkdir(parents=True, exist_ok=True)
    corpus = {}
    for index in range(count):
        text = " ".join(rng.choice(words, size=int(rng.integers(20, 400)))) + f"\n# file {index}\n"
        (folder / f"doc{index:03d}.txt").write_text(text)
        corpus[f"doc{index:03d}.txt"] = text.encode()
    return corpus


@pytest.fixture(scope="module")
def corpus_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    corpus = _write_corpus(root / "corpus")
    cfg = config_lib.default_config().data
    cfg.update(dataset="text_files", files=str(root / "corpus"), seq_len=SEQ_LEN,
               cache_dir=str(root / "cache"))
    return cfg, corpus


def _loader(cfg, batch_size=8, seed=0, index=0, count=1):
    return data.make_loader(cfg, batch_size=batch_size, seed=seed, process_index=index,
                            process_count=count)


def test_interface(corpus_config):
    cfg, _ = corpus_config
    with _loader(cfg) as loader:
        assert loader.vocab_size == 257 and loader.eod_id == 256
        batch = loader.batch(0)
        assert set(batch) == {"inputs", "targets", "segment_ids"}
        for array in batch.values():
            assert array.dtype == np.int32 and array.shape == (8, SEQ_LEN)
        np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])


def _train_and_eval_documents(corpus):
    splits = text_files.assign_splits([(name, name) for name in sorted(corpus)])
    return ([corpus[name] for name in splits["train"]],
            [corpus[name] for name in splits["validation"]])


def test_rows_hold_train_text_only(corpus_config):
    cfg, corpus = corpus_config
    train_documents, _ = _train_and_eval_documents(corpus)
    with _loader(cfg) as loader:
        assert loader.tokens_in_split == sum(len(d) + 1 for d in train_documents)
        for step in range(5):
            batch = loader.batch(step)
            for inputs, targets in zip(batch["inputs"], batch["targets"]):
                window = np.append(inputs, targets[-1])
                # Between EODs a window holds a piece of one train document.
                for piece in np.split(window, np.flatnonzero(window == 256)):
                    text = bytes([t for t in piece.tolist() if t != 256])
                    assert any(text in d for d in train_documents)


def test_one_epoch_reads_every_token_once(corpus_config):
    cfg, corpus = corpus_config
    train_documents, _ = _train_and_eval_documents(corpus)
    with _loader(cfg, batch_size=1, seed=5) as loader:
        windows = loader.train_windows
        read = np.concatenate([loader.batch(step)["inputs"][0] for step in range(windows)])
    # The reference: byte counts of the train documents, plus one EOD each.
    expected = np.zeros(257, np.int64)
    for document in train_documents:
        expected[:256] += np.bincount(np.frombuffer(document, np.uint8), minlength=256)
    expected[256] = len(train_documents)
    seen = np.bincount(read, minlength=257)
    missing = expected - seen
    # Nothing read twice; what is not read is the slack shorter than one window, plus the
    # final target.
    assert missing.min() >= 0
    assert missing.sum() == expected.sum() - windows * SEQ_LEN
    assert missing.sum() <= SEQ_LEN


def test_same_batches_across_fresh_loaders_and_after_resume(corpus_config):
    cfg, _ = corpus_config
    first, second = _loader(cfg, seed=3), _loader(cfg, seed=3)
    other_seed = _loader(cfg, seed=4)
    steps = [0, 1, 7, 100, 10_000]  # far steps wrap into later epochs
    for step in steps:
        for key in ("inputs", "targets", "segment_ids"):
            np.testing.assert_array_equal(first.batch(step)[key], second.batch(step)[key])
    assert not np.array_equal(first.batch(0)["inputs"], other_seed.batch(0)["inputs"])
    # A run that stops after step 4 and resumes sees what an uninterrupted run sees.
    uninterrupted = [batch for _, batch in zip(range(8), first.iterate(0))]
    resumed = _loader(cfg, seed=3)
    after_resume = [item for _, item in zip(range(4), resumed.iterate(4))]
    assert [step for step, _ in after_resume] == [4, 5, 6, 7]
    for (step, batch), (expected_step, expected) in zip(after_resume, uninterrupted[4:]):
        assert step == expected_step
        np.testing.assert_array_equal(batch["inputs"], expected["inputs"])
    for loader in (first, second, other_seed, resumed):
        loader.close()


def test_prefetch_disabled_gives_same_batches(corpus_config):
    cfg, _ = corpus_config
    synchronous = cfg.copy_and_resolve_references()
    synchronous.prefetch = 0
    with _loader(synchronous) as loader, _loader(cfg) as prefetching:
        synchronous_items = [item for _, item in zip(range(3), loader.iterate(2))]
        prefetched_items = [item for _, item in zip(range(3), prefetching.iterate(2))]
        assert [step for step, _ in synchronous_items] == [2, 3, 4]
        for (step, batch), (_, prefetched) in zip(synchronous_items, prefetched_items):
            np.testing.assert_array_equal(batch["inputs"], prefetching.batch(step)["inputs"])
            np.testing.assert_array_equal(prefetched["inputs"], batch["inputs"])


@pytest.mark.parametrize("hosts", [2, 4])
def test_host_slices_tile_the_global_batch(corpus_config, hosts):
    cfg, _ = corpus_config
    with _loader(cfg, batch_size=16) as whole:
        slices = [_loader(cfg, batch_size=16, index=p, count=hosts) for p in range(hosts)]
        for step in (0, 3, 50):
            expected = whole.batch(step)
            parts = [s.batch(step) for s in slices]
            for key in expected:
                assert all(part[key].shape == (16 // hosts, SEQ_LEN) for part in parts)
                np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]),
                                              expected[key])
        evaluation = whole.eval_batches(2)
        for index in range(2):
            np.testing.assert_array_equal(
                np.concatenate([s.eval_batches(2)[index]["inputs"] for s in slices]),
                evaluation[index]["inputs"])
        for s in slices:
            s.close()


def test_eval_batches_are_fixed_and_held_out(corpus_config):
    cfg, corpus = corpus_config
    _, eval_documents = _train_and_eval_documents(corpus)
    with _loader(cfg, seed=0) as a, _loader(cfg, seed=9) as b:
        first = a.eval_batches(3)
        assert len(first) == 3
        for batch_a, batch_b, again in zip(first, b.eval_batches(3), a.eval_batches(3)):
            np.testing.assert_array_equal(batch_a["inputs"], batch_b["inputs"])
            np.testing.assert_array_equal(batch_a["inputs"], again["inputs"])
        for row in first[0]["inputs"]:
            for piece in np.split(row, np.flatnonzero(row == 256)):
                text = bytes([t for t in piece.tolist() if t != 256])
                assert any(text in d for d in eval_documents)


def test_whole_split_evaluation_reads_every_window_once(corpus_config):
    cfg, corpus = corpus_config
    _, eval_documents = _train_and_eval_documents(corpus)
    # The validation stream: each document then its EOD; windows of SEQ_LEN + 1 overlapping by one.
    stream_tokens = sum(len(d) + 1 for d in eval_documents)
    windows = (stream_tokens - 1) // SEQ_LEN
    batch_size = 4
    assert windows >= 2 * batch_size  # the corpus is big enough for the test to mean something
    with _loader(cfg, batch_size=batch_size) as loader:
        whole = loader.eval_batches(-1)
        assert len(whole) == windows // batch_size
        rows = np.concatenate([batch["inputs"] for batch in whole])
        # Evenly spaced over a split with fewer windows than that: window i for each i, in order.
        starts = np.arange(len(rows)) * windows // len(rows)
        assert len(set(starts.tolist())) == len(rows)
        for row, start in zip(rows, starts):
            np.testing.assert_array_equal(row, np.asarray(loader._eval.tokens[
                start * SEQ_LEN:start * SEQ_LEN + SEQ_LEN], np.int32))


def test_more_eval_batches_than_the_split_fills_reads_each_window_once(corpus_config):
    cfg, corpus = corpus_config
    _, eval_documents = _train_and_eval_documents(corpus)
    windows = (sum(len(d) + 1 for d in eval_documents) - 1) // SEQ_LEN
    batch_size = 8
    whole = windows // batch_size
    assert whole >= 2  # room for a cut that still reads several batches
    with _loader(cfg, batch_size=batch_size) as loader:
        assert loader.eval_windows == windows
        batches = loader.eval_batches(whole + 3)
        assert len(batches) == loader.eval_batch_count(whole + 3) == whole
        rows = [row.tobytes() for batch in batches for row in batch["inputs"]]
        assert len(set(rows)) == len(rows) == whole * batch_size
        assert loader.eval_rows(whole + 3) == whole * batch_size
        assert loader.eval_cut("train.eval_batches", whole) is None
        cut = loader.eval_cut("train.eval_batches", whole + 3)
        assert cut == (f"train.eval_batches={whole + 3} asks for {(whole + 3) * batch_size:,} "
                       f"held-out windows; the split has {windows:,}, so {whole} batches are read")
    # A split of fewer windows than one batch: that batch repeats some, and only the distinct
    # windows count.
    with _loader(cfg, batch_size=windows + 5) as loader:
        assert loader.eval_batch_count(4) == 1 and loader.eval_rows(4) == windows
        assert loader.eval_cut("train.eval_batches", 4).endswith(
            f"so 1 batch is read, {windows:,} distinct windows")


def test_sequence_longer_than_a_split_names_seq_len(corpus_config):
    cfg, _ = corpus_config
    too_long = cfg.copy_and_resolve_references()
    too_long.seq_len = 10**6
    with pytest.raises(config_lib.ConfigError, match="data.seq_len"):
        _loader(too_long)


def test_a_sequence_too_long_is_given_the_shorter_splits_limit(tmp_path):
    # One file is cut at 90% of its text: the validation tail is the shorter split, and the limit
    # the message gives is one both splits hold.
    (tmp_path / "one.txt").write_text("a line of text\n" * 20)
    cfg = config_lib.default_config().data
    cfg.update(dataset="text_files", files=str(tmp_path / "one.txt"), seq_len=10**4,
               cache_dir=str(tmp_path / "cache"))
    with pytest.raises(config_lib.ConfigError) as caught:
        _loader(cfg)
    limit = int(re.search(r"at most (\d+): split 'validation'", str(caught.value)).group(1))
    # The tail from 90% of 300 characters (a line start): two 15-byte lines and EOD, 31 tokens.
    assert limit == 30
    cfg.seq_len = limit
    with _loader(cfg, batch_size=1) as loader:
        assert loader.batch(0)["inputs"].shape == (1, limit)


@pytest.mark.parametrize("texts", [[""], ["", ""], ["some text\n" * 40, ""]])
def test_split_of_empty_files_names_the_files(tmp_path, texts):
    # Empty files tokenize to end-of-document ids only; a split holding nothing else used to be
    # reported as data.seq_len being too long ("at most 0").
    paths = [tmp_path / f"{name}.txt" for name in ("a", "b")[:len(texts)]]
    for path, text in zip(paths, texts):
        path.write_text(text)
    cfg = config_lib.default_config().data
    files = ",".join(str(path) for path in paths)
    cfg.update(dataset="text_files", files=files, seq_len=4, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(config_lib.ConfigError, match="documents are all empty") as caught:
        _loader(cfg)
    assert (caught.value.field, caught.value.value) == ("data.files", files)


def test_batch_that_does_not_split_over_hosts(corpus_config):
    cfg, _ = corpus_config
    with pytest.raises(config_lib.ConfigError, match="train.batch_size"):
        _loader(cfg, batch_size=6, count=4)


def test_document_segments_follow_eod(corpus_config):
    cfg, _ = corpus_config
    with _loader(cfg, batch_size=32) as loader:
        batches = [loader.batch(step) for step in range(10)]
    inputs = np.concatenate([batch["inputs"] for batch in batches])
    segments = np.concatenate([batch["segment_ids"] for batch in batches])
    assert np.all(segments[:, 0] == 1)
    steps = np.diff(segments, axis=1)
    np.testing.assert_array_equal(steps, (inputs[:, 1:] == 256).astype(np.int32))
    assert (inputs == 256).any()  # the corpus has short documents, so rows cross documents

"""The token cache: built once, reused while its fingerprint matches, rebuilt when stale, never
left looking valid by a failed build, and built once by concurrent processes."""

import multiprocessing
import pathlib

import numpy as np
import pytest

from scaling.data import cache, tokenizers

DOCUMENTS = [b"first document", b"", "second: \u00e9".encode(), b"third\n" * 50]


def _reference_stream(documents, eod):
    stream = []
    for document in documents:
        stream += list(document) + [eod]
    return stream


class _Counting:
    """A document source that counts how often it is read."""

    def __init__(self, documents):
        self.documents, self.reads = documents, 0

    def __call__(self):
        self.reads += 1
        return iter([self.documents[:2], self.documents[2:]])


def test_build_then_reuse(tmp_path):
    tokenizer = tokenizers.ByteTokenizer()
    fingerprint = cache.fingerprint_of("corpus-v1", "text", tokenizer)
    source = _Counting(DOCUMENTS)
    built = cache.load_or_build(tmp_path / "c", fingerprint, source, tokenizer)
    assert built.tokens.dtype == np.uint16 and isinstance(built.tokens, np.memmap)
    assert built.tokens.tolist() == _reference_stream(DOCUMENTS, 256)
    assert built.num_documents == 4
    lengths = np.diff(built.document_starts)
    assert lengths.tolist() == [len(d) + 1 for d in DOCUMENTS]
    reused = cache.load_or_build(tmp_path / "c", fingerprint, source, tokenizer)
    assert source.reads == 1
    assert reused.tokens.tolist() == built.tokens.tolist()


def test_stale_cache_is_rebuilt(tmp_path, capsys):
    tokenizer = tokenizers.ByteTokenizer()
    old = _Counting(DOCUMENTS)
    cache.load_or_build(tmp_path / "c", cache.fingerprint_of("corpus-v1", "text", tokenizer), old,
                        tokenizer)
    changed = _Counting([b"entirely new text"])
    new_fingerprint = cache.fingerprint_of("corpus-v2", "text", tokenizer)
    rebuilt = cache.load_or_build(tmp_path / "c", new_fingerprint, changed, tokenizer)
    assert changed.reads == 1
    assert rebuilt.tokens.tolist() == _reference_stream([b"entirely new text"], 256)
    assert f"[data] token cache {tmp_path / 'c'} is stale (built from other data or settings); " \
           "rebuilding" in capsys.readouterr().err
    # A cache from an older format version is stale too.
    fingerprint = dict(cache.fingerprint_of("corpus-v2", "text", tokenizer), cache_version=0)
    again = _Counting([b"x"])
    cache.load_or_build(tmp_path / "c", fingerprint, again, tokenizer)
    assert again.reads == 1


def test_failed_build_leaves_no_valid_cache(tmp_path):
    tokenizer = tokenizers.ByteTokenizer()
    fingerprint = cache.fingerprint_of("corpus", "text", tokenizer)

    def broken():
        yield [b"some text"]
        raise KeyboardInterrupt  # a build killed half way

    with pytest.raises(KeyboardInterrupt):
        cache.load_or_build(tmp_path / "c", fingerprint, broken, tokenizer)
    assert not (tmp_path / "c" / "meta.json").exists()
    assert not (tmp_path / "c" / "tokens.bin").exists()
    # A build killed outright (SIGKILL) leaves its temporary files; the next build removes them.
    (tmp_path / "c" / ".tokens.bin.k1ll3d.tmp").write_bytes(b"\0" * 1000)
    source = _Counting(DOCUMENTS)
    assert cache.load_or_build(tmp_path / "c", fingerprint, source, tokenizer).num_documents == 4
    assert source.reads == 1
    assert sorted(path.name for path in (tmp_path / "c").iterdir()) == [
        "document_starts.bin", "meta.json", "tokens.bin"]


def test_truncated_tokens_file_is_not_trusted(tmp_path, capsys):
    tokenizer = tokenizers.ByteTokenizer()
    fingerprint = cache.fingerprint_of("corpus", "text", tokenizer)
    cache.load_or_build(tmp_path / "c", fingerprint, _Counting(DOCUMENTS), tokenizer)
    tokens = tmp_path / "c" / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    source = _Counting(DOCUMENTS)
    cache.load_or_build(tmp_path / "c", fingerprint, source, tokenizer)
    assert source.reads == 1
    # Not "stale": nothing it was built from changed.
    assert (f"[data] token cache {tmp_path / 'c'} is damaged (its files are not the sizes its "
            "meta.json records); rebuilding") in capsys.readouterr().err


class _WideTokenizer:
    """A stand-in with a vocabulary beyond uint16."""

    vocab_size, eod_id, name, fingerprint = 70_000, 69_999, "wide", "wide/1"

    def encode_documents(self, documents):
        return [np.frombuffer(d, np.uint8).astype(np.int64) * 250 for d in documents]


def test_large_vocabulary_uses_uint32(tmp_path):
    assert cache.token_dtype(65_536) == np.uint16 and cache.token_dtype(65_537) == np.uint32
    tokenizer = _WideTokenizer()
    built = cache.load_or_build(tmp_path / "c", cache.fingerprint_of("x", "text", tokenizer),
                                lambda: iter([[b"\xff\x01"]]), tokenizer)
    assert built.tokens.dtype == np.uint32
    assert built.tokens.tolist() == [255 * 250, 250, 69_999]


def _build_in_process(directory: str, log: str) -> list[int]:
    tokenizer = tokenizers.ByteTokenizer()

    def documents():
        with open(log, "a") as f:
            f.write("built\n")
        return iter([[bytes([i % 256]) * 20_000 for i in range(200)]])

    fingerprint = cache.fingerprint_of("shared", "text", tokenizer)
    built = cache.load_or_build(pathlib.Path(directory), fingerprint, documents, tokenizer)
    return [built.num_tokens, int(built.tokens[-2])]


def test_concurrent_processes_build_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    log = tmp_path / "log.txt"
    with context.Pool(3) as pool:
        results = pool.starmap(_build_in_process, [(str(tmp_path / "c"), str(log))] * 3)
    assert results == [[200 * 20_001, 199]] * 3
    assert log.read_text() == "built\n"

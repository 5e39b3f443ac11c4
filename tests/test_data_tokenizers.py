"""Tokenizers: lossless round trips for bytes, a trained SentencePiece model and a model given
by path."""

import pathlib

import numpy as np
import pytest
import sentencepiece

from scaling import config as config_lib
from scaling.data import tokenizers

SAMPLES = [
    "def f(x):\n    return x + 1\n",
    "  leading spaces,\ttabs\tand trailing   \n\n\r\nwindows line ends\r\n",
    "unicode: é ß 漢字 😀 and a lone combining mark \u0301",
    "",
]


def _corpus_documents() -> list[bytes]:
    """Real text: a few standard library modules, about 150 KB."""
    import email, json, textwrap  # noqa: E401  (modules whose source is the corpus)

    paths = [pathlib.Path(m.__file__) for m in (textwrap, json)]
    paths += sorted(pathlib.Path(email.__file__).parent.glob("*.py"))[:8]
    return [p.read_bytes() for p in paths]


@pytest.fixture(scope="module")
def trained_model() -> bytes:
    return tokenizers.train_sentencepiece(iter(_corpus_documents()), vocab_size=600)


def test_byte_round_trip_and_ids():
    tokenizer = tokenizers.ByteTokenizer()
    assert (tokenizer.vocab_size, tokenizer.eod_id) == (257, 256)
    for text in SAMPLES:
        ids = tokenizer.encode(text)
        assert ids == list(text.encode("utf-8"))
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode(ids + [256]) == text  # EOD is not text
    encoded = tokenizer.encode_documents([s.encode() for s in SAMPLES])
    assert [e.tolist() for e in encoded] == [list(s.encode()) for s in SAMPLES]


def test_trained_sentencepiece_round_trip(trained_model):
    tokenizer = tokenizers.SentencePieceTokenizer(trained_model)
    assert tokenizer.vocab_size == 600 and tokenizer.eod_id == 1
    source = _corpus_documents()[0].decode()
    for text in SAMPLES + [source]:
        ids = tokenizer.encode(text)
        assert all(0 <= i < 600 for i in ids)
        assert tokenizer.decode(ids) == text
    # It learned something: real source compresses well below one id per byte.
    assert len(tokenizer.encode(source)) < 0.6 * len(source.encode())
    batch = tokenizer.encode_documents([s.encode() for s in SAMPLES])
    assert [b.tolist() for b in batch] == [tokenizer.encode(s) for s in SAMPLES]


def test_existing_model_by_path(tmp_path, trained_model):
    path = tmp_path / "given.model"
    path.write_bytes(trained_model)
    data = config_lib.default_config().data
    data.tokenizer, data.spm_model = "sentencepiece", str(path)
    tokenizer = tokenizers.tokenizer_for(data)
    reference = sentencepiece.SentencePieceProcessor(model_file=str(path))
    for text in SAMPLES:
        assert tokenizer.encode(text) == reference.encode(text)
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_model_without_eos_gets_an_extra_eod_id(tmp_path):
    model = tmp_path / "noeos"
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(d.decode() for d in _corpus_documents()), model_prefix=str(model),
        vocab_size=400, byte_fallback=True, eos_id=-1, bos_id=-1, minloglevel=2)
    tokenizer = tokenizers.SentencePieceTokenizer((tmp_path / "noeos.model").read_bytes())
    assert tokenizer.eod_id == 400 and tokenizer.vocab_size == 401
    ids = tokenizer.encode("abc")
    assert tokenizer.decode(ids + [tokenizer.eod_id]) == tokenizer.decode(ids)


def test_vocabulary_the_corpus_cannot_fill_names_the_field():
    with pytest.raises(config_lib.ConfigError, match="data.vocab_size"):
        tokenizers.train_sentencepiece(iter([b"tiny corpus\n"] * 20), vocab_size=5000)


def test_trained_model_is_cached_by_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, document in enumerate(_corpus_documents()):
        (corpus / f"{index:02d}.py").write_bytes(document)
    data = config_lib.default_config().data
    data.update(dataset="text_files", files=str(corpus), tokenizer="sentencepiece",
                vocab_size=400, cache_dir=str(tmp_path / "cache"))
    first = tokenizers.tokenizer_for(data)
    models = list((tmp_path / "cache" / "tokenizers").glob("*.model"))
    assert len(models) == 1
    mtime = models[0].stat().st_mtime_ns
    second = tokenizers.tokenizer_for(data)
    assert second.fingerprint == first.fingerprint and models[0].stat().st_mtime_ns == mtime
    assert second.vocab_size == 400
    text = "import os\nprint(os.getcwd())\n"
    assert second.decode(second.encode(text)) == text
    # A different vocabulary is a different model.
    data.vocab_size = 500
    assert tokenizers.tokenizer_for(data).vocab_size == 500
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.model"))) == 2


def test_encode_documents_dtype_is_integer():
    encoded = tokenizers.ByteTokenizer().encode_documents([b"\xff\x00"])
    assert encoded[0].tolist() == [255, 0] and np.issubdtype(encoded[0].dtype, np.integer)


def test_training_reads_all_of_a_long_line():
    # One 12,030-character line (no line break) and a short document: the training pieces hold
    # every character, none longer than the chunk SentencePiece accepts.
    long_line = "".join(f"w{i:04d} " for i in range(2005))
    documents = [long_line.encode(), b"short\nlines\n"]
    chunks = list(tokenizers._training_chunks(iter(documents), byte_budget=10**9))
    assert "".join(chunks) == long_line + "short\nlines\n"
    assert len(long_line) == 12_030
    assert max(len(chunk) for chunk in chunks) <= 2000

"""Tokenizers: bytes (the default, no files) and SentencePiece (trained here, or a model by path).

Every tokenizer has `encode(str) -> list[int]`, `decode(ids) -> str`, `vocab_size` (counting the
end-of-document id) and `eod_id`, plus what the token cache needs: `encode_documents` (UTF-8 bytes
in, int arrays out, no EOD), a short `name` for cache folders and a `fingerprint` that changes
whenever the ids it produces could.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import sys
import time
from typing import Iterable, Sequence

import numpy as np
import sentencepiece

from scaling import files
from scaling.data import sources
from scaling.errors import ConfigError

BYTE_VOCAB_SIZE = 257  # 256 byte values + end-of-document
MIN_SENTENCEPIECE_VOCAB = 259  # 256 byte-fallback pieces + unknown + end-of-document + one more
SENTENCEPIECE_TRAINING_BYTES = 64 * 2**20  # the head of the train split that training reads
_TRAINING_CHUNK_CHARS = 2000  # SentencePiece skips "sentences" longer than max_sentence_length


# What a run's summary.json and checkpoint records name its tokenizer by: the tokenizer's
# `fingerprint`, which its readers check theirs against.
RECORD_FIELD = "tokenizer_fingerprint"

class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; 256 is end-of-document. Lossless for any text."""

    vocab_size = BYTE_VOCAB_SIZE
    eod_id = 256
    name = "byte"
    fingerprint = "byte/1"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; end-of-document ids are dropped, invalid UTF-8 is replaced."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        return ids[ids < 256].astype(np.uint8).tobytes().decode("utf-8", "replace")

    def encode_documents(self, documents: Sequence[bytes]) -> list[np.ndarray]:
        return [np.frombuffer(document, dtype=np.uint8) for document in documents]


class SentencePieceTokenizer:
    """A SentencePiece model. End-of-document is the model's `eos` piece, or, for a model without
    one, a new id right after its pieces."""

    def __init__(self, model_proto: bytes):
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        pieces = self.processor.get_piece_size()
        has_eos = self.processor.eos_id() >= 0
        self.eod_id = self.processor.eos_id() if has_eos else pieces
        self.vocab_size = pieces if has_eos else pieces + 1
        digest = hashlib.sha256(model_proto).hexdigest()
        self.name = f"spm{self.vocab_size}_{digest[:10]}"
        self.fingerprint = f"sentencepiece/{digest}"

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; end-of-document ids are dropped."""
        kept = [int(i) for i in ids if int(i) != self.eod_id]
        return self.processor.decode(kept)

    def encode_documents(self, documents: Sequence[bytes]) -> list[np.ndarray]:
        texts = [document.decode("utf-8", "replace") for document in documents]
        encoded = self.processor.encode(texts, num_threads=os.cpu_count() or 1)
        return [np.asarray(ids, dtype=np.int64) for ids in encoded]


def _training_chunks(documents: Iterable[bytes], byte_budget: int):
    """Documents cut at line breaks into pieces of at most `_TRAINING_CHUNK_CHARS` characters (a
    longer line cut every `_TRAINING_CHUNK_CHARS` characters), until `byte_budget` bytes have been
    read. The pieces of a document join back to its text."""
    read = 0
    for document in documents:
        text = document.decode("utf-8", "replace")
        chunk = ""
        for line in text.splitlines(keepends=True):
            for start in range(0, len(line), _TRAINING_CHUNK_CHARS):
                piece = line[start:start + _TRAINING_CHUNK_CHARS]
                if chunk and len(chunk) + len(piece) > _TRAINING_CHUNK_CHARS:
                    yield chunk
                    chunk = ""
                chunk += piece
        if chunk:
            yield chunk
        read += len(document)
        if read >= byte_budget:
            return


def train_sentencepiece(documents: Iterable[bytes], vocab_size: int,
                        byte_budget: int = SENTENCEPIECE_TRAINING_BYTES) -> bytes:
    """A BPE SentencePiece model (serialized) with `vocab_size` pieces, trained on the first
    `byte_budget` bytes of `documents`.

    Settings keep every text recoverable: identity normalization, whitespace kept as is (code
    indentation matters), byte fallback for unseen characters. Piece 0 is unknown, 1 is
    end-of-document. Raises ConfigError on `data.vocab_size` when the corpus cannot support it."""
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=_training_chunks(documents, byte_budget), model_writer=model,
            vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
            character_coverage=0.9995, max_sentence_length=4 * _TRAINING_CHUNK_CHARS + 16,
            unk_id=0, eos_id=1, bos_id=-1, pad_id=-1,
            num_threads=os.cpu_count() or 1, minloglevel=2)
    except RuntimeError as error:
        reason = str(error).split("]", 1)[-1].strip()
        raise ConfigError("data.vocab_size", vocab_size,
                          f"a size this corpus can train ({reason})") from error
    return model.getvalue()


def _sentencepiece_path(data_cfg, train: sources.DocumentSplit) -> pathlib.Path:
    """Where the SentencePiece model of `data.vocab_size` pieces trained on `train` is cached."""
    key = f"{train.fingerprint}|{data_cfg.vocab_size}|{train.feature}|bpe/2"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    dataset = train.dataset.replace("/", "_")
    return (sources.cache_root(data_cfg) / "tokenizers"
            / f"{dataset}-spm{data_cfg.vocab_size}-{digest}.model")


def trained_sentencepiece(data_cfg) -> SentencePieceTokenizer:
    """The SentencePiece model trained on `data.train_split` with `data.vocab_size` pieces, from
    the cache if one was trained on the same corpus, else trained now and cached."""
    train = sources.open_split(data_cfg, data_cfg.train_split)
    path = _sentencepiece_path(data_cfg, train)
    if path.exists():  # written whole (atomically) or not at all: read without the build lock
        return SentencePieceTokenizer(path.read_bytes())
    try:
        with files.file_lock(path.with_suffix(".lock")):
            if not path.exists():
                started = time.perf_counter()
                print(f"[data] training SentencePiece ({data_cfg.vocab_size} pieces) on "
                      f"{train.dataset}:{train.split}", file=sys.stderr)
                documents = (d for batch in train.document_batches() for d in batch)
                files.write_bytes_atomic(path, train_sentencepiece(documents,
                                                                   data_cfg.vocab_size))
                print(f"[data] trained SentencePiece in {time.perf_counter() - started:.1f} s: "
                      f"{path}", file=sys.stderr)
    except OSError as error:
        raise sources.unwritable_cache(data_cfg, error, f"the SentencePiece model of "
                                                        f"{train.dataset}:{train.split} is "
                                                        f"trained in {path.parent}") from None
    return SentencePieceTokenizer(path.read_bytes())


def static_vocab_size(data_cfg) -> int:
    """The vocabulary `config.data` gives, known without reading the corpus (for planning and
    counting): bytes, a SentencePiece model file's, or the size a trained model will have (its
    pieces, end-of-document among them)."""
    if data_cfg.tokenizer == "byte":
        return BYTE_VOCAB_SIZE
    # A vocabulary given with a model file is the model's (validation checks it): the file need
    # not be read, nor be on this machine.
    if data_cfg.spm_model and not data_cfg.vocab_size:
        return tokenizer_for(data_cfg).vocab_size
    return data_cfg.vocab_size


def tokenizer_for(data_cfg):
    """The tokenizer `config.data` asks for: bytes, an existing SentencePiece model
    (`data.spm_model`), or one trained on the training split (`data.vocab_size` pieces)."""
    if data_cfg.tokenizer == "byte":
        return ByteTokenizer()
    if data_cfg.spm_model:
        return SentencePieceTokenizer(pathlib.Path(data_cfg.spm_model).expanduser().read_bytes())
    return trained_sentencepiece(data_cfg)


def cached_sentencepiece(data_cfg, fingerprint: str) -> SentencePieceTokenizer | None:
    """The SentencePiece model trained for `data_cfg` earlier whose `fingerprint` this is, from
    the cache (whatever corpus it was trained on: its files may have changed since), or None."""
    folder = sources.cache_root(data_cfg) / "tokenizers"
    for path in sorted(folder.glob("*.model")) if folder.is_dir() else ():
        model = path.read_bytes()
        if f"sentencepiece/{hashlib.sha256(model).hexdigest()}" == fingerprint:
            return SentencePieceTokenizer(model)
    return None


def existing_tokenizer(data_cfg):
    """`tokenizer_for`'s tokenizer where it needs no training: None for a SentencePiece model
    not yet trained on the (prepared) training split."""
    if data_cfg.tokenizer == "byte" or data_cfg.spm_model:
        return tokenizer_for(data_cfg)
    path = _sentencepiece_path(data_cfg, sources.open_split(data_cfg, data_cfg.train_split))
    return SentencePieceTokenizer(path.read_bytes()) if path.exists() else None

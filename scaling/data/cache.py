"""The token cache: a split tokenized once into memory-mapped files, reused while it matches.

One folder per (dataset, split, tokenizer) under `<cache root>/tokens/`:
- `tokens.bin`: the packed stream (`packing.pack_documents`), raw uint16 (vocab <= 65,536) or
  uint32, read through `np.memmap` so host memory does not grow with the corpus;
- `document_starts.bin`: raw int64, the stream offset of each document, then the stream length;
- `meta.json`: the fingerprint (source, split, feature, tokenizer, cache version) and counts.
`meta.json` is written last and removed first when rebuilding, so only a complete build has one; a
folder whose fingerprint differs (the corpus, tokenizer or this format changed) is rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Callable, Iterable

import numpy as np

from scaling import files
from scaling.data import packing

CACHE_VERSION = 1
_PROGRESS_SECONDS = 2.0


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


@dataclasses.dataclass(frozen=True)
class TokenCache:
    """A built cache, memory-mapped read-only."""

    directory: pathlib.Path
    tokens: np.ndarray  # 1-D memmap, the packed stream
    document_starts: np.ndarray  # 1-D int64 memmap, [num_documents + 1]
    meta: dict

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_documents(self) -> int:
        return int(self.document_starts.shape[0]) - 1


def fingerprint_of(source_fingerprint: str, feature: str, tokenizer) -> dict:
    """What a cache was built from; a cache is reused only if this matches exactly."""
    return {"cache_version": CACHE_VERSION, "source": source_fingerprint, "feature": feature,
            "tokenizer": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
            "eod_id": tokenizer.eod_id}


def _load(directory: pathlib.Path, fingerprint: dict) -> TokenCache | None:
    """The cache in `directory` if complete and built from `fingerprint`, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    dtype = np.dtype(meta["dtype"])
    tokens_path, starts_path = directory / "tokens.bin", directory / "document_starts.bin"
    sizes_match = (tokens_path.exists() and starts_path.exists()
                   and tokens_path.stat().st_size == meta["num_tokens"] * dtype.itemsize
                   and starts_path.stat().st_size == (meta["num_documents"] + 1) * 8)
    if not sizes_match:
        return None
    # np.memmap cannot map an empty file; an empty stream is a zero-length array.
    tokens = (np.memmap(tokens_path, dtype=dtype, mode="r") if meta["num_tokens"]
              else np.zeros(0, dtype))
    starts = np.memmap(starts_path, dtype=np.int64, mode="r")
    return TokenCache(directory=directory, tokens=tokens, document_starts=starts, meta=meta)


def _unusable(directory: pathlib.Path, fingerprint: dict) -> str:
    """Why a cache with a meta.json did not load: built from other data or settings, or its
    files cut short or damaged."""
    try:
        recorded = json.loads((directory / "meta.json").read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return "is damaged (its meta.json cannot be read)"
    if recorded != fingerprint:
        return "is stale (built from other data or settings)"
    return "is damaged (its files are not the sizes its meta.json records)"


def _build(directory: pathlib.Path, fingerprint: dict, document_batches: Iterable[list[bytes]],
           tokenizer, label: str) -> None:
    """Tokenize every document into `directory`, printing progress to stderr. The caller holds
    the exclusive lock: a temporary file there is a killed build's, removed first."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").unlink(missing_ok=True)  # invalid from here until the build ends
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    started = last_report = time.perf_counter()
    num_documents = num_tokens = num_bytes = 0

    def report(final: bool = False) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        verb = "tokenized" if final else "tokenizing"
        print(f"[data] {verb} {label}: {num_documents:,} documents, {num_bytes / 1e6:.1f} MB, "
              f"{num_tokens:,} tokens, {num_bytes / 1e6 / elapsed:.1f} MB/s"
              + (f", {elapsed:.1f} s" if final else ""), file=sys.stderr)

    with files.atomic_output(directory / "tokens.bin") as tokens_file, \
            files.atomic_output(directory / "document_starts.bin") as starts_file:
        for batch in document_batches:
            encoded = tokenizer.encode_documents(batch)
            lengths = np.array([len(ids) + 1 for ids in encoded], dtype=np.int64)
            starts_file.write((num_tokens + np.cumsum(lengths) - lengths).tobytes())
            tokens_file.write(packing.pack_documents(encoded, tokenizer.eod_id, dtype).tobytes())
            num_documents += len(batch)
            num_tokens += int(lengths.sum())
            num_bytes += sum(len(document) for document in batch)
            if time.perf_counter() - last_report > _PROGRESS_SECONDS:
                report()
                last_report = time.perf_counter()
        starts_file.write(np.array([num_tokens], dtype=np.int64).tobytes())
    report(final=True)
    meta = {"fingerprint": fingerprint, "dtype": dtype.name, "num_tokens": num_tokens,
            "num_documents": num_documents, "text_bytes": num_bytes,
            "build_seconds": round(time.perf_counter() - started, 3)}
    files.write_bytes_atomic(directory / "meta.json", json.dumps(meta, indent=1).encode())


def _lock_path(directory: pathlib.Path) -> pathlib.Path:
    return directory.parent / f".{directory.name}.lock"


def load(directory: pathlib.Path, fingerprint: dict) -> TokenCache | None:
    """The cache in `directory` if complete and built from `fingerprint`, else None; builds
    nothing."""
    if not (directory / "meta.json").exists():
        return None
    with files.file_lock(_lock_path(directory), shared=True):
        return _load(directory, fingerprint)


def load_or_build(directory: pathlib.Path, fingerprint: dict,
                  document_batches: Callable[[], Iterable[list[bytes]]], tokenizer,
                  label: str = "") -> TokenCache:
    """The cache in `directory` for `fingerprint`, built first if missing or stale.

    Safe with concurrent processes: one builds under an exclusive lock while the others wait and
    then reuse its result. `document_batches()` is called only when building."""
    lock = _lock_path(directory)
    with files.file_lock(lock, shared=True):
        cache = _load(directory, fingerprint)
    if cache is not None:
        return cache
    try:
        with files.file_lock(lock):
            return _build_locked(directory, fingerprint, document_batches, tokenizer, label)
    except OSError as error:
        if error.errno not in files.UNWRITABLE or not (directory / "meta.json").exists():
            raise
        # A read-only copy of a cache that cannot be read as it is: why it must be rebuilt.
        raise OSError(error.errno, f"{error.strerror}, and the cache there "
                                   f"{_unusable(directory, fingerprint)}", error.filename) from None


def _build_locked(directory: pathlib.Path, fingerprint: dict,
                  document_batches: Callable[[], Iterable[list[bytes]]], tokenizer,
                  label: str) -> TokenCache:
    """`load_or_build` under the exclusive lock: another process may have built it meanwhile."""
    cache = _load(directory, fingerprint)
    if cache is None:
        if directory.exists() and (directory / "meta.json").exists():
            print(f"[data] token cache {directory} {_unusable(directory, fingerprint)}; "
                  "rebuilding", file=sys.stderr)
        _build(directory, fingerprint, document_batches(), tokenizer, label or directory.name)
        cache = _load(directory, fingerprint)
    if cache is None:
        raise RuntimeError(f"token cache {directory} did not load after building")
    return cache


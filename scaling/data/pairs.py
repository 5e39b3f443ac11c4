"""Source/target pairs for `seq2seq`: from tab-separated files (`text_pairs`) or a TFDS translation
builder (`data.source_feature`, `data.target_feature`), batched as a pure function of (seed, step).

    text_pairs     `data.files`: files of lines `source<TAB>target`. A line's split is a pure
                   function of its source (`file_splits.split_of`), so it never moves between
                   train and validation when lines are added, and the translations of one source
                   (Tatoeba lists several) are never split between them.
    TFDS           any builder whose examples carry both features as text (`wmt14_translate/de-en`
                   with 'de' → 'en', `ted_hrlr_translate/pt_to_en` with 'pt' → 'en', ...),
                   prepared and read like the corpora (`scaling.data.sources`).

A split's pairs are tokenized once into padded arrays. Global row r of the train stream reads pair
`permute(r mod n)` of epoch r // n; a batch holds `encoder_inputs` (the source, cut to
`data.seq_len`, then PAD), `targets` (the target cut to `target_len − 1` tokens, then EOS, then
PAD), `inputs` (BOS + targets[:-1]) and `loss_mask` (1 where the target is not PAD).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Iterator

import numpy as np

from scaling.data import file_splits, objectives, ordering, sources, tokenizers
from scaling.data.loader import Loader, corpus_digest, prefetch_depth
from scaling.errors import ConfigError

DATASET = "text_pairs"


def pair_files(files: str) -> list[pathlib.Path]:
    """The files the comma-separated `files` name, in order, each once (a file two entries name,
    `a.tsv,*.tsv`, is read once)."""
    from scaling.data import text_files

    paths, seen = [], set()
    for entry in text_files.parse_file_list(files):
        for path in text_files.entry_files(entry):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    return paths


def check_pair_files(files: str) -> None:
    """Raise ConfigError on `data.files` naming the first of its files that cannot be read (its
    first 8 KiB are read, as `text_files` probes a file)."""
    from scaling.data import text_files

    for path in pair_files(files):
        try:
            text_files.read_bytes(path, text_files.BINARY_PROBE_BYTES)
        except OSError as error:
            raise text_files.cannot_read(files, error) from None


def read_text_pairs(files: str, split: str) -> list[tuple[bytes, bytes]]:
    """The (source, target) pairs of `split` (by a hash of the source) in the tab-separated
    `files`, in file order; blank lines are skipped. Raises ConfigError on `data.files` naming a
    file that cannot be read, or the first line that is not one tab between a non-empty source and
    a non-empty target."""
    from scaling.data import text_files

    pairs = []
    for path in pair_files(files):
        try:
            content = text_files.read_bytes(path)
        except OSError as error:
            raise text_files.cannot_read(files, error) from None
        for number, line in enumerate(content.splitlines()):
            if not line.strip():
                continue
            fields = line.split(b"\t")
            where = f"{path} line {number + 1}"
            if len(fields) != 2:
                problem = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
                raise ConfigError("data.files", files,
                                  f"lines 'source<TAB>target' ({where} has {problem})")
            source, target = fields
            for name, text in (("source", source), ("target", target)):
                if not text.strip():
                    raise ConfigError("data.files", files, f"lines 'source<TAB>target' with text "
                                                           f"on both sides ({where} has an empty "
                                                           f"{name})")
            if file_splits.split_of(source.decode("utf-8", "replace")) == split:
                pairs.append((source, target))
    return pairs


def read_tfds_pairs(data_cfg, split: str) -> list[tuple[bytes, bytes]]:
    """The (source, target) pairs of a TFDS split, in data-source order."""
    documents = sources.open_split(data_cfg, split)
    source = documents.data_source
    pairs = []
    for start in range(0, len(source), 256):
        for example in source.__getitems__(list(range(start, min(start + 256, len(source))))):
            pairs.append((sources._as_bytes(example[data_cfg.source_feature]),
                          sources._as_bytes(example[data_cfg.target_feature])))
    return pairs


def read_pairs(data_cfg, split: str) -> list[tuple[bytes, bytes]]:
    if data_cfg.dataset == DATASET:
        return read_text_pairs(data_cfg.files, split)
    return read_tfds_pairs(data_cfg, split)


def encode_pairs(pairs, tokenizer, objective: objectives.Objective) -> dict[str, np.ndarray]:
    """int32 arrays over the pairs: `encoder_inputs` [n, S], `targets` [n, T] (see the module
    docstring)."""
    special = objective.special
    shapes = objective.shapes
    encoded_sources = tokenizer.encode_documents([source for source, _ in pairs])
    encoded_targets = tokenizer.encode_documents([target for _, target in pairs])
    encoder = np.full((len(pairs), shapes.encoder), special.pad, np.int32)
    targets = np.full((len(pairs), shapes.decoder), special.pad, np.int32)
    for row, (source, target) in enumerate(zip(encoded_sources, encoded_targets)):
        source = source[:shapes.encoder]
        target = target[:shapes.decoder - 1]
        encoder[row, :len(source)] = source
        targets[row, :len(target)] = target
        targets[row, len(target)] = objective.eod_id
    return {"encoder_inputs": encoder, "targets": targets}


def pair_batch(encoded: dict[str, np.ndarray], indices: np.ndarray,
               special: objectives.SpecialTokens) -> dict[str, np.ndarray]:
    targets = encoded["targets"][indices]
    inputs = np.concatenate([np.full((len(indices), 1), special.bos, np.int32), targets[:, :-1]],
                            axis=1)
    return {"encoder_inputs": encoded["encoder_inputs"][indices], "inputs": inputs,
            "targets": targets, "loss_mask": (targets != special.pad).astype(np.int32)}


class PairLoader(Loader):
    """A `Loader` over pairs: the same batches-by-step contract, prefetch and eval batches."""

    def __init__(self, train: dict, evaluation: dict, tokenizer, objective, *, batch_size: int,
                 seed: int, process_index: int, process_count: int, prefetch: int):
        self.tokenizer = tokenizer
        self.vocab_size = int(tokenizer.vocab_size)
        self.eod_id = int(tokenizer.eod_id)
        self.objective = objective
        self.seq_len, self.batch_size, self.seed = objective.seq_len, batch_size, seed
        self.prefetch = prefetch
        self.rows = range(process_index * batch_size // process_count,
                          (process_index + 1) * batch_size // process_count)
        self._train, self._eval = train, evaluation
        self.train_pairs = len(train["targets"])
        self.eval_windows = len(evaluation["targets"])  # held-out pairs (`eval_batch_count`)
        # Padded positions, as `tokens` counts a step's: pairs × (seq_len + target_len).
        self.tokens_in_split = self.train_pairs * objective.shapes.corpus
        self._eval_batches = {}
        import threading

        self._stop = threading.Event()
        self._threads = []

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rows = step * self.batch_size + np.arange(self.rows.start, self.rows.stop)
        epochs, positions = rows // self.train_pairs, rows % self.train_pairs
        indices = np.empty_like(rows)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            indices[here] = ordering.permute(positions[here], self.train_pairs,
                                             ordering.derive_key(self.seed, int(epoch), 3))
        return pair_batch(self._train, indices, self.objective.special)

    @functools.cached_property
    def corpus(self) -> str:
        return corpus_digest([self._train["targets"], self._train["encoder_inputs"]], "pairs")

    @functools.cached_property
    def held_out(self) -> str:
        return corpus_digest([self._eval["targets"], self._eval["encoder_inputs"]], "pairs")

    def iter_eval_batches(self, num_batches: int) -> Iterator[dict[str, np.ndarray]]:
        """`eval_batch_count(num_batches)` batches of held-out pairs, in order (repeating some
        when the split has fewer than one batch), made one at a time (`Loader.eval_batches`
        keeps them)."""
        for index in range(self.eval_batch_count(num_batches)):
            rows = index * self.batch_size + np.arange(self.rows.start, self.rows.stop)
            yield pair_batch(self._eval, rows % self.eval_windows, self.objective.special)


def make_pair_loader(data_cfg, train_cfg, batch_size: int, seed: int, process_index: int,
                     process_count: int) -> PairLoader:
    tokenizer = tokenizers.tokenizer_for(data_cfg)
    objective = objectives.for_config(data_cfg, train_cfg, int(tokenizer.vocab_size),
                                      int(tokenizer.eod_id))
    encoded = {}
    for field, split in (("data.train_split", data_cfg.train_split),
                         ("data.eval_split", data_cfg.eval_split)):
        pairs = read_pairs(data_cfg, split)
        if not pairs and data_cfg.dataset == DATASET:  # the files' fault, not the split name's
            raise ConfigError("data.files", data_cfg.files,
                              f"tab-separated files holding at least one pair of each split "
                              f"(they hold none for {field}={split!r}; a line's split is a hash "
                              f"of its source)")
        if not pairs:
            raise ConfigError(field, split, f"a split of {data_cfg.dataset!r} with at least one "
                                            "pair (this one is empty)")
        encoded[field] = encode_pairs(pairs, tokenizer, objective)
    return PairLoader(encoded["data.train_split"], encoded["data.eval_split"], tokenizer,
                      objective, batch_size=batch_size, seed=seed, process_index=process_index,
                      process_count=process_count,
                      prefetch=prefetch_depth(data_cfg, train_cfg))

"""The loader the training loop uses: host-sliced batches as a pure function of (seed, step).

`make_loader` prepares the dataset, the tokenizer and the token caches of both splits (each built
once and then memory-mapped), then `Loader.batch(step)` reads this host's rows of the global batch
at `step`. Nothing depends on what was read before, so resuming needs only the step and every host
computes its own slice without talking to the others.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import threading
from typing import Iterator

import numpy as np

from scaling.data import cache, objectives, ordering, packing, sources, tokenizers
from scaling.errors import ConfigError


def host_rows(batch_size: int, process_index: int, process_count: int) -> range:
    """The rows of a global batch that host `process_index` of `process_count` builds:
    [p*B/P, (p+1)*B/P)."""
    per_host = batch_size // process_count
    return range(process_index * per_host, (process_index + 1) * per_host)


def whole_split_batches(eval_windows: int, batch_size: int) -> int:
    """The full batches of `batch_size` rows that `eval_windows` held-out windows fill (at least
    one: a split of fewer windows repeats some)."""
    return max(1, eval_windows // batch_size)


# How many values of a corpus `corpus_digest` reads: a fraction of a second at any size.
DIGEST_SAMPLES = 1 << 16


def corpus_digest(arrays: list[np.ndarray], unit: str) -> str:
    """What the batches are made from, in a short string: the first array's length (in `unit`s),
    and a hash of each array's shape and of up to `DIGEST_SAMPLES` of its values, evenly spaced.
    An edit of the corpus changes its length, or shifts the packed stream past it, or (a change
    in place) almost always one of the values read."""
    digest = hashlib.sha1()
    for array in arrays:
        flat = array.reshape(-1)
        step = max(1, flat.size // DIGEST_SAMPLES)
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(flat[::step][:DIGEST_SAMPLES]).tobytes())
    return f"{len(arrays[0]):,} {unit}, {digest.hexdigest()[:12]}"


class Loader:
    """Batches of one training run. State that lives across calls: the memory-mapped caches and
    the prefetch threads; `close()` stops the threads."""

    def __init__(self, train: cache.TokenCache, evaluation: cache.TokenCache, tokenizer, *,
                 seq_len: int, batch_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1, prefetch: int = 2,
                 objective: objectives.Objective | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = int(tokenizer.vocab_size)
        self.eod_id = int(tokenizer.eod_id)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.objective = objective or objectives.Objective(
            "causal_lm", seq_len, self.vocab_size, self.eod_id)
        self.prefetch = prefetch
        self.rows = host_rows(batch_size, process_index, process_count)
        self._train, self._eval = train, evaluation
        self.tokens_in_split = train.num_tokens
        self.train_windows = packing.num_windows(train.num_tokens, seq_len)
        self._train_slack = train.num_tokens - 1 - self.train_windows * seq_len
        self.eval_windows = packing.num_windows(evaluation.num_tokens, seq_len)
        self._eval_batches: dict[int, list[dict[str, np.ndarray]]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @functools.cached_property
    def corpus(self) -> str:
        """The training split's identity (`corpus_digest`), which a checkpoint records: a run
        resumed on an edited corpus would match neither."""
        return corpus_digest([self._train.tokens], "tokens")

    @functools.cached_property
    def held_out(self) -> str:
        """The held-out split's identity (`corpus_digest`), which a checkpoint records: a run
        resumed on another held-out split (an edited validation file) would log losses of two."""
        return corpus_digest([self._eval.tokens], "tokens")

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's rows of the global batch at `step`, np.int32 [batch_size // process_count,
        length]: for causal_lm `inputs`, `targets` (inputs shifted by one) and `segment_ids`;
        for the other objectives what `objectives.Objective.apply` makes of them."""
        global_rows = step * self.batch_size + np.arange(self.rows.start, self.rows.stop)
        starts = ordering.window_starts(global_rows, self.train_windows, self._train_slack,
                                        self.seq_len, self.seed)
        packed = packing.make_batch(packing.read_windows(self._train.tokens, starts, self.seq_len),
                                    self.eod_id)
        return self.objective.apply(packed, self.objective.row_keys(global_rows, self.seed,
                                                                    held_out=False))

    def iterate(self, start_step: int = 0) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(step, batch) for step = start_step, start_step + 1, ... without end, built up to
        `prefetch` steps ahead on a background thread (in the caller's thread if prefetch is 0)."""
        if self.prefetch == 0:
            step = start_step
            while not self._stop.is_set():
                yield step, self.batch(step)
                step += 1
            return
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()  # this iterator's own stop, set when the caller drops it

        def produce() -> None:
            step = start_step
            while not (stop.is_set() or self._stop.is_set()):
                try:
                    item = (step, self.batch(step))
                except BaseException as error:  # hand the failure to the consumer
                    item = error
                while not (stop.is_set() or self._stop.is_set()):
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if isinstance(item, BaseException):
                    return
                step += 1

        thread = threading.Thread(target=produce, name="scaling-data-prefetch", daemon=True)
        self._threads.append(thread)
        thread.start()
        try:
            while True:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def eval_batch_count(self, num_batches: int) -> int:
        """`num_batches`, but at most the full batches the held-out windows fill (-1: all of
        them; the windows left over are not read), so that no window is scored twice unless the
        split has fewer windows than one batch."""
        whole = whole_split_batches(self.eval_windows, self.batch_size)
        return whole if num_batches == -1 else min(num_batches, whole)

    def eval_rows(self, num_batches: int) -> int:
        """How many distinct held-out windows `eval_batches(num_batches)` read: fewer than its
        rows when the split has fewer windows than one batch."""
        return min(self.eval_batch_count(num_batches) * self.batch_size, self.eval_windows)

    def eval_cut(self, field: str, num_batches: int) -> str | None:
        """What a request of `num_batches` held-out batches (`field`) is cut to, when the split
        holds fewer; None when it is read as asked."""
        count = self.eval_batch_count(num_batches)
        if num_batches == -1 or count == num_batches:
            return None
        return (f"{field}={num_batches} asks for {num_batches * self.batch_size:,} held-out "
                f"windows; the split has {self.eval_windows:,}, so "
                f"{count} batch{'es are' if count > 1 else ' is'} read"
                + ("" if self.eval_windows >= self.batch_size else
                   f", {self.eval_windows:,} distinct windows"))

    def eval_batches(self, num_batches: int) -> list[dict[str, np.ndarray]]:
        """`eval_batch_count(num_batches)` batches from the held-out split, the same on every call
        and for every seed: windows evenly spaced over the split (repeating only if it has fewer
        windows than one batch). Each batch is this host's slice of the global eval batch."""
        num_batches = self.eval_batch_count(num_batches)
        if num_batches not in self._eval_batches:
            self._eval_batches[num_batches] = list(self.iter_eval_batches(num_batches))
        return self._eval_batches[num_batches]

    def iter_eval_batches(self, num_batches: int) -> Iterator[dict[str, np.ndarray]]:
        """The batches of `eval_batches(num_batches)`, made one at a time as they are read and
        not kept: for reading a split once (`scaling-eval --batches N`)."""
        for packed, rows in self._held_out_windows(num_batches):
            yield self.objective.apply(packed,
                                       self.objective.row_keys(rows, self.seed, held_out=True))

    def continuation_batches(self, num_batches: int, k: int) -> Iterator[dict[str, np.ndarray]]:
        """The windows of `eval_batches(num_batches)` as the task "their last `k` tokens given
        the rest" (`objectives.Objective.continuation`), made one at a time."""
        for packed, _ in self._held_out_windows(num_batches):
            yield self.objective.continuation(packed, k)

    def _held_out_windows(self, num_batches: int):
        """(packed batch, global row indices) of this host's held-out windows, batch by batch."""
        num_batches = self.eval_batch_count(num_batches)
        total = num_batches * self.batch_size
        for index in range(num_batches):
            rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size, dtype=np.int64)
            rows = (rows * self.eval_windows // total if self.eval_windows >= total
                    else rows % self.eval_windows)
            starts = rows[self.rows.start:self.rows.stop] * self.seq_len
            packed = packing.make_batch(packing.read_windows(self._eval.tokens, starts,
                                                             self.seq_len), self.eod_id)
            yield packed, index * self.batch_size + np.arange(self.rows.start, self.rows.stop)

    def close(self) -> None:
        """Stop the prefetch threads and wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def token_cache(data_cfg, split: str, tokenizer, build: bool = True) -> cache.TokenCache | None:
    """The token cache of `split` for `tokenizer`, built if missing or stale (without `build`:
    None then)."""
    documents = sources.open_split(data_cfg, split)
    fingerprint = cache.fingerprint_of(documents.fingerprint, documents.feature, tokenizer)
    split_name = split.replace("[", "_").replace("]", "").replace(":", "-").replace("%", "pct")
    dataset = documents.dataset.replace("/", "_")
    folder = (sources.cache_root(data_cfg) / "tokens"
              / f"{dataset}-{documents.feature}-{split_name}-{tokenizer.name}")
    if not build:
        return cache.load(folder, fingerprint)
    label = f"{documents.dataset}:{split}"
    try:
        return cache.load_or_build(folder, fingerprint, documents.document_batches, tokenizer,
                                   label)
    except OSError as error:
        raise sources.unwritable_cache(data_cfg, error, f"the token cache of {label} is built "
                                                        f"in {folder}") from None


def prefetch_depth(data_cfg, train_cfg=None) -> int:
    """Batches prepared ahead: `data.prefetch` calls' worth, of `train.steps_per_call` each (a
    call of K steps waits for all K of its batches)."""
    return data_cfg.prefetch * (train_cfg.steps_per_call if train_cfg is not None else 1)


def make_loader(data_cfg, batch_size: int, seed: int, process_index: int = 0,
                process_count: int = 1, train_cfg=None) -> Loader:
    """A Loader for `config.data` with a global batch of `batch_size` sequences, of which this
    host (`process_index` of `process_count`) builds its equal share, in the form
    `train_cfg.objective` asks for (causal_lm without a `train_cfg`).

    Raises ConfigError when the batch does not split evenly over hosts, a split is empty or holds
    only empty documents, or a split is too short for one sequence of `data.seq_len` tokens."""
    if batch_size <= 0 or batch_size % process_count:
        raise ConfigError("train.batch_size", batch_size,
                          f"a positive multiple of the process count {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    tokenizer = tokenizers.tokenizer_for(data_cfg)
    objective = (objectives.for_config(data_cfg, train_cfg, int(tokenizer.vocab_size),
                                       int(tokenizer.eod_id)) if train_cfg is not None else None)
    caches = {}
    for field, split in (("data.train_split", data_cfg.train_split),
                         ("data.eval_split", data_cfg.eval_split)):
        caches[field] = built = token_cache(data_cfg, split, tokenizer)
        if built.num_documents == 0:
            raise ConfigError(field, split, f"a split of {data_cfg.dataset!r} with at least "
                              "one document (this one is empty)")
        if built.num_tokens == built.num_documents:  # every document is empty: EODs only
            where = (("data.files", data_cfg.files) if data_cfg.dataset == "text_files"
                     else (field, split))
            raise ConfigError(*where, f"text in split {split!r} of {data_cfg.dataset!r} (its "
                                      f"{built.num_documents} documents are all empty)")
    # Both splits' limit in one line: the shorter split decides it.
    split, built = min(((split, caches[field]) for field, split in (
        ("data.train_split", data_cfg.train_split), ("data.eval_split", data_cfg.eval_split))),
        key=lambda item: item[1].num_tokens)
    if built.num_tokens - 1 < data_cfg.seq_len:
        raise ConfigError("data.seq_len", data_cfg.seq_len,
                          f"at most {built.num_tokens - 1}: split {split!r} of "
                          f"{data_cfg.dataset!r} holds {built.num_tokens} tokens with EOD, and a "
                          "sequence needs seq_len + 1")
    return Loader(caches["data.train_split"], caches["data.eval_split"], tokenizer,
                  seq_len=data_cfg.seq_len, batch_size=batch_size, seed=seed,
                  process_index=process_index, process_count=process_count,
                  prefetch=prefetch_depth(data_cfg, train_cfg), objective=objective)

"""The data pipeline: corpus (TFDS builder) → tokenizer → token cache (memmap) → host batches.

The training loop needs only `make_loader`, `tokenizer_for` and (through `scaling.config`)
`validate_data_config`; a sweep's plan `held_out_batches`; a dry run `check_files`; the modules
say how each stage works.
"""

from scaling.data import loader as _loader
from scaling.data import packing as _packing
from scaling.data import pairs as _pairs
from scaling.data import sources as _sources
from scaling.data import text_files as _text_files
from scaling.data import tokenizers as _tokenizers
from scaling.data.loader import Loader
from scaling.data.tokenizers import static_vocab_size, tokenizer_for
from scaling.data.validation import validate_data_config

__all__ = ["Loader", "check_files", "held_out_batches", "make_loader", "static_vocab_size",
           "tokenizer_for", "validate_data_config"]

# Corpora prepared and tokenized here in a second or two (about 1 MB of held-out text), so a plan
# may prepare them to count their held-out split.
QUICK_TO_PREPARE = ("python_stdlib",)


def make_loader(data_cfg, batch_size: int, seed: int, process_index: int = 0,
                process_count: int = 1, train_cfg=None) -> Loader:
    """The run's Loader: packed corpus rows in the form `train_cfg.objective` asks for
    (`scaling.data.loader`), or source/target pairs for seq2seq (`scaling.data.pairs`)."""
    if train_cfg is not None and train_cfg.objective == "seq2seq":
        return _pairs.make_pair_loader(data_cfg, train_cfg, batch_size, seed, process_index,
                                       process_count)
    return _loader.make_loader(data_cfg, batch_size, seed, process_index, process_count,
                               train_cfg=train_cfg)


def check_files(data_cfg) -> None:
    """The checks of `data.files` a run makes as it opens them, reading at most the first 8 KiB of
    each file: for `text_files` (`text_files.text_files_config`) files and folders that can be
    read, no binary file named directly and at least one text file; for `text_pairs` files that
    can be read. Raises ConfigError on `data.files`; other datasets have no files to check."""
    if data_cfg.dataset == "text_files":
        _text_files.text_files_config(data_cfg.files)
    elif data_cfg.dataset == _pairs.DATASET:
        _pairs.check_pair_files(data_cfg.files)


def held_out_batches(data_cfg, train_cfg) -> int | None:
    """The batches of `train.batch_size` rows an evaluation of the whole held-out split
    (`train.final_eval_batches=-1`) reads, as the run's loader counts them, without training or
    compiling anything: from the split's token cache, built first only for a corpus quick to
    prepare (`QUICK_TO_PREPARE`). None where counting would need a download, a dataset prepared
    or tokenized, or a tokenizer trained first, and for seq2seq pairs (held-out pairs, not
    windows of a token cache)."""
    if train_cfg.objective == "seq2seq":
        return None
    quick = data_cfg.dataset in QUICK_TO_PREPARE
    if not quick and not _sources.make_builder(data_cfg).is_prepared():
        return None
    tokenizer = _tokenizers.existing_tokenizer(data_cfg)
    held_out = (_loader.token_cache(data_cfg, data_cfg.eval_split, tokenizer, build=quick)
                if tokenizer is not None else None)
    if held_out is None:
        return None
    return _loader.whole_split_batches(_packing.num_windows(held_out.num_tokens, data_cfg.seq_len),
                                       train_cfg.batch_size)

"""The data pipeline: corpus (TFDS builder) → tokenizer → token cache (memmap) → host batches.

The training loop needs only `make_loader`, `tokenizer_for` and (through `scaling.config`)
`validate_data_config`; the modules say how each stage works.
"""

from scaling.data import loader as _loader
from scaling.data import pairs as _pairs
from scaling.data.loader import Loader
from scaling.data.tokenizers import static_vocab_size, tokenizer_for
from scaling.data.validation import validate_data_config

__all__ = ["Loader", "make_loader", "static_vocab_size", "tokenizer_for", "validate_data_config"]


def make_loader(data_cfg, batch_size: int, seed: int, process_index: int = 0,
                process_count: int = 1, train_cfg=None) -> Loader:
    """The run's Loader: packed corpus rows in the form `train_cfg.objective` asks for
    (`scaling.data.loader`), or source/target pairs for seq2seq (`scaling.data.pairs`)."""
    if train_cfg is not None and train_cfg.objective == "seq2seq":
        return _pairs.make_pair_loader(data_cfg, train_cfg, batch_size, seed, process_index,
                                       process_count)
    return _loader.make_loader(data_cfg, batch_size, seed, process_index, process_count,
                               train_cfg=train_cfg)

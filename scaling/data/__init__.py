"""The data pipeline: corpus (TFDS builder) → tokenizer → token cache (memmap) → host batches.

The training loop needs only `make_loader`, `tokenizer_for` and (through `scaling.config`)
`validate_data_config`; the modules say how each stage works.
"""

from scaling.data.loader import Loader, make_loader
from scaling.data.tokenizers import static_vocab_size, tokenizer_for
from scaling.data.validation import validate_data_config

__all__ = ["Loader", "make_loader", "static_vocab_size", "tokenizer_for", "validate_data_config"]

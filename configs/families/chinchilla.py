"""Chinchilla's model shapes (Hoffmann et al. 2022, Table A9), one per config argument.

    --config=configs/families/chinchilla.py:chinchilla-106M

The argument is a name from `scaling.families.chinchilla_family()` ("chinchilla-44M" ...
"chinchilla-16183M"); without one, the 44M model. Data: a 32,000-token SentencePiece vocabulary
and 2,048-token sequences, as in the paper.
"""

from scaling import config as config_lib
from scaling import families

DEFAULT_SIZE = "chinchilla-44M"


def get_config(arg: str | None = None):
    name = arg or DEFAULT_SIZE
    members = dict(families.chinchilla_family())
    if name not in members:
        raise ValueError(f"unknown Chinchilla size {name!r}; allowed: {', '.join(members)}")
    config = config_lib.default_config()
    config.name = name
    config.data.tokenizer = "sentencepiece"
    config.data.vocab_size = families.CHINCHILLA_VOCAB_SIZE
    config.data.seq_len = families.CHINCHILLA_SEQ_LEN
    return families.set_model_fields(config, members[name])

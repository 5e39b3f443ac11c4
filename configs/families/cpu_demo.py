"""The CPU demo family: eleven small byte-level models that each train in a minute or two on a
laptop CPU.

    --config=configs/families/cpu_demo.py:d64-L2

The argument is a name from `scaling.families.cpu_demo_family()` ("d8-L2" ... "d160-L4");
without one, the smallest. Byte tokenizer (257 tokens), 128-token sequences.
"""

from scaling import config as config_lib
from scaling import families


def get_config(arg: str | None = None):
    members = dict(families.cpu_demo_family())
    name = arg or next(iter(members))
    if name not in members:
        raise ValueError(f"unknown CPU demo size {name!r}; allowed: {', '.join(members)}")
    config = config_lib.default_config()
    config.name = name
    config.data.tokenizer = "byte"
    config.data.seq_len = families.CPU_DEMO_SEQ_LEN
    return families.set_model_fields(config, members[name])

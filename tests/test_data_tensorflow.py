"""A TFDS dataset whose builder needs TensorFlow (`tiny_shakespeare` reads its download with
`tf.io.gfile`): prepared once in the environment with the optional `tf` extra, from a local copy
of its download and without network, then read and trained on in the main environment, which has
no TensorFlow.

`make test` builds that second environment (`.venv-tf`) and names its interpreter in
`SCALING_TF_PYTHON`; a bare `pytest` without it skips the test and says why.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scaling import config as config_lib
from scaling import data
from scaling.data import sources, tokenizers

pytestmark = pytest.mark.slow

# Stand-in text for the download: TFDS's builder splits the file 90/5/5 by characters.
TEXT = "".join(f"Citizen {i}:\nWe are accounted poor citizens, the patricians good.\n\n"
               for i in range(400))

# Runs in the TensorFlow environment. TFDS keeps downloads in `<data_dir>/downloads` under a
# name made from the URL and its registered checksum, next to a `.INFO` file; a download
# directory copied from a machine with network looks exactly like this, and TFDS trusts it
# without going to the network. The stand-in text takes the place of the real file there.
SEED_AND_PREPARE = r"""
import json, pathlib, sys
import tensorflow as tf
from tensorflow_datasets.core.download import resource as resource_lib
from scaling import config
from scaling.data import sources

tfds_dir, text_path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
cfg = config.default_config().data
cfg.dataset, cfg.feature, cfg.tfds_data_dir = "tiny_shakespeare", "text", str(tfds_dir)
builder = sources.make_builder(cfg)
(url, url_info), = builder.url_infos.items()
cached = tfds_dir / "downloads" / resource_lib.get_dl_fname(url, url_info.checksum)
cached.parent.mkdir(parents=True)
cached.write_bytes(text_path.read_bytes())
resource_lib.write_info_file(url=url, path=cached, dataset_name=builder.name,
                             original_fname="input.txt", url_info=url_info)
split = sources.open_split(cfg, "train")
builder = sources.make_builder(cfg)  # prepared now: its info has the splits
print(json.dumps({"tensorflow": tf.__version__, "dataset": split.dataset,
                  "splits": {name: info.num_examples for name, info in builder.info.splits.items()},
                  "format": builder.info.file_format.value}))
"""


def _tensorflow_python() -> pathlib.Path:
    chosen = os.environ.get("SCALING_TF_PYTHON")
    if not chosen:
        pytest.skip("SCALING_TF_PYTHON is not set: `make test` builds .venv-tf (the `tf` extra) "
                    "and sets it")
    python = pathlib.Path(chosen)
    assert python.exists(), f"SCALING_TF_PYTHON={chosen} does not exist: run `make test`"
    return python


def test_tiny_shakespeare_prepared_with_tensorflow_is_read_and_trained_without(tmp_path, repo):
    tf_python = _tensorflow_python()
    assert importlib.util.find_spec("tensorflow") is None, "the main environment must lack TF"
    text_path = tmp_path / "input.txt"
    text_path.write_text(TEXT)
    tfds_dir = tmp_path / "tfds"
    # No proxy and an unroutable one: any attempt to reach the network fails at once.
    environment = dict(os.environ, PYTHONPATH=str(repo), HTTPS_PROXY="http://127.0.0.1:9",
                       HTTP_PROXY="http://127.0.0.1:9")
    prepared = subprocess.run([str(tf_python), "-c", SEED_AND_PREPARE, str(tfds_dir),
                               str(text_path)], capture_output=True, text=True, timeout=600,
                              env=environment, cwd=repo)
    assert prepared.returncode == 0, prepared.stderr[-4000:]
    report = json.loads(prepared.stdout.strip().splitlines()[-1])
    assert report["tensorflow"] == "2.21.0"  # the version the `tf` extra pins
    assert report["format"] == "array_record"
    assert report["splits"] == {"train": 1, "validation": 1, "test": 1}

    # The builder's rule, independently: 90% train, then the rest halved.
    cut = int(len(TEXT) * 0.9)
    rest = TEXT[cut:]
    expected = {"train": TEXT[:cut], "validation": rest[:int(len(rest) * 0.5)],
                "test": rest[int(len(rest) * 0.5):]}
    cfg = config_lib.default_config().data
    cfg.update(dict(dataset="tiny_shakespeare", feature="text", tfds_data_dir=str(tfds_dir),
                    cache_dir=str(tmp_path / "cache"), eval_split="validation", seq_len=64))
    data.validate_data_config(cfg)
    for split, text in expected.items():
        documents = [document for batch in sources.open_split(cfg, split).document_batches()
                     for document in batch]
        assert documents == [text.encode()], split

    # Byte tokens are the UTF-8 bytes: every row, cut at end-of-document tokens, is made of
    # pieces of the training text.
    tokenizer = tokenizers.tokenizer_for(cfg)
    with data.make_loader(cfg, batch_size=4, seed=0) as loader:
        rows = np.asarray(loader.batch(0)["inputs"])
    assert rows.shape == (4, 64)
    train_bytes = expected["train"].encode()
    for row in rows:
        pieces = bytes(int(t) if t != tokenizer.eod_id else 0 for t in row).split(b"\0")
        assert all(piece in train_bytes for piece in pieces), row

    workdir = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py", "--workdir",
         str(workdir), "--config.data.dataset=tiny_shakespeare", "--config.data.feature=text",
         f"--config.data.tfds_data_dir={tfds_dir}", f"--config.data.cache_dir={tmp_path / 'cache'}",
         "--config.data.eval_split=validation", "--config.data.seq_len=64",
         "--config.model.max_seq_len=64", "--config.model.d_model=32", "--config.model.num_heads=2",
         "--config.model.num_layers=1", "--config.model.d_ff=64", "--config.train.steps=4",
         "--config.train.batch_size=4", "--config.train.eval_every=4",
         "--config.train.eval_batches=1", "--config.checkpoint.every_steps=4"],
        capture_output=True, text=True, timeout=600, env=environment, cwd=repo)
    assert trained.returncode == 0, trained.stderr[-4000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert np.isfinite(summary["final_eval_loss"])

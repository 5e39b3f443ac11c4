"""The console scripts of `scaling-train`, `scaling-sweep`, `scaling-eval`, `scaling-fit`,
`scaling-sample`, `scaling-attention`, `scaling-tpu` and `scaling-slurm` (pyproject.toml): each
runs its module's `main` with Ctrl-C handled from before that module's imports
(`scaling.interrupts`). `python -m` of each module comes here too. Their logging is set up by
`quiet_logging`.

Imports nothing heavy: the module is imported under the handler.
"""

from __future__ import annotations

import logging

from scaling import interrupts


def train() -> int:
    return interrupts.run("scaling-train", "scaling.train",
                          "scaling-train: interrupted before training started; rerun to start",
                          "scaling-train: preempted before training started; rerun to start")


def sweep() -> int:
    # Planning imports JAX and reads the data; once runs start, the sweep's own handler passes a
    # Ctrl-C on to them (launch.sweep).
    return interrupts.run("scaling-sweep", "launch.sweep",
                          "scaling-sweep: interrupted before any run started")


def evaluate() -> int:
    return interrupts.run("scaling-eval", "scaling.evaluate")


def fit() -> int:
    return interrupts.run("scaling-fit", "analysis.cli")


def tpu() -> int:
    return interrupts.run("scaling-tpu", "launch.tpu")


def slurm() -> int:
    return interrupts.run("scaling-slurm", "launch.slurm")


def sample() -> int:
    return interrupts.run("scaling-sample", "scaling.sample")


def attention() -> int:
    return interrupts.run("scaling-attention", "scaling.attention_maps")


def _not_a_full_disk(record: logging.LogRecord) -> bool:
    """False for a log of a write the file system refused for want of room, a full disk or a
    quota (Orbax logs each of its save threads' with its traceback): the command says that in
    one line."""
    from scaling.files import no_space_in

    text = record.getMessage() + (f" {record.exc_info[1]}" if record.exc_info else "")
    return no_space_in(text) is None


def quiet_logging(level: int = logging.WARNING) -> None:
    """The command's own messages from `level` up, the libraries' from warnings up (Orbax logs
    every restore at INFO); urllib3's only from errors up: offline, TFDS's metadata requests log
    each retry as a warning before the command's one-line error. Orbax's logs of a full disk
    are left out (`_not_a_full_disk`)."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for orbax in ("absl", "orbax"):
        if _not_a_full_disk not in logging.getLogger(orbax).filters:
            logging.getLogger(orbax).addFilter(_not_a_full_disk)
    logging.getLogger("urllib3").setLevel(logging.ERROR)

"""`scaling-train`: train one model, resumably, and write its metrics and summary.

    scaling-train --config configs/demo.py --workdir runs/tiny [--config.model.d_model=256 ...]

Writes `<workdir>/metrics.jsonl` (one record per logged step), `<workdir>/summary.json` (config,
parameter counts, tokens, FLOPs, final losses, status) and `<workdir>/checkpoints/`. Rerunning the
same command in the same workdir resumes from the newest checkpoint. Exit codes (`scaling.status`):
0 completed, 2 bad configuration, 3 diverged, 75 preempted (checkpoint saved; rerun to resume),
1 failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import signal
import sys

import jax

from scaling import budget, distributed, memory, status
from scaling.config import validate
from scaling.data import sources
from scaling.errors import ConfigError, IncompatibleCheckpoint
from scaling.overrides import apply_overrides, load_config, split_argv
from scaling.trainer import Trainer


class StopSignal:
    """Turns SIGTERM into a flag checked at step boundaries (single-process runs).

    A multi-process run leaves SIGTERM to JAX's preemption service, which agrees on one step for
    every process (`Checkpointer.reached_preemption`); a Python handler would replace its own."""

    def __init__(self, install: bool):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle) if install else None

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train(config, workdir: str | pathlib.Path) -> dict:
    """Train per `config` (validated) in `workdir`; return the summary (also written to disk).

    Raises IncompatibleCheckpoint (before writing anything) when the workdir holds a run of a
    different model or length."""
    if config.train.compilation_cache:
        enable_compilation_cache(config)
    distributed.initialize(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    previous = read_summary(workdir)
    if previous and previous.get("status") == status.COMPLETED:
        check_same_model_config(previous, config, workdir)
        if previous.get("steps") == budget.steps_for(config):
            print(f"run already completed in {workdir} (step {previous['steps']}); nothing to do",
                  flush=True)
            return previous
    # Installed before the slow parts (data, compile, restore) so a SIGTERM there still ends in a
    # clean exit 75 instead of a kill.
    stop_signal = StopSignal(install=jax.process_count() == 1)
    try:
        return Trainer(config, workdir, stop_signal).run()
    finally:
        stop_signal.restore()


def enable_compilation_cache(config) -> pathlib.Path:
    """Use JAX's persistent compilation cache under the data cache root; returns its folder.

    Entries are keyed by the program, the compiler flags and the devices, so a stale one is never
    used; compilations shorter than 0.2 s are not worth a file."""
    folder = sources.cache_root(config.data) / "jax-compilation"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def check_same_model_config(previous: dict, config, workdir: pathlib.Path) -> None:
    saved = previous.get("config", {}).get("model") or {}
    current = json.loads(json.dumps(config.model.to_dict(), default=str))
    # Fields only one side knows (added to the config since) are not a difference.
    differing = sorted(name for name in set(saved) & set(current) if saved[name] != current[name])
    if differing:
        details = ", ".join(f"model.{name}: completed run {saved[name]!r}, config "
                            f"{current[name]!r}" for name in differing)
        raise IncompatibleCheckpoint(
            f"{workdir} holds a completed run of a different model ({details}); "
            "use a new --workdir or the run's settings")


def read_summary(workdir: pathlib.Path) -> dict | None:
    try:
        return json.loads((workdir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    rest, overrides = split_argv(argv)
    parser = argparse.ArgumentParser(prog="scaling-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="ml-collections config file, path[:arg]")
    parser.add_argument("--workdir", required=True, help="directory for metrics, summary, checkpoints")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, sizes and per-device memory, then exit")
    return parser.parse_args(rest), overrides


def load_and_validate(spec: str, overrides: list[str]):
    """The config from file + overrides, validated; raises ConfigError with a one-line message.
    The one path from command line to config: `scaling-sweep` plans its runs through it too."""
    config = load_config(spec)
    apply_overrides(config, overrides)
    validate(config)
    return config


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_and_validate(args.config, overrides)
    except ConfigError as error:
        print(f"scaling-train: error: {error}", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.dry_run:
        print(memory.describe(config))
        return status.EXIT_COMPLETED
    try:
        summary = train(config, args.workdir)
    except (IncompatibleCheckpoint, ConfigError) as error:
        # ConfigErrors found once devices and data are known: mesh vs device count, model vs
        # mesh divisibility, batch vs process count, sequence vs corpus.
        print(f"scaling-train: error: {error}", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    return status.EXIT_CODES[summary["status"]]


if __name__ == "__main__":
    sys.exit(main())

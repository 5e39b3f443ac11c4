"""`scaling-train`: train one model, resumably, and write its metrics and summary.

    scaling-train --config configs/demo.py --workdir runs/tiny [--config.model.d_model=256 ...]

Writes `<workdir>/metrics.jsonl` (one record per logged step), `<workdir>/summary.json` (config,
parameter counts, tokens, FLOPs, final losses, status) and `<workdir>/checkpoints/`. Rerunning the
same command in the same workdir resumes from the newest checkpoint. Exit codes (`scaling.status`):
0 completed, 2 bad configuration, 3 diverged, 75 preempted (SIGTERM: checkpoint saved; rerun to
resume), 130 interrupted (Ctrl-C: the same; a second Ctrl-C exits at once without saving), 1 failed.
"""

from __future__ import annotations

# `python -m scaling.train` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.train())

import argparse
import contextlib
import logging
import os
import pathlib
import signal
import sys
import warnings

import jax

from scaling import branches, budget, distributed, files, interrupts, memory, scripts, status
from scaling.config import check_overrides_read, differing_fields, validate
from scaling.data import check_files, sources, text_files
from scaling.errors import ArgumentParser, ConfigError, IncompatibleCheckpoint, WorkdirBusy
from scaling.overrides import RUN_OVERRIDES_HELP, apply_overrides, load_config, split_argv
from scaling.trainer import (Trainer, batch_fields, model_fields, optimizer_fields,
                             record_fields)


class StopSignal:
    """Turns SIGTERM (preemption) and the first SIGINT (Ctrl-C) into a request checked at step
    boundaries, where the run saves a checkpoint and stops; a second SIGINT exits at once.

    `requested` is the status the run ends with (`preempted` or `interrupted`), None until asked.
    A run of several processes must stop at one step on all of them, or the others would wait on
    the one that left: it leaves SIGTERM to JAX's preemption service, which agrees on that step
    (`Checkpointer.reached_preemption`), and turns the first SIGINT into a SIGTERM of its own
    process for that service, noting in `interrupted` that the stop is an interruption."""

    def __init__(self, install: bool, processes: int = 1):
        self.requested: str | None = None
        self.interrupted = False
        self._previous = {}
        if not install:
            return
        handlers = ({signal.SIGTERM: self._terminate, signal.SIGINT: self._interrupt}
                    if processes == 1 else {signal.SIGINT: self._interrupt_processes})
        for signum, handler in handlers.items():
            self._previous[signum] = signal.signal(signum, handler)

    def _terminate(self, signum, frame):
        del signum, frame
        self.requested = self.requested or status.PREEMPTED

    def _interrupt(self, signum, frame):
        del signum, frame
        if self.requested == status.INTERRUPTED:
            interrupts.exit_now("scaling-train: interrupted again: exiting without saving")
        self.requested = status.INTERRUPTED
        print("scaling-train: interrupt: saving at the next step boundary "
              "(Ctrl-C again to exit at once)", file=sys.stderr, flush=True)

    def _interrupt_processes(self, signum, frame):
        del signum, frame
        if self.interrupted:
            interrupts.exit_now("scaling-train: interrupted again: exiting without saving")
        self.interrupted = True
        print("scaling-train: interrupt: saving at the step every process agrees on "
              "(Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption service

    def restore(self):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def train(config, workdir: str | pathlib.Path) -> dict:
    """Train per `config` (validated) in `workdir`; return the summary (also written to disk).

    Raises IncompatibleCheckpoint (before writing anything) when the workdir holds a run of a
    different model or length, WorkdirBusy when another live process trains in it, ConfigError
    when it is a file."""
    config = config.copy_and_resolve_references()
    for name in text_files.PATH_FIELDS:  # recorded so that they name these files from any folder
        config.data[name] = text_files.absolute_field(name, config.data[name])
    if config.train.compilation_cache:
        enable_compilation_cache(config)
    distributed.initialize(config)
    if jax.process_count() > 1:  # a partner's failure must not leave this one in JAX's exit
        interrupts.exit_on_failure()
    with files.made_workdir(workdir) as workdir:
        # One writer per workdir. The processes of one multi-host run share it: process 0 holds it.
        lock = (files.workdir_lock(workdir, "scaling-train") if distributed.is_leader()
                else contextlib.nullcontext())
        with lock:
            return _train_locked(config, workdir)


def _train_locked(config, workdir: pathlib.Path) -> dict:
    previous = files.read_summary(workdir)
    if previous and previous.get("status") == status.COMPLETED:
        check_same_model_config(previous, config, workdir)
        total_steps = budget.steps_for(config)
        if previous.get("steps") != total_steps:
            # Trained again from its checkpoints or, without them, from scratch, its results
            # would be another run's under the same name: a change of plan, as on resume.
            raise IncompatibleCheckpoint(
                f"{workdir} holds a completed run of {previous.get('steps')} steps, the config "
                f"asks for {total_steps} (train.steps / train.tokens); use a new --workdir or "
                "the run's settings")
        listed = ((previous.get("config") or {}).get("train") or {}).get("branch_steps") or ()
        branches.check_passed(config, workdir, total_steps, tuple(listed))
        print(f"run already completed in {workdir} (step {previous['steps']}); nothing to do",
              flush=True)
        return previous
    # Installed before the slow parts (data, compile, restore) so a SIGTERM or Ctrl-C there still
    # ends in a clean exit (75 or 130) instead of a kill or a traceback.
    stop_signal = StopSignal(install=True, processes=jax.process_count())
    try:
        earlier = (previous or {}).get("wall_seconds")  # a resumed run's time adds up
        return Trainer(config, workdir, stop_signal,
                       earlier_seconds=earlier if isinstance(earlier, (int, float)) else 0.0
                       ).run()
    finally:
        stop_signal.restore()


def enable_compilation_cache(config) -> pathlib.Path:
    """Use JAX's persistent compilation cache under the data cache root; returns its folder.

    Entries are keyed by the program, the compiler flags and the devices, so a stale one is never
    used; compilations shorter than 0.2 s are not worth a file. JAX's own variables for those two
    thresholds (`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, `..._MIN_ENTRY_SIZE_BYTES`) win when
    set. A folder this process cannot write (a read-only copy of a cache) is read without JAX's
    warning at every compilation that it could not write there."""
    folder = sources.cache_root(config.data) / "jax-compilation"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not os.access(existing, os.W_OK):  # a read-only copy: its entries are read, none written
        warnings.filterwarnings("ignore", message="Error writing persistent compilation cache")
    for name, value in (("jax_persistent_cache_min_compile_time_secs", 0.2),
                        ("jax_persistent_cache_min_entry_size_bytes", 0)):
        if name.upper() not in os.environ:
            jax.config.update(name, value)
    return folder


def check_same_model_config(previous: dict, config, workdir: pathlib.Path) -> None:
    """A completed run is this config's only if its model, its batches, its optimizer and the
    terms of its records (`trainer.RECORD_FIELDS`) are (fields the summary predates are unknown,
    not a difference); IncompatibleCheckpoint names the fields that differ."""
    recorded = previous.get("config") or {}
    saved, current = ({**model_fields(run), **batch_fields(run), **optimizer_fields(run),
                       **record_fields(run)} for run in (recorded, config))
    differing = sorted(differing_fields(saved, current))
    if differing:
        details = ", ".join(f"{name}: completed run {saved[name]!r}, config "
                            f"{current[name]!r}" for name in differing)
        raise IncompatibleCheckpoint(
            f"{workdir} holds a completed run under other settings "
            f"({details}); use a new --workdir or the run's settings")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    rest, overrides = split_argv(argv)
    summary, _, outputs_and_exits = __doc__.split("\n\n")[:3]
    parser = ArgumentParser(prog="scaling-train", description=summary,
                            epilog=RUN_OVERRIDES_HELP + " " + outputs_and_exits)
    parser.add_argument("--config", required=True, help="ml-collections config file, path[:arg]")
    parser.add_argument("--workdir", required=True, help="directory for metrics, summary, checkpoints")
    parser.add_argument("--dry-run", action="store_true",
                        help="check data.files as the run opens them (the first 8 KiB of each "
                             "file), print the model, its parameter counts, FLOPs per token, mesh "
                             "and per-device memory estimate, then exit")
    return parser.parse_args(rest), overrides


def load_and_validate(spec: str, overrides: list[str], *, check_read: bool = True):
    """The config from file + overrides, validated; raises ConfigError with a one-line message.
    The one path from command line to config: `scaling-sweep` plans its runs through it too.
    `check_read`: an override of a field the run does not read is refused too."""
    config = load_config(spec)
    if "plan" in config and "base_config" in config:  # a sweep's: validated, it named a field
        raise ConfigError("--config", spec, "a run config (this is a sweep config: "
                                            "`scaling-sweep --config` runs it)")
    apply_overrides(config, overrides)
    validate(config)
    if check_read:
        check_overrides_read(config, [item.partition("=")[0] for item in overrides])
    return config


def out_of_memory(config, error: Exception) -> str:
    """What to say when the device runs out of memory: XLA's first line, and what would help."""
    xla = str(error).strip().splitlines()[0]
    return (f"the device ran out of memory ({xla}); `scaling-train --dry-run` itemises the run's "
            f"estimate. Lower train.batch_size={config.train.batch_size} or data.seq_len="
            f"{config.data.seq_len}, raise train.grad_accum_steps={config.train.grad_accum_steps}"
            + (f", set model.remat=full (now {config.model.remat!r})"
               if config.model.remat != "full" else "")
            + ", or shard the batch or the weights over more devices (mesh)")


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_and_validate(args.config, overrides)
        branches.check_parent(config)
    except ConfigError as error:
        print(f"scaling-train: error: {error}", file=sys.stderr)
        return status.EXIT_BAD_CONFIG
    scripts.quiet_logging(logging.INFO)
    try:
        if args.dry_run:
            files.check_workdir(args.workdir, create=False)
            check_files(config.data)  # what the run refuses as it opens them, a dry run too
            print(memory.describe(config))
            return status.EXIT_COMPLETED
        summary = train(config, args.workdir)
    except (IncompatibleCheckpoint, ConfigError, WorkdirBusy,
            sources.DatasetUnavailableError) as error:
        # ConfigErrors found once devices are known (mesh vs device count, also in a dry run) or
        # data: model vs mesh divisibility, batch vs process count, sequence vs corpus; a dataset
        # that cannot be prepared here (no network, no TensorFlow): what to do, in one line.
        print(f"scaling-train: error: {' '.join(str(error).split())}", file=sys.stderr)
        # Reads Orbax abandoned (a damaged checkpoint's) are finalised at exit, each with an
        # "Exception ignored in: <coroutine ...>" traceback after that line: not for the user.
        sys.unraisablehook = lambda unraisable: None
        return status.EXIT_BAD_CONFIG
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        # The estimate (`memory.check_fits`) let the run start, and the device could not hold
        # it: the run ends failed (its summary says so, if it had started), in one line.
        print(f"scaling-train: error: {out_of_memory(config, error)}", file=sys.stderr)
        return status.EXIT_FAILED
    except BrokenPipeError:
        raise  # the reader of its output went away: `interrupts.run` ends it quietly
    except OSError as error:
        # A file the file system refused (full, read-only, gone) or a connection that failed:
        # the run ended failed (its summary says so, where it could be written), in one line.
        where = f": {error.filename}" if error.filename else ""
        print(f"scaling-train: error: the run failed on a file or connection ("
              f"{type(error).__name__}: {error.strerror or error}{where})", file=sys.stderr)
        # A save that failed leaves Orbax's writes unfinished, each finalised at exit with an
        # "Exception ignored in: <coroutine ...>" traceback after that line.
        sys.unraisablehook = lambda unraisable: None
        return status.EXIT_FAILED
    except KeyboardInterrupt:
        # Ctrl-C before the stop handler was installed (start-up): nothing trained, nothing lost.
        interrupts.report("scaling-train: interrupted before training started; rerun to start")
        return status.EXIT_INTERRUPTED
    # The run's outcome is on disk; a SIGINT or SIGTERM arriving while the process exits has
    # nothing left to stop, and must not turn a completed run into a killed one.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return status.EXIT_CODES[summary["status"]]


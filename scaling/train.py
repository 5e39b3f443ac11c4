"""`scaling-train`: train one model, resumably, and write its metrics and summary.

    scaling-train --config configs/demo.py --workdir runs/tiny [--config.model.d_model=256 ...]

Writes `<workdir>/metrics.jsonl` (one record per logged step), `<workdir>/summary.json` (config,
parameter counts, tokens, FLOPs, final losses, status) and `<workdir>/checkpoints/`. Rerunning the
same command in the same workdir resumes from the newest checkpoint. Exit codes: 0 completed,
2 bad configuration, 3 diverged, 75 preempted (checkpoint saved; rerun to resume), 1 failed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import pathlib
import signal
import sys
import time
from typing import Any

EXIT_COMPLETED, EXIT_FAILED, EXIT_BAD_CONFIG, EXIT_DIVERGED, EXIT_PREEMPTED = 0, 1, 2, 3, 75
STATUS_EXIT = {"completed": EXIT_COMPLETED, "diverged": EXIT_DIVERGED, "preempted": EXIT_PREEMPTED,
               "failed": EXIT_FAILED}

log = logging.getLogger("scaling.train")


@dataclasses.dataclass
class LossWindow:
    """Train losses since the last logged step (carried through checkpoints for exact resume)."""

    total: float = 0.0
    count: int = 0
    skipped: int = 0

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


class _StopSignal:
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


def _is_boundary(count: int, every: int, total: int) -> bool:
    return count == total or (every > 0 and count % every == 0)


def train(config, workdir: str | pathlib.Path) -> dict:
    """Train per `config` (validated) in `workdir`; return the summary (also written to disk).

    Raises IncompatibleCheckpoint (before writing anything) when the workdir holds a run of a
    different model."""
    import jax

    from scaling import distributed

    if config.train.compilation_cache:
        enable_compilation_cache(config)
    distributed.initialize(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    previous = _read_summary(workdir)
    if previous and previous.get("status") == "completed":
        _check_same_model_config(previous, config, workdir)
        from scaling import optim as optim_lib

        if previous.get("steps") == optim_lib.steps_for(config):
            print(f"run already completed in {workdir} (step {previous['steps']}); nothing to do",
                  flush=True)
            return previous
    # Installed before the slow parts (data, compile, restore) so a SIGTERM there still ends in a
    # clean exit 75 instead of a kill.
    stop_signal = _StopSignal(install=jax.process_count() == 1)
    try:
        return _train(config, workdir, stop_signal)
    finally:
        stop_signal.restore()


def enable_compilation_cache(config) -> pathlib.Path:
    """Use JAX's persistent compilation cache under the data cache root; returns its folder.

    Entries are keyed by the program, the compiler flags and the devices, so a stale one is never
    used; compilations shorter than 0.2 s are not worth a file."""
    import jax

    from scaling.data import sources

    folder = sources.cache_root(config.data) / "jax-compilation"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def _check_same_model_config(previous: dict, config, workdir: pathlib.Path) -> None:
    import json

    from scaling.checkpoint import IncompatibleCheckpoint

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


def _train(config, workdir: pathlib.Path, stop_signal: _StopSignal) -> dict:
    import jax
    import numpy as np

    from scaling import data as data_lib
    from scaling import distributed, flops, hardware, parallel, tracking
    from scaling import optim as optim_lib
    from scaling.checkpoint import Checkpointer, IncompatibleCheckpoint
    from scaling.config import model_config
    from scaling.step import build_program

    leader = distributed.is_leader()
    wall_start = time.perf_counter()
    loader = data_lib.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())
    model = model_config(config, loader.vocab_size)
    total_steps = optim_lib.steps_for(config)
    seq_len = config.data.seq_len
    tokens_per_step = config.train.batch_size * seq_len
    mesh = parallel.make_mesh(config.mesh)
    program = build_program(config, model, total_steps, mesh)
    counts = flops.parameter_counts(model)
    flops_per_token = {convention: flops.training_flops_per_token(model, seq_len, convention)
                       for convention in ("6N", "full")}
    peak = hardware.device_peak_flops(model.compute_dtype) * jax.device_count()

    checkpointer = Checkpointer(workdir, keep=config.checkpoint.keep,
                                async_save=config.checkpoint.async_save)
    window = LossWindow()
    try:
        with program.context():
            restored = checkpointer.restore_latest(program.abstract_state, model)
            if restored is not None:
                state, meta = restored
                start = int(meta["step"])
                saved_total = meta.get("total_steps", total_steps)
                if saved_total != total_steps:
                    # A different horizon changes the learning-rate schedule under the restored
                    # optimizer state: refuse rather than train a run that matches neither plan.
                    raise IncompatibleCheckpoint(
                        f"the workdir's checkpoint belongs to a run of {saved_total} steps, the "
                        f"config asks for {total_steps} (train.steps / train.tokens); use a new "
                        "--workdir or the run's settings")
                window = LossWindow(**meta["loss_window"])
                if leader:
                    print(f"resuming from step {start} (checkpoint in {checkpointer.directory})",
                          flush=True)
            else:
                state, start = program.init(jax.random.key(config.seed)), 0
            eval_batches = [parallel.global_batch(batch, program.batch_sharding)
                            for batch in loader.eval_batches(config.train.eval_batches)]
    except BaseException:
        loader.close()
        checkpointer.close()
        raise

    config_dict = config.to_dict()
    metrics_log = tracking.MetricsLog(workdir / "metrics.jsonl", start) if leader else None
    wandb_run = (tracking.WandbRun(config, workdir, name=config.name, config_dict=config_dict)
                 if leader else None)
    progress = tracking.Progress(total_steps, start)

    summary: dict[str, Any] = {
        "name": config.name, "config": config_dict, "model": dataclasses.asdict(model),
        "params": counts.total, "embedding_params": counts.embedding,
        "non_embedding_params": counts.non_embedding, "flop_convention": config.train.flop_convention,
        "flops_per_token_6N": flops_per_token["6N"], "flops_per_token_full": flops_per_token["full"],
        "total_steps": total_steps, "tokens_per_step": tokens_per_step,
        "train_tokens_available": loader.tokens_in_split, "devices": jax.device_count(),
        "mesh": dict(program.mesh.shape), "parametrization": model.parametrization,
        "peak_flops": peak, "diverged_step": None, "final_train_loss": None, "final_eval_loss": None,
        "wandb_run_id": wandb_run.run_id if wandb_run else None,
    }
    # A resumed run's final losses so far come from the records it keeps (a run resumed at its
    # last step logs nothing new).
    for record in metrics_log.records if metrics_log else ():
        summary["final_train_loss"] = record.get("train_loss")
        if record.get("eval_loss") is not None:
            summary["final_eval_loss"] = record["eval_loss"]

    def evaluate() -> float:
        losses = [program.eval_step(state, batch)["loss"] for batch in eval_batches]
        return float(np.mean(jax.device_get(losses)))

    def consume(count: int, metrics: dict) -> bool:
        """Fold one step's metrics into the window; False when the run must stop (diverged)."""
        values = jax.device_get(metrics)
        if not bool(values["finite"]):
            if config.train.on_nonfinite == "stop":
                summary["diverged_step"] = count
                return False
            window.skipped += 1
            log.warning("step %d: non-finite loss or gradient; update skipped", count)
            return True
        window.total += float(values["loss"])
        window.count += 1
        consume.last = values
        return True

    def consume_pending(keep: int) -> bool:
        """Consume queued metrics until `keep` remain; False when the run diverged."""
        while len(pending) > keep:
            if not consume(*pending.popleft()):
                return False
        return True

    consume.last = {}
    status, count, compile_seconds = "completed", start, 0.0
    pending: collections.deque = collections.deque()
    interval_start, interval_tokens, speeds = time.perf_counter(), 0, []
    loop_start = None  # after the first (compiling) step
    last_eval = None
    iterator = loader.iterate(start)
    try:
        with program.context():
            if stop_signal.requested and start < total_steps:
                status = "preempted"  # stopped before any step: the resume point is unchanged
            for step_index, local_batch in (iterator if status == "completed" else ()):
                if step_index >= total_steps:
                    break
                batch = parallel.global_batch(local_batch, program.batch_sharding)
                state, metrics = program.train_step(state, batch)
                count = step_index + 1
                pending.append((count, metrics))
                if count == start + 1:  # the first step compiles: time it, then start the clocks
                    if not consume_pending(0):
                        status = "diverged"
                        break
                    compile_seconds = time.perf_counter() - interval_start
                    loop_start = time.perf_counter()
                    progress.restart_clock(count)
                    interval_start, interval_tokens = time.perf_counter(), 0
                else:
                    interval_tokens += tokens_per_step
                # Read metrics one step late, so the device always has the next step queued.
                if not consume_pending(1):
                    status = "diverged"
                    break
                preempted = stop_signal.requested or (
                    jax.process_count() > 1 and checkpointer.reached_preemption(count))
                log_now = _is_boundary(count, config.train.log_every, total_steps)
                eval_now = _is_boundary(count, config.train.eval_every, total_steps)
                save_now = _is_boundary(count, config.checkpoint.every_steps, total_steps)
                if not (log_now or eval_now or save_now or preempted):
                    continue
                if not consume_pending(0):
                    status = "diverged"
                    break
                elapsed = time.perf_counter() - interval_start
                if log_now or eval_now:
                    eval_start = time.perf_counter()
                    last_eval = evaluate() if eval_now else None
                    eval_seconds = time.perf_counter() - eval_start
                    speed = interval_tokens / elapsed if interval_tokens and elapsed > 0 else 0.0
                    if speed:
                        speeds.append(speed)
                    tokens = count * tokens_per_step
                    record = {
                        "step": count, "tokens": tokens,
                        "flops": tokens * flops_per_token[config.train.flop_convention],
                        "flops_6N": tokens * flops_per_token["6N"],
                        "flops_full": tokens * flops_per_token["full"],
                        "train_loss": window.mean(), "eval_loss": last_eval,
                        "lr": float(consume.last.get("lr", float("nan"))),
                        "grad_norm": float(consume.last.get("grad_norm", float("nan"))),
                        "skipped_steps": window.skipped,
                        "tokens_per_second": speed,
                        "mfu": speed * flops_per_token["full"] / peak if speed else None,
                        "eval_seconds": eval_seconds,
                    }
                    summary["final_train_loss"] = record["train_loss"]
                    if last_eval is not None:
                        summary["final_eval_loss"] = last_eval
                    if leader:
                        metrics_log.write(record)
                        wandb_run.log(record)
                        progress.show(record)
                    window = LossWindow(skipped=window.skipped)
                if save_now or preempted:
                    checkpointer.save(count, state, {
                        "step": count, "seed": config.seed, "total_steps": total_steps,
                        "loss_window": dataclasses.asdict(window),
                        "model": dataclasses.asdict(model)}, wait=preempted or count == total_steps)
                if preempted and count < total_steps:
                    status = "preempted"
                    break
                interval_start, interval_tokens = time.perf_counter(), 0
    except BaseException:
        status = "failed"
        raise
    finally:
        iterator_close = getattr(iterator, "close", None)
        if iterator_close:
            iterator_close()
        loader.close()
        loop_end = time.perf_counter()
        try:
            checkpointer.close()
        finally:
            steps_done = summary["diverged_step"] - 1 if status == "diverged" else count
            tokens = steps_done * tokens_per_step
            summary.update({
                "status": status, "steps": steps_done, "tokens": tokens,
                "flops": tokens * flops_per_token[config.train.flop_convention],
                "flops_6N": tokens * flops_per_token["6N"],
                "flops_full": tokens * flops_per_token["full"],
                "tokens_per_second": float(np.median(speeds)) if speeds else None,
                "mfu": float(np.median(speeds)) * flops_per_token["full"] / peak if speeds else None,
                "compile_seconds": compile_seconds, "wall_seconds": time.perf_counter() - wall_start,
                # Steps after the first, with their logging, evals and saves (not the final wait).
                "loop_seconds": loop_end - loop_start if loop_start is not None else None,
            })
            if leader:
                metrics_log.close()
                tracking.write_json_atomic(workdir / "summary.json", summary)
                wandb_run.finish(summary)

    if leader and status != "completed":
        where = (f" at step {summary['diverged_step']} (non-finite loss or gradient)"
                 if status == "diverged" else f" at step {count}; rerun the same command to resume")
        print(f"run {status}{where}", flush=True)
    return summary


def _read_summary(workdir: pathlib.Path) -> dict | None:
    import json

    try:
        return json.loads((workdir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from scaling.overrides import split_argv

    rest, overrides = split_argv(argv)
    parser = argparse.ArgumentParser(prog="scaling-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="ml-collections config file, path[:arg]")
    parser.add_argument("--workdir", required=True, help="directory for metrics, summary, checkpoints")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, sizes and per-device memory, then exit")
    return parser.parse_args(rest), overrides


def load_and_validate(spec: str, overrides: list[str]):
    """The config from file + overrides, validated; raises ConfigError with a one-line message."""
    from scaling.config import validate
    from scaling.overrides import apply_overrides, load_config

    config = load_config(spec)
    apply_overrides(config, overrides)
    validate(config)
    return config


def main(argv: list[str] | None = None) -> int:
    from scaling.checkpoint import IncompatibleCheckpoint
    from scaling.config import ConfigError

    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_and_validate(args.config, overrides)
    except ConfigError as error:
        print(f"scaling-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.dry_run:
        from scaling import memory

        print(memory.describe(config))
        return EXIT_COMPLETED
    try:
        summary = train(config, args.workdir)
    except (IncompatibleCheckpoint, ConfigError) as error:
        # ConfigErrors found once devices and data are known: mesh vs device count, model vs
        # mesh divisibility, batch vs process count, sequence vs corpus.
        print(f"scaling-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return STATUS_EXIT[summary["status"]]


if __name__ == "__main__":
    sys.exit(main())

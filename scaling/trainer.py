"""The training loop of one run, in small named parts.

`Trainer` owns what lives across steps: the data, the compiled program, the checkpoints, the
metrics queue, the clocks and the summary. Its `run` takes optimizer steps and, at the boundaries
the config names, reads the metrics (`StepMetrics`), evaluates, logs, saves and checks for a stop.
Metrics are read one call late (a call is one step or `train.steps_per_call`), so the device
always has the next call queued.

A cooldown branch (`train.init_from`) starts from its parent's stable-phase state; a run with
`train.branch_steps` saves that state for its branches (`scaling.branches`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pathlib
import time
from typing import Any, Iterator

import jax
import numpy as np

from scaling import branches, budget, distributed, files, flops, hardware, memory, parallel
from scaling import status, tracking
from scaling import data as data_lib
from scaling.checkpoint import PARENT_ADVICE, Checkpointer
from scaling.data import objectives, text_files, tokenizers
from scaling.config import (COMPUTE_ONLY_MODEL_FIELDS, derive_model_fields, differing_fields,
                            model_config)
from scaling.errors import ConfigError, IncompatibleCheckpoint
from scaling.step import batches_mean, build_program

log = logging.getLogger("scaling.train")

# The `data` fields besides sequence length that decide what the batches of a step hold, whatever
# the objective (not where the data is cached, nor what is evaluated).
BATCH_DATA_FIELDS = ("dataset", "feature", "files", "train_split", "tokenizer", "vocab_size",
                     "spm_model")


def batch_fields(config) -> dict:
    """What the batches of step k are a function of: the seed, the batch's shape, the corpus and
    how the objective cuts it into inputs and targets, that is the objective and the fields it
    reads (`objectives.OBJECTIVE_FIELDS`: masked_lm's mask fraction is nothing to a causal_lm
    run). The first three keep the names older checkpoints recorded them under. `config` is a
    run config, or the dict a summary records; fields it lacks are left out."""
    def field_of(name: str):  # "data.seq_len" → config.data.seq_len, None where absent
        section, field = name.split(".")
        return (config.get(section) or {}).get(field)

    names = (*(f"data.{field}" for field in BATCH_DATA_FIELDS), "train.objective",
             *objectives.OBJECTIVE_FIELDS.get(field_of("train.objective"), ()))
    fields = {"seed": config.get("seed"), "batch_size": field_of("train.batch_size"),
              "seq_len": field_of("data.seq_len"), **{name: field_of(name) for name in names}}
    return text_files.absolute_paths(
        {name: value for name, value in fields.items() if value is not None})


def model_fields(config) -> dict:
    """The model a run of `config` (a run config, or the dict a summary or checkpoint records as
    its config) trains, as dotted fields with the ones left 0 derived (`derive_model_fields`),
    those that change how a step is computed but not what left out, and `data.document_mask`
    (which tokens its attention sees) where given."""
    model = config.get("model") or {}
    fields = {f"model.{name}": value for name, value in
              derive_model_fields(model.to_dict() if hasattr(model, "to_dict") else model).items()
              if name not in COMPUTE_ONLY_MODEL_FIELDS}
    mask = (config.get("data") or {}).get("document_mask")
    return fields if mask is None else {**fields, "data.document_mask": mask}


# The training split's identity in a checkpoint's record (`Loader.corpus`): `data.files`
# names files whose content can change between a run's attempts.
CORPUS_FIELD = "data.corpus"
# The held-out split's (`Loader.held_out`): a resume on another would log the losses of two.
HELD_OUT_FIELD = "data.held_out"


def optimizer_fields(config) -> dict:
    """Every `optim` field: the learning-rate schedule and the update it scales."""
    return {f"optim.{name}": value for name, value in (config.get("optim") or {}).items()}


# The `train` fields a run's records are written in terms of: the FLOP convention of the `flops`
# of its metrics and summary, and the parent's step a branch started from (its summary's
# `start_step`, from which a sweep counts the compute it spent). A resumed run keeps them, or its
# records would mix two runs. (Its parent, `train.init_from`, may move: the state at that step is
# the same for any parent of the same batches and optimizer, `scaling.branches`.)
RECORD_FIELDS = ("flop_convention", "init_step")


def record_fields(config) -> dict:
    """`RECORD_FIELDS` of `config` (a run config, or the dict a summary or checkpoint records
    as its config), dotted; fields it lacks are left out."""
    train = config.get("train") or {}
    return {f"train.{name}": train[name] for name in RECORD_FIELDS if name in train}


def plan_conflict(meta: dict, config, optimizer: dict, what: str,
                  corpus: str | None = None) -> str | None:
    """How a saved state recorded as `meta` was trained differently from `config` (`what` names
    it: "the workdir's checkpoint belongs to a run"), in its batches or in `optimizer` (the
    optimizer fields that must agree), or else on another training split than `corpus`
    (`Loader.corpus`, when given); None when it was not. Resumed (or started as a branch) with
    either changed, the run would match neither plan. A field the record predates is unknown,
    not a difference."""
    meta = text_files.absolute_paths(meta)  # as `batch_fields` gives the config's
    kinds = []  # each kind that differs, with every field of it that does
    for kind, current in (("other batches", batch_fields(config)),
                          ("another optimizer or learning-rate schedule", optimizer)):
        differing = [f"{name}: {meta[name]!r}, config {current[name]!r}"
                     for name in differing_fields(meta, current)]
        if differing:
            kinds.append(f"{kind} ({'; '.join(differing)})")
    if kinds:
        return f"{what} with {' and '.join(kinds)}"
    if corpus and meta.get(CORPUS_FIELD) not in (None, corpus):  # the same fields, other data
        return (f"{what} on another corpus ({CORPUS_FIELD}: {meta[CORPUS_FIELD]!r}, now "
                f"{corpus!r}: its training split is not this one, by a file added, removed or "
                f"edited, or a file chosen otherwise)")
    return None


def resume_conflict(meta: dict, config, total_steps: int, corpus: str | None = None,
                    held_out: str | None = None) -> str | None:
    """Why a run of `config` (`total_steps` long, on the splits `corpus` and `held_out` when given)
    cannot resume from the checkpoint recorded as `meta` (its length, `RECORD_FIELDS`, held-out
    split, batches or optimizer differ), or None: resumed on another held-out split, its
    metrics.jsonl would hold the losses of two. (A branch may evaluate on a split of its own.)
    The model is checked on restore (`checkpoint.check_compatible`)."""
    saved_total = meta.get("total_steps", total_steps)
    if saved_total != total_steps:
        # A different horizon changes the learning-rate schedule under the restored state.
        return (f"the workdir's checkpoint belongs to a run of {saved_total} steps, the config "
                f"asks for {total_steps} (train.steps / train.tokens)")
    saved, current = record_fields(meta.get("config") or {}), record_fields(config)
    differing = [f"{name}: {saved[name]!r}, config {current[name]!r}"
                 for name in differing_fields(saved, current)]
    if differing:
        return (f"the workdir's checkpoint belongs to a run recorded otherwise "
                f"({'; '.join(differing)})")
    trained = plan_conflict(meta, config, optimizer_fields(config),
                            "the workdir's checkpoint belongs to a run", corpus)
    if trained:
        return trained
    evaluated = "the workdir's checkpoint belongs to a run evaluated on another held-out split"
    split = ((meta.get("config") or {}).get("data") or {}).get("eval_split")
    if split is not None and split != config.data.eval_split:
        return f"{evaluated} (data.eval_split: {split!r}, config {config.data.eval_split!r})"
    if held_out and meta.get(HELD_OUT_FIELD) not in (None, held_out):
        return (f"{evaluated} ({HELD_OUT_FIELD}: {meta[HELD_OUT_FIELD]!r}, now {held_out!r}: by "
                f"a file added, removed or edited)")
    return None


@dataclasses.dataclass
class LossWindow:
    """Train losses since the last logged step (carried through checkpoints for exact resume)."""

    total: float = 0.0
    count: int = 0
    skipped: int = 0

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


class StepMetrics:
    """The queue of calls whose metrics the host has not read yet, folded into the loss window.

    `push(count, metrics, steps)` queues a call of `steps` steps ending at step `count` (its
    metrics stacked on a leading axis when it ran a loop of steps, its first `steps` slots the
    steps taken). `drain(keep)` reads until `keep` calls remain and returns False once a
    non-finite step must stop the run (`train.on_nonfinite="stop"`; its step is
    `diverged_step`)."""

    def __init__(self, window: LossWindow, stop_on_nonfinite: bool):
        self.window = window
        self.stop_on_nonfinite = stop_on_nonfinite
        self.pending: collections.deque = collections.deque()
        self.last: dict = {}
        self.diverged_step: int | None = None

    def push(self, count: int, metrics: dict, steps: int = 1) -> None:
        self.pending.append((count, metrics, steps))

    def drain(self, keep: int) -> bool:
        while len(self.pending) > keep:
            count, metrics, steps = self.pending.popleft()
            values = jax.device_get(metrics)
            if np.ndim(values["loss"]) == 0:  # one step's, not stacked: a stack of one
                values = {name: np.expand_dims(value, 0) for name, value in values.items()}
            for index in range(steps):  # the call's first `steps` slots
                if not self._read(count - steps + 1 + index,
                                  {name: value[index] for name, value in values.items()}):
                    return False
        return True

    def _read(self, count: int, values: dict) -> bool:
        """Fold one step's metrics in; False when it stops the run."""
        finite = bool(values["finite"])
        if finite or not self.window.count:
            # The learning rate and gradient norm logged: the window's last finite step's,
            # or, while it has none, its last step's (non-finite) own.
            self.last = values
        if finite:
            self.window.total += float(values["loss"])
            self.window.count += 1
        elif self.stop_on_nonfinite:
            self.diverged_step = count
            return False
        else:
            self.window.skipped += 1
            log.warning("step %d: non-finite loss or gradient; update skipped", count)
        return True

    def next_window(self) -> None:
        self.window = LossWindow(skipped=self.window.skipped)


class Interval:
    """Tokens trained since the last boundary and the wall time they took (tokens/s, MFU)."""

    def __init__(self):
        self.restart()
        self.speeds: list[float] = []

    def restart(self) -> None:
        self.start, self.tokens = time.perf_counter(), 0

    def speed(self) -> float | None:
        """Tokens per second of this interval, recorded for the median; None when it timed no
        step (the first call after a start or resume compiles and is not counted)."""
        elapsed = time.perf_counter() - self.start
        if not (self.tokens and elapsed > 0):
            return None
        speed = self.tokens / elapsed
        self.speeds.append(speed)
        return speed

    def median_speed(self) -> float | None:
        return float(np.median(self.speeds)) if self.speeds else None


def _is_boundary(count: int, every: int, total: int) -> bool:
    return count == total or (every > 0 and count % every == 0)


class Trainer:
    """One run: build everything, restore or initialise, then `run()` to the end or a stop."""

    def __init__(self, config, workdir: pathlib.Path, stop_signal, earlier_seconds: float = 0.0):
        """`earlier_seconds`: the earlier attempts' time, as the summary the last of them wrote
        says: a resumed run's wall_seconds is what the run took, not what this attempt did."""
        self.config, self.workdir, self.stop_signal = config, workdir, stop_signal
        self.leader = distributed.is_leader()
        self.wall_start = time.perf_counter()
        self.earlier_seconds = float(earlier_seconds)
        self.loader = data_lib.make_loader(
            config.data, batch_size=config.train.batch_size, seed=config.seed,
            process_index=jax.process_index(), process_count=jax.process_count(),
            train_cfg=config.train)
        self.model = model_config(config, self.loader.vocab_size)
        self.total_steps = budget.steps_for(config)
        # Corpus tokens read per step (a seq2seq row reads its source and its target).
        self.shapes = self.loader.objective.shapes
        self.tokens_per_step = config.train.batch_size * self.shapes.corpus
        try:
            mesh = parallel.make_mesh(config.mesh)
            mesh_shape = tuple(mesh.shape[name] for name in parallel.MESH_AXES)
            distributed.check_batch_split(mesh_shape, jax.process_count())
            # Before any batch is made or anything compiles: a run far larger than the device is
            # one line, not an out-of-memory traceback.
            warning = memory.check_fits(config, self.model, mesh_shape,
                                        hardware.device_memory_bytes())
            self._check_eval_memory()
            if warning and self.leader:
                log.warning("%s", warning)
            self.program = build_program(config, self.model, self.total_steps, mesh)
        except BaseException:
            self.loader.close()
            raise
        self.flops_per_token = {
            convention: flops.objective_flops_per_token(self.model, self.shapes, convention)
            for convention in ("6N", "full")}
        self.mfu_flops_per_token = flops.mfu_flops_per_token(self.model, config.data.seq_len,
                                                             self.shapes)
        self.peak = hardware.device_peak_flops(self.model.compute_dtype) * jax.device_count()
        self.checkpointer = Checkpointer(workdir, keep=config.checkpoint.keep,
                                         async_save=config.checkpoint.async_save)
        self.stable = branches.StableStates(workdir) if config.train.branch_steps else None
        try:
            with self.program.context():
                self.state, self.start, window = self._restore_or_init()
                if self.stable is not None:
                    branches.check_passed(config, workdir, self.start)
                self.eval_batches = self._eval_batches(config.train.eval_batches)
        except BaseException:
            self.close()
            raise
        for field in ("eval_batches", "final_eval_batches"):
            requested = config.train[field]
            if self.leader and requested and (cut := self.loader.eval_cut(f"train.{field}",
                                                                          requested)):
                print(f"note: {cut}", flush=True)
        self.metrics = StepMetrics(window, config.train.on_nonfinite == "stop")
        self.interval = Interval()
        self.count, self.status = self.start, status.COMPLETED
        self.compile_seconds, self.loop_start = 0.0, None
        self._open_logs()

    # -- start ------------------------------------------------------------------------------

    def _restore_or_init(self) -> tuple[Any, int, LossWindow]:
        """The newest checkpoint of this run; else, for a branch, its parent's stable state;
        else a fresh initialisation."""
        def resumable(meta: dict) -> None:
            # A different horizon, batches or optimizer under the saved state: refused, by the
            # settings that differ, before the state's layout is compared (which names arrays).
            why = resume_conflict(meta, self.config, self.total_steps, self.loader.corpus,
                                  self.loader.held_out)
            if why:
                raise IncompatibleCheckpoint(f"{why}; use a new --workdir or the run's settings")

        def branchable(meta: dict) -> None:
            # The branch's own cooldown (its length, floor, share and shape) is its to choose.
            stable_phase = {name: value for name, value in optimizer_fields(self.config).items()
                            if name not in branches.COOLDOWN_FIELDS}
            why = plan_conflict(meta, self.config, stable_phase,
                                f"the parent run {self.config.train.init_from} was trained",
                                self.loader.corpus)
            if why:
                raise IncompatibleCheckpoint(f"{why}; {PARENT_ADVICE}")

        restored = self.checkpointer.restore_latest(self.program.abstract_state, self.model,
                                                    check=resumable)
        if restored is not None:
            state, meta = restored
            where = f"checkpoint in {self.checkpointer.directory}"
        elif self.config.train.init_from:
            state, meta = branches.restore_parent(self.config, self.program.abstract_state,
                                                  self.model, check=branchable)
            where = f"the stable-phase state of {self.config.train.init_from}"
        else:
            if self.leader and (cut := budget.warmup_cut(self.config)):
                print(f"note: {cut}", flush=True)
            return self.program.init(jax.random.key(self.config.seed)), 0, LossWindow()
        if self.leader:
            print(f"resuming from step {meta['step']} ({where})", flush=True)
        return state, int(meta["step"]), LossWindow(**meta["loss_window"])

    def _on_mesh(self, batches) -> Iterator:
        """`batches` (this host's parts) as global arrays on the run's mesh, one at a time."""
        return (parallel.global_batch(batch, self.program.batch_sharding) for batch in batches)

    def _eval_batches(self, count: int) -> list:
        """The periodic evaluations' batches, made once and held for each of them."""
        return list(self._on_mesh(self.loader.eval_batches(count)))

    def _check_eval_memory(self) -> None:
        """ConfigError, before anything is built, when the periodic evaluations' batches, held for
        the whole run on the host (and their copies on the devices), would not fit in half the
        memory the host has free."""
        count = self.loader.eval_batch_count(self.config.train.eval_batches)
        one = sum(array.nbytes for array in next(self.loader.iter_eval_batches(1)).values())
        free = hardware.host_available_bytes()
        if 2 * count * one > free / 2:
            raise ConfigError("train.eval_batches", self.config.train.eval_batches,
                              f"at most {int(free / 4 / one):,} here: each evaluation's batches "
                              f"are held for the whole run ({2 * count * one / 2**30:,.1f} GiB "
                              f"with their copies on the devices; {free / 2**30:.1f} GiB of "
                              "memory is free)")

    def _open_logs(self) -> None:
        config, model = self.config, self.model
        self.metrics_log = (tracking.MetricsLog(self.workdir / "metrics.jsonl", self.start)
                            if self.leader else None)
        counts = flops.parameter_counts(model)
        planned_tokens = self.total_steps * self.tokens_per_step
        # The run's place in a scaling study, at the top of its W&B config for grouping and
        # filtering: N (non-embedding parameters), D (tokens), C (FLOPs of D, run's convention),
        # and the run a cooldown branch continues ("" for others).
        scale = {"N": counts.non_embedding, "N_total": counts.total, "D": planned_tokens,
                 "C": self.flops_for(planned_tokens)["flops"],
                 "flop_convention": config.train.flop_convention,
                 "parent": tracking.parent_name(config)}
        self.wandb_run = (tracking.WandbRun(config, self.workdir, name=config.name,
                                            config_dict={**config.to_dict(), **scale})
                          if self.leader else None)
        self.progress = tracking.Progress(self.total_steps, self.start)
        encoder_len, decoder_len = objectives.stack_lengths(model.layout, self.shapes)
        self.summary: dict[str, Any] = {
            "name": config.name, "config": config.to_dict(), "model": dataclasses.asdict(model),
            "params": counts.total, "embedding_params": counts.embedding,
            "non_embedding_params": counts.non_embedding,
            "flop_convention": config.train.flop_convention,
            "flops_per_token_6N": self.flops_per_token["6N"],
            "flops_per_token_full": self.flops_per_token["full"],
            "total_steps": self.total_steps, "tokens_per_step": self.tokens_per_step,
            "objective": config.train.objective,
            # Which tokenizer: a SentencePiece model trained on the corpus is retrained when the
            # corpus changes, and the readers of the run refuse another.
            tokenizers.RECORD_FIELD: self.loader.tokenizer.fingerprint,
            "encoder_tokens_per_step": config.train.batch_size * encoder_len,
            "decoder_tokens_per_step": config.train.batch_size * decoder_len,
            "train_tokens_available": self.loader.tokens_in_split,
            "devices": jax.device_count(), "mesh": dict(self.program.mesh.shape),
            "parametrization": model.parametrization, "peak_flops": self.peak,
            "start_step": config.train.init_step,
            "diverged_step": None, "final_train_loss": None, "final_eval_loss": None,
            "wandb_run_id": self.wandb_run.run_id if self.wandb_run else None,
        }
        # A resumed run's final losses so far come from the records it keeps (a run resumed at
        # its last step logs nothing new).
        for record in self.metrics_log.records if self.metrics_log else ():
            self._note_losses(record)

    # -- quantities -------------------------------------------------------------------------

    def flops_for(self, tokens: int) -> dict:
        """Training FLOPs of `tokens` under the run's convention and both named ones."""
        return {"flops": tokens * self.flops_per_token[self.config.train.flop_convention],
                "flops_6N": tokens * self.flops_per_token["6N"],
                "flops_full": tokens * self.flops_per_token["full"]}

    def mfu(self, tokens_per_second: float | None) -> float | None:
        """Model FLOPs utilisation (PaLM's count, `flops.mfu_flops_per_token`) over the peak."""
        if not tokens_per_second:
            return None
        return tokens_per_second * self.mfu_flops_per_token / self.peak

    def evaluate(self, batches: list, step=None) -> tuple[float, float]:
        """Mean held-out loss per target token over `batches` under `step` (the program's eval
        step by default), and its standard error (`step.batches_mean`)."""
        step = step or self.program.eval_step
        results = jax.device_get([step(self.state, batch) for batch in batches])
        return batches_mean([result["loss"] for result in results],
                            [result["target_tokens"] for result in results])

    def _continuation_loss(self, num_batches: int) -> dict:
        """The continuation task's loss (`train.continuation_tokens`) on the windows of the
        final evaluation, each model scored over the corpus vocabulary (a decoder's whole
        vocabulary; an encoder–decoder's without its sentinels and other special tokens), and its
        standard error."""
        batches = self._on_mesh(self.loader.continuation_batches(
            num_batches, self.config.train.continuation_tokens))
        loss, stderr = self.evaluate(batches, self.program.continuation_step)
        return {"continuation_loss": loss, "continuation_stderr": stderr}

    def _note_losses(self, record: dict) -> None:
        self.summary["final_train_loss"] = record.get("train_loss")
        if record.get("eval_loss") is not None:
            self.summary["final_eval_loss"] = record["eval_loss"]
            self.summary["final_eval_stderr"] = record.get("eval_stderr")
            self.summary["final_eval_tokens"] = record.get("eval_tokens")
        if record.get("continuation_loss") is not None:
            self.summary["final_continuation_loss"] = record["continuation_loss"]
            self.summary["final_continuation_stderr"] = record.get("continuation_stderr")

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict:
        """Train to the end, a divergence or a stop; write the summary; return it."""
        iterator = self.loader.iterate(self.start)
        self.interval.restart()
        try:
            with self.program.context():
                if self.stop_signal.requested and self.start < self.total_steps:
                    # Stopped before any step: nothing changed, nothing to save.
                    self.status = self.stop_signal.requested
                else:
                    self._steps(iterator)
        except BaseException:
            self.status = status.FAILED
            raise
        finally:
            getattr(iterator, "close", lambda: None)()
            self._finish()
        return self.summary

    def _steps(self, iterator) -> None:
        """Steps from `self.start`, one call at a time, `train.steps_per_call` = K in a call
        where `_chunk_starts` says and one elsewhere; after each call, whatever boundary its last
        step is."""
        per_call = self.config.train.steps_per_call
        chunk: list[dict] = []
        for step_index, local_batch in iterator:
            if step_index >= self.total_steps:
                return
            if step_index == self.start:  # before the first step: do the hosts feed right?
                distributed.check_batch_feeds(local_batch, self.program.batch_sharding,
                                              self.config.train.batch_size)
            if per_call == 1:
                batch = parallel.global_batch(local_batch, self.program.batch_sharding)
                self.state, step_metrics = self.program.train_step(self.state, batch)
                steps = 1
            else:
                chunk.append(local_batch)
                if len(chunk) < per_call and (len(chunk) > 1 or self._chunk_starts(step_index)):
                    continue
                # One step runs in the same program, its batch in every slot, the others off.
                steps, slots = len(chunk), chunk + chunk[-1:] * (per_call - len(chunk))
                stacked = {name: np.stack([batch[name] for batch in slots]) for name in local_batch}
                self.state, step_metrics = self.program.train_steps(
                    self.state, parallel.global_batch(stacked, self.program.stacked_batch_sharding),
                    np.arange(per_call) < steps)
                chunk = []
            if not self._after_call(step_metrics, steps, step_index + 1):
                return

    def _chunk_starts(self, count: int) -> bool:
        """Whether the steps after `count` run `train.steps_per_call` = K in one call: where
        `count` is a multiple of K and none of the K - 1 steps after it is a boundary (the last
        may be). A function of the step alone, so a run resumed at any step it could stop at
        makes the same calls as one that never stopped."""
        steps = self.config.train.steps_per_call
        if steps == 1 or count % steps:
            return False
        return not any(any(self._scheduled(later)) for later in range(count + 1, count + steps))

    def _scheduled(self, count: int) -> tuple[bool, bool, bool, bool]:
        """Whether the config logs, evaluates, saves, and saves a stable state for a branch
        after step `count`."""
        train, total = self.config.train, self.total_steps
        return (_is_boundary(count, train.log_every, total),
                _is_boundary(count, train.eval_every, total),
                _is_boundary(count, self.config.checkpoint.every_steps, total),
                self.stable is not None and count in train.branch_steps)

    def _after_call(self, step_metrics: dict, steps: int, count: int) -> bool:
        """After a call of `steps` steps ending at step `count`: read their metrics one call
        behind, and act on the boundary; False to stop."""
        self.count = count
        self.metrics.push(count, step_metrics, steps)
        if count - steps == self.start:  # the first call
            if not self._first_step_done():
                return False
        else:
            self.interval.tokens += steps * self.tokens_per_step
            if not self.metrics.drain(1):
                self.status = status.DIVERGED
                return False
        return self._boundary(steps)

    def _preemption_reached(self, count: int, steps: int) -> bool:
        """Whether JAX's preemption service has every process stop after the call of `steps`
        steps that ended at step `count`. The service stops at the step after the highest any
        process has reported, and Orbax reports the step of each save: each step of the call is
        reported, in order, so that the call holding that step ends the run on every process."""
        return any(self.checkpointer.reached_preemption(step)
                   for step in range(count - steps + 1, count + 1))

    def _first_step_done(self) -> bool:
        """The first call compiles: time it, then start the clocks. False if it diverged."""
        if not self.metrics.drain(0):
            self.status = status.DIVERGED
            return False
        self.compile_seconds = time.perf_counter() - self.interval.start
        self.loop_start = time.perf_counter()
        self.progress.restart_clock(self.count, self.compile_seconds)
        self.interval.restart()
        return True

    def _boundary(self, steps: int) -> bool:
        """Log, evaluate, save and check for a stop where the config says, after a call of
        `steps` steps; False to stop."""
        count, total = self.count, self.total_steps
        stop = self.stop_signal.requested or (
            (status.INTERRUPTED if self.stop_signal.interrupted else status.PREEMPTED)
            if jax.process_count() > 1 and self._preemption_reached(count, steps) else None)
        preempted = stop is not None
        log_now, eval_now, save_now, branch_now = self._scheduled(count)
        if not (log_now or eval_now or save_now or preempted or branch_now):
            return True
        if not self.metrics.drain(0):
            self.status = status.DIVERGED
            return False
        if log_now or eval_now:
            self._log(eval_now)
        if branch_now:  # committed first: a checkpoint past a branch step implies its state
            self.stable.save(count, self.state, self._meta())
        if save_now or preempted:
            self.checkpointer.save(count, self.state, self._meta(),
                                   wait=preempted or count == total)
        if preempted and count < total:
            self.status = stop
            return False
        self.interval.restart()
        return True

    def _log(self, eval_now: bool) -> None:
        speed = self.interval.speed()
        eval_loss = eval_stderr = eval_tokens = None
        continuation = {}
        eval_start = time.perf_counter()
        if eval_now:
            batches, count = self.eval_batches, len(self.eval_batches)
            if self.count == self.total_steps and self.config.train.final_eval_batches:
                count = self.loader.eval_batch_count(self.config.train.final_eval_batches)
                # Read once, each made as it is scored: the whole held-out split can be many.
                batches = self._on_mesh(self.loader.iter_eval_batches(count))
            eval_loss, eval_stderr = self.evaluate(batches)
            eval_tokens = self.loader.eval_rows(count) * self.shapes.corpus
            if self.count == self.total_steps and self.config.train.continuation_tokens:
                continuation = self._continuation_loss(count)
        tokens = self.count * self.tokens_per_step
        record = {
            "step": self.count, "tokens": tokens, **self.flops_for(tokens),
            "train_loss": self.metrics.window.mean(), "eval_loss": eval_loss,
            "eval_stderr": eval_stderr, "eval_tokens": eval_tokens,
            "lr": float(self.metrics.last.get("lr", float("nan"))),
            "grad_norm": float(self.metrics.last.get("grad_norm", float("nan"))),
            "target_tokens": float(self.metrics.last.get("target_tokens", float("nan"))),
            "skipped_steps": self.metrics.window.skipped, "tokens_per_second": speed,
            "mfu": self.mfu(speed), "eval_seconds": time.perf_counter() - eval_start,
            **continuation,
        }
        self._note_losses(record)
        if self.leader:
            self.metrics_log.write(record)
            self.wandb_run.log(record)
            self.progress.show(record)
        self.metrics.next_window()

    def _meta(self) -> dict:
        """What a checkpoint records beside the state: where the run was, what decides its
        batches and updates, its model, and its whole config (what the commands that read a
        run use when it was killed before writing summary.json)."""
        return {"step": self.count, **batch_fields(self.config), CORPUS_FIELD: self.loader.corpus,
                tokenizers.RECORD_FIELD: self.loader.tokenizer.fingerprint,
                HELD_OUT_FIELD: self.loader.held_out,
                **optimizer_fields(self.config),
                "total_steps": self.total_steps,
                "loss_window": dataclasses.asdict(self.metrics.window),
                "model": dataclasses.asdict(self.model),
                "config": json.loads(json.dumps(self.summary["config"], default=str))}

    # -- the end ----------------------------------------------------------------------------

    def close(self, failed: bool = False) -> None:
        """Stop the loader; wait for the save in flight (the stable states' are synchronous). A
        `failed` process of a multi-process run waits for it half a heartbeat timeout
        (`distributed.heartbeat_seconds`) at most: a save commits once every process has written
        its part, which a partner that died never does, and JAX's runtime aborts this process a
        heartbeat timeout after that death. A save not committed by then is lost; the run
        resumes from the one before."""
        self.loader.close()
        seconds = self.config.distributed.heartbeat_seconds / 2
        deadline = time.monotonic() + seconds if failed and jax.process_count() > 1 else None
        try:
            if not self.checkpointer.close(deadline):
                log.warning("the checkpoint of step %d in %s was not committed within %.0f s: "
                            "each process writes its part, and one may be gone; a rerun resumes "
                            "from the newest committed one", self.checkpointer.last_saved,
                            self.checkpointer.directory, seconds)
        finally:
            if self.stable is not None:
                self.stable.close()

    def _finish(self) -> None:
        loop_end = time.perf_counter()
        try:
            self.close(failed=self.status == status.FAILED)
        finally:
            self._write_summary(loop_end)
        if self.leader and self.status != status.COMPLETED:
            where = (f" at step {self.metrics.diverged_step} (non-finite loss or gradient)"
                     if self.status == status.DIVERGED
                     else f" at step {self.count}; rerun to resume" if self.status == status.INTERRUPTED
                     else f" at step {self.count}; rerun the same command to resume"
                     + (" from its last checkpoint" if self.status == status.FAILED else ""))
            print(f"run {self.status}{where}", flush=True)

    def _write_summary(self, loop_end: float) -> None:
        diverged = self.status == status.DIVERGED
        steps_done = self.metrics.diverged_step - 1 if diverged else self.count
        tokens = steps_done * self.tokens_per_step
        speed = self.interval.median_speed()
        if speed is None and self.metrics_log is not None:
            # Resumed at its last step, it trained none here: the speed its attempts logged.
            logged = [record["tokens_per_second"] for record in self.metrics_log.records
                      if record.get("tokens_per_second")]
            speed = float(np.median(logged)) if logged else None
        self.summary.update({
            "status": self.status, "steps": steps_done, "tokens": tokens,
            **self.flops_for(tokens), "diverged_step": self.metrics.diverged_step,
            # Updates dropped for a non-finite loss or gradient (train.on_nonfinite="skip").
            "skipped_steps": self.metrics.window.skipped,
            "tokens_per_second": speed, "mfu": self.mfu(speed),
            "compile_seconds": self.compile_seconds,
            # Every attempt that wrote its summary (one killed outright wrote none).
            "wall_seconds": self.earlier_seconds + time.perf_counter() - self.wall_start,
            # Calls after the first, with their logging, evals and saves (not the final wait).
            "loop_seconds": loop_end - self.loop_start if self.loop_start is not None else None,
        })
        if self.leader:
            self.metrics_log.close()
            files.write_json_atomic(self.workdir / "summary.json", self.summary)
            self.wandb_run.finish(self.summary)

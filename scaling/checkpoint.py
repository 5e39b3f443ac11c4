"""Checkpoints on disk with Orbax: the train state plus a JSON record of where the run was.

The record holds the step (which is also the data position: batches are a pure function of
(seed, step)), the fields that decide the batches and the optimizer's updates (the trainer refuses
a resume that changes them), the train-loss accumulator of the current logging window, and the
resolved model config, so a restart resumes bit-exactly and a restart with an incompatible model
config is refused. Saves are asynchronous; Orbax writes each step into a temporary directory and
renames it when complete, so a kill mid-save leaves the previous checkpoints intact, and it deletes
checkpoints beyond `keep` only in the save's finalize step, after the new one is committed (a save
that fails deletes nothing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import threading
import time
from typing import Any, Callable, Iterator

import jax
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from scaling import files, interrupts
from scaling.config import COMPUTE_ONLY_MODEL_FIELDS, ModelConfig
from scaling.errors import IncompatibleCheckpoint

log = logging.getLogger(__name__)


def _not_a_missing_step_metadata_file(record: logging.LogRecord) -> bool:
    """Orbax warns, on opening a folder, of each step there without its `_CHECKPOINT_METADATA`:
    a step whose deletion (`keep`) a kill cut short, which the next save's deletes; a step that
    cannot be read is reported by `restore_latest` in its own words."""
    return not record.getMessage().startswith("Metadata file does not exist: ")


logging.getLogger("absl").addFilter(_not_a_missing_step_metadata_file)


def committed_steps(workdir: pathlib.Path, folder: str = "checkpoints") -> list[int]:
    """Steps with a committed save under `<workdir>/<folder>` (Orbax names a step's folder by the
    step once its save is complete), read without Orbax, which would create the folder."""
    path = pathlib.Path(workdir) / folder
    if not path.is_dir():
        return []
    return sorted(int(entry.name) for entry in path.iterdir()
                  if entry.is_dir() and entry.name.isdigit())


# What a run's own checkpoints are called in its errors (a branch's parent's states are named
# by the parent).
WORKDIR_CHECKPOINT = "the workdir's checkpoint"
# The owner named by the commands that read a finished run (scaling-eval, -sample, -attention):
# they build the model from the run's summary.json, which they cannot change.
RUN_CHECKPOINT = "the run's checkpoint"


class Checkpointer:
    """Save and restore one run's checkpoints under `<workdir>/<folder>` (`checkpoints`, or
    `stable` for the states a run keeps for its cooldown branches), the newest `keep` of them
    (None: all).

    `read_only` opens a folder another process may be writing (a branch reading its parent's
    stable states, `scaling-eval` reading a run) to restore only: it creates, deletes, moves and
    cleans up nothing there, so a save in flight — its temporary folder — is left alone."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int | None, async_save: bool = True,
                 folder: str = "checkpoints", read_only: bool = False,
                 owner: str = WORKDIR_CHECKPOINT):
        self.directory = pathlib.Path(workdir).absolute() / folder
        self.read_only = read_only
        self.owner = owner  # what its states are called in an error: the workdir's, a parent's
        self.last_saved: int | None = None  # the step of the latest save started
        options = dict(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
        if read_only:  # (orbax's own read_only option logs warnings on every open)
            options = dict(max_to_keep=None, create=False, cleanup_tmp_directories=False)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=async_save, **options),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, *, wait: bool = False) -> None:
        """Start saving `state` and `meta` at `step` (returns at once unless `wait`)."""
        self.last_saved = step
        with self._disk_full_is_oserror():
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
            if wait:
                self._manager.wait_until_finished()

    @contextlib.contextmanager
    def _disk_full_is_oserror(self) -> Iterator[None]:
        """A save (this one, or the one in flight it waits for) that the file system refused for
        want of room comes out of Orbax as any error with the OS's words in it: it becomes the
        OSError it is (ENOSPC or EDQUOT, naming the folder), which the commands report in one
        line."""
        try:
            yield
        except Exception as error:
            number = files.no_space_in(str(error))
            if number is None:
                raise
            raise OSError(number, os.strerror(number), str(self.directory)) from None

    def restore_latest(self, abstract_state: Any, model: ModelConfig,
                       check: Callable[[dict], None] | None = None) -> tuple[Any, dict] | None:
        """Restore the newest readable checkpoint onto `abstract_state`'s shardings (any mesh).

        An unreadable newest checkpoint (truncated or corrupted files) is reported, moved aside to
        `<folder>/unreadable-<step>` unless read-only (kept, never deleted: the failure may be a
        passing storage error) and the previous one is tried. Returns None when there is nothing
        to resume from.
        Raises IncompatibleCheckpoint when the newest readable checkpoint holds a different model
        or state layout (or `check` of its record raises it), or when checkpoints exist but none
        of them can be read; JAX's error as it is when the device runs out of memory (the files
        are not at fault, and nothing is moved)."""
        unreadable, steps, reason = [], list(reversed(self.steps())), ""
        _quiet_abandoned_reads()  # before the reads: a restore that fails prints some
        for step in steps:
            try:
                restored = self.restore(step, abstract_state, model, check)
            except IncompatibleCheckpoint:
                raise
            except Exception as error:  # any unreadable file: fall back to an older checkpoint
                if isinstance(error, jax.errors.JaxRuntimeError) and (
                        "RESOURCE_EXHAUSTED" in str(error)):
                    raise  # the device's memory, not the files: an older one would fail too
                reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
                unreadable.append(step)
                if step != steps[-1]:  # the last one's is said in the error below
                    log.warning("checkpoint at step %d is unreadable (%s); trying the previous "
                                "one", step, reason)
                continue
            self._move_aside(unreadable)
            return restored
        if unreadable:
            self._move_aside(unreadable, quiet=True)
            raise IncompatibleCheckpoint(
                f"no checkpoint in {self.directory} could be read (steps {sorted(unreadable)}"
                + (f"; step {steps[-1]}: {reason})" if self.read_only else
                   f"; step {steps[-1]}: {reason}; now moved to unreadable-<step>); rerun to "
                   "start from scratch, or use a new --workdir"))
        return None

    def restore(self, step: int, abstract_state: Any, model: ModelConfig,
                check: Callable[[dict], None] | None = None) -> tuple[Any, dict]:
        """The state and record saved at `step`, onto `abstract_state`'s shardings. Raises
        IncompatibleCheckpoint for a different model or state layout, after `check` of the
        record (its settings name what differs, where a layout names only arrays)."""
        meta = self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
        check_compatible(meta.get("model", {}), model, self.owner)
        if check is not None:
            check(meta)
        saved_state = self._manager.item_metadata(step)["state"]
        if saved_state is None or not _layout(saved_state):
            # Every state has arrays: none listed is a damaged checkpoint (its _METADATA lost),
            # for restore_latest to set aside, not another layout to refuse.
            raise ValueError(f"checkpoint {step} lists no arrays in its state metadata")
        target = _with_schedule_counter(saved_state, abstract_state) or abstract_state
        check_same_layout(saved_state, target, self.owner)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        state = restored["state"]
        if target is not abstract_state:  # the counter is state["step"], which the step reads
            state = {**state, "opt_state": (*state["opt_state"][:-1], optax.EmptyState())}
        return state, restored["meta"]

    def _move_aside(self, steps: list[int], quiet: bool = False) -> None:
        """Move the checkpoints of `steps` to `unreadable-<step>`, each said in a warning unless
        `quiet` (the caller's error says it)."""
        if self.read_only:
            return
        for step in steps if jax.process_index() == 0 else ():
            target = self.directory / f"unreadable-{step}"
            suffix = 0
            while target.exists():
                suffix += 1
                target = self.directory / f"unreadable-{step}.{suffix}"
            os.replace(self.directory / str(step), target)
            if not quiet:
                log.warning("moved the unreadable checkpoint of step %d to %s", step, target)
        if steps:
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("scaling:unreadable_checkpoints_moved")
            self._manager.reload()

    def reached_preemption(self, step: int) -> bool:
        """True on every host at the same step once any host was told to stop (multi-host sync)."""
        return self._manager.reached_preemption(step)

    def wait(self) -> None:
        """Block until the save in flight (if any) is committed."""
        with self._disk_full_is_oserror():
            self._manager.wait_until_finished()

    def close(self, deadline: float | None = None) -> bool:
        """Wait for the save in flight and for Orbax's sweep of unfinished saves, which it starts
        in the background when it opens the folder and its own `close` leaves running: a run
        refused at once removes its new workdir after this, under the sweep's feet.

        With a `deadline` (`time.monotonic()`), wait until then at most, or until the latest
        save is committed (its folder renamed: what Orbax does after that waits on the other
        processes too): False if it was not, left to finish or fail in the background (a process
        that exits then loses it; its temporary folder is swept when the folder is next
        opened)."""
        if deadline is not None:
            done, failure = threading.Event(), []

            def close():
                try:
                    self.close()
                except BaseException as error:  # raised in the caller's thread
                    failure.append(error)
                finally:
                    done.set()

            def committed() -> bool:
                return self.last_saved is None or self.last_saved in committed_steps(
                    self.directory.parent, self.directory.name)

            threading.Thread(target=close, name="checkpoint close", daemon=True).start()
            while not done.wait(0.1):
                if committed():
                    return True
                if time.monotonic() > deadline:
                    return False
            if failure:
                raise failure[0]
            return True
        with self._disk_full_is_oserror():
            try:
                self._manager.wait_until_finished()
                self._manager._maybe_await_cleanup_tmp_directory()  # (Orbax's own, private)
            finally:
                # Orbax raises each failed write once, from whichever wait meets it first: the
                # save's finalisation can fail on its metadata and leave the arrays' refusal
                # for this close to raise.
                self._manager.close()
        return True


def _quiet_abandoned_reads() -> None:
    """Leave out the notices of an unreadable checkpoint's reads: Orbax gives up the rest when
    one fails, and each is printed with its traceback later (some sixty for a small model), as
    it is collected with its error never retrieved (Python's unraisable hook, asyncio's log) or
    as it finishes into the event loop Orbax has closed since. The checkpoint's own line says
    it is unreadable."""
    interrupts.drop_unraisable(_abandoned_read)
    asyncio_log = logging.getLogger("asyncio")
    if _not_an_abandoned_read not in asyncio_log.filters:
        asyncio_log.addFilter(_not_an_abandoned_read)


def _in_orbax(traceback) -> bool:
    """Whether `traceback` passes through Orbax's code."""
    while traceback is not None:
        if f"{os.sep}orbax{os.sep}" in traceback.tb_frame.f_code.co_filename:
            return True
        traceback = traceback.tb_next
    return False


def _abandoned_read(unraisable) -> bool:
    """Whether an unraisable notice is one of an abandoned read's (`_quiet_abandoned_reads`)."""
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
        return True  # raised where TensorStore calls back into the loop: no frame of Orbax's
    return _in_orbax(unraisable.exc_traceback)


def _not_an_abandoned_read(record: logging.LogRecord) -> bool:
    # asyncio's own words, for a task or future whose error no one awaited (in these commands,
    # only Orbax's and TensorStore's run on asyncio)
    return not str(record.msg).split("\n", 1)[0].endswith("exception was never retrieved")


# What to do when a branch's parent's state does not fit the branch's config: a new workdir
# for the branch would not help.
PARENT_ADVICE = "give the run the settings its parent was trained with, or another train.init_from"


def _use_instead(owner: str) -> str:
    """What to do when `owner`'s state does not fit the config."""
    if owner == RUN_CHECKPOINT:
        return ("the run's summary.json, which gives the config here, disagrees with it: read the "
                "run with the version of scaling that trained it")
    return ("use a new --workdir or the checkpoint's settings" if owner == WORKDIR_CHECKPOINT
            else PARENT_ADVICE)


# Model fields that another field sets unless they are given: a difference there is most often
# a change of that field.
SET_BY = {"max_seq_len": ", set by data.seq_len unless given",
          "num_encoder_layers": ", set by model.num_layers unless given",
          "num_kv_heads": ", set by model.num_heads unless given",
          "head_dim": ", set by model.d_model and model.num_heads unless given",
          "d_ff": ", set by model.d_model unless given",
          "vocab_size": ", set by the tokenizer and train.objective unless given",
          "document_mask": ", set by data.document_mask",
          "source_pad_id": ", set by the tokenizer and train.objective"}


def check_compatible(saved_model: dict, model: ModelConfig,
                     owner: str = WORKDIR_CHECKPOINT) -> None:
    """Refuse to resume (`owner`: or start a branch from) a checkpoint whose model differs from
    the config (e.g. µP vs standard)."""
    current = dataclasses.asdict(model)
    differing = [name for name, value in saved_model.items()
                 if name in current and current[name] != value
                 and name not in COMPUTE_ONLY_MODEL_FIELDS]
    if differing:
        details = ", ".join(f"model.{name}{SET_BY.get(name, '')}: checkpoint "
                            f"{saved_model[name]!r}, config {current[name]!r}"
                            for name in differing)
        raise IncompatibleCheckpoint(
            f"{owner} was trained with a different model ({details}); {_use_instead(owner)}")


def check_same_layout(saved_state: Any, abstract_state: Any,
                      owner: str = WORKDIR_CHECKPOINT) -> None:
    """Refuse a checkpoint whose state tree, shapes or dtypes differ from what the config builds
    (e.g. another optimizer): restoring it would fail, and it is not a damaged checkpoint."""
    saved, wanted = _layout(getattr(saved_state, "tree", saved_state)), _layout(abstract_state)
    if saved != wanted:
        differing = sorted(set(saved) ^ set(wanted)) or sorted(
            name for name in saved if saved[name] != wanted[name])
        raise IncompatibleCheckpoint(
            f"{owner} holds a different train state ({len(differing)} entries differ, e.g. "
            f"{differing[0]}); {_use_instead(owner)}")


def _with_schedule_counter(saved_state: Any, abstract_state: Any) -> Any | None:
    """`abstract_state` as checkpoints written before the train step read the schedule's
    placement at run time hold it: the optimizer's last state then was optax's schedule counter,
    one int32 `count` equal to the state's step, where it is now empty. None for any other
    checkpoint."""
    opt_state = abstract_state.get("opt_state") if isinstance(abstract_state, dict) else None
    if not isinstance(opt_state, tuple) or not opt_state or opt_state[-1] != optax.EmptyState():
        return None
    counter = f"opt_state/{len(opt_state) - 1}/count"
    saved, wanted = _layout(getattr(saved_state, "tree", saved_state)), _layout(abstract_state)
    if set(saved) != set(wanted) | {counter} or saved[counter] != ((), "int32"):
        return None
    count = jax.ShapeDtypeStruct((), jax.numpy.int32,
                                 sharding=getattr(abstract_state.get("step"), "sharding", None))
    return {**abstract_state,
            "opt_state": (*opt_state[:-1], optax.ScaleByScheduleState(count=count))}


def _layout(tree: Any) -> dict[str, tuple]:
    """{"opt_state/1/mu/...": (shape, dtype)}: Orbax's metadata stores named tuples as dicts, so
    path entries are compared by name or index, not by container type."""
    def name(entry) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                return str(getattr(entry, attribute))
        return str(entry)

    return {"/".join(name(entry) for entry in path): (tuple(leaf.shape), str(leaf.dtype))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}

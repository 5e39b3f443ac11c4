"""Cooldown branches of a warmup–stable–decay run (Hägele et al. 2024, "Scaling Laws and
Compute-Optimal Training Beyond Fixed Training Durations").

A WSD run of T steps holds its learning rate constant until its cooldown, so up to that point it
is step for step the same as a WSD run of any shorter length S with the same warmup: both see the
same batches (a pure function of (seed, step)) at the same rate. A run of S steps therefore needs
only its own cooldown: it starts from the longer run's state at `optim.wsd_decay_start(S)`.

- The long run (the *parent*) lists those steps in `train.branch_steps` and saves its state at each
  in `<workdir>/stable/` (kept, never rotated out).
- Each *branch* is a run of its own (own workdir, checkpoints, metrics, summary, results row) with
  `train.steps = S`, `train.init_from = <parent workdir>`, `train.init_step = wsd_decay_start(S)`:
  it restores the parent's stable state, then trains and checkpoints like any run, so a killed
  branch resumes from its own newest checkpoint. Its batches and its optimizer must be the
  parent's; its cooldown (`COOLDOWN_FIELDS`) is its own.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax

from scaling import files
from scaling.checkpoint import Checkpointer, committed_steps
from scaling.config import ModelConfig
from scaling.errors import ConfigError, IncompatibleCheckpoint

STABLE_FOLDER = "stable"
# The `optim` fields that shape only the cooldown: a branch may set its own (its learning rate
# before them is the parent's whatever they are); every other one it shares with its parent.
COOLDOWN_FIELDS = ("optim.min_lr_ratio", "optim.decay_fraction", "optim.decay_shape")


class StableStates:
    """The parent's side: save the state at each branch step, all of them kept.

    Each save is committed before `save` returns, and the trainer saves it before the step's
    checkpoint: a run resumed from a checkpoint past a branch step (after a kill at any moment)
    never lacks that step's state, which it would not train again."""

    def __init__(self, workdir: pathlib.Path):
        # No retention: an attempt with fewer or other `train.branch_steps` than an earlier one
        # must not delete the states the earlier one saved (branches may start from them).
        self._checkpointer = Checkpointer(workdir, keep=None, async_save=False,
                                          folder=STABLE_FOLDER)

    def save(self, step: int, state: Any, meta: dict) -> None:
        if step not in self._checkpointer.steps():
            self._checkpointer.save(step, state, meta, wait=True)

    def close(self) -> None:
        self._checkpointer.close()


def passed_steps(config, workdir: pathlib.Path, step: int, listed: tuple = ()) -> list[int]:
    """The steps of `train.branch_steps` that the run in `workdir`, now at `step`, passed without
    saving its stable state: a run saves one only as it trains that step, so a branch of it could
    never start. The steps an earlier attempt `listed` it saved as it passed them (a state of
    theirs that is gone was removed since)."""
    saved = set(committed_steps(workdir, STABLE_FOLDER)) | set(listed)
    return sorted(branch for branch in config.train.branch_steps
                  if branch <= step and branch not in saved)


def check_passed(config, workdir: pathlib.Path, step: int, listed: tuple = ()) -> None:
    """IncompatibleCheckpoint when `train.branch_steps` lists a step the run has passed without
    saving its stable state (`passed_steps`)."""
    passed = passed_steps(config, workdir, step, listed)
    if passed:
        raise IncompatibleCheckpoint(
            f"train.branch_steps lists {passed}, which the run in {workdir} has passed (it is "
            f"at step {step}) without saving a stable state there (a run saves one only as it "
            f"trains that step); train the run in a new --workdir to have them, or leave them "
            f"out")


def check_parent(config) -> None:
    """ConfigError when a branch's `train.init_from` holds no stable-phase states: checked by
    `scaling-train` (its dry run too) before anything is built. A sweep plans its branches before
    their parents have trained, and checks each when it starts it."""
    parent = config.train.init_from
    if parent and not (pathlib.Path(parent) / STABLE_FOLDER).is_dir():
        raise ConfigError("train.init_from", parent,
                          f"the workdir of a parent run that saved stable-phase states "
                          f"({STABLE_FOLDER}/): train it with train.branch_steps first")


def restore_parent(config, abstract_state: Any, model: ModelConfig,
                   check: Callable[[dict], None] | None = None) -> tuple[Any, dict]:
    """The branch's side: the parent's stable state at `train.init_step` (`check` of its record
    first, as `Checkpointer.restore` takes it). IncompatibleCheckpoint when there is none there,
    or it cannot be read."""
    parent, step = pathlib.Path(config.train.init_from), config.train.init_step
    if not (parent / STABLE_FOLDER).is_dir():
        raise IncompatibleCheckpoint(
            f"train.init_from={str(parent)!r} holds no stable-phase states ({STABLE_FOLDER}/); "
            "train the parent run (with train.branch_steps) first")
    checkpointer = Checkpointer(parent, keep=1_000_000, async_save=False, folder=STABLE_FOLDER,
                                read_only=True,
                                owner=f"the stable state of train.init_from={str(parent)!r}")
    try:
        if step not in checkpointer.steps():
            saved = f"the parent run {parent} saved no stable state at step {step} (it has " \
                    f"{checkpointer.steps() or 'none'})"
            if _trained_to(parent) >= step:  # its rerun would not train that step again
                raise IncompatibleCheckpoint(
                    f"{saved}, and it trained past that step: train the parent again in a new "
                    f"workdir with {step} in train.branch_steps, and use that as train.init_from")
            raise IncompatibleCheckpoint(f"{saved}; train it with {step} in train.branch_steps")
        try:
            return checkpointer.restore(step, abstract_state, model, check)
        except (IncompatibleCheckpoint, OSError, jax.errors.JaxRuntimeError):
            raise  # another model, a storage error, the device's memory: said as such
        except Exception as error:  # truncated or damaged files: not the branch's to set aside
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise IncompatibleCheckpoint(
                f"the stable state of train.init_from={str(parent)!r} at step {step} cannot be "
                f"read ({type(error).__name__}: {reason}); train the parent run again (delete "
                "its workdir and rerun it, or its sweep), or use another train.init_from"
                ) from None
    finally:
        checkpointer.close()


def _trained_to(workdir: pathlib.Path) -> int:
    """The furthest step the run in `workdir` reached, by its summary or its checkpoints."""
    steps = (files.read_summary(workdir) or {}).get("steps")
    return max([*committed_steps(workdir), steps if isinstance(steps, int) else 0])

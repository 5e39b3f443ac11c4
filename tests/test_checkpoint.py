"""`scaling.checkpoint` and the checkpoints a run leaves.

- Orbax deletes checkpoints beyond `keep` only once the new one is committed: while a save is still
  writing, and after a save that fails, the last good checkpoint is on disk (its finalize step is
  held or broken by patching Orbax's atomic rename).
- An unreadable checkpoint is moved aside, never deleted; with none readable the run is refused.
- A diverged run (learning rate 1e6) stops at the first step whose loss or gradient norm is
  non-finite, found here by a separate jitted run, and every checkpoint it leaves restores finite.
"""

import asyncio
import dataclasses
import errno
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, run_python, small_disk
from orbax.checkpoint._src.path import atomicity, temporary_paths

from scaling import optim
from scaling.checkpoint import Checkpointer, IncompatibleCheckpoint
from scaling.config import ModelConfig, default_config, model_config

DIVERGING = ["--config", "configs/demo.py:runlocal", "--config.optim.lr=1e6",
             "--config.checkpoint.every_steps=1", "--config.checkpoint.keep=3"]


def small_state(value: float) -> dict:
    return {"step": jnp.asarray(int(value), jnp.int32),
            "params": {"w": jnp.full((4, 8), value, jnp.float32)}}


def save_steps_1_and_2(workdir: pathlib.Path) -> None:
    """Checkpoints of steps 1 and 2 in `workdir`, each state filled with its step."""
    checkpointer = Checkpointer(workdir, keep=3)
    for step in (1, 2):
        checkpointer.save(step, small_state(float(step)), {"step": step}, wait=True)
    checkpointer.close()


def abstract(state: dict) -> dict:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


@pytest.fixture
def model() -> ModelConfig:
    return model_config(default_config(), vocab_size=256)


def step_directories(workdir: pathlib.Path) -> list[str]:
    return sorted(path.name for path in (workdir / "checkpoints").iterdir())


def held_commits(monkeypatch, after: str | None = None) -> tuple[threading.Event, threading.Event]:
    """(reached, release): Orbax's commit of a save (the rename of each temporary folder) held
    until `release` is set, before every rename, or, with `after` a folder's name, just after
    that folder's."""
    reached, release = threading.Event(), threading.Event()
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def held(self):
        if after is None:
            reached.set()
            await asyncio.to_thread(release.wait, 120)
        await original(self)
        if self.get_final().name == after:
            reached.set()
            await asyncio.to_thread(release.wait, 120)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", held)
    return reached, release


def test_old_checkpoint_survives_until_the_new_one_is_committed(tmp_path, monkeypatch, model):
    checkpointer = Checkpointer(tmp_path, keep=1, async_save=True)
    checkpointer.save(1, small_state(1.0), {"step": 1}, wait=True)
    renaming, release = held_commits(monkeypatch)
    checkpointer.save(2, small_state(2.0), {"step": 2})  # returns while step 2 is being written
    assert renaming.wait(60)
    assert "1" in step_directories(tmp_path) and "2" not in step_directories(tmp_path)
    release.set()
    checkpointer.close()
    assert [name for name in step_directories(tmp_path) if name.isdigit()] == ["2"]


def test_close_with_a_deadline_leaves_a_save_that_cannot_commit(tmp_path, monkeypatch, model):
    # A failed process of a multi-process run: its save in flight commits only once the other
    # processes have written their parts, and a dead partner never does (held here at the
    # rename). Its close waited with no end, until JAX's runtime aborted the process.
    import time

    checkpointer = Checkpointer(tmp_path, keep=2, async_save=True)
    checkpointer.save(1, small_state(1.0), {"step": 1, "model": {}}, wait=True)
    renaming, release = held_commits(monkeypatch)
    checkpointer.save(2, small_state(2.0), {"step": 2, "model": {}})
    assert renaming.wait(60)
    start = time.monotonic()
    assert checkpointer.close(deadline=start + 1.0) is False
    assert 1.0 <= time.monotonic() - start < 30 and checkpointer.last_saved == 2
    assert [name for name in step_directories(tmp_path) if name.isdigit()] == ["1"]
    release.set()  # the save and the close go on in the background
    for thread in threading.enumerate():
        if thread.name == "checkpoint close":
            thread.join(60)
    assert [name for name in step_directories(tmp_path) if name.isdigit()] == ["1", "2"]


def test_close_with_a_deadline_is_done_once_the_save_is_committed(tmp_path, monkeypatch):
    # After the rename that commits a step, Orbax waits on the other processes once more: with
    # a dead partner the close waited out its deadline, then said the committed step was not.
    import time

    checkpointer = Checkpointer(tmp_path, keep=2, async_save=True)
    # Held after the step's folder is renamed (not an item's inside it).
    committed, release = held_commits(monkeypatch, after="1")
    checkpointer.save(1, small_state(1.0), {"step": 1, "model": {}})
    assert committed.wait(60)
    try:
        assert checkpointer.close(deadline=time.monotonic() + 30) is True
        assert not release.is_set()  # returned while Orbax still waited
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "checkpoint close":
                thread.join(60)


def test_close_waits_for_orbaxs_sweep_of_unfinished_saves(tmp_path, monkeypatch):
    # A run refused at once closes its checkpointer and removes its new workdir. Orbax sweeps
    # unfinished saves in a background thread from the moment the folder is opened, and its own
    # close left that thread running: it listed the removed folder and logged a 30-line
    # FileNotFoundError traceback after the refusal's one line (held open here with an event).
    sweeping, release, finished = threading.Event(), threading.Event(), threading.Event()
    original = temporary_paths.cleanup_temporary_paths

    async def held_sweep(*args, **kwargs):
        sweeping.set()
        await asyncio.to_thread(release.wait, 60)
        await original(*args, **kwargs)
        finished.set()

    monkeypatch.setattr(temporary_paths, "cleanup_temporary_paths", held_sweep)
    checkpointer = Checkpointer(tmp_path, keep=1)
    assert sweeping.wait(60)
    closing = threading.Thread(target=checkpointer.close)
    closing.start()
    closing.join(0.5)
    assert closing.is_alive()  # still waiting for the sweep
    release.set()
    closing.join(60)
    assert not closing.is_alive() and finished.is_set()


def test_a_failed_save_deletes_nothing(tmp_path, monkeypatch, model):
    checkpointer = Checkpointer(tmp_path, keep=1, async_save=True)
    checkpointer.save(1, small_state(1.0), {"step": 1, "model": {}}, wait=True)

    async def failing_finalize(self):
        raise OSError("disk full")

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", failing_finalize)
    with pytest.raises(Exception, match="disk full"):
        checkpointer.save(2, small_state(2.0), {"step": 2, "model": {}}, wait=True)
    monkeypatch.undo()
    reopened = Checkpointer(tmp_path, keep=1)
    assert reopened.steps() == [1]
    state, meta = reopened.restore_latest(abstract(small_state(0.0)), model)
    reopened.close()
    assert meta["step"] == 1 and np.all(np.asarray(state["params"]["w"]) == 1.0)


def test_unreadable_checkpoints_are_moved_aside_and_none_readable_is_refused(tmp_path, model,
                                                                           caplog):
    save_steps_1_and_2(tmp_path)
    (tmp_path / "checkpoints" / "2" / "meta" / "metadata").write_text("{not json")

    reopened = Checkpointer(tmp_path, keep=3)
    with caplog.at_level("WARNING", logger="scaling.checkpoint"):
        state, meta = reopened.restore_latest(abstract(small_state(0.0)), model)
    assert meta["step"] == 1 and np.all(np.asarray(state["params"]["w"]) == 1.0)
    assert step_directories(tmp_path) == ["1", "unreadable-2"] and reopened.steps() == [1]
    assert [record.getMessage().split(" (")[0].split(" to ")[0] for record in caplog.records] == [
        "checkpoint at step 2 is unreadable", "moved the unreadable checkpoint of step 2"]

    # The last one left unreadable: the error alone says it (a warning line came before it).
    caplog.clear()
    (tmp_path / "checkpoints" / "1" / "meta" / "metadata").write_text("")
    with caplog.at_level("WARNING", logger="scaling.checkpoint"), pytest.raises(
            IncompatibleCheckpoint, match=r"no checkpoint .* could be read \(steps \[1\]; step 1: "):
        reopened.restore_latest(abstract(small_state(0.0)), model)
    assert caplog.records == []
    reopened.close()
    assert step_directories(tmp_path) == ["unreadable-1", "unreadable-2"]


def test_a_device_out_of_memory_as_it_restores_moves_no_checkpoint_aside(tmp_path, model,
                                                                         monkeypatch):
    # A resume onto a device with less memory free than the run had filed every checkpoint as
    # unreadable, moved each aside and said to start from scratch.
    save_steps_1_and_2(tmp_path)
    reopened = Checkpointer(tmp_path, keep=3)

    def out_of_memory(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes.")

    monkeypatch.setattr(reopened, "restore", out_of_memory)
    with pytest.raises(jax.errors.JaxRuntimeError, match="RESOURCE_EXHAUSTED"):
        reopened.restore_latest(abstract(small_state(0.0)), model)
    reopened.close()
    assert step_directories(tmp_path) == ["1", "2"]


def test_a_step_whose_deletion_a_kill_cut_short_is_no_warning(tmp_path, model, caplog):
    # Orbax's own "WARNING:absl:Metadata file does not exist: .../checkpoints/1/_CHECKPOINT_
    # METADATA" was printed as the run resumed.
    save_steps_1_and_2(tmp_path)
    (tmp_path / "checkpoints" / "1" / "_CHECKPOINT_METADATA").unlink()
    reopened = Checkpointer(tmp_path, keep=3)
    _, meta = reopened.restore_latest(abstract(small_state(0.0)), model)
    reopened.close()
    assert meta["step"] == 2
    assert "Metadata file does not exist" not in caplog.text


def test_a_checkpoint_without_its_state_metadata_is_damage_not_another_layout(tmp_path, model):
    # It was refused as "a different train state", and the older checkpoint was never tried.
    save_steps_1_and_2(tmp_path)
    (tmp_path / "checkpoints" / "2" / "state" / "_METADATA").unlink()
    reopened = Checkpointer(tmp_path, keep=3)
    state, meta = reopened.restore_latest(abstract(small_state(0.0)), model)
    reopened.close()
    assert meta["step"] == 1 and np.all(np.asarray(state["params"]["w"]) == 1.0)
    assert step_directories(tmp_path) == ["1", "unreadable-2"]


def test_a_different_state_layout_is_refused_not_treated_as_damage(tmp_path, model):
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save(1, small_state(1.0), {"step": 1}, wait=True)
    wider = {"step": jnp.zeros((), jnp.int32), "params": {"w": jnp.zeros((4, 16), jnp.float32)}}
    with pytest.raises(IncompatibleCheckpoint, match="different train state"):
        checkpointer.restore_latest(abstract(wider), model)
    checkpointer.close()
    assert step_directories(tmp_path) == ["1"]


def test_a_checkpoint_with_the_old_schedule_counter_restores_without_it(tmp_path, model):
    """Checkpoints written while the schedule was compiled into the train step hold optax's
    schedule counter as the optimizer's last state; they resume (and branch) as they were, the
    counter dropped. Any other extra entry is still another layout."""
    params = {"w": jnp.arange(32, dtype=jnp.float32).reshape(4, 8)}
    optimizer = optim.make_optimizer(default_config(), {"w": ("embed", "mlp")})
    opt_state = optimizer.init(params)
    assert opt_state[-1] == optax.EmptyState()
    adam = next(part for part in opt_state if isinstance(part, optax.ScaleByAdamState))
    adam = adam._replace(count=jnp.int32(7), mu={"w": params["w"] / 2})
    opt_state = tuple(adam if isinstance(part, optax.ScaleByAdamState) else part
                      for part in opt_state)
    state = {"step": jnp.int32(7), "params": params, "opt_state": opt_state}

    def saved_with(counter) -> Checkpointer:
        workdir = tmp_path / str(counter.dtype)
        checkpointer = Checkpointer(workdir, keep=3)
        old = {**state, "opt_state": (*opt_state[:-1], optax.ScaleByScheduleState(count=counter))}
        checkpointer.save(7, old, {"step": 7}, wait=True)
        return checkpointer

    checkpointer = saved_with(jnp.int32(7))
    restored, meta = checkpointer.restore_latest(abstract(state), model)
    checkpointer.close()
    assert meta["step"] == 7 and restored["opt_state"][-1] == optax.EmptyState()
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    checkpointer = saved_with(jnp.float32(7))
    with pytest.raises(IncompatibleCheckpoint, match="different train state"):
        checkpointer.restore_latest(abstract(state), model)
    checkpointer.close()


def test_another_sequence_length_is_named_by_the_field_that_set_it(tmp_path):
    """A resume under another data.seq_len differs in the model's position rows, which that
    field sets: the refusal names both."""
    config = default_config()
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save(1, small_state(1.0), {"step": 1, "model": dataclasses.asdict(
        model_config(config, vocab_size=256))}, wait=True)
    config.data.seq_len = 64
    with pytest.raises(IncompatibleCheckpoint) as refusal:
        checkpointer.restore_latest(abstract(small_state(0.0)), model_config(config, 256))
    checkpointer.close()
    assert ("(model.max_seq_len, set by data.seq_len unless given: checkpoint 128, config 64)"
            in str(refusal.value))


@pytest.mark.parametrize("field, value, named", [
    # "model.document_mask", which no override can set: the field to change is data's.
    ("data.document_mask", True, "model.document_mask, set by data.document_mask: checkpoint "
                                 "False, config True"),
    ("model.d_model", 64, "model.d_ff, set by model.d_model unless given: checkpoint 512, "
                          "config 256"),
])
def test_a_derived_model_field_is_named_with_the_field_that_set_it(tmp_path, field, value, named):
    config = default_config()
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save(1, small_state(1.0), {"step": 1, "model": dataclasses.asdict(
        model_config(config, vocab_size=256))}, wait=True)
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(IncompatibleCheckpoint) as refusal:
        checkpointer.restore_latest(abstract(small_state(0.0)), model_config(config, 256))
    checkpointer.close()
    assert named in str(refusal.value), str(refusal.value)


def first_nonfinite_step(overrides: list[str], max_steps: int) -> int | None:
    """The first step (1-based) whose loss or gradient norm is not finite, by stepping the same
    config's jitted step directly (no train loop, no checkpoints)."""
    from scaling import data, parallel
    from scaling.overrides import apply_overrides, load_config
    from scaling.step import build_program

    config = load_config("configs/demo.py:runlocal")
    apply_overrides(config, [item[len("--config."):] for item in overrides
                             if item.startswith("--config.")])
    loader = data.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed)
    model = model_config(config, loader.vocab_size)
    program = build_program(config, model, config.train.steps, parallel.make_mesh(config.mesh))
    try:
        with program.context():
            state = program.init(jax.random.key(config.seed))
            for step in range(max_steps):
                batch = parallel.global_batch(loader.batch(step), program.batch_sharding)
                state, metrics = program.train_step(state, batch)
                values = jax.device_get(metrics)
                if not (np.isfinite(values["loss"]) and np.isfinite(values["grad_norm"])):
                    return step + 1
    finally:
        loader.close()
    return None


def cli(workdir: pathlib.Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling.train", *arguments, "--workdir",
                           str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def assert_every_checkpoint_is_finite(workdir: pathlib.Path) -> list[int]:
    steps = sorted(int(path.name) for path in (workdir / "checkpoints").iterdir()
                   if path.name.isdigit())
    for step in steps:
        state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
        assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(state)), step
    return steps


@pytest.mark.slow
def test_divergence_stops_at_the_first_nonfinite_step_with_finite_checkpoints(tmp_path):
    expected = first_nonfinite_step(DIVERGING, max_steps=20)
    assert expected is not None and 2 <= expected <= 20  # the demo does diverge at lr 1e6

    result = cli(tmp_path, *DIVERGING)
    assert result.returncode == 3, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == expected
    assert summary["steps"] == expected - 1
    assert f"run diverged at step {expected}" in result.stdout
    steps = assert_every_checkpoint_is_finite(tmp_path)
    assert steps and steps[-1] == expected - 1  # saved every step up to the last finite one


@pytest.mark.slow
def test_a_divergence_inside_a_call_of_several_steps_is_named_at_its_own_step(tmp_path):
    # Four steps a call, no boundary before step 20: the first non-finite step falls inside a
    # call, whose later steps ran too (on the state the non-finite one left unchanged).
    expected = first_nonfinite_step(DIVERGING, max_steps=20)
    assert expected % 4, "the check needs a first non-finite step inside a call"
    result = cli(tmp_path, "--config", "configs/demo.py:runlocal", "--config.optim.lr=1e6",
                 "--config.train.steps_per_call=4", "--config.train.log_every=20",
                 "--config.train.eval_every=20", "--config.checkpoint.every_steps=20")
    assert result.returncode == 3, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["diverged_step"], summary["steps"]) == (
        "diverged", expected, expected - 1)
    assert f"run diverged at step {expected}" in result.stdout


@pytest.mark.slow
def test_skipping_nonfinite_steps_goes_on_to_the_end(tmp_path):
    result = cli(tmp_path, *DIVERGING, "--config.train.on_nonfinite=skip")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [5, 10, 15, 20]
    assert records[-1]["skipped_steps"] > 0
    # The summary counts them (a run that skipped most of its updates looked like any other),
    # and a record whose steps were all skipped shows their gradient norm, not the last finite
    # step's.
    assert summary["skipped_steps"] == records[-1]["skipped_steps"]
    all_skipped = [record for record in records if not np.isfinite(record["train_loss"])]
    assert all_skipped and all(not np.isfinite(record["grad_norm"]) for record in all_skipped)
    assert "update skipped" in result.stderr
    assert assert_every_checkpoint_is_finite(tmp_path)[-1] == 20


def test_a_logged_window_shows_its_last_finite_steps_gradient_norm():
    """Three finite steps and then a skipped one: the record keeps the finite steps' loss and
    their last gradient norm (it showed the skipped step's inf); a window of skipped steps only
    shows theirs."""
    from scaling.trainer import LossWindow, StepMetrics

    def step(loss, grad_norm):
        return {"loss": np.float32(loss), "grad_norm": np.float32(grad_norm), "lr": np.float32(1e-3),
                "finite": np.bool_(np.isfinite(loss) and np.isfinite(grad_norm))}

    metrics = StepMetrics(LossWindow(), stop_on_nonfinite=False)
    for count, (loss, grad_norm) in enumerate([(2.0, 1.0), (2.0, 1.5), (2.0, 2.5),
                                               (np.inf, np.inf)], 1):
        metrics.push(count, step(loss, grad_norm))
    assert metrics.drain(0)
    assert (metrics.window.mean(), metrics.window.skipped, float(metrics.last["grad_norm"])) == (
        2.0, 1, 2.5)
    metrics.next_window()
    metrics.push(5, step(np.nan, np.nan))
    assert metrics.drain(0) and np.isnan(metrics.last["grad_norm"])


@pytest.mark.parametrize("stop", [False, True], ids=["skip", "stop"])
def test_a_call_of_several_steps_is_read_step_by_step(stop):
    """Metrics stacked over a call of four steps ending at step 8: each step is read as its own,
    the non-finite third is step 7."""
    from scaling.trainer import LossWindow, StepMetrics

    losses = np.array([2.0, 3.0, np.inf, 5.0], np.float32)
    stacked = {"loss": losses, "grad_norm": np.array([1.0, 2.0, np.inf, 4.0], np.float32),
               "lr": np.full(4, 1e-3, np.float32), "finite": np.isfinite(losses)}
    metrics = StepMetrics(LossWindow(), stop_on_nonfinite=stop)
    metrics.push(8, stacked, steps=4)
    if stop:
        assert not metrics.drain(0) and metrics.diverged_step == 7
        assert (metrics.window.count, metrics.window.total) == (2, 5.0)
    else:
        assert metrics.drain(0) and metrics.diverged_step is None
        assert (metrics.window.count, metrics.window.total, metrics.window.skipped) == (3, 10.0, 1)
        assert float(metrics.last["grad_norm"]) == 4.0


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT])
def test_a_save_refused_for_want_of_room_is_the_oserror_it_is(tmp_path, monkeypatch, number):
    # Orbax wraps the OS's refusal in a ValueError of its own ("RESOURCE_EXHAUSTED: ... Failed
    # to write ...: No space left on device"); a quota used up ended in that traceback too.
    import logging

    from scaling import scripts

    checkpointer = Checkpointer(tmp_path, keep=1, async_save=False)
    words = os.strerror(number)
    refusal = (f'RESOURCE_EXHAUSTED: Error writing "params.w/0" in OCDBT database: Failed to '
               f"write 436396 bytes to file 20: {words} [os_error_code='{number}']")

    def refused(*args, **kwargs):
        raise ValueError(refusal)

    monkeypatch.setattr(checkpointer._manager, "save", refused)
    with pytest.raises(OSError) as caught:
        checkpointer.save(1, small_state(1.0), {"step": 1, "model": {}})
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        number, words, str(checkpointer.directory))
    monkeypatch.setattr(checkpointer._manager, "save",
                        lambda *args, **kwargs: (_ for _ in ()).throw(ValueError("another")))
    with pytest.raises(ValueError, match="another"):  # any other failure passes through
        checkpointer.save(1, small_state(1.0), {"step": 1, "model": {}})
    # Orbax's logs of it are left out of the command's output; its other errors are not.
    record = logging.LogRecord("absl", logging.ERROR, __file__, 1, refusal, None, None)
    assert not scripts._not_a_full_disk(record)
    assert scripts._not_a_full_disk(logging.LogRecord("absl", logging.ERROR, __file__, 1,
                                                      "another failure", None, None))


def test_a_disk_with_no_room_left_is_the_same_oserror_from_the_save_and_from_the_close(tmp_path):
    # Orbax finalises a save by waiting for its metadata and then for its arrays: with both
    # refused, the save's wait raises the first refusal and leaves the arrays' to the manager's
    # close, which came out as it was (a ValueError, or an OSError naming no folder) and ended a
    # run on a full disk in a traceback now and then. In a process of its own: the writes Orbax
    # abandons hold files on the disk until it exits.
    code = textwrap.dedent("""
        import json, os
        import jax.numpy as jnp
        from scaling.checkpoint import Checkpointer
        disk = os.environ["DISK"]
        checkpointer = Checkpointer(os.path.join(disk, "run"), keep=1)
        filler = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(filler, bytes(4096))
        except OSError:
            os.close(filler)
        state = {"step": jnp.asarray(1), "params": {"w": jnp.ones((4, 8))}}
        refusals = []
        for act in (lambda: checkpointer.save(1, state, {"step": 1, "model": {}}, wait=True),
                    checkpointer.close):
            try:
                act()
            except OSError as error:
                refusals.append([error.errno, error.filename])
        print(json.dumps(refusals))
    """)
    with small_disk(tmp_path / "disk", "2m") as disk:
        result = run_python(code, env={"DISK": str(disk)})
    assert json.loads(result.stdout.splitlines()[-1]) == [
        [errno.ENOSPC, str(disk / "run" / "checkpoints")]] * 2, result.stderr[-3000:]

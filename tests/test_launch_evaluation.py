"""`scaling-sweep --eval`: every completed run evaluated, one results.csv column per eval set."""

import csv
import json
import os
import signal
import threading
import time

import pytest

from launch import evaluation, sweep
from scaling import status
from saved_runs import save_initialized_run, tiny_config


def write_results(path, names):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["name", "status", "non_embedding_params"])
        writer.writeheader()
        writer.writerows({"name": name, "status": "completed", "non_embedding_params": 100 * (i + 1)}
                         for i, name in enumerate(names))


def test_the_flag_is_parsed_and_repeatable():
    args, _ = sweep.parse_args(["--config", "c.py", "--workdir", "w", "--eval", "tiny_shakespeare",
                                "--eval", "python_stdlib:train[:1%]"])
    assert args.eval == ["tiny_shakespeare", "python_stdlib:train[:1%]"]
    assert [evaluation.column_name(spec) for spec in args.eval] == [
        "eval_loss_tiny_shakespeare", "eval_loss_python_stdlib-train_-1pct"]
    assert evaluation.parse_eval_set("c4/en:validation[:5%]") == ("c4/en", "validation[:5%]")


def test_columns_come_from_each_runs_evaluation_of_its_current_checkpoint(tmp_path):
    runs = {name: tmp_path / "runs" / name for name in ("a", "b", "c")}
    for index, (name, run_dir) in enumerate(runs.items()):
        run_dir.mkdir(parents=True)
        status = "failed" if name == "c" else "completed"
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": status, "steps": 10, "config": {"data": {"eval_split": "validation"}}}))
        (run_dir / "eval").mkdir()
        # b's evaluation belongs to an older checkpoint: not reported.
        (run_dir / "eval" / "python_stdlib-test.json").write_text(json.dumps(
            {"loss": 1.5 + index, "step": 10 if name != "b" else 5}))
    write_results(tmp_path / "results.csv", runs)
    evaluation.add_columns(tmp_path / "results.csv", runs, ["python_stdlib:test"])
    with open(tmp_path / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["eval_loss_python_stdlib-test"] for row in rows] == ["1.5", "", "3.5"]
    assert rows[0]["non_embedding_params"] == "100"  # the other columns are kept


def test_an_evaluation_made_by_hand_on_other_batches_is_not_reported(tmp_path):
    # `scaling-eval --batches 2` (or --whole-split) writes the file `--eval` reads, for the same
    # checkpoint: its loss is of other batches than the run's final evaluation, not the column's.
    runs = {name: tmp_path / "runs" / name for name in ("a", "b", "c")}
    requested = {"a": (None, False), "b": (2, False), "c": (None, True)}
    for name, run_dir in runs.items():
        (run_dir / "eval").mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "steps": 10, "config": {"data": {"eval_split": "validation"}}}))
        batches, whole_split = requested[name]
        (run_dir / "eval" / "python_stdlib-validation.json").write_text(json.dumps(
            {"dataset": "python_stdlib", "split": "validation", "loss": 1.5, "step": 10,
             "batches_requested": batches, "whole_split": whole_split}))
    assert evaluation.eval_record(runs["a"], "python_stdlib") is not None
    assert evaluation.eval_record(runs["b"], "python_stdlib") is None  # evaluated again
    assert evaluation.eval_record(runs["c"], "python_stdlib") is None
    write_results(tmp_path / "results.csv", runs)
    evaluation.add_columns(tmp_path / "results.csv", runs, ["python_stdlib"])
    with open(tmp_path / "results.csv", newline="") as file:
        assert [row["eval_loss_python_stdlib"] for row in csv.DictReader(file)] == ["1.5", "", ""]


def test_an_evaluation_made_by_hand_of_other_files_has_a_column_of_its_own(tmp_path):
    # Both runs trained on text_files. `--eval text_files` scored b on its own files; a was
    # evaluated by hand on other files (`scaling-eval --config.data.files=...`), whose file name
    # carries a hash of them: not the column of the runs' own files.
    runs = {name: tmp_path / "runs" / name for name in ("a", "b")}
    written = {"a": ("text_files-validation-0123abcd", {"files": "other.txt"}, 4.5),
               "b": ("text_files-validation", {}, 2.5)}
    for name, run_dir in runs.items():
        (run_dir / "eval").mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "steps": 10, "config": {"data": {"eval_split": "validation"}}}))
        stem, overrides, loss = written[name]
        (run_dir / "eval" / f"{stem}.json").write_text(json.dumps(
            {"dataset": "text_files", "split": "validation", "loss": loss, "step": 10,
             "batches_requested": None, "whole_split": False, "data_overrides": overrides}))
    assert evaluation.eval_record(runs["a"], "text_files") is None  # evaluated by --eval
    write_results(tmp_path / "results.csv", runs)
    evaluation.add_columns(tmp_path / "results.csv", runs, ["text_files"])
    with open(tmp_path / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["eval_loss_text_files"] for row in rows] == ["", "2.5"]
    assert [row["eval_loss_text_files-validation-0123abcd"] for row in rows] == ["4.5", ""]


def test_the_sweeps_rewrites_of_the_table_keep_the_eval_columns_of_the_runs_files(tmp_path):
    # The sweep wrote results.csv, then `--eval python_stdlib` (each run's own split) and
    # `--eval python_stdlib:test` added their columns. A rerun without --eval rewrites results.csv
    # from the runs' files, which also hold an evaluation made by hand and one of an older
    # checkpoint.
    from launch.plans import PlannedRun

    splits = {"a": "validation", "b": "test"}
    runs = [PlannedRun(name=name, overrides={}, size="s", params=1, non_embedding_params=1,
                       tokens=10, steps=10, flops=1.0, flop_convention="6N") for name in splits]
    run_dirs = {name: tmp_path / "runs" / name for name in splits}
    for name, run_dir in run_dirs.items():
        (run_dir / "eval").mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "steps": 10, "config": {"data": {"eval_split": splits[name]}}}))
    sweep.gather(tmp_path, runs, {})
    # (run, data set, split, checkpoint step): loss, as `scaling-eval` writes them.
    losses = {("a", "python_stdlib", "validation", 10): 1.25,
              ("a", "python_stdlib", "test", 10): 1.5, ("b", "python_stdlib", "test", 10): 2.5,
              ("b", "tiny_shakespeare", "test", 10): 3.25,
              ("a", "tiny_shakespeare", "test", 5): 9.0}  # of an older checkpoint
    for (name, dataset, split, step), loss in losses.items():
        (run_dirs[name] / "eval" / f"{dataset}-{split}.json").write_text(
            json.dumps({"dataset": dataset, "split": split, "loss": loss, "step": step}))
    evaluation.add_columns(tmp_path / "results.csv", run_dirs,
                           ["python_stdlib", "python_stdlib:test"])

    def table():
        with open(tmp_path / "results.csv", newline="") as file:
            return list(csv.DictReader(file))

    def eval_columns(rows):
        return [{column: value for column, value in row.items() if column.startswith("eval_loss_")}
                for row in rows]

    # The sets asked for, and the evaluation made by hand (of the current checkpoint) as well.
    evaluated = table()
    assert eval_columns(evaluated) == [
        {"eval_loss_python_stdlib": "1.25", "eval_loss_python_stdlib-test": "1.5",
         "eval_loss_tiny_shakespeare": ""},
        {"eval_loss_python_stdlib": "2.5", "eval_loss_python_stdlib-test": "2.5",
         "eval_loss_tiny_shakespeare": "3.25"}]
    sweep.gather(tmp_path, runs, {})  # a rerun without --eval
    assert table() == evaluated
    # Rebuilt without the old table: each evaluation is a column, named as --eval names it, and
    # holds what it held (b's python_stdlib-test cell, its own split's evaluation, was left
    # empty: the file had made the python_stdlib column).
    (tmp_path / "results.csv").unlink()
    sweep.gather(tmp_path, runs, {})
    assert eval_columns(table()) == eval_columns(evaluated)


@pytest.mark.slow
def test_completed_runs_are_evaluated_and_the_column_fits(tmp_path):
    from analysis import inputs

    runs = {}
    for index, width in enumerate((32, 48)):
        runs[f"run{index}"] = run_dir = tmp_path / "runs" / f"run{index}"
        save_initialized_run(run_dir, tiny_config(d_model=width), seed=index)
    write_results(tmp_path / "results.csv", runs)
    # `--only run1`: only run1 is evaluated (with --only, every completed run of the sweep was).
    assert evaluation.evaluate_sweep(tmp_path, runs, ["python_stdlib:validation"],
                                     sweep.CHILDREN, only={"run1"}) == 0
    assert not (runs["run0"] / "eval.log").exists() and (runs["run1"] / "eval.log").exists()
    failures = evaluation.evaluate_sweep(tmp_path, runs, ["python_stdlib:validation"], sweep.CHILDREN)
    assert failures == 0
    with open(tmp_path / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    column = "eval_loss_python_stdlib-validation"
    for row, run_dir in zip(rows, runs.values()):
        record = json.loads((run_dir / "eval" / "python_stdlib-validation.json").read_text())
        assert float(row[column]) == pytest.approx(record["loss"], rel=1e-12)
        assert 5.0 < record["loss"] < 6.5  # untrained: about ln 257 = 5.55 nats per byte
    # A second pass finds the evaluations on disk and runs nothing.
    before = {name: (run_dir / "eval.log").stat().st_mtime for name, run_dir in runs.items()}
    assert evaluation.evaluate_sweep(tmp_path, runs, ["python_stdlib:validation"], sweep.CHILDREN) == 0
    assert before == {name: (run_dir / "eval.log").stat().st_mtime for name, run_dir in runs.items()}
    points = inputs.read_named_csv(tmp_path / "results.csv", n_col="non_embedding_params",
                                   loss_col=column, d_col="non_embedding_params")
    assert len(points) == 2


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_sweep_starts_no_more_evaluations(tmp_path, signum, capsys):
    """Ctrl-C or SIGTERM while the first run is evaluated: the evaluation is stopped through the
    sweep, and no other starts (each run started its own, and only an interrupted one ended)."""
    runs = {}
    for index in range(3):
        runs[f"run{index}"] = run_dir = tmp_path / "runs" / f"run{index}"
        save_initialized_run(run_dir, tiny_config(), seed=index)
    write_results(tmp_path / "results.csv", runs)

    def stop_once_started():
        deadline = time.monotonic() + 120
        while not (runs["run0"] / "eval.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    with sweep.CHILDREN.handling():
        threading.Thread(target=stop_once_started, daemon=True).start()
        failures = evaluation.evaluate_sweep(tmp_path, runs, ["python_stdlib:validation"],
                                             sweep.CHILDREN)
        stop_status, terminating = sweep.CHILDREN.stop_status, sweep.CHILDREN.terminating
    assert failures == 0 and terminating
    assert stop_status == (status.INTERRUPTED if signum == signal.SIGINT else status.PREEMPTED)
    assert not (runs["run1"] / "eval.log").exists() and not (runs["run2"] / "eval.log").exists()
    assert "[eval] run0 on python_stdlib:validation: stopped" in capsys.readouterr().out
    # No run has a result for the set: no column for it, which every later rewrite of the
    # table kept, empty for completed runs.
    with open(tmp_path / "results.csv", newline="") as file:
        header = next(csv.reader(file))
    assert not [column for column in header if column.startswith(evaluation.COLUMN_PREFIX)]


@pytest.mark.parametrize("spec, reason", [
    ("no_such_corpus", "--eval='no_such_corpus' is not allowed: config.data.dataset='no_such_corpus'"
                       " is not allowed: python_stdlib, text_files"),
    ("python_stdlib:valid", "--eval='python_stdlib:valid' is not allowed: "
                            "config.data.eval_split='valid' is not allowed: one of"),
])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_an_eval_set_scaling_eval_would_refuse_is_refused_before_any_run_trains(
        tmp_path, capsys, spec, reason, dry_run):
    from conftest import REPO, write_sweep_config

    # One run of 20 steps: short even if the check were missing.
    config = write_sweep_config(tmp_path / "sweep.py", name="tiny", sizes="d32-L1", plan="steps",
                                base_config=f"{REPO}/configs/demo.py:runlocal", overrides={})
    code = sweep.main(["--config", str(config), "--workdir", str(tmp_path / "sweep"),
                       "--eval", "python_stdlib:validation", "--eval", spec, *dry_run])
    error = capsys.readouterr().err
    assert code == 2
    assert error.strip().splitlines() == [error.strip()]
    assert error.startswith(f"scaling-sweep: error: {reason}")
    assert not (tmp_path / "sweep").exists()


def test_an_eval_set_a_seq2seq_sweep_cannot_read_is_refused_before_any_run_trains(tmp_path, capsys):
    from conftest import REPO, write_sweep_config

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("abc\tcba\n" * 20)
    overrides = {"model": {"layout": "encoder_decoder"}, "train": {"objective": "seq2seq"},
                 "data": {"dataset": "text_pairs", "files": str(pairs), "seq_len": 8}}
    config = write_sweep_config(tmp_path / "sweep.py", name="tiny", sizes="d32-L1", plan="steps",
                                base_config=f"{REPO}/configs/demo.py:runlocal", overrides=overrides)
    code = sweep.main(["--config", str(config), "--workdir", str(tmp_path / "sweep"),
                       "--eval", "python_stdlib", "--dry-run"])
    assert code == 2
    assert capsys.readouterr().err == (
        "scaling-sweep: error: --eval='python_stdlib' is not allowed: "
        "config.data.dataset='python_stdlib' is not allowed: data.dataset='text_pairs', or a TFDS "
        "dataset with data.source_feature and data.target_feature\n")

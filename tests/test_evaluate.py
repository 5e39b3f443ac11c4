"""`scaling-eval` against the loss the training run itself measured, and its errors."""

import json
import math
import pathlib
import shutil
import time

import jax
import numpy as np
import pytest

from saved_runs import save_initialized_run, tiny_config
from scaling import evaluate
from scaling.train import train


def _short_run_config(name: str, steps: int, **model):
    """A tiny run of `steps` steps that logs and evaluates (2 batches) only at its end."""
    config = tiny_config(**model)
    config.name = name
    config.train.steps = config.train.eval_every = config.train.log_every = steps
    config.train.eval_batches = 2
    config.optim.warmup_steps = 2
    config.checkpoint.async_save = False
    return config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run trained for 6 steps that evaluates its eval split (2 batches) at the end."""
    config = _short_run_config("tiny-trained", 6)
    workdir = tmp_path_factory.mktemp("trained")
    summary = train(config, workdir)
    assert summary["status"] == "completed" and summary["final_eval_loss"] is not None
    return workdir, summary


def test_the_runs_own_eval_batches_reproduce_its_final_eval_loss(trained_run, capsys):
    workdir, summary = trained_run
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    record = json.loads((workdir / "eval" / "python_stdlib-validation.json").read_text())
    assert abs(record["loss"] - summary["final_eval_loss"]) <= 1e-5
    # Its standard error, as the trainer's (it gave none): of the same two batches.
    assert record["stderr"] == pytest.approx(summary["final_eval_stderr"], rel=1e-4)
    assert f"loss {record['loss']:.4f} ± {record['stderr']:.4f} nats/token" in out
    assert record["tokens"] == 2 * 8 * 32 and record["batches"] == 2 and record["step"] == 6
    # Bits per byte: the same nats over the bytes of the predicted tokens (EOD has none).
    assert 0 < record["bytes"] <= record["tokens"]
    assert record["bits_per_byte"] == pytest.approx(
        record["loss"] * record["tokens"] / math.log(2) / record["bytes"], rel=1e-12)


def _objective_config(objective: str, tmp_path):
    layout = {"masked_lm": "encoder"}.get(objective, "encoder_decoder")
    config = _short_run_config(f"tiny-{objective}", 4, layout=layout)
    config.train.objective = objective
    if objective == "seq2seq":
        pairs = tmp_path / "pairs.tsv"
        pairs.write_text("".join(f"def f{i}(x): return {i} * x\tf{i} = lambda x: x * {i}\n"
                                 for i in range(300)))
        config.data.dataset, config.data.files = "text_pairs", str(pairs)
        config.data.target_len = 24
    return config


@pytest.mark.parametrize("objective", ["masked_lm", "span_corruption", "seq2seq"])
def test_every_objectives_own_eval_batches_reproduce_its_final_eval_loss(objective, tmp_path):
    """The run's own objective, scored as its trainer scored it: masked tokens of an encoder,
    dropped spans or pair targets of an encoder–decoder, not next-token prediction."""
    workdir = tmp_path / "run"
    summary = train(_objective_config(objective, tmp_path), workdir)
    assert summary["status"] == "completed" and summary["final_eval_loss"] is not None
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    (path,) = (workdir / "eval").glob("*.json")
    record = json.loads(path.read_text())
    assert abs(record["loss"] - summary["final_eval_loss"]) <= 1e-5
    assert record["objective"] == objective and record["batches"] == 2
    if objective == "masked_lm":
        # round(0.15 · 32) = 5 masked positions per row; bits over their bytes (all are text).
        assert record["tokens"] == 2 * 8 * 5
        assert record["bits_per_byte"] == pytest.approx(
            record["loss"] * record["tokens"] / math.log(2) / record["bytes"], rel=1e-6)
    elif objective == "span_corruption":
        # Sentinels are scored and stand for no text: no number rather than a wrong one.
        assert record["bits_per_byte"] is None and "not defined" in record["bits_per_byte_note"]
    assert evaluate.main(["--workdir", str(workdir), "--whole-split"]) == 0
    whole = json.loads(path.with_name(f"{path.stem}-whole.json").read_text())
    assert whole["whole_split"] and np.isfinite(whole["loss"])
    assert abs(whole["loss"] - summary["final_eval_loss"]) < 0.1


def test_the_whole_split_agrees_within_noise(trained_run):
    workdir, summary = trained_run
    assert evaluate.main(["--workdir", str(workdir), "--whole-split"]) == 0
    record = json.loads((workdir / "eval" / "python_stdlib-validation-whole.json").read_text())
    assert record["whole_split"] and record["tokens"] > 2 * 8 * 32
    # A 6-step model is close to uniform over bytes: per-token losses vary little.
    assert abs(record["loss"] - summary["final_eval_loss"]) < 0.05


def test_other_batches_are_written_beside_the_final_eval_batches(trained_run, tmp_path):
    # `--batches N` and `--whole-split` wrote the file of the run's final-eval batches, the one
    # `scaling-sweep --eval` reports: a hand-made evaluation replaced the sweep's.
    workdir, summary = trained_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    for extra in ([], ["--batches", "1"], ["--whole-split"]):
        assert evaluate.main(["--workdir", str(run), *extra]) == 0
    records = {path.name: json.loads(path.read_text()) for path in (run / "eval").glob("*.json")}
    assert sorted(records) == ["python_stdlib-validation-1batches.json",
                               "python_stdlib-validation-whole.json",
                               "python_stdlib-validation.json"]
    own = records["python_stdlib-validation.json"]
    assert own["batches_requested"] is None and not own["whole_split"]
    assert abs(own["loss"] - summary["final_eval_loss"]) <= 1e-5
    assert records["python_stdlib-validation-1batches.json"]["tokens"] == 8 * 32
    assert records["python_stdlib-validation-whole.json"]["whole_split"]



def test_batches_are_made_one_at_a_time_as_they_are_scored():
    """`--batches N` made all N batches before scoring the first: memory grew with N."""
    import argparse
    import tracemalloc

    from scaling import trained

    config = _short_run_config("tiny-lazy", 6)
    tokenizer = trained.tokenizer_of(config)
    objective = trained.objective_of(config, tokenizer, data=config.data)
    vocab_size = int(tokenizer.vocab_size)
    # As many as the split fills (about 4,000 batches of 8 rows of 32 tokens: 8 MB of inputs
    # and targets).
    args = argparse.Namespace(batches=100_000, whole_split=False)
    split = evaluate.read_eval_split(config.data, tokenizer, vocab_size)  # prepared here
    tracemalloc.start()
    try:
        batches, total = evaluate._batches(args, config, config.data, tokenizer, objective,
                                           vocab_size)
        first, weights = next(iter(batches))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first["inputs"].shape == (8, 32) and weights.tolist() == [1.0] * 8
    assert total == (split.num_tokens - 1) // 32 // 8 > 1000  # windows of 33 tokens, full batches
    made = total * (first["inputs"].nbytes + first["targets"].nbytes)
    assert peak < made / 100, (peak, made)


def test_another_split_is_written_beside(trained_run, capsys):
    workdir, _ = trained_run
    assert evaluate.main(["--workdir", str(workdir), "--config.data.eval_split=train[:1%]",
                          "--batches", "1"]) == 0
    assert " over 256 target tokens (1 batch, checkpoint step 6) -> " in capsys.readouterr().out
    record = json.loads((workdir / "eval" / "python_stdlib-train_-1pct-1batches.json").read_text())
    assert record["split"] == "train[:1%]" and record["tokens"] == 8 * 32
    assert np.isfinite(record["loss"])
    # The whole training split too: an evaluation may measure the loss on what the run trained
    # on (it was refused as the training run's own eval split is).
    assert evaluate.main(["--workdir", str(workdir), "--config.data.eval_split=train",
                          "--batches", "1"]) == 0
    assert (workdir / "eval" / "python_stdlib-train-1batches.json").exists()


def test_data_fields_the_run_does_not_read_leave_the_file_name_alone(trained_run, tmp_path,
                                                                      capsys):
    """`data.files` of python_stdlib, or seq2seq's `data.target_len` under causal_lm, scored the
    same batches under another, hashed, name."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    shutil.rmtree(workdir / "eval", ignore_errors=True)
    other = tmp_path / "other.py"
    other.write_text("print('not read')\n" * 100)
    for extra in ([], [f"--config.data.files={other}"], ["--config.data.target_len=7"]):
        code = evaluate.main(["--workdir", str(workdir), "--batches", "1", *extra])
        assert code == 0, capsys.readouterr().err
    assert [path.name for path in (workdir / "eval").iterdir()] == [
        "python_stdlib-validation-1batches.json"]
    # A field the dataset reads still adds its hash: text_files reads data.files.
    text_files_run = ["--config.data.dataset=text_files", f"--config.data.files={other}"]
    assert evaluate.main(["--workdir", str(workdir), "--batches", "1", *text_files_run]) == 0
    assert len(list((workdir / "eval").glob("text_files-validation-*-1batches.json"))) == 1


def test_evaluations_of_other_files_are_written_beside_each_other(trained_run, tmp_path, capsys):
    """Two `text_files` evaluations on one split, of different files, each keep their file (the
    second replaced the first), which records the files it scored."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    texts = {"a": "def add(a, b):\n    return a + b\n" * 40, "b": "the quick brown fox\n" * 60}
    losses, outs = {}, {}
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text)
        # Alone in a workdir of its own: the reference loss of that file.
        alone = tmp_path / f"alone-{name}"
        shutil.copytree(trained_run[0], alone)
        arguments = ["--config.data.dataset=text_files", f"--config.data.files={tmp_path / name}.txt"]
        assert evaluate.main(["--workdir", str(alone), *arguments]) == 0
        [reference] = (alone / "eval").glob("text_files-validation*.json")
        losses[name] = json.loads(reference.read_text())["loss"]
        assert evaluate.main(["--workdir", str(workdir), *arguments]) == 0
        outs[name] = capsys.readouterr().out.split(" -> ")[-1].strip()
    assert losses["a"] != losses["b"]
    assert len({*outs.values()}) == 2
    for name in texts:
        record = json.loads(pathlib.Path(outs[name]).read_text())
        assert record["loss"] == losses[name]
        assert record["data_overrides"] == {"files": f"{tmp_path / name}.txt"}
    assert len(list((workdir / "eval").glob("text_files-validation*.json"))) == 2
    # The run's own data keeps the plain name.
    assert evaluate.main(["--workdir", str(workdir), "--config.data.prefetch=1"]) == 0
    record = json.loads((workdir / "eval" / "python_stdlib-validation.json").read_text())
    assert record["data_overrides"] == {}


def test_relative_data_files_name_the_files_they_reach(trained_run, tmp_path, capsys, monkeypatch):
    # `notes.txt` typed in two folders names two files: two evaluations (the second replaced the
    # first); the same file by its absolute path is the first one again.
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    outs = []
    for folder, text in (("one", "def f():\n    pass\n" * 50), ("two", "plain words\n" * 80),
                         ("one", None)):
        (tmp_path / folder).mkdir(exist_ok=True)
        if text:
            (tmp_path / folder / "notes.txt").write_text(text)
        monkeypatch.chdir(tmp_path / folder)
        files = "notes.txt" if text else str(tmp_path / "one" / "notes.txt")
        assert evaluate.main(["--workdir", str(workdir), "--config.data.dataset=text_files",
                              f"--config.data.files={files}"]) == 0
        outs.append(capsys.readouterr().out.split(" -> ")[-1].strip())
    assert outs[0] != outs[1] and outs[2] == outs[0]
    assert json.loads(pathlib.Path(outs[1]).read_text())["data_overrides"] == {
        "files": str(tmp_path / "two" / "notes.txt")}


def test_a_run_on_relative_data_files_is_scored_on_them_from_any_folder(tmp_path, monkeypatch):
    # Trained on `notes/` in one folder, scored from another whose `notes/` holds other text: the
    # run's own files, as the run scored them, not the other folder's.
    for folder, line in (("one", "def f(x):\n    return x\n"), ("two", "plain words here\n")):
        for index in range(12):
            (tmp_path / folder / "notes").mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / "notes" / f"{index}.txt").write_text(f"# {index}\n" + line * 40)
    config = _short_run_config("tiny-notes", 4)
    config.data.dataset, config.data.files = "text_files", "notes"
    config.data.cache_dir = str(tmp_path / "cache")
    monkeypatch.chdir(tmp_path / "one")
    summary = train(config, tmp_path / "run")
    assert config.data.files == "notes"  # the caller's config is left as it was
    assert summary["config"]["data"]["files"] == str(tmp_path / "one" / "notes")
    monkeypatch.chdir(tmp_path / "two")
    assert evaluate.main(["--workdir", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "eval" / "text_files-validation.json").read_text())
    assert abs(record["loss"] - summary["final_eval_loss"]) <= 1e-5
    assert record["data_overrides"] == {}


@pytest.mark.parametrize("arguments,message", [
    (["--config.data.dataset=mnist"], "data.feature='text' is not allowed: a text feature of mnist"),
    (["--config.data.dataset=no_such_dataset"], "config.data.dataset='no_such_dataset'"),
    (["--config.data.tokenizer=sentencepiece"], "the run's tokenizer is fixed"),
    # The model masks attention by documents as it was trained to: this override changed nothing.
    (["--config.data.document_mask=true"],
     "--config.data.document_mask: the run's document_mask is fixed (the model was trained with "
     "data.document_mask=False)"),
    (["--config.model.d_model=64"], "only --config.data.* fields"),
    (["--config.data.eval_split=nosplit"], "data.eval_split='nosplit' is not allowed"),
    # Each data field's own rule, as scaling-train applies it (these were accepted, and scored).
    (["--config.data.target_len=-5"],
     "config.data.target_len=-5 is not allowed: an integer from 0 to 1,048,576"),
    (["--config.data.prefetch=-1", "--batches", "1"],
     "config.data.prefetch=-1 is not allowed: an integer >= 0"),
    # Slices TFDS cannot parse, or that select nothing (tracebacks from TFDS or the data source).
    (["--config.data.eval_split=validation[abc]"],
     "config.data.eval_split='validation[abc]' is not allowed: one of train, validation (as it "
     "is, or sliced as TFDS slices splits: "),
    (["--config.data.eval_split=validation[:200%]"], "TFDS cannot parse this one"),
    (["--config.data.eval_split=validation[:0%]"], "this slice selects no example"),
    (["--config.data.eval_split=train[:0]"],
     "config.data.eval_split='train[:0]' is not allowed: one of train, validation"),
    (["--config.data.eval_split=validation[50%:10%]"], "its start is not before its end"),
    # Known only from the prepared split's size.
    (["--config.data.eval_split=validation[100000000:]"],
     "its bounds reach past the split's end (validation holds "),
])
def test_bad_input_is_one_line_and_exit_2(trained_run, capsys, arguments, message):
    workdir, _ = trained_run
    assert evaluate.main(["--workdir", str(workdir), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("scaling-eval: error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_a_run_is_read_with_the_tokenizer_it_trained_with_or_refused(tmp_path, capsys):
    """A SentencePiece model trained on a run's corpus is trained again once the corpus changes,
    and a data.spm_model file can be replaced: the run was scored (and sampled) with the other
    tokenizer without a word. A damaged model file was a RuntimeError traceback."""
    import hashlib

    from scaling import sample
    from scaling.data import tokenizers

    corpus = [pathlib.Path(module.__file__).read_bytes() for module in (json, shutil, pytest)]
    model_file = tmp_path / "spm.model"
    model_file.write_bytes(tokenizers.train_sentencepiece(iter(corpus), vocab_size=400))
    config = _short_run_config("spm-run", 2)
    config.data.tokenizer, config.data.spm_model = "sentencepiece", str(model_file)
    summary = train(config, tmp_path / "run")
    assert summary["tokenizer_fingerprint"] == (
        "sentencepiece/" + hashlib.sha256(model_file.read_bytes()).hexdigest())
    workdir = str(tmp_path / "run")
    assert evaluate.main(["--workdir", workdir]) == 0
    capsys.readouterr()
    model_file.write_bytes(tokenizers.train_sentencepiece(iter(corpus[:1]), vocab_size=400))
    for command, program in ((evaluate.main, "scaling-eval"), (sample.main, "scaling-sample")):
        assert command(["--workdir", workdir]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{program}: error: the run's tokenizer is not the one it trained "
                              f"with: data.spm_model={str(model_file)!r} is now sentencepiece/"), err
        assert err.count("\n") == 1
    model_file.write_bytes(b"garbage")
    assert evaluate.main(["--workdir", workdir]) == 2
    assert capsys.readouterr().err == (
        f"scaling-eval: error: config.data.spm_model={str(model_file)!r} is not allowed: a "
        "SentencePiece model file (SentencePiece cannot load this one)\n")
    assert sample.main(["--workdir", workdir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scaling-sample: error: the run's tokenizer (sentencepiece) cannot be "
                          "loaded: ") and err.count("\n") == 1


def test_a_runs_trained_sentencepiece_is_read_from_the_cache_after_its_corpus_changed(
        tmp_path, capsys):
    """A file added to a text_files run's corpus gave another trained SentencePiece model: the
    run was scored with it (then: refused, after training it). The run's own is in the cache."""
    from scaling.data import tokenizers

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for module in (json, shutil, pytest, pathlib):
        (corpus / f"{module.__name__}.py").write_bytes(pathlib.Path(module.__file__).read_bytes())
    config = _short_run_config("spm-files", 2)
    config.data.update(dataset="text_files", files=str(corpus), tokenizer="sentencepiece",
                       vocab_size=400, cache_dir=str(tmp_path / "cache"))
    summary = train(config, tmp_path / "run")
    models = sorted((tmp_path / "cache" / "tokenizers").glob("*.model"))
    capsys.readouterr()
    (corpus / "added.py").write_text("def added():\n    return 'a new file'\n" * 50)
    assert evaluate.main(["--workdir", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    assert "training SentencePiece" not in capsys.readouterr().err
    assert sorted((tmp_path / "cache" / "tokenizers").glob("*.model")) == models
    record = json.loads((tmp_path / "run" / "eval" / "text_files-validation.json").read_text())
    assert record["tokenizer"] == tokenizers.SentencePieceTokenizer(models[0].read_bytes()).name
    assert summary["tokenizer_fingerprint"].startswith("sentencepiece/")


def test_a_dataset_the_runs_objective_does_not_read_is_one_line_and_exit_2(trained_run, tmp_path,
                                                                           capsys):
    """seq2seq reads pairs and the other objectives a text corpus, in evaluation as in training."""
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("abc\tcba\n" * 20)
    config = tiny_config(layout="encoder_decoder")
    config.train.objective, config.data.dataset, config.data.files = "seq2seq", "text_pairs", str(pairs)
    save_initialized_run(tmp_path / "seq2seq", config)
    for workdir, arguments, allowed in [
            (trained_run[0], ["--config.data.dataset=text_pairs", f"--config.data.files={pairs}"],
             "config.data.dataset='text_pairs' is not allowed: a text corpus (pairs are read only "
             "by train.objective='seq2seq')"),
            (tmp_path / "seq2seq", ["--config.data.dataset=python_stdlib"],
             "config.data.dataset='python_stdlib' is not allowed: data.dataset='text_pairs', or a "
             "TFDS dataset with data.source_feature and data.target_feature")]:
        assert evaluate.main(["--workdir", str(workdir), *arguments]) == 2
        assert capsys.readouterr().err == f"scaling-eval: error: {allowed}\n"
    # A decoder longer than the seq2seq run's learned position table: a shape error traceback
    # from the compiled eval step, before.
    config.model.update(position="learned", max_seq_len=32)
    config.data.files = str(tmp_path / "many.tsv")  # a validation split that holds pairs
    (tmp_path / "many.tsv").write_text("".join(f"abc{i}\tcba{i}\n" for i in range(400)))
    save_initialized_run(tmp_path / "learned", config)
    assert evaluate.main(["--workdir", str(tmp_path / "learned"),
                          "--config.data.target_len=33"]) == 2
    assert capsys.readouterr().err == (
        "scaling-eval: error: --config.data.target_len=33: the run's learned positions allow at "
        "most 32 decoder tokens (model.max_seq_len)\n")


def test_a_dataset_that_cannot_be_downloaded_is_one_line_on_the_download(trained_run, tmp_path,
                                                                         capsys, monkeypatch):
    # It blamed the run's tokenizer: "... cannot be read with the run's tokenizer (byte): could
    # not prepare TFDS dataset ...".
    import tensorflow_datasets as tfds

    def unreachable(self, url_or_urls):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", unreachable)
    assert evaluate.main(["--workdir", str(trained_run[0]),
                          "--config.data.dataset=tiny_shakespeare",
                          f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
                          "--config.data.eval_split=test"]) == 2
    *progress, error = capsys.readouterr().err.splitlines()  # "[data] preparing ..." before it
    assert error.startswith("scaling-eval: error: dataset 'tiny_shakespeare' split 'test' cannot "
                            "be read: could not prepare TFDS dataset"), error
    assert "network" in error and "tokenizer" not in error
    assert not any("error" in line.lower() for line in progress), progress


@pytest.mark.parametrize("text, reason", [
    ("[]", "a JSON list, not an object"),
    ('{"config": [], "model": {}}', "its config is not an object"),
    ('{"config": {}, "model": {"d_model": 32}}', "its model entry lacks num_layers, num_heads"),
])
def test_a_summary_that_is_not_a_runs_record_is_one_line(trained_run, tmp_path, capsys, text,
                                                          reason):
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    (workdir / "summary.json").write_text(text)
    assert evaluate.main(["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scaling-eval: error: --workdir {workdir}: summary.json is unreadable "
                          f"({reason}") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "attention_maps"])
def test_the_commands_silence_urllib3s_retries(tmp_path, monkeypatch, command):
    """Offline, TFDS's metadata requests logged three `Retrying` warnings before the error. Each
    command's `main`, stopped once its arguments are read, has urllib3 quiet below errors."""
    import importlib
    import logging

    monkeypatch.setattr(logging.getLogger("urllib3"), "level", logging.NOTSET)
    module = importlib.import_module(f"scaling.{command}")
    arguments = {"train": ["--config", "configs/demo.py", "--workdir", str(tmp_path / "w"),
                           "--dry-run"],
                 "attention_maps": ["--workdir", str(tmp_path / "none"), "--text", "a",
                                    "--out", str(tmp_path / "map")]
                 }.get(command, ["--workdir", str(tmp_path / "none")])
    try:
        module.main(arguments)
    except SystemExit:
        pass
    assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() > logging.WARNING


def test_a_workdir_without_a_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed", "config": {},
                                                       "model": {}}))
    assert evaluate.main(["--workdir", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_a_workdir_it_cannot_write_in_is_refused_before_scoring(trained_run, tmp_path, capsys,
                                                                monkeypatch):
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    shutil.rmtree(workdir / "eval", ignore_errors=True)
    (workdir / "eval").write_text("a file where the evaluations go")

    def score(*args, **kwargs):
        raise AssertionError("batches read for an evaluation that cannot be written")

    monkeypatch.setattr(evaluate, "_batches", score)
    assert evaluate.main(["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert err == (f"scaling-eval: error: {workdir / 'eval'} cannot be written (File exists)\n")


def test_an_evaluation_refused_after_its_checks_leaves_no_empty_eval_folder(trained_run, tmp_path,
                                                                           capsys):
    """The folder is checked before any batch is read and made with the result: a split found
    too short only once it is prepared left an empty `eval/` in the run's workdir."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    shutil.rmtree(workdir / "eval", ignore_errors=True)
    assert evaluate.main(["--workdir", str(workdir),
                          "--config.data.eval_split=validation[100000000:]"]) == 2
    assert "its bounds reach past the split's end" in capsys.readouterr().err
    assert not (workdir / "eval").exists()
    assert evaluate.main(["--workdir", str(workdir), "--batches", "1"]) == 0
    assert [path.name for path in (workdir / "eval").iterdir()] == [
        "python_stdlib-validation-1batches.json"]


def test_a_device_out_of_memory_as_the_checkpoint_is_restored_is_one_line(trained_run, tmp_path,
                                                                           capsys, monkeypatch):
    # It was said as "no checkpoint ... could be read": the files were fine, the device full.
    from scaling.checkpoint import Checkpointer

    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    steps = sorted(path.name for path in (workdir / "checkpoints").iterdir())

    def out_of_memory(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes.")

    monkeypatch.setattr(Checkpointer, "restore", out_of_memory)
    assert evaluate.main(["--workdir", str(workdir), "--single-device"]) == 2
    assert capsys.readouterr().err == (
        f"scaling-eval: error: --workdir {workdir}: the device ran out of memory restoring its "
        "checkpoint (another process may hold the device's memory); without --single-device it "
        "is spread over the run's mesh\n")
    assert sorted(path.name for path in (workdir / "checkpoints").iterdir()) == steps


def test_evaluating_a_run_leaves_its_save_in_flight_alone(trained_run, tmp_path, capsys):
    # The run still training: the save of its next checkpoint is a temporary folder.
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    in_flight = workdir / "checkpoints" / "8.orbax-checkpoint-tmp-1764547200" / "state"
    in_flight.mkdir(parents=True)
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    deadline = time.monotonic() + 2.0  # a clean-up would run in the background
    while time.monotonic() < deadline and in_flight.is_dir():
        time.sleep(0.05)
    assert in_flight.is_dir()


def test_by_default_the_batches_of_the_runs_final_evaluation_are_read():
    """The trainer's final evaluation reads train.final_eval_batches when set."""
    import argparse

    from scaling.data import objectives, tokenizers

    config = tiny_config()
    config.train.eval_batches, config.train.final_eval_batches = 2, 3
    tokenizer = tokenizers.ByteTokenizer()
    objective = objectives.for_config(config.data, config.train, 257, 256)
    args = argparse.Namespace(batches=None, whole_split=False)
    batches, total = evaluate._batches(args, config, config.data, tokenizer, objective, 257)
    assert len(list(batches)) == total == 3


def test_more_held_out_batches_than_the_split_fills_read_each_window_once(tmp_path, capsys):
    """train.eval_batches beyond the split's full batches reads those batches, says so, and
    counts only the tokens read."""
    from scaling.data import make_loader

    config = _short_run_config("tiny-small-split", 2)
    config.data.eval_split = "validation[:1]"  # one file of the standard library
    config.train.eval_batches = 1000
    with make_loader(config.data, batch_size=8, seed=0) as loader:
        tokens = loader._eval.num_tokens
    windows = (tokens - 1) // 32  # windows of 33 tokens, overlapping by one
    assert 8 <= windows < 8000, windows  # at least one batch, fewer than asked for
    summary = train(config, tmp_path / "run")
    assert summary["final_eval_tokens"] == windows // 8 * 8 * 32
    out = capsys.readouterr().out
    assert (f"note: train.eval_batches=1000 asks for 8,000 held-out windows; the split has "
            f"{windows:,}, so {windows // 8} batch") in out


def test_more_batches_than_the_split_fills_are_cut_with_a_note(trained_run, tmp_path, capsys):
    from scaling.data import make_loader
    from scaling.trained import run_config, read_summary

    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    config = run_config(read_summary(workdir))
    with make_loader(config.data, batch_size=8, seed=0) as loader:
        windows = (loader._eval.num_tokens - 1) // 32
    asked = windows // 8 + 5
    assert evaluate.main(["--workdir", str(workdir), "--batches", str(asked)]) == 0
    assert (f"note: --batches={asked} asks for {asked * 8:,} held-out windows; the split has "
            f"{windows:,}, so {windows // 8} batches are read") in capsys.readouterr().err
    record = json.loads((workdir / "eval" / f"python_stdlib-validation-{asked}batches.json")
                        .read_text())
    assert (record["batches"], record["batches_requested"]) == (windows // 8, asked)


def test_a_long_evaluation_shows_its_progress(trained_run, tmp_path, monkeypatch, capsys):
    """It was silent until the end, however many batches (`--batches 200000` ran minutes)."""
    import re

    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    monkeypatch.setattr(evaluate, "PROGRESS_SECONDS", 0.0)  # a line after every batch
    assert evaluate.main(["--workdir", str(workdir), "--batches", "3"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # not after the last: the result follows
    for done, line in enumerate(lines, 1):
        assert re.fullmatch(rf"\[eval\] batch {done}/3 \| [0-9.]+ batches/s \| ETA 0m\d\ds", line)

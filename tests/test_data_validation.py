"""`validate_data_config`: bad input gives a ConfigError naming the field, before any corpus is
read."""

import functools

import pytest

from scaling import config as config_lib
from scaling.data import validate_data_config


def _data_config(tmp_path, **fields):
    cfg = config_lib.default_config().data
    cfg.cache_dir = str(tmp_path / "cache")
    cfg.update(fields)
    return cfg


def _error(cfg) -> config_lib.ConfigError:
    with pytest.raises(config_lib.ConfigError) as caught:
        validate_data_config(cfg)
    return caught.value


def test_defaults_pass_and_read_nothing(tmp_path):
    validate_data_config(_data_config(tmp_path))
    assert not (tmp_path / "cache").exists()
    config = config_lib.default_config()
    config.data.cache_dir = str(tmp_path / "cache")
    config_lib.validate(config)


@pytest.mark.parametrize("dataset", ["no_such_dataset", "", "python-stdlib"])
def test_unknown_dataset(tmp_path, dataset):
    error = _error(_data_config(tmp_path, dataset=dataset))
    assert error.field == "data.dataset" and "python_stdlib" in str(error)


@pytest.mark.parametrize("dataset,feature", [("python_stdlib", "content"),
                                             ("tiny_shakespeare", "title"),
                                             ("lm1b", "txt")])
def test_unknown_feature(tmp_path, dataset, feature):
    error = _error(_data_config(tmp_path, dataset=dataset, feature=feature))
    assert error.field == "data.feature" and feature in str(error)


def test_known_tfds_text_datasets_pass(tmp_path):
    for dataset in ("tiny_shakespeare", "lm1b", "c4/en"):
        validate_data_config(_data_config(tmp_path, dataset=dataset, eval_split="test"))


def test_unknown_split(tmp_path):
    error = _error(_data_config(tmp_path, eval_split="test"))
    assert error.field == "data.eval_split" and "validation" in str(error)
    validate_data_config(_data_config(tmp_path, train_split="train[:10%]"))


def test_text_files_without_files(tmp_path):
    error = _error(_data_config(tmp_path, dataset="text_files", files=""))
    assert error.field == "data.files"
    error = _error(_data_config(tmp_path, dataset="text_files", files=" , "))
    assert error.field == "data.files"


def test_text_files_with_missing_path(tmp_path):
    (tmp_path / "real.txt").write_text("hello")
    missing = str(tmp_path / "missing.txt")
    error = _error(_data_config(tmp_path, dataset="text_files",
                                files=f"{tmp_path / 'real.txt'},{missing}"))
    assert error.field == "data.files" and "missing.txt" in str(error)


def test_text_files_folder_without_text_is_an_empty_corpus(tmp_path):
    from scaling import data

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "image.bin").write_bytes(b"\x00" * 10)
    cfg = _data_config(tmp_path, dataset="text_files", files=str(empty))
    validate_data_config(cfg)  # cheap: the folder exists
    with pytest.raises(config_lib.ConfigError, match="data.files"):
        data.make_loader(cfg, batch_size=2, seed=0)


def test_sentencepiece_needs_a_vocabulary_or_a_model(tmp_path):
    error = _error(_data_config(tmp_path, tokenizer="sentencepiece"))
    assert error.field == "data.vocab_size"
    error = _error(_data_config(tmp_path, tokenizer="sentencepiece",
                                spm_model=str(tmp_path / "x.model")))
    assert error.field == "data.spm_model"
    validate_data_config(_data_config(tmp_path, tokenizer="sentencepiece", vocab_size=1024))


@pytest.mark.parametrize("content", [b"", b"hello\n"])
def test_sentencepiece_model_that_does_not_load(tmp_path, content):
    (tmp_path / "x.model").write_bytes(content)
    error = _error(_data_config(tmp_path, tokenizer="sentencepiece",
                                spm_model=str(tmp_path / "x.model")))
    assert error.field == "data.spm_model" and "cannot load" in str(error)


def test_sentencepiece_model_of_another_vocabulary(tmp_path):
    from scaling.data import tokenizers

    path = tmp_path / "300.model"
    path.write_bytes(tokenizers.train_sentencepiece(
        iter([b"the quick brown fox jumps over the lazy dog\n" * 20] * 5), vocab_size=300))
    error = _error(_data_config(tmp_path, tokenizer="sentencepiece", spm_model=str(path),
                                vocab_size=1000))
    assert error.field == "data.vocab_size" and "0 or 300" in str(error)
    for vocab_size in (0, 300):
        validate_data_config(_data_config(tmp_path, tokenizer="sentencepiece",
                                          spm_model=str(path), vocab_size=vocab_size))


@pytest.mark.parametrize("vocab_size", [2**31, 2**40, 100])
def test_vocabulary_outside_what_tokens_can_hold(tmp_path, vocab_size):
    error = _error(_data_config(tmp_path, tokenizer="sentencepiece", vocab_size=vocab_size))
    assert error.field == "data.vocab_size" and str(vocab_size) in str(error)


def test_byte_tokenizer_rejects_sentencepiece_settings(tmp_path):
    assert _error(_data_config(tmp_path, vocab_size=1000)).field == "data.vocab_size"
    assert _error(_data_config(tmp_path, spm_model="m.model")).field == "data.spm_model"
    validate_data_config(_data_config(tmp_path, vocab_size=257))


def test_cache_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    error = _error(_data_config(tmp_path, cache_dir=str(tmp_path / "file")))
    assert error.field == "data.cache_dir"


@pytest.mark.parametrize("field", ["cache_dir", "tfds_data_dir"])
def test_cache_folder_inside_a_file(tmp_path, field):
    # A folder would be made under the file: NotADirectoryError when the data is prepared.
    (tmp_path / "file").write_text("")
    error = _error(_data_config(tmp_path, **{field: str(tmp_path / "file" / "sub")}))
    assert error.field == f"data.{field}"
    assert str(tmp_path / "file") + " is a file" in str(error)
    validate_data_config(_data_config(tmp_path, **{field: str(tmp_path / "new" / "sub")}))


@pytest.mark.parametrize("fields, field, allowed", [
    ({"cache_dir": "{long}"}, "cache_dir", "the file system can hold (File name too long)"),
    ({"tfds_data_dir": "{long}"}, "tfds_data_dir", "the file system can hold (File name too long)"),
    ({"tokenizer": "sentencepiece", "spm_model": "{long}"}, "spm_model",
     "a path the file system can hold (File name too long)"),
    ({"dataset": "text_files", "files": "{long}"}, "files", "(not found: "),
])
def test_a_name_longer_than_the_file_system_allows_is_refused(tmp_path, fields, field, allowed):
    # An OSError traceback ("[Errno 36] File name too long") from the path checks.
    long = str(tmp_path / ("x" * 300))
    error = _error(_data_config(tmp_path, **{k: v.format(long=long) for k, v in fields.items()}))
    assert error.field == f"data.{field}" and allowed in str(error), str(error)


@pytest.mark.parametrize("inside", ["", "sub"])
def test_scaling_cache_at_or_inside_a_file(tmp_path, monkeypatch, inside):
    # With data.cache_dir='' the cache is $SCALING_CACHE: under a file, a traceback when the data
    # was prepared.
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / inside if inside else tmp_path / "file"
    monkeypatch.setenv("SCALING_CACHE", str(home))
    message = str(_error(_data_config(tmp_path, cache_dir="")))
    where = "is under" if inside else "is"
    assert message == (f"config.data.cache_dir='' is not allowed: a folder (or '' for $SCALING_CACHE "
                       f"or ~/.cache/scaling); $SCALING_CACHE={home} {where} a file "
                       f"({tmp_path / 'file'})")
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "new" / "sub"))
    validate_data_config(_data_config(tmp_path, cache_dir=""))
    monkeypatch.setenv("SCALING_CACHE", str(home))
    validate_data_config(_data_config(tmp_path))  # a data.cache_dir of its own: not read


def test_message_names_field_value_and_allowed(tmp_path):
    message = str(_error(_data_config(tmp_path, dataset="nope")))
    assert message.startswith("config.data.dataset='nope' is not allowed:")


@pytest.mark.parametrize("field", ["train_split", "eval_split"])
@pytest.mark.parametrize("dataset", ["python_stdlib", "tiny_shakespeare"])
@pytest.mark.parametrize("split, reason", [
    ("validation[abc]", "TFDS cannot parse this one (Unrecognized split format"),
    ("validation[:200%]", "TFDS cannot parse this one (When unit=%, percent slice boundaries "
                          "should be in [-100, 100])"),
    ("validation[1.5:]", "TFDS cannot parse this one"),
    ("validation[]", "TFDS cannot parse this one"),
    ("validation[:0%]", "this slice selects no example (its start is not before its end)"),
    ("validation[:0]", "this slice selects no example"),
    ("validation[50%:10%]", "this slice selects no example"),
    ("validation[-5:-10]", "this slice selects no example"),
    ("validation[100%:]", "this slice selects no example"),
])
def test_a_slice_tfds_cannot_read_or_that_selects_nothing(tmp_path, field, dataset, split, reason):
    """Refused from the slice alone, where the split's size is not known (an unprepared dataset),
    for the training split as for the eval split; tiny_shakespeare's split names are not known
    before it is prepared, so its slices are checked all the same."""
    cfg = _data_config(tmp_path, dataset=dataset, **{field: split})
    error = _error(cfg)
    assert error.field == f"data.{field}" and error.value == split
    assert str(error).startswith(f"config.data.{field}={split!r} is not allowed: ")
    assert reason in str(error)


@pytest.mark.parametrize("split", ["validation[:10%]", "validation[-5%:]", "validation[5:]",
                                   "validation[10:20]", "validation[:-1]", "validation"])
def test_slices_that_can_select_something_pass(tmp_path, split):
    validate_data_config(_data_config(tmp_path, eval_split=split))


def test_a_slice_is_checked_against_the_splits_size_where_it_is_known():
    """Where the prepared dataset's info gives the split's size (`sources.open_split`, or a
    builder's bundled metadata), a slice that selects none of it or reaches past it is refused."""
    import tensorflow_datasets as tfds

    from scaling.data import sources

    infos = tfds.core.SplitDict([tfds.core.SplitInfo(name=name, shard_lengths=[count],
                                                     num_bytes=0, filename_template=None)
                                 for name, count in (("train", 100), ("validation", 1))])
    check = functools.partial(sources.check_split, "data.eval_split",
                              known_splits=("train", "validation"), split_infos=infos)
    for split in ("validation", "validation[:1]", "train[:10%]", "train[-1:]", "train[99:]"):
        check(split=split)
    for split, reason in [
            ("validation[:40%]", "this slice selects no example of it (validation holds 1 "
                                 "example)"),
            ("train[100:]", "this slice selects no example of it (train holds 100 examples)"),
            ("train[5:200]", "its bounds reach past the split's end (train holds 100 examples)"),
            ("train[:10%]+validation[1:]", "selects no example of it (validation holds 1 "
                                           "example)")]:
        with pytest.raises(config_lib.ConfigError) as caught:
            check(split=split)
        assert caught.value.field == "data.eval_split" and reason in str(caught.value)


@pytest.mark.parametrize("train_split, eval_split, shared", [
    ("train[:60%]", "train[50%:]", True),  # 10% of train in both: accepted before
    ("train[:90%]", "train[90%:]", False),
    ("train[:11]", "train[10:]", True),
    ("train[:10]", "train[10:]", False),
    ("train[:51%]", "train[-50%:]", True),
    ("train[:50%]", "train[-50%:]", False),
    ("train[:40%]+train[50%:]", "train[40%:60%]", True),
    ("train[:40%]+train[60%:]", "train[40%:60%]", False),
    ("train[0:60]", "train[0%:]", True),  # every example, against a count
    # Bounds in different units, or counted from an end of unknown size, cannot be compared.
    ("train[:100]", "train[10%:]", False),
    ("train[:-10]", "train[-10:]", False),
])
def test_slices_of_one_split_that_overlap_are_no_held_out_split(tmp_path, train_split, eval_split,
                                                                 shared):
    cfg = _data_config(tmp_path, train_split=train_split, eval_split=eval_split)
    if not shared:
        validate_data_config(cfg)
        return
    error = _error(cfg)
    assert error.field == "data.eval_split" and "a split held out from" in str(error)


@pytest.mark.parametrize("field", ["train_split", "eval_split"])
def test_text_pairs_take_whole_splits_only(tmp_path, field):
    # A line's split is a hash of its source: a slice matched no line, and the loader blamed
    # data.files for holding no pair of it.
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"source {i}\ttarget {i}\n" for i in range(40)))
    split = {"train_split": "train[:50%]", "eval_split": "validation[:50%]"}[field]
    error = _error(_data_config(tmp_path, dataset="text_pairs", files=str(pairs),
                                **{field: split}))
    assert error.field == f"data.{field}" and error.value == split
    assert "'train' or 'validation' with dataset='text_pairs'" in str(error)

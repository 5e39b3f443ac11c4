"""Source/target pairs for seq2seq: tab-separated files, a TFDS translation builder (to the
network edge for the real ones), padded batches as a pure function of (seed, step)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from scaling import config as config_lib
from scaling.data import file_splits, make_loader, pairs, sources, validation


def seq2seq_config(**data_fields):
    config = config_lib.default_config()
    config.model.layout, config.train.objective = "encoder_decoder", "seq2seq"
    config.data.update(data_fields)
    return config


def write_pairs(path, count=300):
    lines = [f"source {index} {'x' * (index % 7)}\ttarget {index}" for index in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_text_pairs_split_by_line_and_batch_padded_with_eos(tmp_path):
    lines = write_pairs(tmp_path / "pairs.tsv")
    config = seq2seq_config(dataset="text_pairs", files=str(tmp_path / "pairs.tsv"), seq_len=12,
                            target_len=8, cache_dir=str(tmp_path))
    config_lib.validate(config)
    expected = {split: [line for line in lines
                        if file_splits.split_of(line.split("\t")[0]) == split]
                for split in file_splits.SPLITS}
    assert expected["validation"] and len(expected["train"]) + len(expected["validation"]) == 300
    held_out = pairs.read_text_pairs(str(tmp_path / "pairs.tsv"), "validation")
    assert [s + b"\t" + t for s, t in held_out] == [line.encode() for line in expected["validation"]]

    loader = make_loader(config.data, batch_size=8, seed=3, train_cfg=config.train)
    special, eod = loader.objective.special, loader.eod_id
    assert (special.pad, special.bos) == (257, 259) and loader.objective.vocab_size == 260
    batch = loader.batch(5)
    assert batch["encoder_inputs"].shape == (8, 12) and batch["targets"].shape == (8, 8)
    train_lines = {line.encode() for line in expected["train"]}
    for row in range(8):
        source = bytes(t for t in batch["encoder_inputs"][row] if t < 256)
        target_ids = batch["targets"][row]
        length = int(batch["loss_mask"][row].sum())
        target = bytes(target_ids[:length - 1].tolist())
        # The source is cut to 12 tokens, the target to 7 and closed by EOS, then PAD.
        assert any(line.startswith(source) and line.split(b"\t")[1][:7] == target
                   for line in train_lines)
        assert target_ids[length - 1] == eod and (target_ids[length:] == special.pad).all()
    np.testing.assert_array_equal(batch["inputs"][:, 0], special.bos)
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    # Deterministic in (seed, step); each host builds its share of the same global batch.
    again = make_loader(config.data, batch_size=8, seed=3, train_cfg=config.train).batch(5)
    second_host = make_loader(config.data, batch_size=8, seed=3, process_index=1,
                              process_count=2, train_cfg=config.train).batch(5)
    for key in batch:
        np.testing.assert_array_equal(again[key], batch[key])
        np.testing.assert_array_equal(second_host[key], batch[key][4:])
    # An epoch visits every training pair once.
    steps = -(-loader.train_pairs // 8)
    seen = np.concatenate([make_loader(config.data, batch_size=8, seed=3, train_cfg=config.train)
                           .batch(step)["encoder_inputs"] for step in range(steps)])
    assert len({row.tobytes() for row in seen[:loader.train_pairs]}) == loader.train_pairs


def test_the_whole_held_out_split_of_pairs_is_every_full_batch(tmp_path):
    lines = write_pairs(tmp_path / "pairs.tsv")
    held_out = sum(file_splits.split_of(line.split("\t")[0]) == "validation" for line in lines)
    config = seq2seq_config(dataset="text_pairs", files=str(tmp_path / "pairs.tsv"), seq_len=12,
                            target_len=8, cache_dir=str(tmp_path))
    loader = make_loader(config.data, batch_size=8, seed=3, train_cfg=config.train)
    batches = loader.eval_batches(-1)
    assert len(batches) == held_out // 8 >= 1
    sources_read = {batch["encoder_inputs"][row].tobytes() for batch in batches for row in range(8)}
    assert len(sources_read) == held_out // 8 * 8  # each pair at most once


def test_text_pairs_need_tabs_and_the_seq2seq_objective(tmp_path):
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(config_lib.ConfigError, match="has no tab"):
        pairs.read_text_pairs(str(tmp_path / "bad.tsv"), "train")
    config = seq2seq_config(dataset="text_pairs", files=str(tmp_path / "missing.tsv"))
    with pytest.raises(config_lib.ConfigError, match="not found"):
        config_lib.validate(config)
    config = config_lib.default_config()
    config.data.update(dataset="text_pairs", files=str(tmp_path / "bad.tsv"))
    with pytest.raises(config_lib.ConfigError, match="pairs are read only by"):
        config_lib.validate(config)
    config = seq2seq_config()
    with pytest.raises(config_lib.ConfigError, match="text_pairs"):
        config_lib.validate(config)  # seq2seq on a corpus of documents


def test_files_with_no_pair_of_a_split_are_named_not_the_split(tmp_path):
    # It blamed data.train_split ('a split ... with at least one pair (this one is empty)'),
    # which names no file and is not what to change.
    (tmp_path / "empty.tsv").write_text("\n")
    trained = next(f"s{index}" for index in range(100)
                   if file_splits.split_of(f"s{index}") == "train")
    (tmp_path / "trained.tsv").write_text(f"{trained}\tt\n")
    for name, field, split in (("empty.tsv", "data.train_split", "train"),
                               ("trained.tsv", "data.eval_split", "validation")):
        files = str(tmp_path / name)
        config = seq2seq_config(dataset="text_pairs", files=files, cache_dir=str(tmp_path))
        with pytest.raises(config_lib.ConfigError) as error:
            make_loader(config.data, batch_size=2, seed=0, train_cfg=config.train)
        assert str(error.value) == (
            f"config.data.files={files!r} is not allowed: tab-separated files holding at least "
            f"one pair of each split (they hold none for {field}={split!r}; a line's split is a "
            "hash of its source)")


def test_a_pairs_file_whose_name_looks_like_a_pattern_is_that_file(tmp_path):
    # `pairs[1].tsv` was read as a pattern and refused as "not found".
    lines = write_pairs(tmp_path / "pairs[1].tsv", count=40)
    config = seq2seq_config(dataset="text_pairs", files=str(tmp_path / "pairs[1].tsv"))
    config_lib.validate(config)
    read = [pairs.read_text_pairs(config.data.files, split) for split in file_splits.SPLITS]
    assert sum(len(split) for split in read) == len(lines)


def test_the_translations_of_one_source_share_its_split(tmp_path):
    # Tatoeba-style files list several translations of one sentence; split by line, a held-out
    # source was also trained on (here 12 of 40 sources were in both splits).
    lines = [f"sentence {index}\ttranslation {index}.{variant}"
             for index in range(40) for variant in range(3)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    sources = {split: {s for s, _ in pairs.read_text_pairs(str(tmp_path / "pairs.tsv"), split)}
               for split in file_splits.SPLITS}
    assert sources["validation"] and not sources["train"] & sources["validation"]
    assert len(sources["train"]) + len(sources["validation"]) == 40


def test_text_pairs_glob_pattern_reads_every_matching_file(tmp_path):
    (tmp_path / "pairs").mkdir()
    first = write_pairs(tmp_path / "pairs" / "a.tsv", count=40)
    second = [line.replace("source", "other") for line in write_pairs(tmp_path / "pairs" / "b.tsv")]
    (tmp_path / "pairs" / "b.tsv").write_text("\n".join(second) + "\n")
    (tmp_path / "pairs" / "sub").mkdir()  # a folder the pattern matches is not a file of pairs
    config = seq2seq_config(dataset="text_pairs", files=f"{tmp_path}/pairs/*")
    config_lib.validate(config)
    for split in file_splits.SPLITS:
        expected = [line.encode() for line in first + second
                    if file_splits.split_of(line.split("\t")[0]) == split]
        read = pairs.read_text_pairs(f"{tmp_path}/pairs/*", split)
        assert [s + b"\t" + t for s, t in read] == expected
    # A file named again by another entry is read once.
    assert pairs.read_text_pairs(f"{tmp_path}/pairs/b.tsv,{tmp_path}/pairs/*", "train") == (
        pairs.read_text_pairs(f"{tmp_path}/pairs/b.tsv", "train")
        + pairs.read_text_pairs(f"{tmp_path}/pairs/a.tsv", "train"))
    for files, problem in ((f"{tmp_path}/pairs/*.csv", r"not found: .*\*\.csv"),
                           (f"{tmp_path}/pairs", "pairs is a folder")):
        config.data.files = files
        with pytest.raises(config_lib.ConfigError, match=rf"data\.files.*{problem}"):
            config_lib.validate(config)


@pytest.mark.parametrize("bad_line, problem", [
    ("Go.\tVa !\tCC-BY 2.0 (France) Attribution", "line 3 has 2 tabs"),  # a third column
    ("\tcible sans source", "line 3 has an empty source"),
    ("source without target\t  ", "line 3 has an empty target"),
])
def test_text_pairs_line_not_one_source_and_one_target_is_named(tmp_path, bad_line, problem):
    # Without the check a third column was read as part of the target and an empty side
    # trained as a pair.
    (tmp_path / "pairs.tsv").write_text(f"one\tun\n\n{bad_line}\ntwo\tdeux\n")
    for split in file_splits.SPLITS:
        with pytest.raises(config_lib.ConfigError, match=f"data.files.*pairs.tsv {problem}"):
            pairs.read_text_pairs(str(tmp_path / "pairs.tsv"), split)


class ScalingTestTranslation(tfds.core.GeneratorBasedBuilder):
    """A registered translation builder that needs no download: stands in for WMT and TED."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.Translation(
            languages=("de", "en")))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30), "validation": self._generate_examples(4)}

    def _generate_examples(self, count):
        for index in range(count):
            yield index, {"de": f"Satz {index}", "en": f"sentence {index}"}


def test_a_pairs_file_that_cannot_be_read_is_named_on_data_files(tmp_path):
    # A read of /proc/self/mem at offset 0 fails with EIO, as a failing disk's would: it was "the
    # run failed on a file or connection (OSError: ...)", exit 1.
    write_pairs(tmp_path / "good.tsv")
    (tmp_path / "bad.tsv").symlink_to("/proc/self/mem")
    files = f"{tmp_path / 'good.tsv'},{tmp_path / 'bad.tsv'}"
    # Named as the file it links to: a file named directly is read at its resolved path.
    expected = (f"config.data.files={files!r} is not allowed: readable text files "
                f"({(tmp_path / 'bad.tsv').resolve()} cannot be read: Input/output error)")
    for check in (lambda: pairs.read_text_pairs(files, "train"),
                  lambda: pairs.check_pair_files(files)):
        with pytest.raises(config_lib.ConfigError) as error:
            check()
        assert str(error.value) == expected


def test_tfds_translation_builder_gives_pairs(tmp_path):
    config = seq2seq_config(dataset="scaling_test_translation", source_feature="de",
                            target_feature="en", seq_len=16, cache_dir=str(tmp_path))
    config_lib.validate(config)
    loader = make_loader(config.data, batch_size=4, seed=0, train_cfg=config.train)
    assert loader.train_pairs == 30
    batch = loader.eval_batches(1)[0]
    read = set()
    for row in range(4):
        source = bytes(t for t in batch["encoder_inputs"][row] if t < 256).decode()
        target = bytes(t for t in batch["targets"][row] if t < 256).decode()
        read.add((source, target))
    # TFDS stores examples in its own order: the held-out split's four pairs, each intact.
    assert read == {(f"Satz {index}", f"sentence {index}") for index in range(4)}
    config.data.target_feature = "fr"
    with pytest.raises(config_lib.ConfigError, match="data.target_feature.*de, en"):
        config_lib.validate(config)


@pytest.mark.parametrize("dataset, source, target", [
    ("wmt14_translate/de-en", "de", "en"), ("ted_hrlr_translate/pt_to_en", "pt", "en")])
def test_real_translation_builders_validate_without_network(tmp_path, dataset, source, target):
    cfg = seq2seq_config(dataset=dataset, source_feature=source, target_feature=target,
                         cache_dir=str(tmp_path)).data
    validation.validate_data_config(cfg)
    cfg.source_feature = "text"
    with pytest.raises(config_lib.ConfigError, match=f"data.source_feature.*{target}"):
        validation.validate_data_config(cfg)


def test_translation_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    requested = []

    def unreachable(self, url_or_urls):
        requested.append(url_or_urls)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", unreachable)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", unreachable)
    config = seq2seq_config(dataset="ted_hrlr_translate/pt_to_en", source_feature="pt",
                            target_feature="en", cache_dir=str(tmp_path))
    config_lib.validate(config)
    with pytest.raises(sources.DatasetUnavailableError) as failure:
        make_loader(config.data, batch_size=4, seed=0, train_cfg=config.train)
    assert requested
    message = str(failure.value)
    for expected in ("ted_hrlr_translate", "network", "data.tfds_data_dir"):
        assert expected in message


@pytest.mark.parametrize("vocab_size", [0, 300])
def test_the_model_masks_the_padding_the_batches_hold(tmp_path, vocab_size):
    # A model vocabulary above the tokenizer's put the model's padding id after it (300), while
    # the batches pad with the id after the tokenizer's (257): padding went unmasked.
    write_pairs(tmp_path / "pairs.tsv")
    config = seq2seq_config(dataset="text_pairs", files=str(tmp_path / "pairs.tsv"), seq_len=12,
                            target_len=8, cache_dir=str(tmp_path))
    config.model.vocab_size = vocab_size
    config_lib.validate(config)
    loader = make_loader(config.data, batch_size=8, seed=3, train_cfg=config.train)
    model = config_lib.model_config(config, loader.vocab_size)
    assert model.source_pad_id == loader.objective.special.pad == 257
    assert model.vocab_size == (vocab_size or 257) + 3  # PAD, MASK and BOS after the table
    assert (loader.batch(0)["encoder_inputs"] == model.source_pad_id).any()

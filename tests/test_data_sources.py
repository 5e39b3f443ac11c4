"""Where documents come from: the embedded stdlib corpus, a user's files, and any TFDS builder
(tested up to the network edge: no download happens here)."""

import hashlib
import os
import pathlib
import re
import sysconfig

import pytest
import tensorflow_datasets as tfds

from scaling import config as config_lib
from scaling import data
from scaling.data import file_splits, sources, stdlib_corpus, text_files


def _data_config(**fields):
    cfg = config_lib.default_config().data
    cfg.update(fields)
    return cfg


def _small_corpus(folder: pathlib.Path) -> pathlib.Path:
    """Twelve small Python files (both splits hold some), in `folder`."""
    folder.mkdir()
    for index in range(12):
        (folder / f"m{index}.py").write_text(f"def f{index}(x):\n    return x * {index}\n" * 30)
    return folder


def _paths_of(split):
    return sorted(example["path"].decode()
                  for batch in [split.data_source.__getitems__(list(range(split.num_documents)))]
                  for example in batch)


def test_stdlib_file_list_matches_an_independent_walk():
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    expected = []
    for directory, folders, names in os.walk(root):
        relative = pathlib.Path(directory).relative_to(root)
        if {"site-packages", "test", "tests", "idle_test"} & set(relative.parts):
            continue
        expected += [(relative / name).as_posix() for name in names if name.endswith(".py")]
    listed = [relative for relative, _ in stdlib_corpus.stdlib_files()]
    assert listed == sorted(expected)
    assert "os.py" in listed and "json/decoder.py" in listed


def test_stdlib_splits_share_no_file():
    cfg = _data_config()  # the session cache from conftest: prepared once for all tests
    train = sources.open_split(cfg, "train")
    validation = sources.open_split(cfg, "validation")
    train_paths, validation_paths = set(_paths_of(train)), set(_paths_of(validation))
    assert not train_paths & validation_paths
    assert train_paths | validation_paths == {r for r, _ in stdlib_corpus.stdlib_files()}
    share = len(validation_paths) / len(train_paths | validation_paths)
    # Hundreds of files, each held out with probability VALIDATION_FRACTION by its path's hash.
    assert file_splits.VALIDATION_FRACTION / 2 < share < 2 * file_splits.VALIDATION_FRACTION
    for path in validation_paths:
        assert file_splits.split_of(path) == "validation"


def test_stdlib_batches_are_the_same_in_a_fresh_process(tmp_path, repo):
    from conftest import run_python

    code = (
        "from scaling import config, data\n"
        "import hashlib\n"
        f"cfg = config.default_config().data; cfg.cache_dir = {str(tmp_path / 'fresh')!r}\n"
        "loader = data.make_loader(cfg, batch_size=4, seed=11)\n"
        "print(hashlib.sha256(loader.batch(123)['inputs'].tobytes()).hexdigest())\n")
    fresh_digest = run_python(code).stdout.split()[-1]
    here = _data_config()  # a different cache folder, built independently
    with data.make_loader(here, batch_size=4, seed=11) as loader:
        assert hashlib.sha256(loader.batch(123)["inputs"].tobytes()).hexdigest() == fresh_digest


def test_text_files_split_by_file_and_single_file_by_tail(tmp_path):
    files = [(f"f{i}.txt", tmp_path / f"f{i}.txt") for i in range(5)]
    splits = text_files.assign_splits(files)
    assert splits["train"] and splits["validation"]
    assert not set(splits["train"]) & set(splits["validation"])
    assert sorted(splits["train"] + splits["validation"]) == sorted(p for _, p in files)

    single = tmp_path / "one.txt"
    lines = [f"line {i}\n" for i in range(1000)]
    single.write_text("".join(lines))
    cfg = _data_config(dataset="text_files", files=str(single), cache_dir=str(tmp_path / "c"))
    train = sources.open_split(cfg, "train")
    validation = sources.open_split(cfg, "validation")
    train_text = b"".join(d for batch in train.document_batches() for d in batch).decode()
    validation_text = b"".join(d for batch in validation.document_batches() for d in batch).decode()
    assert train_text + validation_text == "".join(lines)
    assert validation_text.startswith("line ") and train_text.endswith("\n")
    # The cut is the line start nearest the fraction: within a line (9 of 8,890 characters).
    share = len(validation_text) / len("".join(lines))
    assert abs(share - file_splits.VALIDATION_FRACTION) < 0.01


@pytest.mark.parametrize("text, cut", [
    # A title, then one line of 2,000 words (12,008 characters): no line starts near 90%
    # (10,807), so the tail starts at the nearest word, the one at 10,808 (1 + 8 + 6·1,800).
    ("# Title\n" + " ".join(["alpha"] * 2000) + "\n", 8 + 6 * 1800),
    ("ab\n" * 400, 1080),  # a line start exactly at 90%
    ("x" * 1000, 900),  # no line or word: 90% itself
    ("xy", 1),
])
def test_a_single_files_held_out_tail_is_near_its_share(text, cut):
    assert text_files.tail_cut(text) == cut


def test_text_files_folder_skips_hidden_and_binary(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("beta")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    found = [name for name, _ in text_files.expand_files([str(tmp_path)])]
    assert found == ["a.txt", "sub/b.md"]


def test_binary_file_named_directly_is_refused(tmp_path):
    # A compressed corpus named by path would otherwise train on its compressed bytes.
    (tmp_path / "notes.txt").write_text("plain text\n")
    (tmp_path / "corpus.txt.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    files = f"{tmp_path / 'notes.txt'},{tmp_path / 'corpus.txt.gz'}"
    with pytest.raises(config_lib.ConfigError, match=r"data\.files.*corpus\.txt\.gz is binary"):
        text_files.text_files_config(files)
    assert text_files.text_files_config(str(tmp_path / "notes.txt")).entries == (
        str(tmp_path / "notes.txt"),)


def test_a_file_that_cannot_be_read_is_named_on_data_files(tmp_path):
    # A read of /proc/self/mem at offset 0 fails with EIO, as a failing disk's would: it was "the
    # run failed on a file or connection (OSError: ...)", exit 1, naming neither field nor file.
    corpus = _small_corpus(tmp_path / "corpus")
    (corpus / "bad.txt").symlink_to("/proc/self/mem")
    for files, named in ((str(corpus), corpus / "bad.txt"),
                         (f"{corpus / 'm1.py'},{corpus / 'bad.txt'}", corpus / "bad.txt")):
        expected = re.escape(f"is not allowed: readable text files ({named} cannot be read: "
                             "Input/output error)")
        with pytest.raises(config_lib.ConfigError, match=rf"^config\.data\.files=.*{expected}$"):
            text_files.text_files_config(files)



def test_a_file_that_fails_past_its_first_8_kib_is_named_on_data_files(tmp_path, monkeypatch):
    corpus = _small_corpus(tmp_path / "corpus")
    read_bytes = text_files.read_bytes

    def failing(path, size=-1):  # the check reads 8 KiB; the preparation, the whole file
        if size == -1 and path.name == "m3.py":
            raise OSError(5, "Input/output error", str(path))
        return read_bytes(path, size)

    monkeypatch.setattr(text_files, "read_bytes", failing)
    cfg = _data_config(dataset="text_files", files=str(corpus), cache_dir=str(tmp_path / "c"))
    expected = re.escape(f"readable text files ({corpus / 'm3.py'} cannot be read: Input/output "
                         "error)")
    with pytest.raises(config_lib.ConfigError, match=rf"^config\.data\.files=.*{expected}$"):
        sources.open_split(cfg, "train")


def _refuse_listing(monkeypatch, folder: pathlib.Path) -> None:
    """Listing `folder` fails as a folder without read permission does (for root too)."""
    scandir = os.scandir

    def refusing(path="."):
        if pathlib.Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)


def test_a_folder_that_cannot_be_listed_is_named_on_data_files(tmp_path, monkeypatch):
    # Such a folder was left out without a word, and the run trained on the rest of the corpus.
    corpus = _small_corpus(tmp_path / "corpus")
    (corpus / "private").mkdir()
    (corpus / "private" / "a.txt").write_text("alpha")
    _refuse_listing(monkeypatch, corpus / "private")
    expected = re.escape(f"readable text files ({corpus / 'private'} cannot be read: "
                         "Permission denied)")
    with pytest.raises(config_lib.ConfigError, match=rf"config\.data\.files=.*{expected}$"):
        text_files.text_files_config(str(corpus))


@pytest.mark.parametrize("dataset", ["text_files", "text_pairs"])
@pytest.mark.parametrize("pattern", ["**/*.txt", "*/*.txt", "private/*.txt", "**/sub/*.txt",
                                     "**"])
def test_a_folder_a_pattern_lists_that_cannot_be_listed_is_named_on_data_files(
        tmp_path, monkeypatch, dataset, pattern):
    # glob leaves a folder it cannot list out without a word: `corpus/**/*.txt` trained on the
    # rest of the corpus, and a pattern whose only folder was unreadable was "not found".
    corpus = tmp_path / "corpus"
    (corpus / "private").mkdir(parents=True)
    (corpus / "open.txt").write_text("alpha\tbeta\n")
    (corpus / "private" / "a.txt").write_text("gamma\tdelta\n")
    _refuse_listing(monkeypatch, corpus / "private")
    files = str(corpus / pattern)
    expected = re.escape(f"readable text files ({corpus / 'private'} cannot be read: "
                         "Permission denied)")
    for check in (lambda: data.validate_data_config(_data_config(dataset=dataset, files=files)),
                  lambda: text_files.text_files_config(files)):
        with pytest.raises(config_lib.ConfigError, match=rf"config\.data\.files=.*{expected}$"):
            check()
    # A pattern that lists no unreadable folder is read as before.
    assert [name for name, _ in text_files.expand_files([str(corpus / "*.txt")])] == ["open.txt"]


def test_glob_patterns_name_files_as_their_folder_would(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("alpha")
    (corpus / "b.md").write_text("beta")
    (corpus / "sub" / "c.txt").write_text("gamma")
    (corpus / ".hidden.txt").write_text("secret")
    (corpus / "sub" / "blob.txt").write_bytes(b"\x00\x01")
    recursive = text_files.expand_files([f"{corpus}/**/*.txt"])
    # Names relative to the pattern's fixed folders: the ones the folder's walk gives, so a
    # file lands in the same split either way.
    assert [name for name, _ in recursive] == ["a.txt", "sub/c.txt"]
    assert [path for _, path in recursive] == [corpus / "a.txt", corpus / "sub" / "c.txt"]
    walked = dict(text_files.expand_files([str(corpus)]))
    assert all(walked[name] == path for name, path in recursive)
    assert [name for name, _ in text_files.expand_files([f"{corpus}/*.txt"])] == ["a.txt"]
    monkeypatch.chdir(corpus)
    assert [name for name, _ in text_files.expand_files(["s?b/*", "*.md"])] == ["sub/c.txt", "b.md"]
    # A pattern that matches a folder walks it, naming files from the pattern's fixed folders.
    assert [name for name, _ in text_files.expand_files(["su[b]"])] == ["sub/c.txt"]


def test_a_file_whose_name_looks_like_a_pattern_is_that_file(tmp_path):
    # `notes[1].txt` was read as a pattern (matching `notes1.txt`) and refused as "not found".
    (tmp_path / "notes[1].txt").write_text("first notes")
    (tmp_path / "notes2.txt").write_text("second notes")
    named = str(tmp_path / "notes[1].txt")
    config = config_lib.default_config()
    config.data.update(dataset="text_files", files=named)
    config_lib.validate(config)
    assert text_files.expand_files([named]) == [("notes[1].txt", tmp_path / "notes[1].txt")]
    assert text_files.text_files_config(named).entries == (named,)
    # A name that is no file is a pattern still.
    pattern = str(tmp_path / "notes[12].txt")
    assert [name for name, _ in text_files.expand_files([pattern])] == ["notes2.txt"]


def test_glob_pattern_that_matches_nothing_is_one_line(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    files = f"{tmp_path}/*.txt,{tmp_path}/*.rst"
    config = config_lib.default_config()
    config.data.update(dataset="text_files", files=files)
    missing = re.escape(f"patterns that match some (not found: {tmp_path}/*.rst)")
    with pytest.raises(config_lib.ConfigError, match=rf"data\.files.*{missing}"):
        config_lib.validate(config)
    with pytest.raises(config_lib.ConfigError, match=r"\*\.rst is neither"):
        text_files.text_files_config(files)
    only_binary = tmp_path / "blobs"
    only_binary.mkdir()
    (only_binary / "x.txt").write_bytes(b"\x00")
    with pytest.raises(config_lib.ConfigError, match="found none"):
        text_files.text_files_config(f"{only_binary}/*.txt")


def test_a_file_two_entries_reach_is_listed_once_under_the_first(tmp_path):
    (tmp_path / "sub").mkdir()
    for index in range(40):
        (tmp_path / "sub" / f"f{index}.txt").write_text(f"text {index}")
    found = text_files.expand_files([str(tmp_path), str(tmp_path / "sub")])
    assert [name for name, _ in found] == sorted(f"sub/f{index}.txt" for index in range(40))
    splits = text_files.assign_splits(found)
    assert not set(splits["train"]) & set(splits["validation"])


def test_a_file_reached_through_links_is_listed_once(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    for index in range(30):
        (corpus / "sub" / f"f{index}.txt").write_text(f"text {index}")
    (corpus / "sub" / "again.txt").symlink_to(corpus / "sub" / "f3.txt")
    (tmp_path / "link").symlink_to(tmp_path)
    # The folder by its real name, then its files by a pattern through the linked folder.
    found = text_files.expand_files([str(corpus), f"{tmp_path}/link/corpus/sub/*.txt"])
    real = [path.resolve() for _, path in found]
    assert len(real) == len(set(real)) == 30
    splits = text_files.assign_splits(found)
    train = {path.resolve() for path in splits["train"]}
    assert train and not train & {path.resolve() for path in splits["validation"]}


def test_edited_text_file_gives_a_new_dataset_and_cache(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index in range(6):
        (corpus / f"{index}.txt").write_text(f"document {index} " * 50)
    cfg = _data_config(dataset="text_files", files=str(corpus), seq_len=16,
                       cache_dir=str(tmp_path / "cache"))
    train_files = text_files.assign_splits(text_files.expand_files([str(corpus)]))["train"]
    expected = sum(path.stat().st_size + 1 for path in train_files)
    with data.make_loader(cfg, batch_size=2, seed=0) as before:
        assert before.tokens_in_split == expected
    old_size = train_files[0].stat().st_size
    train_files[0].write_text("short now")
    with data.make_loader(cfg, batch_size=2, seed=0) as after:
        assert after.tokens_in_split == expected - old_size + len("short now")
    # The same files by a pattern are the same documents, in the same splits.
    cfg.files = f"{corpus}/*.txt"
    with data.make_loader(cfg, batch_size=2, seed=0) as by_pattern:
        assert by_pattern.tokens_in_split == after.tokens_in_split


class ScalingTestCorpus(tfds.core.GeneratorBasedBuilder):
    """A registered TFDS builder that needs no download: stands in for lm1b and friends."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "content": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40), "test": self._generate_examples(5)}

    def _generate_examples(self, count):
        for index in range(count):
            text = f"example {index}: " + "words " * (index + 3)
            yield index, {"content": text, "label": index % 2}


def test_registered_tfds_dataset_goes_builder_to_feature(tmp_path):
    cfg = _data_config(dataset="scaling_test_corpus", feature="content", eval_split="test",
                       seq_len=8, cache_dir=str(tmp_path))
    data.validate_data_config(cfg)
    with data.make_loader(cfg, batch_size=4, seed=0) as loader:
        expected = sum(len(f"example {i}: " + "words " * (i + 3)) + 1 for i in range(40))
        assert loader.tokens_in_split == expected
        text = bytes(loader.eval_batches(1)[0]["inputs"][0].tolist()).decode(errors="replace")
        assert "example" in text or "words" in text
    assert (tmp_path / "tfds" / "scaling_test_corpus" / "1.0.0").is_dir()
    with pytest.raises(config_lib.ConfigError, match="data.feature"):
        data.validate_data_config(_data_config(dataset="scaling_test_corpus", feature="label",
                                               cache_dir=str(tmp_path)))
    # Prepared now, so its split names are known.
    with pytest.raises(config_lib.ConfigError, match="data.eval_split"):
        data.validate_data_config(_data_config(dataset="scaling_test_corpus", feature="content",
                                               cache_dir=str(tmp_path)))


def test_tfds_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    requested = []

    def unreachable(self, url_or_urls):
        requested.append(url_or_urls)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", unreachable)
    cfg = _data_config(dataset="tiny_shakespeare", cache_dir=str(tmp_path))
    data.validate_data_config(cfg)  # known name and feature, no network needed
    builder = sources.make_builder(cfg)
    assert builder.name == "tiny_shakespeare"
    assert pathlib.Path(builder.data_dir).is_relative_to(tmp_path / "tfds")
    with pytest.raises(sources.DatasetUnavailableError) as failure:
        sources.open_split(cfg, "train")
    assert requested and "tinyshakespeare" in str(requested[0])
    message = str(failure.value)
    for expected in ("tiny_shakespeare", "network", "data.tfds_data_dir",
                     str(tmp_path / "tfds" / "downloads" / "manual")):
        assert expected in message


def test_tfds_builder_needing_tensorflow_says_so(tmp_path, monkeypatch):
    """tiny_shakespeare reads its download with tf.io.gfile: past the network edge, without
    TensorFlow, the error must say that rather than fail obscurely."""
    download = tmp_path / "input.txt"
    download.write_text("First Citizen:\nSpeak, speak.\n" * 50)
    monkeypatch.setattr(tfds.download.DownloadManager, "download",
                        lambda self, url_or_urls: str(download))
    cfg = _data_config(dataset="tiny_shakespeare", cache_dir=str(tmp_path))
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(sources.DatasetUnavailableError, match="TensorFlow"):
            sources.open_split(cfg, "train")
    else:
        assert sources.open_split(cfg, "validation").num_documents == 1


def test_wrong_file_in_the_manual_download_folder_is_named(tmp_path):
    """Without network, TFDS takes a download from `<tfds_data_dir>/downloads/manual` under the
    file name it registered, and checks its checksum: a different file is refused, and the
    error says where it is and what to do."""
    cfg = _data_config(dataset="tiny_shakespeare", cache_dir=str(tmp_path))
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "input.txt").write_text("not the file the builder registered\n")
    with pytest.raises(sources.DatasetUnavailableError) as failure:
        sources.open_split(cfg, "train")
    message = str(failure.value)
    assert "NonMatchingChecksumError" in message
    assert str(manual) in message and "unmodified copy" in message


def test_concurrent_runs_on_a_cold_cache_all_open_the_dataset(tmp_path, repo):
    """Several processes starting at once on an empty cache (a sweep's first runs): one prepares
    the corpus under the lock, the others wait for it, and every one then sees its splits."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from scaling import config\n"
            "from scaling.data import sources\n"
            "cfg = config.default_config().data\n"
            "cfg.cache_dir = sys.argv[1]\n"
            "print(sources.open_split(cfg, 'train').num_documents,"
            " sources.open_split(cfg, 'validation').num_documents)\n")
    env = dict(os.environ, PYTHONPATH=str(repo))
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cold")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for _ in range(3)]
    outcomes = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    for returncode, stdout, stderr in outcomes:
        assert returncode == 0, stderr[-2000:]
    counts = {stdout.split()[0] for _, stdout, _ in outcomes}
    assert len(counts) == 1 and int(counts.pop()) > 100


def _can_mount_read_only() -> bool:
    """Whether this process may bind-mount a folder read-only in a mount namespace of its own
    (root, with `unshare`): the one way to make a folder read-only to root."""
    import shutil
    import subprocess

    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(),
                    reason="needs root and unshare to bind-mount a folder read-only")
@pytest.mark.parametrize("tokenizer", [{}, {"tokenizer": "sentencepiece", "vocab_size": 300}])
def test_a_read_only_cache_is_read_and_one_that_must_be_built_names_the_field(tmp_path,
                                                                             tokenizer):
    """A complete cache on a read-only mount is read as it is (a trained SentencePiece model
    too: its build lock was taken all the same); one that lacks its token cache, or its
    prepared dataset, is refused in one line naming data.cache_dir."""
    import json
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    corpus = _small_corpus(tmp_path / "corpus")
    cfg = _data_config(dataset="text_files", files=str(corpus), seq_len=16,
                       cache_dir=str(tmp_path / "full"), **tokenizer)
    with data.make_loader(cfg, batch_size=4, seed=0) as loader:
        expected = loader.batch(0)["inputs"].tolist()
    shutil.copytree(tmp_path / "full", tmp_path / "prepared")
    shutil.rmtree(tmp_path / "prepared" / "tokens")
    (tmp_path / "empty").mkdir()
    # A complete copy made by another version: it said only that the folder must be writable.
    shutil.copytree(tmp_path / "full", tmp_path / "stale")
    for meta in (tmp_path / "stale" / "tokens").glob("*/meta.json"):
        record = json.loads(meta.read_text())
        meta.write_text(json.dumps({**record, "fingerprint": {"cache_version": 0}}))
    code = (
        "import sys\n"
        "from scaling import config\n"
        "from scaling.data import make_loader\n"
        "from scaling.errors import ConfigError\n"
        "import json\n"
        "for folder in sys.argv[3:]:\n"
        "    cfg = config.default_config().data\n"
        "    cfg.update(dataset='text_files', files=sys.argv[1], seq_len=16, cache_dir=folder,\n"
        "               **json.loads(sys.argv[2]))\n"
        "    try:\n"
        "        with make_loader(cfg, batch_size=4, seed=0) as loader:\n"
        "            print(loader.batch(0)['inputs'].tolist())\n"
        "    except ConfigError as error:\n"
        "        print(error)\n")
    folders = [str(tmp_path / name) for name in ("full", "prepared", "empty", "stale")]
    mounts = " && ".join(f"mount --bind -o ro {folder} {folder}" for folder in folders)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" -c "$@"', sys.executable,
         code, str(corpus), json.dumps(tokenizer), *folders],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr[-2000:]
    full, prepared, empty, stale = result.stdout.strip().splitlines()[-4:]  # after TFDS's
    assert full == str(expected)
    assert prepared.startswith(f"config.data.cache_dir={folders[1]!r} is not allowed: a folder "
                               "this process can write: the token cache of text_files/")
    assert prepared.endswith("(Read-only file system)")
    assert empty.startswith(f"config.data.cache_dir={folders[2]!r} is not allowed: a folder "
                            "this process can write: TFDS dataset 'text_files/")
    assert not (tmp_path / "prepared" / "tokens").exists()
    assert stale.startswith(f"config.data.cache_dir={folders[3]!r} is not allowed: a folder "
                            "this process can write: the token cache of text_files/")
    assert stale.endswith("(Read-only file system, and the cache there is stale (built from "
                          "other data or settings))"), stale


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_prepared_dataset_is_one_line_saying_what_to_delete(tmp_path, damage):
    import shutil

    corpus = _small_corpus(tmp_path / "corpus")
    cfg = _data_config(dataset="text_files", files=str(corpus), seq_len=16,
                       cache_dir=str(tmp_path / "cache"))
    data.make_loader(cfg, batch_size=4, seed=0).close()
    shutil.rmtree(tmp_path / "cache" / "tokens")  # so the prepared files are read again
    [prepared] = (tmp_path / "cache" / "tfds" / "text_files").glob("files_*/[0-9]*")
    [train_file] = prepared.glob("text_files-train.array_record-*")
    if damage == "truncate":
        os.truncate(train_file, 100)
    else:
        next(prepared.glob("text_files-validation.array_record-*")).unlink()
    with pytest.raises(sources.DatasetUnavailableError) as refusal:
        data.make_loader(cfg, batch_size=4, seed=0)
    message = str(refusal.value)
    assert message.startswith(f"the prepared TFDS dataset 'text_files/{prepared.parent.name}/"
                              f"{prepared.name}' in {prepared} cannot be read (RuntimeError: ")
    assert message.endswith("); delete that folder and it is prepared again")
    assert "\n" not in message
    shutil.rmtree(prepared)  # as it says: prepared again, and read
    data.make_loader(cfg, batch_size=4, seed=0).close()


def test_tfds_warnings_about_what_we_do_on_purpose_are_not_shown(tmp_path, caplog):
    # Each text_files run printed 3-4 "Using custom data configuration" and 2 "Variant folder ...
    # has no dataset_info.json" warnings: TFDS's notes on our own builder config and on the
    # folder being prepared.
    import logging

    corpus = _small_corpus(tmp_path / "corpus")
    cfg = _data_config(dataset="text_files", files=str(corpus), seq_len=16,
                       cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO):
        data.make_loader(cfg, batch_size=4, seed=0).close()
    shown = [record.getMessage() for record in caplog.records if record.name == "absl"]
    noise = ("Using custom data configuration", "Variant folder ")
    assert not [message for message in shown if message.startswith(noise)], shown


def test_data_paths_an_older_run_recorded_relative_compare_as_absolute(tmp_path, monkeypatch):
    # Runs record data.files and data.spm_model as absolute paths; one recorded as typed is taken
    # from the current folder, so that resuming it there, or a sweep rerun there, agrees with it.
    from launch.sweep import _comparable
    from scaling.trainer import batch_fields

    monkeypatch.chdir(tmp_path)
    recorded = {"data": {"files": "notes, more/*.txt", "spm_model": "~/m.model"},
                "train": {"init_from": ""}}
    fields = batch_fields(recorded)
    assert fields["data.files"] == f"{tmp_path}/notes,{tmp_path}/more/*.txt"
    assert fields["data.spm_model"] == os.path.expanduser("~/m.model")
    flat = _comparable(recorded, "train.init_from")
    assert flat["data.files"] == fields["data.files"]
    assert flat["data.spm_model"] == fields["data.spm_model"]
    assert "data.files" not in _comparable({"data": {"tokenizer": "byte"}}, "train.init_from")


def test_a_killed_preparations_folder_is_removed_by_the_next(tmp_path):
    corpus = _small_corpus(tmp_path / "corpus")
    cfg = _data_config(dataset="text_files", files=str(corpus), cache_dir=str(tmp_path / "cache"))
    data.validate_data_config(cfg)
    builder = sources.make_builder(cfg)
    folder = pathlib.Path(builder.data_dir).parent
    # What TFDS leaves when its preparation is killed before the rename that completes it.
    leftover = folder / f"incomplete.K1LLED_{builder.info.version}"
    (leftover / "part").mkdir(parents=True)
    sources.prepare(builder)
    assert builder.is_prepared() and not leftover.exists()
    (leftover / "part").mkdir(parents=True)
    sources.prepare(sources.make_builder(cfg))  # prepared already: still removed
    assert not leftover.exists() and pathlib.Path(builder.data_dir).is_dir()


def test_a_checkpoint_an_older_run_recorded_with_relative_data_paths_still_resumes(tmp_path,
                                                                                   monkeypatch):
    # Its record (checkpoint meta) holds data.files as typed; the config now holds it absolute.
    from scaling import config as config_module
    from scaling.trainer import batch_fields, plan_conflict

    monkeypatch.chdir(tmp_path)
    config = config_module.default_config()
    config.data.dataset, config.data.files = "text_files", str(tmp_path / "notes")
    record = {**batch_fields(config), "data.files": "notes"}
    assert plan_conflict(record, config, {}, "the workdir's checkpoint belongs to a run") is None
    record["data.files"] = "other"
    assert "data.files: " in plan_conflict(record, config, {}, "it")


def test_making_a_builder_of_an_unprepared_dataset_leaves_no_folder_in_tmp(tmp_path, monkeypatch):
    # TFDS's DatasetInfo.initialize_from_bucket made an empty `tmp…tfds` folder in $TMPDIR for
    # each one (5,778 of them in this machine's /tmp).
    import tempfile

    import time

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    (temporary / "tmpbusytfds").mkdir()  # another process's, in use: left alone
    (temporary / "tmpbusytfds" / "dataset_info.json").write_text("{}")
    (temporary / "tmprecenttfds").mkdir()  # another's, empty, made before: left alone
    corpus = _small_corpus(tmp_path / "corpus")
    time.sleep(0.05)
    for dataset in ({"dataset": "python_stdlib"}, {"dataset": "text_files", "files": str(corpus)}):
        sources.make_builder(_data_config(cache_dir=str(tmp_path / "cache"), **dataset))
    assert sorted(path.name for path in temporary.iterdir()) == ["tmpbusytfds", "tmprecenttfds"]
    # Checking a registered dataset's name and features made one too (tfds.builder).
    data.validate_data_config(_data_config(dataset="tiny_shakespeare",
                                           cache_dir=str(tmp_path / "cache")))
    assert sorted(path.name for path in temporary.iterdir()) == ["tmpbusytfds", "tmprecenttfds"]
    # An empty one as old as STALE_TFDS_TEMP_SECONDS is a killed process's: removed too.
    monkeypatch.setattr(sources, "STALE_TFDS_TEMP_SECONDS", 0.01)
    sources.make_builder(_data_config(cache_dir=str(tmp_path / "cache")))
    assert [path.name for path in temporary.iterdir()] == ["tmpbusytfds"]

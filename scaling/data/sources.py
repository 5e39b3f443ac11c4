"""Where documents come from: a TFDS builder, prepared once as array_record, read as a data source.

Every dataset goes the same way — `python_stdlib` (embedded, no download), `text_files` (the
user's files) and any registered TFDS text dataset (`tiny_shakespeare`, `lm1b`, `c4/en`, ...):
builder → `download_and_prepare(file_format='array_record')` → `as_data_source(split)` → the
configured text feature, one document per example. TensorFlow is not needed on this path
(`tfds.load`/`as_dataset` would need it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import io
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Iterator

from scaling.errors import ConfigError
from scaling.files import UNWRITABLE, cache_home, file_lock

EMBEDDED_DATASETS = ("python_stdlib", "text_files")
# TFDS warnings about what this module does on purpose: a builder config of the user's files
# (each time a builder is made), and the folder a dataset is being prepared in.
TFDS_NOISE = ("Using custom data configuration", "Variant folder ")


class _DropTfdsNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TFDS_NOISE)


logging.getLogger("absl").addFilter(_DropTfdsNoise())
FILE_FORMAT = "array_record"
DOWNLOAD_RETRIES = 3  # per request, in place of TFDS's 10 (see prepare)
_READ_BATCH = 256


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be downloaded or prepared (e.g. no network), or its prepared files
    cannot be read."""


def unwritable_cache(data_cfg, error: OSError, what: str,
                     field: str = "cache_dir") -> Exception:
    """The ConfigError on `data.<field>` for a cache `what` ("the token cache of X is built in
    F") that cannot be written there (a read-only mount), or `error` itself when it is another
    failure (a full disk), named by `what` where it names no file."""
    if error.errno not in UNWRITABLE:
        error.filename = error.filename or what
        return error
    return ConfigError(f"data.{field}", data_cfg[field],
                       f"a folder this process can write: {what} ({error.strerror})")


def cache_root(data_cfg) -> pathlib.Path:
    """`data.cache_dir`, else `$SCALING_CACHE`, else `~/.cache/scaling`."""
    return pathlib.Path(data_cfg.cache_dir).expanduser() if data_cfg.cache_dir else cache_home()


def tfds_data_dir(data_cfg) -> pathlib.Path:
    """`data.tfds_data_dir`, else `<cache root>/tfds`."""
    if data_cfg.tfds_data_dir:
        return pathlib.Path(data_cfg.tfds_data_dir).expanduser()
    return cache_root(data_cfg) / "tfds"


@functools.cache
def import_text_builders() -> None:
    """Register TFDS's text builders (`lm1b`, `c4`, `wikipedia`, ...).

    TFDS imports its builder modules in one loop that stops at the first module needing
    TensorFlow, before it reaches `text`; importing the text-bearing modules one by one works."""
    for module in ("text", "summarization", "translate", "question_answering"):
        try:
            importlib.import_module(f"tensorflow_datasets.{module}")
        except ImportError:
            pass


# An empty `tmp…tfds` folder this old is no TFDS process's at work: one left by a process killed
# while it made a builder (or by a version of scaling that did not remove them).
STALE_TFDS_TEMP_SECONDS = 3600.0


@contextlib.contextmanager
def no_empty_tfds_temp_folders() -> Iterator[None]:
    """TFDS makes a temporary folder (`tmp…tfds`) for the metadata it would copy from its bucket
    each time a builder of an unprepared dataset is made, and leaves it empty where it copies
    none (its bucket is off by default): those made during the block that stay empty are removed,
    and empty ones an hour old. $TMPDIR is read entry by entry, nothing of it kept: it may hold
    thousands."""
    root, start = tempfile.gettempdir(), time.time()
    try:
        yield
    finally:
        with os.scandir(root) as entries:
            for entry in entries:
                if not (entry.name.startswith("tmp") and entry.name.endswith("tfds")):
                    continue
                with contextlib.suppress(OSError):  # gone, or not empty: another process's
                    made = entry.stat(follow_symlinks=False).st_ctime
                    # (The file system's clock is coarser than time.time(): 10 ms of margin.)
                    if made >= start - 0.01 or made < start - STALE_TFDS_TEMP_SECONDS:
                        os.rmdir(entry.path)


def make_builder(data_cfg):
    """The TFDS builder for `data.dataset` (not prepared). Raises `tfds`'s DatasetNotFoundError
    for an unknown name and FileNotFoundError for a missing `text_files` entry."""
    with no_empty_tfds_temp_folders():
        return _make_builder(data_cfg)


def _make_builder(data_cfg):
    import tensorflow_datasets as tfds  # 2.5 s to import: only where a TFDS builder is made

    data_dir = str(tfds_data_dir(data_cfg))
    if data_cfg.dataset == "python_stdlib":
        from scaling.data import stdlib_corpus

        return stdlib_corpus.PythonStdlib(data_dir=data_dir, file_format=FILE_FORMAT)
    if data_cfg.dataset == "text_files":
        from scaling.data import text_files

        return text_files.TextFiles(config=text_files.text_files_config(data_cfg.files),
                                    data_dir=data_dir, file_format=FILE_FORMAT)
    import_text_builders()
    return tfds.builder(data_cfg.dataset, data_dir=data_dir, file_format=FILE_FORMAT)


def prepare(builder) -> None:
    """Download and prepare `builder` unless done already, under a lock so concurrent runs build
    it once. Raises DatasetUnavailableError saying what failed and what to do."""

    import tensorflow_datasets as tfds  # 2.5 s to import: only where a TFDS builder is made
    from tensorflow_datasets.core.download import downloader

    name = builder.info.full_name
    folder = pathlib.Path(builder.data_dir).parent
    with file_lock(folder / ".prepare.lock"):
        # TFDS prepares into an `incomplete.*` folder it renames at the end; under the lock, one
        # still there is a killed preparation's.
        for leftover in folder.glob("incomplete.*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if not builder.is_prepared():
            print(f"[data] preparing TFDS dataset {name} in {builder.data_dir}", file=sys.stderr)
            started = time.perf_counter()
            tfds.disable_progress_bar()  # our own progress lines instead of tqdm's
            # TFDS retries each request 10 times with exponential backoff: 3.5 minutes before a
            # machine without network hears so. Three retries still ride out a brief outage.
            downloader.MAX_RETRIES = DOWNLOAD_RETRIES
            # TFDS prints a banner to stdout before and after, which our two lines replace; it is
            # shown (on stderr) only when the preparation fails.
            banner = io.StringIO()
            try:
                with contextlib.redirect_stdout(banner):
                    builder.download_and_prepare()
            except ConfigError:  # a `text_files` file that could not be read: said as such
                raise
            except Exception as error:
                sys.stderr.write(banner.getvalue())
                raise DatasetUnavailableError(_preparation_failure(builder, error)) \
                    from error
            print(f"[data] prepared {name} in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)


def check_file_format(builder) -> None:
    """Refuse a prepared dataset stored in a format that needs TensorFlow to read."""
    if builder.info.file_format is not None and builder.info.file_format.value != FILE_FORMAT:
        raise DatasetUnavailableError(
            f"TFDS dataset {builder.info.full_name!r} in {builder.data_dir} is stored as "
            f"{builder.info.file_format.value}, which needs TensorFlow to read; prepare it again "
            f"with file_format={FILE_FORMAT!r} or set data.tfds_data_dir to another folder.")


def _preparation_failure(builder, error: Exception) -> str:
    """What failed while preparing `builder`'s dataset, and what to do about it."""
    name, data_dir = builder.info.full_name, builder.data_dir
    where = (f"prepare it on a machine that has {{}} (with file_format={FILE_FORMAT!r}) and set "
             f"data.tfds_data_dir to the folder holding it")
    message = (f"could not prepare TFDS dataset {name!r} in {data_dir}: "
               f"{type(error).__name__}: {error}. ")
    if isinstance(error, ImportError) and "tensorflow" in str(error):
        # Many TFDS builders read their downloads with tf.io.gfile; reading the prepared
        # array_record files afterwards does not need TensorFlow.
        return message + ("Its builder needs TensorFlow to prepare it (`pip install "
                          "'scaling[tf]'`, which pins a tested tensorflow-cpu), or "
                          + where.format("TensorFlow") + ".")
    manual = pathlib.Path(builder.data_dir_root) / "downloads" / "manual"  # TFDS's default
    if type(error).__name__ == "NonMatchingChecksumError":
        return message + (f"A file in {manual} is not the one the builder expects: replace it "
                          "with an unmodified copy of the download, or remove it.")
    return message + ("Downloading needs network access; without it, copy the downloaded files "
                      f"into {manual} (TFDS checks their checksums), or "
                      + where.format("network access") + ".")


SLICE_EXAMPLES = "'validation[:10%]', 'validation[100:200]' or 'train[-5%:]'"


def check_split(field: str, split, known_splits, split_infos=None) -> None:
    """ConfigError naming `field` unless `split` is a split of `known_splits` (None: names not
    known, any), optionally sliced as TFDS reads it (`split_infos`: TFDS's SplitDict, when the
    splits' sizes are known).

    The slice is parsed by TFDS's own parser (no TensorFlow needed). Refused: a slice TFDS cannot
    parse (`validation[abc]`, `validation[:200%]`), one that selects nothing whatever the split's
    size (`validation[:0%]`, `train[:0]`, `validation[50%:10%]`), and, where the sizes are known,
    one that selects nothing of this split or reaches past its end."""
    allowed = ("one of " + ", ".join(known_splits) if known_splits is not None
               else "a split of the dataset") + (
        f" (as it is, or sliced as TFDS slices splits: {SLICE_EXAMPLES})")
    if not isinstance(split, str) or not split.strip() or (
            known_splits is not None and split.split("[", 1)[0] not in known_splits):
        raise ConfigError(field, split, allowed)
    if "[" not in split and "+" not in split:
        return  # a bare split name
    try:
        parts = split_parts(split)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise ConfigError(field, split, f"{allowed}; TFDS cannot parse this one "
                                        f"({_tfds_reason(error)})") from None
    for part in parts:
        if part is None or (known_splits is not None and part.split_name not in known_splits):
            raise ConfigError(field, split, allowed)
        if _selects_nothing(part):
            raise ConfigError(field, split, f"{allowed}; this slice selects no example (its "
                                            "start is not before its end)")
    for part in parts if split_infos else ():
        num_examples = split_infos[part.split_name].num_examples
        if not num_examples:  # a size not recorded
            continue
        examples = f"{part.split_name} holds {num_examples:,} example" + (
            "s" if num_examples != 1 else "")
        try:
            (absolute,) = part.to_absolute(split_infos)
        except ValueError:  # TFDS: a bound past the split's end
            raise ConfigError(field, split, f"{allowed}; its bounds reach past the split's end "
                                            f"({examples})") from None
        start, end = absolute.from_ or 0, num_examples if absolute.to is None else absolute.to
        if end <= start:
            raise ConfigError(field, split, f"{allowed}; this slice selects no example of it "
                                            f"({examples})")


def split_parts(split: str) -> list:
    """The parts of a split spec as TFDS's parser reads them (no TensorFlow needed): one
    ReadInstruction (`split_name`, `from_`, `to`, `unit`) per `+`-added part, None for a part
    that is not one (TFDS's `all` in a sum). A bare split name is one part, whatever characters
    it holds. Raises TFDS's error for a spec it cannot parse."""
    from tensorflow_datasets.core import splits as tfds_splits

    if "[" not in split and "+" not in split:
        return [tfds_splits.ReadInstruction(split)]
    return _read_instructions(tfds_splits.AbstractSplit.from_spec(split), tfds_splits)


def percent_range(part) -> tuple[float, float]:
    """[start, end) of a parsed slice in percent (`unit` '%'), open ends and ends counted from
    the split's end made plain (`[-10%:]` is 90–100)."""
    start, end = part.from_, part.to
    start = 0.0 if start is None else 100 + start if start < 0 else start
    end = 100.0 if end is None else 100 + end if end < 0 else end
    return start, end


def _read_instructions(parsed, tfds_splits) -> list:
    """The ReadInstructions a parsed split spec adds together (None for a part that is not one,
    such as TFDS's `all`)."""
    if isinstance(parsed, tfds_splits.ReadInstruction):
        return [parsed]
    if hasattr(parsed, "left") and hasattr(parsed, "right"):  # TFDS's sum of two splits
        return (_read_instructions(parsed.left, tfds_splits)
                + _read_instructions(parsed.right, tfds_splits))
    return [None]


def _tfds_reason(error: Exception) -> str:
    """TFDS's reason, on one line, without its link to the format page or its repr."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    for tail in (". See format at", ". Got:"):
        reason = reason.split(tail, 1)[0]
    return reason


def _selects_nothing(part) -> bool:
    """Whether a parsed slice selects no example whatever the split's size: its end at 0
    (`[:0]`, `[:0%]`), or bounds counted from the same end of the split that do not increase
    (`[50%:10%]`, `[-5:-10]`)."""
    if part.unit == "%":  # as a fraction of the split, whatever its size
        start, end = percent_range(part)
        return end <= start
    start, end = part.from_, part.to
    if end is not None and end == 0:
        return True
    return (start is not None and end is not None and (start >= 0) == (end >= 0)
            and end <= start)


@dataclasses.dataclass(frozen=True)
class DocumentSplit:
    """One split of a prepared dataset: its documents (UTF-8 bytes) in a fixed order."""

    dataset: str  # TFDS full name, e.g. python_stdlib/py3_11_7/1.0.0
    split: str
    feature: str
    fingerprint: str  # changes whenever the split's content may have changed
    data_source: object
    data_dir: str  # where the prepared dataset is

    def unreadable(self, error: Exception) -> "DatasetUnavailableError":
        """What to say when the prepared files fail to read (truncated, deleted, damaged)."""
        return unreadable(self.dataset, self.data_dir, error)

    @property
    def num_documents(self) -> int:
        return len(self.data_source)

    def document_batches(self, batch_size: int = _READ_BATCH) -> Iterator[list[bytes]]:
        """The documents in data-source order, `batch_size` at a time."""
        for start in range(0, len(self.data_source), batch_size):
            indices = list(range(start, min(start + batch_size, len(self.data_source))))
            try:
                examples = self.data_source.__getitems__(indices)
            except Exception as error:  # ArrayRecord's RuntimeError for a damaged file
                raise self.unreadable(error) from error
            yield [_as_bytes(example[self.feature]) for example in examples]


def unreadable(dataset: str, data_dir: str, error: Exception) -> "DatasetUnavailableError":
    """The prepared files of `dataset` in `data_dir` failed to read with `error`."""
    first = str(error).splitlines()[0][:300] if str(error) else ""
    return DatasetUnavailableError(
        f"the prepared TFDS dataset {dataset!r} in {data_dir} cannot be read ({type(error).__name__}"
        f": {first}); delete that folder and it is prepared again")


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return _as_bytes(value.item())  # a 0-d numpy array of bytes or str


def open_split(data_cfg, split: str) -> DocumentSplit:
    """Prepare `data.dataset` if needed and open `split` (TFDS split syntax, e.g. 'train[:10%]')."""
    builder = make_builder(data_cfg)
    if not builder.is_prepared():
        try:
            prepare(builder)
        except OSError as error:  # its lock, before anything is read or downloaded
            raise unwritable_cache(
                data_cfg, error, f"TFDS dataset {builder.info.full_name!r} is prepared in "
                                 f"{builder.data_dir_root}",
                "tfds_data_dir" if data_cfg.tfds_data_dir else "cache_dir") from None
        # A builder reads its DatasetInfo when it is made: one made before the dataset was
        # prepared (here, or by a concurrent run while this one waited for the lock) knows no
        # splits. A fresh one reads the prepared dataset's.
        builder = make_builder(data_cfg)
    check_file_format(builder)
    info = builder.info
    base_split = split.split("[", 1)[0]
    field = "data.eval_split" if split == data_cfg.eval_split else "data.train_split"
    if base_split not in info.splits:
        raise ConfigError(field, split, f"a split of {info.full_name}: {', '.join(info.splits)}")
    # Now the split's size is known: a slice that selects nothing, or past its end, is refused
    # here rather than by TFDS or the data source, as a traceback.
    check_split(field, split, tuple(info.splits), info.splits)
    fingerprint = "|".join(str(part) for part in (
        info.full_name, split, info.splits[split].num_examples, info.splits[base_split].num_bytes))
    try:
        data_source = builder.as_data_source(split=split)
    except Exception as error:  # a file of the split deleted or damaged
        raise unreadable(info.full_name, builder.data_dir, error) from error
    return DocumentSplit(dataset=info.full_name, split=split, feature=data_cfg.feature,
                         fingerprint=fingerprint, data_source=data_source,
                         data_dir=builder.data_dir)

"""`validate_data_config`: the cheap checks of `config.data`, run before anything is read.

Only what is knowable without reading a corpus or touching the network: the dataset name (our
two embedded datasets or TFDS's registry), the feature (from the builder's declared features),
split names where known, the `text_files` paths, and the tokenizer settings.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import pathlib
from typing import Callable, Iterator

from scaling import files
from scaling.data import file_splits, sources, tokenizers
from scaling.errors import ConfigError

# Batches are int32, so every id must be below 2**31 (the token cache holds up to uint32).
MAX_VOCAB_SIZE = 2**31 - 1
KNOWN_EXAMPLES = ("python_stdlib, text_files, or a registered TFDS dataset "
                  "(tiny_shakespeare, lm1b, c4/en, ...)")
# Data paths (entries of data.files, data.spm_model) that exist only where the runs will train,
# not on the machine that plans them: `paths_checked_elsewhere`.
_CHECKED_ELSEWHERE: contextvars.ContextVar = contextvars.ContextVar("checked_elsewhere",
                                                                    default=None)


@contextlib.contextmanager
def paths_checked_elsewhere(elsewhere: Callable[[str], bool]) -> Iterator[None]:
    """Within the block, `validate_data_config` leaves unchecked each data path (an entry of
    data.files, or data.spm_model) for which `elsewhere(path)` is true: a launcher planning here
    a sweep whose hosts have other files."""
    token = _CHECKED_ELSEWHERE.set(elsewhere)
    try:
        yield
    finally:
        _CHECKED_ELSEWHERE.reset(token)


def _checked_here(path: str) -> bool:
    elsewhere = _CHECKED_ELSEWHERE.get()
    return elsewhere is None or not elsewhere(path)


def _check_splits(data_cfg, known_splits, split_infos=None) -> None:
    """Each split a name of `known_splits`, any slice one TFDS parses that selects something
    (checked against the splits' sizes where `split_infos` knows them, and once more when the
    prepared dataset is opened: `sources.open_split`)."""
    for field in ("train_split", "eval_split"):
        sources.check_split(f"data.{field}", data_cfg[field], known_splits, split_infos)


def _check_tfds_dataset(data_cfg) -> None:
    """Name, feature and (if the dataset is prepared) split names, from TFDS's registry."""
    import tensorflow_datasets as tfds  # 2.5 s to import: only where a TFDS builder is made

    sources.import_text_builders()
    try:
        with sources.no_empty_tfds_temp_folders():
            builder = tfds.builder(data_cfg.dataset,
                                   data_dir=str(sources.tfds_data_dir(data_cfg)))
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError("data.dataset", data_cfg.dataset, KNOWN_EXAMPLES) from None
    except Exception as error:  # a known name with an unknown config or version: TFDS says which
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("data.dataset", data_cfg.dataset, f"{KNOWN_EXAMPLES}; {reason}") from None
    features = builder.info.features
    text_features = [name for name, feature in features.items()
                     if isinstance(feature, tfds.features.Text)]
    # Pairs (seq2seq) read a source and a target feature instead of data.feature.
    wanted = (("data.source_feature", "data.target_feature") if data_cfg.source_feature
              else ("data.feature",))
    for field in wanted:
        value = data_cfg[field.split(".", 1)[1]]
        if value not in text_features:
            raise ConfigError(field, value, f"a text feature of {data_cfg.dataset}: "
                                            f"{', '.join(text_features) or 'none'}")
    if builder.info.splits:  # known only once prepared, or from TFDS's bundled metadata
        _check_splits(data_cfg, tuple(builder.info.splits), builder.info.splits)
    else:  # names and sizes unknown: at least a slice TFDS parses, one that can select something
        _check_splits(data_cfg, None)


def _check_text_pairs(data_cfg) -> None:
    """`text_pairs`: existing tab-separated files; a tokenizer that needs no training corpus."""
    from scaling.data import text_files

    _check_splits(data_cfg, file_splits.SPLITS)
    for field in ("train_split", "eval_split"):
        if data_cfg[field] not in file_splits.SPLITS:  # a slice: pairs are split by their source
            raise ConfigError(f"data.{field}", data_cfg[field],
                              f"{' or '.join(map(repr, file_splits.SPLITS))} with "
                              "dataset='text_pairs' (a line's split is a hash of its source; "
                              "slices are not read)")
    allowed = "comma-separated tab-separated files (or glob patterns) with dataset='text_pairs'"
    entries = text_files.parse_file_list(data_cfg.files or "")
    if not entries:
        raise ConfigError("data.files", data_cfg.files, allowed)
    for entry in filter(_checked_here, entries):
        try:
            text_files.entry_files(entry)
        except IsADirectoryError:
            raise ConfigError("data.files", data_cfg.files, f"{allowed} ({entry} is a folder)")
        except FileNotFoundError:
            raise ConfigError("data.files", data_cfg.files, f"{allowed} (not found: {entry})")
        except OSError as error:  # a folder a pattern lists that cannot be listed
            raise text_files.cannot_read(data_cfg.files, error) from None
    if data_cfg.tokenizer == "sentencepiece" and not data_cfg.spm_model:
        raise ConfigError("data.spm_model", "", "a SentencePiece model file with "
                          "dataset='text_pairs' (or data.tokenizer='byte')")
    if bool(data_cfg.source_feature) or bool(data_cfg.target_feature):
        raise ConfigError("data.source_feature", data_cfg.source_feature,
                          "'' with dataset='text_pairs' (each line is source<TAB>target)")


def _check_tokenizer(data_cfg) -> None:
    if data_cfg.tokenizer == "byte":
        if data_cfg.vocab_size not in (0, tokenizers.BYTE_VOCAB_SIZE):
            raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                              "0 with data.tokenizer='byte' "
                              f"(its vocabulary is {tokenizers.BYTE_VOCAB_SIZE})")
        if data_cfg.spm_model:
            raise ConfigError("data.spm_model", data_cfg.spm_model,
                              "'' with data.tokenizer='byte' (set data.tokenizer='sentencepiece')")
        return
    if data_cfg.spm_model:
        if _checked_here(data_cfg.spm_model):
            _check_spm_model(data_cfg)
        elif not data_cfg.vocab_size:  # the model's vocabulary sizes the model being planned
            raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                              f"the vocabulary of data.spm_model={data_cfg.spm_model!r}, which "
                              "is not on this machine to be read")
        return
    if data_cfg.vocab_size == 0:
        raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                          "> 0 with data.tokenizer='sentencepiece' and no data.spm_model "
                          "(the vocabulary to train)")
    if data_cfg.vocab_size < tokenizers.MIN_SENTENCEPIECE_VOCAB:
        raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                          f"at least {tokenizers.MIN_SENTENCEPIECE_VOCAB} (256 byte pieces, unknown, "
                          "end-of-document and learned pieces)")
    if data_cfg.vocab_size > MAX_VOCAB_SIZE:
        raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                          f"at most {MAX_VOCAB_SIZE} (token ids are stored as uint16/uint32 and "
                          "batched as int32)")


def _check_spm_model(data_cfg) -> None:
    """`data.spm_model`: a file SentencePiece reads, whose vocabulary `data.vocab_size` (when
    set) names."""
    path = pathlib.Path(data_cfg.spm_model).expanduser()
    try:
        found = path.is_file()
    except OSError as error:  # a name longer than the file system allows, a looping link
        raise ConfigError("data.spm_model", data_cfg.spm_model,
                          f"a path the file system can hold ({error.strerror})") from None
    if not found:
        raise ConfigError("data.spm_model", data_cfg.spm_model,
                          "an existing SentencePiece model file")
    cannot_load = ConfigError("data.spm_model", data_cfg.spm_model,
                              "a SentencePiece model file (SentencePiece cannot load this one)")
    try:
        model_proto = path.read_bytes()
        # An empty file parses as a model without pieces, which SentencePiece then logs about.
        if not model_proto:
            raise cannot_load
        vocab_size = tokenizers.SentencePieceTokenizer(model_proto).vocab_size
    except (OSError, RuntimeError):  # unreadable, or not a serialized SentencePiece model
        raise cannot_load from None
    if data_cfg.vocab_size not in (0, vocab_size):
        raise ConfigError("data.vocab_size", data_cfg.vocab_size,
                          f"0 or {vocab_size} with data.spm_model={data_cfg.spm_model!r} (the "
                          "model's vocabulary, end-of-document included)")


def _overlapping(train: str, evaluation: str) -> bool:
    """Whether two TFDS split specs surely share examples: a part of one (a `+` of them) is the
    whole split a part of the other slices, or a slice of the same split whose range overlaps
    it (both in percent, or both in examples counted from the start). Slices whose ranges can
    only be compared knowing the split's size are not (`sources.split_parts` parses them)."""
    def whole(part) -> bool:
        return ((part.from_ is None and part.to is None)
                or (part.unit == "%" and sources.percent_range(part) == (0.0, 100.0)))

    def overlap(t, e) -> bool:
        if t is None or e is None or t.split_name != e.split_name:
            return False
        if whole(t) or whole(e):
            return True
        if t.unit != e.unit:
            return False
        if t.unit == "%":
            (t_start, t_end), (e_start, e_end) = sources.percent_range(t), sources.percent_range(e)
        elif any(bound is not None and bound < 0 for bound in (t.from_, t.to, e.from_, e.to)):
            return False  # counted from an end of unknown size
        else:
            (t_start, t_end), (e_start, e_end) = ((part.from_ or 0, math.inf if part.to is None
                                                   else part.to) for part in (t, e))
        return max(t_start, e_start) < min(t_end, e_end)

    return any(overlap(t, e) for t in sources.split_parts(train)
               for e in sources.split_parts(evaluation))


def validate_data_config(data_cfg, training: bool = True) -> None:
    """Raise ConfigError naming the first bad field of `config.data`. Reads no corpus. For
    `training`, the eval split must be held out: not the training split, nor a slice of it, the
    whole of a split it slices or a slice overlapping it (`_overlapping`)."""
    dataset = data_cfg.dataset
    if not isinstance(dataset, str) or not dataset.strip():
        raise ConfigError("data.dataset", dataset, KNOWN_EXAMPLES)
    if dataset == "text_pairs":
        _check_text_pairs(data_cfg)
    elif dataset in sources.EMBEDDED_DATASETS:
        if data_cfg.feature != "text":
            raise ConfigError("data.feature", data_cfg.feature, f"'text' for dataset {dataset!r}")
        _check_splits(data_cfg, file_splits.SPLITS)
        if dataset == "text_files":
            from scaling.data import text_files

            entries = text_files.parse_file_list(data_cfg.files or "")
            if not entries:
                raise ConfigError("data.files", data_cfg.files,
                                  "comma-separated files, folders or glob patterns with "
                                  "dataset='text_files'")
            try:
                missing = [e for e in entries
                           if _checked_here(e) and not text_files.names_something(e)]
            except OSError as error:  # a folder a pattern lists that cannot be listed
                raise text_files.cannot_read(data_cfg.files, error) from None
            if missing:
                raise ConfigError("data.files", data_cfg.files,
                                  "existing files or folders, or patterns that match some "
                                  f"(not found: {', '.join(missing)})")
    else:
        _check_tfds_dataset(data_cfg)
    # After each split's own rules: a split TFDS cannot read is named as such first.
    if training and _overlapping(data_cfg.train_split, data_cfg.eval_split):
        raise ConfigError("data.eval_split", data_cfg.eval_split,
                          f"a split held out from data.train_split={data_cfg.train_split!r} (the "
                          "held-out loss would be measured on training data)")
    _check_tokenizer(data_cfg)
    cache_allowed = "a folder (or '' for $SCALING_CACHE or ~/.cache/scaling)"
    _check_folder("data.cache_dir", data_cfg.cache_dir, cache_allowed)
    if not data_cfg.cache_dir:
        home = files.cache_home()
        existing = _nearest_existing(home)
        if existing is not None and not existing.is_dir():
            raise ConfigError("data.cache_dir", "", f"{cache_allowed}; ${files.CACHE_ENV}={home} "
                                                    f"{'is' if existing == home else 'is under'} "
                                                    f"a file ({existing})")
    _check_folder("data.tfds_data_dir", data_cfg.tfds_data_dir,
                  "a folder (or '' for <cache root>/tfds)")


def _nearest_existing(path: pathlib.Path) -> pathlib.Path | None:
    return next((part for part in (path, *path.parents) if part.exists()), None)


def _check_folder(field: str, value: str, allowed: str) -> None:
    """`value` ('' passes) is a folder, or a path whose nearest existing part is a folder."""
    if not value:
        return
    path = pathlib.Path(value).expanduser()
    try:
        existing = _nearest_existing(path)
    except OSError as error:  # a name longer than the file system allows, a looping link
        raise ConfigError(field, value, f"{allowed} the file system can hold "
                                        f"({error.strerror})") from None
    if existing is not None and not existing.is_dir():
        raise ConfigError(field, value, allowed if existing == path
                          else f"{allowed}; {existing} is a file")

"""`text_files`: a user's own text files and folders as a TFDS dataset.

`data.files` is a comma-separated list of files, folders and glob patterns (`*`, `?`, `[...]`; `**`
crosses folders, as in `corpus/**/*.txt`); an entry that exists as written is that file or folder,
whatever characters its name holds. Folders are walked recursively in sorted order, and a
pattern's matches are taken in sorted order; hidden entries (a name starting with '.') are skipped,
and so are binary files (a NUL byte in the first 8 KiB). A binary file named directly is refused,
and so is a file that cannot be read or a folder that cannot be listed (by name, on `data.files`).
Each file is one document, decoded as UTF-8 (invalid bytes replaced).

Splits are by file (`file_splits.split_of` on the path relative to the folder given, or to a
pattern's fixed leading folders, or the file name for a file given directly), with at least one file
in each split. A single file cannot be split by file, so it is cut at 90% of its characters,
moved to the nearest line start (else word start) within 1% of the text: the tail is the
validation document (a held-out contiguous tail, as `tiny_shakespeare` does).

The builder config is named after a hash of the paths, sizes and modification times, so editing a
file builds a new dataset (and a new token cache) instead of reusing a stale one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import glob
import hashlib
import os
import pathlib

import tensorflow_datasets as tfds

from scaling.data import file_splits
from scaling.errors import ConfigError

# How much of a file is read to tell text from binary (and that it can be read at all).
BINARY_PROBE_BYTES = 8192


def parse_file_list(files: str) -> list[str]:
    """The non-empty, stripped entries of a comma-separated list."""
    return [entry.strip() for entry in files.split(",") if entry.strip()]


def absolute_entries(files: str) -> str:
    """A comma-separated `data.files` value with each entry (a path or a pattern) made absolute
    from the current folder."""
    return ",".join(os.path.abspath(os.path.expanduser(entry)) for entry in parse_file_list(files))


# The data fields that name files a run reads. A run records them as absolute paths, so that the
# commands that read it later (a resume, `scaling-eval`, `scaling-sample`) find the same files from
# any folder.
PATH_FIELDS = ("files", "spm_model")


def absolute_field(name: str, value):
    """`value` of the data field `name` with its paths made absolute from the current folder when
    the field is one of `PATH_FIELDS` (and set); other values as they are."""
    if name not in PATH_FIELDS or not value or not isinstance(value, str):
        return value
    if name == "files":
        return absolute_entries(value)
    return os.path.abspath(os.path.expanduser(value))


def absolute_paths(fields: dict) -> dict:
    """Dotted fields ({"data.files": ..., "optim.lr": ...}, as a record or a flattened config
    holds them) with the `PATH_FIELDS` among them made absolute (`absolute_field`): an older run
    recorded them as typed, taken here from the current folder."""
    return {name: absolute_field(name.removeprefix("data."), value)
            if name.startswith("data.") else value for name, value in fields.items()}


_GLOB_CHARACTERS = frozenset("*?[")


def _has_glob_characters(text: str) -> bool:
    return bool(_GLOB_CHARACTERS & set(text))


def is_pattern(entry: str) -> bool:
    """Whether an entry is a glob pattern rather than one path: it holds `*`, `?` or `[`, and
    no file or folder has its name as written (`notes[1].txt` is that file where it exists)."""
    return _has_glob_characters(entry) and not os.path.lexists(os.path.expanduser(entry))


def _pattern_base(entry: str) -> pathlib.Path:
    """The fixed leading folders of a pattern (`corpus` for `corpus/**/*.txt`)."""
    parts = pathlib.Path(entry).expanduser().parts
    fixed = []
    for part in parts:
        if _has_glob_characters(part):
            break
        fixed.append(part)
    return pathlib.Path(os.path.abspath(pathlib.Path(*fixed) if fixed else "."))


def _check_listable(pattern: str) -> None:
    """OSError for a folder that `pattern` lists or looks into, as glob expands it part by part,
    and that cannot be read: glob leaves such a folder out without a word (`corpus/**/*.txt`
    lists `corpus` and every folder below it; `corpus/*/sub/*.txt` lists `corpus` and looks into
    each folder of it for `sub`)."""
    parts = pathlib.Path(pattern).parts
    fixed = next((index for index, part in enumerate(parts) if _has_glob_characters(part)),
                 len(parts))
    folders = [pathlib.Path(*parts[:fixed]) if fixed else pathlib.Path(".")]
    def below(folder: pathlib.Path) -> list[pathlib.Path]:
        """`folder` and every folder below it, hidden ones excepted, as glob's `**` reads them."""
        found = []
        for root, names, _ in os.walk(folder, onerror=_raise):
            names[:] = [name for name in names if not name.startswith(".")]
            found.append(pathlib.Path(root))
        return found

    for index in range(fixed, len(parts) - 1):  # the last part names what is matched
        part, following = parts[index], []
        for folder in folders:
            if part == "**":
                following += below(folder)
            elif _has_glob_characters(part):
                with os.scandir(folder) as entries:
                    following += [pathlib.Path(entry.path) for entry in entries
                                  if entry.is_dir() and fnmatch.fnmatchcase(entry.name, part)
                                  and (part.startswith(".") or not entry.name.startswith("."))]
            elif (folder / part).is_dir():  # PermissionError where `folder` cannot be entered
                following.append(folder / part)
        folders = following
    last = parts[-1] if parts else ""
    for folder in folders:
        if last == "**":
            below(folder)
        elif _has_glob_characters(last):
            with os.scandir(folder):
                pass
        else:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.stat(folder / last)  # PermissionError where `folder` cannot be entered


def entry_paths(entry: str) -> list[pathlib.Path]:
    """The existing paths an entry names: itself, or a pattern's matches in sorted order (none
    hidden). Raises FileNotFoundError when there is none, and OSError for a folder a pattern
    lists that cannot be listed."""
    if is_pattern(entry):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # then it matches none
            _check_listable(os.path.expanduser(entry))
        matches = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
        # Absolute but not resolved, so that a match's name relative to the pattern's folders
        # holds for symbolic links too.
        paths = [pathlib.Path(os.path.abspath(match)) for match in matches]
    else:
        path = pathlib.Path(entry).expanduser()
        paths = [path.resolve()] if path.exists() else []
    if not paths:
        raise FileNotFoundError(entry)
    return paths


def names_something(entry: str) -> bool:
    """Whether an entry exists, or a pattern matches something. Raises OSError for a folder a
    pattern lists that cannot be listed."""
    try:
        entry_paths(entry)
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # a name longer than the file system allows
            return False
        raise
    return True


def entry_files(entry: str) -> list[pathlib.Path]:
    """The files an entry names: itself, or a pattern's matching files (folders it matches are
    left out). Raises FileNotFoundError when there is none, and IsADirectoryError for a folder
    named directly."""
    paths = entry_paths(entry)
    if not is_pattern(entry) and paths[0].is_dir():
        raise IsADirectoryError(entry)
    files = [path for path in paths if path.is_file()]
    if not files:
        raise FileNotFoundError(entry)
    return files


def read_bytes(path: pathlib.Path, size: int = -1) -> bytes:
    """The first `size` bytes of the file at `path` (all of them: -1). The OSError of a file
    that cannot be read names its path."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as error:
        error.filename = error.filename or str(path)  # a failed read() names no file
        raise


def cannot_read(files: str, error: OSError) -> ConfigError:
    """The ConfigError on `data.files` for a file or folder of it that cannot be read."""
    return ConfigError("data.files", files, f"readable text files ({error.filename} cannot be "
                                            f"read: {error.strerror or error})")


def _is_text(path: pathlib.Path) -> bool:
    return b"\0" not in read_bytes(path, BINARY_PROBE_BYTES)


def _raise(error: OSError) -> None:
    raise error


def expand_files(entries: list[str]) -> list[tuple[str, pathlib.Path]]:
    """(name used for splitting, absolute path) of every text file the entries name, in order;
    a file that two entries reach (a folder and a folder inside it, or two spellings of one file
    through symbolic links) is listed once, under the first name it is reached by, so that it
    cannot land in both splits.

    Raises FileNotFoundError for an entry that does not exist or a pattern that matches nothing,
    and OSError for a folder that cannot be listed or a file that cannot be read."""
    found, seen = [], set()

    def add(name: str, path: pathlib.Path) -> None:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            found.append((name, path))

    for entry in entries:
        pattern = is_pattern(entry)
        base = _pattern_base(entry) if pattern else None
        for root in entry_paths(entry):
            if root.is_file():
                # A pattern's binary matches are skipped, as a folder's are.
                if not pattern:
                    add(root.name, root)
                elif _is_text(root):
                    add(root.relative_to(base).as_posix(), root)
            elif root.is_dir():
                names_from = base if pattern else root
                for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for name in sorted(filenames):
                        path = pathlib.Path(dirpath, name)
                        if not name.startswith(".") and path.is_file() and _is_text(path):
                            add(path.relative_to(names_from).as_posix(), path)
    return found


def assign_splits(files: list[tuple[str, pathlib.Path]]) -> dict[str, list[pathlib.Path]]:
    """Paths per split by `file_splits.split_of`, moving one file if a split would be empty.

    With one file both splits hold it; `TextFiles` then cuts it in two."""
    splits = {"train": [], "validation": []}
    for name, path in files:
        splits[file_splits.split_of(name)].append(path)
    if len(files) > 1 and not (splits["train"] and splits["validation"]):
        # The file with the smallest bucket is the one the hash rule would move first.
        chosen = min(files, key=lambda named: file_splits.validation_bucket(named[0]))[1]
        rest = [path for _, path in files if path != chosen]
        splits = {"train": rest, "validation": [chosen]}
    elif len(files) == 1:
        splits = {"train": [files[0][1]], "validation": [files[0][1]]}
    return splits


# How far from its target share (in shares of the text) a single file's cut may move to start
# the held-out tail at a line, or else a word.
CUT_SLACK = 0.01


def tail_cut(text: str, fraction: float = 1 - file_splits.VALIDATION_FRACTION) -> int:
    """The character offset (0 < cut < len) nearest `fraction` of the text that starts a line,
    else a word, within `CUT_SLACK` of the text of it; else that offset itself."""
    target = min(max(int(len(text) * fraction), 1), len(text) - 1)
    slack = int(len(text) * CUT_SLACK)
    for separators in (("\n",), ("\n", " ", "\t")):
        starts = [i + 1 for i in range(max(target - slack - 1, 0), min(target + slack, len(text) - 1))
                  if text[i] in separators]
        if starts:
            return min(starts, key=lambda i: abs(i - target))
    return target


def files_fingerprint(files: list[tuple[str, pathlib.Path]]) -> str:
    """A short hash of the files' names, paths, sizes and modification times."""
    digest = hashlib.sha1()
    for name, path in files:
        stat = path.stat()
        digest.update(f"{name}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclasses.dataclass(eq=False)
class TextFilesConfig(tfds.core.BuilderConfig):
    """Which files: `entries` as the user gave them."""

    entries: tuple[str, ...] = ()


def text_files_config(files: str) -> TextFilesConfig:
    """The builder config for a comma-separated `data.files` value. Raises ConfigError on
    `data.files` when an entry is missing, a file or folder cannot be read, a file named directly
    is binary, or no text file is found."""
    entries = tuple(parse_file_list(files))
    try:
        found = expand_files(list(entries))
        binary = [entry for entry in entries if not is_pattern(entry)
                  and pathlib.Path(entry).expanduser().is_file()
                  and not _is_text(pathlib.Path(entry).expanduser())]
    except FileNotFoundError as missing:
        raise ConfigError("data.files", files, f"existing files or folders, or patterns that "
                                               f"match some ({missing} is neither)")
    except OSError as error:
        raise cannot_read(files, error) from None
    if binary:
        raise ConfigError("data.files", files, f"text files ({binary[0]} is binary: a NUL byte "
                                               f"in its first {BINARY_PROBE_BYTES // 1024} KiB)")
    if not found:
        raise ConfigError("data.files", files,
                          "files or folders holding at least one text file (found none)")
    return TextFilesConfig(name="files_" + files_fingerprint(found), entries=entries)


class TextFiles(tfds.core.GeneratorBasedBuilder):
    """A user's text files, one example per file (see the module docstring for the splits)."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "One document per file, split by file.",
                     "1.1.0": "Validation is 10% of files, or a single file's last 10% (was 2%).",
                     "1.2.0": "A single file's cut is within 1% of 90% of it (it was the line "
                              "break nearest 90%, however far)."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Text files given in data.files.",
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "path": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files only
        files = expand_files(list(self.builder_config.entries))
        splits = assign_splits(files)
        return {split: self._generate_examples(splits[split], split, single=len(files) == 1)
                for split in file_splits.SPLITS}

    def _generate_examples(self, paths, split, single=False):
        for path in paths:
            try:
                text = read_bytes(path).decode("utf-8", "replace")
            except OSError as error:  # readable when checked, past its first 8 KiB not
                raise cannot_read(",".join(self.builder_config.entries), error) from None
            if single:
                cut = tail_cut(text) if len(text) > 1 else len(text)
                text = text[:cut] if split == "train" else text[cut:]
            yield str(path), {"text": text, "path": str(path)}

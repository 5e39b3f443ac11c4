"""`python_stdlib`: the Python standard library's own `.py` sources as a TFDS dataset.

It needs no download, so a run works offline out of the box. What it holds:
- every `.py` file under `sysconfig.get_paths()['stdlib']`, recursively, in sorted path order;
- not `site-packages` (installed third-party code, different on every machine);
- not the test suites (`test/`, `tests/`, `idle_test/` folders): they are 60% of the bytes
  (about 19 of 31 MB on CPython 3.11), mostly repetitive assertions and deliberately broken or
  oddly encoded fixture files; without them the corpus is about 12 MB of library code.
One example per file (`text`, `path`), split by file with `file_splits.split_of`. The builder
config is named after the interpreter version, since each version ships a different library.
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig

import tensorflow_datasets as tfds

from scaling.data import file_splits

SKIPPED_FOLDERS = frozenset({"site-packages", "test", "tests", "idle_test"})


def stdlib_root() -> pathlib.Path:
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: pathlib.Path | None = None) -> list[tuple[str, pathlib.Path]]:
    """(relative POSIX path, absolute path) of every corpus file, sorted by relative path."""
    root = root or stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if SKIPPED_FOLDERS.isdisjoint(relative.parts[:-1]) and path.is_file():
            files.append((relative.as_posix(), path))
    return sorted(files)


def interpreter_config_name() -> str:
    return "py" + "_".join(str(part) for part in sys.version_info[:3])


class PythonStdlib(tfds.core.GeneratorBasedBuilder):
    """The running interpreter's standard library sources, one example per `.py` file."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Library sources without test suites or site-packages.",
                     "1.1.0": "Validation is 10% of files (was 2%)."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(
        name=interpreter_config_name(), description="This interpreter's standard library.")]

    def _info(self) -> tfds.core.DatasetInfo:
        # Built here, not from metadata files: a builder in a plain module has none.
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "path": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        files = stdlib_files()
        return {split: self._generate_examples(files, split) for split in file_splits.SPLITS}

    def _generate_examples(self, files, split):
        for relative, path in files:
            if file_splits.split_of(relative) == split:
                # Standard library sources are UTF-8 (PEP 3120); replacement keeps a stray byte
                # from failing the whole build.
                yield relative, {"text": path.read_bytes().decode("utf-8", "replace"),
                                 "path": relative}

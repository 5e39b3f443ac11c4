"""How a corpus made of files is split into train and validation: by file, never inside one.

A file's split is a pure function of its relative path (a SHA-1 bucket), so it is the same on
every machine and does not move when other files are added or removed.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation")
VALIDATION_FRACTION = 0.1
_BUCKETS = 10_000


def validation_bucket(relative_path: str) -> int:
    """A stable bucket in [0, 10000) for a path (POSIX separators)."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def split_of(relative_path: str) -> str:
    """'validation' for about `VALIDATION_FRACTION` of paths, 'train' for the rest."""
    in_validation = validation_bucket(relative_path) < VALIDATION_FRACTION * _BUCKETS
    return "validation" if in_validation else "train"

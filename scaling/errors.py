"""The errors every layer shares, in a module that imports nothing of ours.

`ConfigError` is raised wherever a configuration value is found wanting — the schema, the data
registry, the launchers — and printed by the command-line tools as one line, exit 2.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names field, value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"config.{field}={value!r} is not allowed: {allowed}")


class IncompatibleCheckpoint(ValueError):
    """The workdir holds a checkpoint or a finished run of a different model or plan."""

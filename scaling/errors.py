"""The errors every layer shares, in a module that imports nothing of ours.

`ConfigError` is raised wherever a configuration value is found wanting — the schema, the data
registry, the launchers — and printed by the command-line tools as one line, exit 2; their
`ArgumentParser` reports a malformed command line the same way.
"""

from __future__ import annotations

import argparse
from typing import Any


def flag_name(field: str) -> str:
    """The command-line flag of a settings field: `max_retries` → `--max-retries`."""
    return "--" + field.replace("_", "-")


def empty_option(args: argparse.Namespace) -> tuple[str, Any] | None:
    """The first option given an empty (or blank) value, as (its flag, the value): an unset shell
    variable, which must not read as "not given". None when there is none."""
    for name, value in vars(args).items():
        if any(isinstance(given, str) and not given.strip()
               for given in (value if isinstance(value, list) else [value])):
            return flag_name(name), value
    return None


# What every ConfigError's message says between the value and what is allowed.
NOT_ALLOWED = " is not allowed: "


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names field, value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        # One line, whatever the text it quotes holds (a file name with a newline in it).
        allowed = allowed.replace("\r", "\\r").replace("\n", "\\n")
        self.field, self.value, self.allowed = field, value, allowed
        # A command-line option (`--workdir`, `--config`) is named as typed; a field as its flag.
        name = field if field.startswith("-") else f"config.{field}"
        super().__init__(f"{name}={value!r}{NOT_ALLOWED}{allowed}")

    def as_option(self, option: str) -> "ConfigError":
        """This error if it is not about `--config`, else the same under `option`: the flag that
        names the config file in a launcher whose own `--config` is something else."""
        return self if self.field != "--config" else ConfigError(option, self.value, self.allowed)

    def in_run(self, run: str) -> "ConfigError":
        """The same error, its message led by the name of the planned run it belongs to."""
        error = type(self).__new__(type(self))  # of its own kind (DoesNotFit among them)
        error.__dict__.update(self.__dict__)
        error.args = (f"run {run}: {self}",)
        return error


class IncompatibleCheckpoint(ValueError):
    """The workdir holds a checkpoint or a finished run of a different model or plan."""


class WorkdirBusy(RuntimeError):
    """Another live process holds the workdir's lock; the message names its pid and host."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with its errors (a missing option, a value of the wrong type, an unknown
    choice) in one line — `prog: error: ...`, exit 2 — without the usage block (`--help` shows
    it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is named before a missing one: argparse checks
        the required options first, and `--workdr runs/a` was answered "required: --workdir"."""
        relaxed = [item for parser in _parsers(self)
                   for item in (*parser._actions, *parser._mutually_exclusive_groups)
                   if item.required]
        for item in relaxed:
            item.required = False
        try:
            _, unknown = self.parse_known_args(args, argparse.Namespace())
        finally:
            for item in relaxed:
                item.required = True
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return super().parse_args(args, namespace)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and its subcommands' parsers, at every depth."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found

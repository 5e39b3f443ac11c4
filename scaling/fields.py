"""Declaring configuration fields once: a default, a one-line meaning and the rule a value obeys.

A config section is a frozen dataclass whose fields are made with `option`, `integer`, `number`,
`flag`, `text`, `numbers` or `section`. From that one declaration follow the ml-collections
defaults (`to_config_dict`) and the per-field checks (`check_section`); the `doc` of each field
is its documentation. Rules between fields (a width divisible by the heads) live with the section
that owns them, after the per-field checks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

import ml_collections

from scaling.errors import ConfigError

Check = Callable[[str, Any], None]


def _field(default: Any, doc: str, check: Check | None, **extra) -> Any:
    metadata = {"doc": doc, "check": check, **extra}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite real number: NaN and ±inf are refused (no rate or budget is infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def option(default: str, choices: Iterable[str], doc: str) -> Any:
    """A string from `choices`."""
    choices = tuple(choices)

    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(name, value, "one of " + ", ".join(choices))

    return _field(default, doc, check, choices=choices)


def integer(default: int, doc: str, *, minimum: int | None = 0, maximum: int | None = None,
            allowed: str = "") -> Any:
    """An integer >= `minimum` and <= `maximum` (no bound when None); `allowed` words the rule
    when the bounds alone would not."""
    if not allowed:
        allowed = ("an integer" if minimum is None else "an integer > 0" if minimum == 1
                   else f"an integer >= {minimum}")

    def check(name: str, value: Any) -> None:
        if (not _is_integer(value) or (minimum is not None and value < minimum)
                or (maximum is not None and value > maximum)):
            raise ConfigError(name, value, allowed)

    return _field(default, doc, check)


def probability(default: float, doc: str) -> Any:
    """A probability in [0, 1)."""

    def check(name: str, value: Any) -> None:
        if not _is_number(value) or not 0.0 <= value < 1.0:
            raise ConfigError(name, value, "a probability in [0, 1)")

    return _field(float(default), doc, check)


def number(default: float, doc: str, *, minimum: float = 0.0, maximum: float | None = None,
           exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> Any:
    """A real number in [minimum, maximum] (an end open when `exclusive_minimum` or
    `exclusive_maximum`)."""

    def check(name: str, value: Any) -> None:
        low_ok = _is_number(value) and (value > minimum if exclusive_minimum else value >= minimum)
        high_ok = maximum is None or (value < maximum if exclusive_maximum else value <= maximum)
        if not low_ok or not high_ok:
            low = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
            if maximum is None:
                allowed = f"a finite number {low}"
            elif exclusive_minimum:
                high = f"< {maximum:g}" if exclusive_maximum else f"<= {maximum:g}"
                allowed = f"a finite number {low} and {high}"
            else:
                allowed = f"a number in [{minimum:g}, {maximum:g}" + (")" if exclusive_maximum
                                                                     else "]")
            raise ConfigError(name, value, allowed)

    return _field(float(default), doc, check)


def flag(default: bool, doc: str) -> Any:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(name, value, "true or false")

    return _field(default, doc, check)


def split_tags(tags: str) -> list[str]:
    """The entries of a comma-separated list such as `wandb.tags`, stripped, empty ones dropped."""
    return [tag.strip() for tag in tags.split(",") if tag.strip()]


def text(default: str, doc: str) -> Any:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise ConfigError(name, value, "a string")

    return _field(default, doc, check)


def numbers(default: tuple, doc: str, *, positive: bool = True) -> Any:
    """A tuple of numbers (each > 0 when `positive`)."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, (tuple, list)) or not all(
                _is_number(v) and (v > 0 or not positive) for v in value):
            raise ConfigError(name, value,
                              "a tuple of finite numbers" + (" > 0" if positive else ""))

    return _field(tuple(default), doc, check)


def section(default: dict, doc: str) -> Any:
    """A free-form nested section (sweeps' overrides of run fields); checked by its owner."""
    return _field(dict(default), doc, None)


def config_fields(cls) -> list[dataclasses.Field]:
    """The fields of a section that appear in the ml-collections config."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("in_config", True)]


def to_config_dict(cls) -> ml_collections.ConfigDict:
    """The section's defaults as a ConfigDict (nested sections included)."""
    values = {}
    for f in config_fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        values[f.name] = ml_collections.ConfigDict(default) if isinstance(default, dict) else default
    return ml_collections.ConfigDict(values)


def check_section(cls, values: ml_collections.ConfigDict, prefix: str) -> None:
    """Run every declared field's own check on `values`; raise ConfigError on the first bad one."""
    for f in config_fields(cls):
        check = f.metadata.get("check")
        if check is not None:
            if f.name not in values:  # a config file built from scratch (`default_config` has all)
                error = ConfigError(f"{prefix}{f.name}", None, "a field every run config has")
                error.args = (f"config.{prefix}{f.name} is missing: every run config has it "
                              "(build the config from scaling.config.default_config())",)
                raise error
            check(f"{prefix}{f.name}", values[f.name])

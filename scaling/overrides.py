"""Config files and command-line overrides.

`load_config("configs/demo.py:small")` imports the file and calls its `get_config("small")`
(ml-collections convention, as `config_flags.DEFINE_config_file` does). `apply_overrides` sets
dotted fields from strings (`model.d_model=256`, `wandb.tags=a,b`), parsing each value to the
field's type; an unknown field or a value of the wrong type raises `ConfigError` naming it.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import inspect
import pathlib

import ml_collections

from scaling.config import unknown_key_error
from scaling.errors import ConfigError

# What --help says of the overrides that `split_argv` takes from a command line.
RUN_OVERRIDES_HELP = ("Any field of the run config can follow the options as "
                      "--config.SECTION.FIELD=VALUE, e.g. --config.optim.lr=1e-3 "
                      "--config.model.d_model=256; an unknown field or a bad value is refused in "
                      "one line.")
SWEEP_OVERRIDES_HELP = ("Any field of the sweep config can follow the options as "
                        "--config.FIELD=VALUE, e.g. --config.sizes=d8-L2,d16-L2; the runs' own "
                        "fields as --config.overrides.SECTION.FIELD=VALUE, e.g. "
                        "--config.overrides.optim.grad_clip=0.5.")


def config_file(spec: str) -> str:
    """The file a config `path[:arg]` names (`architectures.py:decoder`: `architectures.py`)."""
    return spec.partition(":")[0]


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Import `path[:arg]` and return its `get_config()` / `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError("--config", spec, "an existing ml-collections config file (path[:arg])")
    name = f"_scaling_config_{file.stem}"
    # An explicit loader: a file not named *.py is still read as Python (and refused if it is not).
    module_spec = importlib.util.spec_from_file_location(
        name, file, loader=importlib.machinery.SourceFileLoader(name, str(file)))
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # not Python, or Python that fails: say where, in one line
        raise ConfigError("--config", spec,
                          f"a Python config file that runs ({one_line_error(error)})") from None
    if not hasattr(module, "get_config"):
        raise ConfigError("--config", spec, "a Python file defining get_config()")
    check_variant(module, spec, arg)
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (ValueError, TypeError, KeyError) as error:  # e.g. an unknown variant
        raise ConfigError("--config", spec, f"a variant its get_config() accepts "
                                            f"({one_line_error(error)})") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError("--config", spec, "a get_config() that returns an ml_collections.ConfigDict")
    return config


def check_variant(module, spec: str, arg: str) -> None:
    """A variant (`file.py:arg`) must be one the file offers: one of its `VARIANTS` when it
    declares them, and only to a `get_config` that takes an argument. (A `get_config` that takes
    one and declares no list checks its argument itself, as `configs/families/*.py` do.)"""
    if not arg:
        return
    try:
        takes_argument = bool(inspect.signature(module.get_config).parameters)
    except (TypeError, ValueError):
        takes_argument = True
    if not takes_argument:
        raise ConfigError("--config", spec, "no variant: this file's get_config() takes none")
    variants = getattr(module, "VARIANTS", None)
    if variants is not None and arg not in variants:
        raise ConfigError("--config", spec, f"a variant of this file: {', '.join(variants)}")


def one_line_error(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _literal(text: str, expected: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(expected) from None


def parse_value(text: str, current):
    """Parse `text` to the type of the field's current value; ValueError says what was expected."""
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("true or false")
    if isinstance(current, int):
        value = _literal(text, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError("an integer")
        return value
    if isinstance(current, float):
        value = _literal(text, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("a number")
        return float(value)
    if isinstance(current, tuple):
        value = _literal(text, "a tuple of literals, e.g. (1, 2)")
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Apply `a.b=value` strings in order."""
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep:
            error = ConfigError(dotted, None, "an override of the form --config.a.b=value")
            error.args = (f"--config.{dotted} has no value: give it as --config.{dotted}=VALUE",)
            raise error
        parts = dotted.split(".")
        node = config
        for part in parts[:-1]:
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise unknown_key_error(config, dotted, text)
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise unknown_key_error(config, dotted, text)
        current = node[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(dotted, text, "a leaf field (this is a section)")
        try:
            value = parse_value(text, current)
        except (ValueError, SyntaxError) as error:
            expected = error.args[0] if isinstance(error, ValueError) and error.args else "a valid literal"
            raise ConfigError(dotted, text, f"{expected} (the field is {type(current).__name__})")
        node[leaf] = value


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.a.b=v` / `--config.a.b v` overrides from the other arguments. The next
    argument is not taken as a value when it is an option (`--dry-run`): the override is left
    without one, which `apply_overrides` refuses."""
    rest, overrides = [], []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                body += "=" + argv[index + 1]
                index += 1
            overrides.append(body)
        else:
            rest.append(arg)
        index += 1
    return rest, overrides

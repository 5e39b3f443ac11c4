"""Running the external tools a launcher drives (`gcloud`, `sbatch`), or printing them for a dry run.

Launchers build every external command as an argument list and hand it to `execute`. A dry run
prints each command on one line of stdout, shell-quoted so it can be pasted, and runs nothing; a
real run echoes it to stderr (`+ gcloud ...`) before running it. Bad input raises `UsageError`
(exit code 2), so does a run config that `scaling-train` would refuse (`ConfigError`), a tool that
fails raises `CommandFailed` (its exit code); `exit_code_of` turns both
into a one-line message for the command line.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Callable, Sequence

from scaling.errors import ConfigError

PREEMPTED_EXIT_CODE = 75  # scaling-train / scaling-sweep: "checkpoint saved, rerun to resume"


class UsageError(ValueError):
    """An option has a value that is not allowed, or none where one is needed. The message names
    the option, the value (or that it is missing) and what is allowed."""

    def __init__(self, option: str, value: object, allowed: str):
        super().__init__(f"{option} is missing: it needs {allowed}" if value is None
                         else f"{option}={value!r} is not allowed: {allowed}")


class CommandFailed(RuntimeError):
    """An external command exited with a non-zero code the launcher cannot recover from;
    `message`, when given, says so in the launcher's words instead of naming the command (which
    is named cut to its first `SHOWN_CHARACTERS`: `execute` echoed it whole as it ran it).
    `slice_up`: it failed on a machine that is still up, which the launcher then says."""

    def __init__(self, argv: Sequence[str], returncode: int, why: str = "", message: str = "",
                 slice_up: bool = False):
        self.returncode, self.slice_up = returncode, slice_up
        reason = f" ({why})" if why else ""
        line = format_command(argv)
        if len(line) > SHOWN_CHARACTERS:
            line = line[:SHOWN_CHARACTERS - 3] + "..."
        super().__init__(message or f"`{line}` exited with code {returncode}{reason}")


SHOWN_CHARACTERS = 120


def base_config_or(option: str, error: ConfigError, sweep_config: str) -> str:
    """The option a `ConfigError` about a config file is blamed on: `option` (the flag that gave
    the sweep config) for the sweep file itself, `base_config (in SWEEP)` for the run config the
    sweep file names."""
    if error.field == "--config" and str(error.value) != sweep_config:
        return f"base_config (in {sweep_config})"
    return option


def format_command(argv: Sequence[str]) -> str:
    """The command as one shell line that runs the same argument list when pasted."""
    return shlex.join(argv)


def execute(argv: Sequence[str], *, dry_run: bool, capture: bool = False
            ) -> subprocess.CompletedProcess:
    """Runs `argv` (never through a shell) and returns its result, whatever its exit code.

    With `dry_run`, prints the command to stdout and returns a success with empty output instead.
    With `capture`, stdout and stderr are returned as text; otherwise they go to the terminal.
    """
    line = format_command(argv)
    if dry_run:
        print(line, flush=True)
        return subprocess.CompletedProcess(list(argv), 0, stdout="", stderr="")
    print(f"+ {line}", file=sys.stderr, flush=True)
    try:
        return subprocess.run(list(argv), check=False, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError as error:
        raise CommandFailed(argv, 127, f"{argv[0]} is not on PATH") from error


def execute_checked(argv: Sequence[str], *, dry_run: bool, capture: bool = False
                    ) -> subprocess.CompletedProcess:
    """Like `execute`, but raises `CommandFailed` when the command exits non-zero."""
    result = execute(argv, dry_run=dry_run, capture=capture)
    if result.returncode != 0:
        raise CommandFailed(argv, result.returncode)
    return result


def exit_code_of(program: str, action: Callable[[], int]) -> int:
    """Runs `action` and returns its exit code; errors become one line on stderr and a code.

    `UsageError` and `ConfigError` (a planned run's config that `scaling-train` would refuse) give
    2; `CommandFailed` gives the failed command's code (1 if that was 0).
    """
    try:
        return action()
    except (UsageError, ConfigError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except CommandFailed as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return error.returncode or 1

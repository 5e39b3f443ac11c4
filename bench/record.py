"""Write one benchmark's table into its own section of BENCHMARKS.md.

Each bench script owns a section delimited by `<!-- bench:NAME -->` ... `<!-- /bench:NAME -->`;
re-running a script replaces its section and leaves the others alone. The file is replaced
atomically so an interrupted run never leaves it half-written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import re
import shlex
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEach section is written by the `bench/` script it names; rerun it to refresh.\n"


def positive_fraction(text: str) -> float:
    """An argparse `type`: a finite number > 0, or argparse's one-line error (exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


def at_least(minimum: int):
    """An argparse `type`: an integer >= `minimum`, or argparse's one-line error (exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not an integer >= {minimum}")
        return value
    return parse


def machine_description() -> str:
    """CPU model, core count and memory of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        memory = ""
    return f"{cpu}, {os.cpu_count()} cores{memory}"


def record(name: str, title: str, body: str, command: str | None = None) -> None:
    """Replace section `name` of BENCHMARKS.md with `body` under `title`, stamped with the
    command that produced it, the date and the machine."""
    command = command or "python -m " + "bench." + pathlib.Path(sys.argv[0]).stem + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    stamp = (f"Command: `{command}`  \nDate: {datetime.date.today().isoformat()}  \n"
             f"Machine: {machine_description()}\n")
    section = f"<!-- bench:{name} -->\n## {title}\n\n{stamp}\n{body.rstrip()}\n<!-- /bench:{name} -->\n"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n",
                         re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    tmp = BENCHMARKS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, BENCHMARKS)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

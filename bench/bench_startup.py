"""Start-up: how long a fresh interpreter takes to import each command's module and the libraries
under it, as installed, and with another ml-dtypes version in their place.

Every process that imports JAX imports ml-dtypes first: each run a sweep starts, each command,
each test's subprocess. `--ml-dtypes VERSION` installs that version (without dependencies) into a
temporary folder and times the same imports with it ahead on the path, interleaved with the
installed ones, so that both see the same load on the machine.

Writes the `startup` section of BENCHMARKS.md.

Run: python -m bench.bench_startup [--repeats 5] [--ml-dtypes 0.7.0]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench.record import at_least, markdown_table, record

REPO = pathlib.Path(__file__).resolve().parent.parent
MODULES = ("numpy", "ml_dtypes", "jax", "scaling.train", "launch.sweep", "analysis.cli")


def import_seconds(module: str, path: str = "") -> float:
    """Wall-clock seconds of `python -c "import <module>"` in a fresh interpreter, `path` ahead of
    the installed packages."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [path, str(REPO)])))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=environment,
                   cwd=REPO)
    return time.perf_counter() - start


def version_at(path: str = "") -> str:
    environment = dict(os.environ, PYTHONPATH=path)
    return subprocess.run([sys.executable, "-c", "import ml_dtypes; print(ml_dtypes.__version__)"],
                          check=True, env=environment, capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--ml-dtypes", default="", help="another ml-dtypes version to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as other:
        paths = {f"ml-dtypes {version_at()} (installed)": ""}
        if args.ml_dtypes:
            installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                                        "--no-deps", "--target", other,
                                        f"ml-dtypes=={args.ml_dtypes}"])
            if installed.returncode != 0:  # pip has said why above
                parser.error(f"--ml-dtypes={args.ml_dtypes!r}: pip could not install "
                             f"ml-dtypes=={args.ml_dtypes}")
            paths[f"ml-dtypes {version_at(other)}"] = other
        seconds = {(label, module): [] for label in paths for module in MODULES}
        import_seconds("numpy")  # the files in the page cache before the first timing
        for _ in range(args.repeats):
            for module in MODULES:
                for label, path in paths.items():
                    seconds[label, module].append(import_seconds(module, path))
    rows = [[f"`import {module}`",
             *(f"{statistics.median(seconds[label, module]):.2f}" for label in paths)]
            for module in MODULES]
    table = markdown_table(["fresh interpreter", *(f"s, {label}" for label in paths)], rows)
    print(table)
    record("startup", "Start-up: importing the commands' modules", table + "\n\nMedian of "
           f"{args.repeats} fresh interpreters per cell, each import timed whole (the modules "
           "under it included), the columns interleaved. A command's start adds its own work "
           "to this: a run's data, initialisation and compilation.")


if __name__ == "__main__":
    main()

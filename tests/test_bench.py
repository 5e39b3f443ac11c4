"""The `bench/` scripts stay runnable: each one imports against the library as it is now."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_every_bench_script_imports():
    # A script whose helper has moved (bench_memory imported `apply_overrides` from
    # scaling.families) otherwise fails only when someone next measures with it.
    modules = sorted(f"bench.{path.stem}" for path in (REPO / "bench").glob("*.py")
                     if path.stem != "__init__")
    assert "bench.bench_memory" in modules and len(modules) >= 15
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_backtest_doc_header_states_the_coverage_of_its_own_table():
    """bench.bench_backtests writes docs/backtests.md: its prose's coverage count is the one in
    the "all" row of the coverage table it writes below, not a number from an earlier run, and
    rewriting the doc from the same results leaves the committed header unchanged."""
    import re

    from bench.bench_backtests import DOCS, DOCS_HEADER

    doc = DOCS.read_text()
    predictions, covered = map(int, re.search(r"^\| all \| (\d+) \| (\d+) \|", doc, re.M).groups())
    header = DOCS_HEADER.format(predictions=predictions, covered=covered)
    assert f"({covered} of {predictions} held-out predictions" in header
    assert doc.startswith(header)


def test_bench_mup_refuses_a_run_of_no_steps_before_recording_anything():
    # `--steps -1` trained nothing and replaced BENCHMARKS.md's µP section with its "result".
    before = (REPO / "BENCHMARKS.md").read_text()
    result = subprocess.run([sys.executable, "-m", "bench.bench_mup", "--steps", "-1",
                             "--widths", "32"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "--steps and every --widths entry must be integers >= 1" in result.stderr
    assert (REPO / "BENCHMARKS.md").read_text() == before
    # The coordinate check's widths and steps are fixed: given, they were ignored in silence.
    figure = REPO / "docs" / "images" / "mup_coord_check.png"
    drawn = figure.stat().st_mtime_ns
    result = subprocess.run([sys.executable, "-m", "bench.bench_mup", "--coord-check", "--widths",
                             "8", "16"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--widths: not used with --coord-check" in result.stderr
    assert figure.stat().st_mtime_ns == drawn

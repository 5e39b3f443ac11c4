"""The `bench/` scripts stay runnable: each one imports against the library as it is now."""

import pathlib
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("script, arguments, said", [
    # Each recorded its meaningless "result" over BENCHMARKS.md, or ended in a traceback.
    ("bench_memory", ["--budget", "0"], "--budget: 0 is not a finite number > 0"),
    ("bench_memory", ["--budget", "nan"], "--budget: nan is not a finite number > 0"),
    ("bench_memory", ["--seq-len", "0"], "--seq-len: 0 is not an integer >= 1"),
    ("bench_memory", ["--steps", "1"], "--steps: 1 is not an integer >= 2"),
    ("bench_sample", ["--repeats", "0"], "--repeats: 0 is not an integer >= 1"),
    ("bench_sample", ["--new", "0"], "--new: 0 is not an integer >= 1"),
    ("bench_sample", ["--prompt", "0"], "--prompt: 0 is not an integer >= 1"),
    ("bench_sample", ["--new", "200"], "--prompt=16 + --new=200 is more than the model's "
                                       "context of 128 tokens"),
    ("bench_mesh", ["--rounds", "0"], "--rounds: 0 is not an integer >= 1"),
    ("bench_eval_noise", ["--runs", "demo-d8-L2-D1e6"], "--runs='demo-d8-L2-D1e6': need two or "
                                                        "more runs"),
    # pip's own error, then a CalledProcessError traceback.
    ("bench_startup", ["--repeats", "1", "--ml-dtypes", "0.7.0; junk!"],
     "--ml-dtypes='0.7.0; junk!': pip could not install ml-dtypes==0.7.0; junk!"),
])
def test_a_bench_refuses_a_meaningless_setting_in_one_line_before_recording(script, arguments,
                                                                             said):
    before = (REPO / "BENCHMARKS.md").read_text()
    result = subprocess.run([sys.executable, "-m", f"bench.{script}", *arguments], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert said in result.stderr.splitlines()[-1] and "Traceback" not in result.stderr
    assert (REPO / "BENCHMARKS.md").read_text() == before


def test_bench_backtests_reuse_of_a_folder_without_its_results_is_one_line(tmp_path):
    from bench.bench_backtests import GADRE, shared_data_dir

    if not (shared_data_dir() / GADRE).is_file():
        pytest.skip(f"published data not found at {shared_data_dir()}")
    result = subprocess.run([sys.executable, "-m", "bench.bench_backtests", "--reuse", "--out",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].endswith(": run without --reuse first")
    assert f"--out={str(tmp_path)!r}, which has none for " in result.stderr


def test_bench_encoder_use_refuses_a_run_of_another_objective(tmp_path):
    # A decoder's run: KeyError 'encoder_inputs', a traceback.
    workdir = tmp_path / "decoder"
    subprocess.run([sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
                    "--workdir", str(workdir), "--config.train.steps=2"], cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    before = (REPO / "BENCHMARKS.md").read_text()
    result = subprocess.run([sys.executable, "-m", "bench.bench_encoder_use", "--runs",
                             str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].endswith(
        f"error: --runs: {workdir} is a decoder run of causal_lm; this bench reads "
        "span-corruption encoder–decoders")
    assert (REPO / "BENCHMARKS.md").read_text() == before

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

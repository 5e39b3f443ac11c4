"""analysis/scaling_laws.ipynb runs top to bottom on a sweep and on the reference data."""

import pathlib

import nbclient
import nbformat
import pytest

from test_analysis_cli import write_sweep

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "analysis" / "scaling_laws.ipynb"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    results = write_sweep(sweep_dir, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6, 16e6)])
    monkeypatch.setenv("SCALING_RESULTS", str(results))
    monkeypatch.setenv("SCALING_FIT_BOOTSTRAP", "20")
    monkeypatch.setenv("SCALING_FIT_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    assert (tmp_path / "out" / "sweep" / "fit.json").is_file()
    assert (tmp_path / "out" / "sweep" / "loss_vs_compute.png").is_file()

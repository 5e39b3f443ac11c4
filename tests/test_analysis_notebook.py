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
    gadre = tmp_path / "out" / "gadre" / "report.md"
    if gadre.is_file():  # with the reference data: its compute is 6ND, of one of its datasets
        report = gadre.read_text()
        assert "FLOP convention: **6ND with N = column 'params'**" in report
        assert "- rows kept: those with dataset = c4_original" in report


@pytest.fixture(scope="module")
def seeded_ladder(tmp_path_factory):
    """The notebook executed on a ladder sweep (every size at four token budgets, two seeds
    each) with no reference data, and `scaling-fit --results` on the same sweep."""
    import json

    import numpy as np
    import pandas as pd

    from analysis.cli import main

    root = tmp_path_factory.mktemp("ladder")
    sweep_dir = root / "sweep"
    sweep_dir.mkdir()
    points = [(N, D) for N in (1e6, 2e6, 4e6, 8e6, 16e6) for D in (5e6, 1e7, 2e7, 4e7)]
    results = write_sweep(sweep_dir, points)
    table = pd.read_csv(results)
    sign = np.where(np.arange(len(table)) % 2 == 0, 1.0, -1.0)
    pd.concat([table.assign(seed=seed, name=table["name"] + f"-s{seed}",
                            final_eval_loss=table["final_eval_loss"] * (1 + 0.02 * sign * side))
               for seed, side in ((0, 1.0), (1, -1.0))]).to_csv(results, index=False)
    (sweep_dir / "curves.csv").unlink()
    (root / "no_reference_data").mkdir()
    assert main(["--results", str(results), "--out", str(root / "cli"), "--bootstrap", "0"]) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_RESULTS", str(results))
        patch.setenv("SCALING_SHARED_DATA", str(root / "no_reference_data"))
        patch.setenv("SCALING_FIT_BOOTSTRAP", "0")
        patch.setenv("SCALING_FIT_OUT", str(root / "out"))
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    return {"cli": json.loads((root / "cli" / "fit.json").read_text()),
            "notebook": json.loads((root / "out" / "sweep" / "fit.json").read_text()),
            "cli_report": (root / "cli" / "report.md").read_text(),
            "notebook_report": (root / "out" / "sweep" / "report.md").read_text(),
            "text": text, "shared": root / "no_reference_data"}


@pytest.mark.slow
def test_notebook_sweep_headline_law_is_scaling_fits(seeded_ladder):
    # A ladder gets Chinchilla's L(N, D) as its headline from `scaling-fit --results` (README);
    # the notebook's section 1 reports the same law.
    assert seeded_ladder["cli"]["law"] == "chinchilla"
    assert seeded_ladder["notebook"]["law"] == seeded_ladder["cli"]["law"]
    assert seeded_ladder["notebook"]["E"] == seeded_ladder["cli"]["E"]


@pytest.mark.slow
def test_notebook_counts_seed_replicates_as_scaling_fit_does(seeded_ladder):
    # 40 runs, two seeds of each of 20 points: the report says so, word for word as scaling-fit's.
    runs_line = "40 runs in the sweep, fitted as 20 points, each the mean of its 2 seeds"
    assert runs_line in seeded_ladder["cli_report"]
    assert runs_line in seeded_ladder["notebook_report"]
    assert seeded_ladder["notebook"]["data"]["runs_total"] == 40
    assert "40 completed runs fitted as 20 points" in seeded_ladder["text"]


@pytest.mark.slow
def test_notebook_download_hint_leads_to_the_file_it_reads(seeded_ladder):
    # Without the reference data the notebook says how to get it: the folder the download command
    # writes to, under the SCALING_SHARED_DATA it names, must be where the notebook looks.
    import re

    from analysis.download import FILE_NAME
    from analysis.inputs import EPOCH_CHINCHILLA_FILE

    text = seeded_ladder["text"]
    target = re.search(r"--download-chinchilla ([^\s`]+)", text)
    shared = re.search(r"SCALING_SHARED_DATA=([^\s`]+)", text)
    assert target and shared, text
    root = pathlib.Path("/data")
    downloaded = pathlib.Path(target.group(1).replace("DIR", str(root))) / FILE_NAME
    assert downloaded == pathlib.Path(shared.group(1).replace("DIR", str(root))) / EPOCH_CHINCHILLA_FILE


@pytest.mark.slow
def test_notebook_reads_relative_paths_from_the_repository_root(tmp_path):
    # The repository's commands name sweeps from its root (runs/demo/results.csv); Jupyter starts
    # the notebook's kernel in analysis/, so a relative SCALING_RESULTS, SCALING_SHARED_DATA or
    # SCALING_FIT_OUT is taken from the repository root, not from the kernel's folder.
    import os

    root = NOTEBOOK.parent.parent
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    results = write_sweep(sweep_dir, [(N, 20 * N) for N in (1e6, 2e6, 4e6, 8e6, 16e6)])
    (tmp_path / "no_reference_data").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_RESULTS", os.path.relpath(results, root))
        patch.setenv("SCALING_SHARED_DATA", os.path.relpath(tmp_path / "no_reference_data", root))
        patch.setenv("SCALING_FIT_BOOTSTRAP", "0")
        patch.setenv("SCALING_FIT_OUT", os.path.relpath(tmp_path / "out", root))
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert (tmp_path / "out" / "sweep" / "fit.json").is_file()
    assert not (NOTEBOOK.parent / os.path.relpath(tmp_path / "out", root)).exists()


@pytest.mark.slow
def test_notebook_without_a_sweep_fits_the_reference_data_once(tmp_path, monkeypatch):
    # With no SCALING_RESULTS, section 1 points to section 2 instead of showing its report too.
    from analysis.inputs import EPOCH_CHINCHILLA_FILE, shared_data_dir

    if not (shared_data_dir() / EPOCH_CHINCHILLA_FILE).is_file():
        pytest.skip(f"published Chinchilla data not found in {shared_data_dir()}")
    monkeypatch.delenv("SCALING_RESULTS", raising=False)
    monkeypatch.setenv("SCALING_SHARED_DATA", str(shared_data_dir().resolve()))
    monkeypatch.setenv("SCALING_FIT_BOOTSTRAP", "0")
    monkeypatch.setenv("SCALING_FIT_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    reports = [output["data"]["text/markdown"] for cell in notebook.cells
               if cell.cell_type == "code" for output in cell.outputs
               if "# Scaling-law fit" in output.get("data", {}).get("text/markdown", "")]
    sources = [line for report in reports for line in report.splitlines() if line.startswith("Source:")]
    assert len(sources) == 2  # section 2's Chinchilla fit and section 3's Gadre et al. fit
    assert sum("Epoch AI extraction of Chinchilla" in line for line in sources) == 1
    assert not (tmp_path / "out" / "sweep").exists()

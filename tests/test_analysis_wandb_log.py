"""`scaling-fit --wandb-project`: the fit logged to W&B offline and read back with the project's
reader of W&B run files (`launch.registry`), against fit.json."""

import json

import pytest
from test_analysis_cli import write_sweep

from analysis.cli import main
from launch.registry import read_local_run, read_run_file_records


def test_the_fit_is_logged_as_a_run_of_the_sweeps_group(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sizes = [1e6, 2e6, 4e6, 8e6, 16e6]
    results = write_sweep(tmp_path, [(N, 20 * N) for N in sizes])
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "demo"}))
    out = tmp_path / "fit"
    assert main(["--results", str(results), "--out", str(out), "--bootstrap", "20",
                 "--wandb-project", "scaling-test"]) == 0
    assert "W&B fit run: " in capsys.readouterr().out
    import wandb

    wandb.teardown()
    [run_file] = out.glob("wandb/offline-run-*/run-*.wandb")
    run = read_local_run(run_file)
    fit = json.loads((out / "fit.json").read_text())
    assert run["group"] == "demo" and run["state"] == "finished"
    header = next(r.run for r in read_run_file_records(run_file)
                  if r.WhichOneof("record_type") == "run")
    assert header.job_type == "fit" and "sweep:demo" in list(header.tags)
    summary = run["summary"]
    for name in ("E", "A", "alpha"):  # parameters with their intervals
        for field, suffix in (("value", ""), ("se", "_se"), ("ci_low", "_ci_low"),
                              ("ci_high", "_ci_high")):
            assert summary[f"fit/compute/{name}{suffix}"] == pytest.approx(fit[name][field])
    check = fit["extrapolation"]["compute"]
    assert summary["extrapolation/compute/rmse"] == pytest.approx(check["rmse"])
    assert summary["extrapolation/compute/n_held_out"] == check["n_held_out"]
    assert summary["extrapolation/compute/coverage"] == pytest.approx(check["coverage"])
    # What report.md warns of, as the report says it (the W&B run had none of it).
    problems = [flag["problem"] for flag in fit["fits"]["compute"]["diagnostics"]]
    assert summary["fit/compute/warnings"] == ("; ".join(problems) if problems else "none")
    # Logged media (the reader flattens nested summary keys with "/"): the runs table, the line
    # plot's table, the held-out runs and each figure.
    assert summary["runs/_type"] == "table-file" and summary["runs/nrows"] == len(sizes)
    assert summary["loss_vs_compute_table/_type"] == "table-file"
    assert summary["loss_vs_compute_table/nrows"] == len(fit["data"]["frontier"]["flops"])
    assert summary["extrapolation_held_out/compute/nrows"] == check["n_held_out"]
    figures = sorted(path.stem for path in out.glob("*.png"))
    assert figures and all(summary[f"figures/{stem}/_type"] == "image-file" for stem in figures)
    # The fit's own files, report.md included, as one artifact to download or compare.
    [artifact] = [r.artifact for r in read_run_file_records(run_file)
                  if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "scaling-fit"]
    assert artifact.name == "fit-demo"
    assert {entry.path for entry in artifact.manifest.contents} == {
        "fit.json", "report.md", *(f"{stem}.png" for stem in figures)}


@pytest.mark.parametrize("environment, mode", [({"WANDB_MODE": "dryrun"}, "offline"),
                                               ({"WANDB_MODE": "disabled"}, "disabled"),
                                               ({}, "offline"),
                                               ({"WANDB_MODE": "online"}, "offline"),
                                               ({"WANDB_API_KEY": "k"}, "online"),
                                               ({"netrc": True}, "online")])
def test_the_fit_runs_in_the_mode_a_training_run_would(monkeypatch, tmp_path, environment, mode):
    from analysis import wandb_log

    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    netrc = tmp_path / "netrc"  # where `wandb login` saves the key
    environment = dict(environment)
    if environment.pop("netrc", False):
        netrc.write_text("machine api.wandb.ai login user password k\n")
    monkeypatch.setenv("NETRC", str(netrc))
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(wandb_log, "wandb_host_unreachable", lambda: "")  # W&B's server is up
    assert wandb_log._mode() == mode


def test_with_wandbs_server_out_of_reach_the_fit_logs_offline_at_once(monkeypatch, capsys):
    # W&B waited a minute, then the fit's log was dropped with advice on W&B's own init_timeout.
    import socket
    import time

    from analysis import wandb_log

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    assert wandb_log._mode() == "offline"
    assert time.monotonic() - started < 30
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("scaling-fit: warning: W&B's server cannot be reached (")
    assert line.endswith("): logging the fit offline")


def test_wandb_failing_to_log_the_fit_is_a_warning_line_after_the_fit(tmp_path, monkeypatch,
                                                                       capsys):
    # The fit is written before W&B starts; W&B failing (here it cannot make its run folder)
    # says so in one line and leaves the fit, as W&B failing never stops a training run.
    monkeypatch.setenv("WANDB_MODE", "offline")
    results = write_sweep(tmp_path, [(N, 20 * N) for N in [1e6, 2e6, 4e6, 8e6, 16e6]])
    out = tmp_path / "fit"
    out.mkdir()
    (out / "wandb").write_text("a file where W&B wants its folder")
    assert main(["--results", str(results), "--out", str(out), "--bootstrap", "20",
                 "--wandb-project", "scaling-test"]) == 0
    captured = capsys.readouterr()
    [warning] = [line for line in captured.err.splitlines() if "W&B" in line]
    assert warning.startswith("scaling-fit: warning: W&B could not log the fit")
    assert str(out) in warning and (out / "fit.json").is_file()


@pytest.mark.parametrize("options, environment, refusal", [
    # W&B refused them after the whole fit, in a warning with exit 0 (a pydantic dump for the
    # last two, the group's blaming a tag the user never gave).
    (["--wandb-project", "a/b"], {}, "--wandb-project='a/b' is not allowed; need a W&B project "
                                     "name: 1 to 128 characters, none of / \\ # ? % :"),
    (["--wandb-project", "p", "--wandb-group", "g" * 59], {},
     f"--wandb-group='{'g' * 59}' is not allowed; need 1 to 58 characters (the fit's run is "
     "tagged sweep:<group>, and W&B's tags hold at most 64)"),
    (["--wandb-project", "p"], {"WANDB_MODE": "bogus"},
     "--wandb-project: W&B would not start, because $WANDB_MODE='bogus' is none of online, "
     "offline, disabled, dryrun, run, shared: unset it or fix it"),
])
def test_what_wandb_would_refuse_is_one_line_before_the_fit(tmp_path, monkeypatch, capsys,
                                                            options, environment, refusal):
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    results = write_sweep(tmp_path, [(N, 20 * N) for N in [1e6, 2e6, 4e6, 8e6, 16e6]])
    out = tmp_path / "fit"
    assert main(["--results", str(results), "--out", str(out), "--bootstrap", "20",
                 *options]) == 2
    assert capsys.readouterr().err == f"scaling-fit: error: {refusal}\n"
    assert not (out / "fit.json").exists()


def test_wandb_turned_off_by_the_environment_logs_nothing_and_says_so(tmp_path, monkeypatch,
                                                                       capsys):
    # It named an offline run folder that was never written, and said to upload it.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    results = write_sweep(tmp_path, [(N, 20 * N) for N in [1e6, 2e6, 4e6, 8e6, 16e6]])
    out = tmp_path / "fit"
    assert main(["--results", str(results), "--out", str(out), "--bootstrap", "20",
                 "--wandb-project", "scaling-test"]) == 0
    captured = capsys.readouterr()
    assert "note: the fit was not logged to W&B: $WANDB_MODE=disabled turns W&B off" in \
        captured.out.splitlines()
    assert "W&B fit run" not in captured.out and "wandb sync" not in captured.out
    assert (out / "fit.json").is_file() and not (out / "wandb").exists()


def test_approach_2s_exponents_and_warnings_are_logged():
    from analysis.wandb_log import fit_summary

    interval = {"value": 0.52, "se": 0.03, "ci_low": 0.47, "ci_high": 0.58, "ci_level": 0.95}
    fit = {"law": "chinchilla", "fits": {}, "isoflop": {
        "a": interval, "b": dict(interval, value=0.48), "budgets": [],
        "diagnostics": [{"parameter": "a", "problem": "only 2 budgets", "fix": "more"}]}}
    summary = fit_summary(fit)
    assert summary["fit/isoflop/a"] == 0.52 and summary["fit/isoflop/a_ci_high"] == 0.58
    assert summary["fit/isoflop/b"] == 0.48
    assert summary["fit/isoflop/warnings"] == "only 2 budgets"
    assert not [key for key in fit_summary(dict(fit, isoflop=None)) if "isoflop" in key]
    # An exponent without an interval (most resamples failed) was a plain value with "none".
    failed = {"value": 0.828, "se": "nan", "ci_low": "nan", "ci_high": "nan",
              "failed_resamples": 400, "resamples": 500}
    fit["isoflop"] = dict(fit["isoflop"], a=failed, b=dict(failed, value=0.2755), diagnostics=[])
    summary = fit_summary(fit)
    assert summary["fit/isoflop/a"] == 0.828 and "fit/isoflop/a_ci_low" not in summary
    # Why, as report.md says it: a resample redraws each budget's runs (it said "failed to fit
    # or overflowed").
    why = ("left fewer than 2 budgets with a minimum inside their sizes; redrawn with "
           "replacement, a budget's runs often keep fewer than 3 sizes")
    assert summary["fit/isoflop/warnings"] == (
        f"a: no interval: 400 of 500 bootstrap resamples {why}; b: no "
        f"interval: 400 of 500 bootstrap resamples {why}")


def test_derived_quantities_do_not_replace_parameters_of_the_same_name():
    from analysis.wandb_log import fit_summary

    # Gadre et al.'s law has parameters a and b; its derived allocation exponents are also a, b.
    interval = {"se": 0.1, "ci_low": 0.3, "ci_high": 0.7}
    fit = {"law": "overtraining", "fits": {"overtraining": {
        "params": {"a": {"value": 653.97, **interval},
                   "b": {"value": 672.3, "failed_resamples": 60, "resamples": 100}},
        "derived": {"a": {"value": 0.5, **interval}, "b": {"value": 0.5, **interval}},
        "objective": 1e-3, "n_points": 35, "diagnostics": []}}}
    summary = fit_summary(fit)
    assert summary["fit/overtraining/a"] == 653.97 and summary["fit/overtraining/b"] == 672.3
    assert summary["fit/overtraining/derived/a"] == 0.5
    assert summary["fit/overtraining/derived/b_ci_high"] == 0.7
    # The parameter b's failed resamples are warned of (the derived b's interval hid them).
    assert summary["fit/overtraining/warnings"].startswith("b: ")

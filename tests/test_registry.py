"""`launch.registry`: results.csv rebuilt from W&B equals the one the sweep runner wrote, from local
offline run files and from the W&B API (a fake one: no network here); resumed runs; clear errors."""

import csv
import json
import math
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import types

import pytest

from conftest import write_sweep_config
from launch import registry
from launch.results import RESULT_COLUMNS
from scaling import files, tracking
from scaling.config import default_config

REPO = pathlib.Path(__file__).resolve().parent.parent

REGISTRY_SWEEP = dict(
    name="reg", base_config="configs/demo.py:runlocal", sizes="d32-L1,d48-L2", plan="steps",
    steps=8, min_steps=1, hparams="porian2024", lr_exponent=0.3, reference_params=1000,
    processes=2,
    overrides={"train": {"log_every": 4, "eval_every": 8, "batch_size": 8},
               "data": {"seq_len": 32}, "checkpoint": {"every_steps": 8},
               "wandb": {"mode": "offline"}})


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def assert_same_table(rebuilt, expected):
    """Same runs in the same order; every column equal: numbers as floats to 1e-9 relative,
    everything else as text."""
    assert [row["name"] for row in rebuilt] == [row["name"] for row in expected]
    for got, want in zip(rebuilt, expected):
        assert list(got) == list(RESULT_COLUMNS) == list(want)
        for column in RESULT_COLUMNS:
            try:
                want_number = float(want[column])
            except ValueError:
                assert got[column] == want[column], (want["name"], column)
                continue
            assert math.isclose(float(got[column]), want_number, rel_tol=1e-9), (want["name"], column)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A two-run sweep trained by `scaling-sweep` with W&B offline: (workdir, its results.csv rows)."""
    root = tmp_path_factory.mktemp("registry")
    config, workdir = root / "reg_sweep.py", root / "sweep"
    write_sweep_config(config, **REGISTRY_SWEEP)
    result = subprocess.run([sys.executable, "-m", "launch.sweep", "--config", str(config),
                             "--workdir", str(workdir)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_csv(workdir / "results.csv")
    assert [row["status"] for row in rows] == ["completed", "completed"]
    return workdir, rows


@pytest.mark.slow
def test_results_rebuilt_from_offline_run_files_match_the_runners(finished_sweep, tmp_path):
    workdir, expected = finished_sweep
    # Each run logged to W&B in its own workdir; no summary.json is read by the rebuild.
    assert all(list((workdir / "runs" / row["name"] / "wandb").glob("offline-run-*/run-*.wandb"))
               for row in expected)
    out = tmp_path / "rebuilt" / "results.csv"
    result = subprocess.run([sys.executable, "-m", "launch.registry", "--wandb-dir", str(workdir),
                             "--group", "reg", "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    # wall_seconds is compared too: the run sends W&B the same summary it writes to summary.json.
    assert_same_table(read_csv(out), expected)
    # The per-size learning rates differ, so a swapped config would show.
    assert expected[0]["lr"] != expected[1]["lr"]
    assert [path.name for path in out.parent.iterdir()] == ["results.csv"]


def scalar_entries(summary: dict) -> dict:
    """What `WandbRun.finish` sends to W&B: the summary's int, float and str entries."""
    return {key: value for key, value in summary.items() if isinstance(value, (int, float, str))}


class FakeApi:
    """`wandb.Api` as `server_runs` uses it: `runs(path, filters)` over a fixed list of runs."""

    def __init__(self, runs, path):
        self._runs, self._path = runs, path
        self.calls = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        filters = filters or {}
        return [run for run in self._runs if path == self._path
                and run.group == filters.get("group")
                and filters.get("jobType") in (None, getattr(run, "job_type", "train"))]


@pytest.mark.slow
def test_results_rebuilt_through_the_api_match_the_runners(finished_sweep):
    workdir, expected = finished_sweep
    fake_runs = []
    for row in reversed(expected):  # the server's order is not the table's
        summary = json.loads((workdir / "runs" / row["name"] / "summary.json").read_text())
        fake_runs.append(types.SimpleNamespace(
            name=row["name"], group="reg", state="finished", config=summary["config"],
            summary=scalar_entries(summary)))
    fake_runs.append(types.SimpleNamespace(name="other", group="another-sweep", state="finished",
                                           config={}, summary={"status": "completed"}))
    fake_runs.append(types.SimpleNamespace(name="fit-reg", group="reg", job_type="fit",
                                           state="finished", config={}, summary={"alpha": 0.3}))
    api = FakeApi(fake_runs, "team/scaling")
    runs = registry.server_runs("scaling", "reg", entity="team", api=api)
    assert api.calls == [("team/scaling", {"group": "reg", "jobType": "train"})]
    rows = [{key: "" if value is None else str(value) for key, value in row.items()}
            for row in registry.result_rows(runs)]
    assert_same_table(rows, expected)


def test_a_resumed_run_merges_its_attempts_summaries(tmp_path):
    config = default_config()
    config.name, config.wandb.mode, config.wandb.group = "resumed", "offline", "g"
    config.optim.lr = 0.0125
    first = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    first.finish({"status": "preempted", "steps": 4, "params": 1000, "final_train_loss": 3.5,
                  "diverged_step": None})
    second = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    second.finish({"status": "completed", "steps": 8, "final_train_loss": 3.0})
    import wandb

    # The fit `scaling-fit --wandb-project` logs in the sweep's group is not a row.
    fit = wandb.init(mode="offline", dir=tmp_path / "fit", group="g", job_type="fit",
                     name="fit-g")
    fit.summary["alpha"] = 0.3
    fit.finish()
    # W&B's service process writes run files behind the caller; shutting it down (as a training
    # process's exit does) makes sure every attempt is on disk before they are read.
    wandb.teardown()
    assert list((tmp_path / "fit" / "wandb").glob("offline-run-*"))

    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    (run,) = registry.local_runs(tmp_path, group="g")
    row = registry.result_row(run)
    assert (row["name"], row["status"], row["steps"], row["final_train_loss"]) == (
        "resumed", "completed", 8, 3.0)
    assert row["params"] == 1000  # known only to the first attempt
    assert row["lr"] == 0.0125 and row["d_model"] == config.model.d_model
    assert row["diverged_step"] == "" and row["final_eval_loss"] == ""
    with pytest.raises(registry.RegistryError, match="group 'other'"):
        registry.local_runs(tmp_path, group="other")


def test_a_value_an_earlier_attempt_recorded_and_the_last_has_not_is_gone(tmp_path):
    # summary.json of the attempt that ended the run has no diverged step and no eval loss; W&B's
    # summary kept the earlier attempt's, because finish skipped values that are None.
    config = default_config()
    config.name, config.wandb.mode = "resumed", "offline"
    first = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    first.finish({"status": "preempted", "steps": 4, "diverged_step": 3, "final_eval_loss": 2.5})
    second = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    second.finish({"status": "completed", "steps": 8, "diverged_step": None,
                   "final_eval_loss": None})
    import wandb

    wandb.teardown()
    (run,) = registry.local_runs(tmp_path)
    row = registry.result_row(run)
    assert (row["status"], row["steps"], row["diverged_step"], row["final_eval_loss"]) == (
        "completed", 8, "", "")


def test_an_attempt_killed_before_its_run_record_is_no_run(tmp_path, capsys):
    # A SIGKILLed attempt leaves `offline-run-<time>-<id>/run-<id>.wandb` holding only the file
    # header: before the attempt that completed the run (killed, then resumed) and after it.
    config = default_config()
    config.name, config.wandb.mode, config.wandb.group = "killed", "offline", "g"
    tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict()).finish(
        {"status": "completed", "steps": 60, "final_train_loss": 3.0})
    import wandb

    wandb.teardown()
    (completed,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    run_id = completed.stem.removeprefix("run-")
    header = completed.read_bytes()[:registry.RECORD_HEADER_BYTES]
    assert header.startswith(registry.RUN_FILE_MAGIC)
    for started in ("19700101_000000", "29991231_235959"):
        killed = tmp_path / "wandb" / f"offline-run-{started}-{run_id}" / completed.name
        killed.parent.mkdir()
        killed.write_bytes(header)
    (run,) = registry.local_runs(tmp_path)
    row = registry.result_row(run)
    assert (row["name"], row["status"], row["steps"], row["final_train_loss"]) == (
        "killed", "completed", 60, 3.0)
    out = tmp_path / "results.csv"
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 0
    assert [row["name"] for row in read_csv(out)] == ["killed"]
    assert "warning" not in capsys.readouterr().err  # its run is in the table

    # A run whose only attempt was killed so early is not in the table, and the warning says so.
    lost = tmp_path / "wandb" / "offline-run-19700101_000000-lostrun1" / "run-lostrun1.wandb"
    lost.parent.mkdir()
    lost.write_bytes(header)
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 0
    assert [row["name"] for row in read_csv(out)] == ["killed"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: 1 W&B run(s) killed before W&B wrote their run " \
        f"record, not in the table: {lost.parent}" in err
    # Killed while W&B wrote the file's header (2 of its bytes): the same, not "not a W&B run
    # file", which stopped the whole rebuild.
    torn = tmp_path / "wandb" / "offline-run-19700101_000000-tornrun1" / "run-tornrun1.wandb"
    torn.parent.mkdir()
    torn.write_bytes(header[:2])
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 0
    assert f"{torn.parent}" in capsys.readouterr().err


def test_another_wandb_run_in_the_folder_is_no_row_and_out_must_be_a_file(tmp_path, capsys):
    # A notebook's W&B run under the sweep's folder became a row (status "ok", tokens 100), and
    # --out naming a folder was a traceback.
    import wandb

    config = default_config()
    config.name, config.wandb.mode = "trained", "offline"
    tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict()).finish(
        {"status": "completed", "steps": 60})
    notebook = wandb.init(project="other", dir=str(tmp_path / "notebook"), name="my-notebook",
                          mode="offline")
    notebook.log({"tokens": 100})
    notebook.summary["status"] = "ok"
    notebook.finish()
    wandb.teardown()
    out = tmp_path / "results.csv"
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 0
    assert [row["name"] for row in read_csv(out)] == ["trained"]
    assert ("warning: 1 W&B run(s) that are no training run of this project, not in the table: "
            "my-notebook") in capsys.readouterr().err
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the warning again
    assert error == (f"launch.registry: error: --out={str(tmp_path)!r} is not allowed: a file "
                     "path that can be written (Is a directory)")
    # Under a file it said "(File exists)".
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out / "r.csv")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"launch.registry: error: --out={str(out / 'r.csv')!r} is not allowed: a file path that "
        f"can be written ({out} is a file)")
    # Another group than the runs': it asked whether W&B had been offline or online.
    assert registry.main(["--wandb-dir", str(tmp_path), "--group", "nope", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"launch.registry: error: no W&B runs of group 'nope' under {tmp_path}; the groups of "
        "those there: none")


def test_a_run_file_that_cannot_be_read_and_an_out_that_is_no_file_are_one_line(tmp_path,
                                                                                  capsys):
    # A folder named as a run file was a traceback; --out /dev/full was replaced by the table.
    import os

    config = default_config()
    config.name, config.wandb.mode = "trained", "offline"
    tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict()).finish(
        {"status": "completed", "steps": 60})
    import wandb

    wandb.teardown()
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(pipe)]) == 2
    assert capsys.readouterr().err == (f"launch.registry: error: --out={str(pipe)!r} is not "
                                       "allowed: a file path (this is a device, a pipe or a "
                                       "socket)\n")
    assert pipe.is_fifo()
    folder = tmp_path / "wandb" / "offline-run-20260101_000000-aaaaaaaa" / "run-aaaaaaaa.wandb"
    folder.mkdir(parents=True)
    out = tmp_path / "results.csv"
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"launch.registry: error: --wandb-dir={str(tmp_path)!r} is not allowed: W&B run files "
        f"that can be read ({folder} cannot: Is a directory)\n")
    assert not out.exists()


def test_a_workdir_without_wandb_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "summary.json").write_text('{"status": "completed"}')
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(tmp_path / "r.csv")]) == 2
    assert "no W&B runs under" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_a_group_without_runs_is_a_clear_error():
    api = FakeApi([types.SimpleNamespace(name="x", group="a", state="finished", config={},
                                         summary={})], "scaling")
    with pytest.raises(registry.RegistryError, match="no W&B runs of group 'b' in project 'scaling'"):
        registry.server_runs("scaling", "b", api=api)


def test_project_without_group_is_refused(capsys):
    with pytest.raises(SystemExit):
        registry.main(["--project", "scaling", "--out", "r.csv"])
    assert "--group" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, refusal", [
    # Each was taken: an empty --group as "every group", --entity unused in silence, an empty
    # --out as ".", a file as a folder without runs, an empty project as a missing API key.
    (["--wandb-dir", "{tmp}", "--group", "", "--out", "{tmp}/r.csv"],
     "--group='' is not allowed: a value (this one is empty)"),
    (["--wandb-dir", "{tmp}", "--out", ""], "--out='' is not allowed: a value (this one is empty)"),
    (["--project", "", "--group", "g", "--out", "{tmp}/r.csv"],
     "--project='' is not allowed: a value (this one is empty)"),
    (["--wandb-dir", "{tmp}", "--entity", "e", "--out", "{tmp}/r.csv"],
     "--entity='e': not used here (it is --project's: --wandb-dir reads local runs)"),
    (["--wandb-dir", "{tmp}/a-file", "--out", "{tmp}/r.csv"],
     "--wandb-dir='{tmp}/a-file' is not allowed: a folder (this is a file)"),
    # It was "no W&B runs under {tmp}/none; was the sweep run with wandb.mode=offline?"
    (["--wandb-dir", "{tmp}/none", "--out", "{tmp}/r.csv"],
     "--wandb-dir='{tmp}/none' is not allowed: a folder (there is none)"),
])
def test_a_value_the_registry_cannot_use_is_one_line(tmp_path, capsys, arguments, refusal):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exit:
        registry.main([argument.format(tmp=tmp_path) for argument in arguments])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err == f"python -m launch.registry: error: {refusal.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "r.csv").exists()


def test_the_server_form_without_an_api_key_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no `wandb login` either
    out = tmp_path / "r.csv"
    assert registry.main(["--project", "scaling", "--group", "reg", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--project='scaling'" in err and "WANDB_API_KEY" in err and "wandb login" in err
    assert not out.exists()


def test_an_unreachable_server_is_one_line_at_once(tmp_path, monkeypatch, capsys):
    # W&B's client retried for 20 s before its error.
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                  "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    out = tmp_path / "r.csv"
    assert registry.main(["--project", "scaling", "--group", "reg", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("launch.registry: error: could not read the runs of project 'scaling': "
                          f"the W&B server cannot be reached (127.0.0.1:{port}: ")
    assert err.count("\n") == 1 and not out.exists()


def test_the_servers_refusal_is_one_line(tmp_path, monkeypatch, capsys):
    import wandb

    class RefusingApi:
        def runs(self, path, filters=None):
            raise wandb.errors.CommError("Could not find project nowhere")

    def bad_key():
        raise wandb.errors.AuthenticationError("API key rejected")

    import socket

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    server = socket.create_server(("127.0.0.1", 0))  # a server that answers the probe
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    out = tmp_path / "r.csv"
    for api in (RefusingApi, bad_key):
        monkeypatch.setattr(wandb, "Api", api)
        assert registry.main(["--project", "nowhere", "--group", "reg", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "project 'nowhere'" in err and ("Could not find project" in err
                                               or "API key rejected" in err)
    assert not out.exists()
    server.close()


def cut_before_finish(run_file: pathlib.Path, out: pathlib.Path) -> dict:
    """Write to `out` the run file as an attempt killed after its first logged step leaves it:
    the shortest prefix whose summary holds the history's `tokens` (the file is written in
    order, so a prefix is what a writer killed there left). Returns that attempt."""
    data, low, high = run_file.read_bytes(), registry.RECORD_HEADER_BYTES, len(run_file.read_bytes())
    out.parent.mkdir(parents=True, exist_ok=True)

    def attempt(length):
        out.write_bytes(data[:length])
        return registry.read_local_run(out)

    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if "tokens" in attempt(middle)["summary"] else (middle + 1, high)
    return attempt(low)


@pytest.mark.slow
def test_a_killed_attempt_shows_the_plan_or_the_summary_an_earlier_attempt_wrote(finished_sweep,
                                                                                 tmp_path):
    """W&B copies each logged step into a run's summary; an attempt killed before it ended has no
    summary of its own. Alone, its row is the plan (the runner's, for a run without summary.json);
    after an attempt that ended, that attempt's summary stands."""
    workdir, expected = finished_sweep
    want = expected[1]
    [finished] = (workdir / "runs" / want["name"] / "wandb").glob("offline-run-*/run-*.wandb")
    killed_dir = tmp_path / "killed" / "wandb" / f"offline-run-29991231_235959-{finished.stem[4:]}"
    killed = cut_before_finish(finished, killed_dir / finished.name)
    # The killed attempt logged its first step (4 of 8): half the plan's tokens, no status.
    assert "status" not in killed["summary"] and killed["state"] == "running"
    assert killed["summary"]["step"] == 4 and 2 * killed["summary"]["tokens"] == int(want["tokens"])

    (run,) = registry.local_runs(tmp_path / "killed")
    row = {key: "" if value is None else str(value) for key, value in
           registry.result_row(run).items()}
    assert row["status"] == "running"
    # The plan is what the completed run then trained: the runner's row for it.
    for column in ("params", "embedding_params", "non_embedding_params", "tokens", "steps",
                   "start_step", "flops", "study_flops", "flop_convention", "lr", "size"):
        assert str(row[column]) and (row[column] == want[column] or math.isclose(
            float(row[column]), float(want[column]), rel_tol=1e-9)), column
    assert row["flops_6N"] == row["flops_full"] == row["final_train_loss"] == ""

    # Killed after an attempt that ended: the row is that attempt's, as the runner's is.
    shutil.copytree(finished.parent, tmp_path / "killed" / "wandb" / finished.parent.name)
    (run,) = registry.local_runs(tmp_path / "killed")
    row = {key: "" if value is None else str(value) for key, value in
           registry.result_row(run).items()}
    assert_same_table([row], [want])


@pytest.mark.slow
def test_a_last_attempt_without_exit_is_failed_when_its_workdir_lock_says_nothing_runs(
        finished_sweep, tmp_path):
    workdir, expected = finished_sweep
    [finished] = (workdir / "runs" / expected[1]["name"] / "wandb").glob("offline-run-*/run-*.wandb")
    run_dir = tmp_path / "run"
    attempt = f"offline-run-29991231_235959-{finished.stem[4:]}"
    cut_before_finish(finished, run_dir / "wandb" / attempt / finished.name)
    lock = run_dir / files.WORKDIR_LOCK
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    host = socket.gethostname()
    for record, status in [
            (None, "running"),  # no lock file (the W&B folders gathered elsewhere): cannot tell
            ("", "failed"),  # released: no process holds the workdir
            (json.dumps({"pid": int(ended.stdout), "host": host}), "failed"),  # its holder died
            (json.dumps({"pid": os.getpid(), "host": host}), "running"),
            (json.dumps({"pid": int(ended.stdout), "host": f"{host}-other"}), "running")]:
        if record is None:
            lock.unlink(missing_ok=True)
        else:
            lock.write_text(record)
        (run,) = registry.local_runs(run_dir)
        assert registry.result_row(run)["status"] == status, record


def test_a_run_file_damaged_inside_is_one_line_naming_it(tmp_path, capsys):
    # Every record carries a CRC-32 of its kind byte and its bytes; a flipped byte inside the file
    # gave a protobuf traceback, or a record parsed from garbage.
    config = default_config()
    config.name, config.wandb.mode = "damaged", "offline"
    tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict()).finish(
        {"status": "completed", "steps": 60, "final_train_loss": 3.0})
    import wandb

    wandb.teardown()
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    out = tmp_path / "results.csv"
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 0
    data = bytearray(run_file.read_bytes())
    first_length = struct.unpack("<H", data[11:13])[0]  # the first record's header at byte 7
    second = registry.RECORD_HEADER_BYTES * 2 + first_length
    data[second + registry.RECORD_HEADER_BYTES + 2] ^= 0xFF  # a byte of the second record
    run_file.write_bytes(bytes(data))
    out.unlink()
    assert registry.main(["--wandb-dir", str(tmp_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"launch.registry: error: {run_file}: damaged at byte {second} (a record that fails its "
        "checksum); move the folder of this attempt aside to rebuild the table without it\n")
    assert not out.exists()

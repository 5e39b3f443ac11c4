"""`scaling.tracking`: metrics.jsonl cut back on resume, atomic JSON, W&B offline and W&B failures,
the progress line.

W&B's offline run file (`run-<id>.wandb`) is read back with a small reader written here from the
format's definition (LevelDB log blocks of 32 KiB, 7-byte record headers, W&B's protobuf
`Record`s), so the test checks what W&B would upload, not what the wrapper meant to send.
"""

import glob
import json
import pathlib

import pytest

from scaling import files, tracking
from scaling.config import default_config

def wandb_records(path: pathlib.Path) -> list:
    """Every protobuf Record in a W&B offline run file (the registry's reader)."""
    from launch.registry import read_run_file_records

    return read_run_file_records(path)


def logged_history(run_file: pathlib.Path) -> list[dict]:
    return [{"/".join(item.nested_key) or item.key: json.loads(item.value_json)
             for item in record.history.item}
            for record in wandb_records(run_file) if record.WhichOneof("record_type") == "history"]


def logged_config(run_file: pathlib.Path) -> dict:
    config = {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else (
            record.config.update if kind == "config" else [])
        for item in updates:
            config[item.key] = json.loads(item.value_json)
    return config


def wandb_config(mode: str = "offline"):
    config = default_config()
    config.name = "tracking-test"
    config.wandb.mode = mode
    config.wandb.tags = "a,b"
    return config


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": step, "train_loss": step / 10}) + "\n"
                            for step in range(5, 45, 5)) + '{"step": 45, "train_lo')
    log = tracking.MetricsLog(path, resume_step=20)
    assert [record["step"] for record in log.records] == [5, 10, 15, 20]
    log.write({"step": 25, "train_loss": 2.5})
    log.close()
    records = tracking.read_metrics(path)
    assert [record["step"] for record in records] == [5, 10, 15, 20, 25]
    assert records[1] == {"step": 10, "train_loss": 1.0}


def test_a_half_written_line_is_left_out_by_readers(tmp_path):
    # A run killed mid-write (or still writing): the sweep's tables read what is complete.
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 5, "train_loss": 0.5}) + "\n" + '{"step": 10, "tra')
    assert tracking.read_metrics(path) == [{"step": 5, "train_loss": 0.5}]


def test_metrics_log_from_scratch_drops_a_stale_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 5}) + "\n")
    tracking.MetricsLog(path, resume_step=0).close()
    assert path.read_text() == ""


def test_json_written_atomically_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "summary.json"
    files.write_json_atomic(path, {"status": "completed", "path": pathlib.Path("x")})
    files.write_json_atomic(path, {"status": "preempted"})
    assert json.loads(path.read_text()) == {"status": "preempted"}
    assert [child.name for child in tmp_path.iterdir()] == ["summary.json"]


def test_wandb_offline_holds_metrics_and_config_and_a_restart_keeps_the_run_id(tmp_path,
                                                                              capsys):
    config = wandb_config()
    records = [{"step": 5, "train_loss": 4.5, "eval_loss": None, "tokens": 640},
               {"step": 10, "train_loss": 4.0, "eval_loss": 3.9, "tokens": 1280}]
    first = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    run_id = first.run_id
    assert run_id and (tmp_path / tracking.WANDB_ID_FILE).read_text().strip() == run_id
    for record in records:
        first.log(record)
    first.finish({"status": "preempted", "steps": 10})

    capsys.readouterr()
    second = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    assert second.run_id == run_id
    # The upload it prints takes both attempts' folders (it named the second's alone).
    upload = capsys.readouterr().out.split("upload with `")[1].split("`")[0]
    second.log({"step": 15, "train_loss": 3.5, "eval_loss": None, "tokens": 1920})
    second.finish({"status": "completed", "steps": 15})
    import wandb

    wandb.teardown()  # W&B's service writes run files in the background: flush before reading

    offline_runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(
        (path / f"run-{run_id}.wandb").is_file() for path in offline_runs)
    assert upload.startswith("wandb sync ")
    assert sorted(glob.glob(upload.removeprefix("wandb sync "))) == [str(path)
                                                                     for path in offline_runs]
    history = logged_history(offline_runs[0] / f"run-{run_id}.wandb")
    # On W&B the metrics sit in sections (train/, eval/, ...); x-axes keep their names.
    assert [(row["step"], row["train/loss"], row["tokens"]) for row in history] == [
        (5, 4.5, 640), (10, 4.0, 1280)]
    assert "eval/loss" not in history[0] and history[1]["eval/loss"] == 3.9
    saved_config = logged_config(offline_runs[0] / f"run-{run_id}.wandb")
    assert saved_config["model"]["d_model"] == config.model.d_model
    assert saved_config["optim"]["lr"] == config.optim.lr
    assert [row["step"] for row in logged_history(offline_runs[1] / f"run-{run_id}.wandb")] == [15]


def logged_summary(run_file: pathlib.Path) -> dict:
    """The run's summary as W&B ends with it: its summary records' updates and removals, in
    order."""
    summary = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        for item in record.summary.remove:
            summary.pop("/".join(item.nested_key) or item.key, None)
    return summary


def test_the_wandb_summary_is_the_runs_not_its_last_logged_rows(tmp_path):
    # finish() set the summary, and the last history row, committed after it, overwrote what
    # it shares: a preempted run showed its last logged step's tokens, and every run its last
    # interval's tokens/s instead of the median summary.json has.
    config = wandb_config()
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    run.log({"step": 10, "train_loss": 4.0, "tokens": 1280, "tokens_per_second": 900.0})
    run.finish({"status": "preempted", "steps": 12, "tokens": 1536, "tokens_per_second": 700.0})
    import wandb

    wandb.teardown()
    [offline] = (tmp_path / "wandb").glob("offline-run-*")
    summary = logged_summary(offline / f"run-{run.run_id}.wandb")
    assert (summary["tokens"], summary["perf/tokens_per_second"], summary["steps"]) == (
        1536, 700.0, 12)
    # A run stopped to be resumed is marked preempting: its exit code alone read as a crash.
    kinds = [record.WhichOneof("record_type") for record in
             wandb_records(offline / f"run-{run.run_id}.wandb")]
    assert "preempting" in kinds


def test_wandb_failing_to_start_never_stops_training(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("no network\n  (timed out after 60 s)")

    monkeypatch.setattr(wandb, "init", broken_init)
    config = wandb_config()
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict=config.to_dict())
    assert run.run_id is None
    run.log({"step": 1, "train_loss": 1.0})
    run.finish({"status": "completed"})
    # The id is kept, so a later restart with W&B working joins the same run.
    assert len((tmp_path / tracking.WANDB_ID_FILE).read_text().strip()) == 8
    # One warning line, though W&B's message has two.
    [warning] = [record.getMessage() for record in caplog.records if "W&B" in record.getMessage()]
    assert warning == ("W&B could not start (RuntimeError: no network (timed out after 60 s)); "
                       "continuing without it")


def test_wandb_failing_while_logging_turns_itself_off(tmp_path):
    class BrokenRun:
        id = "abc"

        def log(self, record):
            raise ConnectionError("lost")

    config = wandb_config(mode="disabled")
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict={})
    run._run = BrokenRun()
    run.log({"step": 1})
    assert run.run_id is None
    run.log({"step": 2})
    run.finish({"status": "completed"})


def test_online_without_an_api_key_logs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # and no `wandb login`
    config = wandb_config(mode="online")
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict={})
    run.finish({"status": "completed"})
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1



def test_online_with_the_server_unreachable_logs_offline_at_once(tmp_path, monkeypatch, caplog):
    """W&B's own start waited a minute (init_timeout) for a server it could not reach, then ran
    without W&B: the run's metrics never reached it."""
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    config = wandb_config(mode="online")
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict={})
    run.log({"step": 1, "train_loss": 2.0})
    run.finish({"status": "completed"})
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    [warning] = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert f"127.0.0.1:{port}: " in warning and "wandb sync" in warning


def test_the_server_probe_connects_or_says_why_not(monkeypatch):
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert tracking.wandb_host_unreachable({"WANDB_BASE_URL": f"http://127.0.0.1:{port}"}) == ""
    assert tracking.wandb_host_unreachable({"WANDB_BASE_URL": f"http://127.0.0.1:{port}"}) \
        .startswith(f"127.0.0.1:{port}: ")
    # Without WANDB_BASE_URL, the server W&B itself would use (it was W&B's cloud, which W&B
    # 0.31 no longer talks to directly).
    tried = []
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, timeout: tried.append(address) or socket.socket())
    assert tracking.wandb_host_unreachable({}) == ""
    assert tried == [("api.forge.coreweave.com", 443)]
    monkeypatch.undo()
    # Behind a proxy only W&B can tell.
    assert tracking.wandb_host_unreachable({"WANDB_BASE_URL": f"http://127.0.0.1:{port}",
                                            "HTTPS_PROXY": "http://proxy:3128"}) == ""


def test_the_api_key_comes_from_the_environment_or_from_wandb_login(tmp_path):
    # `wandb login` saves the key in the netrc file under the W&B host's name.
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password key-saas\n"
                                    "machine wandb.example.com login user password key-local\n")
    netrc_only = {"NETRC": str(tmp_path / "netrc")}
    assert tracking.wandb_api_key(netrc_only) == "key-saas"  # saved by W&B before 0.31
    # W&B 0.31's `wandb login` saves it under its default server, CoreWeave's front of the
    # cloud: read as no key, the run logged offline.
    (tmp_path / "netrc").write_text(
        "machine api.forge.coreweave.com login user password key-forge\n"
        + (tmp_path / "netrc").read_text())
    assert tracking.wandb_api_key(netrc_only) == "key-forge"
    assert tracking.wandb_api_key({**netrc_only, "WANDB_BASE_URL": "https://wandb.example.com"}) \
        == "key-local"
    assert tracking.wandb_api_key({**netrc_only, "WANDB_API_KEY": "key-env"}) == "key-env"
    assert tracking.wandb_api_key({**netrc_only, "WANDB_BASE_URL": "https://other.org"}) == ""
    assert tracking.wandb_api_key({"NETRC": str(tmp_path / "missing")}) == ""


def test_new_run_ids_look_like_wandbs():
    ids = {tracking.new_run_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(run_id) == 8 and run_id.isalnum() and run_id == run_id.lower() for run_id in ids)


@pytest.mark.parametrize("seconds, text", [(0, "0m00s"), (59.9, "0m59s"), (61, "1m01s"),
                                           (3600 * 2 + 61, "2h01m01s")])
def test_durations(seconds, text):
    assert tracking.format_duration(seconds) == text


def test_progress_line_extrapolates_the_time_left(monkeypatch):
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(tracking.time, "perf_counter", lambda: next(clock))
    progress = tracking.Progress(total_steps=100, start_step=0)
    line = progress.line({"step": 20, "train_loss": 3.25, "eval_loss": 3.5,
                          "tokens_per_second": 12345.6, "mfu": 0.25})
    # 20 steps took 10 s, so the remaining 80 take 40 s.
    assert line == "step 20/100 | loss 3.2500 | eval 3.5000 | 12,346 tok/s | MFU 25.0% | ETA 0m40s"


def test_a_log_with_no_timed_step_has_no_speed(tmp_path):
    # Logged every step: the first step compiles and is not timed, so its record has no tokens/s
    # (None, not 0) and its progress line leaves the speed out; the later steps have one.
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
         "--workdir", str(tmp_path / "run"), "--config.train.steps=3", "--config.train.log_every=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = tracking.read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["tokens_per_second"], r["mfu"]) for r in records][0] == (1, None, None)
    assert all(r["tokens_per_second"] > 0 for r in records[1:]) and len(records) == 3
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 1/3 | loss ") and "tok/s" not in lines[0]
    assert all("tok/s" in line for line in lines[1:])


def run_header(run_file: pathlib.Path):
    return next(record.run for record in wandb_records(run_file)
                if record.WhichOneof("record_type") == "run")


def test_wandb_steps_are_training_steps_across_attempts(tmp_path):
    # Two attempts of one run (the second resumed from a checkpoint at step 10 after the first
    # logged 15): each offline file keys its rows by the training step, so they line up.
    import wandb

    for steps in ((5, 10, 15), (15, 20)):
        run = tracking.WandbRun(wandb_config(), tmp_path, name="attempts", config_dict={})
        for step in steps:
            run.log({"step": step, "train_loss": 5.0 - 0.1 * step})
        run.finish({"status": "completed"})
        wandb.teardown()
    files = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    keyed = [[(row["_step"], row["step"]) for row in logged_history(path)] for path in files]
    assert sorted(keyed) == sorted([[(5, 5), (10, 10), (15, 15)], [(15, 15), (20, 20)]])


def test_wandb_sections_axes_tags_job_type_and_url(tmp_path, capsys):
    config = wandb_config()
    config.wandb.tags = "sweep:s,plan:ladder,family:cpu_demo,size:d32-L1"
    run = tracking.WandbRun(config, tmp_path, name=config.name,
                            config_dict={**config.to_dict(), "N": 1000, "D": 20000, "C": 1.2e8})
    printed = capsys.readouterr().out
    assert f"W&B run {config.name}: " in printed and "offline-run-" in printed
    run.log({"step": 5, "tokens": 640, "flops": 1e6, "train_loss": 4.5, "eval_loss": None,
             "lr": 0.01, "grad_norm": float("nan"), "tokens_per_second": 100.0, "mfu": 0.1,
             "eval_seconds": 0.001})
    run.log({"step": 10, "tokens": 1280, "flops": 2e6, "train_loss": 4.0, "eval_loss": 3.9,
             "eval_stderr": 0.01, "lr": 0.005, "grad_norm": 1.5, "tokens_per_second": 110.0,
             "mfu": 0.11, "eval_seconds": 0.2})
    run.finish({"status": "completed", "final_eval_loss": 3.9, "wall_seconds": 12.0})
    import wandb

    wandb.teardown()
    [run_file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    first, second = logged_history(run_file)
    assert {key for key in first if not key.startswith("_")} == {
        "step", "tokens", "flops", "train/loss", "optim/lr", "perf/tokens_per_second",
        "perf/mfu"}  # no eval yet: no eval loss, no eval time; NaN grad norm left out
    assert second["eval/loss"] == 3.9 and second["eval/loss_stderr"] == 0.01
    assert second["optim/grad_norm"] == 1.5 and second["perf/eval_seconds"] == 0.2
    header = run_header(run_file)
    assert header.job_type == "train"
    assert list(header.tags) == ["sweep:s", "plan:ladder", "family:cpu_demo", "size:d32-L1",
                                 f"layout:{config.model.layout}"]
    saved = logged_config(run_file)
    assert (saved["N"], saved["D"], saved["C"]) == (1000, 20000, 1.2e8)
    # The axes each section is drawn against.
    metrics = {record.metric.name or record.metric.glob_name: record.metric.step_metric
               for record in wandb_records(run_file)
               if record.WhichOneof("record_type") == "metric"}
    assert metrics["train/*"] == "tokens" and metrics["eval/*"] == "tokens"
    assert metrics["perf/*"] == "step" and metrics["optim/*"] == "step"
    assert {"tokens", "flops"} <= set(metrics)
    from launch.registry import read_local_run

    summary = read_local_run(run_file)["summary"]
    assert summary["eval/final_loss"] == 3.9 and summary["perf/wall_seconds"] == 12.0
    assert tracking.from_wandb_names(summary)["final_eval_loss"] == 3.9


@pytest.mark.parametrize("configured, environment, expected", [
    ("online", {"WANDB_MODE": "offline"}, "offline"),
    ("online", {"WANDB_MODE": "disabled"}, "disabled"),
    ("offline", {"WANDB_MODE": "dryrun"}, "offline"),
    ("offline", {"WANDB_MODE": "online"}, "offline"),  # lowers, never raises
    ("disabled", {"WANDB_MODE": "offline"}, "disabled"),
    ("online", {}, "online"),
    ("online", {"WANDB_MODE": "nonsense"}, "online"),
])
def test_wandb_mode_from_the_environment_lowers_the_configured_one(configured, environment,
                                                                    expected):
    assert tracking.effective_mode(configured, environment) == expected


def test_wandb_mode_offline_in_the_environment_keeps_an_online_run_off_the_network(
        tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    config = wandb_config(mode="online")
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict={})
    run.finish({"status": "completed"})
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


def test_an_empty_wandb_mode_in_the_environment_is_no_mode(tmp_path, monkeypatch):
    # `WANDB_MODE= scaling-train ...`: W&B refused to start ("Input should be 'online', ...")
    # and the run went on without it.
    monkeypatch.setenv("WANDB_MODE", "")
    config = wandb_config(mode="offline")
    run = tracking.WandbRun(config, tmp_path, name=config.name, config_dict={})
    run.finish({"status": "completed"})
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.parametrize("overrides, environment, message", [
    (["--config.wandb.project=team/project"], "",
     "config.wandb.project='team/project' is not allowed: a W&B project name: 1 to 128 "
     "characters, none of / \\ # ? % :"),
    ([f"--config.wandb.tags=a,{'t' * 65}"], "",
     f"config.wandb.tags='a,{'t' * 65}' is not allowed: comma-separated tags of at most 64 "
     f"characters each (W&B's limit; {'t' * 20}... has 65)"),
    ([f"--config.wandb.group={'g' * 129}"], "",
     f"config.wandb.group='{'g' * 129}' is not allowed: at most 128 characters (W&B's limit)"),
    ([], "bogus", "config.wandb.mode='offline' is not allowed: a mode W&B starts in, but "
                  "$WANDB_MODE='bogus' is none of online, offline, disabled, dryrun, run, shared: "
                  "unset it or fix it"),
])
def test_settings_wandb_would_refuse_are_one_line_before_the_run(repo, tmp_path, monkeypatch,
                                                                capsys, overrides, environment,
                                                                message):
    """W&B refused them when the run started, and the run trained on without it."""
    from scaling import train

    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_MODE", environment) if environment else monkeypatch.delenv(
        "WANDB_MODE", raising=False)
    workdir = tmp_path / "run"
    code = train.main(["--config", "configs/demo.py", "--workdir", str(workdir),
                       "--config.wandb.mode=offline", *overrides])
    assert (code, capsys.readouterr().err) == (2, f"scaling-train: error: {message}\n")
    assert not workdir.exists()
    # A run that does not log to W&B does not care.
    assert train.main(["--config", "configs/demo.py", "--workdir", str(workdir), "--dry-run",
                       "--config.wandb.mode=disabled", *overrides]) == 0


def test_tags_are_stripped_and_empty_ones_dropped():
    from launch.results import size_of

    config = wandb_config()
    config.wandb.tags = "sweep:x, size:big ,, a"
    assert tracking.run_tags(config) == ["sweep:x", "size:big", "a", "layout:decoder"]
    assert size_of({"wandb": {"tags": config.wandb.tags}}) == "big"

"""Where a run's numbers go: `metrics.jsonl` always, `summary.json` at the end, W&B when enabled,
and a progress line for the human watching.

Only process 0 writes. Files are replaced atomically; `metrics.jsonl` is cut back to the resumed
step on restart, so it never holds a step twice or skips one. W&B is best effort: any W&B error
is logged once and training goes on with W&B off.

`metrics.jsonl` and `summary.json` keep flat names (`train_loss`, `final_eval_loss`); on W&B the
same numbers sit in sections for its dashboards (`WANDB_NAMES`: `train/loss`, `eval/final_loss`,
`perf/mfu`, `optim/lr`), against the x-axes `step`, `tokens` and `flops`. `launch.registry` maps
them back with `from_wandb_names`.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import pathlib
import secrets
import shlex
import socket
import string
import sys
import time
import urllib.parse

from launch.results import WANDB_NAMES
from scaling import files, status
from scaling.fields import split_tags

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id.txt"

X_AXES = ("step", "tokens", "flops", "flops_6N", "flops_full")
# Which x-axis each section is drawn against by default (any logged axis can be picked in W&B).
SECTION_AXES = {"train": "tokens", "eval": "tokens", "optim": "step", "perf": "step"}
# From most to least connected: W&B's own WANDB_MODE may lower the config's mode, never raise it.
WANDB_MODE_ORDER = ("online", "offline", "disabled")


def to_wandb_names(record: dict) -> dict:
    """A metrics or summary record under W&B names, without the values it does not have (None,
    NaN) and without eval timing where no eval ran."""
    renamed = {}
    for key, value in record.items():
        if value is None or (isinstance(value, float) and value != value):
            continue
        if key == "eval_seconds" and record.get("eval_loss") is None:
            continue
        renamed[WANDB_NAMES.get(key, key)] = value
    return renamed


def from_wandb_names(record: dict) -> dict:
    """A W&B summary (or history row) under the flat names of summary.json / metrics.jsonl."""
    flat = {wandb_name: name for name, wandb_name in WANDB_NAMES.items()}
    return {flat.get(key, key): value for key, value in record.items()}


WANDB_CLOUD_HOST = "api.wandb.ai"  # W&B's cloud API, behind W&B 0.31's default server


def wandb_base_url(environment: dict | None = None) -> str:
    """The W&B server runs log to: `WANDB_BASE_URL`, else the installed W&B's default (W&B 0.31:
    https://api.forge.coreweave.com, CoreWeave's front of W&B's cloud)."""
    environment = os.environ if environment is None else environment
    if environment.get("WANDB_BASE_URL"):
        return environment["WANDB_BASE_URL"]
    import wandb  # 1.5 s to import: only where W&B is about to be used

    return wandb.Settings().base_url


def wandb_api_key(environment: dict | None = None) -> str:
    """The W&B API key this machine would log in with: `WANDB_API_KEY`, else the one `wandb
    login` saved in the netrc file (`NETRC`, else ~/.netrc) for the server's host (and, for W&B's
    default server, as W&B itself reads it, for W&B's cloud behind it: a key older versions
    saved); "" when there is none."""
    environment = os.environ if environment is None else environment
    if environment.get("WANDB_API_KEY"):
        return environment["WANDB_API_KEY"]
    host = urllib.parse.urlparse(wandb_base_url(environment)).hostname or ""
    hosts = (host,) if environment.get("WANDB_BASE_URL") else (host, WANDB_CLOUD_HOST)
    path = environment.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        saved = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return ""
    for name in hosts:
        entry = saved.authenticators(name)
        if entry and entry[2]:
            return entry[2]
    return ""


def wandb_host_unreachable(environment: dict | None = None, timeout: float = 5.0) -> str:
    """Why the W&B server (`wandb_base_url`) cannot be reached from here, or ""
    when it can, or when a proxy stands between (then only W&B itself can tell). A TCP connection
    is tried for at most `timeout` seconds: where there is no network, W&B's own start waits a
    minute before it gives up."""
    environment = os.environ if environment is None else environment
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    if any(environment.get(name) for name in proxies):
        return ""
    url = urllib.parse.urlparse(wandb_base_url(environment))
    if not url.hostname:
        return ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        return f"{url.hostname}:{port}: {error.strerror or error}"
    return ""


def effective_mode(configured: str, environment: dict | None = None) -> str:
    """The W&B mode a run uses: `wandb.mode`, lowered by W&B's own `WANDB_MODE` when that is set
    (offline or disabled on a machine without network, whatever the configs say)."""
    wanted = (os.environ if environment is None else environment).get("WANDB_MODE", "").lower()
    wanted = {"dryrun": "offline"}.get(wanted, wanted)
    if wanted not in WANDB_MODE_ORDER:
        return configured
    return max(configured, wanted, key=WANDB_MODE_ORDER.index)


def run_tags(config) -> list[str]:
    """The run's W&B tags: the configured ones (a sweep adds sweep:, plan:, family:, size:), the
    model's layout, and `branch` for a cooldown branch (`train.init_from` set)."""
    tags = split_tags(config.wandb.tags)
    layout = config.model.get("layout") if "model" in config else None
    if layout and not any(tag.startswith("layout:") for tag in tags):
        tags.append(f"layout:{layout}")
    if parent_name(config) and "branch" not in tags:
        tags.append("branch")
    return tags


def parent_name(config) -> str:
    """The run a cooldown branch continues: its `train.init_from` workdir's name (a sweep's run
    workdirs are named after their runs), as results.csv's `parent` column; "" for other runs."""
    init_from = config.train.get("init_from", "") if "train" in config else ""
    return pathlib.PurePath(init_from.rstrip("/")).name if init_from else ""


class MetricsLog:
    """Append-only `metrics.jsonl`, one JSON object per logged step."""

    def __init__(self, path: pathlib.Path, resume_step: int):
        self.path = path
        self.records = self._truncate_after(resume_step)
        self._file = open(path, "a")

    def _truncate_after(self, step: int) -> list[dict]:
        """Drop records past `step` (written after the checkpoint the run resumes from) and any
        half-written line; return the records kept."""
        if not self.path.exists():
            return []
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        files.write_text_atomic(
            self.path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept))
        return kept

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """All records of a metrics.jsonl, without a half-written line (a run killed mid-write, or
    one still writing it): the run's next start drops it from the file."""
    records = []
    for line in pathlib.Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


TRAIN_JOB_TYPE = "train"  # a training run's W&B job type: the runs a sweep's table has rows for


def new_run_id() -> str:
    """A fresh W&B run id: 8 lowercase letters and digits, as W&B makes them."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def one_line(error: BaseException) -> str:
    """An error's message on one line (W&B's span several)."""
    return " ".join(str(error).split())


class WandbRun:
    """A W&B run that resumes with the workdir and never stops training when W&B fails."""

    def __init__(self, config, workdir: pathlib.Path, *, name: str, config_dict: dict,
                 job_type: str = TRAIN_JOB_TYPE, stream=None):
        self._run = None
        mode = effective_mode(config.wandb.mode)
        if mode != config.wandb.mode:
            log.info("WANDB_MODE=%s: W&B %s (wandb.mode=%r)", os.environ.get("WANDB_MODE"), mode,
                     config.wandb.mode)
        if mode == "disabled":
            return
        offline_runs = f"{shlex.quote(str(pathlib.Path(workdir) / 'wandb'))}/offline-run-*"
        if mode == "online" and not wandb_api_key():
            log.warning("wandb.mode='online' but there is no W&B API key (neither WANDB_API_KEY "
                        "nor `wandb login`): logging offline; upload later with `wandb sync "
                        "%s`", offline_runs)
            mode = "offline"
        unreachable = wandb_host_unreachable() if mode == "online" else ""
        if unreachable:
            log.warning("W&B's server cannot be reached (%s): logging offline; upload later with "
                        "`wandb sync %s`", unreachable, offline_runs)
            mode = "offline"
        try:
            import wandb  # 1.5 s to import: only for runs that log to W&B

            # The run owns its W&B service. A process that used W&B before starting this one
            # (a notebook, a launcher) leaves WANDB_SERVICE in the environment; attached to that
            # service, a killed run's stream stays open there and its restart's log is lost.
            # (Within one process W&B keeps its own connection and needs no variable.)
            os.environ.pop("WANDB_SERVICE", None)
            # Set empty (`WANDB_MODE= cmd`) it is no mode, and W&B refused to start: unset.
            if os.environ.get("WANDB_MODE") == "":
                del os.environ["WANDB_MODE"]
            id_file = workdir / WANDB_ID_FILE
            run_id = (id_file.read_text().strip() if id_file.exists() else "") or new_run_id()
            # Written before init, so a restart reuses the id even if this init fails.
            files.write_text_atomic(id_file, run_id + "\n")
            self._run = wandb.init(
                project=config.wandb.project, entity=config.wandb.entity or None,
                group=config.wandb.group or None, name=name, id=run_id, resume="allow",
                job_type=job_type, tags=run_tags(config), config=config_dict,
                dir=str(workdir), mode=mode,
                settings=wandb.Settings(init_timeout=60, silent=True))
            for axis in X_AXES:
                self._run.define_metric(axis)
            for section, axis in SECTION_AXES.items():
                self._run.define_metric(f"{section}/*", step_metric=axis)
            # Offline, each attempt of a resumed run logs to a folder of its own (its start time
            # and the run's id, and -1, -2 ... for attempts within a second): the upload takes
            # them all.
            attempts = (f"{shlex.quote(str(pathlib.Path(self._run.dir).parents[1]))}/"
                        f"offline-run-*-{run_id}*")
            where = (self._run.url if mode == "online" and self._run.url else
                     f"{self._run.dir} (offline; upload with `wandb sync {attempts}`)")
            print(f"W&B run {name}: {where}", file=stream or sys.stdout, flush=True)
        except Exception as error:  # W&B is optional: note it and train on
            log.warning("W&B could not start (%s: %s); continuing without it",
                        type(error).__name__, one_line(error))
            self._run = None

    @property
    def run_id(self) -> str | None:
        return self._run.id if self._run is not None else None

    def log(self, record: dict) -> None:
        if self._run is None:
            return
        try:
            # W&B's own step is the training step, so the attempts of a resumed run line up.
            step = record.get("step")
            # Committed now: a row left open is committed at finish, after the summary, and
            # its values would replace the run's own (the last interval's speed, say).
            self._run.log(to_wandb_names(record), step=None if step is None else int(step),
                          commit=True)
        except Exception as error:
            log.warning("W&B logging failed (%s); continuing without it", one_line(error))
            self._run = None

    def finish(self, summary: dict) -> None:
        if self._run is None:
            return
        try:
            renamed = to_wandb_names(summary)
            for key, value in renamed.items():
                if isinstance(value, (int, float, str)):
                    self._run.summary[key] = value
            # What this attempt has no value for goes: a resumed run's W&B summary still holds
            # the earlier attempts' values, and summary.json has none.
            for key in {WANDB_NAMES.get(key, key) for key in summary} - set(renamed):
                del self._run.summary[key]
            if summary.get("status") in (status.PREEMPTED, status.INTERRUPTED):  # to resume
                self._run.mark_preempting()  # W&B shows it preempted, not crashed
            self._run.finish(exit_code=0 if summary.get("status") == status.COMPLETED else 1)
        except Exception as error:
            log.warning("W&B finish failed (%s)", one_line(error))


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
    """One line per log step: step, loss, eval loss, tokens/s, MFU and the time left."""

    def __init__(self, total_steps: int, start_step: int, stream=None):
        self.total_steps = total_steps
        self._stream = stream or sys.stdout
        self._start_step, self._start_time = start_step, time.perf_counter()
        self._first_call: float | None = None

    def restart_clock(self, step: int, first_call_seconds: float | None = None) -> None:
        """Measure speed from here (after compilation), so the ETA is not skewed by it. A line
        with no step timed since says how long the first call, compilation included, took."""
        self._start_step, self._start_time = step, time.perf_counter()
        self._first_call = first_call_seconds

    def line(self, record: dict) -> str:
        step = record["step"]
        elapsed = time.perf_counter() - self._start_time
        done = step - self._start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else float("nan")
        parts = [f"step {step}/{self.total_steps}", f"loss {record['train_loss']:.4f}"]
        if record.get("eval_loss") is not None:
            parts.append(f"eval {record['eval_loss']:.4f}")
        if record.get("tokens_per_second") is not None:
            parts.append(f"{record['tokens_per_second']:,.0f} tok/s")
        if record.get("mfu") is not None:
            parts.append(f"MFU {100 * record['mfu']:.1f}%")
        if done <= 0 and self._first_call is not None:
            parts.append(f"first call {self._first_call:.1f}s (incl. compile)")
        parts.append(f"ETA {format_duration(eta) if eta == eta else '?'}")
        return " | ".join(parts)

    def show(self, record: dict) -> None:
        print(self.line(record), file=self._stream, flush=True)

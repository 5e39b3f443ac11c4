"""`scaling-tpu`: run a sweep on a Cloud TPU VM slice, driving `gcloud`.

    scaling-tpu create  --project P --zone Z --accelerator-type v5litepod-16   # queued resource, wait ACTIVE
    scaling-tpu setup   ...   # copy the checkout (and this machine's W&B key and settings) to
                              # ~/scaling on every host, make a Python 3.11 environment there
                              # (uv), install into it, mount the bucket (or a folder of it)
    scaling-tpu run     ...   # `scaling-sweep` on every host at once: one multi-host program per run
    scaling-tpu up      ...   # create → setup → run; on preemption delete, recreate, set up and rerun
    scaling-tpu delete  ...   # tear the slice down
    scaling-tpu status  ...   # the slice's state and, when ACTIVE, results.csv's runs by status
    scaling-tpu logs    ... [--run NAME] [--lines N]   # the end of a run's train.log (worker 0)
    scaling-tpu stop    ...   # SIGINT to `scaling-sweep` on every host: runs save and stop; `run` resumes

Every subcommand takes `--config configs/tpu/v5e-16.py` (settings file) and flags that override it,
`run` and `up` also `--config.FIELD=VALUE` overrides of the sweep config, and `--dry-run`, which prints each `gcloud` command on one line and runs none. `run` and `up`
first plan the sweep here and validate every run's config exactly as `scaling-train` will (exit 2
naming the run and the field) before any `gcloud` call, so a bad sweep costs no slice time. The sweep resumes
from its checkpoints after a preemption only if its workdir outlives the slice: a GCS bucket mounted
with gcsfuse (`--bucket`, mounted at `--mount-dir`) or a persistent disk.
"""

from __future__ import annotations

# `python -m launch.tpu` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.tpu())

import argparse
import os
import pathlib
import posixpath
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import ml_collections

from launch import tpu_settings
from launch.tpu_settings import REMOTE_CHECKOUT
from launch.commands import (PREEMPTED_EXIT_CODE, CommandFailed, UsageError, base_config_or,
                             execute, exit_code_of)
from scaling import interrupts
from scaling.errors import ArgumentParser, ConfigError
from scaling.overrides import config_file
from scaling.status import EXIT_INTERRUPTED
from scaling.tracking import wandb_api_key

PROGRAM = "scaling-tpu"
JAX_TPU_REQUIREMENT = "jax[tpu]==0.10.2"  # the version pyproject.toml pins, with the TPU runtime
# Stock TPU VM images (Ubuntu 22.04) ship Python 3.10; the project needs 3.11 or later. `uv` fetches
# a standalone CPython into a virtual environment, whatever the image's Python.
PYTHON_VERSION = "3.11"
REMOTE_VENV = ".venv"  # inside ~/scaling on every host
# The host's index in the slice, from the TPU VM metadata server: an ssh shell need not have
# TPU_WORKER_ID, and only worker 0 may write the sweep's tables.
WORKER_NUMBER_URL = ("http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
                     "agent-worker-number")
ACTIVE = "ACTIVE"
# Queued-resource states after which the slice is gone or going: only deleting and recreating helps.
LOST_STATES = ("SUSPENDING", "SUSPENDED", "PREEMPTED", "DELETING")
# The request itself failed (quota, an accelerator type or image the zone does not offer): the
# same request would fail again, so it is reported with its reason rather than retried.
FAILED = "FAILED"
# W&B's settings from the launching machine, for runs that log online from the hosts: copied
# with the checkout in a file only its owner can read (never on a command line, which `ps` and
# the launcher's own echo show), and read by the sweep's shell.
WANDB_ENV_FILE = "wandb.env"
WANDB_FORWARDED = ("WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE")

Settings = ml_collections.ConfigDict


# ----------------------------------------------------------------------------------------------
# The gcloud commands


def _where(s: Settings) -> list[str]:
    return ["--zone", s.zone, "--project", s.project]


def create_command(s: Settings) -> list[str]:
    """`gcloud` command that requests the slice as a queued resource."""
    command = ["gcloud", "compute", "tpus", "queued-resources", "create", s.name,
               "--node-id", tpu_settings.node_name(s), "--accelerator-type", s.accelerator_type,
               "--runtime-version", tpu_settings.runtime_version(s), *_where(s)]
    return command + ["--spot"] if s.spot else command


def describe_command(s: Settings) -> list[str]:
    """`gcloud` command that prints the queued resource's state (ACTIVE, SUSPENDED, ...)."""
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", s.name, *_where(s),
            "--format=value(state.state)"]


def accelerator_type_command(s: Settings) -> list[str]:
    """`gcloud` command that prints the TPU node's accelerator type (v5litepod-16, ...)."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "describe", tpu_settings.node_name(s),
            *_where(s), "--format=value(acceleratorType)"]


def failure_command(s: Settings) -> list[str]:
    """`gcloud` command that prints why a FAILED queued resource failed."""
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", s.name, *_where(s),
            "--format=value(state.failedData.error.message)"]


def delete_command(s: Settings) -> list[str]:
    """`gcloud` command that deletes the queued resource and its TPU node, without asking."""
    return ["gcloud", "compute", "tpus", "queued-resources", "delete", s.name, *_where(s),
            "--force", "--quiet"]


def scp_command(s: Settings, local_checkout: str) -> list[str]:
    """`gcloud` command that copies `local_checkout` (a folder named `scaling`) to ~/ on every host."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", local_checkout,
            f"{tpu_settings.node_name(s)}:~/", "--worker=all", *_where(s)]


def ssh_command(s: Settings, remote_command: str, worker: str = "all") -> list[str]:
    """`gcloud` command that runs the shell line `remote_command` on every host at once (or on
    host `worker` only: worker 0 writes the sweep's tables and each run's train.log)."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu_settings.node_name(s),
            f"--worker={worker}", *_where(s), "--command", remote_command]


# ----------------------------------------------------------------------------------------------
# The shell lines run on the hosts


def host_path(path: str) -> str:
    """`path` quoted for the host's shell, with a leading `~` still meaning the home folder."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _install_gcsfuse() -> str:
    # TPU VM images do not ship gcsfuse; Google's apt repository does.
    return ("if ! command -v gcsfuse >/dev/null; then "
            'echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] '
            'https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" '
            "| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && "
            "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg "
            "| sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && "
            "sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; fi")


UV_INSTALLER_URL = "https://astral.sh/uv/install.sh"  # Astral's standalone installer
UV_NOT_INSTALLED = ("scaling-tpu setup: could not install uv on this host (tried pip --user, pip "
                    f"--user --break-system-packages and {UV_INSTALLER_URL}); install it by hand, "
                    f"e.g. `curl -LsSf {UV_INSTALLER_URL} | sh`, and run setup again")


def _install_uv() -> str:
    """Shell step: uv on PATH, the first of these ways that works, or one line on stderr and exit 1.

    Run after ~/.local/bin is put first on PATH, where every way below installs it, so a uv from an
    earlier setup is found and nothing is installed twice.
    """
    attempts = [
        # Already installed: on PATH, or in ~/.local/bin by an earlier setup.
        "command -v uv >/dev/null",
        # pip into the user's site: the stock Ubuntu 22.04 images. The next two fallbacks exist
        # because this fails on images whose Python is marked externally managed (PEP 668: pip
        # refuses, "externally-managed-environment", Ubuntu 24.04 on) and on images without pip.
        "{ python3 -m pip install --quiet --user uv >/dev/null 2>&1; command -v uv >/dev/null; }",
        # PEP 668 images: with this flag pip installs into the user's ~/.local, not the system's.
        "{ python3 -m pip install --quiet --user --break-system-packages uv >/dev/null 2>&1; "
        "command -v uv >/dev/null; }",
        # No pip at all: Astral's standalone installer, into ~/.local/bin and leaving the shell
        # profiles alone.
        f'{{ curl -LsSf {UV_INSTALLER_URL} | UV_INSTALL_DIR="$HOME/.local/bin" UV_NO_MODIFY_PATH=1 '
        "sh; command -v uv >/dev/null; }",
        f"{{ echo {shlex.quote(UV_NOT_INSTALLED)} >&2; exit 1; }}",
    ]
    return "{ " + " || ".join(attempts) + "; }"


# Orbax saves a checkpoint by renaming a temporary folder, which gcsfuse refuses on a bucket
# without hierarchical namespace unless the folder holds at most this many files (default 0).
RENAME_DIR_LIMIT = 200_000


def setup_remote_command(s: Settings) -> str:
    """Shell line for every host: mount the bucket (if any), then install the checkout and JAX for TPU."""
    steps = []
    if s.bucket:
        bucket, folder = tpu_settings.split_bucket(s.bucket)
        mount_dir = host_path(s.mount_dir)
        only_dir = f"--only-dir {shlex.quote(folder)} " if folder else ""
        # A folder outside the home one (/mnt/results) is root's to make: TPU VM users have
        # passwordless sudo, and the folder is then given to the user who mounts on it.
        make_mount_dir = (f"{{ mkdir -p {mount_dir} 2>/dev/null || {{ sudo mkdir -p {mount_dir} "
                          f'&& sudo chown "$(id -u):$(id -g)" {mount_dir}; }}; }}')
        steps += [_install_gcsfuse(), make_mount_dir,
                  f"(mountpoint -q {mount_dir} || gcsfuse --implicit-dirs "
                  f"--rename-dir-limit={RENAME_DIR_LIMIT} {only_dir}"
                  f"{shlex.quote(bucket)} {mount_dir})"]
    steps += [f"cd ~/{REMOTE_CHECKOUT}",
              'export PATH="$HOME/.local/bin:$PATH"', _install_uv(),
              f"uv venv --allow-existing --python {PYTHON_VERSION} {REMOTE_VENV}",
              f"uv pip install --python {REMOTE_VENV}/bin/python --quiet -e . "
              f"{shlex.quote(JAX_TPU_REQUIREMENT)}",
              f"{REMOTE_VENV}/bin/python -c {shlex.quote(PYTHON_CHECK)}"]
    return " && ".join(steps)


SWEEP_ON_HOST = f"{REMOTE_VENV}/bin/scaling-sweep"  # as `run` starts it, from ~/scaling


def _checkout_step() -> str:
    """Shell step: into ~/scaling (where a relative --workdir is), or one line saying why not."""
    return (f"{{ cd ~/{REMOTE_CHECKOUT} 2>/dev/null || {{ echo 'no ~/{REMOTE_CHECKOUT} on this "
            "host: run `scaling-tpu setup` first' >&2; exit 1; }; }")


# Run by the host's environment with the workdir as its argument: results.csv's runs counted by
# status (the sweep rewrites the table after every run; a run not ended yet is `pending`), the
# sweep's last status line (its sweep.log), and the last line of the most recently written
# train.log, the run in progress.
STATUS_SCRIPT = "; ".join((  # one line, so that a dry run prints each command on one line
    "import collections, csv, glob, os, sys",
    "w = sys.argv[1]",
    'os.path.isdir(w) or sys.exit(f"no workdir {w} on worker 0")',
    't = os.path.join(w, "results.csv")',
    'rows = list(csv.DictReader(open(t, newline=""))) if os.path.isfile(t) else None',
    'c = collections.Counter(r.get("status") or "unknown" for r in rows or [])',
    'print(f"{t}: " + (f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items())) '
    'if rows is not None else "none yet (the sweep writes it when its first run ends)"))',
    's = os.path.join(w, "sweep.log")',
    'sl = [l.rstrip() for l in open(s, errors="replace") if l.strip()] if os.path.isfile(s) else []',
    # A sweep starts with "sweep NAME: ... to train", ticks "[sweep] ...", and ends "results: ...".
    'ends = [i for i, l in enumerate(sl) if l.startswith("results: ")]',
    'begun = [i for i, l in enumerate(sl) if l.startswith("[sweep]") '
    'or (l.startswith("sweep ") and " to train" in l)]',
    'over = bool(ends) and (not begun or ends[-1] > begun[-1])',
    '(over or begun) and print(f"{s}: " + (f"the sweep is not running; its last line: {sl[-1]}" '
    'if over else sl[begun[-1]]))',
    'logs = glob.glob(os.path.join(glob.escape(w), "runs", "*", "train.log"))',
    "latest = max(logs, key=os.path.getmtime, default=None)",
    'lines = [l.rstrip() for l in open(latest, errors="replace") if l.strip()] if latest else []',
    'last = lines[-1] if lines else "(empty)"',
    'latest and print(f"latest: {latest}: {last}")'))


def status_remote_command(s: Settings) -> str:
    """Shell line for worker 0: the sweep's progress in its workdir (see STATUS_SCRIPT)."""
    return (f"{_checkout_step()} && {REMOTE_VENV}/bin/python -c {shlex.quote(STATUS_SCRIPT)} "
            f"{host_path(s.workdir)}")


def logs_remote_command(s: Settings) -> str:
    """Shell line for worker 0: the last `lines` lines of WORKDIR/runs/RUN/train.log, or of the
    most recently written train.log when no run is named, under a `==> PATH <==` header."""
    workdir = host_path(s.workdir)
    if s.run:
        find = (f"log={workdir}/runs/{shlex.quote(s.run)}/train.log && "
                '{ [ -f "$log" ] || { echo "no $log on worker 0" >&2; exit 1; }; }')
    else:
        find = (f"log=$(ls -t -- {workdir}/runs/*/train.log 2>/dev/null | head -n 1) && "
                f'{{ [ -n "$log" ] || {{ echo "no runs/*/train.log in "{workdir}" on worker 0" >&2; '
                "exit 1; }; }")
    return (f'{_checkout_step()} && {find} && echo "==> $log <==" && '
            f'tail -n {int(s.lines)} -- "$log"')


# `run`'s sweep as the process table shows it: an interpreter (and at most one of its options),
# then the script as `run` names it. Not the ssh shell whose command line merely contains it.
SWEEP_PROCESS = rf"^([^ ]+ ){{0,2}}{SWEEP_ON_HOST.replace('.', '[.]')}( |$)"


def stop_remote_command() -> str:
    """Shell line for every host: SIGINT to the `scaling-sweep` that `run` started there (its
    command line names .venv/bin/scaling-sweep, its working folder is ~/scaling). The sweep passes
    the signal to its run, which saves a checkpoint and exits 130; the sweep starts nothing more
    and exits 130 (`interrupted`, resumable: `run` again resumes). Nothing is deleted."""
    return (f'{_checkout_step()} && here=$(pwd -P) && stopped="" && '
            f"for pid in $(pgrep -f {shlex.quote(SWEEP_PROCESS)}); do "
            '[ "$(readlink /proc/$pid/cwd)" = "$here" ] && kill -INT "$pid" && '
            'stopped="$stopped $pid"; done; '
            'if [ -n "$stopped" ]; then echo "$(hostname): sent SIGINT to scaling-sweep '
            '(pid$stopped): its run saves a checkpoint and stops; scaling-tpu run resumes"; '
            f'else echo "$(hostname): no scaling-sweep running from ~/{REMOTE_CHECKOUT}"; fi')


PYTHON_CHECK = ('import sys; assert sys.version_info >= (3, 11), sys.version; '
                'print("python", sys.version.split()[0], "in", sys.prefix)')


def run_remote_command(s: Settings) -> str:
    """Shell line for every host: the sweep, from the environment `setup` made, with its exit code
    (75 preempted, 130 interrupted) passed back.

    Runs go one at a time (`--processes 1`): each is one program spanning every host of the slice.
    The line says explicitly that the run is multi-host (`SCALING_DISTRIBUTED=1`: JAX's own TPU
    cluster detection connects the hosts) and which host this is (`SCALING_PROCESS_ID`, from the
    metadata server), since an ssh shell need not carry the TPU_* variables. The sweep config's
    overrides follow as `--config.FIELD=VALUE`, each quoted for the host's shell.
    """
    sweep = [SWEEP_ON_HOST, "--config", tpu_settings.sweep_config_on_host(s), "--processes", "1"]
    # Each step fails with its own line: `a && b || c` would run c when a fails.
    checkout = _checkout_step()
    worker = (f"{{ SCALING_PROCESS_ID=$(curl -sf -H Metadata-Flavor:Google {WORKER_NUMBER_URL}) || "
              "{ echo 'cannot read the worker number of this host from the TPU metadata server' >&2; "
              "exit 1; }; }")
    return (f"{checkout} && {worker} && "
            f"{{ [ ! -f {WANDB_ENV_FILE} ] || . ./{WANDB_ENV_FILE}; }} && "
            f"export SCALING_DISTRIBUTED=1 SCALING_PROCESS_ID && "
            f"{shlex.join(sweep)} --workdir {host_path(s.workdir)}"
            + "".join(f" {shlex.quote('--config.' + override)}" for override in s.sweep_overrides))


# ----------------------------------------------------------------------------------------------
# The steps


def log(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


DESCRIBE_ATTEMPTS = 5
DESCRIBE_ROUNDS = 3  # rounds of failed attempts `create` waits through before it gives up


def slice_state(s: Settings) -> str:
    """The queued resource's state, or "" when it does not exist (gcloud answers NOT_FOUND:
    deleted, or not created yet). Any other failure to describe it (network, rate limit, expired
    credentials) is retried, then raised: a slice that may still be running is never taken for
    lost."""
    for attempt in range(1, DESCRIBE_ATTEMPTS + 1):
        result = execute(describe_command(s), dry_run=False, capture=True)
        if result.returncode == 0:
            return result.stdout.strip()
        if "NOT_FOUND" in result.stderr:
            return ""
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        log(f"could not describe {s.name} ({why}); attempt {attempt} of {DESCRIBE_ATTEMPTS}")
        if attempt < DESCRIBE_ATTEMPTS:
            time.sleep(s.poll_interval)
    raise CommandFailed(describe_command(s), result.returncode, "could not describe the slice")


def slice_accelerator_type(s: Settings, dry_run: bool) -> str:
    """The accelerator type of the slice `run` runs on, as gcloud describes its TPU node; the
    default type, said in a line, in a dry run or when gcloud does not say."""
    default = tpu_settings.default_settings().accelerator_type
    assumed = (f"checking the runs against the default accelerator type {default}; "
               "--accelerator-type must be the slice's")
    answer = execute(accelerator_type_command(s), dry_run=dry_run, capture=True)
    if dry_run:
        log(f"{assumed} (a dry run does not ask gcloud for it)")
        return default
    accelerator_type = answer.stdout.strip()
    if answer.returncode != 0 or not accelerator_type:
        why = (answer.stderr.strip().splitlines() or [f"exit code {answer.returncode}"])[-1]
        log(f"{assumed} (gcloud did not say slice {tpu_settings.node_name(s)}'s: {why})")
        return default
    return accelerator_type


def failure_reason(s: Settings) -> str:
    """Why the FAILED queued resource failed, as gcloud says (read before it is deleted)."""
    result = execute(failure_command(s), dry_run=False, capture=True)
    return (result.stdout.strip() if result.returncode == 0 else "") or "no reason given"


def slice_failed(s: Settings, reason: str, deleted: bool) -> CommandFailed:
    """The error for a queued resource that ended FAILED: its request could not be met."""
    then = "deleted it; " if deleted else ""
    return CommandFailed(describe_command(s), 1,
                         message=f"queued resource {s.name} is FAILED: {reason} ({then}not "
                                 "retried: the same request would fail again)")


def create(s: Settings, dry_run: bool) -> str:
    """Requests the slice and polls until it is ACTIVE, lost or FAILED; returns that final state."""
    requested = execute(create_command(s), dry_run=dry_run, capture=True)
    sys.stdout.write(requested.stdout)
    sys.stderr.write(requested.stderr)
    if requested.returncode != 0:
        if "ALREADY_EXISTS" in requested.stderr:
            raise CommandFailed(create_command(s), requested.returncode, message=(
                f"queued resource {s.name} already exists (a slice left up): `{PROGRAM} status` "
                f"shows it, `{PROGRAM} run` runs the sweep on it, `{PROGRAM} delete` deletes it"))
        raise CommandFailed(create_command(s), requested.returncode, "gcloud's error above")
    if dry_run:
        execute(describe_command(s), dry_run=True)
        return ACTIVE
    failed_rounds = 0
    while True:
        try:
            state = slice_state(s)
            failed_rounds = 0
        except CommandFailed as error:  # a queued resource can wait hours: keep asking, a while
            failed_rounds += 1
            if failed_rounds == DESCRIBE_ROUNDS:
                raise CommandFailed(describe_command(s), error.returncode, message=(
                    f"could not describe queued resource {s.name} in {DESCRIBE_ROUNDS} rounds "
                    f"of {DESCRIBE_ATTEMPTS} attempts (gcloud's errors above: credentials to "
                    f"renew with `gcloud auth login`?); it may exist: `{PROGRAM} status` shows "
                    f"it, `{PROGRAM} delete` deletes it")) from None
            log(f"{error}; still waiting")
            state = "unknown"
        if state in (ACTIVE, FAILED) or state in LOST_STATES:
            return state
        log(f"queued resource {s.name} is {state or 'not visible yet'}; "
            f"checking again in {s.poll_interval:g}s")
        time.sleep(s.poll_interval)


def copied_files(source: str) -> set[str]:
    """The files of `source` that `stage_checkout` copies, relative to it: those git tracks or
    would track (not ignored)."""
    listing = subprocess.run(
        ["git", "-C", source, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=False, capture_output=True)
    if listing.returncode != 0:
        raise UsageError("--source", source, "a folder inside a git checkout (its files are copied)")
    return set(listing.stdout.decode().split("\0")) - {""}


def stage_checkout(source: str, staging_root: str) -> str:
    """Copies the files git tracks or would track (not ignored) in `source` to `staging_root`/scaling.

    Returns the copy's path. Ignored files (virtual environments, run outputs) stay behind.
    """
    checkout = os.path.join(staging_root, REMOTE_CHECKOUT)
    for relative in sorted(copied_files(source)):
        origin = os.path.join(source, relative)
        if not os.path.isfile(origin):
            continue  # deleted in the working tree but still in git's index
        destination = os.path.join(checkout, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(origin, destination)
    return checkout


def wandb_environment_file(environment: dict | None = None) -> str:
    """The shell lines of `WANDB_ENV_FILE`: `export` of each W&B setting set here, the API key
    (`WANDB_API_KEY` or `wandb login`'s) among them; "" when there is none."""
    environment = os.environ if environment is None else environment
    values = {name: environment[name] for name in WANDB_FORWARDED if environment.get(name)}
    key = wandb_api_key(environment)
    if key:
        values["WANDB_API_KEY"] = key
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def stage_wandb_environment(checkout: str) -> None:
    """Writes `WANDB_ENV_FILE` into the staged checkout, readable by its owner only; an empty
    one when nothing is set here, so a stale copy on the hosts is replaced."""
    path = os.path.join(checkout, WANDB_ENV_FILE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(wandb_environment_file())


def setup(s: Settings, dry_run: bool) -> subprocess.CompletedProcess:
    """Copies the checkout to every host and installs it there.

    Returns the result of the first step that failed, or of the last step when all succeeded.
    """
    if dry_run:
        staged = os.path.join(tempfile.gettempdir(), f"{PROGRAM}-{s.name}", REMOTE_CHECKOUT)
        execute(scp_command(s, staged), dry_run=True)
        return execute(ssh_command(s, setup_remote_command(s)), dry_run=True)
    with tempfile.TemporaryDirectory(prefix=f"{PROGRAM}-") as staging_root:
        staged = stage_checkout(s.source, staging_root)
        stage_wandb_environment(staged)
        copied = execute(scp_command(s, staged), dry_run=False)
    if copied.returncode != 0:
        return copied
    return execute(ssh_command(s, setup_remote_command(s)), dry_run=False)


def run(s: Settings, dry_run: bool) -> int:
    """Runs the sweep on every host; returns the remote exit code (75: preempted, rerun to resume)."""
    if not s.bucket:
        log(f"warning: no --bucket, so the workdir {s.workdir} is on the hosts' boot disks; "
            "its checkpoints are lost if the slice is recreated")
    elif not tpu_settings.is_inside(s.workdir, s.mount_dir):
        log(f"warning: the workdir {s.workdir} is not under --mount-dir={s.mount_dir!r}, where the "
            "bucket is mounted, so its checkpoints are lost if the slice is recreated")
    return execute(ssh_command(s, run_remote_command(s)), dry_run=dry_run).returncode


def delete(s: Settings, dry_run: bool) -> None:
    """Deletes the queued resource and its TPU node; one that no longer exists (gcloud answers
    NOT_FOUND: a preemption can take it away) is already what a delete asks for."""
    result = execute(delete_command(s), dry_run=dry_run, capture=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0 and "NOT_FOUND" not in result.stderr:
        raise CommandFailed(delete_command(s), result.returncode)
    if result.returncode != 0:
        log(f"queued resource {s.name} no longer exists")


def status(s: Settings, dry_run: bool) -> int:
    """Prints the queued resource's state and, when it is ACTIVE, the sweep's progress from worker
    0; returns the exit code of the ssh (0 when the slice is not ACTIVE: nothing to ask)."""
    progress = ssh_command(s, status_remote_command(s), worker="0")
    if dry_run:
        execute(describe_command(s), dry_run=True)
        return execute(progress, dry_run=True).returncode
    result = execute(describe_command(s), dry_run=False, capture=True)
    if result.returncode != 0 and "NOT_FOUND" not in result.stderr:
        sys.stderr.write(result.stderr)
        raise CommandFailed(describe_command(s), result.returncode, "could not describe the slice")
    state = result.stdout.strip() if result.returncode == 0 else ""
    print(f"queued resource {s.name}: {state or 'does not exist'}", flush=True)
    if state != ACTIVE:
        return 0
    return execute(progress, dry_run=False).returncode


def _lost(s: Settings, dry_run: bool) -> bool:
    # A failed ssh/scp means a preemption when the slice is no longer ACTIVE (or no longer exists).
    return not dry_run and slice_state(s) != ACTIVE


def _attempt(s: Settings, dry_run: bool) -> bool:
    """One create → setup → run. True when the sweep finished, False when the slice was preempted."""
    state = create(s, dry_run)
    if state == FAILED:
        reason = failure_reason(s)
        delete(s, dry_run)  # frees the name for the next `up`
        raise slice_failed(s, reason, deleted=True)
    if state != ACTIVE:
        log(f"queued resource {s.name} is {state}")
        return False
    installed = setup(s, dry_run)
    if installed.returncode != 0:
        if _lost(s, dry_run):
            return False
        raise SetupFailed(installed.args, installed.returncode, "setup failed", slice_up=True)
    code = run(s, dry_run)
    if code == 0:
        return True
    if code == EXIT_INTERRUPTED:
        raise SweepStopped()
    if code == PREEMPTED_EXIT_CODE or _lost(s, dry_run):
        return False
    raise CommandFailed(ssh_command(s, run_remote_command(s)), code, "the sweep failed",
                        slice_up=True)


class SetupFailed(CommandFailed):
    """`setup` failed on a slice that is up: no sweep has run there."""


class SweepStopped(Exception):
    """The sweep exited 130: stopped on request (`scaling-tpu stop`, or Ctrl-C on a host)."""


def up(s: Settings, dry_run: bool) -> int:
    """Creates the slice, sets it up and runs the sweep, recreating the slice after each preemption.

    Returns 0 once the sweep has finished, 75 after `max_retries` recreations were not enough
    (the checkpoints stay in the workdir; `up` again resumes), or 130 when the sweep was stopped
    (the slice stays up).
    """
    recreations = 0
    left_up = (f"slice {s.name} is still up: `{PROGRAM} logs` and `{PROGRAM} status` show the "
               f"sweep, `{PROGRAM} run` runs it again, `{PROGRAM} delete` deletes the slice")
    try:
        while not _attempt(s, dry_run):
            log(f"slice {s.name} was preempted; deleting it")
            delete(s, dry_run)
            if recreations == s.max_retries:
                log(f"gave up after {recreations} recreations; run `{PROGRAM} up` again to resume "
                    f"from the checkpoints in {s.workdir}")
                return PREEMPTED_EXIT_CODE
            recreations += 1
            log(f"recreating the slice (retry {recreations} of {s.max_retries})")
    except SweepStopped:
        log(f"the sweep was stopped; slice {s.name} stays up: `{PROGRAM} run` resumes the sweep "
            f"on it, `{PROGRAM} delete` deletes it")
        return EXIT_INTERRUPTED
    except CommandFailed as error:
        if isinstance(error, SetupFailed):
            raise CommandFailed((), error.returncode, message=(
                f"{error}; slice {s.name} is still up: `{PROGRAM} setup` sets it up again, then "
                f"`{PROGRAM} run` runs the sweep; `{PROGRAM} delete` deletes the slice")) from None
        if error.slice_up:
            raise CommandFailed((), error.returncode, message=f"{error}; {left_up}") from None
        raise
    if not s.delete_when_done:
        log(f"the sweep finished; slice {s.name} stays up (--no-delete-when-done): "
            f"`{PROGRAM} delete` deletes it")
        return 0
    try:
        delete(s, dry_run)
    except CommandFailed as error:
        raise CommandFailed((), error.returncode, message=(
            f"the sweep finished, and deleting slice {s.name} failed ({error}): it is still up; "
            f"`{PROGRAM} delete` deletes it")) from None
    return 0


# ----------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("--config", help="settings file whose get_config() returns the settings")
    common.add_argument("--dry-run", action="store_true",
                        help="print every gcloud command, one per line, and run none")
    common.add_argument("--project")
    common.add_argument("--zone")
    common.add_argument("--name", help="queued-resource name")
    common.add_argument("--node-id", help="TPU node name (default: --name)")
    common.add_argument("--accelerator-type", help="e.g. v4-8, v5litepod-16, v5p-128, v6e-8")
    common.add_argument("--runtime-version", help="TPU VM image, e.g. v2-alpha-tpuv5-lite")
    common.add_argument("--spot", action=argparse.BooleanOptionalAction, default=None)
    common.add_argument("--source", help="checkout to copy to the hosts (default: .)")
    common.add_argument("--sweep-config", help="sweep config file inside --source, FILE[:VARIANT]")
    common.add_argument("--workdir", help="sweep workdir on the hosts, e.g. ~/results/sweeps/demo")
    common.add_argument("--bucket", help="GCS bucket to mount with gcsfuse at --mount-dir")
    common.add_argument("--mount-dir", help="where the bucket is mounted (default: ~/results)")
    common.add_argument("--max-retries", type=int, help="slice recreations `up` may make")
    common.add_argument("--poll-interval", type=float, help="seconds between state checks")
    common.add_argument("--delete-when-done", action=argparse.BooleanOptionalAction, default=None,
                        help="`up` deletes the slice after the sweep (default: yes)")
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n")[0],
                            epilog="`run` and `up` take --config.FIELD=VALUE options after "
                                   "these as overrides of --sweep-config's fields (e.g. "
                                   "--config.overrides.optim.grad_clip=0.5), applied after the "
                                   "settings file's sweep_overrides (the later one wins).")
    subcommands = parser.add_subparsers(dest="subcommand", required=True)
    for name, summary in (("create", "request the slice and wait until it is ACTIVE"),
                          ("setup", "copy the checkout to every host and install it"),
                          ("run", "run the sweep on every host"),
                          ("up", "create, set up and run; recreate the slice after preemptions"),
                          ("delete", "delete the slice"),
                          ("status", "the slice's state and the sweep's runs by status"),
                          ("logs", "the end of a run's train.log on worker 0"),
                          ("stop", "SIGINT the sweep on every host: runs save and stop, "
                                   "`run` resumes")):
        subparser = subcommands.add_parser(name, parents=[common], help=summary)
        if name == "logs":
            subparser.add_argument("--run", help="the run whose train.log to show "
                                                 "(default: the most recently written)")
            subparser.add_argument("--lines", type=int, help="how many last lines (default: 50)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings: defaults, then the --config file, then the flags given."""
    if args.sweep_overrides and args.subcommand not in ("run", "up"):
        # A settings file's own sweep_overrides are for its `run` and `up`; the others leave them.
        field, _, value = args.sweep_overrides[0].partition("=")
        raise UsageError(f"--config.{field}", value,
                         "given to `run` or `up` (it overrides a field of the sweep config)")
    settings = tpu_settings.default_settings()
    loaded = {}
    if args.config:
        loaded = tpu_settings.load_settings_file(args.config).to_dict()
        unknown = [field for field in loaded if field not in settings]
        if unknown:  # a sweep or run config given as the settings file
            raise UsageError("--config", args.config, (
                f"a TPU settings file (fields of launch.tpu_settings.default_settings()); this "
                f"one sets {unknown[0]!r}, which is not one of them (a sweep config goes to "
                "--sweep-config)"))
        settings = tpu_settings.merge(settings, loaded, args.config)
    given = {key: getattr(args, key) for key in settings.keys() if hasattr(args, key)}
    if args.sweep_overrides:  # after the settings file's: of two for one field, the later wins
        given["sweep_overrides"] = [*settings.sweep_overrides, *args.sweep_overrides]
    settings = tpu_settings.merge(settings, given)
    tpu_settings.validate(settings, args.subcommand)
    if args.subcommand == "run" and args.accelerator_type is None and \
            "accelerator_type" not in loaded:
        settings.accelerator_type = ""  # the slice's, which `run` asks gcloud for
    return settings


def check_source(s: Settings) -> None:
    """UsageError unless --source is inside a git checkout (`stage_checkout` copies the files git
    tracks or would track): checked before any gcloud call, since `setup` runs on a slice that is
    already up."""
    inside = subprocess.run(["git", "-C", s.source, "rev-parse", "--is-inside-work-tree"],
                            check=False, capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise UsageError("--source", s.source, "a folder inside a git checkout (its files are "
                                               "copied)")


def check_copied(s: Settings, option: str, path: str) -> None:
    """A config the hosts read from the copy of --source must be a file the copy takes: inside
    --source, and one git does not ignore (`stage_checkout`). UsageError otherwise, before any
    slice time is spent."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(s.source))
    if relative.startswith(os.pardir):
        raise UsageError(option, path, f"a file inside --source={s.source!r}, which is all the "
                                       "hosts get of this machine's files")
    ignored = subprocess.run(["git", "-C", s.source, "check-ignore", "-q", relative],
                             check=False, capture_output=True).returncode == 0
    if ignored:
        raise UsageError(option, path, f"a file the copy of --source takes (git ignores "
                                       f"{relative}, so the hosts would not get it)")


def on_hosts_only(s: Settings, path: str) -> bool:
    """Whether a data path names what only the hosts have: an absolute path or one under ~ (the
    hosts' own, not this machine's), or one under --mount-dir (the bucket). A relative path is
    in the hosts' copy of --source."""
    return path.startswith(("/", "~")) or tpu_settings.is_inside(path, s.mount_dir)


def data_paths(run) -> list[tuple[str, str, list[str]]]:
    """(field, value, its paths) for each data path field the run reads: data.spm_model, and
    data.files's entries (files, folders or patterns) for the datasets that read it."""
    from scaling.data import text_files

    data = run.config.data
    fields = [("spm_model", data.spm_model, [data.spm_model] if data.spm_model else [])]
    if data.dataset in ("text_files", "text_pairs"):
        fields.append(("files", data.files, text_files.parse_file_list(data.files or "")))
    return fields


def check_data_copied(s: Settings, runs: list) -> None:
    """Each relative data path of each run (an entry of data.files: a file, folder or pattern;
    data.spm_model) names files the copy of --source takes, as the hosts read them from ~/scaling.
    ConfigError naming the run and the field otherwise. Paths only the hosts have go unchecked."""
    from scaling.data import text_files

    copied = None
    source = os.path.abspath(s.source)
    for run in runs:
        if run.config is None:
            continue
        for field, value, entries in data_paths(run):
            for entry in entries:
                if on_hosts_only(s, entry):
                    continue
                relative = os.path.relpath(os.path.abspath(entry), source)
                if relative != os.path.normpath(entry):  # the hosts read it from their ~/scaling
                    raise ConfigError(f"data.{field}", value, (
                        f"paths inside --source={s.source!r}, relative to it, as the hosts read "
                        f"them in their copy of it ({entry} is {relative} from there)")
                    ).in_run(run.name)
                try:
                    named = ([(entry, pathlib.Path(entry))] if field == "spm_model"
                             else text_files.expand_files([entry]))
                except OSError as error:  # a folder that cannot be listed, a file not read
                    raise text_files.cannot_read(value, error).in_run(run.name) from None
                copied = copied_files(s.source) if copied is None else copied
                for _, path in named:
                    file = os.path.relpath(os.path.abspath(path), source)
                    if file.replace(os.sep, "/") not in copied:
                        raise ConfigError(f"data.{field}", value, (
                            f"files the copy of --source takes (git ignores {file}, so the hosts "
                            "would not get it)")).in_run(run.name)


def check_sweep(s: Settings) -> int:
    """Plans the sweep here and validates every run's full config as `scaling-train` will;
    raises ConfigError naming the run and the field. Returns the number of runs."""
    # Imports JAX: only for the subcommands that start a sweep.
    from launch.sweep import (check_meshes, estimated_pace, held_out_batches, load_plan,
                              plan_totals, runs_dtype)
    from scaling import hardware
    from scaling.data.validation import paths_checked_elsewhere

    try:
        # Data paths only the hosts have are theirs to check; relative ones are the copy's.
        with paths_checked_elsewhere(lambda path: on_hosts_only(s, path)):
            sweep, base_config, runs = load_plan(s.sweep_config, list(s.sweep_overrides))
    except ConfigError as error:  # the sweep file itself: here --config is the settings file
        raise error.as_option(base_config_or("--sweep-config", error, s.sweep_config)) from None
    check_copied(s, "--sweep-config", config_file(s.sweep_config))
    if os.path.isabs(sweep.base_config):  # the hosts have the copy elsewhere: ~/scaling
        raise UsageError("base_config", sweep.base_config,
                         "a path relative to the checkout or to the sweep file's folders, as the "
                         "hosts resolve it in their copy of --source")
    check_copied(s, "base_config", config_file(base_config))
    check_data_copied(s, runs)
    try:
        devices = hardware.accelerator_devices(s.accelerator_type)
    except ValueError:
        devices = None  # a type not known here: its devices are not either
    if devices:  # each run spans the slice: one process per host
        check_meshes(runs, devices, processes=hardware.accelerator_hosts(s.accelerator_type))
    log(f"{s.sweep_config}: {len(runs)} planned runs, every config valid"
        + (f" on the {devices} devices of {s.accelerator_type}" if devices else ""))
    try:
        here = [run for run in runs if run.config is not None and not any(
            on_hosts_only(s, path) for _, _, paths in data_paths(run) for path in paths)
        ]  # data only the hosts have is not counted here
        log(plan_totals(runs, estimated_pace(s.accelerator_type, runs_dtype(runs)),
                        split_batches=held_out_batches(here)))
    except ValueError:
        pass  # a type without a published peak: no estimate
    return len(runs)


def _dispatch(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    if args.subcommand in ("setup", "up"):
        check_source(s)
    if args.subcommand == "run" and not s.accelerator_type:
        s.accelerator_type = slice_accelerator_type(s, args.dry_run)
    if args.subcommand in ("run", "up"):
        check_sweep(s)  # before any gcloud call that costs: a bad sweep must not cost slice time
    if args.subcommand in ("create", "up"):
        interrupts.say_when_interrupted(
            f"{PROGRAM}: interrupted; queued resource {s.name} may exist: `{PROGRAM} status` "
            f"shows it, `{PROGRAM} delete` deletes it")
    if args.subcommand == "create":
        state = create(s, args.dry_run)
        if state == FAILED:
            raise slice_failed(s, failure_reason(s), deleted=False)
        if state != ACTIVE:
            raise CommandFailed(describe_command(s), 1, message=(
                f"queued resource {s.name} is {state}: preempted or taken back before it could "
                f"be used; `{PROGRAM} delete` deletes it, then `{PROGRAM} create` asks again"))
        return 0
    if args.subcommand == "setup":
        installed = setup(s, args.dry_run)
        if installed.returncode != 0:
            raise CommandFailed(installed.args, installed.returncode, "setup failed")
        return 0
    if args.subcommand == "run":
        code = run(s, args.dry_run)
        if code not in (0, *RUN_ENDINGS) and _lost(s, args.dry_run):
            # ssh's 255 when the slice went away under it: a preemption, not the sweep's failure.
            log(f"the connection ended (exit code {code}) and slice {s.name} is no longer "
                f"ACTIVE: preempted or deleted; `{PROGRAM} up` recreates it and resumes the sweep "
                "from its checkpoints")
            return PREEMPTED_EXIT_CODE
        if code:
            log(RUN_ENDINGS.get(code, f"the sweep failed (exit code {code}): `{PROGRAM} logs` "
                                      f"shows the end of a run's log"))
        return code
    if args.subcommand == "up":
        return up(s, args.dry_run)
    if args.subcommand == "status":
        return _reported(status(s, args.dry_run), "asking worker 0 for the sweep's progress")
    if args.subcommand == "logs":
        return _reported(execute(ssh_command(s, logs_remote_command(s), worker="0"),
                                 dry_run=args.dry_run).returncode, "reading the log on worker 0")
    if args.subcommand == "stop":
        return _reported(execute(ssh_command(s, stop_remote_command()),
                                 dry_run=args.dry_run).returncode, "stopping the sweep")
    delete(s, args.dry_run)
    return 0


# What `run` says of the sweep's exit codes other than 0.
RUN_ENDINGS = {
    PREEMPTED_EXIT_CODE: f"the sweep stopped on a preemption (exit code 75) with its checkpoints "
                         f"saved: `{PROGRAM} run` resumes it (`{PROGRAM} up` also recreates a lost "
                         f"slice)",
    EXIT_INTERRUPTED: f"the sweep was stopped (exit code 130): `{PROGRAM} run` resumes it",
}


def _reported(code: int, doing: str) -> int:
    """`code`, said in a line when it is not 0: the ssh (or what it ran) failed."""
    if code:
        log(f"{doing} failed: ssh exited with code {code} (its error above)")
    return code


def main(argv: list[str] | None = None) -> int:
    from scaling.overrides import split_argv

    rest, overrides = split_argv(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(rest)
    args.sweep_overrides = overrides or None  # added to the settings file's, if any
    return exit_code_of(PROGRAM, lambda: _dispatch(args))


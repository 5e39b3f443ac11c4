"""`scaling-tpu` against a fake `gcloud` first on PATH: the commands it runs, in order, and its retries."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import run_in_process

from launch import tpu, tpu_settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The fake appends {"argv": [...]} to a log per call (plus the files under a `--recurse` folder) and
# answers from a plan: the first rule whose `match` occurs in its command line gives the response;
# a rule's responses are used in order and its last one repeats.
FAKE_GCLOUD = textwrap.dedent("""\
    #!{python} -S
    import json, os, sys
    argv = sys.argv[1:]
    entry = {{"argv": argv}}
    if "--recurse" in argv:
        root = argv[argv.index("--recurse") + 1]
        entry["files"] = sorted(os.path.relpath(os.path.join(folder, name), root)
                                for folder, _, names in os.walk(root) for name in names)
        wandb_env = os.path.join(root, "wandb.env")
        if os.path.exists(wandb_env):
            entry["wandb_env"] = open(wandb_env).read()
            entry["wandb_env_mode"] = oct(os.stat(wandb_env).st_mode & 0o777)
    with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")
    with open(os.environ["FAKE_GCLOUD_PLAN"]) as plan_file:
        plan = json.load(plan_file)
    line = " ".join(argv)
    for rule in plan:
        if rule["match"] in line:
            responses = rule["responses"]
            response = responses.pop(0) if len(responses) > 1 else responses[0]
            with open(os.environ["FAKE_GCLOUD_PLAN"], "w") as plan_file:
                json.dump(plan, plan_file)
            sys.stdout.write(response.get("stdout", ""))
            sys.stderr.write(response.get("stderr", ""))
            sys.exit(response.get("exit", 0))
    """)

ACTIVE = {"match": "queued-resources describe", "responses": [{"stdout": "ACTIVE\n"}]}
# A real sweep config (the launcher validates every planned run before any gcloud call): one size
# of the demo family on the demo run config.
TINY_SWEEP = textwrap.dedent("""\
    from launch.plans import default_sweep

    def get_config():
        sweep = default_sweep()
        sweep.name = "tiny"
        sweep.base_config = "configs/demo.py:runlocal"
        sweep.sizes = "d32-L1"
        return sweep
    """)
WHERE = ["--zone", "us-west4-a", "--project", "proj"]


@pytest.fixture
def cloud(tmp_path, monkeypatch, capfd):
    """A fake gcloud on PATH and a small checkout to launch from; `cloud.launch(*args, plan=[...])`
    runs `scaling-tpu` in this process (its gcloud calls are real subprocesses) and returns its
    exit code and what it and they printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)

    source = tmp_path / "checkout"
    (source / "configs" / "sweeps").mkdir(parents=True)
    (source / "configs" / "sweeps" / "tiny.py").write_text(TINY_SWEEP)
    shutil.copy(os.path.join(REPO, "configs", "demo.py"), source / "configs" / "demo.py")
    (source / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (source / ".gitignore").write_text(".venv/\n")
    (source / ".venv").mkdir()
    (source / ".venv" / "huge.bin").write_text("not for the hosts")
    subprocess.run(["git", "init", "-q", str(source)], check=True)

    log = tmp_path / "gcloud.jsonl"
    plan_path = tmp_path / "plan.json"

    class Cloud:
        checkout = source

        @staticmethod
        def launch(*args, plan=(), wandb=None):
            plan_path.write_text(json.dumps([*plan, ACTIVE]))
            with monkeypatch.context() as patch:
                # W&B's settings are this machine's: none unless the test gives them.
                for name in [name for name in os.environ if name.startswith("WANDB_")]:
                    patch.delenv(name)
                for name, value in {**(wandb or {}), "NETRC": str(tmp_path / "netrc"),
                                    "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                                    "FAKE_GCLOUD_LOG": str(log),
                                    "FAKE_GCLOUD_PLAN": str(plan_path)}.items():
                    patch.setenv(name, value)
                patch.chdir(source)
                return run_in_process(tpu.main, args, capfd, "scaling-tpu")

        @staticmethod
        def calls():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Cloud


def up_args(*extra):
    return ["up", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
            "--accelerator-type", "v5litepod-16", "--runtime-version", "v2-alpha-tpuv5-lite",
            "--spot", "--sweep-config", "configs/sweeps/tiny.py", "--bucket", "gs://my-results",
            "--workdir", "~/results/sweep", "--poll-interval", "0.01", *extra]


def kind(call):
    """A short name for a recorded call: create, describe, delete, scp, setup or sweep."""
    argv = call["argv"]
    if argv[:3] == ["compute", "tpus", "queued-resources"]:
        return argv[3]
    if argv[:4] == ["compute", "tpus", "tpu-vm", "scp"]:
        return "scp"
    if argv[:5] == ["compute", "tpus", "tpu-vm", "describe", argv[4]]:
        return "type"
    if argv[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
        return "sweep" if "scaling-sweep" in argv[-1] else "setup"
    return "other"


ONE_ATTEMPT = ["create", "describe", "scp", "setup", "sweep"]


def test_up_runs_the_documented_commands_in_order(cloud):
    result = cloud.launch(*up_args())
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert [kind(c) for c in calls] == ONE_ATTEMPT + ["delete"]
    create, describe, scp, setup, sweep, delete = (c["argv"] for c in calls)
    assert create == ["compute", "tpus", "queued-resources", "create", "qr", "--node-id", "qr",
                      "--accelerator-type", "v5litepod-16", "--runtime-version",
                      "v2-alpha-tpuv5-lite", *WHERE, "--spot"]
    assert describe == ["compute", "tpus", "queued-resources", "describe", "qr", *WHERE,
                        "--format=value(state.state)"]
    assert scp[4:6] == ["--recurse", scp[5]] and os.path.basename(scp[5]) == "scaling"
    assert scp[6:] == ["qr:~/", "--worker=all", *WHERE]
    assert setup[4:6 + len(WHERE)] == ["qr", "--worker=all", *WHERE]
    assert setup[-2] == "--command"
    # Stock images ship Python 3.10: a Python 3.11 environment made by uv, the project and JAX
    # for TPU installed into it, its version checked.
    # After mounting the bucket (test_setup_mounts_the_bucket_with_gcsfuse):
    steps = setup[-1].split(" && ")
    assert steps[steps.index("cd ~/scaling"):] == [
        "cd ~/scaling", 'export PATH="$HOME/.local/bin:$PATH"', tpu._install_uv(),
        "uv venv --allow-existing --python 3.11 .venv",
        "uv pip install --python .venv/bin/python --quiet -e . 'jax[tpu]==0.10.2'",
        ".venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11), sys.version; "
        'print("python", sys.version.split()[0], "in", sys.prefix)\'']
    assert "gcsfuse" in setup[-1][:setup[-1].index("cd ~/scaling")]
    assert sweep[4:-1] == ["qr", "--worker=all", *WHERE, "--command"]
    # Run from that environment; multi-host said explicitly, the worker number from the metadata
    # server (an ssh shell need not carry TPU_WORKER_ID).
    assert sweep[-1].startswith("{ cd ~/scaling 2>/dev/null || ")
    assert (" && { SCALING_PROCESS_ID=$(curl -sf -H Metadata-Flavor:Google "
            "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
            "agent-worker-number) || ") in sweep[-1]
    assert sweep[-1].endswith(" && { [ ! -f wandb.env ] || . ./wandb.env; } && "
                              "export SCALING_DISTRIBUTED=1 SCALING_PROCESS_ID && "
                              ".venv/bin/scaling-sweep --config configs/sweeps/tiny.py "
                              "--processes 1 --workdir \"$HOME\"/results/sweep")
    assert delete == ["compute", "tpus", "queued-resources", "delete", "qr", *WHERE,
                      "--force", "--quiet"]


@pytest.mark.parametrize("checkout, worker, expected", [
    (False, "0", "no ~/scaling on this host: run `scaling-tpu setup` first"),
    (True, None, "cannot read the worker number of this host from the TPU metadata server"),
    (True, "3", "sweep on worker 3, distributed 1: --config configs/sweeps/tiny.py --processes 1"),
])
def test_the_hosts_run_line_says_which_step_failed(cloud, tmp_path, checkout, worker, expected):
    # Run on a host without the checkout (`run` before `setup`), it blamed the metadata server.
    result = cloud.launch(*up_args())
    assert result.returncode == 0, result.stderr
    line = next(c for c in cloud.calls() if kind(c) == "sweep")["argv"][-1]
    home, bin_dir = tmp_path / "host" / "home", tmp_path / "host" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "curl").write_text("#!/bin/sh\n" + (f"echo {worker}\n" if worker else "exit 22\n"))
    if checkout:
        sweep = home / "scaling" / ".venv" / "bin" / "scaling-sweep"
        sweep.parent.mkdir(parents=True)
        sweep.write_text('#!/bin/sh\necho "sweep on worker $SCALING_PROCESS_ID, distributed '
                         '$SCALING_DISTRIBUTED: $*"\nexit 75\n')
    else:
        home.mkdir()
    for script in bin_dir.glob("*"):
        script.chmod(0o755)
    for script in home.glob("scaling/.venv/bin/*"):
        script.chmod(0o755)
    ran = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert expected in ran.stdout + ran.stderr
    assert ran.returncode == (75 if worker and checkout else 1)  # the sweep's exit code passed on


# What the host's `python3` and `curl` do, as fakes that log their arguments: pip that works, pip
# refused by PEP 668 unless told --break-system-packages, pip missing, Astral's installer (a script
# for `sh` that puts uv in ~/.local/bin if told to leave the shell profiles alone), no network.
FAKE_UV = ('mkdir -p "$HOME/.local/bin" && printf "#!/bin/sh\\necho uv fake\\n" > '
           '"$HOME/.local/bin/uv" && chmod +x "$HOME/.local/bin/uv"')
HOST_TOOLS = {
    "pip": FAKE_UV,
    "pep668": ('case " $* " in *" --break-system-packages "*) ' + FAKE_UV + ';; *) '
               'echo "error: externally-managed-environment" >&2; exit 1;; esac'),
    "no_pip": 'echo "/usr/bin/python3: No module named pip" >&2; exit 1',
    "installer": ('[ "$*" = "-LsSf https://astral.sh/uv/install.sh" ] || exit 2\n'
                  "cat <<'SCRIPT'\n[ \"$UV_NO_MODIFY_PATH\" = 1 ] || exit 3\n" + FAKE_UV
                  + "\nSCRIPT"),
    "offline": 'echo "curl: (6) Could not resolve host: astral.sh" >&2; exit 6',
}
PIP = "python3 -m pip install --quiet --user uv"
PIP_BREAK = "python3 -m pip install --quiet --user --break-system-packages uv"
INSTALLER = "curl -LsSf https://astral.sh/uv/install.sh"


@pytest.mark.parametrize("installed, python3, curl, tried", [
    (True, "no_pip", "offline", []),  # from an earlier setup, in ~/.local/bin: nothing installed
    (False, "pip", "offline", [PIP]),  # Ubuntu 22.04 images
    (False, "pep668", "offline", [PIP, PIP_BREAK]),  # Ubuntu 24.04 images
    (False, "no_pip", "installer", [PIP, PIP_BREAK, INSTALLER]),
    (False, "no_pip", "offline", [PIP, PIP_BREAK, INSTALLER]),
])
def test_setup_installs_uv_on_hosts_where_pip_cannot(cloud, tmp_path, installed, python3, curl,
                                                     tried):
    # It ran `python3 -m pip install --user uv` only, which PEP 668 images and images without pip
    # refuse. Run here with bash, fakes for python3 and curl, and no other uv, python3 or curl.
    result = cloud.launch(*up_args())
    assert result.returncode == 0, result.stderr
    line = next(c for c in cloud.calls() if kind(c) == "setup")["argv"][-1]
    install = line[line.index("cd ~/scaling"):line.index(" && uv venv ")] + " && uv --version"
    home, bin_dir, log = tmp_path / "host" / "home", tmp_path / "host" / "bin", tmp_path / "tried"
    (home / "scaling").mkdir(parents=True)
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "chmod", "cat"):  # all the fakes and the installer's script need
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, behaviour in (("python3", HOST_TOOLS[python3]), ("curl", HOST_TOOLS[curl])):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(log))}\n'
                                    f'{behaviour}\n')
        (bin_dir / name).chmod(0o755)
    host_env = {"HOME": str(home), "PATH": str(bin_dir)}
    if installed:
        subprocess.run([shutil.which("sh"), "-c", FAKE_UV], env=host_env, check=True)
    ran = subprocess.run([shutil.which("bash"), "-c", install], capture_output=True, text=True,
                         timeout=60, env=host_env)
    assert (log.read_text().splitlines() if log.exists() else []) == tried
    if installed or python3 != "no_pip" or curl == "installer":
        assert (ran.returncode, ran.stdout, ran.stderr) == (0, "uv fake\n", "")
    else:  # nothing worked: one line saying so and how to install uv by hand, and no `uv` run
        assert ran.returncode == 1 and ran.stdout == ""
        assert ran.stderr.splitlines()[-1] == tpu.UV_NOT_INSTALLED
        assert "could not install uv" in ran.stderr and "install it by hand" in ran.stderr


def test_setup_copies_the_files_git_would_track_and_no_ignored_ones(cloud):
    result = cloud.launch(*up_args())
    assert result.returncode == 0, result.stderr
    scp = next(c for c in cloud.calls() if kind(c) == "scp")
    assert scp["files"] == [".gitignore", "configs/demo.py", "configs/sweeps/tiny.py",
                            "pyproject.toml", "wandb.env"]
    assert scp["wandb_env"] == ""  # no W&B key or setting here: nothing to pass on


def test_setup_passes_this_machines_wandb_key_and_settings_in_a_private_file(cloud, tmp_path):
    # The key `wandb login` saved here (no WANDB_API_KEY set), and the W&B settings set here,
    # reach the hosts in a file only its owner can read; the sweep's shell reads it. The key is
    # on no command line.
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password s3cr3t-key\n")
    result = cloud.launch(*up_args(), wandb={"WANDB_ENTITY": "my team", "WANDB_PROJECT": "ladders"})
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    scp = next(c for c in calls if kind(c) == "scp")
    assert scp["wandb_env"].splitlines() == [
        "export WANDB_ENTITY='my team'", "export WANDB_PROJECT=ladders",
        "export WANDB_API_KEY=s3cr3t-key"]
    assert scp["wandb_env_mode"] == "0o600"
    assert not any("s3cr3t" in arg for call in calls for arg in call["argv"])
    assert "s3cr3t" not in result.stderr + result.stdout
    sweep = next(c for c in calls if kind(c) == "sweep")["argv"][-1]
    assert sweep.index(". ./wandb.env") < sweep.index("scaling-sweep")


def test_setup_mounts_the_bucket_with_gcsfuse(cloud):
    result = cloud.launch(*up_args("--bucket", "gs://my-results", "--workdir", "~/results/s"))
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    setup = next(c for c in calls if kind(c) == "setup")["argv"][-1]
    # Orbax renames a checkpoint's temporary folder: refused by gcsfuse under its default limit 0.
    assert ('(mountpoint -q "$HOME"/results || gcsfuse --implicit-dirs --rename-dir-limit=200000 '
            'my-results "$HOME"/results)') in setup
    assert setup.index("gcsfuse --implicit-dirs") < setup.index("pip install")
    sweep = next(c for c in calls if kind(c) == "sweep")["argv"][-1]
    assert sweep.endswith('--workdir "$HOME"/results/s')


def test_setup_makes_a_mount_dir_outside_the_home_folder_with_sudo(cloud, tmp_path):
    # `mkdir -p /mnt/results` failed for the VM's ordinary user, and with it setup.
    result = cloud.launch(*up_args("--mount-dir", "/mnt/my results", "--workdir",
                                   "/mnt/my results/s", "--dry-run"))
    assert result.returncode == 0, result.stderr
    setup = next(line for line in result.stdout.splitlines() if "gcsfuse" in line)
    remote = shlex.split(setup)[-1]
    start = remote.index("{ mkdir")
    step = remote[start:remote.index("; }; }", start) + len("; }; }")]
    # Run with a mkdir that fails as the user's would, and a sudo that records what it is asked.
    bin_dir = tmp_path / "vm-bin"
    bin_dir.mkdir()
    (bin_dir / "mkdir").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sudo").write_text('#!/bin/sh\nprintf "%s|" "$@" >> "$SUDO_LOG"; echo >> "$SUDO_LOG"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    log = tmp_path / "sudo.log"
    ran = subprocess.run(["bash", "-c", step], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                              "SUDO_LOG": str(log)})
    assert ran.returncode == 0, ran.stderr
    assert log.read_text().splitlines() == [
        "mkdir|-p|/mnt/my results|", f"chown|{os.getuid()}:{os.getgid()}|/mnt/my results|"]


def test_a_folder_of_the_bucket_is_mounted_with_only_dir(cloud):
    result = cloud.launch(*up_args("--bucket", "gs://my-results/sweeps/2026/", "--workdir",
                                   "~/results/s"))
    assert result.returncode == 0, result.stderr
    setup = next(c for c in cloud.calls() if kind(c) == "setup")["argv"][-1]
    assert ('(mountpoint -q "$HOME"/results || gcsfuse --implicit-dirs --rename-dir-limit=200000 '
            '--only-dir sweeps/2026 my-results "$HOME"/results)') in setup


def test_a_failed_queued_resource_is_reported_with_its_reason_deleted_and_not_retried(cloud):
    plan = [{"match": "value(state.failedData.error.message)",
             "responses": [{"stdout": "Quota exceeded for TPUV5sLitepodServingPerProjectPerZone\n"}]},
            {"match": "queued-resources describe",
             "responses": [{"stdout": "PROVISIONING\n"}, {"stdout": "FAILED\n"}]}]
    result = cloud.launch(*up_args(), plan=plan)
    assert result.returncode == 1
    # The reason is read while the queued resource still exists, then it is deleted.
    assert [kind(c) for c in cloud.calls()] == ["create", "describe", "describe", "describe",
                                                "delete"]
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: queued resource qr is FAILED: Quota exceeded for "
        "TPUV5sLitepodServingPerProjectPerZone (deleted it; not retried: the same request would "
        "fail again)")
    assert "preempted" not in result.stderr


def test_create_polls_until_active(cloud):
    states = [{"stdout": "WAITING_FOR_RESOURCES\n"}, {"stdout": "PROVISIONING\n"}, {"stdout": "ACTIVE\n"}]
    result = cloud.launch(*up_args(), plan=[{"match": "queued-resources describe", "responses": states}])
    assert result.returncode == 0, result.stderr
    assert [kind(c) for c in cloud.calls()] == [
        "create", "describe", "describe", "describe", "scp", "setup", "sweep", "delete"]


def test_slice_suspended_while_provisioning_is_deleted_and_recreated(cloud):
    states = [{"stdout": "SUSPENDED\n"}, {"stdout": "ACTIVE\n"}]
    result = cloud.launch(*up_args(), plan=[{"match": "queued-resources describe", "responses": states}])
    assert result.returncode == 0, result.stderr
    assert [kind(c) for c in cloud.calls()] == (
        ["create", "describe", "delete"] + ONE_ATTEMPT + ["delete"])


def test_sweep_preempted_once_recreates_the_slice_and_reruns(cloud):
    plan = [{"match": "scaling-sweep", "responses": [{"exit": 75}, {"exit": 0}]}]
    result = cloud.launch(*up_args(), plan=plan)
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert [kind(c) for c in calls] == ONE_ATTEMPT + ["delete"] + ONE_ATTEMPT + ["delete"]
    first_sweep, second_sweep = (c["argv"] for c in calls if kind(c) == "sweep")
    assert first_sweep == second_sweep  # the same workdir, so the sweep resumes from checkpoints
    assert "retry 1 of 3" in result.stderr


NOT_FOUND = {"exit": 1, "stderr": "ERROR: (gcloud.compute.tpus.queued-resources.describe) "
                                  "NOT_FOUND: Resource 'qr' was not found\n"}


def test_ssh_failing_while_the_node_is_gone_counts_as_a_preemption(cloud):
    # Gone: describe and delete answer NOT_FOUND; the slice is recreated.
    plan = [{"match": "scaling-sweep", "responses": [{"exit": 255}, {"exit": 0}]},
            {"match": "queued-resources describe",
             "responses": [{"stdout": "ACTIVE\n"}, NOT_FOUND, {"stdout": "ACTIVE\n"}]},
            {"match": "queued-resources delete", "responses": [NOT_FOUND, {"exit": 0}]}]
    result = cloud.launch(*up_args(), plan=plan)
    assert result.returncode == 0, result.stderr
    assert [kind(c) for c in cloud.calls()] == (
        ONE_ATTEMPT + ["describe", "delete"] + ONE_ATTEMPT + ["delete"])
    assert "queued resource qr no longer exists" in result.stderr


def test_a_slice_that_cannot_be_described_for_a_moment_is_not_taken_for_lost(cloud):
    # ssh drops (255) and the next describe fails for another reason: described again, the slice
    # is ACTIVE, so the sweep failed on a live slice; nothing is deleted.
    unavailable = {"exit": 1, "stderr": "ERROR: (gcloud) UNAVAILABLE: try again\n"}
    plan = [{"match": "scaling-sweep", "responses": [{"exit": 255}]},
            {"match": "queued-resources describe",
             "responses": [{"stdout": "ACTIVE\n"}, unavailable, {"stdout": "ACTIVE\n"}]}]
    result = cloud.launch(*up_args(), plan=plan)
    assert result.returncode == 255, result.stderr
    assert [kind(c) for c in cloud.calls()] == ONE_ATTEMPT + ["describe", "describe"]
    assert "could not describe qr (ERROR: (gcloud) UNAVAILABLE: try again); attempt 1 of 5" \
        in result.stderr


LEFT_UP = ("`scaling-tpu logs` and `scaling-tpu status` show the sweep, `scaling-tpu run` runs it "
           "again, `scaling-tpu delete` deletes the slice")


@pytest.mark.parametrize("failing, returncode, calls, why, advice", [
    ("scaling-sweep", 3, ONE_ATTEMPT + ["describe"], "(the sweep failed)", LEFT_UP),
    # It gave the sweep's advice: logs and status of a sweep that never ran, `run` on a slice
    # that was not set up.
    ("uv pip install", 1, ["create", "describe", "scp", "setup", "describe"], "(setup failed)",
     "`scaling-tpu setup` sets it up again, then `scaling-tpu run` runs the sweep; "
     "`scaling-tpu delete` deletes the slice"),
])
def test_a_failure_on_a_live_slice_is_not_retried_and_says_the_slice_is_up(
        cloud, failing, returncode, calls, why, advice):
    # The line was the whole ssh command (760 to 1,700 characters) and said nothing of the slice
    # left running.
    result = cloud.launch(*up_args(), plan=[{"match": failing,
                                             "responses": [{"exit": returncode}]}])
    assert result.returncode == returncode
    assert [kind(c) for c in cloud.calls()] == calls
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("scaling-tpu: error: `gcloud compute tpus tpu-vm ssh ") and len(line) < 400
    assert line.endswith(f"...` exited with code {returncode} {why}; slice qr is still up: "
                         f"{advice}")


def test_a_slice_left_up_is_said_so_when_its_delete_fails_or_is_not_asked_for(cloud):
    failing = [{"match": "queued-resources delete",
                "responses": [{"exit": 1, "stderr": "ERROR: (gcloud) PERMISSION_DENIED\n"}]}]
    result = cloud.launch(*up_args(), plan=failing)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "scaling-tpu: error: the sweep finished, and deleting slice qr failed (`gcloud compute "
        "tpus queued-resources delete qr ")
    assert result.stderr.strip().endswith("it is still up; `scaling-tpu delete` deletes it")
    kept = cloud.launch(*up_args("--no-delete-when-done"))
    assert kept.returncode == 0
    assert kept.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: the sweep finished; slice qr stays up (--no-delete-when-done): "
        "`scaling-tpu delete` deletes it")


def test_a_queued_resource_that_exists_already_is_said_so(cloud):
    # After a stopped or failed `up` the slice stays up on purpose: the next `up` failed with
    # "`gcloud ... create ...` exited with code 1" and no word of what to do.
    exists = [{"match": "queued-resources create", "responses": [{
        "exit": 1, "stderr": "ERROR: (gcloud.compute.tpus.queued-resources.create) ALREADY_EXISTS: "
                             "Resource 'qr' already exists\n"}]}]
    result = cloud.launch(*up_args(), plan=exists)
    assert result.returncode == 1
    assert "ALREADY_EXISTS" in result.stderr  # gcloud's own error, shown
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: queued resource qr already exists (a slice left up): `scaling-tpu "
        "status` shows it, `scaling-tpu run` runs the sweep on it, `scaling-tpu delete` deletes it")
    assert [kind(c) for c in cloud.calls()] == ["create"]


def test_create_gives_up_on_a_slice_it_cannot_describe_round_after_round(cloud):
    # Expired credentials: it printed "attempt 1..5 of 5 ... still waiting" forever.
    expired = [{"match": "queued-resources describe", "responses": [{
        "exit": 1, "stderr": "ERROR: (gcloud) Reauthentication failed.\n"}]}]
    result = cloud.launch(*slice_args("create", "--poll-interval", "0.01"), plan=expired)
    assert result.returncode == 1
    assert [kind(c) for c in cloud.calls()] == ["create"] + ["describe"] * 15
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: could not describe queued resource qr in 3 rounds of 5 attempts "
        "(gcloud's errors above: credentials to renew with `gcloud auth login`?); it may exist: "
        "`scaling-tpu status` shows it, `scaling-tpu delete` deletes it")


def test_create_of_a_slice_taken_back_says_what_to_do(cloud):
    suspended = [{"match": "queued-resources describe", "responses": [{"stdout": "SUSPENDED\n"}]}]
    result = cloud.launch(*slice_args("create", "--poll-interval", "0.01"), plan=suspended)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: queued resource qr is SUSPENDED: preempted or taken back before it "
        "could be used; `scaling-tpu delete` deletes it, then `scaling-tpu create` asks again")


def test_a_sweep_stopped_on_request_leaves_the_slice_up_and_says_how_to_resume(cloud):
    # `scaling-tpu stop` makes the hosts' sweep save and exit 130: `up` called that "the sweep
    # failed", an error.
    result = cloud.launch(*up_args(), plan=[{"match": "scaling-sweep",
                                             "responses": [{"exit": 130}]}])
    assert result.returncode == 130
    assert [kind(c) for c in cloud.calls()] == ONE_ATTEMPT  # nothing described or deleted
    assert "error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: the sweep was stopped; slice qr stays up: `scaling-tpu run` resumes the "
        "sweep on it, `scaling-tpu delete` deletes it")


def test_retries_are_bounded(cloud):
    plan = [{"match": "scaling-sweep", "responses": [{"exit": 75}]}]
    result = cloud.launch(*up_args("--max-retries", "2"), plan=plan)
    assert result.returncode == 75
    kinds = [kind(c) for c in cloud.calls()]
    assert kinds == (ONE_ATTEMPT + ["delete"]) * 3
    assert "gave up after 2 recreations" in result.stderr


@pytest.mark.parametrize("code, state, returned, said", [
    (75, "ACTIVE", 75, "the sweep stopped on a preemption (exit code 75) with its checkpoints "
                       "saved: `scaling-tpu run` resumes it (`scaling-tpu up` also recreates a "
                       "lost slice)"),
    (130, "ACTIVE", 130, "the sweep was stopped (exit code 130): `scaling-tpu run` resumes it"),
    (1, "ACTIVE", 1, "the sweep failed (exit code 1): `scaling-tpu logs` shows the end of a run's "
                     "log"),
    # ssh's 255 as the slice went away: "the sweep failed (exit code 255)", before.
    (255, "PREEMPTED", 75, "the connection ended (exit code 255) and slice qr is no longer "
                           "ACTIVE: preempted or deleted; `scaling-tpu up` recreates it and "
                           "resumes the sweep from its checkpoints"),
])
def test_run_passes_the_sweeps_exit_code_back_and_says_what_it_means(cloud, code, state,
                                                                     returned, said):
    plan = [{"match": "scaling-sweep", "responses": [{"exit": code}]},
            {"match": "queued-resources describe", "responses": [{"stdout": state + "\n"}]}]
    result = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                          "--sweep-config", "configs/sweeps/tiny.py", "--workdir", "/w", plan=plan)
    assert result.returncode == returned
    # A failure is checked against the slice's state; a preemption or a stop is the sweep's own.
    # (First the slice's accelerator type, no --accelerator-type given.)
    assert [kind(c) for c in cloud.calls()] == ["type", "sweep"] + (
        ["describe"] if code in (1, 255) else [])
    assert result.stderr.strip().splitlines()[-1] == f"scaling-tpu: {said}"


@pytest.mark.parametrize("slice_type, batch, refused", [
    ("v5litepod-8", 8, False), ("v5litepod-32", 16, True)])
def test_run_checks_the_runs_against_the_slices_accelerator_type(cloud, slice_type, batch,
                                                                 refused):
    # Checked against the default v5litepod-16 whatever the slice: batch 8 refused on a slice of
    # 8 chips, batch 16 accepted on one of 32 (and every run refused there).
    plan = [{"match": "tpu-vm describe", "responses": [{"stdout": slice_type + "\n"}]}]
    result = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                          "--sweep-config", "configs/sweeps/tiny.py", "--workdir", "/w",
                          f"--config.overrides.train.batch_size={batch}", plan=plan)
    calls = cloud.calls()
    assert calls[0]["argv"] == ["compute", "tpus", "tpu-vm", "describe", "qr", *WHERE,
                                "--format=value(acceleratorType)"]
    if refused:
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(
            f"scaling-tpu: error: run tiny-d32-L1: config.train.batch_size={batch} is not "
            "allowed: a multiple of mesh data × fsdp = 32 × 1 = 32")
        assert len(calls) == 1
    else:
        assert result.returncode == 0, result.stderr
        assert f"every config valid on the 8 devices of {slice_type}" in result.stderr
        assert [kind(c) for c in calls] == ["type", "sweep"]
    # Given, the type is not asked for; in a dry run nothing is, and the line says what it assumed.
    given = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                         "--sweep-config", "configs/sweeps/tiny.py", "--workdir", "/w",
                         "--accelerator-type", "v5litepod-16", "--dry-run")
    assert given.returncode == 0 and "tpu-vm describe" not in given.stdout, given.stderr
    dry = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                       "--sweep-config", "configs/sweeps/tiny.py", "--workdir", "/w", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ("scaling-tpu: checking the runs against the default accelerator type v5litepod-16; "
            "--accelerator-type must be the slice's (a dry run does not ask gcloud for it)"
            in dry.stderr.splitlines())
    assert len(cloud.calls()) == len(calls)


def test_a_sweep_config_variant_is_launched_as_file_and_variant(cloud):
    # `architectures.py:decoder`, as scaling-sweep and scaling-slurm take it, was refused as
    # "not an existing sweep config file".
    variants = cloud.checkout / "configs" / "sweeps" / "variants.py"
    variants.write_text(TINY_SWEEP.replace("def get_config():", "def get_config(variant):")
                        .replace('sweep.name = "tiny"', "sweep.name = variant"))
    result = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                          "--sweep-config", "configs/sweeps/variants.py:small", "--workdir", "/w",
                          "--accelerator-type", "v5litepod-16", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "configs/sweeps/variants.py:small: 1 planned runs, every config valid" in result.stderr
    assert ".venv/bin/scaling-sweep --config configs/sweeps/variants.py:small --processes 1 " \
        in result.stdout
    missing = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                           "--sweep-config", "configs/sweeps/none.py:small", "--workdir", "/w",
                           "--accelerator-type", "v5litepod-16", "--dry-run")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: --sweep-config='configs/sweeps/none.py:small' is not allowed: an "
        "existing sweep config file (FILE or FILE:VARIANT)")


def test_delete_tears_the_slice_down(cloud):
    result = cloud.launch("delete", "--project", "proj", "--zone", "us-west4-a", "--name", "qr")
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in cloud.calls()] == [
        ["compute", "tpus", "queued-resources", "delete", "qr", *WHERE, "--force", "--quiet"]]


def test_dry_run_prints_every_command_and_runs_none(cloud):
    result = cloud.launch(*up_args("--dry-run"))
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == []
    lines = result.stdout.strip().splitlines()
    assert [kind({"argv": shlex.split(line)[1:]}) for line in lines] == ONE_ATTEMPT + ["delete"]
    assert all(shlex.split(line)[0] == "gcloud" for line in lines)
    # The installed command prints the same.
    installed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "scaling-tpu"),
                                *up_args("--dry-run")], cwd=cloud.checkout, capture_output=True,
                               text=True, timeout=300)
    assert (installed.returncode, installed.stdout) == (0, result.stdout), installed.stderr


def test_settings_file_with_flags_overriding_it(cloud):
    settings = os.path.join(REPO, "configs", "tpu", "v5e-16.py")
    result = cloud.launch("create", "--config", settings, "--project", "proj",
                          "--zone", "europe-west4-b", "--dry-run")
    assert result.returncode == 0, result.stderr
    create = shlex.split(result.stdout.splitlines()[0])
    assert create == ["gcloud", "compute", "tpus", "queued-resources", "create", "scaling-v5e-16",
                      "--node-id", "scaling-v5e-16", "--accelerator-type", "v5litepod-16",
                      "--runtime-version", "v2-alpha-tpuv5-lite", "--zone", "europe-west4-b",
                      "--project", "proj", "--spot"]


def test_the_documented_settings_file_is_configs_tpu_v5e_16(tmp_path):
    # The docs showed it without its name and its batch size of 16: followed, refused.
    docs = open(os.path.join(REPO, "docs", "launching.md")).read()
    caption = "# configs/tpu/v5e-16.py:"
    block = docs[docs.index(caption):]
    shown = tmp_path / "shown.py"
    shown.write_text(block[:block.index("```")])
    documented = tpu_settings.load_settings_file(str(shown))
    actual = tpu_settings.load_settings_file(os.path.join(REPO, "configs", "tpu", "v5e-16.py"))
    assert documented.to_dict() == actual.to_dict()


@pytest.mark.parametrize("flags, message", [
    (["--accelerator-type", "v5e16"], "--accelerator-type='v5e16' is not allowed"),
    (["--accelerator-type", "tpu-8"], "--accelerator-type='tpu-8' is not allowed"),
    # Generations gcloud does not name so (v5e is `v5litepod`) were sent to `gcloud ... create`.
    (["--accelerator-type", "v5e-16"], "--accelerator-type='v5e-16' is not allowed: a TPU type "
                                       "GENERATION-COUNT with GENERATION one of v2, v3, v4, "
                                       "v5litepod, v5p, v6e"),
    (["--accelerator-type", "v9-8"], "--accelerator-type='v9-8' is not allowed"),
    # The image of another generation: the queued resource would only fail once requested.
    (["--accelerator-type", "v4-32"], "--runtime-version='v2-alpha-tpuv5-lite' is not allowed: "
                                      "the TPU VM image of a v5litepod slice; a v4-32 slice runs "
                                      "tpu-ubuntu2204-base"),
    # Reached gcloud; 'a:b' also broke the copy target NODE:~/.
    (["--name", "a:b"], "--name='a:b' is not allowed: a Cloud resource name: a lowercase letter"),
    (["--name", "My-Run"], "--name='My-Run' is not allowed"),
    (["--node-id", "run-"], "--node-id='run-' is not allowed"),
    (["--max-retries", "0"], "--max-retries=0 is not allowed: an integer > 0"),
    (["--max-retries", "-2"], "--max-retries=-2 is not allowed: an integer > 0"),
    (["--sweep-config", "configs/sweeps/missing.py"],
     "--sweep-config='configs/sweeps/missing.py' is not allowed: an existing sweep config file"),
    (["--poll-interval", "0"], "--poll-interval=0.0 is not allowed"),
    # Accepted, then an OverflowError traceback in time.sleep while the slice was provisioned.
    (["--poll-interval", "inf"], "--poll-interval=inf is not allowed: a finite number of "
                                 "seconds > 0"),
    # A SyntaxError traceback before.
    (["--config", "settings.py"], "--config='settings.py' is not allowed: a Python settings file "
                                  "that runs (SyntaxError: "),
    (["--bucket", "gs://My_Bucket"], "--bucket='gs://My_Bucket' is not allowed: BUCKET, "
                                     "gs://BUCKET or gs://BUCKET/FOLDER"),
    # Too short for a bucket name: the message named only the gs:// forms and the characters.
    (["--bucket", "b"], "--bucket='b' is not allowed: BUCKET, gs://BUCKET or gs://BUCKET/FOLDER, "
                        "BUCKET a Cloud Storage bucket name (3 to 222 lowercase letters"),
    # Every host ran `mkdir -p ''` and failed, after the slice was created.
    (["--bucket", "gs://my-results", "--mount-dir", ""],
     "--mount-dir='' is not allowed: a non-empty value"),
    # Each went to `gcloud ... create` as given.
    (["--zone", "us west4"], "--zone='us west4' is not allowed: a Compute Engine zone, "
                             "REGION-ZONE such as us-west4-a"),
    (["--accelerator-type", "v5litepod-12"], "--accelerator-type='v5litepod-12' is not allowed: "
                                             "v5litepod-N with N one of 1, 4, 8, 16, 32, 64, "
                                             "128, 256 (chips)"),
    (["--accelerator-type", "v4-7", "--runtime-version", ""],
     "--accelerator-type='v4-7' is not allowed: v4-N with N a multiple of 8 (cores"),
    (["--runtime-version", "foo bar"], "--runtime-version='foo bar' is not allowed: a TPU VM "
                                       "image name"),
    # An AttributeError traceback: a settings file not named *.py was not read at all.
    (["--config", "settings.md"], "--config='settings.md' is not allowed: a Python settings file "
                                  "that runs (SyntaxError: "),
])
def test_bad_input_is_one_line_and_exit_code_2(cloud, flags, message):
    (cloud.checkout / "settings.py").write_text("def get_config(:\n")
    (cloud.checkout / "settings.md").write_text("# Settings\n\nThe zone is us-west4-a.\n")
    result = cloud.launch(*up_args(*flags))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("scaling-tpu: error: ")
    assert message in result.stderr
    assert cloud.calls() == []


@pytest.mark.parametrize("flags, message", [
    # The sweep trained on the boot disks, then `up` deleted the slice with them and exited 0.
    (["--bucket", ""], "--bucket='' is not allowed: a bucket for the workdir: `up` deletes the "
                       "slice, and the results on its boot disks with it, once the sweep ends (or "
                       "--no-delete-when-done keeps the slice)"),
    (["--workdir", "/mnt/disk/sweep"], "--workdir='/mnt/disk/sweep' is not allowed: a folder "
                                       "under --mount-dir='~/results', where the bucket is "
                                       "mounted: `up` deletes the slice"),
])
def test_up_refuses_a_workdir_it_would_delete_before_any_gcloud_call(cloud, flags, message):
    result = cloud.launch(*up_args(*flags))
    assert (result.returncode, cloud.calls()) == (2, [])
    assert result.stderr.startswith(f"scaling-tpu: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1
    # Kept up, the slice keeps them: a warning, and the sweep runs.
    kept = cloud.launch(*up_args(*flags, "--no-delete-when-done"))
    assert kept.returncode == 0, kept.stderr
    assert "its checkpoints are lost if the slice is recreated" in kept.stderr
    assert [kind(call) for call in cloud.calls()] == ONE_ATTEMPT


@pytest.mark.parametrize("body, message", [
    # Each a traceback before: an AttributeError, the RuntimeError, ml_collections' TypeError.
    ("def get_config():\n    return 5\n",
     "a get_config() that returns an ml_collections.ConfigDict (default_settings())"),
    ("def get_config():\n    raise RuntimeError('no project set')\n",
     "a get_config() that runs (RuntimeError: no project set)"),
    ("from launch.tpu_settings import default_settings\n\ndef get_config():\n"
     "    s = default_settings()\n    s.spot = 'yes'\n    return s\n",
     "a get_config() that runs (TypeError: Could not override field 'spot'"),
])
def test_a_settings_file_that_gives_no_settings_is_one_line(cloud, body, message):
    (cloud.checkout / "settings.py").write_text(body)
    result = cloud.launch("create", "--config", "settings.py", "--project", "proj",
                          "--zone", "us-west4-a")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"scaling-tpu: error: --config='settings.py' is not allowed: "
                                    f"{message}"), result.stderr
    assert result.stderr.count("\n") == 1 and cloud.calls() == []


def test_a_settings_field_of_another_type_is_one_line(cloud):
    # Set in a plain ConfigDict, it reached the defaults' typed one: a TypeError traceback.
    (cloud.checkout / "settings.py").write_text(
        "import ml_collections\n\ndef get_config():\n"
        "    return ml_collections.ConfigDict({'max_retries': '3'})\n")
    result = cloud.launch("create", "--config", "settings.py", "--project", "proj",
                          "--zone", "us-west4-a")
    assert result.returncode == 2, result.stderr
    # It blamed a --max-retries='3' the command line never gave.
    assert result.stderr == ("scaling-tpu: error: --config='settings.py' is not allowed: a "
                             "settings file whose max_retries is an integer, as the default 3 is "
                             "(this one's is '3')\n")
    assert cloud.calls() == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_a_sweep_scaling_train_would_refuse_is_refused_before_any_gcloud_call(cloud, dry_run):
    bad = cloud.checkout / "configs" / "sweeps" / "bad.py"
    bad.write_text(TINY_SWEEP.replace('sweep.sizes = "d32-L1"',
                                      'sweep.sizes = "d32-L1"\n    sweep.size_overrides = '
                                      '{"d32-L1": {"optim": {"lr": -1.0}}}'))
    result = cloud.launch(*up_args("--sweep-config", "configs/sweeps/bad.py", *dry_run))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("scaling-tpu: error: run tiny-d32-L1")
    assert "config.optim.lr=-1.0 is not allowed" in result.stderr
    assert cloud.calls() == [] and result.stdout == ""


def test_a_mesh_whose_batch_axes_do_not_split_over_the_slices_hosts_is_refused(cloud):
    # v5litepod-16 is 4 hosts: data × fsdp = 2 would leave two of them without rows of their
    # own. Checked as one process, it passed here and failed on every host of the slice.
    result = cloud.launch(
        "run", "--project", "proj", "--zone", "us-west4-a", "--name", "qr", "--sweep-config",
        "configs/sweeps/tiny.py", "--workdir", "/w", "--accelerator-type", "v5litepod-16",
        "--dry-run", "--config.overrides.mesh.data=2", "--config.overrides.mesh.tensor=8",
        "--config.size_overrides.d32-L1.model.num_heads=8", "--config.overrides.train.batch_size=16")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(
        "scaling-tpu: error: run tiny-d32-L1: config.mesh={'data': 2, 'fsdp': 1, 'tensor': 8} is "
        "not allowed: "), result.stderr
    assert "a multiple of 4" in result.stderr and cloud.calls() == []


def test_a_valid_sweep_is_planned_and_checked_first(cloud):
    result = cloud.launch(*up_args("--dry-run"))
    assert result.returncode == 0, result.stderr
    assert "configs/sweeps/tiny.py: 1 planned runs, every config valid" in result.stderr


@pytest.mark.parametrize("command", ["up", "run"])
@pytest.mark.parametrize("path, allowed", [
    # A run config where a sweep config belongs, and a file that is not Python.
    ("configs/demo.py", "a sweep config built on launch.plans.default_sweep()"),
    ("pyproject.toml", "a Python config file that runs"),
])
def test_a_file_that_is_no_sweep_config_is_named_as_the_sweep_config(cloud, command, path, allowed):
    # Named `--config` before: in scaling-tpu that is the settings file, not the sweep's.
    args = [arg if arg != "configs/sweeps/tiny.py" else path for arg in up_args("--dry-run")]
    args[0] = command
    result = cloud.launch(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(
        f"scaling-tpu: error: --sweep-config={path!r} is not allowed: {allowed}"), result.stderr
    assert cloud.calls() == [] and result.stdout == ""


def test_a_sweep_config_git_ignores_is_refused_before_any_gcloud_call(cloud):
    # The hosts get the files git does not ignore: this one would never reach them.
    (cloud.checkout / ".gitignore").write_text(".venv/\nconfigs/local/\n")
    (cloud.checkout / "configs" / "local").mkdir()
    (cloud.checkout / "configs" / "local" / "mine.py").write_text(TINY_SWEEP)
    args = [arg if arg != "configs/sweeps/tiny.py" else "configs/local/mine.py" for arg in up_args()]
    result = cloud.launch(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: --sweep-config='configs/local/mine.py' is not allowed: a file the copy "
        "of --source takes (git ignores configs/local/mine.py, so the hosts would not get it)")
    assert cloud.calls() == []


@pytest.mark.parametrize("files, ignored", [
    ("data/private/corpus.txt", "data/private/corpus.txt"),  # a file git ignores
    ("data/corpus", "data/corpus/b.secret.txt"),  # a folder with one
    ("data/corpus/*.txt", "data/corpus/b.secret.txt"),  # a pattern matching one
])
def test_data_the_copy_of_source_leaves_behind_is_refused_before_any_gcloud_call(cloud, files,
                                                                                 ignored):
    # Found here, so accepted: every run then failed on the slice, whose copy lacks them.
    (cloud.checkout / ".gitignore").write_text(".venv/\ndata/private/\n*.secret.txt\n")
    for name in ("data/private/corpus.txt", "data/corpus/a.txt", "data/corpus/b.secret.txt"):
        (cloud.checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (cloud.checkout / name).write_text("some text to train on\n" * 50)
    data = ["--config.overrides.data.dataset=text_files", f"--config.overrides.data.files={files}"]
    result = cloud.launch(*up_args("--dry-run", *data))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"scaling-tpu: error: run tiny-d32-L1: config.data.files={files!r} is not allowed: files "
        f"the copy of --source takes (git ignores {ignored}, so the hosts would not get it)")
    assert cloud.calls() == [] and result.stdout == ""
    # What the copy takes is accepted.
    kept = cloud.launch(*up_args("--dry-run", "--config.overrides.data.dataset=text_files",
                                 "--config.overrides.data.files=data/corpus/a.txt"))
    assert kept.returncode == 0, kept.stderr


@pytest.mark.parametrize("data", [
    ["--config.overrides.data.files=/mnt/corpus/*.txt,~/corpus"],  # the hosts' own paths
    ["--config.overrides.data.files=~/results/corpus"],  # in the bucket
    ["--config.overrides.data.files=../results/corpus"],  # the bucket, from ~/scaling
])
def test_data_only_the_hosts_have_is_left_to_them(cloud, data):
    # Refused as "not found" here, where none of it is.
    result = cloud.launch(*up_args("--dry-run", "--config.overrides.data.dataset=text_files", *data))
    assert result.returncode == 0, result.stderr
    sweep = next(shlex.split(line) for line in result.stdout.splitlines() if "scaling-sweep" in line)
    assert shlex.split(sweep[-1])[-len(data):] == data


def test_a_model_file_only_the_hosts_have_needs_its_vocabulary_given(cloud):
    result = cloud.launch(*up_args("--dry-run", "--config.overrides.data.tokenizer=sentencepiece",
                                   "--config.overrides.data.spm_model=/mnt/spm.model"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "scaling-tpu: error: run tiny-d32-L1 (size d32-L1): config.data.vocab_size=0 is not "
        "allowed: the vocabulary of data.spm_model='/mnt/spm.model', which is not on this machine "
        "to be read")
    assert cloud.calls() == []


@pytest.mark.parametrize("where", ["absolute", "outside"])
def test_a_base_config_the_hosts_cannot_read_is_refused_before_any_gcloud_call(cloud, tmp_path,
                                                                                where):
    # The hosts have the copy of --source in their home folder, and nothing else of this machine.
    if where == "absolute":
        base = str(cloud.checkout / "configs" / "demo.py")
    else:
        shutil.copy(cloud.checkout / "configs" / "demo.py", tmp_path / "elsewhere.py")
        base = "../elsewhere.py"
    (cloud.checkout / "configs" / "sweeps" / "tiny.py").write_text(
        TINY_SWEEP.replace('"configs/demo.py:runlocal"', repr(base)))
    result = cloud.launch(*up_args("--dry-run"))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"scaling-tpu: error: base_config='{base}' is not allowed: ")
    assert ("relative to the checkout" if where == "absolute" else "a file inside --source") in line
    assert cloud.calls() == [] and result.stdout == ""


def test_a_queued_slice_is_waited_for_through_failures_to_describe_it(cloud):
    # Five failed describes exhaust one slice_state; create keeps waiting rather than give up
    # on a resource that may still be queued (and billed).
    unavailable = {"exit": 1, "stderr": "ERROR: (gcloud) UNAVAILABLE: try again\n"}
    plan = [{"match": "queued-resources describe",
             "responses": [unavailable] * 5 + [{"stdout": "ACTIVE\n"}]}]
    result = cloud.launch(*up_args(), plan=plan)
    assert result.returncode == 0, result.stderr
    assert [kind(c) for c in cloud.calls()] == (
        ["create"] + ["describe"] * 6 + ["scp", "setup", "sweep", "delete"])
    assert "could not describe the slice); still waiting" in result.stderr


@pytest.mark.parametrize("accelerator, image", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-128", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
def test_without_a_runtime_version_the_slice_gets_its_generations_image(cloud, accelerator, image):
    result = cloud.launch("create", "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
                          "--accelerator-type", accelerator, "--dry-run")
    assert result.returncode == 0, result.stderr
    create = shlex.split(result.stdout.splitlines()[0])
    assert create[create.index("--runtime-version") + 1] == image


def test_sweep_overrides_are_checked_and_reach_scaling_sweep_on_every_host(cloud):
    result = cloud.launch(*up_args("--config.sizes=d32-L1,d16-L1",
                                   "--config.overrides.wandb.tags", "it's"))
    assert result.returncode == 0, result.stderr
    assert "2 planned runs" in result.stderr  # planned here with the overrides
    sweep = next(c["argv"] for c in cloud.calls() if kind(c) == "sweep")
    assert "--worker=all" in sweep
    remote = shlex.split(sweep[-1])  # as the host's shell reads the line
    assert remote[-2:] == ["--config.sizes=d32-L1,d16-L1", "--config.overrides.wandb.tags=it's"]


def test_command_line_sweep_overrides_come_after_the_settings_files(cloud):
    # They replaced the file's: the documented `up --config configs/tpu/v5e-16.py ...
    # --config.sizes=...` lost the file's batch size of 16 and was refused on the 16 chips.
    shutil.copy(os.path.join(REPO, "configs", "sweeps", "demo.py"),
                cloud.checkout / "configs" / "sweeps" / "demo.py")
    settings = os.path.join(REPO, "configs", "tpu", "v5e-16.py")
    result = cloud.launch("up", "--config", settings, "--project", "my-project", "--bucket",
                          "my-results", "--config.sizes=d64-L2,d96-L2", "--dry-run")
    assert result.returncode == 0, result.stderr
    sweep = next(shlex.split(line) for line in result.stdout.splitlines() if "scaling-sweep" in line)
    assert shlex.split(sweep[-1])[-2:] == ["--config.overrides.train.batch_size=16",
                                           "--config.sizes=d64-L2,d96-L2"]
    # The same field in both: the command line's, the later, wins.
    (cloud.checkout / "settings.py").write_text(textwrap.dedent("""\
        from launch.tpu_settings import default_settings

        def get_config():
            s = default_settings()
            s.sweep_overrides = ["sizes=d32-L1"]
            return s
        """))
    both = cloud.launch(*up_args("--config", "settings.py", "--config.sizes=d32-L1,d16-L1",
                                 "--dry-run"))
    assert both.returncode == 0, both.stderr
    assert "configs/sweeps/tiny.py: 2 planned runs" in both.stderr


@pytest.mark.parametrize("args, message", [
    (up_args("--config.sizes=d32-L2x"), "sizes"),
    (["create", "--project", "proj", "--zone", "us-west4-a", "--config.sizes=d32-L1"],
     "--config.sizes='d32-L1' is not allowed: given to `run` or `up`"),
    # Each run's mesh over the slice's 16 chips: every run was refused on the slice, paid for.
    (up_args("--config.overrides.mesh.tensor=3"),
     "run tiny-d32-L1: config.mesh={'data': -1, 'fsdp': 1, 'tensor': 3} is not allowed: axis "
     "sizes whose product divides the 16 devices"),
])
def test_a_bad_or_misplaced_sweep_override_is_one_line_before_any_gcloud_call(cloud, args, message):
    result = cloud.launch(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("scaling-tpu: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and cloud.calls() == []


def test_a_sweep_config_given_as_the_settings_file_is_named_as_such(cloud):
    # "base_config='configs/demo.py:runlocal' is not allowed: one of accelerator_type, bucket,
    # ...": a field of a file the user never took for a settings file.
    result = cloud.launch("status", "--config", "configs/sweeps/tiny.py", *WHERE)
    assert (result.returncode, cloud.calls()) == (2, [])
    assert result.stderr == (
        "scaling-tpu: error: --config='configs/sweeps/tiny.py' is not allowed: a TPU settings file "
        "(fields of launch.tpu_settings.default_settings()); this one sets 'base_config', which is "
        "not one of them (a sweep config goes to --sweep-config)\n")


def test_a_settings_files_sweep_overrides_are_left_alone_by_the_other_subcommands(cloud):
    # The file that started the slice with `up` could not delete it: "--config.sizes='d32-L1'
    # is not allowed: given to `run` or `up`", for every subcommand but those two.
    (cloud.checkout / "settings.py").write_text(textwrap.dedent("""\
        from launch.tpu_settings import default_settings

        def get_config():
            s = default_settings()
            s.project, s.zone, s.name = "proj", "us-west4-a", "qr"
            s.sweep_overrides = ["sizes=d32-L1"]
            return s
        """))
    result = cloud.launch("delete", "--config", "settings.py")
    assert result.returncode == 0, result.stderr
    assert [kind(call) for call in cloud.calls()] == ["delete"]


@pytest.mark.parametrize("path, folder, inside", [
    ("~/results/s", "~/results", True), ("~/results2/s", "~/results", False),
    ("runs/demo", "~/results", False),  # in ~/scaling
    # The hosts' home as an absolute path: refused by `up` as outside the bucket before.
    ("/home/me/results/s1", "~/results", True), ("/root/results", "~/results", True),
    ("/home/me/results2", "~/results", False), ("/mnt/disk/sweep", "~/results", False),
    ("/mnt/disk/sweep", "/mnt/disk", True), ("x", "/home/u/scaling", True),
])
def test_a_host_path_is_inside_a_folder_as_the_hosts_see_it(path, folder, inside):
    assert tpu_settings.is_inside(path, folder) is inside


@pytest.mark.parametrize("workdir, warned", [
    ("runs/demo", True), ("~/results2/demo", True), ("~/results/sweeps/demo", False)])
def test_a_workdir_outside_the_mounted_bucket_is_warned_about(cloud, workdir, warned):
    result = cloud.launch("run", "--project", "proj", "--zone", "us-west4-a", "--dry-run",
                          "--sweep-config", "configs/sweeps/tiny.py", "--bucket", "gs://my-results",
                          "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    assert ("is not under --mount-dir='~/results'" in result.stderr) == warned, result.stderr


# status, logs, stop: what a researcher asks of a running sweep


def slice_args(subcommand, *extra):
    return [subcommand, "--project", "proj", "--zone", "us-west4-a", "--name", "qr",
            "--node-id", "node", *extra]


def host_home(tmp_path):
    """A host's home: ~/scaling with the environment's python, a workdir with results.csv, the
    sweep's sweep.log and two runs' train.logs, run b's written last."""
    home = tmp_path / "host" / "home"
    venv_bin = home / "scaling" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    workdir = home / "results" / "sweeps" / "demo"
    (workdir / "results.csv").parent.mkdir(parents=True)
    (workdir / "results.csv").write_text(
        "name,status,error\na,completed,\nb,pending,\nc,pending,\nd,failed,boom\n")
    (workdir / "sweep.log").write_text(
        "sweep demo: 4 runs\n[sweep] 0 done, 2 running, 2 pending, ETA 9m00s | a step 5/10\n"
        "[1/4] a: completed\n[sweep] 2 done, 1 running, 1 pending, ETA 3m10s | b step 5/10\n"
        "started c: log runs/c/train.log\n")
    for name, stamp in (("a", 1_000_000_000), ("b", 1_000_000_100)):
        log = workdir / "runs" / name / "train.log"
        log.parent.mkdir(parents=True)
        log.write_text("".join(f"{name} line {i}\n" for i in range(1, 6)))
        os.utime(log, (stamp, stamp))
    return home


def on_host(line, home):
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


def test_status_describes_the_slice_then_asks_worker_0_for_the_sweeps_progress(cloud, tmp_path):
    result = cloud.launch(*slice_args("status", "--workdir", "~/results/sweeps/demo"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "queued resource qr: ACTIVE"
    describe, ssh = (c["argv"] for c in cloud.calls())
    assert describe == ["compute", "tpus", "queued-resources", "describe", "qr", *WHERE,
                        "--format=value(state.state)"]
    assert ssh[:-1] == ["compute", "tpus", "tpu-vm", "ssh", "node", "--worker=0", *WHERE,
                        "--command"]
    assert ssh[-1].endswith(' "$HOME"/results/sweeps/demo')
    home = host_home(tmp_path)
    ran = on_host(ssh[-1], home)
    assert ran.returncode == 0, ran.stderr
    workdir = home / "results" / "sweeps" / "demo"
    assert ran.stdout.splitlines() == [
        f"{workdir}/results.csv: 4 runs: 1 completed, 1 failed, 2 pending",
        f"{workdir}/sweep.log: [sweep] 2 done, 1 running, 1 pending, ETA 3m10s | b step 5/10",
        f"latest: {workdir}/runs/b/train.log: b line 5"]
    # A sweep that has ended says so, with its last line: it showed its last progress line,
    # "1 running", long after the sweep was gone.
    with open(workdir / "sweep.log", "a") as log:
        log.write(f"results: {workdir}/results.csv\n"
                  "sweep interrupted; rerun the same command to resume\n")
    assert on_host(ssh[-1], home).stdout.splitlines()[1] == (
        f"{workdir}/sweep.log: the sweep is not running; its last line: sweep interrupted; rerun "
        "the same command to resume")
    # Started again: its first line until it ticks.
    with open(workdir / "sweep.log", "a") as log:
        log.write("sweep demo: 4 runs, 1 already finished, 3 to train, 1 at a time; logs in x\n")
    assert on_host(ssh[-1], home).stdout.splitlines()[1] == (
        f"{workdir}/sweep.log: sweep demo: 4 runs, 1 already finished, 3 to train, 1 at a time; "
        "logs in x")
    # Before setup, and before the sweep wrote anything: each one line.
    assert "run `scaling-tpu setup` first" in on_host(ssh[-1], tmp_path).stderr
    (workdir / "results.csv").unlink()
    assert "results.csv: none yet" in on_host(ssh[-1], home).stdout


@pytest.mark.parametrize("state", ["WAITING_FOR_RESOURCES", ""])
def test_status_of_a_slice_not_active_asks_no_host(cloud, state):
    answer = ({"stdout": state + "\n"} if state else
              {"exit": 1, "stderr": "ERROR: NOT_FOUND: queued resource qr\n"})
    result = cloud.launch(*slice_args("status", "--workdir", "w"),
                          plan=[{"match": "queued-resources describe", "responses": [answer]}])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"queued resource qr: {state or 'does not exist'}\n"
    assert [kind(c) for c in cloud.calls()] == ["describe"]


@pytest.mark.parametrize("flags, expected", [
    ([], ["==> {workdir}/runs/b/train.log <==", *(f"b line {i}" for i in range(1, 6))]),
    (["--run", "a", "--lines", "2"], ["==> {workdir}/runs/a/train.log <==", "a line 4", "a line 5"]),
])
def test_logs_tails_a_runs_train_log_on_worker_0(cloud, tmp_path, flags, expected):
    result = cloud.launch(*slice_args("logs", "--workdir", "~/results/sweeps/demo", *flags))
    assert result.returncode == 0, result.stderr
    (ssh,) = (c["argv"] for c in cloud.calls())
    assert ssh[:-1] == ["compute", "tpus", "tpu-vm", "ssh", "node", "--worker=0", *WHERE,
                        "--command"]
    home = host_home(tmp_path)
    ran = on_host(ssh[-1], home)
    assert ran.returncode == 0, ran.stderr
    workdir = home / "results" / "sweeps" / "demo"
    assert ran.stdout.splitlines() == [line.format(workdir=workdir) for line in expected]


def test_logs_of_a_missing_run_says_so_in_one_line(cloud, tmp_path):
    result = cloud.launch(*slice_args("logs", "--workdir", "~/results/sweeps/demo", "--run", "z"))
    home = host_home(tmp_path)
    ran = on_host(cloud.calls()[0]["argv"][-1], home)
    assert ran.returncode == 1
    assert ran.stderr == f"no {home}/results/sweeps/demo/runs/z/train.log on worker 0\n"
    assert result.returncode == 0
    # No run has a train.log yet.
    result = cloud.launch(*slice_args("logs", "--workdir", "~/results/sweeps/demo"))
    shutil.rmtree(home / "results" / "sweeps" / "demo" / "runs")
    ran = on_host(cloud.calls()[-1]["argv"][-1], home)
    assert ran.returncode == 1
    assert ran.stderr == f"no runs/*/train.log in {home}/results/sweeps/demo on worker 0\n"


DUMMY_SWEEP = textwrap.dedent("""\
    #!/bin/bash
    trap 'echo interrupted > "$MARKER"; exit 130' INT
    touch "$MARKER.ready"
    while true; do sleep 0.05; done
    """)


def test_stop_sends_sigint_to_the_sweep_on_every_host_and_to_nothing_else(cloud, tmp_path):
    result = cloud.launch(*slice_args("stop"))
    assert result.returncode == 0, result.stderr
    (ssh,) = (c["argv"] for c in cloud.calls())
    assert ssh[:-1] == ["compute", "tpus", "tpu-vm", "ssh", "node", "--worker=all", *WHERE,
                        "--command"]
    assert "rm " not in ssh[-1] and "delete" not in ssh[-1]
    home = host_home(tmp_path)
    # The sweep as `run` starts it (from ~/scaling), and one of another checkout, left alone.
    other = tmp_path / "other"
    sweeps = []
    for checkout in (home / "scaling", other):
        script = checkout / ".venv" / "bin" / "scaling-sweep"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(DUMMY_SWEEP)
        script.chmod(0o755)
        marker = checkout / "marker"
        sweeps.append((subprocess.Popen([".venv/bin/scaling-sweep", "--config", "x"],
                                        cwd=checkout, env={"MARKER": str(marker),
                                                           "PATH": "/usr/bin:/bin"}), marker))
    try:
        for _, marker in sweeps:
            for _ in range(200):
                if os.path.exists(f"{marker}.ready"):
                    break
                subprocess.run(["sleep", "0.05"])
        ran = on_host(ssh[-1], home)
        assert ran.returncode == 0, ran.stderr
        (process, marker), (other_process, other_marker) = sweeps
        assert process.wait(timeout=30) == 130
        assert marker.read_text() == "interrupted\n"
        assert f"sent SIGINT to scaling-sweep (pid {process.pid})" in ran.stdout
        assert other_process.poll() is None and not other_marker.exists()
        # Nothing left to stop: said, not an error.
        ran = on_host(ssh[-1], home)
        assert ran.returncode == 0 and "no scaling-sweep running from ~/scaling" in ran.stdout
    finally:
        for process, _ in sweeps:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("args, message", [
    (["logs", "--workdir", "w", "--lines", "0"], "--lines=0 is not allowed: an integer > 0"),
    (["logs", "--workdir", "w", "--run", "../x"], "--run='../x' is not allowed: the name of one run"),
    (["logs", "--workdir", "w", "--run", ".."], "--run='..' is not allowed"),
    (["logs"], "--workdir='' is not allowed: a non-empty value"),
    (["status"], "--workdir='' is not allowed: a non-empty value"),
    (["stop", "--zone", ""], "--zone='' is not allowed: a non-empty value"),
])
def test_bad_status_logs_or_stop_input_is_one_line_before_any_gcloud_call(cloud, args, message):
    result = cloud.launch(*slice_args(args[0]), *args[1:], "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("scaling-tpu: error: ")
    assert message in result.stderr
    assert cloud.calls() == [] and result.stdout == ""


def test_status_logs_and_stop_dry_run_print_their_commands_and_run_none(cloud):
    for args, count in ((["status", "--workdir", "w"], 2), (["logs", "--workdir", "w"], 1),
                        (["stop"], 1)):
        result = cloud.launch(*slice_args(args[0]), *args[1:], "--dry-run")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == count and all(line.startswith("gcloud compute tpus ") for line in lines)
    assert cloud.calls() == []


def test_a_source_outside_git_is_refused_before_any_gcloud_call(cloud, tmp_path):
    # Found only by `setup`, once the slice was up, which was then left running.
    plain = tmp_path / "plain"
    shutil.copytree(cloud.checkout, plain, ignore=shutil.ignore_patterns(".git"))
    result = cloud.launch(*up_args("--source", str(plain), "--sweep-config",
                                   str(plain / "configs" / "sweeps" / "tiny.py")))
    assert result.returncode == 2
    assert result.stderr == (f"scaling-tpu: error: --source={str(plain)!r} is not allowed: a "
                             "folder inside a git checkout (its files are copied)\n")
    assert cloud.calls() == []


def test_a_bad_base_config_variant_is_named_as_the_sweeps_base_config(cloud):
    # It was blamed on --sweep-config, whose file has no variant.
    (cloud.checkout / "configs" / "sweeps" / "variant.py").write_text(
        TINY_SWEEP.replace(":runlocal", ":nope"))
    result = cloud.launch(*up_args("--sweep-config", "configs/sweeps/variant.py"))
    assert result.returncode == 2
    assert result.stderr == ("scaling-tpu: error: config.base_config (in "
                             "configs/sweeps/variant.py)='configs/demo.py:nope' is not allowed: a "
                             "variant of this file: runlocal\n")
    assert cloud.calls() == []


def test_a_failed_ssh_of_status_logs_or_stop_is_said(cloud):
    # Each returned ssh's code with no line of its own.
    unreachable = [{"match": "tpu-vm ssh", "responses": [{"exit": 255}]}]
    for subcommand, doing in (("status", "asking worker 0 for the sweep's progress"),
                              ("logs", "reading the log on worker 0"),
                              ("stop", "stopping the sweep")):
        result = cloud.launch(*slice_args(subcommand, "--workdir", "w"), plan=unreachable)
        assert result.returncode == 255, subcommand
        assert result.stderr.strip().splitlines()[-1] == (
            f"scaling-tpu: {doing} failed: ssh exited with code 255 (its error above)")


@pytest.mark.parametrize("signum, code", [("SIGINT", 130), ("SIGTERM", 75)])
def test_ctrl_c_while_a_slice_is_queued_is_one_line_naming_it(cloud, tmp_path, signum, code):
    # A traceback through create → slice_state → subprocess.run, and nothing said of the queued
    # resource left behind; a SIGTERM ended it without a word (exit 143).
    import signal
    import time

    plan, log = tmp_path / "queued.json", tmp_path / "queued.jsonl"
    plan.write_text(json.dumps([{"match": "queued-resources describe",
                                 "responses": [{"stdout": "WAITING_FOR_RESOURCES\n"}]}]))
    environment = dict(os.environ, PYTHONPATH=REPO, FAKE_GCLOUD_PLAN=str(plan),
                       FAKE_GCLOUD_LOG=str(log),
                       PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    process = subprocess.Popen(
        [sys.executable, "-m", "launch.tpu", *slice_args("create", "--poll-interval", "0.05")],
        cwd=cloud.checkout, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (log.exists() and '"describe"' in log.read_text()):  # created, now waiting
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(getattr(signal, signum))
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "scaling-tpu: interrupted; queued resource qr may exist: `scaling-tpu status` shows it, "
        "`scaling-tpu delete` deletes it")


def test_a_data_file_that_cannot_be_read_is_one_line_before_any_gcloud_call(cloud):
    # Reading /proc/self/mem from its start fails (EIO), for root too; it was an OSError traceback.
    (cloud.checkout / "data").mkdir(exist_ok=True)
    (cloud.checkout / "data" / "a.txt").write_text("some text to train on\n" * 50)
    (cloud.checkout / "data" / "b.txt").symlink_to("/proc/self/mem")
    result = cloud.launch(*up_args("--dry-run", "--config.overrides.data.dataset=text_files",
                                   "--config.overrides.data.files=data"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "scaling-tpu: error: run tiny-d32-L1: config.data.files='data' is not allowed: readable "
        "text files ("), result.stderr
    assert "b.txt cannot be read: " in result.stderr and "Traceback" not in result.stderr
    assert cloud.calls() == [] and result.stdout == ""

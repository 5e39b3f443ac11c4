"""Two real processes on localhost train like one: `scaling.distributed.initialize` connects them,
each feeds only its own rows of the global batch, and the losses match a single-device run.

CPU collectives between processes: jax 0.10.2 already defaults `jax_cpu_collectives_implementation`
to "gloo" (TCP), and uses it whenever `jax.distributed` is initialised, so nothing needs setting.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import REPO, run_python, xla_flags
from test_parallel import RELATIVE_TOLERANCE, TRAINING, assert_close

from scaling import distributed
from scaling.config import default_config, validate
from scaling.errors import ConfigError

PROCESSES, DEVICES_PER_PROCESS, STEPS = 2, 2, 4
MESH_SHAPES = [(2, 2, 1), (1, 2, 2)]  # data across the processes; fsdp across them, tensor within

# Each worker joins the two-process cluster at the address and with the index it is given.
JOIN = """
import sys
from scaling import distributed
host_config = make_config((1, 1, 1))
host_config.distributed.coordinator_address = sys.argv[1]
host_config.distributed.num_processes = 2
host_config.distributed.process_id = int(sys.argv[2])
distributed.initialize(host_config)
"""

WORKER = JOIN + """
result = {"process_index": jax.process_index(), "process_count": jax.process_count(),
          "local_devices": jax.local_device_count(), "devices": jax.device_count(), "losses": {},
          "rows": {}}
for shape in MESH_SHAPES:
    config = make_config(shape)
    rows = process_rows(parallel.batch_sharding(parallel.make_mesh(config.mesh)))
    result["rows"][str(list(shape))] = [int(rows[0]), int(rows[-1]) + 1]
    result["losses"][str(list(shape))] = train(config, steps=STEPS)[0]
print("RESULT " + json.dumps(result))
"""

REFERENCE = """
print("RESULT " + json.dumps(train(make_config((1, 1, 1)), steps=STEPS)[0]))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _result(stdout: str):
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _run_processes(code: str, timeout: float = 400) -> list[dict]:
    environment = dict(os.environ, PYTHONPATH=str(REPO),
                       XLA_FLAGS=xla_flags(DEVICES_PER_PROCESS))
    address = f"localhost:{_free_port()}"
    workers = [subprocess.Popen([sys.executable, "-c", code, address, str(index)], cwd=REPO,
                                env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for index in range(PROCESSES)]
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=timeout)
            if worker.returncode != 0:
                raise AssertionError(f"process failed ({worker.returncode}):\n{stdout[-3000:]}\n"
                                     f"{stderr[-5000:]}")
            outputs.append(_result(stdout))
    finally:
        # A process whose partner died waits on the coordinator forever: never leave it behind.
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return outputs


@pytest.mark.slow
def test_two_processes_each_feeding_half_the_batch_match_one_device():
    settings = f"MESH_SHAPES = {MESH_SHAPES}\nSTEPS = {STEPS}\n"
    reference = _result(run_python(TRAINING + settings + REFERENCE, devices=1).stdout)
    outputs = _run_processes(TRAINING + settings + WORKER)

    assert [output["process_index"] for output in outputs] == [0, 1]
    for output in outputs:
        assert output["process_count"] == PROCESSES
        assert output["local_devices"] == DEVICES_PER_PROCESS
        assert output["devices"] == PROCESSES * DEVICES_PER_PROCESS
    for shape in MESH_SHAPES:
        key = str(list(shape))
        # Each process feeds its own half of the 16 rows, and the halves cover the batch.
        assert sorted(output["rows"][key] for output in outputs) == [[0, 8], [8, 16]]
        for output in outputs:
            assert_close(output["losses"][key], reference, RELATIVE_TOLERANCE)
    assert reference[-1] < reference[0]


FEED_CHECK = JOIN + """
from scaling.errors import ConfigError
batch = next(iter(token_batches(1)))
half = BATCH // 2
own = slice(jax.process_index() * half, (jax.process_index() + 1) * half)
outcomes = {}
# (mesh, rows each process feeds): its own half (as the loader does), or both the first half.
for label, shape, rows in [("data", (2, 2, 1), own), ("fsdp", (1, 2, 2), own),
                           ("same half", (2, 2, 1), slice(0, half)),
                           ("replicated", (1, 1, 4), own)]:
    sharding = parallel.batch_sharding(parallel.make_mesh(make_config(shape).mesh))
    try:
        distributed.check_batch_feeds({k: v[rows] for k, v in batch.items()}, sharding, BATCH)
        outcomes[label] = "ok"
    except ConfigError as error:
        outcomes[label] = str(error)
print("RESULT " + json.dumps(outcomes))
"""


@pytest.mark.slow
def test_hosts_feeding_rows_the_mesh_does_not_expect_are_refused_naming_the_mesh():
    """Two localhost processes: each feeding its own half passes where the mesh splits rows
    across them; both feeding the same half, or halves where the mesh gives every process all
    rows, is an error naming the mesh (the same on both processes)."""
    outputs = _run_processes(TRAINING + FEED_CHECK)
    assert outputs[0] == outputs[1]
    outcomes = outputs[0]
    assert outcomes["data"] == "ok" and outcomes["fsdp"] == "ok"
    assert outcomes["same half"] == (
        "config.mesh={'data': 2, 'fsdp': 2, 'tensor': 1} is not allowed: a mesh whose batch rows "
        "the 2 processes can feed: processes 0 and 1 fed identical data for different rows "
        "([0, 8) and [8, 16))")
    assert outcomes["replicated"] == (
        "config.mesh={'data': 1, 'fsdp': 1, 'tensor': 4} is not allowed: a mesh whose batch rows "
        "the 2 processes can feed: process 0 fed 8 rows where the batch sharding expects rows "
        "[0, 16)")


@pytest.mark.parametrize("shape, processes, refused", [
    ((2, 2, 1), 2, False), ((1, 2, 2), 2, False), ((4, 1, 1), 4, False), ((1, 1, 4), 1, False),
    # Each process feeds its own rows: a batch axis of 1 (tensor across the two processes) or
    # of 2 over 4 processes would hold them twice. Found at step 0 after compiling, as "run
    # failed at step 0; rerun the same command to resume".
    ((1, 1, 2), 2, True), ((2, 1, 2), 4, True), ((3, 1, 1), 2, True),
])
def test_the_batch_axes_must_split_the_batch_among_the_processes(shape, processes, refused):
    if not refused:
        distributed.check_batch_split(shape, processes)
        return
    with pytest.raises(ConfigError) as caught:
        distributed.check_batch_split(shape, processes)
    data, fsdp, tensor = shape
    assert caught.value.field == "mesh"
    assert caught.value.value == {"data": data, "fsdp": fsdp, "tensor": tensor}
    assert f"data × fsdp a multiple of {processes} (it is {data * fsdp};" in str(caught.value)


@pytest.mark.parametrize("feeds, problem", [
    ([(0, 8, 8, 1, 2), (8, 16, 8, 3, 4)], None),
    ([(0, 16, 16, 1, 2), (0, 16, 16, 1, 2)], None),  # replicated rows, identical data
    ([(0, 8, 8, 1, 2), (8, 16, 8, 1, 2)],
     "processes 0 and 1 fed identical data for different rows ([0, 8) and [8, 16))"),
    ([(0, 16, 8, 1, 2), (0, 16, 8, 3, 4)],
     "process 0 fed 8 rows where the batch sharding expects rows [0, 16)"),
    ([(0, 16, 16, 1, 2), (0, 16, 16, 3, 4)],
     "processes 0 and 1 hold the same rows [0, 16) but fed different data"),
])
def test_feed_mismatches_are_found(feeds, problem):
    assert distributed.find_feed_mismatch(feeds) == problem


@pytest.fixture
def initialize_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed.jax.distributed, "initialize",
                        lambda **kwargs: calls.append(kwargs))
    for name in ("TPU_WORKER_HOSTNAMES", *distributed.SLURM_STEP, "SCALING_DISTRIBUTED"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_single_process_does_not_initialize(initialize_calls, monkeypatch):
    distributed.initialize(default_config())
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "only-host")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    distributed.initialize(default_config())
    assert initialize_calls == []


SLURM_STEP = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "2",
              "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


def test_explicit_coordinator_is_passed_through(initialize_calls, monkeypatch):
    config = default_config()
    config.distributed.coordinator_address = "10.0.0.1:1234"
    config.distributed.num_processes = 4
    config.distributed.process_id = 3
    config.distributed.heartbeat_seconds = 30
    distributed.initialize(config)
    # JAX's own "Number of processes must be defined." traceback, outside a cluster.
    config.distributed.num_processes, config.distributed.process_id = 0, -1
    with pytest.raises(ConfigError, match=r"distributed.num_processes=0 is not allowed: set with "
                                          r"distributed.coordinator_address \(only a SLURM"):
        distributed.initialize(config)
    # In a SLURM job step JAX reads the count and index from it.
    for name, value in SLURM_STEP.items():
        monkeypatch.setenv(name, value)
    distributed.initialize(config)
    assert initialize_calls == [
        {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3,
         "heartbeat_timeout_seconds": 30},
        {"coordinator_address": "10.0.0.1:1234", "num_processes": None, "process_id": None,
         "heartbeat_timeout_seconds": 30}]


@pytest.mark.parametrize("address, allowed", [
    ("10.0.0.1:1234", True), ("node0:12345", True), ("[::1]:1234", True),
    # Bare IPv6 (no port), a port of full-width digits, out of range, no host.
    ("::1", False), ("fe80::1", False), ("host:\uff11\uff12\uff13", False), ("host:0", False),
    ("host:70000", False), (":123", False), ("nonsense", False),
])
def test_a_coordinator_address_is_host_and_port(address, allowed):
    config = default_config()
    config.distributed.update(coordinator_address=address, num_processes=2, process_id=0)
    if allowed:
        validate(config)
    else:
        with pytest.raises(ConfigError, match="distributed.coordinator_address"):
            validate(config)


def test_a_slurm_allocation_outside_srun_is_one_process(initialize_calls, monkeypatch):
    # `salloc -n 4`, then the command in its shell: the job's variables, none of a step's. It
    # took this for several hosts, and JAX's SLURM detection for none: "coordinator_address
    # should be defined", a traceback.
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    distributed.initialize(default_config())
    assert initialize_calls == []


@pytest.mark.parametrize("environment", [
    {"TPU_WORKER_HOSTNAMES": "host-0,host-1"},
    SLURM_STEP,
    {"SCALING_DISTRIBUTED": "1"},
])
def test_multi_host_environments_initialize_automatically(initialize_calls, monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    distributed.initialize(default_config())
    assert initialize_calls == [{"heartbeat_timeout_seconds": 100}]  # JAX's default


def _train_two_processes(workdir, checkpoint_every: int, stderr,
                         *overrides: str) -> list[subprocess.Popen]:
    """scaling-train as the two processes of one run on localhost, logging every 5 steps of a
    run far longer than a test waits."""
    environment = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1),
                       WANDB_MODE="offline")
    address = f"localhost:{_free_port()}"
    return [subprocess.Popen(
        [sys.executable, "-m", "scaling.train", "--config", "configs/demo.py:runlocal",
         "--workdir", str(workdir), "--config.train.steps=100000", "--config.train.log_every=5",
         "--config.train.eval_every=100000",
         f"--config.checkpoint.every_steps={checkpoint_every}",
         f"--config.distributed.coordinator_address={address}",
         "--config.distributed.num_processes=2", f"--config.distributed.process_id={index}",
         *overrides],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr, text=True)
        for index in range(2)]


def _wait_for_records(workdir, workers: list[subprocess.Popen], count: int) -> None:
    """Until the run's metrics.jsonl holds `count` records; an error if a process ends first."""
    import time

    metrics = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= count):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), [
            w.communicate()[0][-3000:] for w in workers if w.poll() is not None]
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, ended, overrides", [
    (2, 130, "interrupted", ()), (15, 75, "preempted", ()),
    # Four steps a call, every call of four (logs every 8), saves every 8 steps, whose steps
    # Orbax reports to the preemption service as the loop reports each of its steps.
    (15, 75, "preempted", ("--config.train.steps_per_call=4", "--config.train.log_every=8",
                           "--config.checkpoint.every_steps=8"))],
    ids=["sigint", "sigterm", "sigterm-4-steps-a-call"])
def test_two_processes_stopped_save_at_one_step_and_say_why(tmp_path, signum, code, ended,
                                                           overrides):
    """Ctrl-C (SIGINT) or SIGTERM to both processes of one run: both stop at the step JAX's
    preemption service agrees on, with a checkpoint there. Ctrl-C on each process raised a
    KeyboardInterrupt mid-step: "run failed at step 483", no checkpoint, 83 steps lost."""
    workdir = tmp_path / "run"
    workers = _train_two_processes(workdir, 100000, subprocess.STDOUT, *overrides)
    try:
        _wait_for_records(workdir, workers, 4)
        for worker in workers:
            worker.send_signal(signum)
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [worker.returncode for worker in workers] == [code, code], outputs
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == ended and 20 <= summary["steps"] < 100000, summary
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == summary["steps"]
    assert f"run {ended} at step {summary['steps']}" in outputs[0], outputs[0][-2000:]
    if overrides:  # stopped where a call ended
        assert summary["steps"] % 4 == 0, summary["steps"]


@pytest.mark.slow
def test_a_process_whose_partner_died_fails_with_exit_code_1(tmp_path):
    """scaling-train on two localhost processes; process 1 is killed mid-run. Process 0's next
    collective fails: it wrote its summary and ended in JAX's exit barrier, waiting for the dead
    partner, until the runtime aborted it (exit 134, a C++ stack dump) about 90 s later. When
    the kill came while a save was in flight (in about half the runs), it waited for that save
    to commit, which needs the dead partner's part, until the runtime aborted it (-6) a
    heartbeat timeout after the kill."""
    workdir = tmp_path / "run"
    workers = _train_two_processes(workdir, 10, subprocess.PIPE,
                                   "--config.distributed.heartbeat_seconds=20")
    try:
        _wait_for_records(workdir, workers, 3)
        workers[1].kill()
        workers[1].wait()
        stdout, stderr = workers[0].communicate(timeout=300)
        assert workers[0].returncode == 1, stderr[-3000:]
        assert "run failed at step " in stdout and "Check failure stack trace" not in stderr
        assert json.loads((workdir / "summary.json").read_text())["status"] == "failed"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, line", [
    (signal.SIGTERM, 75, "scaling-train: preempted before training started; rerun to start"),
    (signal.SIGINT, 130, "scaling-train: interrupted before training started; rerun to start"),
])
def test_a_process_waiting_for_its_partners_stops_on_a_signal(tmp_path, signum, code, line):
    """Process 0 of two, alone: it waits in jax.distributed.initialize, in C++, where Python's
    handlers never ran; it ignored SIGTERM and Ctrl-C until JAX aborted it after 300 s."""
    import time

    port = _free_port()
    worker = subprocess.Popen(
        [sys.executable, "-c", "import sys; from scaling.scripts import train; sys.exit(train())",
         "--config", "configs/demo.py:runlocal", "--workdir", str(tmp_path / "run"),
         f"--config.distributed.coordinator_address=localhost:{port}",
         "--config.distributed.num_processes=2", "--config.distributed.process_id=0"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # its coordination service listening: it waits for process 1
            with socket.socket() as probe:
                if probe.connect_ex(("localhost", port)) == 0:
                    break
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        time.sleep(1.0)
        worker.send_signal(signum)
        stdout, stderr = worker.communicate(timeout=60)
        assert (worker.returncode, stderr.strip().splitlines()[-1]) == (code, line), stderr
        assert not (tmp_path / "run").exists()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

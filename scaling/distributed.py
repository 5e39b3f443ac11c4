"""Multi-host start-up: JAX's own multi-controller runtime, nothing home-made.

Every host runs the same program. `jax.distributed.initialize` connects them: on TPU VM slices and
under SLURM it finds the coordinator by itself; on other clusters the coordinator address, the
process count and this process's index come from the config (or the launcher's command line).
A launcher that knows the run spans several hosts says so with `SCALING_DISTRIBUTED=1` (as
`scaling-tpu` does): an ssh shell on a TPU VM need not carry `TPU_WORKER_HOSTNAMES`, and JAX reads
the slice's hosts from the TPU metadata itself.

Every process feeds rows of its own (`scaling.data.loader.host_rows`), so the mesh's batch axes
(data × fsdp) must split the batch among the processes (`check_batch_split`, before anything is
built); before the first step, `check_batch_feeds` makes sure the hosts feed the rows the batch
sharding expects of them.
"""

from __future__ import annotations

import hashlib
import os
import threading

import jax
import ml_collections
import numpy as np

from scaling.errors import ConfigError


# What JAX reads to find a SLURM job step's processes: a shell of `salloc` or `sbatch` outside
# `srun` has the job's variables but none of a step's, and runs one process.
SLURM_STEP = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")


def _launched_multi_host() -> bool:
    """True when the environment says several hosts run this program together."""
    if len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        return True
    if all(name in os.environ for name in SLURM_STEP) and int(os.environ["SLURM_NTASKS"]) > 1:
        return True
    return os.environ.get("SCALING_DISTRIBUTED", "") == "1"


def initialize(config: ml_collections.ConfigDict) -> None:
    """Connect this process to the others, if it is one of several; otherwise do nothing.
    ConfigError when an explicit coordinator comes without the process count or index, and no
    cluster (a SLURM job step, a TPU slice) gives them."""
    dist = config.distributed
    if dist.coordinator_address and not _launched_multi_host():
        for name, unset in (("num_processes", 0), ("process_id", -1)):
            if dist[name] == unset:
                raise ConfigError(f"distributed.{name}", dist[name], (
                    "set with distributed.coordinator_address (only a SLURM job step or a TPU "
                    "slice gives the process count and index by itself)"))
    if dist.coordinator_address:
        _connect(coordinator_address=dist.coordinator_address,
                 num_processes=dist.num_processes or None,
                 process_id=dist.process_id if dist.process_id >= 0 else None,
                 heartbeat_timeout_seconds=dist.heartbeat_seconds)
    elif _launched_multi_host():
        _connect(heartbeat_timeout_seconds=dist.heartbeat_seconds)


def _connect(**arguments) -> None:
    """`jax.distributed.initialize(**arguments)` in a thread, this one waiting for it: it blocks
    in C++ until every process has joined, where the signal handlers of Python (a SIGTERM's exit
    75, a Ctrl-C's 130) could not run, and a process whose partners never came ignored both."""
    failure = []

    def connect():
        try:
            jax.distributed.initialize(**arguments)
        except BaseException as error:  # raised here, in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=connect, name="jax.distributed.initialize", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if failure:
        raise failure[0]


def check_batch_split(shape: tuple[int, int, int], processes: int) -> None:
    """ConfigError naming the mesh when its batch axes (data × fsdp, of the resolved `shape`)
    are no multiple of `processes`: some processes would hold the same rows, which each feeds
    its own of (a tensor axis across processes)."""
    data, fsdp, tensor = shape
    if processes > 1 and (data * fsdp) % processes:
        raise ConfigError("mesh", {"data": data, "fsdp": fsdp, "tensor": tensor}, (
            f"a mesh whose batch axes split the batch among the {processes} processes, each "
            f"feeding rows of its own: data × fsdp a multiple of {processes} (it is "
            f"{data * fsdp}; keep mesh.tensor within a process's devices)"))


def check_split_among(config: ml_collections.ConfigDict, processes: int) -> None:
    """What can be checked of a run's batch split among `processes` processes before their
    devices are known (`scaling-slurm --coordinator`): the batch axes, a multiple of the process
    count (`check_batch_split`), divide each micro-batch, whose rows must then be a multiple of
    it too; and data × fsdp, where both are given, must be one. ConfigError otherwise."""
    mesh, train = config.mesh, config.train
    if mesh.data != -1 and mesh.fsdp != -1:
        check_batch_split((mesh.data, mesh.fsdp, mesh.tensor), processes)
    if (train.batch_size // train.grad_accum_steps) % processes:
        raise ConfigError("train.batch_size", train.batch_size, (
            f"a multiple of {processes} per micro-batch (train.grad_accum_steps="
            f"{train.grad_accum_steps}): each of the {processes} processes feeds rows of its own"))


def is_leader() -> bool:
    """Process 0 writes logs, metrics and summaries; every process checkpoints."""
    return jax.process_index() == 0


def _fingerprint(local_batch: dict) -> tuple[int, int]:
    """Two 31-bit integers that identify the host's batch (every array, in name order)."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(local_batch):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(local_batch[name]).tobytes())
    value = int.from_bytes(digest.digest(), "little")
    return value & 0x7FFFFFFF, (value >> 32) & 0x7FFFFFFF


def expected_rows(sharding, global_rows: int) -> tuple[int, int]:
    """[start, stop) of the global batch rows this process's devices hold under `sharding`."""
    shape = (global_rows, 1)
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map(shape).values():
        rows = index[0]
        starts.append(rows.start or 0)
        stops.append(global_rows if rows.stop is None else rows.stop)
    return min(starts), max(stops)


def find_feed_mismatch(feeds: list[tuple[int, int, int, int, int]]) -> str | None:
    """What is wrong with the hosts' feeds, or None. Each feed is (first row, end row the
    sharding gives the process, rows it fed, fingerprint, fingerprint)."""
    for index, (start, stop, fed, *_) in enumerate(feeds):
        if fed != stop - start:
            return (f"process {index} fed {fed} rows where the batch sharding expects rows "
                    f"[{start}, {stop})")
    for first in range(len(feeds)):
        for second in range(first + 1, len(feeds)):
            same_rows = feeds[first][:2] == feeds[second][:2]
            same_data = feeds[first][3:] == feeds[second][3:]
            if same_rows and not same_data:
                return (f"processes {first} and {second} hold the same rows "
                        f"[{feeds[first][0]}, {feeds[first][1]}) but fed different data")
            if not same_rows and same_data:
                return (f"processes {first} and {second} fed identical data for different rows "
                        f"([{feeds[first][0]}, {feeds[first][1]}) and "
                        f"[{feeds[second][0]}, {feeds[second][1]}))")
    return None


def check_batch_feeds(local_batch: dict, sharding, global_rows: int) -> None:
    """One all-gather of every host's (rows, batch fingerprint): raises ConfigError naming the
    mesh when a host feeds rows the batch sharding does not expect of it. No-op on one process."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    start, stop = expected_rows(sharding, global_rows)
    fed = len(next(iter(local_batch.values())))
    mine = np.asarray([start, stop, fed, *_fingerprint(local_batch)], np.int32)
    feeds = [tuple(int(v) for v in row) for row in
             np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(mine))]
    problem = find_feed_mismatch(feeds)
    if problem:
        mesh = dict(sharding.mesh.shape)
        raise ConfigError("mesh", mesh, f"a mesh whose batch rows the {len(feeds)} processes "
                                        f"can feed: {problem}")

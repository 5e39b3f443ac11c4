"""Multi-host start-up: JAX's own multi-controller runtime, nothing home-made.

Every host runs the same program. `jax.distributed.initialize` connects them: on TPU VM slices and
under SLURM it finds the coordinator by itself; on other clusters the coordinator address, the
process count and this process's index come from the config (or the launcher's command line).
"""

from __future__ import annotations

import os

import jax
import ml_collections


def _launched_multi_host() -> bool:
    """True when the environment says several hosts run this program together."""
    if len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    return os.environ.get("SCALING_DISTRIBUTED", "") == "1"


def initialize(config: ml_collections.ConfigDict) -> None:
    """Connect this process to the others, if it is one of several; otherwise do nothing."""
    dist = config.distributed
    if dist.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=dist.coordinator_address,
            num_processes=dist.num_processes or None,
            process_id=dist.process_id if dist.process_id >= 0 else None)
    elif _launched_multi_host():
        jax.distributed.initialize()


def is_leader() -> bool:
    """Process 0 writes logs, metrics and summaries; every process checkpoints."""
    return jax.process_index() == 0

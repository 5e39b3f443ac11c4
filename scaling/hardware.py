"""Peak FLOP/s of the devices a run uses: the denominator of MFU.

Accelerators use their published dense peak for the compute dtype. CPUs have no useful datasheet
number, so their peak is measured: the best of several large jnp matmuls, cached per machine so
a sweep's runs do not each pay for the measurement.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time

import jax
import jax.numpy as jnp

from scaling import files

# Dense peak FLOP/s per chip (bf16; fp32 is taken as half on GPUs). Sources: vendor datasheets
# (their figures "with sparsity" are twice these). A device is matched by the longest name that is
# a whole word of its kind: "NVIDIA L40S" is an L40S, not an L4; "NVIDIA H100 PCIe" a PCIe card.
PUBLISHED_PEAK_BF16 = {
    "TPU v2": 45e12, "TPU v3": 123e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5p": 459e12, "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
    "GH200": 989e12, "H200": 989e12, "H200-NVL": 835e12, "H100": 989e12, "H100-PCIe": 756e12, "H100-NVL": 835e12,
    "A100": 312e12, "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A10G": 70e12, "V100": 125e12,
}


def _words(name: str) -> str:
    """`name` lower-cased with runs of spaces, dashes and underscores as one space."""
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


def published_peak(device_kind: str) -> float | None:
    """The dense bf16 peak of one chip whose JAX `device_kind` is given (`NVIDIA H100 80GB HBM3`,
    `TPU v5 lite`), or None for one not listed in `PUBLISHED_PEAK_BF16`."""
    kind = _words(device_kind)
    for name in sorted(PUBLISHED_PEAK_BF16, key=len, reverse=True):
        if re.search(rf"(?<![a-z0-9]){re.escape(_words(name))}(?![a-z0-9])", kind):
            return PUBLISHED_PEAK_BF16[name]
    return None


# Cloud TPU accelerator types (`v4-8`, `v5litepod-16`, `v5p-128`, `v6e-8`): the generation's chip,
# and whether the count after the dash is TensorCores (two per chip) rather than chips.
TPU_TYPES = {"v2": ("TPU v2", True), "v3": ("TPU v3", True), "v4": ("TPU v4", True),
             "v5p": ("TPU v5p", True), "v5litepod": ("TPU v5e", False), "v5e": ("TPU v5e", False),
             "v6e": ("TPU v6e", False)}
# What a planning estimate assumes a well-configured accelerator run reaches (not a promise).
PLANNING_MFU = 0.4
# What a planning estimate on this machine adds for each training step and each held-out batch,
# beyond its FLOPs: the Python loop, the dispatch, the batch. Fitted together with a FLOP rate to
# the wall time of each of the demo sweep's 36 runs on a 2-core CPU, two at a time: 4 ms a step,
# and 31% of the measured peak for the FLOPs, where the estimate plans 30%. Most of a small
# model's time.
PLANNING_STEP_SECONDS = 0.004
# Seconds a CPU's measured peak is trusted before it is measured again.
PEAK_RECHECK_SECONDS = 3600.0


# TPU generations whose JAX devices are TensorCores, two per chip (later ones: one per chip).
TPU_CORE_DEVICES = ("v2", "v3")


# Far beyond any slice or cluster (the largest TPU pods have some thousands of chips): a count
# above it is a typing error, not a plan.
MAX_ACCELERATOR_COUNT = 2**20


def accelerator_devices(accelerator: str) -> int:
    """How many JAX devices `accelerator` (as `accelerator_peak_flops` reads it) has: a TPU's
    chips (TensorCores for v2 and v3), a GPU node's GPUs. Raises ValueError as it does."""
    _, chips = accelerator_peak_flops(accelerator)
    generation = accelerator.strip().rpartition("-")[0]
    return 2 * chips if generation in TPU_CORE_DEVICES else chips


# TPU generations whose slices of up to 8 chips are one host; beyond that, 4 chips a host. The
# others' hosts have 4 chips (8 TensorCores, which their type counts) at every size.
TPU_SINGLE_HOST_UP_TO_8 = ("v5litepod", "v5e", "v6e")


def accelerator_hosts(accelerator: str) -> int:
    """How many hosts, each one JAX process, `accelerator` has: a Cloud TPU slice's VMs
    (`v5litepod-16`: 4; `v4-8`: 1), one for a GPU node. Raises ValueError as
    `accelerator_peak_flops` does."""
    _, chips = accelerator_peak_flops(accelerator)
    generation = accelerator.strip().rpartition("-")[0]
    if generation not in TPU_TYPES or (generation in TPU_SINGLE_HOST_UP_TO_8 and chips <= 8):
        return 1
    return max(1, chips // 4)


def accelerator_peak_flops(accelerator: str,
                           compute_dtype: str = "bfloat16") -> tuple[float, int]:
    """(dense peak FLOP/s of the whole accelerator for `compute_dtype`, its chip count) for a
    Cloud TPU type (`v5litepod-16`: 16 chips; `v4-8`: 8 TensorCores, 4 chips) or `<count>x<GPU>`
    (`8xH100`). A GPU's float32 peak is taken as half its bf16 one, as `device_peak_flops` takes
    it for the MFU a run reports. Raises ValueError naming what is known."""
    name = accelerator.strip()
    generation, _, count = name.rpartition("-")
    if generation in TPU_TYPES and count.isdigit() and 0 < int(count) <= MAX_ACCELERATOR_COUNT:
        chip, counts_cores = TPU_TYPES[generation]
        chips = max(1, int(count) // 2) if counts_cores else int(count)
        return PUBLISHED_PEAK_BF16[chip] * chips, chips
    count, _, gpu = name.partition("x")
    gpus = {_words(key): peak for key, peak in PUBLISHED_PEAK_BF16.items() if "TPU" not in key}
    if (count.isdigit() and 0 < int(count) <= MAX_ACCELERATOR_COUNT and _words(gpu) in gpus):
        peak = gpus[_words(gpu)] * int(count)
        return (peak if compute_dtype == "bfloat16" else peak / 2), int(count)
    raise ValueError(f"a Cloud TPU type ({', '.join(f'{t}-N' for t in TPU_TYPES)}) or COUNTxGPU "
                     f"with a GPU of {', '.join(k for k in PUBLISHED_PEAK_BF16 if 'TPU' not in k)}"
                     f", N and COUNT from 1 to {MAX_ACCELERATOR_COUNT:,}")


def device_memory_bytes() -> int:
    """Memory of one local device: an accelerator's allocatable bytes, or a CPU's (which shares
    the machine's memory) the machine's physical memory."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def host_available_bytes() -> int:
    """Memory this machine can still give a process without swapping: the kernel's MemAvailable
    (/proc/meminfo), else (no /proc) the physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_available_bytes() -> int:
    """Memory one local device can still allocate: an accelerator's allocatable bytes less those
    in use, or a CPU's (which shares the machine's memory) `host_available_bytes`."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    return host_available_bytes()


def measure_matmul_peak(dtype=jnp.float32, size: int = 2048, repeats: int = 5) -> float:
    """Best achieved FLOP/s of a size³ matmul on the default device."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), dtype)
    b = jax.random.normal(key_b, (size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def device_peak_flops(compute_dtype: str = "float32") -> float:
    """Peak FLOP/s of one device for `compute_dtype` ('float32' or 'bfloat16').

    An accelerator's is its published peak (or, for one not listed, a measured matmul rate). A
    CPU's is the best matmul rate measured on this machine so far, kept in the cache and measured
    again when an hour old (half a second with its compile): other work on the machine only ever
    lowers a measurement, and one taken under load must not overstate every MFU after it."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        peak = published_peak(device.device_kind)
        if peak is not None:
            return peak if compute_dtype == "bfloat16" or device.platform == "tpu" else peak / 2
        return measure_matmul_peak(jnp.bfloat16 if compute_dtype == "bfloat16" else jnp.float32,
                                   size=8192)
    key = f"{platform.node()}-{os.cpu_count()}-{compute_dtype}-{jax.device_count()}"
    path = files.cache_home() / "cpu_peak.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    try:
        best, checked = float(cached[key]["flops"]), float(cached[key]["checked"])
    except (KeyError, TypeError, ValueError):  # none yet, or an older cache's bare number
        best, checked = 0.0, -math.inf
    if best > 0 and time.time() - checked < PEAK_RECHECK_SECONDS:
        return best
    measured = measure_matmul_peak(jnp.bfloat16 if compute_dtype == "bfloat16" else jnp.float32,
                                   size=1024)
    # Simulated devices share the same cores: each gets its share of the machine's peak.
    best = max(best, measured / max(1, jax.local_device_count()))
    cached[key] = {"flops": best, "checked": time.time()}
    try:
        files.write_text_atomic(path, json.dumps(cached))
    except OSError:
        pass
    return best

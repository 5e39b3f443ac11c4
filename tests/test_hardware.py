"""`scaling.hardware`: whole-accelerator peaks against hand counts from the vendors' per-chip
datasheet figures, and a CPU's measured peak."""

import json

import jax
import pytest

from scaling import hardware


@pytest.mark.parametrize("accelerator, peak, chips", [
    ("v5litepod-16", 16 * 197e12, 16),  # v5e: the count is chips
    ("v6e-8", 8 * 918e12, 8),
    ("v4-8", 4 * 275e12, 4),  # v4: the count is TensorCores, two per chip
    ("v5p-128", 64 * 459e12, 64),
    ("v3-8", 4 * 123e12, 4),
    ("8xH100", 8 * 989e12, 8),
    ("1xA100", 312e12, 1),
    ("4xL40S", 4 * 362e12, 4), ("2xh100-pcie", 2 * 756e12, 2),
])
def test_accelerator_peaks(accelerator, peak, chips):
    assert hardware.accelerator_peak_flops(accelerator) == (pytest.approx(peak), chips)
    # float32 matmuls: half the bf16 peak on a GPU; on a TPU, at JAX's default precision, the same.
    gpu = "x" in accelerator
    assert hardware.accelerator_peak_flops(accelerator, "float32") == (
        pytest.approx(peak / 2 if gpu else peak), chips)


# JAX's device kinds, each with its datasheet's dense bf16 figure (half the "with sparsity" one).
# An L40S and an L40 were taken for an L4 (121e12) and an H100 PCIe for an SXM card (989e12).
@pytest.mark.parametrize("device_kind, peak", [
    ("NVIDIA L40S", 362e12), ("NVIDIA L40", 181e12), ("NVIDIA L4", 121e12),
    ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12), ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA GH200 480GB", 989e12), ("NVIDIA H200 NVL", 835e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A10G", 70e12),
    ("TPU v5 lite", 197e12), ("TPU v5p", 459e12), ("TPU v4", 275e12), ("NVIDIA B9000", None),
])
def test_a_devices_published_peak_is_that_of_its_own_chip(device_kind, peak):
    assert hardware.published_peak(device_kind) == peak


# Hosts per slice, from Cloud TPU's system architecture pages: v5e and v6e slices of up to 8 chips
# are one VM, larger ones 4 chips a VM; v2 to v5p have 4 chips (8 TensorCores) a VM.
@pytest.mark.parametrize("accelerator, hosts", [
    ("v5litepod-1", 1), ("v5litepod-8", 1), ("v5litepod-16", 4), ("v5litepod-256", 64),
    ("v6e-8", 1), ("v6e-16", 4), ("v4-8", 1), ("v4-16", 2), ("v4-32", 4), ("v5p-128", 16),
    ("v2-8", 1), ("v3-32", 4), ("8xH100", 1),
])
def test_accelerator_hosts(accelerator, hosts):
    assert hardware.accelerator_hosts(accelerator) == hosts


# A count of 10^20 GPUs or chips was taken, and a sweep's dry run blamed its runs' batch size.
@pytest.mark.parametrize("accelerator", ["v9-8", "v5litepod", "H100", "0xH100", "8xB9000",
                                         "99999999999999999999xH100", "v5litepod-1048577"])
def test_unknown_accelerators_say_what_is_known(accelerator):
    with pytest.raises(ValueError, match="v5litepod-N.*N and COUNT from 1 to 1,048,576$"):
        hardware.accelerator_peak_flops(accelerator)


def test_a_cpus_peak_is_the_best_rate_measured_so_far(tmp_path, monkeypatch):
    # A machine busy with other work measures a lower rate: it must neither replace a better one
    # nor, cached, hold every later MFU too high once the machine is quiet. Within an hour of a
    # measurement the cached rate is used as it is.
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path))
    (tmp_path / "cpu_peak.json").write_text(json.dumps({"other-machine": 1.0}))
    rates, now = iter([50e9, 200e9, 80e9]), [0.0]
    monkeypatch.setattr(hardware, "measure_matmul_peak", lambda *args, **kwargs: next(rates))
    monkeypatch.setattr(hardware.time, "time", lambda: now[0])
    share = jax.local_device_count()  # simulated devices each get their share of the cores
    peaks = []
    for seconds in (0, 3599, 3601, 7202):  # measured at 0, 3601 and 7202
        now[0] = seconds
        peaks.append(hardware.device_peak_flops() * share)
    assert peaks == [50e9, 50e9, 200e9, 200e9]
    cached = json.loads((tmp_path / "cpu_peak.json").read_text())
    assert cached.pop("other-machine") == 1.0
    assert list(cached.values()) == [{"flops": 200e9 / share, "checked": 7202}]

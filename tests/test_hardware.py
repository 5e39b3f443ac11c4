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
])
def test_accelerator_peaks(accelerator, peak, chips):
    assert hardware.accelerator_peak_flops(accelerator) == (pytest.approx(peak), chips)


@pytest.mark.parametrize("accelerator", ["v9-8", "v5litepod", "H100", "0xH100", "8xB9000"])
def test_unknown_accelerators_say_what_is_known(accelerator):
    with pytest.raises(ValueError, match="v5litepod-N"):
        hardware.accelerator_peak_flops(accelerator)


def test_a_cpus_peak_is_the_best_rate_measured_so_far(tmp_path, monkeypatch):
    # A machine busy with other work measures a lower rate: it must neither replace a better one
    # nor, cached, hold every later MFU too high once the machine is quiet.
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path))
    rates = iter([50e9, 200e9, 80e9])
    monkeypatch.setattr(hardware, "measure_matmul_peak", lambda *args, **kwargs: next(rates))
    share = jax.local_device_count()  # simulated devices each get their share of the cores
    assert [hardware.device_peak_flops() for _ in range(3)] == [50e9 / share, 200e9 / share,
                                                                200e9 / share]
    assert list(json.loads((tmp_path / "cpu_peak.json").read_text()).values()) == [200e9 / share]

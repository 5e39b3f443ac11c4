"""A v5e slice with 16 chips (4 hosts) on spot capacity, results on a GCS bucket.

    scaling-tpu up --config configs/tpu/v5e-16.py --project my-project --bucket my-results

Fill in `project` and `bucket` here or on the command line; the sweep's workdir is on the bucket, so
its checkpoints survive a preemption and `up` resumes the sweep on a fresh slice.
"""

from launch.tpu_settings import default_settings


def get_config():
    s = default_settings()
    s.name = "scaling-v5e-16"
    s.zone = "us-west4-a"
    s.accelerator_type = "v5litepod-16"
    s.runtime_version = "v2-alpha-tpuv5-lite"
    s.spot = True
    s.sweep_config = "configs/sweeps/demo.py"  # replace with the study to run
    # Each run's batch is split over the slice's 16 chips: the demo's 8 rows cannot be.
    s.sweep_overrides = ["overrides.train.batch_size=16"]
    s.mount_dir = "~/results"
    s.workdir = "~/results/sweeps/demo"
    s.max_retries = 5
    return s

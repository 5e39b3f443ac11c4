"""Settings of the TPU launcher: the defaults, loading a settings file, and validation.

Settings come from `default_settings`, then an optional Python file whose `get_config()` returns a
ConfigDict (see `configs/tpu/v5e-16.py`), then command-line flags, last one winning. `validate`
checks the fields a subcommand needs, once, and raises `UsageError` naming the flag.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import os
import posixpath
import re

import ml_collections

from launch.commands import UsageError
from scaling.errors import flag_name
from scaling.overrides import config_file, one_line_error

# Accelerator types as `gcloud` names them: a TPU generation and a core/chip count (v4-8,
# v5litepod-16, v5p-128, v6e-8). Each generation with the TPU VM image (runtime version) Google
# documents for it, which `runtime_version` "" stands for.
RUNTIME_VERSIONS = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base",
                    "v4": "tpu-ubuntu2204-base", "v5litepod": "v2-alpha-tpuv5-lite",
                    "v5p": "v2-alpha-tpuv5", "v6e": "v2-alpha-tpuv6e"}
ACCELERATOR_TYPE = re.compile(rf"({'|'.join(RUNTIME_VERSIONS)})-([1-9][0-9]*)")
# The counts each generation comes in: v5e and v6e slices of 1 to 256 chips, the others
# multiples of 8 cores (4 chips).
SLICE_CHIPS = {"v5litepod": (1, 4, 8, 16, 32, 64, 128, 256), "v6e": (1, 4, 8, 16, 32, 64, 128, 256)}
CORES_PER_HOST = 8
# A Compute Engine zone (us-west4-a, europe-west4-b, us-central2-b) and a TPU VM image name.
ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A Google Cloud resource name, as a queued resource and a TPU node must be named.
RESOURCE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
# A run's name as `logs --run` takes it: one folder under WORKDIR/runs/.
RUN_NAME = re.compile(r"[^/\x00\s]+")


def default_settings() -> ml_collections.ConfigDict:
    """Every field the TPU launcher reads, with its default."""
    s = ml_collections.ConfigDict()
    s.project = ""  # Google Cloud project id
    s.zone = ""  # e.g. us-west4-a; the accelerator type must be offered there
    s.name = "scaling"  # queued-resource name; the TPU node gets the same name unless node_id is set
    s.node_id = ""
    s.accelerator_type = "v5litepod-16"
    s.runtime_version = ""  # the TPU VM image; "" is the one for the accelerator's generation
    s.spot = False  # spot capacity is cheaper and can be preempted at any time
    s.source = "."  # the checkout copied to ~/scaling on every host (files git tracks or would track)
    s.sweep_config = ""  # path inside `source`, e.g. configs/sweeps/demo.py (FILE[:VARIANT])
    # `FIELD=VALUE` overrides of the sweep config, before the command line's `--config.FIELD=VALUE`
    # (the later wins): checked here with the sweep and given to `scaling-sweep` on every host.
    s.sweep_overrides = []
    s.workdir = ""  # on the hosts; put it under mount_dir so checkpoints survive a preemption
    s.bucket = ""  # GCS bucket mounted with gcsfuse at mount_dir on every host ("" mounts nothing)
    s.mount_dir = "~/results"
    s.max_retries = 3  # how many times `up` recreates the slice after a preemption
    s.poll_interval = 30.0  # seconds between state checks while the slice is being provisioned
    s.delete_when_done = True  # `up` deletes the slice once the sweep has finished
    s.run = ""  # `logs`: the run whose train.log to show ("" is the most recently written one)
    s.lines = 50  # `logs`: how many of the log's last lines to show
    return s


def load_settings_file(path: str) -> ml_collections.ConfigDict:
    """The ConfigDict that `get_config()` in the Python file at `path` returns."""
    if not os.path.isfile(path):
        raise UsageError("--config", path, "an existing Python settings file")
    # An explicit loader: a file not named *.py is still read as Python (and refused if it is not).
    spec = importlib.util.spec_from_file_location(
        "tpu_settings_file", path,
        loader=importlib.machinery.SourceFileLoader("tpu_settings_file", path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # not Python, or Python that fails: say where, in one line
        raise UsageError("--config", path, f"a Python settings file that runs "
                                           f"({one_line_error(error)})") from None
    if not hasattr(module, "get_config"):
        raise UsageError("--config", path, "a file that defines get_config()")
    try:
        settings = module.get_config()
    except Exception as error:  # a field set to a value of another type raises here too
        raise UsageError("--config", path, f"a get_config() that runs "
                                           f"({one_line_error(error)})") from None
    if not isinstance(settings, ml_collections.ConfigDict):
        raise UsageError("--config", path, "a get_config() that returns an "
                                           "ml_collections.ConfigDict (default_settings())")
    return settings


def merge(settings: ml_collections.ConfigDict, overrides: dict,
          settings_file: str | None = None) -> ml_collections.ConfigDict:
    """A copy of `settings` with every non-None value of `overrides` (field name → value) set:
    the command line's flags, or the fields of `settings_file` (named in an error)."""
    merged = ml_collections.ConfigDict(settings.to_dict())
    for field, value in overrides.items():
        if value is None:
            continue
        if field not in merged:
            raise UsageError(field, value, "one of " + ", ".join(sorted(merged.keys())))
        try:
            merged[field] = value
        except TypeError:  # ml_collections keeps each field's type
            kind = {bool: "True or False", int: "an integer", float: "a number",
                    str: "a string"}.get(type(merged[field]), type(merged[field]).__name__)
            if settings_file is not None:
                raise UsageError("--config", settings_file, (
                    f"a settings file whose {field} is {kind}, as the default {merged[field]!r} "
                    f"is (this one's is {value!r})")) from None
            raise UsageError(flag_name(field), value, f"{kind}, as the default "
                                                      f"{merged[field]!r} is") from None
    return merged


# A Cloud Storage bucket name: lowercase letters, digits, dashes, underscores and dots, 3-222
# characters, starting and ending with a letter or digit.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


REMOTE_CHECKOUT = "scaling"  # the checkout lands in ~/scaling on every host


# A TPU VM user's home folder, as an absolute path: /home/USER (or /root).
HOME_FOLDER = r"/(?:home/[^/]+|root)"


def is_inside(path: str, folder: str) -> bool:
    """Whether the host path `path` is `folder` or inside it (a relative path is in ~/scaling;
    ~ is the hosts' home, /home/USER or /root, as an absolute path)."""
    def in_home(host: str) -> str:  # the path below ~, for a path in the home folder
        host = host if host.startswith(("/", "~")) else f"~/{REMOTE_CHECKOUT}/{host}"
        if host.startswith("~"):
            return posixpath.normpath("/" + host[1:].lstrip("/"))
        below = re.match(HOME_FOLDER + r"(/.*|$)", posixpath.normpath(host))
        return posixpath.normpath("/" + below.group(1).lstrip("/")) if below else ""

    if path.startswith("/") and folder.startswith("/"):
        path, folder = posixpath.normpath(path), posixpath.normpath(folder)
        return posixpath.commonpath([path, folder]) == folder
    below_path, below_folder = in_home(path), in_home(folder)
    return bool(below_path and below_folder) and (
        posixpath.commonpath([below_path, below_folder]) == below_folder)


def split_bucket(bucket: str) -> tuple[str, str]:
    """`gs://name/folder/sub` (or `name/folder/sub`) as ("name", "folder/sub"); the folder is ""
    when the whole bucket is meant."""
    name, _, folder = bucket.removeprefix("gs://").strip("/").partition("/")
    return name, folder.strip("/")


def _nonempty(settings: ml_collections.ConfigDict, field: str) -> None:
    if not str(settings[field]).strip():
        raise UsageError(flag_name(field), settings[field], "a non-empty value")


def validate(settings: ml_collections.ConfigDict, subcommand: str) -> None:
    """Checks the fields `subcommand` (create, setup, run, up, delete, status, logs, stop) reads."""
    for field in ("project", "zone", "name"):
        _nonempty(settings, field)
    if not ZONE.fullmatch(str(settings.zone)):
        raise UsageError("--zone", settings.zone, "a Compute Engine zone, REGION-ZONE such as "
                                                  "us-west4-a or europe-west4-b")
    for field in ("name", "node_id"):
        if settings[field] and not RESOURCE_NAME.fullmatch(str(settings[field])):
            raise UsageError(flag_name(field), settings[field],
                             "a Cloud resource name: a lowercase letter, then up to 62 lowercase "
                             "letters, digits or '-', not ending in '-'")
    if subcommand in ("create", "up"):
        match = ACCELERATOR_TYPE.fullmatch(str(settings.accelerator_type))
        if not match:
            raise UsageError("--accelerator-type", settings.accelerator_type,
                             "a TPU type GENERATION-COUNT with GENERATION one of "
                             f"{', '.join(RUNTIME_VERSIONS)}, such as v4-8, v5litepod-16, v5p-128 "
                             "or v6e-8")
        generation, count = match.group(1), int(match.group(2))
        counts = SLICE_CHIPS.get(generation)
        if counts and count not in counts or not counts and count % CORES_PER_HOST:
            raise UsageError("--accelerator-type", settings.accelerator_type, (
                f"{generation}-N with N one of {', '.join(map(str, counts))} (chips)" if counts
                else f"{generation}-N with N a multiple of {CORES_PER_HOST} (cores: "
                     f"{generation}-8, {generation}-16, ...)"))
        if settings.runtime_version and not IMAGE_NAME.fullmatch(str(settings.runtime_version)):
            raise UsageError("--runtime-version", settings.runtime_version,
                             "a TPU VM image name (letters, digits, '.', '_', '-'), or empty for "
                             "the generation's own")
        # Another generation's image is a request the zone cannot meet: refused here, not
        # after the queued resource has waited and FAILED.
        image = runtime_version(settings)
        others = [other for other, other_image in RUNTIME_VERSIONS.items()
                  if other_image == image and other_image != RUNTIME_VERSIONS[generation]]
        if others:
            raise UsageError("--runtime-version", image,
                             f"the TPU VM image of a {'/'.join(others)} slice; a "
                             f"{settings.accelerator_type} slice runs "
                             f"{RUNTIME_VERSIONS[generation]} (or leave it empty for that)")
    if subcommand in ("setup", "up") and not os.path.isdir(settings.source):
        raise UsageError("--source", settings.source, "an existing directory (the checkout to copy)")
    if subcommand in ("setup", "up") and settings.bucket:
        _nonempty(settings, "mount_dir")  # where every host mounts the bucket
        name, folder = split_bucket(settings.bucket)
        if not BUCKET_NAME.fullmatch(name) or "//" in folder:
            raise UsageError("--bucket", settings.bucket,
                             "BUCKET, gs://BUCKET or gs://BUCKET/FOLDER, BUCKET a Cloud Storage "
                             "bucket name (3 to 222 lowercase letters, digits, '-', '_' or '.', "
                             "beginning and ending with a letter or digit)")
    if subcommand in ("run", "up"):
        _nonempty(settings, "workdir")
        sweep_config = settings.sweep_config
        path = config_file(sweep_config)
        if not path or not os.path.isfile(path):
            raise UsageError("--sweep-config", sweep_config, "an existing sweep config file "
                                                             "(FILE or FILE:VARIANT)")
        inside = os.path.relpath(os.path.abspath(path), os.path.abspath(settings.source))
        if inside.startswith(os.pardir):
            raise UsageError("--sweep-config", sweep_config,
                             f"a file inside --source={settings.source!r}, which is what the hosts get")
    if subcommand == "up" and settings.delete_when_done:
        # The slice, its boot disks and a workdir on them go once the sweep ends.
        lost = ("`up` deletes the slice, and the results on its boot disks with it, once the "
                "sweep ends (or --no-delete-when-done keeps the slice)")
        if not settings.bucket:
            raise UsageError("--bucket", settings.bucket, f"a bucket for the workdir: {lost}")
        if not is_inside(settings.workdir, settings.mount_dir):
            raise UsageError("--workdir", settings.workdir,
                             f"a folder under --mount-dir={settings.mount_dir!r}, where the bucket "
                             f"is mounted: {lost}")
    if subcommand in ("status", "logs"):
        _nonempty(settings, "workdir")  # where they read results.csv and runs/NAME/train.log
    if subcommand == "logs":
        lines = settings.lines
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 1:
            raise UsageError("--lines", lines, "an integer > 0")
        if settings.run and (not RUN_NAME.fullmatch(str(settings.run))
                             or settings.run in (".", "..")):
            raise UsageError("--run", settings.run, "the name of one run of the sweep (its folder "
                                                    "under WORKDIR/runs/, no '/')")
    retries = settings.max_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise UsageError("--max-retries", retries, "an integer > 0")
    interval = settings.poll_interval
    if (isinstance(interval, bool) or not isinstance(interval, (int, float))
            or not 0 < interval < math.inf):  # inf: an OverflowError in time.sleep
        raise UsageError("--poll-interval", interval, "a finite number of seconds > 0")


def sweep_config_on_host(settings: ml_collections.ConfigDict) -> str:
    """The sweep config's path relative to ~/scaling, where the hosts find it after `setup`,
    with its `:variant` if it names one."""
    path, colon, variant = settings.sweep_config.partition(":")
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(settings.source))
    return relative.replace(os.sep, "/") + colon + variant


def runtime_version(settings: ml_collections.ConfigDict) -> str:
    """The TPU VM image: `runtime_version`, or the generation's own when that is empty."""
    if settings.runtime_version.strip():
        return settings.runtime_version
    return RUNTIME_VERSIONS[str(settings.accelerator_type).rpartition("-")[0]]


def node_name(settings: ml_collections.ConfigDict) -> str:
    """The TPU node's name: `node_id`, or the queued-resource name when that is empty."""
    return settings.node_id or settings.name

"""Rebuild a sweep's `results.csv` from what W&B recorded, for when the runs' own files are gone
or were never gathered in one place.

    python -m launch.registry --wandb-dir SWEEP_WORKDIR --out results.csv [--group SWEEP]
    python -m launch.registry --project P [--entity E] --group SWEEP --out results.csv

The first form reads the local W&B run directories under a sweep's workdir (`offline-run-*` from
`wandb.mode=offline`, `run-*` from online runs). W&B 0.31 writes neither `wandb-summary.json` nor
`config.yaml` offline, and ships no Python reader of its run files, so the run file
(`run-<id>.wandb`) is read here: a LevelDB-style log of W&B's protobuf `Record`s. A run resumed
after a preemption has one directory per attempt under the same run id; its summaries are merged in
order, as the W&B server merges a resumed run's; an attempt killed before W&B wrote its run record
left a run file of nothing but a header, and adds nothing (a run with no other attempt is named
in a warning: W&B recorded neither its name nor its group); one killed later adds its config, but
no summary (what W&B holds as its summary is its last logged step, copied from the history). A run
no attempt of which ended shows its plan, as the runner's table does for a run without a summary.
Its last attempt, which wrote no exit record, is "running" unless its workdir's lock says no process
runs there (`scaling.files.workdir_lock` records its holder): then it was killed, and is "failed".
The second form asks the W&B server for the runs of one group (a sweep logs every run with
`wandb.group` = the sweep's name); without an API key, or when the server cannot be reached or
refuses, it says so in one line (exit 2).

Rows have the runner's columns (`launch.results.RESULT_COLUMNS`) and values, built by the same
`launch.results.result_row`.
What the runner takes from a run's summary comes from the W&B summary (W&B names such as
`eval/final_loss` read back as summary.json's `final_eval_loss`); what it takes from the plan
(layers, width, batch size, sequence length, learning rate) comes from the logged run config.
W&B does not hold the `error` column (the last error line of a run's `train.log`): it stays empty.
Rows are ordered smallest model first (non-embedding parameters), then fewest tokens, then name
(the runner lists a ladder's main run before its branches, and each seed's runs together: the
same rows, in another order).
"""

from __future__ import annotations

import json
import math
import pathlib
import socket
import struct
import sys
import zlib

from launch import results
from scaling import files, tracking
from launch.results import RESULT_COLUMNS
from scaling.errors import ArgumentParser, empty_option

LOG_BLOCK_BYTES, RECORD_HEADER_BYTES = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
RUN_FILE_MAGIC = b":W&B"
# W&B run states (public API) for a run whose own summary never got a status: finish never ran.
FAILED_STATES = ("failed", "crashed", "killed")


class RegistryError(Exception):
    """Nothing to rebuild from: no runs where the caller pointed."""


def read_run_file_records(path: pathlib.Path) -> list:
    """Every protobuf `Record` in a W&B run file (`run-<id>.wandb`), in the order written.

    The file is a 7-byte header (":W&B", version) followed by 32 KiB blocks of records, each with a
    7-byte header (CRC, length, kind); a record longer than a block's rest is split into
    first/middle/last pieces. A torn tail (a run killed mid-write) is ignored; a piece whose CRC-32
    (of its kind byte and its bytes) does not match, or a record protobuf cannot parse, is damage
    inside the file: a RegistryError naming the file and the offset.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if len(data) < len(RUN_FILE_MAGIC) and RUN_FILE_MAGIC.startswith(data):
        return []  # killed while W&B wrote its header: no record, as a header-only file
    if data[:4] != RUN_FILE_MAGIC:
        raise RegistryError(f"{path} is not a W&B run file")
    position, pieces, records = RECORD_HEADER_BYTES, b"", []
    while position + RECORD_HEADER_BYTES <= len(data):
        left_in_block = LOG_BLOCK_BYTES - position % LOG_BLOCK_BYTES
        if left_in_block < RECORD_HEADER_BYTES:  # too little room for a header: block padding
            position += left_in_block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position:position + RECORD_HEADER_BYTES])
        if length == 0 and kind == 0:  # zero fill to the end of the block
            position += left_in_block
            continue
        chunk = data[position + RECORD_HEADER_BYTES:position + RECORD_HEADER_BYTES + length]
        if len(chunk) < length:
            break
        if zlib.crc32(bytes([kind]) + chunk) != checksum:
            raise _damaged(path, position, "a record that fails its checksum")
        position += RECORD_HEADER_BYTES + length
        pieces = chunk if kind in (FULL, FIRST) else pieces + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(pieces)
            except DecodeError:
                raise _damaged(path, position, "a record protobuf cannot parse") from None
            records.append(record)
    return records


def _damaged(path: pathlib.Path, position: int, what: str) -> RegistryError:
    return RegistryError(f"{path}: damaged at byte {position} ({what}); move the folder of this "
                         "attempt aside to rebuild the table without it")


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_local_run(run_file: pathlib.Path) -> dict:
    """One attempt of a run from its run file: {"id", "name", "group", "job_type", "config",
    "summary", "removed", "state"}; `removed` holds the summary keys the attempt removed (and did
    not set again), which an earlier attempt may have set; `state` is "finished" when the attempt
    wrote its exit record (with exit code 0) or "failed" (non-zero), else "running"."""
    run = {"id": "", "name": "", "group": "", "job_type": "", "config": {}, "summary": {},
           "removed": set(), "state": "running"}
    for record in read_run_file_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, name=record.run.display_name,
                       group=record.run.run_group, job_type=record.run.job_type)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            updates = ()
        for item in updates:
            run["config"][_item_key(item)] = json.loads(item.value_json)
        if kind == "summary":
            for item in record.summary.update:
                run["summary"][_item_key(item)] = json.loads(item.value_json)
                run["removed"].discard(_item_key(item))
            for item in record.summary.remove:
                run["summary"].pop(_item_key(item), None)
                run["removed"].add(_item_key(item))
        elif kind == "exit":
            run["state"] = "finished" if record.exit.exit_code == 0 else "failed"
    return run


def workdir_in_use(run_file: pathlib.Path) -> bool:
    """Whether a process may be running in the workdir of a W&B run file
    (`<workdir>/wandb/<attempt>/run-<id>.wandb`): False only when its workdir lock records no
    holder, or a process of this host that has ended; True when it cannot tell (no lock file, or
    another host's process)."""
    try:
        record = (run_file.parents[2] / files.WORKDIR_LOCK).read_text().strip()
    except (OSError, IndexError):
        return True
    if not record:
        return False  # released cleanly
    try:
        holder = json.loads(record)
        pid, host = int(holder["pid"]), holder["host"]
    except (ValueError, KeyError, TypeError):
        return True
    return host != socket.gethostname() or files.process_alive(pid)


def local_runs(wandb_dir: pathlib.Path, group: str | None = None) -> list[dict]:
    """The training runs whose W&B directories lie anywhere under `wandb_dir`, one per run id,
    each attempt's summary merged over the earlier ones' (less the keys it removed). With `group`,
    only that group's runs.
    (Runs of another job type, such as the `fit` run `scaling-fit --wandb-project` logs in the
    sweep's group, are not rows of its table.)"""
    run_files = [path for pattern in ("offline-run-*/run-*.wandb", "run-*/run-*.wandb")
                 for path in pathlib.Path(wandb_dir).rglob(pattern)]
    # The directory name starts with the attempt's start time (run-YYYYMMDD_HHMMSS-id).
    run_files.sort(key=lambda path: (path.parent.name.removeprefix("offline-"),
                                     path.stat().st_mtime))
    runs: dict[str, dict] = {}
    unrecorded: dict[str, pathlib.Path] = {}
    for run_file in run_files:
        attempt = read_local_run(run_file)
        if not attempt["id"]:
            # Killed before W&B wrote its run record (a header-only file): no attempt to merge.
            unrecorded[run_file.stem.removeprefix("run-")] = run_file.parent
            continue
        merged = runs.setdefault(attempt["id"], {"summary": {}})
        merged["run_file"] = run_file
        merged.update({key: value for key, value in attempt.items()
                       if key not in ("summary", "removed")})
        if attempt["summary"].get("status"):
            # Only an attempt that ended wrote the run's summary. What W&B holds as the summary
            # of one killed before that is copied from its history (the last logged step's
            # tokens and FLOPs), which must not stand for what an earlier attempt recorded.
            for key in attempt["removed"]:
                merged["summary"].pop(key, None)
            merged["summary"].update(attempt["summary"])
    for run in runs.values():
        run_file = run.pop("run_file")
        if run["state"] == "running" and not workdir_in_use(run_file):
            run["state"] = "killed"  # its last attempt wrote no exit record, and nothing runs
    lost = [str(folder) for run_id, folder in unrecorded.items() if run_id not in runs]
    if lost:
        # Neither its name nor its group is known: say so rather than leave it out unseen.
        print(f"launch.registry: warning: {len(lost)} W&B run(s) killed before W&B wrote their "
              f"run record, not in the table: {', '.join(lost)}", file=sys.stderr)
    in_group = [run for run in runs.values() if group is None or run["group"] == group]
    # A run of no job type is a training run of an older version only if it has a run
    # config's sections; another W&B run left in the folder (a notebook's) is no row.
    selected = [run for run in in_group if run["job_type"] == tracking.TRAIN_JOB_TYPE
                or (run["job_type"] == "" and {"model", "train"} <= set(run["config"]))]
    other = [run["name"] or run["id"] for run in in_group
             if run not in selected and run["job_type"] == ""]
    if other:
        print(f"launch.registry: warning: {len(other)} W&B run(s) that are no training run of "
              f"this project, not in the table: {', '.join(sorted(other))}", file=sys.stderr)
    if not in_group and runs:
        groups = sorted({run["group"] for run in runs.values()})
        named = [repr(name) for name in groups if name] + (["none"] if "" in groups else [])
        raise RegistryError(f"no W&B runs of group {group!r} under {wandb_dir}; the groups of "
                            f"those there: {', '.join(named)}")
    if not selected:
        raise RegistryError(
            f"no W&B runs{f' of group {group!r}' if group else ''} under {wandb_dir} (looked for "
            "offline-run-*/run-*.wandb and run-*/run-*.wandb; was the sweep run with "
            "wandb.mode=offline or online?)")
    return selected


def _is_server_error(error: Exception) -> bool:
    """Whether `error` is the W&B API's or the network's (no server, a bad key, an unknown
    project or entity): a line for the user, not a traceback."""
    import wandb

    return isinstance(error, (wandb.errors.Error, OSError, ValueError))


def server_runs(project: str, group: str, entity: str | None = None, api=None) -> list[dict]:
    """The training runs of one group of a W&B project, read through `wandb.Api` (or `api`, an
    object with the same `runs(path, filters=...)`)."""
    path = f"{entity}/{project}" if entity else project
    if api is None and not tracking.wandb_api_key():
        raise RegistryError(
            f"--project={project!r} reads the runs from the W&B server, which needs an API key: "
            "set WANDB_API_KEY or run `wandb login` (or rebuild from the run files with "
            "--wandb-dir)")
    unreachable = tracking.wandb_host_unreachable() if api is None else ""
    if unreachable:  # W&B's client would retry for 20 s before saying so
        raise RegistryError(f"could not read the runs of project {path!r}: the W&B server "
                            f"cannot be reached ({unreachable})")
    try:
        if api is None:
            import wandb  # 1.5 s to import: only for the server form

            api = wandb.Api()
        runs = []
        for run in api.runs(path, filters={"group": group, "jobType": tracking.TRAIN_JOB_TYPE}):
            summary = getattr(run, "summary_metrics", None)
            if not isinstance(summary, dict):
                summary = {key: run.summary[key] for key in run.summary.keys()}
            runs.append({"id": getattr(run, "id", run.name), "name": run.name, "group": run.group,
                         "config": dict(run.config), "summary": dict(summary),
                         "state": run.state})
    except Exception as error:  # W&B's own errors, the network's, a project it does not know
        if not _is_server_error(error):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RegistryError(f"could not read the runs of project {path!r} from the W&B server "
                            f"({type(error).__name__}{': ' + reason if reason else ''})") from None
    if not runs:
        raise RegistryError(f"no W&B runs of group {group!r} in project {path!r}")
    return runs


def planned_values(config: dict) -> dict:
    """What the runner's table shows for a run that wrote no summary: its plan's parameters,
    tokens, steps and FLOPs, from the scale a run logs at the top of its W&B config (`N`,
    `N_total`, `D`, `C`) and its `train.steps`."""
    lookup = results.lookup
    non_embedding, total, tokens, flops_planned = (lookup(config, key)
                                                   for key in ("N", "N_total", "D", "C"))
    steps, start = lookup(config, "train.steps"), lookup(config, "train.init_step") or 0
    planned = {"params": total, "non_embedding_params": non_embedding, "tokens": tokens,
               "steps": steps, "flops": flops_planned,
               "flop_convention": lookup(config, "flop_convention")}
    if total is not None and non_embedding is not None:
        planned["embedding_params"] = total - non_embedding
    if flops_planned is not None and steps:
        planned["study_flops"] = flops_planned * (steps - start) / steps
    return planned


def result_row(run: dict) -> dict:
    """One results.csv row (the runner's columns and values) from a run's W&B summary (its
    sectioned names, `train/final_loss`, mapped back to summary.json's) and config. A run no
    attempt of which ended has no summary of its own (W&B's holds the last logged step's
    `tokens` and FLOPs): its row shows the plan, as the runner's does without a summary.json."""
    summary, config = tracking.from_wandb_names(run["summary"]), run["config"]
    planned = {}
    if not summary.get("status"):
        summary = {key: value for key, value in summary.items() if key not in tracking.X_AXES}
        planned = planned_values(config)
    status = summary.get("status") or ("failed" if run["state"] in FAILED_STATES else "running")
    name = run["name"] or summary.get("name") or config.get("name", "")
    return results.result_row(summary, config, name=name, status=status, planned=planned)


def _size_order(row: dict):
    def number(value):
        return float(value) if isinstance(value, (int, float)) else math.inf

    return number(row["non_embedding_params"]), number(row["tokens"]), str(row["name"])


def result_rows(runs: list[dict]) -> list[dict]:
    """The rows of results.csv for `runs`, smallest model first, then fewest tokens, then name."""
    return sorted((result_row(run) for run in runs), key=_size_order)


def write_results(rows: list[dict], out: pathlib.Path) -> None:
    """Write results.csv atomically (a reader never sees half a table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files.write_csv_atomic(out, RESULT_COLUMNS, rows)


def parse_args(argv: list[str]):
    parser = ArgumentParser(prog="python -m launch.registry",
                            description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wandb-dir",
                        help="a sweep workdir (or any folder) holding local W&B run directories")
    source.add_argument("--project", help="the W&B project the sweep logged to")
    parser.add_argument("--entity", default=None,
                        help="--project: the W&B entity (default: the API's)")
    parser.add_argument("--group", default=None,
                        help="the sweep's name (its W&B group); required with --project")
    parser.add_argument("--out", required=True, help="results.csv to write")
    args = parser.parse_args(argv)
    if empty := empty_option(args):
        parser.error(f"{empty[0]}={empty[1]!r} is not allowed: a value (this one is empty)")
    if args.project is not None and not args.group:
        parser.error("--group (the sweep's name) is required with --project")
    if args.wandb_dir is not None and args.entity is not None:
        parser.error(f"--entity={args.entity!r}: not used here (it is --project's: --wandb-dir "
                     "reads local runs)")
    if args.wandb_dir is not None and not pathlib.Path(args.wandb_dir).is_dir():
        parser.error(f"--wandb-dir={args.wandb_dir!r} is not allowed: a folder ("
                     + ("this is a file)" if pathlib.Path(args.wandb_dir).exists()
                        else "there is none)"))
    args.out = pathlib.Path(args.out)
    args.wandb_dir = pathlib.Path(args.wandb_dir) if args.wandb_dir is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.wandb_dir is not None:
            runs = local_runs(args.wandb_dir, args.group)
        else:
            runs = server_runs(args.project, args.group, args.entity)
    except RegistryError as error:
        print(f"launch.registry: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a run file that cannot be read: a folder, a dangling link
        print(f"launch.registry: error: --wandb-dir={str(args.wandb_dir)!r} is not allowed: "
              f"W&B run files that can be read ({error.filename} cannot: "
              f"{error.strerror or error})", file=sys.stderr)
        return 2
    if args.out.exists() and not (args.out.is_file() or args.out.is_dir()):
        # A device or a pipe (/dev/stdout): the table, renamed over it, would replace it.
        print(f"launch.registry: error: --out={str(args.out)!r} is not allowed: a file path "
              "(this is a device, a pipe or a socket)", file=sys.stderr)
        return 2
    rows = result_rows(runs)
    try:
        write_results(rows, args.out)
    except OSError as error:  # a folder, a path under a file, a read-only place
        above = next((folder for folder in args.out.parents if folder.exists()), None)
        why = (f"{above} is a file" if above is not None and not above.is_dir()
               else error.strerror or error)
        print(f"launch.registry: error: --out={str(args.out)!r} is not allowed: a file path that "
              f"can be written ({why})", file=sys.stderr)
        return 2
    print(f"{len(rows)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

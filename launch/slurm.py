"""`scaling-slurm`: run a sweep (or one run) on a GPU cluster, through SLURM or by hand.

    scaling-slurm --sweep-config configs/sweeps/X.py --workdir runs/X --nodes 2 --gpus-per-node 8
    scaling-slurm --train-config configs/Y.py --workdir runs/Y --nodes 2 --coordinator node0:12345

The first writes an sbatch script (one task per GPU, `srun scaling-sweep ...`, so that
`jax.distributed.initialize()` finds the processes from SLURM's environment) and submits it; the job
requeues itself after a preemption and resumes from its checkpoints. The second, for clusters
without SLURM, prints one `scaling-train` command line per node, with the coordinator given
explicitly; run line i on node i. `--dry-run` prints the script and the `sbatch` command instead of
writing and submitting. `--config.FIELD=VALUE` overrides (of the sweep config, or of the run config)
go to every process's command. Either way the configs are checked first: every planned run of the
sweep (or the one run) is validated exactly as `scaling-train` will, and a bad one exits 2 naming
the run and the field before anything is written or submitted. (With `--coordinator` the nodes'
devices are not known here: of the mesh, only the batch's split among the nodes is checked.)
"""

from __future__ import annotations

# `python -m launch.slurm` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.slurm())

import argparse
import os
import pathlib
import re
import shlex
import sys

from launch.commands import (PREEMPTED_EXIT_CODE, UsageError, base_config_or, execute_checked,
                             exit_code_of)
from scaling import files
from scaling.errors import ArgumentParser, ConfigError, flag_name

PROGRAM = "scaling-slurm"
SECONDS_TO_SAVE = 120  # SIGTERM this long before the time limit: enough to write a checkpoint


def _positive(option: str, value: int) -> None:
    if value is None or value < 1:
        raise UsageError(option, value, "an integer > 0")


def _existing_file(option: str, path: str) -> None:
    from scaling.overrides import config_file  # (ml_collections: imported where it is used)

    if not os.path.isfile(config_file(path)):
        raise UsageError(option, path, "an existing config file")


def _directive_value(option: str, value: str) -> None:
    # sbatch reads an `#SBATCH` line's options split at whitespace, without shell quoting.
    if any(char.isspace() or char in "\"'\\" for char in value):
        raise UsageError(option, value, "a value without whitespace, quotes or backslashes (it "
                                        "goes on an #SBATCH line, which sbatch splits at spaces)")


# sbatch's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds, or no limit.
TIME_LIMIT = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|unlimited|infinite",
                        re.IGNORECASE)
# A coordinator's host: a name or IPv4 address, or an IPv6 address in brackets.
COORDINATOR_HOST = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")
# Options that only the sbatch script reads: an explicit coordinator prints commands instead.
SBATCH_OPTIONS = ("gpus_per_node", "cpus_per_task", "partition", "account", "time", "job_name",
                  "setup", "script")
DEFAULT_JOB_NAME = "scaling"


def program_command(args: argparse.Namespace) -> list[str]:
    """The command every process runs: `scaling-sweep` for a sweep config, `scaling-train` for a run.

    A sweep's runs go one at a time (`--processes 1`): each is one program spanning every process.
    """
    overrides = [f"--config.{override}" for override in args.overrides]
    if args.sweep_config:
        return ["scaling-sweep", "--config", args.sweep_config, "--processes", "1",
                "--workdir", args.workdir, *overrides]
    return ["scaling-train", "--config", args.train_config, "--workdir", args.workdir, *overrides]


def sbatch_script(args: argparse.Namespace, submit_dir: str) -> str:
    """The sbatch script: N nodes × G tasks (one per GPU), requeued when the program exits 75."""
    workdir = os.path.abspath(args.workdir)
    directives = [f"--job-name={args.job_name or DEFAULT_JOB_NAME}", f"--nodes={args.nodes}",
                  f"--ntasks-per-node={args.gpus_per_node}", f"--gpus-per-node={args.gpus_per_node}"]
    if args.cpus_per_task is not None:  # each task's cores, where the cluster confines them
        directives.append(f"--cpus-per-task={args.cpus_per_task}")
    directives += [f"--{name}={value}" for name, value in
                   (("partition", args.partition), ("account", args.account), ("time", args.time))
                   if value]
    directives += [f"--output={workdir}/slurm-%j.out", "--open-mode=append", f"--chdir={submit_dir}",
                   "--requeue", f"--signal=TERM@{SECONDS_TO_SAVE}"]
    lines = ["#!/bin/bash", *(f"#SBATCH {directive}" for directive in directives), ""]
    lines += ["# One task per GPU: jax.distributed.initialize() reads SLURM_NTASKS, SLURM_PROCID,",
              "# SLURM_LOCALID and the node list, so no coordinator is given here.",
              *args.setup,
              f"srun {shlex.join(program_command(args))}",
              "status=$?",
              f"# {PREEMPTED_EXIT_CODE}: stopped by SIGTERM (time limit or preemption) after saving a",
              "# checkpoint; requeued, the job resumes from it in the same workdir.",
              f'if [ "$status" -eq {PREEMPTED_EXIT_CODE} ]; then',
              '  scontrol requeue "$SLURM_JOB_ID"',
              "fi",
              'exit "$status"']
    return "\n".join(lines) + "\n"


def coordinator_commands(args: argparse.Namespace) -> list[list[str]]:
    """One `scaling-train` command per node, process i on node i, all pointed at the coordinator.

    Each process drives every GPU of its node, so there are as many processes as nodes.
    """
    return [program_command(args) + [
        f"--config.distributed.coordinator_address={args.coordinator}",
        f"--config.distributed.num_processes={args.nodes}",
        f"--config.distributed.process_id={process_id}"] for process_id in range(args.nodes)]


def _validate(args: argparse.Namespace) -> None:
    if bool(args.sweep_config) == bool(args.train_config):
        raise UsageError("--sweep-config/--train-config", args.sweep_config or args.train_config,
                         "exactly one of the two")
    if args.sweep_config:
        _existing_file("--sweep-config", args.sweep_config)
    else:
        _existing_file("--train-config", args.train_config)
    if not args.workdir:
        raise UsageError("--workdir", args.workdir, "a folder on storage every node shares")
    _positive("--nodes", args.nodes)
    if args.coordinator is None:
        _positive("--gpus-per-node", args.gpus_per_node)
        if args.cpus_per_task is not None:
            _positive("--cpus-per-task", args.cpus_per_task)
        for option in ("job_name", "partition", "account", "time", "script"):
            value = getattr(args, option)
            if value is not None and not value.strip():  # given, but would set nothing
                raise UsageError(flag_name(option), value, "a non-empty value (or leave it out)")
            if value is not None and option != "script":
                _directive_value(flag_name(option), value)
        if args.script is not None and os.path.isdir(args.script):  # a dry run refuses it too
            raise UsageError("--script", args.script, "a file to write (this path is a folder)")
        if args.time is not None and not TIME_LIMIT.fullmatch(args.time):
            raise UsageError("--time", args.time, "a time limit sbatch reads: MINUTES, "
                                                  "HOURS:MINUTES:SECONDS, DAYS-HOURS[:MINUTES"
                                                  "[:SECONDS]] or UNLIMITED")
        _directive_value("--workdir", os.path.abspath(args.workdir))
        files.check_workdir(args.workdir, create=False)  # the script is written there
        _directive_value("the current directory (the job's --chdir)", os.getcwd())
        return
    if args.sweep_config:
        raise UsageError("--coordinator", args.coordinator,
                         "used with --train-config (one run); sweeps go through sbatch")
    for option in SBATCH_OPTIONS:
        value = getattr(args, option)
        if value not in (None, []):
            raise UsageError(flag_name(option), value[0] if isinstance(value, list) else value,
                             "used without --coordinator (it goes into the sbatch script; "
                             "--coordinator prints commands to run by hand)")
    host, _, port = args.coordinator.rpartition(":")
    if (not COORDINATOR_HOST.fullmatch(host) or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise UsageError("--coordinator", args.coordinator, "HOST:PORT with a host name or "
                         "address (letters, digits, '.', '-'; an IPv6 address in [ ]) and a port "
                         "in 1..65535")


def check_configs(args: argparse.Namespace) -> None:
    """Validate what the processes will run, as `scaling-train` will; ConfigError names the run
    and the field."""
    # Imported here: they import JAX, which the argument checks above do not need.
    from scaling import distributed, memory

    # The devices every run spans: each node's GPUs (not known with --coordinator alone, which
    # runs one process a node, for one run).
    devices = args.nodes * args.gpus_per_node if args.gpus_per_node else None
    try:
        if args.sweep_config:
            from launch.sweep import check_meshes, load_plan

            runs = load_plan(args.sweep_config, args.overrides)[2]
            if devices:  # one process per GPU
                check_meshes(runs, devices, processes=devices)
            print(f"{PROGRAM}: {args.sweep_config}: {len(runs)} planned runs, every config valid",
                  file=sys.stderr)
        else:
            from scaling.train import load_and_validate

            config = load_and_validate(args.train_config, args.overrides)
            if devices:
                memory.check_mesh(config, devices, processes=devices)
            else:
                distributed.check_split_among(config, args.nodes)
    except ConfigError as error:  # the file itself (a variant it lacks): named as given here
        if args.sweep_config:
            raise error.as_option(base_config_or("--sweep-config", error,
                                                 args.sweep_config)) from None
        raise error.as_option("--train-config") from None


def _launch(args: argparse.Namespace) -> int:
    _validate(args)
    check_configs(args)
    if args.coordinator is not None:
        for command in coordinator_commands(args):
            print(shlex.join(command))
        return 0
    script = sbatch_script(args, os.getcwd())
    script_path = args.script or os.path.join(args.workdir,
                                              f"{args.job_name or DEFAULT_JOB_NAME}.sbatch")
    if args.dry_run:
        print(script, end="")
    else:
        files.check_workdir(args.workdir)
        if os.path.isdir(script_path):
            raise UsageError("--script", script_path, "a file to write (this path is a folder)")
        # An explicit --script may name another folder: made here, or refused in one line.
        try:
            files.check_workdir(os.path.dirname(os.path.abspath(script_path)))
        except ConfigError as error:
            raise UsageError("--script", script_path, f"a file in a folder that exists or can be "
                             f"made (its folder {error.value}: {error.allowed})") from None
        try:
            files.write_text_atomic(pathlib.Path(script_path), script)
        except OSError as error:  # a name longer than the file system allows, no permission
            option, value = (("--script", args.script) if args.script else
                             ("--job-name", args.job_name) if args.job_name else
                             ("--workdir", args.workdir))
            raise UsageError(option, value, f"a value that makes a script file this user can "
                                            f"write ({script_path}: {error.strerror or error})"
                             ) from None
    execute_checked(["sbatch", script_path], dry_run=args.dry_run)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n")[0],
                            epilog="--config.FIELD=VALUE options after these override fields "
                                   "of --sweep-config (e.g. --config.overrides.optim.grad_clip=0.5) "
                                   "or of --train-config (e.g. --config.optim.lr=1e-3), for "
                                   "every process.")
    parser.add_argument("--sweep-config", help="sweep config: every process runs scaling-sweep")
    parser.add_argument("--train-config", help="run config: every process runs scaling-train")
    parser.add_argument("--workdir", required=True, help="output folder on storage all nodes share")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int,
                        help="GPUs per node (one task each); required unless --coordinator")
    parser.add_argument("--cpus-per-task", type=int,
                        help="CPU cores per task (per GPU), e.g. the node's cores / its GPUs "
                             "(default: SLURM's, often 1 where cores are confined)")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--time", help="time limit, e.g. 24:00:00")
    parser.add_argument("--job-name", help=f"default: {DEFAULT_JOB_NAME}")
    parser.add_argument("--setup", action="append", default=[],
                        help="a shell line run before srun, e.g. 'source .venv/bin/activate' "
                             "(repeatable)")
    parser.add_argument("--script", help="where to write the sbatch script "
                                         "(default: WORKDIR/JOB_NAME.sbatch)")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0: print one scaling-train "
                                              "command per node instead of submitting")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the script and the sbatch command; write and submit nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    from scaling.overrides import split_argv

    rest, overrides = split_argv(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(rest)
    args.overrides = overrides
    return exit_code_of(PROGRAM, lambda: _launch(args))


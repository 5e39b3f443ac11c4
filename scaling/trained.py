"""A trained run read back from its workdir: config, model, tokenizer and parameters.

What `scaling-sample`, `scaling-eval` and `scaling-attention` share. The run's own
`summary.json` gives the config (the full config dict, laid over today's defaults) and the
resolved model (for a run killed before it ever stopped cleanly, the record saved with its newest
checkpoint, which holds both); the parameters come from the newest readable checkpoint through
the same code as resume (`Checkpointer.restore_latest` onto the state `build_program` lays out),
on the run's mesh or on one device. Anything wrong with the workdir raises `RunError`, whose
message is one line for the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import sys
from typing import Any, Iterator

import jax
import ml_collections

from scaling import interrupts, parallel, status
from scaling.checkpoint import RUN_CHECKPOINT, Checkpointer, committed_steps
from scaling.config import ModelConfig, default_config
from scaling.data import objectives, tokenizers
from scaling.errors import ConfigError, IncompatibleCheckpoint
from scaling.step import build_program

EXIT_BAD_INPUT = 2


class RunError(ValueError):
    """The workdir or the request cannot be used; the message says what is wrong and what is
    allowed."""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A restored run. `program` holds its mesh, rules and jitted eval step."""

    workdir: pathlib.Path
    summary: dict
    config: ml_collections.ConfigDict
    model: ModelConfig
    step: int
    params: Any
    program: Any

    def context(self):
        """Mesh and logical-axis rules to run the model under."""
        return self.program.context()


def read_summary(workdir: str | pathlib.Path) -> dict:
    """The run's summary.json; for a run killed before it wrote one, what its newest checkpoint
    records instead (the config and the resolved model). RunError if the workdir holds neither."""
    if not str(workdir).strip():  # an unset shell variable: not this folder
        raise RunError(f"--workdir={str(workdir)!r}: empty; pass a scaling-train workdir")
    path = pathlib.Path(workdir) / "summary.json"
    if pathlib.Path(workdir).is_file():
        raise RunError(f"--workdir {workdir}: a file, not a folder; pass a scaling-train workdir")
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        check_not_sweep(pathlib.Path(workdir))
        recorded = newest_checkpoint_record(pathlib.Path(workdir))
        if recorded is not None and "config" in recorded:
            why = summary_problem(recorded) or (
                None if isinstance(recorded.get("step"), int) else "no step")
            if why:
                raise RunError(f"--workdir {workdir}: no summary.json, and the record of its "
                               f"newest checkpoint is unreadable ({why})") from None
            return {"name": recorded["config"].get("name"), "config": recorded["config"],
                    "model": recorded["model"], "total_steps": recorded.get("total_steps"),
                    "steps": recorded["step"],
                    tokenizers.RECORD_FIELD: recorded.get(tokenizers.RECORD_FIELD)}
        if committed_steps(pathlib.Path(workdir)):  # checkpoints that predate their config
            raise RunError(f"--workdir {workdir}: no summary.json yet, though it holds "
                           "checkpoints (a run writes it when it stops: this one is training, or "
                           "was killed); rerun its scaling-train command to resume, which writes "
                           "it") from None
        if not pathlib.Path(workdir).is_dir():
            raise RunError(f"--workdir {workdir}: no such folder (a scaling-train workdir)") \
                from None
        raise RunError(f"--workdir {workdir}: no summary.json (not a scaling-train workdir, or "
                       "training has not started there)") from None
    except (OSError, ValueError) as error:
        raise RunError(f"--workdir {workdir}: summary.json is unreadable ({error})") from None
    why = summary_problem(summary)
    # A run that stopped before it resolved its model saved no checkpoint either: callers say so.
    if why and not (isinstance(summary, dict) and not summary.get("model")
                    and not committed_steps(pathlib.Path(workdir))):
        raise RunError(f"--workdir {workdir}: summary.json is unreadable ({why})")
    return summary


# The resolved model's sizes, which every summary and checkpoint record holds (the other fields
# keep today's defaults when a record predates them): without them no model can be built.
MODEL_SIZE_FIELDS = ("num_layers", "d_model", "num_heads", "num_kv_heads", "head_dim", "d_ff",
                     "vocab_size", "max_seq_len")


def summary_problem(summary) -> str | None:
    """What makes a parsed summary (or checkpoint record) unusable: not a JSON object, a config
    that is not one, or a `model` entry without the resolved model's sizes; None if usable."""
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not an object"
    if summary.get("config") is not None and not isinstance(summary["config"], dict):
        return "its config is not an object"
    model = summary.get("model")
    if not isinstance(model, dict):
        return "no model entry" if model is None else "its model entry is not an object"
    bad = [name for name in MODEL_SIZE_FIELDS
           if not (isinstance(model.get(name), int) and not isinstance(model.get(name), bool)
                   and model[name] >= 1)]
    if bad:
        return f"its model entry lacks {', '.join(bad)} (positive integers)"
    return None


def check_not_sweep(workdir: pathlib.Path) -> None:
    """RunError naming the runs of a scaling-sweep workdir (its runs are under `runs/<name>`)
    when `workdir` is one."""
    if not (workdir / "sweep.json").is_file():
        return
    runs = sorted(entry.name for entry in (workdir / "runs").glob("*")
                  if (entry / "summary.json").is_file() or (entry / "checkpoints").is_dir())
    shown = ", ".join(runs[:3]) + (f", ... ({len(runs)} runs)" if len(runs) > 3 else "")
    raise RunError(f"--workdir {workdir}: a scaling-sweep workdir; pass one of its runs, "
                   f"{workdir / 'runs'}/<name>" + (f" ({shown})" if runs else ""))


def newest_checkpoint_record(workdir: pathlib.Path) -> dict | None:
    """The JSON record saved with the newest checkpoint whose record can be read (None if
    none): read as a file, so a run that is still saving there is left alone."""
    for step in reversed(committed_steps(workdir)):
        try:
            return json.loads((workdir / "checkpoints" / str(step) / "meta" / "metadata")
                              .read_text())
        except (OSError, ValueError):
            continue
    return None


def _overlay(target: ml_collections.ConfigDict, values: dict) -> None:
    """Set the fields of `values` that `target` knows, recursively (fields a later version
    removed are ignored; fields it added keep their defaults)."""
    for key, value in values.items():
        if key not in target:
            continue
        if isinstance(target[key], ml_collections.ConfigDict) and isinstance(value, dict):
            _overlay(target[key], value)
        elif not isinstance(target[key], ml_collections.ConfigDict):
            target[key] = tuple(value) if isinstance(target[key], tuple) else value


def run_config(summary: dict) -> ml_collections.ConfigDict:
    """The run's config: its recorded config dict laid over the defaults."""
    config = default_config()
    _overlay(config, summary.get("config") or {})
    return config


def run_model(summary: dict) -> ModelConfig:
    """The run's resolved model, as recorded in its summary."""
    recorded = summary.get("model") or {}
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{name: value for name, value in recorded.items() if name in known})


def check_text(flag: str, text: str | None) -> None:
    """RunError when a command-line text is not UTF-8 (Python keeps the bytes it cannot decode
    as lone surrogates, which no tokenizer encodes)."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError as error:
        bad = ord(text[error.start])
        shown = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"U+{bad:04X}"
        raise RunError(f"{flag}: not UTF-8 text ({shown} at character {error.start}); pass "
                       "UTF-8 text") from None


def check_checkpoint(workdir: pathlib.Path, summary: dict) -> None:
    """RunError unless the workdir holds at least one checkpoint."""
    if not committed_steps(workdir):
        raise RunError(f"--workdir {workdir}: no checkpoint in {workdir / 'checkpoints'} "
                       f"(run status: {summary.get('status', 'unknown')}); train it first with "
                       "scaling-train, or pass the workdir of a run that saved one")


def load(workdir: str | pathlib.Path, *, single_device: bool = False,
         batches: bool = True) -> TrainedRun:
    """Restore the newest checkpoint of the run in `workdir`, its parameters laid out on the run's
    mesh (`config.mesh` over this machine's devices) or on the first device. `batches=False` for a
    command that runs none of the run's batches (`build_program`). RunError when there is no
    checkpoint it can read, or when the device runs out of memory restoring it."""
    summary = read_summary(workdir)
    workdir = pathlib.Path(workdir)
    check_checkpoint(workdir, summary)
    config = run_config(summary)
    model = run_model(summary)
    try:
        if single_device:
            single = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1})
            mesh = parallel.make_mesh(single, devices=jax.devices()[:1])
        else:
            mesh = parallel.make_mesh(config.mesh)
        total_steps = int(summary.get("total_steps") or config.train.steps or 1)
        program = build_program(config, model, total_steps, mesh, batches=batches)
    except ConfigError as error:
        raise RunError(f"the run's layout does not fit this machine's {jax.device_count()} "
                       f"devices ({error}); pass --single-device") from None
    # Read-only: the run may still be training there, with a save in flight.
    checkpointer = Checkpointer(workdir, keep=config.checkpoint.keep, async_save=False,
                                read_only=True, owner=RUN_CHECKPOINT)
    spread = "; without --single-device it is spread over the run's mesh" if single_device else ""
    try:
        with program.context(), out_of_memory_is(
                f"--workdir {workdir}: the device ran out of memory restoring its checkpoint "
                f"(another process may hold the device's memory){spread}"):
            restored = checkpointer.restore_latest(program.abstract_state, model)
    except IncompatibleCheckpoint as error:
        raise RunError(f"--workdir {workdir}: {error}") from None
    finally:
        checkpointer.close()
    if restored is None:
        raise RunError(f"--workdir {workdir}: no readable checkpoint in {checkpointer.directory}")
    state, meta = restored
    return TrainedRun(workdir=workdir, summary=summary, config=config, model=model,
                      step=int(meta["step"]), params=state["params"], program=program)


def tokenizer_of(config: ml_collections.ConfigDict, summary: dict | None = None):
    """The run's tokenizer (bytes, its SentencePiece model file, or the one trained for it).
    RunError when it cannot be loaded, or when it is not the one the run trained with (its
    fingerprint in `summary`, where recorded): a corpus that changed since has another trained
    SentencePiece model, a `data.spm_model` file can be replaced. A model trained for the run
    is read from the cache by its fingerprint where it is there: the corpus it was trained on
    may have changed since."""
    trained_with = (summary or {}).get(tokenizers.RECORD_FIELD)
    try:
        if trained_with and config.data.tokenizer == "sentencepiece" and not config.data.spm_model:
            tokenizer = tokenizers.cached_sentencepiece(config.data, trained_with)
            if tokenizer is not None:
                return tokenizer
        tokenizer = tokenizers.tokenizer_for(config.data)
    except (OSError, ConfigError, RuntimeError) as error:  # RuntimeError: SentencePiece's own
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RunError(f"the run's tokenizer ({config.data.tokenizer}) cannot be loaded: "
                       f"{reason}") from None
    if trained_with and tokenizer.fingerprint != trained_with:
        where = (f"data.spm_model={config.data.spm_model!r}" if config.data.spm_model else
                 f"the SentencePiece model trained on {config.data.dataset}:"
                 f"{config.data.train_split}, whose files changed since,")
        raise RunError(f"the run's tokenizer is not the one it trained with: {where} is now "
                       f"{tokenizer.fingerprint[:28]}…, the run's was {trained_with[:28]}…; its "
                       "ids would be read as other text")
    return tokenizer


def objective_of(config: ml_collections.ConfigDict, tokenizer, data=None):
    """The run's objective as its loader made it (`objectives.for_config`: its special tokens
    after the tokenizer's ids), on `data` (default: the run's own `config.data`)."""
    return objectives.for_config(config.data if data is None else data, config.train,
                                 int(tokenizer.vocab_size), int(tokenizer.eod_id))


def special_tokens(config: ml_collections.ConfigDict, tokenizer) -> objectives.SpecialTokens | None:
    """The special tokens the run's objective placed after the tokenizer's ids; None for
    causal_lm, which has none."""
    objective = objective_of(config, tokenizer)
    return None if objective.name == "causal_lm" else objective.special


def start_token(config: ml_collections.ConfigDict, tokenizer, layout: str) -> int:
    """The token a sequence starts from: for an encoder–decoder's decoder the objective's BOS
    (the first decoder input of every training batch), else end-of-document."""
    if layout == "encoder_decoder":
        return special_tokens(config, tokenizer).bos
    return int(tokenizer.eod_id)


def special_name(token: int, special: objectives.SpecialTokens | None) -> str:
    """The visible name of an id past the tokenizer's vocabulary (`<unused_N>` for an id no
    special token holds, as in a model vocabulary set larger than the tokenizer's)."""
    if special is None:
        return f"<unused_{token}>"
    names = {special.pad: "<pad>", special.mask: "<mask>", special.bos: "<bos>"}
    if token in names:
        return names[token]
    if special.sentinel(0) <= token < special.vocab_size:
        return f"<sentinel_{token - special.sentinel(0)}>"
    return f"<unused_{token}>"


# What a special token's name looks like (`special_name`'s names): matched in command-line text of
# a run with special tokens, and refused there when it names none of the run's.
SPECIAL_NAME = re.compile(r"<(?:pad|mask|bos|sentinel_[0-9]+)>")


def special_ids(special: objectives.SpecialTokens | None) -> dict[str, int]:
    """{name: id} for each of the run's special tokens, under the names `special_name` prints
    (`<pad>`, `<mask>`, `<bos>`, `<sentinel_0>`, ...); empty for a run without (causal_lm)."""
    if special is None:
        return {}
    return {special_name(token, special): token for token in range(special.base,
                                                                    special.vocab_size)}


def encode_text(flag: str, text: str, tokenizer,
                special: objectives.SpecialTokens | None) -> list[int]:
    """The ids of command-line `text`: the names of the run's special tokens (as `special_name`
    prints them, e.g. `<sentinel_0>`) become those tokens, the text between them is encoded by the
    tokenizer, each piece alone. A run without special tokens (causal_lm) encodes all of `text`
    as before, names included. RunError naming `flag` when the text holds a special-token-like
    name the run does not have (a sentinel past its count, or any sentinel for an objective
    without them)."""
    names = special_ids(special)
    if not names:
        return list(tokenizer.encode(text))
    ids, start = [], 0
    for match in SPECIAL_NAME.finditer(text):
        name = match.group()
        if name not in names:
            sentinels = special.num_sentinels
            allowed = "<pad>, <mask>, <bos>" + (
                " (no sentinels)" if not sentinels else ", <sentinel_0>" if sentinels == 1
                else f", <sentinel_0> to <sentinel_{sentinels - 1}>")
            raise RunError(f"{flag}: {name} at character {match.start()} is not a special token "
                           f"of this run; its special tokens are {allowed}")
        if match.start() > start:
            ids += tokenizer.encode(text[start:match.start()])
        ids.append(names[name])
        start = match.end()
    if start < len(text):
        ids += tokenizer.encode(text[start:])
    return ids


@contextlib.contextmanager
def out_of_memory_is(message: str) -> Iterator[None]:
    """The device running out of memory inside the block becomes RunError(message); any other
    runtime error passes through."""
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        raise RunError(message) from None


def interrupted(program: str) -> int:
    """Print `<program>: interrupted` to stderr; return 130, as scaling-train exits on Ctrl-C
    (75 after a SIGTERM, `interrupts.exit_code`)."""
    interrupts.report(f"{program}: interrupted")
    return interrupts.exit_code()


def fail(program: str, message: str) -> int:
    """Print `<program>: error: <message>` on one line to stderr; return exit code 2."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_BAD_INPUT

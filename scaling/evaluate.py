"""`scaling-eval`: a trained run's held-out loss on any dataset and split the loader reads.

    scaling-eval --workdir runs/tiny                                   # the run's own eval batches
    scaling-eval --workdir runs/tiny --whole-split                     # every window of the split
    scaling-eval --workdir runs/tiny --config.data.dataset=tiny_shakespeare --config.data.eval_split=test

The text is tokenized with the run's own tokenizer and cut into windows of the run's
`data.seq_len` exactly as training reads its eval split, and scored on the run's own
`train.objective` (next tokens, masked tokens, dropped spans, or the targets of seq2seq pairs) by
the trainer's eval step: by default the batches of the run's final evaluation
(`train.final_eval_batches`, else `train.eval_batches`), so that on the run's own eval split
this reproduces its final eval loss, for every objective; with `--whole-split` every whole window
(or pair) of the split once. Either way the loss is averaged over target tokens, as the trainer
averages its eval batches. Writes `<workdir>/eval/<dataset>-<split>.json` (data fields that
the dataset and objective read, set otherwise than the run's own, such as `data.files` of
`text_files`, add a hash of them to the name; `--batches N`
adds `-<N>batches`, `--whole-split` `-whole`) with `loss` (mean cross-entropy, nats per target
token) and `bits_per_byte` (total bits over the UTF-8 bytes of the scored targets, comparable
across tokenizers; null, with `bits_per_byte_note` saying why, where the objective scores special
tokens that stand for no text, as span_corruption's sentinels). Only `--config.data.*` fields can be overridden, and not the tokenizer. Bad input
prints one line `scaling-eval: error: ...`, exit 2.
"""

from __future__ import annotations

# `python -m scaling.evaluate` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.evaluate())

import argparse
import functools
import hashlib
import json
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from scaling import files, interrupts
from scaling import model as model_lib
from scaling import parallel, scripts, step, trained
from scaling.config import DataConfig, check_objective
from scaling.data import loader, objectives, packing, pairs, sources, text_files, tokenizers
from scaling.data import validate_data_config
from scaling.errors import ArgumentParser, ConfigError
from scaling.fields import check_section
from scaling.overrides import apply_overrides, split_argv
from scaling.tracking import format_duration

PROGRAM = "scaling-eval"
PROGRESS_SECONDS = 10.0  # between progress lines of a long evaluation (stderr)
# The model was built with these (data.document_mask is the model's own document_mask).
FIXED_DATA_FIELDS = ("tokenizer", "vocab_size", "spm_model", "seq_len", "document_mask")
# Fields that say where the data is cached or how fast it is read, or that only training reads:
# they do not change what an evaluation scores.
UNSCORED_DATA_FIELDS = ("cache_dir", "tfds_data_dir", "prefetch", "train_split")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:

    rest, overrides = split_argv(argv)
    parser = ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0],
        epilog="The run's own eval split is scored unless --config.data.FIELD=VALUE options say "
               "otherwise, e.g. --config.data.dataset=tiny_shakespeare "
               "--config.data.eval_split=test, or --config.data.dataset=text_files "
               "--config.data.files=notes/; not " + ", ".join(f"data.{name}" for name in
                                                              FIXED_DATA_FIELDS)
               + " (the model's own). The result is printed and written to "
               "WORKDIR/eval/<dataset>-<split>[-...].json.")
    parser.add_argument("--workdir", required=True, help="a scaling-train workdir with a checkpoint")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--batches", type=int, default=None,
                        help="eval batches to read (default: those of the run's final "
                             "evaluation, train.final_eval_batches or train.eval_batches)")
    amount.add_argument("--whole-split", action="store_true",
                        help="read every whole window (seq2seq: pair) of the split once")
    parser.add_argument("--single-device", action="store_true",
                        help="run on one device instead of the run's mesh")
    return parser.parse_args(rest), overrides


def eval_set_name(dataset: str, split: str) -> str:
    """A file-name-safe name for (dataset, split), e.g. `c4_en-validation_-10pct`."""
    split_name = split.replace("[", "_").replace("]", "").replace(":", "-").replace("%", "pct")
    return f"{dataset.replace('/', '_')}-{split_name}"


def unread_data_fields(data_cfg, objective: str) -> set[str]:
    """The `data.*` fields that nothing reads for `data_cfg`'s dataset under `objective`: files
    outside text_files and text_pairs, feature where the text is not a TFDS feature, and the
    fields of the other objectives (`objectives.OBJECTIVE_FIELDS`)."""
    unread = {field.removeprefix("data.") for name, fields in objectives.OBJECTIVE_FIELDS.items()
              if name != objective for field in fields if field.startswith("data.")}
    if data_cfg.dataset not in ("text_files", "text_pairs"):
        unread.add("files")
    if data_cfg.dataset in (*sources.EMBEDDED_DATASETS, "text_pairs") or data_cfg.source_feature:
        unread.add("feature")
    return unread


def data_overrides(run_data, data_cfg, objective: str) -> dict:
    """The `data.*` fields besides dataset and eval_split that `data_cfg` sets otherwise than the
    run's own `run_data` and that change what is scored (`data.files`, `data.feature`, ...) for
    its dataset under `objective` (`unread_data_fields`). `data.files` is compared and given with
    each entry as an absolute path, so that `notes/` typed in two folders names two evaluations,
    and `notes/` and its absolute path one."""

    def value(data, name):
        if name == "files" and data.get(name):
            return text_files.absolute_entries(data[name])
        return data.get(name)

    ignored = {"dataset", "eval_split", *UNSCORED_DATA_FIELDS,
               *unread_data_fields(data_cfg, objective)}
    return {name: value(data_cfg, name) for name in sorted(data_cfg.keys())
            if name not in ignored and value(data_cfg, name) != value(run_data, name)}


def eval_file_name(data_cfg, overrides: dict, batches: int | None = None,
                   whole_split: bool = False) -> str:
    """`<dataset>-<split>` (`eval_set_name`), followed for `data_overrides` by `-` and 8 hex
    digits of their hash, so that evaluations of other files or features of one dataset and split
    are written beside each other; then `-<N>batches` for `--batches N` or `-whole` for
    `--whole-split`, so that neither replaces the evaluation on the run's final-eval batches
    (the one `scaling-sweep --eval` reports)."""
    name = eval_set_name(data_cfg.dataset, data_cfg.eval_split)
    if overrides:
        text = json.dumps(overrides, sort_keys=True, default=str)
        name += f"-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    if whole_split:
        return f"{name}-whole"
    return f"{name}-{batches}batches" if batches is not None else name


def eval_data_config(run_config, overrides: list[str]):
    """The run's data config with `overrides` (data.* fields only) applied and validated."""

    config = run_config.copy_and_resolve_references()
    for item in overrides:
        field = item.partition("=")[0]
        section, _, name = field.partition(".")
        if section != "data" or not name:
            raise trained.RunError(f"--config.{field}: only --config.data.* fields can be "
                                   "overridden (the model and its checkpoint are the run's)")
        if name in FIXED_DATA_FIELDS:
            raise trained.RunError(f"--config.{field}: the run's {name} is fixed (the model was "
                                   f"trained with data.{name}={run_config.data[name]!r})")
    try:
        apply_overrides(config, overrides)
        # Each field's declared rule, as scaling-train checks it (data.target_len >= 0, ...).
        check_section(DataConfig, config.data, "data.")
        validate_data_config(config.data, training=False)  # any split, the training one too
        check_objective(config)  # e.g. seq2seq reads pairs, the other objectives a corpus
    except ConfigError as error:
        raise trained.RunError(str(error)) from None
    return config.data


def token_byte_lengths(tokenizer) -> np.ndarray:
    """int64 [vocab_size]: the UTF-8 bytes each token id stands for (0 for end-of-document and
    other control ids)."""

    lengths = np.zeros(tokenizer.vocab_size, np.int64)
    if isinstance(tokenizer, tokenizers.ByteTokenizer):
        lengths[:256] = 1
        return lengths
    processor = tokenizer.processor
    for token in range(processor.get_piece_size()):
        if processor.is_byte(token):
            lengths[token] = 1
        elif not (processor.is_control(token) or processor.is_unknown(token)):
            lengths[token] = len(processor.id_to_piece(token).replace("\u2581", " ").encode("utf-8"))
    return lengths


def _read(data_cfg, read):
    """`read()`, its failures to read the dataset as RunError."""
    import tensorflow_datasets as tfds

    where = f"dataset {data_cfg.dataset!r} split {data_cfg.eval_split!r}"
    try:
        return read()
    except ConfigError as error:
        raise trained.RunError(str(error)) from None
    except (sources.DatasetUnavailableError, tfds.core.registered.DatasetNotFoundError,
            OSError, KeyError, UnicodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise trained.RunError(f"{where} cannot be read: {reason}") from None


def _check_vocab(tokenizer, vocab_size: int) -> None:
    if tokenizer.vocab_size > vocab_size:
        raise trained.RunError(f"the run's tokenizer has {tokenizer.vocab_size} ids, its model "
                               f"only {vocab_size}")


def read_eval_pairs(data_cfg, tokenizer, objective, vocab_size: int) -> dict:
    """The seq2seq pairs of `data_cfg.eval_split`, encoded as the run's loader encodes them
    (`pairs.encode_pairs`); RunError when the dataset cannot be read or holds no pair."""
    read = _read(data_cfg, lambda: pairs.read_pairs(data_cfg, data_cfg.eval_split))
    _check_vocab(tokenizer, vocab_size)
    if not read:
        raise trained.RunError(f"dataset {data_cfg.dataset!r} split {data_cfg.eval_split!r} "
                               "holds no pair")
    return pairs.encode_pairs(read, tokenizer, objective)


def read_eval_split(data_cfg, tokenizer, vocab_size: int):
    """The token cache of `data_cfg.eval_split` under the run's tokenizer; RunError when the
    dataset cannot be read, is empty, or is shorter than one sequence."""
    where = f"dataset {data_cfg.dataset!r} split {data_cfg.eval_split!r}"
    cache = _read(data_cfg,
                  lambda: loader.token_cache(data_cfg, data_cfg.eval_split, tokenizer))
    _check_vocab(tokenizer, vocab_size)
    if cache.num_tokens - 1 < data_cfg.seq_len:
        raise trained.RunError(f"{where} holds {cache.num_tokens} tokens, fewer than one sequence "
                               f"of the run's data.seq_len={data_cfg.seq_len} + 1")
    return cache


def _whole_rows(count: int, batch_size: int):
    """(row indices, weights) of every row in [0, count) once, in batches of `batch_size`; the
    last batch is filled up with copies of its first row, marked in `weights` (0 = not counted)."""
    for first in range(0, count, batch_size):
        rows = np.arange(first, min(first + batch_size, count))
        weights = np.ones(batch_size, np.float32)
        weights[len(rows):] = 0.0
        yield np.concatenate([rows, np.full(batch_size - len(rows), rows[0])]), weights


def whole_split_batches(cache, batch_size: int, seq_len: int, eod_id: int,
                        objective: objectives.Objective | None = None, seed: int = 0):
    """Every whole window of the split once, in batches of `batch_size` rows, in the form
    `objective` trains on (causal_lm without one; a window's randomness drawn from its index as
    for held-out rows); with each batch its row `weights` (see `_whole_rows`)."""
    windows = packing.num_windows(cache.num_tokens, seq_len)
    for rows, weights in _whole_rows(windows, batch_size):
        batch = packing.make_batch(packing.read_windows(cache.tokens, rows * seq_len, seq_len),
                                   eod_id)
        if objective is not None:
            batch = objective.apply(batch, objective.row_keys(rows, seed, held_out=True))
        yield batch, weights


def whole_split_pairs(encoded: dict, batch_size: int, special: objectives.SpecialTokens):
    """Every seq2seq pair of the split once, in batches of `batch_size` with their row weights."""
    for rows, weights in _whole_rows(len(encoded["targets"]), batch_size):
        yield pairs.pair_batch(encoded, rows, special), weights


def _batch_nats(params, batch, weights_B, *, model):
    """(Σ cross-entropy in nats, target tokens counted) of one batch as the trainer's eval step
    scores it (`step.eval_batch`: the objective's targets under its loss mask), rows weighted by
    `weights_B`."""
    mask_BxL = batch.get("loss_mask", jnp.ones_like(batch["targets"])).astype(jnp.float32)
    batch = {**batch, "loss_mask": mask_BxL * weights_B[:, None]}
    scored = step.eval_batch({"params": params}, batch, net=model_lib.Transformer(model),
                             model=model)
    return scored["loss"] * scored["target_tokens"], scored["target_tokens"]


def _batches(args, run_config, data_cfg, tokenizer, objective, vocab_size: int):
    """(batch, row weights) pairs to score, read as `args` ask, and how many there are."""
    batch_size, seed = run_config.train.batch_size, run_config.seed
    count = (args.batches or run_config.train.final_eval_batches
             or run_config.train.eval_batches)
    if objective.name == "seq2seq":
        encoded = read_eval_pairs(data_cfg, tokenizer, objective, vocab_size)
        if args.whole_split:
            return (whole_split_pairs(encoded, batch_size, objective.special),
                    -(-len(encoded["targets"]) // batch_size))
        # The pair loader's own eval batching, over this split (it stands in for both splits).
        split_loader = pairs.PairLoader(encoded, encoded, tokenizer, objective,
                                        batch_size=batch_size, seed=seed, process_index=0,
                                        process_count=1, prefetch=0)
    else:
        cache = read_eval_split(data_cfg, tokenizer, vocab_size)
        if args.whole_split:
            return (whole_split_batches(cache, batch_size, data_cfg.seq_len, tokenizer.eod_id,
                                        objective, seed),
                    -(-packing.num_windows(cache.num_tokens, data_cfg.seq_len) // batch_size))
        # The loader's own eval batching, over this split (it stands in for both splits).
        split_loader = loader.Loader(cache, cache, tokenizer, seq_len=data_cfg.seq_len,
                                     batch_size=batch_size, seed=seed, prefetch=0,
                                     objective=objective)
    field = ("--batches" if args.batches else "train.final_eval_batches"
             if run_config.train.final_eval_batches else "train.eval_batches")
    if cut := split_loader.eval_cut(field, count):  # no window is scored twice
        print(f"note: {cut}", file=sys.stderr, flush=True)
    return (((batch, np.ones(batch_size, np.float32))
             for batch in split_loader.iter_eval_batches(count)),
            split_loader.eval_batch_count(count))


def evaluate(args: argparse.Namespace, overrides: list[str]) -> tuple[pathlib.Path, dict]:
    """Evaluate per `args`; returns the JSON file written and its record."""
    summary = trained.read_summary(args.workdir)  # (an empty one is no folder: said so)
    workdir = pathlib.Path(args.workdir)
    run_config = trained.run_config(summary)
    model = trained.run_model(summary)
    data_cfg = eval_data_config(run_config, overrides)
    overridden = data_overrides(run_config.data, data_cfg, run_config.train.objective)
    if args.batches is not None and args.batches < 1:
        raise trained.RunError(f"--batches {args.batches}: must be an integer >= 1")
    trained.check_checkpoint(workdir, summary)  # before any data is read
    out_dir = workdir / "eval"
    try:  # before any data is read or any batch scored: found only at the end, it cost them
        files.check_folder_can_be_made(out_dir)  # made with the result: a failure leaves none
    except OSError as error:  # "eval" a file, a read-only mount
        raise trained.RunError(f"{out_dir} cannot be written ({error.strerror or error})") from None
    tokenizer = trained.tokenizer_of(run_config, summary)
    # The objective's batches exactly as the run's loader makes them (its special tokens after
    # the tokenizer's ids).
    objective = trained.objective_of(run_config, tokenizer, data=data_cfg)
    # data.target_len sets the decoder's length, which a learned position table bounds.
    if model.position == "learned" and objective.shapes.decoder > model.max_seq_len:
        raise trained.RunError(
            f"--config.data.target_len={data_cfg.target_len}: the run's learned positions allow "
            f"at most {model.max_seq_len} decoder tokens (model.max_seq_len)")
    batches, total = _batches(args, run_config, data_cfg, tokenizer, objective,
                              model.vocab_size)
    run = trained.load(workdir, single_device=args.single_device)
    byte_lengths = token_byte_lengths(tokenizer)
    step_fn = jax.jit(functools.partial(_batch_nats, model=run.model))
    nats, tokens, text_bytes, num_batches, scores_special = 0.0, 0, 0, 0, False
    batch_losses, batch_tokens_seen = [], []  # for the standard error
    started = reported = time.monotonic()
    with run.context():
        replicated = parallel.replicated(run.program.mesh)
        for batch, weights in batches:
            counted = np.asarray(batch["targets"])[
                np.asarray(batch.get("loss_mask", np.ones_like(batch["targets"])))
                * weights[:, None] > 0]
            batch = parallel.global_batch(batch, run.program.batch_sharding)
            batch_nats, batch_tokens = step_fn(run.params, batch,
                                               jax.device_put(weights, replicated))
            nats += float(batch_nats)
            tokens += int(batch_tokens)
            num_batches += 1
            batch_losses.append(float(batch_nats) / max(int(batch_tokens), 1))
            batch_tokens_seen.append(int(batch_tokens))
            # Special tokens (span_corruption's sentinels) stand for no bytes of text.
            scores_special |= bool(np.any(counted >= tokenizer.vocab_size))
            text_bytes += int(byte_lengths[np.minimum(counted, tokenizer.vocab_size - 1)].sum())
            if time.monotonic() - reported >= PROGRESS_SECONDS and num_batches < total:
                reported = time.monotonic()
                rate = num_batches / (reported - started)
                print(f"[eval] batch {num_batches:,}/{total:,} | {rate:.1f} batches/s | ETA "
                      f"{format_duration((total - num_batches) / rate)}", file=sys.stderr,
                      flush=True)
    bits_per_byte, note = None, None
    if scores_special:
        note = (f"not defined: train.objective={objective.name!r} scores special tokens "
                "(sentinels) that stand for no text")
    elif text_bytes:
        bits_per_byte = nats / math.log(2) / text_bytes
    record = {
        "dataset": data_cfg.dataset, "split": data_cfg.eval_split, "feature": data_cfg.feature,
        "objective": objective.name,
        # Per target token, as the trainer averages its eval batches (weighted by their tokens),
        # and its standard error from the batch-to-batch spread, as the trainer's.
        "loss": nats / tokens, "stderr": step.batches_mean(batch_losses, batch_tokens_seen)[1],
        "bits_per_byte": bits_per_byte,
        **({"bits_per_byte_note": note} if note else {}),
        "tokens": tokens, "bytes": text_bytes if not scores_special else None,
        "batches": num_batches, "seq_len": data_cfg.seq_len,
        # --batches N (null: the batches of the run's final evaluation) and --whole-split.
        "batches_requested": args.batches,
        "whole_split": bool(args.whole_split), "step": run.step, "tokenizer": tokenizer.name,
        "run": summary.get("name"), "run_final_eval_loss": summary.get("final_eval_loss"),
        # The other data.* fields set otherwise than the run's own (they name the file too).
        "data_overrides": overridden,
    }
    name = eval_file_name(data_cfg, overridden, args.batches, args.whole_split)
    out = out_dir / f"{name}.json"
    interrupts.check()  # a Ctrl-C taken by no KeyboardInterrupt writes no result
    try:
        out_dir.mkdir(exist_ok=True)
        files.write_text_atomic(out, json.dumps(record, indent=1) + "\n")
    except OSError as error:  # a full disk, a workdir it may not write in
        raise trained.RunError(f"{out} cannot be written ({error.strerror or error})") from None
    return out, record


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    scripts.quiet_logging()
    try:
        out, record = evaluate(args, overrides)
    except trained.RunError as error:
        return trained.fail(PROGRAM, error)
    except KeyboardInterrupt:
        return trained.interrupted(PROGRAM)
    bpb = record["bits_per_byte"]
    batches = f"{record['batches']} batch" + ("es" if record["batches"] != 1 else "")
    stderr = f" ± {record['stderr']:.4f}" if record["stderr"] is not None else ""
    print(f"{record['dataset']}:{record['split']}: {record['objective']} loss "
          f"{record['loss']:.4f}{stderr} nats/token"
          + (f", {bpb:.4f} bits/byte" if bpb is not None else "")
          + (f" (bits/byte {record['bits_per_byte_note']})"
             if record.get("bits_per_byte_note") else "")
          + f" over {record['tokens']:,} target tokens ({batches}, checkpoint step "
          f"{record['step']}) -> {out}", flush=True)
    return 0


"""`scaling-sample`: text from a trained run, decoded with a key/value cache.

    scaling-sample --workdir runs/tiny --prompt "def " --max-new-tokens 200 --temperature 0.8
    scaling-sample --workdir runs/tiny --prompt-file prompt.txt --num-samples 3 --top-k 40 --seed 1
    scaling-sample --workdir runs/t5 --source "text to encode" --prompt ""   # encoder–decoder

The model is built from the run's summary.json and restored from its newest checkpoint. The
prompt is read as the start of a document: the end-of-document token, then the prompt's tokens
(an encoder–decoder's decoder starts, as in training, from its objective's BOS token instead).
Each sample is printed as the prompt followed by its continuation, which ends early at an
end-of-document token; ids past the tokenizer's vocabulary (an objective's special tokens) are
shown by name, `<sentinel_0>`, `<pad>`, `<mask>`, `<bos>`, and the same names in `--source` and
the prompt are read as those tokens (`trained.encode_text`: a span-corruption run fills the span
of `--source "def f(a, b):<sentinel_0>" --prompt "<sentinel_0>"`). Temperature 0 is greedy; the same
seed gives the same samples. Bad input prints one line `scaling-sample: error: ...` and exits 2.
"""

from __future__ import annotations

# `python -m scaling.sample` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.sample())

import argparse
import pathlib
import sys

import jax
import numpy as np

from scaling import decoding, hardware, interrupts, scripts, trained
from scaling.config import MAX_SEED
from scaling.data import objectives
from scaling.errors import ArgumentParser

PROGRAM = "scaling-sample"
FLOAT32_MAX = float(np.finfo(np.float32).max)
SEPARATOR = "-" * 40


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a scaling-train workdir with a checkpoint")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None,
                        help="text to continue (default: empty); the names of the run's special "
                             "tokens in it (<mask>, <sentinel_0>, ...) are those tokens")
    prompt.add_argument("--prompt-file", default=None, help="a UTF-8 file holding the prompt")
    parser.add_argument("--source", default=None,
                        help="encoder–decoder models: the text the encoder reads")
    parser.add_argument("--max-new-tokens", type=int, default=200,
                        help="tokens to generate after the prompt, at most (default 200; a sample "
                             "ends at its first end-of-document token)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy (default 1)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="sample among the likeliest tokens holding probability p (1: all)")
    parser.add_argument("--num-samples", type=int, default=1,
                        help="samples of the same prompt, decoded together (default 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the sampling (default 0)")
    parser.add_argument("--single-device", action="store_true",
                        help="run on one device instead of the run's mesh")
    return parser.parse_args(argv)


def check_settings(args: argparse.Namespace) -> None:
    """RunError for a setting out of range."""
    if args.max_new_tokens < 1:
        raise trained.RunError(f"--max-new-tokens {args.max_new_tokens}: must be an integer >= 1")
    # Logits are divided by the temperature in float32, where past its largest number it is
    # infinite (every logit 0/inf: NaN).
    if not 0.0 <= args.temperature <= FLOAT32_MAX:
        raise trained.RunError(f"--temperature {args.temperature}: must be >= 0 and at most "
                               f"{FLOAT32_MAX:.4g}, float32's largest number (0 is greedy)")
    if args.top_k < 0:
        raise trained.RunError(f"--top-k {args.top_k}: must be >= 0 (0 keeps every token)")
    if not 0.0 < args.top_p <= 1.0:
        raise trained.RunError(f"--top-p {args.top_p}: must be in (0, 1] (1 keeps every token)")
    if args.num_samples < 1:
        raise trained.RunError(f"--num-samples {args.num_samples}: must be an integer >= 1")
    if not 0 <= args.seed <= MAX_SEED:  # as config.seed: JAX keeps a seed's low 32 bits
        raise trained.RunError(f"--seed {args.seed}: must be an integer from 0 to {MAX_SEED}")
    for flag in ("--prompt", "--source"):
        trained.check_text(flag, getattr(args, flag[2:]))


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is None:
        return args.prompt or ""
    try:
        return pathlib.Path(args.prompt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise trained.RunError(f"--prompt-file {args.prompt_file}: cannot be read as UTF-8 text "
                               f"({error})") from None


def check_fits(model, prompt_tokens: int, new_tokens: int, source_tokens: int | None) -> None:
    """RunError when the request does not fit the model: a layout that cannot generate, a source
    given to or missing from a model, a sequence longer than a learned position table."""
    if model.layout == "encoder":
        raise trained.RunError("the run is an encoder-only model (layout 'encoder'), which cannot "
                               "generate; sampling needs layout 'decoder' or 'encoder_decoder'")
    if model.layout == "encoder_decoder" and source_tokens is None:
        raise trained.RunError("the run is an encoder–decoder: pass --source TEXT for its encoder")
    if model.layout == "decoder" and source_tokens is not None:
        raise trained.RunError("--source is for encoder–decoder runs; this run is decoder-only")
    if model.position == "learned":
        # The last new token is sampled from the positions before it and never read.
        read = prompt_tokens + new_tokens - 1
        if read > model.max_seq_len:
            raise trained.RunError(
                f"prompt ({prompt_tokens} tokens with the start token) + "
                f"--max-new-tokens {new_tokens}: the model reads {read} positions; the run's "
                f"learned positions allow at most {model.max_seq_len} (model.max_seq_len)")
        if source_tokens is not None and source_tokens > model.max_seq_len:
            raise trained.RunError(f"--source is {source_tokens} tokens: the run's learned "
                                   f"positions allow at most {model.max_seq_len}")


def check_memory(model, batch: int, prompt_tokens: int, new_tokens: int,
                 source_tokens: int | None) -> None:
    """RunError when decoding would not fit one device's memory or its int32 positions."""
    total = prompt_tokens + new_tokens
    if total >= 2**31:
        raise trained.RunError(f"prompt ({prompt_tokens} tokens with the start token) + "
                               f"--max-new-tokens {new_tokens} = {total} tokens: positions are "
                               f"int32, at most {2**31 - 1}")
    needed = decoding.memory_bytes(model, batch, prompt_tokens, new_tokens, source_tokens or 0)
    available = hardware.device_available_bytes()
    if needed > available:
        raise trained.RunError(
            f"--max-new-tokens {new_tokens} with --num-samples {batch}: decoding holds at least "
            f"{needed / 1e9:,.1f} GB (its key/value cache), more than the "
            f"{available / 1e9:,.1f} GB the device has free; ask for fewer tokens or samples")


def decode_sample(tokenizer, tokens: np.ndarray,
                  special: objectives.SpecialTokens | None) -> str:
    """The text of generated tokens, up to the first end-of-document token; ids the tokenizer
    does not have (the objective's `special` tokens) are named, not decoded."""
    tokens = np.asarray(tokens)
    ends = np.flatnonzero(tokens == tokenizer.eod_id)
    tokens = tokens[:ends[0]] if ends.size else tokens
    pieces, run = [], []
    for token in tokens.tolist():
        if token < tokenizer.vocab_size:
            run.append(token)
            continue
        if run:
            pieces.append(tokenizer.decode(run))
            run = []
        pieces.append(trained.special_name(token, special))
    if run:
        pieces.append(tokenizer.decode(run))
    return "".join(pieces)


def sample(args: argparse.Namespace) -> list[str]:
    """The samples (prompt + continuation each) that `args` ask for."""


    check_settings(args)
    prompt = read_prompt(args)
    summary = trained.read_summary(args.workdir)  # (an empty one is no folder: said so)
    workdir = pathlib.Path(args.workdir)
    model = trained.run_model(summary)
    config = trained.run_config(summary)
    tokenizer = trained.tokenizer_of(config, summary)
    special = trained.special_tokens(config, tokenizer)
    # The names of the run's special tokens (`<sentinel_0>`) in the texts read as those tokens.
    prompt_flag = "--prompt" if args.prompt_file is None else f"--prompt-file {args.prompt_file}"
    prompt_ids = ([trained.start_token(config, tokenizer, model.layout)]
                  + trained.encode_text(prompt_flag, prompt, tokenizer, special))
    # The encoder reads the source's tokens alone (an empty source: the end-of-document token).
    source_ids = (None if args.source is None
                  else trained.encode_text("--source", args.source, tokenizer, special)
                  or [tokenizer.eod_id])
    check_fits(model, len(prompt_ids), args.max_new_tokens,
               None if source_ids is None else len(source_ids))
    check_memory(model, args.num_samples, len(prompt_ids), args.max_new_tokens,
                 None if source_ids is None else len(source_ids))
    run = trained.load(workdir, single_device=args.single_device, batches=False)
    settings = decoding.SamplingSettings(max_new_tokens=args.max_new_tokens,
                                         temperature=args.temperature, top_k=args.top_k,
                                         top_p=args.top_p)
    prompt_BxP = np.tile(np.asarray(prompt_ids, np.int32), (args.num_samples, 1))
    source_BxS = (None if source_ids is None
                  else np.tile(np.asarray(source_ids, np.int32), (args.num_samples, 1)))
    # Past check_memory's lower bound, decoding can still run out of memory.
    source = "" if source_ids is None else f" and a source of {len(source_ids):,} tokens"
    with trained.out_of_memory_is(f"a prompt of {len(prompt_ids):,} tokens{source}, "
                                  f"--max-new-tokens {args.max_new_tokens} and --num-samples "
                                  f"{args.num_samples}: decoding ran out of device memory; ask "
                                  "for a shorter prompt, or fewer tokens or samples"), run.context():
        # A sample ends at its first end-of-document token: decoding stops once all have.
        tokens_BxN = decoding.generate(run.model, run.params, prompt_BxP,
                                       jax.random.key(args.seed), settings, source_BxS,
                                       stop_id=tokenizer.eod_id)
        tokens_BxN = np.asarray(jax.device_get(tokens_BxN))
    return [prompt + decode_sample(tokenizer, row, special) for row in tokens_BxN]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scripts.quiet_logging()
    try:
        samples = sample(args)
        interrupts.check()  # a Ctrl-C taken by no KeyboardInterrupt prints no samples
    except trained.RunError as error:
        return trained.fail(PROGRAM, error)
    except KeyboardInterrupt:
        return trained.interrupted(PROGRAM)
    for index, text in enumerate(samples):
        if index:
            print(SEPARATOR)
        print(text, flush=True)
    return 0


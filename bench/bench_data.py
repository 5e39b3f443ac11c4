"""Data pipeline throughput: first build of the embedded corpus, and batches per second.

Measures, in a fresh temporary cache:
- the first build of `python_stdlib`: TFDS prepare (array_record) and tokenization into the
  memory-mapped cache, with bytes and with a SentencePiece model trained here;
- the loader's throughput in tokens/s for batch 32 x seq 256: `batch(step)` called directly, and
  `iterate()` with its background prefetch.
Target: the loader must outpace training by 10x; a CPU train step here consumes about 10-50k
tokens/s, so >= 500k tokens/s.

Run: python -m bench.bench_data [--spm-vocab 4096] [--steps 300]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time

from bench.record import at_least, markdown_table, record
from scaling import config as config_lib
from scaling import data
from scaling.data import sources, tokenizers

TARGET_TOKENS_PER_SECOND = 500_000


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _loader_throughput(loader, steps: int) -> tuple[float, float]:
    """tokens/s of `batch(step)` in a loop, and of `iterate()` with prefetch."""
    tokens_per_batch = loader.batch_size * loader.seq_len
    loader.batch(0)
    _, direct = _timed(lambda: [loader.batch(step) for step in range(steps)])
    iterator = loader.iterate(0)
    next(iterator)
    _, prefetched = _timed(lambda: [next(iterator) for _ in range(steps)])
    return tokens_per_batch * steps / direct, tokens_per_batch * steps / prefetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spm-vocab", type=at_least(tokenizers.MIN_SENTENCEPIECE_VOCAB),
                        default=4096)
    parser.add_argument("--steps", type=at_least(1), default=300)
    parser.add_argument("--batch-size", type=at_least(1), default=32)
    parser.add_argument("--seq-len", type=at_least(1), default=256)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = config_lib.default_config().data
        cfg.update(cache_dir=cache_dir, seq_len=args.seq_len)
        with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints its own banner
            _, prepare_seconds = _timed(lambda: sources.prepare(sources.make_builder(cfg)))
        split_mb = {split: sum(len(d) for batch in sources.open_split(cfg, split).document_batches()
                               for d in batch) / 1e6
                    for split in (cfg.train_split, cfg.eval_split)}
        text_mb, both_mb = split_mb[cfg.train_split], sum(split_mb.values())
        loader, build_seconds = _timed(
            lambda: data.make_loader(cfg, batch_size=args.batch_size, seed=0))
        rows.append(["TFDS prepare python_stdlib (array_record)", f"{prepare_seconds:.2f} s",
                     f"{both_mb / prepare_seconds:.1f} MB/s of text",
                     f"{text_mb:.1f} MB train split"])
        rows.append(["token cache, byte tokenizer (both splits)", f"{build_seconds:.2f} s",
                     f"{both_mb / build_seconds:.1f} MB/s of text",
                     f"{loader.tokens_in_split:,} train tokens (uint16)"])
        direct, prefetched = _loader_throughput(loader, args.steps)
        loader.close()
        shape = f"batch {args.batch_size} x seq {args.seq_len}"
        for label, rate in (("loader `batch(step)`", direct),
                            ("loader `iterate()` prefetch", prefetched)):
            verdict = "meets" if rate >= TARGET_TOKENS_PER_SECOND else "BELOW"
            rows.append([f"{label}, byte", f"{rate / 1e6:.2f} M tokens/s", shape,
                         f"{verdict} target {TARGET_TOKENS_PER_SECOND:,} tokens/s"])

        spm_cfg = cfg.copy_and_resolve_references()
        spm_cfg.update(tokenizer="sentencepiece", vocab_size=args.spm_vocab)
        try:
            tokenizer, train_seconds = _timed(lambda: tokenizers.tokenizer_for(spm_cfg))
        except config_lib.ConfigError as error:  # fewer pieces than the corpus has characters
            parser.error(f"--spm-vocab={args.spm_vocab}: {error}")
        rows.append([f"SentencePiece BPE training, {args.spm_vocab} pieces",
                     f"{train_seconds:.2f} s", f"{text_mb / train_seconds:.1f} MB/s of text",
                     "first 64 MiB of the train split"])
        spm_loader, spm_build = _timed(
            lambda: data.make_loader(spm_cfg, batch_size=args.batch_size, seed=0))
        rows.append(["token cache, SentencePiece (both splits)", f"{spm_build:.2f} s",
                     f"{both_mb / spm_build:.1f} MB/s of text",
                     f"{spm_loader.tokens_in_split:,} train tokens, "
                     f"{text_mb * 1e6 / spm_loader.tokens_in_split:.2f} bytes/token"])
        spm_direct, _ = _loader_throughput(spm_loader, args.steps)
        spm_loader.close()
        rows.append([f"loader `batch(step)`, SentencePiece {args.spm_vocab}",
                     f"{spm_direct / 1e6:.2f} M tokens/s", shape, ""])
        del tokenizer

    body = (markdown_table(["what", "time / rate", "throughput", "notes"], rows)
            + f"\nFirst build of the default corpus (prepare + byte cache): "
              f"{prepare_seconds + build_seconds:.1f} s. Target for the loader: >= 10x a CPU "
              "train step's consumption (10-50k tokens/s), i.e. >= "
              f"{TARGET_TOKENS_PER_SECOND:,} tokens/s.\n")
    print(body)
    record("data", "Data pipeline", body)


if __name__ == "__main__":
    main()

"""Sampling speed with the key/value cache against recomputing the whole prefix at every token.

A 4-layer × 128 decoder (d_model 128, 4 layers, 4 heads, byte vocabulary, RoPE, context 128),
randomly initialised (speed does not depend on the weights): a prompt of `--prompt` tokens, then
`--new` sampled tokens (temperature 1), for batches of 1 and 8 sequences.
- `kv cache`: `scaling.decoding.generate` (prefill, then one token per step reading the cache, in
  jitted `lax.scan` calls of `decoding.STEPS_PER_CALL` steps);
- `recompute`: every step runs the full forward pass over a buffer of the final length and reads
  the logits at the step's position (causal attention: later positions do not change them), so
  each token costs one full-context forward pass, all in one jitted `lax.scan`. Compile time is
  excluded. The two alternate `--repeats` times (CPU speed here drifts); medians.

Run: python -m bench.bench_sample [--prompt 16] [--new 112] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

from bench.record import at_least, markdown_table, record


def demo_largest_model():
    from scaling.config import ModelConfig

    return ModelConfig(num_layers=4, d_model=128, num_heads=4, num_kv_heads=4, head_dim=32,
                       d_ff=512, vocab_size=257, max_seq_len=128)


def recompute_generate(model, settings):
    """A jitted sampler that recomputes the whole sequence for every new token."""
    import jax
    import jax.numpy as jnp

    from scaling import decoding
    from scaling import model as model_lib

    net = model_lib.Transformer(model)

    def run(params, prompt_BxP, rng):
        batch, prompt_length = prompt_BxP.shape
        total = prompt_length + settings.max_new_tokens
        buffer_BxT = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_length].set(prompt_BxP)

        def step(buffer_BxT, inputs):
            position, step_rng = inputs
            logits_BxTxV = net.apply({"params": params}, buffer_BxT)
            logits_BxV = jax.lax.dynamic_index_in_dim(logits_BxTxV, position - 1, 1, False)
            token_B = decoding.sample_logits(logits_BxV, step_rng, settings)
            return jax.lax.dynamic_update_index_in_dim(buffer_BxT, token_B, position, 1), None

        positions = prompt_length + jnp.arange(settings.max_new_tokens)
        buffer_BxT, _ = jax.lax.scan(step, buffer_BxT,
                                     (positions, jax.random.split(rng, settings.max_new_tokens)))
        return buffer_BxT[:, prompt_length:]

    return jax.jit(run)


def measure(prompt: int, new: int, repeats: int) -> list[list]:
    import jax
    import jax.numpy as jnp

    from scaling import decoding
    from scaling import model as model_lib

    model = demo_largest_model()
    settings = decoding.SamplingSettings(max_new_tokens=new, temperature=1.0)
    params = jax.jit(model_lib.Transformer(model).init)(
        jax.random.key(0), jnp.zeros((1, prompt + new), jnp.int32))["params"]
    recompute = recompute_generate(model, settings)
    methods = {"kv cache": functools.partial(decoding.generate, model, params, settings=settings),
               "recompute": lambda prompt_BxP, rng: recompute(params, prompt_BxP, rng)}
    rows = []
    for batch in (1, 8):
        prompt_BxP = jax.random.randint(jax.random.key(1), (batch, prompt), 0, 256)
        for method in methods.values():  # compile
            jax.block_until_ready(method(prompt_BxP, jax.random.key(0)))
        seconds = {name: [] for name in methods}
        for repeat in range(repeats):
            for name, method in methods.items():
                started = time.perf_counter()
                jax.block_until_ready(method(prompt_BxP, jax.random.key(repeat)))
                seconds[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(times) for name, times in seconds.items()}
        for name, median in medians.items():
            rows.append([name, batch, prompt, new, f"{median:.3f}", f"{batch * new / median:,.0f}",
                         f"{medians['recompute'] / median:.2f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", type=at_least(1), default=16)
    parser.add_argument("--new", type=at_least(1), default=112)
    parser.add_argument("--repeats", type=at_least(1), default=3)
    args = parser.parse_args()
    context = demo_largest_model().max_seq_len
    if args.prompt + args.new > context:  # what the recorded text says the model is
        parser.error(f"--prompt={args.prompt} + --new={args.new} is more than the model's "
                     f"context of {context} tokens")
    load_before = os.getloadavg()[0]
    rows = measure(args.prompt, args.new, args.repeats)
    load_after = os.getloadavg()[0]
    table = markdown_table(["method", "batch", "prompt tokens", "new tokens", "seconds",
                            "new tokens/s", "speed vs recompute"], rows)
    print(table)
    record("sample", "Sampling speed: key/value cache against recomputing the prefix",
           f"A 4-layer × 128 decoder (d_model 128, 4 layers, context {context}), temperature-1 "
           "sampling; medians of alternating runs, compile time excluded. `recompute` runs a "
           "full-context forward pass per token (a prefix recomputed exactly would average about "
           f"half of that work). Load average {load_before:.0f} before and {load_after:.0f} after "
           "the run (other jobs share the machine: absolute speeds vary, the ratio comes from "
           "interleaved runs).\n\n" + table)


if __name__ == "__main__":
    main()

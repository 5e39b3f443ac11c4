"""µP learning-rate transfer: the best Adam learning rate at three widths, µP against standard.

    python -m bench.bench_mup [--steps 120] [--widths 32 64 128] [--lr-exponents -10 ... -5]

Every run is the real train step of `scaling.step` on the embedded corpus (python_stdlib, byte
tokenizer): a 2-layer decoder with 4 heads (head size grows with width), sequence 64, batch 16,
AdamW (weight decay 0.1, clipping 1.0), warmup then cosine decay, µP base width = the smallest
width. The learning rate runs over powers of two; the score is the mean loss on 4 held-out
batches after the last step. Under µP the best learning rate should stay put as width grows;
under standard parametrization it should fall. Writes the `mup` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np

from bench.record import markdown_table, record
from scaling import data, parallel
from scaling.config import default_config, model_config
from scaling.step import build_program

PARAMETRIZATIONS = ("mup", "standard")


def base_config(width: int, parametrization: str, lr: float, steps: int, base_width: int):
    config = default_config()
    config.model.update(num_layers=2, d_model=width, num_heads=4, parametrization=parametrization,
                        mup_base_width=base_width)
    config.data.update(dataset="python_stdlib", seq_len=64)
    config.train.update(batch_size=16, steps=steps)
    config.optim.update(lr=lr, warmup_steps=max(1, steps // 10))
    return config


def final_eval_loss(config, loader) -> float:
    """Train `config` on the loader's batches and return the mean held-out loss (nats/token)."""
    model = model_config(config, loader.vocab_size)
    steps = config.train.steps
    program = build_program(config, model, steps, parallel.make_mesh(config.mesh))
    with program.context():
        state = program.init(jax.random.key(config.seed))
        for step in range(steps):
            batch = parallel.global_batch(loader.batch(step), program.batch_sharding)
            state, metrics = program.train_step(state, batch)
        losses = [program.eval_step(state, parallel.global_batch(b, program.batch_sharding))["loss"]
                  for b in loader.eval_batches(4)]
    loss = float(np.mean(jax.device_get(losses)))
    return loss if math.isfinite(loss) else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--lr-exponents", type=int, nargs="+", default=list(range(-10, -4)),
                        help="learning rates 2**e")
    args = parser.parse_args()
    base_width = min(args.widths)
    start = time.perf_counter()
    loader = data.make_loader(base_config(base_width, "mup", 1e-3, args.steps, base_width).data,
                              batch_size=16, seed=0)
    losses = {}
    for parametrization in PARAMETRIZATIONS:
        for width in args.widths:
            for exponent in args.lr_exponents:
                config = base_config(width, parametrization, 2.0 ** exponent, args.steps, base_width)
                losses[parametrization, width, exponent] = final_eval_loss(config, loader)
                print(f"{parametrization:8s} width {width:4d} lr 2^{exponent}: "
                      f"{losses[parametrization, width, exponent]:.4f}  "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
    loader.close()

    rows, best = [], {}
    for parametrization in PARAMETRIZATIONS:
        for width in args.widths:
            by_lr = {e: losses[parametrization, width, e] for e in args.lr_exponents}
            best[parametrization, width] = min(by_lr, key=by_lr.get)
            cells = [f"**{v:.3f}**" if e == best[parametrization, width] else f"{v:.3f}"
                     for e, v in by_lr.items()]
            rows.append([parametrization, width, *cells, f"2^{best[parametrization, width]}"])
    headers = ["parametrization", "width", *[f"lr 2^{e}" for e in args.lr_exponents], "best lr"]
    shifts = {p: max(best[p, w] for w in args.widths) - min(best[p, w] for w in args.widths)
              for p in PARAMETRIZATIONS}
    body = (f"Held-out loss (nats/token, mean of 4 batches) after {args.steps} steps; decoder with "
            f"2 layers, 4 heads, sequence 64, batch 16, byte tokens of python_stdlib; AdamW with "
            f"warmup {max(1, args.steps // 10)} steps then cosine; µP base width {base_width}. "
            f"Bold: the best learning rate of each row.\n\n"
            + markdown_table(headers, rows)
            + f"\nBest learning rate moves by {shifts['mup']} grid step(s) under µP and by "
            f"{shifts['standard']} under standard across widths {args.widths[0]}–{args.widths[-1]}. "
            f"Total time {time.perf_counter() - start:.0f} s.\n")
    print(body)
    record("mup", "µP learning-rate transfer", body)


if __name__ == "__main__":
    main()

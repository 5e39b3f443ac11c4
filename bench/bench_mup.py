"""µP learning-rate transfer: the best Adam learning rate at three widths, µP against standard.

    python -m bench.bench_mup [--steps 100] [--widths 32 64 128] [--lr-exponents -8 ... -4]
    python -m bench.bench_mup --coord-check   # the coordinate-check figure of docs/mup.md

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
import pathlib
import time

import jax
import numpy as np

from bench.record import markdown_table, record
from scaling import coord_check, data, parallel
from scaling.config import default_config, model_config
from scaling.step import build_program

PARAMETRIZATIONS = ("mup", "standard")
HEADS = 4  # at every width: the head size grows with it


def base_config(width: int, parametrization: str, lr: float, steps: int, base_width: int):
    config = default_config()
    config.model.update(num_layers=2, d_model=width, num_heads=HEADS, parametrization=parametrization,
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


def coord_check_figure(path: pathlib.Path) -> None:
    """Plot mean |x_t − x_0| after 4 steps against width for both parametrizations (the setup of
    tests/test_mup.py) and print the width exponents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths, steps = (64, 128, 256, 512, 1024), 4
    tokens = np.random.default_rng(0).integers(0, 256, (8, 17)).astype(np.int32)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, parametrization in zip(axes, PARAMETRIZATIONS):
        config = default_config()
        config.model.update(num_layers=1, num_heads=4, parametrization=parametrization,
                            mup_base_width=widths[0])
        config.optim.update(lr=3e-3, warmup_steps=0, schedule="constant", weight_decay=0.0,
                            grad_clip=0.0)
        records = [r for r in coord_check.coordinate_check(config, widths, steps, tokens)
                   if r.step == steps]
        for name in coord_check.LAYERS:
            sizes = [r.change[name] for r in records]
            exponent = coord_check.width_exponent(widths, sizes)
            print(f"{parametrization:8s} {name:9s} exponent {exponent:+.2f}  "
                  + " ".join(f"{s:.4g}" for s in sizes))
            axis.plot(widths, sizes, marker="o", label=f"{name} (width^{exponent:+.2f})")
        axis.set(xscale="log", yscale="log", xlabel="width (d_model)",
                 title=f"{parametrization}: after {steps} Adam steps, lr 3e-3")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("mean |x_t - x_0|")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coord-check", action="store_true",
                        help="draw docs/images/mup_coord_check.png instead of the LR sweep (at "
                             "its own widths, 64 to 1024, and 4 steps: the LR sweep's options "
                             "are refused with it)")
    parser.add_argument("--steps", type=int, default=None, help="LR sweep (default 100)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="LR sweep (default 32 64 128)")
    parser.add_argument("--lr-exponents", type=int, nargs="+", default=None,
                        help="LR sweep: learning rates 2**e (default -8 to -4)")
    args = parser.parse_args()
    given = [flag for flag, value in (("--steps", args.steps), ("--widths", args.widths),
                                      ("--lr-exponents", args.lr_exponents)) if value is not None]
    if args.coord_check and given:
        parser.error(f"{', '.join(given)}: not used with --coord-check (its widths and steps "
                     "are fixed, those of docs/mup.md's table)")
    args.steps = 100 if args.steps is None else args.steps
    args.widths = args.widths or [32, 64, 128]
    args.lr_exponents = args.lr_exponents or list(range(-8, -3))
    if args.steps < 1 or min(args.widths) < 1:
        parser.error("--steps and every --widths entry must be integers >= 1")
    if any(width % HEADS for width in args.widths):  # heads of width / HEADS each
        parser.error(f"every --widths entry must be a multiple of the {HEADS} heads")
    if args.coord_check:
        images = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images"
        images.mkdir(parents=True, exist_ok=True)
        coord_check_figure(images / "mup_coord_check.png")
        return
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

"""Decoder-only against encoder–decoder at matched compute: one ladder per architecture on the
embedded corpus (bytes, 128-token windows), with the demo's model family, batches and schedule,
token budgets up to 4M, and µP from the smallest width at a learning rate of 2^-5 (with AdamW's
weight decay 0.1 at every width), so the two laws differ only by layout and objective.

    decoder          causal_lm next-token prediction (the demo's setting)
    encoder_decoder  T5's span corruption: 15% of each window dropped in spans of mean length 3;
                     the encoder reads the window with a sentinel per span, the decoder writes the
                     spans

An encoder–decoder member has an encoder as deep as its decoder (about twice the decoder-only
member's parameters), and every run's compute is counted per corpus token with encoder and
decoder tokens counted separately (scaling.flops.objective_flops_per_token); budgets are corpus
tokens, and the two architectures are compared at equal FLOPs on their compute frontiers. The two
objectives' own losses are different quantities; every run's final
evaluation also scores the last 19 tokens of each held-out window given the 110 before them
(`train.continuation_tokens`; 19 is the number of tokens span corruption drops from a window), a
loss both layouts compute on the same tokens from the same context. See docs/architectures.md.

    scaling-sweep --config configs/sweeps/architectures.py:decoder --workdir runs/arch-decoder
    scaling-sweep --config configs/sweeps/architectures.py:encoder_decoder --workdir runs/arch-encdec
    scaling-fit --compare runs/arch-decoder/results.csv runs/arch-encdec/results.csv \\
        --loss-col final_continuation_loss --out runs/arch-compare
"""

import pathlib

from scaling.data.objectives import span_counts
from scaling.overrides import load_config

MILLION = 1_000_000
ARCHITECTURES = {
    "decoder": {"model": {"layout": "decoder"}, "train": {"objective": "causal_lm"}},
    "encoder_decoder": {"model": {"layout": "encoder_decoder"},
                        "train": {"objective": "span_corruption"}},
}
VARIANTS = tuple(ARCHITECTURES)


def get_config(architecture: str = "decoder"):
    sweep = load_config(str(pathlib.Path(__file__).with_name("demo.py")))
    run = load_config(str(pathlib.Path(__file__).parents[2] / sweep.base_config))
    # As many tokens as span corruption drops from a window: round(0.15 · 128) = 19.
    continuation_tokens = span_counts(run.data.seq_len, run.train.noise_density,
                                      run.train.mean_span_length)[0]
    sweep.name = f"arch-{architecture.replace('_', '')}"
    sweep.ladder_tokens = tuple(m * MILLION for m in (1, 2, 4))
    # The comparison's recipe (docs/architectures.md): µP from the smallest width at one learning
    # rate, 2^-5, for both layouts, in place of the demo's per-size standard-parametrization rates
    # and weight decays (the decay is the default 0.1 at every width).
    sweep.hparams = "mup_transfer"
    sweep.size_overrides = {}
    sweep.overrides.optim.lr = 2.0**-5
    overrides = ARCHITECTURES[architecture]
    sweep.overrides.model = overrides["model"]
    sweep.overrides.train.update({**overrides["train"],
                                  "continuation_tokens": continuation_tokens})
    return sweep

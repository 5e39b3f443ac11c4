"""Decoder-only against encoder–decoder at matched compute: one IsoFLOP study per architecture on
the embedded corpus (bytes, 128-token rows), with the same model family, budgets and training
recipe, so the two laws differ only by layout and objective.

    decoder          causal_lm next-token prediction (the demo's setting)
    encoder_decoder  T5's span corruption: 15% of each row dropped in spans of mean length 3; the
                     encoder reads the row with a sentinel per span, the decoder writes the spans

An encoder–decoder member has an encoder as deep as its decoder (about twice the decoder-only
member's parameters), and every run's compute is counted per corpus token with encoder and
decoder tokens counted separately (scaling.flops.objective_flops_per_token), so "matched compute"
means equal FLOPs for equal budgets. See docs/architectures.md for the comparison.

    scaling-sweep --config configs/sweeps/architectures.py:decoder --workdir runs/arch-decoder
    scaling-sweep --config configs/sweeps/architectures.py:encoder_decoder --workdir runs/arch-encdec
    scaling-fit --compare runs/arch-decoder runs/arch-encdec
"""

from launch.plans import default_sweep

BUDGETS = (2.5e11, 5e11, 1e12)  # FLOPs in the runs' "full" convention
ARCHITECTURES = {
    "decoder": {"model": {"layout": "decoder"}, "train": {"objective": "causal_lm"}},
    "encoder_decoder": {"model": {"layout": "encoder_decoder"},
                        "train": {"objective": "span_corruption"}},
}


def get_config(architecture: str = "decoder"):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         + ", ".join(ARCHITECTURES))
    sweep = default_sweep()
    sweep.name = f"arch-{architecture.replace('_', '')}"
    sweep.base_config = "configs/demo.py"
    sweep.family = "cpu_demo"
    sweep.sizes = "d16-L1,d32-L1,d48-L2,d64-L2,d96-L3"
    sweep.plan = "isoflop"
    sweep.isoflop_budgets = BUDGETS
    sweep.min_steps = 50
    sweep.overrides = {
        "model": ARCHITECTURES[architecture]["model"],
        "train": {**ARCHITECTURES[architecture]["train"], "eval_every": 250,
                  "final_eval_batches": 32},
        "optim": {"lr": 3e-3, "warmup_steps": 50},
    }
    return sweep

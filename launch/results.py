"""The tables a sweep writes — `results.csv` (one row per run) and `curves.csv` (every logged
point of every run) — and the names W&B shows their fields under, declared once: the sweep runner
and the W&B registry write these columns, runs log under these W&B names, the analysis reads both.
Nothing here imports the training code.
"""

from scaling.fields import split_tags
from scaling.status import COMPLETED

RESULT_COLUMNS = (
    "name", "status", "size", "parent", "num_layers", "num_encoder_layers", "d_model", "params",
    "embedding_params", "non_embedding_params", "tokens", "unique_tokens", "steps", "start_step", "batch_size",
    "seq_len", "lr", "schedule", "seed", "parametrization", "layout", "objective",
    "flop_convention", "flops", "flops_6N", "flops_full", "study_flops", "final_train_loss",
    "final_eval_loss", "final_eval_stderr", "final_continuation_loss", "final_continuation_stderr",
    "wall_seconds", "diverged_step", "skipped_steps", "error")
FINAL_LOSS_COLUMNS = ("final_train_loss", "final_eval_loss", "final_eval_stderr",
                      "final_continuation_loss", "final_continuation_stderr")
CURVE_COLUMNS = ("name", "step", "tokens", "flops", "flops_6N", "flops_full", "train_loss",
                 "eval_loss")
# Flat metric / summary name → the name W&B shows it under (sections for its dashboards); names
# not listed (step, tokens, flops, params, status, ...) keep theirs. `scaling.tracking` logs under
# these names, and the analysis maps a W&B export back to the columns above.
WANDB_NAMES = {
    "train_loss": "train/loss", "eval_loss": "eval/loss", "eval_stderr": "eval/loss_stderr",
    "eval_tokens": "eval/tokens", "lr": "optim/lr", "grad_norm": "optim/grad_norm",
    "skipped_steps": "optim/skipped_steps", "target_tokens": "train/target_tokens",
    "tokens_per_second": "perf/tokens_per_second",
    "mfu": "perf/mfu", "eval_seconds": "perf/eval_seconds",
    "final_train_loss": "train/final_loss", "final_eval_loss": "eval/final_loss",
    "final_eval_stderr": "eval/final_loss_stderr", "final_eval_tokens": "eval/final_tokens",
    "continuation_loss": "eval/continuation_loss",
    "continuation_stderr": "eval/continuation_loss_stderr",
    "final_continuation_loss": "eval/final_continuation_loss",
    "final_continuation_stderr": "eval/final_continuation_loss_stderr",
    "compile_seconds": "perf/compile_seconds", "wall_seconds": "perf/wall_seconds",
    "loop_seconds": "perf/loop_seconds", "peak_flops": "perf/peak_flops",
}

# What a fit needs of results.csv.
FIT_COLUMNS = ("name", "status", "params", "non_embedding_params", "tokens", "flops",
               "flop_convention", "final_eval_loss")


def lookup(config: dict, dotted: str):
    """A field of a run config, nested ({"optim": {"lr": …}}) or flat ("optim.lr"); None when
    absent."""
    if dotted in config:
        return config[dotted]
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def size_of(config: dict) -> str:
    """The family member a sweep trained this run as (its `size:` W&B tag)."""
    tags = split_tags(lookup(config, "wandb.tags") or "")
    return next((tag[len("size:"):] for tag in tags if tag.startswith("size:")), "")


def result_row(summary: dict, config: dict, *, name: str, status: str, error: str = "",
               planned: dict | None = None) -> dict:
    """One results.csv row from what a run recorded — its summary (summary.json, or the W&B
    summary) and its config — falling back to `planned` values for a run that has not written
    them. The runner and the W&B registry both build rows here, so they agree."""
    planned = planned or {}
    model = summary.get("model") or {}

    def first(*values):
        return next((v for v in values if v is not None and v != ""), "")

    def recorded(key):
        return first(summary.get(key), planned.get(key))

    init_from = lookup(config, "train.init_from") or ""
    layout = first(model.get("layout"), lookup(config, "model.layout"), planned.get("layout"))
    # An encoder–decoder's encoder depth (0 in its config: as deep as the decoder); no column of
    # the other layouts, whose one stack num_layers gives.
    encoder_layers = (first(model.get("num_encoder_layers"),
                            lookup(config, "model.num_encoder_layers")
                            or lookup(config, "model.num_layers"),
                            planned.get("num_encoder_layers"))
                      if layout == "encoder_decoder" else "")
    start_step = first(summary.get("start_step"), lookup(config, "train.init_step"),
                       planned.get("start_step"), 0)
    # The summary's FLOPs are those of the steps it ran (fewer than planned for a run that
    # diverged or stopped); of them, the study trained only the ones after its start.
    done = first(summary.get("steps"), summary.get("total_steps"))
    study = planned.get("study_flops", "")
    if done != "" and summary.get("flops") is not None:
        study = summary["flops"] * max(done - start_step, 0) / done if done else 0.0
    return {
        "name": name, "status": status, "size": first(size_of(config), planned.get("size")),
        "parent": first(init_from.rstrip("/").rsplit("/", 1)[-1] if init_from else "",
                        planned.get("parent")),
        "num_layers": first(model.get("num_layers"), lookup(config, "model.num_layers"),
                            planned.get("num_layers")),
        "num_encoder_layers": encoder_layers,
        "d_model": first(model.get("d_model"), lookup(config, "model.d_model"),
                         planned.get("d_model")),
        **{key: recorded(key) for key in ("params", "embedding_params", "non_embedding_params",
                                          "tokens")},
        # The training split's tokens: a run with more `tokens` than these repeats its data.
        "unique_tokens": first(summary.get("train_tokens_available")),
        "steps": recorded("steps"),
        "start_step": start_step,
        "batch_size": first(lookup(config, "train.batch_size")),
        "seq_len": first(lookup(config, "data.seq_len")),
        "lr": first(lookup(config, "optim.lr")),
        "schedule": first(lookup(config, "optim.schedule")),
        "seed": first(lookup(config, "seed")),
        "parametrization": first(model.get("parametrization"),
                                 lookup(config, "model.parametrization")),
        "layout": layout,
        "objective": first(summary.get("objective"), lookup(config, "train.objective"),
                           "causal_lm"),
        "flop_convention": first(summary.get("flop_convention"),
                                 lookup(config, "train.flop_convention"),
                                 planned.get("flop_convention")),
        **{key: recorded(key) for key in ("flops", "flops_6N", "flops_full")},
        "study_flops": study,
        # A run that did not complete has no final loss: its summary's are from its last
        # evaluation before it stopped (curves.csv has them all).
        **{key: first(summary.get(key)) if status == COMPLETED else ""
           for key in FINAL_LOSS_COLUMNS},
        **{key: first(summary.get(key)) for key in ("wall_seconds", "diverged_step",
                                                    "skipped_steps")},
        "error": error,
    }

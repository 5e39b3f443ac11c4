"""Sweep plans: which runs a scaling study trains, with deterministic names and per-size settings.

A sweep config (`configs/sweeps/*.py`) names a base run config, a model family and a plan:
- `steps`:            every size for the same number of steps;
- `tokens`:           every size on the same token budget D;
- `tokens_per_param`: D = ratio × N for each size (Chinchilla's 20 tokens per parameter);
- `isoflop`:          for each compute budget C, every size with D = C / (FLOPs per token under
                      the sweep's FLOP convention) — the IsoFLOP profiles of Chinchilla's Approach 2.
Per-size hyperparameters follow the rule named by `sweep.hparams` (see `size_hyperparameters`).
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from scaling import families, flops
from scaling.config import ConfigError, default_config, model_config

FAMILIES = {"cpu_demo": families.cpu_demo_family, "chinchilla": families.chinchilla_family}
PLANS = ("steps", "tokens", "tokens_per_param", "isoflop")
HPARAM_RULES = ("fixed", "porian2024", "mup_transfer")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, its overrides of the base config, and its size and budget."""

    name: str
    overrides: dict
    size: str
    params: int
    non_embedding_params: int
    tokens: int
    steps: int
    flops: float
    flop_convention: str


def format_number(value: float) -> str:
    """1234567 → '1.2e6' (compact, filesystem-safe, stable)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def size_hyperparameters(sweep: ml_collections.ConfigDict, non_embedding_params: int,
                         steps: int) -> dict:
    """Learning rate and warmup for one size.

    - `fixed`: the base config's learning rate for every size; warmup min(base, steps / 10).
    - `porian2024`: the corrections Porian et al. 2024 ("Resolving discrepancies in
      compute-optimal scaling of language models") found necessary for small models: a warmup as
      long as the model has parameters, counted in tokens (at least one step, at most a quarter of
      the run), AdamW β2 = 0.99 rather than 0.95 at small batch sizes, and a learning rate that
      shrinks with size — here lr = lr_base · (N / N_base)^(−lr_exponent) with N the non-embedding
      parameters of the sweep's smallest size, the exponent a sweep setting.
    - `mup_transfer`: µP — every run is set to `model.parametrization="mup"` with the smallest
      width of the sweep as `mup_base_width`, and the learning rate tuned on that width is used
      unchanged for every width (the parametrization does the scaling).
    """
    tokens_per_step = sweep.batch_size * sweep.seq_len
    rule = sweep.hparams
    if rule == "fixed" or rule == "mup_transfer":
        return {"optim.lr": sweep.lr,
                "optim.warmup_steps": max(1, min(sweep.warmup_steps, steps // 10))}
    warmup = min(max(1, math.ceil(non_embedding_params / tokens_per_step)), max(1, steps // 4))
    lr = sweep.lr * (non_embedding_params / sweep.reference_params) ** (-sweep.lr_exponent)
    return {"optim.lr": lr, "optim.warmup_steps": warmup, "optim.b2": 0.99}


def flatten(tree, prefix: str = "") -> dict:
    """{"train": {"log_every": 2}} → {"train.log_every": 2}: nested sweep overrides as the dotted
    run-config fields they set."""
    flat = {}
    for key, value in dict(tree).items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _sizes(sweep: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    if sweep.family not in FAMILIES:
        raise ConfigError("sweep.family", sweep.family, "one of " + ", ".join(FAMILIES))
    family = FAMILIES[sweep.family]()
    if sweep.sizes:
        wanted = [name.strip() for name in sweep.sizes.split(",") if name.strip()]
        known = dict(family)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ConfigError("sweep.sizes", sweep.sizes,
                              f"names from family {sweep.family!r}: {', '.join(known)}")
        return [(name, known[name]) for name in wanted]
    return list(family)


def _resolve_model(model_overrides: dict, sweep: ml_collections.ConfigDict):
    config = families.apply_overrides(default_config(), model_overrides)
    config.data.seq_len = sweep.seq_len
    return model_config(config, sweep.vocab_size)


def validate_sweep(sweep: ml_collections.ConfigDict) -> None:
    if sweep.plan not in PLANS:
        raise ConfigError("sweep.plan", sweep.plan, "one of " + ", ".join(PLANS))
    if sweep.hparams not in HPARAM_RULES:
        raise ConfigError("sweep.hparams", sweep.hparams, "one of " + ", ".join(HPARAM_RULES))
    if sweep.flop_convention not in ("6N", "full"):
        raise ConfigError("sweep.flop_convention", sweep.flop_convention, "one of 6N, full")
    if sweep.plan == "steps" and sweep.steps <= 0:
        raise ConfigError("sweep.steps", sweep.steps, "> 0 with sweep.plan='steps'")
    if sweep.plan == "tokens" and sweep.tokens <= 0:
        raise ConfigError("sweep.tokens", sweep.tokens, "> 0 with sweep.plan='tokens'")
    if sweep.plan == "tokens_per_param" and sweep.tokens_per_param <= 0:
        raise ConfigError("sweep.tokens_per_param", sweep.tokens_per_param,
                          "> 0 with sweep.plan='tokens_per_param'")
    if sweep.plan == "isoflop" and (not sweep.isoflop_budgets
                                    or any(c <= 0 for c in sweep.isoflop_budgets)):
        raise ConfigError("sweep.isoflop_budgets", sweep.isoflop_budgets,
                          "a tuple of positive FLOP budgets with sweep.plan='isoflop'")
    if sweep.processes < 1:
        raise ConfigError("sweep.processes", sweep.processes, "an integer >= 1")


def expand(sweep: ml_collections.ConfigDict) -> list[PlannedRun]:
    """The runs of a sweep, in a deterministic order with deterministic names."""
    validate_sweep(sweep)
    tokens_per_step = sweep.batch_size * sweep.seq_len
    sizes = _sizes(sweep)
    mup = {}
    if sweep.hparams == "mup_transfer":
        # Every width in µP relative to the smallest, whose learning rate the sweep reuses.
        mup = {"model.parametrization": "mup",
               "model.mup_base_width": min(overrides["d_model"] for _, overrides in sizes)}
    runs = []
    for size_name, model_overrides in sizes:
        model = _resolve_model(model_overrides, sweep)
        counts = flops.parameter_counts(model)
        per_token = flops.training_flops_per_token(model, sweep.seq_len, sweep.flop_convention)
        if sweep.plan == "isoflop":
            budgets = [(f"isoflop-C{format_number(c)}-N{format_number(counts.non_embedding)}",
                        c / per_token) for c in sweep.isoflop_budgets]
        elif sweep.plan == "steps":
            budgets = [(f"{sweep.name}-{size_name}", sweep.steps * tokens_per_step)]
        elif sweep.plan == "tokens":
            budgets = [(f"{sweep.name}-{size_name}-D{format_number(sweep.tokens)}", sweep.tokens)]
        else:
            budgets = [(f"{sweep.name}-{size_name}",
                        sweep.tokens_per_param * counts.non_embedding)]
        for name, tokens in budgets:
            steps = max(1, round(tokens / tokens_per_step))
            if sweep.plan == "isoflop" and steps < sweep.min_steps:
                continue
            overrides = {f"model.{key}": value for key, value in model_overrides.items()}
            overrides.update({"name": name, "train.steps": steps, "train.tokens": 0,
                              "train.batch_size": sweep.batch_size, "data.seq_len": sweep.seq_len,
                              "train.flop_convention": sweep.flop_convention,
                              "wandb.group": sweep.name})
            overrides.update(size_hyperparameters(sweep, counts.non_embedding, steps))
            overrides.update(mup)
            overrides.update(flatten(sweep.overrides))
            overrides.update(flatten(sweep.get("size_overrides", {}).get(size_name, {})))
            runs.append(PlannedRun(
                name=name, overrides=overrides, size=size_name, params=counts.total,
                non_embedding_params=counts.non_embedding, tokens=steps * tokens_per_step,
                steps=steps, flops=steps * tokens_per_step * per_token,
                flop_convention=sweep.flop_convention))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ConfigError("sweep", sweep.name, "run names that are unique (two sizes collide)")
    return runs

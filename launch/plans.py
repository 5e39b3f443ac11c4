"""Sweep plans: which runs a scaling study trains, with deterministic names and per-size settings.

A sweep config (`configs/sweeps/*.py`) starts from `default_sweep()` and names a base run config,
a model family and a plan:
- `steps`:            every size for the same number of steps;
- `tokens`:           every size on the same token budget D;
- `tokens_per_param`: D = ratio × N for each size, N non-embedding (Chinchilla's 20 tokens per
                      parameter counts every parameter, so gives small models more tokens);
- `isoflop`:          for each compute budget C, every size with D = C / (FLOPs per token under
                      the runs' FLOP convention) — the IsoFLOP profiles of Chinchilla's Approach 2;
- `ladder`:           every size at several token budgets from one warmup–stable–decay run per
                      size, its largest budget, plus a cooldown branch for each smaller one
                      (`scaling.branches`): each budget is a run of its own, trained for only its
                      cooldown.

`seeds` > 1 replicates every run at consecutive seeds (`analysis.inputs.average_seeds` fits
their mean).

Every planned run is resolved through exactly the path `scaling-train` takes — the base config
file, then the sweep's `overrides`, then the size's (the family member's model fields and the
sweep's `size_overrides`), then the plan's own fields — by `scaling.train.load_and_validate`, and
its N, D and C are computed from that resolved, validated config.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re

import ml_collections

from scaling import budget, families, flops
from scaling.config import (SWEEP_TAG, WANDB_TAG_LIMIT, check_overrides_read, default_config,
                            model_config, unknown_key_error)
from scaling.data import objectives
from scaling.errors import ConfigError
from scaling.fields import (check_section, integer, number, numbers, option, section,
                            split_tags, text, to_config_dict)
from scaling.overrides import apply_overrides, parse_value
from scaling.train import load_and_validate

FAMILIES = {"cpu_demo": families.cpu_demo_family, "chinchilla": families.chinchilla_family}
PLANS = ("steps", "tokens", "tokens_per_param", "isoflop", "ladder")
HPARAM_RULES = ("fixed", "porian2024", "mup_transfer")
MAX_SEEDS = 1000


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Every field a sweep reads. Run settings (batch, sequence length, learning rate, schedule,
    W&B, ...) are run-config fields: set them in the base config or in `overrides`."""

    name: str = text("sweep", "the sweep's name: prefix of run names, W&B group")
    base_config: str = text("configs/demo.py", "the run config every run starts from (path[:arg]; "
                                               "relative paths also from the sweep file's folders)")
    family: str = option("cpu_demo", FAMILIES, "the model family the sizes come from")
    sizes: str = text("", "comma-separated family members; '' means all")
    plan: str = option("steps", PLANS, "how each size's token budget(s) are chosen")
    steps: int = integer(0, "steps: steps per run; 0 means the run config's train.steps")
    tokens: int = integer(0, "tokens: D for every size")
    tokens_per_param: float = number(20.0, "tokens_per_param: D / N (non-embedding)",
                                     exclusive_minimum=True)
    isoflop_budgets: tuple = numbers((), "isoflop: compute budgets C (FLOPs, runs' convention)")
    min_steps: int = integer(50, "isoflop: a size left fewer steps by a budget is skipped")
    ladder_tokens_per_param: tuple = numbers((), "ladder: token budgets per size as D / N")
    ladder_tokens: tuple = numbers((), "ladder: absolute token budgets (instead of per-param)")
    hparams: str = option("fixed", HPARAM_RULES, "per-size hyperparameter rule "
                                                 "(`size_hyperparameters`)")
    lr_exponent: float = number(0.0, "porian2024: lr ∝ (N / reference_params)^-lr_exponent, N "
                                     "non-embedding + read-out (0: one lr)", minimum=-10.0)
    reference_params: int = integer(1, "porian2024: the N at which lr is the run config's",
                                    minimum=1)
    # Every replicate of every run is planned and validated before anything trains.
    seeds: int = integer(1, "replicates of every run, at the run config's seed and the next "
                            "seeds - 1 (names of the others end in -s<k>)", minimum=1,
                         maximum=MAX_SEEDS, allowed=f"an integer from 1 to {MAX_SEEDS:,}")
    processes: int = integer(2, "runs trained at once", minimum=1)
    overrides: dict = section({}, "run-config fields for every run, nested like the run config")
    size_overrides: dict = section({}, "{family member: run-config fields} for single sizes")


def default_sweep() -> ml_collections.ConfigDict:
    """Every sweep field with its default. Sweep files override from here."""
    return to_config_dict(SweepConfig)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, the run-config overrides that make it (in the order
    `scaling-train` applies them), and the size and budget of the resolved config.

    `parent` names the run a cooldown branch starts from ("" for others); `start_step` is the
    parent's step it starts at. `flops` is the run's compute as if trained alone; `study_flops`
    what it adds to the study (a branch trains only its steps after `start_step`).

    `evaluations` lists its held-out evaluations after `start_step` (every `train.eval_every`
    steps and at its last step) as (how many, batches each asks for), -1 batches being the whole
    held-out split (`train.final_eval_batches=-1`, and its continuation task with
    `train.continuation_tokens`): the data decides how many batches the split fills, and no
    evaluation reads more (`evaluated_batches`). `config` is the resolved run config.
    `mfu_flops` is `flops` in PaLM's count (`flops.mfu_flops_per_token`), the one MFU is measured
    in, whatever convention the run reports: what its time is estimated from (None: `flops`)."""

    name: str
    overrides: dict
    size: str
    params: int
    non_embedding_params: int
    tokens: int
    steps: int
    flops: float
    flop_convention: str
    parent: str = ""
    start_step: int = 0
    evaluations: tuple[tuple[int, int], ...] = ()
    config: ml_collections.ConfigDict | None = dataclasses.field(default=None, compare=False,
                                                                 repr=False)
    mfu_flops: float | None = None

    @property
    def study_flops(self) -> float:
        return self.flops * (self.steps - self.start_step) / self.steps

    @property
    def whole_split_evals(self) -> int:
        """How many of its evaluations read the whole held-out split."""
        return sum(count for count, batches in self.evaluations if batches == -1)

    def eval_flops(self, split_batches: int | None) -> float:
        """FLOPs of its held-out evaluations (`evaluated_batches`): each batch a training
        step's tokens, each token a forward pass, a third of a training token's FLOPs under the
        run's convention."""
        return self.evaluated_batches(split_batches) * self.flops / self.steps / 3

    def evaluated_batches(self, split_batches: int | None) -> int:
        """The held-out batches its evaluations read, the split filling `split_batches` full
        batches (as `Loader.eval_batch_count` cuts them); None: of unknown size, so that an
        evaluation of the whole split is left out and the others are counted as asked."""
        if split_batches is None:
            return sum(count * batches for count, batches in self.evaluations if batches != -1)
        return sum(count * (split_batches if batches == -1 else min(batches, split_batches))
                   for count, batches in self.evaluations)


def format_number(value: float) -> str:
    """1234567 → '1.2e6' (compact, filesystem-safe, stable)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


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


def format_value(value) -> str:
    """A run-config value as `--config.x=value` text that `scaling.overrides` parses back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return repr(tuple(value))
    return str(value)


# ----------------------------------------------------------------------------------------------
# Validation of the sweep itself, and of run fields set through it


def validate_sweep_shape(sweep: ml_collections.ConfigDict) -> None:
    """A sweep config has every sweep field (a run config given by mistake has not)."""
    missing = [f.name for f in dataclasses.fields(SweepConfig) if f.name not in sweep]
    if missing:
        raise ConfigError("--config", sweep.get("name", "?"),
                          "a sweep config built on launch.plans.default_sweep() (missing "
                          f"{', '.join(missing)}; is this a run config?)")


def ladder_field(sweep: ml_collections.ConfigDict) -> str:
    """The field a ladder's budgets come from: absolute token counts when only they are given,
    else per parameter (`validate_sweep` refuses both)."""
    return ("ladder_tokens" if sweep.ladder_tokens and not sweep.ladder_tokens_per_param
            else "ladder_tokens_per_param")


def validate_sweep(sweep: ml_collections.ConfigDict) -> None:
    """Each field's declared rule, then what each plan needs; ConfigError names the field."""
    validate_sweep_shape(sweep)
    check_section(SweepConfig, sweep, "")
    # It starts every run's name, which is a folder under <workdir>/runs/, a W&B tag and an
    # entry of --only's comma-separated list.
    longest = WANDB_TAG_LIMIT - len(SWEEP_TAG)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", sweep.name) or len(sweep.name) > longest:
        raise ConfigError("name", sweep.name, f"at most {longest} letters, digits, '.', '_' and "
                          "'-', starting with a letter or digit (it starts every run's name, a "
                          "folder under runs/, and is W&B's tag sweep:<name>)")
    if sweep.ladder_tokens and sweep.ladder_tokens_per_param:  # one would go unread
        raise ConfigError("ladder_tokens", tuple(sweep.ladder_tokens),
                          "() with ladder_tokens_per_param="
                          f"{tuple(sweep.ladder_tokens_per_param)} (a ladder's budgets come from "
                          "one of them)")
    ladder = ladder_field(sweep)
    needs = {"tokens": ("tokens", sweep.tokens > 0, ""),
             "tokens_per_param": ("tokens_per_param", sweep.tokens_per_param > 0, ""),
             "isoflop": ("isoflop_budgets", bool(sweep.isoflop_budgets), ""),
             "ladder": (ladder, len(sweep[ladder]) >= 2,
                        " (two or more budgets" + (", or ladder_tokens)"
                                                   if ladder == "ladder_tokens_per_param" else ")"))}
    if sweep.plan in needs and not needs[sweep.plan][1]:
        field, _, detail = needs[sweep.plan]
        raise ConfigError(field, sweep[field], f"set with plan={sweep.plan!r}{detail}")
    members = [name for name, _ in FAMILIES[sweep.family]()]
    for name in sweep.size_overrides:
        if name not in members:
            raise ConfigError(f"size_overrides.{name}", sweep.size_overrides[name].to_dict(),
                              f"keys that name members of family {sweep.family!r}: "
                              f"{', '.join(members)}")
    for field in ("overrides", *(f"size_overrides.{s}" for s in sweep.size_overrides)):
        node = sweep
        for part in field.split("."):
            node = node[part]
        check_run_fields(flatten(node), field)


def check_run_fields(fields: dict, where: str) -> None:
    """Every key must be a run-config field (dotted); ConfigError names the first that is not."""
    defaults = default_config()
    for dotted in fields:
        node = defaults
        for part in dotted.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                error = unknown_key_error(defaults, dotted, fields[dotted])
                raise ConfigError(f"{where}.{dotted}", fields[dotted], error.allowed)
            node = node[part]


# Sweep fields read only under one plan or hyperparameter rule: {field: (governing, readers)}.
CONDITIONAL_SWEEP_FIELDS = {
    "steps": ("plan", ("steps",)), "tokens": ("plan", ("tokens",)),
    "tokens_per_param": ("plan", ("tokens_per_param",)),
    "isoflop_budgets": ("plan", ("isoflop",)), "min_steps": ("plan", ("isoflop",)),
    "ladder_tokens_per_param": ("plan", ("ladder",)), "ladder_tokens": ("plan", ("ladder",)),
    "lr_exponent": ("hparams", ("porian2024",)), "reference_params": ("hparams", ("porian2024",)),
}


def apply_sweep_overrides(sweep: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """`--config.x=v` for a sweep. `overrides.<section>.<field>` and
    `size_overrides.<size>.<section>.<field>` accept any run-config field, parsed to that field's
    type; everything else is a sweep field. A sweep field the sweep's plan or rule does not read
    (`CONDITIONAL_SWEEP_FIELDS`) is refused, as `scaling-train` refuses such run fields; a sweep
    file may set them for the plans that read them."""
    plain, for_sizes = [], []
    for item in overrides:
        dotted, sep, value_text = item.partition("=")
        head, _, rest = dotted.partition(".")
        if sep and head in ("overrides", "size_overrides") and rest:
            value = _set_run_field(sweep, head, rest, value_text)
            if head == "size_overrides":
                for_sizes.append((rest.partition(".")[0], dotted, value))
        else:
            plain.append(item)
    apply_overrides(sweep, plain)
    check_overrides_read(sweep, [item.partition("=")[0] for item in plain],
                         CONDITIONAL_SWEEP_FIELDS, "sweep")
    trained = _size_names(sweep)
    members = [name for name, _ in FAMILIES[sweep.family]()] if sweep.family in FAMILIES else []
    for size, dotted, value in for_sizes:  # "" trains every member of the family
        if trained and size in members and size not in trained:  # non-members: validate_sweep
            raise ConfigError(dotted, value, f"a size the sweep trains ({', '.join(trained)}"
                                                  f"): {size} is not in sizes, so this changes no "
                                                  "run")


def _set_run_field(sweep, head: str, rest: str, value_text: str):
    """Set `<head>.<rest>` to `value_text` parsed as the run-config field's type; the value."""
    path = rest.split(".")
    size = path.pop(0) if head == "size_overrides" else None
    dotted = ".".join(path)
    node = default_config()
    for part in path:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            error = unknown_key_error(default_config(), dotted, value_text)
            raise ConfigError(f"{head}.{rest}", value_text, error.allowed)
        node = node[part]
    if isinstance(node, ml_collections.ConfigDict):  # a section, or a size with no field at all
        members = ([name for name, _ in FAMILIES[sweep.family]()] if sweep.family in FAMILIES
                   else [])
        if not path and members and size not in members:  # the example would be refused next
            raise ConfigError(f"{head}.{rest}", value_text,
                              f"a member of family {sweep.family!r} and a run-config field "
                              f"under it, e.g. --config.{head}.{members[0]}.optim.lr=... "
                              f"(members: {', '.join(members)})")
        example = f"{head}.{rest}.{next(iter(node))}" if path else f"{head}.{rest}.optim.lr"
        raise ConfigError(f"{head}.{rest}", value_text, "a leaf run-config field (this is a "
                                                        f"section), e.g. --config.{example}=...")
    try:
        value = parse_value(value_text, node)
    except (ValueError, SyntaxError) as error:
        expected = error.args[0] if isinstance(error, ValueError) and error.args else "a literal"
        raise ConfigError(f"{head}.{rest}", value_text,
                          f"{expected} (the field is {type(node).__name__})") from None
    target = sweep[head]
    for part in ([size] if size else []) + path[:-1]:
        if part not in target:
            target[part] = ml_collections.ConfigDict()
        target = target[part]
    target[path[-1]] = value
    return value


# ----------------------------------------------------------------------------------------------
# Sizes and per-size hyperparameters


def _size_names(sweep: ml_collections.ConfigDict) -> list[str]:
    """The family members `sizes` names ([] for "": every member)."""
    return [name.strip() for name in sweep.sizes.split(",") if name.strip()]


def _sizes(sweep: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    family = FAMILIES[sweep.family]()
    if not sweep.sizes:
        return list(family)
    wanted = _size_names(sweep)
    known = dict(family)
    if not wanted or any(name not in known for name in wanted):
        raise ConfigError("sizes", sweep.sizes,
                          f"names from family {sweep.family!r}: {', '.join(known)}")
    repeated = [name for index, name in enumerate(wanted) if name in wanted[:index]]
    if repeated:  # each would plan the same runs twice, under the same names
        raise ConfigError("sizes", sweep.sizes, f"distinct names ({repeated[0]} is given twice)")
    return [(name, known[name]) for name in wanted]


# Run fields a hyperparameter rule sets whatever the config says (`size_hyperparameters`, and
# µP's own for mup_transfer): an override of them to another value is refused.
RULE_FIELDS = {"porian2024": ("optim.b2", "optim.warmup_steps"),
               "mup_transfer": ("model.parametrization", "model.mup_base_width")}


def size_hyperparameters(sweep: ml_collections.ConfigDict, run_config, non_embedding_params: int,
                         steps: int) -> dict:
    """Learning rate and warmup for one size, from the resolved run config's `optim` (lr_base,
    warmup) and the sweep's rule.

    - `fixed`: the run config's learning rate for every size; warmup min(its warmup, steps / 10).
    - `porian2024`: the corrections Porian et al. 2024 ("Resolving discrepancies in
      compute-optimal scaling of language models") found necessary for small models, with N
      counted as they count it, the non-embedding parameters and the read-out (vocabulary ×
      d_model): a warmup as long as the model has parameters, counted in tokens (at least one
      step, at most a quarter of the run); AdamW β2 = 0.99, their setting for the small batches
      of small models, at every size; and lr = lr_base · (N / reference_params)^(−lr_exponent),
      which shrinks with size once `lr_exponent` > 0 (its default, 0, keeps lr_base). Their
      batch-size law is not applied: the batch is the run config's.
    - `mup_transfer`: µP — every run is set to `model.parametrization="mup"` with the smallest
      width of the sweep as `mup_base_width`, and the learning rate tuned on that width is used
      unchanged for every width (the parametrization does the scaling); warmup as `fixed`.
    """
    optim = run_config.optim
    if sweep.hparams in ("fixed", "mup_transfer"):
        return {"optim.warmup_steps": min(optim.warmup_steps, max(1, steps // 10))}
    model = model_config(run_config)
    params = non_embedding_params + model.vocab_size * model.d_model  # Porian et al.'s N
    warmup = min(max(1, math.ceil(params / _tokens_per_step(run_config))), max(1, steps // 4))
    lr = optim.lr * (params / sweep.reference_params) ** (-sweep.lr_exponent)
    return {"optim.lr": lr, "optim.warmup_steps": warmup, "optim.b2": 0.99}


# ----------------------------------------------------------------------------------------------
# Expansion


@dataclasses.dataclass(frozen=True)
class _Size:
    """A size resolved before its plan: the overrides so far, its config and its counts."""

    name: str
    overrides: dict
    config: ml_collections.ConfigDict
    non_embedding_params: int
    flops_per_token: float
    suffix: str = ""  # ends its runs' names: "" for the first seed, "-s<k>" for replicate k


class Planner:
    """Resolves sizes and runs through `scaling-train`'s own config path."""

    def __init__(self, sweep: ml_collections.ConfigDict, base_config: str):
        self.sweep, self.base_config = sweep, base_config
        self.rule_fields: dict = {}  # what the hyperparameter rule sets for every size (µP's)

    def resolve(self, overrides: dict, run: str, *, whole: bool = True):
        """The validated run config `scaling-train --config base --config.k=v ...` would use;
        a ConfigError names `run` (a run's name, or a size's) and the field. A size's config is
        not `whole`: the plan's fields come later (a ladder's schedule, which its decay fields
        need), and only a run's are checked to be read."""
        try:
            return load_and_validate(
                self.base_config, [f"{key}={format_value(value)}" for key, value in overrides.items()],
                check_read=whole)
        except ConfigError as error:
            raise error.in_run(run) from None

    def size(self, size_name: str, member: dict, replicate: int = 0) -> _Size:
        """The size as its runs start, at replicate `replicate`'s seed (the resolved config's seed
        plus `replicate`)."""
        overrides = {**flatten(self.sweep.overrides)}
        overrides.update({f"model.{key}": value for key, value in member.items()})
        overrides.update(flatten(self.sweep.size_overrides.get(size_name, {})))
        overrides.update(self.rule_fields)
        where = f"{self.sweep.name}-{size_name} (size {size_name})"
        config = self.resolve(overrides, where, whole=False)
        if replicate:
            overrides["seed"] = config.seed + replicate
            config = self.resolve(overrides, where, whole=False)
        model = model_config(config)
        return _Size(size_name, overrides, config, flops.parameter_counts(model).non_embedding,
                     flops.objective_flops_per_token(model, _shapes(config),
                                                     config.train.flop_convention),
                     f"-s{replicate}" if replicate else "")

    def _check_plan_fields(self, size: _Size, name: str, plan_fields: dict) -> None:
        """ConfigError for a field the sweep's `overrides` or `size_overrides` set that the plan
        sets otherwise for this run (its length, schedule, branch points): the plan's value
        would replace it without a word. So are those the hyperparameter rule sets outright
        (`RULE_FIELDS`), and a size's own learning rate under `mup_transfer`, whose sizes share
        one; the learning rate and `fixed`'s warmup it derives from the config's own, as
        documented."""
        owned = {"train.steps", "train.tokens", "optim.schedule", "train.branch_steps",
                 "train.init_step", "train.init_from"}
        rule = RULE_FIELDS.get(self.sweep.hparams, ())
        plan_fields = {**self.rule_fields, **plan_fields}
        for where, fields in ((f"size_overrides.{size.name}",
                               self.sweep.size_overrides.get(size.name, {})),
                              ("overrides", self.sweep.overrides)):
            for key, value in flatten(fields).items():
                if key in ("name", "wandb.group") and value != {"name": name, "wandb.group":
                                                                self.sweep.name}[key]:
                    raise ConfigError(f"{where}.{key}", value,
                                      f"a field the sweep sets (run {name} is named after the "
                                      "sweep and its size, in the W&B group of the sweep's "
                                      "name); set the sweep's own name field instead")
                if (self.sweep.hparams == "mup_transfer" and key == "optim.lr"
                        and where.startswith("size_overrides")):
                    raise ConfigError(f"{where}.{key}", value,
                                      "unset with hparams='mup_transfer', whose runs share one "
                                      "learning rate (tuned at the smallest width; µP scales "
                                      "it by width): set overrides.optim.lr instead")
                if key not in plan_fields or plan_fields[key] == value:
                    continue
                if key in owned:
                    raise ConfigError(f"{where}.{key}", value,
                                      f"a field the plan sets (plan={self.sweep.plan!r} sets "
                                      f"{key}={plan_fields[key]!r} for run {name}); set the "
                                      "plan's own fields instead")
                if key in rule:
                    raise ConfigError(f"{where}.{key}", value,
                                      f"a field the hyperparameter rule sets (hparams="
                                      f"{self.sweep.hparams!r} sets {key}={plan_fields[key]!r} "
                                      f"for run {name}); remove it where it is set (the "
                                      "sweep file or the command line), or use "
                                      "hparams='fixed'")

    def run(self, size: _Size, name: str, plan_fields: dict, parent: str = "") -> PlannedRun:
        """The run of `size` with the plan's fields, its counts from the final config; `name` is
        the plan's, which gets the size's replicate suffix (`parent` is a planned run's name and
        has it already)."""
        name += size.suffix
        self._check_plan_fields(size, name, plan_fields)
        tags = split_tags(size.config.wandb.tags)
        tags += [f"{SWEEP_TAG}{self.sweep.name}", f"plan:{self.sweep.plan}",
                 f"family:{self.sweep.family}", f"size:{size.name}"]
        tags += [f"seed:{size.config.seed}"] if self.sweep.seeds > 1 else []
        overrides = {**size.overrides, "name": name, "wandb.group": self.sweep.name,
                     "wandb.tags": ",".join(tags), **plan_fields}
        try:
            config = self.resolve(overrides, name)
        except ConfigError as error:
            if error.field in plan_fields:  # a value the sweep derived: name what it came from
                error.args = (f"{error} (the sweep sets it for this run, from its plan="
                              f"{self.sweep.plan!r} and hparams={self.sweep.hparams!r} and their "
                              "fields: change those)",)
            raise
        model = model_config(config)
        counts = flops.parameter_counts(model)
        steps = budget.steps_for(config)
        tokens = steps * _tokens_per_step(config)
        convention = config.train.flop_convention
        per_token = flops.objective_flops_per_token(model, _shapes(config), convention)
        evaluations = _evaluations(config.train, steps)
        return PlannedRun(name=name, overrides=overrides, size=size.name, params=counts.total,
                          non_embedding_params=counts.non_embedding, tokens=tokens, steps=steps,
                          flops=tokens * per_token, flop_convention=convention, parent=parent,
                          start_step=config.train.init_step, evaluations=evaluations,
                          config=config, mfu_flops=tokens * flops.mfu_flops_per_token(
                              model, config.data.seq_len, _shapes(config)))


def _evaluations(train, steps: int) -> tuple[tuple[int, int], ...]:
    """The held-out evaluations (how many, batches each; -1 the whole split) the trainer runs
    between `train.init_step` and `steps`: `train.eval_batches` at every multiple of
    `train.eval_every` before the last step; at the last, `train.final_eval_batches` (0:
    `eval_batches`, -1: the whole split), twice with `train.continuation_tokens`."""
    periodic = (steps - 1) // train.eval_every - train.init_step // train.eval_every
    passes = 2 if train.continuation_tokens else 1
    return tuple((count, batches) for count, batches in (
        (periodic, train.eval_batches), (passes, train.final_eval_batches or train.eval_batches))
        if count)


def _shapes(config):
    """Per-row corpus, encoder and decoder tokens of the run's objective (its FLOPs follow)."""
    return objectives.shapes_of(config.data, config.train).shapes


def _tokens_per_step(config) -> int:
    return config.train.batch_size * _shapes(config).corpus


def isoflop_run_name(sweep_name: str, size_name: str, flops: float) -> str:
    return f"{sweep_name}-{size_name}-C{format_number(flops)}"


def _single_budget_runs(planner: Planner, size: _Size) -> list[PlannedRun]:
    sweep, config = planner.sweep, size.config
    if sweep.plan == "isoflop":
        budgets = [(isoflop_run_name(sweep.name, size.name, c), c / size.flops_per_token)
                   for c in sweep.isoflop_budgets]
    elif sweep.plan == "steps":
        # Without `steps`, the run config's own length: its train.tokens when it sets them.
        budgets = [(f"{sweep.name}-{size.name}",
                    (sweep.steps or budget.steps_for(config)) * _tokens_per_step(config))]
    elif sweep.plan == "tokens":
        budgets = [(f"{sweep.name}-{size.name}-D{format_number(sweep.tokens)}", sweep.tokens)]
    else:
        budgets = [(f"{sweep.name}-{size.name}",
                    sweep.tokens_per_param * size.non_embedding_params)]
    runs = []
    for name, tokens in budgets:
        steps = round(tokens / _tokens_per_step(config))
        below_one_step = tokens < _tokens_per_step(config)
        if sweep.plan == "isoflop" and (below_one_step or steps < sweep.min_steps):
            continue
        if below_one_step:  # it would train one step: more tokens than the budget and its name say
            field = "tokens" if sweep.plan == "tokens" else "tokens_per_param"
            raise ConfigError(field, sweep[field], (
                f"a budget of at least one step, {_tokens_per_step(config)} tokens, for size "
                f"{size.name} (it gives {tokens:.4g})"))
        plan_fields = {"train.steps": steps, "train.tokens": 0,
                       **size_hyperparameters(sweep, config, size.non_embedding_params, steps)}
        runs.append(planner.run(size, name, plan_fields))
    return runs


def _ladder_runs(planner: Planner, size: _Size) -> list[PlannedRun]:
    """One WSD run at the size's largest budget that saves its stable state where each smaller
    budget's cooldown starts, and one branch per smaller budget."""
    sweep, config = planner.sweep, size.config
    field = ladder_field(sweep)
    token_budgets = ([ratio * size.non_embedding_params for ratio in sweep.ladder_tokens_per_param]
                     if field == "ladder_tokens_per_param" else list(sweep.ladder_tokens))
    budget_steps = [max(1, round(tokens / _tokens_per_step(config))) for tokens in token_budgets]
    steps = sorted(set(budget_steps))
    if len(steps) < len(budget_steps):  # a repeated budget would silently make one run fewer
        repeated = next(s for s in steps if budget_steps.count(s) > 1)
        raise ConfigError(field, sweep[field], f"distinct budgets (two of them train size "
                          f"{size.name} for the same {repeated} steps of "
                          f"{_tokens_per_step(config):,} tokens: train.batch_size="
                          f"{config.train.batch_size} rows of {_shapes(config).corpus})")
    main_steps = steps[-1]
    hparams = size_hyperparameters(sweep, config, size.non_embedding_params, main_steps)
    optim = ml_collections.ConfigDict({**config.optim.to_dict(),
                                       "warmup_steps": hparams["optim.warmup_steps"]})
    if budget.warmup_steps(optim, steps[0]) != optim.warmup_steps:
        # A budget of no more steps than the warmup would warm up faster than its parent: the
        # two would differ from the first step, and the branch would not be the independent run.
        raise ConfigError(field, sweep[field], f"budgets of size {size.name} longer than its "
                          f"warmup of {optim.warmup_steps} steps (the smallest is {steps[0]})")
    starts = {s: budget.wsd_decay_start(optim, s) for s in steps[:-1]}
    common = {"optim.schedule": "wsd", "train.tokens": 0, **hparams}

    def name(s: int) -> str:
        return f"{sweep.name}-{size.name}-D{format_number(s * _tokens_per_step(config))}"

    main = planner.run(size, name(main_steps), {**common, "train.steps": main_steps,
                                                "train.branch_steps": tuple(starts.values())})
    branches = [planner.run(size, name(s), {**common, "train.steps": s, "train.init_step": start,
                                            "train.init_from": "<parent>"}, parent=main.name)
                for s, start in starts.items()]
    return [main, *branches]


def expand(sweep: ml_collections.ConfigDict, base_config: str) -> list[PlannedRun]:
    """The runs of a sweep, in a deterministic order with deterministic names.

    A branch's `train.init_from` is the placeholder "<parent>": the runner replaces it with the
    parent's workdir, which only it knows."""
    validate_sweep(sweep)
    planner = Planner(sweep, base_config)
    sizes = _sizes(sweep)
    _check_overrides_reach_a_size(sweep, sizes)
    if sweep.hparams == "mup_transfer":
        # Every width in µP relative to the smallest, whose learning rate the sweep reuses: each
        # size's own, or the one its size_overrides give it.
        widths = [{**member, **flatten(sweep.size_overrides.get(name, {}).get("model", {}))}
                  ["d_model"] for name, member in sizes]
        planner.rule_fields = {"model.parametrization": "mup", "model.mup_base_width": min(widths)}
    runs = []
    for replicate in range(sweep.seeds):
        for size_name, member in sizes:
            size = planner.size(size_name, member, replicate)
            runs += (_ladder_runs if sweep.plan == "ladder" else _single_budget_runs)(planner, size)
    if sweep.plan == "isoflop":  # a budget that leaves every size below min_steps
        names = {run.name for run in runs}
        empty = [c for c in sweep.isoflop_budgets
                 if not any(isoflop_run_name(sweep.name, size, c) in names for size, _ in sizes)]
        if empty:
            raise ConfigError("isoflop_budgets", sweep.isoflop_budgets, "budgets that leave some "
                              f"size at least min_steps={sweep.min_steps} steps ("
                              + ", ".join(f"{c:.3g}" for c in empty)
                              + (" leaves" if len(empty) == 1 else " leave") + " none)")
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        # Budgets are named to two significant digits: two close ones share a name.
        field = {"ladder": ladder_field(sweep), "isoflop": "isoflop_budgets"}.get(sweep.plan)
        raise ConfigError(field or "name", sweep[field] if field else sweep.name,
                          f"run names that are unique (two runs are named {twice}"
                          + ("; the names give budgets to two significant digits: make them "
                             "differ there)" if field else ")"))
    return runs


def _check_overrides_reach_a_size(sweep: ml_collections.ConfigDict, sizes) -> None:
    """A field of `overrides` that every size sets itself (in its `size_overrides`, or a model
    field of its family member's shape) would change no run: ConfigError names it."""
    for key, value in flatten(sweep.overrides).items():
        in_size_overrides = [key in flatten(sweep.size_overrides.get(name, {}))
                             for name, _ in sizes]
        in_shape = [key.startswith("model.") and key.removeprefix("model.") in member
                    for _, member in sizes]
        if not all(a or b for a, b in zip(in_size_overrides, in_shape)):
            continue
        if all(in_size_overrides):
            where = f"size_overrides sets {key} for every size; change it there"
        elif all(in_shape):
            where = (f"every member of family {sweep.family!r} sets {key}; set it per size in "
                     f"size_overrides")
        else:
            where = f"every size sets {key} itself, in its shape or its size_overrides"
        raise ConfigError(f"overrides.{key}", value, f"a field some size takes from it ({where})")


def resolve_base_config(base_config: str, sweep_config: str) -> str:
    """The base run config's path: as given, or relative to the sweep file's folders."""
    path, _, arg = base_config.partition(":")
    candidates = [pathlib.Path(path)] + [parent / path for parent in
                                         pathlib.Path(sweep_config).absolute().parents]
    for candidate in candidates:
        try:
            if candidate.is_file():
                return str(candidate) + (f":{arg}" if arg else "")
        except OSError as error:  # a name longer than the file system allows, a looping link
            raise ConfigError("base_config", base_config, f"a path the file system can hold "
                                                          f"({error.strerror})") from None
    raise ConfigError("base_config", base_config, "an existing run config file")

"""Run configuration: every field declared once, with its default, its meaning and its rule.

A run is described by one `ml_collections.ConfigDict` rendered from the section dataclasses below
(`default_config`). Config files in `configs/` start from it and set only what they change; the
command line overrides single fields (`--config.model.d_model=256`). `validate` checks the whole
thing once, at the edge — each field against its declared rule, then the rules between fields —
and raises `ConfigError` naming the field, the value and what is allowed. Nothing deeper
re-checks. `model_config` resolves `config.model` into the frozen `ModelConfig` the model is built
from: the same dataclass, with every "0 means derive it" field derived.

The sections are dataclasses rather than a hand-written ConfigDict because one declaration then
gives the defaults, the checks, the resolved model and the documentation; the ConfigDict stays the
runtime object because ml-collections' config files and `--config.x=y` overrides work on it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from typing import Any

import ml_collections

from scaling import budget
from scaling import data as data_lib
from scaling.data import objectives
from scaling.errors import ConfigError
from scaling.fields import (check_section, flag, integer, number, numbers, option, probability,
                            split_tags, text, to_config_dict)

__all__ = ["ConfigError", "ModelConfig", "default_config", "validate", "model_config"]

LAYOUTS = ("decoder", "encoder", "encoder_decoder")
POSITIONS = ("rope", "sinusoidal", "learned", "alibi", "none")
ATTENTIONS = ("full", "sliding")
FFNS = ("gelu", "relu", "swiglu")
NORMS = ("rmsnorm", "layernorm")
NORM_POSITIONS = ("pre", "post")
INITS = ("scaled_normal", "normal", "xavier", "he", "small")
DTYPES = ("float32", "bfloat16")
PARAMETRIZATIONS = ("standard", "mup")
REMAT_POLICIES = ("none", "full", "dots")
SCHEDULES = ("cosine", "linear", "wsd", "constant")
DECAY_SHAPES = ("linear", "sqrt")
TOKENIZERS = ("byte", "sentencepiece")
WANDB_MODES = ("disabled", "offline", "online")
# What W&B itself accepts (its Settings refuse the rest, and the run would train without it).
WANDB_ENV_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")
WANDB_PROJECT_FORBIDDEN = "/\\#?%:"
WANDB_NAME_LIMIT, WANDB_TAG_LIMIT = 128, 64
SWEEP_TAG = "sweep:"  # a sweep's runs and their fit are tagged sweep:<name>
FLOP_CONVENTIONS = ("6N", "full")
NONFINITE_ACTIONS = ("stop", "skip")
# Rates, weights and scales the step holds in float32: above its largest number they are inf,
# and one that must be above 0 is 0 (or loses its precision) below its smallest normal number.
FLOAT32_MAX = 3.4e38
FLOAT32_TINY = 1.2e-38
OBJECTIVES = objectives.OBJECTIVES
MESH_AXIS_SIZE = "an integer >= 1, or -1 for the rest of the devices"


# Far beyond any model this trains, and small enough that sizing one (its parameter count, memory
# estimate and position tables, computed before anything is built) stays instant: a width or
# length of 1e30 hung the dry run or ended in a traceback.
LARGEST_WIDTH = 2**17
LONGEST_SEQUENCE = 2**20


def default_d_ff(d_model: int, ffn: str) -> int:
    """4·d_model for ReLU/GELU; for SwiGLU the parameter-matched 8/3·d_model rounded up to 8."""
    if ffn == "swiglu":
        return -(-int(8 * d_model / 3) // 8) * 8
    return 4 * d_model


# Model fields that change how a step is computed (what is recomputed, how the layer loop is
# traced), not what: the same parameters and the same mathematics. A run resumes under other
# values (`model.remat=full` is what running out of memory advises).
COMPUTE_ONLY_MODEL_FIELDS = ("remat", "scan_unroll")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`config.model`. As a ConfigDict, 0 in a derived field means "derive it"; a `ModelConfig`
    instance always holds the derived values (see `__post_init__`)."""

    layout: str = option("decoder", LAYOUTS, "decoder-only, encoder-only or encoder–decoder")
    num_layers: int = integer(2, "blocks (the decoder's, for encoder_decoder)", minimum=1)
    num_encoder_layers: int = integer(0, "encoder_decoder: encoder blocks; 0 means num_layers")
    d_model: int = integer(128, "model width", minimum=1, maximum=LARGEST_WIDTH,
                           allowed=f"an integer from 1 to {LARGEST_WIDTH:,}")
    num_heads: int = integer(4, "query heads", minimum=1)
    num_kv_heads: int = integer(0, "key/value heads: 0 means num_heads (multi-head), 1 is "
                                   "multi-query, between is grouped-query")
    head_dim: int = integer(0, "size of each head; 0 means d_model // num_heads",
                            maximum=LARGEST_WIDTH,
                            allowed=f"an integer from 0 to {LARGEST_WIDTH:,}")
    d_ff: int = integer(0, "feed-forward width; 0 means 4·d_model (gelu/relu) or 8/3·d_model "
                           "rounded to 8 (swiglu)", maximum=8 * LARGEST_WIDTH,
                        allowed=f"an integer from 0 to {8 * LARGEST_WIDTH:,}")
    vocab_size: int = integer(0, "the tokenizer's vocabulary (0: ask the tokenizer); objectives "
                                 "other than causal_lm add their special tokens after it")
    max_seq_len: int = integer(0, "rows of learned/sinusoidal position tables; 0 means "
                                  "data.seq_len", maximum=LONGEST_SEQUENCE,
                               allowed=f"an integer from 0 to {LONGEST_SEQUENCE:,}")
    position: str = option("rope", POSITIONS, "position encoding")
    # Above 1 the rotation frequencies theta^(-2i/head_dim) fall across the head; a base that
    # underflows float32 (1e-50) made them infinite, and the run NaN at its first step.
    # Above float32's largest number the base is infinite in the rotation tables: every
    # frequency but the first is 0.
    rope_theta: float = number(10000.0, "RoPE base wavelength", minimum=1.0,
                               exclusive_minimum=True, maximum=FLOAT32_MAX)
    attention: str = option("full", ATTENTIONS, "full attention, or a sliding window")
    window: int = integer(0, "sliding: keys each query sees (itself and window-1 before; in "
                             "an encoder, window-1 on each side)")
    ffn: str = option("gelu", FFNS, "feed-forward activation")
    norm: str = option("rmsnorm", NORMS, "normalisation layer")
    norm_position: str = option("pre", NORM_POSITIONS, "norm before (pre) or after (post) "
                                                       "each sublayer's residual add")
    qk_norm: bool = flag(False, "normalise queries and keys per head")
    use_bias: bool = flag(False, "biases in projections and the feed-forward layer")
    dropout: float = probability(0.0, "residual dropout probability")
    attention_dropout: float = probability(0.0, "attention-weight dropout probability")
    tie_embeddings: bool = flag(True, "read out with the token embedding's transpose")
    init: str = option("scaled_normal", INITS, "weight initialisation scheme")
    init_std: float = number(0.02, "standard deviation of normal inits", minimum=FLOAT32_TINY,
                             maximum=FLOAT32_MAX)
    z_loss: float = number(0.0, "weight of the log-partition-function penalty (PaLM's z-loss)",
                           maximum=FLOAT32_MAX)
    compute_dtype: str = option("float32", DTYPES, "activation and matmul dtype (softmax and "
                                                   "logits stay fp32)")
    parametrization: str = option("standard", PARAMETRIZATIONS, "standard, or µP (docs/mup.md)")
    mup_base_width: int = integer(128, "µP: the width whose learning rate transfers", minimum=1)
    remat: str = option("none", REMAT_POLICIES, "activation rematerialisation policy")
    # Unrolled layers let XLA fuse and schedule across layers (train steps ~1.4x faster on the
    # small CPU reference shapes); a rolled loop (1) keeps compile time flat in depth.
    scan_unroll: int = integer(0, "layers per iteration of the layer loop; 0 means all (no "
                                  "loop), or 1 under model.remat, which frees memory only "
                                  "across iterations")
    document_mask: bool = dataclasses.field(default=False, metadata={
        "doc": "attention stays within documents (from data.document_mask)", "in_config": False})
    source_pad_id: int = dataclasses.field(default=-1, metadata={
        "doc": "the source's padding token, masked from the encoder's self-attention and the "
               "decoder's cross-attention (-1: none; set for train.objective='seq2seq')",
        "in_config": False})

    def __post_init__(self):
        for name, value in derive_model_fields(vars(self)).items():
            object.__setattr__(self, name, value)


def derive_model_fields(fields: dict) -> dict:
    """`fields` of a model (`config.model`, or a run's record of it) with its "0 means derive it"
    fields derived, as ModelConfig holds them: 0 and the value it stands for are one model. A
    field is left as it is where what it is derived from is not recorded."""
    rules = {"num_encoder_layers": (("num_layers",), lambda f: f["num_layers"]),
             "num_kv_heads": (("num_heads",), lambda f: f["num_heads"]),
             "head_dim": (("d_model", "num_heads"), lambda f: f["d_model"] // f["num_heads"]),
             "d_ff": (("d_model", "ffn"), lambda f: default_d_ff(f["d_model"], f["ffn"]))}
    derived = dict(fields)
    for name, (sources, rule) in rules.items():
        if not fields.get(name, 1) and all(fields.get(source) for source in sources):
            derived[name] = rule(fields)
    return derived


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = text("python_stdlib", "python_stdlib (embedded), text_files, or a TFDS text "
                                         "dataset name")
    feature: str = text("text", "the dataset's text feature")
    files: str = text("", "text_files, text_pairs: comma-separated files, folders or "
                               "glob patterns")
    train_split: str = text("train", "split trained on (TFDS slicing allowed)")
    eval_split: str = text("validation", "split evaluated on")
    tokenizer: str = option("byte", TOKENIZERS, "bytes, or SentencePiece")
    vocab_size: int = integer(0, "sentencepiece: the vocabulary to train")
    spm_model: str = text("", "sentencepiece: an existing model file instead of training one")
    seq_len: int = integer(128, "tokens per training sequence", minimum=1,
                           maximum=LONGEST_SEQUENCE,
                           allowed=f"an integer from 1 to {LONGEST_SEQUENCE:,}")
    document_mask: bool = flag(False, "attention stays within each packed document")
    cache_dir: str = text("", "token caches; '' means $SCALING_CACHE or ~/.cache/scaling")
    tfds_data_dir: str = text("", "TFDS data folder; '' means <cache root>/tfds")
    prefetch: int = integer(2, "steps' batches prepared ahead (calls' with "
                                "train.steps_per_call > 1)")
    source_feature: str = text("", "seq2seq from TFDS: the pairs' source feature (e.g. 'de')")
    target_feature: str = text("", "seq2seq from TFDS: the pairs' target feature (e.g. 'en')")
    target_len: int = integer(0, "seq2seq: target tokens per pair; 0 means data.seq_len",
                              maximum=LONGEST_SEQUENCE,
                              allowed=f"an integer from 0 to {LONGEST_SEQUENCE:,}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = number(3e-3, "peak learning rate", minimum=FLOAT32_TINY, maximum=FLOAT32_MAX)
    schedule: str = option("cosine", SCHEDULES, "decay after warmup (wsd: warmup-stable-decay)")
    warmup_steps: int = integer(100, "linear warmup from 0 to lr")
    min_lr_ratio: float = number(0.1, "the floor the decay ends at, as a fraction of lr",
                                 maximum=1.0)
    decay_fraction: float = number(0.2, "wsd: the cooldown's share of the run's steps",
                                   maximum=1.0)
    decay_shape: str = option("linear", DECAY_SHAPES, "wsd: cooldown shape (sqrt is 1-√t, "
                                                      "Hägele et al. 2024)")
    weight_decay: float = number(0.1, "AdamW decoupled weight decay (kernels and embeddings)",
                                 maximum=FLOAT32_MAX)
    # 1 would leave Adam's bias correction 1 - β^t at 0: the first update is 0/0, NaN.
    b1: float = number(0.9, "Adam β1", maximum=1.0, exclusive_maximum=True)
    b2: float = number(0.95, "Adam β2", maximum=1.0, exclusive_maximum=True)
    eps: float = number(1e-8, "Adam ε", minimum=FLOAT32_TINY, maximum=FLOAT32_MAX)
    grad_clip: float = number(1.0, "global-norm clip; 0 disables", maximum=FLOAT32_MAX)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = integer(32, "global batch, in sequences", minimum=1)
    steps: int = integer(1000, "optimizer steps (ignored when tokens > 0)")
    tokens: int = integer(0, "if > 0, steps = ceil(tokens / (batch_size · seq_len))")
    grad_accum_steps: int = integer(1, "micro-batches per step", minimum=1)
    log_every: int = integer(10, "steps between logged records", minimum=1)
    # Small models spend most of a step dispatching it, putting its batch on the device and
    # reading its loss: K steps scanned in one compiled loop pay that once. The plan of which
    # steps run K at a time is a function of the step alone (`Trainer._chunk_starts`), so a
    # resumed run runs the same calls; on CPU the result is bitwise that of one step per call.
    steps_per_call: int = integer(1, "optimizer steps per compiled call: from a multiple of it "
                                     "with no log, eval, save or branch step among the next "
                                     "K - 1, K steps run in one call, elsewhere one (best a "
                                     "divisor of log_every)", minimum=1)
    eval_every: int = integer(100, "steps between held-out evaluations", minimum=1)
    eval_batches: int = integer(4, "held-out batches per evaluation (at most the full "
                                       "batches the held-out split fills)", minimum=1)
    final_eval_batches: int = integer(0, "held-out batches of the final evaluation; 0 means "
                                         "eval_batches, -1 the whole held-out split in full "
                                         "batches (each window at most once, the fewer than "
                                         "batch_size left over unread)", minimum=-1)
    on_nonfinite: str = option("stop", NONFINITE_ACTIONS, "a non-finite loss or gradient stops "
                                                          "the run, or the update is skipped")
    flop_convention: str = option("full", FLOP_CONVENTIONS, "FLOPs reported as `flops`")
    objective: str = option("causal_lm", OBJECTIVES, "what is predicted from what "
                                                     "(scaling.data.objectives)")
    # At 0 the objectives still select one position per row: a share above 0 is what they make.
    mask_fraction: float = number(0.15, "masked_lm: share of positions selected per row",
                                  exclusive_minimum=True, maximum=1.0, exclusive_maximum=True)
    noise_density: float = number(0.15, "span_corruption: share of tokens dropped per row",
                                  exclusive_minimum=True, maximum=1.0, exclusive_maximum=True)
    mean_span_length: float = number(3.0, "span_corruption: mean dropped-span length, in tokens",
                                     minimum=1.0)
    continuation_tokens: int = integer(0, "if > 0, the final evaluation also scores the last k "
                                          "tokens of each held-out window given the rest, a loss "
                                          "decoders and encoder–decoders share")
    # JAX's persistent compilation cache in <data cache root>/jax-compilation: a rerun, a resumed
    # run or another run of the same shapes loads its compiled steps instead of compiling them.
    compilation_cache: bool = flag(True, "reuse compiled steps across runs of the same shapes")
    branch_steps: tuple = numbers((), "wsd: steps at which the stable-phase state is saved for "
                                      "cooldown branches (see scaling.branches)")
    init_from: str = text("", "a cooldown branch: the parent run's workdir to start from")
    init_step: int = integer(0, "a cooldown branch: the parent's saved step to start from")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = integer(-1, "data-parallel axis size; -1 means the rest of the devices",
                        minimum=-1, allowed=MESH_AXIS_SIZE)
    fsdp: int = integer(1, "FSDP axis size (parameters and optimizer state sharded)", minimum=-1,
                        allowed=MESH_AXIS_SIZE)
    tensor: int = integer(1, "tensor-parallel axis size (heads and MLP split)", minimum=-1,
                          allowed=MESH_AXIS_SIZE)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = integer(200, "steps between saves; 0 saves only at the end")
    keep: int = integer(3, "checkpoints kept", minimum=1)
    async_save: bool = flag(True, "save in the background")


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    mode: str = option("disabled", WANDB_MODES, "W&B logging")
    project: str = text("scaling", "W&B project")
    entity: str = text("", "W&B entity; '' means the default")
    group: str = text("", "W&B group (a sweep sets its name)")
    tags: str = text("", "comma-separated tags")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    coordinator_address: str = text("", "'' means automatic (TPU VMs, SLURM) or one process")
    num_processes: int = integer(0, "processes of a multi-host run (explicit coordinator)")
    process_id: int = integer(-1, "this process's index (explicit coordinator)", minimum=-1)
    heartbeat_seconds: int = integer(
        100, "how long a process may go unheard before JAX's runtime takes it for dead and ends "
        "the others (JAX's default)", minimum=1, maximum=2**31 - 1,
        allowed="an integer from 1 to 2**31 - 1")


# JAX's keys keep a seed's low 32 bits: 2**32 would start as 0 does, and -1 as 2**32 - 1.
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class RunConfig:
    name: str = text("run", "the run's name (W&B, results.csv)")
    seed: int = integer(0, "the one seed: initialisation, data order, dropout", maximum=MAX_SEED,
                        allowed="an integer from 0 to 2**32 - 1")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig,
            "mesh": MeshConfig, "checkpoint": CheckpointConfig, "wandb": WandbConfig,
            "distributed": DistributedConfig}


def default_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with its default. Config files override from here."""
    config = to_config_dict(RunConfig)
    for name, cls in SECTIONS.items():
        config[name] = to_config_dict(cls)
    return config


# ----------------------------------------------------------------------------------------------
# Validation: each field's declared rule, then the rules between fields.


# Fields read only under certain values of another: an override of one where it is not read
# would change nothing (a window under full attention), and the run would not be what was asked.
CONDITIONAL_FIELDS = {
    "model.window": ("model.attention", ("sliding",)),
    "model.mup_base_width": ("model.parametrization", ("mup",)),
    "optim.decay_fraction": ("optim.schedule", ("wsd",)),
    "optim.decay_shape": ("optim.schedule", ("wsd",)),
    "optim.min_lr_ratio": ("optim.schedule", ("cosine", "linear", "wsd")),
    "model.rope_theta": ("model.position", ("rope",)),
    "model.init_std": ("model.init", ("normal", "scaled_normal")),  # the others set their own
    "train.steps": ("train.tokens", (0,)),  # a token budget sets the steps
    "data.files": ("data.dataset", ("text_files", "text_pairs")),
    **{field: ("train.objective", (objective,))
       for objective, fields in objectives.OBJECTIVE_FIELDS.items() for field in fields},
}


def check_overrides_read(config: ml_collections.ConfigDict, fields: list[str],
                         conditional: dict = CONDITIONAL_FIELDS, kind: str = "run") -> None:
    """ConfigError for the first of `fields` (dotted names an override set) that `config` (a
    `kind` config: a run's, or a sweep's with its own table) does not read (`conditional`:
    {field: (the field that decides, the values under which it is read)}). Fields a config file
    sets are left alone: a base config may set them for the runs that read them."""
    def value(dotted: str):
        node = config
        for part in dotted.split("."):
            node = node[part]
        return node

    for field in fields:
        if field not in conditional:
            continue
        governing, readers = conditional[field]
        if value(governing) not in readers:
            raise ConfigError(field, value(field), (
                f"it is read only with {governing}="
                + " or ".join(repr(reader) for reader in readers)
                + f", and this {kind}'s is {value(governing)!r}; drop the override, or set "
                f"{governing} too"))


def validate(config: ml_collections.ConfigDict) -> None:
    """Check every field once; raise `ConfigError` on the first bad one."""
    check_section(RunConfig, config, "")
    for name, cls in SECTIONS.items():
        check_section(cls, config[name], f"{name}.")
    _check_model(config.model)
    data_lib.validate_data_config(config.data)
    if config.model.max_seq_len and config.data.seq_len > config.model.max_seq_len:
        raise ConfigError("data.seq_len", config.data.seq_len,
                          f"at most model.max_seq_len={config.model.max_seq_len}")
    _check_train(config)
    check_objective(config)
    _check_vocab(config)
    _check_positions(config)
    _check_mesh(config.mesh)
    _check_distributed(config.distributed)
    _check_wandb(config.wandb)


WANDB_PROJECT_RULE = (f"a W&B project name: 1 to {WANDB_NAME_LIMIT} characters, none of "
                      f"{' '.join(WANDB_PROJECT_FORBIDDEN)}")


def is_wandb_project(name: str) -> bool:
    """Whether W&B takes `name` as a project (WANDB_PROJECT_RULE)."""
    return bool(name) and len(name) <= WANDB_NAME_LIMIT and not set(name) & set(
        WANDB_PROJECT_FORBIDDEN)


def wandb_environment_problem() -> str | None:
    """Why W&B would refuse to start under this `$WANDB_MODE`; None when it is unset or one W&B
    takes."""
    environment = os.environ.get("WANDB_MODE", "")
    if environment and environment.lower() not in WANDB_ENV_MODES:
        return (f"$WANDB_MODE={environment!r} is none of {', '.join(WANDB_ENV_MODES)}: unset it "
                "or fix it")
    return None


def _check_wandb(w: ml_collections.ConfigDict) -> None:
    """What W&B would refuse at its start, after which the run trains without it: checked only
    when the run logs to W&B."""
    if w.mode == "disabled":
        return
    if not is_wandb_project(w.project):
        raise ConfigError("wandb.project", w.project, WANDB_PROJECT_RULE)
    if len(w.group) > WANDB_NAME_LIMIT:
        raise ConfigError("wandb.group", w.group,
                          f"at most {WANDB_NAME_LIMIT} characters (W&B's limit)")
    if long := next((tag for tag in split_tags(w.tags) if len(tag) > WANDB_TAG_LIMIT), None):
        raise ConfigError("wandb.tags", w.tags, f"comma-separated tags of at most "
                                                f"{WANDB_TAG_LIMIT} characters each (W&B's limit; "
                                                f"{long[:20]}... has {len(long)})")
    if problem := wandb_environment_problem():
        raise ConfigError("wandb.mode", w.mode, f"a mode W&B starts in, but {problem}")


def _is_host_and_port(address: str) -> bool:
    """HOST:PORT, an IPv6 host in brackets ([::1]:1234), the port an ASCII number 1-65535."""
    host, _, port = str(address).rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    return ((bracketed or (bool(host) and ":" not in host)) and port.isascii()
            and port.isdigit() and 1 <= int(port) <= 65535)


def _check_distributed(d: ml_collections.ConfigDict) -> None:
    """The process count and index go with an explicit coordinator; without one JAX finds them
    itself (TPU VMs, SLURM) or there is one process, and they would be ignored."""
    if not d.coordinator_address:
        for name, unset in (("num_processes", 0), ("process_id", -1)):
            if d[name] != unset:
                raise ConfigError(f"distributed.{name}", d[name],
                                  f"{unset} without distributed.coordinator_address (it is read "
                                  "only with an explicit coordinator)")
    elif not _is_host_and_port(d.coordinator_address):
        raise ConfigError("distributed.coordinator_address", d.coordinator_address,
                          "HOST:PORT, the port from 1 to 65535 (e.g. 10.0.0.1:1234)")
    elif d.num_processes and d.process_id >= d.num_processes:
        raise ConfigError("distributed.process_id", d.process_id,
                          f"less than distributed.num_processes={d.num_processes}")


def _check_model(m: ml_collections.ConfigDict) -> None:
    if m.head_dim == 0 and m.d_model % m.num_heads:
        raise ConfigError("model.d_model", m.d_model,
                          f"a multiple of model.num_heads={m.num_heads} (or set model.head_dim)")
    if m.num_heads % (m.num_kv_heads or m.num_heads):
        raise ConfigError("model.num_kv_heads", m.num_kv_heads,
                          f"a divisor of model.num_heads={m.num_heads}")
    if m.num_encoder_layers and m.layout != "encoder_decoder":
        # An encoder-only model's blocks are model.num_layers; this field would be ignored.
        raise ConfigError("model.num_encoder_layers", m.num_encoder_layers,
                          f"0 with model.layout={m.layout!r} (it sets an encoder_decoder's "
                          "encoder; model.num_layers sets the blocks of a decoder or an encoder)")
    if m.attention == "sliding" and m.window <= 0:
        raise ConfigError("model.window", m.window, "an integer > 0 with model.attention='sliding'")
    if m.position == "rope" and (m.head_dim or m.d_model // m.num_heads) % 2:
        raise ConfigError("model.head_dim", m.head_dim or m.d_model // m.num_heads,
                          "an even number with model.position='rope'")
    if m.position == "sinusoidal" and m.d_model % 2:
        raise ConfigError("model.d_model", m.d_model, "an even number with model.position='sinusoidal'")
    if m.ffn == "swiglu" and m.use_bias:
        raise ConfigError("model.use_bias", m.use_bias, "False with model.ffn='swiglu'")


MAX_STEPS = 2**31 - 1  # the optimizer's step count is an int32 number


def _check_train(config: ml_collections.ConfigDict) -> None:
    t, o = config.train, config.optim
    if t.steps == 0 and t.tokens == 0:
        raise ConfigError("train.steps", t.steps, "> 0 unless train.tokens > 0")
    if t.batch_size % t.grad_accum_steps:
        raise ConfigError("train.grad_accum_steps", t.grad_accum_steps,
                          f"a divisor of train.batch_size={t.batch_size}")
    if t.steps_per_call > t.log_every:  # a logged step among every K: no call could hold K
        raise ConfigError("train.steps_per_call", t.steps_per_call,
                          f"at most train.log_every={t.log_every}, best a divisor of it")
    total = budget.steps_for(config)
    if total > MAX_STEPS:
        field = "train.tokens" if t.tokens > 0 else "train.steps"
        raise ConfigError(field, t[field.partition(".")[2]],
                          f"at most {MAX_STEPS:,} optimizer steps (the step count is an int32 "
                          f"number); this is {total:,}")
    if t.branch_steps and o.schedule != "wsd":
        raise ConfigError("train.branch_steps", t.branch_steps,
                          "() unless optim.schedule='wsd' (branches start in the stable phase)")
    if t.branch_steps:
        start = budget.wsd_decay_start(o, total)
        if not all(float(step).is_integer() and 0 < step <= start for step in t.branch_steps):
            raise ConfigError("train.branch_steps", t.branch_steps,
                              f"whole steps of the stable phase of this run of {total} steps (1 "
                              f"to {start}, where its cooldown starts)")
    if bool(t.init_from) != bool(t.init_step):
        raise ConfigError("train.init_step", t.init_step,
                          "> 0 exactly when train.init_from names a parent run")
    if t.init_from:
        # A branch must start inside its own stable phase, or it is not the run it claims to be.
        start = budget.wsd_decay_start(o, total)
        if o.schedule != "wsd" or t.init_step > start:
            raise ConfigError("train.init_step", t.init_step,
                              f"a step of the stable phase of an optim.schedule='wsd' run of "
                              f"{total} steps (at most {start}, where its cooldown starts)")


def check_objective(config: ml_collections.ConfigDict) -> None:
    """The objective's rules on the layout and the data (a seq2seq run reads pairs, the others a
    text corpus), as training and `scaling-eval` apply them."""
    objective, data = config.train.objective, config.data
    why_not = objectives.layout_error(objective, config.model.layout)
    if why_not:
        raise ConfigError("train.objective", objective, why_not)
    if objective != "causal_lm" and data.document_mask:
        raise ConfigError("data.document_mask", True,
                          f"False with train.objective={objective!r} (document masks are for "
                          "packed causal_lm rows)")
    reads_pairs = data.dataset == "text_pairs" or bool(data.source_feature)
    if objective != "seq2seq" and data.source_feature and data.dataset != "text_pairs":
        raise ConfigError("data.source_feature", data.source_feature,
                          f"'' with train.objective={objective!r} (pairs are read only by "
                          "train.objective='seq2seq')")
    if (objective == "seq2seq") != reads_pairs:
        allowed = ("data.dataset='text_pairs', or a TFDS dataset with data.source_feature and "
                   "data.target_feature" if objective == "seq2seq"
                   else "a text corpus (pairs are read only by train.objective='seq2seq')")
        raise ConfigError("data.dataset", data.dataset, allowed)
    if bool(data.source_feature) != bool(data.target_feature):
        raise ConfigError("data.target_feature", data.target_feature,
                          "set exactly when data.source_feature is (the pair's two features)")
    if objective == "seq2seq" and data.tokenizer == "sentencepiece" and not data.spm_model:
        raise ConfigError("data.spm_model", data.spm_model, "a SentencePiece model file with "
                          "train.objective='seq2seq' (or data.tokenizer='byte')")
    k = config.train.continuation_tokens
    if k and objective not in objectives.CONTINUATION_OBJECTIVES:
        raise ConfigError("train.continuation_tokens", k,
                          f"0 with train.objective={objective!r} (only "
                          f"{', '.join(objectives.CONTINUATION_OBJECTIVES)} score a continuation)")
    if k > data.seq_len:
        raise ConfigError("train.continuation_tokens", k, f"at most data.seq_len={data.seq_len} "
                          "(the continuation needs a token of its window before it)")
    if k and data.document_mask:
        raise ConfigError("train.continuation_tokens", k, "0 with data.document_mask=True (the "
                          "continuation is scored given its whole window)")
    positions = position_rows(config)
    if (k and objective == "span_corruption" and config.model.position == "learned"
            and max(k + 2, data.seq_len + 2 - k) > positions):
        # The task's encoder reads the window's first seq_len + 1 - k tokens and a sentinel
        # (`objectives.continuation_span`), its decoder BOS, the sentinel and the k tokens.
        low, high = max(1, data.seq_len + 2 - positions), min(data.seq_len, positions - 2)
        fits = (f"from {low} to {high}" if low <= high
                else "none: raise model.max_seq_len")
        raise ConfigError("train.continuation_tokens", k, (
            f"{fits} with model.position='learned' (the encoder reads data.seq_len + 2 - k "
            f"tokens, {data.seq_len + 2 - k} here, the decoder k + 2, and both must fit "
            f"model.max_seq_len={positions})"))
    target_len = data.target_len or data.seq_len
    if objective == "seq2seq" and target_len < 2:
        field, value = ("data.target_len", data.target_len) if data.target_len else (
            "data.seq_len", data.seq_len)
        raise ConfigError(field, value, "at least 2 with train.objective='seq2seq' (a target "
                                        "token and the EOS that closes it)")
    if objective == "span_corruption" and data.seq_len < 4:
        raise ConfigError("data.seq_len", data.seq_len, ">= 4 with span_corruption (kept and "
                                                        "dropped tokens in every row)")
    if objective == "span_corruption":
        train = config.train
        noise, spans = objectives.span_counts(data.seq_len, train.noise_density,
                                              train.mean_span_length)
        if spans > data.seq_len - noise:
            raise ConfigError("train.noise_density", train.noise_density, (
                f"a density that leaves a kept token before each dropped span: {noise} of "
                f"data.seq_len={data.seq_len} tokens dropped in {spans} spans leave "
                f"{data.seq_len - noise} kept (lower it, or raise train.mean_span_length="
                f"{train.mean_span_length:g})"))


# Token ids and the vocabulary's size are int32 numbers in the model.
MAX_VOCAB = 2**31 - 1


def _check_vocab(config: ml_collections.ConfigDict) -> None:
    """A model vocabulary below the tokenizer's would index past its embedding table (the run
    then "diverges" at its first step); one past int32 cannot be indexed at all."""
    requested = config.model.vocab_size
    if not requested:
        return
    # The model's vocabulary is the requested one plus the objective's special tokens.
    specials = objectives.for_config(config.data, config.train, 0, eod_id=0).vocab_size
    if requested + specials > MAX_VOCAB:
        raise ConfigError("model.vocab_size", requested,
                          f"at most {MAX_VOCAB - specials} (the model's vocabulary"
                          + (f", with the objective's {specials} special tokens," if specials
                             else "") + " is an int32 number)")
    tokenizer_vocab = data_lib.static_vocab_size(config.data)
    if requested < tokenizer_vocab:
        objective = config.train.objective
        special = ("" if objective == "causal_lm" else
                   f"; train.objective={objective!r} adds its special tokens after them")
        raise ConfigError("model.vocab_size", requested,
                          f"0 (the tokenizer's vocabulary) or at least the {tokenizer_vocab} ids "
                          f"of data.tokenizer={config.data.tokenizer!r}{special}")


def position_rows(config: ml_collections.ConfigDict) -> int:
    """The rows of the model's position tables: model.max_seq_len, 0 meaning data.seq_len."""
    return config.model.max_seq_len or config.data.seq_len


def _check_positions(config: ml_collections.ConfigDict) -> None:
    """A learned position table has model.max_seq_len rows: every encoder and decoder input the
    objective makes must fit it."""
    model, data, objective = config.model, config.data, config.train.objective
    if model.position != "learned":
        return
    positions = position_rows(config)
    shapes = objectives.shapes_of(data, config.train).shapes
    if objective == "seq2seq" and shapes.decoder > positions:
        raise ConfigError("data.target_len", data.target_len,
                          f"at most model.max_seq_len={positions} with model.position='learned' "
                          "(the decoder reads data.target_len tokens; or raise "
                          "model.max_seq_len)")
    longest = max(shapes.encoder, shapes.decoder)
    if longest > positions:
        if objective == "span_corruption":
            noise, spans = objectives.span_counts(data.seq_len, config.train.noise_density,
                                                  config.train.mean_span_length)
            why = (f"span_corruption of data.seq_len={data.seq_len} makes decoder inputs of "
                   f"{shapes.decoder} tokens ({noise} dropped + {spans} sentinels + 1)")
        else:
            why = f"train.objective={objective!r} makes inputs of {longest} tokens"
        default = f" (0 means data.seq_len={data.seq_len})" if not model.max_seq_len else ""
        raise ConfigError("model.max_seq_len", model.max_seq_len,
                          f"at least {longest} with model.position='learned'{default}: {why}")


def _check_mesh(mesh: ml_collections.ConfigDict) -> None:
    names = ("data", "fsdp", "tensor")
    for name in names:
        if mesh[name] == 0:
            raise ConfigError(f"mesh.{name}", 0, MESH_AXIS_SIZE)
    if [mesh[name] for name in names].count(-1) > 1:
        raise ConfigError("mesh", dict(mesh), "at most one axis set to -1")


# ----------------------------------------------------------------------------------------------
# Resolved model configuration


def differing_fields(saved: dict, current: dict) -> list[str]:
    """The fields of `current` whose values `saved` records otherwise, compared as JSON holds
    them (a run's summary or checkpoint meta); a field only one side has (added to the config
    since) is unknown, not a difference."""
    def as_saved(value):
        return json.loads(json.dumps(value, default=str))

    return [name for name, value in current.items()
            if name in saved and as_saved(saved[name]) != as_saved(value)]


def model_config(config: ml_collections.ConfigDict, vocab_size: int | None = None) -> ModelConfig:
    """Resolve `config.model` (with `data.seq_len`, `data.document_mask` and the tokenizer's
    vocabulary) to a ModelConfig."""
    fields = dict(config.model)
    tokenizer_vocab = vocab_size or data_lib.static_vocab_size(config.data)
    # The table: `model.vocab_size` (else the tokenizer's), then the objective's special tokens
    # (none for causal_lm).
    table = objectives.for_config(config.data, config.train, fields["vocab_size"] or
                                  tokenizer_vocab, eod_id=0)
    fields["vocab_size"] = table.vocab_size
    fields["max_seq_len"] = position_rows(config)
    # The batches' special tokens follow the tokenizer's ids (`trained.objective_of`), a larger
    # `model.vocab_size` leaving rows unused between: the padding masked is the batches'.
    made = objectives.for_config(config.data, config.train, tokenizer_vocab, eod_id=0)
    return ModelConfig(**fields, document_mask=bool(config.data.document_mask),
                       source_pad_id=made.special.pad if made.name == "seq2seq" else -1)


def unknown_key_error(config: ml_collections.ConfigDict, dotted: str, value: Any) -> ConfigError:
    """The error for an override of a key the config does not have, listing the keys there are
    and the closest ones."""
    node, path = config, []
    for part in dotted.split("."):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            node = node[part]
            path.append(part)
            continue
        where = "config." + ".".join(path) if path else "config"
        if not isinstance(node, ml_collections.ConfigDict):  # a field, with nothing under it
            return ConfigError(dotted, value, f"a config field; {'.'.join(path)} is a field, "
                                              "not a section")
        keys = list(node.keys())
        close = difflib.get_close_matches(part, keys, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return ConfigError(dotted, value, f"unknown key {part!r} in {where}; allowed: "
                                          f"{', '.join(sorted(keys))}{hint}")
    return ConfigError(dotted, value, "a field that can be overridden")

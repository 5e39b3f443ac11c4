"""Run configuration: the defaults, the validation, and the resolved model config.

A run is described by one `ml_collections.ConfigDict` (see `default_config`). Config files in
`configs/` start from it and change what they need; the command line overrides single fields
(`--config.model.d_model=256`). `validate` checks the whole thing once, at the edge, and raises
`ConfigError` naming the field, the value and what is allowed. Nothing deeper re-checks.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable

import ml_collections

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
TOKENIZERS = ("byte", "sentencepiece")
WANDB_MODES = ("disabled", "offline", "online")
FLOP_CONVENTIONS = ("6N", "full")


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names field, value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"config.{field}={value!r} is not allowed: {allowed}")


def default_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with its default. Config files override from here."""
    c = ml_collections.ConfigDict()
    c.name = "run"
    c.seed = 0

    c.model = m = ml_collections.ConfigDict()
    m.layout = "decoder"
    m.num_layers = 2
    m.num_encoder_layers = 0  # encoder_decoder only; 0 means "same as num_layers"
    m.d_model = 128
    m.num_heads = 4
    m.num_kv_heads = 0  # 0 means num_heads (multi-head); 1 is multi-query; between is grouped-query
    m.head_dim = 0  # 0 means d_model // num_heads
    m.d_ff = 0  # 0 means 4 * d_model (gelu/relu) or the 8/3 rule rounded to 8 (swiglu)
    m.vocab_size = 0  # 0 means "the tokenizer's vocabulary"
    m.max_seq_len = 0  # 0 means data.seq_len; learned/sinusoidal tables have this many rows
    m.position = "rope"
    m.rope_theta = 10000.0
    m.attention = "full"
    m.window = 0  # sliding attention: each query sees this many keys (itself and window-1 before)
    m.ffn = "gelu"
    m.norm = "rmsnorm"
    m.norm_position = "pre"
    m.qk_norm = False
    m.use_bias = False
    m.dropout = 0.0
    m.attention_dropout = 0.0
    m.tie_embeddings = True
    m.init = "scaled_normal"
    m.init_std = 0.02
    m.z_loss = 0.0
    m.compute_dtype = "float32"
    m.parametrization = "standard"
    m.mup_base_width = 128
    m.remat = "none"
    # Layers traced per iteration of the layer loop; 0 means all of them (no loop). Unrolled layers
    # let XLA fuse and schedule across layers (train steps ~1.4x faster on the small CPU reference
    # shapes); a rolled loop (1) keeps compile time flat in depth for very deep models.
    m.scan_unroll = 0

    c.data = d = ml_collections.ConfigDict()
    d.dataset = "python_stdlib"  # the embedded corpus; any TFDS text dataset name; or "text_files"
    d.feature = "text"
    d.files = ""  # text_files: comma-separated files or folders
    d.train_split = "train"
    d.eval_split = "validation"
    d.tokenizer = "byte"
    d.vocab_size = 0  # sentencepiece: the vocabulary to train
    d.spm_model = ""  # sentencepiece: an existing model file instead of training one
    d.seq_len = 128
    d.document_mask = False
    d.cache_dir = ""  # "" means $SCALING_CACHE or ~/.cache/scaling
    d.tfds_data_dir = ""
    d.prefetch = 2

    c.optim = o = ml_collections.ConfigDict()
    o.lr = 3e-3
    o.schedule = "cosine"
    o.warmup_steps = 100
    o.min_lr_ratio = 0.1
    o.decay_fraction = 0.2  # wsd: share of the steps spent decaying
    o.weight_decay = 0.1
    o.b1 = 0.9
    o.b2 = 0.95
    o.eps = 1e-8
    o.grad_clip = 1.0

    c.train = t = ml_collections.ConfigDict()
    t.batch_size = 32  # global, in sequences
    t.steps = 1000
    t.tokens = 0  # if > 0, steps = ceil(tokens / (batch_size * seq_len))
    t.grad_accum_steps = 1
    t.log_every = 10
    t.eval_every = 100
    t.eval_batches = 4
    t.on_nonfinite = "stop"  # or "skip": drop the update and go on
    t.flop_convention = "full"
    # JAX's persistent compilation cache in <data cache root>/jax-compilation: a rerun, a resumed
    # run or another run of the same shapes loads its compiled steps instead of compiling them.
    t.compilation_cache = True

    c.mesh = ms = ml_collections.ConfigDict()
    ms.data = -1  # -1 means "the rest of the devices"
    ms.fsdp = 1
    ms.tensor = 1

    c.checkpoint = ck = ml_collections.ConfigDict()
    ck.every_steps = 200  # 0 disables periodic saves; the final state is always saved
    ck.keep = 3
    ck.async_save = True

    c.wandb = w = ml_collections.ConfigDict()
    w.mode = "disabled"
    w.project = "scaling"
    w.entity = ""
    w.group = ""
    w.tags = ""  # comma-separated

    c.distributed = ds = ml_collections.ConfigDict()
    ds.coordinator_address = ""  # "" means automatic (TPU VMs, SLURM) or single process
    ds.num_processes = 0
    ds.process_id = -1
    return c


# ----------------------------------------------------------------------------------------------
# Validation


def _choice(field: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(field, value, "one of " + ", ".join(allowed))


def _positive(field: str, value: Any, *, allow_zero: bool = False, integer: bool = True) -> None:
    kind = "an integer" if integer else "a number"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(field, value, f"{kind} {'>= 0' if allow_zero else '> 0'}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(field, value, f"{kind} {'>= 0' if allow_zero else '> 0'}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ConfigError(field, value, f"{kind} {'>= 0' if allow_zero else '> 0'}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Check every field once; raise `ConfigError` on the first bad one."""
    from scaling import data as data_lib  # the dataset registry lives with the data code

    m, d, o, t = config.model, config.data, config.optim, config.train
    _choice("model.layout", m.layout, LAYOUTS)
    _choice("model.position", m.position, POSITIONS)
    _choice("model.attention", m.attention, ATTENTIONS)
    _choice("model.ffn", m.ffn, FFNS)
    _choice("model.norm", m.norm, NORMS)
    _choice("model.norm_position", m.norm_position, NORM_POSITIONS)
    _choice("model.init", m.init, INITS)
    _choice("model.compute_dtype", m.compute_dtype, DTYPES)
    _choice("model.parametrization", m.parametrization, PARAMETRIZATIONS)
    _choice("model.remat", m.remat, REMAT_POLICIES)
    for name in ("num_layers", "d_model", "num_heads", "mup_base_width"):
        _positive(f"model.{name}", m[name])
    for name in ("num_encoder_layers", "num_kv_heads", "head_dim", "d_ff", "vocab_size",
                 "max_seq_len", "window", "scan_unroll"):
        _positive(f"model.{name}", m[name], allow_zero=True)
    for name in ("dropout", "attention_dropout"):
        if not 0.0 <= m[name] < 1.0:
            raise ConfigError(f"model.{name}", m[name], "a probability in [0, 1)")
    _positive("model.init_std", m.init_std, integer=False)
    _positive("model.z_loss", m.z_loss, allow_zero=True, integer=False)
    _positive("model.rope_theta", m.rope_theta, integer=False)
    if m.head_dim == 0 and m.d_model % m.num_heads:
        raise ConfigError("model.d_model", m.d_model,
                          f"a multiple of model.num_heads={m.num_heads} (or set model.head_dim)")
    kv_heads = m.num_kv_heads or m.num_heads
    if m.num_heads % kv_heads:
        raise ConfigError("model.num_kv_heads", m.num_kv_heads,
                          f"a divisor of model.num_heads={m.num_heads}")
    if m.attention == "sliding" and m.window <= 0:
        raise ConfigError("model.window", m.window, "an integer > 0 with model.attention='sliding'")
    if m.position == "rope" and (m.head_dim or m.d_model // m.num_heads) % 2:
        raise ConfigError("model.head_dim", m.head_dim or m.d_model // m.num_heads,
                          "an even number with model.position='rope'")
    if m.position == "sinusoidal" and m.d_model % 2:
        raise ConfigError("model.d_model", m.d_model, "an even number with model.position='sinusoidal'")
    if m.ffn == "swiglu" and m.use_bias:
        raise ConfigError("model.use_bias", m.use_bias, "False with model.ffn='swiglu'")

    _choice("data.tokenizer", d.tokenizer, TOKENIZERS)
    _positive("data.seq_len", d.seq_len)
    _positive("data.vocab_size", d.vocab_size, allow_zero=True)
    _positive("data.prefetch", d.prefetch, allow_zero=True)
    data_lib.validate_data_config(d)
    if m.max_seq_len and d.seq_len > m.max_seq_len:
        raise ConfigError("data.seq_len", d.seq_len,
                          f"at most model.max_seq_len={m.max_seq_len}")

    _choice("optim.schedule", o.schedule, SCHEDULES)
    _positive("optim.lr", o.lr, integer=False)
    _positive("optim.warmup_steps", o.warmup_steps, allow_zero=True)
    for name in ("min_lr_ratio", "decay_fraction", "b1", "b2"):
        if not 0.0 <= o[name] <= 1.0:
            raise ConfigError(f"optim.{name}", o[name], "a number in [0, 1]")
    _positive("optim.weight_decay", o.weight_decay, allow_zero=True, integer=False)
    _positive("optim.eps", o.eps, integer=False)
    _positive("optim.grad_clip", o.grad_clip, allow_zero=True, integer=False)

    _positive("train.batch_size", t.batch_size)
    _positive("train.steps", t.steps, allow_zero=True)
    _positive("train.tokens", t.tokens, allow_zero=True)
    if t.steps == 0 and t.tokens == 0:
        raise ConfigError("train.steps", t.steps, "> 0 unless train.tokens > 0")
    _positive("train.grad_accum_steps", t.grad_accum_steps)
    if t.batch_size % t.grad_accum_steps:
        raise ConfigError("train.grad_accum_steps", t.grad_accum_steps,
                          f"a divisor of train.batch_size={t.batch_size}")
    for name in ("log_every", "eval_every", "eval_batches"):
        _positive(f"train.{name}", t[name])
    _choice("train.on_nonfinite", t.on_nonfinite, ("stop", "skip"))
    _choice("train.flop_convention", t.flop_convention, FLOP_CONVENTIONS)

    for name in ("data", "fsdp", "tensor"):
        value = config.mesh[name]
        if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1):
            raise ConfigError(f"mesh.{name}", value, "an integer >= 1, or -1 for the rest of the devices")
    if [config.mesh[n] for n in ("data", "fsdp", "tensor")].count(-1) > 1:
        raise ConfigError("mesh", dict(config.mesh), "at most one axis set to -1")

    _positive("checkpoint.every_steps", config.checkpoint.every_steps, allow_zero=True)
    _positive("checkpoint.keep", config.checkpoint.keep)
    _choice("wandb.mode", config.wandb.mode, WANDB_MODES)


# ----------------------------------------------------------------------------------------------
# Resolved model configuration


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's hyperparameters with every derived field resolved (no zeros meaning 'default')."""

    layout: str = "decoder"
    num_layers: int = 2
    num_encoder_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    num_kv_heads: int = 4
    head_dim: int = 32
    d_ff: int = 512
    vocab_size: int = 257
    max_seq_len: int = 128
    position: str = "rope"
    rope_theta: float = 10000.0
    attention: str = "full"
    window: int = 0
    ffn: str = "gelu"
    norm: str = "rmsnorm"
    norm_position: str = "pre"
    qk_norm: bool = False
    use_bias: bool = False
    dropout: float = 0.0
    attention_dropout: float = 0.0
    tie_embeddings: bool = True
    init: str = "scaled_normal"
    init_std: float = 0.02
    z_loss: float = 0.0
    compute_dtype: str = "float32"
    parametrization: str = "standard"
    mup_base_width: int = 128
    remat: str = "none"
    scan_unroll: int = 0
    document_mask: bool = False


def default_d_ff(d_model: int, ffn: str) -> int:
    """4·d_model for ReLU/GELU; for SwiGLU the parameter-matched 8/3·d_model rounded up to 8."""
    if ffn == "swiglu":
        return -(-int(8 * d_model / 3) // 8) * 8
    return 4 * d_model


def model_config(config: ml_collections.ConfigDict, vocab_size: int | None = None) -> ModelConfig:
    """Resolve `config.model` (with `data.seq_len` and the tokenizer's vocabulary) to a ModelConfig."""
    m = config.model
    head_dim = m.head_dim or m.d_model // m.num_heads
    return ModelConfig(
        layout=m.layout,
        num_layers=m.num_layers,
        num_encoder_layers=m.num_encoder_layers or m.num_layers,
        d_model=m.d_model,
        num_heads=m.num_heads,
        num_kv_heads=m.num_kv_heads or m.num_heads,
        head_dim=head_dim,
        d_ff=m.d_ff or default_d_ff(m.d_model, m.ffn),
        vocab_size=m.vocab_size or vocab_size or 257,
        max_seq_len=m.max_seq_len or config.data.seq_len,
        position=m.position,
        rope_theta=float(m.rope_theta),
        attention=m.attention,
        window=m.window,
        ffn=m.ffn,
        norm=m.norm,
        norm_position=m.norm_position,
        qk_norm=bool(m.qk_norm),
        use_bias=bool(m.use_bias),
        dropout=float(m.dropout),
        attention_dropout=float(m.attention_dropout),
        tie_embeddings=bool(m.tie_embeddings),
        init=m.init,
        init_std=float(m.init_std),
        z_loss=float(m.z_loss),
        compute_dtype=m.compute_dtype,
        parametrization=m.parametrization,
        mup_base_width=m.mup_base_width,
        remat=m.remat,
        scan_unroll=m.scan_unroll,
        document_mask=bool(config.data.document_mask),
    )


def unknown_key_error(config: ml_collections.ConfigDict, dotted: str, value: str) -> ConfigError:
    """The error for an override of a key the config does not have, listing the keys there are
    and the closest ones."""
    node, path = config, []
    for part in dotted.split("."):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            node = node[part]
            path.append(part)
            continue
        keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, keys, n=3)
        where = "config." + ".".join(path) if path else "config"
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return ConfigError(dotted, value, f"unknown key {part!r} in {where}; allowed: "
                                          f"{', '.join(sorted(keys))}{hint}")
    return ConfigError(dotted, value, "a field that can be overridden")

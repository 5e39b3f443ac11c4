"""A per-device memory estimate before launch (`scaling-train --dry-run`), so an out-of-memory is
seen coming rather than met after compiling.

Parameters are fp32; AdamW keeps two more fp32 copies (its moments); gradients one; the update
holds about two more while it computes the new moments (measured: a 1.0B-parameter model peaked at
24 bytes per parameter, BENCHMARKS.md `memory`). Each weight
counts the share one device holds under the run's sharding: its logical axes are mapped to mesh
axes by `scaling.parallel.logical_axis_rules`, exactly as the train step shards it (so weights whose
axis does not divide evenly, such as a 257-token vocabulary under tensor parallelism, count whole).
Activations follow Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer
models"): per layer, s·b·h·(10 + 24/t + 5·a·s/(h·t)) bytes at 2-byte precision without
recomputation (s sequence, b micro-batch per device, h width, a heads, t the tensor axis), scaled
to the compute dtype's size. With full rematerialisation each layer keeps only its input (s·b·h
values), plus the activations of one iteration of the layer loop (`model.scan_unroll` layers, one
by default) while its backward pass recomputes them; with every layer in one iteration it frees
nothing. The "dots" policy
is counted as no recomputation (an upper bound: it saves every matmul output). Sliding-window
attention over more than its window w replaces the a·s² score term by a·s·k, k the keys its
kernel scores a query (2w causal, 3w bidirectional, on the length padded to whole windows:
`flops.attention_keys_per_query`). Each stack is counted at its own length (an
encoder–decoder's decoder at the objective's decoder positions, with cross-attention over the
encoder's). The fp32 logits and their gradient are split over `tensor` when the vocabulary is.
The figures are estimates: XLA may fuse away or add buffers. Against XLA's own account of the
compiled step on a CPU (2 layers of width 128, 8 rows, 256 → 1,024 positions), the estimate's
growth with length was 1.3× XLA's for a bidirectional encoder and 1.8× for a causal decoder (its
kernel scores blocks of queries, not all s² pairs), and 0.74–0.78× for sliding windows of 64. `check_fits` compares them with the
device's memory before a run compiles: a run estimated at more than twice it is refused.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from scaling import budget, distributed, flops, hardware, parallel
from scaling import model as model_lib
from scaling.config import ModelConfig, model_config
from scaling.data import objectives
from scaling.errors import ConfigError

BYTES_PER_PARAMETER = 4  # parameters, moments and gradients are all fp32
# An estimate this many times the device's memory is a clear overflow, not an estimate's error
# (a 1.0B-parameter run was estimated at 22.8 GiB and peaked at 22.5; BENCHMARKS.md `memory`).
OVERFLOW_FACTOR = 2.0


def parameters_per_device(model: ModelConfig, mesh_shape: tuple[int, int, int]) -> int:
    """Parameter scalars one device holds: every weight's size divided by the sizes of the mesh
    axes its dimensions are split over (by the same rules the train step shards with)."""
    # The weights' shapes do not depend on the input's length: one token traces them, where
    # model.max_seq_len tokens would build its attention masks (quadratic in it) for nothing.
    tokens = jnp.zeros((1, 1), jnp.int32)
    encoder_tokens = tokens if model.layout == "encoder_decoder" else None
    boxed = jax.eval_shape(
        lambda rng: model_lib.Transformer(model).init(rng, tokens, encoder_tokens_BxS=encoder_tokens),
        jax.random.key(0))["params"]
    rules = parallel.logical_axis_rules(model, mesh_shape)
    axis_size = dict(zip(parallel.MESH_AXES, mesh_shape))
    total = 0
    for leaf in jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)):
        spec = nn.logical_to_mesh_axes(leaf.names, rules)
        shard = list(leaf.value.shape)
        for dim, mesh_axes in enumerate(spec):
            for name in (mesh_axes,) if isinstance(mesh_axes, str) else (mesh_axes or ()):
                shard[dim] //= axis_size[name]
        total += math.prod(shard)
    return total


def estimate_bytes(model: ModelConfig, *, seq_len: int, batch_size: int, grad_accum_steps: int,
                   mesh_shape: tuple[int, int, int],
                   encoder_len: int | None = None) -> dict[str, float]:
    """Bytes per device: params, optimizer state, gradients, activations and their total.
    `seq_len` is the positions of a row in the stack that reads out (an encoder–decoder's
    decoder), `encoder_len` those of an encoder–decoder's encoder (None: `seq_len`)."""
    data, fsdp, tensor = mesh_shape
    param_bytes = BYTES_PER_PARAMETER * parameters_per_device(model, mesh_shape)
    micro_batch = batch_size / (data * fsdp) / grad_accum_steps
    value_bytes = 2 if model.compute_dtype == "bfloat16" else 4
    h, a = model.d_model, model.num_heads

    def layer(s: int, causal: bool) -> float:  # one self-attention layer over s positions
        # A sliding window shorter than the sequence: the keys its compiled kernel scores
        # (`flops`), 2w a query causal, 3w not, over the length padded to whole windows. One as
        # long runs as full attention.
        keys = (flops.attention_keys_per_query(model, s, causal)
                if model.attention == "sliding" and s > model.window else s)
        return s * micro_batch * h * (10 + 24 / tensor + 5 * a * keys / (h * tensor))

    # (layers, positions, the 2-byte activations of one) per stack. A decoder layer of an
    # encoder–decoder adds cross-attention: its norm, query input and dropout mask (5 values per
    # position), query and output (4/t), the encoder's keys and values (4/t per source position)
    # and 5·a·s·s_enc/t of scores, as Korthikanti et al. count self-attention.
    stacks = [(model.num_layers, seq_len, layer(seq_len, model.layout != "encoder"))]
    if model.layout == "encoder_decoder":
        s_enc = seq_len if encoder_len is None else encoder_len
        cross = micro_batch * (h * (5 * seq_len + 4 * (seq_len + s_enc) / tensor)
                               + 5 * a * seq_len * s_enc / tensor)
        stacks = [(model.num_encoder_layers, s_enc, layer(s_enc, False)),
                  (model.num_layers, seq_len, layer(seq_len, True) + cross)]
    # Full rematerialisation keeps each layer's input and recomputes one loop iteration at a
    # time (`model_lib.scan_unroll` layers): unrolled whole, it frees nothing.
    unroll = model_lib.scan_unroll(model, model.num_layers)
    if model.remat == "full" and unroll < model.num_layers:
        layer_inputs = sum(n * s * micro_batch * h for n, s, _ in stacks) * value_bytes
        stored = layer_inputs + unroll * max(one for _, _, one in stacks) * value_bytes / 2
    else:
        stored = sum(n * one for n, _, one in stacks) * value_bytes / 2
    vocab_share = model.vocab_size / tensor if model.vocab_size % tensor == 0 else model.vocab_size
    logits = seq_len * micro_batch * vocab_share * 4 * 2  # fp32 logits and their gradient
    activations = stored + logits
    # Split over fsdp, the embedding table is gathered along d_model for the token lookup
    # (`model.Transformer._embedder`): a whole fp32 copy of the device's vocabulary share, and
    # its gradient before it is scattered back.
    gathered = 2 * 4 * vocab_share * h if fsdp > 1 else 0.0
    result = {"params": param_bytes, "optimizer_state": 2 * param_bytes, "gradients": param_bytes,
              "optimizer_update": 2 * param_bytes, "gathered_embedding": gathered,
              "activations": activations}
    result["total"] = sum(result.values())
    return result


def stack_tokens(layout: str, shapes) -> str:
    """The tokens a row puts through each stack (`objectives.stack_lengths`)."""
    encoder, decoder = objectives.stack_lengths(layout, shapes)
    if layout == "encoder_decoder":
        return f"{encoder} encoder tokens, {decoder} decoder tokens"
    return f"{encoder or decoder} {layout} tokens"


def stack_positions(config: ml_collections.ConfigDict, model: ModelConfig) -> dict[str, int]:
    """`estimate_bytes`'s `seq_len` and `encoder_len` for a run: its objective's rows through
    each stack (a seq2seq decoder runs over data.target_len positions, not data.seq_len)."""
    shapes = objectives.shapes_of(config.data, config.train).shapes
    encoder, decoder = objectives.stack_lengths(model.layout, shapes)
    return {"seq_len": decoder or encoder,
            "encoder_len": encoder if model.layout == "encoder_decoder" else None}


def check_mesh(config: ml_collections.ConfigDict, device_count: int,
               model: ModelConfig | None = None, processes: int = 1) -> tuple[int, int, int]:
    """The run's mesh shape over `device_count` devices, once its model (`model`, else resolved
    from `config`) and batch are known to split over it, and its batch among `processes`
    processes (ConfigError naming the field otherwise), as `build_program` and the trainer
    check them."""
    shape = parallel.mesh_shape(config.mesh, device_count)
    distributed.check_batch_split(shape, processes)
    parallel.check_divisibility(model or model_config(config, None), config.train.batch_size,
                                config.train.grad_accum_steps, shape)
    return shape


def describe(config: ml_collections.ConfigDict, device_count: int | None = None) -> str:
    """A printable summary of sizes, FLOPs and per-device memory for a validated config."""
    device_count = device_count or jax.device_count()
    model = model_config(config, None)
    shape = check_mesh(config, device_count, model)
    counts = flops.parameter_counts(model)
    shapes = objectives.shapes_of(config.data, config.train).shapes
    total_steps = budget.steps_for(config)
    memory = estimate_bytes(model, **stack_positions(config, model),
                            batch_size=config.train.batch_size,
                            grad_accum_steps=config.train.grad_accum_steps, mesh_shape=shape)
    depth = (f"{model.num_encoder_layers} encoder + {model.num_layers} decoder layers"
             if model.layout == "encoder_decoder" else f"{model.num_layers} layers")
    lines = [
        f"model: {depth} × d_model {model.d_model}, {model.num_heads} heads, "
        f"d_ff {model.d_ff}, vocabulary {model.vocab_size}",
        f"parameters: {counts.total:,} total, {counts.embedding:,} embedding, "
        f"{counts.non_embedding:,} non-embedding",
        f"objective: {config.train.objective} ({model.layout}); per row {shapes.corpus} corpus "
        f"tokens, {stack_tokens(model.layout, shapes)}",
        "training FLOPs per corpus token: "
        f"{flops.objective_flops_per_token(model, shapes, '6N'):.4g} (6N), "
        f"{flops.objective_flops_per_token(model, shapes, 'full'):.4g} (full)",
        f"schedule: {config.optim.schedule}, {budget.count(total_steps, 'step')}, warmup "
        f"{budget.warmup_steps(config.optim, total_steps):,}"
        + (f" ({cut})" if (cut := budget.warmup_cut(config)) else ""),
        f"mesh (data, fsdp, tensor) = {shape} over {device_count} devices",
        "memory per device (estimate):",
    ]
    width = max(map(len, memory))
    lines += [f"  {name:<{width}} {value / 2**30:9.3f} GiB" for name, value in memory.items()]
    available = hardware.device_memory_bytes()
    try:
        warning = check_fits(config, model, shape, available)
    except DoesNotFit as error:  # a dry run may plan for a larger device than this one
        warning = f"{error.needs}: training here would be refused"
    lines.append(warning or f"fits this device's {available / 2**30:,.1f} GiB")
    return "\n".join(lines)


def check_fits(config: ml_collections.ConfigDict, model: ModelConfig,
               mesh_shape: tuple[int, int, int], available: int) -> str | None:
    """DoesNotFit, saying which settings would help, when the run's estimate is more than
    `OVERFLOW_FACTOR` times the `available` bytes of one device; a warning to print when it is
    more than them; None when it fits. Under the "dots" policy (estimated as no recomputation, an
    upper bound) the lower bound of full recomputation is compared."""
    counted = dataclasses.replace(model, remat="full") if model.remat == "dots" else model
    estimate = estimate_bytes(counted, **stack_positions(config, model),
                              batch_size=config.train.batch_size,
                              grad_accum_steps=config.train.grad_accum_steps,
                              mesh_shape=mesh_shape)
    total, activations = estimate["total"], estimate["activations"]
    if total <= available:
        return None
    needs = (f"the run is estimated at {total / 2**30:,.1f} GiB per device (weights, gradients "
             f"and optimizer state {(total - activations) / 2**30:,.1f}, activations "
             f"{activations / 2**30:,.1f}; --dry-run itemises them), this device has "
             f"{available / 2**30:,.1f} GiB")
    if total <= OVERFLOW_FACTOR * available:
        return f"{needs}: it may run out of memory"
    if activations > total - activations:
        lengths = f"data.seq_len={config.data.seq_len}" + (
            f" or data.target_len={config.data.target_len}"
            if config.train.objective == "seq2seq" else "")  # the decoder's, there
        would_help = (f"lower train.batch_size={config.train.batch_size} or {lengths}, raise "
                      f"train.grad_accum_steps="
                      f"{config.train.grad_accum_steps}"
                      + (f", set model.remat=full (now {model.remat!r})"
                         if model.remat != "full" else "")
                      + ", or shard the batch over more devices (mesh)")
    else:
        would_help = ("shard the weights over more devices (mesh.fsdp, mesh.tensor) or train a "
                      "smaller model")
    raise DoesNotFit(needs, would_help)


class DoesNotFit(ConfigError):
    """The run's memory estimate is far above the device's: `needs` says by how much, the message
    also what would help."""

    def __init__(self, needs: str, would_help: str):
        self.needs = needs
        ValueError.__init__(self, f"{needs}; {would_help}")

"""A per-device memory estimate before launch (`scaling-train --dry-run`), so an out-of-memory is
seen coming rather than met after compiling.

Parameters are fp32; AdamW keeps two more fp32 copies; gradients one. FSDP divides all of these
by `fsdp` and tensor parallelism divides the attention and MLP weights by `tensor`. Activations
follow Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer models"):
per layer, s·b·h·(34 + 5·a·s/h) bytes at 2-byte precision without recomputation (s sequence,
b micro-batch per device, h width, a heads), scaled to the compute dtype's size, divided by
`tensor` for the parts tensor parallelism splits; with full rematerialisation only each layer's
input (s·b·h values) is kept. Sliding-window attention replaces the a·s² score term by a·s·2w.
The figures are estimates: XLA may fuse away or add buffers.
"""

from __future__ import annotations

import ml_collections

from scaling import flops
from scaling.config import ModelConfig, model_config


def estimate_bytes(model: ModelConfig, *, seq_len: int, batch_size: int, grad_accum_steps: int,
                   mesh_shape: tuple[int, int, int]) -> dict[str, float]:
    """Bytes per device: params, optimizer state, gradients, activations and their total."""
    data, fsdp, tensor = mesh_shape
    counts = flops.parameter_counts(model)
    matrix_share = counts.non_embedding / tensor + counts.embedding
    param_bytes = 4 * matrix_share / fsdp
    micro_batch = batch_size / (data * fsdp) / grad_accum_steps
    value_bytes = 2 if model.compute_dtype == "bfloat16" else 4
    s, h, a = seq_len, model.d_model, model.num_heads
    keys = min(s, 2 * model.window) if model.attention == "sliding" else s
    if model.remat == "full":
        per_layer = s * micro_batch * h * value_bytes
    else:
        per_layer = s * micro_batch * h * (10 + 24 / tensor + 5 * a * keys / (h * tensor))
        per_layer *= value_bytes / 2
    layers = model.num_layers + (model.num_encoder_layers if model.layout == "encoder_decoder" else 0)
    logits = s * micro_batch * model.vocab_size * 4 * 2  # fp32 logits and their gradient
    activations = layers * per_layer + logits
    result = {"params": param_bytes, "optimizer_state": 2 * param_bytes, "gradients": param_bytes,
              "activations": activations}
    result["total"] = sum(result.values())
    return result


def describe(config: ml_collections.ConfigDict, device_count: int | None = None) -> str:
    """A printable summary of sizes, FLOPs and per-device memory for a validated config."""
    import jax

    from scaling import parallel

    device_count = device_count or jax.device_count()
    model = model_config(config, None)
    shape = parallel.mesh_shape(config.mesh, device_count)
    parallel.check_divisibility(model, config.train.batch_size, config.train.grad_accum_steps, shape)
    counts = flops.parameter_counts(model)
    memory = estimate_bytes(model, seq_len=config.data.seq_len, batch_size=config.train.batch_size,
                            grad_accum_steps=config.train.grad_accum_steps, mesh_shape=shape)
    lines = [
        f"model: {model.num_layers} layers × d_model {model.d_model}, {model.num_heads} heads, "
        f"d_ff {model.d_ff}, vocabulary {model.vocab_size}",
        f"parameters: {counts.total:,} total, {counts.embedding:,} embedding, "
        f"{counts.non_embedding:,} non-embedding",
        "training FLOPs per token: "
        f"{flops.training_flops_per_token(model, config.data.seq_len, '6N'):.4g} (6N), "
        f"{flops.training_flops_per_token(model, config.data.seq_len, 'full'):.4g} (full)",
        f"mesh (data, fsdp, tensor) = {shape} over {device_count} devices",
        "memory per device (estimate):",
    ]
    lines += [f"  {name:<16} {value / 2**30:9.3f} GiB" for name, value in memory.items()]
    return "\n".join(lines)

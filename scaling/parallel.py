"""Meshes, logical-axis rules and shardings: how a run's arrays are laid out over devices.

The mesh has three axes — `data`, `fsdp`, `tensor` — in that order. The batch is split over
`data` × `fsdp`; parameters and optimizer state are split over `fsdp` along their `embed`
dimension (ZeRO-3 / FSDP); `tensor` splits attention heads and the feed-forward hidden dimension
(Megatron-style). The model only names its axes; `logical_axis_rules` maps names to mesh axes.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from scaling import axes
from scaling.config import ModelConfig
from scaling.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_config: ml_collections.ConfigDict, device_count: int) -> tuple[int, int, int]:
    """Resolve -1 ("the rest of the devices") and check the product equals the device count."""
    sizes = [mesh_config[name] for name in MESH_AXES]
    known = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if device_count % known:
            raise ConfigError("mesh", dict(mesh_config),
                              f"axis sizes whose product divides the {device_count} "
                              f"device{'s' if device_count != 1 else ''}")
        sizes[sizes.index(-1)] = device_count // known
    if math.prod(sizes) != device_count:
        raise ConfigError("mesh", dict(mesh_config),
                          f"data × fsdp × tensor = {math.prod(sizes)} must equal the device count "
                          f"{device_count} (use -1 on one axis for 'the rest')")
    return tuple(sizes)


def make_mesh(mesh_config: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over all devices (or `devices`), with Auto axis types so
    linen's logical constraints and XLA's sharding propagation both work."""
    devices = devices if devices is not None else jax.devices()
    shape = mesh_shape(mesh_config, len(devices))
    if devices == jax.devices():
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def check_divisibility(model: ModelConfig, batch_size: int | None, micro_batches: int,
                       shape: tuple[int, int, int]) -> None:
    """Fail before compiling when the model or batch cannot be split over the mesh (the batch
    only when given: sampling splits no training batch)."""
    data, fsdp, tensor = shape
    if batch_size is not None and (batch_size // micro_batches) % (data * fsdp):
        raise ConfigError("train.batch_size", batch_size,
                          f"a multiple of mesh data × fsdp = {data} × {fsdp} = {data * fsdp} "
                          f"per micro-batch (train.grad_accum_steps={micro_batches})")
    if model.num_heads % tensor:
        raise ConfigError("model.num_heads", model.num_heads,
                          f"a multiple of mesh.tensor={tensor} (tensor parallelism splits heads)")
    if model.d_ff % tensor:
        raise ConfigError("model.d_ff", model.d_ff, f"a multiple of mesh.tensor={tensor}")
    if model.d_model % fsdp:
        raise ConfigError("model.d_model", model.d_model,
                          f"a multiple of mesh.fsdp={fsdp} (FSDP splits the embed dimension)")


def logical_axis_rules(model: ModelConfig, shape: tuple[int, int, int]) -> tuple[tuple[str, Any], ...]:
    """Logical axis name → mesh axis (or None: replicated). Axes that do not divide evenly
    (few key/value heads under multi-query attention, a 257-token vocabulary) stay replicated."""
    _, _, tensor = shape
    kv_axis = "tensor" if model.num_kv_heads % tensor == 0 else None
    vocab_axis = "tensor" if model.vocab_size % tensor == 0 else None
    return (
        (axes.BATCH, BATCH_AXES),
        (axes.EMBED, "fsdp"),
        (axes.MLP, "tensor"),
        (axes.HEADS, "tensor"),
        (axes.KV_HEADS, kv_axis),
        (axes.VOCAB, vocab_axis),
        (axes.HEAD_DIM, None),
        (axes.LAYERS, None),
        (axes.POSITION, None),
        (axes.LENGTH, None),
        (axes.ACT_EMBED, None),
        (axes.ACT_HEADS, "tensor"),
        (axes.ACT_KV_HEADS, kv_axis),
        (axes.ACT_MLP, "tensor"),
        (axes.ACT_VOCAB, vocab_axis),
    )


def logical_axes(boxed_tree: Any) -> Any:
    """The tree of logical axis-name tuples of a (possibly abstract) boxed parameter tree."""
    specs = nn.get_partition_spec(boxed_tree)
    return jax.tree.map(lambda spec: tuple(spec), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def shardings_for(boxed_tree: Any, mesh: Mesh, rules) -> Any:
    """NamedShardings for every leaf of a boxed tree (parameters, or optimizer state that
    mirrors them; unboxed leaves such as step counters are replicated)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of a [batch, length] array split over data × fsdp."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, None))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Several steps' batches, [steps, batch, length]: each step's rows as `batch_sharding`'s."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assemble each host's slice into one global array (multi-host safe; also one process)."""
    return {name: jax.make_array_from_process_local_data(sharding, value)
            for name, value in local_batch.items()}

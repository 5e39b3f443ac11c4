"""µP's coordinate check: how big each layer's activations are after a few Adam steps, per width.

The diagnostic of Yang et al. ("Tensor Programs V", §D.1 and Fig. 5): train models that differ
only in width for a few steps with one fixed learning rate and record the mean absolute value of
each layer's output coordinates. Under a parametrization that transfers hyperparameters the
sizes stay flat as width grows; under standard parametrization updates of size ~lr to a weight
with n inputs move its output by ~lr·n, so activations and logits grow with width.

Recorded, for the decoder layout (pre- or post-norm): the embedding output (the first block's input),
each block's self-attention and MLP branch outputs (before they are added to the residual
stream; averaged over layers) and the logits. Both the size of the activations at each step,
mean |x_t|, and the size of their change since initialisation, mean |x_t − x_0|, are kept: the
change isolates what training did, which is what µP keeps width-independent.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from scaling import model as model_lib
from scaling import parallel
from scaling.config import ModelConfig, model_config
from scaling.step import build_program

LAYERS = ("embedding", "attention", "mlp", "logits")


@dataclasses.dataclass(frozen=True)
class CoordinateSizes:
    """Mean absolute activation per layer of `LAYERS` for one width at one step (0 = at init).

    `size[layer]` is mean |x_t|; `change[layer]` is mean |x_t − x_0|."""

    parametrization: str
    width: int
    step: int
    size: dict[str, float]
    change: dict[str, float]


def layer_activations(model: ModelConfig, params, tokens_BxL: jax.Array) -> dict[str, jax.Array]:
    """The activations of `LAYERS` for `tokens_BxL`: embedding (B, L, D), attention and MLP
    branch outputs stacked over layers (num_layers, B, L, D), logits (B, L, V).

    Blocks are applied one by one with their slice of the scanned weights, so the outputs of the
    sub-layers inside each block can be read. Only the decoder layout is supported."""
    if model.layout != "decoder":
        raise ValueError(f"the coordinate check reads decoder-only models, not {model.layout!r}")
    recorded = {}

    def keep_stack_input(next_fun, args, kwargs, context):
        if isinstance(context.module, model_lib.Stack) and context.method_name == "__call__":
            recorded["embedding"] = args[0]
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(keep_stack_input):
        logits_BxLxV = model_lib.Transformer(model).apply({"params": params}, tokens_BxL)

    block = model_lib.Block(model, causal=True, cross_attention=False,
                            residual_branches=model_lib.residual_branch_count(model.num_layers, False))
    x_BxLxD = recorded["embedding"]
    attention, mlp = [], []
    for layer in range(model.num_layers):
        layer_params = jax.tree.map(lambda w: w[layer], params["decoder"]["layers"])
        (x_BxLxD, _), captured = block.apply(
            {"params": layer_params}, x_BxLxD, None, None, capture_intermediates=True,
            mutable=["intermediates"])
        attention.append(captured["intermediates"]["self_attention"]["__call__"][0])
        mlp.append(captured["intermediates"]["mlp"]["__call__"][0])
    return {"embedding": recorded["embedding"], "attention": jnp.stack(attention),
            "mlp": jnp.stack(mlp), "logits": logits_BxLxV}


def coordinate_check(config: ml_collections.ConfigDict, widths: Iterable[int], steps: int,
                     tokens_BxL1: np.ndarray) -> list[CoordinateSizes]:
    """Train one model per width in `widths` (everything else from `config`, but the learning
    rate held at `config.optim.lr`: its schedule and warmup are not used, one fixed rate as in
    Yang et al.) for `steps` steps of the real train step on the fixed batch
    `tokens_BxL1` (B, seq_len + 1), and measure `LAYERS` on that batch's inputs before training
    and after every step. Returns one record per (width, step), widths in the order given."""
    records = []
    batch_size = tokens_BxL1.shape[0]
    for width in widths:
        run = ml_collections.ConfigDict(config.to_dict())
        run.model.d_model = width
        run.train.batch_size = batch_size
        run.data.seq_len = tokens_BxL1.shape[1] - 1
        run.optim.update(schedule="constant", warmup_steps=0)
        model = model_config(run)
        program = build_program(run, model, steps, parallel.make_mesh(run.mesh))
        inputs = tokens_BxL1[:, :-1]
        measure = jax.jit(lambda params: layer_activations(model, params, inputs))
        with program.context():
            state = program.init(jax.random.key(run.seed))
            batch = parallel.global_batch(
                {"inputs": inputs, "targets": tokens_BxL1[:, 1:],
                 "segment_ids": np.ones_like(inputs)}, program.batch_sharding)
            initial = measure(state["params"])
            for step in range(steps + 1):
                current = initial if step == 0 else measure(state["params"])
                records.append(CoordinateSizes(
                    parametrization=model.parametrization, width=width, step=step,
                    size={name: float(jnp.mean(jnp.abs(current[name]))) for name in LAYERS},
                    change={name: float(jnp.mean(jnp.abs(current[name] - initial[name])))
                            for name in LAYERS}))
                if step < steps:
                    state, _ = program.train_step(state, batch)
    return records


def width_exponent(widths: Iterable[int], sizes: Iterable[float]) -> float:
    """The least-squares slope of log(size) against log(width): sizes grow as width^slope."""
    slope, _ = np.polyfit(np.log(np.asarray(list(widths), float)),
                          np.log(np.asarray(list(sizes), float)), 1)
    return float(slope)

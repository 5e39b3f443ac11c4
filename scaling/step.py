"""The train state and the jitted functions that act on it: create it sharded, take one
optimizer step (with gradient accumulation) or several in one compiled loop, evaluate a batch.

The state is a plain dict `{"step", "params", "opt_state"}` of unboxed arrays, so Orbax saves it
as it is. Its shardings come from the logical axis names of an abstract, boxed twin
(`jax.eval_shape` → partition specs → NamedShardings), so nothing is ever materialised on one
device before it is sharded.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from scaling import axes
from scaling import model as model_lib
from scaling import optim as optim_lib
from scaling import parallel
from scaling.config import ModelConfig
from scaling.data import objectives


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything compiled for one run: the jitted functions and the shardings."""

    mesh: Mesh
    rules: tuple
    init: Callable[[jax.Array], Any]
    # The train functions read the run's `optim.schedule_arguments` at run time (bound here).
    train_step: Callable[[Any, dict], tuple[Any, dict]]
    # Up to `train.steps_per_call` steps over batches stacked on a leading axis, those where a
    # boolean vector is True (None when it is 1): the state after the last, each slot's metrics
    # stacked.
    train_steps: Callable[[Any, dict, Any], tuple[Any, dict]] | None
    eval_step: Callable[[Any, dict], dict]
    # The eval step scoring each target over the corpus vocabulary alone (the continuation task).
    continuation_step: Callable[[Any, dict], dict]
    state_shardings: Any
    batch_sharding: NamedSharding
    stacked_batch_sharding: NamedSharding
    abstract_state: Any

    def context(self):
        """Mesh and logical-axis rules in force while tracing (model activation constraints)."""
        return _Context(self.mesh, self.rules)


class _Context:
    def __init__(self, mesh, rules):
        self._mesh_cm = jax.set_mesh(mesh)
        self._rules_cm = nn.logical_axis_rules(rules)

    def __enter__(self):
        self._mesh_cm.__enter__()
        self._rules_cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._rules_cm.__exit__(*exc)
        return self._mesh_cm.__exit__(*exc)


@dataclasses.dataclass(frozen=True)
class _Bound:
    """A jitted train function with the run's schedule arguments bound as its last argument."""

    jitted: Any
    schedule_arguments: dict

    def __call__(self, *args):
        return self.jitted(*args, self.schedule_arguments)

    def lower(self, *args):
        return self.jitted.lower(*args, self.schedule_arguments)


def _plain(tree: Any) -> Any:
    """Strip the logical-partitioning boxes (their metadata already gave the shardings)."""
    return jax.tree.map(lambda x: x.value if isinstance(x, nn.Partitioned) else x, tree,
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))


def _example_inputs(shapes: objectives.Shapes) -> dict:
    """One row of zeros of the shapes the model reads (the encoder's only when it has one)."""
    inputs = {"tokens_BxL": jnp.zeros((1, shapes.decoder), jnp.int32)}
    if shapes.encoder:
        inputs["encoder_tokens_BxS"] = jnp.zeros((1, shapes.encoder), jnp.int32)
    return inputs


def _boxed_init(net: nn.Module, optimizer: optax.GradientTransformation,
                shapes: objectives.Shapes, rng: jax.Array) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    params = net.init({"params": params_rng, "dropout": dropout_rng},
                      **_example_inputs(shapes))["params"]
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def _micro_batches(batch: dict, count: int) -> dict:
    """[B, L] → [count, B / count, L] taking every count-th row, so each device's rows stay local."""
    def split(x):
        micro = x.shape[0] // count
        x = x.reshape(micro, count, *x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        return nn.with_logical_constraint(x, (None, axes.BATCH, axes.LENGTH))
    return jax.tree.map(split, batch)


def _train_step(state: dict, batch: dict, schedule_arguments: dict, *, net: nn.Module,
                optimizer: optax.GradientTransformationExtraArgs, schedule: Callable,
                model: ModelConfig, micro_batches: int, seed: int) -> tuple[dict, dict]:
    params = state["params"]
    lr = schedule(state["step"], schedule_arguments)
    step_rng = jax.random.fold_in(jax.random.key(seed), state["step"])
    deterministic = model.dropout == 0.0 and model.attention_dropout == 0.0

    def loss_fn(params, micro, rng, weight):
        logits = net.apply({"params": params}, micro["inputs"],
                           segment_ids_BxL=micro.get("segment_ids"),
                           encoder_tokens_BxS=micro.get("encoder_inputs"),
                           deterministic=deterministic, rngs={"dropout": rng})
        loss, aux = model_lib.cross_entropy_loss(logits, micro["targets"], z_loss=model.z_loss,
                                                 mask_BxL=micro.get("loss_mask"))
        if weight is not None:
            loss, aux = loss * weight, {name: value * weight for name, value in aux.items()}
        return loss, aux

    target_tokens = _target_tokens(batch)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if micro_batches == 1:
        (loss, aux), grads = grad_fn(params, batch, step_rng, None)
    else:
        def accumulate(carry, inputs):
            index, micro = inputs
            # Micro-batches with a loss mask can hold different numbers of target tokens: weigh
            # each micro-batch's mean by its share, so the step averages over target tokens.
            weight = (None if "loss_mask" not in micro
                      else micro_batches * _target_tokens(micro) / target_tokens)
            (loss, aux), grads = grad_fn(params, micro, jax.random.fold_in(step_rng, index),
                                         weight)
            total_grads, total_loss, total_ce = carry
            total_grads = jax.tree.map(jnp.add, total_grads, grads)
            return (total_grads, total_loss + loss, total_ce + aux["ce"]), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, loss, ce), _ = jax.lax.scan(
            accumulate, (zeros, jnp.zeros(()), jnp.zeros(())),
            (jnp.arange(micro_batches), _micro_batches(batch, micro_batches)))
        grads = jax.tree.map(lambda g: g / micro_batches, grads)
        loss, aux = loss / micro_batches, {"ce": ce / micro_batches}

    grad_norm = optim_lib.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    # A non-finite step never reaches the state, whether the host then stops the run or skips the
    # step (train.on_nonfinite): a checkpoint taken afterwards is never poisoned. The step counter
    # stays with the optimizer's, so the schedule and the logged learning rate agree. A branch
    # rather than a select between old and new state: the update then runs in place in the
    # donated buffers, without a second copy of the parameters and moments.
    def apply_update(state):
        updates, new_opt_state = optimizer.update(grads, state["opt_state"], state["params"],
                                                  learning_rate=lr)
        return {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                "opt_state": new_opt_state}

    new_state = jax.lax.cond(finite, apply_update, lambda state: state, state)
    metrics = {"loss": aux["ce"], "total_loss": loss, "grad_norm": grad_norm, "finite": finite,
               "lr": lr, "target_tokens": target_tokens}
    return new_state, metrics


def _train_steps(state: dict, batches: dict, active: jax.Array, schedule_arguments: dict,
                 **settings) -> tuple[dict, dict]:
    """`_train_step` over the leading axis of `batches`, in one compiled loop; where `active`
    is False a step is not taken (the state passes through, its metrics are zeros), so calls of
    fewer steps than the loop's length run the same program."""
    step = functools.partial(_train_step, schedule_arguments=schedule_arguments, **settings)

    def maybe_step(state, inputs):
        batch, on = inputs
        shapes = jax.eval_shape(step, state, batch)[1]
        return jax.lax.cond(on, step, lambda state, batch: (state, jax.tree.map(
            lambda shape: jnp.zeros(shape.shape, shape.dtype), shapes)), state, batch)

    return jax.lax.scan(maybe_step, state, (batches, active))


def _target_tokens(batch: dict) -> jax.Array:
    """The target tokens the loss averages over: the loss mask's ones, else every target."""
    if "loss_mask" in batch:
        return jnp.sum(batch["loss_mask"].astype(jnp.float32))
    return jnp.float32(batch["targets"].size)


def eval_batch(state: dict, batch: dict, *, net: nn.Module, model: ModelConfig,
               scored_vocab: int = 0) -> dict:
    """The held-out loss of one batch under `state["params"]` (mean per target token) and the
    number of target tokens it averaged over. With `scored_vocab`, each target is scored by the
    model's distribution over ids [0, scored_vocab) alone (the targets it averages over must lie
    there): the corpus vocabulary, without an objective's special tokens."""
    logits = net.apply({"params": state["params"]}, batch["inputs"],
                       segment_ids_BxL=batch.get("segment_ids"),
                       encoder_tokens_BxS=batch.get("encoder_inputs"), deterministic=True)
    targets, mask = batch["targets"], batch.get("loss_mask")
    if scored_vocab:
        logits = logits[..., :scored_vocab]
        # Unscored positions may hold special tokens: point them at id 0 (their weight is 0).
        targets = targets if mask is None else jnp.where(mask > 0, targets, 0)
    loss, _ = model_lib.cross_entropy_loss(logits, targets, z_loss=0.0, mask_BxL=mask)
    return {"loss": loss, "target_tokens": _target_tokens(batch)}


def batches_mean(losses, tokens) -> tuple[float, float | None]:
    """The mean loss per target token over batches with these mean `losses` and target `tokens`
    (each batch's mean weighted by its tokens, as a train step weights its micro-batches), and its
    standard error from the batch-to-batch spread: the ratio estimator's,
    sqrt(Σ (wᵢ (ℓᵢ − ℓ))² / (n (n − 1))) with wᵢ a batch's tokens over the mean (None for one
    batch)."""
    losses, tokens = np.asarray(losses, np.float64), np.asarray(tokens, np.float64)
    # Batches of equal token counts weigh exactly 1 each: the plain mean, bit for bit.
    weights = tokens / tokens.mean()
    loss = float(np.mean(losses * weights))
    if len(losses) < 2:
        return loss, None
    deviations = weights * (losses - loss)
    stderr = np.sqrt(np.sum(deviations * deviations) / (len(losses) - 1)) / np.sqrt(len(losses))
    return loss, float(stderr)


def build_program(config: ml_collections.ConfigDict, model: ModelConfig, total_steps: int,
                  mesh: Mesh, *, batches: bool = True) -> Program:
    """Trace shapes, derive shardings and jit the init, train and eval functions for `mesh`;
    `batches=False` for a program that will run none of the config's batches (sampling), whose
    `train.batch_size` then need not split over the mesh."""
    shape = tuple(mesh.shape[name] for name in parallel.MESH_AXES)
    parallel.check_divisibility(model, config.train.batch_size if batches else None,
                                config.train.grad_accum_steps, shape)
    rules = parallel.logical_axis_rules(model, shape)
    net = model_lib.Transformer(model)
    objective = objectives.shapes_of(config.data, config.train)
    shapes = objective.shapes
    rng = jax.random.key(config.seed)

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed_params = jax.eval_shape(
            lambda r: net.init({"params": r, "dropout": r}, **_example_inputs(shapes)),
            rng)["params"]
        axes = parallel.logical_axes(boxed_params)
        optimizer = optim_lib.make_optimizer(config, axes)
        boxed_state = jax.eval_shape(functools.partial(_boxed_init, net, optimizer, shapes), rng)
        state_shardings = parallel.shardings_for(boxed_state, mesh, rules)
        abstract_state = jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            _plain(boxed_state), state_shardings)

    init = jax.jit(lambda r: _plain(_boxed_init(net, optimizer, shapes, r)),
                   out_shardings=state_shardings)
    batch_sharding = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    batch_shardings = {key: batch_sharding for key in objective.batch_keys}
    # The schedule's kind and shape are compiled in; where it starts and ends is read at run time.
    rate = functools.partial(optim_lib.learning_rate, schedule=config.optim.schedule,
                             decay_shape=config.optim.decay_shape)
    # Put on the devices once: passed from the host, they were copied there at every call.
    arguments = parallel.global_batch(optim_lib.schedule_arguments(config.optim, total_steps),
                                      replicated)
    settings = dict(net=net, optimizer=optimizer, schedule=rate, model=model,
                    micro_batches=config.train.grad_accum_steps, seed=config.seed)
    train_step = _Bound(jax.jit(functools.partial(_train_step, **settings),
                                in_shardings=(state_shardings, batch_shardings, replicated),
                                out_shardings=(state_shardings, replicated), donate_argnums=0),
                        arguments)
    stacked_sharding = parallel.stacked_batch_sharding(mesh)
    train_steps = None
    if config.train.steps_per_call > 1:
        train_steps = _Bound(jax.jit(functools.partial(_train_steps, **settings),
                                     in_shardings=(state_shardings,
                                                   {key: stacked_sharding for key in batch_shardings},
                                                   replicated, replicated),
                                     out_shardings=(state_shardings, replicated),
                                     donate_argnums=0), arguments)
    eval_step = jax.jit(functools.partial(eval_batch, net=net, model=model),
                        in_shardings=(state_shardings, batch_shardings), out_shardings=replicated)
    # The continuation task's batches (a loss mask beside the objective's arrays), scored over the
    # corpus vocabulary: the model's vocabulary less the objective's special tokens.
    corpus_vocab = model.vocab_size - objective.vocab_size
    continuation_step = jax.jit(
        functools.partial(eval_batch, net=net, model=model, scored_vocab=corpus_vocab),
        in_shardings=(state_shardings, batch_sharding), out_shardings=replicated)
    return Program(mesh=mesh, rules=rules, init=init, train_step=train_step,
                   train_steps=train_steps, eval_step=eval_step,
                   continuation_step=continuation_step,
                   state_shardings=state_shardings, batch_sharding=batch_sharding,
                   stacked_batch_sharding=stacked_sharding,
                   abstract_state=abstract_state)


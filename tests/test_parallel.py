"""Sharded training on 8 simulated CPU devices is the same computation as on one device.

The 8-device run and the one-device reference are separate interpreters (`run_python`), each
training the same tiny decoder on the same token batches. The expected layout of every weight is
written here from its logical axis names, independently of `scaling.parallel`'s rules table.
Collective work stays inside jitted functions: eager operations on sharded arrays can hang in
XLA's CPU collectives on a 2-core machine (see conftest.py).
"""

import json
import math

import pytest
from conftest import run_python

from scaling import parallel
from scaling.config import ConfigError, default_config, model_config

MESH_SHAPES = [(8, 1, 1), (2, 4, 1), (2, 1, 4), (1, 2, 4)]
RELATIVE_TOLERANCE = 1e-5

# Shared by the subprocesses of this file and of test_distributed.py: a tiny decoder, and token
# batches that are arithmetic sequences modulo the vocabulary (random start and stride), so the
# model can learn them and the loss moves from step to step.
TRAINING = """
import json
import jax
import numpy as np
from scaling import parallel
from scaling.config import default_config, model_config
from scaling.step import build_program

VOCAB, BATCH, LENGTH, STEPS = 256, 16, 32, 10


def make_config(shape, overrides=None):
    config = default_config()
    config.model.d_model = 64
    config.model.vocab_size = VOCAB
    config.data.seq_len = LENGTH
    config.train.batch_size = BATCH
    config.optim.warmup_steps = 2
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = shape
    config.update_from_flattened_dict(overrides or {})
    return config


def token_batches(steps):
    rng = np.random.default_rng(0)
    for _ in range(steps):
        start = rng.integers(0, VOCAB, size=(BATCH, 1))
        stride = rng.integers(1, 4, size=(BATCH, 1))
        sequence = (start + stride * np.arange(LENGTH + 1)) % VOCAB
        yield {"inputs": sequence[:, :-1].astype(np.int32),
               "targets": sequence[:, 1:].astype(np.int32),
               "segment_ids": np.ones((BATCH, LENGTH), np.int32)}


def process_rows(sharding):
    # The global batch rows this process's devices hold: a contiguous block, fed as local data.
    indices = sharding.addressable_devices_indices_map((BATCH, LENGTH)).values()
    rows = np.unique(np.concatenate([np.arange(BATCH)[index[0]] for index in indices]))
    assert (rows == np.arange(rows[0], rows[-1] + 1)).all(), rows
    return rows


def train(config, steps=STEPS, after_init=None):
    program = build_program(config, model_config(config), 100, parallel.make_mesh(config.mesh))
    rows = process_rows(program.batch_sharding)
    losses = []
    with program.context():
        state = program.init(jax.random.key(config.seed))
        if after_init is not None:
            after_init(state)
        for batch in token_batches(steps):
            local = {name: value[rows] for name, value in batch.items()}
            state, metrics = program.train_step(state, parallel.global_batch(local, program.batch_sharding))
            losses.append(metrics["loss"])
    return [float(loss) for loss in losses], state
"""

EIGHT_DEVICES = TRAINING + """
import optax

def adam_moments(opt_state):
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    assert len(found) == 1
    return found[0].mu, found[0].nu

def layout(tree):
    return {"/".join(str(key.key) for key in path): {
                "shape": list(leaf.shape),
                "spec": [list(a) if isinstance(a, tuple) else a for a in leaf.sharding.spec],
                "shard_shapes": sorted({tuple(s.data.shape) for s in leaf.addressable_shards}),
                "shards": len(leaf.addressable_shards)}
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}

def relative_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

result = {"losses": {}, "layouts": {}, "shardings_kept": {}}
for shape in MESH_SHAPES:
    seen = {}
    def record_layout(state):
        mu, nu = adam_moments(state["opt_state"])
        seen.update(params=layout(state["params"]), mu=layout(mu), nu=layout(nu))
        seen["shardings"] = jax.tree.map(lambda x: x.sharding, state)
    losses, state = train(make_config(shape), after_init=record_layout)
    key = str(list(shape))
    result["losses"][key] = losses
    result["layouts"][key] = {name: seen[name] for name in ("params", "mu", "nu")}
    result["shardings_kept"][key] = jax.tree.all(jax.tree.map(
        lambda x, s: x.sharding == s, state, seen["shardings"]))

whole_losses, whole_state = train(make_config((2, 2, 2)), steps=3)
accumulated_losses, accumulated_state = train(
    make_config((2, 2, 2), {"train.grad_accum_steps": 4}), steps=3)
result["accumulation"] = {
    "whole": whole_losses, "accumulated": accumulated_losses,
    "params": relative_difference(accumulated_state["params"], whole_state["params"])}
print("RESULT " + json.dumps(result))
"""

ONE_DEVICE = TRAINING + """
result = {remat: train(make_config((1, 1, 1), {"model.remat": remat}))[0]
          for remat in ("none", "full", "dots")}
print("RESULT " + json.dumps(result))
"""

# Compiling a program whose config cannot be sharded must fail before XLA compiles anything.
CONFIG_ERRORS = TRAINING + """
from scaling.config import ConfigError
compile_events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: compile_events.append(event)
    if event.startswith("/jax/core/compile/") else None)
messages = {}
for name, shape, overrides in [
        ("mesh_product", (2, 2, 1), {}),
        ("heads", (2, 1, 4), {"model.num_heads": 6}),
        ("batch", (2, 4, 1), {"train.batch_size": 12})]:
    config = make_config(shape, overrides)
    try:
        build_program(config, model_config(config), 100, parallel.make_mesh(config.mesh))
    except ConfigError as error:
        messages[name] = str(error)
print("RESULT " + json.dumps({"messages": messages, "compile_events": compile_events}))
"""


def _result(completed) -> dict:
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def eight_devices() -> dict:
    return _result(run_python(f"MESH_SHAPES = {MESH_SHAPES}\n" + EIGHT_DEVICES, devices=8))


@pytest.fixture(scope="module")
def one_device() -> dict:
    return _result(run_python(ONE_DEVICE, devices=1))


def assert_close(actual, expected, tolerance=RELATIVE_TOLERANCE):
    assert len(actual) == len(expected)
    worst = max(abs(a - e) / abs(e) for a, e in zip(actual, expected))
    assert worst <= tolerance, (worst, actual, expected)


@pytest.mark.slow
@pytest.mark.parametrize("shape", MESH_SHAPES)
def test_every_mesh_trains_like_one_device(eight_devices, one_device, shape):
    reference = one_device["none"]
    assert reference[-1] < reference[0] - 0.3  # the model learns, so a wrong update shows
    assert_close(eight_devices["losses"][str(list(shape))], reference)


@pytest.mark.slow
def test_no_mesh_leaves_xla_to_replicate_a_tensor_it_cannot_reshard():
    # Where XLA cannot move a tensor from one sharding to another it replicates it, and says so
    # in a log line as it compiles (a program read from the compilation cache says nothing): the
    # token lookup into a table split over fsdp did, on meshes with data and fsdp both above 1.
    code = TRAINING + """
jax.config.update("jax_enable_compilation_cache", False)
for shape in [(2, 4, 1), (2, 2, 2)]:
    train(make_config(shape), steps=1)
print("RESULT {}")
"""
    completed = run_python(code, devices=8)
    _result(completed)  # it ran to the end
    assert "Involuntary full rematerialization" not in completed.stderr


# Logical axes of each weight, as the model names them (the leading `layers` axis of the
# scanned blocks included), and where each logical axis is meant to live on the mesh.
WEIGHT_AXES = {
    "token_embedding": ("vocab", "embed"),
    "decoder/final_norm/scale": ("embed",),
    "decoder/layers/self_attention_norm/scale": ("layers", "embed"),
    "decoder/layers/mlp_norm/scale": ("layers", "embed"),
    "decoder/layers/self_attention/query": ("layers", "embed", "heads", "head_dim"),
    "decoder/layers/self_attention/key": ("layers", "embed", "kv_heads", "head_dim"),
    "decoder/layers/self_attention/value": ("layers", "embed", "kv_heads", "head_dim"),
    "decoder/layers/self_attention/out": ("layers", "heads", "head_dim", "embed"),
    "decoder/layers/mlp/wi": ("layers", "embed", "mlp"),
    "decoder/layers/mlp/wo": ("layers", "mlp", "embed"),
}
MESH_AXIS_OF = {"vocab": "tensor", "embed": "fsdp", "heads": "tensor", "kv_heads": "tensor",
                "mlp": "tensor", "head_dim": None, "layers": None}


def _strip_trailing_none(spec):
    spec = list(spec)
    while spec and spec[-1] is None:
        spec.pop()
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("shape", MESH_SHAPES)
def test_parameters_and_moments_are_sharded_by_their_axis_names(eight_devices, shape):
    sizes = dict(zip(("data", "fsdp", "tensor"), shape))
    layouts = eight_devices["layouts"][str(list(shape))]
    for tree in ("params", "mu", "nu"):
        assert set(layouts[tree]) == set(WEIGHT_AXES), tree
        for name, axes in WEIGHT_AXES.items():
            leaf = layouts[tree][name]
            expected_spec = [MESH_AXIS_OF[axis] for axis in axes]
            assert _strip_trailing_none(leaf["spec"]) == _strip_trailing_none(expected_spec), (tree, name)
            # Created already sharded: each of the 8 devices holds only its block.
            expected_block = [dim // (sizes[mesh_axis] if mesh_axis else 1)
                              for dim, mesh_axis in zip(leaf["shape"], expected_spec)]
            assert leaf["shards"] == 8
            assert leaf["shard_shapes"] == [expected_block], (tree, name)
    # The train step hands the state back with the shardings it received.
    assert eight_devices["shardings_kept"][str(list(shape))]


@pytest.mark.slow
def test_fsdp_and_tensor_parallelism_divide_parameter_memory(eight_devices):
    """(1, 2, 4) holds an eighth of every sharded weight per device; (8, 1, 1) holds all of it."""
    def per_device(shape):
        params = eight_devices["layouts"][str(list(shape))]["params"]
        return sum(math.prod(leaf["shard_shapes"][0]) for leaf in params.values())

    def total(shape):
        params = eight_devices["layouts"][str(list(shape))]["params"]
        return sum(math.prod(leaf["shape"]) for leaf in params.values())

    assert per_device((8, 1, 1)) == total((8, 1, 1))
    norms = 64 + 2 * 2 * 64  # final norm and the two norms of each of 2 layers: split over fsdp only
    assert per_device((1, 2, 4)) == (total((1, 2, 4)) - norms) // 8 + norms // 2


@pytest.mark.slow
def test_gradient_accumulation_matches_one_full_batch(eight_devices):
    accumulation = eight_devices["accumulation"]
    assert_close(accumulation["accumulated"], accumulation["whole"])
    assert accumulation["params"] <= RELATIVE_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("remat", ["full", "dots"])
def test_rematerialisation_does_not_change_the_losses(one_device, remat):
    assert_close(one_device[remat], one_device["none"])


def test_unshardable_configs_fail_with_the_numbers_before_compiling():
    result = _result(run_python(CONFIG_ERRORS, devices=8))
    messages = result["messages"]
    assert set(messages) == {"mesh_product", "heads", "batch"}
    assert "= 4 must equal the device count 8" in messages["mesh_product"]
    assert "config.model.num_heads=6" in messages["heads"] and "mesh.tensor=4" in messages["heads"]
    assert "config.train.batch_size=12" in messages["batch"]
    assert "2 × 4 = 8" in messages["batch"]
    assert result["compile_events"] == []


def _config(shape, **model):
    config = default_config()
    config.model.update(model)
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = shape
    return config


def test_mesh_shape_fills_in_the_rest_and_rejects_a_wrong_product():
    assert parallel.mesh_shape(_config((-1, 2, 2)).mesh, 8) == (2, 2, 2)
    assert parallel.mesh_shape(_config((1, -1, 4)).mesh, 8) == (1, 2, 4)
    with pytest.raises(ConfigError, match="divides the 8 devices"):
        parallel.mesh_shape(_config((-1, 3, 1)).mesh, 8)
    with pytest.raises(ConfigError, match="= 16 must equal the device count 8"):
        parallel.mesh_shape(_config((2, 2, 4)).mesh, 8)


def test_divisibility_checks_name_field_and_numbers():
    model = model_config(_config((1, 1, 1), d_model=64, num_heads=4, d_ff=96), 256)
    parallel.check_divisibility(model, 16, 2, (2, 4, 1))
    with pytest.raises(ConfigError, match=r"train.batch_size=16.*2 × 4 = 8.*grad_accum_steps=4"):
        parallel.check_divisibility(model, 16, 4, (2, 4, 1))
    with pytest.raises(ConfigError, match=r"model.num_heads=4.*mesh.tensor=8"):
        parallel.check_divisibility(model, 16, 1, (1, 1, 8))
    odd_mlp = model_config(_config((1, 1, 1), d_model=64, num_heads=4, d_ff=90), 256)
    with pytest.raises(ConfigError, match=r"model.d_ff=90.*mesh.tensor=4"):
        parallel.check_divisibility(odd_mlp, 16, 1, (1, 1, 4))
    with pytest.raises(ConfigError, match=r"model.d_model=64.*mesh.fsdp=128"):
        parallel.check_divisibility(model, 128, 1, (1, 128, 1))


def test_axes_that_do_not_divide_stay_replicated():
    shape = (1, 1, 4)
    multi_query = model_config(_config(shape, num_kv_heads=1), 257)
    rules = dict(parallel.logical_axis_rules(multi_query, shape))
    assert rules["kv_heads"] is None and rules["act_kv_heads"] is None
    assert rules["vocab"] is None and rules["act_vocab"] is None
    assert rules["heads"] == "tensor" and rules["embed"] == "fsdp"
    grouped = model_config(_config(shape, num_kv_heads=4), 256)
    rules = dict(parallel.logical_axis_rules(grouped, shape))
    assert rules["kv_heads"] == "tensor" and rules["vocab"] == "tensor"


# An encoder–decoder trained on span-corrupted batches (encoder inputs, decoder inputs, targets,
# loss mask), on one device and on a (2, 2, 2) mesh of eight.
ENCODER_DECODER = """
import json
import jax
import numpy as np
from scaling import parallel
from scaling.config import default_config, model_config
from scaling.data import objectives
from scaling.step import build_program

BATCH, LENGTH, STEPS = 16, 32, 6
config = default_config()
config.model.update(layout="encoder_decoder", d_model=64, num_heads=4)
config.train.objective = "span_corruption"
config.data.seq_len, config.train.batch_size, config.optim.warmup_steps = LENGTH, BATCH, 2
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = SHAPE
objective = objectives.Objective("span_corruption", LENGTH, 256, 255)
config.model.vocab_size = 256  # the special tokens come on top
assert model_config(config).vocab_size == objective.vocab_size
program = build_program(config, model_config(config), 100, parallel.make_mesh(config.mesh))
rng = np.random.default_rng(0)
losses = []
with program.context():
    state = program.init(jax.random.key(0))
    for step in range(STEPS):
        start = rng.integers(0, 256, size=(BATCH, 1))
        rows = ((start + rng.integers(1, 4, size=(BATCH, 1)) * np.arange(LENGTH + 1)) % 256).astype(np.int32)
        packed = {"inputs": rows[:, :-1], "targets": rows[:, 1:], "segment_ids": np.ones_like(rows[:, 1:])}
        batch = objective.apply(packed, objective.row_keys(step * BATCH + np.arange(BATCH), 0, False))
        state, metrics = program.train_step(state, parallel.global_batch(batch, program.batch_sharding))
        losses.append(float(metrics["loss"]))
print("RESULT " + json.dumps(losses))
"""


def test_encoder_decoder_on_a_2x2x2_mesh_matches_one_device():
    losses = {}
    for shape, devices in (((1, 1, 1), 1), ((2, 2, 2), 8)):
        output = run_python(f"SHAPE = {shape}\n" + ENCODER_DECODER, devices=devices).stdout
        losses[shape] = json.loads(output.split("RESULT ", 1)[1])
    one, eight = losses[(1, 1, 1)], losses[(2, 2, 2)]
    assert len(one) == 6 and one[-1] < one[0]
    for a, b in zip(one, eight):
        assert math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE), (one, eight)

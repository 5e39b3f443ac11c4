"""Workdirs holding a checkpoint of an untrained model, laid out the way `scaling-train` writes
them (checkpoints/ through the project's Checkpointer, summary.json with the config and the
resolved model), for the commands that read trained runs."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import ml_collections

from scaling import parallel
from scaling.checkpoint import Checkpointer
from scaling.config import default_config, model_config
from scaling.step import build_program


def tiny_config(**model_fields) -> ml_collections.ConfigDict:
    """A one-layer, 32-wide byte-level model on the embedded corpus; `model_fields` override."""
    config = default_config()
    config.name = "untrained"
    config.model.update(dict(num_layers=1, d_model=32, num_heads=4))
    config.model.update(model_fields)
    if config.model.layout == "encoder_decoder":  # the objective that trains one from the corpus
        config.train.objective = "span_corruption"
    config.data.seq_len = min(32, config.model.max_seq_len or 32)
    config.train.batch_size = 8
    config.train.steps = 1
    return config


def save_initialized_run(workdir: pathlib.Path, config: ml_collections.ConfigDict, seed: int = 0):
    """Initialise `config`'s model, save it as step 1 of a completed run in `workdir`; returns
    (resolved model config, params)."""
    model = model_config(config, 257)
    single = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1})
    mesh = parallel.make_mesh(single, devices=jax.devices()[:1])
    program = build_program(config, model, 1, mesh)
    with program.context():
        state = program.init(jax.random.key(seed))
    checkpointer = Checkpointer(workdir, keep=1, async_save=False)
    checkpointer.save(1, state, {"step": 1, "seed": seed, "total_steps": 1,
                                 "loss_window": {"total": 0.0, "count": 0, "skipped": 0},
                                 "model": dataclasses.asdict(model)}, wait=True)
    checkpointer.close()
    summary = {"name": config.name, "config": json.loads(json.dumps(config.to_dict(), default=str)),
               "model": dataclasses.asdict(model), "total_steps": 1, "steps": 1,
               "status": "completed", "final_eval_loss": None}
    (pathlib.Path(workdir) / "summary.json").write_text(json.dumps(summary, indent=1))
    return model, state["params"]

"""The position-wise feed-forward network: ReLU, GELU or SwiGLU.

ReLU/GELU: W_out · act(W_in · x (+ b_in)) (+ b_out), GELU in its tanh approximation (GPT-2).
SwiGLU (Shazeer 2020): W_out · (silu(W_gate · x) ⊙ (W_up · x)), without biases.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling import axes
from scaling.config import ModelConfig
from scaling.layers import initializers
from scaling.layers.linear import project

HIDDEN_AXES = (axes.BATCH, axes.LENGTH, axes.ACT_MLP)


class FeedForward(nn.Module):
    cfg: ModelConfig
    residual_branches: int

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        dtype = jnp.dtype(cfg.compute_dtype)

        def kernel(name, shape, axes, role=initializers.HIDDEN):
            init = initializers.dense_init(cfg, role, in_axis=0, out_axis=1,
                                           residual_branches=self.residual_branches)
            return self.param(name, nn.with_logical_partitioning(init, axes), shape,
                              jnp.float32).astype(dtype)

        def bias(name, size, axis):
            return self.param(name, nn.with_logical_partitioning(initializers.zeros, (axis,)),
                              (size,), jnp.float32).astype(dtype)

        d_model, d_ff = cfg.d_model, cfg.d_ff
        if cfg.ffn == "swiglu":
            gate_BxLxF = project(x_BxLxD, kernel("wi_gate", (d_model, d_ff), (axes.EMBED, axes.MLP)))
            up_BxLxF = project(x_BxLxD, kernel("wi_up", (d_model, d_ff), (axes.EMBED, axes.MLP)))
            hidden_BxLxF = jax.nn.silu(gate_BxLxF) * up_BxLxF
        else:
            hidden_BxLxF = project(x_BxLxD, kernel("wi", (d_model, d_ff), (axes.EMBED, axes.MLP)))
            if cfg.use_bias:
                hidden_BxLxF += bias("wi_bias", d_ff, "mlp")
            hidden_BxLxF = jax.nn.relu(hidden_BxLxF) if cfg.ffn == "relu" else jax.nn.gelu(hidden_BxLxF)
        hidden_BxLxF = nn.with_logical_constraint(hidden_BxLxF, HIDDEN_AXES)
        out_BxLxD = project(hidden_BxLxF,
                            kernel("wo", (d_ff, d_model), (axes.MLP, axes.EMBED), initializers.RESIDUAL_OUTPUT))
        if cfg.use_bias and cfg.ffn != "swiglu":
            out_BxLxD += bias("wo_bias", d_model, axes.EMBED)
        return out_BxLxD

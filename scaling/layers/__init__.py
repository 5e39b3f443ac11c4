"""The Transformer's building blocks, one concern per module.

`initializers` (weight init schemes), `positions` (sinusoidal, RoPE, ALiBi), `norms` (RMSNorm,
LayerNorm), `attention` (the attention kernels and the attention layer), `feed_forward` (the MLP).
`scaling.model` assembles them into blocks, stacks and the full model.
"""

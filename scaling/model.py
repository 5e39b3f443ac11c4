"""The Transformer: decoder-only (GPT), encoder-only, and encoder–decoder, from one set of blocks.

`Transformer(cfg)` is a functional flax.linen module: `init` returns float32 parameters boxed with
logical axis names (`vocab`, `embed`, `mlp`, `heads`, `kv_heads`, `head_dim`, `position`, and
`layers` for the leading axis of the scanned blocks); `apply` maps token ids to float32 logits.
Blocks are applied with `nn.scan` (their weights stacked on `layers`), traced `cfg.scan_unroll` layers
per loop iteration (0: all, no loop, the fastest step; 1: a rolled loop whose compile time does not
grow with depth), and rematerialised per `cfg.remat`. Rematerialisation frees memory only across
the loop's iterations (unrolled, XLA keeps every activation and recomputes besides), so under it
0 means 1. Activations carry logical sharding constraints, which are no-ops without a mesh.

µP (`cfg.parametrization == "mup"`), the model's part: hidden weights are initialised with variance
∝ 1/fan_in (`scaling.layers.initializers`), attention logits are scaled by 1/d_head instead of
1/√d_head, and the logits are multiplied by mup_base_width / d_model (the output-multiplier
variant, with embedding and read-out initialised independently of width). Per-group learning
rates belong to the optimizer.

Decoding and reading attention (`scaling.decoding`, `scaling.attention_maps`) call the same
modules: `apply(..., cache=...)` runs new tokens against a key/value cache and returns
`(logits, {"cache": ...})`; `Transformer(cfg, return_weights=True)` returns
`(logits, {"attention_weights": ...})`. Both leave the training path's computation unchanged.

`cross_entropy_loss` is the training objective (next-token cross-entropy plus optional z-loss).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling import axes
from scaling.config import ModelConfig
from scaling.layers import initializers, positions
from scaling.layers.attention import Attention
from scaling.layers.feed_forward import FeedForward
from scaling.layers.linear import project
from scaling.layers.norms import Norm

EMBED_AXES = (axes.BATCH, axes.LENGTH, axes.ACT_EMBED)
LOGITS_AXES = (axes.BATCH, axes.LENGTH, axes.ACT_VOCAB)

_REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,  # save only matmul outputs
}


def residual_branch_count(num_layers: int, cross_attention: bool) -> int:
    """Residual branches in a stack: (self-attention, [cross-attention,] MLP) per layer."""
    return (3 if cross_attention else 2) * num_layers


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention over `context_BxSxD`, MLP.

    Pre-norm: x + dropout(f(norm(x))) per sub-layer. Post-norm: norm(x + dropout(f(x))).
    Returns `(x, extras)` so it can be the body of `nn.scan`: extras is None in training, else
    the self-attention's (the updated `cache` when decoding, the `weights` when returned).
    """

    cfg: ModelConfig
    causal: bool
    cross_attention: bool
    residual_branches: int
    deterministic: bool = True
    return_weights: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, segment_ids_BxL, context_BxSxD, cache=None, index=None,
                 context_mask_BxS=None):
        cfg = self.cfg

        def sublayer(name, fn, x):
            if cfg.norm_position == "pre":
                y = fn(Norm(cfg.norm, name=f"{name}_norm")(x))
            else:
                y = fn(x)
            y = nn.Dropout(cfg.dropout)(y, deterministic=self.deterministic)
            x = x + y
            if cfg.norm_position == "post":
                x = Norm(cfg.norm, name=f"{name}_norm")(x)
            return nn.with_logical_constraint(x, EMBED_AXES)

        attention_kwargs = dict(cfg=cfg, residual_branches=self.residual_branches,
                                deterministic=self.deterministic)
        self_attention = Attention(causal=self.causal, name="self_attention",
                                   return_weights=self.return_weights, **attention_kwargs)
        extras = {}

        def attend(h):
            out = self_attention(h, segment_ids_BxL, cache=cache, index=index)
            if isinstance(out, tuple):
                out, layer_extras = out
                extras.update(layer_extras)
            return out

        x_BxLxD = sublayer("self_attention", attend, x_BxLxD)
        if self.cross_attention:
            cross_attention = Attention(causal=False, name="cross_attention", **attention_kwargs)
            x_BxLxD = sublayer("cross_attention",
                               lambda h: cross_attention(h, None, context_BxSxD,
                                                         key_mask_BxS=context_mask_BxS), x_BxLxD)
        feed_forward = FeedForward(cfg, self.residual_branches, name="mlp")
        x_BxLxD = sublayer("mlp", feed_forward, x_BxLxD)
        return x_BxLxD, (extras or None)


def scan_unroll(cfg: ModelConfig, num_layers: int) -> int:
    """Layers per iteration of the layer loop: `cfg.scan_unroll`, whose 0 means all of them, or
    one under rematerialisation (see the module docstring)."""
    return cfg.scan_unroll or (1 if cfg.remat != "none" else num_layers)


class Stack(nn.Module):
    """`num_layers` scanned blocks (weights stacked on a leading `layers` axis), then a final norm
    under pre-norm. Returns x, or `(x, extras)` with the blocks' extras stacked on a leading
    layers axis when decoding with a `cache` (stacked likewise) or returning weights."""

    cfg: ModelConfig
    num_layers: int
    causal: bool
    cross_attention: bool
    deterministic: bool = True
    return_weights: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, segment_ids_BxL=None, context_BxSxD=None, cache=None, index=None,
                 context_mask_BxS=None):
        cfg = self.cfg
        block = Block
        if cfg.remat != "none":
            block = nn.remat(Block, prevent_cse=False, policy=_REMAT_POLICIES[cfg.remat])
        scanned = nn.scan(block, variable_axes={"params": 0},
                          split_rngs={"params": True, "dropout": True},
                          in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast, nn.broadcast),
                          length=self.num_layers,
                          unroll=min(scan_unroll(cfg, self.num_layers), self.num_layers),
                          metadata_params={nn.PARTITION_NAME: axes.LAYERS})
        x_BxLxD, extras = scanned(cfg, self.causal, self.cross_attention,
                                  residual_branch_count(self.num_layers, self.cross_attention),
                                  self.deterministic, self.return_weights, name="layers")(
                                      x_BxLxD, segment_ids_BxL, context_BxSxD, cache, index,
                                      context_mask_BxS)
        if cfg.norm_position == "pre":
            x_BxLxD = Norm(cfg.norm, name="final_norm")(x_BxLxD)
        return x_BxLxD if extras is None else (x_BxLxD, extras)


class Transformer(nn.Module):
    """Token ids → float32 logits over the vocabulary.

    `tokens_BxL` are the (decoder) tokens; `encoder_tokens_BxS` the source sequence of an
    encoder–decoder. `segment_ids_BxL` marks packed documents: with `cfg.document_mask`,
    self-attention stays within a document (cross-attention sees the whole source). A source's
    padding (`cfg.source_pad_id`) is masked from the encoder's self-attention and from
    cross-attention. Encoder and decoder share the token embedding (and the learned position table). With
    sinusoidal positions the embeddings are multiplied by √d_model (under µP √mup_base_width)
    before the table is added.

    Decoding: `cache` (from `scaling.decoding.init_cache`) holds `index` (the position of
    `tokens_BxL[:, 0]`), each decoder layer's keys and values, and an encoder–decoder's encoded
    source and its non-padding mask (computed when `encoder_tokens_BxS` is given, read from the
    cache otherwise); the call
    returns `(logits, {"cache": the cache advanced by L tokens})`. With `return_weights`, it
    returns `(logits, {"attention_weights": {stack name: (layers, B, H, L, L) float32}})`.
    """

    cfg: ModelConfig
    return_weights: bool = False

    @nn.compact
    def __call__(self, tokens_BxL, segment_ids_BxL=None, encoder_tokens_BxS=None,
                 deterministic: bool = True, cache: dict | None = None):
        cfg = self.cfg
        embedding_VxD = self.param(
            "token_embedding",
            nn.with_logical_partitioning(initializers.embedding_init(cfg), (axes.VOCAB, axes.EMBED)),
            (cfg.vocab_size, cfg.d_model), jnp.float32)
        embed = self._embedder(embedding_VxD, deterministic)
        if not cfg.document_mask:
            segment_ids_BxL = None
        index = None if cache is None else cache["index"]
        weights: dict = {}
        x_BxLxD, encoded_BxSxD, source_mask_BxS, layer_cache = self._stacks(
            embed, tokens_BxL, segment_ids_BxL, encoder_tokens_BxS, cache, index, weights,
            deterministic)
        logits_BxLxV = self._logits(x_BxLxD.astype(jnp.float32), embedding_VxD)
        if cache is None and not self.return_weights:
            return logits_BxLxV
        extras = {}
        if cache is not None:
            extras["cache"] = {"index": index + tokens_BxL.shape[1], "layers": layer_cache}
            if encoded_BxSxD is not None:
                extras["cache"]["encoded"] = encoded_BxSxD.astype(cache["encoded"].dtype)
                extras["cache"]["source_mask"] = source_mask_BxS
        if self.return_weights:
            extras["attention_weights"] = weights
        return logits_BxLxV, extras

    def _embedder(self, embedding_VxD, deterministic: bool):
        """tokens (, offset) → embedded inputs with positions added (learned or sinusoidal)."""
        cfg = self.cfg
        position_table = None
        if cfg.position == "learned":
            position_table = self.param(
                "position_embedding",
                nn.with_logical_partitioning(initializers.embedding_init(cfg), (axes.POSITION, axes.EMBED)),
                (cfg.max_seq_len, cfg.d_model), jnp.float32)

        # The table whole along d_model for the lookup, as fully sharded data parallelism gathers
        # every weight before its use (a vocabulary split over `tensor` stays split): a lookup
        # into a table split over `fsdp` along d_model gave rows split that way, which the
        # batch's split over data × fsdp could only reach by replicating them (XLA's
        # "involuntary full rematerialization").
        table_VxD = nn.with_logical_constraint(embedding_VxD, (axes.VOCAB, None))

        def embed(tokens, offset=None):
            x = jnp.take(table_VxD, tokens, axis=0)
            length = tokens.shape[1]
            if position_table is not None and offset is not None:
                x = x + jax.lax.dynamic_slice_in_dim(position_table, offset, length)[None]
            elif position_table is not None:
                x = x + position_table[None, :length]
            elif cfg.position == "sinusoidal":
                # As in "Attention Is All You Need": embeddings times √d_model, so the token signal
                # is not drowned by the unit-amplitude table. Under µP, whose table's std is the
                # same at every width, the factor is too: √mup_base_width.
                width = cfg.mup_base_width if cfg.parametrization == "mup" else cfg.d_model
                x = x * jnp.sqrt(jnp.float32(width)) + positions.sinusoidal_table(
                    length, cfg.d_model, offset)[None]
            x = nn.Dropout(cfg.dropout)(x.astype(jnp.dtype(cfg.compute_dtype)),
                                        deterministic=deterministic)
            return nn.with_logical_constraint(x, EMBED_AXES)

        return embed

    def _stacks(self, embed, tokens_BxL, segment_ids_BxL, encoder_tokens_BxS, cache, index,
                weights: dict, deterministic: bool):
        """The encoder and/or decoder stacks: (output, encoded source or None, the source's
        non-padding mask or None, decoder cache). Padding in the source (`cfg.source_pad_id`) is
        masked from the encoder's self-attention and the decoder's cross-attention."""
        cfg = self.cfg
        stack_kwargs = dict(deterministic=deterministic, return_weights=self.return_weights)
        layer_cache = None if cache is None else cache["layers"]

        def stack_output(name, output):
            if isinstance(output, tuple):
                output, extras = output
                if "weights" in extras:
                    weights[name] = extras["weights"]
                return output, extras.get("cache")
            return output, None

        if cfg.layout != "encoder_decoder":
            is_decoder = cfg.layout == "decoder"
            name = "decoder" if is_decoder else "encoder"
            x_BxLxD, layer_cache = stack_output(name, Stack(
                cfg, cfg.num_layers, causal=is_decoder, cross_attention=False, name=name,
                **stack_kwargs)(embed(tokens_BxL, index), segment_ids_BxL, None, layer_cache, index))
            return x_BxLxD, None, None, layer_cache
        padded = cfg.source_pad_id >= 0  # else no mask at all (the mask below is all True)
        if encoder_tokens_BxS is not None:
            source_mask_BxS = encoder_tokens_BxS != cfg.source_pad_id
            # Source tokens attend within their segment: 1 for tokens, 0 for padding.
            segments_BxS = source_mask_BxS.astype(jnp.int32) if padded else None
            encoded_BxSxD, _ = stack_output("encoder", Stack(
                cfg, cfg.num_encoder_layers, causal=False, cross_attention=False,
                name="encoder", **stack_kwargs)(embed(encoder_tokens_BxS), segments_BxS))
        elif cache is not None:
            encoded_BxSxD, source_mask_BxS = cache["encoded"], cache["source_mask"]
        else:
            raise ValueError("layout 'encoder_decoder' needs encoder_tokens_BxS")
        x_BxLxD, layer_cache = stack_output("decoder", Stack(
            cfg, cfg.num_layers, causal=True, cross_attention=True, name="decoder",
            **stack_kwargs)(embed(tokens_BxL, index), segment_ids_BxL, encoded_BxSxD,
                            layer_cache, index, source_mask_BxS if padded else None))
        return x_BxLxD, encoded_BxSxD, source_mask_BxS, layer_cache

    def _logits(self, x_BxLxD, embedding_VxD):
        """The read-out: tied (the embedding's transpose) or its own matrix; µP's multiplier."""
        cfg = self.cfg
        if cfg.tie_embeddings:
            logits_BxLxV = project(x_BxLxD, embedding_VxD.T)
        else:
            readout_init = initializers.dense_init(cfg, initializers.READOUT, in_axis=0, out_axis=1)
            unembedding_DxV = self.param(
                "unembedding", nn.with_logical_partitioning(readout_init, (axes.EMBED, axes.VOCAB)),
                (cfg.d_model, cfg.vocab_size), jnp.float32)
            logits_BxLxV = project(x_BxLxD, unembedding_DxV)
        if cfg.parametrization == "mup":
            # µP read-out multiplier (the "output multiplier" variant of Yang et al., Tensor
            # Programs V): logits shrink as 1/width, equal to standard at the base width.
            logits_BxLxV = logits_BxLxV * (cfg.mup_base_width / cfg.d_model)
        return nn.with_logical_constraint(logits_BxLxV, LOGITS_AXES)


def cross_entropy_loss(logits_BxLxV, targets_BxL, z_loss: float = 0.0, mask_BxL=None):
    """Mean cross-entropy in nats (float32) of `targets_BxL` under `logits_BxLxV`, plus z-loss.

    `targets_BxL[b, t]` is the token that `logits_BxLxV[b, t]` should predict (the caller shifts
    for next-token prediction). `mask_BxL` (0/1 or bool) selects the positions averaged over.
    z-loss adds z_loss · mean(logsumexp(logits)²), which keeps the softmax normaliser near 1
    (PaLM). Returns `(loss, {"ce": mean cross-entropy, "z_loss": the added z-loss term})`.
    """
    logits = logits_BxLxV.astype(jnp.float32)
    log_normalizer_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    ce_BxL = log_normalizer_BxL - target_logit_BxL
    if mask_BxL is None:
        weights_BxL = jnp.ones_like(ce_BxL)
    else:
        weights_BxL = mask_BxL.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(weights_BxL), 1.0)
    ce = jnp.sum(ce_BxL * weights_BxL) / count
    z_term = z_loss * jnp.sum(jnp.square(log_normalizer_BxL) * weights_BxL) / count
    return ce + z_term, {"ce": ce, "z_loss": z_term}

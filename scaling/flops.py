"""Parameter counts and training FLOPs per token, by hand formula from a `ModelConfig`.

Parameters
    embedding      = token embedding (vocab × d_model) + the untied output projection (d_model ×
                     vocab, if untied) + the learned position table (max_seq_len × d_model, if any).
    non_embedding  = everything else: attention and MLP weights and biases, norm scales/biases.
                     This is Kaplan et al.'s N.
    total          = embedding + non_embedding.

FLOPs per token (forward + backward, one FLOP = one multiply or one add, so a multiply-accumulate
is 2), in two conventions (`scaling.config.FLOP_CONVENTIONS`):
    "6N"   Kaplan et al.: 6 × non-embedding parameters. Ignores attention over the context and the
           unembedding.
    "full" Chinchilla-style (Hoffmann et al., App. F): 3 × forward, with forward =
           2 × (every matmul weight a token passes through, including the unembedding — tied or
           not — but not the embedding lookup, a gather) + the attention terms
           2·n_heads·d_head·keys for QKᵀ and the same for softmax·V, per layer and token.
           `keys` is what the compiled program computes, not what the mask lets through: causal
           attention runs in blocks of `CAUSAL_QUERY_BLOCK` queries, each against the keys up to
           the block's end ((n + 1)/2n of L×L for n blocks; all of L×L up to one block);
           bidirectional attention over all L keys; blocked sliding-window attention over
           2·window keys per query (3·window bidirectional) on a length padded up to a multiple
           of window.
           Elementwise work (softmax exponentials, norms, activations, residual adds, biases) is
           not counted; it is a few percent of the total at realistic widths.
MFU is reported in PaLM's convention (Chowdhery et al. 2022, App. B), the usual one for
comparing implementations: 6 × matmul parameters (readout included) + 12·layers·heads·d_head·L per
token, full L×L attention whatever the mask (`mfu_flops_per_token`). It differs from "full" only
where attention is blocked, so a faster attention kernel never raises MFU by skipping work.

The backward pass costs twice the forward (a gradient for the input and one for the weight of
every matmul), hence the factor 3. These are model FLOPs: the forward recomputation that
`remat` adds is not counted (XLA's count of a rematerialised step is ~20% higher).

Comparing with XLA (`jax.jit(f).lower(...).compile().cost_analysis()["flops"]`): XLA also counts
elementwise work, and reads ~1% higher than "full" (tests/test_flops.py). It counts the body of a
`while` loop once: where fewer layers than the stack's are traced per iteration
(`model.scan_unroll`; its default 0 traces all of them, or one under `model.remat`), the layer
loop stays a loop and XLA shows only the layers of one iteration.

For the encoder–decoder, "per token" means per decoder (target) token, with a source of
`source_len` tokens per `seq_len` target tokens (default: equal lengths); the encoder's work is
spread over the target tokens. Cross-attention key/value projections run on source tokens.

A run reports FLOPs per *corpus* token (`objective_flops_per_token`): what a step costs over the
corpus tokens it reads (`scaling.data.objectives.Shapes`), so a decoder, an encoder and an
encoder–decoder compare at equal FLOPs however their objectives split a row between encoder and
decoder. Encoder and decoder tokens are counted separately: in "6N", an encoder token costs
6 × the encoder's non-embedding parameters and a decoder token 6 × the decoder's.
"""

from __future__ import annotations

import dataclasses

from scaling.config import ModelConfig
from scaling.data.objectives import Shapes
from scaling.layers.attention import CAUSAL_QUERY_BLOCK
from scaling.layers.norms import norm_parameter_count


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts (see the module docstring for what counts as embedding)."""

    total: int
    embedding: int
    non_embedding: int


def _attention_parameters(cfg: ModelConfig) -> int:
    projections = 2 * cfg.d_model * cfg.head_dim * (cfg.num_heads + cfg.num_kv_heads)
    biases = cfg.head_dim * (cfg.num_heads + 2 * cfg.num_kv_heads) + cfg.d_model if cfg.use_bias else 0
    qk_norms = 2 * norm_parameter_count(cfg.norm, cfg.head_dim) if cfg.qk_norm else 0
    return projections + biases + qk_norms


def _attention_matmul_parameters(cfg: ModelConfig) -> tuple[int, int]:
    """(query + output, key + value) projection weights of one attention layer."""
    query_output = 2 * cfg.d_model * cfg.num_heads * cfg.head_dim
    key_value = 2 * cfg.d_model * cfg.num_kv_heads * cfg.head_dim
    return query_output, key_value


def _mlp_matmul_parameters(cfg: ModelConfig) -> int:
    return (3 if cfg.ffn == "swiglu" else 2) * cfg.d_model * cfg.d_ff


def _mlp_parameters(cfg: ModelConfig) -> int:
    biases = cfg.d_ff + cfg.d_model if cfg.use_bias and cfg.ffn != "swiglu" else 0
    return _mlp_matmul_parameters(cfg) + biases


def _stack_parameters(cfg: ModelConfig, num_layers: int, cross_attention: bool) -> int:
    norm = norm_parameter_count(cfg.norm, cfg.d_model)
    sublayers = 3 if cross_attention else 2
    per_layer = (sublayers - 1) * _attention_parameters(cfg) + _mlp_parameters(cfg) + sublayers * norm
    final_norm = norm if cfg.norm_position == "pre" else 0
    return num_layers * per_layer + final_norm


def _stacks(cfg: ModelConfig) -> list[tuple[int, bool, bool]]:
    """(num_layers, causal, cross_attention) of each stack in the layout."""
    if cfg.layout == "encoder_decoder":
        return [(cfg.num_encoder_layers, False, False), (cfg.num_layers, True, True)]
    return [(cfg.num_layers, cfg.layout == "decoder", False)]


def parameter_counts(cfg: ModelConfig) -> ParameterCounts:
    """Parameters of `scaling.model.Transformer(cfg)`, by hand formula."""
    embedding = cfg.vocab_size * cfg.d_model
    if not cfg.tie_embeddings:
        embedding += cfg.d_model * cfg.vocab_size
    if cfg.position == "learned":
        embedding += cfg.max_seq_len * cfg.d_model
    non_embedding = sum(_stack_parameters(cfg, layers, cross) for layers, _, cross in _stacks(cfg))
    return ParameterCounts(total=embedding + non_embedding, embedding=embedding,
                           non_embedding=non_embedding)


def attention_keys_per_query(cfg: ModelConfig, length: int, causal: bool) -> float:
    """Keys each query is scored against in the compiled self-attention, averaged over the
    `length` real queries (see the module docstring)."""
    if cfg.attention != "sliding" or length <= cfg.window:
        if not causal or length <= CAUSAL_QUERY_BLOCK:
            return float(length)
        ends = [min(start + CAUSAL_QUERY_BLOCK, length) for start in
                range(0, length, CAUSAL_QUERY_BLOCK)]
        return sum((end - start) * end for start, end in
                   zip(range(0, length, CAUSAL_QUERY_BLOCK), ends)) / length
    padded_length = -(-length // cfg.window) * cfg.window
    keys_per_block = (2 if causal else 3) * cfg.window
    return keys_per_block * padded_length / length


def _attention_score_flops(cfg: ModelConfig, keys: float) -> float:
    """Forward FLOPs of QKᵀ and softmax·V for one query against `keys` keys."""
    return 2 * 2 * cfg.num_heads * cfg.head_dim * keys


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, source_len: int | None = None) -> float:
    """Forward FLOPs per (target) token in the "full" convention (see the module docstring)."""
    query_output, key_value = _attention_matmul_parameters(cfg)
    mlp = _mlp_matmul_parameters(cfg)
    readout = 2 * cfg.d_model * cfg.vocab_size
    self_attention_layer = 2 * (query_output + key_value + mlp)
    if cfg.layout != "encoder_decoder":
        causal = cfg.layout == "decoder"
        keys = attention_keys_per_query(cfg, seq_len, causal)
        return cfg.num_layers * (self_attention_layer + _attention_score_flops(cfg, keys)) + readout
    source_len = seq_len if source_len is None else source_len
    source_per_target = source_len / seq_len
    encoder_keys = attention_keys_per_query(cfg, source_len, causal=False)
    encoder = cfg.num_encoder_layers * (self_attention_layer + _attention_score_flops(cfg, encoder_keys))
    decoder_keys = attention_keys_per_query(cfg, seq_len, causal=True)
    cross = 2 * query_output + 2 * key_value * source_per_target + _attention_score_flops(cfg, source_len)
    decoder = cfg.num_layers * (self_attention_layer + _attention_score_flops(cfg, decoder_keys) + cross)
    return encoder * source_per_target + decoder + readout


def mfu_flops_per_token(cfg: ModelConfig, seq_len: int, shapes: Shapes | None = None) -> float:
    """Training FLOPs per token in PaLM's convention (module docstring): the "full" count with
    every self-attention over all `seq_len` keys. With an encoder–decoder's `shapes`, per corpus
    token as in `objective_flops_per_token`."""
    unblocked = dataclasses.replace(cfg, attention="full", window=0)
    if shapes is not None and cfg.layout == "encoder_decoder":
        skipped = shapes.decoder - attention_keys_per_query(unblocked, shapes.decoder, causal=True)
        per_target = 3.0 * (forward_flops_per_token(unblocked, shapes.decoder, shapes.encoder)
                            + cfg.num_layers * _attention_score_flops(cfg, skipped))
        return per_target * shapes.decoder / shapes.corpus
    causal_layers = 0 if cfg.layout == "encoder" else cfg.num_layers
    skipped_keys = seq_len - attention_keys_per_query(unblocked, seq_len, causal=True)
    return 3.0 * (forward_flops_per_token(unblocked, seq_len)
                  + causal_layers * _attention_score_flops(cfg, skipped_keys))


def training_flops_per_token(cfg: ModelConfig, seq_len: int, convention: str = "full",
                             source_len: int | None = None) -> float:
    """Forward + backward FLOPs per (target) token in `convention` "6N" or "full"."""
    if convention == "6N":
        return 6.0 * parameter_counts(cfg).non_embedding
    if convention == "full":
        return 3.0 * forward_flops_per_token(cfg, seq_len, source_len)
    raise ValueError(f"unknown FLOP convention {convention!r}; allowed: 6N, full")


def stack_non_embedding_parameters(cfg: ModelConfig) -> tuple[int, int]:
    """(encoder, decoder) non-embedding parameters; an encoder-only model's stack is its
    encoder, a decoder-only model's its decoder."""
    counts = [_stack_parameters(cfg, layers, cross) for layers, _, cross in _stacks(cfg)]
    if cfg.layout == "encoder_decoder":
        return counts[0], counts[1]
    return (counts[0], 0) if cfg.layout == "encoder" else (0, counts[0])


def objective_flops_per_token(cfg: ModelConfig, shapes: Shapes, convention: str = "full") -> float:
    """Training FLOPs per corpus token of a run whose rows have `shapes` (module docstring).
    Equal to `training_flops_per_token(cfg, shapes.decoder, convention)` without an encoder."""
    if cfg.layout != "encoder_decoder":
        return training_flops_per_token(cfg, shapes.decoder, convention)
    if convention == "6N":
        encoder, decoder = stack_non_embedding_parameters(cfg)
        return 6.0 * (encoder * shapes.encoder + decoder * shapes.decoder) / shapes.corpus
    per_target = training_flops_per_token(cfg, shapes.decoder, convention, shapes.encoder)
    return per_target * shapes.decoder / shapes.corpus

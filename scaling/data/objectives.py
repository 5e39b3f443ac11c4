"""Training objectives as transforms of the deterministic batch for step k.

The loader reads the same windows for every objective (`scaling.data.packing`); an objective turns
those rows into what the model reads and what the loss scores:

    causal_lm        decoder: `inputs` → next token `targets` (the batch as packed, unchanged)
    masked_lm        encoder: BERT's corruption. A fixed 15% of each row's positions are selected;
                     of those, 80% become the mask token, 10% a uniformly drawn token, 10% stay.
                     `targets` are the original tokens, `loss_mask` the selected positions.
    span_corruption  encoder–decoder: T5's corruption. round(0.15·L) tokens in about
                     noise/3 spans are dropped from the row; each span is replaced by a sentinel in
                     `encoder_inputs`; `targets` are each sentinel followed by its span, then EOS;
                     the decoder reads BOS + targets[:-1].
    seq2seq          encoder–decoder on (source, target) pairs (`scaling.data.pairs`).

A held-out metric both a decoder and an encoder–decoder compute (`Objective.continuation`): the
last k tokens of each window given every token before them. The decoder scores its last k targets;
the encoder–decoder encodes the tokens before them followed by the first sentinel (a row whose one
dropped span is its end) and scores the span its decoder writes. Both see the same context and
score the same tokens, each with its distribution over the corpus vocabulary (an encoder–decoder's
sentinels and other special tokens left out: none is a corpus token, and a span-corruption
decoder, never trained on a span this long, puts much of its mass on ending it), so layouts
trained on different objectives compare on one quantity.

The randomness of a corrupted row is a pure function of (seed, global row index) — and of the row
index alone for held-out rows — so the batch for step k still depends only on (seed, k), a resumed
run sees the same batches, and every host corrupts its own rows without talking to the others.
The draws never look at token values, so what a replaced position held cannot reach the inputs.

Special tokens sit after the tokenizer's vocabulary (`SpecialTokens`), so the ids the tokenizer
produces, its token caches and the decoder's vocabulary under `causal_lm` are unchanged; the end
of a target is the tokenizer's end-of-document id.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling.data import ordering

OBJECTIVES = ("causal_lm", "masked_lm", "span_corruption", "seq2seq")
# The config fields each objective reads besides train.objective and the corpus (none for the
# others): a run of another objective ignores them.
OBJECTIVE_FIELDS = {"masked_lm": ("train.mask_fraction",),
                    "span_corruption": ("train.noise_density", "train.mean_span_length"),
                    "seq2seq": ("data.source_feature", "data.target_feature", "data.target_len")}
# The objectives whose models can score a window's continuation (`Objective.continuation`).
CONTINUATION_OBJECTIVES = ("causal_lm", "span_corruption")
# The one layout each objective trains, and why the others cannot.
LAYOUT_OF = {"causal_lm": "decoder", "masked_lm": "encoder", "span_corruption": "encoder_decoder",
             "seq2seq": "encoder_decoder"}
WHY_NOT = {
    ("causal_lm", "encoder"): "every position would see its own target",
    ("causal_lm", "encoder_decoder"): "an encoder–decoder needs a source to encode "
                                      "(span_corruption or seq2seq)",
    ("masked_lm", "decoder"): "a causal decoder cannot see the context right of a masked token",
    ("masked_lm", "encoder_decoder"): "masked tokens are predicted at the encoder's own "
                                      "positions; there is nothing for a decoder to generate",
    ("span_corruption", "decoder"): "the dropped spans are generated from an encoded source",
    ("span_corruption", "encoder"): "the dropped spans are generated from an encoded source",
    ("seq2seq", "decoder"): "the target is generated from an encoded source",
    ("seq2seq", "encoder"): "the target is generated from an encoded source",
}
_TRAIN_SALT, _EVAL_SALT = 0x0B1EC7, 0xE7A1


def layout_error(objective: str, layout: str) -> str | None:
    """Why `layout` cannot train `objective`, in one line; None when it can."""
    if LAYOUT_OF[objective] == layout:
        return None
    return (f"{WHY_NOT[(objective, layout)]}; train.objective={objective!r} needs "
            f"model.layout={LAYOUT_OF[objective]!r}")


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids reserved after a tokenizer's `base` ids: PAD, MASK, BOS, then the sentinels."""

    base: int
    num_sentinels: int = 0

    @property
    def pad(self) -> int:
        return self.base

    @property
    def mask(self) -> int:
        return self.base + 1

    @property
    def bos(self) -> int:
        return self.base + 2

    def sentinel(self, index):
        return self.base + 3 + index

    @property
    def vocab_size(self) -> int:
        return self.base + 3 + self.num_sentinels


def span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a row of `length` tokens, as in T5: round(density·length)
    noise tokens (at least 1, at most length − 1) in round(noise / mean span) spans (at least 1)."""
    noise = int(min(max(round(length * noise_density), 1), length - 1))
    spans = int(max(round(noise / mean_span_length), 1))
    return noise, spans


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Per-row lengths: `corpus` tokens read, `encoder` tokens encoded (0: no encoder),
    `decoder` positions scored by the read-out. A seq2seq row's are its padded positions
    (`data.seq_len` + `data.target_len`), not the tokens of its pair: a short pair is mostly PAD."""

    corpus: int
    encoder: int
    decoder: int


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective over rows of `seq_len` corpus tokens with a tokenizer of `base_vocab` ids."""

    name: str
    seq_len: int
    base_vocab: int
    eod_id: int
    mask_fraction: float = 0.15
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    target_len: int = 0  # seq2seq: decoder positions; 0 means seq_len

    @property
    def special(self) -> SpecialTokens:
        sentinels = 0
        if self.name == "span_corruption":
            sentinels = span_counts(self.seq_len, self.noise_density, self.mean_span_length)[1]
        return SpecialTokens(self.base_vocab, sentinels)

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary: the tokenizer's, plus the special tokens an objective uses."""
        return self.base_vocab if self.name == "causal_lm" else self.special.vocab_size

    @property
    def shapes(self) -> Shapes:
        if self.name == "span_corruption":
            noise, spans = span_counts(self.seq_len, self.noise_density, self.mean_span_length)
            return Shapes(self.seq_len, self.seq_len - noise + spans, noise + spans + 1)
        if self.name == "seq2seq":
            return Shapes(self.seq_len + (self.target_len or self.seq_len), self.seq_len,
                          self.target_len or self.seq_len)
        return Shapes(self.seq_len, 0, self.seq_len)

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The arrays of a batch, as the step receives them."""
        if self.name == "causal_lm":
            return ("inputs", "targets", "segment_ids")
        if self.name == "masked_lm":
            return ("inputs", "targets", "loss_mask")
        return ("encoder_inputs", "inputs", "targets", "loss_mask")

    def row_keys(self, global_rows: np.ndarray, seed: int, held_out: bool) -> list[int]:
        """The random key of each row: (seed, global row) in training, the row alone held out
        (none for causal_lm, which draws nothing)."""
        if self.name == "causal_lm":
            return []
        if held_out:
            return [ordering.derive_key(_EVAL_SALT, int(row)) for row in global_rows]
        return [ordering.derive_key(_TRAIN_SALT, seed, int(row)) for row in global_rows]

    def apply(self, batch: dict[str, np.ndarray], keys: list[int]) -> dict[str, np.ndarray]:
        """The objective's batch from a packed batch (`inputs`, `targets`, `segment_ids`; see
        `packing.make_batch`), row i corrupted with randomness `keys[i]`."""
        if self.name == "causal_lm":
            return batch
        if self.name == "masked_lm":
            return mask_tokens(batch["inputs"], keys, self.special, self.mask_fraction)
        if self.name == "span_corruption":
            return corrupt_spans(batch["inputs"], keys, self.special, self.eod_id,
                                 self.noise_density, self.mean_span_length)
        raise ValueError(f"objective {self.name!r} reads pairs, not packed rows")

    def continuation(self, batch: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
        """A packed batch as the task "the last `k` tokens of each window given the rest", in this
        objective's form, with `loss_mask` on the k scored tokens."""
        if self.name == "causal_lm":
            loss_mask = np.zeros_like(batch["targets"])
            loss_mask[:, -k:] = 1
            return {**batch, "loss_mask": loss_mask}
        if self.name == "span_corruption":
            return continuation_span(batch, k, self.special, self.eod_id)
        raise ValueError(f"objective {self.name!r} cannot score a continuation; "
                         f"{', '.join(CONTINUATION_OBJECTIVES)} can")


def mask_tokens(tokens: np.ndarray, keys: list[int], special: SpecialTokens,
                fraction: float) -> dict[str, np.ndarray]:
    """BERT's masked-LM corruption of int32 `tokens` [rows, L]: `inputs` (corrupted), `targets`
    (the originals) and `loss_mask` (1 at the round(fraction·L) selected positions per row)."""
    rows, length = tokens.shape
    selected_count = int(min(max(round(fraction * length), 1), length))
    inputs = tokens.copy()
    loss_mask = np.zeros_like(tokens)
    for row, key in enumerate(keys):
        rng = np.random.default_rng(key)
        selected = rng.choice(length, selected_count, replace=False)
        action = rng.random(selected_count)
        random_tokens = rng.integers(0, special.base, selected_count)
        loss_mask[row, selected] = 1
        masked = action < 0.8
        replaced = (action >= 0.8) & (action < 0.9)
        inputs[row, selected[masked]] = special.mask
        inputs[row, selected[replaced]] = random_tokens[replaced]
    return {"inputs": inputs, "targets": tokens.copy(), "loss_mask": loss_mask}


def _random_segments(rng: np.random.Generator, items: int, segments: int) -> np.ndarray:
    """Lengths (each >= 1, summing to `items`) of a uniformly random split into `segments`."""
    cuts = np.sort(rng.choice(np.arange(1, items), segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [items]]))


def noise_mask(rng: np.random.Generator, length: int, noise_density: float,
               mean_span_length: float) -> np.ndarray:
    """bool [length]: T5's random spans, alternating kept / dropped and starting with kept."""
    noise, spans = span_counts(length, noise_density, mean_span_length)
    noise_lengths = _random_segments(rng, noise, spans)
    kept_lengths = _random_segments(rng, length - noise, spans)
    interleaved = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)
    is_noise = np.tile([False, True], spans)
    return np.repeat(is_noise, interleaved)


def corrupt_spans(tokens: np.ndarray, keys: list[int], special: SpecialTokens, eos_id: int,
                  noise_density: float, mean_span_length: float) -> dict[str, np.ndarray]:
    """T5's span corruption of int32 `tokens` [rows, L]: `encoder_inputs` (kept tokens, each
    dropped span replaced by its sentinel), `targets` (sentinel + span for each span, then EOS),
    `inputs` (BOS + targets[:-1]) and `loss_mask` (all ones: every row has the same lengths)."""
    rows, length = tokens.shape
    noise, spans = span_counts(length, noise_density, mean_span_length)
    encoder = np.empty((rows, length - noise + spans), np.int32)
    targets = np.empty((rows, noise + spans + 1), np.int32)
    for row, key in enumerate(keys):
        dropped = noise_mask(np.random.default_rng(key), length, noise_density, mean_span_length)
        span_start = dropped & ~np.concatenate([[False], dropped[:-1]])
        span_index = np.cumsum(span_start) - 1
        sentinels = special.sentinel(span_index).astype(np.int32)
        # Encoder: kept tokens, and a sentinel where each dropped span began.
        encoder[row] = np.where(span_start, sentinels, tokens[row])[~dropped | span_start]
        # Targets: before each dropped token that starts a span, its sentinel; then EOS.
        pieces = np.stack([np.where(span_start, sentinels, -1), np.where(dropped, tokens[row], -1)],
                          axis=1).reshape(-1)
        targets[row, :-1] = pieces[pieces >= 0]
        targets[row, -1] = eos_id
    inputs = np.concatenate([np.full((rows, 1), special.bos, np.int32), targets[:, :-1]], axis=1)
    return {"encoder_inputs": encoder, "inputs": inputs, "targets": targets,
            "loss_mask": np.ones_like(targets)}


def continuation_span(batch: dict[str, np.ndarray], k: int, special: SpecialTokens,
                      eos_id: int) -> dict[str, np.ndarray]:
    """The continuation task as span corruption with one span, the window's last `k` tokens: the
    window w (`inputs` and the last target, L + 1 tokens) becomes `encoder_inputs` w[:L+1-k] +
    sentinel 0 and `targets` sentinel 0 + w[L+1-k:] + EOS, scored on the k tokens of w only. These
    are exactly the tokens a decoder's last k targets are, with the same context before each."""
    window = np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)
    rows, cut = window.shape[0], window.shape[1] - k
    sentinel = np.full((rows, 1), special.sentinel(0), np.int32)
    targets = np.concatenate([sentinel, window[:, cut:], np.full((rows, 1), eos_id, np.int32)],
                             axis=1).astype(np.int32)
    loss_mask = np.zeros_like(targets)
    loss_mask[:, 1:-1] = 1
    inputs = np.concatenate([np.full((rows, 1), special.bos, np.int32), targets[:, :-1]], axis=1)
    return {"encoder_inputs": np.concatenate([window[:, :cut], sentinel], axis=1).astype(np.int32),
            "inputs": inputs, "targets": targets, "loss_mask": loss_mask}


def for_config(data_cfg, train_cfg, base_vocab: int, eod_id: int) -> Objective:
    """The objective `train.objective` names, over `config.data`'s rows, for a tokenizer of
    `base_vocab` ids ending documents with `eod_id`."""
    return Objective(train_cfg.objective, data_cfg.seq_len, base_vocab, eod_id,
                     mask_fraction=train_cfg.mask_fraction, noise_density=train_cfg.noise_density,
                     mean_span_length=train_cfg.mean_span_length, target_len=data_cfg.target_len)


def stack_lengths(layout: str, shapes: Shapes) -> tuple[int, int]:
    """(encoder, decoder) positions a row runs through each stack (0: no such stack). An
    encoder-only model's one stack is its encoder, over the read-out's `shapes.decoder`
    positions."""
    if layout == "encoder":
        return shapes.decoder, 0
    return shapes.encoder, shapes.decoder


def shapes_of(data_cfg, train_cfg) -> Objective:
    """The objective of a config where only its shapes and batch keys are needed (no tokenizer:
    vocabulary and end-of-document are left at 0)."""
    return for_config(data_cfg, train_cfg, base_vocab=0, eod_id=0)

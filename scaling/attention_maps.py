"""`scaling-attention`: the attention weights a trained run gives a text, as a figure and an array.

    scaling-attention --workdir runs/tiny --text "def add(a, b):" --out attention.png
    scaling-attention --workdir runs/tiny --text "def add(a, b):" --out head.png --layer 1 --head 0

The text is read as the start of a document (the end-of-document token, shown as `<eod>`, then the
text's tokens; an encoder–decoder's decoder starts, as in training, from its objective's BOS token,
shown as `<bos>`). Without `--layer/--head` the figure is a grid over layers × heads of each head's
weights (query rows, key columns); with them, one head with the tokens on both axes. Beside the
figure, `<out>.npy` holds what it shows: float32 (layers, heads, L, L), or (L, L) for one head.
Encoder–decoder runs read `--source` in the encoder (as sampling does: its tokens alone);
`--stack encoder` shows the encoder's self-attention. In `--text` and `--source`, the names of the
run's special tokens (`<sentinel_0>`, `<mask>`) are read as those tokens (`trained.encode_text`).

The weights come from `Transformer(cfg, return_weights=True)`, whose explicit attention path is
tested to give the training path's block outputs (blocked causal and sliding attention included).
"""

from __future__ import annotations

# `python -m scaling.attention_maps` runs the console script, Ctrl-C handled before the imports below.
if __name__ == "__main__":
    from scaling import scripts
    raise SystemExit(scripts.attention())

import argparse
import functools
import pathlib
import sys
import textwrap

import jax
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from scaling import files
from scaling import model as model_lib
from scaling import hardware, interrupts, scripts, trained
from scaling.errors import ArgumentParser

PROGRAM = "scaling-attention"
DPI = 110


def attention_maps(model, params, tokens_BxL, source_BxS=None) -> dict[str, np.ndarray]:
    """{stack name: float32 (layers, B, H, L, L)} self-attention weights of every layer."""

    return jax.device_get(_compiled_maps(model)(params, tokens_BxL, source_BxS))


@functools.cache
def _compiled_maps(model):


    net = model_lib.Transformer(model, return_weights=True)

    def maps(params, tokens_BxL, source_BxS):
        _, extras = net.apply({"params": params}, tokens_BxL, encoder_tokens_BxS=source_BxS)
        return extras["attention_weights"]

    return jax.jit(maps)


# What drawing holds beside the weights, per weight of a panel (measured with matplotlib 3.11,
# Agg, by peak RSS at L = 1024 to 4096): each panel's image keeps a float32 copy of its weights,
# and drawing a panel shrunk to the figure converts its whole (L, L) array to RGBA through
# float64 colormap lookups first (about 66 bytes per weight at its peak, freed after the panel).
IMAGE_COPY_BYTES = 4
RGBA_DRAW_BYTES = 64


def weights_bytes(model, num_tokens: int, num_source_tokens: int | None) -> int:
    """Bytes of the float32 self-attention weights `attention_maps` returns: every layer's
    (heads, L, L), the encoder's (heads, S, S) too for an encoder–decoder."""
    squares = model.num_layers * num_tokens**2
    if model.layout == "encoder_decoder":
        squares += model.num_encoder_layers * (num_source_tokens or 0) ** 2
    return 4 * model.num_heads * squares


def memory_bytes(model, num_tokens: int, num_source_tokens: int | None, stack: str,
                 one_head: bool) -> tuple[int, int]:
    """(device bytes, host bytes): lower bounds on what computing the weights holds on the device
    (all of them, and one layer's float32 scores in flight beside them) and what drawing them
    holds on the host (their copy there, each panel's image of its weights, and one panel's RGBA
    conversion). On a CPU, where both are one memory, the weights are held twice while they are
    copied from the device's buffers (measured peak RSS: 8 bytes per weight plus 4 per score of a
    layer)."""
    weights = weights_bytes(model, num_tokens, num_source_tokens)
    longest = max(num_tokens, num_source_tokens or 0)
    device = weights + 4 * model.num_heads * longest**2
    shown = (num_source_tokens or 0) if stack == "encoder" and model.layout == "encoder_decoder" \
        else num_tokens
    layers = model.num_encoder_layers if stack == "encoder" and model.layout == "encoder_decoder" \
        else model.num_layers
    panels = 1 if one_head else layers * model.num_heads
    host = weights + (IMAGE_COPY_BYTES * panels + RGBA_DRAW_BYTES) * shown**2
    return device, host


def memory_limits(model, num_tokens: int, num_source_tokens: int | None, stack: str,
                  one_head: bool) -> list[tuple[int, int, str]]:
    """[(bytes needed, bytes available, where)] for each memory the request must fit: one
    CPU memory for both steps (the larger of computing, with its copy to the host, and drawing),
    or an accelerator's memory for computing and the host's for drawing."""
    device, host = memory_bytes(model, num_tokens, num_source_tokens, stack, one_head)
    if jax.local_devices()[0].platform == "cpu":
        needed = max(device + weights_bytes(model, num_tokens, num_source_tokens), host)
        return [(needed, hardware.host_available_bytes(), "this machine has available")]
    return [(device, hardware.device_available_bytes(), "the device has free"),
            (host, hardware.host_available_bytes(), "this machine has available")]


def check_memory(model, num_tokens: int, num_source_tokens: int | None, stack: str,
                 one_head: bool) -> None:
    """RunError, before anything is compiled, when the weights and their figure would not fit
    the memory available (`memory_limits`); it names the shortest limit and how long a --text
    would fit."""
    for needed, available, where in memory_limits(model, num_tokens, num_source_tokens, stack,
                                                  one_head):
        if needed <= available:
            continue

        def fits(count: int) -> bool:
            return all(need <= free for need, free, _ in
                       memory_limits(model, count, num_source_tokens, stack, one_head))

        low, high = 0, num_tokens  # fits(low) (0: none), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        shorter = (f"pass a shorter --text (at most about {low - 1:,} tokens of text fit)"
                   if low > 1 else "pass a shorter --source" if num_source_tokens
                   else "pass a shorter --text")
        drawn = "one head's panel" if one_head else "each panel"
        raise trained.RunError(
            f"--text is {num_tokens:,} tokens (with the start token)"
            + (f" and --source {num_source_tokens:,}" if num_source_tokens is not None else "")
            + f": computing and drawing their attention weights (every layer's float32 L × L "
            f"weights per head, and matplotlib's image of {drawn}) hold at least "
            f"{needed / 1e9:,.1f} GB, more than the {available / 1e9:,.1f} GB {where}; {shorter}")


def token_labels(tokenizer, token_ids, special) -> list[str]:
    """Readable labels: `<eod>`, the objective's `special` tokens by name (`<bos>`), each
    token's text with newlines and tabs made visible, and a token that is part of a character
    (one byte of a multi-byte UTF-8 one, which decodes alone to U+FFFD) by its byte, `<0xC3>`."""
    labels = []
    for token in token_ids:
        if int(token) == tokenizer.eod_id:
            labels.append("<eod>")
            continue
        if int(token) >= tokenizer.vocab_size:
            labels.append(trained.special_name(int(token), special))
            continue
        text = tokenizer.decode([int(token)])
        if "\ufffd" in text:  # a byte token, or SentencePiece's byte-fallback piece: `<0xC3>`
            processor = getattr(tokenizer, "processor", None)
            text = (processor.id_to_piece(int(token)) if processor is not None
                    else f"<0x{int(token):02X}>")
        labels.append(text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "\u2423") or "?")
    return labels


def draw_grid(weights_NxHxLxL: np.ndarray, title: str, out: pathlib.Path) -> None:
    """One panel per (layer, head): rows are layers, columns heads; one colour bar for all."""

    matplotlib.use("Agg")

    layers, heads = weights_NxHxLxL.shape[:2]
    # At least wide enough for a title of two lines and the colour bar beside one panel.
    width = max(1.9 * heads + 1.4, 5.0)
    figure, axes = plt.subplots(layers, heads, figsize=(width, 1.9 * layers + 1.0),
                                squeeze=False, layout="constrained")
    for layer in range(layers):
        for head in range(heads):
            axis = axes[layer, head]
            image = axis.imshow(weights_NxHxLxL[layer, head], cmap="viridis", vmin=0.0, vmax=1.0,
                                interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if layer == 0:
                axis.set_title(f"head {head}", fontsize=9)
            if head == 0:
                axis.set_ylabel(f"layer {layer}", fontsize=9)
    figure.colorbar(image, ax=axes, shrink=min(1.0, 0.9 / layers + 0.1), label="attention weight")
    figure.suptitle("\n".join(textwrap.wrap(title, width=int(width * 11))), fontsize=10)
    files.save_figure(figure, out, DPI)


def draw_head(weights_LxL: np.ndarray, labels: list[str], title: str, out: pathlib.Path) -> None:
    """One head's weights with the tokens on both axes (queries down, keys across)."""

    matplotlib.use("Agg")

    size = min(max(4.0, 0.22 * len(labels) + 1.5), 30.0)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(weights_LxL, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7, family="monospace")
    axis.set_yticks(range(len(labels)), labels, fontsize=7, family="monospace")
    axis.set_xlabel("key")
    axis.set_ylabel("query")
    axis.set_title("\n".join(textwrap.wrap(title, width=int(size * 11))), fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    files.save_figure(figure, out, DPI)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a scaling-train workdir with a checkpoint")
    parser.add_argument("--text", required=True,
                        help="the text whose attention to show; the names of the run's special "
                             "tokens in it (<mask>, <sentinel_0>, ...) are those tokens")
    parser.add_argument("--out", required=True, help="the figure (.png, .pdf or .svg)")
    parser.add_argument("--layer", type=int, default=None, help="with --head: show one head")
    parser.add_argument("--head", type=int, default=None, help="with --layer: show one head")
    parser.add_argument("--source", default=None, help="encoder–decoder runs: the encoder's text")
    parser.add_argument("--stack", choices=("decoder", "encoder"), default=None,
                        help="encoder–decoder runs: which stack's self-attention (default decoder)")
    parser.add_argument("--single-device", action="store_true",
                        help="run on one device instead of the run's mesh")
    return parser.parse_args(argv)


def check_request(args, model, num_tokens: int, num_source_tokens: int | None) -> str:
    """The stack to show; RunError for a request the run cannot serve."""
    if (args.layer is None) != (args.head is None):
        raise trained.RunError("--layer and --head go together (one head), or neither (the grid)")
    out = pathlib.Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise trained.RunError(f"--out {args.out}: must end in .png, .pdf or .svg")
    # Here, before the checkpoint is restored and the model run.
    if out.parent.exists() and not out.parent.is_dir():
        raise trained.RunError(f"--out {args.out}: its folder {out.parent} is a file")
    for path in (out, out.with_suffix(".npy")):  # the figure and the array beside it
        if path.is_dir():
            raise trained.RunError(f"--out {args.out}: {path} is a folder; name a file")
    if model.layout == "encoder_decoder" and num_source_tokens is None:
        raise trained.RunError("the run is an encoder–decoder: pass --source TEXT for its encoder")
    if model.layout != "encoder_decoder" and (args.source is not None or args.stack is not None):
        raise trained.RunError("--source and --stack are for encoder–decoder runs")
    stack = args.stack or ("encoder" if model.layout == "encoder" else "decoder")
    layers = model.num_encoder_layers if (stack == "encoder" and model.layout == "encoder_decoder") \
        else model.num_layers
    if args.layer is not None and not 0 <= args.layer < layers:
        raise trained.RunError(f"--layer {args.layer}: the {stack} has layers 0..{layers - 1}")
    if args.head is not None and not 0 <= args.head < model.num_heads:
        raise trained.RunError(f"--head {args.head}: the run has heads 0..{model.num_heads - 1}")
    check_memory(model, num_tokens, num_source_tokens, stack, one_head=args.layer is not None)
    if model.position == "learned":
        # The decoder reads a start token before the text; the encoder, the source alone.
        for what, count in (("--text", num_tokens), ("--source", num_source_tokens)):
            if count is not None and count > model.max_seq_len:
                start = " (with the start token)" if what == "--text" else ""
                raise trained.RunError(
                    f"{what} is {count} tokens{start}: the run's "
                    f"learned positions allow at most {model.max_seq_len} (model.max_seq_len)")
    try:  # last: a request the checks above refuse leaves no folder behind
        files.check_writable_folder(out.parent)
    except OSError as error:
        raise trained.RunError(f"--out {args.out}: its folder cannot be written "
                               f"({error.strerror})") from None
    return stack


def run(args: argparse.Namespace) -> tuple[pathlib.Path, pathlib.Path]:
    """Draw the figure and save the array; returns their paths."""
    for flag in ("--text", "--source"):
        trained.check_text(flag, getattr(args, flag[2:]))
    if not args.text:  # the map of the start token alone, attending to itself
        raise trained.RunError("--text '': a text to read (its tokens' attention is drawn)")
    summary = trained.read_summary(args.workdir)  # (an empty one is no folder: said so)
    workdir = pathlib.Path(args.workdir)
    trained.check_checkpoint(workdir, summary)
    model = trained.run_model(summary)
    config = trained.run_config(summary)
    tokenizer = trained.tokenizer_of(config, summary)
    special = trained.special_tokens(config, tokenizer)
    # The names of the run's special tokens (`<sentinel_0>`, `<mask>`) read as those tokens.
    token_ids = ([trained.start_token(config, tokenizer, model.layout)]
                 + trained.encode_text("--text", args.text, tokenizer, special))
    source_ids = (None if args.source is None
                  else trained.encode_text("--source", args.source, tokenizer, special)
                  or [tokenizer.eod_id])
    stack = check_request(args, model, len(token_ids),
                          None if source_ids is None else len(source_ids))
    restored = trained.load(workdir, single_device=args.single_device, batches=False)
    # Past check_request's lower bound, the weights can still run out of memory.
    with trained.out_of_memory_is("the attention weights ran out of device memory; pass fewer "
                                  "tokens"), restored.context():
        maps = attention_maps(restored.model, restored.params, np.asarray([token_ids], np.int32),
                              None if source_ids is None else np.asarray([source_ids], np.int32))
    weights_NxHxLxL = np.asarray(maps[stack][:, 0], np.float32)
    labels = token_labels(tokenizer, source_ids if stack == "encoder" and source_ids else token_ids,
                          special)
    out = pathlib.Path(args.out)
    interrupts.check()  # a Ctrl-C taken by no KeyboardInterrupt writes no figure
    name = summary.get("name") or workdir.name
    array_path = out.with_suffix(".npy")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # The figure and its array replace an earlier pair together, once both are written.
        with files.staged_outputs(out.parent, (out.name, array_path.name)) as stage:
            if args.layer is None:
                shown = weights_NxHxLxL
                draw_grid(shown, f"{name} (step {restored.step}): {stack} self-attention, "
                                 f"{len(labels)} tokens; rows: queries, columns: keys",
                          stage / out.name)
            else:
                shown = weights_NxHxLxL[args.layer, args.head]
                draw_head(shown, labels, f"{name} (step {restored.step}): {stack} layer "
                                         f"{args.layer}, head {args.head}", stage / out.name)
            with files.atomic_output(stage / array_path.name) as handle:
                np.save(handle, shown)
            interrupts.check()
    except OSError as error:  # a full disk, a folder it may not write in
        raise trained.RunError(f"--out {args.out}: cannot be written "
                               f"({error.strerror or error})") from None
    return out, array_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scripts.quiet_logging()
    try:
        figure, array = run(args)
    except trained.RunError as error:
        return trained.fail(PROGRAM, error)
    except KeyboardInterrupt:
        return trained.interrupted(PROGRAM)
    print(f"wrote {figure} and {array}", flush=True)
    return 0


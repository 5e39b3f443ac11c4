"""The attention-weights path against the training path, the weights' properties, and the
`scaling-attention` command."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saved_runs import save_initialized_run, tiny_config
from scaling import attention_maps
from scaling import data as data_lib
from scaling import model as model_lib
from scaling.config import ModelConfig


def tiny_model(**fields) -> ModelConfig:
    base = dict(num_layers=2, d_model=32, num_heads=4, num_kv_heads=4, head_dim=8, d_ff=64,
                vocab_size=50, max_seq_len=200)
    base.update(fields)
    return ModelConfig(**base)


CASES = {
    # Longer than the causal query block (128): the training path runs block by block.
    "blocked-causal": (dict(), 160),
    "sliding": (dict(attention="sliding", window=8), 40),
    "sliding-alibi-gqa": (dict(attention="sliding", window=6, position="alibi", num_kv_heads=2), 30),
    "learned-document-mask": (dict(position="learned", document_mask=True), 24),
    "encoder-sliding": (dict(layout="encoder", attention="sliding", window=5), 23),
}


@functools.cache
def weights_and_logits(model, length, seed=0):
    tokens = jax.random.randint(jax.random.key(seed), (2, length), 0, model.vocab_size)
    segments = jnp.where(jnp.arange(length) < length // 2, 1, 2)[None].repeat(2, 0)
    params = model_lib.Transformer(model).init(jax.random.key(1), tokens)["params"]
    training = model_lib.Transformer(model).apply({"params": params}, tokens,
                                                  segment_ids_BxL=segments)
    explicit, extras = model_lib.Transformer(model, return_weights=True).apply(
        {"params": params}, tokens, segment_ids_BxL=segments)
    return training, explicit, extras["attention_weights"], segments


@pytest.mark.parametrize("case", CASES)
def test_the_weights_path_gives_the_training_path_outputs(case):
    fields, length = CASES[case]
    model = tiny_model(**fields)
    training, explicit, _, _ = weights_and_logits(model, length)
    np.testing.assert_allclose(explicit, training, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_rows_sum_to_one_and_masked_keys_get_zero(case):
    fields, length = CASES[case]
    model = tiny_model(**fields)
    _, _, weights, segments = weights_and_logits(model, length)
    (stack, layers_BxHxLxL), = weights.items()
    assert layers_BxHxLxL.shape == (model.num_layers, 2, model.num_heads, length, length)
    np.testing.assert_allclose(np.sum(layers_BxHxLxL, axis=-1), 1.0, atol=1e-5)
    query, key = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = np.ones((length, length), bool)
    if model.layout == "decoder":
        allowed &= key <= query
    if model.attention == "sliding":
        allowed &= np.abs(query - key) < model.window
    if model.document_mask:
        segment = np.asarray(segments[0])
        allowed &= segment[:, None] == segment[None, :]
    assert np.all(np.asarray(layers_BxHxLxL)[..., ~allowed] == 0.0)
    assert np.all(np.asarray(layers_BxHxLxL)[..., allowed] > 0.0)


def test_the_command_writes_a_grid_and_one_head_with_their_arrays(tmp_path):
    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(num_layers=2))
    text = "def f(x):\n    return x"
    assert attention_maps.main(["--workdir", str(workdir), "--text", text,
                                "--out", str(tmp_path / "grid.png")]) == 0
    grid = np.load(tmp_path / "grid.npy")
    assert grid.shape == (2, 4, len(text) + 1, len(text) + 1)  # <eod> + one token per byte
    np.testing.assert_allclose(grid.sum(-1), 1.0, atol=1e-5)
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert attention_maps.main(["--workdir", str(workdir), "--text", text, "--layer", "1",
                                "--head", "3", "--out", str(tmp_path / "head.png")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "head.npy"), grid[1, 3])


def test_a_figure_stopped_while_written_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "head.png"
    weights = np.full((3, 3), 1 / 3, dtype=np.float32)
    attention_maps.draw_head(weights, ["a", "b", "c"], "earlier", out)
    earlier = out.read_bytes()

    def killed_mid_write(figure, target, **_):
        if not hasattr(target, "write"):
            target = open(target, "wb")
        target.write(earlier[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        attention_maps.draw_head(weights, ["x", "y", "z"], "later", out)
    assert out.read_bytes() == earlier
    assert [path.name for path in tmp_path.iterdir()] == ["head.png"]


@pytest.mark.parametrize("stop", ["array", "figure"])
def test_a_command_stopped_while_writing_leaves_the_earlier_figure_and_array_a_pair(
        tmp_path, monkeypatch, stop):
    # The new figure was saved before the array: stopped in between, the figure showed the new
    # text beside the earlier text's array.
    from matplotlib.figure import Figure

    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(num_layers=2))
    out = tmp_path / "maps" / "grid.png"
    command = ["--workdir", str(workdir), "--out", str(out), "--text"]
    assert attention_maps.main(command + ["def f(x):"]) == 0
    earlier = {path.name: path.read_bytes() for path in out.parent.iterdir()}
    assert sorted(earlier) == ["grid.npy", "grid.png"]

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    if stop == "array":
        monkeypatch.setattr(np, "save", stopped)
    else:
        monkeypatch.setattr(Figure, "savefig", stopped)
    assert attention_maps.main(command + ["class Longer:\n    pass"]) == 130
    assert {path.name: path.read_bytes() for path in out.parent.iterdir()} == earlier
    monkeypatch.undo()
    assert attention_maps.main(command + ["class Longer:\n    pass"]) == 0
    assert np.load(out.with_suffix(".npy")).shape[-1] == len("class Longer:\n    pass") + 1
    assert sorted(path.name for path in out.parent.iterdir()) == ["grid.npy", "grid.png"]


@pytest.mark.parametrize("layers, heads", [(2, 1), (2, 2), (4, 8)])
def test_the_grids_title_and_colour_bar_are_inside_the_figure(tmp_path, monkeypatch, layers,
                                                             heads):
    # A demo run's one head gave a 2.5-inch figure whose title lost its run name, its step and
    # "rows: queries, columns: keys"; nothing gave the colours' scale.
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, target, **_: saved.append(figure))
    title = ("demo-d32-L2-D8e6 (step 7812): decoder self-attention, 45 tokens; rows: queries, "
             "columns: keys")
    weights = np.full((layers, heads, 5, 5), 0.2, dtype=np.float32)
    attention_maps.draw_grid(weights, title, tmp_path / "grid.png")
    figure, = saved
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)  # closed after saving: drawn again here to be measured
    canvas.draw()
    renderer = canvas.get_renderer()
    inside = figure.bbox
    suptitle = figure.get_suptitle()
    assert " ".join(suptitle.split()) == title
    texts = [figure._suptitle] + [text for axis in figure.axes for text in
                                  (axis.title, axis.yaxis.label)]
    for text in texts:
        box = text.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and box.y1 <= inside.y1, text.get_text()
    colour_bars = [axis for axis in figure.axes if axis.get_ylabel() == "attention weight"]
    assert len(colour_bars) == 1 and len(figure.axes) == layers * heads + 1


def test_bad_requests_are_one_line_and_exit_2(tmp_path, capsys):
    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(position="learned", max_seq_len=16))
    out = str(tmp_path / "a.png")
    cases = [
        (["--text", "x" * 16, "--out", out], "learned positions allow at most 16"),
        (["--text", "x", "--out", out, "--layer", "0"], "--layer and --head go together"),
        # A command line's bytes that are not UTF-8 come to Python as lone surrogates.
        (["--text", "ab\udcff", "--out", out], "--text: not UTF-8 text (byte 0xff at character 2)"),
        (["--text", "x", "--out", out, "--layer", "1", "--head", "0"], "layers 0..0"),
        (["--text", "x", "--out", str(tmp_path / "a.jpg")], "must end in .png"),
        # A FileExistsError traceback, after the model had run, before.
        (["--text", "x", "--out", str(tmp_path / "a.png" / "b.png")],
         f"--out {tmp_path / 'a.png' / 'b.png'}: its folder {tmp_path / 'a.png'} is a file"),
        (["--text", "x", "--out", str(tmp_path / "a.png" / "c" / "b.png")],
         f"--out {tmp_path / 'a.png' / 'c' / 'b.png'}: its folder cannot be written (Not a "
         "directory)"),
        # A folder it cannot write, found before the checkpoint is read and the model run.
        # /proc exists: it said "(No such file or directory)".
        (["--text", "x", "--out", "/proc/a.png"], "--out /proc/a.png: its folder cannot be "
                                                  "written (no file can be created in it: "),
        # Refused after --out was read: no folder is made for the figure it will not draw.
        (["--text", "x", "--out", str(tmp_path / "new" / "x.png"), "--layer", "9", "--head", "0"],
         "--layer 9: the decoder has layers 0..0"),
        # An IsADirectoryError traceback, after the model had run, before.
        (["--text", "x", "--out", str(tmp_path / "folder.png")],
         f"--out {tmp_path / 'folder.png'}: {tmp_path / 'folder.png'} is a folder; name a file"),
        (["--text", "x", "--out", str(tmp_path / "array.svg")],
         f"--out {tmp_path / 'array.svg'}: {tmp_path / 'array.npy'} is a folder; name a file"),
        # The start token's map alone, written as if of a text.
        (["--text", "", "--out", str(tmp_path / "empty.png")],
         "--text '': a text to read (its tokens' attention is drawn)"),
    ]
    (tmp_path / "a.png").write_text("")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "array.npy").mkdir()
    for arguments, message in cases:
        assert attention_maps.main(["--workdir", str(workdir), *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("scaling-attention: error:") and "\n" not in error
        assert message in error
    assert not (tmp_path / "array.svg").exists()  # refused before anything is written
    assert not (tmp_path / "new").exists()
    # A workdir without a checkpoint is refused before the figure's folder is made.
    shutil.copytree(workdir, tmp_path / "empty")
    shutil.rmtree(tmp_path / "empty" / "checkpoints")
    assert attention_maps.main(["--workdir", str(tmp_path / "empty"), "--text", "x",
                                "--out", str(tmp_path / "new" / "x.png")]) == 2
    assert "no checkpoint" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A write that fails once the model has run (a full disk) is one line, not an OSError
    traceback, and leaves no array behind."""
    import errno

    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config())

    def disk_full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    out = tmp_path / "figure.png"
    assert attention_maps.main(["--workdir", str(workdir), "--text", "x", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error == (f"scaling-attention: error: --out {out}: cannot be written (No space left on "
                     "device)\n")
    assert not (tmp_path / "figure.npy").exists()


def test_a_text_whose_weights_exceed_the_devices_memory_is_one_line(tmp_path, capsys,
                                                                   monkeypatch):
    """Refused before anything is compiled; a text that runs out of memory while its weights
    are computed is one line too."""
    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(position="rope"))
    monkeypatch.setattr(attention_maps.hardware, "host_available_bytes", lambda: 10**8)
    arguments = ["--workdir", str(workdir), "--out", str(tmp_path / "a.png")]
    # 4 heads × 6,000² float32 weights in its one layer, its 4 panels' copies, one RGBA image:
    # 96 bytes per weight of a panel.
    assert attention_maps.main([*arguments, "--text", "x" * 5999]) == 2
    assert capsys.readouterr().err == (
        "scaling-attention: error: --text is 6,000 tokens (with the start token): computing and "
        "drawing their attention weights (every layer's float32 L × L weights per head, and "
        "matplotlib's image of each panel) hold at least 3.5 GB, more than the 0.1 GB this "
        "machine has available; pass a shorter --text (at most about 1,019 tokens of text "
        "fit)\n")

    def exhausted(*arguments):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes.")

    monkeypatch.setattr(attention_maps, "attention_maps", exhausted)
    assert attention_maps.main([*arguments, "--text", "x"]) == 2
    assert capsys.readouterr().err == ("scaling-attention: error: the attention weights ran out "
                                       "of device memory; pass fewer tokens\n")
    assert not (tmp_path / "a.png").exists()


def test_the_memory_bound_counts_what_computing_and_drawing_hold(monkeypatch):
    """The bound against which a text is refused: the weights of every layer and head, twice
    on a CPU (the device's buffers and their host copy) with one layer's scores; then the
    figure's copy of each panel and one panel's RGBA conversion (measured peak RSS of the run
    below: 1.32 GB over the process at L = 4096, 0.36 GB at 2048). It was the weights alone,
    4 bytes each: a 25,706-token text of a 2-layer, 1-head run was estimated at 5.3 GB against a
    25 GB machine, and killed by the kernel past 24 GB."""
    model = tiny_model(num_layers=2, num_heads=1, num_kv_heads=1, head_dim=32, max_seq_len=128)
    device, host = attention_maps.memory_bytes(model, 4096, None, "decoder", one_head=False)
    assert device == (2 * 4 + 4) * 4096**2  # the weights, one layer's scores
    assert host == (2 * 4 + 2 * 4 + 64) * 4096**2  # the weights, 2 panels' copies, one RGBA
    (needed, _, where), = attention_maps.memory_limits(model, 4096, None, "decoder", False)
    assert needed == max(device + 8 * 4096**2, host) and where == "this machine has available"
    # What is compared is the memory still available, not the machine's total.
    monkeypatch.setattr(attention_maps.hardware, "host_available_bytes", lambda: 24 * 10**9)
    monkeypatch.setattr(attention_maps.hardware, "device_memory_bytes", lambda: 25 * 10**9)
    with pytest.raises(attention_maps.trained.RunError, match=(
            r"^--text is 25,706 tokens \(with the start token\): .* hold at least 52.9 GB, "
            r"more than the 24.0 GB this machine has available; pass a shorter --text \(at most "
            r"about 17,3\d\d tokens of text fit\)$")):
        attention_maps.check_memory(model, 25706, None, "decoder", one_head=False)
    # One head drawn: its one panel, beside every layer's weights.
    _, host = attention_maps.memory_bytes(model, 4096, None, "decoder", one_head=True)
    assert host == (2 * 4 + 4 + 64) * 4096**2


def test_a_source_too_long_for_learned_positions_counts_its_own_tokens(tmp_path, capsys):
    """The encoder reads the source's tokens alone, with no start token (as sampling does)."""
    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(layout="encoder_decoder", position="learned",
                                              max_seq_len=16))
    assert attention_maps.main(["--workdir", str(workdir), "--text", "x", "--source", "y" * 17,
                                "--out", str(tmp_path / "a.png")]) == 2
    assert capsys.readouterr().err == (
        "scaling-attention: error: --source is 17 tokens: the run's learned positions allow at "
        "most 16 (model.max_seq_len)\n")


def test_an_encoder_decoders_decoder_starts_from_the_training_bos(tmp_path):
    """The decoder reads the text after the token training started every decoder with (the first
    decoder input of a training batch), not end-of-document."""
    config = tiny_config(layout="encoder_decoder")
    workdir = tmp_path / "run"
    model, params = save_initialized_run(workdir, config)
    with data_lib.make_loader(config.data, config.train.batch_size, config.seed,
                              train_cfg=config.train) as loader:
        starts = set(loader.batch(0)["inputs"][:, 0].tolist())
    assert len(starts) == 1 and starts != {256}
    text, source = "def f", "import os"
    assert attention_maps.main(["--workdir", str(workdir), "--text", text, "--source", source,
                                "--out", str(tmp_path / "grid.png")]) == 0
    expected = attention_maps.attention_maps(model, params,
                                             np.asarray([[*starts, *text.encode()]], np.int32),
                                             np.asarray([list(source.encode())], np.int32))
    np.testing.assert_allclose(np.load(tmp_path / "grid.npy"), expected["decoder"][:, 0],
                               atol=1e-6)


def test_special_token_names_in_the_text_and_source_read_as_those_tokens(tmp_path, capsys):
    """A span-corruption run: `<sentinel_0>` in --source and --text is the sentinel its training
    batches hold (each target starts with it), not 12 bytes; a sentinel past the run's two is
    refused before the model runs."""
    config = tiny_config(layout="encoder_decoder")
    workdir = tmp_path / "run"
    model, params = save_initialized_run(workdir, config)
    with data_lib.make_loader(config.data, config.train.batch_size, config.seed,
                              train_cfg=config.train) as loader:
        batch = loader.batch(0)
    bos, sentinel = int(batch["inputs"][0, 0]), int(batch["targets"][0, 0])
    text, source = "<sentinel_0>x", "import<sentinel_0> os"
    expected = attention_maps.attention_maps(
        model, params, np.asarray([[bos, sentinel, *b"x"]], np.int32),
        np.asarray([[*b"import", sentinel, *b" os"]], np.int32))
    for stack in ("encoder", "decoder"):
        out = tmp_path / f"{stack}.png"
        assert attention_maps.main(["--workdir", str(workdir), "--text", text, "--source", source,
                                    "--stack", stack, "--out", str(out)]) == 0
        np.testing.assert_allclose(np.load(out.with_suffix(".npy")), expected[stack][:, 0],
                                   atol=1e-6)
    capsys.readouterr()
    assert attention_maps.main(["--workdir", str(workdir), "--text", "x", "--source",
                                "a<sentinel_2>", "--out", str(tmp_path / "no.png")]) == 2
    assert capsys.readouterr().err == (
        "scaling-attention: error: --source: <sentinel_2> at character 1 is not a special token "
        "of this run; its special tokens are <pad>, <mask>, <bos>, <sentinel_0> to "
        "<sentinel_1>\n")
    assert not (tmp_path / "no.npy").exists()


def test_a_token_that_is_part_of_a_character_is_labelled_by_its_byte():
    # "é" is 2 bytes in UTF-8, each of which decoded alone to the same "�".
    from scaling.attention_maps import token_labels
    from scaling.data import tokenizers

    byte = tokenizers.ByteTokenizer()
    assert token_labels(byte, byte.encode("é\n a") + [byte.eod_id], {}) == [
        "<0xC3>", "<0xA9>", "\\n", "\u2423", "a", "<eod>"]
    # A SentencePiece model's byte-fallback pieces name their bytes the same way.
    model = tokenizers.train_sentencepiece([b"abc abd abe " * 200], vocab_size=270)
    spm = tokenizers.SentencePieceTokenizer(model)
    ids = spm.encode("ab€")
    assert "".join(spm.processor.id_to_piece(i) for i in ids).endswith("<0xE2><0x82><0xAC>")
    assert token_labels(spm, ids, {})[-3:] == ["<0xE2>", "<0x82>", "<0xAC>"]

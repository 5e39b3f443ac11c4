"""`scaling-sample` on saved checkpoints: decoder-only and encoder–decoder, reproducibility, and
one-line errors for bad input."""

import importlib
import json as json_module
import pathlib
import signal
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece

from saved_runs import save_initialized_run, tiny_config
from scaling import data as data_lib
from scaling import decoding
from scaling import model as model_lib
from scaling import sample, trained
from scaling.data import objectives, tokenizers


def run_sample(capsys, *arguments) -> tuple[int, str, str]:
    code = sample.main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def greedy_reference(model, params, prompt_ids, steps, source_ids=None):
    """Greedy continuation by a full forward pass over the whole sequence at every step (in a
    buffer of the final length less the last token, which is never read: under causal attention,
    the positions after t do not change the logits at t)."""
    net = model_lib.Transformer(model)
    forward = jax.jit(lambda tokens, source: net.apply({"params": params}, tokens,
                                                       encoder_tokens_BxS=source))
    sequence = np.zeros(len(prompt_ids) + steps, np.int32)
    sequence[:len(prompt_ids)] = prompt_ids
    source = None if source_ids is None else jnp.asarray([source_ids], jnp.int32)
    for position in range(len(prompt_ids), len(sequence)):
        logits = forward(jnp.asarray(sequence[None, :-1]), source)
        sequence[position] = int(jnp.argmax(logits[0, position - 1]))
    return sequence[len(prompt_ids):].tolist()


def as_text(tokens):
    """The byte tokenizer's text of `tokens`, cut at the first end-of-document (id 256); the
    ids after it (a span-corruption run's PAD, MASK, BOS and sentinels) by name."""
    tokens = list(tokens)
    if 256 in tokens:
        tokens = tokens[:tokens.index(256)]
    names = {257: "<pad>", 258: "<mask>", 259: "<bos>"}
    text, run = "", b""
    for token in tokens:
        if token < 256:
            run += bytes([token])
            continue
        text += run.decode("utf-8", "replace") + names.get(token, f"<sentinel_{token - 260}>")
        run = b""
    return text + run.decode("utf-8", "replace")


def test_an_encoder_decoder_checkpoint_samples_from_a_source(tmp_path, capsys):
    workdir = tmp_path / "seq2seq"
    # A wide init: the start token then visibly changes what an untrained decoder writes.
    config = tiny_config(layout="encoder_decoder", num_layers=2, num_encoder_layers=1,
                         init_std=0.5)
    model, params = save_initialized_run(workdir, config, seed=4)
    code, out, err = run_sample(capsys, "--workdir", str(workdir), "--source", "translate me",
                                "--prompt", "ab", "--max-new-tokens", "6", "--temperature", "0")
    assert code == 0, err
    # The decoder starts where training started it: the first decoder input of a training batch.
    with data_lib.make_loader(config.data, config.train.batch_size, config.seed,
                              train_cfg=config.train) as loader:
        starts = set(loader.batch(0)["inputs"][:, 0].tolist())
    assert len(starts) == 1 and starts != {256}
    expected = greedy_reference(model, params, [*starts] + list(b"ab"), 6,
                                source_ids=list(b"translate me"))
    assert out == "ab" + as_text(expected) + "\n"
    code, _, err = run_sample(capsys, "--workdir", str(workdir), "--prompt", "ab")
    assert code == 2 and "pass --source" in err


def test_decoder_samples_are_reproducible_and_greedy_matches_full_passes(tmp_path, capsys):
    workdir = tmp_path / "run"
    model, params = save_initialized_run(workdir, tiny_config(position="alibi"), seed=5)
    arguments = ["--workdir", str(workdir), "--prompt", "def", "--max-new-tokens", "8",
                 "--num-samples", "2", "--temperature", "1.0", "--top-k", "50", "--seed", "3"]
    first, again = run_sample(capsys, *arguments), run_sample(capsys, *arguments)
    assert first[0] == 0 and first == again
    assert first[1].count(sample.SEPARATOR) == 1 and first[1].startswith("def")
    code, out, _ = run_sample(capsys, "--workdir", str(workdir), "--prompt", "def",
                              "--max-new-tokens", "8", "--temperature", "0")
    assert code == 0
    assert out == "def" + as_text(greedy_reference(model, params, [256] + list(b"def"), 8)) + "\n"


@pytest.fixture(scope="module")
def learned_positions_run(tmp_path_factory):
    """A saved run whose learned position table has 16 rows."""
    workdir = tmp_path_factory.mktemp("learned")
    save_initialized_run(workdir, tiny_config(position="learned", max_seq_len=16))
    return workdir


def test_learned_positions_sample_up_to_one_token_past_the_table(tmp_path, capsys):
    # The last new token is sampled from the logits at the position before it and never read, so
    # 13 prompt tokens (with the start token) and 4 new ones read 16 positions: the whole table.
    workdir = tmp_path / "learned"
    model, params = save_initialized_run(workdir, tiny_config(position="learned", max_seq_len=16))
    code, out, err = run_sample(capsys, "--workdir", str(workdir), "--prompt", "x" * 12,
                                "--max-new-tokens", "4", "--temperature", "0")
    assert code == 0, err
    assert out == "x" * 12 + as_text(greedy_reference(model, params, [256] + list(b"x" * 12), 4)) + "\n"


@pytest.mark.parametrize("arguments,message", [
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be an integer >= 1"),
    (["--temperature", "-1"], "--temperature -1.0: must be >= 0"),
    (["--top-p", "0"], "--top-p 0.0: must be in (0, 1]"),
    (["--top-k", "-2"], "--top-k -2: must be >= 0"),
    (["--prompt", "x" * 12, "--max-new-tokens", "5"], "the model reads 17 positions; the run's "
     "learned positions allow at most 16 (model.max_seq_len)"),
    (["--source", "abc"], "--source is for encoder–decoder runs"),
    (["--prompt-file", "/nonexistent/prompt.txt"], "cannot be read"),
    # An infinite temperature flattens every logit, --top-k's cut with them.
    (["--temperature", "inf"], "--temperature inf: must be >= 0 and at most 3.403e+38"),
    # Finite as a Python float, infinite in float32: noise, whatever --top-k said.
    (["--temperature", "1e39"], "--temperature 1e+39: must be >= 0 and at most 3.403e+38, "
                                "float32's largest number (0 is greedy)"),
    # JAX keys take 32 bits of a seed: 2**32 would sample as seed 0; 2**70 overflowed.
    (["--seed", str(2**32)], "--seed 4294967296: must be an integer from 0 to 4294967295"),
    (["--seed", str(2**70)], f"--seed {2**70}: must be an integer from 0 to 4294967295"),
    # A command line's bytes that are not UTF-8 come to Python as lone surrogates.
    (["--prompt", "ab\udcff"], "--prompt: not UTF-8 text (byte 0xff at character 2)"),
    (["--prompt", "ab", "--source", "\udcfe"], "--source: not UTF-8 text (byte 0xfe at character 0)"),
])
def test_bad_input_is_one_line_and_exit_2(learned_positions_run, capsys, arguments, message):
    code, out, err = run_sample(capsys, "--workdir", str(learned_positions_run), *arguments)
    assert code == 2 and out == ""
    assert err.startswith("scaling-sample: error: ") and err.count("\n") == 1
    assert message in err


def test_a_workdir_without_a_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "x")
    assert code == 2 and "no summary.json" in err and err.count("\n") == 1
    # A folder that does not exist is said as such ("no summary.json (not a scaling-train
    # workdir, ...)" before).
    code, _, err = run_sample(capsys, "--workdir", str(tmp_path / "missing"), "--prompt", "x")
    assert code == 2 and err == (f"scaling-sample: error: --workdir {tmp_path / 'missing'}: no "
                                 "such folder (a scaling-train workdir)\n")
    workdir = tmp_path / "started"
    save_initialized_run(workdir, tiny_config())
    for step in (workdir / "checkpoints").iterdir():
        if step.is_dir():
            import shutil

            shutil.rmtree(step)
    code, _, err = run_sample(capsys, "--workdir", str(workdir), "--prompt", "x")
    assert code == 2 and "no checkpoint in" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["sample", "evaluate", "attention_maps"])
def test_a_sweep_workdir_or_a_file_is_one_line_naming_what_to_pass(command, tmp_path, capsys):
    """A sweep's workdir names the runs under it; a file is not taken for a folder."""
    module = importlib.import_module(f"scaling.{command}")
    extra = ["--text", "x", "--out", str(tmp_path / "a.png")] if command == "attention_maps" else []
    (tmp_path / "sweep.json").write_text("{}")
    for name in ("demo-b", "demo-a"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text("{}")
    assert module.main(["--workdir", str(tmp_path), *extra]) == 2
    assert capsys.readouterr().err == (
        f"{module.PROGRAM}: error: --workdir {tmp_path}: a scaling-sweep workdir; pass one of its "
        f"runs, {tmp_path / 'runs'}/<name> (demo-a, demo-b)\n")
    assert module.main(["--workdir", str(tmp_path / "sweep.json"), *extra]) == 2
    assert capsys.readouterr().err == (
        f"{module.PROGRAM}: error: --workdir {tmp_path / 'sweep.json'}: a file, not a folder; "
        "pass a scaling-train workdir\n")
    # An unset shell variable read as this folder: "--workdir .: no summary.json ...".
    assert module.main(["--workdir", "", *extra]) == 2
    assert capsys.readouterr().err == (f"{module.PROGRAM}: error: --workdir='': empty; pass a "
                                       "scaling-train workdir\n")


@pytest.mark.parametrize("command, work", [("sample", "sample"), ("evaluate", "evaluate"),
                                           ("attention_maps", "run")])
def test_ctrl_c_in_a_command_reading_a_run_is_one_line_and_exit_130(command, work, capsys,
                                                                   monkeypatch):
    module = importlib.import_module(f"scaling.{command}")

    def interrupted(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, work, interrupted)
    arguments = ["--workdir", "w"] + (["--text", "x", "--out", "a.png"]
                                      if command == "attention_maps" else [])
    try:
        code = module.main(arguments)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a KeyboardInterrupt traceback")
    assert code == 130
    assert capsys.readouterr().err == f"{module.PROGRAM}: interrupted\n"


def test_ctrl_c_during_decoding_ends_it_after_the_call_under_way(tmp_path, capsys, monkeypatch):
    save_initialized_run(tmp_path, tiny_config())
    monkeypatch.setattr(decoding, "STEPS_PER_CALL", 4)
    compiled_steps, calls = decoding._compiled_steps, []

    def steps_interrupted_in_the_third_call(*settings):
        run_steps = compiled_steps(*settings)

        def call(*arguments):
            calls.append(arguments)
            tokens = run_steps(*arguments)
            if len(calls) == 3:  # SIGINT while the call runs is handled once it returns
                signal.raise_signal(signal.SIGINT)
            return tokens
        return call

    monkeypatch.setattr(decoding, "_compiled_steps", steps_interrupted_in_the_third_call)
    code, out, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "x",
                                "--max-new-tokens", "200", "--temperature", "0")
    assert (code, out, err) == (130, "", "scaling-sample: interrupted\n")
    assert len(calls) == 3  # of the 50 that 200 tokens take


def test_a_run_killed_before_its_summary_says_so(tmp_path, capsys):
    save_initialized_run(tmp_path, tiny_config())
    (tmp_path / "summary.json").unlink()  # as after a SIGKILL in a run's first session
    code, _, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "x")
    assert code == 2 and err.count("\n") == 1
    assert "no summary.json yet, though it holds checkpoints" in err
    assert "rerun its scaling-train command to resume" in err


def test_more_tokens_than_memory_or_int32_positions_hold_is_one_line(tmp_path, capsys,
                                                                     monkeypatch):
    """Under RoPE the cache holds the whole sequence: a request past the device's memory is
    refused before anything is compiled, and one that runs out of it while decoding says so."""
    save_initialized_run(tmp_path, tiny_config(position="rope"))
    monkeypatch.setattr(sample.hardware, "device_available_bytes", lambda: 2**30)
    for tokens, message in [
            (10**9, "--max-new-tokens 1000000000 with --num-samples 1: decoding holds at least "
                    "512.0 GB (its key/value cache), more than the 1.1 GB the device has free"),
            (2**31, "= 2147483650 tokens: positions are int32, at most 2147483647")]:
        code, out, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "x",
                                    "--max-new-tokens", str(tokens))
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.startswith("scaling-sample: error: ") and message in err

    def exhausted(*arguments, **keywords):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes.")

    monkeypatch.setattr(sample.decoding, "generate", exhausted)
    # The prompt is said too: a long one ran out of memory as "--max-new-tokens 5 with
    # --num-samples 1", blaming the two small numbers.
    code, _, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "abcdefgh",
                              "--max-new-tokens", "4")
    assert code == 2 and err == ("scaling-sample: error: a prompt of 9 tokens, --max-new-tokens 4 "
                                 "and --num-samples 1: decoding ran out of device memory; ask "
                                 "for a shorter prompt, or fewer tokens or samples\n")


@pytest.mark.slow
def test_sampling_on_the_runs_mesh_of_eight_devices_matches_one_device(tmp_path):
    from conftest import run_python

    workdir = tmp_path / "run"
    config = tiny_config(num_kv_heads=2)
    # Trained in batches of 4, which do not split over 8 devices: sampling runs none of them.
    config.train.batch_size = 4
    save_initialized_run(workdir, config, seed=2)
    code = (
        "import sys\n"
        "from scaling import sample\n"
        "common = ['--workdir', %r, '--prompt', 'import ', '--max-new-tokens', '10',"
        " '--num-samples', '3', '--seed', '1', '--top-p', '0.9']\n"
        "sys.exit(sample.main(common + sys.argv[1:]))\n" % str(workdir))
    mesh = run_python(code, devices=8)
    single = run_python(code.replace("sys.argv[1:]", "['--single-device']"), devices=8)
    assert mesh.stdout == single.stdout and mesh.stdout.startswith("import ")


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    """A SentencePiece model of 400 pieces (end-of-document among them) on two stdlib modules."""
    corpus = [pathlib.Path(module.__file__).read_bytes() for module in (json_module, textwrap)]
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    path.write_bytes(tokenizers.train_sentencepiece(iter(corpus), vocab_size=400))
    return path


def test_special_ids_are_named_for_both_tokenizers(spm_path):
    """An objective's special ids lie past the tokenizer's vocabulary: named, never decoded (a
    SentencePiece processor has no piece for them) nor dropped."""
    byte = tokenizers.ByteTokenizer()
    special = objectives.SpecialTokens(257, num_sentinels=3)
    tokens = [*b"ab", 259, 260, *b"cd", 262, 257, 258, *b"e", 256, 261]
    assert sample.decode_sample(byte, np.asarray(tokens), special) == \
        "ab<bos><sentinel_0>cd<sentinel_2><pad><mask>e"
    # A causal_lm run has no special tokens: an id past the tokenizer's is only unused.
    assert sample.decode_sample(byte, np.asarray([*b"ab", 259, *b"c"]), None) == "ab<unused_259>c"
    processor_model = spm_path.read_bytes()
    spm = tokenizers.SentencePieceTokenizer(processor_model)
    spm_special = objectives.SpecialTokens(spm.vocab_size, num_sentinels=2)
    first, second = spm.encode("def f(x):"), spm.encode(" return x")
    sentinel = spm_special.sentinel(1)
    ids = np.asarray([*first, sentinel, *second, spm_special.pad, spm.eod_id, *first])
    reference = sentencepiece.SentencePieceProcessor(model_proto=processor_model)
    assert sample.decode_sample(spm, ids, spm_special) == \
        reference.decode(first) + "<sentinel_1>" + reference.decode(second) + "<pad>"


def test_a_sentencepiece_encoder_decoder_run_samples_its_special_ids(spm_path, tmp_path, capsys):
    config = tiny_config(layout="encoder_decoder", vocab_size=400)
    config.data.tokenizer, config.data.spm_model = "sentencepiece", str(spm_path)
    workdir = tmp_path / "run"
    model, params = save_initialized_run(workdir, config, seed=1)
    code, out, err = run_sample(capsys, "--workdir", str(workdir), "--source", "import json",
                                "--max-new-tokens", "24", "--num-samples", "8", "--seed", "2")
    assert code == 0, err
    # Reference: the same draws, decoded by hand (400 PAD, 401 MASK, 402 BOS, 403+ sentinels).
    spm = tokenizers.SentencePieceTokenizer(spm_path.read_bytes())
    source = np.tile(np.asarray(spm.encode("import json"), np.int32), (8, 1))
    drawn = np.asarray(decoding.generate(
        model, params, np.full((8, 1), 402, np.int32), jax.random.key(2),
        decoding.SamplingSettings(max_new_tokens=24), source))
    reference = sentencepiece.SentencePieceProcessor(model_proto=spm_path.read_bytes())
    texts = []
    for row in drawn.tolist():
        row = row[:row.index(spm.eod_id)] if spm.eod_id in row else row
        text, run = "", []
        for token in row:
            if token < 400:
                run.append(token)
                continue
            text += reference.decode(run) + {400: "<pad>", 401: "<mask>", 402: "<bos>"}.get(
                token, f"<sentinel_{token - 403}>")
            run = []
        texts.append(text + reference.decode(run))
    assert any(token >= 400 for token in drawn.ravel().tolist())  # the case that crashed
    assert out == "\n".join(texts[:1] + [f"{sample.SEPARATOR}\n{text}" for text in texts[1:]]) + "\n"


# A span-corruption run of tiny_config: 32-token rows, round(0.15·32) = 5 dropped tokens in
# round(5/3) = 2 spans; after the 257 byte ids come PAD 257, MASK 258, BOS 259, then sentinels
# 260 and 261 (counted by hand from objectives.SpecialTokens' order).
SPAN_SENTINELS = (260, 261)


def test_special_token_names_in_command_line_text_read_as_those_tokens(spm_path):
    config = tiny_config(layout="encoder_decoder")
    # The sentinels counted by hand are the ones training writes.
    with data_lib.make_loader(config.data, config.train.batch_size, config.seed,
                              train_cfg=config.train) as loader:
        batch = loader.batch(0)
    assert set(batch["targets"][:, 0].tolist()) == {SPAN_SENTINELS[0]}  # a target starts with it
    assert set(batch["encoder_inputs"][batch["encoder_inputs"] > 256].tolist()) == \
        set(SPAN_SENTINELS)
    byte = trained.tokenizer_of(config)
    special = trained.special_tokens(config, byte)
    first, second = SPAN_SENTINELS
    assert trained.encode_text("--source", "a<sentinel_0>b<sentinel_1>", byte, special) == \
        [ord("a"), first, ord("b"), second]
    assert trained.encode_text("--source", "<sentinel_1><sentinel_0>", byte, special) == \
        [second, first]
    # Text naming no special token encodes exactly as before, near-misses included.
    for text in ("def f(a, b):", "", "<sentinel_>", "<sentinel_-1>", "<Sentinel_0>", "<eod>",
                 "<sentinel 0>", "a < b > c", "é<"):
        assert trained.encode_text("--source", text, byte, special) == list(text.encode())
    # Round trip: each name the tools print, typed back, is its token, and prints as typed.
    for token in range(257, 262):
        name = trained.special_name(token, special)
        assert trained.encode_text("--prompt", name, byte, special) == [token]
        assert sample.decode_sample(byte, np.asarray([token]), special) == name
    assert [trained.special_name(t, special) for t in range(257, 262)] == \
        ["<pad>", "<mask>", "<bos>", "<sentinel_0>", "<sentinel_1>"]
    # SentencePiece: the text between names is encoded piece by piece.
    spm = tokenizers.SentencePieceTokenizer(spm_path.read_bytes())
    spm_special = objectives.SpecialTokens(spm.vocab_size, num_sentinels=3)
    assert trained.encode_text("--source", "def f(x):<sentinel_2> return x", spm, spm_special) \
        == [*spm.encode("def f(x):"), spm.vocab_size + 5, *spm.encode(" return x")]
    plain = "import json\n\ndef f(x):\n    return x"
    assert trained.encode_text("--source", plain, spm, spm_special) == spm.encode(plain)
    for token in range(spm.vocab_size, spm_special.vocab_size):
        name = trained.special_name(token, spm_special)
        assert trained.encode_text("--source", name, spm, spm_special) == [token]
        assert sample.decode_sample(spm, np.asarray([token]), spm_special) == name
    # A causal_lm run has no special tokens: the same names are plain text.
    causal = tiny_config()
    assert trained.special_tokens(causal, byte) is None
    assert trained.encode_text("--prompt", "a<sentinel_0><mask>", byte, None) == \
        list(b"a<sentinel_0><mask>")
    # A masked_lm run has <mask> (258) but no sentinels.
    masked = tiny_config(layout="encoder")
    masked.train.objective = "masked_lm"
    masked_special = trained.special_tokens(masked, byte)
    assert trained.encode_text("--text", "x<mask>y", byte, masked_special) == \
        [ord("x"), 258, ord("y")]


@pytest.mark.parametrize("text, name, allowed", [
    ("x<sentinel_2>", "<sentinel_2> at character 1", "<sentinel_0> to <sentinel_1>"),
    ("<sentinel_999>", "<sentinel_999> at character 0", "<sentinel_0> to <sentinel_1>"),
    # Never printed (the tools print <sentinel_1>): ambiguous, so refused too.
    ("ab<sentinel_01>", "<sentinel_01> at character 2", "<sentinel_0> to <sentinel_1>"),
])
def test_a_sentinel_the_run_does_not_have_is_refused_in_one_line(text, name, allowed, tmp_path,
                                                                  capsys, monkeypatch):
    workdir = tmp_path / "run"
    save_initialized_run(workdir, tiny_config(layout="encoder_decoder"))

    def never(*arguments, **keywords):
        raise AssertionError("refused only after the checkpoint was restored")

    monkeypatch.setattr(trained, "load", never)
    for flag in ("--source", "--prompt"):
        other = "--prompt" if flag == "--source" else "--source"
        code, out, err = run_sample(capsys, "--workdir", str(workdir), flag, text, other, "ok")
        assert (code, out) == (2, "")
        assert err == (f"scaling-sample: error: {flag}: {name} is not a special token of this "
                       f"run; its special tokens are <pad>, <mask>, <bos>, {allowed}\n")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(text)
    code, _, err = run_sample(capsys, "--workdir", str(workdir), "--prompt-file", str(prompt),
                              "--source", "ok")
    assert code == 2 and err.startswith(f"scaling-sample: error: --prompt-file {prompt}: {name}")
    masked = tiny_config(layout="encoder")
    masked.train.objective = "masked_lm"
    with pytest.raises(trained.RunError, match=r"^--text: <sentinel_0> at character 0 is not a "
                       r"special token of this run; its special tokens are <pad>, <mask>, <bos> "
                       r"\(no sentinels\)$"):
        trained.encode_text("--text", "<sentinel_0>", tokenizers.ByteTokenizer(),
                            trained.special_tokens(masked, tokenizers.ByteTokenizer()))


def test_a_sentinel_in_the_source_reaches_the_encoder_as_the_sentinel(tmp_path, capsys,
                                                                      monkeypatch):
    """`--source "...<sentinel_0>..."` is the row training's encoder reads: the kept text with the
    sentinel where a span was dropped; `--prompt "<sentinel_0>"` starts the decoder's answer."""
    config = tiny_config(layout="encoder_decoder")
    workdir = tmp_path / "span"
    model, params = save_initialized_run(workdir, config, seed=3)
    with data_lib.make_loader(config.data, config.train.batch_size, config.seed,
                              train_cfg=config.train) as loader:
        batch = loader.batch(0)
    bos, sentinel = int(batch["inputs"][0, 0]), int(batch["targets"][0, 0])  # as training has them
    generate, calls = decoding.generate, []

    def recorded(model, params, prompt_BxP, key, settings, source_BxS=None, **keywords):
        calls.append((np.asarray(prompt_BxP), None if source_BxS is None
                      else np.asarray(source_BxS)))
        return generate(model, params, prompt_BxP, key, settings, source_BxS, **keywords)

    monkeypatch.setattr(decoding, "generate", recorded)
    code, out, err = run_sample(capsys, "--workdir", str(workdir), "--source",
                                "def f(a, b):<sentinel_0> a + b", "--prompt", "<sentinel_0>",
                                "--max-new-tokens", "5", "--temperature", "0")
    assert code == 0, err
    prompt_BxP, source_BxS = calls[-1]
    assert source_BxS.tolist() == [[*b"def f(a, b):", sentinel, *b" a + b"]]
    assert prompt_BxP.tolist() == [[bos, sentinel]]
    expected = greedy_reference(model, params, [bos, sentinel], 5,
                                source_ids=[*b"def f(a, b):", sentinel, *b" a + b"])
    assert out == "<sentinel_0>" + as_text(expected) + "\n"
    # A decoder-only (causal_lm) run has no sentinels: the same name is its 12 bytes.
    decoder = tmp_path / "decoder"
    save_initialized_run(decoder, tiny_config())
    code, _, err = run_sample(capsys, "--workdir", str(decoder), "--prompt", "<sentinel_0>",
                              "--max-new-tokens", "2")
    assert code == 0, err
    assert calls[-1][0].tolist() == [[256, *b"<sentinel_0>"]]


def test_a_summary_that_disagrees_with_its_checkpoint_is_named_as_such(tmp_path, capsys):
    # The summary.json an older version wrote lacks model.position, which then reads as RoPE; the
    # checkpoint holds learned positions. Neither a new workdir nor other settings would help.
    save_initialized_run(tmp_path, tiny_config(position="learned", max_seq_len=16))
    summary = json_module.loads((tmp_path / "summary.json").read_text())
    del summary["model"]["position"]
    (tmp_path / "summary.json").write_text(json_module.dumps(summary))
    code, out, err = run_sample(capsys, "--workdir", str(tmp_path), "--prompt", "x",
                                "--max-new-tokens", "2")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "(model.position: checkpoint 'learned', config 'rope')" in err
    assert err.rstrip().endswith("the run's summary.json, which gives the config here, disagrees "
                                 "with it: read the run with the version of scaling that trained "
                                 "it")

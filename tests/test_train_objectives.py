"""`scaling-train` end to end for the objectives other than causal_lm: a masked-LM encoder and a
span-corruption encoder–decoder on the embedded corpus, a seq2seq encoder–decoder that learns to
reverse strings from a tab-separated file, and an encoder–decoder run killed with SIGKILL that
resumes to the uninterrupted run's state bit for bit (and its continuation loss, recomputed from
the checkpoint)."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

from scaling.tracking import read_metrics

pytestmark = pytest.mark.slow

SHORT = ["--config", "configs/demo.py:runlocal", "--config.train.log_every=20",
         "--config.train.eval_every=20", "--config.wandb.mode=disabled"]
MASKED_LM = ["--config.model.layout=encoder", "--config.train.objective=masked_lm"]
SPAN_CORRUPTION = ["--config.model.layout=encoder_decoder",
                   "--config.train.objective=span_corruption"]


def command(workdir, *arguments):
    return [sys.executable, "-m", "scaling.train", *arguments, "--workdir", str(workdir)]


def train(workdir, *arguments, timeout=600):
    result = subprocess.run(command(workdir, *arguments), cwd=REPO, capture_output=True, text=True,
                            timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text()), read_metrics(workdir / "metrics.jsonl")


def held_out_unigram_entropy() -> float:
    """Nats per token of the best prediction that ignores context: the held-out split's byte
    frequencies. A model that collapsed to a constant guess cannot score below it."""
    from scaling.config import default_config
    from scaling.data import make_loader

    loader = make_loader(default_config().data, batch_size=32, seed=0)
    counts = np.bincount(np.asarray(loader._eval.tokens), minlength=loader.vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("name, arguments, target_tokens, stacks", [
    # 32 rows × round(0.15 · 128) = 19 selected positions; the encoder reads all 128 (an
    # encoder-only run's summary said 0 encoder and 4,096 decoder tokens).
    ("masked_lm", MASKED_LM, 32 * 19, (32 * 128, 0)),
    # 32 rows × (19 dropped tokens + 6 sentinels + EOS); the encoder 128 − 19 + 6 sentinels.
    ("span_corruption", SPAN_CORRUPTION, 32 * 26, (32 * 115, 32 * 26)),
])
def test_objective_trains_on_the_embedded_corpus(tmp_path, name, arguments, target_tokens,
                                                 stacks):
    """Finite, falling held-out losses that end below what any context-free guess scores."""
    summary, records = train(tmp_path, *SHORT, *arguments, "--config.model.d_model=64",
                             "--config.model.num_layers=2", "--config.train.steps=160")
    assert summary["status"] == "completed" and summary["objective"] == name
    assert (summary["encoder_tokens_per_step"], summary["decoder_tokens_per_step"]) == stacks
    evals = [record["eval_loss"] for record in records if record["eval_loss"] is not None]
    assert len(evals) == 8 and all(math.isfinite(loss) for loss in evals)
    assert evals[-1] < evals[0] - 0.5, evals
    assert evals[-1] < held_out_unigram_entropy() - 0.1, evals
    assert all(record["target_tokens"] == target_tokens for record in records)
    # Every logged metric has a section on W&B (train/, eval/, optim/, perf/) or is an x-axis.
    from launch.results import WANDB_NAMES
    from scaling.tracking import X_AXES

    assert set().union(*records) - set(X_AXES) - set(WANDB_NAMES) == set()


def write_reversals(path, count=4000, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as file:
        for _ in range(count):
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10)))
            file.write(f"{text}\t{text[::-1]}\n")


REVERSAL_LOSS = 0.3  # nats per target token; chance is ln(26) = 3.26 per letter


def test_seq2seq_learns_to_reverse_strings_from_a_tab_separated_file(tmp_path):
    pairs = tmp_path / "reverse.tsv"
    write_reversals(pairs)
    summary, records = train(
        tmp_path / "run", "--config", "configs/demo.py", "--config.model.layout=encoder_decoder",
        "--config.train.objective=seq2seq", "--config.data.dataset=text_pairs",
        f"--config.data.files={pairs}", "--config.data.seq_len=12", "--config.train.steps=300",
        "--config.train.eval_every=50", "--config.train.log_every=50",
        "--config.optim.warmup_steps=20", "--config.model.position=sinusoidal",
        "--config.model.init=xavier", "--config.wandb.mode=disabled")
    assert summary["status"] == "completed" and summary["objective"] == "seq2seq"
    assert summary["final_eval_loss"] < REVERSAL_LOSS, [r["eval_loss"] for r in records]
    # Target tokens: every letter and the EOS of each pair, none of the padding.
    assert all(4 * 32 <= record["target_tokens"] <= 11 * 32 for record in records)


def eval_sums_from_checkpoint(workdir):
    """Each final-evaluation batch's summed loss over its target tokens, and how many it has: the
    model's logits on the run's held-out batches from its final checkpoint, a NumPy
    cross-entropy at every position the loss mask scores."""
    from scaling import model as model_lib
    from scaling import trained
    from scaling.data import make_loader

    run = trained.load(workdir, single_device=True)
    train_cfg = run.config.train
    net = model_lib.Transformer(run.model)
    sums, counts = [], []
    with make_loader(run.config.data, batch_size=train_cfg.batch_size, seed=run.config.seed,
                     train_cfg=train_cfg) as loader, run.context():
        for batch in loader.eval_batches(train_cfg.final_eval_batches or train_cfg.eval_batches):
            logits = np.asarray(net.apply({"params": run.params}, batch["inputs"],
                                          encoder_tokens_BxS=batch["encoder_inputs"]), np.float64)
            logits -= logits.max(axis=-1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
            nll = -np.take_along_axis(log_p, batch["targets"][..., None], axis=-1)[..., 0]
            scored = batch["loss_mask"] > 0
            sums.append(nll[scored].sum())
            counts.append(int(scored.sum()))
    return np.asarray(sums), np.asarray(counts, np.float64)


def test_eval_loss_is_the_mean_over_target_tokens_of_batches_of_unequal_size(tmp_path):
    """Pairs of 3 to 10 letters: each held-out batch scores its own number of target tokens. The
    logged loss is their mean per target token, as a train step averages, not the mean of the
    batches' means; its standard error is the ratio estimator's over the batches."""
    pairs = tmp_path / "reverse.tsv"
    write_reversals(pairs)
    summary, records = train(
        tmp_path / "run", *SHORT, "--config.model.layout=encoder_decoder",
        "--config.train.objective=seq2seq", "--config.data.dataset=text_pairs",
        f"--config.data.files={pairs}", "--config.data.seq_len=12",
        "--config.model.position=sinusoidal", "--config.train.eval_batches=4")
    sums, counts = eval_sums_from_checkpoint(tmp_path / "run")
    assert len(counts) == 4 and len(set(counts)) > 1, counts  # unequal, or no test
    loss = sums.sum() / counts.sum()
    weights = counts / counts.mean()
    stderr = np.sqrt(np.sum((weights * (sums / counts - loss)) ** 2) / (4 * 3))
    final = records[-1]
    assert final["step"] == 20 and summary["final_eval_loss"] == final["eval_loss"]
    assert final["eval_loss"] == pytest.approx(loss, rel=1e-6)
    assert final["eval_stderr"] == pytest.approx(stderr, rel=1e-3)  # of float32 losses' spread


RESUME = [*SHORT, *SPAN_CORRUPTION, "--config.train.steps=30", "--config.train.log_every=5",
          "--config.train.eval_every=15", "--config.checkpoint.every_steps=10",
          "--config.checkpoint.async_save=false", "--config.train.continuation_tokens=19"]


def continuation_loss_from_checkpoint(workdir, k):
    """The continuation loss of a finished run, recomputed from its final checkpoint: the model's
    logits on the final evaluation's windows as the continuation task, and a NumPy cross-entropy
    over the scored tokens of each batch under the model's distribution over the corpus vocabulary
    (its first `loader.vocab_size` ids), averaged over batches."""
    from scaling import model as model_lib
    from scaling import trained
    from scaling.data import make_loader

    run = trained.load(workdir, single_device=True)
    train_cfg = run.config.train
    net = model_lib.Transformer(run.model)
    losses = []
    with make_loader(run.config.data, batch_size=train_cfg.batch_size, seed=run.config.seed,
                     train_cfg=train_cfg) as loader, run.context():
        for batch in loader.continuation_batches(train_cfg.final_eval_batches
                                                 or train_cfg.eval_batches, k):
            logits = np.asarray(net.apply({"params": run.params}, batch["inputs"],
                                          encoder_tokens_BxS=batch["encoder_inputs"]),
                                np.float64)[..., :loader.vocab_size]
            logits -= logits.max(axis=-1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
            scored = batch["loss_mask"] == 1
            targets = np.where(scored, batch["targets"], 0)
            nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
            losses.append(nll[scored].mean())
    return float(np.mean(losses))


def test_encoder_decoder_killed_with_sigkill_resumes_bitwise(tmp_path):
    from test_resume import assert_same_state, committed_steps, wait_until

    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    train(reference, *RESUME)
    process = subprocess.Popen(command(interrupted, *RESUME), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO)))
    wait_until(lambda: 10 in committed_steps(interrupted), process)
    time.sleep(random.uniform(0.0, 0.3))
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (interrupted / "summary.json").exists()
    summary, records = train(interrupted, *RESUME)
    assert summary["status"] == "completed"
    assert_same_state(interrupted, reference, step=30)
    expected = read_metrics(reference / "metrics.jsonl")
    fields = ("step", "train_loss", "eval_loss", "target_tokens", "continuation_loss")
    assert [{f: r.get(f) for f in fields} for r in records] == [{f: r.get(f) for f in fields}
                                                               for r in expected]
    # The final evaluation's continuation loss, against a recomputation from the checkpoint.
    assert summary["final_continuation_loss"] == records[-1]["continuation_loss"]
    assert summary["final_continuation_loss"] == pytest.approx(
        continuation_loss_from_checkpoint(interrupted, 19), rel=1e-5)

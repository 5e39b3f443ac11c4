"""Does a span-corruption encoder–decoder read its source?

Restores finished encoder–decoder runs (default: the architecture comparison's three largest
sizes at 4M tokens, and d48-L2 at 16M tokens from the longer ladder of docs/architectures.md) and
scores their final evaluation's batches twice: with each row's own
encoder input, and with the encoder input of the row before it in the batch (another window of
the corpus). A model that reads its source loses much more from the swap than one that writes
spans from its own decoder context. The loss is split by target: the first token of a span (what
only the source can tell), the span's other tokens and the sentinels (where a span ends).
Writes the `encoder_use` section of BENCHMARKS.md.

Run: python -m bench.bench_encoder_use [--runs RUN_DIR,RUN_DIR,...]
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

from bench.record import markdown_table, record
from launch.sweep import run_directory
from scaling import data, model as model_lib, trained

DEFAULT_RUNS = tuple(str(path) for path in (
    *(run_directory(pathlib.Path("runs/arch-encdec"), f"arch-encoderdecoder-{size}-D4e6")
      for size in ("d48-L2", "d64-L2", "d96-L2")),
    run_directory(pathlib.Path("runs/arch-long-encdec"), "arch-encoderdecoder-d48-L2-D1.6e7")))
CATEGORIES = ("all targets", "first token of a span", "other span tokens", "sentinels")


def token_losses(workdir: pathlib.Path) -> dict[str, dict[str, float]]:
    """Mean loss per target category, with the row's own source and with another row's."""
    run = trained.load(workdir, single_device=True)
    config = run.config
    if config.train.objective != "span_corruption":
        raise trained.RunError(f"{workdir} is a {run.model.layout} run of {config.train.objective}"
                               "; this bench reads span-corruption encoder–decoders")
    net = model_lib.Transformer(run.model)

    @jax.jit
    def losses(params, batch, masks):
        """Mean loss over each mask's targets (the training loop's cross-entropy)."""
        logits = net.apply({"params": params}, batch["inputs"],
                           encoder_tokens_BxS=batch["encoder_inputs"])
        return {name: model_lib.cross_entropy_loss(logits, batch["targets"], mask_BxL=mask)[0]
                for name, mask in masks.items()}

    totals = {source: {name: [0.0, 0] for name in CATEGORIES}
              for source in ("own", "another row's")}
    with data.make_loader(config.data, batch_size=config.train.batch_size, seed=config.seed,
                          train_cfg=config.train) as loader, run.context():
        first_sentinel = loader.objective.special.sentinel(0)
        for batch in loader.eval_batches(config.train.final_eval_batches or
                                         config.train.eval_batches):
            targets = batch["targets"]
            sentinel = targets >= first_sentinel
            span = ~sentinel
            span[:, -1] = False  # EOS
            after_sentinel = np.zeros_like(sentinel)
            after_sentinel[:, 1:] = sentinel[:, :-1]
            masks = {"all targets": np.ones_like(sentinel), "sentinels": sentinel,
                     "first token of a span": span & after_sentinel,
                     "other span tokens": span & ~after_sentinel}
            for source, encoder_inputs in (("own", batch["encoder_inputs"]),
                                           ("another row's", np.roll(batch["encoder_inputs"], 1,
                                                                     axis=0))):
                means = losses(run.params, {**batch, "encoder_inputs": encoder_inputs}, masks)
                for name, mask in masks.items():  # weighted by each batch's count of targets
                    totals[source][name][0] += float(means[name]) * int(mask.sum())
                    totals[source][name][1] += int(mask.sum())
    return {source: {name: total / count for name, (total, count) in by.items()}
            for source, by in totals.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS), help="run directories")
    args = parser.parse_args(argv)
    rows = []
    for directory in args.runs.split(","):
        name = pathlib.Path(directory).name
        try:
            losses = token_losses(pathlib.Path(directory))
        except trained.RunError as error:  # a run not trained here
            parser.error(f"--runs: {error}")
        for category in CATEGORIES:
            own, other = losses["own"][category], losses["another row's"][category]
            rows.append([name, category, f"{own:.3f}", f"{other:.3f}", f"{other - own:+.3f}"])
    body = (markdown_table(["run", "targets", "own source", "another row's source",
                            "cost of the swap"], rows)
            + "\nLoss in nats per target token on the run's final evaluation batches.\n")
    print(body)
    record("encoder_use", "Does a span-corruption encoder–decoder read its source?", body)


if __name__ == "__main__":
    main()

"""`scaling-fit --wandb-project P [--wandb-group G]`: the fit as a W&B run in the sweep's group,
beside the runs it fitted, so a dashboard shows the law next to its data.

It reads only what `scaling-fit` wrote — fit.json, the figures — and the table it read, so it
redoes nothing of the analysis (its warnings are worded as report.md's). The run (job type `fit`)
holds:
- summary: every fitted parameter of every law with its bootstrap SE and interval
  (`fit/<law>/<param>`, `..._se`, `..._ci_low`, `..._ci_high`), its derived quantities likewise
  (`fit/<law>/derived/<name>`: allocation exponents, N_opt at the largest budget, diminishing
  returns), each law's objective, and the extrapolation check's errors
  (`extrapolation/<law>/<metric>`);
- tables: `runs` (the input rows), `extrapolation_held_out/<law>` (each held-out run: actual and
  predicted);
- the loss-vs-compute points as a W&B line plot (`loss_vs_compute`), and every figure as an image;
- an artifact (type `scaling-fit`, named as the run) of fit.json, report.md and the figures.

The mode is W&B's own `WANDB_MODE` when set, else online with an API key and offline without.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import sys

import pandas as pd

from analysis.report import ISOFLOP_FAILED, failed_resamples_note
from scaling.config import SWEEP_TAG
from scaling.tracking import effective_mode, wandb_api_key, wandb_host_unreachable

INTERVAL_FIELDS = {"value": "", "se": "_se", "ci_low": "_ci_low", "ci_high": "_ci_high"}
EXTRAPOLATION_METRICS = ("mean_abs_error", "max_abs_error", "rmse", "mean_abs_relative_error",
                         "max_abs_relative_error", "coverage", "n_held_out", "n_fit_points")


def fit_summary(fit: dict) -> dict:
    """fit.json as flat W&B summary entries: parameters with intervals (`fit/<law>/<name>`),
    derived quantities with theirs (`fit/<law>/derived/<name>`: the allocation exponents a and b
    are not Gadre et al.'s coefficients a and b), objectives, each fit's warnings (Approach 2's
    exponents and warnings as `fit/isoflop/...`), and the extrapolation check."""
    summary = {"law": fit.get("law"), "formula": fit.get("formula"),
               "flop_convention": fit.get("flop_convention")}
    isoflop = fit.get("isoflop")
    fits = dict(fit.get("fits") or {})
    if isoflop:
        fits["isoflop"] = {"params": {"a": isoflop["a"], "b": isoflop["b"]},
                           "diagnostics": isoflop.get("diagnostics", [])}
    for law, one in fits.items():
        problems = []
        entries = [(name, name, values) for name, values in one.get("params", {}).items()]
        entries += [(name, f"derived/{name}", values)
                    for name, values in one.get("derived", {}).items()]
        for name, key, values in entries:
            for field, suffix in INTERVAL_FIELDS.items():
                if isinstance(values.get(field), (int, float)):
                    summary[f"fit/{law}/{key}{suffix}"] = values[field]
            if "failed_resamples" in values and key == name:
                # No interval, as report.md says: not a value the data settled.
                why = ISOFLOP_FAILED if law == "isoflop" else ""
                problems.append(f"{name}: {failed_resamples_note(values, why)}")
        summary[f"fit/{law}/objective"] = one.get("objective")
        summary[f"fit/{law}/n_points"] = one.get("n_points")
        # What report.md warns of: a degenerate fit, a parameter the data do not identify.
        problems = [flag["problem"] for flag in one.get("diagnostics", [])] + problems
        summary[f"fit/{law}/warnings"] = "; ".join(problems) if problems else "none"
    for law, check in (fit.get("extrapolation") or {}).items():
        for metric in EXTRAPOLATION_METRICS:
            if isinstance(check.get(metric), (int, float)):
                summary[f"extrapolation/{law}/{metric}"] = check[metric]
    return {key: value for key, value in summary.items() if value is not None}


def default_group(input_path: pathlib.Path) -> str | None:
    """The sweep's name (its runs' W&B group) from the sweep.json beside results.csv."""
    try:
        return json.loads((input_path.parent / "sweep.json").read_text()).get("name") or None
    except (OSError, ValueError):
        return None


def _mode() -> str:
    """Online, as a training run's W&B is: lowered by `WANDB_MODE`, and offline without an API
    key (`WANDB_API_KEY` or `wandb login`'s) or with W&B's server out of reach (said on stderr:
    W&B itself waited a minute, then gave up)."""
    mode = effective_mode("online")
    if mode != "online":
        return mode
    if not wandb_api_key():
        return "offline"
    unreachable = wandb_host_unreachable()
    if unreachable:
        print(f"scaling-fit: warning: W&B's server cannot be reached ({unreachable}): logging "
              "the fit offline", file=sys.stderr)
        return "offline"
    return mode


def log_fit(out_dir: pathlib.Path, input_path: pathlib.Path, project: str,
            group: str | None = None, entity: str | None = None) -> str | None:
    """Log the fit in `out_dir` (fit.json, *.png) and the table at `input_path` as one W&B run;
    returns where it went (the run's URL, or its offline folder), None when `$WANDB_MODE` turns
    W&B off."""
    mode = _mode()
    if mode == "disabled":
        return None
    import wandb  # 1.5 s to import: only when asked to log

    out_dir, input_path = pathlib.Path(out_dir), pathlib.Path(input_path)
    fit = json.loads((out_dir / "fit.json").read_text())
    group = group or default_group(input_path)
    run = wandb.init(project=project, entity=entity or None, group=group, job_type="fit",
                     name=f"fit-{group}" if group else "fit", dir=str(out_dir), mode=mode,
                     tags=[f"law:{fit.get('law')}"] + ([SWEEP_TAG + group] if group else []),
                     config={"source": str(input_path), "law": fit.get("law"),
                             "flop_convention": fit.get("flop_convention"),
                             **{f"settings/{k}": v for k, v in (fit.get("settings") or {}).items()}},
                     settings=wandb.Settings(init_timeout=60, silent=True))
    try:
        logged = {"runs": wandb.Table(dataframe=pd.read_csv(input_path))}
        frontier = (fit.get("data") or {}).get("frontier")
        if frontier and frontier.get("flops"):
            points = wandb.Table(columns=["flops", "loss"],
                                 data=[[float(c), float(l)] for c, l in
                                       zip(frontier["flops"], frontier["loss"])])
            logged["loss_vs_compute"] = wandb.plot.line(points, "flops", "loss",
                                                        title="loss vs compute (fitted points)")
        for law, check in (fit.get("extrapolation") or {}).items():
            if check.get("held_out"):
                logged[f"extrapolation_held_out/{law}"] = wandb.Table(
                    dataframe=pd.DataFrame(check["held_out"]))
        for figure in sorted(out_dir.glob("*.png")):
            logged[f"figures/{figure.stem}"] = wandb.Image(str(figure))
        run.log(logged)
        # The fit's own files (fit.json, report.md, the figures) as one artifact of the run.
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", run.name or "fit"), type="scaling-fit",
                                  description=f"scaling-fit of {input_path.name}")
        for path in [out_dir / "fit.json", out_dir / "report.md", *sorted(out_dir.glob("*.png"))]:
            if path.is_file():
                artifact.add_file(str(path))
        run.log_artifact(artifact)
        for key, value in fit_summary(fit).items():
            run.summary[key] = value
        where = (run.url if mode == "online" and run.url else
                 f"{run.dir} (offline; upload with "
                 f"`wandb sync {shlex.quote(str(pathlib.Path(run.dir).parent))}`)")
    finally:
        run.finish()
    return where

"""The sweep planner budgets exactly the model `scaling-train` trains: each run is resolved through
the base config, the sweep's overrides, the size's and the plan's fields, and its planned N, D and
C equal what the trained run reports in summary.json."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, write_sweep_config
from launch import plans
from launch import sweep as sweep_module
from scaling.errors import ConfigError
from scaling.overrides import load_config

# A base config and overrides that change N and FLOPs per token: grouped-query attention with one
# key/value head, biases everywhere, and (for one size) a narrower feed-forward layer.
MODEL_CHANGING = dict(
    name="shape", base_config="configs/demo.py:runlocal", sizes="d64-L2,d96-L3", min_steps=1,
    processes=2,
    overrides={"model": {"num_kv_heads": 1, "use_bias": True},
               "train": {"batch_size": 8, "log_every": 2, "eval_every": 2},
               "data": {"seq_len": 32}, "checkpoint": {"every_steps": 0}},
    size_overrides={"d96-L3": {"model": {"d_ff": 96}}})


def _plan(tmp_path, **fields):
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, **fields})
    sweep = load_config(str(path))
    return path, plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))


@pytest.mark.parametrize("plan", [dict(plan="tokens_per_param", tokens_per_param=0.02),
                                  dict(plan="isoflop", isoflop_budgets=(1.5e9, 3e9))])
def test_planned_n_d_c_equal_the_trained_runs_summary(repo, tmp_path, plan):
    path, runs = _plan(tmp_path, **plan)
    assert len(runs) >= 2
    workdir = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "launch.sweep", "--config", str(path),
                             "--workdir", str(workdir)], cwd=repo, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for run in runs:
        summary = json.loads((workdir / "runs" / run.name / "summary.json").read_text())
        assert summary["model"]["num_kv_heads"] == 1 and summary["model"]["use_bias"]
        assert summary["non_embedding_params"] == run.non_embedding_params, run.name
        assert summary["params"] == run.params, run.name
        assert summary["tokens"] == run.tokens, run.name
        assert summary["flops"] == pytest.approx(run.flops, rel=1e-12), run.name
    d96 = next(run for run in runs if run.size == "d96-L3")
    assert d96.overrides["model.d_ff"] == 96


@pytest.mark.parametrize("architecture", ["decoder", "encoder_decoder"])
def test_the_architecture_sweep_trains_every_size_in_mup_at_one_rate(repo, architecture):
    # docs/architectures.md's recipe: µP from the smallest width at 2^-5 for every size, whatever
    # per-size rates the demo ladder it starts from sets.
    path = str(repo / "configs" / "sweeps" / "architectures.py")
    sweep = load_config(f"{path}:{architecture}")
    runs = plans.expand(sweep, plans.resolve_base_config(sweep.base_config, path))
    assert len(runs) == 18
    for run in runs:
        assert run.overrides["model.parametrization"] == "mup", run.name
        assert run.overrides["model.mup_base_width"] == 8, run.name
        assert run.overrides["optim.lr"] == 2.0**-5, run.name


def test_tokens_per_param_counts_the_resolved_model(tmp_path):
    # D = ratio x N, with N the non-embedding parameters of the model the run trains: here with
    # biases and one key/value head (a hand count for d64-L2: per layer q, o 64x64 and k, v 64x32
    # with biases, MLP 64x256 and 256x64 with biases, two RMSNorm scales; a final norm).
    _, runs = _plan(tmp_path, plan="tokens_per_param", tokens_per_param=0.02)
    d = 64
    attention = 2 * (d * d + d) + 2 * (d * 32 + 32)
    mlp = d * 4 * d + 4 * d + 4 * d * d + d
    expected = 2 * (attention + mlp + 2 * d) + d
    run = next(run for run in runs if run.size == "d64-L2")
    assert run.non_embedding_params == expected
    assert run.tokens == max(1, round(0.02 * expected / 256)) * 256


def test_sweep_overrides_accept_every_run_field_and_name_unknown_ones(tmp_path):
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    sweep = load_config(str(path))
    plans.apply_sweep_overrides(sweep, ["overrides.wandb.mode=offline", "overrides.optim.lr=0.01",
                                        "size_overrides.d64-L2.train.steps=7", "plan=steps"])
    runs = plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))
    assert {run.overrides["wandb.mode"] for run in runs} == {"offline"}
    assert {run.overrides["optim.lr"] for run in runs} == {0.01}
    assert next(run for run in runs if run.size == "d64-L2").steps == 7
    with pytest.raises(ConfigError, match="overrides.optim.lrr.*did you mean lr"):
        plans.apply_sweep_overrides(sweep, ["overrides.optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="overrides.optim.lr.*a number"):
        plans.apply_sweep_overrides(sweep, ["overrides.optim.lr=fast"])


def test_every_planned_run_is_validated_as_scaling_train_would(tmp_path):
    with pytest.raises(ConfigError, match="model.position"):
        _plan(tmp_path, plan="steps", overrides={**MODEL_CHANGING["overrides"],
                                                 "model": {"position": "rotary"}})


def test_seeds_replicate_every_run_at_the_following_seeds(tmp_path):
    ladder = dict(plan="ladder", ladder_tokens=(256 * 16, 256 * 32, 256 * 64),
                  overrides={**MODEL_CHANGING["overrides"], "seed": 5})
    _, single = _plan(tmp_path, **ladder)
    _, replicated = _plan(tmp_path, **ladder, seeds=3)
    assert len(single) == 6 and len(replicated) == 18
    first, *others = [replicated[6 * k:6 * (k + 1)] for k in range(3)]
    assert [run.name for run in first] == [run.name for run in single]
    assert all("seed:5" in run.overrides["wandb.tags"].split(",") for run in first)
    for k, runs in enumerate(others, start=1):
        for run, original in zip(runs, single):
            assert run.name == original.name + f"-s{k}"
            assert run.overrides["seed"] == 5 + k and original.overrides["seed"] == 5
            assert f"seed:{5 + k}" in run.overrides["wandb.tags"].split(",")
            assert "seed:" not in original.overrides["wandb.tags"]
            assert run.parent == (original.parent + f"-s{k}" if original.parent else "")
            assert (run.params, run.tokens, run.flops, run.start_step) == (
                original.params, original.tokens, original.flops, original.start_step)


def test_a_ladder_budget_inside_the_warmup_is_refused(tmp_path):
    # 256 tokens a step, a warmup of 5 steps: a 6-step budget warms up like its 64-step parent
    # and cools down from step 5; a 5-step one would warm up in 4 steps, unlike its parent.
    fields = dict(plan="ladder", hparams="fixed",
                  overrides={**MODEL_CHANGING["overrides"], "optim": {"warmup_steps": 5}})
    _, runs = _plan(tmp_path, ladder_tokens=(256 * 6, 256 * 64), **fields)
    assert sorted((run.steps, run.start_step) for run in runs if run.size == "d64-L2") == [
        (6, 5), (64, 0)]
    with pytest.raises(ConfigError, match=r"ladder_tokens=.*warmup of 5 steps \(the smallest is 5\)"):
        _plan(tmp_path, ladder_tokens=(256 * 5, 256 * 64), **fields)


@pytest.mark.parametrize("override, message", [
    # Each planned D = inf / a step count: OverflowError and a traceback before.
    ("--config.tokens_per_param=1e999", "config.tokens_per_param=inf is not allowed: "
                                        "a finite number > 0"),
    ("--config.ladder_tokens=(4096, 1e999)", "config.ladder_tokens=(4096, inf) is not allowed: "
                                             "a tuple of finite numbers > 0"),
    # A TypeError from ml_collections, and an IndexError, as tracebacks before.
    ("--config.overrides.optim=1", "config.overrides.optim='1' is not allowed: a leaf run-config "
     "field (this is a section), e.g. --config.overrides.optim.b1=..."),
    ("--config.size_overrides.d64-L2=1", "config.size_overrides.d64-L2='1' is not allowed: a leaf "
     "run-config field (this is a section), e.g. --config.size_overrides.d64-L2.optim.lr=..."),
    # Suggested --config.size_overrides.x.optim.lr=..., which was refused next: x is no member.
    ("--config.size_overrides.x=1", "config.size_overrides.x='1' is not allowed: a member of "
     "family 'cpu_demo' and a run-config field under it, e.g. --config.size_overrides.d8-L2."
     "optim.lr=... (members: d8-L2, d16-L1, d16-L2, d32-L1, d32-L2, d48-L2, d64-L2, d96-L2, "
     "d96-L3, d128-L4, d160-L4)"),
    # "unknown key 'x' in config.optim.lr; allowed: " and nothing after it.
    ("--config.overrides.optim.lr.x=1", "config.overrides.optim.lr.x='1' is not allowed: a "
     "config field; optim.lr is a field, not a section"),
])
def test_an_infinite_budget_or_a_whole_section_overridden_is_one_line(tmp_path, capsys, override,
                                                                      message):
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    plan = "ladder" if "ladder" in override else "tokens_per_param"
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", f"--config.plan={plan}", override])
    error = capsys.readouterr().err
    assert code == 2 and error == f"scaling-sweep: error: {message}\n", error


def test_a_run_field_the_plan_derives_is_refused_naming_what_it_came_from(tmp_path, capsys):
    # "config.train.steps=976562500000000019418578944 is not allowed" named only a field the
    # user never set.
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", "--config.plan=tokens", "--config.tokens=1e30"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert "config.train.steps=3906250000000000077674315776 is not allowed: at most " in error
    assert error.endswith("(the sweep sets it for this run, from its plan='tokens' and hparams="
                          "'fixed' and their fields: change those)\n")


def test_a_base_config_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    # An OSError traceback ("[Errno 36] File name too long") while looking for the file.
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    long = "x" * 300
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", f"--config.base_config={long}"])
    assert (code, capsys.readouterr().err) == (2, f"scaling-sweep: error: config.base_config="
                                                  f"'{long}' is not allowed: a path the file "
                                                  "system can hold (File name too long)\n")


def test_more_replicates_than_a_sweep_can_plan_are_refused(tmp_path, capsys):
    # 1e30 planned 1e30 replicates of every run before anything trained: the dry run hung.
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", "--config.seeds=1001"])
    assert (code, capsys.readouterr().err) == (2, "scaling-sweep: error: config.seeds=1001 is not "
                                                  "allowed: an integer from 1 to 1,000\n")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "a,b", ".hidden", "two words", "n" * 59])
def test_a_sweep_name_that_cannot_start_a_run_folder_is_one_line(tmp_path, capsys, name):
    # `../escape` put its runs beside runs/ instead of in it; `a,b` could not be named in --only;
    # 59 characters made the tag sweep:<name> longer than W&B's 64, and W&B refused every run.
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", f"--config.name={name}"])
    error = capsys.readouterr().err
    assert code == 2 and error == (
        f"scaling-sweep: error: config.name={name!r} is not allowed: at most 58 letters, "
        "digits, '.', '_' and '-', starting with a letter or digit (it starts every run's name, "
        "a folder under runs/, and is W&B's tag sweep:<name>)\n"), error


@pytest.mark.parametrize("fields, message", [
    # A repeated budget made one run fewer without a word (one run, no branch, for two).
    (dict(plan="ladder", ladder_tokens=(256 * 64, 256 * 16, 256 * 64)),
     "config.ladder_tokens=(16384, 4096, 16384) is not allowed: distinct budgets (two of them "
     "train size d64-L2 for the same 64 steps of 256 tokens: train.batch_size=8 rows of 32)"),
    # Two budgets named alike (to two significant digits) were blamed on the sweep's name.
    (dict(plan="ladder", ladder_tokens=(256 * 62, 256 * 64)),
     "config.ladder_tokens=(15872, 16384) is not allowed: run names that are unique (two runs are "
     "named "),
    # Both kinds of budget: the absolute ones went unread without a word.
    (dict(plan="ladder", ladder_tokens=(256 * 16, 256 * 64), ladder_tokens_per_param=(5.0, 10.0)),
     "config.ladder_tokens=(4096, 16384) is not allowed: () with ladder_tokens_per_param=(5.0, "
     "10.0) (a ladder's budgets come from one of them)"),
    # One absolute budget was reported as an empty ladder_tokens_per_param.
    (dict(plan="ladder", ladder_tokens=(256 * 64,)),
     "config.ladder_tokens=(16384,) is not allowed: set with plan='ladder' (two or more budgets)"),
    # A plan of no runs at all planned, "trained" and exited 0.
    (dict(plan="steps", sizes=","),
     "config.sizes=',' is not allowed: names from family 'cpu_demo': d8-L2"),
    (dict(plan="isoflop", isoflop_budgets=(1e3,), min_steps=50),
     "config.isoflop_budgets=(1000.0,) is not allowed: budgets that leave some size at least "
     "min_steps=50 steps (1e+03 leaves none)"),
    # One budget of two that no size reaches was dropped without a word.
    (dict(plan="isoflop", isoflop_budgets=(1e3, 1e12), min_steps=50),
     "config.isoflop_budgets=(1000.0, 1000000000000.0) is not allowed: budgets that leave some "
     "size at least min_steps=50 steps (1e+03 leaves none)"),
])
def test_a_plan_that_would_silently_drop_runs_is_refused(tmp_path, capsys, fields, message):
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, **fields})
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run"])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith(f"scaling-sweep: error: {message}"), error
    assert error.count("\n") == 1


@pytest.mark.parametrize("override, message", [
    # The demo sets every size's rate: an overrides.optim.lr trained every run at its old rate.
    ("--config.overrides.optim.lr=0.002", "config.overrides.optim.lr=0.002 is not allowed: a "
     "field some size takes from it (size_overrides sets optim.lr for every size; change it there)"),
    ("--config.overrides.model.d_model=64", "config.overrides.model.d_model=64 is not allowed: a "
     "field some size takes from it (every member of family 'cpu_demo' sets model.d_model; "
     "set it per size in size_overrides)"),
    # Accepted, then replaced by the run's name and the sweep's group without a word.
    ("--config.overrides.name=mine", "config.overrides.name='mine' is not allowed: a field the "
     "sweep sets (run demo-d8-L2-D8e6 is named after the sweep and its size, in the W&B group of "
     "the sweep's name); set the sweep's own name field instead"),
    ("--config.size_overrides.d16-L2.wandb.group=g", "config.size_overrides.d16-L2.wandb.group='g' "
     "is not allowed: a field the sweep sets (run demo-d16-L2-D8e6 is named after the sweep and "
     "its size, in the W&B group of the sweep's name); set the sweep's own name field instead"),
])
def test_an_override_every_size_replaces_is_refused(repo, tmp_path, capsys, override, message):
    code = sweep_module.main(["--config", str(repo / "configs" / "sweeps" / "demo.py"),
                              "--workdir", str(tmp_path / "w"), "--dry-run", override])
    error = capsys.readouterr().err
    assert code == 2 and error == f"scaling-sweep: error: {message}\n", error



@pytest.mark.parametrize("override, message", [
    # Each was replaced by the plan's value without a word, and the sweep exited 0.
    ("--config.overrides.train.steps=5", "config.overrides.train.steps=5 is not allowed: a field "
     "the plan sets (plan='ladder' sets train.steps=7812 for run demo-d8-L2-D8e6)"),
    ("--config.overrides.optim.schedule=cosine", "config.overrides.optim.schedule='cosine' is not "
     "allowed: a field the plan sets (plan='ladder' sets optim.schedule='wsd' for run "
     "demo-d8-L2-D8e6)"),
    ("--config.size_overrides.d16-L2.train.steps=100", "config.size_overrides.d16-L2.train.steps="
     "100 is not allowed: a field the plan sets (plan='ladder' sets train.steps=7812 for run "
     "demo-d16-L2-D8e6)"),
])
def test_an_override_of_a_field_the_plan_sets_is_refused(repo, tmp_path, capsys, override,
                                                         message):
    code = sweep_module.main(["--config", str(repo / "configs" / "sweeps" / "demo.py"),
                              "--workdir", str(tmp_path / "w"), "--dry-run", override])
    error = capsys.readouterr().err
    assert code == 2 and error == (f"scaling-sweep: error: {message}; set the plan's own fields "
                                   "instead\n"), error


def test_a_size_override_for_a_size_the_sweep_does_not_train_is_refused(repo, tmp_path, capsys):
    # Accepted without a word: the sweep trained d8-L2 and d16-L2 and exited 0.
    demo = ["--config", str(repo / "configs" / "sweeps" / "demo.py"), "--workdir",
            str(tmp_path / "w"), "--dry-run", "--config.sizes=d8-L2,d16-L2"]
    assert sweep_module.main([*demo, "--config.size_overrides.d96-L2.optim.lr=0.002"]) == 2
    assert capsys.readouterr().err == (
        "scaling-sweep: error: config.size_overrides.d96-L2.optim.lr=0.002 is not allowed: a size "
        "the sweep trains (d8-L2, d16-L2): d96-L2 is not in sizes, so this changes no run\n")
    # The file's own entries for the sizes left out are not the command line's doing.
    assert sweep_module.main([*demo, "--config.size_overrides.d16-L2.optim.lr=0.002"]) == 0
    assert capsys.readouterr().out.count("\ndemo-d16-L2-") == 6


def test_an_override_a_size_keeps_applies_to_that_size(tmp_path):
    _, runs = _plan(tmp_path, plan="steps", overrides={**MODEL_CHANGING["overrides"],
                                                       "optim": {"lr": 0.002}},
                    size_overrides={"d64-L2": {"optim": {"lr": 0.001}}})
    assert {run.size: run.overrides["optim.lr"] for run in runs} == {"d64-L2": 0.001,
                                                                     "d96-L3": 0.002}


@pytest.mark.parametrize("fields, message", [
    # A repeated size was reported as a collision of config.name='shape'.
    (dict(plan="steps", sizes="d64-L2,d96-L3,d64-L2"),
     "config.sizes='d64-L2,d96-L3,d64-L2' is not allowed: distinct names (d64-L2 is given twice)"),
    # 100 tokens at 256 a step: one step of 256 tokens was trained, under the name D1e2.
    (dict(plan="tokens", tokens=100),
     "config.tokens=100 is not allowed: a budget of at least one step, 256 tokens, for size "
     "d64-L2 (it gives 100)"),
    (dict(plan="tokens_per_param", tokens_per_param=0.001),
     "config.tokens_per_param=0.001 is not allowed: a budget of at least one step, 256 tokens, "
     "for size d64-L2 (it gives 91.46)"),
])
def test_sizes_and_budgets_a_run_cannot_honour_are_refused(tmp_path, capsys, fields, message):
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, **fields})
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run"])
    error = capsys.readouterr().err
    assert code == 2 and error == f"scaling-sweep: error: {message}\n", error


def test_a_cooldown_field_a_ladder_reads_is_accepted_and_one_no_run_reads_is_not(tmp_path):
    # A ladder sets optim.schedule='wsd' itself, after each size is resolved: its sweep's
    # decay_fraction is read by every run, though the size alone, with the base config's
    # cosine schedule, does not read it.
    fields = dict(overrides={**MODEL_CHANGING["overrides"], "optim": {"decay_fraction": 0.25}},
                  ladder_tokens=(256 * 16, 256 * 64))
    _, runs = _plan(tmp_path, plan="ladder", **fields)
    assert {run.overrides["optim.decay_fraction"] for run in runs} == {0.25}
    with pytest.raises(ConfigError, match=r"run shape-d64-L2-D\S+: config.optim.decay_fraction"
                                          r"=0.25 is not allowed: it is read only with "
                                          r"optim.schedule='wsd', and this run's is 'cosine'"):
        _plan(tmp_path, plan="tokens", tokens=256 * 16, **fields)


def test_the_steps_plan_without_steps_trains_the_run_configs_own_token_budget(tmp_path):
    # The base run config's train.tokens were dropped for train.steps' default 1,000 steps.
    base = tmp_path / "base.py"
    base.write_text("import importlib.util\n\n\ndef get_config():\n"
                    "    spec = importlib.util.spec_from_file_location(\n"
                    f"        'demo', {str(REPO / 'configs' / 'demo.py')!r})\n"
                    "    module = importlib.util.module_from_spec(spec)\n"
                    "    spec.loader.exec_module(module)\n"
                    "    config = module.get_config('runlocal')\n"
                    "    config.train.tokens = 10240\n"
                    "    return config\n")
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, "plan": "steps",
                                                          "steps": 0, "base_config": str(base)})
    sweep = load_config(str(path))
    runs = plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))
    # 10,240 tokens in batches of 8 rows of 32 tokens: 40 steps (runlocal's train.steps is 20).
    assert [(run.steps, run.tokens) for run in runs] == [(40, 10240), (40, 10240)]


@pytest.mark.parametrize("override, message", [
    # The user forgot plan=isoflop: the steps plan trained, its budgets ignored.
    ("--config.isoflop_budgets=(1e9,)", "config.isoflop_budgets=(1000000000.0,) is not allowed: "
     "it is read only with plan='isoflop', and this sweep's is 'steps'; drop the override, or "
     "set plan too"),
    ("--config.lr_exponent=0.5", "config.lr_exponent=0.5 is not allowed: it is read only with "
     "hparams='porian2024', and this sweep's is 'fixed'; drop the override, or set hparams too"),
])
def test_a_sweep_field_the_plan_does_not_read_is_refused(tmp_path, capsys, override, message):
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, "plan": "steps"})
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", override])
    assert (code, capsys.readouterr().err) == (2, f"scaling-sweep: error: {message}\n")
    # With the plan that reads it, the same field is taken.
    governing = "--config.plan=isoflop" if "isoflop" in override else "--config.hparams=porian2024"
    assert sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", override, governing]) == 0


@pytest.mark.parametrize("rule, override, message", [
    ("porian2024", "--config.overrides.optim.b2=0.9",
     "config.overrides.optim.b2=0.9 is not allowed: a field the hyperparameter rule sets "
     "(hparams='porian2024' sets optim.b2=0.99 for run shape-d64-L2-D8e6); remove it where it "
     "is set (the sweep file or the command line), or use hparams='fixed'"),
    ("mup_transfer", "--config.size_overrides.d96-L3.model.mup_base_width=32",
     "config.size_overrides.d96-L3.model.mup_base_width=32 is not allowed: a field the "
     "hyperparameter rule sets (hparams='mup_transfer' sets model.mup_base_width=64 for run "
     "shape-d96-L3-D8e6); remove it where it is set (the sweep file or the command line), or "
     "use hparams='fixed'"),
    # A size's own rate was stacked on µP's width scaling: the sizes share one under the rule.
    ("mup_transfer", "--config.size_overrides.d96-L3.optim.lr=0.001",
     "config.size_overrides.d96-L3.optim.lr=0.001 is not allowed: unset with "
     "hparams='mup_transfer', whose runs share one learning rate (tuned at the smallest width; "
     "µP scales it by width): set overrides.optim.lr instead"),
])
def test_a_field_the_hyperparameter_rule_sets_is_not_overridden_silently(tmp_path, capsys, rule,
                                                                         override, message):
    # The rule's value replaced the one given, without a word.
    path = write_sweep_config(tmp_path / "sweep.py", **{**MODEL_CHANGING, "hparams": rule})
    code = sweep_module.main(["--config", str(path), "--workdir", str(tmp_path / "w"),
                              "--dry-run", override])
    assert (code, capsys.readouterr().err) == (2, f"scaling-sweep: error: {message}\n")


def test_fixed_keeps_a_warmup_of_zero(tmp_path):
    # `fixed` gives min(the run's warmup, steps / 10): 0 stays 0 (it became 1, a first step at
    # learning rate 0).
    _, runs = _plan(tmp_path, overrides={**MODEL_CHANGING["overrides"],
                                         "optim": {"warmup_steps": 0}})
    assert {run.config.optim.warmup_steps for run in runs} == {0}


def test_porian2024_counts_the_read_out_in_n_as_the_paper_does(tmp_path):
    # Porian et al.'s N is the non-embedding parameters plus the read-out (vocabulary × d_model);
    # the warmup is N tokens, the learning rate lr_base · (N / reference)^-exponent, β2 0.99.
    path = tmp_path / "sweep.py"
    path.write_text(
        "from launch.plans import default_sweep\n\ndef get_config():\n"
        "    sweep = default_sweep()\n    sweep.name = 'p'\n"
        f"    sweep.base_config = {str(REPO / 'configs' / 'demo.py')!r}\n"
        "    sweep.family = 'cpu_demo'\n    sweep.sizes = 'd16-L2,d64-L2'\n"
        "    sweep.plan = 'tokens'\n    sweep.tokens = 2_000_000\n"
        "    sweep.hparams = 'porian2024'\n    sweep.lr_exponent = 0.3\n"
        "    sweep.reference_params = 10_000\n"
        "    sweep.overrides = {'optim': {'lr': 0.01}, 'train': {'batch_size': 8}}\n"
        "    return sweep\n")
    sweep = load_config(str(path))
    runs = {run.size: run for run in plans.expand(sweep, plans.resolve_base_config(
        sweep.base_config, str(path)))}
    # Byte vocabulary 257; batches of 8 rows of 128 tokens.
    for size, non_embedding, width in (("d16-L2", 6224, 16), ("d64-L2", 98624, 64)):
        run = runs[size]
        assert run.non_embedding_params == non_embedding
        n = non_embedding + 257 * width  # 10,336 and 115,072
        assert run.overrides["optim.warmup_steps"] == -(-n // 1024)  # 11 and 113
        assert run.overrides["optim.lr"] == pytest.approx(0.01 * (n / 10_000) ** -0.3)
        assert run.overrides["optim.b2"] == 0.99


def test_porian2024_counts_the_warmup_in_the_corpus_tokens_a_step_reads(tmp_path):
    # A seq2seq step reads 8 rows of a 128-token source and a 128-token target: 2,048 corpus
    # tokens, in which D is counted. Counted as rows × seq_len (1,024), the warmup was two
    # parameter counts long.
    (tmp_path / "pairs.tsv").write_text("a source\ta target\n" * 50)
    path = tmp_path / "sweep.py"
    path.write_text(
        "from launch.plans import default_sweep\n\ndef get_config():\n"
        "    sweep = default_sweep()\n    sweep.name = 'p'\n"
        f"    sweep.base_config = {str(REPO / 'configs' / 'demo.py')!r}\n"
        "    sweep.family = 'cpu_demo'\n    sweep.sizes = 'd64-L2'\n"
        "    sweep.plan = 'tokens'\n    sweep.tokens = 2_000_000\n"
        "    sweep.hparams = 'porian2024'\n"
        "    sweep.overrides = {'train': {'batch_size': 8, 'objective': 'seq2seq'},\n"
        "                       'model': {'layout': 'encoder_decoder'},\n"
        "                       'data': {'dataset': 'text_pairs', 'seq_len': 128, 'target_len': 128,\n"
        f"                                'files': {str(tmp_path / 'pairs.tsv')!r}}}}}\n"
        "    return sweep\n")
    sweep = load_config(str(path))
    [run] = plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))
    n = run.non_embedding_params + 257 * 64
    assert run.tokens == 2048 * run.steps
    assert run.overrides["optim.warmup_steps"] == -(-n // 2048)


def test_mup_transfer_takes_its_base_width_from_the_widths_the_sizes_train_at(tmp_path):
    # A size_overrides entry narrowing the smallest size: its width is the base whose tuned
    # learning rate the others reuse (the family's width for it, 64, gave the narrowest model
    # hidden rates four times its own).
    path = write_sweep_config(tmp_path / "sweep.py", **MODEL_CHANGING)
    sweep = load_config(str(path))
    sweep.hparams = "mup_transfer"
    smallest = sweep.sizes.split(",")[0]
    sweep.size_overrides = {smallest: {"model": {"d_model": 16, "head_dim": 8, "d_ff": 64}}}
    runs = plans.expand(sweep, plans.resolve_base_config(sweep.base_config, str(path)))
    assert {run.config.model.mup_base_width for run in runs} == {16}
    assert min(run.config.model.d_model for run in runs) == 16

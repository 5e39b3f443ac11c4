"""Model families: shape rules, Chinchilla's Table A9 against the paper's sizes, the CPU demo."""

import dataclasses
import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from conftest import count_parameters
from scaling import config as config_lib
from scaling import families, flops
from scaling import model as model_lib

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "families"


def resolved(overrides, seq_len):
    config = config_lib.default_config()
    config.data.seq_len = seq_len
    return config_lib.model_config(families.set_model_fields(config, overrides))


def test_model_shape_rules():
    assert families.model_shape(12, 768) == dict(num_layers=12, d_model=768, num_heads=12,
                                                 head_dim=64, d_ff=3072)
    assert families.model_shape(1, 32)["num_heads"] == 1  # narrower than one head: a single head
    assert families.depth_for_width(512, aspect_ratio=64) == 8
    with pytest.raises(ValueError, match="head size"):
        families.model_shape(2, 200)  # 3 heads of 64 do not tile 200


def test_chinchilla_table_has_the_papers_fifty_rows():
    rows = families.chinchilla_table_a9()
    assert len(rows) == 50
    assert rows[0] == families.ChinchillaRow(44, 512, 2048, 64, 8, 8)
    assert rows[-1] == families.ChinchillaRow(16183, 5120, 20480, 128, 40, 47)
    assert [row.params_millions for row in rows] == sorted(row.params_millions for row in rows)


@pytest.mark.parametrize("row", families.chinchilla_table_a9(), ids=families.chinchilla_name)
def test_chinchilla_parameter_counts_match_the_paper(row):
    """Our count plus Gopher's relative-position projection (d_model × heads·kv_size per layer, a
    weight our models lack) equals the paper's size. Tolerance: the paper rounds to whole
    millions (±0.5M), plus 0.2% for small terms it does not itemise (relative-position biases,
    norm scales)."""
    counts = flops.parameter_counts(resolved(families.chinchilla_model_overrides(row), 2048))
    relative_position = row.n_layers * row.d_model * row.n_heads * row.kv_size
    paper = row.params_millions * 1e6
    assert abs(counts.total + relative_position - paper) <= 0.5e6 + 0.002 * paper


def test_chinchilla_44m_tree_matches_the_formula():
    cfg = resolved(families.chinchilla_model_overrides(families.chinchilla_table_a9()[0]), 2048)
    tokens = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: model_lib.Transformer(cfg).init(jax.random.key(0), tokens))
    assert count_parameters(shapes) == flops.parameter_counts(cfg).total


def test_cpu_demo_family_spans_thirty_times_in_non_embedding_parameters():
    members = families.cpu_demo_family()
    assert len(members) >= 5
    counts = [flops.parameter_counts(resolved(overrides, 128)).non_embedding for _, overrides in members]
    assert counts == sorted(counts) and counts[-1] >= 30 * counts[0]
    for _, overrides in members:
        cfg = resolved(overrides, 128)
        assert cfg.vocab_size == 257 and cfg.max_seq_len == 128
        assert cfg.num_heads * cfg.head_dim == cfg.d_model


@pytest.mark.parametrize("file,arg,expected", [
    ("chinchilla.py", "chinchilla-106M", dict(d_model=640, num_layers=16, num_heads=10, d_ff=2560)),
    ("chinchilla.py", None, dict(d_model=512, num_layers=8)),
    ("cpu_demo.py", "d64-L2", dict(d_model=64, num_layers=2, vocab_size=257)),
    ("cpu_demo.py", None, dict(d_model=8, num_layers=2, num_heads=1)),
])
def test_config_files(file, arg, expected):
    get_config = runpy.run_path(str(CONFIGS / file))["get_config"]
    config = get_config(arg) if arg else get_config()
    for field, value in expected.items():
        assert config.model[field] == value
    assert dataclasses.is_dataclass(config_lib.model_config(config))
    if file == "cpu_demo.py":
        assert config.data.seq_len == 128 and config.data.tokenizer == "byte"


@pytest.mark.parametrize("file", ["chinchilla.py", "cpu_demo.py"])
def test_config_files_reject_unknown_sizes_listing_the_names(file):
    get_config = runpy.run_path(str(CONFIGS / file))["get_config"]
    with pytest.raises(ValueError, match="allowed: .*-"):
        get_config("no-such-size")

"""Model families: shapes derived from (depth, width), Chinchilla's Table A9, and the CPU demo.

A family member is a dict of `config.model` field overrides. The rules that turn a width and a
depth into a full shape:

- heads: `num_heads = max(1, width // head_size)` (head size 64 by default, as in GPT-2/3 and
  Chinchilla's small models), and `head_dim = width // num_heads`, so heads·head_dim = width.
- feed-forward: `d_ff = 4 · width` (the ReLU/GELU convention; SwiGLU families pass `ffn` and leave
  d_ff to `scaling.config.default_d_ff`).
- depth from width at a fixed aspect ratio: `depth = max(1, round(width / aspect_ratio))`. Kaplan
  et al. found loss nearly flat over width/depth from ~20 to ~200; Chinchilla's models sit at
  ~64–110.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_HEAD_SIZE = 64
DEFAULT_ASPECT_RATIO = 64

CHINCHILLA_VOCAB_SIZE = 32_000
CHINCHILLA_SEQ_LEN = 2048
BYTE_VOCAB_SIZE = 257
CPU_DEMO_SEQ_LEN = 128


def model_shape(depth: int, width: int, head_size: int = DEFAULT_HEAD_SIZE) -> dict:
    """`config.model` overrides for a model `depth` layers deep and `width` (= d_model) wide."""
    num_heads = max(1, width // head_size)
    if width % num_heads:
        raise ValueError(f"width={width} is not a multiple of num_heads={num_heads} "
                         f"(head_size={head_size}); choose a width divisible by the head size")
    return dict(num_layers=depth, d_model=width, num_heads=num_heads, head_dim=width // num_heads,
                d_ff=4 * width)


def depth_for_width(width: int, aspect_ratio: float = DEFAULT_ASPECT_RATIO) -> int:
    """Number of layers for `width` at `aspect_ratio` = width / depth."""
    return max(1, round(width / aspect_ratio))


class ChinchillaRow(NamedTuple):
    """One row of Hoffmann et al. (2022), Table A9: the paper's parameter count (millions) and
    shape. `kv_size` is the per-head size; `n_heads · kv_size` need not equal `d_model`."""

    params_millions: int
    d_model: int
    ffw_size: int
    kv_size: int
    n_heads: int
    n_layers: int


_TABLE_A9 = (
    (44, 512, 2048, 64, 8, 8), (57, 576, 2304, 64, 9, 9), (74, 640, 2560, 64, 10, 10),
    (90, 640, 2560, 64, 10, 13), (106, 640, 2560, 64, 10, 16), (117, 768, 3072, 64, 12, 12),
    (140, 768, 3072, 64, 12, 15), (163, 768, 3072, 64, 12, 18), (175, 896, 3584, 64, 14, 14),
    (196, 896, 3584, 64, 14, 16), (217, 896, 3584, 64, 14, 18), (251, 1024, 4096, 64, 16, 16),
    (278, 1024, 4096, 64, 16, 18), (306, 1024, 4096, 64, 16, 20), (425, 1280, 5120, 128, 10, 18),
    (489, 1280, 5120, 128, 10, 21), (509, 1408, 5632, 128, 11, 18), (552, 1280, 5120, 128, 10, 24),
    (587, 1408, 5632, 128, 11, 21), (632, 1536, 6144, 128, 12, 19), (664, 1408, 5632, 128, 11, 24),
    (724, 1536, 6144, 128, 12, 22), (816, 1536, 6144, 128, 12, 25), (893, 1792, 7168, 128, 14, 20),
    (1018, 1792, 7168, 128, 14, 23), (1143, 1792, 7168, 128, 14, 26),
    (1266, 2048, 8192, 128, 16, 22), (1424, 2176, 8704, 128, 17, 22),
    (1429, 2048, 8192, 128, 16, 25), (1593, 2048, 8192, 128, 16, 28),
    (1609, 2176, 8704, 128, 17, 25), (1731, 2304, 9216, 128, 18, 24),
    (1794, 2176, 8704, 128, 17, 28), (2007, 2304, 9216, 128, 18, 28),
    (2283, 2304, 9216, 128, 18, 32), (2298, 2560, 10240, 128, 20, 26),
    (2639, 2560, 10240, 128, 20, 30), (2980, 2560, 10240, 128, 20, 34),
    (3530, 2688, 10752, 128, 22, 36), (3802, 2816, 11264, 128, 22, 36),
    (4084, 2944, 11776, 128, 22, 36), (4516, 3072, 12288, 128, 24, 36),
    (6796, 3584, 14336, 128, 28, 40), (9293, 4096, 16384, 128, 32, 42),
    (11452, 4352, 17408, 128, 32, 47), (12295, 4608, 18432, 128, 36, 44),
    (12569, 4608, 18432, 128, 32, 47), (13735, 4864, 19456, 128, 32, 47),
    (14940, 4992, 19968, 128, 32, 49), (16183, 5120, 20480, 128, 40, 47),
)


def chinchilla_table_a9() -> list[ChinchillaRow]:
    """The 50 model shapes of Chinchilla's Table A9 (44M to 16B parameters), smallest first.

    The paper's counts include a 32,000-token embedding counted once and, per layer, the
    Transformer-XL relative-position projection (d_model × n_heads·kv_size) of Gopher's
    architecture, which this codebase's models do not have.
    """
    return [ChinchillaRow(*row) for row in _TABLE_A9]


def chinchilla_name(row: ChinchillaRow) -> str:
    """"chinchilla-44M", ..., "chinchilla-1018M", ... (the paper's size in millions)."""
    return f"chinchilla-{row.params_millions}M"


def chinchilla_model_overrides(row: ChinchillaRow) -> dict:
    """`config.model` overrides for a Table A9 row: the paper's shape with RMSNorm and a GELU MLP;
    RoPE stands in for the relative positional encoding."""
    return dict(num_layers=row.n_layers, d_model=row.d_model, num_heads=row.n_heads,
                head_dim=row.kv_size, d_ff=row.ffw_size, ffn="gelu", norm="rmsnorm",
                position="rope", vocab_size=CHINCHILLA_VOCAB_SIZE, tie_embeddings=True,
                max_seq_len=CHINCHILLA_SEQ_LEN)


def chinchilla_family() -> list[tuple[str, dict]]:
    """Every Table A9 row as (name, model overrides)."""
    return [(chinchilla_name(row), chinchilla_model_overrides(row)) for row in chinchilla_table_a9()]


# (width, depth) of the CPU demo, smallest first: width // 32 heads, at least one (d48 has one of
# 48), 1.6k to 1.2M non-embedding parameters (780x), each a minute or two of training on two CPU
# cores. The two-layer widths 8–96 are the demo's ladder: one depth, so that width is all that
# changes (and the learning rate with it, 0.24/width; configs/sweeps/demo.py).
_CPU_DEMO_SHAPES = ((8, 2), (16, 1), (16, 2), (32, 1), (32, 2), (48, 2), (64, 2), (96, 2), (96, 3),
                    (128, 4), (160, 4))
CPU_DEMO_HEAD_SIZE = 32


def cpu_demo_family() -> list[tuple[str, dict]]:
    """The CPU demo family: [(name "d{width}-L{depth}", model overrides)], smallest first.

    Shapes only, with the byte vocabulary (257 tokens) and 128-token context; the architecture
    (the defaults' pre-norm RMSNorm, GELU MLP, RoPE) is the base config's, so a sweep's overrides
    can change it for every size.
    """
    members = []
    for width, depth in _CPU_DEMO_SHAPES:
        overrides = model_shape(depth, width, CPU_DEMO_HEAD_SIZE)
        overrides.update(vocab_size=BYTE_VOCAB_SIZE, max_seq_len=CPU_DEMO_SEQ_LEN)
        members.append((f"d{width}-L{depth}", overrides))
    return members


def set_model_fields(config, overrides: dict):
    """Set each `config.model` field in `overrides`; returns the config for chaining."""
    for field, value in overrides.items():
        config.model[field] = value
    return config

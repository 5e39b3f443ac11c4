"""Logical axis names: what each array dimension means, declared once.

The model names every weight's and activation's dimensions with these; `scaling.parallel` maps
them to mesh axes, and `scaling.optim` reads them to decide weight decay and µP learning rates.

Shape suffixes on array names inside the model use one letter per dimension:

    B batch · L query length · S key/source length · D model width (embed) · H query heads ·
    G key/value heads (groups) · K head size · F feed-forward width (mlp) · V vocabulary ·
    P positions (table rows) · N layers · C micro-batches
so `q_BxLxHxK` is [batch, length, heads, head size].
"""

# Weight dimensions.
EMBED = "embed"  # the model width D
MLP = "mlp"  # the feed-forward width F
HEADS = "heads"  # query heads H
KV_HEADS = "kv_heads"  # key/value heads G
HEAD_DIM = "head_dim"  # head size K
VOCAB = "vocab"  # the vocabulary V
POSITION = "position"  # rows of a learned position table
LAYERS = "layers"  # the stacked-layers dimension of a scanned block

# Activation dimensions.
BATCH = "batch"
LENGTH = "length"
ACT_EMBED = "act_embed"
ACT_MLP = "act_mlp"
ACT_HEADS = "act_heads"
ACT_KV_HEADS = "act_kv_heads"
ACT_VOCAB = "act_vocab"

# Dimensions that grow with the model's width (µP); heads × head size counts as one.
WIDTH = (EMBED, MLP)
HEAD = (HEADS, KV_HEADS, HEAD_DIM)

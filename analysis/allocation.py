"""Compute-optimal allocation from a fitted L(N, D) = E + A/N^alpha + B/D^beta (Approach 3).

Minimising L under C = 6·N·D gives, in closed form (Hoffmann et al., Appendix D.2):
N_opt(C) = G·(C/6)^a and D_opt(C) = G^-1·(C/6)^b with G = (alpha·A / (beta·B))^(1/(alpha+beta)),
a = beta/(alpha+beta) and b = alpha/(alpha+beta). Along that frontier the loss is itself a power
law in compute: L_opt(C) = E + K·C^-gamma with gamma = alpha·beta/(alpha+beta) and
K = (A·G^-alpha + B·G^beta)·6^gamma. C here is 6·N·D, whatever FLOP convention the data used;
`allocation_at_flops` finds N_opt at C in another convention. All functions are elementwise
over parameter samples.
"""

from __future__ import annotations

import numpy as np


def allocation_exponents(alpha, beta):
    """(a, b): N_opt ∝ C^a with a = beta/(alpha+beta), D_opt ∝ C^b with b = alpha/(alpha+beta)."""
    return beta / (alpha + beta), alpha / (alpha + beta)


def allocation_coefficient(A, B, alpha, beta):
    """G = (alpha·A / (beta·B))^(1/(alpha+beta)), so that N_opt(C) = G·(C/6)^a."""
    return np.power(alpha * A / (beta * B), 1.0 / (alpha + beta))


def optimal_params(C, A, B, alpha, beta):
    """Loss-minimising parameter count N_opt at compute C = 6ND (FLOPs)."""
    a, _ = allocation_exponents(alpha, beta)
    return allocation_coefficient(A, B, alpha, beta) * np.power(np.asarray(C, dtype=float) / 6.0, a)


def optimal_tokens(C, A, B, alpha, beta):
    """Token count D_opt = C / (6·N_opt) at compute C (FLOPs)."""
    return np.asarray(C, dtype=float) / (6.0 * optimal_params(C, A, B, alpha, beta))


def optimal_loss_law(A, B, alpha, beta):
    """(K, gamma) of the compute-optimal loss L_opt(C) = E + K·C^-gamma."""
    gamma = alpha * beta / (alpha + beta)
    G = allocation_coefficient(A, B, alpha, beta)
    return (A * np.power(G, -alpha) + B * np.power(G, beta)) * np.power(6.0, gamma), gamma




def allocation_at_flops(C, A, B, alpha, beta, c, s):
    """(N_opt, D_opt, a, b) when a model of N parameters costs 6·c·N^(1+s) FLOPs per token
    (another FLOP convention than 6N: `c`·N^`s` is its FLOPs over 6·N·D). Minimising L under
    C = 6·c·N^(1+s)·D gives N_opt^(alpha + beta·(1+s)) = alpha·A / (beta·(1+s)·B) · (C/(6c))^beta,
    so N_opt ∝ C^a with a = beta / (alpha + beta·(1+s)) and D_opt ∝ C^b with b = alpha / (alpha +
    beta·(1+s)); c = 1, s = 0 is the closed form above. NaN where 1 + s <= 0 (no optimum)."""
    C = np.asarray(C, dtype=float)
    growth = 1.0 + s
    if growth <= 0:
        nan = np.full_like(C, np.nan)
        return nan, nan, np.nan, np.nan
    total = alpha + beta * growth
    params = np.power(alpha * A / (beta * growth * B) * np.power(C / (6.0 * c), beta), 1.0 / total)
    return params, C / (6.0 * c * np.power(params, growth)), beta / total, alpha / total

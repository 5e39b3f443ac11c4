"""Scaling-law forms, written in log space so that they can be fitted by `analysis.fit`.

Every law predicts the log of the loss (nats/token) from the logs of its variables, as a
log-sum-exp of terms that are linear in the fitted parameters. Working in log space keeps every
parameter unconstrained (A = e^a, B = e^b, E = e^e) and keeps the prediction finite for any
parameter value, which is what lets an optimiser start far from the answer.

Variables: `C` = training FLOPs, `N` = parameters, `D` = training tokens, `U` = unique tokens
(D > U when data are repeated).

| law | formula | fitted parameters | reported parameters |
| --- | --- | --- | --- |
| compute | L = E + A·C^-alpha | a, alpha, e | E, A, alpha |
| n | L = E + A/N^alpha | a, alpha, e | E, A, alpha |
| d | L = E + B/D^beta | b, beta, e | E, B, beta |
| chinchilla | L = E + A/N^alpha + B/D^beta | a, alpha, b, beta, e | E, A, B, alpha, beta |
| kaplan | L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D | c_n, ratio, c_d, alpha_D | N_c, D_c, alpha_N, alpha_D |
| overtraining | L = E + (a·M^eta + b·M^-eta)·C^-eta, M = D/(20N), C = 6ND | log a, eta, log b, e | E, a, b, eta |
| data_constrained | L = E + A/N^alpha + B/D'^beta, D' = U + U·R*·(1 − e^(−(D/U − 1)/R*)) | a, alpha, b, beta, e, log R* | E, A, B, alpha, beta, R_star |

For the Kaplan form, c_n = ratio·log N_c, c_d = log D_c and ratio = alpha_N/alpha_D, so that
log L = alpha_D·LSE(c_n - ratio·log N, c_d - log D).

The over-training form is Gadre et al. (2024)'s, with M the token multiplier (20 tokens per
parameter is M = 1). Written in N and D it is Chinchilla's form with one exponent for both terms,
A/N^(2·eta) + B/D^(2·eta) with A = a·120^-eta and B = b·(10/3)^eta, which is how it is fitted.

`formula_law` builds a law from its formula alone, with gradients from `jax.grad` (Muennighoff
et al. (2023)'s data-constrained form, with D' the effective data of D tokens drawn from U unique
ones, and the recipe comparison's joint law are built so). The forms above have hand-written
gradients because they are fitted most often and the NumPy ones measured 4× as fast over a
4,500-start grid (2.25 s against 9.17 s, BENCHMARKS.md `fit`); tests check each against its
formula's automatic gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

Pullback = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Law:
    """One law form.

    `log_prediction(theta_SxP, log_x_VxN)` returns the predicted log loss, shape (S, N), for S
    parameter vectors at once, and its pullback: a function mapping a cotangent of shape (S, N) to
    Σ_n cotangent·∂prediction/∂theta, shape (S, P). Row v of `log_x` is the log of
    `variables[v]` at each of the N points.
    `shift(theta_SxP, log_x_offset_V)` returns the parameters that give the same predictions when
    every log variable is increased by `log_x_offset` (used to fit on centred data).
    `natural(theta_SxP)` maps fitted parameters to the reported ones, each of shape (S,).
    `centred` says which variables the fit centres (all when None): a variable that enters the
    formula other than through a power law (a ratio of two variables, say) is left as it is, and
    `shift` only ever sees zero offsets for it. `start_grid()`, when given, returns the fit's
    starts in the original variables.
    """

    name: str
    formula: str
    variables: tuple[str, ...]
    fit_params: tuple[str, ...]
    reported_params: tuple[str, ...]
    log_prediction: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Pullback]]
    shift: Callable[[np.ndarray, np.ndarray], np.ndarray]
    natural: Callable[[np.ndarray], dict[str, np.ndarray]]
    centred: tuple[bool, ...] | None = None
    start_grid: Callable[[], np.ndarray] | None = None

    @property
    def num_params(self) -> int:
        return len(self.fit_params)

    def centre(self, log_x_VxN: np.ndarray) -> np.ndarray:
        """The offsets a fit subtracts from each log variable (its mean, or 0 where not centred)."""
        centre = np.asarray(log_x_VxN, dtype=float).mean(axis=1)
        return centre if self.centred is None else np.where(self.centred, centre, 0.0)


def _log_sum_exp(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """log Σ_k exp(terms[k]) and the softmax weights of each term, computed stably; the terms
    broadcast to one shape."""
    largest = terms[0]
    for term in terms[1:]:
        largest = np.maximum(largest, term)
    exps = [np.exp(term - largest) for term in terms]
    total = exps[0]
    for term_exp in exps[1:]:
        total = total + term_exp
    inverse_total = 1.0 / total
    return largest + np.log(total), [term_exp * inverse_total for term_exp in exps]


def _power_law_sum(terms: tuple[tuple[int, int, int], ...], constant_index: int):
    """Build `log_prediction` and `shift` for log L = LSE(theta_c, theta_i - theta_j·log x_v, ...).

    `terms` holds (intercept index i, exponent index j, variable row v) per power-law term;
    `constant_index` is the index of e = log E.
    """

    def log_prediction(theta_SxP, log_x_VxN):
        theta_SxP = np.atleast_2d(theta_SxP)
        columns = [theta_SxP[:, i, None] - theta_SxP[:, j, None] * log_x_VxN[v] for i, j, v in terms]
        log_loss_SxN, weights = _log_sum_exp(columns + [theta_SxP[:, constant_index, None]])

        def pullback(cotangent_SxN):
            grad_SxP = np.zeros((cotangent_SxN.shape[0], theta_SxP.shape[1]))
            # Assigned, not accumulated: every term has its own intercept and exponent.
            for k, (i, j, v) in enumerate(terms):
                weighted = cotangent_SxN * weights[k]
                grad_SxP[:, i] = weighted.sum(axis=1)
                grad_SxP[:, j] = -(weighted @ log_x_VxN[v])
            grad_SxP[:, constant_index] = (cotangent_SxN * weights[-1]).sum(axis=1)
            return grad_SxP

        return log_loss_SxN, pullback

    def shift(theta_SxP, log_x_offset_V):
        shifted = np.array(theta_SxP, dtype=float, copy=True)
        for i, j, v in terms:
            # a - alpha·(log x + offset) = (a - alpha·offset) - alpha·log x
            shifted[..., i] = shifted[..., i] - shifted[..., j] * log_x_offset_V[v]
        return shifted

    return log_prediction, shift


def _bucket(size: int) -> int:
    """The next power of 8, at least 64: batches are padded to it so that three or four
    compilations of a law serve every batch size of a fit (one compilation takes seconds;
    evaluating even thousands of padded rows takes milliseconds)."""
    bucket = 64
    while bucket < size:
        bucket *= 8
    return bucket


def autodiff_log_prediction(log_loss: Callable) -> Callable:
    """`Law.log_prediction` for a law given only as `log_loss(theta_P, log_x_V) -> log L` at one
    point (written with jax.numpy): predictions and their gradients with respect to theta come
    from `jax.grad`, evaluated for every (parameter vector, point) pair in one compiled call, in
    float64. The batch of parameter vectors is padded (`_bucket`) so that the many batch sizes of
    a fit share a few compilations."""
    compiled = {}

    def value_and_jacobian():
        if "fn" not in compiled:
            import jax

            per_point = jax.value_and_grad(log_loss)
            over_points = jax.vmap(per_point, in_axes=(None, 1))
            compiled["fn"] = jax.jit(jax.vmap(over_points, in_axes=(0, None)))
        return compiled["fn"]

    def log_prediction(theta_SxP, log_x_VxN):
        import jax

        theta_SxP = np.atleast_2d(np.asarray(theta_SxP, dtype=float))
        rows = theta_SxP.shape[0]
        padded = np.zeros((_bucket(rows), theta_SxP.shape[1]))
        padded[:rows] = theta_SxP
        with jax.enable_x64(True):
            value, jacobian = value_and_jacobian()(padded, np.asarray(log_x_VxN, dtype=float))
            value_SxN = np.asarray(value)[:rows]
            jacobian_SxNxP = np.asarray(jacobian)[:rows]

        def pullback(cotangent_SxN):
            return np.einsum("sn,snp->sp", cotangent_SxN, jacobian_SxNxP)

        return value_SxN, pullback

    return log_prediction


def formula_law(*, name: str, formula: str, variables: tuple[str, ...], fit_params: tuple[str, ...],
                reported_params: tuple[str, ...], log_loss: Callable, shift: Callable,
                natural: Callable, centred: tuple[bool, ...] | None = None,
                start_grid: Callable[[], np.ndarray] | None = None) -> Law:
    """A law from its formula: `log_loss(theta_P, log_x_V)` gives log L at one point from the fitted
    parameters and the logs of `variables` (jax.numpy operations only); gradients are derived."""
    return Law(name=name, formula=formula, variables=variables, fit_params=fit_params,
               reported_params=reported_params, log_prediction=autodiff_log_prediction(log_loss),
               shift=shift, natural=natural, centred=centred, start_grid=start_grid)


def _single_term_law(name: str, variable: str, coefficient: str, exponent: str) -> Law:
    log_prediction, shift = _power_law_sum(((0, 1, 0),), constant_index=2)
    return Law(
        name=name,
        formula=f"L = E + {coefficient}·{variable}^-{exponent}",
        variables=(variable,),
        fit_params=(coefficient.lower(), exponent, "e"),
        reported_params=("E", coefficient, exponent),
        log_prediction=log_prediction,
        shift=shift,
        natural=lambda theta: {"E": np.exp(theta[..., 2]), coefficient: np.exp(theta[..., 0]),
                               exponent: theta[..., 1]},
    )


def _chinchilla() -> Law:
    log_prediction, shift = _power_law_sum(((0, 1, 0), (2, 3, 1)), constant_index=4)
    return Law(
        name="chinchilla",
        formula="L = E + A/N^alpha + B/D^beta",
        variables=("N", "D"),
        fit_params=("a", "alpha", "b", "beta", "e"),
        reported_params=("E", "A", "B", "alpha", "beta"),
        log_prediction=log_prediction,
        shift=shift,
        natural=lambda theta: {"E": np.exp(theta[..., 4]), "A": np.exp(theta[..., 0]),
                               "B": np.exp(theta[..., 2]), "alpha": theta[..., 1],
                               "beta": theta[..., 3]},
    )


def _kaplan_log_prediction(theta_SxP, log_x_VxN):
    theta_SxP = np.atleast_2d(theta_SxP)
    c_n, ratio, c_d, alpha_d = (theta_SxP[:, k, None] for k in range(4))
    log_n, log_d = log_x_VxN
    lse_SxN, (weight_n, weight_d) = _log_sum_exp([c_n - ratio * log_n, c_d - log_d])

    def pullback(cotangent_SxN):
        scaled_n = cotangent_SxN * alpha_d * weight_n
        return np.stack([scaled_n.sum(axis=1), -(scaled_n @ log_n),
                         (cotangent_SxN * alpha_d * weight_d).sum(axis=1),
                         (cotangent_SxN * lse_SxN).sum(axis=1)], axis=1)

    return alpha_d * lse_SxN, pullback


def _kaplan_shift(theta_SxP, log_x_offset_V):
    shifted = np.array(theta_SxP, dtype=float, copy=True)
    shifted[..., 0] -= shifted[..., 1] * log_x_offset_V[0]
    shifted[..., 2] -= log_x_offset_V[1]
    return shifted


def _kaplan() -> Law:
    return Law(
        name="kaplan",
        formula="L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
        variables=("N", "D"),
        fit_params=("c_n", "ratio", "c_d", "alpha_D"),
        reported_params=("N_c", "D_c", "alpha_N", "alpha_D"),
        log_prediction=_kaplan_log_prediction,
        shift=_kaplan_shift,
        natural=lambda theta: {"N_c": np.exp(theta[..., 0] / theta[..., 1]),
                               "D_c": np.exp(theta[..., 2]),
                               "alpha_N": theta[..., 1] * theta[..., 3], "alpha_D": theta[..., 3]},
    )


# Gadre et al. (2024): M = D / (20·N) and C = 6·N·D, so a·M^eta·C^-eta = a·120^-eta·N^(-2·eta)
# and b·M^-eta·C^-eta = b·(10/3)^eta·D^(-2·eta).
_OVERTRAINING_N_OFFSET = np.log(120.0)
_OVERTRAINING_D_OFFSET = np.log(10.0 / 3.0)


def overtraining_log_loss(theta_P, log_x_V):
    """log L of Gadre et al.'s form at one point, parameters (log a, eta, log b, e), written with
    jax.numpy: the formula `formula_law` derives gradients from (tests check the hand-written
    gradients of `_overtraining_log_prediction` against it)."""
    import jax.numpy as jnp

    log_a, eta, log_b, e = theta_P[0], theta_P[1], theta_P[2], theta_P[3]
    log_n, log_d = log_x_V[0], log_x_V[1]
    return jnp.logaddexp(e, jnp.logaddexp(log_a - eta * _OVERTRAINING_N_OFFSET - 2.0 * eta * log_n,
                                          log_b + eta * _OVERTRAINING_D_OFFSET - 2.0 * eta * log_d))


def _overtraining_log_prediction(theta_SxP, log_x_VxN):
    theta_SxP = np.atleast_2d(theta_SxP)
    log_a, eta, log_b, e = (theta_SxP[:, k, None] for k in range(4))
    log_n, log_d = log_x_VxN
    slope_n = -_OVERTRAINING_N_OFFSET - 2.0 * log_n
    slope_d = _OVERTRAINING_D_OFFSET - 2.0 * log_d
    log_loss, (weight_n, weight_d, weight_e) = _log_sum_exp(
        [log_a + eta * slope_n, log_b + eta * slope_d, e])

    def pullback(cotangent_SxN):
        along_n, along_d = cotangent_SxN * weight_n, cotangent_SxN * weight_d
        return np.stack([along_n.sum(axis=1), along_n @ slope_n + along_d @ slope_d,
                         along_d.sum(axis=1), (cotangent_SxN * weight_e).sum(axis=1)], axis=1)

    return log_loss, pullback


def _overtraining_shift(theta_SxP, log_x_offset_V):
    shifted = np.array(theta_SxP, dtype=float, copy=True)
    shifted[..., 0] -= 2.0 * shifted[..., 1] * log_x_offset_V[0]
    shifted[..., 2] -= 2.0 * shifted[..., 1] * log_x_offset_V[1]
    return shifted


def _overtraining() -> Law:
    return Law(
        name="overtraining",
        formula="L = E + (a·M^eta + b·M^-eta)·C^-eta, M = D/(20N), C = 6ND",
        variables=("N", "D"),
        fit_params=("log_a", "eta", "log_b", "e"),
        reported_params=("E", "a", "b", "eta"),
        log_prediction=_overtraining_log_prediction,
        shift=_overtraining_shift,
        natural=lambda theta: {"E": np.exp(theta[..., 3]), "a": np.exp(theta[..., 0]),
                               "b": np.exp(theta[..., 2]), "eta": theta[..., 1]},
    )


def _data_constrained_log_loss(theta_P, log_x_V):
    """log L of Muennighoff et al. (2023)'s form with repeated data, at one point; parameters
    (a, alpha, b, beta, e, log R*), variables (N, D, U)."""
    import jax.numpy as jnp

    a, alpha, b, beta, e, log_r_star = (theta_P[k] for k in range(6))
    log_n, log_d, log_u = log_x_V[0], log_x_V[1], log_x_V[2]
    log_unique = jnp.minimum(log_u, log_d)
    repeats = jnp.exp(log_d - log_unique) - 1.0
    r_star = jnp.exp(log_r_star)
    log_effective = log_unique + jnp.log1p(r_star * -jnp.expm1(-repeats / r_star))
    return jnp.logaddexp(e, jnp.logaddexp(a - alpha * log_n, b - beta * log_effective))


def _data_constrained_shift(theta_SxP, log_x_offset_V):
    # Only N is centred (D and U enter through their ratio).
    shifted = np.array(theta_SxP, dtype=float, copy=True)
    shifted[..., 0] -= shifted[..., 1] * log_x_offset_V[0]
    return shifted


def _data_constrained_grid() -> np.ndarray:
    """Chinchilla's grid (every sixth start) times R* ∈ {5, 15, 50}: 2,250 starts, in the original
    variables."""
    import itertools

    coefficients, exponents = np.arange(0.0, 26.0, 5.0), np.arange(0.0, 2.01, 0.5)
    irreducible = np.arange(-1.0, 1.01, 0.5)
    base = np.array(list(itertools.product(coefficients, exponents, coefficients, exponents,
                                           irreducible)))[::6]
    return np.array([list(row) + [np.log(r_star)] for row in base for r_star in (5.0, 15.0, 50.0)])


def _data_constrained() -> Law:
    return formula_law(
        name="data_constrained",
        formula="L = E + A/N^alpha + B/D'^beta, D' = U + U·R*·(1 - exp(-(D/U - 1)/R*))",
        variables=("N", "D", "U"),
        fit_params=("a", "alpha", "b", "beta", "e", "log_r_star"),
        reported_params=("E", "A", "B", "alpha", "beta", "R_star"),
        log_loss=_data_constrained_log_loss,
        shift=_data_constrained_shift,
        natural=lambda theta: {"E": np.exp(theta[..., 4]), "A": np.exp(theta[..., 0]),
                               "B": np.exp(theta[..., 2]), "alpha": theta[..., 1],
                               "beta": theta[..., 3], "R_star": np.exp(theta[..., 5])},
        centred=(True, False, False),
        start_grid=_data_constrained_grid,
    )


LAWS: dict[str, Law] = {
    "compute": _single_term_law("compute", "C", "A", "alpha"),
    "n": _single_term_law("n", "N", "A", "alpha"),
    "d": _single_term_law("d", "D", "B", "beta"),
    "chinchilla": _chinchilla(),
    "kaplan": _kaplan(),
    "overtraining": _overtraining(),
    "data_constrained": _data_constrained(),
}


def get_law(name: str) -> Law:
    """The law called `name`; a ValueError lists the known ones."""
    if name not in LAWS:
        raise ValueError(f"law={name!r} is not a known law; allowed: {', '.join(LAWS)}")
    return LAWS[name]


def predict_loss(law: Law, theta_P: np.ndarray, variables: dict[str, np.ndarray]) -> np.ndarray:
    """Loss in nats/token predicted by `law` with fitted parameters `theta_P` at the points given
    by `variables` (name → array of positive values, all the same shape)."""
    shapes = {np.shape(variables[v]) for v in law.variables}
    shape = shapes.pop()
    log_x = np.stack([np.log(np.asarray(variables[v], dtype=float)).ravel() for v in law.variables])
    log_loss, _ = law.log_prediction(np.asarray(theta_P, dtype=float)[None], log_x)
    return np.exp(log_loss[0]).reshape(shape)

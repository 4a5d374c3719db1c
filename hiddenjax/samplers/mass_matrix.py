"""Mass-matrix adaptation schemes, each a set of pure functions over a NamedTuple state.

Every scheme is a ``MassMatrixAdaptation``: ``start`` gives the metric to
begin with, ``init`` an empty estimator, ``update`` feeds it one warmup draw
(position and log-density gradient), ``final`` turns it into a ``Metric``.
All accumulators are float64 whatever the position's dtype.

* ``welford_variance`` (``"diag"``): Stan's diagonal, the variance of the
  window's draws shrunk towards ``1e-3``: ``var n/(n+5) + 1e-3 * 5/(n+5)``.
* ``welford_covariance`` (``"dense"``): Stan's dense, the covariance shrunk
  the same way towards ``1e-3 I``.
* ``gradient_variance`` (``"diag_grad"``): the diagonal that minimises the
  Fisher divergence of a Gaussian fit, ``sqrt(var(draws) / var(gradients))``
  per coordinate (exact for any Gaussian with diagonal covariance), as
  nutpie's ``use_grad_based_mass_matrix``; it starts from ``1 / |gradient|``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from hiddenjax.samplers.metrics import Metric, dense_metric, diagonal_metric

__all__ = [
    "ADAPTATIONS",
    "MassMatrixAdaptation",
    "WelfordCovarianceState",
    "WelfordState",
    "gradient_variance",
    "regularize_variance",
    "welford_covariance",
    "welford_variance",
]

# nutpie keeps the gradient-based diagonal within these bounds.
VARIANCE_BOUNDS = (1e-20, 1e20)


class WelfordState(NamedTuple):
    """Welford's running mean and sum of squared deviations (float64)."""

    mean: Array
    """Running mean, shape ``(n,)``."""
    m2: Array
    """Sum of squared deviations from the running mean, shape ``(n,)``."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class WelfordCovarianceState(NamedTuple):
    """Welford's running mean and sum of outer products of deviations (float64)."""

    mean: Array
    """Running mean, shape ``(n,)``."""
    m2: Array
    """Sum of outer products of deviations, shape ``(n, n)``."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class GradientVarianceState(NamedTuple):
    """Running variances of the draws and of their gradients."""

    draws: WelfordState
    """Welford accumulators of the positions."""
    gradients: WelfordState
    """Welford accumulators of the log-density gradients."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class MassMatrixAdaptation(NamedTuple):
    """A mass-matrix adaptation scheme as pure functions."""

    start: Callable
    """``start(position, gradient) -> Metric`` to use before any window ends."""
    init: Callable
    """``init(n_dim) -> state``, empty (also restarts a window)."""
    update: Callable
    """``update(state, position, gradient) -> state``."""
    final: Callable
    """``final(state) -> Metric``; needs ``state.count >= 2`` (callers keep their metric otherwise)."""


def regularize_variance(variance: ArrayLike, count: ArrayLike) -> Array:
    """Stan's shrinkage of a sample variance from ``count`` draws towards ``1e-3``.

    Parameters
    ----------
    variance : array_like
        Sample variance per coordinate (or a covariance matrix's diagonal).
    count : array_like
        Number of draws it came from.

    Returns
    -------
    Array
        ``variance * n / (n + 5) + 1e-3 * 5 / (n + 5)``.
    """
    n = jnp.asarray(count, jnp.float64)
    return jnp.asarray(variance, jnp.float64) * (n / (n + 5.0)) + 1e-3 * (5.0 / (n + 5.0))


def _f64(x: ArrayLike) -> Array:
    return jnp.asarray(x, jnp.float64)


def _welford_init(n_dim: int) -> WelfordState:
    zeros = jnp.zeros((n_dim,), jnp.float64)
    return WelfordState(zeros, zeros, jnp.zeros((), jnp.float64))


def _welford_update(state: WelfordState, x: ArrayLike) -> WelfordState:
    x = _f64(x)
    count = state.count + 1.0
    delta = x - state.mean
    mean = state.mean + delta / count
    return WelfordState(mean, state.m2 + delta * (x - mean), count)


def _sample_variance(state: WelfordState) -> Array:
    """Unbiased variance; NaN below two draws."""
    enough = state.count >= 2.0
    return jnp.where(enough, state.m2 / jnp.where(enough, state.count - 1.0, 1.0), jnp.nan)


def _unit_metric(n_dim: int, rank: int) -> Metric:
    """The identity inverse mass matrix with a (neutral) correction of ``rank`` columns."""
    ones = jnp.ones((n_dim,), jnp.float64)
    return Metric(ones, ones, jnp.zeros((n_dim, rank), jnp.float64), jnp.ones((rank,), jnp.float64))


def _gradient_start(rank: int) -> Callable:
    """nutpie's first metric: variance ``1 / |gradient|`` within the bounds."""

    def start(position: ArrayLike, gradient: ArrayLike) -> Metric:
        variance = jnp.clip(1.0 / jnp.abs(_f64(gradient)), *VARIANCE_BOUNDS)
        n_dim = variance.shape[0]
        unit = _unit_metric(n_dim, rank)
        return unit._replace(diagonal=variance, scale=jnp.sqrt(variance))

    return start


def welford_variance() -> MassMatrixAdaptation:
    """Stan's diagonal adaptation: the regularised variance of the window's draws.

    Returns
    -------
    MassMatrixAdaptation
        Starts from the identity; ``final`` divides by ``n - 1`` (NaN below
        two draws).
    """

    def start(position, gradient) -> Metric:
        return diagonal_metric(jnp.ones(jnp.shape(position), jnp.float64))

    def update(state: WelfordState, position, gradient) -> WelfordState:
        return _welford_update(state, position)

    def final(state: WelfordState) -> Metric:
        return diagonal_metric(regularize_variance(_sample_variance(state), state.count))

    return MassMatrixAdaptation(start, _welford_init, update, final)


def welford_covariance() -> MassMatrixAdaptation:
    """Stan's dense adaptation: the regularised covariance of the window's draws.

    Returns
    -------
    MassMatrixAdaptation
        Starts from the identity; ``final`` is
        ``cov n/(n+5) + 1e-3 * 5/(n+5) I`` in eigen form.
    """

    def start(position, gradient) -> Metric:
        return _unit_metric(jnp.shape(position)[0], jnp.shape(position)[0])._replace(
            vectors=jnp.eye(jnp.shape(position)[0], dtype=jnp.float64)
        )

    def init(n_dim: int) -> WelfordCovarianceState:
        zeros = jnp.zeros((n_dim,), jnp.float64)
        return WelfordCovarianceState(zeros, jnp.zeros((n_dim, n_dim), jnp.float64),
                                      jnp.zeros((), jnp.float64))

    def update(state: WelfordCovarianceState, position, gradient) -> WelfordCovarianceState:
        x = _f64(position)
        count = state.count + 1.0
        delta = x - state.mean
        mean = state.mean + delta / count
        return WelfordCovarianceState(mean, state.m2 + jnp.outer(x - mean, delta), count)

    def final(state: WelfordCovarianceState) -> Metric:
        n = state.count
        covariance = state.m2 / jnp.maximum(n - 1.0, 1.0)
        shrunk = covariance * (n / (n + 5.0)) + jnp.eye(covariance.shape[0]) * (1e-3 * 5.0 / (n + 5.0))
        # Symmetrise what rounding left, so the eigendecomposition is exact.
        return dense_metric(0.5 * (shrunk + shrunk.T))

    return MassMatrixAdaptation(start, init, update, final)


def _population_variance(state: WelfordState) -> Array:
    return state.m2 / jnp.maximum(state.count, 1.0)


def gradient_variance() -> MassMatrixAdaptation:
    """nutpie's gradient-based diagonal: ``sqrt(var(draws) / var(gradients))``.

    Returns
    -------
    MassMatrixAdaptation
        Starts from ``1 / |gradient|``; variances are population variances
        (as nutpie), the result is kept within ``[1e-20, 1e20]``.
    """

    def init(n_dim: int) -> GradientVarianceState:
        return GradientVarianceState(_welford_init(n_dim), _welford_init(n_dim),
                                     jnp.zeros((), jnp.float64))

    def update(state: GradientVarianceState, position, gradient) -> GradientVarianceState:
        return GradientVarianceState(
            _welford_update(state.draws, position),
            _welford_update(state.gradients, gradient),
            state.count + 1.0,
        )

    def final(state: GradientVarianceState) -> Metric:
        ratio = _population_variance(state.draws) / _population_variance(state.gradients)
        return diagonal_metric(jnp.clip(jnp.sqrt(ratio), *VARIANCE_BOUNDS))

    return MassMatrixAdaptation(_gradient_start(0), init, update, final)


def _dense(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return welford_covariance()


def _diag(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return welford_variance()


def _diag_grad(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return gradient_variance()


ADAPTATIONS: dict[str, Callable[[int, int], MassMatrixAdaptation]] = {
    "diag": _diag,
    "dense": _dense,
    "diag_grad": _diag_grad,
}
"""Scheme name -> ``factory(n_dim, buffer)``; ``buffer`` is the longest window's length."""

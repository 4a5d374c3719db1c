"""Diagonal mass-matrix adaptation from Welford's online variance, as in Stan.

The inverse mass matrix is the sample variance of the positions seen in an
adaptation window, shrunk towards ``1e-3`` as Stan does::

    var * n / (n + 5) + 1e-3 * 5 / (n + 5)

Accumulators are float64 whatever the position's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = ["MassMatrixAdaptation", "WelfordState", "regularize_variance", "welford_variance"]


class WelfordState(NamedTuple):
    """Welford's running mean and sum of squared deviations (float64)."""

    mean: Array
    """Running mean, shape ``(n,)``."""
    m2: Array
    """Sum of squared deviations from the running mean, shape ``(n,)``."""
    count: Array
    """Number of positions seen (float64 scalar)."""


class MassMatrixAdaptation(NamedTuple):
    """Mass-matrix adaptation as an ``init / update / final`` triple."""

    init: Callable
    """``init(n_dim) -> WelfordState``, empty."""
    update: Callable
    """``update(state, position) -> WelfordState``."""
    final: Callable
    """``final(state) -> inverse mass matrix`` (regularised variance; needs two positions)."""


def regularize_variance(variance: ArrayLike, count: ArrayLike) -> Array:
    """Stan's shrinkage of a sample variance from ``count`` draws towards ``1e-3``.

    Parameters
    ----------
    variance : array_like
        Sample variance per coordinate.
    count : array_like
        Number of draws it came from.

    Returns
    -------
    Array
        ``variance * n / (n + 5) + 1e-3 * 5 / (n + 5)``.
    """
    n = jnp.asarray(count, jnp.float64)
    return jnp.asarray(variance, jnp.float64) * (n / (n + 5.0)) + 1e-3 * (5.0 / (n + 5.0))


def welford_variance() -> MassMatrixAdaptation:
    """Diagonal inverse mass matrix from the regularised Welford variance.

    Returns
    -------
    MassMatrixAdaptation
        ``final`` divides by ``n - 1``: with fewer than two positions the
        variance is undefined and it returns NaN, so callers keep their
        current matrix in that case.
    """

    def init(n_dim: int) -> WelfordState:
        zeros = jnp.zeros((n_dim,), jnp.float64)
        return WelfordState(zeros, zeros, jnp.zeros((), jnp.float64))

    def update(state: WelfordState, position: ArrayLike) -> WelfordState:
        x = jnp.asarray(position, jnp.float64)
        count = state.count + 1.0
        delta = x - state.mean
        mean = state.mean + delta / count
        return WelfordState(mean, state.m2 + delta * (x - mean), count)

    def final(state: WelfordState) -> Array:
        enough = state.count >= 2.0
        variance = jnp.where(enough, state.m2 / jnp.where(enough, state.count - 1.0, 1.0), jnp.nan)
        return regularize_variance(variance, state.count)

    return MassMatrixAdaptation(init, update, final)

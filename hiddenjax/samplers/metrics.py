"""Gaussian-Euclidean kinetic energy for diagonal, low-rank and dense mass matrices.

Every metric is one ``Metric``: a diagonal scale ``s`` and an optional
orthonormal correction ``U`` (``n x k``) with eigenvalues ``lam``::

    M^{-1} = S (I + U diag(lam - 1) U^T) S,      S = diag(s)

* diagonal: ``k = 0``, ``M^{-1} = diag(s**2)``;
* low rank plus diagonal (nutpie's form): ``0 < k < n``;
* dense: ``s = 1`` and ``U, lam`` the eigenvectors and eigenvalues of the
  inverse mass matrix (``k = n``).

Momenta are drawn from ``N(0, M)`` and the kinetic energy is
``p @ velocity(p) / 2`` with ``velocity(p) = M^{-1} p`` (Stan's ``p_sharp``).
Every operation costs ``O(n k)``. A plain 1-D array is read as the diagonal
of ``M^{-1}``, so ``velocity(p, imm)`` works with either form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


__all__ = [
    "Metric",
    "as_metric",
    "dense_metric",
    "diagonal_metric",
    "is_turning",
    "kinetic_energy",
    "sample_momentum",
    "velocity",
]


class Metric(NamedTuple):
    """Inverse mass matrix ``S (I + U diag(lam - 1) U^T) S``."""

    diagonal: Array
    """``s**2``, shape ``(n,)``: the diagonal part (all of ``M^{-1}`` when ``k = 0``)."""
    scale: Array
    """``s = sqrt(diagonal)``, kept so no step recomputes it."""
    vectors: Array
    """``U``, shape ``(n, k)``, orthonormal columns (``k`` may be 0)."""
    values: Array
    """``lam``, shape ``(k,)``: positive eigenvalues of the correction (1 is no correction)."""


def diagonal_metric(inverse_mass_matrix: ArrayLike) -> Metric:
    """The metric of a diagonal inverse mass matrix, given by its diagonal.

    Parameters
    ----------
    inverse_mass_matrix : array_like
        Positive diagonal of ``M^{-1}``, shape ``(n,)``.

    Returns
    -------
    Metric
        With ``k = 0``.
    """
    imm = jnp.asarray(inverse_mass_matrix)
    n = imm.shape[-1]
    return Metric(imm, jnp.sqrt(imm), jnp.zeros(imm.shape[:-1] + (n, 0), imm.dtype),
                  jnp.zeros(imm.shape[:-1] + (0,), imm.dtype))


def dense_metric(inverse_mass_matrix: ArrayLike) -> Metric:
    """The metric of a dense symmetric positive-definite inverse mass matrix.

    Parameters
    ----------
    inverse_mass_matrix : array_like
        ``M^{-1}``, shape ``(n, n)``.

    Returns
    -------
    Metric
        Unit scale and the full eigendecomposition (``k = n``).
    """
    imm = jnp.asarray(inverse_mass_matrix)
    values, vectors = jnp.linalg.eigh(0.5 * (imm + jnp.swapaxes(imm, -1, -2)))
    ones = jnp.ones(imm.shape[:-1], imm.dtype)
    return Metric(ones, ones, vectors, values)


def as_metric(metric, dtype=None) -> Metric:
    """``metric`` as a ``Metric`` (a 1-D array is a diagonal), cast to ``dtype``."""
    if not isinstance(metric, Metric):
        metric = diagonal_metric(metric)
    if dtype is None:
        return metric
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), metric)


def _correct(x: Array, metric: Metric, power: float) -> Array:
    """``(I + U diag(lam**power - 1) U^T) x`` over the last axis of ``x``."""
    if metric.vectors.shape[-1] == 0:
        return x
    coefficients = (x @ metric.vectors) * (metric.values**power - 1.0)
    return x + coefficients @ metric.vectors.T


def velocity(momentum: ArrayLike, metric) -> Array:
    """Velocity ``dq/dt = M^{-1} p`` (Stan's ``p_sharp``).

    Parameters
    ----------
    momentum : array_like
        Momentum ``p``, shape ``(..., n)``.
    metric : Metric or array_like
        The metric, or the diagonal of ``M^{-1}``.

    Returns
    -------
    Array
        ``M^{-1} p``, shape of ``momentum``.
    """
    metric = as_metric(metric)
    if metric.vectors.shape[-1] == 0:
        return metric.diagonal * momentum
    return metric.scale * _correct(metric.scale * momentum, metric, 1.0)


def kinetic_energy(momentum: ArrayLike, metric) -> Array:
    """Kinetic energy ``p^T M^{-1} p / 2`` of the Gaussian-Euclidean metric.

    Parameters
    ----------
    momentum : array_like
        Momentum ``p``, shape ``(n,)``.
    metric : Metric or array_like
        The metric, or the diagonal of ``M^{-1}``.

    Returns
    -------
    Array
        Scalar kinetic energy.
    """
    return 0.5 * jnp.sum(velocity(momentum, metric) * momentum)


def sample_momentum(key: Array, position: ArrayLike, metric) -> Array:
    """Draw a momentum ``p ~ N(0, M)``.

    With ``z ~ N(0, I)``, ``p = S^{-1} (I + U diag(lam**-1/2 - 1) U^T) z``,
    whose covariance is ``M``.

    Parameters
    ----------
    key : Array
        JAX random key.
    position : array_like
        Current position; only its shape and dtype are used.
    metric : Metric or array_like
        The metric, or the diagonal of ``M^{-1}``.

    Returns
    -------
    Array
        Momentum with the shape and dtype of ``position``.
    """
    position = jnp.asarray(position)
    metric = as_metric(metric, position.dtype)
    z = jax.random.normal(key, position.shape, position.dtype)
    return _correct(z, metric, -0.5) / metric.scale


def is_turning(
    velocity_left: ArrayLike, velocity_right: ArrayLike, momentum_sum: ArrayLike
) -> Array:
    """Stan's generalised no-U-turn criterion.

    A span of trajectory with summed momentum ``rho`` turns when either end's
    velocity points against ``rho``. Works on stacked spans: the last axis
    is the coordinate axis.

    Parameters
    ----------
    velocity_left, velocity_right : array_like
        ``M^{-1} p`` at the two ends of the span.
    momentum_sum : array_like
        Sum of the momenta over every point of the span, ends included.

    Returns
    -------
    Array
        Boolean, True when ``p_sharp_left . rho <= 0`` or ``p_sharp_right . rho <= 0``.
    """
    left = jnp.sum(velocity_left * momentum_sum, axis=-1)
    right = jnp.sum(velocity_right * momentum_sum, axis=-1)
    return (left <= 0) | (right <= 0)

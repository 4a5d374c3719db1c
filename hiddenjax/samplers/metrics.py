"""Gaussian-Euclidean kinetic energy with a diagonal mass matrix.

The metric is given by its inverse mass matrix, a 1-D array of positive
entries (the diagonal). With mass matrix ``M = 1 / inverse_mass_matrix``,
momenta are drawn from ``N(0, M)`` and the kinetic energy is
``p @ (inverse_mass_matrix * p) / 2``. ``inverse_mass_matrix * p`` is the
velocity, Stan's ``p_sharp``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def velocity(momentum: ArrayLike, inverse_mass_matrix: ArrayLike) -> Array:
    """Velocity ``dq/dt = M^{-1} p`` (Stan's ``p_sharp``).

    Parameters
    ----------
    momentum : array_like
        Momentum ``p``, shape ``(n,)``.
    inverse_mass_matrix : array_like
        Diagonal of ``M^{-1}``, shape ``(n,)``.

    Returns
    -------
    Array
        ``inverse_mass_matrix * momentum``.
    """
    return inverse_mass_matrix * momentum


def kinetic_energy(momentum: ArrayLike, inverse_mass_matrix: ArrayLike) -> Array:
    """Kinetic energy ``p^T M^{-1} p / 2`` of the Gaussian-Euclidean metric.

    Parameters
    ----------
    momentum : array_like
        Momentum ``p``, shape ``(n,)``.
    inverse_mass_matrix : array_like
        Diagonal of ``M^{-1}``, shape ``(n,)``.

    Returns
    -------
    Array
        Scalar kinetic energy.
    """
    return 0.5 * jnp.sum(velocity(momentum, inverse_mass_matrix) * momentum)


def sample_momentum(key: Array, position: ArrayLike, inverse_mass_matrix: ArrayLike) -> Array:
    """Draw a momentum ``p ~ N(0, M)`` with ``M = 1 / inverse_mass_matrix``.

    Parameters
    ----------
    key : Array
        JAX random key.
    position : array_like
        Current position; only its shape and dtype are used.
    inverse_mass_matrix : array_like
        Diagonal of ``M^{-1}``, shape ``(n,)``.

    Returns
    -------
    Array
        Momentum with the shape and dtype of ``position``.
    """
    position = jnp.asarray(position)
    z = jax.random.normal(key, position.shape, position.dtype)
    return z / jnp.sqrt(jnp.asarray(inverse_mass_matrix, position.dtype))


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

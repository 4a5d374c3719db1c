"""Velocity Verlet (leapfrog) integration of Hamiltonian dynamics.

The Hamiltonian is ``H(q, p) = -logdensity(q) + p^T M^{-1} p / 2`` with a
diagonal inverse mass matrix. Each state caches the log-density and its
gradient at its position, so one leapfrog step costs one gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from hiddenjax.samplers.metrics import as_metric, kinetic_energy, velocity

__all__ = ["IntegratorState", "hamiltonian", "new_integrator_state", "velocity_verlet"]


class IntegratorState(NamedTuple):
    """A point in phase space with the log-density cached."""

    position: Array
    """Position ``q``, a 1-D float array."""
    momentum: Array
    """Momentum ``p``, same shape and dtype as ``position``."""
    logdensity: Array
    """Log-density at ``position`` (scalar, ``position``'s dtype)."""
    logdensity_grad: Array
    """Gradient of the log-density at ``position``."""


def _value_and_grad(logdensity_fn: Callable, position: Array) -> tuple[Array, Array]:
    """Log-density and gradient, cast to the position's dtype.

    The cast keeps loop carries type-stable when the model runs in a lower
    precision than the sampler's position.
    """
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return jnp.asarray(logdensity, position.dtype), jnp.asarray(grad, position.dtype)


def new_integrator_state(
    logdensity_fn: Callable, position: ArrayLike, momentum: ArrayLike
) -> IntegratorState:
    """Phase-space state at ``(position, momentum)``, evaluating the log-density once.

    Parameters
    ----------
    logdensity_fn : callable
        ``logdensity_fn(position) -> scalar``.
    position : array_like
        1-D float position.
    momentum : array_like
        Momentum of the same shape.

    Returns
    -------
    IntegratorState
    """
    position = jnp.asarray(position)
    logdensity, grad = _value_and_grad(logdensity_fn, position)
    return IntegratorState(position, jnp.asarray(momentum, position.dtype), logdensity, grad)


def hamiltonian(state: IntegratorState, inverse_mass_matrix: ArrayLike) -> Array:
    """Total energy ``-logdensity + kinetic`` of a phase-space state.

    Parameters
    ----------
    state : IntegratorState
    inverse_mass_matrix : array_like
        Diagonal of ``M^{-1}``.

    Returns
    -------
    Array
        Scalar energy.
    """
    return kinetic_energy(state.momentum, inverse_mass_matrix) - state.logdensity


def velocity_verlet(logdensity_fn: Callable) -> Callable:
    """Leapfrog integrator for ``logdensity_fn`` (kick, drift, kick).

    Parameters
    ----------
    logdensity_fn : callable
        ``logdensity_fn(position) -> scalar``.

    Returns
    -------
    callable
        ``step(state, step_size, inverse_mass_matrix) -> IntegratorState``.
        A negative ``step_size`` integrates backwards in time; the momentum
        keeps its physical sign. ``step_size`` and ``inverse_mass_matrix``
        are cast to the position's dtype.
    """

    def step(
        state: IntegratorState, step_size: ArrayLike, inverse_mass_matrix: ArrayLike
    ) -> IntegratorState:
        dtype = state.position.dtype
        step_size = jnp.asarray(step_size, dtype)
        inverse_mass_matrix = as_metric(inverse_mass_matrix, dtype)
        half = 0.5 * step_size
        momentum = state.momentum + half * state.logdensity_grad
        position = state.position + step_size * velocity(momentum, inverse_mass_matrix)
        logdensity, grad = _value_and_grad(logdensity_fn, position)
        momentum = momentum + half * grad
        return IntegratorState(position, momentum, logdensity, grad)

    return step

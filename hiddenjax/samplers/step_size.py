"""Step-size adaptation by Nesterov dual averaging, as in Stan.

After ``t`` updates with acceptance statistics ``a_1 .. a_t``::

    h_bar_t = (1 - 1/(t + t0)) h_bar_{t-1} + (target - a_t) / (t + t0)
    x_t     = mu - sqrt(t) / gamma * h_bar_t          (log step size to use next)
    xbar_t  = t**-kappa x_t + (1 - t**-kappa) xbar_{t-1}  (averaged log step size)

with ``mu = log(10 * initial_step_size)``. ``exp(x_t)`` is used during warmup
and ``exp(xbar_t)`` afterwards. Every accumulator is float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = ["DualAveraging", "DualAveragingState", "dual_averaging", "initial_step_size"]


class DualAveragingState(NamedTuple):
    """Dual-averaging accumulators (float64 scalars)."""

    log_step_size: Array
    """Log step size for the next transition, ``x_t``."""
    log_step_size_avg: Array
    """Averaged log step size, ``xbar_t``."""
    h_bar: Array
    """Running mean of ``target - acceptance``."""
    count: Array
    """Number of updates since the last (re)start."""
    mu: Array
    """Shrinkage target of the log step size, ``log(10 * step_size)`` at (re)start."""


class DualAveraging(NamedTuple):
    """Step-size adaptation as an ``init / update / final`` triple."""

    init: Callable
    """``init(step_size) -> DualAveragingState``; also restarts the adaptation."""
    update: Callable
    """``update(state, acceptance_rate) -> DualAveragingState``."""
    final: Callable
    """``final(state) -> step size``: the averaged step size ``exp(xbar_t)``."""


def initial_step_size(n_dim: int, step_scale: float = 0.25) -> float:
    """PyMC's first step size, ``step_scale / n_dim ** 0.25``.

    Parameters
    ----------
    n_dim : int
        Number of coordinates of the position.
    step_scale : float, default 0.25
        Step size in one dimension.

    Returns
    -------
    float
    """
    return step_scale / max(int(n_dim), 1) ** 0.25


def dual_averaging(
    target_accept: float = 0.8, gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75
) -> DualAveraging:
    """Stan's dual-averaging step-size adaptation.

    Parameters
    ----------
    target_accept : float, default 0.8
        Mean acceptance statistic to aim for.
    gamma : float, default 0.05
        Regularisation scale towards ``mu``.
    t0 : float, default 10.0
        Offset that damps the first updates.
    kappa : float, default 0.75
        Decay exponent of the averaging weights.

    Returns
    -------
    DualAveraging
    """

    def init(step_size: ArrayLike) -> DualAveragingState:
        log_step = jnp.log(jnp.asarray(step_size, jnp.float64))
        # The average starts at the current step size, so that ``final`` of a
        # state without updates returns it rather than exp(0).
        return DualAveragingState(
            log_step_size=log_step,
            log_step_size_avg=log_step,
            h_bar=jnp.zeros((), jnp.float64),
            count=jnp.zeros((), jnp.float64),
            mu=jnp.log(10.0) + log_step,
        )

    def update(state: DualAveragingState, acceptance_rate: ArrayLike) -> DualAveragingState:
        count = state.count + 1.0
        accept = jnp.minimum(jnp.asarray(acceptance_rate, jnp.float64), 1.0)
        eta = 1.0 / (count + t0)
        h_bar = (1.0 - eta) * state.h_bar + eta * (target_accept - accept)
        log_step = state.mu - jnp.sqrt(count) / gamma * h_bar
        weight = count**-kappa
        log_step_avg = weight * log_step + (1.0 - weight) * state.log_step_size_avg
        return DualAveragingState(
            log_step_size=log_step,
            log_step_size_avg=log_step_avg,
            h_bar=h_bar,
            count=count,
            mu=state.mu,
        )

    def final(state: DualAveragingState) -> Array:
        return jnp.exp(state.log_step_size_avg)

    return DualAveraging(init, update, final)

"""Small jitted evaluations the host needs outside the sampling loop."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np


@functools.lru_cache(maxsize=32)
def _jitted_value_and_grad(logdensity: Callable) -> Callable:
    return jax.jit(jax.value_and_grad(logdensity))


def host_value_and_grad(logdensity: Callable, data: tuple) -> Callable:
    """``check(theta) -> (logp, grad)`` as numpy; one jitted function per log-density."""
    fn = _jitted_value_and_grad(logdensity)
    data = tuple(jax.numpy.asarray(d) for d in data)

    def check(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = fn(jax.numpy.asarray(theta), data)
        return float(value), np.asarray(grad)

    return check

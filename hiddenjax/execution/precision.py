"""Running model functions in float32 while the sampler keeps float64 accumulators."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp


def _cast_floats(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree
    )


def in_precision(fn: Callable, precision: str) -> Callable:
    """``fn(theta, data)`` computed in ``precision``.

    In float32 the model's graph is traced with 64-bit types switched off, so
    every float64 operation of the PyMC graph runs in float32; the result
    keeps float32. Callers outside (the sampler's adaptation) still have
    float64 available.
    """
    if precision == "float64":
        return fn

    @functools.wraps(fn)
    def float32_fn(theta, data):
        with jax.enable_x64(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*float64.*not available.*")
            return fn(_cast_floats(theta, jnp.float32), _cast_floats(data, jnp.float32))

    return float32_fn

"""Per-draw JAX functions: forward draws and the pointwise log-likelihood.

A :class:`~hiddenjax.model.predictive.DrawGraph` is lowered to
``fn(key, values, data) -> (outputs, checks)``. The random key is an explicit
argument, a raw ``uint32[2]`` key read with the SplitMix64 generator
(:mod:`~hiddenjax.compile.prng`): it is split into one key per random
generator of the graph, and each is handed to PyTensor's random-variable
lowerings as the generator state they read (``{"jax_state": key}``). Draws are therefore a pure function of the
key, so they vectorise over posterior draws with ``vmap`` and are reproducible.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hiddenjax.compile.model_functions import lower
from hiddenjax.compile.prng import splitmix_key
from hiddenjax.model.predictive import DrawGraph


class DrawFunction(NamedTuple):
    """A lowered :class:`DrawGraph` and what its callers need to feed and read it."""

    fn: Callable
    """``fn(key, values, data) -> (outputs, checks)``, un-jitted; tuples throughout."""
    value_names: tuple[str, ...]
    """Names of the per-draw values, in ``values`` order."""
    value_dtypes: tuple[str, ...]
    """Dtype of each per-draw value."""
    data_names: tuple[str, ...]
    """Names of the data arguments, in ``data`` order."""
    output_names: tuple[str, ...]
    """Names of the outputs."""
    check_messages: tuple[str, ...]
    """Message of each check in ``checks``."""


def lower_draw_graph(graph: DrawGraph) -> DrawFunction:
    """Lower ``graph`` to a JAX function of ``(key, values, data)``."""
    inputs = [*graph.rng_inputs, *graph.value_inputs, *graph.data_inputs]
    outputs = [*graph.outputs, *graph.checks]
    lowered = lower(inputs, outputs)
    n_rngs, n_out = len(graph.rng_inputs), len(graph.outputs)
    # Some samplers return another dtype than the graph declares (Bernoulli gives bool).
    dtypes = [v.dtype for v in graph.outputs]

    def draw(key, values, data):
        keys = jax.random.split(splitmix_key(key), n_rngs) if n_rngs else ()
        rngs = [{"jax_state": keys[i]} for i in range(n_rngs)]
        result = lowered(*rngs, *values, *data)
        outputs = tuple(jnp.asarray(r, dtype) for r, dtype in zip(result[:n_out], dtypes))
        return outputs, tuple(result[n_out:])

    return DrawFunction(
        fn=draw,
        value_names=graph.value_names,
        value_dtypes=tuple(v.dtype for v in graph.value_inputs),
        data_names=graph.data_names,
        output_names=graph.output_names,
        check_messages=graph.check_messages,
    )


def graph_signature(graph: DrawGraph) -> tuple:
    """What a lowered draw function depends on besides data values and the model."""
    return (
        graph.output_names,
        tuple((n, v.type.shape, v.dtype) for n, v in zip(graph.value_names, graph.value_inputs)),
        tuple((n, v.type.shape, v.dtype) for n, v in zip(graph.data_names, graph.data_inputs)),
        len(graph.rng_inputs),
        graph.resampled,
        graph.check_messages,
    )


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_PER_MODEL = 16


def cached(model, key: tuple, build: Callable[[], object]):
    """``build()``, once per ``model`` and ``key`` (a few entries kept per model).

    ``key`` must determine what ``build`` lowers; data values are arguments of
    the lowered functions and do not belong in it.
    """
    from hiddenjax.model import structure_key

    key = (structure_key(model), *key)
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        if len(per_model) >= _MAX_PER_MODEL:
            per_model.pop(next(iter(per_model)))
        per_model[key] = build()
    return per_model[key]


def cached_draw_function(model, graph: DrawGraph) -> DrawFunction:
    """``graph`` lowered, once per model structure and graph signature.

    New data of the same shapes reuse the lowered function (and so its
    compiled program).
    """
    return cached(model, ("draw", graph_signature(graph)), lambda: lower_draw_graph(graph))


def seed_key(seed: int) -> jax.Array:
    """A raw ``uint32[2]`` key, the form PyTensor's random lowerings split."""
    return jax.random.PRNGKey(np.uint32(seed % 2**32))

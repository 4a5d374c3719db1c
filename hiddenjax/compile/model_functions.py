"""A ModelGraph turned into plain JAX callables over one flat position."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from pytensor.graph.basic import Variable
from pytensor.graph.fg import FunctionGraph

from hiddenjax.compile.linker import hiddenjax_mode
from hiddenjax.model.graph import FlatLayout, ModelGraph


class CompiledModel(NamedTuple):
    """JAX functions of ``(theta, data)``, where ``data`` is a tuple in ``data_names`` order."""

    logdensity: Callable
    """``logdensity(theta, data) -> scalar``: joint log-density, Jacobians included."""
    constrain: Callable
    """``constrain(theta, data) -> tuple``: values named by ``output_names``."""
    loglik: Callable
    """``loglik(theta, data) -> tuple``: pointwise log-likelihood per observed variable."""
    layout: FlatLayout
    """How ``theta`` splits into value variables."""
    output_names: tuple[str, ...]
    """Names of the ``constrain`` outputs."""
    loglik_names: tuple[str, ...]
    """Names of the ``loglik`` outputs."""
    data_names: tuple[str, ...]
    """Names of the data arguments."""


def lower(inputs: Sequence[Variable], outputs: Sequence[Variable], strict: bool = False) -> Callable:
    """Rewrite a PyTensor graph with the HIDDENJAX mode and lower it to a JAX function.

    The returned function takes the inputs positionally and returns a tuple of
    outputs. It is not jitted: callers compose and jit it.
    """
    from pytensor.link.jax.dispatch import jax_funcify

    from hiddenjax.compile.preflight import make_lowerable

    fgraph = FunctionGraph(inputs=list(inputs), outputs=list(outputs), clone=True)
    hiddenjax_mode().optimizer.rewrite(fgraph)
    make_lowerable(fgraph, strict=strict)
    return jax_funcify(fgraph)


def compile_model(graph: ModelGraph) -> CompiledModel:
    """Lower the log-density, the constrained values and the log-likelihood of a model."""
    inputs = [graph.theta, *graph.data_inputs]
    logp_fn = lower(inputs, [graph.logp])
    constrain_fn = lower(inputs, graph.outputs) if graph.outputs else None
    loglik_fn = lower(inputs, graph.loglik) if graph.loglik else None

    def logdensity(theta, data):
        return logp_fn(theta, *data)[0]

    def constrain(theta, data):
        return tuple(constrain_fn(theta, *data)) if constrain_fn else ()

    def loglik(theta, data):
        return tuple(loglik_fn(theta, *data)) if loglik_fn else ()

    return CompiledModel(
        logdensity=logdensity,
        constrain=constrain,
        loglik=loglik,
        layout=graph.layout,
        output_names=graph.output_names,
        loglik_names=graph.loglik_names,
        data_names=graph.data_names,
    )

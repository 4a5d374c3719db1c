"""A ModelGraph turned into plain JAX callables over one flat position."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pytensor.graph.basic import Variable
from pytensor.graph.fg import FunctionGraph

from hiddenjax.compile.graph_digest import graph_digest
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
    digest: str | None = None
    """Digest of the graphs these functions are lowered from (see ``graph_digest``),
    or None where a graph has no exact description."""


class LoweringStats:
    """How many graphs were lowered in this process (tests read this)."""

    lowered = 0


def lower(inputs: Sequence[Variable], outputs: Sequence[Variable], strict: bool = False) -> Callable:
    """Rewrite a PyTensor graph with the HIDDENJAX mode and lower it to a JAX function.

    The returned function takes the inputs positionally and returns a tuple of
    outputs. It is not jitted: callers compose and jit it.
    """
    from pytensor.link.jax.dispatch import jax_funcify

    from hiddenjax.compile.preflight import make_lowerable
    from hiddenjax.compile.rewrites import merge_duplicate_random_variables

    fgraph = FunctionGraph(inputs=list(inputs), outputs=list(outputs), clone=True)
    hiddenjax_mode().optimizer.rewrite(fgraph)
    merge_duplicate_random_variables(fgraph)
    make_lowerable(fgraph, strict=strict)
    LoweringStats.lowered += 1
    return jax_funcify(fgraph)


def _lowered_on_first_call(inputs: Sequence[Variable], outputs: Sequence[Variable]) -> Callable:
    """``lower(inputs, outputs)``, done when first called and kept.

    A run whose programs come from the on-disk program cache never calls it,
    so it skips PyTensor's rewrites and the lowering. The first call is
    usually inside a JAX trace: lowering still runs as it would outside one,
    with 64-bit types on and constants made as concrete arrays, never tracers.
    """
    @functools.cache
    def lowered() -> Callable:
        import jax

        with jax.enable_x64(True), jax.ensure_compile_time_eval():
            return lower(inputs, outputs)

    return lambda *args: lowered()(*args)


def compile_model(graph: ModelGraph) -> CompiledModel:
    """The log-density, the constrained values and the log-likelihood of a model as JAX
    functions; each graph is lowered when its function is first called."""
    inputs = [graph.theta, *graph.data_inputs]
    logp_fn = _lowered_on_first_call(inputs, [graph.logp])
    constrain_fn = _lowered_on_first_call(inputs, graph.outputs) if graph.outputs else None
    loglik_fn = _lowered_on_first_call(inputs, graph.loglik) if graph.loglik else None

    def logdensity(theta, data):
        return logp_fn(theta, *data)[0]

    def constrain(theta, data):
        return tuple(constrain_fn(theta, *data)) if constrain_fn else ()

    def loglik(theta, data):
        return tuple(loglik_fn(theta, *data)) if loglik_fn else ()

    sections = [graph_digest(inputs, [graph.logp]), graph_digest(inputs, graph.outputs),
                graph_digest(inputs, graph.loglik)]

    return CompiledModel(
        logdensity=logdensity,
        constrain=constrain,
        loglik=loglik,
        layout=graph.layout,
        output_names=graph.output_names,
        loglik_names=graph.loglik_names,
        data_names=graph.data_names,
        digest=None if None in sections else "/".join(sections),
    )

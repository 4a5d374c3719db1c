"""Graphs for the workflow around sampling: forward draws, log-likelihoods, MAP.

Forward sampling and the pointwise log-likelihood read a PyMC model into a
:class:`DrawGraph`: a graph from per-draw values (read from a trace), data
inputs and random-generator inputs to named outputs. :func:`map_graph` gives
the log-density without Jacobians that ``find_MAP`` maximises. Nothing here
knows JAX; ``compile/`` lowers these graphs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pytensor.tensor as pt
from pymc.logprob.basic import transformed_conditional_logp
from pymc.model import Model
from pytensor.compile import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.replace import graph_replace
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.graph.traversal import applys_between, general_toposort, graph_inputs, walk
from pytensor.raise_op import CheckAndRaise
from pytensor.tensor.random.type import RandomType
from pytensor.tensor.random.var import RandomGeneratorSharedVariable

from hiddenjax.model.errors import check_deterministic_logp
from hiddenjax.model.graph import ModelGraph, _data_replacements, _flat_position, _value_shapes


class DrawGraph(NamedTuple):
    """Graphs of named outputs over one draw's values, data and random generators."""

    value_names: tuple[str, ...]
    """Names of the variables whose values are read from the trace, one per draw."""
    value_inputs: tuple[Variable, ...]
    """Inputs standing for those values, with one draw's static shape."""
    data_names: tuple[str, ...]
    """Name of each data input (``pm.Data`` name or observed variable name)."""
    data_inputs: tuple[Variable, ...]
    """Inputs standing for observed data and ``pm.Data`` values, static shapes."""
    data_sources: tuple[Variable, ...]
    """The model's own data variables behind each data input."""
    rng_inputs: tuple[Variable, ...]
    """Random-generator inputs, one per generator of the model's random variables."""
    output_names: tuple[str, ...]
    """Names of the outputs."""
    outputs: tuple[Variable, ...]
    """Graphs of the outputs."""
    checks: tuple[Variable, ...]
    """Boolean scalars, true where the model's runtime checks (``Assert``) pass."""
    check_messages: tuple[str, ...]
    """The message of each check, for the error raised when it fails."""
    resampled: tuple[str, ...]
    """Random variables drawn anew rather than read from the trace (PyMC's "Sampling: [...]")."""


def loglik_graph(
    model: Model, var_names: Iterable[str], value_shapes: Mapping[str, tuple[int, ...]]
) -> DrawGraph:
    """Pointwise log-likelihood of observed variables over free variables on their own support.

    The posterior stores constrained values, so the free variables enter
    untransformed (as in PyMC's ``remove_value_transforms``) and no Jacobian
    is added.

    Parameters
    ----------
    model : pymc.Model
        The model; it is not modified.
    var_names : iterable of str
        Observed variables whose pointwise log-likelihood is wanted.
    value_shapes : mapping
        Shape of one draw of each free variable.
    """
    observed = [model[name] for name in var_names]
    values = {
        rv: pt.tensor(name=rv.name, dtype=rv.dtype, shape=tuple(value_shapes[rv.name]))
        for rv in model.free_RVs
    }
    rvs_to_values = {**model.rvs_to_values, **values}
    logps = transformed_conditional_logp(
        observed, rvs_to_values=rvs_to_values, rvs_to_transforms={}, jacobian=False
    )
    data_repl, data_names, _ = _data_replacements(model, logps)
    outputs = graph_replace(logps, data_repl, strict=False)
    used = set(graph_inputs(outputs))
    kept = [(rv.name, v) for rv, v in values.items() if v in used]
    return DrawGraph(
        value_names=tuple(n for n, _ in kept),
        value_inputs=tuple(v for _, v in kept),
        **_data_fields(data_repl, data_names),
        rng_inputs=(),
        output_names=tuple(observed_name for observed_name in var_names),
        outputs=tuple(outputs),
        checks=(),
        check_messages=(),
        resampled=(),
    )


def _data_fields(data_repl: dict, data_names: tuple[str, ...]) -> dict:
    inputs = [(src, new) for src, new in data_repl.items() if not isinstance(new, Constant)]
    return {
        "data_names": data_names,
        "data_inputs": tuple(new for _, new in inputs),
        "data_sources": tuple(src for src, _ in inputs),
    }


def _shared_value_matches(var, constant_data: Mapping, constant_coords: set) -> bool:
    """PyMC's rule: shared data are unchanged if they equal the trace's ``constant_data``."""
    if var.name not in constant_data:
        return var.name in constant_coords
    return np.array_equal(constant_data[var.name], var.get_value(borrow=True))


def _volatile(outputs, vars_in_trace, basic_rvs, changed: frozenset) -> set:
    """Variables that must be recomputed or redrawn, by PyMC's forward-sampling rules.

    Outputs, ``changed`` data (:func:`changed_data`), random variables absent
    from the trace, and everything downstream of those are volatile.
    """
    fg = FunctionGraph(outputs=list(outputs), clone=False)
    nodes = general_toposort(fg.outputs, deps=lambda x: x.owner.inputs if x.owner else [])
    trace, basic = set(vars_in_trace), set(basic_rvs)
    volatile: set = set()
    for node in nodes:
        if (
            node in fg.outputs
            or node in changed
            or (node in basic and node not in trace)
            or (node.owner and any(i in volatile for i in node.owner.inputs))
        ):
            volatile.add(node)
    return volatile


def _trace_inputs(outputs, vars_in_trace, volatile) -> list[Variable]:
    """The non-volatile trace variables the outputs are computed from (PyMC's inputs)."""
    trace, found = set(vars_in_trace), []

    def expand(node):
        if node not in volatile and node not in found:
            if node in trace:
                found.append(node)
                return None  # the value comes from the trace: its ancestors are not needed
            if node.owner is None and not isinstance(node, Constant | SharedVariable):
                raise ValueError(
                    f"The forward-sampling graph needs a value for {node} that is neither in "
                    "the trace nor in the model; pass a trace that holds it."
                )
        return node.owner.inputs if node.owner else None

    list(walk(list(outputs), expand))
    return found


def changed_data(
    model: Model,
    var_names: Iterable[str],
    constant_data: Mapping[str, np.ndarray] | None = None,
    constant_coords: Iterable[str] = (),
) -> frozenset:
    """The shared data behind ``var_names`` that differ from the trace's ``constant_data``.

    With the model's structure, the names and the trace's shapes, this is all
    :func:`forward_graph`'s result depends on, so it can key a cache of them.
    """
    data, coords = dict(constant_data or {}), set(constant_coords)
    return frozenset(
        v for v in graph_inputs([model[name] for name in var_names])
        if isinstance(v, SharedVariable) and not isinstance(v, RandomGeneratorSharedVariable)
        and not _shared_value_matches(v, data, coords)
    )


def forward_graph(
    model: Model,
    var_names: Iterable[str],
    trace_shapes: Mapping[str, tuple[int, ...]],
    constant_data: Mapping[str, np.ndarray] | None = None,
    constant_coords: Iterable[str] = (),
) -> DrawGraph:
    """Graph drawing ``var_names`` given one draw of the variables in a trace.

    Follows ``pymc.sample_posterior_predictive``: random variables absent from
    the trace, those in ``var_names``, and those downstream of changed data
    (``pm.set_data``) or of other redrawn variables are drawn anew; the rest
    are read from the trace. With an empty trace this is prior sampling.

    Parameters
    ----------
    model : pymc.Model
        The model; it is not modified.
    var_names : iterable of str
        Random variables and Deterministics to return.
    trace_shapes : mapping
        Names of the free variables and Deterministics held by the trace, with
        the shape of one draw.
    constant_data : mapping, optional
        ``pm.Data`` values at inference time (the trace's ``constant_data``);
        data whose value differs now are treated as changed.
    constant_coords : iterable of str
        Dims whose coordinates are unchanged since inference.
    """
    outputs = [model[name] for name in var_names]
    traceable = {v.name for v in model.free_RVs + model.deterministics}
    vars_in_trace = [model[n] for n in trace_shapes if n in traceable]
    changed = changed_data(model, var_names, constant_data, constant_coords)
    volatile = _volatile(outputs, vars_in_trace, model.basic_RVs, changed)
    trace_vars = _trace_inputs(outputs, vars_in_trace, volatile)
    value_inputs = [
        pt.tensor(name=v.name, dtype=v.dtype, shape=tuple(trace_shapes[v.name])) for v in trace_vars
    ]
    graphs = graph_replace(outputs, dict(zip(trace_vars, value_inputs)), strict=False)
    data_repl, data_names, _ = _data_replacements(model, graphs)
    rng_repl = {v: v.type() for v in graph_inputs(graphs) if isinstance(v.type, RandomType)}
    graphs = graph_replace(graphs, {**data_repl, **rng_repl}, strict=False)
    graphs, checks, messages = _checks_as_outputs(graphs)
    resampled = sorted(rv.name for rv in set(model.basic_RVs) & volatile)
    return DrawGraph(
        value_names=tuple(v.name for v in trace_vars),
        value_inputs=tuple(value_inputs),
        **_data_fields(data_repl, data_names),
        rng_inputs=tuple(rng_repl.values()),
        output_names=tuple(var_names),
        outputs=tuple(graphs),
        checks=tuple(checks),
        check_messages=tuple(messages),
        resampled=tuple(resampled),
    )


def _checks_as_outputs(graphs: list[Variable]):
    """Lift runtime checks out of the graph: each becomes a boolean output.

    JAX's tracing cannot raise on a traced value, and PyTensor's JAX backend
    drops such checks with a warning. Returning them lets the host raise with
    the check's own message after the call. The graphs are canonicalised
    first, as PyTensor's C backend does before running: checks on values the
    simplified graph no longer uses (PyMC builds some, on shape inference,
    that only hold after simplification) are dropped there too.
    """
    graphs = list(rewrite_graph(graphs, include=("canonicalize",)))
    nodes = [n for n in applys_between(list(graph_inputs(graphs)), graphs)
             if isinstance(n.op, CheckAndRaise)]
    if not nodes:
        return graphs, [], []
    conditions = [[c for c in n.inputs[1:]] for n in nodes]
    passthrough = {n.outputs[0]: n.inputs[0] for n in nodes}
    flat = [c for conds in conditions for c in conds]
    replaced = graph_replace([*graphs, *flat], passthrough, strict=False)
    graphs, flat = replaced[: len(graphs)], replaced[len(graphs):]
    checks, start = [], 0
    for conds in conditions:
        part = flat[start : start + len(conds)]
        start += len(conds)
        checks.append(pt.all([pt.all(c) for c in part]) if part else pt.constant(True))
    return graphs, checks, [str(n.op.msg) for n in nodes]


def map_graph(model: Model, include_transformed: bool = True) -> ModelGraph:
    """The log-density ``find_MAP`` maximises, and the values it reports.

    Like :func:`hiddenjax.model.extract_model_graph`, but the log-density has
    no Jacobian terms (PyMC's MAP is the mode on the constrained scale read
    through the transforms), and ``outputs`` are ``pm.find_MAP``'s: the
    value variables (transformed names, when ``include_transformed``), the
    free variables on their own support, and the Deterministics.
    """
    from pymc.util import get_default_varnames

    reported = get_default_varnames(model.unobserved_value_vars, include_transformed)
    graphs = [model.logp(jacobian=False, sum=True), *reported]
    check_deterministic_logp(model, graphs[0])
    data_repl, data_names, data_values = _data_replacements(model, graphs)
    theta, layout, value_repl = _flat_position(model, _value_shapes(model))
    logp, *outputs = graph_replace(graphs, {**data_repl, **value_repl}, strict=False)
    fields = _data_fields(data_repl, data_names)
    return ModelGraph(
        theta=theta,
        layout=layout,
        data_inputs=fields["data_inputs"],
        data_names=data_names,
        data_values=data_values,
        data_sources=fields["data_sources"],
        logp=logp,
        output_names=tuple(v.name for v in reported),
        outputs=tuple(outputs),
        loglik_names=(),
        loglik=(),
    )

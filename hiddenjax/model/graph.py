"""Read a PyMC model into plain graphs: what the compiler needs, and nothing of JAX."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt

from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)
from pymc.model import Model
from pytensor.compile import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import graph_inputs, io_toposort
from pytensor.tensor.elemwise import DimShuffle
from pytensor.tensor.shape import Reshape, SpecifyShape
from pytensor.tensor.subtensor import Subtensor
from pytensor.tensor.math import variadic_add
from pytensor.tensor.random.type import RandomType

from hiddenjax.model.errors import (
    check_continuous,
    check_deterministic_logp,
    check_likelihood_based,
)


class FlatLayout(NamedTuple):
    """Where each unconstrained value variable sits in the flat position vector."""

    names: tuple[str, ...]
    """Value-variable names (transformed names such as ``tau_log__``)."""
    shapes: tuple[tuple[int, ...], ...]
    """Shape of each value variable."""
    dtype: str
    """Float dtype of the flat vector."""

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s, dtype=int)) for s in self.shapes)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def ravel(self, point: dict[str, np.ndarray]) -> np.ndarray:
        """Flatten a ``{value name: array}`` point into one vector."""
        parts = [np.asarray(point[n], dtype=self.dtype).reshape(-1) for n in self.names]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)

    def unravel(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Split a vector (leading batch axes allowed) back into named arrays."""
        flat = np.asarray(flat)
        batch = flat.shape[:-1]
        bounds = np.cumsum((0, *self.sizes))
        return {
            name: flat[..., lo:hi].reshape((*batch, *shape))
            for name, shape, lo, hi in zip(self.names, self.shapes, bounds[:-1], bounds[1:])
        }


class ModelGraph(NamedTuple):
    """A PyMC model as graphs over one flat position and explicit data inputs."""

    theta: Variable
    """The flat unconstrained position (a 1-D float input with static length)."""
    layout: FlatLayout
    """How ``theta`` splits into the model's value variables."""
    data_inputs: tuple[Variable, ...]
    """Inputs standing for observed data and ``pm.Data`` values, static shapes."""
    data_names: tuple[str, ...]
    """Name of each data input: the ``pm.Data`` name, the observed variable's name,
    or ``constant_<k>`` for a lifted constant."""
    data_values: tuple[np.ndarray, ...]
    """Value of each data input when the graph was read."""
    data_sources: tuple[Variable, ...]
    """The model's own data variables (shared or constant) behind each data input."""
    logp: Variable
    """Joint log-density (with Jacobians and Potentials) over ``theta`` and data."""
    output_names: tuple[str, ...]
    """Free variables on their own support, then Deterministics, in model order."""
    outputs: tuple[Variable, ...]
    """Graphs of those values over ``theta`` and data."""
    loglik_names: tuple[str, ...]
    """Observed variable names."""
    loglik: tuple[Variable, ...]
    """Pointwise log-likelihood of each observed variable."""


LIFTED_SIZE = 1024
"""Float constants with at least this many entries become data inputs when lifting."""


_RESHAPING = (DimShuffle, Reshape, SpecifyShape, Subtensor)
"""Ops that only rearrange a constant: cheap to run on an input, nothing to fold."""


def _folded_constants(graphs: list[Variable]) -> set[Variable]:
    """Constants that some computation on constants alone reads, such as
    ``cholesky(cov)`` for a fixed covariance. Kept constant, that computation is
    folded once when the graph is lowered; as an input it would rerun at every
    gradient."""
    roots: dict[Variable, frozenset] = {}
    folded: set[Variable] = set()
    for node in io_toposort(list(graph_inputs(graphs)), graphs):
        parts = [frozenset([i]) if isinstance(i, Constant) else roots.get(i) for i in node.inputs]
        if not parts or any(part is None for part in parts):
            continue  # reads a value, a datum or a random state: computed at run time anyway
        merged = frozenset().union(*parts)
        roots.update(dict.fromkeys(node.outputs, merged))
        if not isinstance(node.op, _RESHAPING):
            folded |= merged
    return folded


def _lifted(var: Variable, lift: bool, folded: set[Variable]) -> bool:
    """Whether a constant is large float data (a design matrix, a covariate) to pass in."""
    return (lift and isinstance(var, Constant) and var.type.dtype.startswith("float")
            and np.size(var.data) >= LIFTED_SIZE and var not in folded)


def _data_replacements(model: Model, graphs: list[Variable], lift_constants: bool = False):
    """Map every observed constant and data container to a fresh static-shaped input.

    With ``lift_constants``, large float constants (``np`` arrays used directly in
    the model, such as a design matrix) become inputs too, named ``constant_<k>``:
    compiled programs then take them as arguments instead of embedding them,
    which keeps every program, and its compile and load time, small. A constant
    that a computation on constants alone reads stays, so that it is folded.
    """
    observed = {v: rv.name for rv, v in model.rvs_to_values.items() if rv in model.observed_RVs}
    dim_lengths = set(model.dim_lengths.values())
    folded = _folded_constants(graphs) if lift_constants else set()
    replacements, names, values = {}, [], []
    for var in graph_inputs(graphs):
        if isinstance(var.type, RandomType) or var in replacements:
            continue
        if var in dim_lengths:
            # Dim lengths fix shapes: constants give the lowering static shapes.
            replacements[var] = pt.constant(var.get_value(), dtype=var.type.dtype)
            continue
        if isinstance(var, SharedVariable):
            value, name = var.get_value(borrow=True), var.name
        elif isinstance(var, Constant) and var in observed:
            value, name = var.data, observed[var]
        elif _lifted(var, lift_constants, folded):
            value, name = var.data, f"constant_{len(names)}"
        else:
            continue
        value = np.asarray(value)
        name = name or f"data_{len(names)}"
        replacements[var] = pt.tensor(name=name, dtype=var.type.dtype, shape=value.shape)
        names.append(name)
        values.append(value)
    return replacements, tuple(names), tuple(values)


def _logp_graphs(model: Model) -> tuple[Variable, list[Variable]]:
    """The joint log-density, as ``model.logp()`` builds it, and the observed
    variables' pointwise terms, as ``model.logp(vars=observed, sum=False)``
    does: both from one pass of PyMC's log-probability rewrites."""
    factors = model.logp(jacobian=True, sum=False)
    joint = variadic_add(*(pt.as_tensor(f, allow_xtensor_conversion=True).sum() for f in factors))
    first = len(model.free_RVs)
    return joint, factors[first : first + len(model.observed_RVs)]


def _value_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """Shapes of the value variables: their static shapes, or else the initial point's."""
    shapes = {v.name: v.type.shape for v in model.value_vars}
    if any(None in shape for shape in shapes.values()):
        point = model.initial_point(random_seed=0)
        shapes = {name: np.shape(point[name]) for name in shapes}
    return shapes


def _flat_position(model: Model, value_shapes: dict[str, tuple[int, ...]]):
    """A flat ``theta`` input and the value-variable slices it replaces."""
    shapes = tuple(tuple(int(n) for n in value_shapes[v.name]) for v in model.value_vars)
    dtype = pytensor.config.floatX
    layout = FlatLayout(tuple(v.name for v in model.value_vars), shapes, dtype)
    theta = pt.tensor(name="theta", dtype=dtype, shape=(layout.size,))
    replacements, start = {}, 0
    for var, shape, size in zip(model.value_vars, layout.shapes, layout.sizes):
        piece = theta[start : start + size].reshape(shape).astype(var.dtype)
        replacements[var] = piece
        start += size
    return theta, layout, replacements


def extract_model_graph(model: Model, var_names: list[str] | None = None,
                        lift_constants: bool = True) -> ModelGraph:
    """Read ``model`` into a :class:`ModelGraph`.

    Parameters
    ----------
    model : pymc.Model
        The model; it is not modified.
    var_names : list of str, optional
        Free variables and Deterministics to return from ``outputs``; all by default.
    lift_constants : bool
        Make large float constants data inputs (see ``_data_replacements``).
        Batched fits, which give every chain its own copy of the data, keep
        them as constants.
    """
    check_continuous(model)
    check_likelihood_based(model)
    keep = _output_vars(model, var_names)
    observed_rvs = list(model.observed_RVs)
    # Nodes built here would each record a Python stack trace, pointing into
    # PyMC (a sixth of the time spent reading a small model); they need none.
    with pytensor.config.change_flags(traceback__limit=0):
        joint, pointwise = _logp_graphs(model)
        graphs = [joint, *model.replace_rvs_by_values(keep), *pointwise]
    check_deterministic_logp(model, graphs[0])
    data_repl, data_names, data_values = _data_replacements(model, graphs, lift_constants)
    theta, layout, value_repl = _flat_position(model, _value_shapes(model))
    logp, *rest = graph_replace(graphs, {**data_repl, **value_repl}, strict=False)
    outputs, loglik = rest[: len(keep)], rest[len(keep) :]
    return ModelGraph(
        theta=theta,
        layout=layout,
        data_inputs=tuple(v for v in data_repl.values() if not isinstance(v, Constant)),
        data_names=data_names,
        data_values=data_values,
        data_sources=tuple(v for v, r in data_repl.items() if not isinstance(r, Constant)),
        logp=logp,
        output_names=tuple(v.name for v in keep),
        outputs=tuple(outputs),
        loglik_names=tuple(rv.name for rv in observed_rvs),
        loglik=tuple(loglik),
    )


def draw_bytes(graph: ModelGraph, log_likelihood: bool = False) -> int | None:
    """Bytes of one draw of ``graph``'s outputs (and pointwise log-likelihood when
    asked), in their graph dtypes; None where a shape is not fixed by the data's.

    Static shapes are read from the types; the rest come from PyTensor's shape
    inference over the static-shaped data inputs, folded to constants.
    """
    from pytensor.graph.rewriting.utils import rewrite_graph

    graphs = [*graph.outputs, *(graph.loglik if log_likelihood else ())]
    unknown = [g for g in graphs if None in g.type.shape]
    inferred = {}
    if unknown:
        with pytensor.config.change_flags(traceback__limit=0):
            shapes = rewrite_graph([pt.as_tensor(g.shape, dtype="int64") for g in unknown],
                                   include=("ShapeOpt", "canonicalize"))
        if not all(isinstance(s, Constant) for s in shapes):
            return None
        inferred = {g: tuple(int(n) for n in s.data) for g, s in zip(unknown, shapes)}
    return sum(int(np.prod(inferred.get(g, g.type.shape), dtype=np.int64))
               * np.dtype(g.type.dtype).itemsize for g in graphs)


class DataContext(NamedTuple):
    """What InferenceData needs from the model besides draws."""

    coords: dict
    """Model coords, as ArviZ takes them."""
    dims: dict
    """Variable dims, as ArviZ takes them."""
    observed_data: dict
    """Observed values by variable name."""
    constant_data: dict
    """``pm.Data`` values by name."""


def data_context(model: Model) -> DataContext:
    """Coords, dims, observations and ``pm.Data`` values as the model holds them now."""
    coords, dims = coords_and_dims_for_inferencedata(model)
    return DataContext(coords, dims, find_observations(model), find_constants(model))


def _value_of(var: Variable) -> np.ndarray:
    return np.asarray(var.get_value(borrow=True) if isinstance(var, SharedVariable) else var.data)


def current_data(graph: ModelGraph) -> tuple[np.ndarray, ...]:
    """The data values the model holds now (after any ``pm.set_data``)."""
    return tuple(_value_of(v) for v in graph.data_sources)


def structure_key(model: Model, var_names: list[str] | None = None) -> tuple:
    """What a compiled model depends on, besides data values: same key, same program.

    Covers the model's variables, the shapes and dtypes of its data and
    observations, its dim lengths, and the requested outputs.
    """
    observed = [model.rvs_to_values[rv] for rv in model.observed_RVs]
    data = {v.name or str(i): v for i, v in enumerate([*model.data_vars, *observed])}
    shapes = tuple(
        (name, _value_of(v).shape, str(v.dtype))
        for name, v in data.items()
        if isinstance(v, SharedVariable | Constant)
    )
    dims = tuple((k, int(_value_of(v))) for k, v in model.dim_lengths.items()
                 if isinstance(v, SharedVariable | Constant))
    names = tuple(model.named_vars)
    return names, shapes, dims, tuple(var_names) if var_names is not None else None, model.check_bounds


def _output_vars(model: Model, var_names: list[str] | None) -> list[Variable]:
    """Free variables and Deterministics to report, in ``pm.sample``'s order.

    As in PyMC's posterior: free variables without a transform, then those
    with one, then Deterministics.
    """
    plain = [rv for rv in model.free_RVs if model.rvs_to_transforms.get(rv) is None]
    transformed = [rv for rv in model.free_RVs if model.rvs_to_transforms.get(rv) is not None]
    candidates = plain + transformed + list(model.deterministics)
    if var_names is None:
        return candidates
    by_name = {v.name: v for v in candidates}
    unknown = [n for n in var_names if n not in by_name]
    if unknown:
        raise ValueError(
            f"var_names {unknown} are not free variables or Deterministics of the model; "
            f"choose from {sorted(by_name)}."
        )
    wanted = set(var_names)
    return [v for v in candidates if v.name in wanted]

"""A digest of a PyTensor graph that is the same in every process, or None.

The program cache (``hiddenjax.execution.program_cache``) can key a model's
compiled programs by the graph they are lowered from instead of by the
lowered JAX functions' jaxprs. Reading a graph costs milliseconds; lowering
it (PyTensor's rewrites, then tracing) costs about half a second, and a
second process that finds its programs in the cache never needs to.

The digest covers every node's operation (its class and ``__props__``,
recursively), every variable's type, the values of constants and how nodes
connect. Anything it cannot describe exactly (an operation without
``__props__``, a shared variable, an opaque object among the props) makes
the whole digest None: such a graph is keyed by its jaxprs as before.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Mapping, Sequence

import numpy as np
from pytensor.compile import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.op import Op
from pytensor.graph.traversal import io_toposort
from pytensor.graph.type import Type
from pytensor.scalar.basic import ScalarInnerGraphOp, ScalarOp

__all__ = ["graph_digest"]


class _Opaque(Exception):
    """A part of the graph that has no exact, process-independent description."""


def graph_digest(inputs: Sequence[Variable], outputs: Sequence[Variable]) -> str | None:
    """Digest of the graph from ``inputs`` to ``outputs``, or None when it cannot be made."""
    try:
        return hashlib.sha256(_graph_text(inputs, outputs).encode()).hexdigest()
    except _Opaque:
        return None


def _graph_text(inputs: Sequence[Variable], outputs: Sequence[Variable]) -> str:
    """One line per input, node and output; variables named by their order of appearance."""
    names: dict[Variable, str] = {}
    lines = []
    for i, var in enumerate(inputs):
        names[var] = f"i{i}"
        lines.append(f"input {_describe(var.type)}")
    for node in io_toposort(list(inputs), list(outputs)):
        args = [names[v] if v in names else _leaf(v, names, lines) for v in node.inputs]
        for out in node.outputs:
            names[out] = f"v{len(names)}"
        outs = ",".join(f"{names[o]}:{_describe(o.type)}" for o in node.outputs)
        lines.append(f"{_describe(node.op)}({','.join(args)}) -> {outs}")
    ends = [names[v] if v in names else _leaf(v, names, lines) for v in outputs]
    lines.append("outputs " + ",".join(ends))
    return "\n".join(lines)


def _leaf(var: Variable, names: dict, lines: list) -> str:
    """Name a constant reached from the graph; anything else free in it is opaque."""
    if isinstance(var, SharedVariable) or not isinstance(var, Constant):
        raise _Opaque(f"free variable {var}")
    names[var] = f"c{len(names)}"
    lines.append(f"constant {_describe(var.type)} {_array(np.asarray(var.data))}")
    return names[var]


def _array(value: np.ndarray) -> str:
    data = np.ascontiguousarray(value)
    return f"{data.dtype.str}{data.shape}:{hashlib.sha256(data.tobytes()).hexdigest()}"


def _describe(obj) -> str:
    """An exact text for a value found in an op's props or a variable's type."""
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, np.ndarray | np.generic):
        return _array(np.asarray(obj))
    if isinstance(obj, np.dtype):
        return f"dtype:{obj.str}"
    if isinstance(obj, slice):
        return f"slice({_describe(obj.start)},{_describe(obj.stop)},{_describe(obj.step)})"
    if isinstance(obj, Mapping):
        items = sorted((_describe(k), _describe(v)) for k, v in obj.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(obj, tuple | list):
        return f"{type(obj).__name__}(" + ",".join(_describe(x) for x in obj) + ")"
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        return f"<{_qualified(obj)}>"
    if isinstance(obj, FunctionGraph):
        return f"graph[{_graph_text(obj.inputs, obj.outputs)}]"
    if isinstance(obj, Op | Type) or hasattr(type(obj), "__props__"):
        return _with_props(obj)
    raise _Opaque(f"cannot describe {type(obj).__name__}")


def _with_props(obj) -> str:
    props = getattr(type(obj), "__props__", None)
    if props is None and _plain_scalar_op(obj):
        # PyTensor's scalar ops compare by class, output-type rule (Cast's holds its
        # type) and, for comparisons, a ``bool`` flag: all of it is described.
        props = ("output_types_preference", "bool") if hasattr(obj, "bool") else (
            "output_types_preference",)
    if props is None:
        raise _Opaque(f"{type(obj).__name__} has no __props__")
    fields = ",".join(f"{p}={_describe(getattr(obj, p))}" for p in props)
    return f"{_qualified(type(obj))}[{fields}]"


def _plain_scalar_op(obj) -> bool:
    """A PyTensor scalar op without an inner graph, equal by the rules above."""
    eq_module = getattr(type(obj).__eq__, "__module__", "")
    return (isinstance(obj, ScalarOp) and not isinstance(obj, ScalarInnerGraphOp)
            and eq_module in ("pytensor.scalar.basic", "pytensor.scalar.math"))


def _qualified(obj) -> str:
    name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if "<" in name or not name.strip("."):
        raise _Opaque(f"unnamed {obj!r}")  # a lambda or a local function has no stable name
    return name

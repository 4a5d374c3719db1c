"""Pre-flight: make a PyTensor graph lowerable to JAX, or say exactly why it is not.

Walks every node of a FunctionGraph, inner graphs included (``Composite``,
``ScalarLoop``, ``Scan``, ``OpFromGraph`` and PyMC's symbolic random variables),
and for each Op:

1. swaps in hiddenjax's correction when PyTensor's lowering of it is known to
   be wrong (see :func:`hiddenjax.compile.dispatch.substitutes.correction_for`);
2. keeps it if PyTensor (or :mod:`hiddenjax.compile.dispatch`) lowers it;
3. otherwise swaps in hiddenjax's stand-in for it when there is one (an Op whose
   PyTensor lowering needs an optional package, see
   :mod:`hiddenjax.compile.dispatch.substitutes`);
4. otherwise reports it, with the nearest named model variable it feeds, and
   either wraps it in a host callback (one warning for the whole graph) or,
   with ``strict=True``, raises :class:`UnsupportedOpError` listing all of them.

Typical use, on a graph already rewritten by the ``HIDDENJAX`` mode::

    fgraph = FunctionGraph(inputs, outputs, clone=True)
    hiddenjax_mode().optimizer.rewrite(fgraph)
    make_lowerable(fgraph, strict=strict)
    fn = jax_funcify(fgraph)
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace

from pytensor.compile.builders import OpFromGraph
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.graph.traversal import ancestors
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.link.jax.dispatch.random import jax_sample_fn
from pytensor.scalar.basic import ScalarInnerGraphOp
from pytensor.scan.op import Scan
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.random.op import RandomVariable

from hiddenjax.compile.dispatch.host_callback import HostCallback, can_run_on_host
from hiddenjax.compile.dispatch.loop import JaxWhileScan, while_scan_refusal
from hiddenjax.compile.dispatch.substitutes import stand_in

_FIX = (
    "Rewrite that part of the model with operations hiddenjax supports, or write a JAX "
    "lowering for the Op with `pytensor.link.jax.dispatch.jax_funcify.register` "
    "(random variables: `jax_sample_fn.register`) before sampling."
)


@dataclass(frozen=True)
class UnsupportedOp:
    """An Op with no JAX lowering, found by the pre-flight."""

    op: str
    """The Op as PyTensor prints it."""
    op_type: str
    """Qualified name of the Op's class."""
    variable: str | None
    """Nearest named variable the Op feeds (or, failing that, is fed by)."""
    inside: tuple[str, ...]
    """Enclosing Ops when the Op sits in an inner graph, outermost first."""
    reason: str
    """Why PyTensor cannot lower it."""
    on_host: bool
    """Whether the Op can run through a host callback instead."""

    def describe(self) -> str:
        """One line for warnings and errors."""
        where = f"feeding '{self.variable}'" if self.variable else "feeding no named variable"
        inside = f" inside {' > '.join(self.inside)}" if self.inside else ""
        return f"{self.op} ({self.op_type}){inside}, {where}: {self.reason}"


class UnsupportedOpError(NotImplementedError):
    """Raised when a graph has Ops JAX cannot lower and host callbacks are not allowed."""


class HostCallbackWarning(UserWarning):
    """Some Ops of a model run on the host through callbacks: it samples, but slower."""


def find_unsupported(fgraph: FunctionGraph) -> list[UnsupportedOp]:
    """Every Op of ``fgraph`` (inner graphs included) that neither PyTensor nor hiddenjax lowers.

    Ops with a hiddenjax stand-in count as supported. ``fgraph`` is not modified.
    """
    return _Walker(fallback=False).walk(fgraph.clone())


def make_lowerable(
    fgraph: FunctionGraph, *, strict: bool = False, stacklevel: int = 2
) -> list[UnsupportedOp]:
    """Swap in stand-ins and host callbacks so that ``jax_funcify(fgraph)`` succeeds.

    Modifies ``fgraph`` in place. Returns the Ops that run on the host.

    Parameters
    ----------
    fgraph
        The graph to lower, after the ``HIDDENJAX`` mode's rewrites.
    strict
        Raise :class:`UnsupportedOpError` instead of falling back to host callbacks.
    stacklevel
        Passed to :func:`warnings.warn` so the warning points at the user's line.

    Raises
    ------
    UnsupportedOpError
        With ``strict=True`` when any Op has no JAX lowering, or when an Op without
        one cannot run on the host either (a non-tensor input, a dynamic shape).
    """
    import hiddenjax.compile.dispatch  # noqa: F401  (registers lowerings)

    found = _Walker(fallback=not strict).walk(fgraph)
    if not found:
        return []
    if strict or not all(u.on_host for u in found):
        _raise(found, strict)
    listing = "\n".join(f"  - {u.describe()}" for u in found)
    warnings.warn(
        f"{len(found)} operation(s) have no JAX implementation and run on the host through "
        f"callbacks: the model samples, but slower, and not inside one device program.\n"
        f"{listing}\n{_FIX} Pass strict=True to refuse instead.",
        HostCallbackWarning,
        stacklevel=stacklevel + 1,
    )
    return found


def _raise(found: list[UnsupportedOp], strict: bool) -> None:
    stuck = found if strict else [u for u in found if not u.on_host]
    listing = "\n".join(f"  - {u.describe()}" for u in stuck)
    why = (
        "strict=True refuses host callbacks"
        if strict
        else "they cannot run on the host either (non-tensor inputs or dynamic shapes)"
    )
    raise UnsupportedOpError(
        f"{len(stuck)} operation(s) have no JAX implementation and {why}:\n{listing}\n{_FIX}"
    )


def _lowers(op: Op, node: Apply) -> str | None:
    """None if PyTensor can lower ``node`` with ``op``, else the reason it cannot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            jax_funcify(op, node=node)
            if isinstance(op, RandomVariable):
                jax_sample_fn(op, node=node)
        except NotImplementedError as err:
            return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


def _nearest_name(fgraph: FunctionGraph, node: Apply) -> str | None:
    """The first named variable downstream of ``node`` (breadth first), else upstream."""
    frontier, seen = list(node.outputs), set()
    while frontier:
        nxt = []
        for var in frontier:
            if var in seen:
                continue
            seen.add(var)
            if var.name:
                return var.name
            for client, _ in fgraph.clients.get(var, ()):
                if isinstance(client, Apply):
                    nxt.extend(client.outputs)
        frontier = nxt
    named = [v for v in ancestors(node.inputs) if v.name and isinstance(v, Variable)]
    return named[0].name if named else None


class _Walker:
    """One pass over a graph and its inner graphs, replacing nodes as it goes."""

    def __init__(self, fallback: bool):
        self.fallback = fallback
        self.found: list[UnsupportedOp] = []

    def walk(self, fgraph: FunctionGraph) -> list[UnsupportedOp]:
        self._walk(fgraph, inside=(), outer_name=None)
        return self.found

    def _walk(self, fgraph: FunctionGraph, inside: tuple[str, ...], outer_name) -> bool:
        """Process ``fgraph`` in place; True if any node changed."""
        changed = False
        for node in list(fgraph.toposort()):
            name = outer_name if inside else _nearest_name(fgraph, node)
            new_op = self._visit(node, inside, name)
            if new_op is not None:
                new_node = Apply(new_op, list(node.inputs), [o.clone() for o in node.outputs])
                fgraph.replace_all(
                    list(zip(node.outputs, new_node.outputs, strict=True)),
                    reason="hiddenjax_preflight",
                    import_missing=True,
                )
                changed = True
        return changed

    def _visit(self, node: Apply, inside, name) -> Op | None:
        """A replacement Op for ``node``, or None to keep it."""
        op = node.op
        if _has_inner_graph(op):
            return self._visit_container(node, inside, name)
        correction = _stand_in_for(op, corrections_only=True)
        if correction is not None:
            return correction
        reason = _lowers(op, node)
        if reason is None:
            return None
        replacement = _stand_in_for(op)
        if replacement is not None and _lowers(replacement, node) is None:
            return replacement
        return self._unsupported(node, inside, name, reason)

    def _visit_container(self, node: Apply, inside, name) -> Op | None:
        op = node.op
        if isinstance(op, Scan) and op.info.as_while:
            reason = while_scan_refusal(op, _stored_lengths(op, node))
            if reason is not None:
                # Its outputs have data-dependent lengths: no callback can declare them.
                return self._unsupported(node, inside, name, reason, on_host=False)
        inner_op = op.scalar_op if isinstance(op, Elemwise) else op
        inner = _prepared_inner_fgraph(inner_op)
        label = (*inside, str(inner_op))
        if isinstance(inner_op, ScalarInnerGraphOp):
            # Scalar Ops inside a Composite or ScalarLoop cannot run on the host one by
            # one: the enclosing Elemwise does instead.
            sub = _Walker(fallback=False)
            changed = sub._walk(inner, label, name)
            if sub.found:
                on_host = can_run_on_host(node)
                self.found.extend(replace(u, on_host=on_host) for u in sub.found)
                return HostCallback(op) if self.fallback and on_host else None
        else:
            changed = self._walk(inner, label, name)
        if isinstance(op, Scan) and op.info.as_while:
            return _with_inner_fgraph(_as_while_scan(op), inner)
        if not changed:
            return None
        new_inner = _with_inner_fgraph(inner_op, inner)
        return _rewrap(op, new_inner) if isinstance(op, Elemwise) else new_inner

    def _unsupported(self, node, inside, name, reason, on_host=None) -> Op | None:
        on_host = can_run_on_host(node) if on_host is None else on_host
        self.found.append(
            UnsupportedOp(
                op=str(node.op),
                op_type=f"{type(node.op).__module__}.{type(node.op).__qualname__}",
                variable=name,
                inside=tuple(inside),
                reason=reason,
                on_host=on_host,
            )
        )
        if self.fallback and on_host:
            return HostCallback(node.op)
        return None


def _has_inner_graph(op: Op) -> bool:
    if isinstance(op, Elemwise):
        return isinstance(op.scalar_op, ScalarInnerGraphOp)
    return isinstance(op, ScalarInnerGraphOp | Scan | OpFromGraph)


def _stand_in_for(op: Op, corrections_only: bool = False) -> Op | None:
    if isinstance(op, Elemwise):
        scalar = stand_in(op.scalar_op, corrections_only=corrections_only)
        return _rewrap(op, scalar) if scalar is not None else None
    if isinstance(op, Blockwise):
        core = stand_in(op.core_op, corrections_only=corrections_only)
        if core is None:
            return None
        new = copy.copy(op)
        new.core_op = core
        return new
    return stand_in(op, corrections_only=corrections_only)


def _stored_lengths(op: Scan, node: Apply) -> list[int | None]:
    """How many steps each traced output of a Scan node keeps (None where not static)."""
    buffers = [*op.outer_mitsot(node.inputs), *op.outer_sitsot(node.inputs)]
    lengths = [b.type.shape[0] for b in buffers]
    for n in op.outer_nitsot(node.inputs):
        lengths.append(int(n.data) if isinstance(n, Constant) else None)
    return lengths


def _as_while_scan(op: Scan) -> JaxWhileScan:
    new = copy.copy(op)
    new.__class__ = JaxWhileScan
    return new


def _rewrap(op: Elemwise, scalar_op) -> Elemwise:
    return Elemwise(scalar_op, inplace_pattern=dict(op.inplace_pattern))


def _prepared_inner_fgraph(op: Op) -> FunctionGraph:
    """A private copy of ``op``'s inner graph, rewritten the way PyTensor's lowering would."""
    inner = op.fgraph.clone()
    if isinstance(op, Scan):
        # PyTensor's Scan lowering rewrites the inner graph before lowering it; do it
        # first so Ops those rewrites introduce get stand-ins too, and apply hiddenjax's
        # own rewrites (masked updates in rejection-sampling loops).
        from pytensor.compile.mode import JAX, get_mode

        from hiddenjax.compile.rewrites import TAG

        rewriter = (
            get_mode(op.mode).including("jax", TAG).excluding("numba", *JAX._optimizer.exclude)
        )
        rewriter.optimizer(inner)
    return inner


def _with_inner_fgraph(op: Op, fgraph: FunctionGraph) -> Op:
    """A copy of ``op`` whose inner graph is ``fgraph`` (for lowering only)."""
    new = copy.copy(op)
    if isinstance(op, ScalarInnerGraphOp):
        new._fgraph = fgraph
    else:
        new.fgraph = fgraph
    return new

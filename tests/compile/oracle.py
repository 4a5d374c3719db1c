"""One shared oracle: a graph compiled by hiddenjax must match PyTensor's C backend.

``assert_matches_c`` compares outputs, ``assert_grad_matches_c`` compares
gradients three ways: PyTensor's symbolic gradient compiled by hiddenjax, and
``jax.grad`` of the lowered graph, each against the symbolic gradient in C.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.traversal import graph_inputs
from pytensor.link.jax.dispatch import jax_funcify, jax_typify

from hiddenjax.compile import MODE_NAME
from hiddenjax.compile.linker import hiddenjax_mode
from hiddenjax.compile.preflight import make_lowerable

RTOL = 1e-6
ATOL = 1e-10
C_MODE = "FAST_RUN"


def _as_list(x):
    return list(x) if isinstance(x, list | tuple) else [x]


def random_inputs(inputs: Sequence, seed: int = 0) -> list[np.ndarray]:
    """Standard-normal floats and small non-negative integers (unknown dimensions: 3)."""
    rng = np.random.default_rng(seed)
    values = []
    for var in inputs:
        shape = tuple(3 if s is None else s for s in var.type.shape)
        dtype = var.type.dtype
        if dtype.startswith("float"):
            values.append(rng.normal(size=shape).astype(dtype))
        elif dtype == "bool":
            values.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            values.append(rng.integers(0, 5, size=shape).astype(dtype))
    return values


def lower_graph(inputs: Sequence, outputs: Sequence, strict: bool = True):
    """The JAX function hiddenjax makes of a graph: mode rewrites, pre-flight, ``jax_funcify``.

    Shared variables the outputs read (a distribution's random generator) are
    bound to their current values, as ``pytensor.function`` binds them.
    """
    outputs = _as_list(outputs)
    shared = [v for v in graph_inputs(outputs)
              if isinstance(v, SharedVariable) and all(v is not i for i in inputs)]
    fgraph = FunctionGraph([*inputs, *shared], outputs, clone=True)
    hiddenjax_mode().optimizer.rewrite(fgraph)
    make_lowerable(fgraph, strict=strict)
    fn = jax_funcify(fgraph)
    bound = [jax_typify(v.get_value(borrow=False)) for v in shared]
    return lambda *values: fn(*values, *bound)


def _compare(got, want, rtol, atol, what):
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what}[{k}]: shape {g.shape} != C backend's {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=f"{what}[{k}] differs from the C backend")


def assert_matches_c(inputs, outputs, values=None, *, rtol=RTOL, atol=ATOL, seed=0):
    """Outputs of the graph in HIDDENJAX mode equal those of the C backend at ``values``."""
    inputs, outputs = list(inputs), _as_list(outputs)
    values = random_inputs(inputs, seed) if values is None else list(values)
    want = pytensor.function(inputs, outputs, mode=C_MODE)(*values)
    got = pytensor.function(inputs, outputs, mode=MODE_NAME)(*values)
    _compare(got, want, rtol, atol, "output")
    return got


def assert_grad_matches_c(inputs, cost, values=None, wrt=None, *, rtol=RTOL, atol=ATOL,
                          seed=0, jax_grad=True, symmetric=()):
    """Gradients of the scalar ``cost`` agree with PyTensor's symbolic gradient in C.

    Checks ``pytensor.grad`` compiled in HIDDENJAX mode and, with ``jax_grad``, the
    ``jax.grad`` of the lowered cost. ``wrt`` defaults to the floating-point inputs.
    For square-matrix inputs listed in ``symmetric`` the ``jax.grad`` comparison is
    along symmetric directions only (``g + g.T``): JAX differentiates a Cholesky
    factorisation through the symmetrised matrix, PyTensor through one triangle.
    """
    inputs = list(inputs)
    values = random_inputs(inputs, seed) if values is None else list(values)
    wrt = [i for i in inputs if i.type.dtype.startswith("float")] if wrt is None else list(wrt)
    grads = pytensor.grad(cost, wrt, disconnected_inputs="ignore")
    want = pytensor.function(inputs, grads, mode=C_MODE)(*values)
    got = pytensor.function(inputs, grads, mode=MODE_NAME)(*values)
    _compare(got, want, rtol, atol, "pytensor.grad")
    if jax_grad:
        fn = lower_graph(inputs, [cost])
        positions = [inputs.index(w) for w in wrt]
        got = jax.grad(lambda *xs: jnp.sum(fn(*xs)[0]), argnums=positions)(*values)
        sym = [k for k, w in enumerate(wrt) if any(w is s for s in symmetric)]
        got = [g + np.swapaxes(g, -1, -2) if k in sym else g for k, g in enumerate(got)]
        want_j = [w + np.swapaxes(w, -1, -2) if k in sym else w for k, w in enumerate(want)]
        _compare(got, want_j, rtol, atol, "jax.grad")
    return want


def scalar_inputs(*names, dtype="float64"):
    """Vectors of length 5 named ``names``, a common oracle input shape."""
    return [pt.vector(n, dtype=dtype, shape=(5,)) for n in names]


def finite_difference_grad(fn, values, position, step_scale=1e-5):
    """Central differences of the scalar ``fn(*values)`` in ``values[position]``.

    The step is ``step_scale * max(1, |x|)`` per coordinate: truncation error
    ``O(step^2)`` and rounding error ``O(eps / step)`` both stay near 1e-10
    relative for smooth, well-scaled functions.
    """
    base = np.asarray(values[position], dtype="float64")
    grad = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        step = step_scale * max(1.0, abs(base[idx]))
        shifted = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[idx] += sign * step
            args = list(values)
            args[position] = moved
            shifted.append(float(np.sum(fn(*args))))
        grad[idx] = (shifted[0] - shifted[1]) / (2 * step)
    return grad


def assert_jax_grad_matches_c_differences(inputs, cost, values, wrt=None, *, rtol=RTOL,
                                          atol=1e-8):
    """``jax.grad`` of the lowered ``cost`` equals central differences of its C-backend value.

    For graphs whose Ops PyTensor gives no symbolic gradient, so that
    ``pytensor.grad`` cannot serve as the oracle. ``atol`` allows for the
    differences' own error (about 1e-10 of the function's scale).
    """
    inputs, values = list(inputs), list(values)
    wrt = [i for i in inputs if i.type.dtype.startswith("float")] if wrt is None else list(wrt)
    c_fn = pytensor.function(inputs, cost, mode=C_MODE)
    positions = [inputs.index(w) for w in wrt]
    want = [finite_difference_grad(c_fn, values, p) for p in positions]
    fn = lower_graph(inputs, [cost])
    got = jax.grad(lambda *xs: jnp.sum(fn(*xs)[0]), argnums=positions)(*values)
    _compare(got, want, rtol, atol, "jax.grad vs C differences")
    return want

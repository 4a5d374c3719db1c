"""Graph rewrites that only hiddenjax compilations apply, before lowering.

They are registered in PyTensor's ``optdb`` under the tag ``hiddenjax``, which
no PyTensor mode includes: only :func:`hiddenjax.compile.linker.rewrite_query`
and the pre-flight's preparation of Scan inner graphs ask for it.
"""

from __future__ import annotations

import numpy as np
import pytensor.scalar as ps
import scipy.linalg
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.graph.basic import Constant
from pytensor.graph.rewriting.basic import dfs_rewriter, in2out, node_rewriter
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.basic import get_underlying_scalar_constant_value
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.exceptions import NotScalarConstantError
from pytensor.tensor.slinalg import SolveTriangular
from pytensor.tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor

TAG = "hiddenjax"


@node_rewriter([AdvancedIncSubtensor])
def masked_update_to_where(fgraph, node):
    """``x[mask] = y[mask]`` becomes ``where(mask, y, x)`` (``+=``: ``where(mask, x + y, x)``).

    A boolean mask over every axis has a data-dependent number of ``True``
    entries, which JAX cannot trace; the rewritten graph has static shapes. The
    two agree exactly: NumPy requires the mask to have the shape of both ``x``
    and ``y`` there. This is the update of PyMC's rejection-sampling loops
    (``Truncated`` without an inverse CDF, ``Hurdle``).
    """
    if len(node.inputs) != 3:
        return None
    x, source, mask = node.inputs
    if mask.type.dtype != "bool" or source.owner is None:
        return None
    if not isinstance(source.owner.op, AdvancedSubtensor) or len(source.owner.inputs) != 2:
        return None
    y, source_mask = source.owner.inputs
    if source_mask is not mask or not (x.type.ndim == y.type.ndim == mask.type.ndim):
        return None
    new = y if node.op.set_instead_of_inc else x + y
    out = pt.where(mask, new, x).astype(node.outputs[0].type.dtype)
    return [out]


optdb.register(
    "hiddenjax_masked_update_to_where",
    dfs_rewriter(masked_update_to_where),
    TAG,
    position=100,
)


def _rejected(var):
    """``(cond, x)`` if ``var`` is ``switch(cond, x, -inf)`` (a failed check gives -inf)."""
    node = var.owner
    if node is None or not isinstance(node.op, Elemwise) or not isinstance(node.op.scalar_op,
                                                                           ps.Switch):
        return None
    cond, x, fallback = node.inputs
    try:
        value = get_underlying_scalar_constant_value(fallback)
    except NotScalarConstantError:
        return None
    return (cond, x) if np.isneginf(value) else None


@node_rewriter([Elemwise])
def lift_rejection_over_sums(fgraph, node):
    """``a + switch(c, x, -inf)`` becomes ``switch(c, a + x, -inf)``; likewise ``switch - b``.

    PyMC turns a parameter check into ``switch(c, logp, -inf)`` around the term
    that checks it, but other terms of the same log-density may be NaN at the
    invalid parameter (TruncatedNormal's normaliser with a negative sigma), and
    ``-inf + NaN`` is NaN. Lifted, the check covers the whole sum: a failed check
    gives -inf, as hiddenjax promises. Where every check passes nothing changes.
    """
    scalar_op = node.op.scalar_op
    if isinstance(scalar_op, ps.Add):
        positions = range(len(node.inputs))
    elif isinstance(scalar_op, ps.Sub):
        positions = range(1)  # b - switch(c, x, -inf) is +inf where c fails: left alone
    else:
        return None
    for k in positions:
        found = _rejected(node.inputs[k])
        if found is None:
            continue
        cond, x = found
        others = [*node.inputs[:k], x, *node.inputs[k + 1 :]]
        inner = node.op(*others)
        out = pt.switch(cond, inner, -np.inf).astype(node.outputs[0].type.dtype)
        return [out]
    return None


optdb.register(
    "hiddenjax_lift_rejection_over_sums",
    # Inputs first, so a switch lifted over one sum is seen by the sum that uses it.
    in2out(lift_rejection_over_sums),
    TAG,
    position=48.5,  # after canonicalize and specialize turn checks into switches, before fusion
)


def _constant_triangular_solve(node):
    """``(op, A)`` when ``node`` solves a triangular system whose matrix is a 2-D constant."""
    op = node.op
    if isinstance(op, Blockwise):
        op = op.core_op
    if not isinstance(op, SolveTriangular):
        return None
    a = node.inputs[0]
    if not isinstance(a, Constant) or a.type.ndim != 2:
        return None
    return op, np.asarray(a.data)


@node_rewriter([SolveTriangular, Blockwise])
def constant_triangular_solve_to_product(fgraph, node):
    """``solve_triangular(A, b)`` with a constant ``A`` becomes ``inv(A) @ b``.

    This is the Cholesky factor of a fixed covariance (``MvNormal`` with a
    known ``cov``, a Gaussian process with fixed hyperparameters): PyTensor
    folds the factorisation, but a triangular solve stays in every gradient,
    and on CPU XLA's triangular solve runs several times slower than a product
    with the inverse computed once here. The inverse solves the same system
    against the identity, so the result agrees to rounding for a
    well-conditioned ``A``; a singular ``A`` keeps the solve (and its NaNs).
    """
    found = _constant_triangular_solve(node)
    if found is None:
        return None
    op, a = found
    n = a.shape[0]
    if a.shape != (n, n) or n == 0:
        return None
    with np.errstate(all="ignore"):
        inverse = scipy.linalg.solve_triangular(
            a, np.eye(n, dtype=a.dtype), lower=op.lower, unit_diagonal=op.unit_diagonal,
            check_finite=False,
        )
    if not np.all(np.isfinite(inverse)):
        return None
    inverse = pt.constant(inverse.astype(a.dtype))
    b = node.inputs[1]
    # Core b is (n,) or (n, k); Blockwise adds leading batch axes.
    out = b @ inverse.T if op.b_ndim == 1 else pt.matmul(inverse, b)
    return [out.astype(node.outputs[0].type.dtype)]


optdb.register(
    "hiddenjax_constant_triangular_solve_to_product",
    dfs_rewriter(constant_triangular_solve_to_product),
    TAG,
    position=48.6,  # after constant folding has fixed the factor, before fusion
)

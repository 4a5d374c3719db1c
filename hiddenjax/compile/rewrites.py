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
from pytensor.graph.fg import Output
from pytensor.graph.rewriting.basic import dfs_rewriter, in2out, node_rewriter
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.basic import Alloc, get_underlying_scalar_constant_value
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.exceptions import NotScalarConstantError
from pytensor.tensor.rewriting.math import local_mul_canonizer
from pytensor.tensor.shape import Reshape, SpecifyShape
from pytensor.tensor.slinalg import SolveTriangular
from pytensor.tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor, Subtensor

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


# Precision parameters. PyMC converts ``tau`` (or ``lam``) to ``sigma`` with
# ``abs(tau) ** -0.5 * sign(tau)`` and back with ``sigma ** -2 * sign(sigma)``,
# so ``StudentT(lam=exp(v))`` differentiates through abs, sign and two powers
# per element. For a provably non-negative ``tau`` the three rewrites below
# collapse the round trip to ``tau`` and the one-way conversion to
# ``tau ** -0.5`` (``exp(-v / 2)`` for ``tau = exp(v)``); PyTensor's
# canonicalisation then tidies what is left (``log(exp(x))``, ``x ** 1``).

# Scalar Ops whose output is >= +0 (or NaN) for any input, never -0.
_NONNEGATIVE_OPS = (ps.Exp, ps.Exp2, ps.Sqr, ps.Abs, ps.Softplus, ps.Sigmoid, ps.Cosh)
# Scalar Ops whose output is >= +0 (or NaN), never -0, when every input is.
_CLOSED_OPS = (ps.Add, ps.Mul, ps.TrueDiv, ps.Reciprocal, ps.Sqrt, ps.Identity, ps.Cast)
_DEPTH = 8  # enough for PyMC's transforms and parameter conversions, cheap on wide graphs


def _nonnegative(var, depth: int = _DEPTH) -> bool:
    """Whether every element of the float ``var`` is ``>= +0`` or NaN, and none is ``-0``.

    Proven from the Ops that build ``var`` (``exp``, ``sqr``, ``abs``, ``softplus``,
    non-negative constants, and sums, products, quotients, square roots and powers
    of such values); ``False`` means unknown. Excluding ``-0`` keeps ``sqrt`` and
    ``reciprocal`` of the value on the positive side (``1 / -0`` is ``-inf``).

    These Ops also share a property the gradient rewrites rely on: where such a
    value is 0, its derivative with respect to anything upstream is 0 or
    non-finite (``exp`` underflows with its derivative, ``sqr`` and ``abs`` are
    flat at 0, a product is 0 through a factor that is).
    """
    if not var.type.dtype.startswith("float"):
        return False
    if isinstance(var, Constant):
        data = np.asarray(var.data)
        return bool(np.all(data >= 0) and not np.any(np.signbit(data)))
    node = var.owner
    if node is None or depth == 0:
        return False
    op = node.op
    if isinstance(op, Elemwise):
        scalar_op = op.scalar_op
        if isinstance(scalar_op, _NONNEGATIVE_OPS):
            return True
        if isinstance(scalar_op, ps.Pow):
            return _nonnegative(node.inputs[0], depth - 1)
        if isinstance(scalar_op, ps.Switch):
            return all(_nonnegative(i, depth - 1) for i in node.inputs[1:])
        if isinstance(scalar_op, _CLOSED_OPS):
            return all(_nonnegative(i, depth - 1) for i in node.inputs)
        return False
    if isinstance(op, DimShuffle | Subtensor | Reshape | SpecifyShape | Alloc):
        return _nonnegative(node.inputs[0], depth - 1)
    return False


def _power(var):
    """``(base, exponent)`` if ``var`` is ``base ** exponent`` for a constant scalar exponent.

    Recognises ``pow`` and the forms PyTensor specialises it to: ``sqr``,
    ``sqrt`` and ``reciprocal``.
    """
    node = var.owner
    if node is None or not isinstance(node.op, Elemwise):
        return None
    scalar_op = node.op.scalar_op
    fixed = {ps.Sqr: 2.0, ps.Sqrt: 0.5, ps.Reciprocal: -1.0}.get(type(scalar_op))
    if fixed is not None:
        return node.inputs[0], fixed
    if not isinstance(scalar_op, ps.Pow):
        return None
    base, exponent = node.inputs
    try:
        value = get_underlying_scalar_constant_value(exponent)
    except NotScalarConstantError:
        return None
    return base, float(value)


def _same_type(new, old):
    """``new`` cast to ``old``'s dtype, or ``None`` if it broadcasts differently."""
    if new.type.broadcastable != old.type.broadcastable:
        return None
    return [new.astype(old.type.dtype)]


@node_rewriter([Elemwise])
def drop_abs_of_nonnegative(fgraph, node):
    """``abs(x)`` becomes ``x`` when ``x`` is provably non-negative (see ``_nonnegative``).

    Values agree exactly, ``-0`` being excluded. Gradients agree wherever
    ``x > 0``; at ``x == 0`` the original multiplies by ``sign(0) == 0`` and the
    rewritten by 1, but the derivative of ``x`` itself is 0 or non-finite there,
    so both are 0 or both non-finite.
    """
    if not isinstance(node.op.scalar_op, ps.Abs):
        return None
    x = node.inputs[0]
    return [x] if _nonnegative(x) and x.type == node.outputs[0].type else None


@node_rewriter([Elemwise])
def drop_sign_beside_power(fgraph, node):
    """``x ** p * sign(x) * ...`` becomes ``x ** p * ...`` for a non-negative ``x`` and ``p < 0``.

    Where ``x > 0``, ``sign(x)`` is 1. Where ``x == 0`` (``exp`` underflowed),
    the original is ``inf * 0``, NaN, and the rewritten is non-finite too; a
    parameter check then rejects either. This is PyMC's ``get_tau_sigma``,
    which keeps the sign of a precision that might be negative.
    """
    if not isinstance(node.op.scalar_op, ps.Mul):
        return None
    inputs = node.inputs
    bases = {id(p[0]) for p in map(_power, inputs) if p is not None and p[1] < 0}
    for k, factor in enumerate(inputs):
        owner = factor.owner
        if (owner is None or not isinstance(owner.op, Elemwise)
                or not isinstance(owner.op.scalar_op, ps.Sign)):
            continue
        x = owner.inputs[0]
        if id(x) in bases and _nonnegative(x):
            rest = [*inputs[:k], *inputs[k + 1:]]
            new = rest[0] if len(rest) == 1 else node.op(*rest)
            return _same_type(new, node.outputs[0])
    return None


def _single_use(fgraph, var) -> bool:
    """Whether one node, and no output of ``fgraph``, uses ``var``."""
    clients = fgraph.clients.get(var, ()) if fgraph is not None else ()
    return len(clients) == 1 and not isinstance(clients[0][0].op, Output)


@node_rewriter([Elemwise])
def merge_powers_of_nonnegative(fgraph, node):
    """``(x ** p) ** q`` becomes ``x ** (p * q)`` (``x >= 0``), and ``exp(a) ** q`` ``exp(a * q)``.

    Both are identities of the reals, the first for a non-negative ``x``
    including 0 and ``inf``. The results agree to rounding unless the inner
    power or ``exp`` overflows or underflows, where the rewritten is the
    accurate one. ``sqr``, ``sqrt`` and ``reciprocal`` count as powers, so
    ``reciprocal(sqr(reciprocal(sqrt(x))))`` is ``x``, and ``exp(-2 * v) ** -0.5``
    (``Normal(tau=exp(-2 * v))``'s sigma) is ``exp(v)``. Unless the result is ``x``
    itself, the inner power or ``exp`` must have no other use: otherwise both would
    be computed, and ``sqr(exp(a))`` is cheaper than a second ``exp``.
    """
    outer = _power(node.outputs[0])
    if outer is None:
        return None
    inner_var, q = outer
    single_use = _single_use(fgraph, inner_var)
    shuffle = None
    if inner_var.owner is not None and isinstance(inner_var.owner.op, DimShuffle):
        # A broadcast parameter: powers commute with the DimShuffle, which goes outside.
        shuffle, inner_var = inner_var.owner.op, inner_var.owner.inputs[0]
        single_use = single_use and _single_use(fgraph, inner_var)
    owner = inner_var.owner
    if (owner is not None and isinstance(owner.op, Elemwise)
            and isinstance(owner.op.scalar_op, ps.Exp)):
        if not single_use:
            return None
        a = owner.inputs[0]  # exp of integers is a float: q keeps the output's dtype
        new = pt.exp(a * np.asarray(q, dtype=node.outputs[0].type.dtype))
    else:
        inner = _power(inner_var)
        if inner is None or not _nonnegative(inner[0]):
            return None
        x, p = inner
        exponent = p * q
        if exponent == 1.0:
            new = x
        elif single_use:
            new = pt.pow(x, np.asarray(exponent, dtype=x.type.dtype))
        else:
            return None
    if shuffle is not None:
        if new.type.ndim != shuffle.input_ndim:
            return None
        new = shuffle(new)
    return _same_type(new, node.outputs[0])


def _exponent(var):
    """``a`` if ``var`` is ``exp(a)``, or a broadcast of it (then ``a`` broadcast alike)."""
    shuffle = None
    if var.owner is not None and isinstance(var.owner.op, DimShuffle):
        shuffle, var = var.owner.op, var.owner.inputs[0]
    node = var.owner
    if node is None or not isinstance(node.op, Elemwise) or not isinstance(node.op.scalar_op,
                                                                            ps.Exp):
        return None
    a = node.inputs[0]
    if not a.type.dtype.startswith("float"):
        a = a.astype(var.type.dtype)  # exp of integers is a float
    return shuffle(a) if shuffle is not None else a


def _product(factors):
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out


@node_rewriter([Elemwise])
def take_exp_factors_out_of_log(fgraph, node):
    """``log(exp(a) * b / (c * exp(d)))`` becomes ``a - d + log(b / c)``.

    An identity of the reals that saves a ``log`` per element where ``b`` and ``c``
    are smaller than the result (broadcast parameters): PyMC's ``StudentT`` with
    ``lam=exp(v)`` takes ``log(lam / (nu * pi))`` at every observation. Values agree
    to rounding; where ``exp(a)`` would overflow or underflow the rewritten is the
    accurate one. Where ``b / c`` is negative or 0, both are NaN or ``-inf``.
    """
    if not isinstance(node.op.scalar_op, ps.Log):
        return None
    # PyTensor's own split of a product of quotients (through mul, true_div, reciprocal
    # and broadcasts), as its canonicalisation of products uses it.
    numerator, denominator = local_mul_canonizer.get_num_denum(node.inputs[0])
    up = [_exponent(f) for f in numerator]
    down = [_exponent(f) for f in denominator]
    if all(e is None for e in up + down):
        return None
    terms = [e for e in up if e is not None] + [-e for e in down if e is not None]
    rest_up = [f for f, e in zip(numerator, up) if e is None]
    rest_down = [f for f, e in zip(denominator, down) if e is None]
    if rest_up or rest_down:
        rest = _product(rest_up) if rest_up else np.asarray(1.0, node.outputs[0].type.dtype)
        if rest_down:
            rest = rest / _product(rest_down)
        terms.append(pt.log(rest))
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return _same_type(total, node.outputs[0])


optdb.register(
    "hiddenjax_drop_abs_and_sign_of_nonnegative",
    # Before canonicalisation, on the graph as PyMC built it: a sign must go while
    # the power beside it still has the same base, before powers are merged.
    in2out(drop_abs_of_nonnegative, drop_sign_beside_power),
    TAG,
    position=0.9,
)
for _rewrite in (drop_abs_of_nonnegative, drop_sign_beside_power, merge_powers_of_nonnegative,
                 take_exp_factors_out_of_log):
    # Inside canonicalisation too, so PyTensor's own rewrites tidy the results
    # (``x ** 1``, ``log`` of a power) and fusion sees none of the removed Ops.
    optdb["canonicalize"].register(f"hiddenjax_{_rewrite.__name__}", _rewrite, TAG)


def merge_duplicate_random_variables(fgraph) -> None:
    """Make random variables that read the same generator with the same parameters
    one node, in place.

    PyTensor's rewrites can leave two copies of such a node: LKJCorr's inlined
    inner graph does, and PyTensor's merge rewrite keeps them apart. They mean
    the same draws, but PyTensor's JAX lowering hands each generator state to
    its random variables as a dict that a draw updates in place, so a second
    copy would read the state the first left and draw other values: LKJCorr's
    correlations then came out with the wrong distribution. Merging a copy
    merges the variables drawn from its next state too, so this repeats until
    none is left.
    """
    while True:
        seen: dict = {}
        for node in fgraph.toposort():
            if not isinstance(node.op, RandomVariable):
                continue
            key = (node.op, tuple(i.signature() if isinstance(i, Constant) else i
                                  for i in node.inputs))
            if key in seen:
                fgraph.replace_all(list(zip(node.outputs, seen[key].outputs)),
                                   reason="merge_duplicate_random_variables")
                break
            seen[key] = node
        else:
            return

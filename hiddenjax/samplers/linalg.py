"""Symmetric eigendecomposition and QR for the mass-matrix adaptations, LAPACK-free when small.

On the CPU, jaxlib 0.10 runs the batch of a LAPACK call on XLA's intra-op
thread pool and waits for it; with several host devices executing at once
that deadlocks, so the execution layer runs any program that calls LAPACK
on a single device (``hiddenjax.execution.devices.pool_safe_devices``).
Adaptation only decomposes matrices at window ends, so for the sizes it
meets most (``n <= JACOBI_MAX``) it uses the plain-JAX algorithms here and
keeps every device busy:

* ``eigh``: cyclic Jacobi with a round-robin ordering, so each round rotates
  ``n / 2`` disjoint pairs at once (Golub & Van Loan, *Matrix Computations*,
  section 8.5); sweeps until the off-diagonal entries are at rounding level
  (their norm below ``n * eps * |A|``), at most 40 sweeps.
* ``qr``: Householder reflections, one column at a time.
* ``cholesky_with_inverse``: the factor one column, and its inverse one row, at a time.

Larger matrices go to LAPACK (``jnp.linalg``), one matrix at a time under
``vmap`` so each call is small.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

__all__ = ["JACOBI_MAX", "cholesky_with_inverse", "eigh", "qr"]

JACOBI_MAX = 128
"""Largest matrix side decomposed in plain JAX; larger ones call LAPACK."""

_MAX_SWEEPS = 40


def _turn(x: Array, axis: int) -> Array:
    """The next round's layout along ``axis`` in the circle method, by slicing only.

    Position ``i`` of the top half meets position ``i`` of the bottom half.
    The first place stays; the others move one step around the table (top
    left to right, bottom right to left), so after ``m - 1`` rounds every
    pair has met once.
    """
    m = x.shape[axis]
    half = m // 2
    if half < 2:
        return x
    piece = lambda start, stop: lax.slice_in_dim(x, start, stop, axis=axis)  # noqa: E731
    return jnp.concatenate([piece(0, 1), piece(half, half + 1), piece(1, half - 1),
                            piece(half + 1, m), piece(half - 1, half)], axis=axis)


def _rotate(carry, _):
    """One round: zero ``A[i, i + m/2]`` for every ``i`` at once, then move to the next layout."""
    a, v, pad = carry
    half = a.shape[0] // 2
    app, aqq = jnp.diagonal(a)[:half], jnp.diagonal(a)[half:]
    apq = jnp.diagonal(a[:half, half:])
    nonzero = apq != 0
    tau = (aqq - app) / (2.0 * jnp.where(nonzero, apq, 1.0))
    t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.hypot(1.0, tau))
    t = jnp.where(nonzero, t, 0.0)
    c = 1.0 / jnp.sqrt(1.0 + t * t)
    s = t * c

    def columns(x):
        x1, x2 = x[:, :half], x[:, half:]
        return jnp.concatenate([c * x1 - s * x2, s * x1 + c * x2], axis=1)

    a = columns(a)
    a1, a2 = a[:half], a[half:]
    a = jnp.concatenate([c[:, None] * a1 - s[:, None] * a2, s[:, None] * a1 + c[:, None] * a2])
    return (_turn(_turn(a, 0), 1), _turn(columns(v), 1), _turn(pad, 0)), None


def _off_diagonal(a: Array) -> Array:
    """Sum of squared off-diagonal entries (summed directly: a difference would cancel)."""
    return jnp.sum(jnp.where(jnp.eye(a.shape[0], dtype=bool), 0.0, a) ** 2)


def _jacobi_eigh(matrix: Array, tolerance: float | None) -> tuple[Array, Array]:
    n = matrix.shape[-1]
    m = max(2, n + n % 2)  # an odd side gets a decoupled padding index, never rotated into the rest
    a = jnp.zeros((m, m), matrix.dtype).at[:n, :n].set(0.5 * (matrix + matrix.T))
    pad = jnp.arange(m) >= n
    # Rounding leaves about eps * |A| in every entry, so n**2 of them sum to (n eps |A|)**2.
    if tolerance is None:
        tolerance = m * float(jnp.finfo(matrix.dtype).eps)
    tolerance = (tolerance * jnp.sqrt(jnp.sum(a * a))) ** 2

    def sweep(state):
        a, v, pad, count = state
        (a, v, pad), _ = lax.scan(_rotate, (a, v, pad), None, length=m - 1)
        return a, v, pad, count + 1

    def unfinished(state):
        a, _, _, count = state
        return (_off_diagonal(a) > tolerance) & (count < _MAX_SWEEPS)

    a, v, pad, _ = lax.while_loop(unfinished, sweep,
                                  (a, jnp.eye(m, dtype=matrix.dtype), pad, 0))
    values = jnp.diagonal(a)
    order = jnp.argsort(jnp.where(pad, jnp.inf, values))[:n]
    return values[order], v[:n, order]


def _householder_qr(matrix: Array) -> tuple[Array, Array]:
    n, k = matrix.shape
    rows = jnp.arange(n)

    def reflect(j, carry):
        r, reflectors = carry
        x = jnp.where(rows >= j, r[:, j], 0.0)
        norm = jnp.sqrt(jnp.sum(x * x))
        alpha = -jnp.where(r[j, j] >= 0, 1.0, -1.0) * norm
        v = x.at[j].add(-alpha)
        length = jnp.sqrt(jnp.sum(v * v))
        v = jnp.where(length > 0, v / jnp.where(length > 0, length, 1.0), 0.0)
        r = r - 2.0 * jnp.outer(v, v @ r)
        return r, reflectors.at[j].set(v)

    r, reflectors = lax.fori_loop(0, k, reflect,
                                  (matrix, jnp.zeros((k, n), matrix.dtype)))

    def apply(i, q):
        v = reflectors[k - 1 - i]
        return q - 2.0 * jnp.outer(v, v @ q)

    q = lax.fori_loop(0, k, apply, jnp.eye(n, k, dtype=matrix.dtype))
    return q, jnp.triu(r[:k])


def _cholesky_with_inverse(matrix: Array) -> tuple[Array, Array]:
    """``L`` column by column and ``L^-1`` row by row, in one loop.

    Step ``j`` finishes column ``j`` of ``L``, which completes row ``j`` of
    ``L`` (its earlier entries came from earlier columns), so row ``j`` of the
    inverse follows by forward substitution from the rows already solved.
    """
    n = matrix.shape[0]
    index = jnp.arange(n)

    def step(j, carry):
        rest, lower, inverse = carry
        column = lax.dynamic_index_in_dim(rest, j, 1, False)
        column = jnp.where(index >= j, column, 0.0) / jnp.sqrt(column[j])
        lower = lax.dynamic_update_index_in_dim(lower, column, j, 1)
        row = lax.dynamic_index_in_dim(lower, j, 0, False)
        # Rows j and below of ``inverse`` are still zero: only solved rows count.
        solved = ((index == j).astype(matrix.dtype) - jnp.where(index < j, row, 0.0) @ inverse)
        inverse = lax.dynamic_update_index_in_dim(inverse, solved / row[j], j, 0)
        return rest - jnp.outer(column, column), lower, inverse

    zeros = jnp.zeros_like(matrix)
    _, lower, inverse = lax.fori_loop(0, n, step, (matrix, zeros, zeros))
    return lower, inverse


def _one_at_a_time(fn: Callable) -> Callable:
    """``fn`` of one matrix, batched under ``vmap`` by a loop over the batch."""
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, matrix):
        del axis_size
        if not in_batched[0]:
            out = wrapped(matrix)
            return out, jax.tree.map(lambda _: False, out)
        out = lax.map(wrapped, matrix)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


@_one_at_a_time
def _lapack_eigh(matrix: Array):
    values, vectors = jnp.linalg.eigh(matrix)
    return values, vectors


@_one_at_a_time
def _lapack_cholesky_with_inverse(matrix: Array):
    lower = jnp.linalg.cholesky(matrix)
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)
    return lower, jax.scipy.linalg.solve_triangular(lower, eye, lower=True)


@_one_at_a_time
def _lapack_qr(matrix: Array):
    q, r = jnp.linalg.qr(matrix)
    return q, r


def eigh(matrix: Array, tolerance: float | None = None) -> tuple[Array, Array]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix.

    Parameters
    ----------
    matrix : Array
        Symmetric, shape ``(n, n)``; it is symmetrised before use.
    tolerance : float, optional
        Plain-JAX sizes only: Jacobi stops once the off-diagonal entries'
        norm is below ``tolerance * |A|`` (Frobenius), which bounds every
        eigenvalue's error by as much (Weyl). The default, ``n * eps``, is
        rounding level; LAPACK sizes are always exact to rounding.

    Returns
    -------
    tuple of Array
        ``(values, vectors)`` as ``jnp.linalg.eigh``.
    """
    if matrix.shape[-1] <= JACOBI_MAX:
        return _jacobi_eigh(matrix, tolerance)
    return _lapack_eigh(0.5 * (matrix + matrix.T))


def cholesky_with_inverse(matrix: Array) -> tuple[Array, Array]:
    """Lower Cholesky factor ``L`` of a symmetric positive definite matrix, and ``L^-1``.

    ``L @ L.T = matrix``; only the lower triangle of ``matrix`` is read, and
    both results are lower triangular. A matrix that is not positive definite
    gives NaN entries from its first non-positive pivot on (LAPACK sizes: NaN
    throughout, as ``jnp.linalg.cholesky``).
    """
    if matrix.shape[-1] <= JACOBI_MAX:
        return _cholesky_with_inverse(jnp.tril(matrix) + jnp.tril(matrix, -1).T)
    return _lapack_cholesky_with_inverse(matrix)


def qr(matrix: Array) -> tuple[Array, Array]:
    """Reduced QR decomposition, as ``jnp.linalg.qr(matrix)`` (``n >= m``).

    Parameters
    ----------
    matrix : Array
        Shape ``(n, m)`` with ``n >= m``.

    Returns
    -------
    tuple of Array
        ``(q, r)`` with ``q`` of shape ``(n, m)``, orthonormal columns, and
        ``r`` upper triangular.
    """
    n, m = matrix.shape
    if m > n:
        raise ValueError(f"qr needs at least as many rows as columns, got shape {matrix.shape}.")
    if m <= JACOBI_MAX:
        return _householder_qr(matrix)
    return _lapack_qr(matrix)

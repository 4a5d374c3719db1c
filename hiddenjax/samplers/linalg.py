"""LAPACK-backed decompositions that never batch on the CPU.

Under ``vmap`` (one batch element per chain) ``jnp.linalg.eigh`` and
``jnp.linalg.qr`` become one batched LAPACK call, which jaxlib's CPU kernels
spread over the XLA intra-op thread pool and then block on until the batch
is done. When every host device runs such a call at once, the pool's threads
all wait on work queued behind them and the run never finishes (observed on
a 2-core machine with two host devices). The functions here decompose a
batch one matrix at a time instead (``lax.map`` under ``vmap``), which makes
unbatched LAPACK calls only; they are used at window ends, so the lost
parallelism costs little.

This is a mitigation, not a cure: with it, the benchmark models that hung
with dense and low-rank adaptation finish, but a 20-line reproduction that
calls ``eigh`` at every step of a scan on two host devices still hangs with
unbatched calls. The complete fix belongs in the execution layer.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array, lax

__all__ = ["eigh", "qr"]


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
def _eigh(matrix: Array):
    values, vectors = jnp.linalg.eigh(matrix)
    return values, vectors


@_one_at_a_time
def _qr(matrix: Array):
    q, r = jnp.linalg.qr(matrix)
    return q, r


def eigh(matrix: Array) -> tuple[Array, Array]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix.

    Parameters
    ----------
    matrix : Array
        Symmetric, shape ``(n, n)``; only the lower triangle is read.

    Returns
    -------
    tuple of Array
        ``(values, vectors)`` as ``jnp.linalg.eigh``.
    """
    return _eigh(matrix)


def qr(matrix: Array) -> tuple[Array, Array]:
    """Reduced QR decomposition, as ``jnp.linalg.qr(matrix)``.

    Parameters
    ----------
    matrix : Array
        Shape ``(n, m)``.

    Returns
    -------
    tuple of Array
        ``(q, r)`` with ``q`` of shape ``(n, min(n, m))``, orthonormal columns.
    """
    return _qr(matrix)

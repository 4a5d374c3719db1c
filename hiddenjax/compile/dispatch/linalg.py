"""Linear-algebra Ops: the eigendecomposition gradient and PyMC's positive-definiteness check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pymc.distributions.multivariate import PosDefMatrix
from pytensor.link.jax.dispatch.basic import jax_funcify
from pytensor.tensor.nlinalg import EighGrad


@jax_funcify.register(EighGrad)
def funcify_EighGrad(op, node, **kwargs):
    lower = op.UPLO == "L"
    out_dtype = node.outputs[0].dtype

    def eigh_grad(x, w, v, gw, gv):
        # g = sum_n v_n (W_n v_n + sum_{m != n} v_m <gv_n, v_m> / (w_n - w_m))^T
        gap = w[:, None] - w[None, :]
        off_diagonal = ~jnp.eye(w.shape[0], dtype=bool)
        f = jnp.where(off_diagonal, (gv.T @ v) / jnp.where(off_diagonal, gap, 1.0), 0.0)
        g = (v * gw) @ v.T + v @ (f @ v.T)
        # eigh reads one triangle only; the other triangle's variation is folded in.
        if lower:
            out = jnp.tril(g) + jnp.triu(g, 1).T
        else:
            out = jnp.triu(g) + jnp.tril(g, -1).T
        return out.astype(out_dtype)

    return eigh_grad


@jax_funcify.register(PosDefMatrix)
def funcify_PosDefMatrix(op, **kwargs):
    def matrix_is_positive_definite(x):
        # PyMC tries scipy.linalg.cholesky, which reads the upper triangle only; JAX's
        # reads the lower one (so factor x^T), returns NaNs on failure, and must not
        # symmetrise its input.
        chol = jax.lax.linalg.cholesky(x.T, symmetrize_input=False)
        return jnp.all(jnp.isfinite(chol))

    return matrix_is_positive_definite

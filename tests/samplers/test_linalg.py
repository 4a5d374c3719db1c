"""Decompositions that loop over a vmapped batch instead of one batched LAPACK call."""

import jax
import jax.numpy as jnp
import numpy as np

from hiddenjax.samplers import linalg


def _symmetric(shape, seed=0):
    a = np.random.default_rng(seed).normal(size=shape)
    return a + np.swapaxes(a, -1, -2)


def test_eigh_matches_numpy_unbatched_and_under_nested_vmap():
    a = _symmetric((3, 2, 5, 5))
    values, vectors = jax.jit(jax.vmap(jax.vmap(linalg.eigh)))(jnp.asarray(a))
    np.testing.assert_allclose(values, np.linalg.eigvalsh(a), atol=1e-12)
    rebuilt = np.einsum("...ij,...j,...kj->...ik", vectors, values, vectors)
    np.testing.assert_allclose(rebuilt, a, atol=1e-12)
    single, _ = linalg.eigh(jnp.asarray(a[0, 0]))
    np.testing.assert_allclose(single, np.linalg.eigvalsh(a[0, 0]), atol=1e-12)


def test_qr_matches_its_definition_under_vmap():
    a = np.random.default_rng(1).normal(size=(4, 7, 3))
    q, r = jax.jit(jax.vmap(linalg.qr))(jnp.asarray(a))
    assert q.shape == (4, 7, 3) and r.shape == (4, 3, 3)
    np.testing.assert_allclose(q @ r, a, atol=1e-12)
    np.testing.assert_allclose(np.swapaxes(q, 1, 2) @ q, np.broadcast_to(np.eye(3), (4, 3, 3)),
                               atol=1e-12)


def test_vmapped_calls_are_unbatched_lapack_calls():
    # One batched call is what can deadlock the CPU thread pool (see the module).
    a = jnp.asarray(_symmetric((4, 6, 6)))
    text = jax.jit(jax.vmap(linalg.eigh)).lower(a).as_text()
    assert "syevd" in text
    assert 'num_batch_dims = "0"' in text and 'num_batch_dims = "1"' not in text
    text = jax.jit(jax.vmap(linalg.qr)).lower(a).as_text()
    assert "geqrf" in text and 'num_batch_dims = "1"' not in text

"""Decompositions for adaptation: plain JAX when small, LAPACK one matrix at a time above."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers import linalg


def _symmetric(shape, seed=0):
    a = np.random.default_rng(seed).normal(size=shape)
    return a + np.swapaxes(a, -1, -2)


def _check_eigh(a, values, vectors, atol=1e-11):
    scale = max(1.0, np.abs(a).max())
    np.testing.assert_allclose(values, np.linalg.eigvalsh(a), atol=atol * scale)
    rebuilt = np.einsum("...ij,...j,...kj->...ik", vectors, values, vectors)
    np.testing.assert_allclose(rebuilt, a, atol=atol * scale)
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    np.testing.assert_allclose(np.swapaxes(vectors, -1, -2) @ vectors, eye, atol=atol)


def test_eigh_matches_numpy_unbatched_and_under_nested_vmap():
    a = _symmetric((3, 2, 5, 5))
    values, vectors = jax.jit(jax.vmap(jax.vmap(linalg.eigh)))(jnp.asarray(a))
    _check_eigh(a, values, vectors)
    single, _ = linalg.eigh(jnp.asarray(a[0, 0]))
    np.testing.assert_allclose(single, np.linalg.eigvalsh(a[0, 0]), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 33, 100, linalg.JACOBI_MAX, linalg.JACOBI_MAX + 1])
def test_eigh_every_size_either_side_of_the_lapack_switch(n):
    a = _symmetric((n, n), seed=n)
    values, vectors = jax.jit(linalg.eigh)(jnp.asarray(a))
    _check_eigh(a, np.asarray(values), np.asarray(vectors))


def test_eigh_of_hard_spectra():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    cases = {
        "identity": np.eye(40),
        "repeated": q @ np.diag(np.repeat([1.0, 5.0], 20)) @ q.T,
        "ill-conditioned covariance": q @ np.diag(np.logspace(-8, 8, 40)) @ q.T,
        "zero": np.zeros((40, 40)),
        "diagonal": np.diag(np.arange(40.0)),
    }
    for name, a in cases.items():
        values, vectors = jax.jit(linalg.eigh)(jnp.asarray(a))
        # Relative to the largest eigenvalue, as LAPACK's own accuracy.
        _check_eigh(a, np.asarray(values), np.asarray(vectors), atol=1e-11), name


def test_qr_matches_its_definition_under_vmap():
    a = np.random.default_rng(1).normal(size=(4, 7, 3))
    q, r = jax.jit(jax.vmap(linalg.qr))(jnp.asarray(a))
    assert q.shape == (4, 7, 3) and r.shape == (4, 3, 3)
    np.testing.assert_allclose(q @ r, a, atol=1e-12)
    np.testing.assert_allclose(np.swapaxes(q, 1, 2) @ q, np.broadcast_to(np.eye(3), (4, 3, 3)),
                               atol=1e-12)
    np.testing.assert_array_equal(np.tril(r, -1), 0.0)


def test_qr_of_rank_deficient_matrices_keeps_orthonormal_columns():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 8))  # rank 3
    a[:, 5] = 0.0
    q, r = jax.jit(linalg.qr)(jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(q) @ np.asarray(r), a, atol=1e-12)
    np.testing.assert_allclose(np.asarray(q).T @ np.asarray(q), np.eye(8), atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        linalg.qr(jnp.zeros((3, 5)))


def test_small_decompositions_call_no_lapack_and_large_ones_unbatched():
    # Any LAPACK call sends a CPU program to one device (execution/devices.py).
    small = jnp.asarray(_symmetric((4, 6, 6)))
    assert "lapack_" not in jax.jit(jax.vmap(linalg.eigh)).lower(small).as_text()
    assert "lapack_" not in jax.jit(jax.vmap(linalg.qr)).lower(small).as_text()
    n = linalg.JACOBI_MAX + 1
    large = jax.ShapeDtypeStruct((2, n, n), jnp.float64)
    text = jax.jit(jax.vmap(linalg.eigh)).lower(large).as_text()
    assert "syevd" in text and 'num_batch_dims = "1"' not in text
    text = jax.jit(jax.vmap(linalg.qr)).lower(large).as_text()
    assert "geqrf" in text and 'num_batch_dims = "1"' not in text
    assert "lapack_" not in jax.jit(jax.vmap(linalg.cholesky_with_inverse)).lower(
        small).as_text()
    text = jax.jit(jax.vmap(linalg.cholesky_with_inverse)).lower(large).as_text()
    assert "potrf" in text and "trsm" in text and 'num_batch_dims = "1"' not in text


def _spd(n, seed, condition=1e6):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q @ np.diag(np.logspace(0, np.log10(condition), n)) @ q.T


@pytest.mark.parametrize("n", [1, 2, 7, 89, linalg.JACOBI_MAX, linalg.JACOBI_MAX + 1])
def test_cholesky_with_inverse_matches_numpy_either_side_of_the_lapack_switch(n):
    a = _spd(n, seed=n)
    lower, inverse = (np.asarray(x) for x in jax.jit(linalg.cholesky_with_inverse)(jnp.asarray(a)))
    want = np.linalg.cholesky(a)
    # Cholesky is backward stable: the factor's error is rounding times cond(L) = 1e3.
    np.testing.assert_allclose(lower, want, atol=1e3 * n * np.finfo(float).eps * np.abs(want).max())
    assert np.all(np.triu(inverse, 1) == 0)
    np.testing.assert_allclose(inverse @ lower, np.eye(n), atol=1e3 * n * np.finfo(float).eps)


def test_cholesky_reads_the_lower_triangle_and_batches_under_vmap():
    a = np.stack([_spd(6, seed) for seed in range(3)])
    upper_noise = a + np.triu(np.ones((6, 6)), 1)
    lower, inverse = jax.jit(jax.vmap(linalg.cholesky_with_inverse))(jnp.asarray(upper_noise))
    want = np.linalg.cholesky(a)
    rounding = 1e3 * 6 * np.finfo(float).eps  # cond(L) = 1e3, as above
    np.testing.assert_allclose(lower, want, atol=rounding * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(inverse) @ want, np.broadcast_to(np.eye(6), a.shape),
                               atol=rounding)


def test_cholesky_of_an_indefinite_matrix_is_not_finite():
    lower, inverse = linalg.cholesky_with_inverse(jnp.asarray(np.diag([1.0, -1.0, 2.0])))
    assert lower[0, 0] == 1.0 and inverse[0, 0] == 1.0
    assert not np.isfinite(np.asarray(lower)[1:, 1]).any()
    assert not np.isfinite(np.asarray(inverse)[1]).any()


@pytest.mark.parametrize("tolerance", [1e-10, 1e-6])
def test_eigh_tolerance_bounds_each_eigenvalue_by_weyl(tolerance):
    # A rank-deficient covariance plus a ridge, as a short adaptation window gives:
    # Jacobi stops once the off-diagonal norm is below tolerance * |A|_F, and
    # Weyl's inequality bounds every eigenvalue's error by that norm.
    rng = np.random.default_rng(11)
    g = rng.normal(size=(10, 60)) * np.exp(rng.normal(size=60))
    a = g.T @ g / 10 + 1e-4 * np.eye(60)
    values, vectors = jax.jit(lambda m: linalg.eigh(m, tolerance))(jnp.asarray(a))
    bound = tolerance * np.linalg.norm(a)
    exact = np.linalg.eigvalsh(a)
    assert np.abs(np.asarray(values) - exact).max() <= bound
    np.testing.assert_allclose(np.asarray(vectors).T @ np.asarray(vectors), np.eye(60),
                               atol=1e-12)
    # The default stays exact to rounding.
    default, _ = jax.jit(linalg.eigh)(jnp.asarray(a))
    assert np.abs(np.asarray(default) - exact).max() <= 1e-11 * np.abs(a).max()


def test_eigh_stops_at_its_tolerance_not_at_rounding():
    # The decomposition's residual off-diagonal norm, |V^T A V - diag(values)|_F, is what
    # Jacobi stops on: within the tolerance, and above rounding when the tolerance is loose.
    a = _symmetric((30, 30), seed=5)
    norm = np.linalg.norm(a)

    def residual(tolerance):
        values, vectors = jax.jit(lambda m: linalg.eigh(m, tolerance))(jnp.asarray(a))
        vectors = np.asarray(vectors)
        return np.linalg.norm(vectors.T @ a @ vectors - np.diag(np.asarray(values))) / norm

    assert 1e-10 < residual(1e-3) <= 1e-3
    assert residual(None) < 1e-13

"""The low-rank plus diagonal metric against the explicit dense matrix it stands for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers.metrics import (
    Metric,
    dense_metric,
    kinetic_energy,
    sample_momentum,
    velocity,
)

N_DIM = 6


def _low_rank_metric(rank: int, seed: int = 0, padding: int = 0) -> Metric:
    """A random metric with ``rank`` real columns and ``padding`` neutral ones (zero, value 1)."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 3.0, N_DIM)
    vectors, _ = np.linalg.qr(rng.normal(size=(N_DIM, rank)))
    values = rng.choice([0.05, 0.3, 4.0, 30.0], size=rank)
    vectors = np.concatenate([vectors, np.zeros((N_DIM, padding))], axis=1)
    values = np.concatenate([values, np.ones(padding)])
    return Metric(jnp.asarray(scale**2), jnp.asarray(scale), jnp.asarray(vectors),
                  jnp.asarray(values))


def _dense(metric: Metric) -> np.ndarray:
    """``S (I + U diag(lam - 1) U^T) S`` written out."""
    s = np.diag(np.asarray(metric.scale))
    u, lam = np.asarray(metric.vectors), np.asarray(metric.values)
    return s @ (np.eye(N_DIM) + u @ np.diag(lam - 1.0) @ u.T) @ s


CASES = [(1, 0), (2, 0), (3, 0), (2, 3)]


@pytest.mark.parametrize("rank, padding", CASES)
def test_velocity_and_kinetic_energy_match_the_dense_matrix(rank, padding):
    metric = _low_rank_metric(rank, padding=padding)
    inverse_mass = _dense(metric)
    p = np.random.default_rng(1).normal(size=N_DIM)
    np.testing.assert_allclose(velocity(jnp.asarray(p), metric), inverse_mass @ p, rtol=1e-12)
    assert float(kinetic_energy(jnp.asarray(p), metric)) == pytest.approx(
        0.5 * p @ inverse_mass @ p, rel=1e-12)


@pytest.mark.parametrize("rank, padding", CASES)
def test_momentum_is_the_documented_linear_map_of_a_standard_normal(rank, padding):
    # p = S^-1 (I + U diag(lam^-1/2 - 1) U^T) z, z the standard normal the key draws;
    # that map times its transpose must be the mass matrix, the dense inverse's inverse.
    metric = _low_rank_metric(rank, padding=padding)
    s_inv = np.diag(1.0 / np.asarray(metric.scale))
    u, lam = np.asarray(metric.vectors), np.asarray(metric.values)
    factor = s_inv @ (np.eye(N_DIM) + u @ np.diag(lam**-0.5 - 1.0) @ u.T)
    np.testing.assert_allclose(factor @ factor.T, np.linalg.inv(_dense(metric)), rtol=1e-10,
                               atol=1e-12)
    key = jax.random.key(3)
    z = np.asarray(jax.random.normal(key, (N_DIM,), jnp.float64))
    np.testing.assert_allclose(sample_momentum(key, jnp.zeros(N_DIM), metric), factor @ z,
                               rtol=1e-12, atol=1e-14)


def test_momentum_covariance_is_the_mass_matrix_by_monte_carlo():
    """Whitened momenta ``L^T p`` (``M^-1 = L L^T``) have identity covariance to 5 standard errors."""
    metric = _low_rank_metric(2)
    n = 40000
    keys = jax.random.split(jax.random.key(11), n)
    draws = np.asarray(jax.vmap(lambda k: sample_momentum(k, jnp.zeros(N_DIM), metric))(keys))
    white = draws @ np.linalg.cholesky(_dense(metric))
    covariance = np.cov(white.T)
    # Standard error of a sample covariance of unit normals: sqrt(2/n) diagonal, sqrt(1/n) off.
    se = np.where(np.eye(N_DIM, dtype=bool), np.sqrt(2 / n), np.sqrt(1 / n))
    np.testing.assert_array_less(np.abs(covariance - np.eye(N_DIM)), 5 * se)


def test_neutral_columns_change_nothing():
    plain = _low_rank_metric(2)
    padded = _low_rank_metric(2, padding=3)
    p = jnp.asarray(np.random.default_rng(4).normal(size=N_DIM))
    np.testing.assert_allclose(velocity(p, padded), velocity(p, plain), rtol=1e-14)
    key = jax.random.key(5)
    np.testing.assert_allclose(sample_momentum(key, jnp.zeros(N_DIM), padded),
                               sample_momentum(key, jnp.zeros(N_DIM), plain), rtol=1e-14)


def test_dense_metric_round_trips():
    a = np.random.default_rng(6).normal(size=(N_DIM, N_DIM))
    inverse_mass = a @ a.T + np.eye(N_DIM)
    metric = dense_metric(inverse_mass)
    p = np.random.default_rng(7).normal(size=N_DIM)
    np.testing.assert_allclose(velocity(jnp.asarray(p), metric), inverse_mass @ p, rtol=1e-10)

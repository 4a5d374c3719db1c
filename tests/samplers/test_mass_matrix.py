"""Welford variance and Stan's regularisation of the diagonal mass matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers.mass_matrix import (
    gradient_variance,
    regularize_variance,
    welford_covariance,
    welford_variance,
)


def _accumulate(adapt, draws):
    def body(state, x):
        return adapt.update(state, x, None), None

    return jax.lax.scan(body, adapt.init(draws.shape[1]), draws)[0]


def test_welford_matches_numpy():
    # A large offset: a naive sum of squares would lose the variance to cancellation.
    draws = np.random.default_rng(0).normal(size=(257, 4)) * [1e-3, 1.0, 5.0, 30.0] + 1e6
    adapt = welford_variance()
    state = _accumulate(adapt, jnp.asarray(draws))
    assert int(state.count) == 257
    np.testing.assert_allclose(state.mean, draws.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(state.m2 / 256, draws.var(axis=0, ddof=1), rtol=1e-8)


def test_final_is_the_regularised_sample_variance():
    draws = np.random.default_rng(1).normal(size=(40, 3)) * [0.1, 1.0, 10.0]
    adapt = welford_variance()
    got = adapt.final(_accumulate(adapt, jnp.asarray(draws))).diagonal
    n = 40
    want = draws.var(axis=0, ddof=1) * n / (n + 5) + 1e-3 * 5 / (n + 5)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_regularisation_formula():
    got = regularize_variance(jnp.array([2.0, 0.0]), 20)
    np.testing.assert_allclose(got, [2.0 * 20 / 25 + 1e-3 * 5 / 25, 1e-3 * 5 / 25], rtol=1e-15)


@pytest.mark.parametrize("count", [0, 1])
def test_final_is_undefined_below_two_draws(count):
    adapt = welford_variance()
    state = _accumulate(adapt, jnp.ones((count, 2)) * 3.0)
    assert np.all(np.isnan(adapt.final(state).diagonal))


def test_float32_positions_accumulate_in_float64():
    adapt = welford_variance()
    state = adapt.update(adapt.init(3), jnp.ones(3, jnp.float32), None)
    assert all(leaf.dtype == jnp.float64 for leaf in state)


def test_vmaps_over_chains():
    draws = np.random.default_rng(2).normal(size=(4, 50, 2))
    adapt = welford_variance()
    states = jax.vmap(lambda d: _accumulate(adapt, d))(jnp.asarray(draws))
    np.testing.assert_allclose(states.m2 / 49, draws.var(axis=1, ddof=1), rtol=1e-12)


def test_dense_final_is_the_regularised_sample_covariance():
    rng = np.random.default_rng(2)
    draws = rng.multivariate_normal([0.0, 1.0, -1.0], [[1.0, 0.8, 0.0], [0.8, 2.0, 0.3],
                                                       [0.0, 0.3, 0.5]], size=60)
    adapt = welford_covariance()
    metric = adapt.final(_accumulate(adapt, jnp.asarray(draws)))
    got = (np.asarray(metric.vectors) * np.asarray(metric.values)) @ np.asarray(metric.vectors).T
    n = 60
    want = np.cov(draws.T) * n / (n + 5) + np.eye(3) * 1e-3 * 5 / (n + 5)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_gradient_based_diagonal_is_exact_for_a_gaussian():
    # For N(0, diag(s^2)) the gradient is -x / s^2: sqrt(var(x) / var(g)) = s^2 exactly.
    scales = np.array([0.1, 1.0, 10.0])
    draws = np.random.default_rng(3).normal(size=(30, 3)) * scales
    adapt = gradient_variance()
    state = adapt.init(3)
    for x in draws:
        state = adapt.update(state, jnp.asarray(x), jnp.asarray(-x / scales**2))
    np.testing.assert_allclose(adapt.final(state).diagonal, scales**2, rtol=1e-10)

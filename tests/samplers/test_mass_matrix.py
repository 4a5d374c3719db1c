"""Welford variance and Stan's regularisation of the diagonal mass matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers.mass_matrix import regularize_variance, welford_variance


def _accumulate(adapt, draws):
    def body(state, x):
        return adapt.update(state, x), None

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
    got = adapt.final(_accumulate(adapt, jnp.asarray(draws)))
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
    assert np.all(np.isnan(adapt.final(state)))


def test_float32_positions_accumulate_in_float64():
    adapt = welford_variance()
    state = adapt.update(adapt.init(3), jnp.ones(3, jnp.float32))
    assert all(leaf.dtype == jnp.float64 for leaf in state)


def test_vmaps_over_chains():
    draws = np.random.default_rng(2).normal(size=(4, 50, 2))
    adapt = welford_variance()
    states = jax.vmap(lambda d: _accumulate(adapt, d))(jnp.asarray(draws))
    np.testing.assert_allclose(states.m2 / 49, draws.var(axis=1, ddof=1), rtol=1e-12)

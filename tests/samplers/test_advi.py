"""ADVI on Gaussian targets, where both families have known optima."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.execution.vectorized import run_steps
from hiddenjax.samplers.advi import adagrad_window, adam, build_advi, full_rank, mean_field

MU = np.array([1.0, -2.0, 0.5])
COV = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
PRECISION = np.linalg.inv(COV)


def logdensity(z):
    d = z - MU
    return -0.5 * d @ PRECISION @ d


def fit(method, steps=6000, seed=0):
    algorithm = build_advi(logdensity, 3, method, obj_n_mc=8, optimizer=adam(0.02))
    state = algorithm.init(jnp.zeros(3))

    def step(key, state):
        new, info = algorithm.step(key, state)
        return new, (info, new.params)

    state, (info, params) = run_steps(step, state, steps, seed_key=jax.random.PRNGKey(seed))
    # Polyak averaging over the last third removes most of the optimiser's noise.
    tail = jax.tree.map(lambda a: a[-steps // 3 :].mean(0), params)
    return algorithm, tail, info.loss


def test_mean_field_finds_the_mean_and_the_conditional_variances():
    algorithm, params, loss = fit("advi")
    np.testing.assert_allclose(algorithm.family.mean(params), MU, atol=0.03)
    # The KL(q||p) optimum of a factorised Gaussian has variances 1 / diag(precision).
    np.testing.assert_allclose(np.diag(algorithm.family.cov(params)), 1 / np.diag(PRECISION), rtol=0.05)
    assert loss[-500:].mean() < loss[:50].mean()


def test_full_rank_recovers_the_covariance():
    algorithm, params, _ = fit("fullrank_advi")
    np.testing.assert_allclose(algorithm.family.mean(params), MU, atol=0.03)
    np.testing.assert_allclose(algorithm.family.cov(params), COV, atol=0.06)


def test_families_start_where_pymc_starts():
    mf = mean_field(2)
    params = mf.init(jnp.zeros(2))
    np.testing.assert_allclose(jnp.sqrt(jnp.diag(mf.cov(params))), np.log(2.0))
    params = mf.init(jnp.zeros(2), jnp.array([0.1, 3.0]))
    np.testing.assert_allclose(jnp.sqrt(jnp.diag(mf.cov(params))), [0.1, 3.0], rtol=1e-12)
    fr = full_rank(2)
    np.testing.assert_allclose(fr.cov(fr.init(jnp.zeros(2))), np.eye(2) * np.log1p(np.e) ** 2)


def test_adagrad_window_matches_a_numpy_transcription_of_pymc():
    opt = adagrad_window(learning_rate=0.1, epsilon=0.1, n_win=3)
    params = {"x": jnp.array([1.0, -1.0])}
    state = opt.init(params)
    accu, x = np.zeros((2, 3)), np.array([1.0, -1.0])
    for i, g in enumerate([np.array([0.5, 1.0]), np.array([-2.0, 0.1]), np.array([1.0, 1.0]),
                           np.array([0.3, -0.7])]):
        params, state = opt.update({"x": jnp.asarray(g)}, state, params)
        accu[:, i % 3] = g**2
        x = x - 0.1 * g / np.sqrt(accu.sum(-1) + 0.1)
        np.testing.assert_allclose(params["x"], x, rtol=1e-12)


def test_bad_settings_are_refused_at_build_time():
    with pytest.raises(ValueError, match="method="):
        build_advi(logdensity, 3, "svgd")
    with pytest.raises(ValueError, match="obj_n_mc"):
        build_advi(logdensity, 3, "advi", obj_n_mc=0)
    with pytest.raises(ValueError, match="learning_rate"):
        adagrad_window(learning_rate=-1)

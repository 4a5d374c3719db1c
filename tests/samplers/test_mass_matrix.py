"""Mass-matrix adaptation schemes: Welford, Stan's regularisation, gradient-based and low-rank."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers import build_nuts_program
from hiddenjax.samplers.mass_matrix import (
    ADAPTATIONS,
    AUTO_LOW_RANK_MAX,
    LOW_RANK_CUTOFF,
    LOW_RANK_GAMMA,
    _geometric_mean_eigh,
    gradient_variance,
    low_rank,
    regularize_variance,
    welford_covariance,
    welford_variance,
)
from hiddenjax.samplers.warmup import nuts_schedule
from tests.samplers.drivers import run_program


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


# --- nutpie's low-rank modified mass matrix -------------------------------------------


def _spiked_covariance(n_dim: int, seed: int = 0) -> np.ndarray:
    """``D^1/2 (I + U diag(lam - 1) U^T) D^1/2``: a spread diagonal and three strong directions."""
    rng = np.random.default_rng(seed)
    diagonal = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_dim))
    spikes, _ = np.linalg.qr(rng.normal(size=(n_dim, 3)))
    values = np.array([100.0, 30.0, 0.01])
    root = np.diag(np.sqrt(diagonal))
    return root @ (np.eye(n_dim) + spikes @ np.diag(values - 1.0) @ spikes.T) @ root


def _gaussian_window(covariance: np.ndarray, n_draws: int, seed: int = 1):
    """Exact draws of ``N(0, covariance)`` with their log-density gradients ``-covariance^-1 x``."""
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(np.zeros(len(covariance)), covariance, size=n_draws)
    return draws, -np.linalg.solve(covariance, draws.T).T


def _low_rank_final(adapt, draws, gradients):
    return adapt.final(_accumulate_pairs(adapt, draws, gradients))


def _accumulate_pairs(adapt, draws, gradients):
    def body(state, xg):
        return adapt.update(state, xg[0], xg[1]), None

    return jax.lax.scan(body, adapt.init(draws.shape[1]),
                        (jnp.asarray(draws), jnp.asarray(gradients)))[0]


def _dense_inverse_mass(metric) -> np.ndarray:
    s = np.diag(np.asarray(metric.scale))
    u, lam = np.asarray(metric.vectors), np.asarray(metric.values)
    return s @ (np.eye(len(s)) + u @ np.diag(lam - 1.0) @ u.T) @ s


def _relative_eigenvalues(covariance, inverse_mass) -> np.ndarray:
    """Eigenvalues of ``C^-1/2 M^-1 C^-1/2``: all 1 for the ideal metric."""
    chol = np.linalg.cholesky(covariance)
    return np.linalg.eigvalsh(np.linalg.solve(chol, np.linalg.solve(chol, inverse_mass).T))


def test_low_rank_is_exact_for_a_gaussian_without_ridge_and_cutoff():
    # For a Gaussian the gradients are -C^-1 x, so cov(g) = C^-1 cov(x) C^-1 in any linear
    # coordinates and C is the one SPD solution of sigma cov(g) sigma = cov(x): with a
    # negligible ridge (n gamma kappa ~ 1e-8) and every eigenpair kept the metric is C itself.
    covariance = _spiked_covariance(12)
    draws, gradients = _gaussian_window(covariance, 200)
    adapt = low_rank(12, 200, gamma=1e-12, cutoff=1.0 + 1e-9, max_rank=12)
    metric = _low_rank_final(adapt, draws, gradients)
    np.testing.assert_allclose(_relative_eigenvalues(covariance, _dense_inverse_mass(metric)),
                               1.0, atol=1e-6)


@pytest.mark.parametrize("n_dim,n_draws", [(5, 50), (40, 10), (89, 50), (89, 500)])
def test_geometric_mean_solves_sigma_b_sigma_equals_a(n_dim, n_draws):
    # Windows as the scheme sees them: n_draws scaled draws and gradients plus nutpie's
    # ridge, so short windows give rank-deficient covariances lifted by the ridge alone.
    rng = np.random.default_rng(n_dim + n_draws)
    mix = np.eye(n_dim) + rng.normal(size=(n_dim, n_dim)) / np.sqrt(n_dim)
    draws = rng.normal(size=(n_draws, n_dim)) @ mix
    gradients = rng.normal(size=(n_draws, n_dim)) * rng.uniform(0.1, 10.0, n_dim)
    ridge = n_draws * LOW_RANK_GAMMA * np.eye(n_dim)
    a, b = draws.T @ draws / n_draws + ridge, gradients.T @ gradients / n_draws + ridge
    values, vectors = _geometric_mean_eigh(a, b)
    # The reference by another route: b^-1/2 (b^1/2 a b^1/2)^1/2 b^-1/2.
    w, u = np.linalg.eigh(b)
    root, inverse_root = (u * np.sqrt(w)) @ u.T, (u / np.sqrt(w)) @ u.T
    w, u = np.linalg.eigh(root @ a @ root)
    exact = inverse_root @ ((u * np.sqrt(w)) @ u.T) @ inverse_root
    # LAPACK's eigh errs by about n * eps * |A|_F per eigenvalue (Weyl). That error in
    # C = L^T a L reaches C^1/2 amplified by at most 1 / (2 sqrt(lambda_min(C))) and
    # sigma = L^-T C^1/2 L^-1 by |L^-1|^2 = 1 / lambda_min(b); the second decomposition
    # adds its own on sigma, and the factorisation rounding is n * cond(b) * eps. The
    # reference route errs by as much again.
    eps = n_dim * np.finfo(float).eps
    lower = np.linalg.cholesky(b)
    middle = lower.T @ a @ lower
    propagated = (eps * np.linalg.norm(middle)
                  / (2 * np.sqrt(np.linalg.eigvalsh(middle).min()) * np.linalg.eigvalsh(b).min()))
    rounding = eps * (1.0 + np.linalg.cond(b)) * np.linalg.norm(exact)
    bound = 2 * (propagated + rounding)
    assert np.abs(values - np.linalg.eigvalsh(0.5 * (exact + exact.T))).max() <= bound
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n_dim), atol=1e-12)


def _assert_within_ridge_and_cutoff(covariance, metric, n_draws):
    """The low-rank metric matches ``covariance`` up to the cutoff and the ridge's bias.

    Relative eigenvalues lie within ``cutoff * sqrt(1 + n gamma kappa)``, kappa
    the condition number of the covariance in the metric's diagonal scaling.
    """
    scaled = covariance / np.outer(metric.scale, metric.scale)
    eigenvalues = np.linalg.eigvalsh(scaled)
    kappa = max(eigenvalues.max(), 1.0 / eigenvalues.min())
    bound = LOW_RANK_CUTOFF * np.sqrt(1.0 + n_draws * LOW_RANK_GAMMA * kappa)
    relative = _relative_eigenvalues(covariance, _dense_inverse_mass(metric))
    assert 1.0 / bound <= relative.min() and relative.max() <= bound


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_low_rank_recovers_the_strong_directions(seed):
    """With nutpie's defaults every eigenvalue left over lies within the cutoff band.

    Exact up to the ridge and the cutoff (see the test above), so the
    tolerance is theirs, fixed here: a ridge ``r = n gamma`` on scaled
    eigenvalues within ``[1/kappa, kappa]`` moves each by a factor at most
    ``sqrt(1 + r kappa)`` (``sqrt((a + r) / (1/a + r))`` against ``a``).
    """
    n_dim, n_draws = 40, 400
    covariance = _spiked_covariance(n_dim)
    draws, gradients = _gaussian_window(covariance, n_draws, seed)
    metric = _low_rank_final(low_rank(n_dim, 500), draws, gradients)
    _assert_within_ridge_and_cutoff(covariance, metric, n_draws)
    # The diagonal alone is far off along the spikes; the correction is what fixes it.
    diagonal_only = _relative_eigenvalues(covariance, np.diag(metric.diagonal))
    assert diagonal_only.max() / diagonal_only.min() > 1000.0
    assert np.sum(np.asarray(metric.values) != 1.0) >= 3


def _full_space_oracle(draws, gradients, scale, gamma, cutoff, max_rank):
    """nutpie's estimate computed in all of R^n with scipy (no projection), as ``M^-1``."""
    from scipy.linalg import sqrtm

    n = len(draws)
    x = (draws - draws.mean(axis=0)) / scale
    g = (gradients - gradients.mean(axis=0)) * scale
    ridge = n * gamma * np.eye(draws.shape[1])
    a, b = x.T @ x / n + ridge, g.T @ g / n + ridge
    root = np.real(sqrtm(b))
    inv_root = np.linalg.inv(root)
    sigma = inv_root @ np.real(sqrtm(root @ a @ root)) @ inv_root
    values, vectors = np.linalg.eigh(0.5 * (sigma + sigma.T))
    strongest = np.argsort(-np.abs(np.log(values)))[:max_rank]
    kept = [i for i in strongest if abs(np.log(values[i])) > np.log(cutoff)]
    u = vectors[:, kept]
    inner = np.eye(len(scale)) + u @ np.diag(values[kept] - 1.0) @ u.T
    return np.diag(scale) @ inner @ np.diag(scale)


def test_projection_onto_the_window_span_changes_nothing():
    # 30 draws in 100 dimensions: the scheme decomposes only the 60-dimensional span of
    # the draws and gradients; outside it the estimate is exactly 1, so the full-space
    # computation must give the same metric.
    n_dim, n_draws = 100, 30
    covariance = _spiked_covariance(n_dim, seed=4)
    draws, gradients = _gaussian_window(covariance, n_draws, seed=5)
    metric = _low_rank_final(low_rank(n_dim, n_draws), draws, gradients)
    want = _full_space_oracle(draws, gradients, np.asarray(metric.scale), LOW_RANK_GAMMA,
                              LOW_RANK_CUTOFF, 10)
    # B's condition number (ridge 3e-4 against eigenvalues near 1e2) costs sqrtm digits.
    np.testing.assert_allclose(_dense_inverse_mass(metric), want, rtol=1e-6, atol=1e-7)
    assert np.sum(np.asarray(metric.values) != 1.0) >= 3


def test_a_window_spanning_fewer_directions_than_the_rank_fills_the_rest_with_no_correction():
    # A buffer of 1 draw in 3 dimensions spans 2 directions, fewer than the rank of
    # 3 (a run with two tuning steps): the unused column is a zero vector with value 1.
    n_dim = 3
    adapt = ADAPTATIONS["low_rank"](n_dim, 1)
    covariance = np.diag([100.0, 1.0, 0.01])
    draws, gradients = _gaussian_window(covariance, 1)
    metric = _low_rank_final(adapt, draws, gradients)
    assert metric.values.shape == (n_dim,) and metric.vectors.shape == (n_dim, n_dim)
    np.testing.assert_array_equal(np.asarray(metric.values)[2:], 1.0)
    np.testing.assert_array_equal(np.asarray(metric.vectors)[:, 2:], 0.0)
    assert all(np.all(np.isfinite(leaf)) for leaf in metric)


def test_low_rank_buffer_keeps_the_latest_draws():
    adapt = low_rank(2, 4)
    state = adapt.init(2)
    for i in range(6):
        state = adapt.update(state, jnp.full(2, float(i)), jnp.zeros(2))
    assert int(state.count) == 6 and int(state.moments.count) == 6
    np.testing.assert_array_equal(np.sort(state.draws[:, 0]), [2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("scheme", sorted(ADAPTATIONS))
def test_metric_has_one_shape_and_type_for_start_and_final(scheme):
    # The window's metric replaces the chain state's in place, so it must match.
    adapt = ADAPTATIONS[scheme](5, 50)
    start = adapt.start(jnp.ones(5), jnp.full(5, 2.0))
    draws, gradients = _gaussian_window(_spiked_covariance(5), 50)
    final = adapt.final(_accumulate_pairs(adapt, draws, gradients))
    assert jax.tree.structure(start) == jax.tree.structure(final)
    for a, b in zip(start, final, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(start.values, 1.0)  # the start has no correction


@pytest.mark.parametrize("scheme", sorted(ADAPTATIONS))
def test_final_over_chains_is_final_of_each_chain(scheme):
    # The host computes every chain's metric at once, over a leading chain axis.
    adapt = ADAPTATIONS[scheme](6, 30)
    states = [_accumulate_pairs(adapt, *_gaussian_window(_spiked_covariance(6, seed=s), 30, s))
              for s in (1, 2, 3)]
    together = adapt.final(jax.tree.map(lambda *x: np.stack(x), *states))
    for chain, state in enumerate(states):
        for a, b in zip(together, adapt.final(state), strict=True):
            np.testing.assert_allclose(np.asarray(a)[chain], b, rtol=1e-10, atol=1e-12)


def _finishes(fn, seconds: float = 120.0):
    """``fn()``'s result, failing (not hanging) if it takes longer: LAPACK's SVD loops on inf."""
    result = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"final did not return within {seconds} s"
    return result[0]


@pytest.mark.parametrize("n_dim, n_draws", [(4, 30), (60, 20)])  # full space, projected span
@pytest.mark.parametrize("poison", ["inf_gradient", "nan_draw", "overflow"])
def test_low_rank_falls_back_to_the_diagonal_when_not_finite(n_dim, n_draws, poison):
    draws, gradients = _gaussian_window(np.eye(n_dim), n_draws)
    if poison == "inf_gradient":
        gradients[3, 1] = np.inf
    elif poison == "nan_draw":
        draws[5, 0] = np.nan
    else:
        # Finite draws whose covariance overflows.
        draws[:, 2] *= 1e200
        gradients[:, 2] /= 1e200
    adapt = low_rank(n_dim, n_draws)
    metric = _finishes(lambda: _low_rank_final(adapt, draws, gradients))
    np.testing.assert_array_equal(metric.values, 1.0)
    np.testing.assert_array_equal(metric.vectors, 0.0)
    assert np.all(np.isfinite(metric.diagonal))


def test_low_rank_stuck_window_gives_a_finite_metric():
    # A chain that never moves: 0/0 variances become 1, as nutpie fills them.
    adapt = low_rank(3, 10)
    state = adapt.init(3)
    for _ in range(10):
        state = adapt.update(state, jnp.ones(3), jnp.full(3, -1.0))
    metric = _finishes(lambda: adapt.final(state))
    np.testing.assert_array_equal(metric.diagonal, 1.0)
    np.testing.assert_array_equal(metric.values, 1.0)


@pytest.mark.parametrize("count", [0, 1])
def test_low_rank_final_below_two_draws_returns(count):
    # The window end evaluates final for every chain, a one-draw window's too (then discards it).
    adapt = low_rank(3, 10)
    state = adapt.init(3)
    for _ in range(count):
        state = adapt.update(state, jnp.ones(3), jnp.ones(3))
    metric = _finishes(lambda: adapt.final(state))
    assert all(np.all(np.isfinite(leaf)) for leaf in metric)


@pytest.mark.parametrize("kwargs, match", [
    ({"gamma": 0.0}, "gamma"),
    ({"cutoff": 1.0}, "cutoff"),
    ({"max_rank": 0}, "max_rank"),
])
def test_low_rank_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        low_rank(3, 10, **kwargs)


def test_low_rank_through_the_warmup_program():
    """Stan's windows feed the scheme; the last window's metric matches the target.

    The estimate is exact for any Gaussian draws, autocorrelated or not (see
    above), so the bound is the same ridge-and-cutoff one.
    """
    n_dim, num_tune = 10, 500
    covariance = _spiked_covariance(n_dim, seed=6)
    precision = np.linalg.inv(covariance)

    def logdensity(x):
        return -0.5 * x @ (precision @ x)

    program = build_nuts_program(logdensity, num_tune, adaptation="low_rank")
    starts = np.random.default_rng(7).normal(size=(2, n_dim))
    run = run_program(program, jax.random.key(9), starts, num_tune, 50)
    start, end = nuts_schedule(num_tune).windows[-1]
    last_window = end - start
    for chain in range(2):
        metric = jax.tree.map(lambda a, c=chain: a[c], run.final.metric)
        _assert_within_ridge_and_cutoff(covariance, metric, last_window)
    assert not np.any(np.asarray(run.info.diverging))


def test_auto_is_low_rank_up_to_its_cutoff_and_the_diagonal_above():
    small = ADAPTATIONS["auto"](AUTO_LOW_RANK_MAX, 100)
    large = ADAPTATIONS["auto"](AUTO_LOW_RANK_MAX + 1, 100)
    assert type(small.init(AUTO_LOW_RANK_MAX)) is type(low_rank(AUTO_LOW_RANK_MAX, 100).init(
        AUTO_LOW_RANK_MAX))
    assert type(large.init(3)) is type(welford_variance().init(3))


@pytest.mark.parametrize("scheme", sorted(ADAPTATIONS))
@pytest.mark.parametrize("n_dim", [3, AUTO_LOW_RANK_MAX + 2])
def test_warmup_steps_call_no_lapack(scheme, n_dim):
    """A window's decompositions run on the host, so the step stays plain JAX and CPU
    runs keep every device, whatever the scheme and dimension."""
    def logdensity(x):
        return -0.5 * jnp.sum(x**2)

    program = build_nuts_program(logdensity, 200, adaptation=scheme)
    state = jax.vmap(program.init)(jnp.zeros((2, n_dim)))
    keys = jax.random.split(jax.random.key(0), 2)
    step = jax.vmap(program.step, in_axes=(0, 0, None))
    text = jax.jit(step).lower(keys, state, 120).as_text()
    assert "lapack_" not in text and "eig" not in text.lower()


@pytest.mark.parametrize("scheme", sorted(ADAPTATIONS))
def test_update_when_inactive_and_restart_leave_the_window_as_a_fresh_one(scheme):
    # The sampler feeds every step with an ``active`` flag and restarts by
    # selection (no conditional around the window): an inactive update changes
    # nothing, and a restarted window's estimate is a fresh window's.
    n_dim = 4
    adapt = ADAPTATIONS[scheme](n_dim, 20)
    first, first_grads = _gaussian_window(_spiked_covariance(n_dim), 20, seed=1)
    second, second_grads = _gaussian_window(_spiked_covariance(n_dim), 12, seed=2)

    def feed(state, draws, gradients, active=True):
        for x, g in zip(draws, gradients, strict=True):
            state = jax.jit(adapt.update)(state, jnp.asarray(x), jnp.asarray(g),
                                          jnp.asarray(active))
        return state

    state = feed(adapt.init(n_dim), first, first_grads)
    unchanged = feed(state, second, second_grads, active=False)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(unchanged), strict=True):
        np.testing.assert_array_equal(a, b)
    restarted = feed(adapt.restart(state), second, second_grads)
    fresh = feed(adapt.init(n_dim), second, second_grads)
    assert float(restarted.count) == float(fresh.count) == len(second)
    for a, b in zip(adapt.final(restarted), adapt.final(fresh), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_geometric_mean_of_a_batch_marks_only_the_chain_whose_b_has_no_factor():
    # One chain's gradient covariance is indefinite: LAPACK refuses the whole batch, so
    # the matrices are factored one at a time and only that chain's eigenvalues are NaN.
    rng = np.random.default_rng(4)
    mix = rng.normal(size=(3, 3))
    a = np.stack([mix @ mix.T + np.eye(3)] * 2)
    b = np.stack([np.eye(3) * 2.0, np.diag([1.0, -1.0, 1.0])])
    values, vectors = _geometric_mean_eigh(a, b)
    assert np.all(np.isnan(values[1]))
    single, _ = _geometric_mean_eigh(a[0], b[0])
    np.testing.assert_allclose(values[0], single, rtol=1e-12)
    # sigma b sigma = a with b = 2 I: sigma = (a / 2)^1/2.
    np.testing.assert_allclose(values[0], np.sqrt(np.linalg.eigvalsh(a[0]) / 2.0), rtol=1e-12)
    assert np.all(np.isfinite(vectors))

"""hiddenjax's JAX samplers draw from the same distributions as PyTensor's C backend,
from threefry keys (PyTensor's, in ``pm.draw``) and from SplitMix64 keys (forward draws).

Two-sample Kolmogorov-Smirnov test per scalar component at a fixed seed; with
2000 draws a correct sampler fails at alpha = 1e-3 once in a thousand seeds.
"""

import warnings

import numpy as np
import pymc as pm
import pytest
from scipy import stats

import hiddenjax.compile  # noqa: F401  (registers the HIDDENJAX mode)
from hiddenjax.compile.preflight import HostCallbackWarning

N = 2000
ALPHA = 1e-3

CASES = {
    "moyal": lambda: pm.Moyal.dist(0.5, 2.0, size=N),
    "wald": lambda: pm.Wald.dist(mu=1.5, lam=2.0, alpha=0.3, size=N),
    "rice": lambda: pm.Rice.dist(nu=1.0, sigma=0.7, size=N),
    "skew_normal": lambda: pm.SkewNormal.dist(mu=1.0, sigma=2.0, alpha=-3.0, size=N),
    "skew_student_t": lambda: pm.SkewStudentT.dist(a=2.0, b=4.0, mu=0.5, sigma=1.5, size=N),
    "triangular": lambda: pm.Triangular.dist(lower=-1.0, c=0.2, upper=3.0, size=N),
    "discrete_uniform": lambda: pm.DiscreteUniform.dist(-2, 5, size=N),
    "truncated_normal": lambda: pm.TruncatedNormal.dist(1.0, 2.0, lower=0.0, upper=4.0, size=N),
    "weibull": lambda: pm.Weibull.dist(alpha=1.5, beta=2.0, size=N),
    "hypergeometric": lambda: pm.HyperGeometric.dist(N=20, k=8, n=6, size=N),
    # Batched, and drawing more than half the population (the loop's other branch).
    "hypergeometric_batched": lambda: pm.HyperGeometric.dist(
        N=np.array([20, 50, 7]), k=np.array([8, 5, 7]), n=np.array([15, 40, 3]), size=(N, 3)),
    "interpolated": lambda: pm.Interpolated.dist(
        x_points=np.linspace(-2, 3, 11), pdf_points=np.exp(-np.linspace(-2, 3, 11) ** 2) + 0.1,
        size=N),
    # Rejection sampling: a while-style Scan.
    "truncated_poisson": lambda: pm.Truncated.dist(pm.Poisson.dist(3.0), lower=2, upper=6, size=N),
    "hurdle_poisson": lambda: pm.HurdlePoisson.dist(psi=0.6, mu=3.0, size=N),
    "hurdle_negative_binomial": lambda: pm.HurdleNegativeBinomial.dist(psi=0.6, mu=3.0, alpha=2.0,
                                                                       size=N),
    "binomial": lambda: pm.Binomial.dist(n=12, p=0.3, size=N),
    "matrix_normal": lambda: pm.MatrixNormal.dist(
        mu=np.zeros((2, 2)), rowcov=np.array([[1.0, 0.5], [0.5, 2.0]]), colcov=np.eye(2),
        size=N),
    "stick_breaking": lambda: pm.StickBreakingWeights.dist(alpha=2.0, K=4, size=N),
    "categorical": lambda: pm.Categorical.dist(p=np.array([[0.2, 0.3, 0.5], [0.0, 0.9, 0.1]]),
                                              size=(N, 2)),
    "normal_mixture": lambda: pm.NormalMixture.dist(
        w=np.array([0.3, 0.7]), mu=np.array([-2.0, 1.0]), sigma=np.array([0.5, 1.0]), size=N),
    "zero_inflated_poisson": lambda: pm.ZeroInflatedPoisson.dist(psi=0.7, mu=3.0, size=N),
    "wishart": lambda: pm.Wishart.dist(nu=5, V=np.array([[1.0, 0.3], [0.3, 0.5]]), size=N),
    # Vectorised Marsaglia-Tsang: shapes below one (boosted) and above, and heavy tails.
    "gamma": lambda: pm.Gamma.dist(alpha=np.array([0.2, 1.0, 7.5]), beta=2.0, size=(N, 3)),
    "student_t": lambda: pm.StudentT.dist(nu=np.array([0.7, 3.0, 40.0]), mu=1.0, sigma=2.0,
                                          size=(N, 3)),
    # Log-space gamma ratios: shapes whose gamma draws underflow, too.
    "beta": lambda: pm.Beta.dist(alpha=np.array([2.0, 0.05, 0.5]), beta=np.array([5.0, 0.08, 40.0]),
                                 size=(N, 3)),
    "dirichlet": lambda: pm.Dirichlet.dist(np.array([0.3, 1.0, 5.0]), size=N),
    # Inversion below a rate of 10, PTRS from 10 up.
    "poisson": lambda: pm.Poisson.dist(np.array([0.01, 0.5, 4.0, 9.99, 10.0, 30.0, 1e5]),
                                       size=(N, 7)),
    "negative_binomial": lambda: pm.NegativeBinomial.dist(
        mu=np.array([0.5, 3.0, 40.0]), alpha=np.array([0.5, 2.0, 10.0]), size=(N, 3)),
    # Inversion below n * min(p, 1 - p) = 10, BTRS above; p above 1/2 mirrored.
    "binomial_small_and_large": lambda: pm.Binomial.dist(
        n=np.array([3, 30, 200, 100_000, 50]), p=np.array([0.3, 0.9, 0.4, 0.01, 1.0]),
        size=(N, 5)),
}


PYTENSOR_CASES = {
    "normal": lambda: pm.Normal.dist(1.0, 2.0, size=N),
    "half_normal": lambda: pm.HalfNormal.dist(1.5, size=N),
    "lognormal": lambda: pm.LogNormal.dist(0.3, 0.8, size=N),
    "mv_normal": lambda: pm.MvNormal.dist(np.zeros(2), np.array([[1.0, 0.6], [0.6, 2.0]]),
                                          size=N),
    "bernoulli": lambda: pm.Bernoulli.dist(0.3, size=N),
    "exponential": lambda: pm.Exponential.dist(2.0, size=N),
    "uniform": lambda: pm.Uniform.dist(-1.0, 3.0, size=N),
    "laplace": lambda: pm.Laplace.dist(0.5, 2.0, size=N),
    "logistic": lambda: pm.Logistic.dist(0.5, 2.0, size=N),
    "gumbel": lambda: pm.Gumbel.dist(0.5, 2.0, size=N),
    "half_cauchy": lambda: pm.HalfCauchy.dist(1.0, size=N),
    "multinomial": lambda: pm.Multinomial.dist(10, np.array([0.2, 0.3, 0.5]), size=N),
    "von_mises": lambda: pm.VonMises.dist(0.5, 2.0, size=N),
    "inverse_gamma": lambda: pm.InverseGamma.dist(3.0, 2.0, size=N),
    "geometric": lambda: pm.Geometric.dist(0.3, size=N),
    "beta_binomial": lambda: pm.BetaBinomial.dist(2.0, 3.0, 10, size=N),
    "zero_inflated_negative_binomial": lambda: pm.ZeroInflatedNegativeBinomial.dist(
        psi=0.7, mu=3.0, alpha=2.0, size=N),
    # Its inlined inner graph leaves duplicate random variables (see
    # merge_duplicate_random_variables).
    "lkj_corr": lambda: pm.LKJCorr.dist(n=4, eta=2.0, size=N),
}
"""Random variables drawn by PyTensor's own JAX samplers (with hiddenjax's Normal), for
the forward-draw test below."""


def _draws(rv, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error", HostCallbackWarning)  # drawn in JAX, not on the host
        return np.asarray(pm.draw(rv, random_seed=11, mode=mode)).reshape(N, -1)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_draws_agree_with_c_backend(name):
    rv = CASES[name]()
    _assert_same_distribution(name, _draws(rv, "HIDDENJAX"), _draws(rv, "FAST_RUN"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_forward_draws_agree_with_c_backend():
    # Forward draws (predictive sampling) read their keys with SplitMix64
    # (hiddenjax.compile.prng): every sampler, hiddenjax's and PyTensor's, takes them.
    import hiddenjax as hj

    cases = {**CASES, **PYTENSOR_CASES}
    with pm.Model() as model:
        for name, make in cases.items():
            model.register_rv(make(), name)
    prior = hj.sample_prior_predictive(draws=1, model=model, random_seed=11).prior
    for name, make in cases.items():
        _assert_same_distribution(name, prior[name].values, _draws(make(), "FAST_RUN"))


_W = np.array([[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_car_draws_follow_its_log_density():
    """CAR is a normal with precision Q = tau (D - alpha W), as its log-density says.

    PyMC 5.28's own CAR sampler solves with the full Cholesky factorisation
    (``cho_solve_banded``), so its draws have covariance Q^-2 instead: the
    reference here is PyMC's MvNormal with precision Q, drawn by the C backend.
    """
    mu, alpha, tau = np.array([0.5, -1.0, 0.0, 2.0]), 0.5, 1.2
    q = tau * (np.diag(_W.sum(0)) - alpha * _W)
    ours = _draws(pm.CAR.dist(mu=mu, W=_W, alpha=alpha, tau=tau, size=N), "HIDDENJAX")
    reference = _draws(pm.MvNormal.dist(mu=mu, tau=q, size=N), "FAST_RUN")
    _assert_same_distribution("car", ours, reference)
    # A linear combination checks the correlations, not only the margins.
    _assert_same_distribution("car", ours @ [1.0, -1.0, 0.5, 2.0],
                              reference @ [1.0, -1.0, 0.5, 2.0])


def _assert_same_distribution(name, jx, c):
    jx, c = jx.reshape(N, -1), c.reshape(N, -1)
    assert c.shape == jx.shape
    for k in range(c.shape[1]):
        if np.ptp(c[:, k]) == 0:
            np.testing.assert_allclose(jx[:, k], c[:, k])
            continue
        p = stats.ks_2samp(c[:, k], jx[:, k]).pvalue
        assert p > ALPHA, f"{name}[{k}]: KS p-value {p:.2g}"


@pytest.mark.parametrize("shape", [0.3, 1.0, 4.5])
def test_gamma_sampler_draws_gamma(shape):
    # Tens of thousands of entries: the first proposals leave hundreds to redraw.
    import jax
    import jax.numpy as jnp

    from hiddenjax.compile.dispatch.random import standard_gamma
    from hiddenjax.compile.prng import splitmix_key

    key = splitmix_key(jnp.asarray([4, 2], jnp.uint32))
    x = np.asarray(jax.jit(standard_gamma, static_argnums=2)(
        key, jnp.full(30_000, shape), jnp.float64))
    assert stats.kstest(x, stats.gamma(shape).cdf).pvalue > ALPHA

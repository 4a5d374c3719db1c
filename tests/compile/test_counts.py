"""hiddenjax's count samplers: exact distributions on both sides of every switch.

Chi-square goodness of fit against scipy's probabilities at a fixed seed
(bins pooled to an expected count of at least 20); at alpha = 1e-3 a correct
sampler fails once in a thousand seeds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import hiddenjax.compile  # noqa: F401  (float64, as hiddenjax runs)
from hiddenjax.compile.dispatch import counts
from hiddenjax.compile.prng import splitmix_key

ALPHA = 1e-3
N = 50_000


def _key(seed):
    return splitmix_key(jnp.asarray([seed, 7], jnp.uint32))


def _chi_square_pvalue(draws, dist):
    """Goodness of fit of integer ``draws`` to the scipy ``dist``, tail bins pooled."""
    lo, hi = int(dist.ppf(1e-9)), int(dist.ppf(1 - 1e-9)) + 1
    support = np.arange(lo, hi + 1)
    expected = dist.pmf(support) * len(draws)
    observed = np.bincount(np.clip(draws, lo, hi) - lo, minlength=len(support)).astype(float)
    expected[0] += dist.cdf(lo - 1) * len(draws)
    expected[-1] += dist.sf(hi) * len(draws)
    # Pool neighbouring bins until each expects at least 20.
    obs, exp, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(observed, expected):
        o, e = o + oi, e + ei
        if e >= 20:
            obs.append(o), exp.append(e)
            o, e = 0.0, 0.0
    obs[-1] += o
    exp[-1] += e
    exp = np.array(exp) * (sum(obs) / sum(exp))
    return stats.chisquare(obs, exp).pvalue


def test_log_factorial_matches_scipy():
    k = np.concatenate([np.arange(0, 2000), [1e5, 1e9, 1e15]]).astype(float)
    ours = np.asarray(jax.jit(counts.log_factorial)(k))
    np.testing.assert_allclose(ours, special.gammaln(k + 1), rtol=2e-12, atol=1e-12)


@pytest.mark.parametrize("rate", [0.02, 0.9, 4.0, 9.99, 10.0, 17.5, 250.0])
def test_poisson_draws_are_poisson(rate):
    x = np.asarray(jax.jit(counts.poisson, static_argnums=2)(
        _key(1), jnp.full(N, rate), jnp.int64))
    assert _chi_square_pvalue(x, stats.poisson(rate)) > ALPHA


def test_inversion_searches_past_its_unrolled_terms():
    # Uniforms so close to 1 that the count is beyond the unrolled terms.
    rate = 9.9
    u = 1.0 - np.array([1e-9, 1e-12, 1e-14, 2.0**-53])
    expected = stats.poisson(rate).ppf(u)
    assert np.all(expected >= counts.UNROLLED)
    lam = jnp.full(len(u), rate)
    got = jax.jit(lambda u: counts._inversion(u, jnp.exp(-lam), lambda j: lam / (j + 1.0)))(
        jnp.asarray(u))
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_poisson_edge_rates():
    top = np.iinfo(np.int64).max
    got = counts.poisson(_key(2), jnp.array([-1.0, np.nan, 0.0, np.inf]), jnp.int64)
    assert np.asarray(got).tolist() == [-1, -1, 0, top]


@pytest.mark.parametrize("n,p", [(12, 0.3), (30, 0.93), (40, 0.25), (500, 0.5), (10**5, 0.002),
                                 (7, 0.999)])
def test_binomial_draws_are_binomial(n, p):
    x = np.asarray(jax.jit(counts.binomial, static_argnums=3)(
        _key(3), jnp.full(N, float(n)), jnp.full(N, p), jnp.int64))
    assert x.min() >= 0 and x.max() <= n
    assert _chi_square_pvalue(x, stats.binom(n, p)) > ALPHA


def test_binomial_edge_parameters():
    got = counts.binomial(_key(4), jnp.array([-1.0, 5.0, 5.0, 5.0, 5.0, 0.0]),
                          jnp.array([0.5, -0.1, 1.1, 0.0, 1.0, 0.3]), jnp.int64)
    assert np.asarray(got).tolist() == [-1, -1, -1, 0, 5, 0]


@pytest.mark.parametrize("n,p", [(0.5, 0.4), (3.0, 0.05), (40.0, 0.7)])
def test_negative_binomial_draws_are_negative_binomial(n, p):
    x = np.asarray(jax.jit(counts.negative_binomial, static_argnums=3)(
        _key(5), jnp.full(N, n), jnp.full(N, p), jnp.int64))
    assert _chi_square_pvalue(x, stats.nbinom(n, p)) > ALPHA

"""PG(h, z) lowered by hiddenjax: series against the ``polyagamma`` package, draws against it."""

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.special import polygamma

from hiddenjax.compile.dispatch.polyagamma import (
    GAMMA_TERMS,
    polyagamma_draws,
    polyagamma_logcdf,
    polyagamma_logpdf,
    remainder_cumulants,
)
from hiddenjax.execution.devices import configure

pg = pytest.importorskip("polyagamma")

# Where the alternating series is well conditioned in float64 (no deep tails).
X = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0])
PARAMS = [(0.3, 0.0), (1.0, 0.5), (2.5, -3.0), (7.0, 10.0)]


@pytest.fixture(autouse=True)
def _float64():
    configure("float64")


@pytest.mark.parametrize("h, z", PARAMS)
def test_logpdf_and_logcdf_match_the_package(h, z):
    np.testing.assert_allclose(polyagamma_logpdf(X, h, z),
                               pg.polyagamma_pdf(X, h, z, return_log=True), rtol=1e-9)
    np.testing.assert_allclose(polyagamma_logcdf(X, h, z),
                               pg.polyagamma_cdf(X, h, z, return_log=True),
                               rtol=1e-9, atol=1e-12)


def test_outside_support_and_invalid_h():
    assert np.isneginf(polyagamma_logpdf(-1.0, 1.0, 0.0))
    assert np.isneginf(polyagamma_logpdf(0.0, 1.0, 0.0))
    assert np.isnan(polyagamma_logpdf(1.0, -1.0, 0.0))
    grad = jax.grad(lambda x: polyagamma_logpdf(x, 1.0, 0.5))(-1.0)
    assert np.isfinite(grad)


def test_remainder_cumulants_are_exact_at_z_zero():
    # sum_{u = K + 1/2, K + 3/2, ...} u^-2j = psi^(2j-1)(K + 1/2) / (2j - 1)!
    k = GAMMA_TERMS + 0.5
    two_pi2 = 2 * np.pi**2
    want = [polygamma(1, k) / two_pi2, polygamma(3, k) / 6 / two_pi2**2,
            2 * polygamma(5, k) / 120 / two_pi2**3]
    np.testing.assert_allclose(remainder_cumulants(1.0, 0.0), want, rtol=1e-8)


@pytest.mark.parametrize("h, z", [(1.0, 0.5), (3.3, -2.0)])
def test_draws_agree_with_the_package(h, z):
    """Two-sample KS at a fixed seed, threshold p > 0.001 fixed in advance."""
    ours = np.asarray(polyagamma_draws(jax.random.PRNGKey(0), h, z, (4000,), np.float64))
    theirs = pg.random_polyagamma(h, z, size=4000, random_state=np.random.default_rng(0))
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    mean = h * np.tanh(z / 2) / (2 * z)
    var = h * (np.sinh(z) - z) * (1 - np.tanh(z / 2) ** 2) / (4 * z**3)
    assert abs(ours.mean() - mean) < 4 * np.sqrt(var / 4000)

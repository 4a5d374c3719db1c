"""The host optimiser on functions with known maxima."""

import numpy as np
import pytest

from hiddenjax.samplers.optimize import maximize

CENTER = np.array([1.0, -2.0, 3.0])
SCALE = np.array([1.0, 10.0, 0.1])


def quadratic(x):
    d = (x - CENTER) / SCALE
    return -0.5 * d @ d, -d / SCALE


def test_finds_the_maximum_of_a_badly_scaled_quadratic():
    result = maximize(quadratic, np.zeros(3))
    assert result.converged
    np.testing.assert_allclose(result.x, CENTER, rtol=1e-6)
    assert result.fun == pytest.approx(0.0, abs=1e-10)


def test_gradient_free_methods_get_the_value_only():
    result = maximize(quadratic, np.zeros(3), method="Powell", options={"xtol": 1e-10, "ftol": 1e-12})
    np.testing.assert_allclose(result.x, CENTER, rtol=1e-4)


def test_maxeval_stops_with_the_best_point_so_far():
    seen = []
    result = maximize(quadratic, np.zeros(3), maxeval=3, progress=lambda n, v, g: seen.append(v))
    assert not result.converged and "maxeval=3" in result.message
    assert result.n_eval == 3 and result.fun == max(seen)


def test_infinite_regions_are_backed_away_from():
    def bounded(x):
        if np.any(np.abs(x) > 5):
            return -np.inf, np.zeros_like(x)
        return quadratic(x)

    result = maximize(bounded, np.full(3, 4.0))
    np.testing.assert_allclose(result.x, CENTER, rtol=1e-5)


def test_an_unbounded_density_is_reported():
    result = maximize(lambda x: (float(np.exp(x[0])), np.exp(x)), np.zeros(1))
    assert not result.converged and "unbounded above" in result.message

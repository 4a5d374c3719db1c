"""Dual-averaging step-size adaptation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers import build_kernel, nuts_init
from hiddenjax.samplers.step_size import dual_averaging, initial_step_size

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


def _stan_dual_averaging(step_size, accepts, target):
    """Stan's recursion for the log step sizes (x, xbar), written out in floats."""
    mu, x_bar, s_bar, out = math.log(10 * step_size), 0.0, 0.0, []
    for t, a in enumerate(accepts, start=1):
        eta = 1.0 / (t + T0)
        s_bar = (1 - eta) * s_bar + eta * (target - min(a, 1.0))
        x = mu - s_bar * math.sqrt(t) / GAMMA
        w = t**-KAPPA
        x_bar = (1 - w) * x_bar + w * x
        out.append((x, x_bar))
    return out


def test_update_matches_stans_recursion():
    accepts = np.random.default_rng(0).uniform(0.3, 1.2, size=200)  # values > 1 are clipped
    adapt = dual_averaging(0.85)

    def body(state, a):
        state = adapt.update(state, a)
        return state, (state.log_step_size, state.log_step_size_avg)

    _, (x, x_bar) = jax.lax.scan(body, adapt.init(0.3), jnp.asarray(accepts))
    want = np.array(_stan_dual_averaging(0.3, accepts, 0.85))
    np.testing.assert_allclose(x, want[:, 0], rtol=1e-12)
    np.testing.assert_allclose(x_bar, want[:, 1], rtol=1e-12)


def test_fresh_state_returns_its_step_size():
    adapt = dual_averaging()
    state = adapt.init(0.123)
    assert float(adapt.final(state)) == pytest.approx(0.123, rel=1e-15)
    assert float(state.mu) == pytest.approx(math.log(1.23), rel=1e-15)
    assert state.log_step_size.dtype == jnp.float64
    assert int(state.count) == 0


def test_accumulators_stay_float64_for_float32_statistics():
    adapt = dual_averaging()
    state = adapt.update(adapt.init(jnp.float32(0.5)), jnp.float32(0.7))
    assert all(leaf.dtype == jnp.float64 for leaf in state)


def test_initial_step_size_is_pymcs():
    assert initial_step_size(16) == pytest.approx(0.125)
    assert initial_step_size(1) == pytest.approx(0.25)


def test_drives_acceptance_to_target_on_a_gaussian():
    """NUTS on a 10-d standard normal, dual averaging from a step size 30 times too small.

    The recursion gives exactly ``sum_t (target - a_t) = (T + t0) h_bar_T`` and
    ``h_bar_T = gamma (mu - x_T) / sqrt(T)``, so the mean acceptance over the
    T steps misses the target by ``gamma |mu - x_T| (T + t0) / T^1.5``. With
    T = 1000 that is below 0.0017 |mu - x_T|: the mean acceptance is within 0.01
    of the target whenever the step size settles within a factor e^6 of mu.
    """
    target, n_steps = 0.8, 1000

    def logdensity(x):
        return -0.5 * jnp.sum(x**2)

    kernel = build_kernel(logdensity)
    adapt = dual_averaging(target)

    def body(carry, key):
        state, da = carry
        state, info = kernel(key, state, jnp.exp(da.log_step_size), jnp.ones(10))
        return (state, adapt.update(da, info.acceptance_rate)), info.acceptance_rate

    start = (nuts_init(jnp.ones(10), logdensity), adapt.init(0.03))
    keys = jax.random.split(jax.random.key(4), n_steps)
    (_, da), accepts = jax.jit(lambda c: jax.lax.scan(body, c, keys))(start)
    gap = GAMMA * float(da.mu - da.log_step_size) * (n_steps + T0) / n_steps**1.5
    assert float(target - np.mean(accepts)) == pytest.approx(gap, abs=1e-12)
    assert abs(np.mean(accepts) - target) < 0.01
    # The settled step size is far from the start: adaptation did move it.
    assert float(adapt.final(da)) > 10 * 0.03

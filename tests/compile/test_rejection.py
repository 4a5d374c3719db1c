"""Vectorised rejection sampling: every entry gets its first accepted proposal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import hiddenjax.compile  # noqa: F401  (float64, as hiddenjax runs)
from hiddenjax.compile.dispatch.rejection import (
    _retry_pending,
    loop_variant,
    only_if,
    rejection_sample,
)

ALPHA = 1e-3


def _below(key, bound):
    """A uniform on (0, 1), accepted below ``bound``: accepted draws are uniform on (0, bound)."""
    u = jax.random.uniform(key, bound.shape, jnp.float64, minval=1e-12)
    return u, u < bound


@pytest.mark.parametrize("retries", [(), ((1 / 3, 4), (1 / 64, 8))])
def test_every_entry_gets_an_accepted_draw_of_the_right_distribution(retries):
    # Acceptance 0.3: most entries need several proposals, some many.
    n = 20_000
    bound = jnp.full(n, 0.3)
    x = np.asarray(jax.jit(lambda k: rejection_sample(k, _below, (bound,), retries))(
        jax.random.PRNGKey(1)))
    assert np.all(np.isfinite(x)) and np.all(x < 0.3)
    assert stats.kstest(x, stats.uniform(0, 0.3).cdf).pvalue > ALPHA


def test_retries_fill_the_first_pending_entries_in_index_order():
    n, size = 40, 4
    pending = np.array([0, 1, 3, 7, 8, 20, 21, 30, 39])
    value = np.arange(n, dtype=float)
    value[pending] = np.nan
    scale = jnp.arange(n, dtype=jnp.float64)

    def always(key, s):
        return 10.0 * s, jnp.ones(s.shape, bool)

    out = np.asarray(_retry_pending(jax.random.PRNGKey(0), jnp.asarray(value), always,
                                    (scale,), size, 2))
    filled = pending[:size]
    np.testing.assert_array_equal(out[filled], 10.0 * filled)
    assert np.all(np.isnan(out[pending[size:]]))
    rest = np.setdiff1d(np.arange(n), pending)
    np.testing.assert_array_equal(out[rest], value[rest])


def test_only_if_computes_where_needed_also_under_vmap():
    def draw(key, x):
        return x + jax.random.uniform(key, x.shape) + 100.0

    def one(needed, x):
        return only_if(needed, draw, jax.random.PRNGKey(0), (x,), jnp.zeros_like(x))

    x = jnp.ones((2, 3))
    out = np.asarray(jax.jit(jax.vmap(one))(jnp.array([True, False]), x))
    assert np.all(out[0] > 100.0) and np.all(out[1] == 0.0)
    assert np.all(np.asarray(jax.jit(one)(False, x[0])) == 0.0)
    keyless = only_if(True, lambda x: 2.0 * x, None, (x[0],), jnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(keyless), 2.0 * np.ones(3))


def test_loop_variant_keeps_the_values():
    x = jnp.array([1.5, -2.0, jnp.inf])
    np.testing.assert_array_equal(np.asarray(loop_variant((x,), 7)[0]), np.asarray(x))

"""Per-draw functions over many draws: chunking and devices never change the result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.execution.vectorized import (
    CheckFailed,
    map_over_draws,
    raise_failed_checks,
    run_steps,
)


def noisy_square(key, values, data):
    (x,) = values
    (scale,) = data
    noise = jax.random.normal(key, x.shape)
    return (x**2 + scale * noise, jnp.sum(x)), (jnp.all(x > -10),)


@pytest.fixture
def values():
    return (np.random.default_rng(0).normal(size=(37, 3)),)


def test_same_draws_whatever_the_chunk_size_or_devices(values):
    key = jax.random.PRNGKey(3)
    whole = map_over_draws(noisy_square, values, (0.5,), n_draws=37, seed_key=key)
    assert whole.outputs[0].shape == (37, 3) and whole.outputs[1].shape == (37,)
    for array in (*whole.outputs, *whole.checks):  # host arrays of their own, as numpy's
        assert isinstance(array, np.ndarray) and array.flags.writeable and array.flags.c_contiguous
    for chunk_size in (1, 5, 16):
        chunked = map_over_draws(noisy_square, values, (0.5,), n_draws=37, seed_key=key,
                                 chunk_size=chunk_size)
        for a, b in zip(whole.outputs, chunked.outputs):
            np.testing.assert_array_equal(a, b)
    one_device = map_over_draws(noisy_square, values, (0.5,), n_draws=37, seed_key=key,
                                devices=jax.devices()[:1], chunk_size=7)
    np.testing.assert_array_equal(whole.outputs[0], one_device.outputs[0])
    other = map_over_draws(noisy_square, values, (0.5,), n_draws=37, seed_key=jax.random.PRNGKey(4))
    assert not np.array_equal(whole.outputs[0], other.outputs[0])
    np.testing.assert_allclose(whole.outputs[1], values[0].sum(1))


def test_progress_is_reported_per_chunk(values):
    seen = []
    map_over_draws(noisy_square, values, (0.0,), n_draws=37, chunk_size=16, progress=seen.append)
    assert seen == [16, 32, 37]


def test_failed_checks_name_the_message_and_the_draws():
    checks = (np.array([True, False, True, False]),)
    with pytest.raises(CheckFailed, match="'x > 0' failed for 2 draw.*first: draw 1"):
        raise_failed_checks(checks, ["x > 0"], "Sampling")
    raise_failed_checks((np.ones(3, bool),), ["x > 0"], "Sampling")


def test_run_steps_is_chunk_invariant_and_stops_when_asked():
    def step(key, state, shift):
        new = state + shift + jax.random.normal(key)
        return new, new

    key = jax.random.PRNGKey(0)
    a, infos_a = run_steps(step, jnp.zeros(()), 25, seed_key=key, args=(1.0,), chunk_size=25)
    b, infos_b = run_steps(step, jnp.zeros(()), 25, seed_key=key, args=(1.0,), chunk_size=7)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(infos_a, infos_b, rtol=1e-12)
    assert infos_b.shape == (25,)
    _, stopped = run_steps(step, jnp.zeros(()), 25, seed_key=key, args=(1.0,), chunk_size=7,
                           stop=lambda infos: True)
    assert stopped.shape == (7,)


def solve_square(key, values, data):
    (x,) = values
    matrix = jnp.eye(3) + jnp.outer(x, x)
    return (jnp.linalg.solve(matrix, x),), ()


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs two host devices")
def test_functions_calling_lapack_run_on_one_host_device(values):
    from hiddenjax.execution.vectorized import _compiled_chunk, _draw_mesh

    key = jax.random.PRNGKey(0)
    mesh = _draw_mesh(None)
    data = (jnp.asarray(0.5),)
    assert _compiled_chunk(noisy_square, mesh, key, values, data, 37, 5)[0].devices.size == 2
    on_one, size, _ = _compiled_chunk(solve_square, mesh, key, values, (), 37, 5)
    assert on_one.devices.size == 1
    assert size == 5  # a multiple of one device, not rounded up to two
    result = map_over_draws(solve_square, values, (), n_draws=37, seed_key=key, chunk_size=5)
    expected = [np.linalg.solve(np.eye(3) + np.outer(x, x), x) for x in values[0]]
    np.testing.assert_allclose(result.outputs[0], expected, rtol=1e-10)

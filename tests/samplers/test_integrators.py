"""Invariants of the leapfrog integrator and the Gaussian-Euclidean metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers.integrators import hamiltonian, new_integrator_state, velocity_verlet
from hiddenjax.samplers.metrics import is_turning, kinetic_energy, sample_momentum, velocity

INVERSE_MASS = np.array([0.5, 1.0, 2.0, 0.8])
PRECISION = np.array([1.0, 0.25, 1.0, 2.0])


def _coupled(x):
    """A non-Gaussian log-density with coupled coordinates."""
    return -jnp.sum(jnp.log(jnp.cosh(x))) - 0.5 * (x[0] * x[1]) ** 2 - 0.1 * jnp.sum(x**4)


def _gaussian(x):
    return -0.5 * jnp.sum(PRECISION * x**2)


def _integrate(logdensity_fn, state, step_size, n_steps):
    """All states of ``n_steps`` leapfrog steps, the start included (stacked)."""
    step = velocity_verlet(logdensity_fn)

    def body(s, _):
        s = step(s, step_size, INVERSE_MASS)
        return s, s

    _, path = jax.lax.scan(body, state, None, length=n_steps)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state, path)


def _last(path):
    return jax.tree.map(lambda a: a[-1], path)


def test_reversible_by_momentum_flip():
    start = new_integrator_state(
        _coupled, jnp.array([0.3, -1.2, 0.7, 2.0]), jnp.array([1.1, 0.4, -0.9, 0.2])
    )
    there = _last(_integrate(_coupled, start, 0.05, 60))
    flipped = there._replace(momentum=-there.momentum)
    back = _last(_integrate(_coupled, flipped, 0.05, 60))
    np.testing.assert_allclose(back.position, start.position, rtol=0, atol=1e-10)
    np.testing.assert_allclose(-back.momentum, start.momentum, rtol=0, atol=1e-10)


def test_negative_step_size_retraces_the_path():
    start = new_integrator_state(
        _coupled, jnp.array([0.3, -1.2, 0.7, 2.0]), jnp.array([1.1, 0.4, -0.9, 0.2])
    )
    there = _last(_integrate(_coupled, start, 0.05, 60))
    back = _last(_integrate(_coupled, there, -0.05, 60))
    np.testing.assert_allclose(back.position, start.position, rtol=0, atol=1e-10)
    np.testing.assert_allclose(back.momentum, start.momentum, rtol=0, atol=1e-10)
    np.testing.assert_allclose(back.logdensity, start.logdensity, rtol=0, atol=1e-10)


def test_cached_logdensity_and_gradient_match_the_position():
    start = new_integrator_state(_coupled, jnp.array([0.3, -1.2, 0.7, 2.0]), jnp.ones(4))
    path = _integrate(_coupled, start, 0.1, 10)
    values, grads = jax.vmap(jax.value_and_grad(_coupled))(path.position)
    # Equal up to rounding: XLA may fuse the batched evaluation differently.
    np.testing.assert_allclose(path.logdensity, values, rtol=1e-14)
    np.testing.assert_allclose(path.logdensity_grad, grads, rtol=1e-14)


def test_gaussian_conserves_the_modified_hamiltonian():
    """Leapfrog on ``lam q^2 / 2 + m p^2 / 2`` conserves exactly
    ``m p^2 / 2 + lam q^2 (1 - eps^2 lam m / 4) / 2``, so the energy error after
    any number of steps is ``sum(eps^2 lam^2 m (q_n^2 - q_0^2)) / 8``.
    """
    eps = 0.2
    start = new_integrator_state(
        _gaussian, jnp.array([1.0, -2.0, 0.5, 0.3]), jnp.array([0.3, 0.9, -1.2, 0.4])
    )
    path = _integrate(_gaussian, start, eps, 100)
    energy = jax.vmap(lambda s: hamiltonian(s, INVERSE_MASS))(path)
    predicted = np.sum(
        eps**2 * PRECISION**2 * INVERSE_MASS * (path.position**2 - start.position**2) / 8, axis=1
    )
    np.testing.assert_allclose(energy - energy[0], predicted, rtol=0, atol=1e-13)


def _discrete_amplitude(eps, omega, time):
    """``|q(T)| * omega / (m p0)`` of exact leapfrog started at ``q0 = 0``.

    Leapfrog satisfies ``q_{n+1} - 2 q_n + q_{n-1} = -(eps omega)^2 q_n`` with
    ``q_1 = eps m p0``, so ``q_n = eps m p0 sin(n theta) / sin(theta)`` with
    ``cos(theta) = 1 - (eps omega)^2 / 2``.
    """
    theta = np.arccos(1 - (eps * omega) ** 2 / 2)
    n = round(time / eps)
    return eps * omega * np.sin(n * theta) / np.sin(theta)


def test_gaussian_energy_error_is_second_order_in_the_step_size():
    """Halving the step at fixed integration time divides the energy error by about 4.

    Started at the mode, the energy error is ``sum_i eps^2 lam_i^2 m_i q_i(T)^2 / 8``
    (see the test above), a positive sum over coordinates. So the ratio of the
    errors at ``eps`` and ``eps / 2`` is a mediant of the per-coordinate ratios
    ``4 * A_i(eps)^2 / A_i(eps / 2)^2``, which the closed-form leapfrog solution
    gives; their spread is the tolerance. Each is ``4 (1 + d)`` with, to
    leading order, ``d = 1.5 (eps w)^2 (1/8 + w T / (24 tan(w T)))``, at most
    ``(eps w)^2 / 4`` for ``w T`` in ``(0, pi/2)``.
    """
    eps, time = 0.05, 1.0
    omega = np.sqrt(PRECISION * INVERSE_MASS)

    def error(step):
        start = new_integrator_state(_gaussian, jnp.zeros(4), jnp.array([0.3, 0.9, -1.2, 0.4]))
        end = _last(_integrate(_gaussian, start, step, round(time / step)))
        return float(hamiltonian(end, INVERSE_MASS) - hamiltonian(start, INVERSE_MASS))

    ratio = error(eps) / error(eps / 2)
    per_coordinate = [
        4 * (_discrete_amplitude(eps, w, time) / _discrete_amplitude(eps / 2, w, time)) ** 2
        for w in omega
    ]
    assert np.all(omega * time < np.pi / 2)
    # Second order: ratios within 4 (1 +- (eps w_max)^2), 4x the leading-order bound.
    assert max(abs(r / 4 - 1) for r in per_coordinate) <= (eps * omega.max()) ** 2
    assert min(per_coordinate) - 1e-9 <= ratio <= max(per_coordinate) + 1e-9


def test_kinetic_energy_and_velocity():
    p = jnp.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(velocity(p, INVERSE_MASS), INVERSE_MASS * np.asarray(p))
    assert float(kinetic_energy(p, INVERSE_MASS)) == pytest.approx(
        0.5 * np.sum(INVERSE_MASS * np.asarray(p) ** 2)
    )


def test_momentum_has_covariance_the_mass_matrix():
    """Sample variances of 20000 draws match ``1 / inverse_mass`` to 5 standard errors."""
    n = 20000
    keys = jax.random.split(jax.random.key(7), n)
    draws = np.asarray(jax.vmap(lambda k: sample_momentum(k, jnp.zeros(4), INVERSE_MASS))(keys))
    mass = 1 / INVERSE_MASS
    # Var of a Gaussian sample variance is 2 sigma^4 / (n - 1).
    variance_se = mass * np.sqrt(2 / (n - 1))
    np.testing.assert_array_less(np.abs(draws.var(axis=0, ddof=1) - mass), 5 * variance_se)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0)), 5 * np.sqrt(mass / n))


def test_momentum_keeps_the_position_dtype():
    p = sample_momentum(jax.random.key(0), jnp.zeros(3, jnp.float32), jnp.ones(3))
    assert p.dtype == jnp.float32


@pytest.mark.parametrize(
    "left, right, rho, expected",
    [
        ([1.0, 0.0], [1.0, 0.0], [2.0, 0.0], False),
        ([1.0, 0.0], [-1.0, 0.0], [2.0, 0.0], True),
        ([-1.0, 0.0], [1.0, 0.0], [2.0, 0.0], True),
        ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], False),
        ([0.0, 1.0], [1.0, 0.0], [1.0, 0.0], True),  # orthogonal counts as turning
    ],
)
def test_no_u_turn_criterion(left, right, rho, expected):
    assert bool(is_turning(jnp.array(left), jnp.array(right), jnp.array(rho))) is expected

"""Every hiddenjax lowering against PyTensor's C backend, through the shared oracle."""

import subprocess
import sys

import jax
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pymc.distributions.dist_math import SplineWrapper
from pymc.distributions.multivariate import matrix_pos_def
from pymc.variational.minibatch_rv import minibatch_rv
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.link.jax.dispatch.random import jax_sample_fn
from pytensor.scan.utils import until
from scipy.interpolate import InterpolatedUnivariateSpline, UnivariateSpline

import hiddenjax.compile.dispatch  # noqa: F401
from hiddenjax.compile.dispatch.substitutes import corrections, substitutes
from hiddenjax.compile.preflight import UnsupportedOpError
from tests.compile import oracle


def _registered_by_us(registry):
    return {cls for cls, fn in registry.items() if fn.__module__.startswith("hiddenjax.")}


_SNAPSHOT = """
import pytensor.link.jax.dispatch as d
from pytensor.link.jax.dispatch.random import jax_sample_fn
before = [dict(r) for r in (d.jax_funcify.registry, jax_sample_fn.registry)]
import hiddenjax.compile.dispatch
after = [dict(r) for r in (d.jax_funcify.registry, jax_sample_fn.registry)]
changed = [c for b, a in zip(before, after) for c in b if a[c] is not b[c]]
assert not changed, changed
assert any(len(a) > len(b) for b, a in zip(before, after))
"""


def test_never_overrides_a_pytensor_registration():
    # Importing hiddenjax only adds registrations: PyTensor's own JAX mode only gains.
    subprocess.run([sys.executable, "-c", _SNAPSHOT], check=True, capture_output=True)
    for original, stand_in in [*substitutes().items(), *corrections().items()]:
        assert issubclass(stand_in, original)
        assert stand_in in jax_funcify.registry or stand_in in jax_sample_fn.registry


def test_corrections_apply_to_hiddenjax_mode_only():
    # PyTensor's JAX sampler draws Categorical from logit(p); ours from log(p). Its own
    # JAX mode is left as it is: the correction is a stand-in class swapped in by our linker.
    p = np.array([0.1, 0.2, 0.7])
    rv = pm.Categorical.dist(p=p, size=4000)
    ours = np.bincount(pm.draw(rv, random_seed=3, mode="HIDDENJAX"), minlength=3) / 4000
    theirs = np.bincount(pm.draw(rv, random_seed=3, mode="JAX"), minlength=3) / 4000
    se = np.sqrt(p * (1 - p) / 4000)
    assert np.all(np.abs(ours - p) < 5 * se)
    assert np.any(np.abs(theirs - p) > 5 * se)


def test_converters_are_named_after_their_op():
    for registry in (jax_funcify.registry, jax_sample_fn.registry):
        for cls in _registered_by_us(registry):
            assert registry[cls].__name__.startswith("funcify_"), registry[cls].__name__


X = pt.vector("x", shape=(6,))


@pytest.mark.parametrize(
    "make, values",
    [
        (pt.erfcx, [-3.0, -0.5, 0.1, 2.0, 26.6, 40.0]),
        (pt.erfcinv, [1e-9, 0.01, 0.5, 1.0, 1.7, 1.999]),
        (lambda x: pt.gammaincinv(2.5, x), [1e-9, 0.01, 0.3, 0.5, 0.9, 1 - 1e-9]),
        (lambda x: pt.gammainccinv(0.3, x), [1e-9, 0.01, 0.3, 0.5, 0.9, 1 - 1e-9]),
        (lambda x: pt.betaincinv(0.2, 3.0, x), [1e-9, 0.01, 0.3, 0.5, 0.9, 1 - 1e-9]),
        (lambda x: pt.ive(3.0, x), [-2.0, 0.0, 0.5, 30.0, 700.0, 3000.0]),
        (lambda x: pt.ive(x, 4.0), [-3.0, -0.5, 0.0, 1.5, 10.0, 60.0]),
        (lambda x: pt.iv(1.5, x), [0.0, 0.1, 0.5, 3.0, 30.0, 300.0]),
    ],
    ids=["erfcx", "erfcinv", "gammaincinv", "gammainccinv", "betaincinv", "ive_x", "ive_v", "iv"],
)
def test_special_functions_match_c(make, values):
    oracle.assert_matches_c([X], [make(X)], [np.asarray(values)], rtol=1e-9)


@pytest.mark.parametrize(
    "make, values",
    [
        (pt.erfcx, [-3.0, -0.5, 0.1, 2.0, 26.6, 40.0]),
        (lambda x: pt.gammaincinv(2.5, x), [0.01, 0.2, 0.3, 0.5, 0.7, 0.9]),
        (lambda x: pt.betaincinv(0.7, 3.0, x), [0.01, 0.2, 0.3, 0.5, 0.7, 0.9]),
        (lambda x: pt.ive(3.0, x), [0.1, 0.5, 2.0, 30.0, 70.0, 300.0]),
        (lambda x: pt.betainc(x, 2.5, 0.3), [0.2, 0.5, 1.0, 2.0, 5.0, 20.0]),
        (lambda x: pt.betainc(1.5, x, 0.7), [0.2, 0.5, 1.0, 2.0, 5.0, 20.0]),
        (lambda x: pt.betainc(2.0, 3.0, x), [0.01, 0.2, 0.3, 0.5, 0.7, 0.99]),
    ],
    ids=["erfcx", "gammaincinv", "betaincinv", "ive", "betainc_a", "betainc_b", "betainc_x"],
)
def test_special_function_gradients_match_c(make, values):
    oracle.assert_grad_matches_c([X], make(X).sum(), [np.asarray(values)])


def test_scalar_loop_from_a_gradient_route_matches_c():
    # PyTensor differentiates gammaincc in its shape parameter with a ScalarLoop.
    a = pt.vector("a", shape=(4,))
    cost = pt.gammaincc(a, 2.0).sum()
    graph = pytensor.grad(cost, a)
    oracle.assert_matches_c([a], [graph], [np.array([0.5, 1.0, 3.0, 12.0])], rtol=1e-8)


def test_eigh_gradient_matches_c():
    m = pt.matrix("m", shape=(4, 4))
    w, v = pt.linalg.eigh(m)
    cost = (w**2).sum() + (v[:, 0] ** 3).sum()
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    oracle.assert_grad_matches_c([m], cost, [a + a.T], jax_grad=False)


def test_positive_definiteness_check_matches_c():
    m = pt.matrix("m", shape=(3, 3))
    for value in (np.eye(3), -np.eye(3), np.array([[1.0, 2, 0], [0, 1, 0], [0, 0, 1]])):
        oracle.assert_matches_c([m], [matrix_pos_def(m)], [value])


@pytest.mark.parametrize("ext", [0, 1, 3])
def test_spline_matches_scipy(ext):
    xs = np.linspace(0, 3, 9)
    spline = UnivariateSpline(xs, np.sin(xs) + xs, k=3, s=0.1, ext=ext)
    x = pt.vector("x", shape=(7,))
    values = [np.array([-0.5, 0.0, 0.4, 1.1, 2.9, 3.0, 3.5])]
    oracle.assert_matches_c([x], [SplineWrapper(spline)(x)], values, rtol=1e-10)
    oracle.assert_grad_matches_c([x], SplineWrapper(spline)(x).sum(), values)


def test_interpolated_log_density_matches_c():
    xs = np.linspace(-2, 2, 11)
    dist = pm.Interpolated.dist(xs, np.exp(-(xs**2)))
    y = pt.vector("y", shape=(5,))
    logp = pm.logp(dist, y)
    values = [np.array([-1.9, -0.3, 0.0, 0.77, 1.99])]
    oracle.assert_matches_c([y], [logp], values)
    oracle.assert_grad_matches_c([y], logp.sum(), values)


def test_linear_spline_like_interpolated_matches_c():
    xs = np.linspace(-2, 2, 11)
    spline = InterpolatedUnivariateSpline(xs, np.exp(-(xs**2)), k=1, ext="zeros")
    x = pt.vector("x", shape=(5,))
    values = [np.array([-2.5, -1.9, 0.05, 1.99, 2.0])]
    oracle.assert_matches_c([x], [SplineWrapper(spline)(x)], values, rtol=1e-12)


def test_minibatch_variable_is_its_value():
    x = pt.vector("x", shape=(4,))
    oracle.assert_matches_c([x], [minibatch_rv(x, 20) * 2.0], [np.arange(4.0)])


def _halvings(x, n_steps=50):
    def halve(v):
        return v / 2, until(pt.all(v < 1))

    return pytensor.scan(halve, outputs_info=[x], n_steps=n_steps, return_updates=False)


def test_while_scan_last_value_matches_c():
    x = pt.vector("x", shape=(3,))
    # Stops early, stops on the last allowed step, never stops.
    for n_steps, value in [(50, [40.0, 3.0, 0.5]), (6, [40.0, 3.0, 0.5]), (3, [1e6, 2.0, 9.0])]:
        oracle.assert_matches_c([x], [_halvings(x, n_steps)[-1]], [np.asarray(value)])


def test_while_scan_with_several_kinds_of_outputs_matches_c():
    # A mit-sot (two taps), a sit-sot, a nit-sot and a sequence; only last values kept.
    seq = pt.vector("seq", shape=(20,))
    a0 = pt.vector("a0", shape=(2,))

    def step(s, a_2, a_1, total):
        a = a_1 + a_2 * 0.5 + s
        return (a, total + a, a * 2), until(total > 10.0)

    (a, total, doubled) = pytensor.scan(
        step, sequences=[seq], outputs_info=[dict(initial=a0, taps=[-2, -1]), pt.zeros(()), None],
        return_updates=False,
    )
    values = [np.linspace(0.1, 1.0, 20), np.array([0.3, -0.2])]
    oracle.assert_matches_c([seq, a0], [a[-1], total[-1], doubled[-1]], values)


def test_while_scan_stops_per_element_under_vmap():
    x = pt.scalar("x")
    fn = oracle.lower_graph([x], [_halvings(x)[-1]])
    values = np.array([0.5, 3.0, 40.0, 1e6])
    want = [pytensor.function([x], _halvings(x)[-1], mode="FAST_RUN")(v) for v in values]
    got = jax.vmap(lambda v: fn(v)[0])(values)
    np.testing.assert_allclose(got, want)


def test_while_scan_history_is_refused_with_the_reason():
    x = pt.vector("x", shape=(3,))
    with pytest.raises(UnsupportedOpError, match="whole history"):
        pytensor.function([x], _halvings(x).sum(), mode="HIDDENJAX")

"""hiddenjax's own graph rewrites keep the meaning of a graph, and only hiddenjax applies them."""

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pymc.distributions.dist_math import check_parameters
from pytensor.tensor.slinalg import SolveTriangular, solve_triangular
from pytensor.tensor.subtensor import AdvancedSubtensor

import hiddenjax.compile  # noqa: F401  (registers the HIDDENJAX mode)
from tests.compile import oracle


def _masked_update():
    x, y = pt.vector("x", shape=(5,)), pt.vector("y", shape=(5,))
    mask = y > 0
    return [x, y], pt.set_subtensor(x[mask], y[mask]), pt.inc_subtensor(x[mask], y[mask])


def test_masked_update_matches_c_without_boolean_indexing():
    inputs, set_, inc = _masked_update()
    values = [np.arange(5.0), np.array([1.0, -2.0, 3.0, -0.5, 0.0])]
    oracle.assert_matches_c(inputs, [set_, inc], values)
    fn = pytensor.function(inputs, [set_, inc], mode="HIDDENJAX")
    assert not any(isinstance(n.op, AdvancedSubtensor) for n in fn.maker.fgraph.apply_nodes)


def test_pytensor_modes_do_not_apply_hiddenjax_rewrites():
    inputs, set_, _ = _masked_update()
    fn = pytensor.function(inputs, set_, mode="FAST_RUN")
    assert any(isinstance(n.op, AdvancedSubtensor) for n in fn.maker.fgraph.apply_nodes)


def test_failed_check_gives_minus_inf_over_a_whole_sum():
    # The check guards one term; the other is NaN where it fails (log of a negative).
    x, sigma = pt.vector("x", shape=(3,)), pt.scalar("sigma")
    term = check_parameters(-0.5 * (x / sigma) ** 2, sigma > 0, msg="sigma > 0")
    logp = (term - pt.log(sigma) + 1.0).sum()
    fn = pytensor.function([x, sigma], logp, mode="HIDDENJAX")
    assert np.isneginf(fn(np.ones(3), -1.0))
    oracle.assert_matches_c([x, sigma], [logp], [np.array([0.5, -1.0, 2.0]), np.array(1.3)])
    oracle.assert_grad_matches_c([x, sigma], logp, [np.array([0.5, -1.0, 2.0]), np.array(1.3)])


def test_minus_check_is_not_lifted():
    # b - switch(c, x, -inf) is +inf where c fails; lifting it would flip the sign.
    x, sigma = pt.vector("x", shape=(3,)), pt.scalar("sigma")
    term = check_parameters(-0.5 * x**2, sigma > 0, msg="sigma > 0")
    fn = pytensor.function([x, sigma], (1.0 - term).sum(), mode="HIDDENJAX")
    assert np.isposinf(fn(np.ones(3), -1.0))


def _solves(fn):
    return [n for n in fn.maker.fgraph.apply_nodes
            if isinstance(getattr(n.op, "core_op", n.op), SolveTriangular)]


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("unit_diagonal", [False, True])
@pytest.mark.parametrize("b_shape", [(4,), (4, 3), (2, 4)])
def test_constant_triangular_solve_becomes_a_product(lower, unit_diagonal, b_shape):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 4)) + 4.0 * np.eye(4)  # the other triangle must be ignored
    b = pt.tensor("b", shape=b_shape)
    b_ndim = 2 if len(b_shape) == 2 and b_shape[0] == 4 else 1
    x = solve_triangular(a, b, lower=lower, unit_diagonal=unit_diagonal, b_ndim=b_ndim)
    values = [rng.normal(size=b_shape)]
    oracle.assert_matches_c([b], [x], values, rtol=1e-12)
    oracle.assert_grad_matches_c([b], (x**2).sum(), values, rtol=1e-12)
    assert not _solves(pytensor.function([b], x, mode="HIDDENJAX"))


def test_fixed_covariance_mvnormal_matches_c():
    rng = np.random.default_rng(4)
    root = rng.normal(size=(6, 6))
    cov = root @ root.T / 6 + 0.1 * np.eye(6)
    with pm.Model() as model:
        pm.MvNormal("x", mu=np.arange(6.0), cov=cov)
    value = model.rvs_to_values[model["x"]]
    logp = model.logp()
    oracle.assert_matches_c([value], [logp], [rng.normal(size=6)], rtol=1e-12)
    oracle.assert_grad_matches_c([value], logp, [rng.normal(size=6)], rtol=1e-10)
    assert not _solves(pytensor.function([value], logp, mode="HIDDENJAX"))


def test_singular_constant_keeps_the_solve():
    a = np.tril(np.ones((3, 3)))
    a[1, 1] = 0.0
    b = pt.vector("b", shape=(3,))
    fn = pytensor.function([b], solve_triangular(a, b, lower=True), mode="HIDDENJAX")
    assert _solves(fn)

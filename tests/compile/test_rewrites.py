"""hiddenjax's own graph rewrites keep the meaning of a graph, and only hiddenjax applies them."""

import jax
import numpy as np
import pymc as pm
import pytensor
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytest
from pymc.distributions.dist_math import check_parameters
from pytensor.tensor.slinalg import SolveTriangular, solve_triangular
from pytensor.tensor.subtensor import AdvancedSubtensor

import hiddenjax.compile  # noqa: F401  (registers the HIDDENJAX mode)
from hiddenjax.compile.linker import CHECK_TO_NINF
from hiddenjax.compile.model_functions import compile_model
from hiddenjax.model import extract_model_graph
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


# Precision parameters: abs, sign and powers of provably non-negative values.

def _scalar_ops(outputs, inputs, mode="HIDDENJAX"):
    """Names of the scalar Ops a compiled function keeps, inside fused Composites too."""
    fgraph = pytensor.function(inputs, outputs, mode=mode).maker.fgraph
    names = []
    for node in fgraph.apply_nodes:
        scalar_op = getattr(node.op, "scalar_op", None)
        if isinstance(scalar_op, ps.Composite):
            names += [type(n.op).__name__ for n in scalar_op.fgraph.apply_nodes]
        elif scalar_op is not None:
            names.append(type(scalar_op).__name__)
    return names


# Ordinary points and extreme ones where the unrewritten graphs and their gradients
# are still finite: exp(-2 v) is 5e173 at v = -200, and its ** -1.5 does not overflow.
_EXTREME = np.array([-3.0, -0.7, 0.4, 2.5, -200.0, 200.0])


def _assert_same_as_unrewritten(v, out, values, rtol=1e-12):
    """Values and gradients equal the C backend (which skips hiddenjax's rewrites)."""
    oracle.assert_matches_c([v], [out], [values], rtol=rtol, atol=0)
    oracle.assert_grad_matches_c([v], out.sum(), [values], rtol=rtol, atol=0)


def test_abs_of_nonnegative_is_dropped():
    v = pt.vector("v", shape=(6,))
    out = (pt.abs(pt.exp(v)) * 1e-300 + pt.abs(pt.sqr(v)) + pt.abs(pt.softplus(v))
           + pt.abs(pt.sqrt(pt.exp(v) + 2.0)))
    assert "Abs" not in _scalar_ops([out], [v])
    _assert_same_as_unrewritten(v, out, _EXTREME)
    # Where exp underflows to 0, abs's derivative sign(0) is 0 and exp's own is 0 too.
    _assert_same_as_unrewritten(v, pt.abs(pt.exp(v)), np.array([-800.0, -746.0, 0.0, 1, 2, 3]))


@pytest.mark.parametrize("build", [
    lambda v: pt.abs(v),  # any sign
    lambda v: pt.abs(pt.sqrt(v)),  # sqrt(-0.0) is -0.0
    lambda v: pt.abs(pt.exp(v) - 1.0),
    lambda v: pt.abs(pt.log(pt.exp(v) + 0.5)),
    lambda v: pt.abs(pt.exp(v) * pt.sin(v)),
])
def test_abs_of_possibly_negative_is_kept(build):
    v = pt.vector("v", shape=(6,))
    out = build(v)
    assert "Abs" in _scalar_ops([out], [v])
    oracle.assert_matches_c([v], [out], [np.array([-2.0, -0.0, 0.0, 0.5, 3.0, -1.5])],
                            rtol=1e-12, atol=0)


def _tau_to_sigma(tau):
    """PyMC's ``get_tau_sigma``: sigma from a precision, negative if the precision is."""
    return pt.abs(tau) ** -0.5 * pt.sign(tau)


def _sigma_to_tau(sigma):
    return sigma**-2.0 * pt.sign(sigma)


def test_sign_beside_a_negative_power_is_dropped():
    v = pt.vector("v", shape=(6,))
    tau = pt.exp(-2.0 * v)
    out = pt.log(_tau_to_sigma(tau)) + _tau_to_sigma(pt.softplus(v))
    names = _scalar_ops([out], [v])
    assert "Sign" not in names and "Abs" not in names
    _assert_same_as_unrewritten(v, out, _EXTREME)


def test_underflowed_precision_is_rejected_or_exact():
    # tau = exp(-2 v) underflows to 0 at v = 400, where PyMC's sigma is inf * sign(0),
    # NaN, and its check rejects the point. Rewritten, sigma is exp(v): the exact value.
    v = pt.scalar("v")
    sigma = _tau_to_sigma(pt.exp(-2.0 * v))
    logp = check_parameters(-pt.log(sigma), sigma > 0, msg="sigma > 0")
    unrewritten = pytensor.function(
        [v], logp, mode=pytensor.compile.get_mode("FAST_RUN").including(CHECK_TO_NINF))
    fn = pytensor.function([v], logp, mode="HIDDENJAX")
    for value, want in [(400.0, -np.inf), (1.0, -1.0), (-400.0, -np.inf)]:
        assert unrewritten(value) == want
        assert fn(value) == -value


def test_pytensor_modes_keep_the_precision_conversion():
    v = pt.vector("v", shape=(6,))
    names = _scalar_ops([_tau_to_sigma(pt.exp(v))], [v], mode="FAST_RUN")
    assert "Sign" in names and "Abs" in names


def test_sign_of_possibly_negative_is_kept():
    v = pt.vector("v", shape=(6,))
    out = _tau_to_sigma(v) + pt.sign(pt.exp(v)) * pt.exp(v) ** 2  # no negative power of exp(v)
    names = _scalar_ops([out], [v])
    assert names.count("Sign") == 2
    oracle.assert_matches_c([v], [out], [np.array([-2.0, -0.5, 0.5, 3.0, -800.0, 1.0])],
                            rtol=1e-12, atol=0)


def test_precision_round_trip_is_the_precision():
    v = pt.vector("v", shape=(6,))
    tau = pt.exp(-2.0 * v)
    out = pt.log1p(_sigma_to_tau(_tau_to_sigma(tau)) * 3.0)
    names = _scalar_ops([out], [v])
    for name in ("Sign", "Abs", "Pow", "Sqrt", "Sqr", "Reciprocal"):
        assert name not in names
    _assert_same_as_unrewritten(v, out, _EXTREME)


def test_powers_of_nonnegative_merge():
    v = pt.vector("v", shape=(6,))
    s = pt.softplus(v)
    out = (pt.reciprocal(pt.sqr(pt.reciprocal(pt.sqrt(s)))) + pt.sqrt(pt.sqr(s)) * 2.0
           + pt.exp(v) ** -0.5 * 1e-100)
    names = _scalar_ops([out], [v])
    for name in ("Pow", "Sqrt", "Sqr", "Reciprocal"):
        assert name not in names
    _assert_same_as_unrewritten(v, out, _EXTREME)


def test_powers_of_possibly_negative_do_not_merge():
    v = pt.vector("v", shape=(6,))
    out = pt.sqrt(pt.sqr(v)) + (v**3) ** (1.0 / 3.0)  # |v|; NaN for v < 0
    fn = pytensor.function([v], out, mode="HIDDENJAX")
    values = np.array([-2.0, -0.5, 0.5, 3.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.isnan(fn(values)), values < 0)
    oracle.assert_matches_c([v], [out], [values], rtol=1e-12, atol=0)


def test_power_of_a_shared_exp_stays_a_power():
    # exp(v) ** 2 -> exp(2 v) would compute a second exp beside the first.
    v = pt.vector("v", shape=(6,))
    y = pt.exp(v)
    out = pt.sqr(y) + y
    assert _scalar_ops([out], [v]).count("Exp") == 1
    _assert_same_as_unrewritten(v, out, _EXTREME / 2)


def test_power_of_exp_of_integers_keeps_the_exponent():
    k = pt.vector("k", dtype="int64", shape=(3,))
    out = pt.exp(k) ** -0.5
    assert "Pow" not in _scalar_ops([out], [k])
    oracle.assert_matches_c([k], [out], [np.array([-3, 0, 5])], rtol=1e-12, atol=0)


def _precision_model(observed):
    with pm.Model() as model:
        v = pm.Normal("v", 0, 2, shape=len(observed))
        # A fixed nu: JAX's digamma and PyTensor's differ by 1e-9 in nu's gradient.
        pm.StudentT("y", nu=4.0, lam=pm.math.exp(-2.0 * v), observed=observed)
        tau = pm.Gamma("tau", 2, 1)
        pm.Normal("z", 0, tau=tau, observed=observed)
    return model


def test_precision_model_matches_pymc():
    model = _precision_model(np.array([0.1, -0.02, 0.3, 0.0, 2.5]))
    graph = extract_model_graph(model)
    compiled = compile_model(graph)
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    logp_c, dlogp_c = model.compile_logp(), model.compile_dlogp()
    base = model.initial_point()
    for v in (np.zeros(5), np.array([-3.0, 4.0, 0.5, -1.0, 60.0]), np.full(5, -300.0)):
        point = {**base, "v": v}
        value, grad = value_and_grad(graph.layout.ravel(point), graph.data_values)
        np.testing.assert_allclose(value, logp_c(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_c(point), rtol=1e-10, atol=1e-12)
    # lam = exp(-2 v) underflows to 0 at v = 400: a rejected point in both.
    point = {**base, "v": np.array([400.0, 0, 0, 0, 0])}
    value, _ = value_and_grad(graph.layout.ravel(point), graph.data_values)
    assert np.isneginf(value) and np.isneginf(logp_c(point))
    names = _scalar_ops([graph.logp], [graph.theta, *graph.data_inputs])
    assert "Sign" not in names and "Abs" not in names


# Logs of products with exp factors.

def _log_shapes(outputs, inputs):
    """Static shapes of the outputs of compiled nodes that take a ``log`` (fused ones too)."""
    fgraph = pytensor.function(inputs, outputs, mode="HIDDENJAX").maker.fgraph
    shapes = []
    for node in fgraph.apply_nodes:
        scalar_op = getattr(node.op, "scalar_op", None)
        inner = (scalar_op.fgraph.apply_nodes if isinstance(scalar_op, ps.Composite)
                 else [node] if scalar_op is not None else [])
        shapes += [node.outputs[0].type.shape for n in inner
                   if isinstance(getattr(n.op, "scalar_op", n.op), ps.Log)]
    return shapes


@pytest.mark.parametrize("build", [
    lambda v, s: pt.log(pt.exp(-2.0 * v) / (s * np.pi)),  # StudentT(lam=exp(-2 v))
    lambda v, s: pt.log(3.0 * pt.exp(v) * s),
    lambda v, s: pt.log(s / pt.exp(v)),
    lambda v, s: pt.log(pt.exp(v) / pt.exp(s)),  # s broadcast under the exp
    lambda v, s: pt.log(pt.reciprocal(pt.exp(v) * s)),
])
def test_exp_factors_leave_the_log(build):
    v, s = pt.vector("v", shape=(6,)), pt.scalar("s")
    out = build(v, s)
    assert "Exp" not in _scalar_ops([out], [v, s])
    values = [_EXTREME, np.array(2.5)]
    oracle.assert_matches_c([v, s], [out], values, rtol=1e-12, atol=1e-12)
    oracle.assert_grad_matches_c([v, s], out.sum(), values, rtol=1e-12, atol=1e-12)


def test_log_keeps_a_shared_exp_and_non_positive_factors():
    v, s = pt.vector("v", shape=(6,)), pt.scalar("s")
    lam = pt.exp(v)
    out = pt.log(lam / s) + lam
    assert _scalar_ops([out], [v, s]).count("Exp") == 1
    assert _log_shapes([out], [v, s]) == [(1,)]  # log(1 / s), once; none over v
    fn = pytensor.function([v, s], out, mode="HIDDENJAX")
    v_values = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    assert np.all(np.isnan(fn(v_values, -2.0)))  # log of a negative, rewritten or not
    assert np.all(np.isneginf(pytensor.function([v, s], pt.log(pt.exp(v) * s),
                                                mode="HIDDENJAX")(v_values, 0.0)))
    oracle.assert_matches_c([v, s], [out], [v_values, np.array(0.7)], rtol=1e-12, atol=0)


def test_duplicate_random_variables_become_one_node_and_draw_alike():
    from pytensor.graph.fg import FunctionGraph
    from pytensor.tensor.random.op import RandomVariable

    from hiddenjax.compile.model_functions import lower
    from hiddenjax.compile.rewrites import merge_duplicate_random_variables

    rng = pytensor.shared(np.random.default_rng(0)).type()
    # Two copies of a draw and of the draw made from each copy's next state, as
    # rewrites can leave them: the same values by PyTensor's semantics.
    copies = [pt.random.normal(np.zeros(3), np.ones(3), rng=rng).owner.outputs for _ in range(2)]
    chained = [pt.random.normal(np.full(3, 5.0), np.ones(3), rng=next_rng)
               for next_rng, _ in copies]
    outputs = [copies[0][1], copies[1][1], *chained]
    fgraph = FunctionGraph([rng], outputs, clone=True)
    merge_duplicate_random_variables(fgraph)
    assert sum(isinstance(n.op, RandomVariable) for n in fgraph.apply_nodes) == 2

    draw = lower([rng], outputs)
    a, b, c, d = draw({"jax_state": jax.random.PRNGKey(1)})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(c - 5.0, a)

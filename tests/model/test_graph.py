import numpy as np
import pymc as pm
import pytest

from hiddenjax.model import (
    FlatLayout,
    ModelNotSupportedError,
    current_data,
    data_context,
    draw_bytes,
    extract_model_graph,
    structure_key,
)
from tests.model_zoo import hierarchical_regression


def test_layout_ravel_unravel_round_trip_with_batch_axes():
    layout = FlatLayout(("a", "b_log__", "c"), ((), (2, 3), (4,)), "float64")
    assert layout.size == 11
    point = {"a": 1.0, "b_log__": np.arange(6.0).reshape(2, 3), "c": -np.arange(4.0)}
    flat = layout.ravel(point)
    back = layout.unravel(np.stack([flat, flat]))
    for name in layout.names:
        np.testing.assert_array_equal(back[name][1], np.asarray(point[name]))


def test_graph_names_data_outputs_and_value_variables():
    model = hierarchical_regression()
    graph = extract_model_graph(model)
    assert graph.layout.names == tuple(v.name for v in model.value_vars)
    assert graph.output_names == ("mu_a", "a", "b", "sigma_a", "sigma")
    assert graph.loglik_names == ("y",)
    assert set(graph.data_names) == {"x", "g", "y"}
    for var, value in zip(graph.data_inputs, graph.data_values):
        assert var.type.shape == value.shape  # static shapes


def test_data_context_and_structure_key_follow_set_data():
    model = hierarchical_regression()
    context = data_context(model)
    assert context.dims["a"] == ["group"]
    assert set(context.constant_data) == {"x", "g"}
    key = structure_key(model)
    graph = extract_model_graph(model)
    with model:
        pm.set_data({"x": np.zeros(60)})
    assert structure_key(model) == key  # same shapes: same program
    assert not current_data(graph)[graph.data_names.index("x")].any()
    with model:
        pm.set_data({"x": np.zeros(61), "g": np.zeros(61, dtype=int)})
    assert structure_key(model) != key


def _design_matrix_model(rows=400):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 3))  # a plain numpy array: a constant in the graph
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 1.0, shape=3)
        pm.Normal("y", x @ beta, 1.0, observed=x @ np.array([0.5, -1.0, 2.0]))
    return model, x


def test_large_float_constants_become_data_inputs_with_the_same_log_density():
    import pytensor

    from hiddenjax.model.graph import LIFTED_SIZE

    model, x = _design_matrix_model()
    assert x.size >= LIFTED_SIZE
    graph = extract_model_graph(model)
    assert set(graph.data_names) == {"y", "constant_0"}
    np.testing.assert_array_equal(current_data(graph)[graph.data_names.index("constant_0")], x)
    kept = extract_model_graph(model, lift_constants=False)
    assert kept.data_names == ("y",)
    theta = np.array([0.3, -0.2, 1.1])
    for g in (graph, kept):
        logp = pytensor.function([g.theta, *g.data_inputs], g.logp)(theta, *current_data(g))
        np.testing.assert_allclose(logp, model.compile_logp()({"beta": theta}), rtol=1e-12)
    small, _ = _design_matrix_model(rows=10)  # 30 entries: stays a constant
    assert extract_model_graph(small).data_names == ("y",)


def test_constants_only_computations_keep_their_constants_so_they_stay_folded():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 40))
    cov = a @ a.T / 40 + np.eye(40)  # 1600 entries; cholesky(cov) needs no parameter
    x = rng.normal(size=(3, 500))
    with pm.Model() as model:
        pm.MvNormal("z", mu=np.zeros(40), cov=cov)
        beta = pm.Normal("beta", 0.0, 1.0, shape=3)
        pm.Normal("y", x.T @ beta, 1.0, observed=np.zeros(500))
    graph = extract_model_graph(model)
    assert set(graph.data_names) == {"y", "constant_0"}  # the covariance stays a constant
    np.testing.assert_array_equal(current_data(graph)[graph.data_names.index("constant_0")], x.T)


def test_discrete_free_variable_is_refused_with_a_pointer_to_marginalisation():
    with pm.Model() as model:
        k = pm.Poisson("k", 3.0)
        pm.Normal("y", k, 1.0, observed=[1.0])
    with pytest.raises(ModelNotSupportedError, match=r"'k' is discrete.*[Mm]arginalise"):
        extract_model_graph(model)


def test_unknown_var_names_are_named():
    with pytest.raises(ValueError, match="nope"):
        extract_model_graph(hierarchical_regression(), var_names=["nope"])


def test_simulator_models_are_refused_naming_the_variable_and_smc():
    def simulate(rng, a, size=None):
        return rng.normal(a, 1.0, size=size)

    with pm.Model() as model:
        a = pm.Normal("a", 0, 1)
        pm.Simulator("draws_abc", simulate, a, epsilon=1.0, observed=np.zeros(5))
    with pytest.raises(ModelNotSupportedError, match=r"'draws_abc' is a pm.Simulator.*sample_smc"):
        extract_model_graph(model)


def test_constants_read_only_through_reshaping_are_not_folded():
    import pytensor.tensor as pt

    from hiddenjax.model.graph import _folded_constants

    c = pt.constant(np.ones((4, 3)))
    v = pt.vector("v")
    assert _folded_constants([c.T[:, 1:] @ v[:4]]) == set()  # rearranged, then read with v
    assert _folded_constants([pt.linalg.cholesky(c @ c.T) @ v]) == {c}


def test_draw_bytes_count_every_output_with_shapes_read_from_the_data():
    with pm.Model() as model:
        x = pm.Data("x", np.arange(10.0))
        b = pm.Normal("b", shape=3)
        mu = pm.Deterministic("mu", b[0] * x)
        pm.Deterministic("outer", mu[:, None] * x[None, :])  # no static shape
        pm.Normal("y", mu, 1.0, observed=np.ones(10), shape=x.shape)
    graph = extract_model_graph(model)
    assert None in graph.outputs[-1].type.shape
    assert draw_bytes(graph) == 8 * (3 + 10 + 100)
    assert draw_bytes(graph, log_likelihood=True) == 8 * (3 + 10 + 100 + 10)


def test_draw_bytes_are_unknown_when_a_shape_depends_on_data_values():
    with pm.Model() as model:
        n = pm.Data("n", 4)
        b = pm.Normal("b", shape=10)
        pm.Deterministic("head", b[: n.astype("int64")])
        pm.Normal("y", b.sum(), 1.0, observed=1.0)
    assert draw_bytes(extract_model_graph(model)) is None

import numpy as np
import pymc as pm
import pytest

from hiddenjax.model import (
    FlatLayout,
    ModelNotSupportedError,
    current_data,
    data_context,
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

"""Forward-sampling and log-likelihood graphs: PyMC's rules for what is read and what is drawn."""

import numpy as np
import pymc as pm
import pytest
from pymc.sampling.forward import compile_forward_sampling_function
from pytensor.tensor.random.type import RandomType

from hiddenjax.model.predictive import forward_graph, loglik_graph, map_graph


def chain_model():
    with pm.Model() as model:
        x, y = pm.Normal("x"), pm.Normal("y")
        z = pm.Normal("z", x + y**2)
        pm.Deterministic("det", pm.math.exp(z))
        pm.Normal("obs", pm.math.exp(z), 1, observed=[20.0])
    return model


def data_model():
    with pm.Model(coords={"obs": range(5), "group": range(3)}) as model:
        x = pm.Data("x", np.arange(5.0), dims="obs")
        a = pm.Normal("a", dims="group")
        b = pm.Normal("b")
        mu = pm.Deterministic("mu", b * x, dims="obs")
        pm.Normal("y", mu + a.sum(), 1, observed=np.zeros(5), shape=x.shape, dims="obs")
    return model


def pymc_resampled(model, names, trace_names, constant_data=None, constant_coords=None):
    _, volatile = compile_forward_sampling_function(
        [model[n] for n in names], vars_in_trace=[model[n] for n in trace_names],
        basic_rvs=model.basic_RVs, constant_data=constant_data, constant_coords=constant_coords,
    )
    return sorted(v.name for v in volatile)


SHAPES = {"x": (), "y": (), "z": (), "det": ()}


@pytest.mark.parametrize("names", [["obs"], ["det"], ["z", "det"], ["y", "det"], ["x", "y", "z", "det", "obs"]])
def test_resampled_variables_are_pymc_s(names):
    model = chain_model()
    graph = forward_graph(model, names, SHAPES)
    assert list(graph.resampled) == pymc_resampled(model, names, list(SHAPES))
    assert set(graph.value_names).isdisjoint(graph.resampled)
    assert len(graph.rng_inputs) == len(graph.resampled)
    assert all(isinstance(r.type, RandomType) for r in graph.rng_inputs)


def test_changed_data_make_their_descendants_volatile():
    model = data_model()
    shapes = {"a": (3,), "b": (), "mu": (5,)}
    old = {"x": np.arange(5.0)}
    unchanged = forward_graph(model, ["y", "mu"], shapes, constant_data=old, constant_coords={"obs", "group"})
    assert unchanged.resampled == ("y",) and "mu" not in unchanged.value_names
    graph = forward_graph(model, ["y"], shapes, constant_data=old, constant_coords={"obs", "group"})
    assert "mu" in graph.value_names  # read from the trace: the data did not change
    with model:
        pm.set_data({"x": np.ones(7)}, coords={"obs": range(7)})
    changed = forward_graph(model, ["y"], shapes, constant_data=old, constant_coords={"group"})
    assert "mu" not in changed.value_names and set(changed.value_names) == {"a", "b"}
    assert changed.data_inputs[0].type.shape == (7,)
    assert list(changed.resampled) == pymc_resampled(model, ["y"], list(shapes), old, {"group"})


def test_loglik_graph_reads_constrained_values_and_data():
    model = data_model()
    graph = loglik_graph(model, ["y"], {"a": (3,), "b": ()})
    assert set(graph.value_names) == {"a", "b"}
    assert set(graph.data_names) == {"x", "y"}
    assert graph.outputs[0].type.shape == (5,)


def test_map_graph_reports_pymc_s_names():
    with pm.Model() as model:
        s = pm.HalfNormal("s")
        pm.Deterministic("d", 2 * s)
        pm.Normal("y", 0, s, observed=[1.0, 2.0])
    assert map_graph(model).output_names == ("s_log__", "s", "d")
    assert map_graph(model, include_transformed=False).output_names == ("s", "d")

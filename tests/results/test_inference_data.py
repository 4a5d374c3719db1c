"""``build_inference_data`` against what ``pm.sample`` returns for the same model."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
from pathlib import Path

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from arviz import InferenceData
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)

import hiddenjax.results
from hiddenjax.results import SAMPLE_STATS, TIMING_STATS, build_inference_data
from tests.results.layout import PYMC_ONLY_STATS, assert_same_layout

# Dtypes a compiled sampler may report in; the results layer casts to PyMC's.
SAMPLER_DTYPES = {"n_steps": np.int32, "tree_depth": np.int32, "diverging": np.int8}
WARMUP_GROUPS = ("warmup_posterior", "warmup_sample_stats")


def _model() -> pm.Model:
    """Named dims, an undimensioned vector, a Deterministic, pm.Data and two observations."""
    rng = np.random.default_rng(0)
    coords = {"group": ["a", "b", "c"], "obs_id": np.arange(6)}
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", rng.normal(size=6), dims="obs_id")
        idx = pm.Data("idx", np.array([0, 1, 2, 0, 1, 2]), dims="obs_id")
        scale = pm.Data("scale", 2.0)
        mu = pm.Normal("mu", 0, scale)
        sigma = pm.HalfNormal("sigma", 1)
        a = pm.Normal("a", mu, sigma, dims="group")
        v = pm.Normal("v", 0, 1, shape=2)
        pm.Deterministic("a2", 2 * a, dims="group")
        pm.Normal("y", a[idx] + v[0] * x, 1, observed=rng.normal(size=6), dims="obs_id")
        pm.Normal("z", v[1], 1, observed=rng.normal(size=3))
    return model


@pytest.fixture(scope="module")
def model() -> pm.Model:
    return _model()


@pytest.fixture(scope="module")
def reference(model) -> InferenceData:
    """One small ``pm.sample`` run with warmup groups and a log_likelihood group."""
    with model:
        return pm.sample(
            draws=20, tune=20, chains=2, cores=1, random_seed=1, progressbar=False,
            compute_convergence_checks=False, discard_tuned_samples=False,
            idata_kwargs={"log_likelihood": True},
        )


def _arrays(dataset: xr.Dataset) -> dict[str, np.ndarray]:
    return {name: dataset[name].values for name in dataset.data_vars}


def _sampler_fields(stats: xr.Dataset) -> dict[str, np.ndarray]:
    """The sampler's fields, in sampler dtypes, for the stats hiddenjax reports."""
    by_name = {spec.name: field for field, spec in SAMPLE_STATS.items()}
    return {
        by_name[name]: stats[name].values.astype(SAMPLER_DTYPES.get(by_name[name], np.float32))
        for name in stats.data_vars
        if name in by_name and name not in PYMC_ONLY_STATS
    }


def _inputs(reference: InferenceData, model: pm.Model, *, warmup: bool, loglik: bool) -> dict:
    """``build_inference_data`` arguments holding the arrays of ``reference``."""
    coords, dims = coords_and_dims_for_inferencedata(model)
    kwargs = dict(
        posterior=_arrays(reference.posterior),
        sample_stats=_sampler_fields(reference.sample_stats),
        coords=coords,
        dims=dims,
        observed_data=find_observations(model),
        constant_data=find_constants(model),
        attrs={key: reference.posterior.attrs[key] for key in ("sampling_time", "tuning_steps")},
    )
    if warmup:
        kwargs["warmup_posterior"] = _arrays(reference.warmup_posterior)
        kwargs["warmup_sample_stats"] = _sampler_fields(reference.warmup_sample_stats)
    if loglik:
        kwargs["log_likelihood"] = _arrays(reference.log_likelihood)
    return kwargs


def _without(idata: InferenceData, groups) -> InferenceData:
    return InferenceData(**{g: idata[g] for g in idata.groups() if g not in groups})


def test_layout_matches_pm_sample(reference, model):
    built = build_inference_data(**_inputs(reference, model, warmup=True, loglik=True))
    assert_same_layout(built, reference, ignore_stats=PYMC_ONLY_STATS)


def test_layout_without_warmup_or_log_likelihood(reference, model):
    built = build_inference_data(**_inputs(reference, model, warmup=False, loglik=False))
    expected = _without(reference, (*WARMUP_GROUPS, "log_likelihood"))
    assert_same_layout(built, expected, ignore_stats=PYMC_ONLY_STATS)


def test_values_and_coords_are_kept(reference, model):
    built = build_inference_data(**_inputs(reference, model, warmup=True, loglik=True))
    for group in ("posterior", "warmup_posterior", "log_likelihood", "observed_data",
                  "constant_data"):
        xr.testing.assert_equal(built[group], reference[group])
    assert built.posterior["v"].dims == ("chain", "draw", "v_dim_0")
    assert built.log_likelihood["z"].dims == ("chain", "draw", "z_dim_0")
    assert built.constant_data["scale"].dims == ()


def test_stats_have_pymc_names_dtypes_and_values(reference, model):
    built = build_inference_data(**_inputs(reference, model, warmup=True, loglik=False))
    for group in ("sample_stats", "warmup_sample_stats"):
        for name in built[group].data_vars:
            assert built[group][name].dtype == reference[group][name].dtype, (group, name)
        np.testing.assert_array_equal(built[group]["divergences"], reference[group]["divergences"])
        np.testing.assert_array_equal(built[group]["tree_depth"], reference[group]["tree_depth"])


def test_divergences_count_post_warmup_divergences():
    diverging = np.array([[False, True, False, True], [True, False, False, False]])
    stats = {"diverging": diverging}
    built = build_inference_data({}, stats, coords={}, dims={}, warmup_sample_stats=stats)
    np.testing.assert_array_equal(built.sample_stats["divergences"], [[0, 1, 1, 2], [1, 1, 1, 1]])
    np.testing.assert_array_equal(built.warmup_sample_stats["divergences"], np.zeros((2, 4)))


def test_attrs_follow_pymc(reference, model):
    built = build_inference_data(**_inputs(reference, model, warmup=True, loglik=True))
    version = importlib.metadata.version("hiddenjax")
    for group in built.groups():
        attrs = built[group].attrs
        assert attrs["inference_library"] == "hiddenjax"
        assert attrs["inference_library_version"] == version
        assert {"created_at", "arviz_version"} <= set(attrs)
        run_attrs = group.endswith(("posterior", "sample_stats"))
        assert ("sampling_time" in attrs) == run_attrs, group
    assert built.posterior.attrs["tuning_steps"] == 20


def test_inputs_are_not_mutated(reference, model):
    kwargs = _inputs(reference, model, warmup=True, loglik=True)
    before = copy.deepcopy(kwargs)
    build_inference_data(**kwargs)
    assert kwargs.keys() == before.keys()
    for key, value in before.items():
        assert kwargs[key].keys() == value.keys(), key


def test_zero_draws_after_interrupted_warmup():
    stats = {"lp": np.zeros((2, 0)), "diverging": np.zeros((2, 0), bool)}
    warm_stats = {"lp": np.zeros((2, 5)), "diverging": np.zeros((2, 5), bool)}
    with pytest.warns(UserWarning, match="More chains"):
        built = build_inference_data(
            {"mu": np.zeros((2, 0))}, stats, coords={}, dims={},
            warmup_posterior={"mu": np.zeros((2, 5))}, warmup_sample_stats=warm_stats,
        )
    assert built.posterior.sizes["draw"] == 0
    assert built.warmup_posterior.sizes["draw"] == 5


@pytest.mark.parametrize("name", ["unknown_stat", *TIMING_STATS])
def test_unknown_stat_is_refused(name):
    stats = {"lp": np.zeros((2, 3)), name: np.zeros((2, 3))}
    with pytest.raises(ValueError, match=f"{name}.*SAMPLE_STATS"):
        build_inference_data({}, stats, coords={}, dims={})


def test_timing_stats_are_explained():
    with pytest.raises(ValueError, match="not produced by a compiled sampler"):
        build_inference_data({}, {"perf_counter_diff": np.zeros((2, 3))}, coords={}, dims={})


@pytest.mark.parametrize(
    ("posterior", "stats", "message"),
    [
        ({"mu": np.zeros((2, 4))}, {"lp": np.zeros((2, 5))}, "disagree on"),
        ({"mu": np.zeros((2, 4))}, {"lp": np.zeros((2, 4, 1))}, "must be \\(chain, draw\\)"),
        ({"mu": np.zeros(4)}, {}, "must be \\(chain, draw, \\*shape\\)"),
    ],
)
def test_bad_shapes_are_refused(posterior, stats, message):
    with pytest.raises(ValueError, match=message):
        build_inference_data(posterior, stats, coords={}, dims={})


def test_warmup_from_other_chains_is_refused():
    with pytest.raises(ValueError, match="same chains"):
        build_inference_data({"mu": np.zeros((2, 4))}, {}, coords={}, dims={},
                             warmup_posterior={"mu": np.zeros((3, 4))})


def test_every_step_info_field_has_a_row():
    from hiddenjax.samplers.program import StepInfo

    assert set(StepInfo._fields) <= set(SAMPLE_STATS)
    assert not set(StepInfo._fields) & PYMC_ONLY_STATS


def test_assert_same_layout_finds_differences(reference):
    changed = reference.copy()
    changed.posterior = changed.posterior.drop_vars("a2").rename({"v_dim_0": "other"})
    changed.sample_stats["lp"] = changed.sample_stats["lp"].astype(np.float32)
    with pytest.raises(AssertionError) as error:
        assert_same_layout(changed, reference)
    message = str(error.value)
    assert "posterior: variables only in first [], only in second ['a2']" in message
    assert "posterior.v: dims" in message
    assert "sample_stats.lp: dtype float32 != float64" in message


def test_results_imports_neither_jax_nor_other_hiddenjax_layers():
    folder = Path(hiddenjax.results.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top not in ("jax", "jaxlib"), (path.name, module)
                assert top != "hiddenjax" or module.startswith("hiddenjax.results"), (
                    path.name, module)


def test_assert_same_layout_checks_order_only_where_asked(reference):
    changed = reference.copy()
    changed.posterior = changed.posterior[list(changed.posterior.data_vars)[::-1]]
    assert_same_layout(changed, reference)
    with pytest.raises(AssertionError, match="posterior: variable order"):
        assert_same_layout(changed, reference, order_groups=("posterior",))

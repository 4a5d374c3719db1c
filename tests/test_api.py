import numpy as np
import pymc as pm
import pytest
from pymc.exceptions import SamplingError

import hiddenjax as hj
from tests.model_zoo import hierarchical_regression, simplex_and_bounds

FAST = dict(draws=60, tune=60, chains=2, progressbar=False, compute_convergence_checks=False)


def test_reexports_pymc_modelling_names():
    for name in ("Model", "Normal", "HalfCauchy", "Deterministic", "Potential", "Data",
                 "set_data", "math", "ZeroSumNormal", "Mixture", "CustomDist"):
        assert getattr(hj, name) is getattr(pm, name)
    assert hj.sample is not pm.sample


def test_model_context_and_model_argument_give_the_same_draws():
    model = hierarchical_regression()
    with model:
        inside = hj.sample(random_seed=3, **FAST)
    outside = hj.sample(model=model, random_seed=3, **FAST)
    np.testing.assert_array_equal(inside.posterior["a"], outside.posterior["a"])


def test_same_seed_same_draws_other_seed_other_draws():
    model = simplex_and_bounds()
    a = hj.sample(model=model, random_seed=11, **FAST)
    b = hj.sample(model=model, random_seed=11, **FAST)
    c = hj.sample(model=model, random_seed=12, **FAST)
    np.testing.assert_array_equal(a.posterior["w"], b.posterior["w"])
    np.testing.assert_array_equal(a.sample_stats["lp"], b.sample_stats["lp"])
    assert not np.array_equal(a.posterior["w"], c.posterior["w"])


def test_unknown_argument_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="'step'"):
        hj.sample(model=hierarchical_regression(), step=object(), **FAST)


def test_discrete_free_variable_is_refused():
    with pm.Model() as model:
        pm.Binomial("k", n=10, p=0.5)
    with pytest.raises(TypeError, match="'k' is discrete"):
        hj.sample(model=model, **FAST)


def test_bad_start_raises_pymc_sampling_error_naming_the_variable():
    with pm.Model() as model:
        s = pm.Normal("s", 1, 1)
        pm.Normal("y", 0, s, observed=[1.0])  # a negative scale has zero density
    with pytest.raises(SamplingError, match="y"):
        hj.sample(model=model, initvals={"s": -1.0}, init="adapt_diag", **FAST)


def test_var_names_and_discard_tuned_samples():
    model = hierarchical_regression()
    idata = hj.sample(model=model, var_names=["a", "b"], discard_tuned_samples=False,
                      random_seed=1, **FAST)
    assert set(idata.posterior.data_vars) == {"a", "b"}
    assert idata.warmup_posterior.sizes["draw"] == FAST["tune"]
    assert idata.warmup_sample_stats.sizes["draw"] == FAST["tune"]


def test_inference_data_has_pm_sample_layout():
    from tests.results.layout import PYMC_ONLY_STATS, assert_same_layout

    model = hierarchical_regression()
    kwargs = dict(draws=30, tune=30, chains=2, random_seed=1, progressbar=False,
                  compute_convergence_checks=False, discard_tuned_samples=False,
                  idata_kwargs={"log_likelihood": True})
    ours = hj.sample(model=model, **kwargs)
    with model:
        theirs = pm.sample(cores=1, **kwargs)
    assert_same_layout(ours, theirs, ignore_stats=PYMC_ONLY_STATS,
                       ignore_attrs=["compile_time", "chunk_size"], order_groups=("posterior",))


def test_float32_precision_runs_the_model_in_float32():
    idata = hj.sample(model=hierarchical_regression(), precision="float32", random_seed=2, **FAST)
    assert idata.posterior["a"].dtype == np.float32
    assert np.isfinite(idata.sample_stats["lp"]).all()
    assert idata.sample_stats["lp"].dtype == np.float64  # PyMC's stats dtypes regardless


def test_unknown_device_and_precision_are_refused():
    with pytest.raises(ValueError, match="precision='float16'"):
        hj.sample(model=hierarchical_regression(), precision="float16", **FAST)
    with pytest.raises(ValueError, match="device='tpu'"):
        hj.sample(model=hierarchical_regression(), device="tpu", **FAST)


@pytest.mark.parametrize("kwargs, message", [
    ({"init": "advi+adapt_diag"}, "ADVI or MAP"),
    ({"nuts": {"gamma": 0.1}}, "'gamma'"),
    ({"target_accept": 0.9, "nuts": {"target_accept": 0.95}}, "defined twice"),
    ({"early_max_treedepth": 0}, "early_max_treedepth"),
    ({"nuts": {"step_scale": -1.0}}, "step_scale"),
])
def test_nuts_options_are_checked_in_pymc_terms(kwargs, message):
    from hiddenjax.api import _nuts_settings, _check_init

    with pytest.raises((ValueError, TypeError), match=message):
        _check_init(kwargs.pop("init", "auto"))
        step = {k: kwargs.pop(k) for k in ("early_max_treedepth",) if k in kwargs}
        _nuts_settings(kwargs.get("target_accept"), None, kwargs.get("nuts"), step)


def test_nuts_dict_and_keywords_reach_the_sampler_program():
    from hiddenjax.api import _nuts_settings

    got = _nuts_settings(None, 7, {"target_accept": 0.9, "early_max_treedepth": 5},
                         {"step_scale": 0.5})
    assert got == {"target_accept": 0.9, "max_treedepth": 7, "early_max_treedepth": 5,
                   "step_scale": 0.5, "max_energy_error": 1000.0}


@pytest.mark.parametrize("init", ["adapt_low_rank", "jitter+adapt_low_rank"])
def test_low_rank_init_strings_select_nutpies_low_rank_scheme(init):
    from hiddenjax.api import _check_init

    assert _check_init(init) == (init.startswith("jitter+"), "low_rank")
    idata = hj.sample(model=hierarchical_regression(), init=init, random_seed=2, **FAST)
    assert np.all(np.isfinite(idata.posterior["a"]))


def test_convergence_checks_warn_as_pymc_and_leave_arvizs_numba_setting(caplog):
    from arviz.utils import Numba

    before = Numba.numba_flag
    with pm.Model():
        pm.Normal("x", 0, 100, shape=3)
        with caplog.at_level("WARNING"):
            # Two tuning steps leave the chains far apart: R-hat must flag it.
            hj.sample(draws=100, tune=2, chains=4, random_seed=1, progressbar=False)
    assert any("rhat" in r.getMessage().lower() for r in caplog.records)
    assert Numba.numba_flag == before


def test_chunk_size_is_chosen_from_the_draws_size_and_device_memory(monkeypatch):
    import hiddenjax.execution.devices as devices
    from hiddenjax.execution.runner import DEFAULT_CHUNK, STATS_BYTES

    with pm.Model() as model:
        x = pm.Data("x", np.linspace(0.0, 1.0, 10))
        b = pm.Normal("b", shape=2)
        pm.Deterministic("surface", b[0] + b[1] * x[:, None] * x[None, :])  # 100 entries
        pm.Normal("y", b[0] + b[1] * x, 1.0, observed=np.ones(10))
    step = 8 * (2 + 100) + STATS_BYTES
    assert hj.sample(model=model, **FAST).posterior.attrs["chunk_size"] == min(
        DEFAULT_CHUNK, FAST["tune"] + FAST["draws"])
    # Room for 7 steps of both chains' draws: chunks of 7 steps, and the same draws.
    monkeypatch.setattr(devices, "memory_budget", lambda device: 7 * FAST["chains"] * step + 5)
    small = hj.sample(model=model, random_seed=4, **FAST)
    assert small.posterior.attrs["chunk_size"] == 7
    asked = hj.sample(model=model, random_seed=4, chunk_size=120, **FAST)
    assert asked.posterior.attrs["chunk_size"] == 120
    np.testing.assert_array_equal(small.posterior["surface"], asked.posterior["surface"])


def test_chain_methods_are_checked_and_agree():
    model = hierarchical_regression()
    with pytest.raises(ValueError, match="chain_method='parallel'"):
        hj.sample(model=model, chain_method="parallel", **FAST)
    # Without warmup, whose adaptation would amplify last-bit differences into other
    # trajectories: same keys and arithmetic, so the same draws up to rounding, which
    # the trajectories still amplify step by step (measured: 2e-16 over the first 10
    # draws, 7e-12 by the 30th). Other keys or arithmetic differ by order one.
    run = {**FAST, "tune": 0, "draws": 30}
    sequential = hj.sample(model=model, random_seed=2, chain_method="sequential", **run)
    vectorized = hj.sample(model=model, random_seed=2, chain_method="vectorized", **run)
    a_sequential, a_vectorized = sequential.posterior["a"], vectorized.posterior["a"]
    np.testing.assert_allclose(a_sequential[:, :10], a_vectorized[:, :10], rtol=0, atol=1e-14)
    np.testing.assert_allclose(a_sequential, a_vectorized, rtol=0, atol=1e-8)

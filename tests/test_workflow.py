"""The workflow functions against PyMC's own: same groups, names, dims, values or distributions."""

import logging

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr

from hiddenjax.execution.vectorized import CheckFailed
from hiddenjax.workflow import (
    Approximation,
    MAPConvergenceError,
    compute_log_likelihood,
    find_MAP,
    fit,
    sample_posterior_predictive,
    sample_prior_predictive,
)
from tests.model_zoo import ZOO

K = 5.0
"""Monte-Carlo tolerance in standard errors, fixed before running the tests."""


def fake_posterior(model, chains=2, draws=50, seed=0) -> az.InferenceData:
    """Prior draws dressed as a posterior: valid values of every free variable, fast to get."""
    prior = pm.sample_prior_predictive(chains * draws, model=model, random_seed=seed).prior
    parts = [
        prior.isel(draw=slice(c * draws, (c + 1) * draws)).assign_coords(draw=np.arange(draws))
        for c in range(chains)
    ]
    posterior = xr.concat(parts, dim="chain").assign_coords(chain=np.arange(chains))
    idata = az.InferenceData(posterior=posterior)
    observed = {rv.name: model.rvs_to_values[rv] for rv in model.observed_RVs}
    idata_full = pm.to_inference_data(prior={}, model=model) if observed else None
    for group in ("observed_data", "constant_data"):
        if idata_full is not None and group in idata_full.groups():
            idata.add_groups({group: idata_full[group]})
    return idata


def assert_same_layout(ours: az.InferenceData, ref: az.InferenceData) -> None:
    assert sorted(ours.groups()) == sorted(ref.groups())
    for group in ref.groups():
        assert sorted(ours[group].data_vars) == sorted(ref[group].data_vars), group
        for name, ref_var in ref[group].data_vars.items():
            var = ours[group][name]
            assert var.dims == ref_var.dims, (group, name)
            assert var.dtype.kind == ref_var.dtype.kind, (group, name)
            for dim in var.dims:
                np.testing.assert_array_equal(var[dim].values, ref_var[dim].values)


def assert_same_distribution(ours: xr.DataArray, ref: xr.DataArray, k: float = K) -> None:
    """Elementwise two-sample test of the CDFs at PyMC's 10%, 50% and 90% quantiles.

    Distribution-free (heavy tails, discrete values): the fractions of draws
    at or below a point differ by at most ``k`` binomial standard errors.
    """
    sample = ("chain", "draw")
    a = ref.stack(s=sample).transpose("s", ...).values.reshape(ref.sizes["chain"] * ref.sizes["draw"], -1)
    b = ours.stack(s=sample).transpose("s", ...).values.reshape(ours.sizes["chain"] * ours.sizes["draw"], -1)
    for q in (0.1, 0.5, 0.9):
        point = np.quantile(a, q, axis=0)
        fa, fb = (a <= point).mean(0), (b <= point).mean(0)
        pooled = (fa * len(a) + fb * len(b)) / (len(a) + len(b))
        se = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b))) + 1e-12
        z = np.abs(fa - fb) / se
        assert z.max() < k, f"{ours.name}: CDF at the {q:.0%} quantile differs by {z.max():.1f} se"


# -- log-likelihood ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_log_likelihood_equals_pymc(name):
    model = ZOO[name]()
    idata = fake_posterior(model, draws=20)
    ref = pm.compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    ours = compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    assert sorted(ours.data_vars) == sorted(ref.data_vars)
    for var in ref.data_vars:
        assert ours[var].dims == ref[var].dims
        np.testing.assert_allclose(ours[var].values, ref[var].values, rtol=1e-8, atol=1e-8)


def test_log_likelihood_extends_and_gives_pymc_loo():
    model = ZOO["hierarchical_regression"]()
    idata = fake_posterior(model, draws=100, seed=3)
    ref = pm.compute_log_likelihood(idata.copy(), model=model, progressbar=False)
    ours = compute_log_likelihood(idata, model=model, progressbar=False)
    assert ours is idata and "log_likelihood" in idata.groups()
    with np.errstate(all="ignore"):
        elpd_ref, elpd_ours = az.loo(ref).elpd_loo, az.loo(ours).elpd_loo
    np.testing.assert_allclose(elpd_ours, elpd_ref, rtol=1e-10)


def test_log_likelihood_follows_new_observations_without_recompiling():
    from hiddenjax.compile import forward

    model = ZOO["hierarchical_regression"]()
    idata = fake_posterior(model, draws=10)
    compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    lowered = len(forward._CACHE[model])
    with model:
        pm.set_data({"x": np.linspace(-1, 1, 60)})
    ref = pm.compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    ours = compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    np.testing.assert_allclose(ours["y"].values, ref["y"].values, rtol=1e-8)
    assert len(forward._CACHE[model]) == lowered


def test_log_likelihood_rejects_unobserved_names():
    model = ZOO["eight_schools"]()
    idata = fake_posterior(model, draws=5)
    with pytest.raises(ValueError, match="observed"):
        compute_log_likelihood(idata, model=model, var_names=["mu"], progressbar=False)


# -- prior predictive ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_prior_predictive_matches_pymc(name):
    model = ZOO[name]()
    with pytest.warns(UserWarning, match="Potentials") if model.potentials else _nothing():
        ref = pm.sample_prior_predictive(1000, model=model, random_seed=1)
        ours = sample_prior_predictive(1000, model=model, random_seed=2)
    assert_same_layout(ours, ref)
    for group in ("prior", "prior_predictive"):
        for var in ref[group].data_vars:
            assert_same_distribution(ours[group][var], ref[group][var])


def test_prior_predictive_is_reproducible_and_takes_var_names():
    model = ZOO["hierarchical_regression"]()
    first = sample_prior_predictive(50, model=model, random_seed=7, return_inferencedata=False)
    again = sample_prior_predictive(50, model=model, random_seed=7, return_inferencedata=False)
    other = sample_prior_predictive(50, model=model, random_seed=8, return_inferencedata=False)
    assert sorted(first) == sorted(v.name for v in model.basic_RVs)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])
    only = sample_prior_predictive(20, model=model, var_names=["a", "y"], random_seed=1)
    assert list(only.prior.data_vars) == ["a"] and list(only.prior_predictive.data_vars) == ["y"]
    with pytest.raises(ValueError, match="Unrecognized var_names"):
        sample_prior_predictive(5, model=model, var_names=["sigma_log__"])


def test_categorical_and_mixture_draws_match_pymc():
    with pm.Model() as model:
        pm.Categorical("c", p=np.array([0.2, 0.3, 0.5]))
        pm.ZeroInflatedPoisson("z", psi=0.7, mu=3.0)
    ref = pm.sample_prior_predictive(2000, model=model, random_seed=1)
    ours = sample_prior_predictive(2000, model=model, random_seed=2)
    for var in ("c", "z"):
        assert_same_distribution(ours.prior[var], ref.prior[var])


# -- posterior predictive ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_posterior_predictive_matches_pymc(name):
    model = ZOO[name]()
    idata = fake_posterior(model, draws=500)
    with pytest.warns(UserWarning, match="Potentials") if model.potentials else _nothing():
        ref = pm.sample_posterior_predictive(idata, model=model, random_seed=1, progressbar=False)
        ours = sample_posterior_predictive(idata, model=model, random_seed=2, progressbar=False)
    assert_same_layout(ours, ref)
    for var in ref.posterior_predictive.data_vars:
        assert_same_distribution(ours.posterior_predictive[var], ref.posterior_predictive[var])


def regression(n=40):
    rng = np.random.default_rng(4)
    x = rng.normal(size=n)
    with pm.Model(coords={"obs": np.arange(n)}) as model:
        x_data = pm.Data("x", x, dims="obs")
        a, b = pm.Normal("a", 1, 0.1), pm.Normal("b", 2, 0.1)
        sigma = pm.HalfNormal("sigma", 0.5)
        mu = pm.Deterministic("mu", a + b * x_data, dims="obs")
        pm.Normal("y", mu, sigma, observed=1 + 2 * x + rng.normal(size=n), shape=x_data.shape, dims="obs")
    return model


def test_out_of_sample_predictions_after_set_data():
    model = regression()
    idata = fake_posterior(model, draws=400)
    with model:
        pm.set_data({"x": np.linspace(-2, 2, 7)}, coords={"obs": np.arange(100, 107)})
    ref = pm.sample_posterior_predictive(idata, model=model, predictions=True, random_seed=1,
                                         var_names=["mu", "y"], progressbar=False)
    ours = sample_posterior_predictive(idata, model=model, predictions=True, random_seed=2,
                                       var_names=["mu", "y"], progressbar=False)
    assert_same_layout(ours, ref)
    assert ours.predictions.sizes["obs"] == 7
    # mu is recomputed from the new data, exactly as PyMC does.
    np.testing.assert_allclose(ours.predictions["mu"], ref.predictions["mu"], rtol=1e-12)
    assert_same_distribution(ours.predictions["y"], ref.predictions["y"])


def test_forward_graph_is_built_once_and_again_when_data_change(monkeypatch):
    import hiddenjax.model.predictive as predictive

    built, original = [], predictive.forward_graph

    def counted(*args, **kwargs):
        built.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(predictive, "forward_graph", counted)
    model = regression()
    idata = fake_posterior(model, draws=50)
    kwargs = dict(model=model, var_names=["y"], random_seed=1, progressbar=False)
    first = sample_posterior_predictive(idata, **kwargs)
    again = sample_posterior_predictive(idata, **kwargs)
    assert len(built) == 1
    np.testing.assert_array_equal(first.posterior_predictive["y"], again.posterior_predictive["y"])
    # New x of the same length: mu is no longer the trace's, so the graph is rebuilt
    # and y follows the new data.
    x_new = model["x"].get_value() + 10.0
    with model:
        pm.set_data({"x": x_new})
    moved = sample_posterior_predictive(idata, **kwargs)
    assert len(built) == 2
    post = idata.posterior
    expected = float(post["a"].mean()) + float(post["b"].mean()) * x_new
    # Each mean is over 100 draws whose spread (sigma and b's prior times |x| of 10 to 13)
    # is about 1.3: Monte-Carlo sd about 0.13, so 0.5 is about 4 sd; the old x is 20 away.
    np.testing.assert_allclose(moved.posterior_predictive["y"].mean(("chain", "draw")), expected,
                               atol=0.5)


def test_extend_inferencedata_and_list_of_points():
    model = regression()
    idata = fake_posterior(model, draws=30)
    out = sample_posterior_predictive(idata, model=model, extend_inferencedata=True,
                                      random_seed=0, progressbar=False)
    assert out is idata and idata.posterior_predictive["y"].shape == (2, 30, 40)
    points = [{"a": 1.0, "b": 2.0, "sigma": 0.5}] * 3
    draws = sample_posterior_predictive(points, model=model, return_inferencedata=False,
                                        random_seed=0, progressbar=False)
    assert draws["y"].shape == (1, 3, 40)


def test_each_observed_variable_is_drawn_once_after_pymcs_own_call(monkeypatch):
    import hiddenjax.compile.forward as forward

    model = regression(n=5)
    idata = fake_posterior(model, draws=10)
    for _ in range(2):  # each call appends y to model.observed_RVs once more (PyMC 5.28)
        pm.sample_posterior_predictive(idata, model=model, random_seed=1, progressbar=False)
    lowered, original = [], forward.cached_draw_function
    monkeypatch.setattr(forward, "cached_draw_function",
                        lambda m, graph: lowered.append(graph.output_names) or original(m, graph))
    out = sample_posterior_predictive(idata, model=model, random_seed=0, progressbar=False)
    assert lowered == [("y",)]
    assert list(out.posterior_predictive.data_vars) == ["y"]


def test_var_names_decide_what_is_redrawn(caplog):
    with pm.Model() as model:
        x, y = pm.Normal("x"), pm.Normal("y")
        z = pm.Normal("z", x + y**2)
        pm.Deterministic("det", pm.math.exp(z))
        pm.Normal("obs", pm.math.exp(z), 1, observed=[20.0])
    idata = fake_posterior(model, draws=20)
    expected = {("obs",): ["obs"], ("det",): [], ("z", "det"): ["z"], ("y", "det"): ["y", "z"]}
    for var_names, sampled in expected.items():
        with caplog.at_level(logging.INFO, logger="hiddenjax"):
            caplog.clear()
            out = sample_posterior_predictive(idata, model=model, var_names=list(var_names),
                                              random_seed=0, progressbar=False)
        assert f"Sampling: {sampled}" in caplog.text
        assert sorted(out.posterior_predictive.data_vars) == sorted(var_names)
    det = sample_posterior_predictive(idata, model=model, var_names=["det"], progressbar=False)
    np.testing.assert_allclose(det.posterior_predictive["det"], np.exp(idata.posterior["z"]))


def test_failed_model_check_raises():
    from pytensor.raise_op import Assert

    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Deterministic("checked", Assert("x must be positive")(x, x > 0))
    points = [{"x": 1.0}, {"x": -1.0}]
    with pytest.raises(CheckFailed, match="x must be positive.*1 draw"):
        sample_posterior_predictive(points, model=model, var_names=["checked"], progressbar=False)


# -- MAP -----------------------------------------------------------------------------------

MAP_MODELS = ["hierarchical_regression", "logistic_regression", "simplex_and_bounds", "eight_schools"]


@pytest.mark.parametrize("name", MAP_MODELS)
def test_find_map_agrees_with_pymc(name):
    model = ZOO[name]()
    ref = pm.find_MAP(model=model, progressbar=False)
    ours = find_MAP(model=model, progressbar=False)
    assert list(ours) == list(ref)
    for key in ref:
        assert np.shape(ours[key]) == np.shape(ref[key])
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_find_map_options_follow_pymc():
    model = ZOO["hierarchical_regression"]()
    ref = pm.find_MAP(model=model, progressbar=False, include_transformed=False, vars=[model["b"]],
                      start={"b": 0.3, "sigma": 2.0})
    ours = find_MAP(model=model, progressbar=False, include_transformed=False, vars=[model["b"]],
                    start={"b": 0.3, "sigma": 2.0})
    assert list(ours) == list(ref) and "sigma_log__" not in ours
    for key in ref:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)
    point, raw = find_MAP(model=model, progressbar=False, return_raw=True, method="BFGS")
    assert raw.success and set(point) == set(ref) | {"sigma_log__", "sigma_a_log__"}


def test_find_map_says_when_it_does_not_converge():
    model = ZOO["hierarchical_regression"]()
    with pytest.raises(MAPConvergenceError, match="maxeval=3"):
        find_MAP(model=model, progressbar=False, maxeval=3)
    with pm.Model() as unbounded:
        pm.Flat("x")
        pm.Potential("up", pm.math.exp(unbounded["x"]))
    with pytest.raises(MAPConvergenceError, match="unbounded above"):
        find_MAP(model=unbounded, progressbar=False, maxeval=200)


# -- ADVI ----------------------------------------------------------------------------------


def gaussian_model():
    """A posterior that is exactly Gaussian on the unconstrained space."""
    cov = np.array([[1.0, 0.8], [0.8, 2.0]])
    with pm.Model(coords={"d": ["a", "b"]}) as model:
        pm.MvNormal("x", mu=np.array([1.0, -1.0]), cov=cov, dims="d")
        pm.Deterministic("total", model["x"].sum())
    return model, cov


def test_fit_mean_field_and_full_rank_on_a_gaussian_posterior():
    model, cov = gaussian_model()
    settings = dict(model=model, random_seed=1, progressbar=False, obj_n_mc=8,
                    obj_optimizer=pm.adam(learning_rate=0.003))
    mf = fit(20000, **settings)
    fr = fit(20000, method="fullrank_advi", **settings)
    assert isinstance(mf, Approximation) and mf.hist.shape == (20000,)
    # Both families are exact for the mean; mean-field has the conditional variances.
    # Tolerances: the last iterate of stochastic gradients wanders by about 0.03
    # (measured over seeds at these settings).
    np.testing.assert_allclose(mf.mean, [1.0, -1.0], atol=0.06)
    np.testing.assert_allclose(mf.std**2, 1 / np.diag(np.linalg.inv(cov)), rtol=0.1)
    np.testing.assert_allclose(fr.mean, [1.0, -1.0], atol=0.06)
    np.testing.assert_allclose(fr.cov, cov, atol=0.12)
    idata = fr.sample(4000, random_seed=2)
    ref = pm.fit(100, model=model, random_seed=1, progressbar=False).sample(10, random_seed=1)
    assert sorted(idata.groups()) == sorted(ref.groups())
    assert sorted(idata.posterior.data_vars) == sorted(ref.posterior.data_vars)
    assert idata.posterior["x"].dims == ref.posterior["x"].dims == ("chain", "draw", "d")
    draws = idata.posterior["x"].values.reshape(-1, 2)
    assert np.all(np.abs(draws.mean(0) - fr.mean) < K * np.sqrt(np.diag(fr.cov) / 4000))
    np.testing.assert_allclose(idata.posterior["total"], idata.posterior["x"].sum("d"))


def test_fit_default_optimiser_tracks_pymc_advi():
    model = ZOO["hierarchical_regression"]()
    ours = fit(3000, model=model, random_seed=3, progressbar=False)
    ref = pm.fit(3000, model=model, random_seed=3, progressbar=False)
    # Same start, family, objective and optimiser: after the same iterations the
    # means agree up to the optimisers' noise (steps of about learning_rate).
    np.testing.assert_allclose(ours.mean, ref.mean.eval(), atol=0.15)
    np.testing.assert_allclose(ours.hist[-500:].mean(), ref.hist[-500:].mean(), rtol=0.1)


def test_fit_is_reproducible_and_refuses_what_it_does_not_run():
    model, _ = gaussian_model()
    a = fit(200, model=model, random_seed=5, progressbar=False)
    b = fit(200, model=model, random_seed=5, progressbar=False)
    np.testing.assert_array_equal(a.hist, b.hist)
    np.testing.assert_array_equal(a.sample(5, random_seed=1, return_inferencedata=False)["x"],
                                  b.sample(5, random_seed=1, return_inferencedata=False)["x"])
    with pytest.raises(NotImplementedError, match="svgd"):
        fit(10, method="svgd", model=model)
    with pytest.raises(TypeError, match="callbacks"):
        fit(10, model=model, callbacks=[])
    with pytest.raises(NotImplementedError, match="start_sigma"):
        fit(10, method="fullrank_advi", model=model, start_sigma={"x": 1.0})


def test_fit_raises_when_the_loss_is_not_finite():
    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Potential("wall", pm.math.switch(x > 3, -np.inf, 0.0))
    with pytest.raises(FloatingPointError, match="NaN occurred"):
        fit(500, model=model, start_sigma={"x": 100.0}, random_seed=0, progressbar=False)


def _nothing():
    import contextlib

    return contextlib.nullcontext()

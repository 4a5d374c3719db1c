"""Posterior predictive time for 4 x 1000 draws: hiddenjax against PyMC.

Run: ``.venv/bin/python benchmarks/posterior_predictive.py``. Each model gets a
fixed set of 4 x 1000 posterior draws (prior draws stand in for NUTS draws:
the predictive cost does not depend on where the draws came from). Times are
wall-clock seconds, best of three; "first" includes compilation (and, for
hiddenjax, may hit the persistent compilation cache), "warm" reuses it.
"""

from __future__ import annotations

import time

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr


def regression(n_obs: int) -> pm.Model:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_obs, 3))
    y = 1.0 + x @ np.array([0.5, -1.0, 2.0]) + rng.normal(size=n_obs)
    with pm.Model(coords={"obs": np.arange(n_obs), "coef": ["a", "b", "c"]}) as model:
        x_data = pm.Data("x", x, dims=("obs", "coef"))
        intercept = pm.Normal("intercept", 0, 5)
        beta = pm.Normal("beta", 0, 2, dims="coef")
        sigma = pm.HalfNormal("sigma", 2)
        mu = pm.Deterministic("mu", intercept + x_data @ beta, dims="obs")
        pm.Normal("y", mu, sigma, observed=y, dims="obs")
    return model


def hierarchical(n_obs: int = 200, n_groups: int = 8) -> pm.Model:
    rng = np.random.default_rng(1)
    group = rng.integers(0, n_groups, size=n_obs)
    x = rng.normal(size=n_obs)
    y = rng.normal(size=n_groups)[group] + 0.5 * x + rng.normal(0, 0.5, size=n_obs)
    with pm.Model(coords={"group": np.arange(n_groups), "obs": np.arange(n_obs)}) as model:
        g = pm.Data("g", group, dims="obs")
        x_data = pm.Data("x", x, dims="obs")
        mu_a = pm.Normal("mu_a", 0, 2)
        sigma_a = pm.HalfNormal("sigma_a", 1)
        a_raw = pm.Normal("a_raw", 0, 1, dims="group")
        a = pm.Deterministic("a", mu_a + sigma_a * a_raw, dims="group")
        b = pm.Normal("b", 0, 1)
        sigma = pm.Exponential("sigma", 1)
        nu = pm.Gamma("nu", 2, 0.1)
        pm.StudentT("y", nu=nu, mu=a[g] + b * x_data, sigma=sigma, observed=y, dims="obs")
    return model


def counts(likelihood: str, n_obs: int = 1000) -> pm.Model:
    """A log-link count regression: Poisson or negative binomial; its rates run from
    about 0.5 to 30, so both of hiddenjax's Poisson samplers (inversion below 10,
    rejection above) take part."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=n_obs)
    y = rng.poisson(np.exp(1.5 + 0.6 * x))
    with pm.Model(coords={"obs": np.arange(n_obs)}) as model:
        x_data = pm.Data("x", x, dims="obs")
        intercept = pm.Normal("intercept", 1.5, 0.1)
        slope = pm.Normal("slope", 0.6, 0.05)
        rate = pm.math.exp(intercept + slope * x_data)
        if likelihood == "poisson":
            pm.Poisson("y", rate, observed=y, dims="obs")
        else:
            pm.NegativeBinomial("y", mu=rate, alpha=pm.Gamma("alpha", 20.0, 2.0), observed=y,
                                dims="obs")
    return model


def posterior(model: pm.Model, chains: int = 4, draws: int = 1000) -> az.InferenceData:
    prior = pm.sample_prior_predictive(chains * draws, model=model, random_seed=1)
    parts = [prior.prior.isel(draw=slice(c * draws, (c + 1) * draws)).assign_coords(draw=np.arange(draws))
             for c in range(chains)]
    idata = prior.copy()
    idata.add_groups(posterior=xr.concat(parts, dim="chain").assign_coords(chain=np.arange(chains)))
    return idata


def timed(fn, repeat: int = 1) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def compare(label: str, model: pm.Model) -> None:
    from hiddenjax.workflow import sample_posterior_predictive

    idata = posterior(model)
    # The observed variables, named: without var_names, each pm.sample_posterior_predictive
    # call (PyMC 5.28) appends them to model.observed_RVs again, so later calls of either
    # library would draw them several times over.
    kwargs = dict(model=model, progressbar=False, random_seed=3,
                  var_names=[rv.name for rv in model.observed_RVs])
    pymc_first = timed(lambda: pm.sample_posterior_predictive(idata, **kwargs))
    pymc_warm = timed(lambda: pm.sample_posterior_predictive(idata, **kwargs), 3)
    hj_first = timed(lambda: sample_posterior_predictive(idata, **kwargs))
    hj_warm = timed(lambda: sample_posterior_predictive(idata, **kwargs), 3)
    print(f"{label}: pymc first {pymc_first:6.3f} s warm {pymc_warm:6.3f} s | hiddenjax first "
          f"{hj_first:6.3f} s warm {hj_warm:6.3f} s | warm speed-up {pymc_warm / hj_warm:5.1f}x")


def main() -> None:
    import jax

    print(f"posterior predictive, 4 x 1000 draws; JAX devices: {len(jax.devices())} x "
          f"{jax.devices()[0].platform}")
    for n_obs in (10, 100, 1000):
        compare(f"regression, {n_obs:>4} obs", regression(n_obs))
    compare("hierarchical StudentT, 200 obs", hierarchical())
    compare("Poisson regression, 1000 obs", counts("poisson"))
    compare("negative binomial regression, 1000 obs", counts("negative_binomial"))


if __name__ == "__main__":
    from hiddenjax.execution.devices import configure

    configure("float64")
    main()

"""The benchmark models, each built by a function of no arguments with fixed seeds.

The four posteriordb posteriors reuse the PyMC models and data of
``tests/reference_models.py``; the synthetic models draw their data from
``numpy.random.default_rng`` with the seed written next to each one, so every
process (and every sampler) sees the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pymc as pm


class Benchmark(NamedTuple):
    """One benchmark model."""

    build: Callable[[], pm.Model]
    """Builds the model (fresh ``pm.Model``) from fixed data."""
    description: str
    """One line for the results table."""


def _posteriordb(name: str) -> Callable[[], pm.Model]:
    def build() -> pm.Model:
        from tests.reference_models import POSTERIORS, load

        builder, _ = POSTERIORS[name]
        data, _ = load(name)
        return builder(data)

    return build


def logistic_regression(n_obs: int = 100_000, n_pred: int = 50, seed: int = 11) -> pm.Model:
    """Bernoulli-logit regression, ``n_obs`` rows and ``n_pred`` standard-normal predictors."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_obs, n_pred))
    beta = rng.normal(0.0, 0.3, size=n_pred)
    y = rng.random(n_obs) < 1.0 / (1.0 + np.exp(-(0.5 + x @ beta)))
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0.0, 2.5)
        coef = pm.Normal("beta", 0.0, 1.0, shape=n_pred)
        pm.Bernoulli("y", logit_p=intercept + x @ coef, observed=y.astype("int64"))
    return model


def _radon_data(n_groups: int = 85, n_obs: int = 919, seed: int = 12):
    """Group sizes as uneven as radon's counties (1 to ~100 rows), a floor indicator, log-radon."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.2, size=n_groups)
    extra = rng.multinomial(n_obs - n_groups, weights / weights.sum())
    group = np.repeat(np.arange(n_groups), extra + 1)
    rng.shuffle(group)
    floor = (rng.random(n_obs) < 0.17).astype(float)
    alpha = rng.normal(1.5, 0.35, size=n_groups)
    y = alpha[group] - 0.65 * floor + rng.normal(0.0, 0.75, size=n_obs)
    return group, floor, y


def radon(centered: bool) -> pm.Model:
    """Varying-intercept radon-like regression over 85 groups and 919 rows."""
    group, floor, y = _radon_data()
    with pm.Model(coords={"county": np.arange(85)}) as model:
        mu_a = pm.Normal("mu_a", 0.0, 5.0)
        sigma_a = pm.HalfNormal("sigma_a", 1.0)
        if centered:
            a = pm.Normal("a", mu_a, sigma_a, dims="county")
        else:
            z = pm.Normal("z", 0.0, 1.0, dims="county")
            a = pm.Deterministic("a", mu_a + sigma_a * z, dims="county")
        b = pm.Normal("b", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", a[group] + b * floor, sigma, observed=y)
    return model


def stochastic_volatility(n_steps: int = 1000, seed: int = 13) -> pm.Model:
    """PyMC's stochastic-volatility example on simulated returns: a 1,000-step random walk."""
    rng = np.random.default_rng(seed)
    log_vol = np.cumsum(rng.normal(0.0, 0.1, size=n_steps)) - 4.5
    returns = np.exp(log_vol) * rng.standard_t(8.0, size=n_steps)
    with pm.Model(coords={"time": np.arange(n_steps)}) as model:
        step_size = pm.Exponential("step_size", 10.0)
        volatility = pm.GaussianRandomWalk(
            "volatility", sigma=step_size, init_dist=pm.Normal.dist(0.0, 10.0), dims="time"
        )
        nu = pm.Exponential("nu", 0.1)
        pm.StudentT("returns", nu=nu, lam=pm.math.exp(-2.0 * volatility), observed=returns,
                    dims="time")
    return model


def correlated_gaussian(dim: int = 200, seed: int = 14) -> pm.Model:
    """A ``dim``-dimensional Gaussian with a dense covariance (condition number in the hundreds)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T / dim + 0.02 * np.eye(dim)
    with pm.Model() as model:
        pm.MvNormal("x", mu=np.zeros(dim), cov=cov)
    return model


MODELS: dict[str, Benchmark] = {
    "eight_schools": Benchmark(
        _posteriordb("eight_schools-eight_schools_noncentered"),
        "posteriordb eight_schools_noncentered (10 parameters)"),
    "arK": Benchmark(_posteriordb("arK-arK"),
                     "posteriordb arK: AR(5), 200 observations (7 parameters)"),
    "nes2000": Benchmark(_posteriordb("nes2000-nes"),
                         "posteriordb nes2000: linear regression, 9 predictors, flat priors"),
    "gauss_mix": Benchmark(_posteriordb("low_dim_gauss_mix-low_dim_gauss_mix"),
                           "posteriordb low_dim_gauss_mix: two-component mixture, 1,000 points"),
    "logistic_regression": Benchmark(logistic_regression,
                                     "logistic regression, N=100,000, 50 predictors"),
    "radon_centered": Benchmark(lambda: radon(True),
                                "radon-like varying intercepts, 85 groups, 919 rows, centred"),
    "radon_noncentered": Benchmark(
        lambda: radon(False), "radon-like varying intercepts, 85 groups, 919 rows, non-centred"),
    "stochastic_volatility": Benchmark(stochastic_volatility,
                                       "stochastic volatility, 1,000-step Gaussian random walk"),
    "correlated_gaussian": Benchmark(correlated_gaussian,
                                     "200-dimensional Gaussian, dense covariance"),
}
"""Benchmark name -> model, in the order of the results table."""


def build(name: str) -> pm.Model:
    """The model called ``name``, with a message listing the names when it is unknown."""
    if name not in MODELS:
        raise KeyError(f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name].build()

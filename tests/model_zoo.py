"""Small PyMC models shared by tests: each exercises a different graph feature."""

from __future__ import annotations

import numpy as np
import pymc as pm

from hiddenjax.examples import eight_schools


def hierarchical_regression() -> pm.Model:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 4, size=60)
    x = rng.normal(size=60)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.3, 4)[group] + rng.normal(0, 0.5, size=60)
    with pm.Model(coords={"group": list("abcd")}) as model:
        x_data = pm.Data("x", x)
        g = pm.Data("g", group)
        mu_a = pm.Normal("mu_a", 0, 5)
        sigma_a = pm.HalfNormal("sigma_a", 1)
        a = pm.Normal("a", mu_a, sigma_a, dims="group")
        b = pm.Normal("b", 0, 2)
        sigma = pm.Exponential("sigma", 1)
        pm.Normal("y", a[g] + b * x_data, sigma, observed=y)
    return model


def logistic_regression() -> pm.Model:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    y = rng.binomial(1, 1 / (1 + np.exp(-(x @ np.array([1.0, -0.5, 0.2])))))
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 2, shape=3)
        intercept = pm.Normal("intercept", 0, 2)
        p = pm.Deterministic("p", pm.math.invlogit(intercept + pm.math.dot(x, beta)))
        pm.Bernoulli("y", p=p, observed=y)
    return model


def simplex_and_bounds() -> pm.Model:
    with pm.Model() as model:
        w = pm.Dirichlet("w", a=np.ones(3))
        u = pm.Uniform("u", -1, 2)
        s = pm.LogNormal("s", 0, 1)
        b = pm.Beta("b", 2, 3)
        pm.Potential("pot", -(u**2))
        pm.Multinomial("counts", n=20, p=w, observed=np.array([5, 7, 8]))
        pm.Normal("obs", u * s, 1 + b, observed=np.array([0.3, -0.2]))
    return model


def random_walk() -> pm.Model:
    rng = np.random.default_rng(2)
    y = np.cumsum(rng.normal(size=50))
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 1)
        walk = pm.GaussianRandomWalk(
            "walk", sigma=sigma, init_dist=pm.Normal.dist(0, 1), steps=49
        )
        pm.Normal("y", walk, 0.5, observed=y)
    return model


ZOO = {
    "eight_schools": eight_schools,
    "hierarchical_regression": hierarchical_regression,
    "logistic_regression": logistic_regression,
    "simplex_and_bounds": simplex_and_bounds,
    "random_walk": random_walk,
}

"""The four posteriordb posteriors of ``tests/data/posteriordb`` written in PyMC.

Data and reference summaries are posteriordb's (see tests/data/posteriordb/PROVENANCE.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pymc as pm

DATA = Path(__file__).parent / "data" / "posteriordb"


def load(posterior: str) -> tuple[dict, dict]:
    """posteriordb's data and reference summaries for ``posterior``."""
    data = json.loads((DATA / f"{posterior}.data.json").read_text())
    ref = json.loads((DATA / f"{posterior}.ref.json").read_text())
    return data, ref["parameters"]


def eight_schools(data: dict) -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta_trans = pm.Normal("theta_trans", 0.0, 1.0, shape=data["J"])
        theta = pm.Deterministic("theta", mu + tau * theta_trans)
        pm.Normal("y", theta, np.asarray(data["sigma"], float), observed=np.asarray(data["y"], float))
    return model


def nes(data: dict) -> pm.Model:
    age = np.asarray(data["age_discrete"])
    columns = [
        np.ones(data["N"]), data["real_ideo"], data["race_adj"],
        age == 2, age == 3, age == 4, data["educ1"], data["gender"], data["income"],
    ]
    x = np.column_stack([np.asarray(c, float) for c in columns])
    with pm.Model() as model:
        beta = pm.Flat("beta", shape=9)
        sigma = pm.HalfFlat("sigma")
        pm.Normal("partyid7", x @ beta, sigma, observed=np.asarray(data["partyid7"], float))
    return model


def ar_k(data: dict) -> pm.Model:
    y, k = np.asarray(data["y"], float), data["K"]
    lags = np.column_stack([y[k - j : len(y) - j] for j in range(1, k + 1)])
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 10.0)
        beta = pm.Normal("beta", 0.0, 10.0, shape=k)
        sigma = pm.HalfCauchy("sigma", 2.5)
        pm.Normal("y", alpha + lags @ beta, sigma, observed=y[k:])
    return model


def gauss_mix(data: dict) -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal(
            "mu", 0.0, 2.0, shape=2,
            transform=pm.distributions.transforms.ordered, initval=np.array([-1.0, 1.0]),
        )
        sigma = pm.HalfNormal("sigma", 2.0, shape=2)
        theta = pm.Beta("theta", 5.0, 5.0)
        pm.NormalMixture(
            "y", w=pm.math.stack([theta, 1.0 - theta]), mu=mu, sigma=sigma,
            observed=np.asarray(data["y"], float),
        )
    return model


POSTERIORS = {
    "eight_schools-eight_schools_noncentered": (eight_schools, 0.95),
    "nes2000-nes": (nes, 0.8),
    "arK-arK": (ar_k, 0.8),
    "low_dim_gauss_mix-low_dim_gauss_mix": (gauss_mix, 0.8),
}
"""posterior name -> (model builder, target_accept used for the reference check)."""


def reference_table(idata, ref: dict) -> list[tuple[str, float, float]]:
    """``(stan name, z, sd ratio)`` per compared parameter, by posteriordb's README rule."""
    import arviz as az

    rows = []
    for stan_name, summary in ref.items():
        name, _, index = stan_name.partition("[")
        draws = idata.posterior[name]
        if index:
            draws = draws.isel({draws.dims[-1]: int(index.rstrip("]")) - 1})
        ess = float(az.ess(np.asarray(draws.values), method="bulk"))
        mean, sd = float(draws.mean()), float(draws.std())
        z = (mean - summary["mean"]) / (summary["sd"] / np.sqrt(ess))
        rows.append((stan_name, z, sd / summary["sd"]))
    return rows

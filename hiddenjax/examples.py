"""Built-in example models."""

from __future__ import annotations

import numpy as np
import pymc as pm

SCHOOLS = ("Choate", "Deerfield", "Phillips Andover", "Phillips Exeter",
           "Hotchkiss", "Lawrenceville", "St. Paul's", "Mt. Hermon")
EFFECTS = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
STD_ERRORS = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def eight_schools() -> pm.Model:
    """Rubin's eight schools, non-centred: the standard first hierarchical model."""
    with pm.Model(coords={"school": list(SCHOOLS)}) as model:
        sigma = pm.Data("sigma", np.array(STD_ERRORS), dims="school")
        mu = pm.Normal("mu", mu=0.0, sigma=5.0)
        tau = pm.HalfCauchy("tau", beta=5.0)
        theta_t = pm.Normal("theta_t", mu=0.0, sigma=1.0, dims="school")
        theta = pm.Deterministic("theta", mu + tau * theta_t, dims="school")
        pm.Normal("y", mu=theta, sigma=sigma, observed=np.array(EFFECTS), dims="school")
    return model

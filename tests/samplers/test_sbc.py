"""Simulation-based calibration of NUTS: hierarchical, regression, simplex and correlation models.

For each replicate a parameter is drawn from the prior and data are simulated
from it by the model's own graph; ``hj.sample_batched`` fits every replicate
in one compiled program, and the rank of each true value among thinned
posterior draws must be uniform (Talts et al. 2018). All constants below are
fixed before any result is seen; a failure is a finding about the sampler,
never a reason to move them.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import pymc as pm
import pytest

import hiddenjax as hj
from tests.sbc import prior_simulations, ranks, thinned, uniformity_pvalue

REPLICATES = 400
"""Simulated datasets per model: 40 expected ranks per bin. At the strictest
threshold this detects, in over 90% of seeds, a posterior 30% too wide or
too narrow or biased by 0.35 posterior sd (see the negative controls)."""
RANKS = 99
"""Thinned posterior draws per replicate (``L``), so ranks run over 0..99."""
BINS = 10
"""Rank bins: 100 possible ranks split evenly, ten ranks per bin."""
FAMILY_ALPHA = 0.01
"""Chance that a correct sampler fails one model's test; Bonferroni-split over
that model's scalar parameters, which are tested separately."""
TUNE, DRAWS = 500, 990
"""Per replicate, one chain; keeping every tenth draw leaves ``RANKS`` draws
spaced wider than these models' integrated autocorrelation times (ESS of 990
draws was at least 150, about seven draws per independent one)."""
INITS = ["auto", "jitter+adapt_diag", "jitter+adapt_full"]
"""Adaptation schemes (``init=``) under test."""


class SBCModel(NamedTuple):
    model: pm.Model
    """The model, holding placeholder observations."""
    parameters: tuple[str, ...]
    """Variables whose scalar components are ranked."""
    observed: tuple[str, ...]
    """Observed variables, simulated and replaced per replicate."""
    seed: int
    """Seed of the prior simulations and of the fits."""


def _hierarchical_normal() -> SBCModel:
    """Eight schools, non-centred, with the published standard errors."""
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        tau = pm.HalfNormal("tau", 5)
        z = pm.Normal("z", 0, 1, shape=8)
        theta = pm.Deterministic("theta", mu + tau * z)
        pm.Normal("y", theta, sigma, observed=np.zeros(8))
    return SBCModel(model, ("mu", "tau", "theta"), ("y",), seed=11)


def _logistic_regression() -> SBCModel:
    """Intercept and two slopes over a fixed 50-row design."""
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0, 1)
        beta = pm.Normal("beta", 0, 1, shape=2)
        pm.Bernoulli("y", logit_p=alpha + pm.math.dot(x, beta), observed=np.zeros(50, dtype=int))
    return SBCModel(model, ("alpha", "beta"), ("y",), seed=12)


def _simplex() -> SBCModel:
    """Four category probabilities on the simplex, seen through 30 multinomial counts."""
    with pm.Model() as model:
        p = pm.Dirichlet("p", a=np.ones(4))
        pm.Multinomial("counts", n=30, p=p, observed=np.array([8, 7, 8, 7]))
    return SBCModel(model, ("p",), ("counts",), seed=13)


def _correlation() -> SBCModel:
    """A 3x3 LKJ correlation matrix seen through 20 multivariate normal rows.

    ``model["corr"]`` is the free vector of the three off-diagonal entries
    that the positive-definite matrix is built from; those are ranked. PyMC
    maps each entry to (-1, 1) on its own, so trajectories can leave the
    positive-definite set, where the log-density is -inf: many transitions
    diverge (as they do under ``pm.sample``), and the ranks check that those
    are rejected without bias.
    """
    with pm.Model() as model:
        corr = pm.LKJCorr("corr", n=3, eta=2.0, return_matrix=True)
        pm.MvNormal("y", mu=np.zeros(3), cov=corr, observed=np.zeros((20, 3)))
    return SBCModel(model, ("corr",), ("y",), seed=14)


MODELS = {
    "hierarchical_normal": _hierarchical_normal,
    "logistic_regression": _logistic_regression,
    "simplex": _simplex,
    "correlation": _correlation,
}


def _calibration_pvalues(spec: SBCModel, init: str) -> tuple[dict[str, float], dict]:
    """Per scalar parameter, the p-value of uniform ranks; and run diagnostics."""
    truths, datasets = prior_simulations(spec.model, spec.parameters, spec.observed,
                                         REPLICATES, seed=spec.seed)
    start = time.perf_counter()
    fits = hj.sample_batched(datasets, model=spec.model, draws=DRAWS, tune=TUNE, chains=1,
                             init=init, random_seed=spec.seed, progressbar=False, quiet=True,
                             compute_convergence_checks=False)
    pvalues = {}
    for name in spec.parameters:
        draws = np.stack([fit.posterior[name].values[0] for fit in fits])
        rank_values = ranks(truths[name], thinned(draws, RANKS)).reshape(REPLICATES, -1)
        for j in range(rank_values.shape[1]):
            label = name if truths[name].ndim == 1 else f"{name}[{j}]"
            pvalues[label] = uniformity_pvalue(rank_values[:, j], RANKS, BINS)
    divergent = np.array([int(fit.sample_stats["diverging"].values.sum()) for fit in fits])
    diagnostics = {"seconds": round(time.perf_counter() - start, 1),
                   "divergences": int(divergent.sum()),
                   "replicates with divergences": int((divergent > 0).sum())}
    return pvalues, diagnostics


@pytest.mark.slow
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("name", list(MODELS))
def test_posterior_ranks_are_uniform(name, init):
    pvalues, diagnostics = _calibration_pvalues(MODELS[name](), init)
    threshold = FAMILY_ALPHA / len(pvalues)
    print(f"\nSBC {name} init={init}: {diagnostics}")
    for label, p in pvalues.items():
        print(f"  {label:10s} p = {p:.4f}")
    failed = {k: round(p, 6) for k, p in pvalues.items() if p <= threshold}
    assert not failed, (
        f"{name} (init={init!r}): ranks not uniform for {failed}, threshold {threshold:.2g} "
        f"(family alpha {FAMILY_ALPHA} over {len(pvalues)} parameters); {diagnostics}."
    )


# --- the test itself: ranks, binning and power, in numpy -----------------------

def _conjugate_normal_ranks(seed: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """Ranks for ``theta ~ N(0, 1)``, ``y ~ N(theta, 1)`` against exact posterior draws.

    The exact posterior is ``N(y / 2, 1 / 2)``; ``scale`` widens it and
    ``shift`` moves it by that many posterior standard deviations, to build
    deliberately wrong posteriors.
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=REPLICATES)
    y = rng.normal(theta, 1.0)
    sd = np.sqrt(0.5)
    draws = rng.normal((y / 2 + shift * sd)[:, None], scale * sd, size=(REPLICATES, RANKS))
    return ranks(theta, draws)


def test_ranks_count_draws_below_the_truth():
    draws = np.arange(RANKS, dtype=float)[None, :].repeat(3, axis=0)
    truth = np.array([-1.0, 1e6, 49.5])
    np.testing.assert_array_equal(ranks(truth, draws), [0, RANKS, 50])
    assert ranks(np.zeros((2, 3)), np.ones((2, RANKS, 3))).shape == (2, 3)


def test_thinning_keeps_evenly_spaced_draws():
    draws = np.arange(2 * DRAWS).reshape(2, DRAWS)
    kept = thinned(draws, RANKS)
    assert kept.shape == (2, RANKS)
    np.testing.assert_array_equal(np.diff(kept[0]), DRAWS // RANKS)
    with pytest.raises(ValueError, match="at least"):
        thinned(draws[:, :10], RANKS)


STRICTEST = FAMILY_ALPHA / 10
"""The per-parameter threshold of the model with the most parameters (eight schools: ten)."""


def test_exact_posterior_passes_the_threshold():
    p = uniformity_pvalue(_conjugate_normal_ranks(seed=0), RANKS, BINS)
    assert p > STRICTEST


@pytest.mark.parametrize("wrong", [dict(scale=1.3), dict(scale=0.7), dict(shift=0.35)],
                         ids=["too_wide", "too_narrow", "biased"])
def test_wrong_posterior_fails_the_threshold(wrong):
    # Same replicates, ranks and bins as the models above, at the threshold
    # hardest to cross: the calibration test can fail, and has power.
    p = uniformity_pvalue(_conjugate_normal_ranks(seed=0, **wrong), RANKS, BINS)
    assert p < STRICTEST

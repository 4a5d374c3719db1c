"""Simulation-based calibration (Talts et al. 2018, arXiv:1804.06788).

Draw a parameter from the prior, simulate data from it, fit the posterior,
and record the rank of the true value among ``L`` posterior draws. When the
sampler is right the rank is uniform on ``0..L`` for every scalar parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
from scipy import stats


def prior_simulations(model: pm.Model, parameters: Sequence[str], observed: Sequence[str],
                      count: int, seed: int) -> tuple[dict, list[dict]]:
    """``count`` joint draws of the parameters and the data from the model's own graph.

    Drawing both from one ``pm.draw`` call makes the simulator the model itself,
    so the prior used to simulate cannot drift from the prior that is fitted.

    Returns
    -------
    truths : dict of str to ndarray
        Each parameter's true values, leading axis ``count``.
    datasets : list of dict
        One ``{observed name: values}`` per replicate, for ``hj.sample_batched``.
    """
    names = list(parameters) + list(observed)
    values = pm.draw([model[n] for n in names], draws=count, random_seed=seed)
    drawn = dict(zip(names, values))
    truths = {n: np.asarray(drawn[n]) for n in parameters}
    datasets = [{n: np.asarray(drawn[n][i]) for n in observed} for i in range(count)]
    return truths, datasets


def ranks(truth: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Rank of each true value among its posterior draws: how many draws lie below it.

    Parameters
    ----------
    truth : ndarray, shape ``(replicates, *event)``
    draws : ndarray, shape ``(replicates, L, *event)``

    Returns
    -------
    ndarray of int, shape ``(replicates, *event)``, values in ``0..L``.
    """
    truth, draws = np.asarray(truth), np.asarray(draws)
    return np.sum(draws < truth[:, None], axis=1)


def thinned(draws: np.ndarray, count: int) -> np.ndarray:
    """``count`` evenly spaced draws from ``(replicates, steps, *event)`` draws.

    Spacing the kept draws ``steps // count`` apart cuts the autocorrelation
    that would otherwise make ranks pile up at the ends or the middle.
    """
    steps = draws.shape[1]
    if steps < count:
        raise ValueError(f"Need at least {count} draws per replicate to thin; got {steps}.")
    stride = steps // count
    return draws[:, stride - 1::stride][:, :count]


def uniformity_pvalue(rank_values: np.ndarray, max_rank: int, bins: int) -> float:
    """Chi-square p-value of ranks ``0..max_rank`` against the uniform, in ``bins`` equal bins.

    ``max_rank + 1`` must be a multiple of ``bins`` so every bin holds the same
    number of possible ranks and has the same expected count.
    """
    if (max_rank + 1) % bins:
        raise ValueError(f"max_rank + 1 = {max_rank + 1} must be a multiple of bins = {bins}.")
    rank_values = np.asarray(rank_values).ravel()
    counts = np.bincount(rank_values * bins // (max_rank + 1), minlength=bins)
    return float(stats.chisquare(counts).pvalue)

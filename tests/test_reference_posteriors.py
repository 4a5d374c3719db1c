"""hiddenjax against posteriordb's gold-standard posteriors.

The rule is posteriordb's README's, fixed before any run: with 4 chains of 1000
draws after 1000 tuning steps, every compared parameter has
``|z| < 5`` where ``z = (mean - ref_mean) / (ref_sd / sqrt(ESS_bulk))``, and
``sd / ref_sd`` in ``[0.8, 1.25]``.
"""

import pytest

import hiddenjax as hj
from tests.reference_models import POSTERIORS, load, reference_table

Z_MAX = 5.0
SD_RATIO = (0.8, 1.25)
SCHEMES = ["jitter+adapt_diag", "jitter+adapt_diag_grad", "jitter+adapt_full",
           "jitter+adapt_low_rank"]
"""Every adaptation scheme besides the default (``auto``), checked in the slow suite."""


@pytest.mark.parametrize(
    "init", ["auto", *(pytest.param(scheme, marks=pytest.mark.slow) for scheme in SCHEMES)])
@pytest.mark.parametrize("posterior", sorted(POSTERIORS))
def test_matches_reference_posterior(posterior, init):
    build, target_accept = POSTERIORS[posterior]
    data, ref = load(posterior)
    idata = hj.sample(
        model=build(data), draws=1000, tune=1000, chains=4, target_accept=target_accept, init=init,
        random_seed=20261124, progressbar=False, compute_convergence_checks=False,
    )
    rows = reference_table(idata, ref)
    misses = [
        f"{name}: z={z:+.2f}, sd ratio={ratio:.3f}"
        for name, z, ratio in rows
        if abs(z) >= Z_MAX or not SD_RATIO[0] <= ratio <= SD_RATIO[1]
    ]
    assert not misses, "\n".join(misses)

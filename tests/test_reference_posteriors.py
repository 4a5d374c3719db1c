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


@pytest.mark.parametrize("posterior", sorted(POSTERIORS))
def test_matches_reference_posterior(posterior):
    build, target_accept = POSTERIORS[posterior]
    data, ref = load(posterior)
    idata = hj.sample(
        model=build(data), draws=1000, tune=1000, chains=4, target_accept=target_accept,
        random_seed=20261124, progressbar=False, compute_convergence_checks=False,
    )
    rows = reference_table(idata, ref)
    misses = [
        f"{name}: z={z:+.2f}, sd ratio={ratio:.3f}"
        for name, z, ratio in rows
        if abs(z) >= Z_MAX or not SD_RATIO[0] <= ratio <= SD_RATIO[1]
    ]
    assert not misses, "\n".join(misses)

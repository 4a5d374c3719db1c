"""The NUTS overhead benchmark runs on a tiny configuration; no timing is checked."""

from benchmarks import nuts_overhead


def test_measures_a_time_per_leaf_and_whole_trajectories():
    per_leaf, leaves = nuts_overhead.measure(dim=3, chains=2, transitions=5, repeats=1)
    assert per_leaf > 0
    assert 1 <= leaves <= 2**10 - 1  # at least one leapfrog step, at most the depth cap

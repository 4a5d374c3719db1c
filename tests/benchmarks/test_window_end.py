"""The window-end benchmark runs on a tiny configuration; no timing is checked."""

from benchmarks import window_end


def test_measures_a_final_call_over_chains():
    out = window_end.measure(n_dim=4, n_draws=10, repeats=1, chains=2, buffer=20)
    assert out["final_s"] > 0 and out["per_chain_s"] == out["final_s"] / 2
    assert 0 <= out["rank_used"] <= 2 * 4

"""The window-end benchmark runs on a tiny configuration; no timing is checked."""

from benchmarks import window_end


def test_measures_a_final_call_and_the_sweeps_of_its_decompositions():
    out = window_end.measure(n_dim=4, n_draws=10, repeats=1, buffer=20)
    assert out["final_s"] > 0 and out["first_call_s"] > 0
    assert len(out["sweeps"]) == len(out["sweeps_at_rounding"]) == 2
    for loose, tight in zip(out["sweeps"], out["sweeps_at_rounding"], strict=True):
        # The scheme's tolerance is looser than rounding level, so never slower to reach.
        assert 1 <= loose <= tight <= 40

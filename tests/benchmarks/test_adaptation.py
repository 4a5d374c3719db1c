"""The adaptation benchmark's table, from synthetic results (no sampling)."""


def test_adaptation_table_marks_missing_timed_out_and_the_median_ratio():
    from benchmarks.adaptation import markdown

    def run(model, variant, value=None, error=None):
        base = {"model": model, "variant": variant, "seed": 1, "dim": 3}
        if error:
            return {**base, "status": "error", "error": error}
        return {**base, "status": "ok", "ess_per_1000_grads": value}

    results = {"config": {"seeds": [1], "date": "today", "machine": "test"}, "runs": [
        run("a", "auto", 20.0), run("a", "pymc", 10.0), run("a", "nutpie", 5.0),
        run("b", "auto", 0.05), run("b", "pymc", error="timed out after 900 s"),
        run("b", "nutpie", 0.1),
        run("c", "auto", 30.0), run("c", "adapt_diag", 12.0), run("c", "nutpie", 10.0),
    ]}
    text = markdown(results)
    assert "| b | 3 | 0.05 | – | timed out | 0.1 |" in text
    assert "| a | 20.0 | pymc | 10.0 | 2.00× |" in text
    assert "Median ratio over 3 models: **2.00×**" in text

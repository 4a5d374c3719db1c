"""The warmup-schedule benchmark's table, from synthetic results (no sampling)."""


def test_warmup_schedule_table_means_over_seeds_and_skips_failed_runs():
    from benchmarks.warmup_schedule import markdown

    def run(model, schedule, seed, warm, kept, ess, divergences=0):
        return {"model": model, "schedule": schedule, "seed": seed, "status": "ok",
                "warmup_grads": warm, "draw_grads": kept, "ess_bulk_min": ess,
                "ess_per_1000_grads": 1000 * ess / (warm + kept), "divergences": divergences}

    results = {"config": {"seeds": [1, 2], "date": "today"}, "runs": [
        run("a", "stan", 1, 3000, 1000, 400), run("a", "stan", 2, 3000, 1000, 400, 1),
        run("a", "hiddenjax", 1, 1000, 1000, 400), run("a", "hiddenjax", 2, 1000, 1000, 400),
        run("b", "stan", 1, 1000, 1000, 100),
        {"model": "b", "schedule": "hiddenjax", "seed": 1, "status": "error", "error": "boom"},
    ]}
    text = markdown(results)
    assert "| a | 3,000 / 1,000 | 4,000 / 2,000 | 400 / 400 | 100.0 / 200.0 | 2.00× | 1 / 0 |" \
        in text
    assert "| b | 1,000 / n/a | 2,000 / n/a | 100 / n/a | 50.0 / n/a | n/a | 0 / 0 |" in text
    assert "over 1 models: **2.00×**" in text

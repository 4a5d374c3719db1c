"""The benchmark runner works end to end on a tiny configuration; no timing is ever checked."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, run
from benchmarks.worker import CompileClock


@pytest.mark.parametrize("peers", [
    [],
    # A peer's fresh process adds about 20 s (PyMC's C compile): the default suite runs
    # hiddenjax alone, the slow suite adds PyMC as a peer.
    pytest.param(["pymc"], marks=pytest.mark.slow),
], ids=["hiddenjax", "with_pymc"])
def test_tiny_run_writes_results_table_and_plots(tmp_path, peers):
    out = tmp_path / "bench"
    results = run.main(["--models", "eight_schools", "--samplers", "hiddenjax", *peers,
                        "--draws", "50", "--tune", "50", "--chains", "2", "--out", str(out)])

    labels = [r["label"] for r in results["runs"]]
    assert labels == ["floor", "hiddenjax (cold)", "hiddenjax (warm)", *peers]
    failed = {r["label"]: r.get("error") for r in results["runs"] if r["status"] != "ok"}
    assert not failed
    for r in results["runs"][1:]:
        assert r["ess_bulk_min"] > 0 and r["wall_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["grads_kept"] > 0 and r["grads_warmup"] > 0
    cold, warm = results["runs"][1:3]
    assert cold["cache_dir"] == warm["cache_dir"] is not None
    assert json.loads((out / "results.json").read_text()) == results
    table = (out / "README.md").read_text()
    assert "| eight_schools | hiddenjax (warm) |" in table
    assert all((out / f"{name}.png").stat().st_size > 0 for name in report.PLOTS)


def test_failed_pairs_are_reported_not_hidden():
    runs = [
        {"model": "arK", "sampler": "floor", "label": "floor", "status": "ok", "dim": 7,
         "bare_call_s": 1e-5, "loop_floor_s": 1e-6, "floor_source": "hiddenjax"},
        {"model": "arK", "sampler": "pymc", "label": "pymc", "status": "ok", "wall_s": 2.0,
         "start_s": 1.0, "compile_s": None, "ess_bulk_min": 400.0, "ess_per_s": 200.0,
         "ess_per_1000_grads": 20.0, "s_per_grad": 2e-6, "peak_rss_mb": 300.0,
         "children_peak_rss_mb": 250.0, "lanes": 2, "divergences": 0},
        {"model": "arK", "sampler": "blackjax", "label": "blackjax", "status": "error",
         "error": "TypeError: unexpected keyword argument 'progress_bar'"},
    ]
    results = {"runs": runs, "config": {"shape": {"draws": 1, "tune": 1, "chains": 1}, "seed": 1},
               "machine": {"date": "today", "cpu_count": 2, "platform": "test",
                           "versions": {"pymc": "5"}}}
    text = report.markdown(results)
    assert "| arK | blackjax | failed: TypeError: unexpected keyword argument" in text
    row = "| arK | pymc | 2.00 | 1.00 | n/a | 400 | 200 | 1.00 | 20.0 | 2.00 | 0.2 | 2.00 |"
    assert row + " 300 + 2×250 | 0 |" in text


def test_plan_runs_hiddenjax_cold_then_warm_on_one_cache():
    jobs = run.plan(["arK"], ["hiddenjax", "numpyro"], chains=4, cache_root="/tmp/c")
    assert [j.label for j in jobs] == ["floor", "hiddenjax (cold)", "hiddenjax (warm)", "numpyro"]
    assert jobs[1].env == jobs[2].env == {"HIDDENJAX_CACHE_DIR": "/tmp/c/arK"}
    assert "device_count=4" in jobs[3].env["XLA_FLAGS"]


@pytest.mark.parametrize(("spans", "total", "inside"), [
    ([(0.0, 1.0), (0.5, 2.0), (3.0, 4.0)], 3.0, 2.0),   # overlapping spans count once
    ([(0.0, 10.0)], 10.0, 3.0),
    ([], 0.0, 0.0),
])
def test_compile_clock_merges_overlapping_spans(spans, total, inside):
    clock = CompileClock()
    clock.close()
    clock.spans = list(spans)
    assert clock.total() == pytest.approx(total)
    assert clock.total(0.5, 3.5) == pytest.approx(inside)

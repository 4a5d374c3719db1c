"""The batched and chunking benchmarks measure and report on tiny runs; no timing is checked."""

from __future__ import annotations

import pytest

from benchmarks import batched, chunking
from benchmarks.run import machine


def test_extrapolation_charges_the_untimed_calls_the_steady_mean():
    # The first call compiles; calls 2 and 3 cost 1 s, so 7 untimed calls add 7 s.
    assert batched.extrapolate([5.0, 1.0, 1.0], 10) == pytest.approx(14.0)
    assert batched.extrapolate([2.0], 3) == pytest.approx(6.0)


@pytest.mark.slow  # 23 s of the default suite
def test_batched_methods_report_every_row_and_agree(tmp_path):
    cfg = batched.Config(datasets=3, draws=20, tune=20, chains=1, seed=1, pm_datasets=1)
    datasets = batched.simulate(cfg.datasets, rows=20)
    runs = {"batched": batched.measure_batched(cfg, datasets, warm=False)}
    seeds = runs["batched"]["seeds"]
    runs["hj_loop"] = batched.measure_hj_loop(cfg, datasets, seeds)
    runs["pm_loop_cores1"] = batched.measure_pm_loop(cfg, datasets[:1], seeds[:1], cores=1)
    for run in runs.values():
        run.update(status="ok", peak_rss_mb=1.0)

    results = batched.report(cfg, runs, machine())

    assert [r["key"] for r in results["rows"]] == ["batched:wall_s", "hj_loop", "pm_loop_cores1"]
    assert [r["extrapolated"] for r in results["rows"]] == [False, False, True]
    assert all(r["wall_s"] > 0 and r["vs_pm_loop"] > 0 for r in results["rows"])
    assert len(runs["batched"]["fits"]) == len(runs["hj_loop"]["fits"]) == 3
    # Same per-dataset seeds: the loop gives the batched draws.
    assert results["agreement"]["hj_loop"]["max_sd"] < 1e-6
    assert results["agreement"]["pm_loop_cores1"]["datasets"] == 1
    text = batched.markdown(results)
    assert "| hj.sample loop | 3 |" in text and "extrapolated" in text


@pytest.mark.slow  # fresh processes: 19 s of the default suite
def test_chunking_compares_draws_times_and_memory(tmp_path):
    cfg = chunking.Config(draws=20, tune=20, chains=1, seed=3, chunk_size=None)
    timing = []
    for name, size in (("single", 40), ("small", 10)):
        path = str(tmp_path / f"{name}.npz")
        result = chunking.measure_time("eight_schools", cfg._replace(chunk_size=size), path)
        timing.append({**result, "status": "ok", "model": "eight_schools", "chunking": name,
                       "repeat": 0, "draws_file": path})
    memory = chunking.measure_memory(50, cfg._replace(chunk_size=10))
    memory.update(status="ok", draws=20, chunking="default")
    args = chunking._parse(["--models", "eight_schools", "--repeats", "1"])

    results = chunking.report(args, timing, [memory], machine())

    # Calls also stop after the warmup window's end (20 tuning steps: its one window
    # ends at step 17), where its metric is computed on the host.
    assert [(r["chunk_size"], r["chunks"]) for r in timing] == [(40, 2), (10, 5)]
    assert results["identity"] == [{"model": "eight_schools", "chunking": "small",
                                    "max_abs_diff": 0.0, "identical": True}]
    small = next(r for r in results["timing"] if r["chunking"] == "small")
    assert small["loop_s"] > 0 and small["loop_overhead"] is not None
    row = results["memory"][0]
    assert row["posterior_mb"] > 0 and row["device_chunk_mb"] > 0
    assert "identical" in chunking.markdown(results)


@pytest.mark.slow  # compiles three chunk programs
def test_chunking_in_process_prints_each_chunking_against_the_single_loop(capsys):
    args = chunking._parse(["--models", "eight_schools", "--draws", "10", "--tune", "10",
                            "--chains", "2", "--small-chunk", "5"])
    lines = chunking.in_process(["eight_schools"], args, rounds=2)
    rows = [line.split(" | ") for line in lines[2:]]
    assert [row[1] for row in rows] == list(chunking.CHUNKINGS)
    single = next(row for row in rows if row[1] == "single")
    assert single[3] == "+0.0%" and float(single[2]) > 0
    assert capsys.readouterr().out.count("eight_schools") == len(chunking.CHUNKINGS)

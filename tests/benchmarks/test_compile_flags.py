"""The compile-settings benchmark runs each setting in fresh processes and reports each."""

from __future__ import annotations

import json

import pytest

from benchmarks import compile_flags


def test_summary_takes_medians_and_compares_digests():
    def run(setting, xla, digest):
        return {"model": "m", "setting": setting, "status": "ok", "xla_compile_s": xla,
                "compile_s": xla + 1, "loop_s": 1.0, "us_per_gradient": 10.0, "wall_s": xla + 2,
                "digest": digest}

    runs = [run("fusion", 4.0, "a"), run("fusion", 6.0, "a"), run("elemental", 3.0, "a"),
            run("elemental", 2.0, "a"), {"model": "m", "setting": "elemental", "status": "error"}]
    (row,) = compile_flags.summary(runs)
    assert row["setting"] == "fusion"
    assert row["other"]["xla_compile_s"] == 5.0 and row["elemental"]["xla_compile_s"] == 2.5
    assert row["same_draws"]
    assert compile_flags.summary([*runs, run("elemental", 2.0, "b")])[0]["same_draws"] is False
    rows = compile_flags.summary([*runs, run("llvm_o0", 1.0, "c")])
    assert [(r["setting"], r["same_draws"]) for r in rows] == [("fusion", True), ("llvm_o0", False)]
    assert "| m | llvm_o0 | 2.50 / 1.00 (2.50×) |" in compile_flags.markdown(
        {"runs": [*runs, run("llvm_o0", 1.0, "c")], "when": "now", "repeats": 2, "config": "c"})


@pytest.mark.slow  # two fresh processes, each compiling a chunk program
def test_compile_flags_runs_each_setting_in_a_fresh_process(tmp_path):
    results = compile_flags.main(["--models", "eight_schools", "--repeats", "1", "--draws", "20",
                                  "--tune", "20", "--settings", "fusion", "--out", str(tmp_path)])
    assert [(r["setting"], r["status"]) for r in results["runs"]] == [
        ("elemental", "ok"), ("fusion", "ok")]
    assert all(r["xla_compile_s"] > 0 and r["us_per_gradient"] > 0 for r in results["runs"])
    assert json.loads((tmp_path / "compile_flags.json").read_text())["repeats"] == 1
    assert "| eight_schools |" in (tmp_path / "compile_flags.md").read_text()

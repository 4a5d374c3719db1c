"""Compile and run time of ``hj.sample`` under XLA CPU compile settings.

Usage::

    python -m benchmarks.compile_flags [--models eight_schools arK radon_centered
                                                 correlated_gaussian] [--repeats 3]
                                       [--settings fusion llvm_o0 ...]
                                       [--draws 1000 --tune 1000 --chains 4 --seed 1]
                                       [--out docs/benchmarks] [--timeout SECONDS]
    python -m benchmarks.compile_flags --from-json docs/benchmarks/compile_flags.json

hiddenjax sets ``--xla_cpu_use_fusion_emitters=false``
(``hiddenjax.execution.devices.CPU_COMPILE_FLAGS``): XLA then emits its fused
kernels with the older elemental emitters instead of the newer fusion emitters.
This script shows what that choice buys, and what other XLA settings that
trade compile time against run time would (``SETTINGS``). Each model is
sampled under hiddenjax's own setting (``elemental``) and each of
``--settings`` (``XLA_FLAGS`` names them, so hiddenjax leaves them as given;
the emitter flag is added unless named) in a fresh process with empty
caches, ``--repeats`` times, settings and repeats interleaved. Per run it
records:

- ``xla_compile_s``: seconds inside XLA's compiler (every program of the run);
- ``compile_s``: hiddenjax's ``compile_time`` (tracing, export and XLA);
- ``loop_s``: from the chunk program being ready to the last draws on the host;
- ``us_per_gradient``: ``loop_s`` over the gradients of every chain's warmup and
  draws (``n_steps``): where the settings draw differently, their runs take
  trees of other sizes, so the loop time alone does not compare them;
- ``wall_s``: the whole ``hj.sample`` call;
- a digest of the posterior draws, to say whether both settings drew the same.

Results go to ``OUT/compile_flags.json`` and ``OUT/compile_flags.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.chunking import LoopClock
from benchmarks.fresh import error_result, run_fresh, worker_or_redraw, write_result

MODELS = ("eight_schools", "arK", "radon_centered", "correlated_gaussian")
BASELINE = "elemental"
SETTINGS = {
    BASELINE: "--xla_cpu_use_fusion_emitters=false",
    "fusion": "--xla_cpu_use_fusion_emitters=true",
    "llvm_o1": "--xla_backend_optimization_level=1",
    "llvm_o0": "--xla_backend_optimization_level=0",
    "no_expensive_passes": "--xla_llvm_disable_expensive_passes=true",
    "codegen_split_4": "--xla_cpu_parallel_codegen_split_count=4",
}
"""XLA_FLAGS of each setting; ``elemental`` is hiddenjax's own, and every other
setting is compared with it (LLVM's optimisation level, lowered from XLA's default;
LLVM's costlier passes; how many pieces XLA splits a module into for parallel
code generation)."""


class XlaClock:
    """Sums the seconds spent in XLA's backend compiler while the context is open."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._inner = None

    def __enter__(self) -> XlaClock:
        from jax._src import compiler

        self._inner = inner = compiler.backend_compile_and_load

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        compiler.backend_compile_and_load = timed
        return self

    def __exit__(self, *exc) -> None:
        from jax._src import compiler

        compiler.backend_compile_and_load = self._inner


def draws_digest(idata) -> str:
    """A digest of every posterior variable's draws, in name order."""
    digest = hashlib.sha256()
    for name in sorted(idata.posterior.data_vars):
        digest.update(np.ascontiguousarray(idata.posterior[name].values).tobytes())
    return digest.hexdigest()[:16]


def measure(model_name: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    """One ``hj.sample`` run of ``model_name`` under this process's XLA_FLAGS."""
    import arviz as az

    import hiddenjax as hj
    from benchmarks.models import build

    model = build(model_name)
    with XlaClock() as xla, LoopClock() as loop:
        started = time.perf_counter()
        idata = hj.sample(draws=draws, tune=tune, chains=chains, random_seed=seed,
                          model=model, progressbar=False, discard_tuned_samples=False)
        wall = time.perf_counter() - started
    ess = az.ess(idata, method="bulk").to_array()
    gradients = sum(int(idata[group]["n_steps"].values.sum())
                    for group in ("sample_stats", "warmup_sample_stats"))
    return {"status": "ok", "xla_compile_s": xla.seconds, "loop_s": loop.loop_s,
            "us_per_gradient": loop.loop_s / gradients * 1e6,
            "compile_s": float(idata.sample_stats.attrs["compile_time"]), "wall_s": wall,
            "min_bulk_ess": float(ess.min()), "digest": draws_digest(idata)}


def worker(args: argparse.Namespace) -> int:
    model_name, setting = args.worker
    try:
        result = measure(model_name, args.draws, args.tune, args.chains, args.seed)
    except Exception as err:  # noqa: BLE001  (a failed run is a row, not a crash)
        result = error_result(err)
    return write_result(args.result, {**result, "model": model_name, "setting": setting})


def run_all(args: argparse.Namespace, logs: Path) -> list[dict]:
    """Every (repeat, model, setting), each in a fresh process with empty caches."""
    runs = []
    for repeat in range(args.repeats):
        for model_name in args.models:
            for setting in [BASELINE, *args.settings]:
                flags = SETTINGS[setting]
                name = f"{model_name}-{setting}-{repeat}"
                env = {"XLA_FLAGS": flags, "HIDDENJAX_CACHE_DIR": tempfile.mkdtemp(dir=logs)}
                argv = ["--worker", model_name, setting, "--draws", str(args.draws),
                        "--tune", str(args.tune), "--chains", str(args.chains),
                        "--seed", str(args.seed)]
                result = run_fresh("benchmarks.compile_flags", argv, logs / f"{name}.json",
                                   env, args.timeout)
                runs.append({"model": model_name, "setting": setting, "repeat": repeat,
                             **result})
                print(f"{name}: " + (
                    "xla {xla_compile_s:.2f} s, compile {compile_s:.2f} s, loop {loop_s:.2f} s"
                    .format(**result) if result.get("status") == "ok" else result["error"]),
                    flush=True)
    return runs


_KEYS = ("xla_compile_s", "compile_s", "loop_s", "us_per_gradient", "wall_s")


def summary(runs: list[dict]) -> list[dict]:
    """Per (model, setting other than the baseline): medians of the setting and of the
    baseline, and whether both drew the same."""
    rows = []
    for model_name in dict.fromkeys(run["model"] for run in runs):
        medians, digests = {}, {}
        for setting in dict.fromkeys(run["setting"] for run in runs):
            ok = [r for r in runs if r["model"] == model_name and r["setting"] == setting
                  and r.get("status") == "ok"]
            medians[setting] = {key: statistics.median(r[key] for r in ok) if ok else None
                                for key in _KEYS}
            digests[setting] = sorted({r["digest"] for r in ok})
        for setting in medians:
            if setting != BASELINE:
                rows.append({"model": model_name, "setting": setting,
                             BASELINE: medians.get(BASELINE), "other": medians[setting],
                             "same_draws": digests[setting] == digests.get(BASELINE)})
    return rows


def _ratio(row: dict, key: str) -> str:
    other, ours = row["other"][key], (row[BASELINE] or {}).get(key)
    if not other or ours is None:
        return "n/a"
    return f"{ours:.2f} / {other:.2f} ({ours / other:.2f}×)"


def markdown(results: dict) -> str:
    rows = summary(results["runs"])
    lines = [
        "# XLA CPU compile settings: compile and run time",
        "",
        f"Generated by `python -m benchmarks.compile_flags` on {results['when']}, "
        f"{results['repeats']} repeats, {results['config']}. Every run is a fresh process "
        "with empty caches; seconds are medians. Each cell: elemental (hiddenjax's setting) / "
        "the row's setting (ratio). Settings (`XLA_FLAGS`): "
        + "; ".join(f"{name} `{SETTINGS.get(name, '?')}`"
                    for name in dict.fromkeys(run["setting"] for run in results["runs"]))
        + ".",
        "",
        "| model | setting | XLA compile (s) | hiddenjax compile_time (s) | loop (s) "
        "| µs per gradient | hj.sample wall (s) | same draws |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['model']} | {row['setting']} | {_ratio(row, 'xla_compile_s')} | "
                     f"{_ratio(row, 'compile_s')} | {_ratio(row, 'loop_s')} | "
                     f"{_ratio(row, 'us_per_gradient')} | "
                     f"{_ratio(row, 'wall_s')} | {'yes' if row['same_draws'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=[s for s in SETTINGS if s != BASELINE],
                        choices=[s for s in SETTINGS if s != BASELINE],
                        help="settings to compare with hiddenjax's own")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--from-json", help="only rewrite the markdown from this JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    import json

    args = _parse(argv)
    redrawn = worker_or_redraw(args, worker, markdown)
    if redrawn is not None:
        return redrawn
    logs = Path(tempfile.mkdtemp(prefix="hiddenjax-compile-flags-"))
    print(f"worker logs: {logs}", flush=True)
    runs = run_all(args, logs)
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "repeats": args.repeats, "runs": runs,
               "config": f"{args.chains} chains × ({args.tune} tune + {args.draws} draws), "
                         f"seed {args.seed}"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile_flags.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (out / "compile_flags.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main(sys.argv[1:] if len(sys.argv) > 1 else None)

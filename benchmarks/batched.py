"""Many small regressions: one ``hj.sample_batched`` call against loops of single fits.

Usage::

    python -m benchmarks.batched [--datasets 100] [--draws 1000 --tune 1000 --chains 4]
                                 [--seed 1] [--pm-datasets N] [--pm-cores 1 2]
                                 [--out docs/benchmarks] [--timeout SECONDS]
    python -m benchmarks.batched --from-json docs/benchmarks/batched.json   # re-render only

The model is ``y ~ Normal(a + b * x, sigma)`` on 50 rows, with ``x`` and ``y``
in ``pm.Data`` containers; the datasets are simulated from a fixed seed. Each
method runs in its own fresh Python process with an empty persistent
compilation cache, so its wall time includes compilation:

* ``batched``: one ``hj.sample_batched`` call over every dataset, then the
  same call again in the same process (compiled program in memory);
* ``batched_cached``: the first call again, in another fresh process that
  finds the persistent compilation cache the first one filled;
* ``hj_loop``: ``pm.set_data`` then ``hj.sample`` per dataset (the first call
  compiles, the others reuse the compiled program);
* ``pm_loop``: ``pm.set_data`` then ``pm.sample`` per dataset, once per
  ``--pm-cores`` value. With ``--pm-datasets N`` only the first ``N`` calls
  run and the loop's time is extrapolated (see :func:`extrapolate`).

Every call keeps each tool's defaults except ``progressbar=False`` and
``compute_convergence_checks=False``. Results go to ``OUT/batched.json`` and
``OUT/batched.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks.fresh import error_result, peak_rss_mb, run_fresh, write_result

ROWS = 50
"""Rows per dataset."""
DATA_SEED = 20240607
"""Seed of the simulated datasets (independent of the samplers' ``--seed``)."""
VARIABLES = ("a", "b", "sigma")
QUIET = dict(progressbar=False, compute_convergence_checks=False)
"""The only options changed from each tool's defaults."""
BATCHED_ROWS = (
    ("batched", "wall_s", "hj.sample_batched (fresh process, empty compilation cache)"),
    ("batched_cached", "wall_s", "hj.sample_batched (fresh process, compilation cache filled)"),
    ("batched", "warm_wall_s", "hj.sample_batched (second call in the same process)"),
)
"""Table rows of the batched runs: (run, result field, label)."""
_SAME_SEEDS = (" Same per-dataset seeds, so the same random keys; but the batched program's "
               "wider vectors can round differently from a single fit's, and over a long run a "
               "rounding-level difference is enough for NUTS trajectories to part ways, after "
               "which the two agree only to Monte Carlo error.")
"""Why the hj.sample loop and the batched call can differ although their seeds agree."""
_OTHER_SAMPLER = " Independent Monte Carlo runs (PyMC's own random streams)."


class Config(NamedTuple):
    """What to run, as given on the command line."""

    datasets: int
    """Number of datasets fitted by every method."""
    draws: int
    """Kept draws per chain."""
    tune: int
    """Warmup steps per chain."""
    chains: int
    """Chains per dataset."""
    seed: int
    """``random_seed`` of ``hj.sample_batched``; the loops reuse its per-dataset seeds."""
    pm_datasets: int
    """How many ``pm.sample`` calls are timed (the rest are extrapolated)."""


def simulate(count: int, rows: int = ROWS, seed: int = DATA_SEED) -> list[dict]:
    """``count`` regression datasets ``{"x": ..., "y_obs": ...}`` with their own a, b, sigma."""
    rng = np.random.default_rng(seed)
    datasets = []
    for _ in range(count):
        a, b, sigma = rng.normal(0.0, 1.0), rng.normal(0.0, 1.0), rng.uniform(0.5, 2.0)
        x = rng.normal(size=rows)
        datasets.append({"x": x, "y_obs": a + b * x + rng.normal(0.0, sigma, size=rows)})
    return datasets


def regression(dataset: dict):
    """``y ~ Normal(a + b x, sigma)`` holding ``dataset`` in ``pm.Data`` containers."""
    import pymc as pm

    with pm.Model() as model:
        x = pm.Data("x", dataset["x"])
        y = pm.Data("y_obs", dataset["y_obs"])
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.Normal("y", a + b * x, sigma, observed=y, shape=x.shape)
    return model


def summarise(idata) -> dict:
    """Posterior mean and sd of each variable, and the divergences, of one fit."""
    post = idata.posterior
    out = {name: [float(post[name].mean()), float(post[name].std())] for name in VARIABLES}
    out["divergences"] = int(idata.sample_stats["diverging"].values.sum())
    return out


def _quiet() -> None:
    """Keep per-call log lines and warnings out of the timed loops."""
    warnings.simplefilter("ignore")
    for name in ("pymc", "hiddenjax"):
        logging.getLogger(name).setLevel(logging.ERROR)


def measure_batched(cfg: Config, datasets: list[dict], warm: bool = True) -> dict:
    """Wall time of ``hj.sample_batched`` over ``datasets``, and of a second call if ``warm``."""
    import hiddenjax as hj

    model = regression(datasets[0])
    kwargs = dict(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                  random_seed=cfg.seed, **QUIET)
    tic = time.perf_counter()
    fits = hj.sample_batched(datasets, **kwargs)
    wall = time.perf_counter() - tic
    attrs = fits[0].posterior.attrs
    result = {"wall_s": wall, "compile_s": float(attrs["compile_time"]),
              "sampling_s": float(attrs["sampling_time"]),
              "seeds": [int(f.posterior.attrs["random_seed"]) for f in fits],
              "fits": [summarise(f) for f in fits]}
    if warm:
        tic = time.perf_counter()
        hj.sample_batched(datasets, **kwargs)
        result["warm_wall_s"] = time.perf_counter() - tic
    return result


def _loop(sample, cfg: Config, datasets: list[dict], seeds: list[int], **kwargs) -> dict:
    """Time ``pm.set_data`` + ``sample(...)`` per dataset, one call after another."""
    import pymc as pm

    model = regression(datasets[0])
    times, fits = [], []
    for dataset, seed in zip(datasets, seeds):
        tic = time.perf_counter()
        with model:
            pm.set_data(dataset)
        idata = sample(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                       random_seed=seed, **QUIET, **kwargs)
        times.append(time.perf_counter() - tic)
        fits.append(summarise(idata))
    return {"times_s": times, "wall_s": float(sum(times)), "fits": fits}


def measure_hj_loop(cfg: Config, datasets: list[dict], seeds: list[int]) -> dict:
    """Wall time of one ``hj.sample`` call per dataset."""
    import hiddenjax as hj

    return _loop(hj.sample, cfg, datasets, seeds)


def measure_pm_loop(cfg: Config, datasets: list[dict], seeds: list[int], cores: int) -> dict:
    """Wall time of one ``pm.sample(cores=cores)`` call per dataset."""
    import pymc as pm

    return {**_loop(pm.sample, cfg, datasets, seeds, cores=cores), "cores": cores}


def extrapolate(times: list[float], count: int) -> float:
    """Seconds for ``count`` calls from the first ``len(times)`` timed ones.

    The calls not run are charged the mean of the timed calls after the first
    (the first also compiles), so a loop's one-off start is counted once.
    """
    steady = times[1:] or times
    return float(sum(times) + (count - len(times)) * np.mean(steady))


def agreement(reference: list[dict], other: list[dict], name: str = "b") -> dict:
    """Largest ``|mean_other - mean_reference| / sd_reference`` of ``name`` over datasets."""
    gaps = [abs(o[name][0] - r[name][0]) / r[name][1] for r, o in zip(reference, other)]
    worst = int(np.argmax(gaps))
    return {"variable": name, "datasets": len(gaps), "max_sd": float(gaps[worst]),
            "mean_sd": float(np.mean(gaps)), "worst_dataset": worst,
            "equal": int(np.sum(np.asarray(gaps) < 1e-9))}


# --- the parent process: plan, run, report ---------------------------------------------------


def _worker_argv(cfg: Config, worker: str, extra: list[str]) -> list[str]:
    return ["--worker", worker, "--datasets", str(cfg.datasets), "--draws", str(cfg.draws),
            "--tune", str(cfg.tune), "--chains", str(cfg.chains), "--seed", str(cfg.seed),
            "--pm-datasets", str(cfg.pm_datasets), *extra]


def run_all(cfg: Config, pm_cores: list[int], logs: Path, timeout: float) -> dict:
    """Every method in its own fresh process: batched first, then the loops with its seeds."""
    def fresh(name: str, worker: str, extra: list[str], cache_of: str | None = None) -> dict:
        cache = {"HIDDENJAX_CACHE_DIR": str(logs / f"cache-{cache_of or name}")}
        print(f"running {name} ...", flush=True)
        result = run_fresh("benchmarks.batched", _worker_argv(cfg, worker, extra),
                           logs / f"{name}.json", cache, timeout)
        print(f"  {name}: {result.get('wall_s', result.get('error'))}", flush=True)
        return result

    runs = {"batched": fresh("batched", "batched", [])}
    runs["batched_cached"] = fresh("batched_cached", "batched", ["--no-warm"], cache_of="batched")
    seeds = runs["batched"].get("seeds") or list(range(cfg.datasets))
    seeds_file = logs / "seeds.json"
    seeds_file.write_text(json.dumps(seeds))
    runs["hj_loop"] = fresh("hj_loop", "hj_loop", ["--seeds-file", str(seeds_file)])
    for cores in pm_cores:
        runs[f"pm_loop_cores{cores}"] = fresh(f"pm_loop_cores{cores}", "pm_loop",
                                              ["--seeds-file", str(seeds_file),
                                               "--cores", str(cores)])
    return runs


def table_rows(runs: dict, datasets: int) -> list[dict]:
    """One row per method: wall seconds for all ``datasets``, and how they were obtained."""
    rows = []
    for key, field, method in BATCHED_ROWS:
        run = runs.get(key, {})
        if run.get("status") == "ok" and field in run:
            rows.append({"method": method, "key": f"{key}:{field}", "timed": datasets,
                         "wall_s": run[field]})
    for key, run in runs.items():
        if key.startswith("batched") or run.get("status") != "ok":
            continue
        label = "hj.sample loop" if key == "hj_loop" else f"pm.sample loop (cores={run['cores']})"
        timed = len(run["times_s"])
        rows.append({"method": label, "key": key, "timed": timed,
                     "wall_s": extrapolate(run["times_s"], datasets)})
    for row in rows:
        row["s_per_dataset"] = row["wall_s"] / datasets
        row["extrapolated"] = row["timed"] < datasets
    return rows


def _speedups(rows: list[dict]) -> list[dict]:
    """Each row with its speed-up over the fastest pm.sample loop and over the hj.sample loop."""
    pm_rows = [r for r in rows if r["key"].startswith("pm_loop")]
    pm_best = min((r["wall_s"] for r in pm_rows), default=None)
    hj_loop = next((r["wall_s"] for r in rows if r["key"] == "hj_loop"), None)
    return [{**r, "vs_pm_loop": pm_best / r["wall_s"] if pm_best else None,
             "vs_hj_loop": hj_loop / r["wall_s"] if hj_loop else None} for r in rows]


def agreements(runs: dict) -> dict:
    """Posterior means of ``b``: the hj.sample loop and each pm.sample loop against batched."""
    batched = runs.get("batched", {})
    if batched.get("status") != "ok":
        return {}
    return {key: agreement(run["fits"], batched["fits"][:len(run["fits"])])
            for key, run in runs.items() if key != "batched" and run.get("status") == "ok"}


def _why(key: str) -> str:
    """What to expect of an agreement: same program, same keys, or another sampler."""
    if key == "batched_cached":
        return " Same compiled program and seeds: equal on every dataset is expected."
    return _SAME_SEEDS if key == "hj_loop" else _OTHER_SAMPLER


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    """The report: the timing table, the batched run's breakdown and the agreement check."""
    cfg, rows, runs = results["config"], results["rows"], results["runs"]
    n = cfg["datasets"]
    lines = [
        "# Many datasets: `hj.sample_batched` against loops of single fits", "",
        f"{n} datasets of `y ~ Normal(a + b x, sigma)`, {ROWS} rows each (x, y in `pm.Data`); "
        f"{cfg['chains']} chains × ({cfg['tune']} tune + {cfg['draws']} draws) per dataset, "
        f"seed {cfg['seed']}. Each method ran in its own fresh process with an empty compilation "
        "cache; wall times cover the sampling calls (plus `pm.set_data` in the loops), not "
        "imports or model building.", "",
        f"Machine: {results['machine']['cpu_count']} CPU cores, {results['machine']['platform']}, "
        f"{results['machine']['date']}.", "",
        f"| method | datasets timed | wall for {n} datasets (s) | s per dataset "
        "| speed-up vs pm.sample loop | speed-up vs hj.sample loop |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = "≈" if r["extrapolated"] else ""
        lines.append(f"| {r['method']} | {r['timed']} | {mark}{_fmt(r['wall_s'], 1)} "
                     f"| {mark}{_fmt(r['s_per_dataset'])} | {_fmt(r['vs_pm_loop'], 1)}× "
                     f"| {_fmt(r['vs_hj_loop'], 1)}× |")
    lines += ["", *_notes(results)]
    failed = {k: r["error"] for k, r in runs.items() if r.get("status") != "ok"}
    lines += [f"- **{k} failed**: {e}" for k, e in failed.items()]
    return "\n".join(lines) + "\n"


def _notes(results: dict) -> list[str]:
    cfg, runs = results["config"], results["runs"]
    notes = []
    extrapolated = [r for r in results["rows"] if r["extrapolated"]]
    if extrapolated:
        notes.append(
            "≈ **extrapolated**: " + "; ".join(f"{r['method']} timed on the first {r['timed']} "
                                                 "datasets" for r in extrapolated)
            + f", then charged the mean time of its calls after the first for each of the "
            f"remaining ones, up to {cfg['datasets']}.")
    notes.append("Speed-ups are against the fastest pm.sample loop measured. pm.sample keeps "
                 "PyMC's defaults otherwise (its own NUTS, C backend).")
    loads = ", ".join(f"{key} {run['load_1min_after']:.1f}" for key, run in runs.items()
                      if "load_1min_after" in run)
    if loads:
        notes.append("1-minute load average at the end of each process (other work on the "
                     f"machine slows every wall time): {loads}.")
    batched = runs.get("batched", {})
    if batched.get("status") == "ok":
        notes.append(
            f"Batched call in the fresh process: {batched['wall_s']:.1f} s, of which "
            f"{batched['compile_s']:.1f} s compiling the chunk program (`compile_time`) and "
            f"{batched['sampling_s']:.1f} s in `run_chains` (`sampling_time`, compile included); "
            f"peak RSS {batched['peak_rss_mb']:,.0f} MB.")
    for key, a in results["agreement"].items():
        notes.append(
            f"Agreement, {key} vs batched: posterior mean of `b` differs by at most "
            f"{a['max_sd']:.3g} posterior sd (mean {a['mean_sd']:.3g}) over {a['datasets']} "
            f"datasets; equal (< 1e-9 sd) on {a['equal']}." + _why(key))
    return [f"- {note}" for note in notes]



# --- entry points ----------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pm-datasets", type=int, default=None,
                        help="time only this many pm.sample calls and extrapolate (default: all)")
    parser.add_argument("--pm-cores", type=int, nargs="+", default=[1, 2],
                        help="one pm.sample loop per value of cores= (default: 1 2)")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker")
    parser.add_argument("--from-json", help="only rewrite batched.md next to this batched.json")
    parser.add_argument("--worker", choices=("batched", "hj_loop", "pm_loop"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--seeds-file", help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-warm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> Config:
    pm_datasets = min(args.pm_datasets or args.datasets, args.datasets)
    return Config(args.datasets, args.draws, args.tune, args.chains, args.seed, pm_datasets)


def worker(args: argparse.Namespace) -> int:
    """One method in this process; writes its result to ``args.result``."""
    cfg = _config(args)
    _quiet()
    try:
        datasets = simulate(cfg.datasets)
        seeds = json.loads(Path(args.seeds_file).read_text()) if args.seeds_file else None
        if args.worker == "batched":
            result = measure_batched(cfg, datasets, warm=not args.no_warm)
        elif args.worker == "hj_loop":
            result = measure_hj_loop(cfg, datasets, seeds)
        else:
            count = cfg.pm_datasets
            result = measure_pm_loop(cfg, datasets[:count], seeds[:count], args.cores)
        result["status"] = "ok"
    except Exception as err:  # noqa: BLE001  (every failure becomes a reported row)
        result = error_result(err)
    result["peak_rss_mb"] = peak_rss_mb()
    return write_result(args.result, result)


def report(cfg: Config, runs: dict, machine: dict) -> dict:
    """The JSON-ready results: configuration, raw runs, table rows and agreement."""
    return {"config": {**cfg._asdict(), "rows_per_dataset": ROWS, "data_seed": DATA_SEED},
            "machine": machine, "runs": runs,
            "rows": _speedups(table_rows(runs, cfg.datasets)), "agreement": agreements(runs)}


def main(argv: list[str] | None = None) -> dict:
    """Run every method, write ``OUT/batched.json`` and ``OUT/batched.md``, return the results.

    With ``--from-json PATH`` nothing runs: the markdown next to ``PATH`` is
    rewritten from it.
    """
    from benchmarks.fresh import worker_or_redraw
    from benchmarks.run import machine

    args = _parse(argv)
    redrawn = worker_or_redraw(args, worker, markdown)
    if redrawn is not None:
        return redrawn
    cfg = _config(args)
    logs = Path(tempfile.mkdtemp(prefix="hiddenjax-batched-"))
    print(f"worker logs and compilation caches: {logs}")
    results = report(cfg, run_all(cfg, args.pm_cores, logs, args.timeout), machine())
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    (out / "batched.json").write_text(json.dumps(results, indent=1))
    (out / "batched.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

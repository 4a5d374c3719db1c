"""Run the benchmark suite: every (model, sampler) pair in a fresh process, then the report.

Usage::

    python -m benchmarks.run [--models NAME ...] [--samplers NAME ...]
                             [--draws N --tune N --chains N --seed N]
                             [--out docs/benchmarks] [--timeout SECONDS] [--merge]

hiddenjax runs twice per model: ``cold`` with an empty persistent
compilation cache (a fresh ``HIDDENJAX_CACHE_DIR``), then ``warm`` in a second
fresh process with the same cache directory. Each model also gets one
``floor`` process that times its bare gradient. Results go to
``OUT/results.json`` (after every pair, so an interrupted run keeps what it
measured), then ``OUT/README.md`` and the PNG plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from benchmarks.models import MODELS
from benchmarks.worker import SAMPLERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hiddenjax", "pymc", "pytensor", "jax", "jaxlib", "numpyro", "blackjax", "nutpie",
            "arviz", "numpy")


class Job(NamedTuple):
    """One worker process to start."""

    model: str
    """Benchmark model name."""
    sampler: str
    """Worker sampler (``floor`` for the gradient floor)."""
    label: str
    """Row label in the results (``hiddenjax (cold)``, ``pymc``, ...)."""
    env: dict
    """Environment variables set for this process only."""
    prime: bool = False
    """Whether a short throwaway run of the same pair goes first (fills on-disk caches)."""


def plan(models: list[str], samplers: list[str], chains: int, cache_root: str,
         prime_pymc: bool = True) -> list[Job]:
    """The worker processes to run, in order."""
    jobs = []
    jax_devices = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={chains}"}
    for model in models:
        jobs.append(Job(model, "floor", "floor", {}))
        for sampler in samplers:
            if sampler == "hiddenjax":
                cache = {"HIDDENJAX_CACHE_DIR": os.path.join(cache_root, model)}
                jobs.append(Job(model, sampler, "hiddenjax (cold)", cache))
                jobs.append(Job(model, sampler, "hiddenjax (warm)", cache))
            elif sampler in ("numpyro", "blackjax"):
                # numpyro's own advice: one host device per chain, chains in parallel.
                jobs.append(Job(model, sampler, sampler, jax_devices))
            elif sampler == "pymc":
                # PyTensor keeps compiled C code on disk; any second run of a model finds it.
                jobs.append(Job(model, sampler, sampler, {}, prime=prime_pymc))
            else:
                jobs.append(Job(model, sampler, sampler, {}))
    return jobs


def _environment(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HIDDENJAX_CACHE_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _command(job: Job, args: argparse.Namespace, result_path: Path, steps: int | None = None):
    draws, tune = (args.draws, args.tune) if steps is None else (steps, steps)
    return [sys.executable, "-m", "benchmarks.worker", "--model", job.model,
            "--sampler", job.sampler, "--draws", str(draws), "--tune", str(tune),
            "--chains", str(args.chains), "--seed", str(args.seed), "--result", str(result_path)]


def run_job(job: Job, args: argparse.Namespace, logs: Path) -> dict:
    """Start one worker, wait for it (up to ``args.timeout`` seconds) and read its result."""
    stem = f"{job.model}-{job.label.replace(' ', '').replace('(', '-').replace(')', '')}"
    result_path, log_path = logs / f"{stem}.json", logs / f"{stem}.log"
    if job.prime:
        with open(logs / f"{stem}-prime.log", "w") as log:
            subprocess.run(_command(job, args, logs / f"{stem}-prime.json", steps=10), cwd=ROOT,
                           env=_environment(job.env), stdout=log, stderr=subprocess.STDOUT,
                           timeout=args.timeout, check=False)
    command = _command(job, args, result_path)
    base = {"model": job.model, "sampler": job.sampler, "label": job.label, "log": str(log_path)}
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=_environment(job.env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and any pool it started
            process.wait()
            return {**base, "status": "error",
                    "error": f"timed out after {args.timeout:.0f} s (raise --timeout)"}
    base["process_s"] = time.perf_counter() - started
    if result_path.exists():
        return {**json.loads(result_path.read_text()), **base}
    tail = log_path.read_text()[-600:].strip().splitlines()
    return {**base, "status": "error",
            "error": f"worker exited with {process.returncode}: {tail[-1] if tail else ''}"}


def machine() -> dict:
    """Where and with what the suite ran."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "versions": versions}


def _previous_runs(path: Path, shape: dict) -> tuple[list[dict], str | None]:
    """Runs in ``path`` with the same draws, tune and chains, and their date (``--merge``)."""
    if not path.exists():
        return [], None
    old = json.loads(path.read_text())
    if old.get("config", {}).get("shape") != shape:
        print(f"--merge: {path} has a different draws/tune/chains; starting afresh")
        return [], None
    earlier = old.get("config", {}).get("merged", {}).get("earlier") or old["machine"]["date"]
    return old.get("runs", []), earlier


def _combined(previous: list[dict], new: list[dict]) -> list[dict]:
    """``previous`` runs not measured again, then the new ones."""
    measured = {(r["model"], r["label"]) for r in new}
    return [r for r in previous if (r["model"], r["label"]) not in measured] + new


def _line(result: dict) -> str:
    head = f"{result['model']:<22} {result['label']:<17}"
    if result["status"] != "ok":
        return f"{head} FAILED  {result['error']}"
    if result["sampler"] == "floor":
        return (f"{head} bare call {result['bare_call_s'] * 1e6:9.2f} us   in-loop floor "
                f"{result['loop_floor_s'] * 1e6:9.3f} us   ({result['floor_source']})")
    return (f"{head} wall {result['wall_s']:7.2f} s  start {result['start_s'] or 0:6.2f} s  "
            f"min ESS {result['ess_bulk_min']:7.0f}  ESS/s {result['ess_per_s']:8.1f}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run hiddenjax's benchmark suite.")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        metavar="MODEL", help=f"default: all of {', '.join(MODELS)}")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS,
                        metavar="SAMPLER", help=f"default: all of {', '.join(SAMPLERS)}")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks",
                        help="folder for results.json, README.md and the plots")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one worker may run before it is killed and reported")
    parser.add_argument("--merge", action="store_true",
                        help="keep pairs already in OUT/results.json that this run does not "
                        "measure again (same draws/tune/chains)")
    parser.add_argument("--no-plots", action="store_true", help="write the table and JSON only")
    parser.add_argument("--no-prime", action="store_true",
                        help="measure pymc without first filling PyTensor's C cache")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.report import render

    args = _parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="hiddenjax-bench-"))
    cache_root = str(logs / "xla-cache")
    results = {
        "config": {"shape": {"draws": args.draws, "tune": args.tune, "chains": args.chains},
                   "seed": args.seed, "samplers": args.samplers, "models": args.models,
                   "pymc_primed": not args.no_prime},
        "machine": machine(),
        "runs": [],
    }
    print(f"hiddenjax benchmarks: {args.chains} chains x ({args.tune} tune + {args.draws} draws); "
          f"logs in {logs}", flush=True)
    path = args.out / "results.json"
    previous, earlier = ([], None)
    if args.merge:
        previous, earlier = _previous_runs(path, results["config"]["shape"])
    if previous:
        results["config"]["merged"] = {"earlier": earlier, "models": args.models,
                                       "samplers": args.samplers}
    new: list[dict] = []
    for job in plan(args.models, args.samplers, args.chains, cache_root, not args.no_prime):
        result = run_job(job, args, logs)
        new.append(result)
        print(_line(result), flush=True)
        results["runs"] = _combined(previous, new)
        path.write_text(json.dumps(results, indent=1))
    shutil.rmtree(cache_root, ignore_errors=True)
    final = results
    render(final, args.out, plots=not args.no_plots)
    print(f"wrote {path}, {args.out / 'README.md'}" + ("" if args.no_plots else " and plots"))
    return final


if __name__ == "__main__":
    main()

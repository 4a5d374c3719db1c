"""One measurement in a fresh Python process, shared by the benchmark scripts.

Used by ``adaptation.py``, ``batched.py``, ``chunking.py``, ``compile_flags.py`` and
``warmup_schedule.py``.

The parent starts ``python -m MODULE --worker ... --result PATH``; the worker
writes one JSON object to ``PATH``. A worker that fails, crashes or runs past
its time limit becomes a result with ``status: "error"``, never a missing row.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.run import ROOT, _environment


def run_fresh(module: str, argv: list[str], result_path: Path, env: dict,
              timeout: float) -> dict:
    """Run ``python -m module *argv --result result_path`` and return the JSON it wrote.

    ``env`` adds variables for this process only (``XLA_FLAGS`` and
    ``HIDDENJAX_CACHE_DIR`` are otherwise dropped). The worker's output goes
    to ``result_path`` with the suffix ``.log``; ``process_s`` is the whole
    process, imports included.
    """
    log_path = result_path.with_suffix(".log")
    command = [sys.executable, "-m", module, *argv, "--result", str(result_path)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=_environment(env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and any pool it started
            process.wait()
            return {"status": "error", "log": str(log_path),
                    "error": f"timed out after {timeout:.0f} s (raise --timeout)"}
    # Other work on the machine slows every wall time; the load average shows how much there was.
    base = {"log": str(log_path), "process_s": time.perf_counter() - started,
            "load_1min_after": os.getloadavg()[0]}
    if result_path.exists():
        return {**json.loads(result_path.read_text()), **base}
    tail = log_path.read_text()[-600:].strip().splitlines()
    return {**base, "status": "error",
            "error": f"worker exited with {process.returncode}: {tail[-1] if tail else ''}"}


def error_result(err: BaseException) -> dict:
    """A failed measurement as a result: the exception's first line and the traceback."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return {"status": "error", "error": f"{type(err).__name__}: {lines[0] if lines else ''}"[:400],
            "traceback": traceback.format_exc()[-4000:]}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_result(path: str, result: dict) -> int:
    """Write a worker's result as JSON; the exit code says whether it succeeded."""
    Path(path).write_text(json.dumps(result, indent=1))
    return 0 if result.get("status") == "ok" else 1


def worker_or_redraw(args, worker, markdown) -> dict | None:
    """Handle the two modes every benchmark script shares before a full run.

    ``--worker``: run one measurement and exit. ``--from-json PATH``: rewrite
    the markdown next to ``PATH`` from it and return the results. Otherwise
    ``None``: the caller runs everything.
    """
    if args.worker:
        sys.exit(worker(args))
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        Path(args.from_json).with_suffix(".md").write_text(markdown(results))
        return results
    return None


def run_per_seed(module: str, axis: str, models, values, seeds, results: dict, out: Path,
                 timeout: float, fresh_cache: bool = False) -> None:
    """Run ``module``'s worker once per (model, value of ``--axis``, seed), in that order.

    Each result is appended to ``results["runs"]`` and ``results`` is rewritten
    to ``out`` after every run, so an interrupted grid keeps what it measured.
    ``fresh_cache`` gives every run its own empty hiddenjax program cache.
    """
    logs = Path(tempfile.mkdtemp(prefix=f"hj-{module.rsplit('.', 1)[-1]}-"))
    print(f"worker logs: {logs}", file=sys.stderr)
    for model in models:
        for value in values:
            for seed in seeds:
                path = logs / f"{model}-{value}-{seed}.json"
                argv = ["--worker", "--model", model, f"--{axis}", value, "--seed", str(seed)]
                env = {"HIDDENJAX_CACHE_DIR": tempfile.mkdtemp(dir=logs)} if fresh_cache else {}
                run = run_fresh(module, argv, path, env, timeout)
                results["runs"].append({"model": model, axis: value, "seed": seed, **run})
                shown = run.get("ess_per_1000_grads") or run.get("error")
                print(f"{model:22s} {value:16s} seed {seed}: {shown}", file=sys.stderr)
                out.write_text(json.dumps(results, indent=1))

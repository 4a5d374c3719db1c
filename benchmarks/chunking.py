"""What chunked execution costs in time, and what it saves in memory.

Usage::

    python -m benchmarks.chunking [--models eight_schools arK radon_noncentered]
                                  [--draws 1000 --tune 1000 --chains 4 --seed 1]
                                  [--repeats 3] [--small-chunk 50]
                                  [--memory-dim 10000] [--memory-draws 500 1000 2000]
                                  [--memory-chunks 25 50 100]
                                  [--out docs/benchmarks] [--timeout SECONDS]
    python -m benchmarks.chunking --from-json docs/benchmarks/chunking.json   # re-render only
    python -m benchmarks.chunking --in-process 9 [--models ...]   # loop times in one process

**Time.** ``hj.sample`` runs a compiled chunk of steps, copies its draws to
the host, and runs the next. Each model is sampled with the default chunk
size, with one chunk as long as the whole run (``chunk_size=tune+draws``: a
single compiled loop) and with a small chunk, every configuration in a fresh
process, ``--repeats`` times, repeats interleaved. The loop time runs from
the compiled chunk program being ready to the last chunk's draws on the
host, so it holds every chunk boundary and host copy but no compilation.
Overhead is median(configuration) ÷ median(single loop) − 1. The draws of
every configuration are compared with those of the single loop.

**Memory.** An iid ``Normal`` of ``--memory-dim`` dimensions is sampled for
increasing numbers of draws, chunked (default size) and as a single loop,
then with each of ``--memory-chunks`` at the first of ``--memory-draws``,
each in a fresh process. For each run: resident memory before the call, when the
chunk program is compiled and at its peak during the loop; the size of the
returned posterior; and XLA's own account of the device buffers one call of
the compiled chunk program uses.

Results go to ``OUT/chunking.json`` and ``OUT/chunking.md``.

**In one process** (``--in-process ROUNDS``): fresh processes differ by more
than chunking costs on a noisy machine, so each model is also sampled in one
process, every configuration compiled once, the configurations alternated
``ROUNDS`` times; the first round is dropped and the median and best loop times
of the rest are printed (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks.fresh import error_result, peak_rss_mb, run_fresh, write_result

MODELS = ("eight_schools", "arK", "radon_noncentered")
CHUNKINGS = ("default", "single", "small")
"""Chunk configurations, by name; see :func:`chunk_size`."""


class Config(NamedTuple):
    """One sampling run."""

    draws: int
    """Kept draws per chain."""
    tune: int
    """Warmup steps per chain."""
    chains: int
    """Number of chains."""
    seed: int
    """``random_seed`` of ``hj.sample``."""
    chunk_size: int | None
    """``chunk_size`` of ``hj.sample``; None for hiddenjax's default."""


def chunk_size(chunking: str, draws: int, tune: int, small: int) -> int | None:
    """The ``chunk_size`` argument of a named chunk configuration."""
    return {"default": None, "single": draws + tune, "small": small}[chunking]


class LoopClock:
    """Times hiddenjax's chunk loop from outside, without changing what it does.

    While the context is open, ``hiddenjax.execution.runner.run_chains`` is
    wrapped so that the moment the compiled chunk program is ready, and the
    moment each chunk's draws reach the host, are recorded, together with the
    compiled program itself.
    """

    def __init__(self) -> None:
        self.ready = self.last = self.compiled = None
        self.chunks: list[int] = []
        self._inner = None

    def __enter__(self) -> LoopClock:
        from hiddenjax.execution import runner as module

        self._inner = inner = module.run_chains

        def run_chains(runner, data, positions, plan, progress=None, **kwargs):
            get_chunk = runner.compile

            def chunk(*args):
                self.compiled, seconds = get_chunk(*args)
                self.ready = time.perf_counter()
                return self.compiled, seconds

            def tick(start, done, stats):
                self.last = time.perf_counter()
                self.chunks.append(done - start)
                if progress is not None:
                    progress(start, done, stats)

            runner.compile = chunk  # shadows the method on this (cached) runner only
            try:
                return inner(runner, data, positions, plan, progress=tick, **kwargs)
            finally:
                del runner.compile

        module.run_chains = run_chains
        return self

    def __exit__(self, *exc) -> None:
        from hiddenjax.execution import runner as module

        module.run_chains = self._inner

    @property
    def loop_s(self) -> float:
        """Seconds from the compiled program being ready to the last chunk on the host."""
        return self.last - self.ready

    def device_bytes(self) -> dict:
        """XLA's memory analysis of one call of the compiled chunk program, in bytes."""
        stats = self.compiled.memory_analysis()
        names = ("argument", "output", "temp")
        return {name: int(getattr(stats, f"{name}_size_in_bytes")) for name in names}


def _sample(model, cfg: Config):
    """``hj.sample`` with ``cfg``, timed; returns ``(idata, wall seconds, LoopClock)``."""
    import hiddenjax as hj

    with LoopClock() as clock:
        tic = time.perf_counter()
        idata = hj.sample(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                          random_seed=cfg.seed, chunk_size=cfg.chunk_size, progressbar=False,
                          compute_convergence_checks=False)
        wall = time.perf_counter() - tic
    return idata, wall, clock


def measure_time(model_name: str, cfg: Config, draws_path: str | None = None) -> dict:
    """Wall and loop time of one run of a benchmark model; its draws saved to ``draws_path``."""
    from benchmarks.models import build

    idata, wall, clock = _sample(build(model_name), cfg)
    attrs = idata.posterior.attrs
    if draws_path:
        np.savez(draws_path, **{k: v.values for k, v in idata.posterior.data_vars.items()})
    return {"wall_s": wall, "loop_s": clock.loop_s, "chunks": len(clock.chunks),
            "chunk_size": int(attrs["chunk_size"]), "compile_s": float(attrs["compile_time"]),
            "sampling_s": float(attrs["sampling_time"])}


def in_process(models: list[str], args: argparse.Namespace, rounds: int) -> list[str]:
    """Median and best loop time of each chunking of each model, alternated in this process."""
    from benchmarks.models import build

    lines = ["| model | chunking | loop median (s) | over single | loop best (s) | over single |",
             "|---|---|---|---|---|---|"]
    for name in models:
        model, loops = build(name), {c: [] for c in CHUNKINGS}
        for round_ in range(rounds):
            for chunking in CHUNKINGS:
                size = chunk_size(chunking, args.draws, args.tune, args.small_chunk)
                cfg = Config(args.draws, args.tune, args.chains, args.seed, size)
                _, _, clock = _sample(model, cfg)
                if round_:
                    loops[chunking].append(clock.loop_s)
        single_median, single_best = np.median(loops["single"]), min(loops["single"])
        for chunking in CHUNKINGS:
            median, best = np.median(loops[chunking]), min(loops[chunking])
            lines.append(f"| {name} | {chunking} | {median:.3f} | {median / single_median - 1:+.1%} "
                         f"| {best:.3f} | {best / single_best - 1:+.1%} |")
        print("\n".join(lines[-len(CHUNKINGS):]), flush=True)
    return lines


def iid_normal(dim: int):
    """``dim`` independent standard normals: the posterior is as large as the draws allow."""
    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=dim)
    return model


def current_rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status; the memory run needs Linux.")


class RssTrace:
    """Resident memory sampled every ``interval`` seconds on a background thread."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), current_rss_mb()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, lo: float = -np.inf, hi: float = np.inf) -> float:
        """Largest sample taken between ``lo`` and ``hi`` (``time.perf_counter`` stamps)."""
        return max(rss for t, rss in self.samples if lo <= t <= hi)


def measure_memory(dim: int, cfg: Config) -> dict:
    """Resident memory of one run on :func:`iid_normal`, before and during its chunk loop.

    ``ready_mb`` is the peak up to the compiled chunk program being ready
    (model lowering, starting points, compilation); ``loop_peak_mb`` the
    peak from then to the end of the call.
    """
    model = iid_normal(dim)
    before = current_rss_mb()
    with RssTrace() as rss:
        idata, wall, clock = _sample(model, cfg)
    posterior = sum(v.values.nbytes for v in idata.posterior.data_vars.values())
    return {"dim": dim, "rss_before_mb": before, "ready_mb": rss.peak(hi=clock.ready),
            "loop_peak_mb": rss.peak(lo=clock.ready), "peak_rss_mb": peak_rss_mb(),
            "posterior_mb": posterior / 2**20, "wall_s": wall,
            "chunk_size": int(idata.posterior.attrs["chunk_size"]), "chunks": len(clock.chunks),
            "device_mb": {k: v / 2**20 for k, v in clock.device_bytes().items()}}


# --- the parent process: plan, run, compare, report ------------------------------------------


def _cfg_argv(cfg: Config) -> list[str]:
    return ["--draws", str(cfg.draws), "--tune", str(cfg.tune), "--chains", str(cfg.chains),
            "--seed", str(cfg.seed), "--chunk-size", str(cfg.chunk_size or 0)]


def _fresh(name: str, argv: list[str], logs: Path, timeout: float) -> dict:
    """One worker process with its own empty compilation cache."""
    cache = {"HIDDENJAX_CACHE_DIR": str(logs / f"cache-{name}")}
    result = run_fresh("benchmarks.chunking", argv, logs / f"{name}.json", cache, timeout)
    shown = {k: round(result[k], 3) for k in ("wall_s", "loop_s", "peak_rss_mb") if k in result}
    print(f"  {name}: {shown or result.get('error')}", flush=True)
    return result


def run_timing(models: list[str], args: argparse.Namespace, logs: Path) -> list[dict]:
    """Every (model, chunking, repeat) in a fresh process, repeats interleaved."""
    runs = []
    for repeat in range(args.repeats):
        for model in models:
            for chunking in CHUNKINGS:
                size = chunk_size(chunking, args.draws, args.tune, args.small_chunk)
                cfg = Config(args.draws, args.tune, args.chains, args.seed, size)
                name = f"time-{model}-{chunking}-{repeat}"
                draws = logs / f"{name}.npz"
                argv = ["--worker", "time", "--model", model, "--draws-file", str(draws),
                        *_cfg_argv(cfg)]
                result = _fresh(name, argv, logs, args.timeout)
                runs.append({**result, "model": model, "chunking": chunking, "repeat": repeat,
                             "draws_file": str(draws)})
    return runs


def memory_plan(args: argparse.Namespace) -> list[tuple[int, str, int | None]]:
    """``(draws, label, chunk_size)`` of every memory run.

    Each of ``--memory-draws`` chunked by default and as a single loop; then
    the first of them with each of ``--memory-chunks``.
    """
    plan = [(draws, chunking, chunk_size(chunking, draws, args.memory_tune, args.small_chunk))
            for draws in args.memory_draws for chunking in ("default", "single")]
    if args.memory_draws:
        plan += [(args.memory_draws[0], f"chunk {size}", size) for size in args.memory_chunks]
    return plan


def run_memory(args: argparse.Namespace, logs: Path) -> list[dict]:
    """Every run of :func:`memory_plan` on the iid-normal model, each in a fresh process."""
    runs = []
    for draws, label, size in memory_plan(args):
        cfg = Config(draws, args.memory_tune, args.chains, args.seed, size)
        argv = ["--worker", "memory", "--dim", str(args.memory_dim), *_cfg_argv(cfg)]
        result = _fresh(f"memory-{draws}-{label.replace(' ', '')}", argv, logs, args.timeout)
        runs.append({**result, "draws": draws, "chunking": label})
    return runs


def max_difference(path_a: str, path_b: str) -> float:
    """Largest absolute difference between two saved sets of draws (inf if they do not match)."""
    a, b = np.load(path_a), np.load(path_b)
    if set(a.files) != set(b.files) or any(a[k].shape != b[k].shape for k in a.files):
        return float("inf")
    return float(max(np.max(np.abs(a[k] - b[k])) for k in a.files))


def compare_draws(runs: list[dict]) -> list[dict]:
    """Per model and chunking, the draws of the first repeat against the single loop's."""
    first = {(r["model"], r["chunking"]): r for r in runs
             if r["repeat"] == 0 and r.get("status") == "ok"}
    out = []
    for (model, chunking), run in first.items():
        single = first.get((model, "single"))
        if chunking != "single" and single is not None:
            diff = max_difference(run["draws_file"], single["draws_file"])
            out.append({"model": model, "chunking": chunking, "max_abs_diff": diff,
                        "identical": diff == 0.0})
    return out


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get("status") == "ok"]
    return float(np.median(values)) if values else None


def timing_table(runs: list[dict]) -> list[dict]:
    """Per (model, chunking): medians over repeats, and overhead against the single loop."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs):
        medians = {}
        for chunking in CHUNKINGS:
            group = [r for r in runs if r["model"] == model and r["chunking"] == chunking]
            ok = [r for r in group if r.get("status") == "ok"]
            medians[chunking] = {"loop_s": _median(group, "loop_s"),
                                 "wall_s": _median(group, "wall_s"),
                                 "chunk_size": ok[0]["chunk_size"] if ok else None,
                                 "chunks": ok[0]["chunks"] if ok else None,
                                 "repeats": len(ok), "loop_all_s": [r["loop_s"] for r in ok]}
        single = medians["single"]
        for chunking, row in medians.items():
            rows.append({"model": model, "chunking": chunking, **row,
                         "loop_overhead": _overhead(row["loop_s"], single["loop_s"]),
                         "wall_overhead": _overhead(row["wall_s"], single["wall_s"])})
    return rows


def _overhead(value, reference):
    return None if value is None or not reference else value / reference - 1.0


def memory_table(runs: list[dict]) -> list[dict]:
    """Per memory run: what the call added to RSS beyond the posterior it returned."""
    rows = []
    for r in runs:
        if r.get("status") != "ok":
            rows.append({"draws": r["draws"], "chunking": r["chunking"], "error": r.get("error")})
            continue
        device = r["device_mb"]
        rows.append({"draws": r["draws"], "chunking": r["chunking"], "chunk_size": r["chunk_size"],
                     "chunks": r["chunks"], "posterior_mb": r["posterior_mb"],
                     "setup_mb": r["ready_mb"] - r["rss_before_mb"],
                     "loop_growth_mb": r["loop_peak_mb"] - r["ready_mb"],
                     "peak_added_mb": r["peak_rss_mb"] - r["rss_before_mb"],
                     "device_chunk_mb": device["argument"] + device["output"] + device["temp"],
                     "device_output_mb": device["output"]})
    return rows


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def _num(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    """The report: timing table, draw identity, memory table."""
    cfg = results["config"]
    lines = [
        "# Chunked execution: time overhead and memory", "",
        f"`hj.sample`, {cfg['chains']} chains × ({cfg['tune']} tune + {cfg['draws']} draws), "
        f"seed {cfg['seed']}, progressbar off; every run in a fresh process with an empty "
        f"compilation cache; medians of {cfg['repeats']} repeats. Machine: "
        f"{results['machine']['cpu_count']} CPU cores, {results['machine']['date']}.", "",
        "**loop** runs from the compiled chunk program being ready to the last chunk's draws on "
        "the host: every chunk call, device-to-host copy and chunk boundary, no compilation. "
        "**wall** is the whole `hj.sample` call, compilation included. Overhead is against "
        "the single compiled loop (`chunk_size = tune + draws`). **calls** counts the chunk "
        "calls, which also stop after each warmup window's end.", "",
        "| model | chunking | chunk size | calls | loop (s) | loop overhead | wall (s) "
        "| wall overhead | loop, each repeat (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["timing"]:
        each = ", ".join(f"{x:.3f}" for x in r["loop_all_s"])
        lines.append(f"| {r['model']} | {r['chunking']} | {r['chunk_size']} | {r['chunks']} "
                     f"| {_num(r['loop_s'], 3)} | {_pct(r['loop_overhead'])} "
                     f"| {_num(r['wall_s'])} | {_pct(r['wall_overhead'])} | {each} |")
    lines += ["", "Draws against the single loop's (same seed, first repeat):", ""]
    for c in results["identity"]:
        verdict = "identical" if c["identical"] else f"differ (max |Δ| = {c['max_abs_diff']:.3g})"
        lines.append(f"- {c['model']}, {c['chunking']} chunks: {verdict}")
    loads = [r["load_1min_after"] for r in results["runs"] if "load_1min_after" in r]
    if loads:
        lines += ["", f"1-minute load average at the end of each process: median "
                  f"{np.median(loads):.1f}, highest {max(loads):.1f} (other work on the machine "
                  "slows every wall time)."]
    lines += ["", *_memory_section(results)]
    failed = [r for r in results["runs"] if r.get("status") != "ok"]
    lines += [f"- **failed**: {r.get('model', r.get('draws'))} {r['chunking']}: {r['error']}"
              for r in failed]
    return "\n".join(lines) + "\n"


def _memory_section(results: dict) -> list[str]:
    cfg = results["config"]
    lines = [
        f"## Memory: iid Normal, {cfg['memory_dim']:,} dimensions, {cfg['chains']} chains, "
        f"{cfg['memory_tune']} tune", "",
        "Resident memory (RSS, MB) of each run's process, sampled every 10 ms; on CPU the "
        "device buffers live in the same RSS. **posterior**: the returned draws "
        "(`idata.posterior`). **setup**: peak RSS up to the compiled chunk program being ready, "
        "minus RSS just before the `hj.sample` call (model lowering, starting points, "
        "compilation). **loop growth**: peak RSS during the chunk loop and the building of the "
        "InferenceData, minus that setup peak. **peak added**: the process's peak RSS minus "
        "RSS before the call. **device per chunk call**: XLA's memory analysis of the compiled "
        "chunk program (arguments + outputs + temporaries, per device), what a GPU would hold "
        "at once; **draws out** is the outputs part.", "",
        "| draws | chunking | chunk size | calls | posterior | setup | loop growth "
        "| peak added | device per chunk call | draws out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["memory"]:
        if "error" in r:
            lines.append(f"| {r['draws']} | {r['chunking']} | failed: {r['error']} |||||||")
            continue
        lines.append(f"| {r['draws']} | {r['chunking']} | {r['chunk_size']} | {r['chunks']} "
                     f"| {_num(r['posterior_mb'], 0)} | {_num(r['setup_mb'], 0)} "
                     f"| {_num(r['loop_growth_mb'], 0)} | {_num(r['peak_added_mb'], 0)} "
                     f"| {_num(r['device_chunk_mb'], 1)} | {_num(r['device_output_mb'], 1)} |")
    return lines


# --- entry points ----------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-chunk", type=int, default=50)
    parser.add_argument("--memory-dim", type=int, default=10_000)
    parser.add_argument("--memory-tune", type=int, default=200)
    parser.add_argument("--memory-draws", type=int, nargs="*", default=[500, 1000, 2000],
                        help="draws of each memory run (none: skip the memory part)")
    parser.add_argument("--memory-chunks", type=int, nargs="*", default=[25, 50, 100],
                        help="extra chunk sizes tried at the first of --memory-draws")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--from-json", help="only rewrite chunking.md next to this chunking.json")
    parser.add_argument("--in-process", type=int, metavar="ROUNDS",
                        help="only time the loops in this process, ROUNDS alternations")
    parser.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--draws-file", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> int:
    """One run in this process; writes its result to ``args.result``."""
    warnings.simplefilter("ignore")
    logging.getLogger("hiddenjax").setLevel(logging.ERROR)
    cfg = Config(args.draws, args.tune, args.chains, args.seed, args.chunk_size or None)
    try:
        if args.worker == "time":
            result = measure_time(args.model, cfg, args.draws_file)
        else:
            result = measure_memory(args.dim, cfg)
        result["status"] = "ok"
    except Exception as err:  # noqa: BLE001  (every failure becomes a reported row)
        result = error_result(err)
    return write_result(args.result, result)


def report(args: argparse.Namespace, timing: list[dict], memory: list[dict],
           machine: dict) -> dict:
    """The JSON-ready results: configuration, raw runs and the derived tables."""
    keys = ("models", "draws", "tune", "chains", "seed", "repeats", "small_chunk",
            "memory_dim", "memory_tune", "memory_draws", "memory_chunks")
    return {"config": {k: getattr(args, k) for k in keys}, "machine": machine,
            "runs": timing + memory, "timing": timing_table(timing),
            "identity": compare_draws(timing), "memory": memory_table(memory)}


def main(argv: list[str] | None = None) -> dict:
    """Run the timing and memory parts, write ``OUT/chunking.json`` and ``.md``, return them.

    With ``--from-json PATH`` nothing runs: the markdown next to ``PATH`` is
    rewritten from it.
    """
    from benchmarks.fresh import worker_or_redraw
    from benchmarks.run import machine

    args = _parse(argv)
    if args.in_process:
        warnings.simplefilter("ignore")
        logging.getLogger("hiddenjax").setLevel(logging.ERROR)
        print("\n".join(in_process(args.models, args, args.in_process)))
        return {}
    redrawn = worker_or_redraw(args, worker, markdown)
    if redrawn is not None:
        return redrawn
    logs = Path(tempfile.mkdtemp(prefix="hiddenjax-chunking-"))
    print(f"worker logs, draws and compilation caches: {logs}")
    timing = run_timing(args.models, args, logs)
    memory = run_memory(args, logs)
    results = report(args, timing, memory, machine())
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    (out / "chunking.json").write_text(json.dumps(results, indent=1))
    (out / "chunking.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

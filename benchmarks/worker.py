"""One measurement in a fresh process: a (model, sampler) pair, or a model's gradient floor.

``benchmarks/run.py`` starts this module once per pair so that imports, JIT
caches and peak memory of one run never leak into another. The result is one
JSON object written to ``--result``; a failure is a result too (``status`` is
``"error"`` and ``error`` holds the message), never a missing row.

Usage: ``python -m benchmarks.worker --model arK --sampler pymc --result out.json``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

SAMPLERS = ("hiddenjax", "pymc", "nutpie", "numpyro", "blackjax")
"""Samplers a worker can run; ``floor`` measures the bare gradient instead."""

JAX_SAMPLERS = ("hiddenjax", "numpyro", "blackjax")


class Config(NamedTuple):
    """What to run, as given on the command line."""

    model: str
    """Benchmark model name (``benchmarks.models.MODELS``)."""
    sampler: str
    """One of ``SAMPLERS``, or ``floor``."""
    draws: int
    """Kept draws per chain."""
    tune: int
    """Warmup steps per chain."""
    chains: int
    """Number of chains."""
    seed: int
    """Random seed given to the sampler."""
    init: str = "auto"
    """hiddenjax's ``init`` (adaptation scheme); the peers use their own defaults."""


class Run(NamedTuple):
    """What a sampler adapter measured around its sampling call."""

    idata: object
    """The InferenceData the tool returned."""
    wall_s: float
    """Seconds of the sampling call, compilation included."""
    compile_s: float | None
    """Seconds spent compiling inside that call, where the tool lets us see it."""
    loop_s: float | None
    """Seconds inside the sampling loop (warmup and draws), compilation excluded."""
    warmup_grads_estimated: bool = False
    """Whether warmup gradient counts were extrapolated (the tool does not return them)."""
    phases: dict | None = None
    """Seconds per internal step of the call, where the tool's steps are timed."""


class CompileClock:
    """Wall-clock seconds JAX spends tracing, lowering and compiling (or loading from cache).

    Listens to JAX's own monitoring spans; overlapping spans (a jit traced
    inside another) are merged so no second is counted twice.
    """

    PREFIX = "/jax/core/compile/"

    def __init__(self) -> None:
        import jax.monitoring

        self.spans: list[tuple[float, float]] = []
        jax.monitoring.register_event_time_span_listener(self._record)

    def close(self) -> None:
        """Stop listening."""
        import jax.monitoring

        jax.monitoring.unregister_event_time_span_listener(self._record)

    def _record(self, event: str, start: float, end: float, **kwargs) -> None:
        if event.startswith(self.PREFIX):
            self.spans.append((start, end))

    def total(self, lo: float = -np.inf, hi: float = np.inf) -> float:
        """Seconds of compilation between ``lo`` and ``hi`` (``time.time()`` stamps)."""
        merged, busy = [], 0.0
        for start, end in sorted((max(s, lo), min(e, hi)) for s, e in self.spans):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            busy += end - start
        return busy


class Window:
    """Records when a wrapped function ran (``time.time()`` stamps) without changing it."""

    def __init__(self, owner, name: str) -> None:
        self.start = self.end = None
        self.seconds = 0.0
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            tic = time.time()
            self.start = tic if self.start is None else self.start
            try:
                return inner(*args, **kwargs)
            finally:
                self.end = time.time()
                self.seconds += self.end - tic

        setattr(owner, name, timed)


HIDDENJAX_PHASES = {
    "read and lower the model": ("hiddenjax.compile.cache", "compiled_model"),
    "initial points": ("hiddenjax.api", "_starts"),
    "run chains (compile + loop)": ("hiddenjax.execution.runner", "run_chains"),
    "build InferenceData": ("hiddenjax.api", "_inference_data"),
}
"""Internal steps of ``hj.sample`` timed for the start-time breakdown, where they exist."""


def _phase_windows() -> dict[str, Window]:
    """Timers around hiddenjax's internal steps; a step that was renamed is just not timed."""
    import importlib

    windows = {}
    for phase, (module, name) in HIDDENJAX_PHASES.items():
        try:
            owner = importlib.import_module(module)
        except ImportError:
            continue
        if callable(getattr(owner, name, None)):
            windows[phase] = Window(owner, name)
    return windows


def _run_hiddenjax(model, cfg: Config) -> Run:
    import hiddenjax as hj

    clock, phases = CompileClock(), _phase_windows()
    start = time.time()
    idata = hj.sample(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                      random_seed=cfg.seed, progressbar=False, compute_convergence_checks=False,
                      discard_tuned_samples=False, init=cfg.init)
    end = time.time()
    attrs = idata.posterior.attrs
    loop = float(attrs["sampling_time"]) - float(attrs.get("compile_time", 0.0))
    breakdown = {phase: w.seconds for phase, w in phases.items()}
    breakdown["chunk compile (compile_time attr)"] = float(attrs.get("compile_time", np.nan))
    return Run(idata, end - start, clock.total(start, end), loop, phases=breakdown)


def _run_pymc(model, cfg: Config) -> Run:
    import pymc as pm

    cores = min(cfg.chains, os.cpu_count() or 1)
    start = time.time()
    idata = pm.sample(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cores,
                      random_seed=cfg.seed, progressbar=False, compute_convergence_checks=False,
                      discard_tuned_samples=False)
    end = time.time()
    return Run(idata, end - start, None, float(idata.posterior.attrs["sampling_time"]))


def _run_nutpie(model, cfg: Config) -> Run:
    import nutpie

    start = time.time()
    compiled = nutpie.compile_pymc_model(model)
    compiled_at = time.time()
    idata = nutpie.sample(compiled, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                          seed=cfg.seed, progress_bar=False)
    end = time.time()
    return Run(idata, end - start, compiled_at - start, end - compiled_at)


def _run_pymc_jax(model, cfg: Config, nuts_sampler: str) -> Run:
    import pymc as pm
    import pymc.sampling.jax as pmjax

    clock = CompileClock()
    window = Window(pmjax, f"_sample_{nuts_sampler}_nuts")
    start = time.time()
    idata = pm.sample(model=model, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                      random_seed=cfg.seed, progressbar=False, compute_convergence_checks=False,
                      nuts_sampler=nuts_sampler)
    end = time.time()
    loop = window.end - window.start - clock.total(window.start, window.end)
    return Run(idata, end - start, clock.total(start, end), loop, warmup_grads_estimated=True)


ADAPTERS: dict[str, Callable] = {
    "hiddenjax": _run_hiddenjax,
    "pymc": _run_pymc,
    "nutpie": _run_nutpie,
    "numpyro": lambda model, cfg: _run_pymc_jax(model, cfg, "numpyro"),
    "blackjax": lambda model, cfg: _run_pymc_jax(model, cfg, "blackjax"),
}


def _min_bulk_ess(idata, names: list[str]) -> tuple[float, str]:
    import arviz as az

    ess = az.ess(idata.posterior[names], method="bulk")
    worst = {name: float(np.nanmin(ess[name].values)) for name in names}
    name = min(worst, key=worst.get)
    return worst[name], name


def _gradients(idata, group: str) -> int | None:
    stats = idata.get(group) if hasattr(idata, "get") else getattr(idata, group, None)
    if stats is None or "n_steps" not in stats:
        return None
    return int(stats["n_steps"].values.sum())


def summarise(model, run: Run, cfg: Config) -> dict:
    """The metrics of one finished run (see benchmarks/README.md for their meaning)."""
    names = [rv.name for rv in model.free_RVs]
    ess, worst = _min_bulk_ess(run.idata, names)
    kept = _gradients(run.idata, "sample_stats")
    warm = _gradients(run.idata, "warmup_sample_stats")
    if warm is None and kept is not None and cfg.draws:
        warm = round(kept * cfg.tune / cfg.draws)
    total = None if kept is None or warm is None else kept + warm
    lanes = min(cfg.chains, os.cpu_count() or 1)
    stats = run.idata.sample_stats
    return {
        "wall_s": run.wall_s,
        "compile_s": run.compile_s,
        "loop_s": run.loop_s,
        "start_s": None if run.loop_s is None else run.wall_s - run.loop_s,
        "ess_bulk_min": ess,
        "ess_worst_variable": worst,
        "ess_per_s": ess / run.wall_s,
        "grads_kept": kept,
        "grads_warmup": warm,
        "grads_warmup_estimated": run.warmup_grads_estimated,
        "ess_per_1000_grads": None if not kept else 1000.0 * ess / kept,
        "lanes": lanes,
        "s_per_grad": None if not total or run.loop_s is None else run.loop_s * lanes / total,
        "divergences": int(stats["diverging"].values.sum()) if "diverging" in stats else None,
        "mean_step_size": float(stats["step_size"].values.mean()) if "step_size" in stats else None,
        "phases": run.phases,
    }


def _flat_logdensity(model):
    """``(logdensity(theta, data), theta0, data, source)`` for one flat position.

    hiddenjax's own lowering when it works; PyMC's JAX lowering otherwise, so a
    model hiddenjax cannot compile still gets a floor.
    """
    import jax.numpy as jnp

    point = model.initial_point()
    try:
        from hiddenjax.compile.model_functions import compile_model
        from hiddenjax.model import extract_model_graph

        graph = extract_model_graph(model)
        compiled = compile_model(graph)
        theta = graph.layout.ravel(point)
        data = tuple(jnp.asarray(d) for d in graph.data_values)
        return compiled.logdensity, jnp.asarray(theta), data, "hiddenjax"
    except Exception as err:  # noqa: BLE001  (any lowering failure falls back)
        warnings.warn(f"hiddenjax lowering failed ({err!r}); floor uses PyMC's JAX lowering")
    from pymc.sampling.jax import get_jaxified_logp

    logp = get_jaxified_logp(model, negative_logp=False)
    names = [v.name for v in model.value_vars]
    shapes = [np.shape(point[n]) for n in names]
    sizes = [int(np.prod(s, dtype=int)) for s in shapes]
    bounds = np.cumsum([0, *sizes])

    def logdensity(theta, data):
        return logp([theta[lo:hi].reshape(s) for lo, hi, s in zip(bounds[:-1], bounds[1:], shapes)])

    theta = np.concatenate([np.asarray(point[n], float).ravel() for n in names])
    return logdensity, jnp.asarray(theta), (), "pymc-jax"


def measure_floor(model) -> dict:
    """Seconds of one bare jitted value-and-gradient call, and of one inside a compiled loop."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    logdensity, theta, data, source = _flat_logdensity(model)
    value_and_grad = jax.jit(jax.value_and_grad(logdensity))
    jax.block_until_ready(value_and_grad(theta, data))
    times, budget = [], time.perf_counter() + 1.0
    while len(times) < 20 or (time.perf_counter() < budget and len(times) < 20_000):
        tic = time.perf_counter()
        jax.block_until_ready(value_and_grad(theta, data))
        times.append(time.perf_counter() - tic)
    bare = float(np.median(times))

    def body(position, _):
        value, grad = jax.value_and_grad(logdensity)(position, data)
        # A tiny step that depends on the gradient keeps XLA from hoisting the call.
        return position + 1e-12 * jnp.tanh(grad), value

    length = int(np.clip(0.3 / bare, 50, 100_000))
    loop = jax.jit(lambda position: jax.lax.scan(body, position, None, length=length))
    jax.block_until_ready(loop(theta))
    best = np.inf
    for _ in range(3):
        tic = time.perf_counter()
        jax.block_until_ready(loop(theta))
        best = min(best, time.perf_counter() - tic)
    return {"dim": int(theta.size), "bare_call_s": bare, "loop_floor_s": best / length,
            "floor_source": source}


def _peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"peak_rss_mb": own, "children_peak_rss_mb": children}


def _error(err: BaseException) -> dict:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return {"status": "error", "error": f"{type(err).__name__}: {first}"[:400],
            "traceback": traceback.format_exc()[-4000:]}


def measure(cfg: Config) -> dict:
    """Run one configuration and return its JSON-ready result (errors included)."""
    from benchmarks.models import build

    result = {**cfg._asdict(), "status": "ok", "cache_dir": os.environ.get("HIDDENJAX_CACHE_DIR")}
    if cfg.sampler in JAX_SAMPLERS:
        import jax  # noqa: F401  (started before the clock so its import is not timed)
    try:
        model = build(cfg.model)
        if cfg.sampler == "floor":
            result.update(measure_floor(model))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = ADAPTERS[cfg.sampler](model, cfg)
            result.update(summarise(model, run, cfg))
    except Exception as err:  # noqa: BLE001  (every failure becomes a reported row)
        result.update(_error(err))
    result.update(_peak_rss_mb())
    return result


def _parse(argv: list[str]) -> tuple[Config, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sampler", required=True, choices=(*SAMPLERS, "floor"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--result", required=True, help="path of the JSON result to write")
    args = parser.parse_args(argv)
    cfg = Config(args.model, args.sampler, args.draws, args.tune, args.chains, args.seed)
    return cfg, args.result


def main(argv: list[str] | None = None) -> int:
    cfg, path = _parse(sys.argv[1:] if argv is None else argv)
    result = measure(cfg)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())

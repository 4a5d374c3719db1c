"""Compile time of a log-density and its gradient: hiddenjax, PyTensor's JAX mode and C backend.

Run::

    .venv/bin/python -m benchmarks.compile_time [--repeats 3] [--out FILE]

Every (model, backend, repeat) runs in a fresh Python process with empty
caches: a new PyTensor compile directory (``PYTENSOR_FLAGS=compiledir=...``) and
a new hiddenjax persistent-compilation folder (``HIDDENJAX_CACHE_DIR``). The
time runs from a built ``pm.Model`` (imports and model building excluded) to
the first value and gradient at PyMC's initial point, so it includes reading
the model, PyTensor's graph rewrites, lowering, and JAX's or the C compiler's
compilation:

- ``hiddenjax``: ``extract_model_graph`` + ``compile_model``, then
  ``jax.jit(jax.value_and_grad(logdensity))`` called once.
- ``pytensor-jax`` and ``pytensor-c``: ``model.logp_dlogp_function(mode=...)``
  (what ``pm.sample`` builds) with ``mode="JAX"`` or ``"FAST_RUN"``, called once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

BACKENDS = ("hiddenjax", "pytensor-jax", "pytensor-c")


def eight_schools():
    import pymc as pm

    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta_raw = pm.Normal("theta_raw", 0.0, 1.0, shape=8)
        pm.Normal("y", mu + tau * theta_raw, sigma, observed=y)
    return model


def hierarchical_regression(n_groups: int = 8, rows_per_group: int = 1000, seed: int = 3):
    """Varying intercepts and slopes, ``n_groups`` groups of ``rows_per_group`` rows."""
    import pymc as pm

    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_groups), rows_per_group)
    x = rng.normal(size=group.size)
    y = rng.normal(1.0, 0.5, n_groups)[group] + rng.normal(0.5, 0.2, n_groups)[group] * x
    y = y + rng.normal(0.0, 0.7, size=group.size)
    with pm.Model(coords={"group": np.arange(n_groups)}) as model:
        mu_a, mu_b = pm.Normal("mu_a", 0.0, 2.0), pm.Normal("mu_b", 0.0, 2.0)
        sigma_a, sigma_b = pm.HalfNormal("sigma_a", 1.0), pm.HalfNormal("sigma_b", 1.0)
        a = pm.Normal("a", mu_a, sigma_a, dims="group")
        b = pm.Normal("b", mu_b, sigma_b, dims="group")
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", a[group] + b[group] * x, sigma, observed=y)
    return model


def random_walk(steps: int = 500, seed: int = 4):
    """A latent 500-step Gaussian random walk observed with noise."""
    import pymc as pm

    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(0.0, 0.3, size=steps)) + rng.normal(0.0, 0.5, size=steps)
    with pm.Model() as model:
        sigma_w = pm.HalfNormal("sigma_w", 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        walk = pm.GaussianRandomWalk(
            "walk", sigma=sigma_w, init_dist=pm.Normal.dist(0.0, 1.0), steps=steps - 1
        )
        pm.Normal("y", walk, sigma, observed=y)
    return model


MODELS: dict[str, tuple[Callable, str]] = {
    "eight_schools": (eight_schools, "eight schools, non-centred (10 parameters)"),
    "hierarchical_8x1000": (
        hierarchical_regression,
        "varying intercepts and slopes, 8 groups x 1000 rows (21 parameters)",
    ),
    "random_walk_500": (random_walk, "500-step GaussianRandomWalk, Normal observations "
                                     "(502 parameters)"),
}


def _hiddenjax_seconds(model) -> float:
    from hiddenjax.execution.devices import configure

    configure("float64")
    import jax

    from hiddenjax.compile.model_functions import compile_model
    from hiddenjax.model import current_data, extract_model_graph

    point = model.initial_point()
    start = time.perf_counter()
    graph = extract_model_graph(model)
    compiled = compile_model(graph)
    theta = graph.layout.ravel(point)
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    value, grad = value_and_grad(theta, current_data(graph))
    jax.block_until_ready((value, grad))
    seconds = time.perf_counter() - start
    if not np.isfinite(float(value)):
        raise RuntimeError(f"hiddenjax log-density is {float(value)} at the initial point")
    return seconds


def _pytensor_seconds(model, mode: str) -> float:
    point = model.initial_point()
    start = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    value, grad = fn(_ravel(fn, point))
    seconds = time.perf_counter() - start
    if not np.isfinite(float(value)):
        raise RuntimeError(f"{mode} log-density is {float(value)} at the initial point")
    return seconds


def _ravel(fn, point) -> np.ndarray:
    return np.concatenate([np.asarray(point[v.name], "float64").ravel() for v in fn._grad_vars])


def worker(model_name: str, backend: str) -> None:
    """Measure one (model, backend) pair in this process; print one JSON line."""
    model = MODELS[model_name][0]()
    if backend == "hiddenjax":
        seconds = _hiddenjax_seconds(model)
    else:
        seconds = _pytensor_seconds(model, "JAX" if backend == "pytensor-jax" else "FAST_RUN")
    print(json.dumps({"model": model_name, "backend": backend, "seconds": seconds}))


def _run_one(model_name: str, backend: str, timeout: int) -> float:
    with tempfile.TemporaryDirectory() as pytensor_dir, tempfile.TemporaryDirectory() as xla_dir:
        env = dict(os.environ)
        env["PYTENSOR_FLAGS"] = f"compiledir={pytensor_dir}"
        env["HIDDENJAX_CACHE_DIR"] = xla_dir
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.compile_time", "--worker", model_name, backend],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"{model_name} / {backend} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def _table(results: dict, repeats: int) -> str:
    lines = [
        "| model | " + " | ".join(f"{b} (s)" for b in BACKENDS) + " |",
        "|---|" + "---:|" * len(BACKENDS),
    ]
    for name, (_, description) in MODELS.items():
        cells = []
        for backend in BACKENDS:
            times = results[name][backend]
            cells.append(f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})")
        lines.append(f"| `{name}`: {description} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nMedian of {repeats} fresh processes (min-max in brackets).\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per process")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return
    results = {name: {b: [] for b in BACKENDS} for name in MODELS}
    for repeat in range(args.repeats):
        for name in MODELS:
            for backend in BACKENDS:
                seconds = _run_one(name, backend, args.timeout)
                results[name][backend].append(seconds)
                print(f"{name:22} {backend:13} run {repeat + 1}: {seconds:6.2f} s", flush=True)
    table = _table(results, args.repeats)
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(f"<!-- {platform.platform()}, {os.cpu_count()} CPUs -->\n{table}")


if __name__ == "__main__":
    main()

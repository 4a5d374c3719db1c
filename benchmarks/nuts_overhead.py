"""What one NUTS leaf costs beyond its gradient, by dimension and number of chains.

Usage::

    python -m benchmarks.nuts_overhead [--dims 10 100 1000] [--chains 1 4]
                                       [--transitions 500] [--repeats 5]

The target is an iid Gaussian with scales spread over ``[0.5, 2]`` and the
matching diagonal metric, so its gradient costs next to nothing and every
microsecond measured is the sampler's own: leapfrog arithmetic, multinomial
sampling, U-turn checks and loop bookkeeping. Chains run vectorised (``vmap``) in one compiled scan
of ``--transitions`` NUTS transitions, as ``hj.sample`` runs them on one
device. Reported: best-of-``--repeats`` wall time per leaf the vectorised loop
runs (a leaf of all chains at once) and the mean number of leaves per
transition. Prints one line per configuration; nothing is written.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def measure(dim: int, chains: int, transitions: int, repeats: int) -> tuple[float, float]:
    """``(seconds per vectorised leaf, mean leaves per transition)``."""
    import jax
    import jax.numpy as jnp

    import hiddenjax  # noqa: F401  (float64 and host devices, as in hj.sample)
    from hiddenjax.samplers.nuts import build_kernel, init

    scale = jnp.linspace(0.5, 2.0, dim)

    def logdensity(x):
        return -0.5 * jnp.sum((x / scale) ** 2)

    kernel = build_kernel(logdensity)
    step_size = 0.9 / dim**0.25

    def chain(key, x):
        def body(state, k):
            state, info = kernel(k, state, step_size, scale**2)
            return state, info.n_steps

        return jax.lax.scan(body, init(x, logdensity), jax.random.split(key, transitions))[1]

    run = jax.jit(jax.vmap(chain))
    keys = jax.random.split(jax.random.key(0), chains)
    start = jnp.ones((chains, dim))
    steps = np.asarray(run(keys, start))
    best = np.inf
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(run(keys, start))
        best = min(best, time.perf_counter() - tic)
    return best / steps.max(axis=0).sum(), float(steps.mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--transitions", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for dim in args.dims:
        for chains in args.chains:
            per_leaf, leaves = measure(dim, chains, args.transitions, args.repeats)
            print(f"dim {dim:5d}  chains {chains}  {per_leaf * 1e6:8.2f} us per leaf  "
                  f"({leaves:.1f} leaves per transition)", flush=True)


if __name__ == "__main__":
    main()

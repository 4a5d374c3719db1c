"""What a low-rank window end costs on the host: ``final`` by dimension, draws and chains.

Usage::

    python -m benchmarks.window_end [--dims 10 89 200] [--draws 10 50 500] [--chains 4]
                                    [--repeats 3]

At each window end the execution layer copies the chains' states to the host and
the low-rank scheme (``hiddenjax.samplers.mass_matrix.low_rank``) computes every
chain's metric at once in numpy (LAPACK): a QR factorisation of the window's span
when it is smaller than the space, a Cholesky factor and two symmetric
eigendecompositions. The window here holds draws of a correlated Gaussian and their
exact gradients; the buffer has 500 rows, as in a 1000-step warmup. Reported per
(dimension, draws): the best-of-``--repeats`` seconds of one ``final`` call over
``--chains`` chains. Prints one line per configuration; nothing is written.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _window(adapt, n_dim: int, n_draws: int, seed: int):
    """A low-rank window state fed ``n_draws`` Gaussian draws and their gradients."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    root = np.tril(rng.normal(size=(n_dim, n_dim))) / np.sqrt(n_dim) + np.eye(n_dim)
    covariance = root @ root.T
    draws = rng.normal(size=(n_draws, n_dim)) @ root.T
    gradients = -np.linalg.solve(covariance, draws.T).T

    def feed(state, xg):
        return adapt.update(state, xg[0], xg[1]), None

    return jax.lax.scan(feed, adapt.init(n_dim), (jnp.asarray(draws), jnp.asarray(gradients)))[0]


def measure(n_dim: int, n_draws: int, repeats: int, chains: int = 4, buffer: int = 500) -> dict:
    """Seconds of one ``final`` call over ``chains`` chains' windows, and per chain."""
    import jax

    import hiddenjax  # noqa: F401  (float64, as in hj.sample)
    from hiddenjax.samplers.mass_matrix import low_rank

    adapt = low_rank(n_dim, buffer)
    states = [_window(adapt, n_dim, n_draws, seed=n_dim + n_draws + c) for c in range(chains)]
    together = jax.tree.map(lambda *x: np.stack([np.asarray(a) for a in x]), *states)
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        metric = adapt.final(together)
        best = min(best, time.perf_counter() - started)
    return {"final_s": best, "per_chain_s": best / chains,
            "rank_used": int(np.sum(np.asarray(metric.values) != 1.0))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 89, 200])
    parser.add_argument("--draws", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for dim in args.dims:
        for draws in args.draws:
            out = measure(dim, draws, args.repeats, args.chains)
            print(f"dim {dim:4d}  draws {draws:4d}  final over {args.chains} chains "
                  f"{out['final_s'] * 1e3:7.2f} ms  ({out['per_chain_s'] * 1e3:.2f} ms a chain)",
                  flush=True)


if __name__ == "__main__":
    main()

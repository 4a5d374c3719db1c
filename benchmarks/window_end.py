"""What a low-rank window end costs: the metric's eigendecompositions, by dimension and draws.

Usage::

    python -m benchmarks.window_end [--dims 10 89] [--draws 10 50 500] [--repeats 3]

At each window end the low-rank scheme (``hiddenjax.samplers.mass_matrix.low_rank``)
decomposes two matrices with plain-JAX Jacobi (``samplers.linalg``), after a
Cholesky factorisation. The window
here holds draws of a correlated Gaussian and their exact gradients, scaled as the
sampler scales them; the buffer has 500 rows, as in a 1000-step warmup. Reported per
(dimension, draws): best-of-``--repeats`` seconds of one ``final`` call (one chain),
and the Jacobi sweeps each of its two decompositions took at the scheme's
tolerance and at rounding level. Prints one line per configuration; nothing is
written. The compile time of ``final`` is printed once per dimension.
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


def _sweeps(matrix, tolerance) -> int:
    """Jacobi sweeps ``samplers.linalg`` takes on ``matrix`` down to ``tolerance``."""
    import jax
    import jax.numpy as jnp

    from hiddenjax.samplers import linalg

    n = matrix.shape[0]
    m = n + n % 2
    a = np.zeros((m, m))
    a[:n, :n] = matrix
    limit = (tolerance or m * np.finfo(float).eps) * np.linalg.norm(a)
    state = (jnp.asarray(a), jnp.eye(m), jnp.arange(m) >= n)
    one_sweep = jax.jit(lambda s: jax.lax.scan(linalg._rotate, s, None, length=m - 1)[0])
    for sweep in range(1, 41):
        state = one_sweep(state)
        if np.sqrt(float(linalg._off_diagonal(state[0]))) <= limit:
            return sweep
    return 40


def _matrices(state, scale):
    """The two matrices ``final`` decomposes, built in numpy from the window:
    ``L^T a L`` (``b = L L^T``) and ``sigma``."""
    from scipy.linalg import sqrtm

    from hiddenjax.samplers.mass_matrix import LOW_RANK_GAMMA, _scaled_window

    draws, gradients, filled = (np.asarray(x) for x in _scaled_window(state, scale))
    n = max(float(filled), 1.0)
    ridge = n * LOW_RANK_GAMMA * np.eye(draws.shape[1])
    a, b = draws.T @ draws / n + ridge, gradients.T @ gradients / n + ridge
    lower = np.linalg.cholesky(b)
    middle = lower.T @ a @ lower
    inverse = np.linalg.inv(lower)
    sigma = inverse.T @ np.real(sqrtm(middle)) @ inverse
    return middle, 0.5 * (sigma + sigma.T)


def measure(n_dim: int, n_draws: int, repeats: int, buffer: int = 500) -> dict:
    """Seconds of one ``final`` call and the sweeps of its two decompositions."""
    import jax
    import jax.numpy as jnp

    import hiddenjax  # noqa: F401  (float64, as in hj.sample)
    from hiddenjax.samplers.mass_matrix import EIGH_TOLERANCE, _gradient_diagonal, low_rank

    adapt = low_rank(n_dim, buffer)
    state = _window(adapt, n_dim, n_draws, seed=n_dim + n_draws)
    final = jax.jit(adapt.final)
    started = time.perf_counter()
    jax.block_until_ready(final(state))
    first = time.perf_counter() - started
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(final(state))
        best = min(best, time.perf_counter() - started)
    scale = jnp.sqrt(_gradient_diagonal(state.moments))
    matrices = _matrices(state, scale)
    return {
        "first_call_s": first,
        "final_s": best,
        "sweeps": [_sweeps(m, EIGH_TOLERANCE) for m in matrices],
        "sweeps_at_rounding": [_sweeps(m, None) for m in matrices],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 89])
    parser.add_argument("--draws", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for dim in args.dims:
        for i, draws in enumerate(args.draws):
            out = measure(dim, draws, args.repeats)
            if i == 0:
                print(f"dim {dim:4d}  final compiles and runs in {out['first_call_s']:.2f} s",
                      flush=True)
            print(f"dim {dim:4d}  draws {draws:4d}  final {out['final_s'] * 1e3:7.2f} ms  "
                  f"sweeps (L^T a L, sigma) {out['sweeps']}, "
                  f"at rounding level {out['sweeps_at_rounding']}", flush=True)


if __name__ == "__main__":
    main()

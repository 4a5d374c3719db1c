"""Where the time of JAX's float64 normal draws goes, per draw.

Usage::

    python -m benchmarks.random_draws [--draws 4000000] [--repeats 5]

Posterior-predictive sampling of a model with many observations is mostly
drawing: 4 chains x 1000 draws x 1000 observations are 4 million normals.
This times, jitted on one device, best of ``--repeats``: ``jax.random.normal``
in float64 and float32, the random bits alone (threefry, 32 and 64 bits a draw),
the inverse error function alone (what turns bits into a normal), and, for
scale, a counter-based 64-bit hash (splitmix64's finaliser: what another
generator's bits would cost) and a Box-Muller transform of its bits. Prints
nanoseconds per draw; nothing is written. The counter hash is a yardstick only:
hiddenjax draws with JAX's generator.
"""

from __future__ import annotations

import argparse
import time


def _splitmix(seed, n: int):
    import jax.numpy as jnp

    z = seed + (jnp.arange(n, dtype=jnp.uint64) + jnp.uint64(1)) * jnp.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> jnp.uint64(30))) * jnp.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> jnp.uint64(27))) * jnp.uint64(0x94D049BB133111EB)
    return z ^ (z >> jnp.uint64(31))


def _box_muller(seed, n: int):
    import jax.numpy as jnp

    z = _splitmix(seed, n)
    u1 = ((z >> jnp.uint64(32)).astype(jnp.float64) + 1.0) / 4294967297.0
    u2 = (z & jnp.uint64(0xFFFFFFFF)).astype(jnp.float64) / 4294967296.0
    return jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2)


def measure(draws: int, repeats: int) -> dict[str, float]:
    """Nanoseconds per draw of each stage, best of ``repeats``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import hiddenjax  # noqa: F401  (float64, as in hj.sample_posterior_predictive)

    key = jax.random.key(0)
    stages = {
        "normal float64": (lambda k: jax.random.normal(k, (draws,), jnp.float64), key),
        "normal float32": (lambda k: jax.random.normal(k, (draws,), jnp.float32), key),
        "threefry bits, 64 a draw": (lambda k: jax.random.bits(k, (draws,), jnp.uint64), key),
        "threefry bits, 32 a draw": (lambda k: jax.random.bits(k, (draws,), jnp.uint32), key),
        "erf_inv float64": (lax.erf_inv, jnp.linspace(-0.999, 0.999, draws)),
        "splitmix64 hash (yardstick)": (lambda s: _splitmix(s, draws), jnp.uint64(1)),
        "Box-Muller of the hash": (lambda s: _box_muller(s, draws), jnp.uint64(1)),
    }
    out = {}
    for name, (fn, arg) in stages.items():
        fn = jax.jit(fn)
        jax.block_until_ready(fn(arg))
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            jax.block_until_ready(fn(arg))
            best = min(best, time.perf_counter() - started)
        out[name] = best / draws * 1e9
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for name, ns in measure(args.draws, args.repeats).items():
        print(f"{name:30s} {ns:6.1f} ns per draw", flush=True)


if __name__ == "__main__":
    main()

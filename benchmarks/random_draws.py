"""Where the time of float64 normal draws goes, per draw: JAX's and hiddenjax's.

Usage::

    python -m benchmarks.random_draws [--draws 4000000] [--repeats 15]

Posterior-predictive sampling of a model with many observations is mostly
drawing: 4 chains x 1000 draws x 1000 observations are 4 million normals.
This times, jitted on one device, best of ``--repeats`` (the stages take
turns): ``jax.random.normal``
in float64 and float32 from threefry keys, the random bits alone (threefry and
SplitMix64, hiddenjax's generator of forward draws, 32 and 64 bits a draw),
the two quantile functions that turn bits into a normal (JAX's ``erf_inv`` and
hiddenjax's AS241 ``normal_quantile``), the logarithm inside the quantile
(XLA's float64 ``log``, a C-library call per entry, and hiddenjax's
``log_positive``), hiddenjax's whole normal draw
(``standard_normal`` from a SplitMix64 key, as forward draws make it), the
same with XLA's ``log`` in its quantile, and, for
scale, a Box-Muller transform of SplitMix64 bits. Prints nanoseconds per draw;
nothing is written.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock


def _box_muller(key, n: int):
    import jax
    import jax.numpy as jnp

    z = jax.random.bits(key, (n,), jnp.uint64)
    u1 = ((z >> jnp.uint64(32)).astype(jnp.float64) + 1.0) / 4294967297.0
    u2 = (z & jnp.uint64(0xFFFFFFFF)).astype(jnp.float64) / 4294967296.0
    return jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2)


def measure(draws: int, repeats: int) -> dict[str, float]:
    """Nanoseconds per draw of each stage, best of ``repeats``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from hiddenjax.compile import prng
    from hiddenjax.compile.prng import (log_positive, normal_quantile, splitmix_key,
                                        standard_normal)
    from hiddenjax.execution.devices import configure

    configure("float64")  # as in hj.sample_posterior_predictive
    key = jax.random.key(0)
    splitmix = splitmix_key(jax.numpy.zeros(2, jnp.uint32))
    probabilities = jnp.linspace(0.0005, 0.9995, draws)
    stages = {
        "normal float64": (lambda k: jax.random.normal(k, (draws,), jnp.float64), key),
        "normal float32": (lambda k: jax.random.normal(k, (draws,), jnp.float32), key),
        "threefry bits, 64 a draw": (lambda k: jax.random.bits(k, (draws,), jnp.uint64), key),
        "threefry bits, 32 a draw": (lambda k: jax.random.bits(k, (draws,), jnp.uint32), key),
        "splitmix64 bits, 64 a draw": (lambda k: jax.random.bits(k, (draws,), jnp.uint64),
                                       splitmix),
        "erf_inv float64": (lambda p: lax.erf_inv(2 * p - 1), probabilities),
        "AS241 quantile float64": (normal_quantile, probabilities),
        "log float64 (XLA)": (jnp.log, probabilities),
        "log_positive float64": (log_positive, probabilities),
        "hiddenjax normal float64": (lambda k: standard_normal(k, (draws,), jnp.float64),
                                     splitmix),
        "Box-Muller of splitmix64 bits": (lambda k: _box_muller(k, draws), splitmix),
    }
    compiled = {}
    for name, (fn, arg) in stages.items():
        compiled[name] = jax.jit(fn).lower(arg).compile()
    # The normal draw as it was with XLA's own float64 log in the quantile.
    with mock.patch.object(prng, "log_positive", jnp.log):
        compiled["hiddenjax normal float64, XLA log"] = jax.jit(
            lambda k: standard_normal(k, (draws,), jnp.float64)).lower(splitmix).compile()
        stages["hiddenjax normal float64, XLA log"] = (None, splitmix)
    # Stages take turns, each repeat in the same order: this machine's speed
    # drifts between and within processes more than some differences here.
    best = dict.fromkeys(compiled, float("inf"))
    for _ in range(repeats):
        for name, fn in compiled.items():
            arg = stages[name][1]
            started = time.perf_counter()
            jax.block_until_ready(fn(arg))
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / draws * 1e9 for name, seconds in best.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    for name, ns in measure(args.draws, args.repeats).items():
        print(f"{name:34s} {ns:6.1f} ns per draw", flush=True)


if __name__ == "__main__":
    main()

"""The random-draws benchmark runs on a tiny configuration; no timing is checked."""

from benchmarks import random_draws


def test_times_every_stage_of_a_normal_draw():
    out = random_draws.measure(draws=1000, repeats=1)
    assert {"normal float64", "threefry bits, 64 a draw", "erf_inv float64",
            "splitmix64 bits, 64 a draw", "AS241 quantile float64",
            "hiddenjax normal float64", "log_positive float64",
            "hiddenjax normal float64, XLA log"} <= set(out)
    assert all(ns > 0 for ns in out.values())


def test_the_yardstick_transform_gives_standard_normals():
    import jax
    import numpy as np

    from hiddenjax.compile.prng import splitmix_key
    from hiddenjax.execution.devices import configure

    configure("float64")
    z = np.asarray(random_draws._box_muller(splitmix_key(jax.numpy.array([0, 7], "uint32")),
                                            100_000))
    # Monte-Carlo error of the mean and variance at 100,000 draws: 0.0032 and 0.0045.
    assert abs(z.mean()) < 5 * 0.0032 and abs(z.var() - 1.0) < 5 * 0.0045

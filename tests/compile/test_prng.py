"""SplitMix64 keys and the AS241 normal quantile of forward draws.

Statistical checks use fixed seeds; each rejects a correct generator with
probability ALPHA (two-sided), so the file as a whole fails by chance about
once in a hundred thousand runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from hiddenjax.compile import prng
from hiddenjax.execution.devices import configure

ALPHA = 1e-6
Z = stats.norm.isf(ALPHA / 2)
"""Two-sided normal critical value at ALPHA."""
MASK = (1 << 64) - 1


@pytest.fixture(autouse=True, scope="module")
def _x64():
    configure("float64")


def _reference_splitmix64(seed: int, n: int) -> list[int]:
    """Steele, Lea and Flood's SplitMix64, in Python integers: the published algorithm."""
    out = []
    for _ in range(n):
        seed = (seed + 0x9E3779B97F4A7C15) & MASK
        z = seed
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def _bits(raw, shape, bit_width=64):
    dtype = {64: jnp.uint64, 32: jnp.uint32, 8: jnp.uint8}[bit_width]
    return np.asarray(jax.random.bits(prng.splitmix_key(jnp.asarray(raw, jnp.uint32)), shape, dtype))


def test_bits_are_the_published_splitmix64_stream():
    # The first outputs from seed 0 are the ones every SplitMix64 implementation gives.
    assert _reference_splitmix64(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                           0x06C45D188009454F]
    for raw in ([0, 0], [0x12345678, 0x9ABCDEF0], [0xFFFFFFFF, 0xFFFFFFFF]):
        seed = (raw[0] << 32) | raw[1]
        assert _bits(raw, (5,)).tolist() == _reference_splitmix64(seed, 5)


def test_narrow_bits_are_the_high_bits():
    wide = _bits([3, 4], (6,))
    assert _bits([3, 4], (6,), 32).tolist() == (wide >> 32).tolist()
    assert _bits([3, 4], (6,), 8).tolist() == (wide >> 56).tolist()


def test_every_bit_is_balanced():
    n = 200_000
    words = _bits([7, 11], (n,))
    ones = np.array([np.count_nonzero((words >> np.uint64(b)) & np.uint64(1)) for b in range(64)])
    z = (ones - n / 2) / np.sqrt(n / 4)
    # 64 tests, so each at ALPHA / 64.
    assert np.all(np.abs(z) < stats.norm.isf(ALPHA / 128)), z


def _uniforms(key, n):
    return np.asarray(jax.random.uniform(key, (n,), jnp.float64))


def test_split_and_folded_keys_give_uncorrelated_streams():
    n = 50_000
    key = prng.splitmix_key(jnp.asarray([5, 6], jnp.uint32))
    children = jax.random.split(key, 3)
    streams = [_uniforms(key, n), *(_uniforms(k, n) for k in children),
               _uniforms(jax.random.fold_in(key, 0), n), _uniforms(jax.random.fold_in(key, 1), n)]
    for i in range(len(streams)):
        for j in range(i):
            r = np.corrcoef(streams[i], streams[j])[0, 1]
            assert abs(r) * np.sqrt(n) < Z, (i, j, r)
        # Neighbours in one stream too.
        r = np.corrcoef(streams[i][1:], streams[i][:-1])[0, 1]
        assert abs(r) * np.sqrt(n) < Z, (i, r)


def test_log_positive_is_within_one_ulp_of_the_c_library():
    rng = np.random.default_rng(5)
    tiny = np.finfo(np.float64).tiny
    x = np.concatenate([
        rng.uniform(size=200_000),
        np.exp(rng.uniform(-708, 709, 200_000)),
        1.0 + rng.normal(size=50_000) * 1e-9,  # log near 0: relative accuracy counts
        2.0 ** np.arange(-1022, 1024, dtype=float),
        np.sqrt(2.0) * np.array([1.0, 1.0 + 2**-52, 1.0 - 2**-52]),
        [tiny, 1.0, np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0), np.finfo(np.float64).max],
    ])
    ours = np.asarray(jax.jit(prng.log_positive)(x))
    exact = np.log(x)
    ulps = np.abs(ours - exact) / np.spacing(np.abs(exact))
    ulps[exact == 0] = np.abs(ours[exact == 0]) / np.spacing(0.0)
    assert ulps.max() <= 1.0, x[np.argmax(ulps)]


def test_normal_quantile_matches_scipy():
    p = np.concatenate([
        2.0 ** -np.arange(1, 54, dtype=float),  # down to the smallest uniform drawn
        np.linspace(0.001, 0.999, 9_991),
        [0.075, 0.0750000001, 0.925, 0.5, 1e-11, 1.4e-11, 1.5e-11],
    ])
    p = np.concatenate([p, 1 - p])
    ours = np.asarray(jax.jit(prng.normal_quantile)(p))
    exact = special.ndtri(p)
    np.testing.assert_allclose(ours, exact, rtol=1e-14, atol=1e-300)


def test_standard_normal_is_exactly_symmetric_and_bounded():
    # Uniforms are midpoints (k + 1/2) / 2**52, exact in float64 and symmetric about
    # 1/2: k and 2**52-1-k give draws of opposite sign and equal size.
    k = np.array([0, 1, 2**20, 2**51 - 1, 2**51, 2**51 + 12345, 2**52 - 1], dtype=np.uint64)
    u = (k.astype(np.float64) + 0.5) * 2.0**-52
    mirrored = ((2**52 - 1 - k).astype(np.float64) + 0.5) * 2.0**-52
    np.testing.assert_array_equal(u, 1 - mirrored)
    np.testing.assert_array_equal(np.asarray(prng.normal_quantile(u)),
                                  -np.asarray(prng.normal_quantile(mirrored)))
    extreme = np.asarray(prng.normal_quantile(u[[0, -1]]))
    np.testing.assert_allclose(extreme, special.ndtri(u[[0, -1]]), rtol=1e-14)
    assert 8 < extreme[-1] < 8.3


@pytest.mark.parametrize("raw_key", [False, True])
def test_standard_normal_draws_are_standard_normal(raw_key):
    n = 200_000
    key = jnp.asarray([8, 9], jnp.uint32)
    key = key if raw_key else prng.splitmix_key(key)  # threefry keys work too
    x = np.asarray(prng.standard_normal(key, (n,), jnp.float64))
    assert stats.kstest(x, "norm").pvalue > ALPHA
    assert abs(x.mean()) * np.sqrt(n) < Z
    # var of the sample variance of a normal is 2 / n.
    assert abs(x.var() - 1) / np.sqrt(2 / n) < Z


def test_float32_draws_are_rounded_float64_draws():
    key = prng.splitmix_key(jnp.asarray([1, 2], jnp.uint32))
    x32 = prng.standard_normal(key, (100,), jnp.float32)
    assert x32.dtype == jnp.float32
    np.testing.assert_array_equal(
        np.asarray(x32), np.asarray(prng.standard_normal(key, (100,), jnp.float64)).astype(np.float32))

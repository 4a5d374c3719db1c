"""hiddenjax's random-bit generator: SplitMix64, counter-based.

Forward programs (prior and posterior predictive draws) are mostly drawing:
4 chains x 1000 draws of 1000 observations are 4 million normals. JAX's default
generator, threefry, makes the 64 random bits of a float64 normal in about
8 ns on this project's CPU, half of the normal's 14 ns; the other half is the
quantile that turns bits into a normal (``python -m benchmarks.random_draws``).
SplitMix64 (Steele, Lea and Flood 2014; Java's ``SplittableRandom``) makes
them in about 0.2 ns: output ``i`` of the stream seeded at ``s`` is
``mix64(s + i * GAMMA)``, a bijective 64-bit finaliser of a Weyl sequence,
which passes the BigCrush test battery. Being counter-based, it vectorises
like threefry: a key's bits are a pure function of the key and the index.
Its few operations also make smaller programs than threefry's twenty rounds,
which XLA compiles faster: the sampler's chains draw with it too (momenta,
directions, one uniform a leaf).

A key is the same ``uint32[2]`` as a raw JAX key, read as one 64-bit seed, so
callers keep passing raw keys; :func:`splitmix_key` gives them this generator
inside a program. Splitting and folding in mix the seed with a constant of
their own, so a child's stream is not a shift of its parent's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

GAMMA = np.uint64(0x9E3779B97F4A7C15)
"""The Weyl increment: 2**64 over the golden ratio, odd."""
_SPLIT = np.uint64(0x6A09E667F3BCC909)
_FOLD = np.uint64(0xBB67AE8584CAA73B)
_UINTS = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}


def mix64(z: jax.Array) -> jax.Array:
    """SplitMix64's finaliser (Stafford's variant 13): a bijection of ``uint64``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _seed64(key: jax.Array) -> jax.Array:
    """A ``uint32[..., 2]`` key as one ``uint64`` seed (first word high)."""
    key = jnp.asarray(key, jnp.uint32)
    return (key[..., 0].astype(jnp.uint64) << np.uint64(32)) | key[..., 1].astype(jnp.uint64)


def _key(seed: jax.Array) -> jax.Array:
    """A ``uint64`` seed as a ``uint32[..., 2]`` key (inverse of :func:`_seed64`)."""
    return jnp.stack([(seed >> np.uint64(32)).astype(jnp.uint32), seed.astype(jnp.uint32)], -1)


def _stream(seed: jax.Array, n: int) -> jax.Array:
    """Outputs 1 to ``n`` of the SplitMix64 stream seeded at ``seed``."""
    return mix64(seed + jnp.arange(1, n + 1, dtype=jnp.uint64) * GAMMA)


def _seed(seed: jax.Array) -> jax.Array:
    return _key(mix64(jnp.asarray(seed).astype(jnp.uint64)))


def _split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    n = int(np.prod(shape))
    return _key(_stream(mix64(_seed64(key) ^ _SPLIT), n)).reshape((*shape, 2))


def _fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    return _key(mix64(_seed64(key) + mix64(jnp.asarray(data).astype(jnp.uint64) ^ _FOLD)))


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    bits = _stream(_seed64(key), int(np.prod(shape))).reshape(shape)
    if bit_width == 64:
        return bits
    return (bits >> np.uint64(64 - bit_width)).astype(_UINTS[bit_width])


SPLITMIX64 = define_prng_impl(key_shape=(2,), seed=_seed, split=_split,
                              random_bits=_random_bits, fold_in=_fold_in,
                              name="splitmix64", tag="sm64")
"""The generator as a JAX PRNG implementation (``impl=`` of ``jax.random`` functions)."""


# Wichura's algorithm AS241 (PPND16, Applied Statistics 37, 1988): the normal
# quantile to about 1e-16 relative, as rational functions of degree 7 in three
# regions of the probability.
_CENTRAL = ((3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
             13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
             33430.575583588128105, 2509.0809287301226727),
            (1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
             21213.794301586595867, 39307.89580009271061, 28729.085735721942674,
             5226.495278852545925))
_NEAR = ((1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
          3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177,
          0.0227238449892691845833, 7.7454501427834140764e-4),
         (1.0, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455,
          0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4,
          1.05075007164441684324e-9))
_FAR = ((6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358,
         0.29656057182850489123, 0.026532189526576123093, 0.0012426609473880784386,
         2.71155556874348757815e-5, 2.01033439929228813265e-7),
        (1.0, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525,
         7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7,
         2.04426310338993978564e-15))


def _rational(coefficients: tuple, x: jax.Array) -> jax.Array:
    """``p(x) / q(x)``, both given lowest degree first, by Horner's rule."""
    def horner(c):
        value = jnp.full_like(x, c[-1])
        for a in reversed(c[:-1]):
            value = value * x + a
        return value

    numerator, denominator = coefficients
    return horner(numerator) / horner(denominator)


# log(2) in two parts, the first with trailing zero bits, so that k * _LN2_HIGH
# is exact for the exponents k of float64.
_LN2_HIGH = 6.93147180369123816490e-01
_LN2_LOW = 1.90821492927058770002e-10
_SQRT2 = float(np.sqrt(2.0))
# 1 / v on [1 + sqrt(1/2), 1 + sqrt(2)]: the linear start alpha - beta * v whose
# relative error 1 - v * (alpha - beta * v) equioscillates (at the ends and the
# midpoint, about 0.0145), then four Newton steps, each squaring that error.
_V_LOW, _V_HIGH = 1.0 + 0.5 * _SQRT2, 1.0 + _SQRT2
_BETA = 2.0 / (_V_LOW * _V_HIGH + (_V_LOW + _V_HIGH) ** 2 / 4.0)
_ALPHA = _BETA * (_V_LOW + _V_HIGH)
_NEWTON_STEPS = 4
# log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.1716: the series
# 2 s (1 + s^2/3 + s^4/5 + ...) to s^22, whose first omitted term is under 1e-17
# of the sum.
_ATANH = tuple(2.0 / (2 * k + 1) for k in range(1, 12))


def log_positive(x: jax.Array) -> jax.Array:
    """Natural log of float64 ``x``, for positive normal numbers only (from about
    2.2e-308 up; zero, subnormal, infinite, negative and NaN entries give
    meaningless values), within 1 ulp.

    Other float types get ``jnp.log`` (XLA vectorises float32's itself).

    Additions, multiplications and selects only. XLA on CPU computes a float64
    ``log`` by calling the C library once per entry, which also keeps the
    loop around it from being vectorised. On this project's CPU this takes
    1.1 to 1.4 ns an entry against 2.2 to 2.7 for XLA's, and hiddenjax's
    normal draws 3.7 to 3.9 ns against 4.8 to 5.2 with XLA's ``log`` in the
    quantile (``python -m benchmarks.random_draws``, three runs).
    The method is the classic one: split ``x = 2**k m`` with ``m`` in
    ``[sqrt(1/2), sqrt(2))``, then ``log(m) = f - f^2/2 + s (f^2/2 + R(s^2))``
    with ``f = m - 1`` and the atanh series ``R``, whose leading terms are exact
    so the rounding of ``s`` barely reaches the result.
    """
    if x.dtype != jnp.float64:
        return jnp.log(x)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint64)
    # The exponent field as a float64, exactly: 2**52 + field, less 2**52 and the bias.
    k = jax.lax.bitcast_convert_type((bits >> np.uint64(52)) | np.uint64(0x4330000000000000),
                                     jnp.float64) - (2.0**52 + 1023.0)
    m = jax.lax.bitcast_convert_type((bits & np.uint64(0x000FFFFFFFFFFFFF))
                                     | np.uint64(0x3FF0000000000000), jnp.float64)
    high = m > _SQRT2
    f = jnp.where(high, 0.5 * m, m) - 1.0
    k = jnp.where(high, k + 1.0, k)
    v = 2.0 + f
    inverse = _ALPHA - _BETA * v
    for _ in range(_NEWTON_STEPS):
        inverse = inverse * (2.0 - v * inverse)
    s = f * inverse
    z = s * s
    series = jnp.full_like(z, _ATANH[-1])
    for c in reversed(_ATANH[:-1]):
        series = series * z + c
    half_square = 0.5 * f * f
    log_m = f - (half_square - (s * (half_square + series * z) + k * _LN2_LOW))
    return k * _LN2_HIGH + log_m


def normal_quantile(p: jax.Array) -> jax.Array:
    """The standard normal quantile of float64 ``p`` in (0, 1), by AS241.

    Every region is computed for every entry and the right one selected, as
    vectorised code must; on this project's CPU that still takes about 0.6 of
    the time of ``erf_inv``, the quantile JAX's normal draws use (4 million
    entries: 15.5 against 24.8 ms, best of 15 interleaved calls; see also
    ``python -m benchmarks.random_draws``). The tail's logarithm is
    :func:`log_positive` (its argument is at least 2**-1022 for ``p`` in (0, 1)
    of float64 normal numbers).
    """
    q = p - 0.5
    central = q * _rational(_CENTRAL, 0.180625 - q * q)
    r = jnp.sqrt(-log_positive(jnp.minimum(p, 1.0 - p)))
    tail = jnp.where(r <= 5.0, _rational(_NEAR, r - 1.6), _rational(_FAR, r - 5.0))
    return jnp.where(jnp.abs(q) <= 0.425, central, jnp.where(q < 0, -tail, tail))


def open_uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float64) -> jax.Array:
    """Uniform draws on (0, 1), from any JAX key: the ``2**m`` midpoints
    ``(k + 1/2) / 2**m``, ``m`` the mantissa bits of ``dtype`` (52 for float64,
    23 for float32), each exact in ``dtype``. The set is symmetric about 1/2 and
    holds neither 0 nor 1, so ``log_positive(u)`` and ``log_positive(1 - u)``
    are always finite."""
    dtype = jnp.dtype(dtype)
    m = jnp.finfo(dtype).nmant
    bits = jax.random.bits(key, tuple(shape), jnp.uint64)
    u = ((bits >> np.uint64(64 - m)).astype(jnp.float64) + 0.5) * 2.0**-m
    return u.astype(dtype)


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normal draws, from any JAX key: the quantile of float64
    :func:`open_uniform` draws, whose extremes map to about +-8.2."""
    return normal_quantile(open_uniform(key, shape)).astype(dtype)


def splitmix_key(raw: jax.Array) -> jax.Array:
    """A raw ``uint32[2]`` key as a typed key of :data:`SPLITMIX64`."""
    return jax.random.wrap_key_data(jnp.asarray(raw, jnp.uint32), impl=SPLITMIX64)

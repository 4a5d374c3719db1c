"""Special functions whose PyTensor lowering needs TensorFlow Probability, or lacks derivatives.

``Erfcx``, ``Erfcinv``, ``Ive``, ``Iv``, ``GammaIncInv``, ``GammaIncCInv`` and
``BetaIncInv`` get stand-in subclasses (see :mod:`.substitutes`) lowered with
plain ``jax.numpy``. Values match SciPy to about 1e-12 relative in float64 over
the ranges PyMC's distributions use; the inverse functions carry implicit-function
derivatives so ``jax.grad`` through them is exact.

``BetaInc`` is lowered by PyTensor to ``jax.scipy.special.betainc``, which JAX
cannot differentiate in ``a`` or ``b``; its correction (see
:func:`.substitutes.correction_for`) keeps that value and differentiates it with
PyTensor's own derivative graph (Boik and Robison-Cox, 1998), lowered to JAX.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.scipy import special as jsp
from pytensor.link.jax.dispatch.basic import jax_funcify
from pytensor.scalar.math import (
    BetaInc,
    BetaIncInv,
    Erfcinv,
    Erfcx,
    GammaIncCInv,
    GammaIncInv,
    Iv,
    Ive,
)

from hiddenjax.compile.dispatch.substitutes import correction_for, substitute_for


@substitute_for(Erfcx)
class JaxErfcx(Erfcx):
    """``Erfcx`` lowered by hiddenjax."""


@substitute_for(Erfcinv)
class JaxErfcinv(Erfcinv):
    """``Erfcinv`` lowered by hiddenjax."""


@substitute_for(Ive)
class JaxIve(Ive):
    """``Ive`` lowered by hiddenjax."""


@substitute_for(Iv)
class JaxIv(Iv):
    """``Iv`` lowered by hiddenjax."""


@substitute_for(GammaIncInv)
class JaxGammaIncInv(GammaIncInv):
    """``GammaIncInv`` lowered by hiddenjax."""


@substitute_for(GammaIncCInv)
class JaxGammaIncCInv(GammaIncCInv):
    """``GammaIncCInv`` lowered by hiddenjax."""


@substitute_for(BetaIncInv)
class JaxBetaIncInv(BetaIncInv):
    """``BetaIncInv`` lowered by hiddenjax."""


# --- erfcx -----------------------------------------------------------------

# jax.scipy.special.erfcx returns 0 on a narrow band near x = 26.6 (jax 0.10.2);
# beyond x = 12 the asymptotic series below is exact to float64 precision.
_ERFCX_SERIES_FROM = 12.0
_ERFCX_TERMS = 12


def _erfcx_asymptotic(x):
    x = jnp.maximum(x, _ERFCX_SERIES_FROM)
    inv2x2 = 1.0 / (2.0 * x * x)
    total, term = jnp.ones_like(x), jnp.ones_like(x)
    for k in range(1, _ERFCX_TERMS):
        term = -term * (2 * k - 1) * inv2x2
        total = total + term
    return total / (x * math.sqrt(math.pi))


@jax.custom_jvp
def erfcx(x):
    """Scaled complementary error function ``exp(x**2) * erfc(x)``."""
    x = jnp.asarray(x, dtype=jnp.result_type(x, float))
    small = jsp.erfcx(jnp.minimum(x, _ERFCX_SERIES_FROM))
    return jnp.where(x < _ERFCX_SERIES_FROM, small, _erfcx_asymptotic(x))


@erfcx.defjvp
def _erfcx_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = erfcx(x)
    return y, (2.0 * x * y - 2.0 / math.sqrt(math.pi)) * dx


@jax_funcify.register(JaxErfcx)
def funcify_Erfcx(op, **kwargs):
    return erfcx


@jax_funcify.register(JaxErfcinv)
def funcify_Erfcinv(op, **kwargs):
    def erfcinv(x):
        return -jsp.ndtri(0.5 * x) / math.sqrt(2.0)

    return erfcinv


# --- modified Bessel functions of the first kind ----------------------------

_IVE_SERIES_TERMS = 1000  # the power series is exact in float64 for |x| <= 1500
_IVE_SERIES_UP_TO = 1500.0
_IVE_ASYMPTOTIC_TERMS = 20


def _ive_series(v, x):
    """``exp(-x) I_v(x)`` for ``x >= 0`` from the power series, summed in log space."""
    k = jnp.arange(_IVE_SERIES_TERMS, dtype=x.dtype)
    v_, x_ = v[..., None], jnp.maximum(x, jnp.finfo(x.dtype).tiny)[..., None]
    log_terms = (2 * k + v_) * jnp.log(x_ / 2) - jsp.gammaln(k + 1) - jsp.gammaln(k + v_ + 1) - x_
    signs = jsp.gammasgn(k + v_ + 1)
    # 1 / Gamma(k + v + 1) vanishes at the poles of Gamma.
    pole = (k + v_ + 1 <= 0) & (k + v_ + 1 == jnp.round(k + v_ + 1))
    log_terms = jnp.where(pole, -jnp.inf, log_terms)
    log_sum, sign = jax.nn.logsumexp(log_terms, axis=-1, b=signs, return_sign=True)
    return sign * jnp.exp(log_sum)


def _ive_asymptotic(v, x):
    """``exp(-x) I_v(x)`` for large ``x`` (Abramowitz and Stegun 9.7.1)."""
    x = jnp.maximum(x, _IVE_SERIES_UP_TO)
    mu = 4.0 * v * v
    total, term = jnp.ones_like(x), jnp.ones_like(x)
    for k in range(1, _IVE_ASYMPTOTIC_TERMS):
        term = -term * (mu - (2 * k - 1) ** 2) / (k * 8.0 * x)
        total = total + term
    return total / jnp.sqrt(2.0 * math.pi * x)


def ive(v, x):
    """Exponentially scaled modified Bessel function ``exp(-|x|) I_v(x)``, as SciPy's."""
    dtype = jnp.result_type(v, x, float)
    v, x = jnp.broadcast_arrays(jnp.asarray(v, dtype), jnp.asarray(x, dtype))
    integer_order = v == jnp.round(v)
    v_pos = jnp.where(integer_order, jnp.abs(v), v)  # I_{-n} = I_n
    ax = jnp.abs(x)
    value = jnp.where(
        ax <= _IVE_SERIES_UP_TO, _ive_series(v_pos, ax), _ive_asymptotic(v_pos, ax)
    )
    at_zero = jnp.where(v_pos == 0, 1.0, jnp.where(v_pos > 0, 0.0, jnp.inf))
    value = jnp.where(ax == 0, at_zero, value)
    # I_n(-x) = (-1)^n I_n(x); a non-integer order has no real value at x < 0.
    odd = jnp.mod(v_pos, 2) == 1
    reflected = jnp.where(integer_order, jnp.where(odd, -value, value), jnp.nan)
    return jnp.where(x < 0, reflected, value)


@jax_funcify.register(JaxIve)
def funcify_Ive(op, **kwargs):
    return ive


@jax_funcify.register(JaxIv)
def funcify_Iv(op, **kwargs):
    def iv(v, x):
        return ive(v, x) * jnp.exp(jnp.abs(x))

    return iv


# --- inverse regularised incomplete gamma ------------------------------------

_GAMMAINCINV_STEPS = 24


def _gammaincinv_guess(a, p, q):
    """Starting point from Numerical Recipes' ``invgammp``."""
    use_p = p < 0.5
    pp = jnp.where(use_p, p, q)
    t = jnp.sqrt(-2.0 * jnp.log(jnp.clip(pp, 1e-300, 0.5)))
    z = (2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t
    z = jnp.where(use_p, -z, z)
    safe_a = jnp.maximum(a, 1.0)
    large = jnp.maximum(1e-3, safe_a * (1 - 1 / (9 * safe_a) - z / (3 * jnp.sqrt(safe_a))) ** 3)
    t_small = 1.0 - a * (0.253 + a * 0.12)
    small = jnp.where(
        p < t_small,
        (p / t_small) ** (1.0 / a),
        1.0 - jnp.log1p(-(p - t_small) / (1.0 - t_small)),
    )
    return jnp.where(a > 1.0, large, small)


def _gammaincinv(a, p, q):
    """Solve ``P(a, x) = p`` (equivalently ``Q(a, x) = q``) by Halley's method."""
    use_p = p < 0.5
    log_gamma_a = jsp.gammaln(a)

    def halley(_, x):
        err = jnp.where(use_p, jsp.gammainc(a, x) - p, q - jsp.gammaincc(a, x))
        log_pdf = (a - 1) * jnp.log(x) - x - log_gamma_a
        u = err * jnp.exp(-log_pdf)
        step = u / (1.0 - 0.5 * jnp.minimum(1.0, u * ((a - 1) / x - 1)))
        new = x - step
        new = jnp.where(new <= 0, 0.5 * x, new)
        return jnp.where(jnp.isfinite(new), new, x)

    x = jax.lax.fori_loop(0, _GAMMAINCINV_STEPS, halley, _gammaincinv_guess(a, p, q))
    x = jnp.where(p == 0, 0.0, jnp.where(q == 0, jnp.inf, x))
    invalid = (a <= 0) | (p < 0) | (p > 1) | jnp.isnan(p) | jnp.isnan(a)
    return jnp.where(invalid, jnp.nan, x)


def _gammainc_partials(a, x):
    """``(dP/da, dP/dx)`` of the regularised lower incomplete gamma at ``(a, x)``."""
    d_a = jax.lax.igamma_grad_a(a, x)
    d_x = jnp.exp((a - 1) * jnp.log(x) - x - jsp.gammaln(a))
    return d_a, d_x


@jax.custom_jvp
def gammaincinv(a, p):
    """Inverse in ``x`` of the regularised lower incomplete gamma ``P(a, x)``."""
    dtype = jnp.result_type(a, p, float)
    a, p = jnp.broadcast_arrays(jnp.asarray(a, dtype), jnp.asarray(p, dtype))
    return _gammaincinv(a, p, 1.0 - p)


@jax.custom_jvp
def gammainccinv(a, q):
    """Inverse in ``x`` of the regularised upper incomplete gamma ``Q(a, x)``."""
    dtype = jnp.result_type(a, q, float)
    a, q = jnp.broadcast_arrays(jnp.asarray(a, dtype), jnp.asarray(q, dtype))
    return _gammaincinv(a, 1.0 - q, q)


@gammaincinv.defjvp
def _gammaincinv_jvp(primals, tangents):
    (a, p), (da, dp) = primals, tangents
    x = gammaincinv(a, p)
    d_a, d_x = _gammainc_partials(a, x)
    return x, (dp - d_a * da) / d_x


@gammainccinv.defjvp
def _gammainccinv_jvp(primals, tangents):
    (a, q), (da, dq) = primals, tangents
    x = gammainccinv(a, q)
    d_a, d_x = _gammainc_partials(a, x)
    return x, -(dq + d_a * da) / d_x


@jax_funcify.register(JaxGammaIncInv)
def funcify_GammaIncInv(op, **kwargs):
    return gammaincinv


@jax_funcify.register(JaxGammaIncCInv)
def funcify_GammaIncCInv(op, **kwargs):
    return gammainccinv


# --- inverse regularised incomplete beta --------------------------------------

_BETAINCINV_BISECTIONS = 110  # in log x over [log(tiny), 0]: resolution below 1e-30
_BETAINCINV_NEWTON = 3


def _betaincinv_lower(a, b, y):
    """Solve ``I_x(a, b) = y`` for ``y <= 1/2``: bisection in log x, then Newton steps."""
    log_tiny = jnp.log(jnp.finfo(y.dtype).tiny)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = jsp.betainc(a, b, jnp.exp(mid)) < y
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(
        0, _BETAINCINV_BISECTIONS, bisect, (jnp.full_like(y, log_tiny), jnp.zeros_like(y))
    )
    log_beta = jsp.betaln(a, b)

    def newton(_, log_x):
        x = jnp.exp(log_x)
        log_pdf = (a - 1) * log_x + (b - 1) * jnp.log1p(-x) - log_beta
        # Newton in log x: d I / d log x = x * pdf.
        new = log_x - (jsp.betainc(a, b, x) - y) * jnp.exp(-log_pdf - log_x)
        inside = (new >= lo) & (new <= hi) & jnp.isfinite(new)
        return jnp.where(inside, new, log_x)

    return jnp.exp(jax.lax.fori_loop(0, _BETAINCINV_NEWTON, newton, 0.5 * (lo + hi)))


def _betaincinv(a, b, y):
    """Solve ``I_x(a, b) = y``, through ``I_{1-x}(b, a) = 1 - y`` when ``y > 1/2``."""
    flip = y > 0.5
    z = _betaincinv_lower(jnp.where(flip, b, a), jnp.where(flip, a, b), jnp.where(flip, 1 - y, y))
    x = jnp.where(flip, 1 - z, z)
    x = jnp.where(y == 0, 0.0, jnp.where(y == 1, 1.0, x))
    invalid = (a <= 0) | (b <= 0) | (y < 0) | (y > 1) | jnp.isnan(y)
    return jnp.where(invalid, jnp.nan, x)


@jax.custom_jvp
def betaincinv(a, b, y):
    """Inverse in ``x`` of the regularised incomplete beta function ``I_x(a, b)``."""
    dtype = jnp.result_type(a, b, y, float)
    a, b, y = jnp.broadcast_arrays(*(jnp.asarray(t, dtype) for t in (a, b, y)))
    return _betaincinv(a, b, y)


def _betaincinv_jvp(primals, tangents):
    (a, b, y), (da, db, dy) = primals, tangents
    # JAX's betainc has no derivative in a or b (nor has PyTensor's BetaIncInv).
    if not all(isinstance(t, SymbolicZero) for t in (da, db)):
        raise NotImplementedError(
            "betaincinv(a, b, y) is differentiable in y only: the derivative in a or b "
            "is not available in JAX. Keep a and b fixed (data or constants)."
        )
    x = betaincinv(a, b, y)
    if isinstance(dy, SymbolicZero):
        return x, jnp.zeros_like(x)
    log_pdf = (a - 1) * jnp.log(x) + (b - 1) * jnp.log1p(-x) - jsp.betaln(a, b)
    return x, dy * jnp.exp(-log_pdf)


betaincinv.defjvp(_betaincinv_jvp, symbolic_zeros=True)


@jax_funcify.register(JaxBetaIncInv)
def funcify_BetaIncInv(op, **kwargs):
    return betaincinv


# --- regularised incomplete beta, differentiable in a and b -------------------------


@correction_for(BetaInc)
class JaxBetaInc(BetaInc):
    """``BetaInc`` with derivatives in all three arguments under ``jax.grad``."""


@functools.cache
def _betainc_partials(dtype: str):
    """PyTensor's derivative graph of ``betainc`` in ``a`` and ``b``, lowered to JAX."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.fg import FunctionGraph

    from hiddenjax.compile.linker import hiddenjax_mode
    from hiddenjax.compile.preflight import make_lowerable

    a, b, x = (pt.scalar(name, dtype=dtype) for name in "abx")
    grads = pytensor.grad(pt.betainc(a, b, x), [a, b])
    fgraph = FunctionGraph([a, b, x], grads, clone=True)
    hiddenjax_mode().optimizer.rewrite(fgraph)
    make_lowerable(fgraph, strict=True)
    partials = jax_funcify(fgraph)
    return jnp.vectorize(lambda a, b, x: tuple(partials(a, b, x)))


@jax.custom_jvp
def betainc(a, b, x):
    """Regularised incomplete beta function ``I_x(a, b)``."""
    return jsp.betainc(a, b, x)


def _betainc_jvp(primals, tangents):
    (a, b, x), (da, db, dx) = primals, tangents
    dtype = jnp.result_type(a, b, x, float)
    a, b, x = jnp.broadcast_arrays(*(jnp.asarray(t, dtype) for t in (a, b, x)))
    value = betainc(a, b, x)
    log_pdf = (a - 1) * jnp.log(x) + (b - 1) * jnp.log1p(-x) - jsp.betaln(a, b)
    tangent = jnp.zeros_like(value)
    if not isinstance(dx, SymbolicZero):
        tangent = tangent + jnp.exp(log_pdf) * dx
    if not (isinstance(da, SymbolicZero) and isinstance(db, SymbolicZero)):
        ga, gb = _betainc_partials(str(dtype))(a, b, x)
        if not isinstance(da, SymbolicZero):
            tangent = tangent + ga * da
        if not isinstance(db, SymbolicZero):
            tangent = tangent + gb * db
    return value, tangent


betainc.defjvp(_betainc_jvp, symbolic_zeros=True)


@jax_funcify.register(JaxBetaInc)
def funcify_BetaInc(op, **kwargs):
    return betainc

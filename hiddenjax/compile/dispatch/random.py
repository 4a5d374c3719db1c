"""JAX samplers for random variables PyTensor's JAX backend cannot draw.

Registered on ``jax_sample_fn`` for RV types that have no sampler of their own.
``CategoricalRV``, whose PyTensor sampler draws from the wrong probabilities,
gets a stand-in subclass instead, and so do ``NormalRV``, ``GammaRV``,
``StudentTRV``, ``BetaRV``, ``DirichletRV`` and ``BinomialRV``, drawn faster
(see :mod:`.substitutes`); counts are drawn in :mod:`.counts`. Each
``sample_fn(key, size, dtype, *params)`` returns draws of shape ``size`` (batch
shape) plus the RV's core shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytensor.tensor.random.basic as ptr
from pymc.distributions.continuous import (
    InterpolatedRV,
    MoyalRV,
    RiceRV,
    SkewNormalRV,
    SkewStudentTRV,
    TruncatedNormalRV,
    WaldRV,
)
from pymc.distributions.discrete import DiscreteUniformRV
from pymc.distributions.multivariate import (
    CARRV,
    MatrixNormalRV,
    StickBreakingWeightsRV,
    WishartRV,
)
from pytensor.tensor.type import TensorType
from pytensor.link.jax.dispatch.random import jax_sample_fn

from hiddenjax.compile.dispatch.rejection import rejection_sample
from hiddenjax.compile.dispatch.substitutes import correction_for
from hiddenjax.compile.prng import open_uniform, standard_normal


def _batch_shape(size, *params, core_ndims=None):
    """``size`` if given, else the broadcast batch shape of the parameters."""
    if size is not None:
        return tuple(size)
    core_ndims = core_ndims or (0,) * len(params)
    shapes = [jnp.shape(p)[: jnp.ndim(p) - c] for p, c in zip(params, core_ndims, strict=True)]
    return jnp.broadcast_shapes(*shapes)


@jax_sample_fn.register(MoyalRV)
def funcify_MoyalRV(op, node):
    def moyal(key, size, dtype, mu, sigma):
        z = standard_normal(key, _batch_shape(size, mu, sigma), dtype)
        # exp(-X) is chi-squared with one degree of freedom.
        return mu - sigma * jnp.log(z * z)

    return moyal


@jax_sample_fn.register(WaldRV)
def funcify_WaldRV(op, node):
    def wald(key, size, dtype, mu, lam, alpha):
        """Michael, Schucany and Haas (1976)."""
        shape = _batch_shape(size, mu, lam, alpha)
        key_n, key_u = jax.random.split(key)
        y = standard_normal(key_n, shape, dtype) ** 2
        root = jnp.sqrt(4 * mu * lam * y + (mu * y) ** 2)
        x = mu + mu * mu * y / (2 * lam) - mu / (2 * lam) * root
        u = jax.random.uniform(key_u, shape, dtype)
        return jnp.where(u <= mu / (mu + x), x, mu * mu / x) + alpha

    return wald


@jax_sample_fn.register(RiceRV)
def funcify_RiceRV(op, node):
    def rice(key, size, dtype, b, sigma):
        z = standard_normal(key, (2, *_batch_shape(size, b, sigma)), dtype)
        return sigma * jnp.hypot(b + z[0], z[1])

    return rice


@jax_sample_fn.register(SkewNormalRV)
def funcify_SkewNormalRV(op, node):
    def skew_normal(key, size, dtype, mu, sigma, alpha):
        u0, v = standard_normal(key, (2, *_batch_shape(size, mu, sigma, alpha)), dtype)
        delta = alpha / jnp.sqrt(1 + alpha * alpha)
        u1 = delta * u0 + jnp.sqrt(1 - delta * delta) * v
        return mu + sigma * jnp.where(u0 >= 0, u1, -u1)

    return skew_normal


@jax_sample_fn.register(SkewStudentTRV)
def funcify_SkewStudentTRV(op, node):
    def skew_student_t(key, size, dtype, a, b, mu, sigma):
        """Jones and Faddy (2003): a transformed Beta(a, b) draw."""
        shape = _batch_shape(size, a, b, mu, sigma)
        beta = jax.random.beta(key, a, b, shape, dtype)
        t = jnp.sqrt(a + b) * (2 * beta - 1) / (2 * jnp.sqrt(beta * (1 - beta)))
        return mu + sigma * t

    return skew_student_t


@jax_sample_fn.register(ptr.TriangularRV)
def funcify_TriangularRV(op, node):
    def triangular(key, size, dtype, left, mode, right):
        u = jax.random.uniform(key, _batch_shape(size, left, mode, right), dtype)
        width = right - left
        cut = (mode - left) / width
        below = left + jnp.sqrt(u * width * (mode - left))
        above = right - jnp.sqrt((1 - u) * width * (right - mode))
        return jnp.where(u < cut, below, above)

    return triangular


@jax_sample_fn.register(ptr.WeibullRV)
def funcify_WeibullRV(op, node):
    def weibull(key, size, dtype, shape):
        u = jax.random.uniform(key, _batch_shape(size, shape), dtype)
        return (-jnp.log1p(-u)) ** (1 / shape)

    return weibull


@jax_sample_fn.register(ptr.HyperGeometricRV)
def funcify_HyperGeometricRV(op, node):
    def hypergeometric(key, size, dtype, ngood, nbad, nsample):
        """Good items among ``nsample`` drawn one at a time without replacement.

        Drawing n of N items leaves N - n behind, so the loop counts good items
        among the fewer of the two: min(n, N - n) steps, the largest over the batch.
        """
        shape = _batch_shape(size, ngood, nbad, nsample)
        good, bad, n = (jnp.broadcast_to(jnp.asarray(v), shape) for v in (ngood, nbad, nsample))
        total = good + bad
        flip = 2 * n > total
        steps = jnp.where(flip, total - n, n)

        def pick(i, state):
            good_left, found = state
            u = jax.random.uniform(jax.random.fold_in(key, i), shape)
            hit = (i < steps) & (u * (total - i) < good_left)
            return good_left - hit, found + hit

        start = (good, jnp.zeros_like(good))
        _, found = jax.lax.fori_loop(0, jnp.max(steps, initial=0), pick, start)
        return jnp.where(flip, good - found, found).astype(dtype)

    return hypergeometric


@jax_sample_fn.register(DiscreteUniformRV)
def funcify_DiscreteUniformRV(op, node):
    def discrete_uniform(key, size, dtype, lower, upper):
        shape = _batch_shape(size, lower, upper)
        return jax.random.randint(key, shape, lower, upper + 1, dtype)

    return discrete_uniform


@jax_sample_fn.register(TruncatedNormalRV)
def funcify_TruncatedNormalRV(op, node):
    def truncated_normal(key, size, dtype, mu, sigma, lower, upper):
        shape = _batch_shape(size, mu, sigma, lower, upper)
        z = jax.random.truncated_normal(key, (lower - mu) / sigma, (upper - mu) / sigma, shape,
                                        dtype)
        return mu + sigma * z

    return truncated_normal


@jax_sample_fn.register(MatrixNormalRV)
def funcify_MatrixNormalRV(op, node):
    def matrix_normal(key, size, dtype, mu, rowchol, colchol):
        batch = _batch_shape(size, mu, rowchol, colchol, core_ndims=(2, 2, 2))
        z = standard_normal(key, (*batch, rowchol.shape[-2], colchol.shape[-2]), dtype)
        return mu + rowchol @ z @ jnp.swapaxes(colchol, -1, -2)

    return matrix_normal


@jax_sample_fn.register(CARRV)
def funcify_CARRV(op, node):
    if not isinstance(node.inputs[3].type, TensorType):
        raise NotImplementedError(
            "CAR with a sparse W has no JAX sampler; pass W as a dense array."
        )

    def car(key, size, dtype, mu, w, alpha, tau, w_is_valid):
        """x = mu + L^-T z with Q = L L^T = tau (D - alpha W): covariance Q^-1 (Rue, 2001)."""
        batch = _batch_shape(size, mu, w, alpha, tau, core_ndims=(1, 2, 0, 0, 0))
        m = w.shape[-1]
        alpha, tau = jnp.asarray(alpha, dtype), jnp.asarray(tau, dtype)
        d = jnp.sum(w, axis=-2)
        q = tau[..., None, None] * (d[..., None, :] * jnp.eye(m, dtype=dtype)
                                     - alpha[..., None, None] * w)
        chol = jnp.broadcast_to(jnp.linalg.cholesky(q), (*batch, m, m))
        z = standard_normal(key, (*batch, m, 1), dtype)
        x = jax.scipy.linalg.solve_triangular(chol, z, lower=True, trans="T")[..., 0]
        # PyMC's sampler refuses these; NaN keeps the draw visibly invalid inside JAX.
        valid = jnp.all(w_is_valid) & (jnp.abs(alpha) < 1)
        return jnp.where(valid[..., None], mu + x, jnp.nan)

    return car


@jax_sample_fn.register(InterpolatedRV)
def funcify_InterpolatedRV(op, node):
    def interpolate_one(p, x, pdf, cdf):
        """Invert the piecewise-quadratic CDF of a piecewise-linear density, like PyMC."""
        i = jnp.clip(jnp.searchsorted(cdf, p) - 1, 0, x.shape[-1] - 2)
        slope = (pdf[i + 1] - pdf[i]) / (x[i + 1] - x[i])
        flat = jnp.abs(slope) <= 1e-8
        mass = p - cdf[i]
        small = jnp.where(jnp.abs(pdf[i]) <= 1e-8, 0.0, mass / pdf[i])
        safe_slope = jnp.where(flat, 1.0, slope)
        large = (-pdf[i] + jnp.sqrt(pdf[i] ** 2 + 2 * safe_slope * mass)) / safe_slope
        return x[i] + jnp.where(flat, small, large)

    def interpolated(key, size, dtype, x, pdf, cdf):
        p = jax.random.uniform(key, _batch_shape(size, x, pdf, cdf, core_ndims=(1, 1, 1)), dtype)
        return jnp.vectorize(interpolate_one, signature="(),(x),(x),(x)->()")(p, x, pdf, cdf)

    return interpolated


@jax_sample_fn.register(StickBreakingWeightsRV)
def funcify_StickBreakingWeightsRV(op, node):
    k = node.outputs[1].type.shape[-1]
    if k is None:
        raise NotImplementedError(
            "StickBreakingWeights needs a fixed K to be drawn in JAX; pass K as a constant."
        )

    def stick_breaking_weights(key, size, dtype, alpha, _k):
        batch = _batch_shape(size, alpha)
        betas = jax.random.beta(key, 1.0, alpha[..., None], (*batch, k - 1), dtype)
        sticks = jnp.concatenate(
            [jnp.ones((*batch, 1), dtype), jnp.cumprod(1 - betas[..., :-1], axis=-1)], axis=-1
        )
        weights = sticks * betas
        return jnp.concatenate([weights, 1 - weights.sum(-1, keepdims=True)], axis=-1)

    return stick_breaking_weights


@jax_sample_fn.register(WishartRV)
def funcify_WishartRV(op, node):
    def wishart(key, size, dtype, nu, v):
        """Bartlett decomposition: W = L A A^T L^T with L = chol(V)."""
        batch = _batch_shape(size, nu, v, core_ndims=(0, 2))
        p = v.shape[-1]
        key_c, key_n = jax.random.split(key)
        dofs = jnp.asarray(nu, dtype)[..., None] - jnp.arange(p, dtype=dtype)
        chi2 = 2 * jax.random.gamma(key_c, jnp.broadcast_to(dofs / 2, (*batch, p)), dtype=dtype)
        normal = standard_normal(key_n, (*batch, p, p), dtype)
        a = jnp.tril(normal, -1) + jnp.sqrt(chi2)[..., None] * jnp.eye(p, dtype=dtype)
        la = jnp.linalg.cholesky(v) @ a
        return la @ jnp.swapaxes(la, -1, -2)

    return wishart


@correction_for(ptr.NormalRV)
class JaxNormalRV(ptr.NormalRV):
    """``NormalRV`` drawn as the AS241 quantile of uniform bits, in about 0.6 of the
    time ``jax.random.normal`` takes from the same key
    (:func:`hiddenjax.compile.prng.standard_normal`)."""


@jax_sample_fn.register(JaxNormalRV)
def funcify_NormalRV(op, node):
    def normal(key, size, dtype, loc, scale):
        return loc + scale * standard_normal(key, _batch_shape(size, loc, scale), dtype)

    return normal


@correction_for(ptr.BinomialRV)
class JaxBinomialRV(ptr.BinomialRV):
    """``BinomialRV`` drawn by hiddenjax (:func:`.counts.binomial`)."""


@correction_for(ptr.CategoricalRV)
class JaxCategoricalRV(ptr.CategoricalRV):
    """``CategoricalRV`` drawn by hiddenjax with ``log(p)`` as the logits.

    PyTensor's JAX sampler hands ``logit(p) = log(p / (1 - p))`` to
    ``jax.random.categorical``, which expects log-probabilities up to a
    constant, so its draws follow ``p / (1 - p)`` renormalised instead of ``p``.
    """


@jax_sample_fn.register(JaxCategoricalRV)
def funcify_CategoricalRV(op, node):
    def categorical(key, size, dtype, p):
        # A zero probability gives a -inf logit, which categorical never picks.
        draws = jax.random.categorical(key, jnp.log(p), axis=-1, shape=size)
        return draws.astype(dtype)

    return categorical


def _marsaglia_tsang(key, d, c):
    """One Marsaglia-Tsang proposal per entry: ``(d * v**3, accepted)``."""
    key_x, key_u = jax.random.split(key)
    x = standard_normal(key_x, d.shape, d.dtype)
    u = open_uniform(key_u, d.shape, d.dtype)
    v = 1 + c * x
    v3 = jnp.where(v > 0, v * v * v, 1.0)
    # XLA's log rather than log_positive: a gamma regression's first posterior
    # predictive call took 1.35 against 1.53 s (compiling), its later ones about as long.
    accepted = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v3 + d * jnp.log(v3))
    return d * v3, accepted


_GAMMA_RETRIES = ()
"""Marsaglia and Tsang's proposals are accepted 95 % of the time or more: the
rejected ones go straight to the redraw rounds (:func:`.rejection.rejection_sample`)."""


def _gamma_parts(key, alpha, dtype):
    """Gamma(alpha) draws as ``(g, log_boost)``, flat: ``g`` drawn by Marsaglia and
    Tsang (2000) with shape ``alpha``, or ``alpha + 1`` where ``alpha < 1``, and
    ``log_boost = log(U) / alpha`` there (0 elsewhere), so the draw is
    ``g * exp(log_boost)``: ``Gamma(a) = Gamma(a + 1) * U**(1/a)``.

    Every entry gets one proposal at once; the few rejected ones (under 5 %)
    are redrawn in a small buffer (:func:`.rejection.rejection_sample`).
    ``jax.random.gamma`` instead runs a rejection loop per entry with its own
    key splits, which is an order of magnitude slower on CPU.
    """
    a = jnp.ravel(alpha).astype(dtype)
    boost = a < 1
    d = jnp.where(boost, a + 1, a) - 1 / 3
    c = 1 / jnp.sqrt(9 * d)
    key_draw, key_boost = jax.random.split(key)
    g = rejection_sample(key_draw, _marsaglia_tsang, (d, c), retries=_GAMMA_RETRIES)
    u = open_uniform(key_boost, a.shape, dtype)
    return g, jnp.where(boost, jnp.log(u) / a, 0.0)


def standard_gamma(key, alpha, dtype):
    """Gamma(alpha, 1) draws of ``alpha``'s shape (see :func:`_gamma_parts`)."""
    shape = jnp.shape(alpha)
    g, log_boost = _gamma_parts(key, alpha, dtype)
    return (g * jnp.exp(log_boost)).reshape(shape)


def log_standard_gamma(key, alpha, dtype):
    """Logarithms of Gamma(alpha, 1) draws of ``alpha``'s shape: finite even where a
    small ``alpha`` gives draws that underflow to zero (about ``U**(1/alpha)``)."""
    shape = jnp.shape(alpha)
    g, log_boost = _gamma_parts(key, alpha, dtype)
    return (jnp.log(g) + log_boost).reshape(shape)


@correction_for(ptr.GammaRV)
class JaxGammaRV(ptr.GammaRV):
    """``GammaRV`` drawn by hiddenjax's vectorised Marsaglia-Tsang sampler (see ``standard_gamma``)."""


@jax_sample_fn.register(JaxGammaRV)
def funcify_GammaRV(op, node):
    def gamma(key, size, dtype, shape, scale):
        alpha = jnp.broadcast_to(shape, _batch_shape(size, shape, scale))
        return standard_gamma(key, alpha, dtype) * scale

    return gamma


@correction_for(ptr.BetaRV)
class JaxBetaRV(ptr.BetaRV):
    """``BetaRV`` drawn as ``G_a / (G_a + G_b)`` from hiddenjax's gamma sampler, in
    log space (a logistic of ``log G_a - log G_b``), so small shapes whose gamma
    draws underflow still give their draws near 0 and 1 rather than 0/0."""


@jax_sample_fn.register(JaxBetaRV)
def funcify_BetaRV(op, node):
    def beta(key, size, dtype, alpha, beta_):
        shape = _batch_shape(size, alpha, beta_)
        key_a, key_b = jax.random.split(key)
        log_a = log_standard_gamma(key_a, jnp.broadcast_to(alpha, shape), dtype)
        log_b = log_standard_gamma(key_b, jnp.broadcast_to(beta_, shape), dtype)
        return jax.nn.sigmoid(log_a - log_b)

    return beta


@correction_for(ptr.DirichletRV)
class JaxDirichletRV(ptr.DirichletRV):
    """``DirichletRV`` drawn as normalised gamma draws from hiddenjax's gamma
    sampler, in log space (a softmax of their logarithms), as :class:`JaxBetaRV`."""


@jax_sample_fn.register(JaxDirichletRV)
def funcify_DirichletRV(op, node):
    def dirichlet(key, size, dtype, alphas):
        shape = (*_batch_shape(size, alphas, core_ndims=(1,)), jnp.shape(alphas)[-1])
        return jax.nn.softmax(log_standard_gamma(key, jnp.broadcast_to(alphas, shape), dtype),
                              axis=-1)

    return dirichlet


@correction_for(ptr.StudentTRV)
class JaxStudentTRV(ptr.StudentTRV):
    """``StudentTRV`` drawn as ``Z * sqrt(nu / chi2(nu))`` with hiddenjax's gamma sampler."""


@jax_sample_fn.register(JaxStudentTRV)
def funcify_StudentTRV(op, node):
    def student_t(key, size, dtype, nu, mu, sigma):
        shape = _batch_shape(size, nu, mu, sigma)
        key_z, key_g = jax.random.split(key)
        half = jnp.broadcast_to(jnp.asarray(nu, dtype) / 2, shape)
        z = standard_normal(key_z, shape, dtype)
        return mu + sigma * z * jnp.sqrt(half / standard_gamma(key_g, half, dtype))

    return student_t

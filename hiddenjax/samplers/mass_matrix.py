"""Mass-matrix adaptation schemes, each a set of pure functions over a NamedTuple state.

Every scheme is a ``MassMatrixAdaptation``: ``start`` gives the metric to
begin with, ``init`` an empty estimator, ``update`` feeds it one warmup draw
(position and log-density gradient), ``restart`` empties it for the next
window, ``final`` turns it into a ``Metric``. All accumulators are float64
whatever the position's dtype.

``update`` takes an ``active`` flag and ``restart`` reuses the state's arrays,
so the sampler runs both at every step, with no conditional around them: an
XLA conditional that returns a buffer it was handed copies it whole, which
for a low-rank window's buffer of draws and gradients (hundreds of rows)
meant four whole copies at every warmup step.

* ``welford_variance`` (``"diag"``): Stan's diagonal, the variance of the
  window's draws shrunk towards ``1e-3``: ``var n/(n+5) + 1e-3 * 5/(n+5)``.
* ``welford_covariance`` (``"dense"``): Stan's dense, the covariance shrunk
  the same way towards ``1e-3 I``.
* ``gradient_variance`` (``"diag_grad"``): the diagonal that minimises the
  Fisher divergence of a Gaussian fit, ``sqrt(var(draws) / var(gradients))``
  per coordinate (exact for any Gaussian with diagonal covariance), as
  nutpie's ``use_grad_based_mass_matrix``; it starts from ``1 / |gradient|``.
* ``low_rank`` (``"low_rank"``): nutpie's ``low_rank_modified_mass_matrix``,
  the gradient-based diagonal times a low-rank correction estimated from the
  window's recent draws and gradients (see ``low_rank``).
* ``"auto"`` (hiddenjax's default): ``low_rank`` up to ``AUTO_LOW_RANK_MAX``
  dimensions, ``welford_variance`` above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.typing import ArrayLike

from hiddenjax.samplers import linalg
from hiddenjax.samplers.metrics import Metric, dense_metric, diagonal_metric

__all__ = [
    "ADAPTATIONS",
    "AUTO_LOW_RANK_MAX",
    "LowRankState",
    "MassMatrixAdaptation",
    "WelfordCovarianceState",
    "WelfordState",
    "gradient_variance",
    "low_rank",
    "regularize_variance",
    "tree_where",
    "welford_covariance",
    "welford_variance",
]

# nutpie keeps the gradient-based diagonal within these bounds.
VARIANCE_BOUNDS = (1e-20, 1e20)


class WelfordState(NamedTuple):
    """Welford's running mean and sum of squared deviations (float64)."""

    mean: Array
    """Running mean, shape ``(n,)``."""
    m2: Array
    """Sum of squared deviations from the running mean, shape ``(n,)``."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class WelfordCovarianceState(NamedTuple):
    """Welford's running mean and sum of outer products of deviations (float64)."""

    mean: Array
    """Running mean, shape ``(n,)``."""
    m2: Array
    """Sum of outer products of deviations, shape ``(n, n)``."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class GradientVarianceState(NamedTuple):
    """Running variances of the draws and of their gradients."""

    draws: WelfordState
    """Welford accumulators of the positions."""
    gradients: WelfordState
    """Welford accumulators of the log-density gradients."""
    count: Array
    """Number of draws seen (float64 scalar)."""


class MassMatrixAdaptation(NamedTuple):
    """A mass-matrix adaptation scheme as pure functions."""

    start: Callable
    """``start(position, gradient) -> Metric`` to use before any window ends."""
    init: Callable
    """``init(n_dim) -> state``, empty."""
    update: Callable
    """``update(state, position, gradient, active=True) -> state``; the state unchanged
    where the (traced) ``active`` is False."""
    restart: Callable
    """``restart(state) -> state``: the window emptied, its arrays reused where they can be."""
    final: Callable
    """``final(state) -> Metric``; needs ``state.count >= 2`` (callers keep their metric otherwise)."""


def regularize_variance(variance: ArrayLike, count: ArrayLike) -> Array:
    """Stan's shrinkage of a sample variance from ``count`` draws towards ``1e-3``.

    Parameters
    ----------
    variance : array_like
        Sample variance per coordinate (or a covariance matrix's diagonal).
    count : array_like
        Number of draws it came from.

    Returns
    -------
    Array
        ``variance * n / (n + 5) + 1e-3 * 5 / (n + 5)``.
    """
    n = jnp.asarray(count, jnp.float64)
    return jnp.asarray(variance, jnp.float64) * (n / (n + 5.0)) + 1e-3 * (5.0 / (n + 5.0))


def _f64(x: ArrayLike) -> Array:
    return jnp.asarray(x, jnp.float64)


def _welford_init(n_dim: int) -> WelfordState:
    zeros = jnp.zeros((n_dim,), jnp.float64)
    return WelfordState(zeros, zeros, jnp.zeros((), jnp.float64))


def _welford_update(state: WelfordState, x: ArrayLike) -> WelfordState:
    x = _f64(x)
    count = state.count + 1.0
    delta = x - state.mean
    mean = state.mean + delta / count
    return WelfordState(mean, state.m2 + delta * (x - mean), count)


def tree_where(pred: ArrayLike, on_true, on_false):
    """Leafwise ``jnp.where`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _restart_by_init(state) -> NamedTuple:
    """An empty state shaped as ``state``: every accumulator zero."""
    return jax.tree.map(jnp.zeros_like, state)


def _sample_variance(state: WelfordState) -> Array:
    """Unbiased variance; NaN below two draws."""
    enough = state.count >= 2.0
    return jnp.where(enough, state.m2 / jnp.where(enough, state.count - 1.0, 1.0), jnp.nan)


def _unit_metric(n_dim: int, rank: int) -> Metric:
    """The identity inverse mass matrix with a (neutral) correction of ``rank`` columns."""
    ones = jnp.ones((n_dim,), jnp.float64)
    return Metric(ones, ones, jnp.zeros((n_dim, rank), jnp.float64), jnp.ones((rank,), jnp.float64))


def _gradient_start(rank: int) -> Callable:
    """nutpie's first metric: variance ``1 / |gradient|`` within the bounds."""

    def start(position: ArrayLike, gradient: ArrayLike) -> Metric:
        variance = jnp.clip(1.0 / jnp.abs(_f64(gradient)), *VARIANCE_BOUNDS)
        n_dim = variance.shape[0]
        unit = _unit_metric(n_dim, rank)
        return unit._replace(diagonal=variance, scale=jnp.sqrt(variance))

    return start


def welford_variance() -> MassMatrixAdaptation:
    """Stan's diagonal adaptation: the regularised variance of the window's draws.

    Returns
    -------
    MassMatrixAdaptation
        Starts from the identity; ``final`` divides by ``n - 1`` (NaN below
        two draws).
    """

    def start(position, gradient) -> Metric:
        return diagonal_metric(jnp.ones(jnp.shape(position), jnp.float64))

    def update(state: WelfordState, position, gradient, active=True) -> WelfordState:
        return tree_where(active, _welford_update(state, position), state)

    def final(state: WelfordState) -> Metric:
        return diagonal_metric(regularize_variance(_sample_variance(state), state.count))

    return MassMatrixAdaptation(start, _welford_init, update, _restart_by_init, final)


def welford_covariance() -> MassMatrixAdaptation:
    """Stan's dense adaptation: the regularised covariance of the window's draws.

    Returns
    -------
    MassMatrixAdaptation
        Starts from the identity; ``final`` is
        ``cov n/(n+5) + 1e-3 * 5/(n+5) I`` in eigen form.
    """

    def start(position, gradient) -> Metric:
        return _unit_metric(jnp.shape(position)[0], jnp.shape(position)[0])._replace(
            vectors=jnp.eye(jnp.shape(position)[0], dtype=jnp.float64)
        )

    def init(n_dim: int) -> WelfordCovarianceState:
        zeros = jnp.zeros((n_dim,), jnp.float64)
        return WelfordCovarianceState(zeros, jnp.zeros((n_dim, n_dim), jnp.float64),
                                      jnp.zeros((), jnp.float64))

    def update(state: WelfordCovarianceState, position, gradient,
               active=True) -> WelfordCovarianceState:
        x = _f64(position)
        count = state.count + 1.0
        delta = x - state.mean
        mean = state.mean + delta / count
        fed = WelfordCovarianceState(mean, state.m2 + jnp.outer(x - mean, delta), count)
        return tree_where(active, fed, state)

    def final(state: WelfordCovarianceState) -> Metric:
        n = state.count
        covariance = state.m2 / jnp.maximum(n - 1.0, 1.0)
        shrunk = covariance * (n / (n + 5.0)) + jnp.eye(covariance.shape[0]) * (1e-3 * 5.0 / (n + 5.0))
        # Symmetrise what rounding left, so the eigendecomposition is exact.
        return dense_metric(0.5 * (shrunk + shrunk.T))

    return MassMatrixAdaptation(start, init, update, _restart_by_init, final)


def _population_variance(state: WelfordState) -> Array:
    return state.m2 / jnp.maximum(state.count, 1.0)


def _gradient_diagonal(moments: GradientVarianceState) -> Array:
    """``sqrt(var(draws) / var(gradients))`` within the bounds; 1 where it is 0/0, as nutpie."""
    ratio = _population_variance(moments.draws) / _population_variance(moments.gradients)
    variance = jnp.clip(jnp.sqrt(ratio), *VARIANCE_BOUNDS)
    return jnp.where(jnp.isnan(variance), 1.0, variance)


def gradient_variance() -> MassMatrixAdaptation:
    """nutpie's gradient-based diagonal: ``sqrt(var(draws) / var(gradients))``.

    Returns
    -------
    MassMatrixAdaptation
        Starts from ``1 / |gradient|``; variances are population variances
        (as nutpie), the result is kept within ``[1e-20, 1e20]``, and a 0/0
        coordinate (a chain that never moved) gets 1, as nutpie fills it.
    """

    def init(n_dim: int) -> GradientVarianceState:
        return GradientVarianceState(_welford_init(n_dim), _welford_init(n_dim),
                                     jnp.zeros((), jnp.float64))

    def update(state: GradientVarianceState, position, gradient,
               active=True) -> GradientVarianceState:
        return tree_where(active, GradientVarianceState(
            _welford_update(state.draws, position),
            _welford_update(state.gradients, gradient),
            state.count + 1.0,
        ), state)

    def final(state: GradientVarianceState) -> Metric:
        return diagonal_metric(_gradient_diagonal(state))

    return MassMatrixAdaptation(_gradient_start(0), init, update, _restart_by_init, final)


# nutpie's low-rank settings (nuts-rs ``LowRankSettings`` as nutpie 0.16 sets them).
LOW_RANK_GAMMA = 1e-5
LOW_RANK_CUTOFF = 2.0
# hiddenjax's cap: every window's metric must have the same number of columns
# (nutpie keeps every eigenvalue past the cutoff).
LOW_RANK_MAX_RANK = 10
# The window buffer holds at most this many numbers per array (draws and
# gradients), but never fewer than ``LOW_RANK_MIN_ROWS`` draws.
LOW_RANK_BUFFER_ELEMENTS = 2**21
LOW_RANK_MIN_ROWS = 20
# Jacobi stops once the off-diagonal norm is below this fraction of the
# matrix's (Frobenius) norm, which bounds each eigenvalue's error by as much
# (Weyl). At rounding level (~n eps) a window with fewer draws than
# dimensions took up to 40 sweeps, the cap: its ridge-level eigenvalues form a
# cluster whose coupling only halves with each sweep once below 1e-10. At
# 1e-10 it took 8 to 12 (89 dimensions, ``python -m benchmarks.window_end``); the
# estimate itself, from a window of at most a few hundred draws, carries
# errors of several percent. The window-end decompositions
# are most of a low-rank warmup's cost on mid-sized models (radon, 89
# dimensions: about half of a 3.2 s sampling loop, measured by swapping them
# out).
EIGH_TOLERANCE = 1e-10


class LowRankState(NamedTuple):
    """A window's gradient-based variances and its latest draws and gradients."""

    moments: GradientVarianceState
    """Welford accumulators over the whole window (for the diagonal)."""
    draws: Array
    """Ring buffer of the latest positions, shape ``(rows, n)`` (float64)."""
    gradients: Array
    """Ring buffer of their log-density gradients, shape ``(rows, n)`` (float64)."""

    @property
    def count(self) -> Array:
        """Number of draws seen in the window (float64 scalar)."""
        return self.moments.count


def _scaled_window(state: LowRankState, scale: Array):
    """Buffered rows centred and scaled: ``(x - mean) / s``, ``(g - mean) * s``; unfilled rows 0."""
    rows = state.draws.shape[0]
    filled = jnp.minimum(state.count, rows)
    mask = (jnp.arange(rows) < filled)[:, None]

    def centred(a):
        a = jnp.where(mask, a, 0.0)
        return jnp.where(mask, a - jnp.sum(a, axis=0) / jnp.maximum(filled, 1.0), 0.0)

    return centred(state.draws) / scale, centred(state.gradients) * scale, filled


def _safe_eigh(matrix: Array):
    """``eigh`` of the symmetrised ``matrix``; NaN eigenvalues if it is not finite.

    LAPACK is never handed a non-finite matrix (some of its routines, the
    SVD among them, never return on an infinite entry), so failures surface
    as NaN for the caller to catch.
    """
    finite = jnp.all(jnp.isfinite(matrix))
    matrix = jnp.where(finite, 0.5 * (matrix + matrix.T), jnp.eye(matrix.shape[0]))
    values, vectors = linalg.eigh(matrix, EIGH_TOLERANCE)
    return jnp.where(finite, values, jnp.nan), vectors


def _geometric_mean_eigh(a: Array, b: Array):
    """Eigendecomposition of the SPD ``sigma`` with ``sigma b sigma = a``.

    ``sigma`` is the geometric mean of ``a`` and ``b^-1``: the covariance
    that matches both the draws' covariance ``a`` and the gradients'
    covariance ``b``. With the Cholesky factor ``b = L L^T``, the geometric
    mean's invariance under congruence gives
    ``sigma = L^-T (L^T a L)^1/2 L^-1``: one eigendecomposition for the
    square root and one of ``sigma``, where ``b^-1/2 (b^1/2 a b^1/2)^1/2
    b^-1/2`` needs a third for ``b^1/2``. The factor and its inverse come
    from one loop of ``n`` rank-one steps, much cheaper than Jacobi's sweeps:
    at 89 dimensions a window end took 28 to 42 ms against 43 to 56 ms with
    three decompositions (``python -m benchmarks.window_end``).

    The two eigendecompositions run as the two turns of one loop, so the
    program holds one copy of the Jacobi iteration rather than two: each copy
    costs XLA compile time, while a window end comes only a handful of times
    per run.
    """
    lower, inverse = linalg.cholesky_with_inverse(b)

    def turn(k, carry):
        matrix, _, _ = carry
        values, vectors = _safe_eigh(matrix)
        # Turn 0 decomposed L^T a L; its square root gives sigma for turn 1.
        root = (vectors * jnp.sqrt(jnp.maximum(values, 0.0))) @ vectors.T
        return jnp.where(k == 0, inverse.T @ root @ inverse, matrix), values, vectors

    _, values, vectors = lax.fori_loop(0, 2, turn, (lower.T @ a @ lower, a[0], a))
    return values, vectors


def _low_rank_correction(state: LowRankState, scale: Array, gamma: float, cutoff: float,
                         rank: int):
    """``(values, vectors)``: the correction's ``rank`` strongest eigenpairs past the cutoff.

    Unused columns are zero vectors with value 1 (no correction); all of them
    are when anything along the way is not finite.
    """
    draws, gradients, filled = _scaled_window(state, scale)
    ok = jnp.all(jnp.isfinite(draws)) & jnp.all(jnp.isfinite(gradients))
    draws, gradients = jnp.where(ok, draws, 0.0), jnp.where(ok, gradients, 0.0)
    n_rows, n_dim = draws.shape
    # Outside the span of the window's draws and gradients the estimate is
    # exactly 1 (the ridge alone), so only that span needs decomposing.
    basis = None
    if 2 * n_rows < n_dim:
        basis, _ = linalg.qr(jnp.concatenate([draws, gradients]).T)
        draws, gradients = draws @ basis, gradients @ basis
    # nutpie's regularisation: population covariances plus ``n * gamma`` on the diagonal.
    n = jnp.maximum(filled, 1.0)
    ridge = n * gamma * jnp.eye(draws.shape[1])
    values, vectors = _geometric_mean_eigh(draws.T @ draws / n + ridge,
                                           gradients.T @ gradients / n + ridge)
    score = jnp.abs(jnp.log(values))
    # A short window spans fewer directions than the rank (few tuning steps).
    found = min(rank, values.shape[0])
    strength, index = lax.top_k(jnp.where(jnp.isfinite(score), score, 0.0), found)
    values, vectors = values[index], vectors[:, index]
    if basis is not None:
        vectors = basis @ vectors
    ok = ok & jnp.all(values > 0) & jnp.all(jnp.isfinite(values)) \
        & jnp.all(jnp.isfinite(vectors))
    keep = ok & (strength > jnp.log(cutoff))
    values, vectors = jnp.where(keep, values, 1.0), jnp.where(keep, vectors, 0.0)
    unused = rank - found
    return (jnp.pad(values, (0, unused), constant_values=1.0),
            jnp.pad(vectors, ((0, 0), (0, unused))))


def _check_low_rank_args(n_dim, buffer, gamma, cutoff, max_rank) -> None:
    """Refuse settings of the low-rank scheme that cannot work, naming the fix."""
    for name, value in (("n_dim", n_dim), ("buffer", buffer), ("max_rank", max_rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"low-rank mass matrix: {name} must be a positive integer, "
                             f"got {value!r}.")
    if not isinstance(gamma, int | float) or not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"low-rank mass matrix: gamma must be a positive number, got {gamma!r}; "
                         f"nutpie's default is {LOW_RANK_GAMMA}.")
    if not isinstance(cutoff, int | float) or not math.isfinite(cutoff) or cutoff <= 1:
        raise ValueError(f"low-rank mass matrix: cutoff must be a number above 1, got {cutoff!r}; "
                         f"nutpie's default is {LOW_RANK_CUTOFF}.")


def low_rank(
    n_dim: int,
    buffer: int,
    *,
    gamma: float = LOW_RANK_GAMMA,
    cutoff: float = LOW_RANK_CUTOFF,
    max_rank: int = LOW_RANK_MAX_RANK,
) -> MassMatrixAdaptation:
    """nutpie's low-rank modified mass matrix: gradient-based diagonal plus a low-rank correction.

    ``final`` takes the diagonal ``s**2 = sqrt(var(x) / var(g))`` of the whole
    window, then, in the scaled space, the buffered draws ``(x - mean) / s``
    and gradients ``(g - mean) * s``. On the span of both (or all of R^n
    when it is not smaller) it forms ``A = cov(draws) + n gamma I`` and
    ``B = cov(gradients) + n gamma I`` and their geometric mean ``sigma``
    (``sigma B sigma = A``, exact for a Gaussian). The eigenpairs of ``sigma``
    outside ``[1/cutoff, cutoff]``, at most ``max_rank`` of them, strongest
    ``|log lam|`` first, make the correction; ``M^-1 = S (I + U (lam - 1) U^T) S``.

    Parameters
    ----------
    n_dim : int
        Number of coordinates.
    buffer : int
        Longest window; the buffer keeps the latest ``min(buffer, max(20,
        2**21 // n_dim))`` draws and gradients.
    gamma : float, default 1e-5
        Regularisation of both covariances (nutpie's ``mass_matrix_gamma``).
    cutoff : float, default 2.0
        Eigenvalues within ``[1/cutoff, cutoff]`` are dropped (nutpie's
        ``mass_matrix_eigval_cutoff``).
    max_rank : int, default 10
        Columns of the correction (capped at ``n_dim``); unused ones are zero
        with value 1.

    Returns
    -------
    MassMatrixAdaptation
        Starts from ``1 / |gradient|``. When anything in ``final`` is not
        finite the correction is dropped and the diagonal stays.
    """
    _check_low_rank_args(n_dim, buffer, gamma, cutoff, max_rank)
    rows = min(buffer, max(LOW_RANK_MIN_ROWS, LOW_RANK_BUFFER_ELEMENTS // n_dim))
    rank = min(max_rank, n_dim)

    moments = gradient_variance()

    def init(n: int) -> LowRankState:
        zeros = jnp.zeros((rows, n), jnp.float64)
        return LowRankState(moments.init(n), zeros, zeros)

    def update(state: LowRankState, position, gradient, active=True) -> LowRankState:
        # One row rewritten in place (with itself when inactive): a select over
        # the whole buffer would read and write all of it at every step.
        row = (state.count % rows).astype(jnp.int32)

        def write(buffer, x):
            x = jnp.where(active, _f64(x), lax.dynamic_index_in_dim(buffer, row, 0, False))
            return lax.dynamic_update_index_in_dim(buffer, x, row, 0)

        return LowRankState(
            moments=moments.update(state.moments, position, gradient, active),
            draws=write(state.draws, position),
            gradients=write(state.gradients, gradient),
        )

    def restart(state: LowRankState) -> LowRankState:
        # Rows past the count are masked out (``_scaled_window``), so the
        # buffers are kept as they are.
        return state._replace(moments=moments.restart(state.moments))

    def final(state: LowRankState) -> Metric:
        variance = _gradient_diagonal(state.moments)
        scale = jnp.sqrt(variance)
        values, vectors = _low_rank_correction(state, scale, gamma, cutoff, rank)
        return Metric(variance, scale, vectors, values)

    return MassMatrixAdaptation(_gradient_start(rank), init, update, restart, final)


def _dense(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return welford_covariance()


def _diag(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return welford_variance()


def _diag_grad(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return gradient_variance()


def _low_rank(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    return low_rank(n_dim, buffer)


AUTO_LOW_RANK_MAX = linalg.JACOBI_MAX
"""Largest dimension for which ``auto`` picks the low-rank scheme (see ``_auto``)."""


def _auto(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    """The default: nutpie's low rank up to ``AUTO_LOW_RANK_MAX`` dimensions, else Stan's diagonal.

    Chosen by effective samples per gradient (docs/benchmarks/adaptation.md):
    low rank matched or beat the diagonal on every model up to 89
    dimensions (up to 18x on correlated posteriors). Above the cutoff its
    decompositions need LAPACK, which puts a CPU run on one device, and the
    gain measured there (200-dimensional Gaussian: 22 against 19 per 1000
    gradients) did not pay for the lost device.
    """
    if n_dim <= AUTO_LOW_RANK_MAX:
        return low_rank(n_dim, buffer)
    return welford_variance()


ADAPTATIONS: dict[str, Callable[[int, int], MassMatrixAdaptation]] = {
    "auto": _auto,
    "diag": _diag,
    "dense": _dense,
    "diag_grad": _diag_grad,
    "low_rank": _low_rank,
}
"""Scheme name -> ``factory(n_dim, buffer)``; ``buffer`` is the longest window's length."""

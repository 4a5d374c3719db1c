"""Mass-matrix adaptation schemes, each a set of pure functions over a NamedTuple state.

Every scheme is a ``MassMatrixAdaptation``: ``start`` gives the metric to
begin with, ``init`` an empty estimator, ``update`` feeds it one warmup draw
(position and log-density gradient), ``restart`` empties it for the next
window, ``final`` turns it into a ``Metric``. All accumulators are float64
whatever the position's dtype.

``start``, ``init`` and ``update`` are JAX functions, traced into the
sampler's step. ``update`` takes an ``active`` flag, so the step feeds the
window at every step with no conditional around it: an XLA conditional that
returns a buffer it was handed copies it whole, which for a low-rank window's
buffer of draws and gradients (hundreds of rows) meant four whole copies at
every warmup step.

``final`` and ``restart`` run on the host, in numpy, at the end of a window
(the execution layer stops its chunk call there, see
``program.NUTSProgram.end_window``), on states with any leading batch axes
(chains). A window end is a few times per run, and the decompositions it needs
are what LAPACK does best: in the chunk program they had to be plain-JAX
loops (LAPACK calls put a CPU run on one device) that took 17 to 21 ms per
chain at 89 dimensions, against 2 to 4 ms here (docs/execution.md).

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
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from hiddenjax.samplers.metrics import Metric, diagonal_metric

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
    """``restart(state) -> state`` on the host (numpy): the window emptied; arrays that
    the count masks out are kept."""
    final: Callable
    """``final(state) -> Metric`` on the host (numpy, float64), over any leading batch axes;
    needs ``state.count >= 2`` (callers keep their metric otherwise)."""


def regularize_variance(variance: ArrayLike, count: ArrayLike) -> np.ndarray:
    """Stan's shrinkage of a sample variance from ``count`` draws towards ``1e-3``.

    Parameters
    ----------
    variance : array_like
        Sample variance per coordinate (or a covariance matrix's diagonal).
    count : array_like
        Number of draws it came from.

    Returns
    -------
    numpy.ndarray
        ``variance * n / (n + 5) + 1e-3 * 5 / (n + 5)``, float64.
    """
    n = np.asarray(count, np.float64)
    return np.asarray(variance, np.float64) * (n / (n + 5.0)) + 1e-3 * (5.0 / (n + 5.0))


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
    """An empty state shaped as ``state``, on the host: every accumulator zero."""
    return jax.tree.map(lambda x: np.zeros(np.shape(x), np.float64), state)


def _host(state):
    """``state``'s arrays as float64 numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x, np.float64), state)


def _sample_variance(state: WelfordState) -> np.ndarray:
    """Unbiased variance over the last axis's draws; NaN below two draws."""
    count = np.asarray(state.count)[..., None]
    enough = count >= 2.0
    return np.where(enough, state.m2 / np.where(enough, count - 1.0, 1.0), np.nan)


def _host_diagonal(variance: np.ndarray) -> Metric:
    """The host metric of a diagonal inverse mass matrix (batched over leading axes)."""
    batch, n = variance.shape[:-1], variance.shape[-1]
    return Metric(variance, np.sqrt(variance), np.zeros((*batch, n, 0)), np.zeros((*batch, 0)))


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
        state = _host(state)
        count = state.count[..., None]
        return _host_diagonal(regularize_variance(_sample_variance(state), count))

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
        state = _host(state)
        n = state.count[..., None, None]
        covariance = state.m2 / np.maximum(n - 1.0, 1.0)
        eye = np.eye(covariance.shape[-1])
        shrunk = covariance * (n / (n + 5.0)) + eye * (1e-3 * 5.0 / (n + 5.0))
        # Symmetrised in _safe_eigh; a non-finite window gives NaN (the caller keeps its metric).
        with np.errstate(all="ignore"):
            values, vectors = _safe_eigh(shrunk)
        ones = np.ones(shrunk.shape[:-1])
        return Metric(ones, ones, vectors, values)

    return MassMatrixAdaptation(start, init, update, _restart_by_init, final)


def _population_variance(state: WelfordState) -> np.ndarray:
    return state.m2 / np.maximum(np.asarray(state.count)[..., None], 1.0)


def _gradient_diagonal(moments: GradientVarianceState) -> np.ndarray:
    """``sqrt(var(draws) / var(gradients))`` within the bounds; 1 where it is 0/0, as nutpie."""
    moments = _host(moments)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _population_variance(moments.draws) / _population_variance(moments.gradients)
        variance = np.clip(np.sqrt(ratio), *VARIANCE_BOUNDS)
    return np.where(np.isnan(variance), 1.0, variance)


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
        return _host_diagonal(_gradient_diagonal(state))

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


def _scaled_window(state: LowRankState, scale: np.ndarray):
    """Buffered rows centred and scaled: ``(x - mean) / s``, ``(g - mean) * s``; unfilled rows 0.

    Host arrays with any leading batch axes; ``filled`` has the batch shape.
    """
    rows = state.draws.shape[-2]
    filled = np.minimum(np.asarray(state.count), rows)
    mask = (np.arange(rows) < filled[..., None])[..., None]
    divisor = np.maximum(filled, 1.0)[..., None, None]

    def centred(a):
        a = np.where(mask, a, 0.0)
        return np.where(mask, a - np.sum(a, axis=-2, keepdims=True) / divisor, 0.0)

    return (centred(state.draws) / scale[..., None, :],
            centred(state.gradients) * scale[..., None, :], filled)


def _all_finite(x: np.ndarray, axes: int) -> np.ndarray:
    """Whether every entry of the last ``axes`` axes is finite, per batch element."""
    return np.all(np.isfinite(x), axis=tuple(range(-axes, 0)))


def _safe_eigh(matrix: np.ndarray):
    """``eigh`` of the symmetrised ``matrix`` (LAPACK, batched); NaN eigenvalues where a
    matrix is not finite.

    LAPACK is never handed a non-finite matrix (some of its routines never
    return on an infinite entry), so failures surface as NaN for the caller
    to catch.
    """
    finite = _all_finite(matrix, 2)
    eye = np.eye(matrix.shape[-1])
    symmetric = 0.5 * (matrix + np.swapaxes(matrix, -1, -2))
    values, vectors = np.linalg.eigh(np.where(finite[..., None, None], symmetric, eye))
    return np.where(finite[..., None], values, np.nan), vectors


def _safe_cholesky(matrix: np.ndarray):
    """``(lower, ok)``: the Cholesky factor of each matrix, the identity where a matrix
    is not finite or not numerically positive definite (``ok`` False there)."""
    ok = _all_finite(matrix, 2)
    eye = np.eye(matrix.shape[-1])
    matrix = np.where(ok[..., None, None], matrix, eye)
    try:
        return np.linalg.cholesky(matrix), ok
    except np.linalg.LinAlgError:  # one of the batch failed: find which
        flat = matrix.reshape(-1, *matrix.shape[-2:])
        lowers, fine = [], []
        for one in flat:
            try:
                lowers.append(np.linalg.cholesky(one))
                fine.append(True)
            except np.linalg.LinAlgError:
                lowers.append(eye)
                fine.append(False)
        return (np.stack(lowers).reshape(matrix.shape),
                ok & np.asarray(fine).reshape(ok.shape))


def _geometric_mean_eigh(a: np.ndarray, b: np.ndarray):
    """Eigendecomposition of the SPD ``sigma`` with ``sigma b sigma = a`` (batched).

    ``sigma`` is the geometric mean of ``a`` and ``b^-1``: the covariance
    that matches both the draws' covariance ``a`` and the gradients'
    covariance ``b``. With the Cholesky factor ``b = L L^T``, the geometric
    mean's invariance under congruence gives
    ``sigma = L^-T (L^T a L)^1/2 L^-1``: one eigendecomposition for the
    square root and one of ``sigma``. Eigenvalues are NaN where ``b`` has no
    factor or anything is not finite.
    """
    lower, ok = _safe_cholesky(b)
    inverse = np.linalg.inv(lower)
    transpose = np.swapaxes
    values, vectors = _safe_eigh(transpose(lower, -1, -2) @ a @ lower)
    root = (vectors * np.sqrt(np.maximum(values, 0.0))[..., None, :]) @ transpose(vectors, -1, -2)
    values, vectors = _safe_eigh(transpose(inverse, -1, -2) @ root @ inverse)
    return np.where(ok[..., None], values, np.nan), vectors


def _low_rank_correction(state: LowRankState, scale: np.ndarray, gamma: float, cutoff: float,
                         rank: int):
    """``(values, vectors)``: the correction's ``rank`` strongest eigenpairs past the cutoff.

    Unused columns are zero vectors with value 1 (no correction); all of them
    are where anything along the way is not finite.
    """
    draws, gradients, filled = _scaled_window(state, scale)
    ok = _all_finite(draws, 2) & _all_finite(gradients, 2)
    draws = np.where(ok[..., None, None], draws, 0.0)
    gradients = np.where(ok[..., None, None], gradients, 0.0)
    n_rows, n_dim = draws.shape[-2:]
    transpose = np.swapaxes
    # Outside the span of the window's draws and gradients the estimate is
    # exactly 1 (the ridge alone), so only that span needs decomposing.
    basis = None
    if 2 * n_rows < n_dim:
        basis, _ = np.linalg.qr(transpose(np.concatenate([draws, gradients], axis=-2), -1, -2))
        draws, gradients = draws @ basis, gradients @ basis
    # nutpie's regularisation: population covariances plus ``n * gamma`` on the diagonal.
    n = np.maximum(filled, 1.0)[..., None, None]
    ridge = n * gamma * np.eye(draws.shape[-1])
    values, vectors = _geometric_mean_eigh(transpose(draws, -1, -2) @ draws / n + ridge,
                                           transpose(gradients, -1, -2) @ gradients / n + ridge)
    score = np.abs(np.log(values))
    # A short window spans fewer directions than the rank (few tuning steps).
    found = min(rank, values.shape[-1])
    score = np.where(np.isfinite(score), score, 0.0)
    index = np.argsort(-score, axis=-1, kind="stable")[..., :found]
    strength = np.take_along_axis(score, index, axis=-1)
    values = np.take_along_axis(values, index, axis=-1)
    vectors = np.take_along_axis(vectors, index[..., None, :], axis=-1)
    if basis is not None:
        vectors = basis @ vectors
    ok = ok & np.all(values > 0, axis=-1) & _all_finite(values, 1) & _all_finite(vectors, 2)
    keep = ok[..., None] & (strength > np.log(cutoff))
    values = np.where(keep, values, 1.0)
    vectors = np.where(keep[..., None, :], vectors, 0.0)
    unused = [(0, 0)] * (values.ndim - 1) + [(0, rank - found)]
    return (np.pad(values, unused, constant_values=1.0),
            np.pad(vectors, [(0, 0)] * (vectors.ndim - 1) + [(0, rank - found)]))


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
        state = _host(state)
        variance = _gradient_diagonal(state.moments)
        scale = np.sqrt(variance)
        # Non-finite values are caught where they matter (see _low_rank_correction).
        with np.errstate(all="ignore"):
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


AUTO_LOW_RANK_MAX = 128
"""Largest dimension for which ``auto`` picks the low-rank scheme (see ``_auto``)."""


def _auto(n_dim: int, buffer: int) -> MassMatrixAdaptation:
    """The default: nutpie's low rank up to ``AUTO_LOW_RANK_MAX`` dimensions, else Stan's diagonal.

    Chosen by effective samples per gradient (docs/benchmarks/adaptation.md):
    low rank matched or beat the diagonal on every model up to 89
    dimensions (up to 18x on correlated posteriors). Above the cutoff the
    gain measured was small (200-dimensional Gaussian: 22 against 19 per 1000
    gradients; stochastic volatility, 1,002 dimensions: none), while a window
    end's decompositions grow as the cube of the dimension (the span of up to
    500 buffered draws and gradients, decomposed per chain on the host).
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

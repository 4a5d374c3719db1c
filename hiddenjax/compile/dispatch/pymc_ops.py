"""PyMC's own Ops: interpolation splines and the minibatch marker."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from pymc.distributions.dist_math import SplineWrapper
from pymc.variational.minibatch_rv import MinibatchRandomVariable
from pytensor.link.jax.dispatch.basic import jax_funcify

# scipy's UnivariateSpline ``ext`` codes.
_EXTRAPOLATE, _ZEROS, _RAISE, _CONST = 0, 1, 2, 3


def _bspline(t, c, k):
    """Evaluate the B-spline ``(t, c, k)`` with de Boor's algorithm, like FITPACK's splev."""
    n = len(t) - k - 1
    t, c = jnp.asarray(t), jnp.asarray(c[:n])

    def evaluate(x):
        # Interval i with t[i] <= x < t[i + 1], clamped to the spline's base interval.
        i = jnp.clip(jnp.searchsorted(t, x, side="right") - 1, k, n - 1)
        d = [c[i - k + j] for j in range(k + 1)]
        for r in range(1, k + 1):
            for j in range(k, r - 1, -1):
                left, right = t[i - k + j], t[i + 1 + j - r]
                alpha = (x - left) / (right - left)
                d[j] = (1.0 - alpha) * d[j - 1] + alpha * d[j]
        return d[k]

    return evaluate


def _spline_function(scipy_spline):
    """A JAX function equal to ``scipy_spline(x)``, differentiated like ``SplineWrapper``.

    Its derivative is the derivative spline (``scipy_spline.derivative()``, same
    extrapolation mode), exactly what PyTensor's gradient of ``SplineWrapper`` uses.
    """
    t, c, k = scipy_spline._eval_args
    ext = getattr(scipy_spline, "ext", _EXTRAPOLATE)
    lo, hi = float(t[k]), float(t[len(t) - k - 1])
    evaluate = _bspline(np.asarray(t, float), np.asarray(c, float), int(k))

    @jax.custom_jvp
    def spline(x):
        x = jnp.asarray(x)
        outside = (x < lo) | (x > hi)
        if ext == _CONST:
            x = jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))
        y = evaluate(x)
        if ext == _ZEROS:
            y = jnp.where(outside, 0.0, y)
        elif ext == _RAISE:
            y = jnp.where(outside, jnp.nan, y)  # scipy raises; NaN keeps the point invalid
        return y.astype(x.dtype)

    @spline.defjvp
    def spline_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        if k == 0:
            raise NotImplementedError("A spline of order 0 is not differentiable.")
        return spline(x), _spline_function(scipy_spline.derivative())(x) * dx

    return spline


@jax_funcify.register(SplineWrapper)
def funcify_SplineWrapper(op, node=None, **kwargs):
    return _spline_function(op.spline)


@jax_funcify.register(MinibatchRandomVariable)
def funcify_MinibatchRandomVariable(op, **kwargs):
    def minibatch_random_variable(rv, *total_size):
        # The Op only marks ``rv`` for log-density rescaling; its value is ``rv``.
        return rv

    return minibatch_random_variable

"""Maximising a log-density: SciPy's L-BFGS-B on the host, fed by a compiled value-and-gradient.

Why SciPy on the host rather than an optimiser in JAX: a MAP fit takes tens to
a few thousand evaluations, each a single call of a jitted
``value_and_grad``, so the host round trip costs microseconds against the
model's own cost; SciPy's L-BFGS-B is PyMC's default, so results and stopping
rules agree with ``pm.find_MAP``; and it needs no new dependency (SciPy comes
with PyMC; optax, the usual JAX choice, is not installed and offers L-BFGS
only as a building block without SciPy's bounded line search).

The functions here see one flat float vector and a callable; they know
nothing of models or variable names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import optimize

GRADIENT_FREE = frozenset({"powell", "nelder-mead", "cobyla", "cobyqa"})
"""SciPy methods that take no gradient."""


class OptimizeResult(NamedTuple):
    """Where the optimiser stopped and why."""

    x: np.ndarray
    """Best point found."""
    fun: float
    """Log-density at ``x`` (to be maximised, not the minimised negative)."""
    grad: np.ndarray
    """Gradient of the log-density at ``x``."""
    n_eval: int
    """Evaluations of the log-density."""
    converged: bool
    """Whether the optimiser met its convergence test."""
    message: str
    """The optimiser's own account of why it stopped."""
    raw: object
    """SciPy's ``OptimizeResult`` (None when stopped by ``maxeval``)."""


class _Budget(Exception):
    """Raised inside the objective when the evaluation budget is spent."""


class _Unbounded(Exception):
    """Raised inside the objective when the log-density reaches +inf."""


class _Objective:
    """Negated log-density for SciPy, counting evaluations and keeping the best point."""

    def __init__(self, value_and_grad, maxeval: int, progress):
        self.value_and_grad, self.maxeval, self.progress = value_and_grad, maxeval, progress
        self.n_eval = 0
        self.best = (None, -np.inf, None)

    def __call__(self, x):
        if self.n_eval >= self.maxeval:
            raise _Budget
        value, grad = self.value_and_grad(np.asarray(x, dtype=float))
        self.n_eval += 1
        value, grad = float(value), np.asarray(grad, dtype=float)
        if np.isfinite(value) and value > self.best[1]:
            self.best = (np.array(x, dtype=float), value, grad)
        if self.progress is not None:
            self.progress(self.n_eval, value, grad)
        if value == np.inf:
            raise _Unbounded
        if not np.isfinite(value):
            # SciPy's line search backs off from +inf; NaN would poison it.
            return np.inf, np.zeros_like(grad)
        return -value, -grad


def maximize(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    method: str = "L-BFGS-B",
    maxeval: int = 5000,
    progress: Callable[[int, float, np.ndarray], None] | None = None,
    **kwargs,
) -> OptimizeResult:
    """Maximise a log-density from ``x0`` with ``scipy.optimize.minimize``.

    Parameters
    ----------
    value_and_grad : callable
        ``value_and_grad(x) -> (logp, grad)`` on numpy arrays.
    x0 : array
        Starting point; its log-density must be finite.
    method : str
        A ``scipy.optimize.minimize`` method. Gradient-free methods get the value only.
    maxeval : int
        Most evaluations; the best point so far is returned when they are spent.
    progress : callable, optional
        Called after each evaluation with ``(n_eval, logp, grad)``.
    **kwargs
        Passed to ``scipy.optimize.minimize``.
    """
    if not isinstance(maxeval, int | np.integer) or maxeval < 1:
        raise ValueError(f"maxeval={maxeval!r} must be an integer >= 1.")
    objective = _Objective(value_and_grad, int(maxeval), progress)
    gradient_free = isinstance(method, str) and method.lower() in GRADIENT_FREE
    fun = (lambda x: objective(x)[0]) if gradient_free else objective
    try:
        raw = optimize.minimize(fun, np.asarray(x0, dtype=float), method=method,
                                jac=not gradient_free, **kwargs)
        converged, message = bool(raw.success), str(raw.message)
    except _Budget:
        raw, converged = None, False
        message = f"stopped after maxeval={maxeval} evaluations of the log-density"
    except _Unbounded:
        raw, converged = None, False
        message = "the log-density reached +inf: it is unbounded above, so there is no mode"
    x, value, grad = objective.best
    if x is None:
        x, value, grad = np.asarray(x0, dtype=float), -np.inf, np.full(np.shape(x0), np.nan)
    return OptimizeResult(x=x, fun=value, grad=grad, n_eval=objective.n_eval,
                          converged=converged, message=message, raw=raw)

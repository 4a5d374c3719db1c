"""Automatic differentiation variational inference: Gaussian families on the unconstrained space.

Two families, as in PyMC: mean-field (independent Gaussians, ``sigma =
softplus(rho)``) and full-rank (a Cholesky factor whose diagonal passes
through ``softplus``). The objective is PyMC's Monte-Carlo estimate of
``KL(q || p)`` up to the log evidence, ``mean(log q(z) - log p(z))`` with
``z = mu + L eps`` (the reparameterisation trick); it is minimised with
PyMC's default optimiser, ``adagrad_window``.

An algorithm is ``init(position) -> ADVIState`` and ``step(key, state) ->
(ADVIState, ADVIInfo)``: pure functions of arrays, with the random key an
argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("advi", "fullrank_advi")
"""Method names, as ``pymc.fit`` spells them."""


class Family(NamedTuple):
    """A Gaussian family over ``dim`` unconstrained coordinates."""

    init: Callable
    """``init(mean, sigma) -> params`` (``sigma``: per-coordinate start scale or None)."""
    draw: Callable
    """``draw(params, eps) -> z`` for standard-normal ``eps`` of shape ``(..., dim)``."""
    log_det: Callable
    """``log_det(params) -> scalar``: log-determinant of the scale matrix."""
    mean: Callable
    """``mean(params) -> (dim,)``."""
    cov: Callable
    """``cov(params) -> (dim, dim)``."""


def _softplus_inverse(x):
    return jnp.log(jnp.expm1(x))


def mean_field(dim: int) -> Family:
    """Independent Gaussians; PyMC's ``MeanField`` (``rho = 0`` at the start unless told)."""

    def init(mean, sigma=None):
        rho = jnp.zeros(dim) if sigma is None else _softplus_inverse(jnp.abs(sigma))
        return {"mu": jnp.asarray(mean), "rho": rho}

    def draw(params, eps):
        return params["mu"] + jax.nn.softplus(params["rho"]) * eps

    return Family(
        init=init,
        draw=draw,
        log_det=lambda p: jnp.sum(jnp.log(jax.nn.softplus(p["rho"]))),
        mean=lambda p: p["mu"],
        cov=lambda p: jnp.diag(jax.nn.softplus(p["rho"]) ** 2),
    )


def full_rank(dim: int) -> Family:
    """A Gaussian with a dense covariance; PyMC's ``FullRank`` (packed lower triangle, identity at the start)."""
    rows, cols = np.tril_indices(dim)
    diag = np.arange(dim)

    def chol(params):
        raw = jnp.zeros((dim, dim)).at[rows, cols].set(params["L_tril"])
        return raw.at[diag, diag].set(jax.nn.softplus(raw[diag, diag]))

    def init(mean, sigma=None):
        return {"mu": jnp.asarray(mean), "L_tril": jnp.asarray(np.eye(dim)[rows, cols])}

    def draw(params, eps):
        return params["mu"] + eps @ chol(params).T

    return Family(
        init=init,
        draw=draw,
        log_det=lambda p: jnp.sum(jnp.log(jnp.diagonal(chol(p)))),
        mean=lambda p: p["mu"],
        cov=lambda p: chol(p) @ chol(p).T,
    )


class AdagradWindowState(NamedTuple):
    """Squared gradients of the last ``n_win`` steps."""

    accu: dict
    """Per parameter: ``(*shape, n_win)`` squared gradients."""
    index: jax.Array
    """Slot the next squared gradient goes to."""


class Optimizer(NamedTuple):
    """An optimiser as ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``."""

    init: Callable
    """``init(params) -> state``."""
    update: Callable
    """``update(grads, state, params) -> (params, state)``."""


def adagrad_window(learning_rate: float = 1e-3, epsilon: float = 0.1, n_win: int = 10) -> Optimizer:
    """PyMC's default variational optimiser: Adagrad over a running window of gradients."""
    if not learning_rate > 0 or not epsilon > 0 or int(n_win) < 1:
        raise ValueError(
            f"adagrad_window needs learning_rate > 0, epsilon > 0 and n_win >= 1; got "
            f"learning_rate={learning_rate!r}, epsilon={epsilon!r}, n_win={n_win!r}."
        )
    n_win = int(n_win)

    def init(params):
        accu = jax.tree.map(lambda p: jnp.zeros((*jnp.shape(p), n_win), jnp.result_type(p)), params)
        return AdagradWindowState(accu=accu, index=jnp.zeros((), jnp.int32))

    def update(grads, state, params):
        accu = jax.tree.map(lambda a, g: a.at[..., state.index].set(g * g), state.accu, grads)
        params = jax.tree.map(
            lambda p, g, a: p - learning_rate * g / jnp.sqrt(a.sum(-1) + epsilon), params, grads, accu
        )
        return params, AdagradWindowState(accu=accu, index=(state.index + 1) % n_win)

    return Optimizer(init, update)


class AdamState(NamedTuple):
    """Adam's moment estimates."""

    m: dict
    """First-moment estimate per parameter."""
    v: dict
    """Second-moment estimate per parameter."""
    t: jax.Array
    """Steps taken."""


def adam(learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
         epsilon: float = 1e-8) -> Optimizer:
    """Adam, with PyMC's (Lasagne's) bias correction folded into the step size."""
    if not learning_rate > 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1 or not epsilon > 0:
        raise ValueError(
            "adam needs learning_rate > 0, 0 <= beta1 < 1, 0 <= beta2 < 1 and epsilon > 0; got "
            f"{learning_rate!r}, {beta1!r}, {beta2!r}, {epsilon!r}."
        )

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamState(m=zeros, v=zeros, t=jnp.zeros((), jnp.result_type(float)))

    def update(grads, state, params):
        t = state.t + 1
        step = learning_rate * jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
        m = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, state.m, grads)
        v = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, state.v, grads)
        params = jax.tree.map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + epsilon), params, m, v)
        return params, AdamState(m=m, v=v, t=t)

    return Optimizer(init, update)


OPTIMIZERS = {"adagrad_window": adagrad_window, "adam": adam}
"""Optimisers by PyMC's name for them."""


class ADVIState(NamedTuple):
    """Variational parameters and the optimiser's state."""

    params: dict
    """The family's parameters (``mu`` and ``rho`` or ``L_tril``)."""
    opt_state: NamedTuple
    """The optimiser's state."""


class ADVIInfo(NamedTuple):
    """What one step reports."""

    loss: jax.Array
    """Monte-Carlo estimate of ``KL(q || p)`` minus the log evidence, before the step."""


class ADVI(NamedTuple):
    """A variational algorithm: ``init`` and ``step``, with its family."""

    init: Callable
    """``init(position, sigma=None) -> ADVIState``."""
    step: Callable
    """``step(key, state) -> (ADVIState, ADVIInfo)``."""
    family: Family
    """The Gaussian family fitted."""


def build_advi(
    logdensity: Callable,
    dim: int,
    method: str = "advi",
    *,
    obj_n_mc: int = 1,
    optimizer: Optimizer | None = None,
) -> ADVI:
    """ADVI of ``logdensity`` (on the unconstrained space, Jacobians included).

    Parameters
    ----------
    logdensity : callable
        ``logdensity(z) -> scalar`` for a flat ``z`` of length ``dim``.
    dim : int
        Number of unconstrained coordinates.
    method : {"advi", "fullrank_advi"}
        Mean-field or full-rank Gaussian family.
    obj_n_mc : int
        Monte-Carlo draws per gradient estimate.
    optimizer : Optimizer, optional
        Default: :func:`adagrad_window` with PyMC's settings.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a variational family hiddenjax fits; use one of {METHODS}.")
    if not isinstance(obj_n_mc, int | np.integer) or obj_n_mc < 1:
        raise ValueError(f"obj_n_mc={obj_n_mc!r} must be an integer >= 1.")
    family = (mean_field if method == "advi" else full_rank)(int(dim))
    optimizer = optimizer or adagrad_window()
    def objective(params, key):
        eps = jax.random.normal(key, (int(obj_n_mc), int(dim)))
        z = family.draw(params, eps)
        log_q = jnp.sum(-0.5 * eps**2 - 0.5 * jnp.log(2 * jnp.pi), axis=-1) - family.log_det(params)
        return jnp.mean(log_q - jax.vmap(logdensity)(z))

    value_and_grad = jax.value_and_grad(objective)

    def init(position, sigma=None) -> ADVIState:
        params = family.init(position, sigma)
        return ADVIState(params=params, opt_state=optimizer.init(params))

    def step(key, state: ADVIState):
        loss, grads = value_and_grad(state.params, key)
        params, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return ADVIState(params=params, opt_state=opt_state), ADVIInfo(loss=loss)

    return ADVI(init=init, step=step, family=family)

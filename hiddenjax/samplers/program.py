"""The per-chain NUTS program the execution layer runs: init, warmup step, sampling step.

Warmup follows Stan's schedule: dual averaging adapts the step size at
every warmup step, and at the end of each slow window the inverse mass
matrix is set from the window's estimate, the estimator is emptied, and
dual averaging restarts with ``mu = log(10 * step_size)``. After the last
warmup step the sampling step size is the averaged step size of dual
averaging.

The window's metric is not computed in ``step``: the program lists the
steps that end a window (``window_ends``), and whoever runs it calls
``end_window`` on the chains' states after each of them, on the host (see
``mass_matrix``). The step that ends a window feeds it its draw and restarts
dual averaging, as in Stan; ``end_window`` then sets the metric and empties
the window before the next step.

One departure from Stan: dual averaging does not restart at the end of the
last window. Restarted there, its average covers only the 50-step terminal
buffer, which starts with the restart's transient; and because the
acceptance statistic falls steeply with the step size, an average of the
fluctuating log step sizes lands below the step size that meets the
target. Measured on posteriordb's nes2000 and arK (4 chains, 1000 + 1000),
the sampling phase then accepts 0.93 to 0.94 against a target of 0.8 and
spends about a third more gradients per effective sample. Continuing the
average through the terminal buffer (the last metric refines the one before
it, so the step size needs no fresh start) gives 0.85 to 0.86, as PyMC's
never-restarted dual averaging does.

The first step size is PyMC's ``0.25 / n_dim ** 0.25`` rather than Stan's
heuristic search: ``init`` takes no random key (the heuristic needs
momenta) and spends no gradient, PyMC users get PyMC's starting point, and
dual averaging corrects it within the first steps. Stan's search is not
rerun at window ends either; dual averaging restarts from the current step
size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from hiddenjax.samplers import nuts
from hiddenjax.samplers.mass_matrix import ADAPTATIONS, tree_where
from hiddenjax.samplers.metrics import Metric
from hiddenjax.samplers.step_size import DualAveragingState, dual_averaging, initial_step_size
from hiddenjax.samplers.warmup import WarmupSchedule, in_window, is_window_end, nuts_schedule

__all__ = ["ChainState", "NUTSProgram", "StepInfo", "build_nuts_program"]

# PyMC's NUTS caps the tree depth at ``early_max_treedepth`` for this many warmup steps.
EARLY_STEPS = 200


class ChainState(NamedTuple):
    """Everything one chain carries from step to step."""

    nuts: nuts.NUTSState
    """Position with its cached log-density and gradient."""
    step_size: Array
    """Step size of the next transition (float64 scalar)."""
    metric: Metric
    """Inverse mass matrix of the next transition (float64)."""
    step_size_adaptation: DualAveragingState
    """Dual-averaging accumulators."""
    mass_matrix_adaptation: NamedTuple
    """Accumulators of the current slow window, in the adaptation scheme's state."""


class StepInfo(NamedTuple):
    """Per-step statistics, named and defined as PyMC's NUTS ``sample_stats``."""

    lp: Array
    """Log-density at the new position."""
    acceptance_rate: Array
    """Mean over the trajectory's leapfrog steps of ``min(1, exp(H0 - H))``."""
    diverging: Array
    """Whether the trajectory diverged."""
    energy: Array
    """Hamiltonian at the new position."""
    energy_error: Array
    """Hamiltonian at the new position minus the initial Hamiltonian."""
    max_energy_error: Array
    """Largest (in absolute value) energy error along the trajectory."""
    n_steps: Array
    """Leapfrog steps (gradient evaluations) of the transition."""
    step_size: Array
    """Step size used for this transition."""
    step_size_bar: Array
    """Dual averaging's averaged step size; during sampling, the step size in use."""
    tree_depth: Array
    """Number of trajectory doublings."""
    reached_max_treedepth: Array
    """Whether the tree hit ``max_treedepth``; always False during warmup, as in PyMC."""


class NUTSProgram(NamedTuple):
    """Pure per-chain functions, to be ``vmap``-ed over chains and ``scan``-ned over steps."""

    init: Callable
    """``init(position) -> ChainState`` for a 1-D float position."""
    step: Callable
    """``step(key, state, step_index) -> (ChainState, StepInfo)``: a warmup transition
    (then adaptation) while ``step_index < num_tune``, a sampling transition with the
    adapted settings after. One NUTS kernel serves both, so a program holds one copy
    of it."""
    position: Callable
    """``position(state) -> Array``: the chain's current position."""
    window_ends: tuple[int, ...] = ()
    """Steps (0-based, increasing) after which ``end_window`` must run."""
    end_window: Callable | None = None
    """``end_window(states) -> states`` on the host: chain states (numpy arrays, any
    leading chain axes) with the finished window's metric set and the window emptied."""


def _check_program_args(num_tune, target_accept, adaptation, early_max_treedepth,
                        step_scale) -> None:
    """Refuse static warmup settings that cannot work, naming the fix."""
    if isinstance(num_tune, bool) or not isinstance(num_tune, int) or num_tune < 0:
        raise ValueError(
            f"num_tune (tune) must be an integer >= 0, got {num_tune!r}; "
            "use tune=0 to sample without adaptation."
        )
    valid = not isinstance(target_accept, bool) and isinstance(target_accept, (int, float))
    if not valid or math.isnan(target_accept) or not 0.0 < target_accept < 1.0:
        raise ValueError(
            f"target_accept must be in (0, 1), got {target_accept!r}; "
            "the default is 0.8, and 0.9 to 0.99 helps with divergences."
        )
    if adaptation not in ADAPTATIONS:
        raise ValueError(
            f"adaptation={adaptation!r} is not a mass-matrix adaptation; "
            f"use one of {', '.join(map(repr, ADAPTATIONS))}."
        )
    if isinstance(early_max_treedepth, bool) or not isinstance(early_max_treedepth, int) \
            or early_max_treedepth < 1:
        raise ValueError(
            f"early_max_treedepth must be a positive integer, got {early_max_treedepth!r}; "
            "the default is 8."
        )
    valid = not isinstance(step_scale, bool) and isinstance(step_scale, (int, float))
    if not valid or not math.isfinite(step_scale) or step_scale <= 0:
        raise ValueError(f"step_scale must be a positive number, got {step_scale!r}; "
                         "the default is 0.25.")


def _step_info(nuts_info: nuts.NUTSInfo, lp, step_size, step_size_bar, reached) -> StepInfo:
    """StepInfo with float statistics in float64, whatever the model's precision."""

    def f64(x):
        return jnp.asarray(x, jnp.float64)

    return StepInfo(
        lp=f64(lp),
        acceptance_rate=f64(nuts_info.acceptance_rate),
        diverging=nuts_info.diverging,
        energy=f64(nuts_info.energy),
        energy_error=f64(nuts_info.energy_error),
        max_energy_error=f64(nuts_info.max_energy_error),
        n_steps=nuts_info.n_steps,
        step_size=f64(step_size),
        step_size_bar=f64(step_size_bar),
        tree_depth=nuts_info.tree_depth,
        reached_max_treedepth=reached,
    )


def build_nuts_program(
    logdensity_fn: Callable,
    num_tune: int,
    *,
    target_accept: float = 0.8,
    max_treedepth: int = 10,
    early_max_treedepth: int = 8,
    max_energy_error: float = 1000.0,
    adaptation: str = "diag",
    step_scale: float = 0.25,
) -> NUTSProgram:
    """NUTS with Stan's windowed adaptation of the step size and the mass matrix.

    Parameters
    ----------
    logdensity_fn : callable
        ``logdensity_fn(position) -> scalar`` for a 1-D float position.
    num_tune : int
        Number of warmup steps, ``>= 0``. With 0 there is no adaptation: the
        scheme's starting metric and the initial step size are used throughout.
    target_accept : float, default 0.8
        Acceptance statistic dual averaging aims for, in ``(0, 1)``.
    max_treedepth : int, default 10
        Maximum number of trajectory doublings.
    early_max_treedepth : int, default 8
        Maximum doublings during the first ``EARLY_STEPS`` warmup steps, as
        PyMC's NUTS (capped by ``max_treedepth``).
    max_energy_error : float, default 1000.0
        Energy error from which a leapfrog step counts as divergent.
    adaptation : str, default "diag"
        Mass-matrix scheme, a key of ``mass_matrix.ADAPTATIONS``.
    step_scale : float, default 0.25
        The first step size is ``step_scale / n_dim ** 0.25``, as PyMC.

    Returns
    -------
    NUTSProgram
        Pure functions of their arguments only (random keys included).

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    _check_program_args(num_tune, target_accept, adaptation, early_max_treedepth, step_scale)
    kernel = nuts.build_kernel(logdensity_fn, max_treedepth, max_energy_error)
    schedule = nuts_schedule(num_tune)
    step_adapt = dual_averaging(target_accept)
    early_depth = min(early_max_treedepth, max_treedepth)

    def scheme(n_dim: int):
        longest = max((end - begin for begin, end in schedule.windows), default=1)
        return ADAPTATIONS[adaptation](n_dim, longest)

    def init(position: ArrayLike) -> ChainState:
        position = jnp.asarray(position)
        if position.ndim != 1:
            raise ValueError(
                f"The NUTS position must be a 1-D array, got shape {position.shape}; "
                "ravel the free variables into one flat vector."
            )
        n_dim = position.shape[0]
        mass_adapt = scheme(n_dim)
        step_size = initial_step_size(n_dim, step_scale)
        start = nuts.init(position, logdensity_fn)
        return ChainState(
            nuts=start,
            step_size=jnp.asarray(step_size, jnp.float64),
            metric=mass_adapt.start(start.position, start.logdensity_grad),
            step_size_adaptation=step_adapt.init(step_size),
            mass_matrix_adaptation=mass_adapt.init(n_dim),
        )

    def step(key: Array, state: ChainState, step_index: ArrayLike):
        warmup = step_index < num_tune
        early = warmup & (step_index < EARLY_STEPS)
        max_depth = jnp.where(early, early_depth, max_treedepth)
        nuts_state, info = kernel(key, state.nuts, state.step_size, state.metric, max_depth)
        mass_adapt = scheme(state.nuts.position.shape[0])
        # Adaptation runs at every step, a no-op after warmup, with selects
        # rather than a conditional: see _adapt.
        new_state, step_size_bar = _adapt(schedule, step_adapt, mass_adapt, state, nuts_state,
                                          info, step_index)
        # PyMC never flags the tree-depth limit during warmup.
        reached = jnp.where(warmup, False, info.reached_max_treedepth)
        stats = _step_info(info, nuts_state.logdensity, state.step_size, step_size_bar, reached)
        return new_state, stats

    def position(state: ChainState) -> Array:
        return state.nuts.position

    def end_window(states: ChainState) -> ChainState:
        window = states.mass_matrix_adaptation
        mass_adapt = scheme(np.shape(states.nuts.position)[-1])
        metric = _window_metric(mass_adapt, window, states.metric)
        return states._replace(metric=metric, mass_matrix_adaptation=mass_adapt.restart(window))

    window_ends = tuple(end - 1 for _, end in schedule.windows)
    return NUTSProgram(init, step, position, window_ends, end_window)


def _window_metric(mass_adapt, window, metric: Metric) -> Metric:
    """The window's metric where it has two draws or more and is finite, else ``metric``
    (host arrays, leading chain axes; a one-draw window, which Stan's schedule allows,
    has no variance)."""
    batch = np.ndim(window.count)
    new = mass_adapt.final(window)
    usable = np.asarray(window.count) >= 2
    for leaf in new:
        usable = usable & np.all(np.isfinite(leaf), axis=tuple(range(batch, np.ndim(leaf))))

    def pick(new_leaf, old_leaf):
        old_leaf = np.asarray(old_leaf)
        flag = usable.reshape(usable.shape + (1,) * (old_leaf.ndim - batch))
        return np.where(flag, np.asarray(new_leaf, old_leaf.dtype), old_leaf)

    return Metric(*(pick(n, o) for n, o in zip(new, metric, strict=True)))


def _adapt(schedule: WarmupSchedule, step_adapt, mass_adapt, state, nuts_state, info,
           step_index):
    """Chain state after transition ``step_index`` and its adaptation of step size and
    mass matrix, with dual averaging's averaged step size.

    After warmup (``step_index >= num_tune``) only the position moves: the
    window takes no draw and never ends, and the step size and dual averaging
    are kept by selects (scalars), so no conditional carries the chain state.
    """
    warmup = step_index < schedule.num_tune
    last_step = schedule.num_tune - 1
    dual = step_adapt.update(state.step_size_adaptation, info.acceptance_rate)
    step_size_bar = step_adapt.final(dual)
    # The window is fed by a flag, never inside a conditional: an XLA conditional
    # copies whole every buffer it hands back (a low-rank window's draws and
    # gradients). Its metric comes from ``end_window``, on the host.
    window = mass_adapt.update(state.mass_matrix_adaptation, nuts_state.position,
                               nuts_state.logdensity_grad, in_window(schedule, step_index))
    ended = is_window_end(schedule, step_index)
    # A new metric calls for a new step size: restart around the current one,
    # except after the last window (see the module docstring).
    next_step_size = jnp.exp(dual.log_step_size)
    restart = ended & (step_index != _last_window_end(schedule))
    dual = tree_where(restart, step_adapt.init(next_step_size), dual)
    next_step_size = jnp.where(step_index == last_step, step_adapt.final(dual), next_step_size)
    new_state = ChainState(
        nuts=nuts_state,
        step_size=jnp.where(warmup, next_step_size, state.step_size),
        metric=state.metric,
        step_size_adaptation=tree_where(warmup, dual, state.step_size_adaptation),
        mass_matrix_adaptation=window,
    )
    return new_state, jnp.where(warmup, step_size_bar, state.step_size)


def _last_window_end(schedule: WarmupSchedule) -> int:
    """Index of the last step of the last slow window (-1 without windows)."""
    return schedule.windows[-1][1] - 1 if schedule.windows else -1

"""Stan's windowed warmup schedule, and hiddenjax's earlier-starting use of it.

Warmup step ``i`` (0-based) of ``num_tune`` falls in one of three phases:

* an initial fast buffer (default 75 steps) where only the step size adapts;
* slow windows, starting at 25 steps and doubling, where the positions also
  feed the mass-matrix estimate. At the end of each window the inverse mass
  matrix is set from that window's variance and step-size adaptation
  restarts. A window whose successor would overrun the terminal buffer is
  stretched to reach it;
* a terminal fast buffer (default 50 steps) for the step size alone.

If the three default stages do not fit in ``num_tune``, they shrink to
15% / 75% / 10% of it; below 20 steps there is no mass-matrix adaptation at
all. For ``num_tune = 1000`` the windows are ``[75, 100)``, ``[100, 150)``,
``[150, 250)``, ``[250, 450)`` and ``[450, 950)``.

NUTS in hiddenjax uses ``nuts_schedule``: Stan's windows, and more windows
inside Stan's initial buffer, from step 15 on (``[15, 25)``, ``[25, 75)``,
then Stan's ``[75, 100)`` ... ``[450, 950)`` for 1000 steps). Until the first
window ends, the chains move with the starting metric and a step size
adapted to it, and their trajectories are long: on the benchmark's radon
model they took 70 to 120 gradients per step there (its logistic regression
25 to 30), against 7 to 15 after. Ending the
first window at step 25 instead of 100 saves most of them
(docs/benchmarks/warmup_schedule.md). Stan's windows, the last one above all,
are kept as they are, so the metric the draws use comes from the same steps
as under Stan's schedule; a warmup too short for Stan's 75-step buffer
(``num_tune < 150``) gets Stan's schedule unchanged. nutpie and PyMC likewise
start adapting the mass matrix within the first few dozen steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = ["WarmupSchedule", "build_schedule", "in_window", "is_window_end", "nuts_schedule"]

# Below this many warmup steps Stan adapts the step size only.
MIN_TUNE_FOR_WINDOWS = 20

NUTS_INIT_BUFFER = 15
"""Initial fast buffer of hiddenjax's NUTS warmup (Stan's is 75)."""
NUTS_BASE_WINDOW = 10
"""First slow window of hiddenjax's NUTS warmup (Stan's is 25)."""


class WarmupSchedule(NamedTuple):
    """Where the slow mass-matrix windows of a warmup lie (plain Python ints)."""

    num_tune: int
    """Number of warmup steps."""
    init_buffer: int
    """Steps before the first window."""
    term_buffer: int
    """Steps after the last window."""
    windows: tuple[tuple[int, int], ...]
    """Half-open ``(start, end)`` step ranges of the slow windows, in order."""


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def build_schedule(
    num_tune: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> WarmupSchedule:
    """Stan's warmup windows for ``num_tune`` steps.

    Parameters
    ----------
    num_tune : int
        Number of warmup steps, ``>= 0``.
    init_buffer, term_buffer : int, default 75 and 50
        Fast buffers before the first and after the last slow window.
    base_window : int, default 25
        Size of the first slow window, ``>= 1``; each next one doubles.

    Returns
    -------
    WarmupSchedule

    Raises
    ------
    ValueError
        If an argument is not an integer in its range.
    """
    _check_count("num_tune", num_tune, 0)
    _check_count("init_buffer", init_buffer, 0)
    _check_count("term_buffer", term_buffer, 0)
    _check_count("base_window", base_window, 1)
    if num_tune < MIN_TUNE_FOR_WINDOWS:
        return WarmupSchedule(num_tune, num_tune, 0, ())
    if init_buffer + base_window + term_buffer > num_tune:
        init_buffer = int(0.15 * num_tune)
        term_buffer = int(0.1 * num_tune)
        base_window = num_tune - init_buffer - term_buffer
    slow_end = num_tune - term_buffer
    # The first window is never stretched; each later one is stretched to
    # ``slow_end`` when the window after it (twice as long) would not fit.
    windows = [(init_buffer, init_buffer + base_window)]
    size = base_window
    while windows[-1][1] < slow_end:
        start = windows[-1][1]
        size *= 2
        end = start + size
        if end + 2 * size > slow_end:
            end = slow_end
        windows.append((start, end))
    return WarmupSchedule(num_tune, init_buffer, term_buffer, tuple(windows))


def nuts_schedule(num_tune: int) -> WarmupSchedule:
    """The windows hiddenjax's NUTS adapts in: Stan's, with more inside its initial buffer.

    Stan's schedule for ``num_tune`` steps; where its initial buffer is at
    least ``NUTS_INIT_BUFFER + NUTS_BASE_WINDOW`` steps, the buffer past its
    first ``NUTS_INIT_BUFFER`` steps is cut into windows too, by the same rule
    (``build_schedule(buffer, NUTS_INIT_BUFFER, 0, NUTS_BASE_WINDOW)``: 10
    steps, then doubling, the last stretched to the buffer's end). See the
    module docstring for why.
    """
    stan = build_schedule(num_tune)
    if not stan.windows or stan.init_buffer < NUTS_INIT_BUFFER + NUTS_BASE_WINDOW:
        return stan
    early = build_schedule(stan.init_buffer, init_buffer=NUTS_INIT_BUFFER, term_buffer=0,
                           base_window=NUTS_BASE_WINDOW)
    return WarmupSchedule(num_tune, NUTS_INIT_BUFFER, stan.term_buffer,
                          early.windows + stan.windows)


def in_window(schedule: WarmupSchedule, step_index: ArrayLike) -> Array:
    """Whether warmup step ``step_index`` lies in a slow window (traceable).

    Parameters
    ----------
    schedule : WarmupSchedule
    step_index : array_like
        Integer warmup step, 0-based.

    Returns
    -------
    Array
        Boolean scalar.
    """
    if not schedule.windows:
        return jnp.zeros(jnp.shape(step_index), bool)
    first, last = schedule.windows[0][0], schedule.windows[-1][1]
    return (step_index >= first) & (step_index < last)


def is_window_end(schedule: WarmupSchedule, step_index: ArrayLike) -> Array:
    """Whether warmup step ``step_index`` is the last step of a slow window (traceable).

    Parameters
    ----------
    schedule : WarmupSchedule
    step_index : array_like
        Integer warmup step, 0-based.

    Returns
    -------
    Array
        Boolean scalar.
    """
    if not schedule.windows:
        return jnp.zeros(jnp.shape(step_index), bool)
    last_steps = jnp.asarray([end - 1 for _, end in schedule.windows], jnp.int32)
    return jnp.any(jnp.asarray(step_index)[..., None] == last_steps, axis=-1)

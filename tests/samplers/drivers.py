"""A small jitted driver for NUTS programs: vmap over chains, scan over steps.

Keys are derived as the execution layer does: ``fold_in(chain_key, step)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class Run(NamedTuple):
    final: object
    """ChainState after the last step, chain axis first."""
    warmup_states: object
    """ChainState after each warmup step, ``(steps, chains, ...)``."""
    warmup_info: object
    """StepInfo of each warmup step, ``(steps, chains)``."""
    states: object
    """ChainState after each sampling step, ``(steps, chains, ...)``."""
    info: object
    """StepInfo of each sampling step, ``(steps, chains)``."""


def run_program(program, key, positions, num_tune: int, num_draws: int) -> Run:
    """Run ``num_tune`` warmup and ``num_draws`` sampling steps on every chain."""
    chain_keys = jax.random.split(key, positions.shape[0])

    def step_keys(step):
        return jax.vmap(jax.random.fold_in, (0, None))(chain_keys, step)

    def one(states, step):
        states, info = jax.vmap(program.step, (0, 0, None))(step_keys(step), states, step)
        return states, (states, info)

    @jax.jit
    def go(positions):
        states = jax.vmap(program.init)(positions)
        tune_steps = jnp.arange(num_tune, dtype=jnp.int32)
        states, (warm_states, warm_info) = lax.scan(one, states, tune_steps)
        draw_steps = jnp.arange(num_tune, num_tune + num_draws, dtype=jnp.int32)
        states, (draw_states, draw_info) = lax.scan(one, states, draw_steps)
        return Run(states, warm_states, warm_info, draw_states, draw_info)

    return go(jnp.asarray(positions))


def chains_first(x) -> np.ndarray:
    """``(steps, chains, ...)`` to ``(chains, steps, ...)`` as numpy, ArviZ's layout."""
    return np.swapaxes(np.asarray(x), 0, 1)

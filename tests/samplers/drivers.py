"""A small jitted driver for NUTS programs: vmap over chains, loop over steps.

Keys are derived as the execution layer does: ``fold_in(chain_key, step)``. As
the execution layer, the driver stops after each of the program's window ends
and runs its ``end_window`` on the host.
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
    """ChainState after each warmup step, ``(steps, chains, ...)``; after a window end,
    once ``end_window`` ran (the new metric, the window emptied)."""
    warmup_info: object
    """StepInfo of each warmup step, ``(steps, chains)``."""
    states: object
    """ChainState after each sampling step, ``(steps, chains, ...)``."""
    info: object
    """StepInfo of each sampling step, ``(steps, chains)``."""


def run_program(program, key, positions, num_tune: int, num_draws: int) -> Run:
    """Run ``num_tune`` warmup and ``num_draws`` sampling steps on every chain."""
    total = num_tune + num_draws
    chain_keys = jax.random.split(key, positions.shape[0])

    def one(states, step):
        keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, step)
        states, info = jax.vmap(program.step, (0, 0, None))(keys, states, step)
        return states, (states, info)

    @jax.jit
    def steps(states, rows, start, stop):
        def body(step, carry):
            states, rows = carry
            states, out = one(states, step)
            rows = jax.tree.map(lambda r, o: lax.dynamic_update_index_in_dim(r, o, step, 0),
                                rows, out)
            return states, rows

        return lax.fori_loop(start, stop, body, (states, rows))

    states = jax.jit(jax.vmap(program.init))(jnp.asarray(positions))
    shapes = jax.eval_shape(one, states, jnp.int32(0))[1]
    rows = jax.tree.map(lambda s: jnp.zeros((total, *s.shape), s.dtype), shapes)
    start = 0
    for stop in sorted({end + 1 for end in program.window_ends} | {total}):
        states, rows = steps(states, rows, jnp.int32(start), jnp.int32(stop))
        if stop - 1 in program.window_ends:
            states = jax.tree.map(jnp.asarray, program.end_window(jax.device_get(states)))
            rows = (jax.tree.map(lambda r, s, at=stop - 1: r.at[at].set(s), rows[0], states),
                    rows[1])
        start = stop
    (warm_states, warm_info), (draw_states, draw_info) = (
        jax.tree.map(lambda r: r[:num_tune], rows), jax.tree.map(lambda r: r[num_tune:], rows))
    return Run(states, warm_states, warm_info, draw_states, draw_info)


def chains_first(x) -> np.ndarray:
    """``(steps, chains, ...)`` to ``(chains, steps, ...)`` as numpy, ArviZ's layout."""
    return np.swapaxes(np.asarray(x), 0, 1)

"""``ScalarLoop``: the elementwise loop PyTensor builds for gradients of special functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pytensor.link.jax.dispatch.basic import jax_funcify
from pytensor.scalar.loop import ScalarLoop


@jax_funcify.register(ScalarLoop)
def funcify_ScalarLoop(op, node=None, **kwargs):
    inner = jax_funcify(op.fgraph)
    n_update = len(op.outputs) - int(op.is_while)
    carry_dtypes = [inp.type.dtype for inp in op.inputs[:n_update]]

    def step(carry, constant):
        outs = inner(*carry, *constant)
        new = tuple(jnp.asarray(o, d) for o, d in zip(outs[:n_update], carry_dtypes, strict=True))
        done = jnp.asarray(outs[n_update], bool) if op.is_while else None
        return new, done

    def scalar_loop(n_steps, *inputs):
        carry = tuple(jnp.asarray(x, d) for x, d in zip(inputs[:n_update], carry_dtypes))
        constant = inputs[n_update:]
        if not op.is_while:
            final = jax.lax.fori_loop(0, n_steps, lambda _, c: step(c, constant)[0], carry)
            return final if len(final) > 1 else final[0]

        def keep_going(state):
            i, _, done = state
            return (i < n_steps) & ~done

        def body(state):
            i, c, _ = state
            new, done = step(c, constant)
            return i + 1, new, done

        _, final, done = jax.lax.while_loop(keep_going, body, (0, carry, jnp.asarray(False)))
        return (*final, done)

    return jnp.vectorize(scalar_loop)

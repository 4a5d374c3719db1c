"""Loops: ``ScalarLoop`` (PyTensor's elementwise loop for gradients of special
functions) and while-style ``Scan`` (an ``until`` condition), as ``lax`` loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from pytensor.link.jax.dispatch.basic import jax_funcify
from pytensor.scalar.loop import ScalarLoop
from pytensor.scan.op import Scan


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


class JaxWhileScan(Scan):
    """A while-style ``Scan`` (with an ``until`` condition), lowered by hiddenjax.

    The pre-flight swaps it in for every while-style Scan whose outputs have a
    length that does not depend on when the loop stops (see
    :func:`while_scan_refusal`). Everything but the JAX lowering is ``Scan``'s.
    """


def while_scan_refusal(op: Scan, lengths) -> str | None:
    """Why a while-style Scan cannot be lowered, or None if it can.

    ``lengths`` are the stored lengths of its mit-sot, sit-sot and nit-sot outputs
    (None where unknown). PyTensor returns the last ``length`` values of each
    output's history (initial values first), except that it shortens an output
    whose buffer the loop did not fill: a data-dependent shape. That cannot
    happen when every length is at most the number of initial values plus one,
    which is what PyTensor's memory rewrite leaves when only the final value is
    used (``out[-1]``, as in PyMC's rejection-sampling loops).
    """
    if op.info.n_mit_mot:
        return "while-style Scan with mit-mot outputs (a gradient of a loop) has no JAX lowering"
    for length, n_init in zip(lengths, _initial_counts(op), strict=True):
        if length is not None and length > n_init + 1:
            return (
                "while-style Scan whose whole history is used: its length depends on when the "
                "loop stops, which JAX cannot express; use only its last value (out[-1])"
            )
    return None


def _initial_counts(op: Scan) -> list[int]:
    info = op.info
    return [
        *(-min(taps) for taps in info.mit_sot_in_slices),
        *([1] * info.n_sit_sot),
        *([0] * info.n_nit_sot),
    ]


def _static_length(value) -> int:
    try:
        return int(np.asarray(value))
    except jax.errors.ConcretizationTypeError as err:
        raise NotImplementedError(
            "A while-style Scan needs a fixed number of stored steps for each output; "
            "give the loop's outputs fixed shapes."
        ) from err


@jax_funcify.register(JaxWhileScan)
def funcify_JaxWhileScan(op, node=None, **kwargs):
    inner = jax_funcify(op.fgraph, **kwargs)
    n_init = _initial_counts(op)
    mitsot_taps = op.info.mit_sot_in_slices

    def inner_arguments(seqs, windows, untraced, non_seqs, i):
        taps = [w[t] for w, ts in zip(windows, mitsot_taps) for t in ts]
        sitsot = [w[-1] for w in windows[len(mitsot_taps) : len(mitsot_taps) + op.info.n_sit_sot]]
        # Random generators are dicts that the lowered RVs update in place: hand over copies.
        untraced = [dict(u) if isinstance(u, dict) else u for u in untraced]
        return (*(s[i] for s in seqs), *taps, *sitsot, *untraced, *non_seqs)

    def while_scan(*outer):
        outer = list(outer)
        n_steps, seqs, non_seqs = outer[0], op.outer_seqs(outer), op.outer_non_seqs(outer)
        buffers = [*op.outer_mitsot(outer), *op.outer_sitsot(outer)]
        lengths = [b.shape[0] for b in buffers]
        lengths += [_static_length(n) for n in op.outer_nitsot(outer)]
        reason = while_scan_refusal(op, lengths)
        if reason is not None:
            raise NotImplementedError(reason)
        untraced = tuple(op.outer_untraced_sit_sot(outer))
        # Each window holds the last `length` values, the most recent last: initial
        # values are moved to the end of their buffer, unfilled slots to the front.
        windows = [jnp.concatenate([b[t:], b[:t]]) for b, t in zip(buffers, n_init)]
        if op.info.n_nit_sot:
            first = jax.eval_shape(
                lambda: inner(*inner_arguments(seqs, windows, untraced, non_seqs, 0))
            )
            for out, length in zip(op.inner_nitsot_outs(list(first)), lengths[len(buffers) :]):
                windows.append(jnp.zeros((length, *out.shape), out.dtype))

        def keep_going(state):
            i, _, _, done = state
            return (i < n_steps) & ~done

        def step(state):
            i, windows, untraced, _ = state
            outs = list(inner(*inner_arguments(seqs, windows, untraced, non_seqs, i)))
            traced = [
                *op.inner_mitsot_outs(outs), *op.inner_sitsot_outs(outs),
                *op.inner_nitsot_outs(outs),
            ]
            windows = tuple(
                jnp.concatenate([w[1:], jnp.asarray(v, w.dtype)[None]]) if w.shape[0] else w
                for w, v in zip(windows, traced, strict=True)
            )
            new_untraced = tuple(op.inner_untraced_sit_sot_outs(outs))
            return i + 1, windows, new_untraced, jnp.asarray(outs[-1], bool).reshape(())

        state = (jnp.asarray(0), tuple(windows), untraced, jnp.asarray(False))
        _, windows, untraced, _ = jax.lax.while_loop(keep_going, step, state)
        results = [*windows, *untraced]
        return results[0] if len(results) == 1 else results

    return while_scan

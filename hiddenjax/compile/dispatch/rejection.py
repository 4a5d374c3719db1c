"""Vectorised rejection sampling: one proposal for every entry at once, then
redraws for the rejected ones gathered into slots, and :func:`only_if`, which
skips work no entry needs, also under ``vmap``.

A sampler gives ``propose(key, *params) -> (proposal, accepted)`` for arrays
of entries. ``jax.random``'s rejection samplers (gamma, Poisson, binomial)
instead loop per entry with key splits of their own, which on CPU is one to
two orders of magnitude slower than a vectorised proposal.

Two properties of XLA on CPU shape this code: a fused computation used twice
is computed twice (hence rejection carried as NaN in one array, and
optimisation barriers between stages), and loop-invariant work is hoisted out
of loops, where it runs even when the loop does not (hence
:func:`loop_variant`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def _first_accepted(key, propose: Callable, params: tuple, tries: int) -> jax.Array:
    """The first accepted of ``tries`` proposals for each entry, NaN where none was.

    Rejection is carried as NaN in the one array, rather than as a second
    boolean array: XLA on CPU would compute the proposals once for each of
    two outputs. More than one try is a loop, so the program holds one copy
    of the proposal (compile time grows with every copy). Proposals have the
    dtype of ``params[0]``.
    """
    def one(t, value):
        proposal, ok = propose(jax.random.fold_in(key, t), *params)
        return jnp.where(jnp.isnan(value), jnp.where(ok, proposal, jnp.nan), value)

    if tries == 1:
        proposal, ok = propose(jax.random.fold_in(key, 0), *params)
        return jnp.where(ok, proposal, jnp.nan)
    return jax.lax.fori_loop(0, tries, one, jnp.full(params[0].shape, jnp.nan, params[0].dtype))


def _slots(value, params: tuple, size: int):
    """``(owner, slot_params)``: the indices of the first ``size`` pending (NaN)
    entries of ``value`` in index order (``n`` for unused slots) and their params."""
    n = value.shape[0]
    count = jnp.cumsum(jnp.isnan(value), dtype=jnp.int32)
    # Slot j belongs to the (j+1)-th pending entry; slots past the last one get n.
    owner = jnp.searchsorted(count, jnp.arange(1, size + 1, dtype=jnp.int32))
    return owner, tuple(p[jnp.minimum(owner, n - 1)] for p in params)


def _retry_pending(key, value, propose: Callable, params: tuple, size: int, tries: int):
    """Up to ``size`` pending (NaN) entries of ``value``, the first in index order,
    gathered into slots and given ``tries`` more proposals each; those none of
    them accepted stay NaN.

    Gathering into slots makes the retries cost ``size`` proposals rather
    than one for every entry, and the accepted proposals are scattered back
    to their entries (unused slots are dropped): a gather of every entry from
    the slots instead takes about as long as the first proposals of all
    entries.
    """
    owner, slot_params = _slots(value, params, size)
    return value.at[owner].set(_first_accepted(key, propose, slot_params, tries), mode="drop")


def _redraw_rounds(key, value, propose: Callable, params: tuple, size: int):
    """``value`` with every pending (NaN) entry redrawn until accepted: rounds that
    each gather up to ``size`` pending entries into slots and propose for the
    slots until all are accepted. A loop, run only while some entry is pending."""
    def one_round(state):
        i, value = state
        round_key = jax.random.fold_in(key, i)
        owner, slot_params = _slots(value, params, size)

        def redraw_slots(slots):
            j, drawn = slots
            proposal, ok = propose(jax.random.fold_in(round_key, j), *slot_params)
            return j + 1, jnp.where(jnp.isnan(drawn) & ok, proposal, drawn)

        # Unused slots start accepted (at 0); they are dropped when scattering back.
        start = jnp.where(owner < value.shape[0], jnp.nan, 0.0).astype(value.dtype)
        drawn = jax.lax.while_loop(lambda s: jnp.any(jnp.isnan(s[1])), redraw_slots,
                                   (jnp.asarray(0, jnp.uint32), start))[1]
        return i + 1, value.at[owner].set(drawn, mode="drop")

    return jax.lax.while_loop(lambda s: jnp.any(jnp.isnan(s[1])), one_round,
                              (jnp.asarray(0, jnp.uint32), value))[1]


RETRIES = ((1 / 3, 4), (1 / 64, 8))
"""Default retry stages of :func:`rejection_sample`: (fraction of the entries given
slots, proposals a slot)."""


def rejection_sample(key, propose: Callable, params: tuple, retries=RETRIES) -> jax.Array:
    """One accepted proposal per entry of the 1-D ``params`` (all of one length).

    ``propose(key, *params) -> (proposal, accepted)`` draws independently for
    each entry; proposals are floats of ``params[0]``'s dtype, never NaN. Every entry gets a first
    proposal. Then, for each ``(fraction, tries)`` of ``retries``, the entries
    not yet accepted, up to ``fraction`` of all entries, get ``tries``
    proposals each (:func:`_retry_pending`), a fixed sequence of passes. The
    entries still rejected after them are redrawn in rounds of up to a
    sixteenth of the entries (:func:`_redraw_rounds`), a loop that runs only
    when needed: for the defaults and an acceptance rate of 0.77, PTRS's
    lowest, under 1e-8 of the entries are left to it. A sampler accepted
    most of the time (Marsaglia and Tsang's gamma) needs no stages. An
    entry's draw is its first accepted proposal; each pass holds one copy of
    the proposal in the program, and XLA's compile time grows with each.
    """
    n = params[0].shape[0]
    keys = jax.random.split(key, len(retries) + 2)
    # The barriers make XLA compute each stage once: it would otherwise fuse (and so
    # recompute) the proposals into each of their uses.
    value = jax.lax.optimization_barrier(_first_accepted(keys[0], propose, params, 1))
    for stage_key, (fraction, tries) in zip(keys[1:], retries):
        value = jax.lax.optimization_barrier(_retry_pending(
            stage_key, value, propose, params, min(n, max(8, math.ceil(n * fraction))), tries))
    return _redraw_rounds(keys[-1], value, propose, params, min(n, max(8, -(-n // 16))))


def loop_variant(operands: tuple, count) -> tuple:
    """Float ``operands`` plus ``0.0 * count``: the same values, which XLA cannot
    tell are loop-invariant (it does not simplify ``0.0 * x`` away for floats).

    XLA hoists loop-invariant work out of a loop body, where it runs even when
    the loop does not, and materialises each hoisted intermediate array; an
    optimisation barrier does not stop it. Work on these operands stays in the
    loop.
    """
    zero = 0.0 * jnp.asarray(count).astype(jnp.float64)
    return tuple(x + zero.astype(x.dtype) for x in operands)


def only_if(needed, draw: Callable, key, operands: tuple, default):
    """``draw(key, *operands)`` (``draw(*operands)`` without a key) if ``needed`` (a
    boolean scalar) else ``default``, skipping the work when not needed, also
    under ``vmap``. ``operands`` are float arrays.

    ``lax.cond`` under ``vmap`` with a batched predicate becomes a select that
    computes both branches; a while loop stays a loop, run while any batch
    member needs it. So this is a loop run at most once. XLA hoists
    loop-invariant work out of a loop, where it runs whether or not the loop
    does, so the key is folded with the loop's counter and the operands made
    to depend on it (:func:`loop_variant`).
    """
    def body(state):
        count, _ = state
        now = loop_variant(operands, count)
        if key is None:
            return count + 1, draw(*now)
        return count + 1, draw(jax.random.fold_in(key, count), *now)

    return jax.lax.while_loop(lambda state: needed & (state[0] == 0), body,
                              (jnp.asarray(0, jnp.uint32), default))[1]

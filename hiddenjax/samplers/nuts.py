"""Multinomial No-U-Turn Sampler with Stan's and PyMC's conventions.

The trajectory doubles until it makes a U-turn, diverges, or reaches the
maximum tree depth. Each doubling builds a new subtree of ``2**depth``
leapfrog steps at one end, chosen at random. Within a subtree the proposal
is sampled multinomially, proportionally to ``exp(H0 - H)``; when a finished
subtree is merged into the trajectory its proposal replaces the current one
with probability ``min(1, w_subtree / w_trajectory)`` (biased progressive
sampling). U-turns use Stan's generalised criterion, checked on every
completed sub-subtree and on the merged trajectory, including Stan's extra
checks across the two halves of each merge. A subtree that turns or
diverges is discarded whole.

The tree is built iteratively: an outer ``lax.while_loop`` over doublings
and an inner one over the leaves of the new subtree. The inner loop keeps
the running momentum sum and, for each leaf that starts a block still in
progress, its velocity and the sums before it (one row per bit count of the
leaf's index, one row written per leaf), so every check the recursive
algorithm makes happens at the leaf that completes a block.

Statistics follow PyMC's ``NUTS``: ``acceptance_rate`` is the mean over every
leapfrog step of ``min(1, exp(H0 - H))``, the divergent step included;
``energy_error`` is ``H(accepted) - H0``; ``max_energy_error`` is the step
energy error of largest absolute value; a step diverges when its energy
error is NaN or at least ``max_energy_error``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.typing import ArrayLike

from hiddenjax.samplers.integrators import (
    IntegratorState,
    hamiltonian,
    new_integrator_state,
    velocity_verlet,
)
from hiddenjax.samplers.metrics import as_metric, is_turning, sample_momentum, velocity

__all__ = ["NUTSInfo", "NUTSState", "build_kernel", "init"]

# 2**max_treedepth leapfrog steps must fit the int32 leaf counters.
MAX_TREEDEPTH_LIMIT = 30


class NUTSState(NamedTuple):
    """Position of the chain with its log-density and gradient cached."""

    position: Array
    """Current position, a 1-D float array."""
    logdensity: Array
    """Log-density at ``position``."""
    logdensity_grad: Array
    """Gradient of the log-density at ``position``."""


class NUTSInfo(NamedTuple):
    """Per-transition statistics, with PyMC's meanings."""

    acceptance_rate: Array
    """Mean over all leapfrog steps of ``min(1, exp(H0 - H))``."""
    diverging: Array
    """Whether the trajectory stopped on a divergent step."""
    energy: Array
    """Hamiltonian at the accepted point."""
    energy_error: Array
    """Hamiltonian at the accepted point minus the initial Hamiltonian."""
    max_energy_error: Array
    """Energy error of largest absolute value over the leapfrog steps."""
    n_steps: Array
    """Number of leapfrog steps (gradient evaluations)."""
    tree_depth: Array
    """Number of trajectory doublings made."""
    reached_max_treedepth: Array
    """Whether all ``max_treedepth`` doublings were made without stopping."""


class _Proposal(NamedTuple):
    position: Array
    logdensity: Array
    logdensity_grad: Array
    energy: Array


class _TreeStats(NamedTuple):
    n_steps: Array
    log_accept_sum: Array
    max_energy_error: Array


class _Checkpoints(NamedTuple):
    """What the U-turn checks need of the leaves that start a block holding the latest leaf.

    The level-``k`` block holding leaf ``i`` starts at ``i`` with its ``k``
    lowest bits cleared. These start leaves have distinct bit counts, and a
    later leaf with the same bit count as a start can no longer be in any of
    its blocks, so row ``popcount(j)`` holds leaf ``j`` for as long as it is
    needed. Each leaf writes one row: ``O(n)`` per leaf, where keeping every
    level's block would cost ``O(n * levels)``.
    """

    velocities: Array
    """``(2 * levels, n)``: per start leaf ``j`` at slot ``s = popcount(j)``,
    ``v_j`` in row ``2s`` and ``v_{j-1}`` in row ``2s + 1``. One flat matrix, so a
    leaf writes its two rows with one in-place update and the checks multiply
    it without a reshape (which made XLA copy the whole matrix every leaf)."""
    sums: Array
    """``(2 * levels, n)``: per start leaf ``j``, ``C_{j-1}`` in row ``2s`` and
    ``C_{j-2}`` in row ``2s + 1``, where ``C_i`` is the momentum summed over the
    subtree's leaves ``0..i``."""
    row_dots: Array
    """``(levels, 2)``: ``v_j . C_{j-1}`` and ``v_{j-1} . C_{j-2}``, so that the
    checks need two matrix-vector products (XLA's fast path on CPU, several
    times faster than multiplying and reducing over the rows)."""
    across_start: Array
    """``(levels,)``: for a right-half start ``j``, whether the left half plus
    leaf ``j`` turns (Stan's first check across halves), decided at ``j``."""
    momentum_sum: Array
    """``(n,)``: momentum summed over the subtree's leaves so far."""
    velocity: Array
    """``(n,)``: velocity at the latest leaf."""
    first_momentum: Array
    """``(n,)``: momentum at the subtree's first leaf."""
    last_dot: Array
    """``v_i . C_{i-1}`` of the latest leaf ``i``: the next leaf's ``v_{i-1} . C_{i-2}``.
    Also in ``row_dots`` (row ``popcount(i)``), but carried so that no leaf has to
    index it there."""


class _Subtree(NamedTuple):
    leaf: IntegratorState
    index: Array
    checkpoints: _Checkpoints
    proposal: _Proposal
    log_weight: Array
    stats: _TreeStats
    turning: Array
    diverging: Array


class _Trajectory(NamedTuple):
    left: IntegratorState
    right: IntegratorState
    momentum_sum: Array
    proposal: _Proposal
    log_weight: Array
    stats: _TreeStats
    depth: Array
    turning: Array
    diverging: Array


def init(position: ArrayLike, logdensity_fn: Callable) -> NUTSState:
    """NUTS state at ``position``.

    Parameters
    ----------
    position : array_like
        1-D float position.
    logdensity_fn : callable
        ``logdensity_fn(position) -> scalar``.

    Returns
    -------
    NUTSState
    """
    state = new_integrator_state(logdensity_fn, position, jnp.zeros_like(position))
    return NUTSState(state.position, state.logdensity, state.logdensity_grad)


def _select(pred: Array, on_true, on_false):
    """Leafwise ``where`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _carried_like(reference: Array, tree):
    """``tree`` unchanged, but batched wherever ``reference`` is under ``vmap``.

    A loop carry that starts unbatched but comes out of the body batched makes
    ``vmap`` batch the loop body again until that settles, and nested loops
    multiply the passes. Starting every carry batched settles it in one pass;
    the select on ``reference`` is folded away by XLA.
    """
    same = reference == reference
    return jax.tree.map(lambda x: jnp.where(same, x, x), tree)


def _leaf_stats(stats: _TreeStats, energy_error: Array) -> _TreeStats:
    """Statistics updated with one leapfrog step's energy error."""
    larger = jnp.abs(energy_error) > jnp.abs(stats.max_energy_error)
    return _TreeStats(
        n_steps=stats.n_steps + 1,
        log_accept_sum=jnp.logaddexp(stats.log_accept_sum, jnp.minimum(0.0, -energy_error)),
        max_energy_error=jnp.where(larger, energy_error, stats.max_energy_error),
    )


def _ctz(x: Array) -> Array:
    """Trailing zero bits of a positive integer."""
    return lax.population_count((x & -x) - 1)


@jax.custom_batching.custom_vmap
def _write_pair(matrix: Array, pair: Array, slot: Array) -> Array:
    """``matrix`` (``(2 * levels, n)``) with rows ``2 * slot`` and ``2 * slot + 1`` set to ``pair``.

    One chain writes the two rows in place. Vectorised chains write each its
    own slot: there a batched row write becomes a scatter, which on CPU was
    23 % slower over a whole batched fit (400 chains) than selecting the slot
    over every row, so the batched rule selects.
    """
    return lax.dynamic_update_slice_in_dim(matrix, pair, 2 * slot, axis=0)


@_write_pair.def_vmap
def _write_pair_batched(axis_size: int, in_batched, matrix, pair, slot):
    """Every chain's pair written by selecting its two rows over the whole matrix."""
    matrix, pair, slot = (x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
                          for x, batched in zip((matrix, pair, slot), in_batched))
    row = jnp.arange(matrix.shape[1])[None, :, None] - 2 * slot[:, None, None]
    return jnp.where(row == 0, pair[:, :1], jnp.where(row == 1, pair[:, 1:], matrix)), True


def _checkpoint_leaf(ck: _Checkpoints, momentum: Array, previous_momentum: Array,
                     velocity_: Array, index: Array) -> tuple[_Checkpoints, Array]:
    """Record leaf ``index`` (its momentum and velocity) in row ``popcount(index)``,
    and say whether a block completed at this leaf turns.

    Every U-turn check is a difference of dot products with the momentum sum
    ``C_i`` through this leaf: ``v_j . (C_i - C_{j-1}) = v_j . C_i - v_j . C_{j-1}``.
    Two matrix-vector products give them all, ``V C_i`` (every start's
    velocity against the sum) and ``S v_i`` (every start's earlier sums
    against this leaf's velocity); the ``v_j . C_{j-1}`` terms were stored in
    ``row_dots`` when leaf ``j`` was written. So a leaf makes two
    matrix-vector products and one dot product, where each separate dot
    product costs XLA on CPU a kernel or three.

    At an even leaf ``m > 0``, the start of the right half of the level
    ``ctz(m) + 1`` block, that block's check across halves on the left half
    plus leaf ``m`` is decided here, while everything it needs is at hand.
    Row ``popcount(index)`` is read by no U-turn check at this leaf (they read
    the rows below it), so the rows are written first and every check reads
    the updated arrays: nothing reads an old array after it is written, which
    lets XLA write the row in place instead of copying the whole array.
    """
    before = ck.momentum_sum
    through = before + momentum
    slot = lax.population_count(index)
    levels = ck.row_dots.shape[0]
    velocities = _write_pair(ck.velocities, jnp.stack([velocity_, ck.velocity]), slot)
    sums = _write_pair(ck.sums, jnp.stack([before, before - previous_momentum]), slot)
    starts_dot_sum = (velocities @ through).reshape(levels, 2)
    sums_dot_velocity = (sums @ velocity_).reshape(levels, 2)
    end_dot = jnp.dot(velocity_, through)
    # v_i . C_{i-1} is this leaf's own row; v_{i-1} . C_{i-2} was the previous leaf's.
    dots = jnp.stack([sums_dot_velocity[slot, 0], ck.last_dot])
    here = jnp.arange(levels) == slot
    row_dots = jnp.where(here[:, None], dots, ck.row_dots)
    # The parent block starts at ``index`` with its lowest set bit cleared.
    parent = jnp.maximum(slot - 1, 0)
    across = ((index > 0) & (index % 2 == 0)
              & ((starts_dot_sum[parent, 0] - row_dots[parent, 0] <= 0)
                 | (end_dot - sums_dot_velocity[parent, 0] <= 0)))
    ck = _Checkpoints(
        velocities=velocities,
        sums=sums,
        row_dots=row_dots,
        across_start=jnp.where(here, across, ck.across_start),
        momentum_sum=through,
        velocity=velocity_,
        first_momentum=jnp.where(index == 0, momentum, ck.first_momentum),
        last_dot=dots[0],
    )
    return ck, _blocks_turning(ck, starts_dot_sum, sums_dot_velocity, end_dot, index)


def _blocks_turning(ck: _Checkpoints, starts_dot_sum: Array, sums_dot_velocity: Array,
                    end_dot: Array, index: Array) -> Array:
    """Whether a block of two or more leaves completed at leaf ``index`` turns.

    The blocks completed at leaf ``i`` are levels ``k = 1..t`` with
    ``t = ctz(i + 1)``; level ``k`` starts at the leaf in row
    ``popcount(i + 1) - 1 + t - k``, and its right half (``k >= 2``) at the
    leaf in the next row. Each block is checked end to end, and for
    ``k >= 2`` across its halves as Stan does: left half plus the right
    half's first leaf (decided at that leaf), and the left half's last leaf
    plus the right half. The dot products come from :func:`_checkpoint_leaf`.
    """
    count = lax.population_count(index + 1)
    top = count - 2 + _ctz(index + 1)
    slots = jnp.arange(ck.row_dots.shape[0], dtype=count.dtype)
    starts_turn = starts_dot_sum - ck.row_dots <= 0
    ends_turn = end_dot - sums_dot_velocity <= 0
    turns = starts_turn | ends_turn
    whole, across_end = turns[:, 0], turns[:, 1]
    whole_rows = (slots >= count - 1) & (slots <= top)
    across_rows = (slots >= count) & (slots <= top)
    return jnp.any(whole_rows & whole) | jnp.any(across_rows & (across_end | ck.across_start))


def _subtree_builder(integrator: Callable, max_treedepth: int, max_energy_error: float):
    """``build(key, start, step_size, depth, h0, imm, stats) -> _Subtree``.

    Integrates up to ``2**depth`` leapfrog steps from ``start`` (``step_size``
    carries the direction's sign), stopping at the first divergent step or
    turning block.
    """
    def build(key, start, step_size, depth, h0, inverse_mass_matrix, stats) -> _Subtree:
        def leaf_step(sub: _Subtree) -> _Subtree:
            leaf = integrator(sub.leaf, step_size, inverse_mass_matrix)
            leaf_velocity = velocity(leaf.momentum, inverse_mass_matrix)
            energy = 0.5 * jnp.sum(leaf_velocity * leaf.momentum) - leaf.logdensity
            error = energy - h0
            error = jnp.where(jnp.isnan(error), jnp.inf, error)
            # Multinomial sampling within the subtree, one leaf at a time.
            log_weight = jnp.logaddexp(sub.log_weight, -error)
            u = jax.random.uniform(jax.random.fold_in(key, sub.index), dtype=error.dtype)
            take = jnp.log(u) < -error - log_weight
            leaf_proposal = _Proposal(leaf.position, leaf.logdensity, leaf.logdensity_grad, energy)
            # The checks read the rows below the one this leaf writes.
            ck, turning = _checkpoint_leaf(sub.checkpoints, leaf.momentum, sub.leaf.momentum,
                                           leaf_velocity, sub.index)
            return _Subtree(
                leaf=leaf,
                index=sub.index + 1,
                checkpoints=ck,
                proposal=_select(take, leaf_proposal, sub.proposal),
                log_weight=log_weight,
                stats=_leaf_stats(sub.stats, error),
                turning=turning,
                diverging=error >= max_energy_error,
            )

        def keep_going(sub: _Subtree) -> Array:
            return (sub.index < jnp.left_shift(1, depth)) & ~sub.turning & ~sub.diverging

        zeros = jnp.zeros_like(start.position)
        rows = jnp.zeros((2 * max_treedepth,) + start.position.shape, start.position.dtype)
        first = _Subtree(
            leaf=start,
            index=jnp.int32(0),
            checkpoints=_Checkpoints(rows, rows, jnp.zeros((max_treedepth, 2), rows.dtype),
                                     jnp.zeros(max_treedepth, bool), zeros, zeros, zeros,
                                     jnp.zeros((), rows.dtype)),
            proposal=_Proposal(start.position, start.logdensity, start.logdensity_grad, h0),
            log_weight=jnp.asarray(-jnp.inf, h0.dtype),
            stats=stats,
            turning=jnp.bool_(False),
            diverging=jnp.bool_(False),
        )
        return lax.while_loop(keep_going, leaf_step, _carried_like(h0, first))

    return build


def _merge_turning(traj: _Trajectory, sub: _Subtree, forward, imm) -> Array:
    """U-turn checks on the trajectory merged with a finished subtree.

    The merged span is checked end to end, then across its halves as Stan
    does: left half plus the right half's first point, and the left half's
    last point plus the right half.
    """
    sub_first = sub.checkpoints.first_momentum
    sub_last = sub.leaf.momentum
    sub_sum = sub.checkpoints.momentum_sum
    # Halves in time order: the old trajectory is on the left when going forward.
    left_begin = jnp.where(forward, traj.left.momentum, sub_last)
    left_end = jnp.where(forward, traj.right.momentum, sub_first)
    left_sum = jnp.where(forward, traj.momentum_sum, sub_sum)
    right_begin = jnp.where(forward, sub_first, traj.left.momentum)
    right_end = jnp.where(forward, sub_last, traj.right.momentum)
    right_sum = jnp.where(forward, sub_sum, traj.momentum_sum)
    v_left_begin, v_left_end = velocity(left_begin, imm), velocity(left_end, imm)
    v_right_begin, v_right_end = velocity(right_begin, imm), velocity(right_end, imm)
    return (
        is_turning(v_left_begin, v_right_end, left_sum + right_sum)
        | is_turning(v_left_begin, v_right_begin, left_sum + right_begin)
        | is_turning(v_left_end, v_right_end, left_end + right_sum)
    )


def _merge(key, traj: _Trajectory, sub: _Subtree, forward, imm) -> _Trajectory:
    """The trajectory grown by a subtree that neither turned nor diverged."""
    # Biased progressive sampling: favour the new subtree when it is heavier.
    u = jax.random.uniform(key, dtype=traj.log_weight.dtype)
    take = jnp.log(u) < sub.log_weight - traj.log_weight
    return traj._replace(
        left=_select(forward, traj.left, sub.leaf),
        right=_select(forward, sub.leaf, traj.right),
        momentum_sum=traj.momentum_sum + sub.checkpoints.momentum_sum,
        proposal=_select(take, sub.proposal, traj.proposal),
        log_weight=jnp.logaddexp(traj.log_weight, sub.log_weight),
        turning=_merge_turning(traj, sub, forward, imm),
    )


def _trajectory_builder(logdensity_fn: Callable, max_treedepth: int, max_energy_error: float):
    """``build(key, start, directions, step_size, imm, max_depth=max_treedepth) -> _Trajectory``.

    ``start`` is the initial phase-space point and ``directions`` holds
    ``max_treedepth`` signs (+1 forward, -1 backward), one per doubling.
    ``max_depth`` (traced, at most ``max_treedepth``) caps the doublings of
    this trajectory.
    """
    build_subtree = _subtree_builder(
        velocity_verlet(logdensity_fn), max_treedepth, max_energy_error
    )

    def build(key, start: IntegratorState, directions, step_size, imm,
              max_depth=max_treedepth) -> _Trajectory:
        h0 = hamiltonian(start, imm)

        def double(traj: _Trajectory) -> _Trajectory:
            subtree_key, merge_key = jax.random.split(jax.random.fold_in(key, traj.depth))
            forward = directions[traj.depth] > 0
            sub = build_subtree(
                subtree_key,
                _select(forward, traj.right, traj.left),
                jnp.where(forward, step_size, -step_size),
                traj.depth,
                h0,
                imm,
                traj.stats,
            )
            stopped = sub.turning | sub.diverging
            rejected = traj._replace(turning=sub.turning, diverging=sub.diverging)
            grown = _select(stopped, rejected, _merge(merge_key, traj, sub, forward, imm))
            return grown._replace(stats=sub.stats, depth=traj.depth + 1)

        def keep_going(traj: _Trajectory) -> Array:
            return (traj.depth < max_depth) & ~traj.turning & ~traj.diverging

        dtype = h0.dtype
        first = _Trajectory(
            left=start,
            right=start,
            momentum_sum=start.momentum,
            proposal=_Proposal(start.position, start.logdensity, start.logdensity_grad, h0),
            log_weight=jnp.zeros((), dtype),
            stats=_TreeStats(jnp.int32(0), jnp.asarray(-jnp.inf, dtype), jnp.zeros((), dtype)),
            depth=jnp.int32(0),
            turning=jnp.bool_(False),
            diverging=jnp.bool_(False),
        )
        return lax.while_loop(keep_going, double, _carried_like(h0, first))

    return build


def _check_kernel_args(max_treedepth, max_energy_error) -> None:
    """Refuse static NUTS settings that cannot work, naming the fix."""
    if isinstance(max_treedepth, bool) or not isinstance(max_treedepth, int):
        raise ValueError(
            f"max_treedepth must be a positive integer, got {max_treedepth!r}; "
            "the default is 10."
        )
    if not 1 <= max_treedepth <= MAX_TREEDEPTH_LIMIT:
        raise ValueError(
            f"max_treedepth must be between 1 and {MAX_TREEDEPTH_LIMIT}, got {max_treedepth}; "
            "the default is 10."
        )
    if isinstance(max_energy_error, bool) or not isinstance(max_energy_error, (int, float)):
        raise ValueError(
            f"max_energy_error must be a positive number, got {max_energy_error!r}; "
            "the default is 1000."
        )
    if math.isnan(max_energy_error) or max_energy_error <= 0:
        raise ValueError(
            f"max_energy_error must be a positive number, got {max_energy_error!r}; "
            "the default is 1000."
        )


def build_kernel(
    logdensity_fn: Callable, max_treedepth: int = 10, max_energy_error: float = 1000.0
) -> Callable:
    """A NUTS transition kernel for ``logdensity_fn``.

    Parameters
    ----------
    logdensity_fn : callable
        ``logdensity_fn(position) -> scalar`` for a 1-D float position.
    max_treedepth : int, default 10
        Maximum number of trajectory doublings (at most ``2**max_treedepth - 1``
        leapfrog steps).
    max_energy_error : float, default 1000.0
        A leapfrog step whose energy error ``H - H0`` is at least this
        (or NaN) is divergent and ends the trajectory.

    Returns
    -------
    callable
        ``step(key, state, step_size, metric, max_depth=max_treedepth) -> (NUTSState,
        NUTSInfo)``, pure and compatible with ``jit``, ``vmap`` and ``scan``.
        ``metric`` is a ``Metric`` or the diagonal of the inverse mass matrix;
        it and the step size are cast to the position's dtype. ``max_depth``
        (may be traced) lowers the depth cap for this transition, as PyMC's
        ``early_max_treedepth`` does early in warmup.

    Raises
    ------
    ValueError
        If ``max_treedepth`` is not an integer in ``[1, 30]`` or
        ``max_energy_error`` is not a positive number.
    """
    _check_kernel_args(max_treedepth, max_energy_error)
    build_trajectory = _trajectory_builder(logdensity_fn, max_treedepth, float(max_energy_error))

    def step(key, state: NUTSState, step_size, inverse_mass_matrix, max_depth=max_treedepth):
        dtype = state.position.dtype
        imm = as_metric(inverse_mass_matrix, dtype)
        step_size = jnp.asarray(step_size, dtype)
        momentum_key, direction_key, tree_key = jax.random.split(key, 3)
        momentum = sample_momentum(momentum_key, state.position, imm)
        start = IntegratorState(state.position, momentum, state.logdensity, state.logdensity_grad)
        forward = jax.random.bernoulli(direction_key, 0.5, (max_treedepth,))
        directions = jnp.where(forward, 1, -1).astype(jnp.int32)
        traj = build_trajectory(tree_key, start, directions, step_size, imm, max_depth)
        proposal = traj.proposal
        info = NUTSInfo(
            # A mean of probabilities: summed in log space it can pass 1 by rounding.
            acceptance_rate=jnp.minimum(jnp.exp(traj.stats.log_accept_sum) / traj.stats.n_steps,
                                        1.0),
            diverging=traj.diverging,
            energy=proposal.energy,
            energy_error=proposal.energy - hamiltonian(start, imm),
            max_energy_error=traj.stats.max_energy_error,
            n_steps=traj.stats.n_steps,
            tree_depth=traj.depth,
            reached_max_treedepth=(traj.depth == max_depth)
            & ~traj.turning
            & ~traj.diverging,
        )
        return NUTSState(proposal.position, proposal.logdensity, proposal.logdensity_grad), info

    return step

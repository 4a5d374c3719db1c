"""Chains over devices, run as one jitted chunk of steps at a time.

Warmup and sampling share one compiled chunk function: each step looks at its
global index and runs a warmup step, a sampling step, or nothing (past the
end). Draws are copied to host memory after every chunk, so device memory is
bounded by the chunk and an interrupt keeps every finished draw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

WARMUP, SAMPLE, IDLE = 0, 1, 2


class RunPlan(NamedTuple):
    """What to run, in plain numbers."""

    tune: int
    """Warmup steps per chain."""
    draws: int
    """Kept steps per chain after warmup."""
    seed: int
    """Seed of the sampler's random keys."""
    chunk_size: int
    """Steps per compiled call."""
    keep_warmup: bool
    """Whether to return warmup draws too."""


class ChainDraws(NamedTuple):
    """Draws on the host, chain axis first."""

    outputs: tuple[np.ndarray, ...]
    """Per output: ``(chains, draws, *shape)``."""
    loglik: tuple[np.ndarray, ...]
    """Per observed variable: ``(chains, draws, *shape)``; empty if not asked for."""
    stats: dict[str, np.ndarray]
    """Per sampler statistic: ``(chains, draws)``."""
    warmup_outputs: tuple[np.ndarray, ...] | None
    """Warmup counterpart of ``outputs``, when asked for."""
    warmup_stats: dict[str, np.ndarray] | None
    """Warmup counterpart of ``stats``, when asked for."""
    steps_done: int
    """Steps finished per chain (warmup included)."""
    interrupted: bool
    """Whether the run stopped early on a keyboard interrupt."""
    compile_time: float
    """Seconds spent compiling the chunk function (0 when it came from a cache)."""


class ChainFunctions(NamedTuple):
    """The model's functions, all of ``(theta, data)``."""

    logdensity: Callable
    """Scalar log-density."""
    constrain: Callable
    """Tuple of reported values."""
    loglik: Callable | None
    """Tuple of pointwise log-likelihoods, or None to skip them."""


def chain_mesh(chains: int) -> jax.sharding.Mesh:
    """A one-axis mesh over as many devices as evenly divide the chains."""
    devices = jax.devices()
    count = max(d for d in range(1, min(len(devices), chains) + 1) if chains % d == 0)
    return jax.make_mesh((count,), ("chain",), devices=devices[:count])


def _step_fn(program_factory, fns: ChainFunctions, tune: int):
    """One step of one chain, choosing warmup, sampling or idle by global index."""

    def step(state, step_index, end, chain_key, data):
        program = program_factory(lambda theta: fns.logdensity(theta, data))
        key = jax.random.fold_in(chain_key, step_index)

        def warm(s):
            return program.warmup_step(key, s, step_index)

        def sample(s):
            return program.sample_step(key, s)

        info_shape = jax.eval_shape(sample, state)[1]

        def idle(s):
            return s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), info_shape)

        branch = jnp.where(step_index < tune, WARMUP, jnp.where(step_index < end, SAMPLE, IDLE))
        state, info = lax.switch(branch, (warm, sample, idle), state)
        position = program.position(state)
        values = fns.constrain(position, data)
        loglik = fns.loglik(position, data) if fns.loglik is not None else ()
        return state, (values, loglik, info)

    return step


def build_chunk_fn(program_factory, fns: ChainFunctions, tune: int, chunk_size: int, mesh):
    """``chunk(states, start, end, chain_keys, data) -> (states, stacked step outputs)``, jitted.

    ``start`` is the global index of the chunk's first step and ``end`` the
    number of steps of the whole run: both are arguments, so one compiled
    program serves every chunk and any number of draws.
    """
    step = jax.vmap(_step_fn(program_factory, fns, tune), in_axes=(0, None, None, 0, None))

    def local_chunk(states, start, end, chain_keys, data):
        def body(states, offset):
            return step(states, start + offset, end, chain_keys, data)

        return lax.scan(body, states, jnp.arange(chunk_size, dtype=jnp.int32))

    sharded = jax.shard_map(
        local_chunk,
        mesh=mesh,
        in_specs=(P("chain"), P(), P(), P("chain"), P()),
        out_specs=(P("chain"), P(None, "chain")),
        check_vma=False,
    )
    return jax.jit(sharded)


class Runner:
    """The compiled functions of one model and run shape, reusable across runs.

    Compilation happens on first use, once per shapes of positions and data.
    """

    def __init__(self, program_factory, fns: ChainFunctions, tune: int, chunk_size: int, chains: int):
        self.tune, self.chunk_size, self.chains = tune, chunk_size, chains
        self.mesh = chain_mesh(chains)
        self._sharding = jax.sharding.NamedSharding(self.mesh, P("chain"))

        def init(positions, data):
            def one(position):
                return program_factory(lambda theta: fns.logdensity(theta, data)).init(position)

            return jax.vmap(one)(positions)

        self._init = jax.jit(init, out_shardings=self._sharding)
        self._chunk = build_chunk_fn(program_factory, fns, tune, chunk_size, self.mesh)
        self._compiled: dict = {}

    def init(self, positions, data):
        """Chain states at ``positions``, laid out over the mesh."""
        return self._init(jax.device_put(jnp.asarray(positions), self._sharding), data)

    def keys(self, seed: int):
        """Per-chain keys, laid out over the mesh."""
        return jax.device_put(chain_keys(seed, self.chains), self._sharding)

    def chunk(self, states, keys, data) -> tuple[Callable, float]:
        """The compiled chunk function for these shapes, and seconds spent compiling it now."""
        signature = jax.tree.map(lambda x: (x.shape, x.dtype), (states, data))
        signature = tuple(jax.tree.leaves(signature))
        if signature in self._compiled:
            return self._compiled[signature], 0.0
        started = time.perf_counter()
        compiled = self._chunk.lower(states, jnp.int32(0), jnp.int32(1), keys, data).compile()
        self._compiled[signature] = compiled
        return compiled, time.perf_counter() - started


def chain_keys(seed: int, chains: int):
    """One key per chain, independent of how chains are laid over devices."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda c: jax.random.fold_in(base, c))(jnp.arange(chains))


class _Collector:
    """Host-side store of finished steps, split into warmup and kept draws."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.parts: list[Any] = []

    def add(self, start: int, host_out) -> None:
        self.parts.append((start, host_out))

    def _select(self, lo: int, hi: int, done: int):
        pieces = []
        for start, out in self.parts:
            a, b = max(lo, start), min(hi, start + self.plan.chunk_size, done)
            if a < b:
                pieces.append(jax.tree.map(lambda x: x[a - start : b - start], out))
        if not pieces:
            return None
        joined = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)
        # Scan stacks steps first; ArviZ wants chains first.
        return jax.tree.map(lambda x: np.swapaxes(x, 0, 1), joined)

    def result(self, done: int, interrupted: bool, empty, compile_time: float) -> ChainDraws:
        tune, draws = self.plan.tune, self.plan.draws
        kept = self._select(tune, tune + draws, done) or empty
        warm = self._select(0, tune, done) if self.plan.keep_warmup else None
        return ChainDraws(
            outputs=tuple(kept[0]),
            loglik=tuple(kept[1]),
            stats=kept[2]._asdict(),
            warmup_outputs=tuple(warm[0]) if warm else None,
            warmup_stats=warm[2]._asdict() if warm else None,
            steps_done=done,
            interrupted=interrupted,
            compile_time=compile_time,
        )


def run_chains(
    runner: Runner,
    data: tuple,
    positions: np.ndarray,
    plan: RunPlan,
    progress: Callable[[int, int, dict], None] | None = None,
) -> ChainDraws:
    """Run every chain from ``positions`` (``(chains, dim)``) and collect draws on the host.

    ``progress(start, steps_done, chunk_stats)`` is called after each chunk. A
    keyboard interrupt between chunks stops the run and returns what finished.
    """
    data = tuple(jnp.asarray(d) for d in data)
    states = runner.init(positions, data)
    keys = runner.keys(plan.seed)
    chunk, compile_time = runner.chunk(states, keys, data)
    total, done, interrupted = plan.tune + plan.draws, 0, False
    collector = _Collector(plan)
    empty = None
    try:
        while done < total:
            states, out = chunk(states, jnp.int32(done), jnp.int32(total), keys, data)
            host = jax.device_get(out)
            collector.add(done, host)
            if empty is None:
                empty = jax.tree.map(lambda x: np.swapaxes(x[:0], 0, 1), host)
            start, done = done, min(done + plan.chunk_size, total)
            if progress is not None:
                progress(start, done, host[2]._asdict())
    except KeyboardInterrupt:
        interrupted = True
    if empty is None:
        raise KeyboardInterrupt("Sampling was interrupted before the first chunk finished.")
    return collector.result(done, interrupted, empty, compile_time)

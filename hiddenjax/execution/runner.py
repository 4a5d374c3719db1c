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

from hiddenjax.execution.checkpoint import Checkpoint, load, save
from hiddenjax.execution.devices import pool_safe_devices
from hiddenjax.execution.interrupt import StopRequest

WARMUP, SAMPLE, IDLE = 0, 1, 2


class RunPlan(NamedTuple):
    """What to run, in plain numbers."""

    tune: int
    """Warmup steps per chain."""
    draws: int
    """Kept steps per chain after warmup."""
    seed: int | list[int]
    """Seed of the sampler's random keys (a list: one per consecutive group of chains)."""
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


def chain_mesh(chains: int, devices: list | None = None) -> jax.sharding.Mesh:
    """A one-axis mesh over as many of ``devices`` as evenly divide the chains."""
    devices = devices or jax.devices()
    if jax.process_count() > 1:
        # Across processes every device takes part, so each process runs its share.
        return jax.make_mesh((len(devices),), ("chain",), devices=devices)
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


def build_chunk_fn(program_factory, fns: ChainFunctions, tune: int, chunk_size: int, mesh,
                   data_per_chain: bool = False):
    """``chunk(states, start, end, chain_keys, data) -> (states, stacked step outputs)``, jitted.

    ``start`` is the global index of the chunk's first step and ``end`` the
    number of steps of the whole run: both are arguments, so one compiled
    program serves every chunk and any number of draws. With
    ``data_per_chain`` every data array has a leading chain axis, so each
    chain can fit its own dataset.
    """
    data_axis = 0 if data_per_chain else None
    step = jax.vmap(_step_fn(program_factory, fns, tune), in_axes=(0, None, None, 0, data_axis))

    def local_chunk(states, start, end, chain_keys, data):
        def body(states, offset):
            return step(states, start + offset, end, chain_keys, data)

        return lax.scan(body, states, jnp.arange(chunk_size, dtype=jnp.int32))

    sharded = jax.shard_map(
        local_chunk,
        mesh=mesh,
        in_specs=(P("chain"), P(), P(), P("chain"), P("chain") if data_per_chain else P()),
        out_specs=(P("chain"), P(None, "chain")),
        check_vma=False,
    )
    return jax.jit(sharded)


class Runner:
    """The compiled functions of one model and run shape, reusable across runs.

    Compilation happens on first use, once per shapes of positions and data.
    """

    def __init__(self, program_factory, fns: ChainFunctions, tune: int, chunk_size: int,
                 chains: int, devices: list | None = None, data_per_chain: bool = False):
        self.tune, self.chunk_size, self.chains = tune, chunk_size, chains
        self.data_per_chain = data_per_chain
        self._program_factory, self._fns = program_factory, fns
        self._compiled: dict = {}
        self._use_mesh(chain_mesh(chains, devices))

    def _use_mesh(self, mesh) -> None:
        """Build the jitted init and chunk functions over ``mesh``."""
        program_factory, fns = self._program_factory, self._fns
        self.mesh = mesh
        self.sharding = jax.sharding.NamedSharding(self.mesh, P("chain"))
        self.replicated = jax.sharding.NamedSharding(self.mesh, P())
        self._compiled.clear()

        data_axis = 0 if self.data_per_chain else None

        def init(positions, data):
            def one(position, chain_data):
                return program_factory(lambda theta: fns.logdensity(theta, chain_data)).init(position)

            return jax.vmap(one, in_axes=(0, data_axis))(positions, data)

        # Inside shard_map each device initialises its own chains with plain local
        # arrays, so constants in the model never meet chain-sharded values.
        data_spec = P("chain") if self.data_per_chain else P()
        self._init = jax.jit(jax.shard_map(
            init, mesh=self.mesh, in_specs=(P("chain"), data_spec), out_specs=P("chain"),
            check_vma=False,
        ))
        self._chunk = build_chunk_fn(program_factory, fns, self.tune, self.chunk_size, self.mesh,
                                     self.data_per_chain)

    def put_data(self, data: tuple) -> tuple:
        """Data on the devices: whole on each, or split by chain when each chain has its own."""
        data = tuple(jnp.asarray(d) for d in data)
        sharding = self.sharding if self.data_per_chain else self.replicated
        return tuple(to_devices(d, sharding) for d in data)

    def init(self, positions, data):
        """Chain states at ``positions``, laid out over the mesh."""
        return self._init(to_devices(positions, self.sharding), data)

    def keys(self, seed: int | list[int]):
        """Per-chain keys, laid out over the mesh.

        A list of seeds gives consecutive groups of chains their own seed, each
        group keyed exactly as a run of that many chains with that seed alone.
        """
        seeds = seed if isinstance(seed, list) else [seed]
        per_seed = self.chains // len(seeds)
        keys = jnp.concatenate([chain_keys(s, per_seed) for s in seeds])
        return to_devices(np.asarray(keys), self.sharding)

    def compile(self, positions, data) -> tuple[Callable, float]:
        """The compiled chunk function for these shapes, and seconds spent compiling it now.

        Call it before placing anything on the devices: a CPU program that calls
        LAPACK moves the run to one device (see ``pool_safe_devices``).
        """
        data = tuple(np.asarray(d) for d in data)
        signature = tuple((np.shape(x), np.asarray(x).dtype) for x in (positions, *data))
        if signature in self._compiled:
            return self._compiled[signature], 0.0
        started = time.perf_counter()
        lowered = self._lower(positions, data)
        devices = list(self.mesh.devices.flat)
        # Across processes every device must take part, so the mesh stays.
        safe = devices if jax.process_count() > 1 else pool_safe_devices(devices, lowered.as_text())
        if len(safe) < len(devices):
            self._use_mesh(chain_mesh(self.chains, safe))
            lowered = self._lower(positions, data)
        compiled = lowered.compile()
        self._compiled[signature] = compiled
        return compiled, time.perf_counter() - started

    def _lower(self, positions, data):
        """The chunk function lowered for abstract inputs laid out over the current mesh."""
        data_sharding = self.sharding if self.data_per_chain else self.replicated

        def spec(x, sharding):
            dtype = jax.dtypes.canonicalize_dtype(np.asarray(x).dtype)
            return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding)

        data = tuple(spec(d, data_sharding) for d in data)
        states = jax.eval_shape(self._init, spec(positions, self.sharding), data)
        states = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), states)
        keys = spec(np.zeros((self.chains, 2), np.uint32), self.sharding)
        step = jax.ShapeDtypeStruct((), jnp.int32)
        return self._chunk.lower(states, step, step, keys, data)


def to_devices(x, sharding) -> jax.Array:
    """A host array laid out over ``sharding``, also across processes.

    Every process holds the whole host array; each places only the parts its
    own devices hold, so the same code serves one process and many.
    """
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(tree):
    """Device arrays to numpy, gathering shards other processes hold."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def chain_keys(seed: int, chains: int):
    """One key per chain, independent of how chains are laid over devices."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda c: jax.random.fold_in(base, c))(jnp.arange(chains))


class _Collector:
    """Host-side store of finished steps, split into warmup and kept draws."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.parts: list[tuple[int, int, Any]] = []

    def add(self, start: int, stop: int, host_out) -> None:
        """Keep steps ``start`` to ``stop`` of a chunk output stacked steps-first."""
        self.parts.append((start, stop, jax.tree.map(lambda x: x[: stop - start], host_out)))

    def steps(self, lo: int, hi: int):
        """Steps ``lo`` to ``hi`` joined, steps-first, or None if there are none."""
        pieces = [
            jax.tree.map(lambda x: x[max(lo, a) - a : min(hi, b) - a], out)
            for a, b, out in self.parts
            if max(lo, a) < min(hi, b)
        ]
        if not pieces:
            return None
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)

    def result(self, done: int, interrupted: bool, compile_time: float) -> ChainDraws:
        tune, draws = self.plan.tune, self.plan.draws
        empty = jax.tree.map(lambda x: x[:0], self.parts[0][2])
        # Scan stacks steps first; ArviZ wants chains first.
        kept = jax.tree.map(lambda x: np.swapaxes(x, 0, 1), self.steps(tune, tune + draws) or empty)
        warm = self.steps(0, tune) if self.plan.keep_warmup else None
        warm = jax.tree.map(lambda x: np.swapaxes(x, 0, 1), warm) if warm is not None else None
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


def _resume(runner: Runner, states, chunk, collector: _Collector, saved: Checkpoint):
    """Sampler states and finished steps restored from a checkpoint."""
    treedef = jax.tree.structure(states)
    states = jax.tree.map(lambda x: to_devices(x, runner.sharding),
                          jax.tree.unflatten(treedef, saved.states))
    collector.add(0, saved.done, jax.tree.unflatten(chunk.out_tree.children()[1], saved.steps))
    return states


def _save(path: str, states, collector: _Collector, done: int, seed: int, fingerprint: str):
    steps = collector.steps(0, done)
    save(path, Checkpoint(
        steps=[np.asarray(x) for x in jax.tree.leaves(steps)],
        states=[np.asarray(x) for x in jax.tree.leaves(to_host(states))],
        done=done,
        seed=seed,
        fingerprint=fingerprint,
    ))


def run_chains(
    runner: Runner,
    data: tuple,
    positions: np.ndarray,
    plan: RunPlan,
    progress: Callable[[int, int, dict], None] | None = None,
    checkpoint: str | None = None,
    fingerprint: str = "",
) -> ChainDraws:
    """Run every chain from ``positions`` (``(chains, dim)``) and collect draws on the host.

    ``progress(start, steps_done, chunk_stats)`` is called after each chunk. A
    Ctrl-C stops the run at the next chunk boundary and returns what finished.
    With ``checkpoint``, progress is saved there after every chunk, and a run
    whose checkpoint exists continues from it (using the seed stored in it).
    """
    chunk, compile_time = runner.compile(positions, data)
    data = runner.put_data(data)
    states = runner.init(positions, data)
    keys = runner.keys(plan.seed)
    collector, done = _Collector(plan), 0
    saved = load(checkpoint, fingerprint) if checkpoint else None
    if saved is not None:
        plan = plan._replace(seed=saved.seed)
        keys = runner.keys(saved.seed)
        states = _resume(runner, states, chunk, collector, saved)
        done = saved.done
    total = plan.tune + plan.draws
    with StopRequest() as stop:
        try:
            while done < total and not stop.requested:
                states, out = chunk(states, jnp.int32(done), jnp.int32(total), keys, data)
                host = to_host(out)
                start, done = done, min(done + plan.chunk_size, total)
                collector.add(start, done, host)
                if checkpoint and jax.process_index() == 0:
                    _save(checkpoint, states, collector, done, plan.seed, fingerprint)
                if progress is not None:
                    progress(start, done, host[2]._asdict())
        except KeyboardInterrupt:
            stop.requested = True
    if not collector.parts:
        raise KeyboardInterrupt("Sampling was interrupted before the first chunk finished.")
    return collector.result(done, stop.requested, compile_time)

"""Chains over devices, run as one jitted chunk of steps at a time.

Warmup and sampling share one compiled chunk function: a call runs the steps it
is asked for, each the program's transition at its global index (the program
adapts while the index is in warmup). Draws are copied to host memory after
every call, so device memory is bounded by the chunk and an interrupt keeps
every finished draw. A call stops at the end of each warmup window the
program lists, so that the window's metric is computed on the host between
calls (``Runner.end_window``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from hiddenjax.compile.prng import splitmix_key
from hiddenjax.execution import background, prefetch, program_cache
from hiddenjax.execution.checkpoint import Checkpoint, load, save
from hiddenjax.execution.devices import check_chain_method, pool_safe_devices
from hiddenjax.execution.interrupt import StopRequest


DEFAULT_CHUNK = 200
"""Steps per chunk when draws are small: long enough that chunk boundaries cost little
(docs/benchmarks/chunking.md), short enough for live progress."""

TIMED_CHUNK = 2000
"""Most steps a compiled chunk holds when calls are timed (``RunPlan.chunk_seconds``)."""

TIMED_CHUNK_BYTES = 64 << 20
"""Bytes of draws a timed chunk may hold beyond ``DEFAULT_CHUNK`` steps."""

FIRST_TIMED_CALL = 25
"""Steps of a timed run's first call: few, so that it says soon how fast steps go.

Early warmup steps vary most in cost between chains (their trees are deepest
while the step size is still wrong), so a long first call would keep the
devices waiting on each other longest at its end."""

CHUNK_SECONDS = 1.0
"""Seconds a timed chunk call aims at.

Chains on several devices meet at every chunk boundary: the devices run one
program in lockstep, so each call lasts as long as its slowest device, and a
boundary costs the other devices their wait (+10 to +30 % of the loop with
200-step chunks on 2 CPU devices, docs/benchmarks/chunking.md). A call of about
a second keeps the progress bar and Ctrl-C responsive and leaves few boundaries
to a fast model."""

STATS_BYTES = 8 * 16
"""Bytes of sampler statistics one chain's step adds, counted generously (NUTS keeps 13)."""


def chunk_steps(total: int, step_bytes: int | None, chains: int, budget: int,
                longest: int = DEFAULT_CHUNK) -> int:
    """Steps per chunk: ``longest``, or fewer so that ``chains`` chains' draws of
    ``step_bytes`` each fit ``budget`` bytes (at least 1), and at most ``total``.

    ``step_bytes`` None (draw sizes unknown until run) keeps ``DEFAULT_CHUNK``.
    """
    fits = budget // max(1, (step_bytes or 0) * chains) if step_bytes else DEFAULT_CHUNK
    return max(1, min(longest, total, fits))


def timed_chunk_steps(total: int, step_bytes: int | None, chains: int, budget: int) -> int:
    """Rows of a chunk whose calls are timed: what :func:`chunk_steps` allows, or up to
    ``TIMED_CHUNK`` steps while their draws stay within ``TIMED_CHUNK_BYTES``."""
    return max(chunk_steps(total, step_bytes, chains, budget),
               chunk_steps(total, step_bytes, chains, min(budget, TIMED_CHUNK_BYTES),
                           longest=TIMED_CHUNK))


def next_call_steps(plan: RunPlan, steps: int, seconds: float) -> int:
    """Steps of the next chunk call, after a call ran ``steps`` steps in ``seconds``.

    Untimed plans run ``chunk_size`` steps a call. Timed ones run as many steps
    as take about ``chunk_seconds``, between ``DEFAULT_CHUNK`` (or the chunk's
    rows, if fewer) and the chunk's rows.
    """
    if plan.chunk_seconds is None or seconds <= 0:
        return plan.chunk_size
    fits = int(steps * plan.chunk_seconds / seconds)
    return max(min(DEFAULT_CHUNK, plan.chunk_size), min(plan.chunk_size, fits))


class RunPlan(NamedTuple):
    """What to run, in plain numbers."""

    tune: int
    """Warmup steps per chain."""
    draws: int
    """Kept steps per chain after warmup."""
    seed: int | list[int]
    """Seed of the sampler's random keys (a list: one per consecutive group of chains)."""
    chunk_size: int
    """Steps a compiled call holds (its rows); untimed calls each run this many."""
    keep_warmup: bool
    """Whether to return warmup draws too."""
    chunk_seconds: float | None = None
    """None: every call runs ``chunk_size`` steps. Else calls are timed: the first
    runs ``FIRST_TIMED_CALL`` steps (at most ``chunk_size``) and the next ones as
    many as take about this many seconds (:func:`next_call_steps`)."""


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
    digest: str | None = None
    """What these functions compute, as a text that keys their programs on disk
    (the digest of the graphs they are lowered from, and their precision), or
    None to key programs by the functions' jaxprs, which means tracing them."""


def chain_mesh(chains: int, devices: list | None = None) -> jax.sharding.Mesh:
    """A one-axis mesh over as many of ``devices`` as evenly divide the chains."""
    devices = devices or jax.devices()
    if jax.process_count() > 1:
        # Across processes every device takes part, so each process runs its share.
        return jax.make_mesh((len(devices),), ("chain",), devices=devices)
    count = max(d for d in range(1, min(len(devices), chains) + 1) if chains % d == 0)
    return jax.make_mesh((count,), ("chain",), devices=devices[:count])


def _no_logdensity(theta):
    raise RuntimeError("The program's host side evaluated the log-density; only its traced "
                       "step and init may.")


def next_stop(done: int, steps: int, total: int, window_ends: tuple[int, ...]) -> int:
    """Where a call from step ``done`` asked to run ``steps`` steps stops: at most
    ``total``, and right after the first window end at or past ``done``."""
    stop = min(done + steps, total)
    return min([stop] + [end + 1 for end in window_ends if done <= end < stop])


def _step_fn(program_factory, fns: ChainFunctions):
    """One step of one chain: the program's transition and what the step reports."""

    def step(state, step_index, chain_key, data):
        program = program_factory(lambda theta: fns.logdensity(theta, data))
        key = jax.random.fold_in(splitmix_key(chain_key), step_index)
        state, info = program.step(key, state, step_index)
        position = program.position(state)
        values = fns.constrain(position, data)
        loglik = fns.loglik(position, data) if fns.loglik is not None else ()
        return state, (values, loglik, info)

    return step


def _steps_into_rows(step, state, start, stop, rows: int):
    """Run ``step(state, index)`` for ``index`` from ``start`` up to ``stop`` (at most
    ``rows`` steps) and write each step's outputs into one row of ``rows``-row
    arrays; rows past the last step stay zero.

    A ``while_loop`` rather than a ``scan``: a call runs as many steps as its
    ``stop`` asks, so one compiled chunk serves calls of every length up to ``rows``.
    The step is wrapped in ``jax.jit`` so that the shape probe and the loop body
    share one trace of it: tracing a NUTS step takes a good part of a second.
    """
    step = jax.jit(step)
    shapes = jax.eval_shape(lambda s: step(s, start)[1], state)
    buffers = jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), shapes)

    def more(carry):
        row = carry[0]
        return (row < rows) & (start + row < stop)

    def body(carry):
        row, state, buffers = carry
        state, out = step(state, start + row)
        buffers = jax.tree.map(lambda b, o: lax.dynamic_update_index_in_dim(b, o, row, 0),
                               buffers, out)
        return row + 1, state, buffers

    _, state, buffers = lax.while_loop(more, body, (jnp.int32(0), state, buffers))
    return state, buffers


VECTORIZE_SHARED_DATA = 2**18
"""Entries of shared data from which ``chain_method="auto"`` vectorises a device's chains.

Vectorised chains move in lockstep: every NUTS leaf waits for the chain with
the longest trajectory (12 to 48 % more leaves than the chains need on this
project's benchmark models, two chains a device), and the loop carries and
selects every chain's U-turn checkpoints at each leaf. Run one after another,
each chain stops when it is done and writes its checkpoints in place: the
sampling loop ran 11 to 72 % faster on five of six small-data benchmark models,
15 % slower on the sixth, eight_schools (docs/execution.md). Vectorising pays off
when the gradient reads a large array shared by the chains, which it then
reads once for all of them: logistic regression on a 100,000 x 50 design
matrix took half the time per gradient vectorised.
"""


def runs_vectorized(chain_method: str, data: tuple, data_per_chain: bool) -> bool:
    """Whether a device runs its chains vectorised (``vmap``) rather than one after another.

    ``"auto"`` decides from shapes alone, so the choice is the same on every
    device count: vectorised for per-chain datasets (batched
    fits: many small chains share each operation's overhead) and for large
    shared data, one after another otherwise.
    """
    if chain_method != "auto":
        return chain_method == "vectorized"
    return data_per_chain or sum(math.prod(d.shape) for d in data) >= VECTORIZE_SHARED_DATA


def build_chunk_fn(program_factory, fns: ChainFunctions, chunk_size: int, mesh,
                   data_per_chain: bool = False, chain_method: str = "auto"):
    """``chunk(states, start, stop, chain_keys, data) -> (states, stacked step outputs)``, jitted.

    A call runs steps ``start`` up to ``stop`` (global indices, at most
    ``chunk_size`` of them) and returns their outputs in ``chunk_size`` rows,
    steps first; rows past ``stop - start`` are zero. Both are arguments, so one
    compiled program serves every chunk, of any length up to ``chunk_size``, and
    any number of draws. With ``data_per_chain`` every data array has a leading
    chain axis, so each chain can fit its own dataset. ``chain_method`` says how
    a device runs its chains (:func:`runs_vectorized`); the draws are the same
    either way up to rounding.
    """
    one_step = _step_fn(program_factory, fns)

    def vectorized(states, start, stop, chain_keys, data):
        step = jax.vmap(one_step, in_axes=(0, None, 0, 0 if data_per_chain else None))
        return _steps_into_rows(lambda s, index: step(s, index, chain_keys, data),
                                states, start, stop, chunk_size)

    def sequential(states, start, stop, chain_keys, data):
        def one_chain(chain):
            state, chain_key, chain_data = chain
            chain_data = chain_data if data_per_chain else data
            return _steps_into_rows(lambda s, index: one_step(s, index, chain_key, chain_data),
                                    state, start, stop, chunk_size)

        states, outputs = lax.map(one_chain, (states, chain_keys,
                                              data if data_per_chain else None))
        return states, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outputs)

    def local_chunk(states, start, stop, chain_keys, data):
        if runs_vectorized(chain_method, data, data_per_chain):
            return vectorized(states, start, stop, chain_keys, data)
        return sequential(states, start, stop, chain_keys, data)

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
                 chains: int, devices: list | None = None, data_per_chain: bool = False,
                 chain_method: str = "auto"):
        self.tune, self.chunk_size, self.chains = tune, chunk_size, chains
        self.data_per_chain = data_per_chain
        self.chain_method = check_chain_method(chain_method)
        self._program_factory, self._fns = program_factory, fns
        self._compiled: dict = {}
        self._inits: dict = {}
        self._checks: dict = {}
        # The program's host side (window ends) never evaluates the model.
        self._host_program = program_factory(_no_logdensity)
        self.window_ends: tuple[int, ...] = tuple(getattr(self._host_program, "window_ends", ()))
        """Steps after which :meth:`end_window` must run (the program's ``window_ends``)."""
        self._use_mesh(chain_mesh(chains, devices))

    def _use_mesh(self, mesh) -> None:
        """Build the jitted init and chunk functions over ``mesh``."""
        program_factory, fns = self._program_factory, self._fns
        self.mesh = mesh
        self.sharding = jax.sharding.NamedSharding(self.mesh, P("chain"))
        self.replicated = jax.sharding.NamedSharding(self.mesh, P())
        self._compiled.clear()
        self._inits.clear()

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
        self._chunk = build_chunk_fn(program_factory, fns, self.chunk_size, self.mesh,
                                     self.data_per_chain, self.chain_method)

    def put_data(self, data: tuple) -> tuple:
        """Data on the devices: whole on each, or split by chain when each chain has its own."""
        data = tuple(jnp.asarray(d) for d in data)
        sharding = self.sharding if self.data_per_chain else self.replicated
        return tuple(to_devices(d, sharding) for d in data)

    def init(self, positions, data):
        """Chain states at ``positions``, laid out over the mesh.

        After :meth:`compile` this runs the init program stored beside the
        chunk program, so a run served by the program cache traces nothing.
        """
        init = self._inits.get(_signature(positions, data), self._init)
        return init(to_devices(positions, self.sharding), data)

    def check(self, positions, data) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        """``check(theta) -> (logp, grad)`` on the host, for one chain's position.

        ``positions`` and ``data`` are the run's (only their shapes matter);
        ``check`` takes one chain's position and, with data per chain, is
        given that chain's data when called as ``check(theta, chain_data)``.
        The function is kept in the program cache like the chunk program.
        """
        theta_spec, data_specs = self._specs(positions, data, per_chain=True)
        signature = _signature(positions, data)
        if signature not in self._checks:
            self._checks[signature] = self._check_fn(positions, data, theta_spec, data_specs)
        fn = self._checks[signature]
        dtypes = [s.dtype for s in data_specs]
        whole = tuple(np.asarray(d) for d in data)

        def check(theta: np.ndarray, chain_data: tuple | None = None) -> tuple[float, np.ndarray]:
            given = whole if chain_data is None else chain_data
            value, grad = fn(np.asarray(theta, theta_spec.dtype),
                             tuple(np.asarray(d, t) for d, t in zip(given, dtypes)))
            return float(value), np.asarray(grad)

        return check

    def _check_fn(self, positions, data, theta_spec, data_specs) -> Callable:
        """The jitted value and gradient of one chain, from the program cache when there."""
        key = self._program_key(positions, data, part="check")
        exported = program_cache.load(key) if key else None
        if exported is not None:
            return jax.jit(exported.call)
        traced = jax.jit(jax.value_and_grad(self._fns.logdensity))
        try:
            exported = jax.export.export(traced)(theta_spec, data_specs)
        except (ValueError, NotImplementedError):  # host callbacks are not exportable
            return traced
        if key:
            program_cache.store(key, exported)
        return jax.jit(exported.call)

    def end_window(self, states):
        """The chains' states after a warmup window ended: the program's ``end_window``,
        run on the host, its result laid out over the mesh again."""
        host = to_host(states)
        ended = self._host_program.end_window(host)
        return jax.tree.map(lambda x, old: to_devices(np.asarray(x, old.dtype), self.sharding),
                            ended, host)

    def keys(self, seed: int | list[int]):
        """Per-chain keys, laid out over the mesh.

        A list of seeds gives consecutive groups of chains their own seed, each
        group keyed exactly as a run of that many chains with that seed alone.
        """
        seeds = seed if isinstance(seed, list) else [seed]
        per_seed = self.chains // len(seeds)
        keys = np.concatenate([chain_keys(s, per_seed) for s in seeds])
        return to_devices(np.asarray(keys), self.sharding)

    def compile(self, positions, data, hint: str | None = None) -> tuple[Callable, float]:
        """The compiled chunk function for these shapes, and seconds spent compiling it now.

        :meth:`start_compile`, waited for.
        """
        return self.start_compile(positions, data, hint)()

    def start_compile(self, positions, data,
                      hint: str | None = None) -> Callable[[], tuple[Callable, float]]:
        """Start compiling the chunk function for these shapes; ``wait() -> (compiled,
        seconds from this call until it was ready)`` (0 seconds if it was ready already).

        The program is traced and lowered here; XLA compiles it in a background
        thread (:mod:`~hiddenjax.execution.background`), so the caller can do
        other work meanwhile, such as finding starting points. Call it before
        placing anything on the devices: a CPU program that calls LAPACK moves
        the run to one device (see ``pool_safe_devices``); when this returns, the
        mesh is settled. The lowered program is kept on disk (``program_cache``),
        so another process with the same model, settings and shapes skips
        tracing it. ``hint`` describes the call without the model's graphs: the
        program's key is remembered under it, and a loading started early under
        the same hint (:mod:`~hiddenjax.execution.prefetch`) is taken when the
        key matches.
        """
        data = tuple(np.asarray(d) for d in data)
        signature = _signature(positions, data)
        if signature in self._compiled:
            compiled = self._compiled[signature]
            return lambda: (compiled, 0.0)
        started = time.perf_counter()
        key = self._program_key(positions, data)
        devices = tuple(self.mesh.devices.flat)
        loaded = None
        if key:
            loaded = prefetch.take(key, devices) or load_program(
                key, self.chains, devices, self.data_per_chain)
        if loaded is not None:
            if loaded.mesh != self.mesh:  # it calls LAPACK (see _settle)
                self._use_mesh(loaded.mesh)
            compiling, init, exportable = None, loaded.init, True
            ready = loaded.compiled, time.perf_counter()
        else:
            exported, lowered = self._settle(positions, data)
            if exported is not None:
                if key:
                    program_cache.store(key, exported)
                lowered = jax.jit(exported.call).lower(
                    *exported_specs(exported, self.mesh, self.data_per_chain))
            compiling = background.start(lambda: (lowered.compile(), time.perf_counter()),
                                         "hiddenjax-compile")
            init, exportable = None, exported is not None
        if init is None and key and exportable:
            init = self._export_init(positions, data)
            if init is not None:
                program_cache.store(f"{key}-init", init)
        if key and hint is not None:
            prefetch.remember(hint, key)
        if init is not None:
            self._inits[signature] = self._compile_init(init, positions, data)

        def wait() -> tuple[Callable, float]:
            compiled, finished = ready if compiling is None else background.wait(compiling)
            self._compiled[signature] = compiled
            return compiled, finished - started

        return wait

    def _compile_init(self, init: jax.export.Exported, positions, data) -> Callable:
        """The stored init program, compiled for these shapes on the settled mesh."""
        return jax.jit(init.call).lower(*self._init_specs(positions, data)).compile()

    def _export_init(self, positions, data) -> jax.export.Exported | None:
        """The init function exported at these shapes, on the settled mesh."""
        try:
            return jax.export.export(self._init)(*self._init_specs(positions, data))
        except (ValueError, NotImplementedError):
            return None

    def _init_specs(self, positions, data) -> tuple:
        """Abstract arguments of the init function, laid out over the mesh."""
        data_sharding = self.sharding if self.data_per_chain else self.replicated
        return _spec(positions, self.sharding), tuple(_spec(d, data_sharding) for d in data)

    def _settle(self, positions, data):
        """``(exported, None)``, or ``(None, lowered)`` where export is impossible
        (host callbacks, several processes), on the devices its LAPACK calls allow."""
        exportable = jax.process_count() == 1
        while True:
            exported = lowered = None
            if exportable:
                try:
                    exported = jax.export.export(self._chunk)(*self._specs(positions, data))
                    text = exported.mlir_module()
                except (ValueError, NotImplementedError):  # host callbacks are not exportable
                    exportable = False
            if not exportable:
                lowered = self._chunk.lower(*self._specs(positions, data))
                text = lowered.as_text()
            devices = list(self.mesh.devices.flat)
            # Across processes every device must take part, so the mesh stays.
            safe = devices if jax.process_count() > 1 else pool_safe_devices(devices, text)
            if len(safe) == len(devices):
                return exported, lowered
            self._use_mesh(chain_mesh(self.chains, safe))

    def _program_key(self, positions, data, part: str = "chunk") -> str | None:
        """The on-disk cache key of this runner's ``part`` program at these shapes."""
        theta, data_specs = self._specs(positions, data, per_chain=True)
        fns = self._fns
        try:
            digests = (fns.digest,) if fns.digest is not None else (
                program_cache.function_digest(jax.value_and_grad(fns.logdensity), theta,
                                              data_specs),
                program_cache.function_digest(fns.constrain, theta, data_specs),
                program_cache.function_digest(fns.loglik, theta, data_specs)
                if fns.loglik is not None else None,
            )
        except Exception:  # a model that cannot be traced abstractly is not cached
            return None
        settings = (part, self.tune, self.chunk_size, self.chains, self.data_per_chain,
                    self.chain_method,
                    tuple((np.shape(x), str(np.asarray(x).dtype)) for x in (positions, *data)))
        return program_cache.program_key(self._program_factory, settings, digests,
                                         list(self.mesh.devices.flat))

    def _specs(self, positions, data, per_chain: bool = False):
        """Abstract arguments: of the chunk function, or of one chain's model functions.

        The chain states' shapes come from tracing the init function.
        """
        spec = _spec
        if per_chain:
            return (spec(positions, drop_chain=True),
                    tuple(spec(d, drop_chain=self.data_per_chain) for d in data))
        data_sharding = self.sharding if self.data_per_chain else self.replicated
        data = tuple(spec(d, data_sharding) for d in data)
        states = jax.eval_shape(self._init, spec(positions, self.sharding), data)
        states = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), states)
        keys = spec(np.zeros((self.chains, 2), np.uint32), self.sharding)
        step = jax.ShapeDtypeStruct((), jnp.int32)
        return states, step, step, keys, data


class LoadedProgram(NamedTuple):
    """A chunk program from the program cache, compiled for its mesh."""

    mesh: jax.sharding.Mesh
    """The mesh it runs on (fewer devices than asked for when it calls LAPACK)."""
    compiled: Any
    """The compiled chunk function."""
    init: jax.export.Exported | None
    """The chain init program stored beside it, if any."""


def load_program(key: str, chains: int, devices: tuple,
                 data_per_chain: bool = False) -> LoadedProgram | None:
    """The chunk program stored under ``key``, compiled for ``chains`` over ``devices``.

    Compiling finds the executable in JAX's persistent cache. Pure apart from
    the caches it reads, so it can run in a background thread (``prefetch``).
    """
    exported = program_cache.load(key)
    if exported is None:
        return None
    init = program_cache.load(f"{key}-init")
    mesh = chain_mesh(chains, list(devices))
    if exported.nr_devices < mesh.devices.size:  # it calls LAPACK (see Runner._settle)
        mesh = chain_mesh(chains, list(mesh.devices.flat)[: exported.nr_devices])
    specs = exported_specs(exported, mesh, data_per_chain)
    return LoadedProgram(mesh, jax.jit(exported.call).lower(*specs).compile(), init)


def prefetch_program(hint: str, chains: int, devices: list | None = None) -> None:
    """Start loading, in a background thread, the chunk program last run under ``hint``.

    A runner for ``chains`` over ``devices`` takes it in :meth:`Runner.compile`
    if its key turns out to be the one remembered. The modules defining the
    program's state types must be imported already.
    """
    if jax.process_count() > 1:
        return  # such programs are not stored (see program_cache.program_key)
    mesh_devices = tuple(chain_mesh(chains, devices).devices.flat)
    prefetch.start(hint, mesh_devices,
                   lambda key, devs: load_program(key, chains, devs))


def exported_specs(exported: jax.export.Exported, mesh, data_per_chain: bool = False) -> tuple:
    """Abstract arguments of an exported chunk program, laid out over ``mesh``."""
    (states, start, stop, keys, data), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    chain = jax.sharding.NamedSharding(mesh, P("chain"))
    data_sharding = chain if data_per_chain else jax.sharding.NamedSharding(mesh, P())

    def laid(aval, sharding=None):
        return jax.ShapeDtypeStruct(aval.shape, aval.dtype, sharding=sharding)

    return (jax.tree.map(lambda s: laid(s, chain), states), laid(start), laid(stop),
            laid(keys, chain), tuple(laid(d, data_sharding) for d in data))


def _signature(positions, data) -> tuple:
    """Shapes and dtypes of a run's positions and data: what a compiled program is for."""
    return tuple((np.shape(x), np.dtype(x.dtype)) for x in (np.asarray(positions), *data))


def _spec(x, sharding=None, drop_chain=False) -> jax.ShapeDtypeStruct:
    """The abstract value of an array, optionally without its leading chain axis."""
    shape = np.shape(x)[1:] if drop_chain else np.shape(x)
    dtype = jax.dtypes.canonicalize_dtype(np.dtype(x.dtype) if hasattr(x, "dtype")
                                          else np.asarray(x).dtype)
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


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


def chain_keys(seed: int, chains: int) -> np.ndarray:
    """One raw key per chain, independent of how chains are laid over devices.

    Chain ``c``'s key is ``jax.random.fold_in(jax.random.PRNGKey(seed), c)``,
    computed on the host with numpy: as JAX operations these few scalars
    would cost a compilation each in a new process (about 0.1 s). The chunk
    program reads it as a SplitMix64 key (:mod:`hiddenjax.compile.prng`) and
    folds in the step's index.
    """
    seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # PRNGKey reads the seed as 64 bits
    key = (np.uint32(seed >> 32), np.uint32(seed & 0xFFFF_FFFF))
    counts = np.arange(chains, dtype=np.uint32)
    return np.stack(threefry2x32(key, np.zeros_like(counts), counts), axis=1)


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(key: tuple, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds) of counter words ``(x0, x1)``, as JAX's PRNG."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    schedule = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0.astype(np.uint32) + schedule[0], x1.astype(np.uint32) + schedule[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


class _Collector:
    """Host-side store of finished steps: one chains-first array per output, filled
    chunk by chunk, so draws are copied once and the host holds them plus one chunk.

    Steps before ``first`` are dropped (warmup draws nobody asked for).
    """

    def __init__(self, plan: RunPlan, first: int = 0):
        self.plan, self.first = plan, first
        self.buffers = None
        """Tree of ``(chains, tune + draws - first, ...)`` arrays, made at the first chunk."""

    def add(self, start: int, stop: int, host_out) -> None:
        """Keep steps ``start`` to ``stop`` of a chunk output stacked steps-first."""
        total = self.plan.tune + self.plan.draws
        if self.buffers is None:
            self.buffers = jax.tree.map(
                lambda x: np.empty((x.shape[1], total - self.first, *x.shape[2:]), x.dtype),
                host_out)
        lo, hi = max(start, self.first), min(stop, total)
        if lo >= hi:
            return
        for buffer, x in zip(jax.tree.leaves(self.buffers), jax.tree.leaves(host_out)):
            buffer[:, lo - self.first : hi - self.first] = np.swapaxes(x[lo - start : hi - start], 0, 1)

    def steps(self, lo: int, hi: int):
        """Steps ``lo`` to ``hi`` (all finished, ``lo >= first``), steps-first views."""
        return jax.tree.map(lambda b: np.swapaxes(b, 0, 1), self._chains_first(lo, hi, hi))

    def _chains_first(self, lo: int, hi: int, done: int):
        """Finished steps from ``lo`` up to ``hi``, chains-first views."""
        hi = max(lo, min(hi, done))
        return jax.tree.map(lambda b: b[:, lo - self.first : hi - self.first], self.buffers)

    def result(self, done: int, interrupted: bool, compile_time: float) -> ChainDraws:
        tune, draws = self.plan.tune, self.plan.draws
        kept = self._chains_first(tune, tune + draws, done)
        warm = self._chains_first(0, tune, done) if self.plan.keep_warmup and tune else None
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

    ``progress(start, steps_done, chunk_stats)`` is called after each chunk. Chunk
    calls stop at the program's window ends, where :meth:`Runner.end_window` runs. A
    Ctrl-C stops the run at the next chunk boundary and returns what finished.
    With ``checkpoint``, progress is saved there after every chunk, and a run
    whose checkpoint exists continues from it (using the seed stored in it).
    """
    chunk, compile_time = runner.compile(positions, data)
    data = runner.put_data(data)
    states = runner.init(positions, data)
    keys = runner.keys(plan.seed)
    # A checkpoint keeps every step, so that a resumed run may keep its warmup.
    first = 0 if plan.keep_warmup or checkpoint else plan.tune
    collector, done = _Collector(plan, first), 0
    saved = load(checkpoint, fingerprint) if checkpoint else None
    if saved is not None:
        plan = plan._replace(seed=saved.seed)
        keys = runner.keys(saved.seed)
        states = _resume(runner, states, chunk, collector, saved)
        done = saved.done
    total = plan.tune + plan.draws
    first_call = FIRST_TIMED_CALL if plan.chunk_seconds is not None else plan.chunk_size
    steps = min(first_call, plan.chunk_size)
    with StopRequest() as stop:
        try:
            while done < total and not stop.requested:
                start, called = done, time.perf_counter()
                stop_at = next_stop(done, steps, total, runner.window_ends)
                states, out = chunk(states, jnp.int32(start), jnp.int32(stop_at), keys, data)
                host = to_host(out)
                steps = next_call_steps(plan, stop_at - start, time.perf_counter() - called)
                collector.add(start, stop_at, host)
                done = stop_at
                if done - 1 in runner.window_ends:
                    states = runner.end_window(states)
                if checkpoint and jax.process_index() == 0:
                    _save(checkpoint, states, collector, done, plan.seed, fingerprint)
                if progress is not None:
                    progress(start, done, host[2]._asdict())
        except KeyboardInterrupt:
            stop.requested = True
    if collector.buffers is None:
        raise KeyboardInterrupt("Sampling was interrupted before the first chunk finished.")
    return collector.result(done, stop.requested, compile_time)

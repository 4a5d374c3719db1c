"""A per-draw function run over many draws: vectorised, chunked, spread over devices.

``fn(key, values, data) -> (outputs, checks)`` is evaluated for every draw with
``vmap`` inside one jitted chunk function. Draw ``i`` uses the key
``fold_in(seed_key, i)``, so results do not depend on the chunk size or the
number of devices. Each chunk's outputs are copied to host memory before the
next starts, so device memory is bounded by the chunk.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

_CHUNK_BYTES = 64 * 2**20
"""Upper bound on the outputs of one chunk kept on a device."""


class CheckFailed(ValueError):
    """A model check (``Assert``) failed for some draw while drawing forward."""


class DrawsResult(NamedTuple):
    """Outputs of a per-draw function over all draws, on the host."""

    outputs: tuple[np.ndarray, ...]
    """Per output: ``(draws, *shape)``."""
    checks: tuple[np.ndarray, ...]
    """Per check: ``(draws,)`` booleans, true where the check passed."""


_JITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _chunk_fn(fn: Callable, mesh) -> Callable:
    """``chunk(base_key, indices, values, data)``, jitted once per function and mesh."""
    per_fn = _JITTED.setdefault(fn, {})
    if mesh not in per_fn:

        def chunk(base_key, indices, values, data):
            def one(index, draw_values):
                return fn(jax.random.fold_in(base_key, index), draw_values, data)

            return jax.vmap(one)(indices, values)

        draws = NamedSharding(mesh, P("draw"))
        replicated = NamedSharding(mesh, P())
        per_fn[mesh] = jax.jit(
            chunk,
            in_shardings=(replicated, draws, draws, replicated),
            out_shardings=draws,
        )
    return per_fn[mesh]


def _draw_mesh(devices: Sequence | None) -> jax.sharding.Mesh:
    devices = list(devices or jax.devices())
    return jax.make_mesh((len(devices),), ("draw",), devices=devices)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_COMPILED = 8
"""Compiled chunk programs kept per function (one per run shape)."""


def _compiled_chunk(fn: Callable, mesh, seed_key, values: Sequence[np.ndarray], data: tuple,
                    n_draws: int, chunk_size: int | None):
    """``(mesh, chunk_size, compiled chunk)`` for this run, compiled once per shapes.

    The chunk program is lowered once, at the run's chunk shape; the same lowering
    tells whether it calls LAPACK, which moves it to a one-device mesh (see
    ``pool_safe_devices``).
    """
    from hiddenjax.execution.devices import pool_safe_devices

    shapes = (tuple((np.shape(v)[1:], np.asarray(v).dtype) for v in values),
              tuple((d.shape, d.dtype) for d in jax.tree.leaves(data)), n_draws, chunk_size)
    per_fn = _COMPILED.setdefault(fn, {})
    asked = (mesh, shapes)
    if asked not in per_fn:
        while True:
            n_dev = mesh.devices.size
            size = chunk_size or chunk_size_for(fn, values, data, n_draws, n_dev)
            size = -(-int(size) // n_dev) * n_dev
            indices = jax.ShapeDtypeStruct((size,), jnp.uint32)
            batch = tuple(jax.ShapeDtypeStruct((size, *np.shape(v)[1:]), np.asarray(v).dtype)
                          for v in values)
            lowered = _chunk_fn(fn, mesh).lower(seed_key, indices, batch, data)
            safe = pool_safe_devices(list(mesh.devices.flat), lowered.as_text()) if n_dev > 1 else []
            if len(safe) and len(safe) < n_dev:
                mesh = _draw_mesh(safe)
                continue
            if len(per_fn) >= _MAX_COMPILED:
                per_fn.pop(next(iter(per_fn)))
            per_fn[asked] = (mesh, size, lowered.compile())
            break
    return per_fn[asked]


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` cut or padded (repeating its first row) to ``size`` rows."""
    if len(array) >= size:
        return array[:size]
    filler = np.repeat(array[:1], size - len(array), axis=0)
    return np.concatenate([array, filler]) if len(array) else np.zeros((size, *array.shape[1:]), array.dtype)


def chunk_size_for(fn: Callable, values: Sequence[np.ndarray], data: tuple, n_draws: int,
                   n_devices: int) -> int:
    """Draws per chunk: all of them when their outputs fit ``_CHUNK_BYTES``, a multiple of the devices."""
    one = tuple(jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for v in values)
    shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((2,), jnp.uint32), one, data)
    per_draw = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in jax.tree.leaves(shapes))
    size = max(1, min(n_draws, _CHUNK_BYTES // max(per_draw, 1)))
    return -(-size // n_devices) * n_devices


def map_over_draws(
    fn: Callable,
    values: Sequence[np.ndarray],
    data: tuple,
    *,
    n_draws: int,
    seed_key=None,
    chunk_size: int | None = None,
    devices: Sequence | None = None,
    progress: Callable[[int], None] | None = None,
) -> DrawsResult:
    """Evaluate ``fn(key, values[i], data)`` for every draw ``i``.

    Parameters
    ----------
    fn : callable
        ``fn(key, values, data) -> (outputs, checks)``, tuples of arrays.
    values : sequence of arrays
        Per-draw inputs, each with a leading axis of length ``n_draws``.
    data : tuple
        Inputs shared by all draws.
    n_draws : int
        Number of draws.
    seed_key : array, optional
        Base random key; draw ``i`` gets ``fold_in(seed_key, i)``.
    chunk_size : int, optional
        Draws per compiled call (default: as many as fit in 64 MiB of outputs).
    devices : sequence of jax devices, optional
        Devices the draws of a chunk are spread over (default: all).
    progress : callable, optional
        Called with the number of draws finished after each chunk.
    """
    data = jax.tree.map(jnp.asarray, tuple(data))
    if seed_key is None:
        seed_key = jax.random.PRNGKey(0)
    mesh, chunk_size, chunk = _compiled_chunk(fn, _draw_mesh(devices), seed_key, values, data,
                                              n_draws, chunk_size)
    if n_draws == 0:
        return _empty(fn, values, data)
    host = None
    for start in range(0, n_draws, chunk_size):
        stop = min(start + chunk_size, n_draws)
        indices = np.arange(start, start + chunk_size, dtype=np.uint32)
        batch = tuple(_pad(np.asarray(v[start:stop]), chunk_size) for v in values)
        leaves, treedef = jax.tree.flatten(chunk(seed_key, indices, batch, data))
        if host is None:
            host = [np.empty((n_draws, *leaf.shape[1:]), leaf.dtype) for leaf in leaves]
        for buffer, leaf in zip(host, leaves):
            copy_rows(buffer, leaf, start, stop)
        if progress is not None:
            progress(stop)
    outputs, checks = jax.tree.unflatten(treedef, host)
    return DrawsResult(tuple(outputs), tuple(checks))


def copy_rows(buffer: np.ndarray, array: jax.Array, start: int, stop: int) -> None:
    """Copy the first ``stop - start`` rows of the device array ``array`` into rows
    ``start`` to ``stop`` of the host array ``buffer``, shard by shard.

    Each shard is read in place (on CPU, without a copy) and copied once into
    ``buffer``: gathering the shards into one array first and concatenating
    the chunks after would copy every draw twice more (for 4 million float64
    draws, about 5 and 11 ms on this project's CPU).
    """
    done = set()
    for shard in array.addressable_shards:
        rows = shard.index[0] if shard.index else slice(None)
        first = rows.start or 0
        last = array.shape[0] if rows.stop is None else rows.stop
        lo, hi = start + first, min(stop, start + last)
        if hi > lo and first not in done:
            done.add(first)  # replicated shards hold the same rows
            buffer[lo:hi] = np.asarray(shard.data)[: hi - lo]


def _empty(fn, values, data) -> DrawsResult:
    one = tuple(jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for v in values)
    outputs, checks = jax.eval_shape(fn, jax.ShapeDtypeStruct((2,), jnp.uint32), one, data)
    empty = functools.partial(lambda s: np.zeros((0, *s.shape), s.dtype))
    return DrawsResult(tuple(map(empty, outputs)), tuple(map(empty, checks)))


def raise_failed_checks(checks: Sequence[np.ndarray], messages: Sequence[str], what: str) -> None:
    """Raise :class:`CheckFailed` naming the first failed check and how many draws failed it."""
    for passed, message in zip(checks, messages):
        failed = np.flatnonzero(~np.asarray(passed, bool))
        if failed.size:
            raise CheckFailed(
                f"{what}: the model check '{message}' failed for {failed.size} draw(s) "
                f"(first: draw {int(failed[0])}). The values drawn or read from the trace "
                "break a condition of the model; check the parameters of the variables "
                "involved, or the trace passed in."
            )


class DrawProgress:
    """A rich progress bar fed between chunks (draws, iterations or evaluations)."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.total = total
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task(label, total=total, info="")

    def __enter__(self) -> DrawProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, done: int, info: str = "") -> None:
        """Record that ``done`` units are finished, with an optional status text."""
        self._progress.update(self._task, completed=done, info=info)


_HOST_CALLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def host_call(fn: Callable) -> Callable:
    """``fn`` jitted (once per function), taking and returning numpy arrays."""
    if fn not in _HOST_CALLS:
        _HOST_CALLS[fn] = jax.jit(fn)
    jitted = _HOST_CALLS[fn]

    def call(*args):
        return jax.tree.map(np.asarray, jitted(*args))

    return call


_STEP_CHUNKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _steps_chunk(step: Callable, chunk_size: int) -> Callable:
    """``chunk(state, start, end, base_key, args) -> (state, infos)``: ``chunk_size`` steps, jitted.

    Steps at or past ``end`` leave the state as it is, so one compiled program
    serves any number of steps.
    """
    per_step = _STEP_CHUNKS.setdefault(step, {})
    if chunk_size not in per_step:

        def chunk(state, start, end, base_key, args):
            def body(state, index):
                new, info = step(jax.random.fold_in(base_key, index), state, *args)
                keep = index < end
                state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state)
                return state, info

            return jax.lax.scan(body, state, start + jnp.arange(chunk_size, dtype=jnp.uint32))

        per_step[chunk_size] = jax.jit(chunk)
    return per_step[chunk_size]


def run_steps(
    step: Callable,
    state,
    n_steps: int,
    *,
    seed_key,
    args: tuple = (),
    chunk_size: int = 1000,
    progress: Callable[[int, object], None] | None = None,
    stop: Callable[[object], bool] | None = None,
):
    """Run ``state, info = step(fold_in(seed_key, i), state, *args)`` for ``i < n_steps``, in jitted chunks.

    After each chunk the infos are copied to the host and handed to
    ``progress(done, infos)``; if ``stop(infos)`` is true the run ends there.
    Returns the final state and the infos of every step run, stacked.
    """
    chunk_size = max(1, min(int(chunk_size), int(n_steps) or 1))
    chunk = _steps_chunk(step, chunk_size)
    infos = []
    for start in range(0, int(n_steps), chunk_size):
        done = min(start + chunk_size, int(n_steps))
        state, info = chunk(state, np.uint32(start), np.uint32(done), seed_key, args)
        info = jax.tree.map(lambda a, n=done - start: np.asarray(a)[:n], info)
        infos.append(info)
        if progress is not None:
            progress(done, info)
        if stop is not None and stop(info):
            break
    if not infos:
        return state, None
    return state, jax.tree.map(lambda *parts: np.concatenate(parts), *infos)

"""Loading a stored chunk program in the background while the model is read.

On a warm start most of the time left is spent in two places one after the
other: reading the PyMC model (its log-density graph, the digest that keys
the program cache, the initial points) and loading the compiled chunk
program (XLA deserialising the executable, which runs without Python's lock).
The program's key is only known once the model is read, so this module
guesses it early: after a run, the key is remembered under a *hint*, a cheap
description of the call (the model's variable names and data shapes and the
sampler settings) that needs no graph. A later call with the same hint starts
loading that program in a thread at once. :class:`~hiddenjax.execution.runner.Runner`
takes the result only when its real key is the one that was guessed, so a
wrong guess (the model changed but kept its names and shapes) costs some
background work and never a wrong program.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from hiddenjax.execution import background, program_cache


class PrefetchStats:
    """Background loads started, and loads a runner took (tests read these)."""

    started = 0
    taken = 0


class _Pending(NamedTuple):
    devices: tuple
    task: background.Task


_PENDING: dict[str, _Pending] = {}
_SEEN: set[str] = set()
"""Program keys this process has compiled already: loading them again is waste."""
_LOCK = threading.Lock()


def _hint_file(hint: str) -> str:
    return "hint-" + hashlib.sha256(hint.encode()).hexdigest()


def remember(hint: str, key: str) -> None:
    """Record that calls described by ``hint`` run the program stored under ``key``."""
    with _LOCK:
        _SEEN.add(key)
    name = _hint_file(hint)
    if program_cache.read_note(name) != key:
        program_cache.write_note(name, key)


def start(hint: str, devices: tuple, load: Callable[[str, tuple], Any]) -> None:
    """Start ``load(key, devices)`` in a thread for the key last remembered under ``hint``.

    Nothing starts when no key was remembered, or when this process has
    compiled that program already.
    """
    key = program_cache.read_note(_hint_file(hint))
    with _LOCK:
        if key is None or key in _SEEN or key in _PENDING:
            return

        def run() -> Any:
            try:
                return load(key, devices)
            except Exception:  # noqa: BLE001 - a failed guess falls back to loading in line
                return None

        _PENDING[key] = _Pending(tuple(devices), background.start(run, "hiddenjax-prefetch"))
        PrefetchStats.started += 1


def take(key: str, devices: tuple) -> Any | None:
    """The background load of ``key`` for ``devices``, waited for; None if there is none."""
    with _LOCK:
        pending = _PENDING.pop(key, None)
        _PENDING.clear()  # other guesses are stale: their threads finish unused
    if pending is None or pending.devices != tuple(devices):
        return None
    loaded = background.wait(pending.task)
    if loaded is not None:
        PrefetchStats.taken += 1
    return loaded

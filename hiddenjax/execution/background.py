"""Work run in a thread while the caller goes on: XLA compiling and loading.

XLA compiles and deserialises programs without holding Python's lock, so on a
machine with two cores or more a compile in a thread overlaps the Python work
the caller does meanwhile (tracing, reading the model, initial points).
Threads still running when the interpreter exits are waited for, so that XLA
is not shut down under them.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Task", "start", "wait"]

_LIVE: set[threading.Thread] = set()
_LOCK = threading.Lock()


class Task(NamedTuple):
    """A call running in a thread."""

    thread: threading.Thread
    outcome: list
    """Empty while running, then ``[(True, value)]`` or ``[(False, exception)]``."""


def start(fn: Callable[[], Any], name: str) -> Task:
    """Run ``fn()`` in a daemon thread called ``name``; :func:`wait` gives its result."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as error:  # noqa: BLE001 - re-raised by wait()
            outcome.append((False, error))
        finally:
            with _LOCK:
                _LIVE.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _LOCK:
        _LIVE.add(thread)
    thread.start()
    return Task(thread, outcome)


def wait(task: Task) -> Any:
    """``fn()``'s value once the thread ends; its exception, raised here, if it raised."""
    task.thread.join()
    ok, value = task.outcome[0]
    if not ok:
        raise value
    return value


@atexit.register
def _finish_live() -> None:
    """Let threads still running end before the interpreter (and XLA) shut down."""
    with _LOCK:
        live = list(_LIVE)
    for thread in live:
        thread.join(timeout=30)

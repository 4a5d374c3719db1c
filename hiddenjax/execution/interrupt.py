"""Ctrl-C between chunks: the first press asks the run to stop, a second one stops at once."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager turning SIGINT into a flag the run checks between chunks.

    Outside the main thread, where handlers cannot be installed, Ctrl-C stays
    a ``KeyboardInterrupt`` and the run catches it between chunks instead.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

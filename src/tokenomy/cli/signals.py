"""Ctrl-C and SIGTERM as a stop request for long-running commands (twin, watch)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set `stop` on SIGINT or SIGTERM inside the block, then restore the previous handlers. Ctrl-C by a handler
    of our own: a process started with SIGINT ignored (inherited from its parent, as under some test runners and
    service managers) gets no KeyboardInterrupt and would never stop on Ctrl-C."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""Termination signals as exceptions, so that work they stop unwinds (and cleans up) like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from pdebench_core.errors import Stopped


@contextlib.contextmanager
def termination_signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` while the block runs, so that work ended by a
    scheduler (SLURM's time limit, ``kill``) or a closed terminal unwinds like Ctrl-C: a run is
    recorded as interrupted instead of staying "running", a half-written file is removed.
    Signals whose handler is not the default are left to their owner; outside the main thread
    nothing can be installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, frame: Any) -> None:
        raise Stopped(signal.Signals(number).name, number)

    wanted = [sig for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
              if sig is not None and signal.getsignal(sig) == signal.SIG_DFL]
    previous = {sig: signal.signal(sig, stop) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

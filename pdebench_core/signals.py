"""Termination signals as exceptions, so that work they stop unwinds (and cleans up) like Ctrl-C."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from pdebench_core.errors import Stopped


@contextlib.contextmanager
def termination_signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` while the block runs, so that work ended by a
    scheduler (SLURM's time limit, ``kill``) or a closed terminal unwinds like Ctrl-C: a run is
    recorded as interrupted instead of staying "running", a half-written file is removed.
    Signals whose handler is not the default are left to their owner; outside the main thread
    nothing can be installed.

    A stop that lands where Python drops exceptions is raised again (see
    :func:`dropped_stops_raised_again`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, frame: Any) -> None:
        raise Stopped(signal.Signals(number).name, number)

    wanted = [sig for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
              if sig is not None and signal.getsignal(sig) == signal.SIG_DFL]
    previous = {sig: signal.signal(sig, stop) for sig in wanted}
    try:
        with dropped_stops_raised_again():
            yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def dropped_stops_raised_again() -> Iterator[None]:
    """While the block runs, a stop raised by a signal handler where Python drops exceptions (a
    weakref or garbage-collector callback, a ``__del__``: it prints "Exception ignored" and goes
    on) is raised again, by the same signal, in the code that runs next; if the block ends first,
    the stop is raised as it leaves. Only in the main thread, where signal handlers run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_hook = sys.unraisablehook
    dropped: list[BaseException] = []
    active, sending = [True], threading.Lock()

    def send_again(number: int) -> None:
        with sending:  # never after the block: its handlers may be gone by then
            if active[0]:
                os.kill(os.getpid(), number)

    def stop_again(unraisable: Any) -> None:
        number = _signal_behind(unraisable.exc_value)
        if number is None:
            previous_hook(unraisable)
            return
        dropped.append(unraisable.exc_value)
        # Sent again from a new thread, which waits for the interpreter lock that this code holds,
        # so that the handler runs once this callback has returned (threading's start would wait).
        _thread.start_new_thread(send_again, (number,))

    sys.unraisablehook = stop_again
    try:
        yield
    finally:
        with sending:
            active[0] = False
        sys.unraisablehook = previous_hook
    if dropped:  # the block ended normally before the signal came again: the stop is raised here
        raise dropped[0]


def _signal_behind(exc: BaseException | None) -> int | None:
    """The signal whose handler raised ``exc``: a stop, Ctrl-C's KeyboardInterrupt under Python's
    own SIGINT handler, or torch's launcher's ``SignalException``; None for any other exception."""
    if isinstance(exc, Stopped):
        return exc.exit_code - 128
    if type(exc) is KeyboardInterrupt and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        return int(signal.SIGINT)
    if type(exc).__name__ == "SignalException" and isinstance(getattr(exc, "sigval", None), signal.Signals):
        return int(exc.sigval)
    return None


def stop_behind(exc: BaseException) -> BaseException | None:
    """The stop (a signal's :class:`Stopped`, Ctrl-C's ``KeyboardInterrupt``) that ``exc`` was
    raised while handling, or None: a library that meets a stop halfway through a write may
    report its own broken state (torch.save's "unexpected pos") instead of the stop."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


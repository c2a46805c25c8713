"""Stops raised by signal handlers reach the code they are meant to stop."""

from __future__ import annotations

import os
import signal
import sys
import time
import weakref

import pytest

from pdebench_core.errors import Stopped
from pdebench_core.signals import dropped_stops_raised_again, termination_signals_interrupt


class _Thing:
    pass


def _signal_inside_a_weakref_callback(number: int) -> None:
    """Deliver ``number`` while Python runs a weakref callback, whose exceptions it drops."""
    thing = _Thing()
    ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), number))
    del thing
    assert ref() is None
    end = time.time() + 20  # the stop must come long before
    while time.time() < end:
        pass


def test_a_sigterm_landing_in_a_callback_stops_the_block():
    with pytest.raises(Stopped, match="stopped by SIGTERM"):
        with termination_signals_interrupt():
            _signal_inside_a_weakref_callback(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_launchers_signal_exception_landing_in_a_callback_is_raised_again():
    from torch.distributed.elastic.multiprocessing.api import SignalException

    def launcher_handler(number, frame):  # as torch's launcher turns a signal into an exception
        raise SignalException(f"process got signal {number}", signal.Signals(number))

    previous = signal.signal(signal.SIGUSR1, launcher_handler)
    try:
        with pytest.raises(SignalException), dropped_stops_raised_again():
            _signal_inside_a_weakref_callback(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_other_dropped_exceptions_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(type(unraisable.exc_value)))
    with dropped_stops_raised_again():
        thing = _Thing()
        ref = weakref.ref(thing, lambda _: 1 / 0)
        del thing
    assert seen == [ZeroDivisionError] and ref() is None
    assert sys.unraisablehook is not None and sys.unraisablehook.__name__ == "<lambda>"  # given back


def test_a_stop_dropped_just_before_the_block_ends_is_raised_as_it_leaves():
    """The signal is not sent again once the block's handlers are gone (it would kill the process
    without unwinding): the stop is raised where the block ends instead."""
    with pytest.raises(Stopped, match="stopped by SIGTERM"):
        with termination_signals_interrupt():
            thing = _Thing()
            ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGTERM))
            del thing  # the block ends at once, before the signal could come again
    assert ref() is None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    time.sleep(0.5)  # nothing arrives later to kill this process


def test_a_loader_worker_connection_cut_by_a_stop_prints_no_traceback(monkeypatch):
    """multiprocessing's resource sharer reports a reset connection through sys.excepthook
    itself; after a stop that traceback would stand above pdeb's one line."""
    from pdebench_core.data.pipeline import quiet_resource_sharer_resets

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(kind))
    quiet_resource_sharer_resets()
    quiet_resource_sharer_resets()  # installed once

    def report(code: str, filename: str) -> None:
        try:
            exec(compile(code, filename, "exec"))
        except BaseException:
            sys.excepthook(*sys.exc_info())

    sharer = os.path.join(os.path.dirname(os.__file__), "multiprocessing", "resource_sharer.py")
    report("raise ConnectionResetError(104, 'Connection reset by peer')", sharer)
    report("raise EOFError()", sharer)
    assert seen == []
    report("raise ValueError('elsewhere')", sharer)  # another error of the sharer still shows
    report("raise ConnectionResetError(104, 'reset')", "somewhere_else.py")  # as does a reset elsewhere
    assert seen == [ValueError, ConnectionResetError]


def test_an_error_raised_while_handling_a_stop_is_reported_as_the_stop(capsys, monkeypatch):
    """Ctrl-C landing inside a library's import can leave it half-imported; its next use then
    fails (numpy: RecursionError). The command ends as interrupted, not with that traceback."""
    import typer

    from pdebench_core.cli_common import user_errors

    monkeypatch.delenv("PDEB_DEBUG", raising=False)
    for stop, code, line in ((KeyboardInterrupt(), 130, "interrupted"),
                             (Stopped("SIGTERM", int(signal.SIGTERM)), 143, "stopped by SIGTERM")):
        with pytest.raises(typer.Exit) as ended:
            with user_errors():
                try:
                    raise stop
                except KeyboardInterrupt:
                    raise RecursionError("maximum recursion depth exceeded") from None
        assert ended.value.exit_code == code and capsys.readouterr().err.strip() == line
    with pytest.raises(RecursionError):  # without a stop behind it, a bug stays a bug
        with user_errors():
            raise RecursionError("maximum recursion depth exceeded")


def test_a_stop_landing_while_a_failure_is_written_is_recorded(fresh_home, monkeypatch):
    """A worker's error and the signal that stops it can come together (a lost peer, then the
    launcher's stop): a stop interrupting the status write leaves the run interrupted, not
    'running'."""
    from pdebench_core import runner
    from pdebench_core.config import build_config
    from pdebench_core.rundir import RunDir

    real, interrupted = runner._write_status, []

    def write(run_dir, **fields):
        if fields.get("state") == "failed" and not interrupted:
            interrupted.append(True)
            raise Stopped("SIGTERM", int(signal.SIGTERM))
        return real(run_dir, **fields)

    monkeypatch.setattr(runner, "_write_status", write)
    cfg = build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id="late-stop",
                       overrides=["train.lr=1e30", "train.max_steps=4"])
    with pytest.raises(Stopped):
        runner.execute(cfg, quiet=True)
    status = RunDir.of("late-stop").read_status()
    assert interrupted and (status["state"], status["error"]) == ("interrupted", "stopped by SIGTERM")

"""Errors that the CLI turns into one clean line and an exit code."""

from __future__ import annotations

import difflib
import errno
from typing import Iterable, Optional


class PdebError(Exception):
    """A problem the user can fix; printed as one line without a traceback."""

    exit_code = 1


class UsageError(PdebError):
    """Bad input: unknown names, bad config, wrong files. Exit code 2."""

    exit_code = 2


class DataError(UsageError):
    """A data file that cannot be read or does not fit the request."""


class PluginError(PdebError):
    """A plugin's code raised: one line naming the component and its plugin. Exit code 1."""


class ResultsUndelivered(PdebError):
    """A run finished, but some sink refused its result rows. Exit code 1.

    Attributes:
        run_id: The run.
        results: ``{dataset: {metric: value}}``, computed and stored by the other sinks.
    """

    def __init__(self, message: str, run_id: str, results: dict) -> None:
        super().__init__(message)
        self.run_id, self.results = run_id, results


class Stopped(KeyboardInterrupt):
    """A run ended by a termination signal (SIGTERM from a scheduler, SIGHUP from a closed
    terminal): handled as Ctrl-C is, so the run is marked interrupted and can be resumed.

    Attributes:
        signal_name: ``"SIGTERM"`` or ``"SIGHUP"``.
        exit_code: ``128 +`` the signal's number, as a shell reports a process it ended.
    """

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_name, self.exit_code = signal_name, 128 + signal_number


def message_of(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's own ``__str__`` fails (a plugin's
    exception class may be broken too; reporting it must not raise)."""
    try:
        return str(exc)
    except Exception as broken:  # noqa: BLE001 - any failure of foreign code
        return f"<its message cannot be shown: {type(broken).__name__} in {type(exc).__name__}.__str__>"


#: Marks the note that carries pdeb's error line on an exception let through by ``PDEB_DEBUG=1``.
ERROR_LINE_NOTE = "pdeb: "


def add_error_line(exc: BaseException, line: str) -> None:
    """Attach pdeb's one-line account of ``exc`` (which plugin raised it) to an exception that
    ``PDEB_DEBUG=1`` lets through: its traceback ends with the line, and :func:`error_line` finds it.
    The innermost account stays, as without ``PDEB_DEBUG``, where the first :class:`PluginError`
    passes the outer handlers unchanged."""
    if _error_line_notes(exc):
        return
    notes = getattr(exc, "__notes__", None)
    try:  # what BaseException.add_note does on Python >= 3.11, which prints the notes too
        if not isinstance(notes, list):
            exc.__notes__ = notes = []
        notes.append(ERROR_LINE_NOTE + line)
    except (AttributeError, TypeError):  # an exception that takes no attributes: the line is not kept
        pass


def error_line(exc: BaseException) -> str:
    """The error a run records for ``exc``: a :class:`PdebError`'s own line, the line attached by
    :func:`add_error_line`, or ``"<type>: <message>"``."""
    if isinstance(exc, PdebError):
        return str(exc)
    notes = _error_line_notes(exc)
    return notes[0][len(ERROR_LINE_NOTE):] if notes else f"{type(exc).__name__}: {message_of(exc)}"


def _error_line_notes(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str) and n.startswith(ERROR_LINE_NOTE)]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


#: Errors of a path the user gave (too long, a file where a folder belongs, missing, not
#: permitted): usage errors, exit code 2. Others (a full disk, an I/O error) exit 1.
USAGE_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EACCES,
                errno.EPERM, errno.ELOOP}


def path_error_line(exc: OSError) -> Optional[str]:
    """``"'PATH...': File name too long; give a shorter path"`` for an OS error about a named
    path (a long name shown by its first 60 characters); ``None`` when it names no path."""
    if not exc.filename:
        return None
    name = str(exc.filename)
    shown = name if len(name) <= 80 else f"{name[:60]}... ({len(name)} characters)"
    fixes = {errno.ENAMETOOLONG: "give a shorter path", errno.ENOTDIR: "a file stands where a folder is needed",
             errno.EISDIR: "give a file, not a folder", errno.EEXIST: "it exists already; give another path",
             errno.ENOENT: "check the path", errno.EACCES: "check its permissions",
             errno.EPERM: "check its permissions", errno.ELOOP: "a link in it points to itself"}
    fix = fixes.get(exc.errno)
    return f"'{shown}': {exc.strerror or type(exc).__name__}" + (f"; {fix}" if fix else "")

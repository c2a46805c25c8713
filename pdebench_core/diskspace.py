"""Free-space checks before large writes, and one-line errors when a write fails anyway."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pdebench_core.errors import DataError

#: Space left free on the destination disk beyond what a write needs.
SPACE_MARGIN = 64 * 2**20


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing_parent(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the disk holding ``folder`` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing_parent(Path(folder))).free


def check_free_space(folder: str | os.PathLike, needed: int | None, what: str,
                     largest_file: int | None = None) -> None:
    """Refuse a write of ``needed`` bytes into ``folder`` that would fill the disk, or a file
    larger than this process may write.

    Args:
        folder: Where the bytes go.
        needed: Bytes still to write, over every file.
        what: What is written, for the message.
        largest_file: Final size of the largest single file (default: ``needed``, one file
            written from its start), checked against ``ulimit -f``.

    Raises:
        DataError: naming the folder, the size needed and the space free, or the limit.
    """
    limit = file_size_limit()
    largest = needed if largest_file is None else largest_file
    if limit is not None and largest is not None and largest > limit:  # HDF5 crashes on a write the limit cuts
        raise DataError(f"{what} needs a file of about {human_bytes(largest)}, more than this process may write to "
                        f"one file ({human_bytes(limit)}, 'ulimit -f'); raise the limit")
    if needed is None or needed <= 0:
        return
    free = free_bytes(folder)
    if needed + SPACE_MARGIN > free:
        raise DataError(f"not enough free space in {folder} for {what}: need {human_bytes(needed)} and "
                        f"{human_bytes(SPACE_MARGIN)} to spare, {human_bytes(free)} free")


def file_size_limit() -> int | None:
    """The largest file this process may write (``ulimit -f``), or None when unlimited."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def write_failed(path: str | os.PathLike, exc: BaseException, after: str = "") -> DataError:
    """The one-line error for a write that failed (full disk, permissions, I/O); ``after`` is
    appended (e.g. what was kept)."""
    reason = _reason(exc)
    if not _may_be_space(exc):  # a folder in the way, no permission: free space is beside the point
        return DataError(f"could not write {path}: {reason[:200]}" + (f"; {after}" if after else ""))
    try:
        free = f"{human_bytes(free_bytes(Path(path).parent))} free"
    except OSError:
        free = "free space unknown"
    return DataError(f"could not write {path} ({free}): {reason[:200]}" + (f"; {after}" if after else ""))


def _reason(exc: BaseException) -> str:
    """The cause in a few words: HDF5's own report spans lines, with the system's message
    (``No space left on device``) inside; that is what the user needs."""
    import re

    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    found = re.search(r"error message = '([^']+)'", text)
    head = text.splitlines()[0].split(" (file write failed")[0]
    return f"{head}: {found.group(1)}" if found else head


def _may_be_space(exc: BaseException) -> bool:
    """Whether a failed write may be a full disk or quota (or says nothing that rules it out)."""
    import errno

    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)
    text = str(exc).lower()
    return not any(word in text for word in ("permission", "is a directory", "read-only", "readonly",
                                             "unable to open", "not a directory"))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a full disk or a
    crash leaves any previous file intact.

    Raises:
        DataError: The write failed (one line naming the file and the free space).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failed(path, exc, "any previous file there is untouched") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's bytes to the disk, so a crash after the rename cannot leave it empty."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

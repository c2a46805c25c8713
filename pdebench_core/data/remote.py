"""Reading data files and weights from URLs through fsspec.

Any fsspec URL works (``https://``, ``hf://``, ``s3://``, ... when the package behind the
protocol is installed). Files are read in one of two ways:

* **ranged reads** (HDF5 data): :func:`open_for_reading` gives a seekable, read-only file
  object that fetches whole blocks of :data:`BLOCK_BYTES` with ranged requests and keeps
  each block on disk, so training on a window reads only the blocks it touches, and a
  second epoch or run reads them from the disk;
* **a whole copy** (checkpoints, MATLAB v5 files, servers that refuse ranged reads):
  :func:`local_copy` downloads the file once, with a progress bar, and reuses it.

Both live under ``$PDEB_HOME/data/remote/<key>/``, where the key is a digest of the
URL and what the server says identifies the file's version (ETag, Last-Modified, size):
a file changed on the server gets a fresh cache. Every request has a connection and a
read timeout, and a failed block is retried a bounded number of times.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pdebench_core import paths
from pdebench_core.errors import DataError, UsageError

#: Bytes fetched by one ranged request and kept as one cached block.
BLOCK_BYTES = 2**20
#: Blocks kept in memory besides the disk cache (HDF5 reads its metadata in many small pieces).
RECENT_BLOCKS = 4
#: Seconds to connect to a server, and to wait for more bytes of an answer.
CONNECT_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 60.0
#: Tries per block before a read fails (a dropped connection is retried, never forever).
ATTEMPTS = 3
#: Protocols that name local files: read as paths, not through the cache.
LOCAL_PROTOCOLS = ("file", "local")
# ``scheme://rest``, or ``scheme:/rest``, the form pathlib folds a URL into.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/(/?)([^/].*)$")
# Keys that fsspec backends use for a file's version and modification time.
_VERSION_KEYS = ("ETag", "etag", "blob_id", "md5Hash", "Content-MD5", "VersionId")
_MODIFIED_KEYS = ("Last-Modified", "LastModified", "last_modified", "updated", "mtime")


def as_url(path: Any) -> str | None:
    """The URL ``path`` names, or ``None`` for a local path.

    A protocol fsspec knows other than ``file://`` makes a URL. The single-slash form that
    ``pathlib.Path`` makes of a URL (``https:/host/file.h5``) is accepted and restored,
    because layout readers pass paths through ``Path``.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        return None
    match = _URL.match(path)
    if match is None:
        return None
    protocol = match.group(1).lower()
    if protocol in LOCAL_PROTOCOLS or protocol not in _known_protocols():
        return None
    return f"{protocol}://{match.group(3)}"


def local_or_url(text: str) -> str:
    """A path or URL as pdeb reads it: ``file:///data/a.h5`` is the local path ``/data/a.h5``;
    a URL of a protocol fsspec does not know is refused (it would read as a local path).

    Raises:
        UsageError: ``text`` is ``scheme://...`` with a scheme no installed fsspec backend knows.
    """
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if "://" not in text:
        return text
    parts = urlparse(text)
    protocol = parts.scheme.lower()
    if protocol in LOCAL_PROTOCOLS:
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{text} names a file on host '{parts.netloc}'; give a local path (file:///path) "
                             f"or an http(s):// URL")
        return url2pathname(parts.path)  # unquoted; on Windows "/C:/a%20b" becomes "C:\\a b"
    if _URL.match(text) and protocol not in _known_protocols():
        raise UsageError(f"{text}: no fsspec backend reads '{protocol}://' URLs; give a local path or an "
                         f"http(s)://, s3://, gs://, hf:// ... URL (see docs/streaming.md)")
    return text


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL that pdeb reads through fsspec (see :func:`as_url`)."""
    return as_url(path) is not None


def _known_protocols() -> set[str]:
    import fsspec

    return set(fsspec.available_protocols())


def cache_root() -> Path:
    """Where remote files are cached: ``$PDEB_HOME/data/remote``."""
    return paths.data_dir() / "remote"


@dataclass(frozen=True)
class RemoteInfo:
    """What the server says about a file.

    Attributes:
        url: The file's URL.
        size: Its size in bytes.
        version: ETag or the backend's content id, when the server gives one.
        modified: Last modification time as the server states it, when it gives one.
    """

    url: str
    size: int
    version: str | None = None
    modified: str | None = None

    def identity(self) -> dict[str, Any]:
        """The file's identity: URL, size, and the server's version and modification time."""
        return {"url": self.url, "size": self.size, "etag": self.version, "last_modified": self.modified}

    @property
    def folder(self) -> Path:
        """This version's cache folder."""
        key = json.dumps(self.identity(), sort_keys=True).encode()
        return cache_root() / hashlib.sha256(key).hexdigest()[:24]

    @property
    def name(self) -> str:
        """The file name the URL ends with (``file`` when it ends with none)."""
        tail = self.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", tail).lstrip(".")
        return safe or "file"


_OPTIONS: dict[str, dict[str, Any]] = {}


def _storage_options(protocol: str) -> dict[str, Any]:
    """fsspec options per protocol: timeouts for HTTP (made once, so fsspec reuses its client)."""
    if protocol in ("http", "https") and protocol not in _OPTIONS:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        _OPTIONS[protocol] = {"client_kwargs": {"timeout": timeout}}
    return _OPTIONS.get(protocol, {})


def _forget_event_loop_after_fork() -> None:
    """In a forked child (a DataLoader worker), drop fsspec's event loop and cached filesystems:
    they belong to an I/O thread of the parent that the child does not have, and a request
    through them would wait for it forever. The child then makes its own on first use."""
    import sys

    asyn = sys.modules.get("fsspec.asyn")
    if asyn is None:  # fsspec not used before the fork: nothing to forget
        return
    asyn.reset_lock()
    from fsspec.spec import AbstractFileSystem

    pending = [AbstractFileSystem]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        cache = cls.__dict__.get("_cache")
        if isinstance(cache, dict):
            cache.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, where workers are spawned afresh
    os.register_at_fork(after_in_child=_forget_event_loop_after_fork)


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url``.

    Raises:
        UsageError: the package that reads this protocol is not installed.
    """
    from fsspec.core import url_to_fs

    protocol = url.split("://", 1)[0]
    try:
        return url_to_fs(url, **_storage_options(protocol))
    except ImportError as exc:  # fsspec's own message names the package to install
        raise UsageError(f"cannot read {protocol}:// URLs: {str(exc).strip() or 'a package is missing'}") from None
    except OSError as exc:  # an unknown host, a refused connection
        raise DataError(f"cannot reach {url}: {exc}") from None


def _reason(exc: BaseException) -> str:
    """The most telling line of an error: the innermost cause (fsspec wraps the client's error)."""
    while True:
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None:
            break
        exc = inner
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        return f"the server answered HTTP {status}"
    if type(exc).__name__ == "TooManyRedirects":
        return "too many redirects (a redirect loop?)"
    message = getattr(exc, "message", None)  # aiohttp's own parse errors: "400, message:" then the reason
    text = message if isinstance(message, str) and message.strip() else str(exc)
    text = text.strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def stat(url: str) -> RemoteInfo:
    """Ask the server about ``url`` (one request).

    Raises:
        DataError: unreachable host, missing file, a folder, or no size given.
    """
    fs, inner = filesystem(url)
    try:
        info = fs.info(inner)
    except Exception as exc:
        raise DataError(f"cannot reach {url}: {_reason(exc)}; check the URL and the network") from None
    if info.get("type") == "directory":
        raise DataError(f"{url} is a folder; a URL must name one file (download folders with "
                        f"'pdeb data download' and pass the local folder)")
    if info.get("size") is None:
        raise DataError(f"{url}: the server does not say how large the file is, so it cannot be read in "
                        f"ranges; download it and pass the local file")
    version = next((str(info[k]) for k in _VERSION_KEYS if info.get(k)), None)
    modified = next((str(info[k]) for k in _MODIFIED_KEYS if info.get(k)), None)
    if (version is None or modified is None) and url.split(":", 1)[0].lower() in ("http", "https"):
        # Older fsspec releases leave HTTP validators out of info(): ask the server itself.
        head_version, head_modified = _http_validators(url)
        version, modified = version or head_version, modified or head_modified
    found = RemoteInfo(url, int(info["size"]), version, modified)
    if version is None and modified is None and url not in _UNVERSIONED_SAID:
        _UNVERSIONED_SAID.add(url)
        print(f"warning: {url}: the server states no ETag or Last-Modified, so pdeb tells versions of the file "
              f"apart by its size alone; if it changes keeping its size, delete {found.folder} to read it again",
              file=sys.stderr)
    return found


_UNVERSIONED_SAID: set[str] = set()  # URLs warned about, once per process


def _http_validators(url: str) -> tuple[str | None, str | None]:
    """``(ETag, Last-Modified)`` from one HEAD request (``(None, None)`` when it fails)."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=20) as response:
            return response.headers.get("ETag"), response.headers.get("Last-Modified")
    except Exception:  # the file was reached through fsspec already; validators are a bonus
        return None, None


class RangesRefused(DataError):
    """The server answers a ranged request with the whole file."""


class RangedFile(io.RawIOBase):
    """A read-only, seekable view of a remote file, read in cached blocks.

    Each block of :data:`BLOCK_BYTES` is fetched with one ranged request and written to
    its own file in the cache folder (written whole, then renamed), so DataLoader
    workers and later runs share blocks safely. ``fetched_bytes`` counts what this object
    transferred. ``repr()`` is the URL, which h5py reports as the file's name.

    Args:
        info: What :func:`stat` returned.
        block_bytes: Block size (default :data:`BLOCK_BYTES`; each size keeps its own blocks).
    """

    def __init__(self, info: RemoteInfo, block_bytes: int | None = None) -> None:
        super().__init__()
        self.info = info
        self.block_bytes = int(block_bytes or BLOCK_BYTES)
        self.blocks = info.folder / f"blocks-{self.block_bytes}"
        self.fetched_bytes = 0
        self._position = 0
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._source = _open_source(info, self.block_bytes)

    def __repr__(self) -> str:
        return self.info.url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.info.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = max(0, min(len(view), self.info.size - self._position))
        done = 0
        while done < wanted:
            index, offset = divmod(self._position + done, self.block_bytes)
            block = self._block(index)
            take = min(wanted - done, len(block) - offset)
            view[done:done + take] = block[offset:offset + take]
            done += take
        self._position += wanted
        return wanted

    def check_ranges(self) -> None:
        """Fetch the last byte with a ranged request, once per version of the file.

        Raises:
            RangesRefused: the server sends the whole file instead.
        """
        answered = self.info.folder / "answers-ranges"
        if self.info.size > 1 and not answered.is_file():
            self._fetch(self.info.size - 1, self.info.size)
            _store(answered, b"")

    def _block(self, index: int) -> bytes:
        block = self._recent.get(index)
        if block is not None:
            self._recent.move_to_end(index)
            return block
        start = index * self.block_bytes
        length = min(self.block_bytes, self.info.size - start)
        file = self.blocks / str(index)
        try:
            block = file.read_bytes()
        except OSError:
            block = b""
        if len(block) != length:
            block = self._fetch(start, start + length)
            _store(file, block)
        self._recent[index] = block
        while len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)
        return block

    def _fetch(self, start: int, end: int) -> bytes:
        reason = ""
        for _ in range(ATTEMPTS):
            try:
                data = self._read_source(start, end)
            except ValueError as exc:  # fsspec's answer to a server that ignores Range
                raise RangesRefused(f"{self.info.url}: the server does not answer ranged reads "
                                    f"({_reason(exc)})") from None
            except Exception as exc:  # dropped connection, timeout: try again, a bounded number of times
                reason = _reason(exc)
                continue
            if len(data) == end - start:
                self.fetched_bytes += len(data)
                return data
            reason = f"got {len(data)} bytes for {end - start} asked"
        raise DataError(f"cannot read bytes {start}-{end} of {self.info.url} after {ATTEMPTS} tries: {reason}")

    def _read_source(self, start: int, end: int) -> bytes:
        """One ranged read, with the cyclic garbage collector paused.

        h5py holds its global lock while it calls this file object, and fsspec does the
        request on its own I/O thread; a collection run there that frees an h5py object
        would wait for that lock forever (h5py's documented deadlock with file objects).
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._source.seek(start)
            return self._source.read(end - start)
        finally:
            if was_enabled:
                gc.enable()

    def close(self) -> None:
        if not self.closed:
            self._source.close()
            self._recent.clear()
        super().close()


def _open_source(info: RemoteInfo, block_bytes: int):
    """fsspec's file object for ``info.url``, its own caching off (blocks are cached on disk here)."""
    fs, inner = filesystem(info.url)
    options = {"block_size": block_bytes, "cache_type": "none"}
    try:
        try:  # the known size spares a request where the backend takes it
            return fs.open(inner, "rb", size=info.size, **options)
        except TypeError:
            return fs.open(inner, "rb", **options)
    except Exception as exc:
        raise DataError(f"cannot open {info.url}: {_reason(exc)}") from None


def _store(file: Path, data: bytes) -> None:
    """Write one block whole, then rename it (best effort: an unwritable cache only costs a re-read)."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, file)
    except OSError:
        pass


def whole_copy(info: RemoteInfo) -> Path:
    """Where the whole copy of this version of the file goes (it may not be there yet)."""
    return info.folder / info.name


def open_for_reading(url: str, block_bytes: int | None = None) -> RangedFile | str:
    """Something h5py can open for ``url``: a :class:`RangedFile`, or the path of a whole copy.

    A whole copy is used when one is already cached, and made (with a progress bar)
    when the server refuses ranged reads.

    Raises:
        DataError: unreachable host, missing file, a failed download.
    """
    info = stat(url)
    whole = whole_copy(info)
    if whole.is_file() and whole.stat().st_size == info.size:
        return str(whole)
    ranged = RangedFile(info, block_bytes)
    try:
        ranged.check_ranges()
    except RangesRefused:
        ranged.close()
        return str(local_copy(url, info, why="the server does not answer ranged reads"))
    except BaseException:
        ranged.close()
        raise
    return ranged


def local_copy(url: str, info: RemoteInfo | None = None, why: str | None = None) -> Path:
    """A whole local copy of ``url``, downloaded once per version of the file.

    Args:
        url: The file's URL.
        info: What :func:`stat` returned, when already asked.
        why: Said on standard error before a download starts.

    Raises:
        DataError: unreachable host, missing file, too little disk space, a failed download.
    """
    from pdebench_core.diskspace import check_free_space, human_bytes

    info = info or stat(url)
    target = whole_copy(info)
    if target.is_file() and target.stat().st_size == info.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(target.parent, info.size, f"a copy of {url}")
    if why:
        print(f"{url}: {why}; downloading the whole file ({human_bytes(info.size)}) once into {target.parent}",
              file=sys.stderr, flush=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        _download(url, partial, info.size)
        if partial.stat().st_size != info.size:
            raise DataError(f"downloading {url} stopped after {partial.stat().st_size} of {info.size} bytes; "
                            f"run again to retry")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _download(url: str, destination: Path, size: int) -> None:
    """Stream ``url`` into ``destination`` with a progress bar."""
    from fsspec.callbacks import Callback

    from pdebench_core.progress import progress

    class Advance(Callback):
        def __init__(self, advance: Callable[[float], None]) -> None:
            super().__init__()
            self.advance, self.shown = advance, 0

        def call(self, *args: Any, **kwargs: Any) -> None:
            if self.value > self.shown:
                self.advance(self.value - self.shown)
                self.shown = self.value

    fs, inner = filesystem(url)
    with progress(f"downloading {url.rsplit('/', 1)[-1]}", float(size)) as advance:
        try:
            fs.get_file(inner, str(destination), callback=Advance(advance))
        except Exception as exc:
            raise DataError(f"cannot download {url}: {_reason(exc)}") from None

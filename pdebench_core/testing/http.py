"""A local HTTP server for tests and benchmarks of remote data: ranged reads, validators, faults.

It serves a folder on a free port of 127.0.0.1 (never anything else), answers ``HEAD`` and
``GET`` with ``Range: bytes=a-b``, sends ``ETag`` and ``Last-Modified``, and records every
request and the bytes of every answer. A range that starts past the end is answered 416.
``behaviour[name]`` makes one file misbehave: ``"no-range"`` answers every GET with the
whole file, ``"range-from-zero"`` answers a range with a 206 from byte 0, ``"drop"``
stops every answer half-way and closes the connection, ``"drop-once"`` does so to the next
answer only, ``"no-length"`` states no ``Content-Length`` (the body ends when the connection
closes, as from a server streaming something of unknown size), ``"no-validators"`` sends
neither ``ETag`` nor ``Last-Modified``, ``"redirect-loop"`` answers every request with a
redirect to itself.
"""

from __future__ import annotations

import email.utils
import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Served:
    """A running server: its URL, the folder it serves, and what it did."""

    url: str
    root: Path
    behaviour: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)  # (method, name, Range header)
    sent: list = field(default_factory=list)  # body bytes of every answer
    httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent since the last :meth:`reset`."""
        return sum(self.sent)

    def reset(self) -> None:
        """Forget the requests and bytes recorded so far."""
        self.requests.clear()
        self.sent.clear()

    def close(self) -> None:
        """Stop the server."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """See the module docstring."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test and benchmark output quiet
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        served: Served = self.server.served
        name = self.path.lstrip("/")
        served.requests.append((self.command, name, self.headers.get("Range")))
        path = served.root / name
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data, st = path.read_bytes(), path.stat()
        behaviour = served.behaviour.get(name)
        if behaviour == "redirect-loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(data) - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match and behaviour != "no-range":
            start = 0 if behaviour == "range-from-zero" else int(match.group(1))
            if start >= len(data):
                self._unsatisfiable(len(data))
                return
            end = min(int(match.group(2) or end), end)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        chunk = data[start:end + 1]
        if behaviour == "no-length":
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(chunk)))
        if behaviour != "no-validators":
            self.send_header("ETag", f'"{st.st_mtime_ns:x}-{st.st_size:x}"')
            self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if behaviour != "no-range":
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        if behaviour in ("drop", "drop-once"):
            if behaviour == "drop-once":
                served.behaviour.pop(name)
            chunk = chunk[: len(chunk) // 2]
            self.close_connection = True
        # Counted before writing: once the client has the bytes it may reset the counters, and a
        # count made after the write would then land in the next phase.
        served.sent.append(len(chunk))
        try:
            self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (it asked for less)
            pass

    def _unsatisfiable(self, size: int) -> None:
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve_folder(root: str | Path) -> Served:
    """Serve ``root`` on a free port of 127.0.0.1 from a background thread; ``close()`` stops it."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.daemon_threads = True
    httpd.served = Served(f"http://127.0.0.1:{httpd.server_address[1]}", Path(root), httpd=httpd)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd.served

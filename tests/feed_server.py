"""A feed server on 127.0.0.1 for tests: the feeds in tests/data/feeds, served the way real
hosts serve them (ETag, Last-Modified, 304), plus the ways real hosts fail."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS = Path(__file__).parent / "data" / "feeds"
TYPES = {".xml": "application/rss+xml; charset=utf-8", ".atom": "application/atom+xml",
         ".json": "application/feed+json"}  # fmt: skip
LAST_MODIFIED = "Mon, 23 Nov 2026 06:00:00 GMT"


@dataclass
class FeedServer:
    base: str
    hits: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    conditional: Counter[str] = field(default_factory=Counter)
    overrides: dict[str, bytes] = field(default_factory=dict)  # path -> body served instead
    ignore_validators: set[str] = field(default_factory=set)  # always answer 200
    down: set[str] = field(default_factory=set)  # answer 503
    in_flight: int = 0
    max_in_flight: int = 0  # most requests being answered at the same moment
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


def _handler(server: FeedServer, stop: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def do_GET(self) -> None:
            with server.lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._answer()
            finally:
                with server.lock:
                    server.in_flight -= 1

        def _answer(self) -> None:  # one branch per kind of host
            path = self.path.split("?")[0].lstrip("/")
            server.hits[path] += 1
            if self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"):
                server.conditional[path] += 1
            if path in server.down or path == "error.xml":
                self._send(503, b"<html>Service Unavailable</html>", {"Content-Type": "text/html"})
            elif path == "broken.xml":  # a host that answers 200 with a login page
                self._send(200, b"<!doctype html><html><body><form>Sign in</form></body></html>",
                           {"Content-Type": "text/html"})  # fmt: skip
            elif path == "huge.xml":  # chunked, no Content-Length, never-ending
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"<!-- " + b"x" * 65_000 + b" -->"
                try:
                    for _ in range(2000):  # ~130 MB if nobody stops reading
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    return
            elif path == "slow.xml":  # one byte now and then, for far longer than a timeout
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(100000):
                        if stop.is_set():
                            return
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    return
            elif path == "redirect.xml":
                self._send(301, b"", {"Location": "/moved/wordpress.xml"})
            elif path.startswith("moved/"):
                self._send(302, b"", {"Location": "/" + path.removeprefix("moved/")})
            elif path == "loop.xml":
                self._send(302, b"", {"Location": "/loop.xml"})
            else:
                self._static(path)

        def _static(self, path: str) -> None:
            body = server.overrides.get(path)
            if body is None:
                file = FEEDS / path
                if not file.is_file() or ".." in path:
                    self._send(404, b"not found")
                    return
                body = file.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers = {
                "Content-Type": TYPES.get(Path(path).suffix, "application/xml"),
                "ETag": etag,
                "Last-Modified": LAST_MODIFIED,
            }
            if path not in server.ignore_validators and (
                self.headers.get("If-None-Match") == etag
                or (
                    self.headers.get("If-None-Match") is None
                    and self.headers.get("If-Modified-Since") == LAST_MODIFIED
                )
            ):
                server.not_modified[path] += 1
                self._send(304, b"", {"ETag": etag})
                return
            self._send(200, body, headers)

    return Handler


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    stop = threading.Event()
    state = FeedServer(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, stop))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()

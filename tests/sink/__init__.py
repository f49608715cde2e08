"""A fault-injecting sink: the send endpoints of six email APIs and SMTP, on loopback.

Written from the providers' published descriptions (tests/contracts/), not from the
project's emulators, it answers what a provider would, counts every recipient it *accepts*
(its :attr:`HttpSink.accepted` is the oracle the exactly-once tests read) and injects faults
on command:

========================  ===============================================================
``refuse(status)``        401/403/429/500/502/503 before anything is accepted
``ses(code)``             SES v2 transient errors (``TooManyRequestsException`` 429,
                          ``ThrottlingException`` 400, ``ServiceUnavailable`` 503)
``accept_502``            the recipients are accepted, then the answer is a 502
``accept_drop``           accepted, then the connection is closed with no answer
``accept_hang``           accepted, then no answer until the client gives up
``bad_json``              accepted, then a 200 whose body is not JSON
========================  ===============================================================

A fault lasts for ``times`` send requests, or ``seconds``, or until :meth:`HttpSink.clear`.
Read-only requests (lookups, preflight, suppression lists) are never faulted, and the
lookups that settle uncertain rows (Postmark's outbound message search, Mailgun's events)
answer from what the sink really accepted. Resend and Brevo honour idempotency keys the way
their documents describe: a repeat of a key returns the first answer and accepts nothing.

The SMTP half is in :mod:`tests.sink.smtp`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PROVIDERS = ("postmark", "sendgrid", "mailgun", "brevo", "resend", "ses")
MAILGUN_DOMAIN = "mg.example.com"
SEND_PATHS = {
    "postmark": "/email/batch",
    "sendgrid": "/v3/mail/send",
    "mailgun": f"/v3/{MAILGUN_DOMAIN}/messages",
    "brevo": "/v3/smtp/email",
    "resend": "/emails/batch",
    "ses": "/v2/email/outbound-bulk-emails",
}
SES_ERRORS = {
    "TooManyRequestsException": 429,
    "ThrottlingException": 400,
    "ServiceUnavailable": 503,
}


@dataclass
class Accepted:
    provider: str
    email: str
    at: float
    message_id: str
    tag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    status: int = 0
    code: str = ""
    times: int | None = None  # send requests left; None: until cleared
    until: float | None = None  # or a time.monotonic() after which it is gone


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _addresses(provider: str, body: Any, form: list[tuple[str, str]]) -> list[str]:
    """The recipients of one send request, by the provider's documented request shape."""
    if provider == "postmark":
        return [m["To"] for m in body]
    if provider == "sendgrid":
        return [t["email"] for p in body["personalizations"] for t in p["to"]]
    if provider == "mailgun":
        return [v for n, v in form if n == "to"]
    if provider == "brevo":
        return [t["email"] for v in body["messageVersions"] for t in v["to"]]
    if provider == "resend":
        return [a for e in body for a in ([e["to"]] if isinstance(e["to"], str) else e["to"])]
    if "BulkEmailEntries" in body:
        return [a for e in body["BulkEmailEntries"] for a in e["Destination"]["ToAddresses"]]
    return list(body["Destination"]["ToAddresses"])


def _labels(
    provider: str, body: Any, form: list[tuple[str, str]], index: int
) -> tuple[Any, dict[str, str]]:
    """The tag and metadata sent with the ``index``-th recipient (what lookups filter on)."""
    if provider == "postmark":
        return body[index].get("Tag"), dict(body[index].get("Metadata") or {})
    if provider == "mailgun":
        variables = {n[2:]: v for n, v in form if n.startswith("v:")}
        return next((v for n, v in form if n == "o:tag"), None), variables
    return None, {}


class HttpSink:
    """The HTTP half: one ThreadingHTTPServer on 127.0.0.1, every provider on its paths."""

    def __init__(self, *, hang: float = 3.0) -> None:
        self.hang = hang  # seconds an accept_hang answer is held before the socket closes
        self.clock: Callable[[], float] = time.time
        self.accepted: list[Accepted] = []
        self.requests: Counter[str] = Counter()  # send requests seen, per provider
        self.refused = 0  # send requests answered with a fault before acceptance
        self._faults: dict[str, Fault] = {}
        self._keys: dict[tuple[str, str], Answer] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                sink._serve(self, "GET")

            def do_POST(self) -> None:
                sink._serve(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ the test's controls

    def fail(
        self,
        provider: str,
        kind: str,
        *,
        status: int = 0,
        code: str = "",
        times: int | None = None,
        seconds: float | None = None,
    ) -> None:
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self._faults[provider] = Fault(kind, status, code, times, until)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget everything: faults, what was accepted, the idempotency keys seen."""
        with self._lock:
            self._faults.clear()
            self.accepted.clear()
            self._keys.clear()
            self.requests.clear()
            self.refused = 0

    def counts(self, provider: str | None = None) -> Counter[str]:
        with self._lock:
            return Counter(a.email for a in self.accepted if provider in (None, a.provider))

    # ------------------------------------------------------------------ serving

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        query = dict(parse_qsl(parts.query))
        provider = self._provider_of(parts.path, handler)
        if method == "POST" and provider is not None:
            self._send(handler, provider, raw)
            return
        answer = self._read(parts.path, query, handler)
        self._reply(handler, answer)

    @staticmethod
    def _provider_of(path: str, handler: BaseHTTPRequestHandler) -> str | None:
        for provider, send_path in SEND_PATHS.items():
            if path == send_path:
                return provider
        if path == "/v2/email/outbound-emails":
            return "ses"
        return None

    def _fault(self, provider: str) -> Fault | None:
        with self._lock:
            fault = self._faults.get(provider)
            if fault is None:
                return None
            if fault.until is not None and time.monotonic() > fault.until:
                del self._faults[provider]
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[provider]
            return fault

    def _send(self, handler: BaseHTTPRequestHandler, provider: str, raw: bytes) -> None:
        with self._lock:
            self.requests[provider] += 1
        fault = self._fault(provider)
        if fault is not None and fault.kind in ("refuse", "ses"):
            with self._lock:
                self.refused += 1
            self._reply(handler, self._error(provider, fault))
            return
        key = self._key(provider, handler, raw)
        with self._lock:
            repeat = self._keys.get(key) if key else None
        if repeat is not None:
            self._reply(handler, repeat)
            return
        answer = self._accept(provider, handler, raw)
        if key:
            with self._lock:
                self._keys[key] = answer
        if fault is None:
            self._reply(handler, answer)
        elif fault.kind == "accept_502":
            self._reply(handler, Answer(502, "<html>502 Bad Gateway</html>"))
        elif fault.kind == "bad_json":
            self._reply(handler, Answer(200, "<html><body>OK</body></html>"))
        elif fault.kind == "accept_hang":
            time.sleep(self.hang)
            self._drop(handler)
        else:  # accept_drop
            self._drop(handler)

    @staticmethod
    def _key(provider: str, handler: BaseHTTPRequestHandler, raw: bytes) -> tuple[str, str] | None:
        if provider == "resend" and handler.headers.get("Idempotency-Key"):
            return (provider, handler.headers["Idempotency-Key"])
        if provider == "brevo":
            key = (json.loads(raw).get("headers") or {}).get("idempotencyKey")
            return (provider, key) if key else None
        return None

    def _accept(self, provider: str, handler: BaseHTTPRequestHandler, raw: bytes) -> Answer:
        form: list[tuple[str, str]] = []
        body: Any = None
        if provider == "mailgun":
            head = f"Content-Type: {handler.headers['Content-Type']}\r\n\r\n".encode()
            message = BytesParser(policy=HTTP).parsebytes(head + raw)
            form = [
                (str(p.get_param("name", header="content-disposition")), p.get_content())
                for p in message.iter_parts()
            ]
        else:
            body = json.loads(raw)
        addresses = _addresses(provider, body, form)
        ids = [f"<{uuid.uuid4()}@sink>" for _ in addresses]
        now = self.clock()
        with self._lock:
            for i, (email, mid) in enumerate(zip(addresses, ids, strict=False)):
                tag, metadata = _labels(provider, body, form, i)
                self.accepted.append(Accepted(provider, email.lower(), now, mid, tag, metadata))
        return self._success(provider, body, addresses, ids)

    @staticmethod
    def _success(provider: str, body: Any, addresses: list[str], ids: list[str]) -> Answer:
        if provider == "postmark":
            return Answer(
                200,
                [
                    {"ErrorCode": 0, "Message": "OK", "MessageID": i.strip("<>"), "To": a}
                    for a, i in zip(addresses, ids, strict=False)
                ],
            )
        if provider == "sendgrid":
            return Answer(202, None, {"X-Message-Id": ids[0].strip("<>")})
        if provider == "mailgun":
            return Answer(200, {"id": ids[0], "message": "Queued. Thank you."})
        if provider == "brevo":
            return Answer(201, {"messageIds": ids})
        if provider == "resend":
            return Answer(200, {"data": [{"id": i.strip("<>")} for i in ids]})
        if "BulkEmailEntries" in body:
            return Answer(
                200,
                {
                    "BulkEmailEntryResults": [
                        {"Status": "SUCCESS", "MessageId": i.strip("<>")} for i in ids
                    ]
                },
            )
        return Answer(200, {"MessageId": ids[0].strip("<>")})

    @staticmethod
    def _error(provider: str, fault: Fault) -> Answer:
        if fault.kind == "ses":
            status = SES_ERRORS[fault.code]
            return Answer(
                status, {"message": f"{fault.code} (sink)"}, {"x-amzn-ErrorType": fault.code}
            )
        status = fault.status
        text = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}.get(
            status, "Server error"
        )
        headers = {"Retry-After": "0"} if status == 429 else {}
        if provider == "postmark":
            code = {401: 10, 403: 10, 429: 429}.get(status, 0)
            return Answer(status, {"ErrorCode": code, "Message": text}, headers)
        if provider == "sendgrid":
            return Answer(status, {"errors": [{"message": text, "field": None}]}, headers)
        if provider == "ses":
            name = {401: "UnrecognizedClientException", 403: "AccessDeniedException"}.get(
                status, "InternalFailure"
            )
            return Answer(status, {"message": text}, {**headers, "x-amzn-ErrorType": name})
        return Answer(status, {"message": text, "code": str(status)}, headers)

    # ------------------------------------------------------------------ read-only requests

    def _read(self, path: str, query: dict[str, str], handler: BaseHTTPRequestHandler) -> Answer:
        if path == "/messages/outbound":
            return self._postmark_search(query)
        if path.startswith(f"/v3/{MAILGUN_DOMAIN}/events"):
            return self._mailgun_events(path, query)
        fixed: dict[str, Any] = {
            "/server": {"Name": "sink"},
            "/bounces": {"TotalCount": 0, "Bounces": []},
            "/v3/whitelabel/domains": [{"domain": "fieldnotes.example.com", "valid": True}],
            "/domains": {"data": [{"name": "fieldnotes.example.com", "status": "verified"}]},
            "/v3/senders": {
                "senders": [{"email": "weekly@fieldnotes.example.com", "active": True}]
            },
            "/v3/smtp/blockedContacts": {"count": 0, "contacts": []},
            f"/v3/domains/{MAILGUN_DOMAIN}": {"domain": {"state": "active"}},
        }
        if path in fixed:
            return Answer(200, fixed[path])
        if path.startswith("/message-streams/"):
            return Answer(200, {"Suppressions": []})
        if path.startswith("/v3/suppression/"):
            return Answer(200, [])
        if path.startswith(f"/v3/{MAILGUN_DOMAIN}/"):
            return Answer(200, {"items": [], "paging": {}})
        if path.startswith("/v2/email/identities/"):
            return Answer(200, {"IdentityType": "DOMAIN", "VerifiedForSendingStatus": True})
        if path.startswith("/v2/email/suppression/"):
            return Answer(200, {"SuppressedDestinationSummaries": []})
        return Answer(404, {"message": f"the sink has no {path}"})

    def _postmark_search(self, query: dict[str, str]) -> Answer:
        """``GET /messages/outbound``: tag, recipient and ``metadata_<key>`` filters,
        ``count`` / ``offset`` paging, newest first; ``TotalCount`` of all matches."""
        wanted = {k[len("metadata_") :]: v for k, v in query.items() if k.startswith("metadata_")}
        with self._lock:
            found = [
                a
                for a in self.accepted
                if a.provider == "postmark"
                and ("tag" not in query or a.tag == query["tag"])
                and ("recipient" not in query or a.email == query["recipient"].lower())
                and all(a.metadata.get(k) == v for k, v in wanted.items())
            ]
        found.reverse()
        offset, count = int(query.get("offset", 0)), min(int(query.get("count", 100)), 500)
        page = found[offset : offset + count]
        messages = [
            {
                "MessageID": a.message_id.strip("<>"),
                "Recipients": [a.email],
                "Tag": a.tag,
                "Metadata": a.metadata,
                "Status": "Sent",
            }
            for a in page
        ]
        return Answer(200, {"TotalCount": len(found), "Messages": messages})

    def _mailgun_events(self, path: str, query: dict[str, str]) -> Answer:
        """``GET /v3/{domain}/events``: ``event``, ``tags`` and ``begin`` filters (RFC 2822
        date or epoch), ``ascending``, ``limit`` (at most 300), ``paging.next`` a URL."""
        page_token = path.rsplit("/", 1)[1] if path.count("/") > 3 else ""
        if page_token:
            query = json.loads(bytes.fromhex(page_token).decode())
        begin = query.get("begin")
        start = 0.0
        if begin:
            try:
                start = float(begin)
            except ValueError:
                start = parsedate_to_datetime(begin).timestamp()
        with self._lock:
            found = [
                a
                for a in self.accepted
                if a.provider == "mailgun"
                and query.get("event", "accepted") == "accepted"
                and ("tags" not in query or a.tag == query["tags"])
                and a.at >= start
            ]
        if query.get("ascending") != "yes":
            found.reverse()
        offset, limit = int(query.get("_offset", 0)), min(int(query.get("limit", 100)), 300)
        page = found[offset : offset + limit]
        items = [
            {
                "id": a.message_id,
                "event": "accepted",
                "timestamp": a.at,
                "recipient": a.email,
                "tags": [a.tag],
                "user-variables": a.metadata,
                "message": {"headers": {"message-id": a.message_id.strip("<>")}},
            }
            for a in page
        ]
        following = {**query, "_offset": str(offset + len(page))}
        token = json.dumps(following).encode().hex()
        return Answer(
            200,
            {"items": items, "paging": {"next": f"{self.url}/v3/{MAILGUN_DOMAIN}/events/{token}"}},
        )

    # ------------------------------------------------------------------ the wire

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.body is None:
            data = b""
        elif isinstance(answer.body, str):
            data = answer.body.encode()
        else:
            data = json.dumps(answer.body).encode()
        handler.send_response(answer.status)
        content_type = "text/html" if isinstance(answer.body, str) else "application/json"
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        with suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def http_sink(**options: Any) -> Iterator[HttpSink]:
    sink = HttpSink(**options)
    try:
        yield sink
    finally:
        sink.close()

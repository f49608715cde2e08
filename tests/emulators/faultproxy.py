"""A loopback proxy that puts the fault matrix's faults in front of the npm emulators.

``resend-local`` and ``aws-ses-v2-local`` implement sending but neither fault injection nor a
few endpoints digest uses. :class:`MatrixProxy` forwards every request to the emulator and, on
the provider's send endpoint, injects the same faults ``tests/emulators/providers.py`` does
(``unauthorized_from``, ``storm`` (429), ``errors`` (500), ``drop_before``, ``drop_after``,
``hang_after``), each answered in the provider's own shape. It also adds what the emulators
lack and the real APIs have:

* Resend's ``Idempotency-Key``: a repeated key gets the first answer again, not a second send
  (409 ``concurrent_idempotent_requests`` while the first is still being answered);
* Resend ``GET /domains`` and SES ``GET /v2/email/identities/{identity}`` (for
  ``digest check --provider``), answering ``verified`` unless ``domain_verified`` is False;
  Resend ``GET /domains/{id}`` with the domain's records, and SES's ``DkimAttributes``,
  whose DKIM state is ``dkim_verified`` (for ``digest check --deliverability``).

Counters count down one per send request; all are thread-safe.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

SEND_PATHS = {
    "resend": re.compile(r"^/emails(/batch)?$"),
    "ses": re.compile(r"^/v2/email/outbound-(bulk-)?emails$"),
}
SENDER_DOMAINS = ("example.com", "fieldnotes.example.com")


class MatrixProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: str, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider
        self.upstream = upstream.rstrip("/")
        self.client = httpx.Client(timeout=60)
        self.lock = threading.Lock()
        self.send_count = 0
        self.faults: dict[str, float] = {}
        self.seen: Counter[str] = Counter()
        self.replies: dict[str, tuple[int, bytes]] = {}  # Resend idempotency keys
        self.in_flight: set[str] = set()  # keys whose first request is still being answered
        self.domain_verified = True
        self.dkim_verified = True  # Resend's DKIM record, SES's DkimAttributes.Status
        self.rng = random.Random(7)
        self.clear_faults()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = {
                "unauthorized_from": 0,
                "storm": 0,
                "errors": 0,
                "drop_before": 0,
                "drop_after": 0,
                "hang_after": 0,
                "hang_seconds": 5.0,
                "delay": 0.0,  # seconds to hold every send request back (all of them)
                "drop_after_rate": 0.0,  # the chance that an accepted request goes unanswered
            }

    def set_faults(self, **faults: float) -> None:
        with self.lock:
            unknown = set(faults) - set(self.faults)
            if unknown:
                raise ValueError(f"unknown fault option(s) {sorted(unknown)}")
            self.faults.update(faults)

    def next_fault(self) -> str | None:
        """The fault for the next send request (counting it down), or None."""
        with self.lock:
            self.send_count += 1
            faults = self.faults
            if faults["unauthorized_from"] and self.send_count >= faults["unauthorized_from"]:
                return "unauthorized"
            for name in ("drop_before", "storm", "errors", "drop_after", "hang_after"):
                if faults[name] > 0:
                    faults[name] -= 1
                    return name
            if faults["drop_after_rate"] and self.rng.random() < faults["drop_after_rate"]:
                return "drop_after"
        return None

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.client.close()


class _Handler(BaseHTTPRequestHandler):
    server: MatrixProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bool = False
    ) -> None:
        payload = body if raw else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _forward(self, method: str, body: bytes) -> httpx.Response:
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "content-length", "connection")
        }
        return self.server.client.request(
            method, self.server.upstream + self.path, content=body, headers=headers
        )

    def do_GET(self) -> None:
        proxy = self.server
        path = self.path.split("?")[0]
        if proxy.provider == "resend" and path == "/domains":
            status = "verified" if proxy.domain_verified else "pending"
            return self._reply(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": f"d{i}", "name": name, "status": status, "region": "us-east-1"}
                        for i, name in enumerate(SENDER_DOMAINS)
                    ],
                },
            )
        match = re.fullmatch(r"/domains/d(\d+)", path)
        if proxy.provider == "resend" and match and int(match.group(1)) < len(SENDER_DOMAINS):
            return self._reply(200, _resend_domain(proxy, int(match.group(1))))
        match = re.fullmatch(r"/v2/email/identities/([^/]+)", path)
        if proxy.provider == "ses" and match:
            return self._reply(
                200,
                {
                    "IdentityType": "DOMAIN",
                    "VerifiedForSendingStatus": proxy.domain_verified,
                    "VerificationStatus": "SUCCESS" if proxy.domain_verified else "PENDING",
                    "DkimAttributes": {
                        "SigningEnabled": True,
                        "Status": "SUCCESS" if proxy.dkim_verified else "PENDING",
                        "Tokens": ["tok1", "tok2", "tok3"],
                        "SigningAttributesOrigin": "AWS_SES",
                    },
                },
            )
        response = self._forward("GET", b"")
        return self._reply(response.status_code, response.content, raw=True)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        proxy = self.server
        if not SEND_PATHS[proxy.provider].match(self.path.split("?")[0]):
            response = self._forward("POST", body)
            return self._reply(response.status_code, response.content, raw=True)
        if proxy.faults["delay"]:
            time.sleep(float(proxy.faults["delay"]))
        fault = proxy.next_fault()
        if fault:
            with proxy.lock:
                proxy.seen[fault] += 1
        key = self.headers.get("Idempotency-Key") if proxy.provider == "resend" else None
        if fault == "drop_before":
            return self._drop()
        if fault == "unauthorized":
            if proxy.provider == "resend":
                return self._reply(
                    401,
                    {
                        "statusCode": 401,
                        "name": "restricted_api_key",
                        "message": "API key is invalid",
                    },
                )
            return self._reply(
                403,
                {"message": "The security token included in the request is invalid."},
                {"x-amzn-ErrorType": "UnrecognizedClientException"},
            )
        if fault == "storm":
            return self._reply(
                429,
                {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."}
                if proxy.provider == "resend"
                else {"message": "Maximum sending rate exceeded."},
                {"retry-after": "0"}
                if proxy.provider == "resend"
                else {"x-amzn-ErrorType": "TooManyRequestsException"},
            )
        if fault == "errors":
            return self._reply(500, {"message": "internal error (emulated)"})
        with proxy.lock:
            cached = proxy.replies.get(key) if key else None
            concurrent = bool(key) and cached is None and key in proxy.in_flight
            if key and cached is None and not concurrent:
                proxy.in_flight.add(key)
        if cached is not None:
            return self._reply(cached[0], cached[1], raw=True)
        if concurrent:  # Resend's answer while the first request with this key is running
            return self._reply(
                409,
                {
                    "statusCode": 409,
                    "name": "concurrent_idempotent_requests",
                    "message": "Same idempotency key used while original request is still "
                    "in progress.",
                },
            )
        try:
            response = self._forward("POST", body)
        finally:
            if key:
                with proxy.lock:
                    proxy.in_flight.discard(key)
        if key and response.status_code == 200:
            with proxy.lock:
                proxy.replies[key] = (response.status_code, response.content)
        if fault == "drop_after":
            return self._drop()
        if fault == "hang_after":
            time.sleep(float(proxy.faults["hang_seconds"]))
            return self._drop()
        return self._reply(response.status_code, response.content, raw=True)


def _resend_domain(proxy: MatrixProxy, index: int) -> dict[str, Any]:
    """Resend's ``GET /domains/{id}``: the domain and its records, each with a status."""
    name = SENDER_DOMAINS[index]
    status = "verified" if proxy.domain_verified else "pending"
    dkim = "verified" if proxy.dkim_verified else "failed"
    return {
        "object": "domain",
        "id": f"d{index}",
        "name": name,
        "status": status,
        "region": "us-east-1",
        "records": [
            {
                "record": "SPF",
                "name": "send",
                "type": "TXT",
                "ttl": "Auto",
                "status": status,
                "value": "v=spf1 include:amazonses.com ~all",
            },
            {
                "record": "DKIM",
                "name": "resend._domainkey",
                "type": "TXT",
                "ttl": "Auto",
                "status": dkim,
                "value": "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB",
            },
        ],
    }

"""One loopback HTTP server that behaves like Postmark, SendGrid, Mailgun or Brevo.

Run one provider per process::

    python -m tests.emulators.providers --provider postmark --port 0

The first line on stdout is ``listening on http://127.0.0.1:PORT``. The provider's own API is
served at its documented paths; a control and inspection API lives under ``/_emulator/``.
README.md beside this file is the contract: request and response shapes, limits, and the
fault-injection options.

The server is a small asyncio loop over ``h11`` so that it can hold a response back, close the
socket without answering, and still serve a few thousand requests a second on loopback.

From pytest, use :func:`run_emulator`, which starts the server as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import email.parser
import email.policy
import email.utils
import json
import math
import operator
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import h11

EASTERN = ZoneInfo("America/New_York")  # Postmark reads dates in US Eastern time


PROVIDERS = ("postmark", "sendgrid", "mailgun", "brevo")
DEFAULT_KEY = "test-key"

POSTMARK_BATCH_MAX = 500
POSTMARK_RECIPIENTS_MAX = 50
SENDGRID_PERSONALIZATIONS_MAX = 1000
SENDGRID_RECIPIENTS_MAX = 1000
MAILGUN_RECIPIENTS_MAX = 1000
BREVO_VERSIONS_MAX = 1000

# Addresses the suppression endpoints report until /_emulator/suppressions says otherwise.
DEFAULT_SUPPRESSIONS: dict[str, list[str]] = {
    "bounced": ["bounced@example.com"],
    "spam": ["complained@example.com"],
    "unsubscribed": ["unsubscribed@example.com"],
}
SUPPRESSION_CREATED_AT = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
# The account's sending domains and senders (the tests' and the sample site's From addresses).
SENDERS = ("news@example.com", "weekly@fieldnotes.example.com")


# --------------------------------------------------------------------------------------------
# Faults


@dataclasses.dataclass
class Faults:
    """What goes wrong, and when. Applies to the provider's send endpoint only.

    Counters (``storm``, ``drop_before``, ``drop_after``, ``hang_after``) count down one per
    send request.
    """

    rate_limit: float = 0.0  # allowed send requests per second; 0 = unlimited
    storm: int = 0  # the next N send requests get 429
    error_rate: float = 0.0  # probability of a 500
    error_every: int = 0  # every k-th send request gets a 500
    delay: float = 0.0  # seconds to hold every send response back
    drop_before: int = 0  # the next N send requests: close the socket, nothing accepted
    drop_before_rate: float = 0.0
    drop_after: int = 0  # the next N send requests: accept and record, then close, no response
    drop_after_rate: float = 0.0
    reject_pattern: str | None = None  # regex searched in each recipient address
    reject_code: int = 406  # Postmark per-message ErrorCode for a rejected recipient
    retry_after: int = 1  # seconds, sent in Retry-After on every 429
    unauthorized_from: int = 0  # send requests from the N-th on get 401 (0: never)
    hang_after: int = 0  # the next N send requests: accept, then hold the answer and close
    hang_seconds: float = 5.0  # how long a hung answer is held (longer than a client waits)
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Faults | None = None) -> Faults:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault option(s) {unknown}; known: {sorted(known)}")
        current = dataclasses.asdict(base) if base is not None else {}
        current.update(data)
        return cls(**current)


class HttpError(Exception):
    def __init__(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []


@dataclasses.dataclass
class Response:
    status: int
    body: Any = None  # dict/list → JSON; str → text/plain; None → empty
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def encode(self) -> tuple[list[tuple[str, str]], bytes]:
        headers = list(self.headers)
        if self.body is None:
            payload = b""
        elif isinstance(self.body, str):
            payload = self.body.encode()
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        else:
            payload = json.dumps(self.body).encode()
            headers.append(("Content-Type", "application/json; charset=utf-8"))
        headers.append(("Content-Length", str(len(payload))))
        return headers, payload


DROP = object()  # handler result: close the connection without a response


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return _INVALID_JSON


_INVALID_JSON = object()


# --------------------------------------------------------------------------------------------
# State shared by all providers


class Emulator:
    """State and behaviour of one running emulator."""

    def __init__(self, provider: str, key: str, faults: Faults) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        self.provider = provider
        self.key = key
        self.initial_faults = faults
        self.reset()

    def reset(self) -> None:
        self.faults = dataclasses.replace(self.initial_faults)
        self.rng = random.Random(self.faults.seed)
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.send_count = 0
        self.window: deque[float] = deque()
        self.idempotency: dict[str, Response] = {}
        self.suppressions = {k: list(v) for k, v in DEFAULT_SUPPRESSIONS.items()}
        self.domain_verified = True  # what the account/domain endpoints report
        self.dkim_verified = True  # what the domain endpoints say of its DKIM record
        self.events: list[dict[str, Any]] = []  # Mailgun events added by /_emulator/events

    # -- faults -------------------------------------------------------------------------------

    def set_faults(self, data: dict[str, Any]) -> None:
        reseed = "seed" in data
        self.faults = Faults.from_dict(data, self.faults)
        if reseed:
            self.rng = random.Random(self.faults.seed)

    def rejected(self, address: str) -> bool:
        pattern = self.faults.reject_pattern
        return bool(pattern) and re.search(pattern, address) is not None  # type: ignore[arg-type]

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability

    def _rate_limited(self) -> tuple[bool, int, float]:
        """(limited, remaining, seconds until the window frees a slot)."""
        limit = self.faults.rate_limit
        if limit <= 0:
            return False, 0, 0.0
        now = time.monotonic()
        while self.window and now - self.window[0] >= 1.0:
            self.window.popleft()
        capacity = max(1, int(limit))
        reset = 1.0 - (now - self.window[0]) if self.window else 1.0
        if len(self.window) >= capacity:
            return True, 0, reset
        self.window.append(now)
        return False, capacity - len(self.window), reset

    # -- recording ----------------------------------------------------------------------------

    def record(self, request_id: int, **fields: Any) -> None:
        fields.setdefault("tags", [])
        fields.setdefault("headers", {})
        fields.setdefault("metadata", {})
        self.messages.append(
            {
                "provider": self.provider,
                "request_id": request_id,
                "accepted_at": datetime.now(timezone.utc).isoformat(),
                **fields,
            }
        )

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for message in self.messages:
            result[message["to"]] = result.get(message["to"], 0) + 1
        return result

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | object:
        if request.path.startswith("/_emulator/"):
            return self.control(request)
        provider = PROVIDER_HANDLERS[self.provider]
        route = provider.route(request)
        if route is None:
            return provider.not_found(request)
        handler, is_send, args = route
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": None,
            "fault": None,
        }
        self.requests.append(entry)
        try:
            if is_send:
                result = await self._send(provider, handler, request, args, entry)
            else:
                provider.authenticate(self, request)
                result = handler(self, request, *args)
        except HttpError as error:
            result = Response(error.status, error.body, error.headers)
        entry["status"] = result.status if isinstance(result, Response) else "dropped"
        return result

    async def _send(
        self,
        provider: type[Provider],
        handler: Any,
        request: Request,
        args: tuple[Any, ...],
        entry: dict[str, Any],
    ) -> Response | object:
        faults = self.faults
        self.send_count += 1
        request_id = self.send_count
        entry["request_id"] = request_id
        if faults.drop_before > 0 or self._chance(faults.drop_before_rate):
            faults.drop_before = max(0, faults.drop_before - 1)
            entry["fault"] = "drop_before"
            return DROP
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        provider.authenticate(self, request)
        if faults.unauthorized_from and request_id >= faults.unauthorized_from:
            entry["fault"] = "unauthorized"
            key, self.key = self.key, f"revoked-{uuid.uuid4()}"
            try:
                provider.authenticate(self, request)  # the provider's own 401
            finally:
                self.key = key
        if faults.storm > 0:
            faults.storm -= 1
            entry["fault"] = "storm"
            return provider.too_many_requests(self, faults.retry_after, 0, faults.retry_after)
        limited, remaining, reset = self._rate_limited()
        if limited:
            entry["fault"] = "rate_limit"
            retry_after = max(faults.retry_after, math.ceil(reset))
            return provider.too_many_requests(self, retry_after, 0, reset)
        if (faults.error_every > 0 and request_id % faults.error_every == 0) or self._chance(
            faults.error_rate
        ):
            entry["fault"] = "error"
            return provider.server_error()
        idempotency_key = provider.idempotency_key(request)
        if idempotency_key is not None and idempotency_key in self.idempotency:
            entry["fault"] = "idempotent_replay"
            return self.idempotency[idempotency_key]
        response: Response = handler(self, request, request_id, *args)
        if faults.rate_limit > 0:
            response.headers.extend(provider.rate_limit_headers(self, remaining, reset))
        if idempotency_key is not None and response.status < 300:
            self.idempotency[idempotency_key] = response
        if faults.drop_after > 0 or self._chance(faults.drop_after_rate):
            faults.drop_after = max(0, faults.drop_after - 1)
            entry["fault"] = "drop_after"
            return DROP
        if faults.hang_after > 0:
            faults.hang_after -= 1
            entry["fault"] = "hang_after"
            await asyncio.sleep(faults.hang_seconds)
            return DROP
        return response

    # -- control API --------------------------------------------------------------------------

    def control(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/_emulator/messages" and method == "GET":
            return Response(200, self.messages)
        if path == "/_emulator/counts" and method == "GET":
            return Response(200, self.counts())
        if path == "/_emulator/requests" and method == "GET":
            return Response(200, self.requests)
        if path == "/_emulator/reset" and method == "POST":
            self.reset()
            return Response(200, {"reset": True})
        if path == "/_emulator/faults":
            if method == "GET":
                return Response(200, dataclasses.asdict(self.faults))
            if method in ("POST", "DELETE"):
                data = request.json() if method == "POST" else {}
                if not isinstance(data, dict):
                    return Response(400, {"error": "expected a JSON object of fault options"})
                try:
                    if method == "DELETE":
                        self.faults = Faults(seed=self.faults.seed)
                    else:
                        self.set_faults(data)
                except (TypeError, ValueError) as error:
                    return Response(400, {"error": str(error)})
                return Response(200, dataclasses.asdict(self.faults))
        if path == "/_emulator/suppressions":
            if method == "POST":
                data = request.json()
                if not isinstance(data, dict) or not set(data) <= set(DEFAULT_SUPPRESSIONS):
                    return Response(
                        400, {"error": f"expected an object with keys {list(DEFAULT_SUPPRESSIONS)}"}
                    )
                self.suppressions.update({k: list(v) for k, v in data.items()})
            if method in ("GET", "POST"):
                return Response(200, self.suppressions)
        if path == "/_emulator/events":
            if method == "POST":
                data = request.json()
                if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
                    return Response(400, {"error": "expected a JSON list of event objects"})
                now = time.time()
                self.events.extend({"timestamp": now, **e} for e in data)
            if method in ("GET", "POST"):
                return Response(200, self.events)
        if path == "/_emulator/domain" and method == "POST":
            data = request.json()
            if not isinstance(data, dict) or not isinstance(data.get("verified"), bool):
                return Response(400, {"error": 'expected {"verified": true|false}'})
            if not isinstance(data.get("dkim", data["verified"]), bool):
                return Response(400, {"error": '"dkim" must be true or false'})
            self.domain_verified = data["verified"]
            self.dkim_verified = data.get("dkim", data["verified"])
            return Response(200, {"verified": self.domain_verified, "dkim": self.dkim_verified})
        if path == "/_emulator/health" and method == "GET":
            return Response(200, {"provider": self.provider})
        return Response(404, {"error": f"no control endpoint {method} {path}"})


# --------------------------------------------------------------------------------------------
# Helpers shared by the provider modules


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def split_addresses(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def bare_address(value: str) -> str:
    """'Ann <ann@example.com>' → 'ann@example.com'."""
    match = re.search(r"<([^>]*)>", value)
    return (match.group(1) if match else value).strip()


def looks_like_address(value: str) -> bool:
    return re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", bare_address(value)) is not None


def parse_form(request: Request) -> list[tuple[str, str]]:
    """Fields of a multipart/form-data or urlencoded body, repeated names kept in order."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
        fields = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                payload = b""
            charset = part.get_content_charset() or "utf-8"
            fields.append((str(name), payload.decode(charset, "replace")))
        return fields
    if content_type.startswith("application/x-www-form-urlencoded"):
        return urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True)
    raise HttpError(400, {"message": "Content-Type must be multipart/form-data"})


class Provider:
    """One provider's routes and error shapes. Subclasses are namespaces of static methods."""

    @staticmethod
    def route(request: Request) -> tuple[Any, bool, tuple[Any, ...]] | None:
        raise NotImplementedError

    @staticmethod
    def authenticate(emu: Emulator, request: Request) -> None:
        raise NotImplementedError

    @staticmethod
    def too_many_requests(
        emu: Emulator, retry_after: int, remaining: int, reset: float
    ) -> Response:
        raise NotImplementedError

    @staticmethod
    def rate_limit_headers(emu: Emulator, remaining: int, reset: float) -> list[tuple[str, str]]:
        return []

    @staticmethod
    def server_error() -> Response:
        raise NotImplementedError

    @staticmethod
    def idempotency_key(request: Request) -> str | None:
        return None

    @staticmethod
    def not_found(request: Request) -> Response:
        return Response(404, {"message": f"no route {request.method} {request.path}"})


# --------------------------------------------------------------------------------------------
# Postmark


class Postmark(Provider):
    @staticmethod
    def route(request: Request) -> tuple[Any, bool, tuple[Any, ...]] | None:
        method, path = request.method, request.path
        if method == "POST" and path == "/email/batch":
            return Postmark.batch, True, ()
        if method == "POST" and path == "/email":
            return Postmark.single, True, ()
        if method == "GET" and path == "/bounces":
            return Postmark.bounces, False, ()
        if method == "GET" and path == "/messages/outbound":
            return Postmark.outbound_search, False, ()
        if method == "GET" and path == "/server":
            return Postmark.server, False, ()
        if method == "GET" and path == "/domains":
            return Postmark.domains, False, ()
        match = re.fullmatch(r"/domains/(\d+)", path)
        if method == "GET" and match:
            return Postmark.domain, False, (int(match.group(1)),)
        match = re.fullmatch(r"/message-streams/([^/]+)/suppressions/dump", path)
        if method == "GET" and match:
            return Postmark.suppressions_dump, False, (match.group(1),)
        return None

    @staticmethod
    def error(status: int, code: int, message: str) -> HttpError:
        return HttpError(status, {"ErrorCode": code, "Message": message})

    @staticmethod
    def domains(emu: Emulator, request: Request) -> Response:
        """``GET /domains`` (account token): the account's domains, with their state."""
        listed = [Postmark.domain_details(emu, i + 1) for i in range(len(SENDERS))]
        keys = ("ID", "Name", "SPFVerified", "DKIMVerified", "WeakDKIM", "ReturnPathDomainVerified")
        return Response(
            200,
            {"TotalCount": len(listed), "Domains": [{k: d[k] for k in keys} for d in listed]},
        )

    @staticmethod
    def domain(emu: Emulator, request: Request, domain_id: int) -> Response:
        """``GET /domains/{id}`` (account token): one domain's records and state."""
        if not 1 <= domain_id <= len(SENDERS):
            raise Postmark.error(422, 510, "This domain was not found.")
        return Response(200, Postmark.domain_details(emu, domain_id))

    @staticmethod
    def domain_details(emu: Emulator, domain_id: int) -> dict[str, Any]:
        name = SENDERS[domain_id - 1].partition("@")[2]
        dkim = emu.dkim_verified
        return {
            "ID": domain_id,
            "Name": name,
            "SPFVerified": True,
            "DKIMVerified": dkim,
            "WeakDKIM": False,
            "ReturnPathDomainVerified": emu.domain_verified,
            "DKIMHost": f"20240101pm._domainkey.{name}" if dkim else "",
            "DKIMTextValue": "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB" if dkim else "",
            "DKIMPendingHost": "" if dkim else f"20260101pm._domainkey.{name}",
            "DKIMPendingTextValue": "" if dkim else "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB",
            "ReturnPathDomain": f"pm-bounces.{name}",
            "ReturnPathDomainCNAMEValue": "pm.mtasv.net",
        }

    @staticmethod
    def authenticate(emu: Emulator, request: Request) -> None:
        if request.path == "/domains" or request.path.startswith("/domains/"):
            account = request.headers.get("x-postmark-account-token")
            if account != emu.key:
                raise Postmark.error(
                    401,
                    10,
                    "The Account Token you provided in the X-Postmark-Account-Token request "
                    "header was invalid. Please verify that you are using a valid token.",
                )
            return
        token = request.headers.get("x-postmark-server-token")
        if not token:
            raise Postmark.error(
                401,
                10,
                "No Account or Server API tokens were supplied in the HTTP headers. Please add "
                "a header for either X-Postmark-Server-Token or X-Postmark-Account-Token.",
            )
        if token != emu.key:
            raise Postmark.error(
                401,
                10,
                "The Server Token you provided in the X-Postmark-Server-Token request header "
                "was invalid. Please verify that you are using a valid token.",
            )

    @staticmethod
    def too_many_requests(
        emu: Emulator, retry_after: int, remaining: int, reset: float
    ) -> Response:
        # Postmark documents ErrorCode 429 but no rate-limit header names: Retry-After only.
        return Response(
            429,
            {"ErrorCode": 429, "Message": "Rate limit exceeded. Please slow down."},
            [("Retry-After", str(retry_after))],
        )

    @staticmethod
    def server_error() -> Response:
        return Response(500, {"ErrorCode": 1, "Message": "Internal server error (emulated)."})

    @staticmethod
    def _json_body(request: Request) -> Any:
        data = request.json()
        if data is _INVALID_JSON:
            raise Postmark.error(422, 402, "Received invalid JSON input.")
        return data

    @staticmethod
    def _one(emu: Emulator, message: Any, request_id: int) -> dict[str, Any]:
        """Validate and record one message; return its per-message result."""
        if not isinstance(message, dict):
            return {"ErrorCode": 403, "Message": "Incompatible JSON input."}
        sender = message.get("From")
        if not sender:
            return {"ErrorCode": 300, "Message": "Invalid 'From' address: ''."}
        to = message.get("To") or ""
        recipients = split_addresses(str(to))
        if not recipients:
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}
        everyone = recipients + split_addresses(str(message.get("Cc") or ""))
        everyone += split_addresses(str(message.get("Bcc") or ""))
        if len(everyone) > POSTMARK_RECIPIENTS_MAX:
            return {
                "ErrorCode": 300,
                "Message": f"Too many recipients ({len(everyone)}). "
                f"Maximum is {POSTMARK_RECIPIENTS_MAX}.",
            }
        for address in everyone:
            if not looks_like_address(address):
                return {
                    "ErrorCode": 300,
                    "Message": f"Error parsing 'To': Illegal email address '{address}'. "
                    "It must contain the '@' symbol.",
                }
        if not message.get("HtmlBody") and not message.get("TextBody"):
            return {
                "ErrorCode": 300,
                "Message": "Provide either email TextBody or HtmlBody or both.",
            }
        inactive = set(emu.suppressions["bounced"] + emu.suppressions["spam"])
        inactive |= set(emu.suppressions["unsubscribed"])
        refused = [a for a in everyone if bare_address(a) in inactive or emu.rejected(a)]
        if refused:
            code = emu.faults.reject_code
            if code == 300:
                text = f"Error parsing 'To': Illegal email address '{refused[0]}'."
            else:
                text = (
                    "You tried to send to recipient(s) that have been marked as inactive. Found "
                    f"inactive addresses: {', '.join(refused)}. Inactive recipients are ones "
                    "that have generated a hard bounce, a spam complaint, or a manual suppression."
                )
            return {"ErrorCode": code, "Message": text}
        message_id = str(uuid.UUID(int=emu.rng.getrandbits(128), version=4))
        headers = {
            h.get("Name"): h.get("Value")
            for h in message.get("Headers") or []
            if isinstance(h, dict)
        }
        for address in everyone:
            emu.record(
                request_id,
                message_id=message_id,
                to=bare_address(address),
                sender=sender,
                subject=message.get("Subject"),
                html=message.get("HtmlBody"),
                text=message.get("TextBody"),
                headers=headers,
                tags=[message["Tag"]] if message.get("Tag") else [],
                metadata=message.get("Metadata") or {},
                stream=message.get("MessageStream") or "outbound",
            )
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": message_id,
            "SubmittedAt": iso_now(),
            "To": to,
        }

    @staticmethod
    def batch(emu: Emulator, request: Request, request_id: int) -> Response:
        data = Postmark._json_body(request)
        if not isinstance(data, list):
            raise Postmark.error(422, 403, "Incompatible JSON input. Expected a JSON array.")
        if len(data) > POSTMARK_BATCH_MAX:
            raise Postmark.error(
                422,
                410,
                f"Too many batch messages ({len(data)}). "
                f"The maximum is {POSTMARK_BATCH_MAX} messages per request.",
            )
        return Response(200, [Postmark._one(emu, message, request_id) for message in data])

    @staticmethod
    def single(emu: Emulator, request: Request, request_id: int) -> Response:
        result = Postmark._one(emu, Postmark._json_body(request), request_id)
        return Response(200 if result["ErrorCode"] == 0 else 422, result)

    @staticmethod
    def bounces(emu: Emulator, request: Request) -> Response:
        count = int(request.query.get("count", ["500"])[0])
        offset = int(request.query.get("offset", ["0"])[0])
        rows = []
        for index, address in enumerate(emu.suppressions["bounced"]):
            rows.append(
                {
                    "RecordType": "Bounce",
                    "ID": 1000 + index,
                    "Type": "HardBounce",
                    "TypeCode": 1,
                    "Name": "Hard bounce",
                    "Tag": "",
                    "MessageID": str(uuid.UUID(int=index + 1)),
                    "ServerID": 1,
                    "Description": "The server was unable to deliver your message "
                    "(ex: unknown user, mailbox not found).",
                    "Details": "550 5.1.1 The email account that you tried to reach does not "
                    "exist.",
                    "Email": address,
                    "From": "sender@example.com",
                    "BouncedAt": SUPPRESSION_CREATED_AT.isoformat(),
                    "DumpAvailable": False,
                    "Inactive": True,
                    "CanActivate": True,
                    "Subject": "",
                    "MessageStream": "outbound",
                }
            )
        return Response(200, {"TotalCount": len(rows), "Bounces": rows[offset : offset + count]})

    @staticmethod
    def outbound_search(emu: Emulator, request: Request) -> Response:
        """``GET /messages/outbound``: ``count`` (at most 500) and ``offset`` required,
        count + offset at most 10,000; filters ``recipient``, ``tag``, ``status``,
        ``messagestream`` and ``metadata_<key>``; newest first."""
        try:
            count = int(request.query["count"][0])
            offset = int(request.query["offset"][0])
        except (KeyError, ValueError):
            raise Postmark.error(
                422, 1, "The 'count' and 'offset' parameters are required."
            ) from None
        if not 0 < count <= 500 or offset < 0 or count + offset > 10000:
            raise Postmark.error(422, 1, "count must be 1-500; count + offset at most 10000.")
        query = {k: v[0] for k, v in request.query.items()}
        rows = list(reversed(emu.messages))
        if "recipient" in query:
            rows = [m for m in rows if m["to"].lower() == query["recipient"].lower()]
        if "tag" in query:
            rows = [m for m in rows if query["tag"] in m["tags"]]
        if "messagestream" in query:
            rows = [m for m in rows if m.get("stream") == query["messagestream"]]
        for key, value in query.items():
            if key.startswith("metadata_"):
                name = key[len("metadata_") :]
                rows = [m for m in rows if str(m["metadata"].get(name)) == value]
        for key, keep in (("fromdate", operator.ge), ("todate", operator.le)):
            if key in query:  # Postmark reads these in US Eastern time
                try:
                    bound = datetime.fromisoformat(query[key]).replace(tzinfo=EASTERN)
                except ValueError:
                    raise Postmark.error(422, 1, f"'{key}' is not a date.") from None
                rows = [m for m in rows if keep(datetime.fromisoformat(m["accepted_at"]), bound)]
        messages = [
            {
                "Tag": m["tags"][0] if m["tags"] else "",
                "MessageID": m["message_id"],
                "MessageStream": m.get("stream", "outbound"),
                "To": [{"Email": m["to"], "Name": None}],
                "Cc": [],
                "Bcc": [],
                "Recipients": [m["to"]],
                "ReceivedAt": m["accepted_at"],
                "From": m.get("sender", ""),
                "Subject": m.get("subject", ""),
                "Attachments": [],
                "Status": "Sent",
                "TrackOpens": False,
                "TrackLinks": "None",
                "Metadata": m["metadata"],
                "Sandboxed": False,
            }
            for m in rows[offset : offset + count]
        ]
        return Response(200, {"TotalCount": len(rows), "Messages": messages})

    @staticmethod
    def server(emu: Emulator, request: Request) -> Response:
        """``GET /server``: the server the token belongs to."""
        return Response(
            200,
            {"ID": 1, "Name": "digest-emulated", "ApiTokens": ["(hidden)"], "Color": "blue"},
        )

    @staticmethod
    def suppressions_dump(emu: Emulator, request: Request, stream: str) -> Response:
        reasons = {
            "bounced": "HardBounce",
            "spam": "SpamComplaint",
            "unsubscribed": "ManualSuppression",
        }
        origins = {"bounced": "Recipient", "spam": "Recipient", "unsubscribed": "Customer"}
        rows = [
            {
                "EmailAddress": address,
                "SuppressionReason": reasons[kind],
                "Origin": origins[kind],
                "CreatedAt": SUPPRESSION_CREATED_AT.isoformat(),
            }
            for kind in ("bounced", "spam", "unsubscribed")
            for address in emu.suppressions[kind]
        ]
        return Response(200, {"Suppressions": rows})

    @staticmethod
    def not_found(request: Request) -> Response:
        return Response(404, {"ErrorCode": 404, "Message": "Not found."})


# --------------------------------------------------------------------------------------------
# SendGrid

SENDGRID_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


class SendGrid(Provider):
    @staticmethod
    def route(request: Request) -> tuple[Any, bool, tuple[Any, ...]] | None:
        method, path = request.method, request.path
        if method == "POST" and path == "/v3/mail/send":
            return SendGrid.send, True, ()
        kinds = {"bounces": "bounced", "spam_reports": "spam", "unsubscribes": "unsubscribed"}
        match = re.fullmatch(r"/v3/suppression/(bounces|spam_reports|unsubscribes)", path)
        if method == "GET" and match:
            return SendGrid.suppressions, False, (match.group(1), kinds[match.group(1)])
        if method == "GET" and path == "/v3/whitelabel/domains":
            return SendGrid.authenticated_domains, False, ()
        return None

    @staticmethod
    def authenticated_domains(emu: Emulator, request: Request) -> Response:
        """``GET /v3/whitelabel/domains``: the authenticated domains (one, example.com)."""
        return Response(
            200,
            [
                {
                    "id": i + 1,
                    "domain": address.partition("@")[2],
                    "subdomain": "em1",
                    "username": "digest",
                    "default": i == 0,
                    "valid": emu.domain_verified and emu.dkim_verified,
                    "dns": SendGrid.dns_records(emu, address.partition("@")[2]),
                }
                for i, address in enumerate(SENDERS)
            ],
        )

    @staticmethod
    def dns_records(emu: Emulator, domain: str) -> dict[str, dict[str, Any]]:
        """An authenticated domain's ``dns`` (automatic security: three CNAMEs)."""
        return {
            "mail_cname": {
                "valid": emu.domain_verified,
                "type": "cname",
                "host": f"em1.{domain}",
                "data": "u1.wl.sendgrid.net",
            },
            "dkim1": {
                "valid": emu.dkim_verified,
                "type": "cname",
                "host": f"s1._domainkey.{domain}",
                "data": "s1.domainkey.u1.wl.sendgrid.net",
            },
            "dkim2": {
                "valid": emu.dkim_verified,
                "type": "cname",
                "host": f"s2._domainkey.{domain}",
                "data": "s2.domainkey.u1.wl.sendgrid.net",
            },
        }

    @staticmethod
    def errors(status: int, *items: tuple[str, str | None, str | None]) -> HttpError:
        body = {"errors": [{"message": m, "field": f, "help": h} for m, f, h in items]}
        return HttpError(status, body)

    @staticmethod
    def authenticate(emu: Emulator, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header:
            raise SendGrid.errors(401, ("authorization required", None, None))
        if header != f"Bearer {emu.key}":
            raise SendGrid.errors(
                401,
                ("The provided authorization grant is invalid, expired, or revoked", None, None),
            )

    @staticmethod
    def rate_limit_headers(emu: Emulator, remaining: int, reset: float) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(max(1, int(emu.faults.rate_limit or 1)))),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(int(time.time() + math.ceil(reset)))),
        ]

    @staticmethod
    def too_many_requests(
        emu: Emulator, retry_after: int, remaining: int, reset: float
    ) -> Response:
        headers = SendGrid.rate_limit_headers(emu, remaining, reset)
        headers.append(("Retry-After", str(retry_after)))
        return Response(429, {"errors": [{"field": None, "message": "too many requests"}]}, headers)

    @staticmethod
    def server_error() -> Response:
        return Response(500, {"errors": [{"field": None, "message": "internal error (emulated)"}]})

    @staticmethod
    def send(emu: Emulator, request: Request, request_id: int) -> Response:
        data = request.json()
        if data is _INVALID_JSON or not isinstance(data, dict):
            raise SendGrid.errors(400, ("Bad Request", None, None))
        problems: list[tuple[str, str | None, str | None]] = []
        personalizations = data.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            problems.append(
                (
                    "The personalizations field is required and must have at least one "
                    "personalization.",
                    "personalizations",
                    f"{SENDGRID_HELP}#-Personalizations-Errors",
                )
            )
            personalizations = []
        elif len(personalizations) > SENDGRID_PERSONALIZATIONS_MAX:
            problems.append(
                (
                    "The personalization block is limited to 1000 personalizations per API "
                    f"request. You have provided {len(personalizations)} personalizations. "
                    "Please consider splitting this into multiple requests and resending your "
                    "request.",
                    "personalizations",
                    f"{SENDGRID_HELP}#-Personalizations-Errors",
                )
            )
        total = 0
        for p_index, personalization in enumerate(personalizations):
            if not isinstance(personalization, dict) or not personalization.get("to"):
                problems.append(
                    (
                        "The to array is required for all personalization objects, and must "
                        "have at least one email object with a valid email address.",
                        f"personalizations.{p_index}.to",
                        f"{SENDGRID_HELP}#message.personalizations.to",
                    )
                )
                continue
            for kind in ("to", "cc", "bcc"):
                for r_index, recipient in enumerate(personalization.get(kind) or []):
                    total += 1
                    address = recipient.get("email", "") if isinstance(recipient, dict) else ""
                    if not looks_like_address(address) or emu.rejected(address):
                        problems.append(
                            (
                                "Does not contain a valid address.",
                                f"personalizations.{p_index}.{kind}.{r_index}.email",
                                f"{SENDGRID_HELP}#message.personalizations.{kind}",
                            )
                        )
        if total > SENDGRID_RECIPIENTS_MAX:
            problems.append(
                (
                    "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
                    "personalizations",
                    f"{SENDGRID_HELP}#-Personalizations-Errors",
                )
            )
        sender = data.get("from")
        if not isinstance(sender, dict) or not looks_like_address(sender.get("email", "")):
            problems.append(
                (
                    "The from object must be provided for every email send. It is an object "
                    "that requires an email parameter, but may also contain a name parameter.",
                    "from",
                    f"{SENDGRID_HELP}#message.from",
                )
            )
        template = data.get("template_id")
        if (
            not template
            and not data.get("subject")
            and not all(isinstance(p, dict) and p.get("subject") for p in personalizations)
        ):
            problems.append(
                (
                    "The subject is required. You can get around this requirement if you "
                    "use a template with a subject defined or if every personalization has "
                    "a subject defined.",
                    "subject",
                    f"{SENDGRID_HELP}#message.subject",
                )
            )
        content = data.get("content") or []
        if not template:
            if not content:
                problems.append(
                    (
                        "Unless a valid template_id is provided, the content parameter is "
                        "required. There must be at least one defined content block. We "
                        "typically suggest both text/plain and text/html blocks are included, "
                        "but only one block is required.",
                        "content",
                        f"{SENDGRID_HELP}#message.content",
                    )
                )
            for c_index, block in enumerate(content):
                if not isinstance(block, dict) or not block.get("value"):
                    problems.append(
                        (
                            "The content value must be a string at least one character in length.",
                            f"content.{c_index}.value",
                            f"{SENDGRID_HELP}#message.content.value",
                        )
                    )
        if problems:
            raise SendGrid.errors(400, *problems)

        by_type = {b.get("type"): b.get("value") for b in content if isinstance(b, dict)}
        message_id = base64.urlsafe_b64encode(emu.rng.getrandbits(128).to_bytes(16, "big"))
        message_id_text = message_id.decode().rstrip("=")
        for personalization in personalizations:
            subs = {str(k): str(v) for k, v in (personalization.get("substitutions") or {}).items()}

            def render(text: Any, subs: dict[str, str] = subs) -> Any:
                if not isinstance(text, str):
                    return text
                for key, value in subs.items():
                    text = text.replace(key, value)
                return text

            headers = {**(data.get("headers") or {}), **(personalization.get("headers") or {})}
            custom_args = {
                **(data.get("custom_args") or {}),
                **(personalization.get("custom_args") or {}),
            }
            subject = personalization.get("subject") or data.get("subject")
            for kind in ("to", "cc", "bcc"):
                for recipient in personalization.get(kind) or []:
                    emu.record(
                        request_id,
                        message_id=message_id_text,
                        to=recipient["email"],
                        sender=data["from"]["email"],
                        subject=render(subject),
                        html=render(by_type.get("text/html")),
                        text=render(by_type.get("text/plain")),
                        headers={k: render(v) for k, v in headers.items()},
                        tags=list(data.get("categories") or []),
                        metadata=custom_args,
                        template_id=template,
                        dynamic_template_data=personalization.get("dynamic_template_data"),
                    )
        return Response(202, None, [("X-Message-Id", message_id_text)])

    @staticmethod
    def suppressions(emu: Emulator, request: Request, name: str, kind: str) -> Response:
        created = int(SUPPRESSION_CREATED_AT.timestamp())
        rows: list[dict[str, Any]] = []
        for address in emu.suppressions[kind]:
            if name == "bounces":
                rows.append(
                    {
                        "created": created,
                        "email": address,
                        "reason": "550 5.1.1 The email account that you tried to reach does "
                        "not exist.",
                        "status": "5.1.1",
                    }
                )
            elif name == "spam_reports":
                rows.append({"created": created, "email": address, "ip": "192.0.2.10"})
            else:
                rows.append({"created": created, "email": address})
        try:
            limit = int(request.query.get("limit", ["500"])[0])
            offset = int(request.query.get("offset", ["0"])[0])
        except ValueError:
            raise SendGrid.errors(
                400, ("limit and offset must be integers", "limit", None)
            ) from None
        if not 1 <= limit <= 500 or offset < 0:
            raise SendGrid.errors(400, ("limit must be between 1 and 500", "limit", None))
        return Response(200, rows[offset : offset + limit])

    @staticmethod
    def not_found(request: Request) -> Response:
        return Response(404, {"errors": [{"field": None, "message": "resource not found"}]})


# --------------------------------------------------------------------------------------------
# Mailgun


class Mailgun(Provider):
    @staticmethod
    def route(request: Request) -> tuple[Any, bool, tuple[Any, ...]] | None:
        match = re.fullmatch(r"/v3/([^/]+)/messages", request.path)
        if request.method == "POST" and match:
            return Mailgun.send, True, (match.group(1),)
        match = re.fullmatch(r"/v3/([^/]+)/(bounces|complaints|unsubscribes)", request.path)
        if request.method == "GET" and match:
            return Mailgun.suppressions, False, (match.group(1), match.group(2))
        match = re.fullmatch(r"/v3/domains/([^/]+)", request.path)
        if request.method == "GET" and match:
            return Mailgun.domain, False, (match.group(1),)
        match = re.fullmatch(r"/v3/([^/]+)/events(?:/([A-Za-z0-9_-]+))?", request.path)
        if request.method == "GET" and match:
            return Mailgun.events, False, (match.group(1), match.group(2))
        return None

    @staticmethod
    def domain(emu: Emulator, request: Request, name: str) -> Response:
        """``GET /v3/domains/{name}``: its state is ``active`` once its DNS is verified."""
        state = "active" if emu.domain_verified else "unverified"
        return Response(
            200,
            {
                "domain": {"name": name, "state": state, "type": "custom", "is_disabled": False},
                "receiving_dns_records": [],
                "sending_dns_records": [
                    {
                        "record_type": "TXT",
                        "valid": "valid" if emu.domain_verified else "unknown",
                        "name": name,
                        "value": "v=spf1 include:mailgun.org ~all",
                    },
                    {
                        "record_type": "TXT",
                        "valid": "valid" if emu.dkim_verified else "invalid",
                        "name": f"pic._domainkey.{name}",
                        "value": "k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB",
                    },
                ],
            },
        )

    @staticmethod
    def events(emu: Emulator, request: Request, domain: str, page: str | None) -> Response:
        """``GET /v3/{domain}/events``: ``accepted`` events of the messages recorded (and
        the events added with ``POST /_emulator/events``: bounces, complaints, …), with
        the filters ``event``, ``tags``, ``recipient``, ``begin`` (RFC 2822 or epoch),
        ``ascending`` and ``limit`` (at most 300); ``paging.next`` is a URL of the same
        query from the next position (an empty page ends it)."""
        if page:
            try:
                query = json.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
            except ValueError:
                raise HttpError(400, {"message": "invalid page token"}) from None
        else:
            query = {k: v[0] for k, v in request.query.items()}
            query["position"] = 0
        limit = int(query.get("limit", 100))
        if not 0 < limit <= 300:
            raise HttpError(400, {"message": "limit must be 1-300"})
        if query.get("event", "accepted") != "accepted":
            return Mailgun.added_events(emu, request, domain, query, limit)
        rows = [m for m in emu.messages if m.get("domain", domain) == domain]
        if "tags" in query:
            rows = [m for m in rows if query["tags"] in m["tags"]]
        if "recipient" in query:
            rows = [m for m in rows if m["to"].lower() == query["recipient"].lower()]
        if "begin" in query:
            begin_text = str(query["begin"])
            try:
                begin = float(begin_text)
            except ValueError:
                begin = email.utils.parsedate_to_datetime(begin_text).timestamp()
            rows = [
                m for m in rows if datetime.fromisoformat(m["accepted_at"]).timestamp() >= begin
            ]
        if str(query.get("ascending", "no")) != "yes":
            rows.reverse()
        position = int(query["position"])
        chunk = rows[position : position + limit]
        items = [
            {
                "event": "accepted",
                "id": f"ev-{m['request_id']}-{i}",
                "timestamp": datetime.fromisoformat(m["accepted_at"]).timestamp(),
                "recipient": m["to"],
                "tags": m["tags"],
                "user-variables": m["metadata"],
                "message": {"headers": {"message-id": m["message_id"].strip("<>")}},
            }
            for i, m in enumerate(chunk)
        ]
        following = {**query, "position": position + len(chunk)}
        token = base64.urlsafe_b64encode(json.dumps(following).encode()).decode().rstrip("=")
        host = request.headers.get("host", "127.0.0.1")
        return Response(
            200,
            {"items": items, "paging": {"next": f"http://{host}/v3/{domain}/events/{token}"}},
        )

    @staticmethod
    def added_events(
        emu: Emulator, request: Request, domain: str, query: dict[str, Any], limit: int
    ) -> Response:
        """Events other than ``accepted``: those added with ``POST /_emulator/events``,
        filtered by ``event`` and ``recipient``, newest first, paged the same way."""
        rows = [
            e
            for e in emu.events
            if str(e.get("event")) == query["event"]
            and (
                "recipient" not in query
                or str(e.get("recipient", "")).lower() == query["recipient"].lower()
            )
        ]
        if str(query.get("ascending", "no")) != "yes":
            rows.reverse()
        position = int(query["position"])
        chunk = rows[position : position + limit]
        following = {**query, "position": position + len(chunk)}
        token = base64.urlsafe_b64encode(json.dumps(following).encode()).decode().rstrip("=")
        host = request.headers.get("host", "127.0.0.1")
        return Response(
            200,
            {"items": chunk, "paging": {"next": f"http://{host}/v3/{domain}/events/{token}"}},
        )

    @staticmethod
    def suppressions(emu: Emulator, request: Request, domain: str, name: str) -> Response:
        """A suppression list, paged the documented way: ``paging.next`` is a full URL
        (``?page=next&address=<last on this page>``) and the page after the last is empty."""
        kind = {"bounces": "bounced", "complaints": "spam", "unsubscribes": "unsubscribed"}[name]
        try:
            limit = int(request.query.get("limit", ["100"])[0])
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAILGUN_RECIPIENTS_MAX:
            return Response(400, {"message": "Invalid limit: must be between 1 and 1000"})
        addresses = sorted(emu.suppressions[kind])
        after = request.query.get("address", [""])[0]
        if request.query.get("page", [""])[0] == "next" and after:
            addresses = [a for a in addresses if a > after]
        page = addresses[:limit]
        created = SUPPRESSION_CREATED_AT.strftime("%a, %d %b %Y %H:%M:%S UTC")
        items: list[dict[str, Any]] = []
        for address in page:
            item: dict[str, Any] = {"address": address, "created_at": created}
            if name == "bounces":
                item.update(code="550", error="550 5.1.1 No such user here")
            elif name == "unsubscribes":
                item["tags"] = ["*"]
            items.append(item)
        base = f"http://{request.headers.get('host', '127.0.0.1')}/v3/{domain}/{name}"
        last = page[-1] if page else after
        query = urllib.parse.urlencode
        paging = {
            "first": f"{base}?{query({'limit': limit})}",
            "last": f"{base}?{query({'page': 'last', 'limit': limit})}",
            "next": f"{base}?{query({'page': 'next', 'address': last, 'limit': limit})}",
            "previous": f"{base}?{query({'page': 'prev', 'address': after, 'limit': limit})}",
        }
        return Response(200, {"items": items, "paging": paging})

    @staticmethod
    def authenticate(emu: Emulator, request: Request) -> None:
        header = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"api:{emu.key}".encode()).decode()
        if header != expected:
            raise HttpError(401, "Forbidden")

    @staticmethod
    def too_many_requests(
        emu: Emulator, retry_after: int, remaining: int, reset: float
    ) -> Response:
        # Mailgun says to "retry as defined in the response" and names no rate-limit headers.
        return Response(
            429, {"message": "Too many requests (emulated)"}, [("Retry-After", str(retry_after))]
        )

    @staticmethod
    def server_error() -> Response:
        return Response(500, {"message": "Internal Server Error (emulated)"})

    @staticmethod
    def send(emu: Emulator, request: Request, request_id: int, domain: str) -> Response:
        fields = parse_form(request)

        def values(name: str) -> list[str]:
            return [v for k, v in fields if k == name]

        def first(name: str) -> str | None:
            found = values(name)
            return found[0] if found else None

        sender = first("from")
        if not sender:
            raise HttpError(400, {"message": "from parameter is missing"})
        recipients = [a for value in values("to") for a in split_addresses(value)]
        if not recipients:
            raise HttpError(400, {"message": "to parameter is missing"})
        if len(recipients) > MAILGUN_RECIPIENTS_MAX:
            raise HttpError(
                400,
                {
                    "message": f"Too many recipients ({len(recipients)}); the maximum is "
                    f"{MAILGUN_RECIPIENTS_MAX} per request"
                },
            )
        for address in recipients:
            if not looks_like_address(address) or emu.rejected(address):
                raise HttpError(
                    400,
                    {"message": "to parameter is not a valid address. please check documentation"},
                )
        subject = first("subject")
        if subject is None and not first("template"):
            raise HttpError(400, {"message": "subject parameter is missing"})
        html, text = first("html"), first("text")
        if not html and not text and not first("template") and not first("amp-html"):
            raise HttpError(
                400,
                {
                    "message": "Need at least one of 'text', 'html', 'amp-html' or 'template' "
                    "parameters specified"
                },
            )
        raw_variables = first("recipient-variables")
        try:
            recipient_variables = json.loads(raw_variables) if raw_variables else {}
            if not isinstance(recipient_variables, dict):
                raise ValueError
        except ValueError:
            raise HttpError(
                400, {"message": "recipient-variables parameter is not a valid JSON"}
            ) from None
        headers = {k[2:]: v for k, v in fields if k.startswith("h:")}
        user_variables = {k[2:]: v for k, v in fields if k.startswith("v:")}
        tags = values("o:tag")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        message_id = f"<{stamp}.{emu.rng.getrandbits(48):012x}@{domain}>"
        for address in recipients:
            variables = recipient_variables.get(bare_address(address)) or {}

            def render(value: str | None, variables: dict[str, Any] = variables) -> str | None:
                if value is None:
                    return None
                return re.sub(
                    r"%recipient\.([A-Za-z0-9_\-]+)%",
                    lambda m: str(variables.get(m.group(1), "")),
                    value,
                )

            emu.record(
                request_id,
                message_id=message_id,
                domain=domain,
                to=bare_address(address),
                sender=sender,
                subject=render(subject),
                html=render(html),
                text=render(text),
                headers={k: render(v) for k, v in headers.items()},
                tags=tags,
                metadata=user_variables,
                recipient_variables=variables,
                # With recipient-variables each recipient gets a message of their own; without,
                # Mailgun sends one message that shows every address in To.
                batch=bool(recipient_variables),
            )
        return Response(200, {"id": message_id, "message": "Queued. Thank you."})

    @staticmethod
    def not_found(request: Request) -> Response:
        return Response(404, {"message": "Not Found"})


# --------------------------------------------------------------------------------------------
# Brevo


class Brevo(Provider):
    @staticmethod
    def route(request: Request) -> tuple[Any, bool, tuple[Any, ...]] | None:
        if request.method == "POST" and request.path == "/v3/smtp/email":
            return Brevo.send, True, ()
        if request.method == "GET" and request.path == "/v3/smtp/blockedContacts":
            return Brevo.blocked_contacts, False, ()
        if request.method == "GET" and request.path == "/v3/senders":
            return Brevo.senders, False, ()
        match = re.fullmatch(r"/v3/senders/domains/([^/]+)", request.path)
        if request.method == "GET" and match:
            return Brevo.sender_domain, False, (match.group(1),)
        return None

    @staticmethod
    def sender_domain(emu: Emulator, request: Request, name: str) -> Response:
        """``GET /v3/senders/domains/{domainName}``: verified, authenticated, records."""
        if name not in {a.partition("@")[2] for a in SENDERS}:
            raise HttpError(404, {"code": "document_not_found", "message": "Domain not found"})
        return Response(
            200,
            {
                "domain": name,
                "verified": emu.domain_verified,
                "authenticated": emu.domain_verified and emu.dkim_verified,
                "dns_records": {
                    "dkim_record": {
                        "type": "TXT",
                        "value": "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB",
                        "host_name": "mail._domainkey.",
                        "status": emu.dkim_verified,
                    },
                    "brevo_code": {
                        "type": "TXT",
                        "value": "brevo-code:0123456789abcdef",
                        "host_name": "@",
                        "status": emu.domain_verified,
                    },
                },
            },
        )

    @staticmethod
    def senders(emu: Emulator, request: Request) -> Response:
        """``GET /v3/senders``: the account's senders (any address @example.com)."""
        return Response(
            200,
            {
                "senders": [
                    {
                        "id": i + 1,
                        "name": "Digest",
                        "email": address,
                        "active": emu.domain_verified,
                        "ips": [],
                    }
                    for i, address in enumerate(SENDERS)
                ]
            },
        )

    @staticmethod
    def blocked_contacts(emu: Emulator, request: Request) -> Response:
        """``GET /v3/smtp/blockedContacts``: ``limit`` (default 50, at most 100) and
        ``offset``; newest first; ``count`` is the total."""
        try:
            limit = int(request.query.get("limit", ["50"])[0])
            offset = int(request.query.get("offset", ["0"])[0])
        except ValueError:
            raise Brevo.error(
                400, "invalid_parameter", "limit and offset must be numbers"
            ) from None
        if not 0 <= limit <= 100 or offset < 0:
            raise Brevo.error(400, "out_of_range", "limit must be between 0 and 100")
        reasons = {
            "bounced": ("hardBounce", "Hard bounce"),
            "spam": ("contactFlaggedAsSpam", "Contact flagged as spam"),
            "unsubscribed": ("unsubscribedViaEmail", "Unsubscribed via email"),
        }
        rows = [
            {
                "email": address,
                "senderEmail": "news@example.com",
                "reason": {"code": reasons[kind][0], "message": reasons[kind][1]},
                "blockedAt": SUPPRESSION_CREATED_AT.isoformat(),
            }
            for kind in ("bounced", "spam", "unsubscribed")
            for address in emu.suppressions[kind]
        ]
        return Response(200, {"count": len(rows), "contacts": rows[offset : offset + limit]})

    @staticmethod
    def error(status: int, code: str, message: str) -> HttpError:
        return HttpError(status, {"code": code, "message": message})

    @staticmethod
    def authenticate(emu: Emulator, request: Request) -> None:
        if request.headers.get("api-key") != emu.key:
            raise Brevo.error(401, "unauthorized", "Key not found")

    @staticmethod
    def rate_limit_headers(emu: Emulator, remaining: int, reset: float) -> list[tuple[str, str]]:
        return [
            ("x-sib-ratelimit-limit", str(max(1, int(emu.faults.rate_limit or 1)))),
            ("x-sib-ratelimit-remaining", str(remaining)),
            ("x-sib-ratelimit-reset", str(math.ceil(reset))),
        ]

    @staticmethod
    def too_many_requests(
        emu: Emulator, retry_after: int, remaining: int, reset: float
    ) -> Response:
        headers = Brevo.rate_limit_headers(emu, remaining, reset)
        headers.append(("Retry-After", str(retry_after)))
        return Response(429, {"code": "too_many_requests", "message": "Too many requests"}, headers)

    @staticmethod
    def server_error() -> Response:
        return Response(
            500, {"code": "internal_error", "message": "Internal server error (emulated)"}
        )

    @staticmethod
    def idempotency_key(request: Request) -> str | None:
        data = request.json()
        if isinstance(data, dict) and isinstance(data.get("headers"), dict):
            key = data["headers"].get("idempotencyKey")
            return str(key) if key else None
        return None

    @staticmethod
    def _render(value: Any, params: dict[str, Any]) -> Any:
        if not isinstance(value, str):
            return value

        def lookup(match: re.Match[str]) -> str:
            current: Any = params
            for part in match.group(1).split("."):
                if not isinstance(current, dict) or part not in current:
                    return ""
                current = current[part]
            return str(current)

        return re.sub(r"\{\{\s*params\.([A-Za-z0-9_.]+)\s*\}\}", lookup, value)

    @staticmethod
    def _recipients(value: Any, where: str, emu: Emulator) -> list[str]:
        if not isinstance(value, list) or not value:
            raise Brevo.error(400, "missing_parameter", f"{where} is missing")
        addresses = []
        for item in value:
            address = item.get("email", "") if isinstance(item, dict) else ""
            if not looks_like_address(address) or emu.rejected(address):
                raise Brevo.error(400, "invalid_parameter", f"email is not valid in {where}")
            addresses.append(address)
        return addresses

    @staticmethod
    def send(emu: Emulator, request: Request, request_id: int) -> Response:
        data = request.json()
        if data is _INVALID_JSON or not isinstance(data, dict):
            raise Brevo.error(400, "bad_request", "Input must be a valid JSON object")
        template_id = data.get("templateId")
        sender = data.get("sender")
        if not template_id and (not isinstance(sender, dict) or not sender.get("email")):
            raise Brevo.error(400, "missing_parameter", "sender is missing")
        versions = data.get("messageVersions")
        if versions is not None:
            if not isinstance(versions, list) or not versions:
                raise Brevo.error(
                    400, "invalid_parameter", "messageVersions must be a non-empty array"
                )
            if len(versions) > BREVO_VERSIONS_MAX:
                raise Brevo.error(
                    400,
                    "invalid_parameter",
                    f"messageVersions cannot hold more than {BREVO_VERSIONS_MAX} versions "
                    f"(got {len(versions)})",
                )
        else:
            versions = [{"to": data.get("to")}]
        subject, html, text = data.get("subject"), data.get("htmlContent"), data.get("textContent")
        if not template_id:
            if not subject and not all(isinstance(v, dict) and v.get("subject") for v in versions):
                raise Brevo.error(400, "missing_parameter", "subject is missing")
            if (
                not html
                and not text
                and not all(
                    isinstance(v, dict) and (v.get("htmlContent") or v.get("textContent"))
                    for v in versions
                )
            ):
                raise Brevo.error(400, "missing_parameter", "htmlContent or textContent is missing")
        plan = []
        for index, version in enumerate(versions):
            if not isinstance(version, dict):
                raise Brevo.error(400, "invalid_parameter", f"messageVersions[{index}] is invalid")
            where = "to" if data.get("messageVersions") is None else f"messageVersions[{index}].to"
            addresses = Brevo._recipients(version.get("to"), where, emu)
            plan.append((version, addresses))
        base_headers = {
            k: v for k, v in (data.get("headers") or {}).items() if k != "idempotencyKey"
        }
        message_ids = []
        for version, addresses in plan:
            params = {**(data.get("params") or {}), **(version.get("params") or {})}
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
            message_id = f"<{stamp}.{emu.rng.getrandbits(40):010d}@smtp-relay.mailin.fr>"
            message_ids.append(message_id)
            for address in addresses:
                emu.record(
                    request_id,
                    message_id=message_id,
                    to=address,
                    sender=(sender or {}).get("email"),
                    subject=Brevo._render(version.get("subject") or subject, params),
                    html=Brevo._render(version.get("htmlContent") or html, params),
                    text=Brevo._render(version.get("textContent") or text, params),
                    headers={k: Brevo._render(v, params) for k, v in base_headers.items()},
                    tags=list(data.get("tags") or []),
                    metadata=params,
                    template_id=template_id,
                )
        if data.get("messageVersions") is not None:
            return Response(201, {"messageIds": message_ids})
        return Response(201, {"messageId": message_ids[0]})

    @staticmethod
    def not_found(request: Request) -> Response:
        return Response(404, {"code": "not_found", "message": "Not found"})


PROVIDER_HANDLERS: dict[str, type[Provider]] = {
    "postmark": Postmark,
    "sendgrid": SendGrid,
    "mailgun": Mailgun,
    "brevo": Brevo,
}


# --------------------------------------------------------------------------------------------
# HTTP server


async def serve_connection(
    emu: Emulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, reader)
            if request is None:
                break
            result = await emu.handle(request)
            if result is DROP:
                break
            assert isinstance(result, Response)
            headers, payload = result.encode()
            # One write per response: fewer syscalls, no small-packet stalls.
            chunks = [conn.send(h11.Response(status_code=result.status, headers=headers))]
            if payload:
                chunks.append(conn.send(h11.Data(data=payload)))
            chunks.append(conn.send(h11.EndOfMessage()))
            writer.write(b"".join(c for c in chunks if c))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, ConnectionError, h11.LocalProtocolError):
        pass
    finally:
        writer.close()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)  # b"" tells h11 the peer closed
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    assert head is not None
    target = urllib.parse.urlsplit(head.target.decode())
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.decode().lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=head.method.decode(),
        path=target.path,
        query=urllib.parse.parse_qs(target.query),
        headers=headers,
        body=bytes(body),
    )


async def main_async(args: argparse.Namespace) -> None:
    faults = Faults.from_dict(json.loads(args.faults)) if args.faults else Faults()
    emu = Emulator(args.provider, args.key, faults)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(emu, r, w), args.host, args.port, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulators.providers",
        description="Loopback emulator of an email provider's HTTP API.",
    )
    parser.add_argument("--provider", required=True, choices=PROVIDERS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key the emulator accepts")
    parser.add_argument("--faults", default="", help="fault options as a JSON object")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


# --------------------------------------------------------------------------------------------
# pytest helper

REPO_ROOT = Path(__file__).resolve().parents[2]


class RunningEmulator:
    """Client of a running emulator's control API."""

    def __init__(self, provider: str, url: str, key: str, process: subprocess.Popen[str]):
        self.provider = provider
        self.url = url
        self.key = key
        self.process = process

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def messages(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_emulator/messages")  # type: ignore[no-any-return]

    def counts(self) -> dict[str, int]:
        return self._call("GET", "/_emulator/counts")  # type: ignore[no-any-return]

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_emulator/requests")  # type: ignore[no-any-return]

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/faults")  # type: ignore[no-any-return]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change the named fault options; the others keep their current values."""
        return self._call("POST", "/_emulator/faults", faults)  # type: ignore[no-any-return]

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/_emulator/faults")  # type: ignore[no-any-return]

    def set_suppressions(self, **lists: list[str]) -> dict[str, list[str]]:
        return self._call("POST", "/_emulator/suppressions", lists)  # type: ignore[no-any-return]

    def set_domain_verified(self, verified: bool, dkim: bool | None = None) -> None:
        """What the account/domain endpoints say about the sending domain (and its DKIM
        record: as ``verified`` unless given)."""
        body: dict[str, bool] = {"verified": verified}
        if dkim is not None:
            body["dkim"] = dkim
        self._call("POST", "/_emulator/domain", body)

    def add_events(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Add events (Mailgun's event-data objects) for the events API to report."""
        return self._call("POST", "/_emulator/events", list(events))  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget messages, requests and idempotency keys; restore the start-up faults."""
        self._call("POST", "/_emulator/reset", {})


@contextlib.contextmanager
def run_emulator(
    provider: str, *, key: str = DEFAULT_KEY, startup_timeout: float = 15.0, **faults: Any
) -> Iterator[RunningEmulator]:
    """Start ``python -m tests.emulators.providers`` for ``provider``; stop it on exit."""
    Faults.from_dict(faults)  # unknown option names fail here, not in the child
    command = [
        sys.executable,
        "-m",
        "tests.emulators.providers",
        "--provider",
        provider,
        "--port",
        "0",
        "--key",
        key,
        "--faults",
        json.dumps(faults),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # stderr goes to a file: a pipe nobody reads could fill up and stall the server.
    stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - outlives this frame; closed below
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
    )
    try:
        url = _wait_for_banner(process, startup_timeout, stderr)
        yield RunningEmulator(provider, url, key, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        stderr.close()


def _wait_for_banner(process: subprocess.Popen[str], timeout: float, stderr: IO[str]) -> str:
    """Read the first stdout line (in a thread, since readline blocks) and return the URL."""
    deadline = time.monotonic() + timeout
    loop_result: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        loop_result.append(process.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    line = loop_result[0].strip() if loop_result else ""
    match = re.fullmatch(r"listening on (http://\S+)", line)
    if not match:
        process.kill()
        process.wait()
        stderr.seek(0)
        raise RuntimeError(
            f"emulator did not start within {timeout}s (first line {line!r}); "
            f"stderr:\n{stderr.read()}"
        )
    return match.group(1)


if __name__ == "__main__":
    main()

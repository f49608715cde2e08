"""digest serve under attack: connection limits and deadlines (serve/protocol.py, server.py),
the log's rate limit (safelog.RateLimit), 4xx for every client mistake, subscribe answers
that do not depend on the address, and webhook signatures that are spent once verified.

Servers here are uvicorn on loopback in a thread of this process (so a test can read the
protocol's counters); every wait is on progress (a count moving, a socket closing), with a
generous limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import resource
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.safelog import RateLimit
from digest.serve.app import create_app
from digest.serve.protocol import Limits
from digest.serve.server import bind, defer_accept, limits_for, raise_open_files, server_config
from digest.store.database import locate
from tests.test_serve import MAILGUN_KEY, NOW, SECRET, Clock, write_config

PATIENCE = 6000  # polls of 10 ms: a minute on a loaded machine


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    for _ in range(PATIENCE):
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.setenv("MG_HOOK_KEY", MAILGUN_KEY)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY"):
        monkeypatch.setenv(name, "unused")
    return write_config(sample_site, subscribe_burst=100, subscribe_per_minute=6000)


def store(config: Config) -> SubscriberStore:
    return SubscriberStore(locate(config, config.subscribers.database))


class Running:
    """uvicorn serving ``app`` in a thread, configured as ``digest serve`` configures it."""

    def __init__(self, config: Config, app: Any, limits: Limits) -> None:
        sock = bind("127.0.0.1", 0)
        self.address = sock.getsockname()[:2]
        self.url = f"http://127.0.0.1:{self.address[1]}"
        self.server = uvicorn.Server(server_config(config, app, limits))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        wait_for(lambda: self.server.started, "the server to start")
        sock.listen(limits.listen_backlog)  # as serve() does: asyncio set it to accept_batch
        self.protocol: Any = self.server.config.http_protocol_class

    def closed_by(self, why: str) -> int:
        return int(self.protocol.closed_by.get(why, 0))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(120)
        assert not self.thread.is_alive()


@pytest.fixture
def running(config: Config) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(app: Any = None, **limits: Any) -> Running:
        server = Running(config, app or create_app(config), Limits(**limits))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --------------------------------------------------------------------------- slowloris


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.mark.integration
def test_slowloris_idle_connections_cannot_keep_health_checks_out(
    running: Callable[..., Running],
) -> None:
    lines = Lines()
    lines.addFilter(RateLimit(interval=3600, burst=5))
    protocol_log = logging.getLogger("digest.serve.protocol")
    protocol_log.addHandler(lines)
    protocol_log.setLevel(logging.INFO)
    server = running(max_connections=40, head_timeout=600, max_per_client=1000)
    idle: list[socket.socket] = []
    try:
        for n in range(200):
            sock = socket.create_connection(server.address)
            if n % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
            idle.append(sock)
        # the 160 longest-waiting were closed as the newer ones came in
        wait_for(lambda: server.closed_by("cap") >= 160, "the cap to close idle connections")
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answers = [http.get("/healthz") for _ in range(20)]
        assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 20
        assert len(server.server.server_state.connections) <= 40
    finally:
        for sock in idle:
            sock.close()
        protocol_log.removeHandler(lines)
    # 160+ closings, five lines, and the sixth kind says how many it left out only when
    # another comes after the interval: the log holds five
    cap_lines = [line for line in lines.lines if "longest-idle" in line]
    assert cap_lines == ["closed the longest-idle connection: 40 connections are open"] * 5


def _from(address: str, server: tuple[str, int]) -> socket.socket:
    """A connection to ``server`` from the loopback address ``address`` (Linux routes all of
    127/8 to lo), as another host's would come."""
    sock = socket.socket()
    sock.bind((address, 0))
    sock.connect(server)
    return sock


@pytest.mark.integration
def test_slowloris_one_client_address_cannot_hold_more_than_its_share(
    running: Callable[..., Running],
) -> None:
    lines = Lines()
    lines.addFilter(RateLimit(interval=3600, burst=5))
    protocol_log = logging.getLogger("digest.serve.protocol")
    protocol_log.addHandler(lines)
    protocol_log.setLevel(logging.INFO)
    server = running(max_per_client=10, head_timeout=600)
    horde = [_from("127.0.0.2", server.address) for _ in range(30)]
    try:
        # the 20 past the cap are closed at once; the first 10 stay open
        wait_for(lambda: server.closed_by("client") == 20, "the per-client cap to close 20")
        assert server.protocol.per_client == {"127.0.0.2": 10}
        assert [_closed_by_peer(sock) for sock in horde[10:]] == [True] * 20
        # another address (the health checker's, a reader's) is not counted with them
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answers = [http.get("/healthz") for _ in range(15)]
        assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 15
        assert server.closed_by("client") == 20
    finally:
        for sock in horde:
            sock.close()
        protocol_log.removeHandler(lines)
    # a closed connection gives its place back
    wait_for(lambda: "127.0.0.2" not in server.protocol.per_client, "the count to go down")
    again = _from("127.0.0.2", server.address)
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert again.makefile("rb").readline() == b"HTTP/1.1 200 OK\r\n"
    again.close()
    client_lines = [line for line in lines.lines if "client address" in line]
    assert (
        client_lines
        == ["closed a new connection: its client address already holds 10 open connections"] * 5
    )


@pytest.mark.integration
def test_slowloris_a_trusted_proxy_is_not_capped_as_one_client(
    running: Callable[..., Running],
) -> None:
    server = running(max_per_client=2, head_timeout=600, exempt=("127.0.0.0/30",))
    held = [_from("127.0.0.2", server.address) for _ in range(6)]
    try:
        wait_for(lambda: len(server.server.server_state.connections) == 6, "six connections open")
        assert server.closed_by("client") == 0
        assert server.protocol.per_client == {}
    finally:
        for sock in held:
            sock.close()


def test_slowloris_the_per_client_cap_and_proxies_come_from_config(sample_site: Path) -> None:
    config = write_config(
        sample_site, max_connections_per_client=7, trusted_proxies=["10.0.0.1", "127.0.0.1"]
    )
    limits = limits_for(config)
    assert (limits.max_per_client, limits.exempt) == (7, ("10.0.0.1", "127.0.0.1"))
    assert Limits().max_per_client == 100


@pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux only")
@pytest.mark.integration
def test_slowloris_idle_connections_stay_in_the_kernel_until_they_send() -> None:
    """With TCP_DEFER_ACCEPT the kernel hands over a connection once it has sent bytes: a
    connection opened earlier and left idle does not come first (nor cost a descriptor)."""
    listener = bind("127.0.0.1", 0)
    defer_accept(listener, 10.0)
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
    idle = [socket.create_connection(listener.getsockname()) for _ in range(5)]
    talker = socket.create_connection(listener.getsockname())
    talker.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    listener.settimeout(60)
    accepted, peer = listener.accept()
    try:
        assert peer == talker.getsockname()
        assert accepted.recv(100) == b"GET /healthz HTTP/1.1\r\n\r\n"
    finally:
        for sock in [accepted, talker, *idle, listener]:
            sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(120)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.integration
def test_slowloris_a_head_or_body_sent_too_slowly_is_cut_off(
    running: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    server = running(head_timeout=0.2, body_timeout=0.2)
    head = socket.create_connection(server.address)
    head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    assert _closed_by_peer(head)
    assert server.closed_by("head") == 1
    body = socket.create_connection(server.address)
    body.sendall(
        b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"email": '
    )
    assert _closed_by_peer(body)
    assert server.closed_by("body") == 1
    # an idle kept-alive connection is uvicorn's to close; a request that is answered is
    # not cut however slow the deadline
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
    assert server.closed_by("head") == 1 and server.closed_by("body") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_slowloris_serve_starts_uvicorn_with_limits(config: Config) -> None:
    limits = Limits()
    built = server_config(config, object(), limits)
    assert (
        built.limit_concurrency,
        built.timeout_keep_alive,
        built.h11_max_incomplete_event_size,
        built.timeout_graceful_shutdown,
        built.access_log,
        built.server_header,
        built.backlog,
    ) == (65_536 + 1024, 5, 16 * 1024, 10, False, False, 128)
    assert built.http.limits == limits  # type: ignore[union-attr]
    # 256 for the rest of the process, and two accept batches (accepted, not yet counted;
    # closed, not yet gone), so accepting never meets the open-file limit
    assert Limits().fitted(20_000).max_connections == 20_000 - 256 - 2 * 128
    assert Limits().fitted(1_000_000) == Limits()
    soft = raise_open_files()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or soft == hard


def test_slowloris_repeated_log_lines_collapse_to_a_count() -> None:
    now = [0.0]
    limit = RateLimit(interval=10, burst=3, clock=lambda: now[0])
    handler = Lines()
    handler.addFilter(limit)
    logger = logging.getLogger("test.ratelimit")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for n in range(1000):
            logger.warning("Invalid HTTP request received from %s", n)
        logger.info("another kind")
        logging.getLogger("digest.changes").addHandler(handler)
        now[0] = 10.5
        logger.warning("Invalid HTTP request received from %s", "later")
    finally:
        logger.removeHandler(handler)
    assert handler.lines == [
        "Invalid HTTP request received from 0",
        "Invalid HTTP request received from 1",
        "Invalid HTTP request received from 2",
        "another kind",
        "Invalid HTTP request received from later [997 more like this were not logged]",
    ]


def test_slowloris_state_change_records_are_never_held_back() -> None:
    limit = RateLimit(interval=3600, burst=1)
    records = [
        logging.makeLogRecord({"name": "digest.changes", "msg": "change {}", "levelno": 20})
        for _ in range(50)
    ]
    assert all(limit.filter(r) for r in records)


# --------------------------------------------------------------------------- one request


HOSTILE_WEBHOOK = b"[" * 40 + b'"' + b'\\"' * 524_200  # under the 1 MB webhook limit


@pytest.mark.integration
def test_one_request_freezes_digest_serve_health_answers_during_a_slow_hostile_body(
    running: Callable[..., Running],
) -> None:
    server = running()
    hostile = socket.create_connection(server.address)
    hostile.sendall(
        b"POST /webhooks/mailgun HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(HOSTILE_WEBHOOK)).encode() + b"\r\n\r\n"
    )
    chunks = [HOSTILE_WEBHOOK[i : i + 65536] for i in range(0, len(HOSTILE_WEBHOOK), 65536)]
    healthy = 0
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for chunk in chunks:  # progress: one chunk, then one health check
            hostile.sendall(chunk)
            healthy += http.get("/healthz").status_code == 200
        # the whole body is in: the server reads it while health checks go on answering
        while not select.select([hostile], [], [], 0)[0]:
            healthy += http.get("/healthz").status_code == 200
        answer = hostile.recv(65536)
    hostile.close()
    assert healthy >= len(chunks)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"error":"mailgun webhook: the JSON is nested deeper than 32 levels"}')


# --------------------------------------------------------------------------- 4xx, never 5xx


def _signed(token: str, event: Any, *, key: str = MAILGUN_KEY) -> dict[str, Any]:
    stamp = str(int(NOW.timestamp()))
    signed = (stamp + token).encode("utf-8", "surrogatepass")
    digest = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": digest}, **event}


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLIENT_MISTAKES: list[tuple[str, str, dict[str, str], bytes, int]] = [
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "name": "\\ud800"}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "\\udfff@example.com"}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "categories": ["\\ud800"]}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "newsletters": ["\\ud800"]}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "\xff@example.com"}', 400),
    ("POST", "/subscribe", JSON, b'{"email": 5}', 400),
    ("POST", "/subscribe", JSON, b'{"email": ["a@example.com"]}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "name": {"x": 1}}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "categories": "Tools"}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "newsletters": {"a": 1}}', 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "n": ' + b"9" * 5000 + b"}", 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "n": 1e999}', 400),
    ("POST", "/subscribe", JSON, b"{}", 400),
    ("POST", "/subscribe", JSON, b"[]", 400),
    ("POST", "/subscribe", JSON, b"null", 400),
    ("POST", "/subscribe", JSON, b"", 400),
    ("POST", "/subscribe", JSON, b'{"email": "a@example.com", "email": null}', 400),
    ("POST", "/subscribe", FORM, b"email=%ED%A0%80%40example.com", 403),
    ("POST", "/subscribe", FORM, b"email=\xff\xfe&name=%ff", 403),
    ("POST", "/subscribe", {"Content-Type": "multipart/form-data"}, b"--x\r\n", 400),
    ("POST", "/subscribe", {"Content-Type": "multipart/form-data; boundary=x"}, b"\xff", 400),
    ("POST", "/unsubscribe/%ED%A0%80", FORM, b"List-Unsubscribe=One-Click", 400),
    ("POST", "/unsubscribe/\xff", FORM, b"List-Unsubscribe=One-Click", 400),
    ("GET", "/confirm/%ED%A0%80", {}, b"", 400),
    ("GET", "/preferences/%00%ff", {}, b"", 400),
    ("POST", "/confirm/x", FORM, b"csrf=%ED%A0%80", 400),
    ("POST", "/webhooks/mailgun", JSON, json.dumps(_signed("\ud800", {})).encode(), 400),
    (
        "POST",
        "/webhooks/mailgun",
        JSON,
        json.dumps(_signed("tok", {})).encode().replace(b'"tok"', b'"\\ud800"'),
        400,
    ),
    ("POST", "/webhooks/mailgun", JSON, b'{"signature": {"token": 5}}', 401),
    ("POST", "/webhooks/mailgun", JSON, b'{"signature": "x"}', 401),
    ("POST", "/webhooks/mailgun", JSON, json.dumps(_signed("\u00e9t\u00e9", {})).encode(), 401),
    ("POST", "/webhooks/mailgun", JSON, json.dumps(_signed("t", {"event-data": []})).encode(), 400),
    ("POST", "/webhooks/mailgun", JSON, b"\xff\xfe", 400),
    ("POST", "/webhooks/resend", {"svix-id": "\u00e9"}, b"{}", 401),
    (
        "POST",
        "/webhooks/sendgrid",
        {"X-Twilio-Email-Event-Webhook-Signature": "\u00ff"},
        b"[]",
        401,
    ),
    ("POST", "/webhooks/%ED%A0%80", JSON, b"{}", 404),
]


def _request(http: TestClient, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
    raw = {k: v.encode("latin-1") for k, v in headers.items()}
    return http.request(method, path, headers=raw, content=body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    CLIENT_MISTAKES,
    ids=[f"{m} {p} {b[:40]!r}" for m, p, _, b, _ in CLIENT_MISTAKES],
)
def test_500s_with_tracebacks_client_bytes_get_a_4xx_and_no_traceback(
    config: Config,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(create_app(config, clock=Clock()), raise_server_exceptions=False) as http:
        response = _request(http, method, path, headers, body)
    assert response.status_code == status, response.text[:300]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "Traceback" not in caplog.text and "Traceback" not in response.text


# --------------------------------------------------------------------------- webhook tokens


def test_a_mailgun_signature_whose_delivery_got_a_400_cannot_be_reused_with_a_forged_body(
    config: Config,
) -> None:
    with store(config) as s:
        s.add("ann@example.com", status="active", now=NOW)
    token = secrets.token_hex(25)
    genuine = _signed(token, {"event-data": "not an object"})
    forged = {**genuine, "event-data": {"event": "complained", "recipient": "ann@example.com"}}
    with TestClient(create_app(config, clock=Clock())) as http:
        first = http.post("/webhooks/mailgun", content=json.dumps(genuine).encode())
        second = http.post("/webhooks/mailgun", content=json.dumps(forged).encode())
    assert (first.status_code, first.json()) == (
        400,
        {"error": "mailgun webhook: no event-data in the body"},
    )
    assert (second.status_code, second.json()) == (
        200,
        {"events": 1, "changed": 0, "repeat": True},
    )
    with store(config) as s:
        found = s.get("ann@example.com")
    assert found is not None and found.status == "active"


# --------------------------------------------------------------------------- timing


class GatedMailer:
    """A provider that takes as long as the test says: nothing is sent until ``gate`` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.asked: list[str] = []
        self.sent: list[str] = []

    async def send_async(self, subscriber: Any, url: str, now: Any, *args: Any) -> None:
        self.asked.append(subscriber.email)
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        self.sent.append(subscriber.email)

    def close(self) -> None:
        self.gate.set()


STATUSES = ("active", "pending", "unsubscribed", "bounced", "complained")


@pytest.mark.integration
def test_timing_shows_who_complained_subscribe_answers_before_any_mail_and_alike(
    config: Config, running: Callable[..., Running]
) -> None:
    with store(config) as s:
        for status in STATUSES:
            s.add(f"{status}@example.com", status=status, now=NOW)
    mailer = GatedMailer()
    app = create_app(config, mailer=mailer)  # type: ignore[arg-type]
    handlers = app.state.handlers
    store_calls: list[int] = []
    original_run = handlers.store.run

    async def counted(fn: Any) -> Any:
        store_calls[-1] += 1
        return await original_run(fn)

    handlers.store.run = counted
    server = running(app)
    answers = []
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for address in [f"{s}@example.com" for s in STATUSES] + ["new@example.com"]:
            store_calls.append(0)
            # the provider is stuck: an answer that waited for it would never come
            response = http.post("/subscribe", json={"email": address, "newsletters": ["x"]})
            answers.append((response.status_code, response.json()))
    assert answers == [(202, {"status": "ok", "message": "Check your inbox to confirm."})] * 6
    assert store_calls == [1] * 6  # one call on the store's thread, whatever the status
    assert mailer.sent == []
    wait_for(lambda: len(mailer.asked) == 5, "the mails to be asked for")
    mailer.gate.set()
    wait_for(lambda: len(mailer.sent) == 5, "the mails to go")
    assert sorted(mailer.sent) == [  # everyone but the address that complained
        "active@example.com",
        "bounced@example.com",
        "new@example.com",
        "pending@example.com",
        "unsubscribed@example.com",
    ]

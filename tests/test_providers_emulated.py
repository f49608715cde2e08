"""Every email API provider against a real server on loopback, through ``send_issue``.

Postmark, SendGrid, Mailgun and Brevo run against ``tests/emulators/providers.py`` with its
fault injection; Resend and SES v2 run against the npm emulators ``resend-local`` and
``aws-ses-v2-local``, which cannot inject faults, behind :class:`FaultProxy`, a small
loopback proxy of this module that adds the same faults in each provider's own shape
(429 with its headers, 500, a dropped connection, per-message rejections).

The fault run: 5,000 subscribers, a 429 burst, 5% of requests answered 500, one connection
dropped mid-send and 1% of addresses refused for good. Afterwards every deliverable address
has been accepted exactly once (counted at the emulator), every refused one is
``failed-permanent`` with the provider's reason, and the ledger matches the emulator.
Backoff is scaled down through settings; ``Retry-After`` is honoured as sent (1 s).
"""

from __future__ import annotations

import html
import json
import random
import re
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.delivery.send import send_issue
from digest.errors import ProviderError
from digest.store.database import locate
from tests.emulators.node import run_resend_local, run_ses_local
from tests.emulators.providers import run_emulator
from tests.helpers import edit_config, import_readers

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
N = 5000
KEY = "test-key"
REJECT = r"07@example\.com$"  # addresses r…07@: 1% of them
FAST_RETRIES = {
    "retry_base_delay": 0.01,
    "retry_max_delay": 0.05,
    "max_retries": 10,
    "reconcile_after": 0,  # the emulators' records are complete at once
}

OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${EMU_KEY}", "message_stream": "broadcast"},
    "sendgrid": {"api_key": "${EMU_KEY}"},
    "mailgun": {"api_key": "${EMU_KEY}", "domain": "mg.example.com"},
    "brevo": {"api_key": "${EMU_KEY}"},
    "resend": {"api_key": "${EMU_RESEND_KEY}"},  # resend-local wants re_…
    "ses": {
        "access_key_id": "${EMU_KEY}",
        "secret_access_key": "${EMU_KEY}",
        "region": "eu-west-1",
    },
}


def address(i: int) -> str:
    return f"r{i:05d}@example.com"


def make_site(
    root: Path,
    provider: str,
    url: str,
    *,
    n: int,
    batch_size: int | None,
    options: dict[str, Any] | None = None,
) -> Config:
    provider_options = {
        "name": provider,
        "base_url": url,
        **OPTIONS[provider],
        **FAST_RETRIES,
        **(options or {}),
    }
    send = {"send": {"batch_size": batch_size, "max_attempts": 5}} if batch_size else {}
    config = edit_config(root, provider=provider_options, **send)
    import_readers(config, (address(i) for i in range(n)), now=NOW, name="Reader {i} & co")
    return config


def ledger_rows(config: Config) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(config.path(config.ledger.database)) as db:
        rows = db.execute("SELECT email, state, last_error FROM deliveries").fetchall()
    return {email: (state, error) for email, state, error in rows}


def check_exactly_once(config: Config, counts: dict[str, int], provider: str, n: int) -> None:
    refused = {address(i) for i in range(n) if re.search(REJECT, address(i))}
    deliverable = {address(i) for i in range(n)} - refused
    assert len(refused) == n // 100
    # at the emulator: every deliverable address exactly once, no refused one
    assert {a: c for a, c in counts.items() if c != 1} == {}
    assert set(counts) == deliverable
    # the ledger matches the emulator
    rows = ledger_rows(config)
    assert {a for a, (state, _) in rows.items() if state == "sent"} == set(counts)
    failed = {a: e for a, (state, e) in rows.items() if state == "failed-permanent"}
    assert set(failed) == refused
    assert all(e and e.startswith(provider) for e in failed.values()), list(failed.values())[:3]
    assert Counter(state for state, _ in rows.values()) == {
        "sent": len(deliverable),
        "failed-permanent": len(refused),
    }


UNKNOWN_STOP = "stopped so that no more messages become uncertain"


def send_to_the_end(config: Config, *, resend_uncertain: bool = False) -> tuple[Any, int]:
    """Run ``send_issue`` as an operator would, again after each stop on an answer that
    left acceptance unknown (a 500); returns the last run's report (its ``ledger`` holds
    every run's outcome) and how many runs stopped so."""
    stops = 0
    for _ in range(30):
        try:
            report = send_issue(
                config, now=NOW, sleep=lambda _: None, resend_uncertain=resend_uncertain
            )
        except ProviderError as exc:
            assert UNKNOWN_STOP in str(exc), str(exc)
            stops += 1
            continue
        return report, stops
    raise AssertionError("the send never finished")


@pytest.fixture(autouse=True)
def emu_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_KEY", KEY)
    monkeypatch.setenv("EMU_RESEND_KEY", "re_" + KEY)


# --------------------------------------------------------------------------------------------
# the Python emulators


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Any]]:
    import contextlib

    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(run_emulator(name, key=KEY, seed=7))
            for name in ("postmark", "sendgrid", "mailgun", "brevo")
        }


@pytest.mark.parametrize("provider", ["postmark", "sendgrid", "mailgun", "brevo"])
def test_five_thousand_with_faults_sent_exactly_once(
    provider: str, emulators: dict[str, Any], sample_site: Path
) -> None:
    emu = emulators[provider]
    emu.reset()
    emu.set_suppressions(bounced=[], spam=[], unsubscribed=[])
    # Brevo honours idempotency keys: it may lose the answer after accepting (drop_after);
    # the others have no key, so the dropped connection is one that was never answered.
    drop = {"drop_after": 1} if provider == "brevo" else {"drop_before": 1}
    emu.set_faults(
        storm=3,
        retry_after=1,
        error_rate=0.05,
        reject_pattern=REJECT,
        seed=11,
        reject_code=406,
        **drop,
    )
    config = make_site(sample_site, provider, emu.url, n=N, batch_size=100)

    # A 500 leaves its batch uncertain (none of these providers documents a 500 as "not
    # taken") and stops the run; the operator runs the same command again.
    report, stops = send_to_the_end(config)
    errors = Counter(r["fault"] for r in emu.requests())["error"]
    if provider == "brevo":
        assert stops == 0  # a 500 is tried again with the same idempotency key
    else:  # several batches are in flight at once: one stop may follow several 500s
        assert 1 <= stops <= errors
    if provider == "sendgrid":
        # the dropped request and every 500 left their batch uncertain, and SendGrid cannot
        # be asked about them: held until the operator chooses to send them again
        assert report.ledger["uncertain"] >= 100 * 2
        assert max(emu.counts().values()) == 1
        report, _ = send_to_the_end(config, resend_uncertain=True)
    assert report.ledger["uncertain"] == 0 and report.ledger["pending"] == 0

    counts = emu.counts()
    check_exactly_once(config, counts, provider, N)
    faults = Counter(r["fault"] for r in emu.requests())
    assert faults["storm"] == 3
    assert faults["error"] >= 1
    assert faults["drop_after" if provider == "brevo" else "drop_before"] == 1
    if provider == "brevo":
        assert faults["idempotent_replay"] >= 1
    assert report.ledger["sent"] == N - N // 100
    assert report.ledger["failed-permanent"] == N // 100
    emu.clear_faults()


@pytest.mark.parametrize("provider", ["postmark", "sendgrid", "mailgun", "brevo"])
def test_wrong_key_stops_with_one_line(
    provider: str, emulators: dict[str, Any], sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulators[provider]
    emu.reset()
    emu.clear_faults()
    config = make_site(sample_site, provider, emu.url, n=3, batch_size=None)
    monkeypatch.setenv("EMU_KEY", "wrong")
    with pytest.raises(ProviderError) as caught:
        send_issue(config, now=NOW, sleep=lambda _: None)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"{provider} 401: ")
    expected = {
        "postmark": "token",
        "sendgrid": "authorization grant is invalid",
        "mailgun": "Forbidden",
        "brevo": "Key not found",
    }[provider]
    assert expected in line
    # nobody was marked failed: the rows wait for a run with the right key
    states = Counter(state for state, _ in ledger_rows(config).values())
    assert states["failed-permanent"] == 0
    assert emu.counts() == {}


def test_substitution_uploads_html_once_per_request(
    emulators: dict[str, Any], sample_site: Path
) -> None:
    emu = emulators["sendgrid"]
    emu.reset()
    emu.clear_faults()
    config = make_site(sample_site, "sendgrid", emu.url, n=3, batch_size=None)
    send_issue(config, now=NOW, sleep=lambda _: None)
    messages = emu.messages()
    assert [m["request_id"] for m in messages] == [1, 1, 1]
    by_to = {m["to"]: m for m in messages}
    first, second = by_to[address(0)], by_to[address(1)]
    assert "/unsubscribe/" in first["headers"]["List-Unsubscribe"]
    assert first["headers"]["List-Unsubscribe"] != second["headers"]["List-Unsubscribe"]
    assert "[[digest:" not in first["html"] + first["text"] + first["subject"]
    # each recipient's own unsubscribe link was substituted into their HTML
    own = first["headers"]["List-Unsubscribe"].split(">")[0].lstrip("<")
    # (in HTML its query's "&" is written "&amp;")
    assert f'href="{html.escape(own)}"' in first["html"]
    assert html.escape(own) not in second["html"]
    assert first["tags"] == ["2026-W47"]


def test_suppressions_sync_from_every_provider_with_a_suppression_api(
    emulators: dict[str, Any], sample_site: Path
) -> None:
    from digest.delivery.suppressions import sync_suppressions

    # more than a page of addresses digest does not know (Brevo pages by 100, Mailgun by 1000)
    strangers = [f"stranger{i:04d}@example.org" for i in range(1100)]
    for provider in ("postmark", "sendgrid", "mailgun", "brevo"):
        emu = emulators[provider]
        emu.reset()
        emu.set_suppressions(
            bounced=[address(0), *strangers], spam=[address(1)], unsubscribed=[address(2)]
        )
        site = sample_site / provider
        site.mkdir()
        (site / "config.yaml").write_text((sample_site / "config.yaml").read_text())
        (site / "content").symlink_to(sample_site / "content")
        config = make_site(site, provider, emu.url, n=4, batch_size=None)
        report = sync_suppressions(config, now=NOW)
        assert report.changed == {
            address(0): "bounced",
            address(1): "complained",
            address(2): "unsubscribed",
        }
        with SubscriberStore(locate(config, config.subscribers.database)) as store:
            assert [store.get(address(i)).status for i in range(4)] == [  # type: ignore[union-attr]
                "bounced",
                "complained",
                "unsubscribed",
                "active",
            ]
        assert (report.fetched, report.unknown) == (1103, 1100), provider
        again = sync_suppressions(config, now=NOW)
        assert again.changed == {}
        assert again.already == 3


def test_digest_suppressions_sync_dry_run_then_for_real(
    emulators: dict[str, Any], sample_site: Path
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    emu = emulators["postmark"]
    emu.reset()
    emu.set_suppressions(
        bounced=[address(0), "stranger@example.org"], spam=[address(1)], unsubscribed=[]
    )
    config = make_site(sample_site, "postmark", emu.url, n=3, batch_size=None)
    args = ["--config", str(sample_site / "config.yaml"), "suppressions", "sync"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [
        "postmark: 3 suppressed addresses; would mark 2 subscribers; 0 already so; "
        "1 not subscribers",
        f"  bounced      {address(0)}",
        f"  complained   {address(1)}",
    ]
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        assert {s.status for s in store.list()} == {"active"}  # a dry run changes nothing
    done = CliRunner().invoke(main, [*args, "--json"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert (answer["changed"], answer["dry_run"]) == (
        {address(0): "bounced", address(1): "complained"},
        False,
    )
    again = CliRunner().invoke(main, args)
    assert again.stdout.startswith(
        "postmark: 3 suppressed addresses; marked 0 subscribers; 2 already so; "
    )


def test_digest_suppressions_sync_names_a_provider_without_lists(sample_site: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    refused = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "suppressions", "sync"]
    )
    assert refused.exit_code == 3
    assert refused.stderr.startswith(
        "error: provider.name: outbox keeps no suppression list digest can "
    )


# --------------------------------------------------------------------------------------------
# the npm emulators, behind a fault-injecting proxy


class FaultProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; injects faults in ``provider``'s shape on send requests."""

    daemon_threads = True

    def __init__(self, provider: str, upstream: str, send_path: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.provider = provider
        self.upstream = upstream
        self.send_path = send_path
        self.client = httpx.Client(timeout=60)
        self.lock = threading.Lock()
        self.rng = random.Random(5)
        self.storm = 0
        self.error_rate = 0.0
        self.drop = 0
        self.reject: str | None = None
        self.faults: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fault(self) -> str | None:
        with self.lock:
            if self.drop > 0:
                self.drop -= 1
                return "drop"
            if self.storm > 0:
                self.storm -= 1
                return "storm"
            if self.rng.random() < self.error_rate:
                return "error"
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        proxy = self.server
        if self.path != proxy.send_path:
            return self._forward(body)
        fault = proxy.fault()
        if fault:
            proxy.faults[fault] += 1
        if fault == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if fault == "storm":
            if proxy.provider == "resend":
                return self._reply(
                    429,
                    {
                        "statusCode": 429,
                        "name": "rate_limit_exceeded",
                        "message": "Too many requests.",
                    },
                    {
                        "ratelimit-limit": "2",
                        "ratelimit-remaining": "0",
                        "ratelimit-reset": "1",
                        "retry-after": "1",
                    },
                )
            return self._reply(
                429,
                {"message": "Maximum sending rate exceeded."},
                {"x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "1"},
            )
        if fault == "error":
            return self._reply(500, {"message": "internal error (emulated)"})
        return self._send_with_rejections(body)

    def _send_with_rejections(self, body: bytes) -> None:
        proxy = self.server
        data = json.loads(body)
        if proxy.provider == "resend":
            items = data
            refused = [
                i for i, e in enumerate(items) if re.search(proxy.reject or "^$", e["to"][0])
            ]
        else:
            items = data["BulkEmailEntries"]
            refused = [
                i
                for i, e in enumerate(items)
                if re.search(proxy.reject or "^$", e["Destination"]["ToAddresses"][0])
            ]
        kept = [item for i, item in enumerate(items) if i not in refused]
        if proxy.provider == "resend":
            forwarded: Any = kept
        else:
            forwarded = {**data, "BulkEmailEntries": kept}
        if not kept:
            answer: Any = (
                {"data": []} if proxy.provider == "resend" else {"BulkEmailEntryResults": []}
            )
        else:
            response = self._upstream(json.dumps(forwarded).encode())
            answer = response.json()
            if response.status_code != 200:
                return self._reply(response.status_code, answer)
        if proxy.provider == "resend":
            answer["errors"] = [
                {"index": i, "message": "Invalid `to` field: address refused"} for i in refused
            ]
        else:
            results = iter(answer["BulkEmailEntryResults"])
            answer["BulkEmailEntryResults"] = [
                {"Status": "MESSAGE_REJECTED", "Error": "Address is on the suppression list"}
                if i in refused
                else next(results)
                for i in range(len(items))
            ]
        return self._reply(200, answer)

    def _upstream(self, body: bytes) -> httpx.Response:
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "content-length", "connection")
        }
        return self.server.client.post(
            self.server.upstream + self.path, content=body, headers=headers
        )

    def _forward(self, body: bytes) -> None:
        response = self._upstream(body)
        self._reply(response.status_code, response.json())


@pytest.fixture(scope="module")
def resend_local() -> Iterator[Any]:
    with run_resend_local() as emu:
        yield emu


@pytest.fixture(scope="module")
def ses_local() -> Iterator[Any]:
    with run_ses_local() as emu:
        yield emu


def _proxy(provider: str, upstream: str, send_path: str) -> FaultProxy:
    proxy = FaultProxy(provider, upstream, send_path)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


@pytest.mark.parametrize("provider", ["resend", "ses"])
def test_npm_emulators_five_thousand_with_faults(
    provider: str, request: pytest.FixtureRequest, sample_site: Path
) -> None:
    emu = request.getfixturevalue("resend_local" if provider == "resend" else "ses_local")
    path = "/emails/batch" if provider == "resend" else "/v2/email/outbound-bulk-emails"
    proxy = _proxy(provider, emu.url, path)
    try:
        proxy.storm, proxy.error_rate, proxy.drop, proxy.reject = 3, 0.05, 1, REJECT
        config = make_site(sample_site, provider, proxy.url, n=N, batch_size=None)
        report, _ = send_to_the_end(config)
        if provider == "ses":
            # the dropped request and each 500 got no answer that settles them, and SES
            # cannot be asked: held uncertain until the operator sends them again
            assert report.ledger["uncertain"] > 0
            report, _ = send_to_the_end(config, resend_uncertain=True)
        sent = emu.sent()
        if provider == "resend":
            counts = Counter(to for e in sent for to in e["to"])
            assert all(not e["to"][0].startswith("[[") for e in sent)
        else:
            counts = Counter(to for e in sent for to in e["destination"]["to"])
            one = next(e for e in sent if e["destination"]["to"] == [address(0)])
            assert "[[digest:" not in one["body"]["html"] + one["subject"]
            unsubscribe = {h["name"]: h["value"] for h in one["headers"]}["List-Unsubscribe"]
            assert "/unsubscribe/" in unsubscribe
            own = unsubscribe.split(">")[0].lstrip("<")
            # SES escapes the value itself ("&" as "&amp;" in Handlebars; the emulator not)
            body = one["body"]["html"]
            assert f'href="{own}"' in body or f'href="{html.escape(own)}"' in body
        check_exactly_once(config, dict(counts), provider, N)
        assert proxy.faults["storm"] == 3 and proxy.faults["drop"] == 1
        assert proxy.faults["error"] >= 1
        assert report.ledger["failed-permanent"] == N // 100
        assert report.ledger["sent"] == N - N // 100
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_ses_simple_mode_sends_one_personal_message_each(ses_local: Any, sample_site: Path) -> None:
    before = len(ses_local.sent())
    n = 40
    config = make_site(
        sample_site, "ses", ses_local.url, n=n, batch_size=None, options={"mode": "simple"}
    )
    report = send_issue(config, now=NOW, sleep=lambda _: None)
    sent = ses_local.sent()[before:]
    counts = Counter(to for e in sent for to in e["destination"]["to"])
    assert counts == {address(i): 1 for i in range(n)}
    assert report.sent == n
    for message in sent:
        assert len(message["destination"]["to"]) == 1  # nobody sees another address
        html = message["body"]["html"]
        assert "[[digest:" not in html + message["subject"]
        headers = {h["name"]: h["value"] for h in message.get("headers", [])}
        # each message carries its own unsubscribe link, not someone else's
        assert "/unsubscribe/" in headers["List-Unsubscribe"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = {{h["name"]: h["value"] for h in m["headers"]}["List-Unsubscribe"] for m in sent}
    assert len(links) == n

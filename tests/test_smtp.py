"""The SMTP transport against a real SMTP server (aiosmtpd on loopback) that refuses.

Each refusal a server can give is one outcome for one recipient: a 5xx at RCPT TO, DATA or
the end of DATA fails that message for good, a 4xx leaves it to be tried again (transient:
never given up for good), except 421 and 451 after the end of DATA, which leave it
``uncertain`` (the server had the whole message), and the connection carries on with the next
recipient. A refused login stops the run with the
server's answer and names the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes
from typing import Any

import pytest

pytest.importorskip("aiosmtpd.controller")

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from digest.config import Config, parse_config
from digest.delivery.providers.base import Batch, Handoff, Recipient, Result
from digest.delivery.providers.registry import make_provider
from digest.email.message import to_message
from digest.errors import ProviderError
from tests.helpers import composed, free_port

pytestmark = pytest.mark.integration  # an SMTP server on loopback

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


class Refuser:
    """Refuses by address: ``mailfrom-5xx@…`` style local parts pick the step and the code."""

    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("rcpt-550"):
            return "550 5.1.1 No such user here"
        if address.startswith("rcpt-451"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        to = envelope.rcpt_tos[0]
        if to.startswith("eod-554"):
            return "554 5.7.1 Message rejected as spam"
        if to.startswith("eod-452"):
            return "452 4.2.2 Mailbox full"
        if to.startswith("eod-451"):
            return "451 4.3.0 Local error in processing"
        if to.startswith("eod-421"):
            return "421 4.3.2 Shutting down"
        message = message_from_bytes(envelope.content)
        self.accepted.append(f"{to} {message['Message-ID']}")
        return "250 2.0.0 Ok: queued as ABC123"


class PickySMTP(SMTP):
    """Refuses MAIL FROM for one sender and the DATA command for one recipient."""

    async def smtp_MAIL(self, arg: str) -> None:
        if arg and "blocked-sender" in arg:
            await self.push("553 5.7.1 Sender address rejected")
            return
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope.rcpt_tos and self.envelope.rcpt_tos[0].startswith("data-554"):
            await self.push("554 5.5.1 No valid recipients")
            return
        await super().smtp_DATA(arg)


class PickyController(Controller):
    def factory(self) -> SMTP:
        return PickySMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def server() -> Iterator[tuple[Refuser, int]]:
    handler = Refuser()
    port = free_port()
    controller = PickyController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def config_for(port: int, *, from_email: str = "news@example.com", **options: Any) -> Config:
    return parse_config(
        {
            "site": {"name": "Test", "base_url": "https://example.com"},
            "sender": {"from_name": "Test", "from_email": from_email},
            "provider": {"name": "smtp", "host": "127.0.0.1", "port": port, "security": "none"}
            | options,
        }
    )


def batch(addresses: list[str], from_email: str = "news@example.com") -> Batch:
    recipients = tuple(
        Recipient(i, a, {}, f"<m{i}@example.com>") for i, a in enumerate(addresses, start=1)
    )
    return Batch(
        issue_id="2026-W47",
        variant="all",
        composed=composed(sender=f"Test <{from_email}>"),
        recipients=recipients,
        idempotency_key="k",
        renderer=to_message,
        date=NOW,
    )


def results(config: Config, addresses: list[str], **kw: Any) -> dict[str, Result]:
    provider = make_provider(config)
    try:
        events = list(provider.send(batch(addresses, **kw)))
    finally:
        provider.close()
    by_id = {r.subscriber_id: r for r in events if isinstance(r, Result)}
    return {a: by_id[i] for i, a in enumerate(addresses, start=1)}


def test_each_refusal_is_one_recipients_outcome_and_the_connection_goes_on(
    server: tuple[Refuser, int],
) -> None:
    handler, port = server
    addresses = [
        "ok-1@example.org",
        "rcpt-550@example.org",
        "rcpt-451@example.org",
        "data-554@example.org",
        "eod-554@example.org",
        "eod-452@example.org",
        "ok-2@example.org",
    ]
    got = results(config_for(port), addresses)
    assert got["ok-1@example.org"].state == "sent"
    assert got["ok-1@example.org"].provider_message_id == "2.0.0 Ok: queued as ABC123"
    assert got["rcpt-550@example.org"].state == "failed-permanent"
    assert got["rcpt-550@example.org"].reason == "SMTP RCPT TO: 550 5.1.1 No such user here"
    assert got["rcpt-451@example.org"].state == "failed-retryable"
    assert got["rcpt-451@example.org"].reason == "SMTP RCPT TO: 451 4.3.0 Try again later"
    assert got["data-554@example.org"].state == "failed-permanent"
    assert got["data-554@example.org"].reason == "SMTP DATA: 554 5.5.1 No valid recipients"
    assert got["eod-554@example.org"].state == "failed-permanent"
    assert got["eod-554@example.org"].reason == (
        "SMTP end of DATA: 554 5.7.1 Message rejected as spam"
    )
    assert got["eod-452@example.org"].state == "failed-retryable"
    assert [got[a].transient for a in addresses] == [False, False, True, False, False, True, False]
    assert got["ok-2@example.org"].state == "sent"
    # only the two good ones reached a mailbox, each with its own Message-ID
    assert handler.accepted == [
        "ok-1@example.org <m1@example.com>",
        "ok-2@example.org <m7@example.com>",
    ]


def test_421_or_451_after_the_end_of_data_is_uncertain_and_the_next_message_goes_on(
    server: tuple[Refuser, int],
) -> None:
    handler, port = server
    addresses = ["eod-451@example.org", "eod-421@example.org", "ok-3@example.org"]
    got = results(config_for(port), addresses)
    assert [(got[a].state, got[a].reason) for a in addresses] == [
        (
            "uncertain",
            "SMTP end of DATA: 451 4.3.0 Local error in processing; the server had the whole "
            "message, so it may have queued it",
        ),
        (
            "uncertain",
            "SMTP end of DATA: 421 4.3.2 Shutting down; the server had the whole message, so "
            "it may have queued it",
        ),
        ("sent", None),
    ]
    assert handler.accepted == ["ok-3@example.org <m3@example.com>"]


def test_a_refused_sender_stops_the_send_and_nothing_is_taken(
    server: tuple[Refuser, int],
) -> None:
    handler, port = server
    sender = "blocked-sender@example.com"
    with pytest.raises(ProviderError) as caught:
        results(config_for(port, from_email=sender), ["a@example.org"], from_email=sender)
    assert str(caught.value) == "smtp: MAIL FROM refused: 553 5.7.1 Sender address rejected"
    assert not caught.value.retryable  # a 5xx: fixing it is the operator's job
    assert handler.accepted == []


def test_the_hand_off_comes_before_the_end_of_data(server: tuple[Refuser, int]) -> None:
    _, port = server
    provider = make_provider(config_for(port))
    try:
        events = list(provider.send(batch(["ok@example.org"])))
    finally:
        provider.close()
    assert [type(e).__name__ for e in events] == ["Handoff", "Result"]
    assert isinstance(events[0], Handoff) and events[0].subscriber_id == 1


@pytest.fixture
def auth_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        good = isinstance(data, LoginPassword) and data.password == b"right"
        return AuthResult(success=good, handled=False)

    port = free_port()
    controller = Controller(
        Refuser(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_a_refused_login_stops_the_run_and_names_the_user(
    auth_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    config = config_for(auth_server, username="digest", password="${SMTP_PASSWORD}")
    provider = make_provider(config)
    with pytest.raises(ProviderError) as caught:
        list(provider.send(batch(["a@example.org"])))
    message = str(caught.value)
    assert f"127.0.0.1:{auth_server} refused the login for digest: 535" in message
    assert "wrong" not in message  # the password never appears
    provider.close()


def test_a_right_login_sends(auth_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "right")
    config = config_for(auth_server, username="digest", password="${SMTP_PASSWORD}")
    got = results(config, ["a@example.org"])
    assert got["a@example.org"].state == "sent"


def test_no_server_is_a_retryable_stop_that_names_the_address() -> None:
    port = free_port()  # nothing listens here
    provider = make_provider(config_for(port))
    with pytest.raises(ProviderError) as caught:
        list(provider.send(batch(["a@example.org"])))
    assert f"cannot connect to 127.0.0.1:{port} (none)" in str(caught.value)
    assert caught.value.retryable

"""SMTP with the standard library: STARTTLS or SSL, login from the environment, one
connection reused for every message.

Each message is one MAIL/RCPT/DATA exchange, so each recipient gets their own outcome. Just
before the end-of-data mark (the moment the server may accept the message) the transport
yields a :class:`~digest.delivery.providers.base.Handoff`, which the send loop commits; the server's
reply is committed as soon as it arrives. After a crash, a row without a hand-off was never
accepted and is sent again; a row with one is ``uncertain`` (see docs/sending.md for the
exact window that leaves, and what decides about it).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from email.utils import parseaddr
from typing import TYPE_CHECKING

from digest.config.providers import SmtpSettings
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    Handoff,
    Provider,
    ProviderSettings,
    Result,
)
from digest.delivery.providers.classify import SmtpReply, no_answer, refused, smtp
from digest.delivery.providers.registry import register
from digest.email.dkim import Signer
from digest.errors import ProviderError

if TYPE_CHECKING:
    import httpx

    from digest.config import Config


_LEADING_DOT = re.compile(rb"(?m)^\.")
_EOL = re.compile(rb"\r\n|\r|\n")


def _data_bytes(raw: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ending in CRLF."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
        # Already CRLF throughout (the wire template's output): plain byte replaces.
        data = raw.replace(b"\r\n.", b"\r\n..")
        if data.startswith(b"."):
            data = b"." + data
    else:
        data = _LEADING_DOT.sub(b"..", _EOL.sub(b"\r\n", raw))
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class SmtpProvider(Provider):
    name = "smtp"
    Settings = SmtpSettings
    max_batch = 100
    default_concurrency = 1
    mixes_variants = True
    reports_handoff = True
    commit_each = True
    settles_uncertain = (
        "nothing digest can ask: SMTP has no way to ask a server what it queued; look for "
        "the Message-ID in the server's log, then decide with send.uncertain (hold or "
        "resend) or digest send --resend-uncertain"
    )

    def __init__(
        self, settings: ProviderSettings, config: Config, *, client: httpx.Client | None = None
    ) -> None:
        super().__init__(settings, config, client=client)
        assert isinstance(settings, SmtpSettings)
        self.smtp_settings = settings
        self._conn: smtplib.SMTP | None = None
        self._signer: Signer | None = None
        if settings.dkim_key_file is not None:  # sign every message (DkimError if unusable)
            domain = settings.dkim_domain or config.sender.from_email.rsplit("@", 1)[1]
            key = config.path(settings.dkim_key_file)
            self._signer = Signer(key, settings.dkim_selector, domain.lower())

    # -- the connection

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        s = self.smtp_settings
        port = s.port or (465 if s.security == "ssl" else 587)
        where = f"{s.host}:{port}"
        try:
            conn: smtplib.SMTP
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(
                    s.host,
                    port,
                    timeout=s.timeout,
                    local_hostname=s.local_hostname,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(
                    s.host, port, timeout=s.timeout, local_hostname=s.local_hostname
                )
                if s.security == "starttls":
                    conn.starttls(context=ssl.create_default_context())
            conn.ehlo_or_helo_if_needed()
            _no_delay(conn)
            if s.username:
                password = s.password.resolve() if s.password else ""
                conn.login(s.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(
                "smtp",
                f"{where} refused the login for {s.username}: {exc.smtp_code} {exc.smtp_error!r}",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ProviderError(
                "smtp", f"cannot connect to {where} ({s.security}): {exc}", retryable=True
            ) from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError):
                conn.close()

    # -- preflight

    def preflight(self) -> list[Check]:
        """Connect, EHLO, STARTTLS/SSL and log in as a send would; then QUIT."""
        s = self.smtp_settings
        try:
            self._connect()
        finally:
            self.close()
        login = f"logged in as {s.username}" if s.username else "no login configured"
        return [Check("credentials", True, f"{s.host}: connected ({s.security}), {login}")]

    # -- sending

    def send(self, batch: Batch) -> Iterator[Event]:
        sender = parseaddr(batch.composed.from_address)[1] or self.config.sender.from_email
        for recipient in batch.recipients:
            raw = batch.wire_bytes(recipient)
            if self._signer is not None:
                raw = self._signer.sign(_EOL.sub(b"\r\n", raw))
            payload = _data_bytes(raw)
            yield from self._one(sender, recipient.subscriber_id, recipient.email, payload)

    def _one(self, sender: str, subscriber_id: int, to: str, payload: bytes) -> Iterator[Event]:
        conn = self._connect()
        handed_off = False
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                # about the sender or the session, not this recipient: stop the send (the
                # message was not taken, so it stays pending for the next run)
                self._drop()
                verdict = smtp(SmtpReply(code, _text(reply), "MAIL FROM", session=True))
                raise ProviderError(
                    "smtp", f"MAIL FROM refused: {code} {_text(reply)}", retryable=verdict.transient
                )
            code, reply = conn.rcpt(to)
            if code not in (250, 251):
                yield self._refused(conn, subscriber_id, SmtpReply(code, _text(reply), "RCPT TO"))
                return
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                yield self._refused(conn, subscriber_id, SmtpReply(code, _text(reply), "DATA"))
                return
            conn.send(payload)
            try:
                yield Handoff(subscriber_id)
            except GeneratorExit:
                # the send loop refused the hand-off (a lost lease, an unsubscribe): drop
                # the connection mid-DATA, so the message is never completed
                self._drop()
                raise
            handed_off = True
            conn.send(b".\r\n")
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            if handed_off:
                verdict = no_answer(
                    f"the connection failed after the message was handed over ({exc})"
                )
            else:
                verdict = refused(f"SMTP connection: {exc}", transient=True)
            yield verdict.result(subscriber_id)
            return
        verdict = smtp(SmtpReply(code, _text(reply), "end of DATA"))
        if verdict.kind == "accepted":
            yield Result(subscriber_id, "sent", provider_message_id=_queue_id(reply))
            return
        if code == 421:
            self._drop()  # the server is closing the session
        yield verdict.result(subscriber_id)

    def _refused(self, conn: smtplib.SMTP, subscriber_id: int, reply: SmtpReply) -> Result:
        """A refusal before the end of DATA: nothing was taken (classify.smtp)."""
        verdict = smtp(reply)
        if reply.code == 421:  # the server is closing the session: stop, nothing was taken
            self._drop()
            raise ProviderError("smtp", f"{reply.step}: {reply.code} {reply.text}", retryable=True)
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()  # the next message starts on a new connection
        return verdict.result(subscriber_id)


def _text(reply: bytes) -> str:
    return reply.decode(errors="replace")


def _no_delay(conn: smtplib.SMTP) -> None:
    """Turn off Nagle's algorithm on the connection.

    Each message is written in two parts (the content, then the end-of-data mark after
    the hand-off is committed). With Nagle on, the small second write waits for the ACK
    of the first, which the server delays (40 ms on Linux): about 40 ms per message.
    """
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _queue_id(reply: bytes) -> str:
    return reply.decode(errors="replace").strip()[:200]


register("smtp", SmtpProvider)

"""The per-recipient message: markers, personalisation, message ids and wire bytes.

A composed email (:class:`ComposedEmail`) is one issue's subject, HTML, text and headers
with literal markers (:data:`PLACEHOLDERS`, grammar :data:`MARKER`) where each recipient's
values go. This module is the one place that knows them:

* :func:`fill` puts one recipient's values in (HTML-escaped in the HTML part only); a
  marker without a value becomes empty, whatever the transport;
* :func:`rewrite` turns markers into a provider's own substitution syntax;
* :func:`recipient_values` is what one subscriber's markers hold; :func:`message_id_for`
  their Message-ID, the same on every attempt;
* :func:`to_message` builds the ``email`` package's message, and :class:`WireTemplate` the
  same bytes at a fraction of the cost for many recipients of one variant.
"""

from __future__ import annotations

import binascii
import hashlib
import html as html_lib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Protocol

from digest.audience.links import subscriber_urls, with_query
from digest.audience.subscribers import Subscriber
from digest.audience.tokens import make_token, newsletter_seal, signing_key
from digest.config import Config
from digest.email.headers import encoded_words
from digest.textsafe import header_value

PLACEHOLDERS: dict[str, str] = {
    "unsubscribe_url": "[[digest:unsubscribe_url]]",
    "preferences_url": "[[digest:preferences_url]]",
    "name": "[[digest:name]]",
    "email": "[[digest:email]]",
}
MARKER = re.compile(r"\[\[digest:([a-z_][a-z0-9_]*)\]\]")


@dataclass(frozen=True)
class ComposedEmail:
    """One issue's email, with per-subscriber markers still in place."""

    issue_id: str
    subject: str
    preheader: str
    html: str
    text: str
    headers: dict[str, str]
    from_address: str
    reply_to: str | None
    sections: tuple[str, ...]
    post_count: int
    trimmed: tuple[str, ...] = ()
    posts: tuple[tuple[str, str, str], ...] = ()  # (section, slug, url) in email order
    warnings: tuple[str, ...] = ()
    composed_at: datetime | None = None
    size_budget: int = 100 * 1024
    list_id: str = ""
    web: bool = False
    sent_size: int | None = None  # bytes of the HTML part as sent (personalised, encoded)

    @property
    def html_size(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def text_size(self) -> int:
        return len(self.text.encode("utf-8"))


class MessageParts(Protocol):
    """What a transport needs from an email: a :class:`ComposedEmail`, or a service mail
    such as ``digest serve``'s confirmation."""

    @property
    def issue_id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def from_address(self) -> str: ...


@dataclass(frozen=True)
class Personalised:
    """A composed email with one subscriber's values filled in."""

    subject: str
    html: str
    text: str
    headers: dict[str, str]


# --------------------------------------------------------------------------- markers


def marker_names(*texts: str) -> list[str]:
    """Every marker name used in ``texts``, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in MARKER.finditer(text):
            seen.setdefault(match.group(1), None)
    return list(seen)


def fill(text: str, values: Mapping[str, str], *, html: bool = False) -> str:
    """Replace every marker with its value (HTML-escaped when ``html``).

    A marker without a value becomes empty: the same rule as every provider's own
    substitution, so a recipient reads the same words whichever transport carries them.
    """

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1), "")
        return html_lib.escape(value, quote=True) if html else value

    return MARKER.sub(replace, text)


def rewrite(text: str, placeholder: Callable[[str], str]) -> str:
    """Replace each marker with a provider's placeholder for that variable name."""
    return MARKER.sub(lambda match: placeholder(match.group(1)), text)


def header_values(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` as they may go into a header: one line each (CR, LF and every other
    control character become a space), so a name cannot add a header of its own."""
    return {name: header_value(value) for name, value in values.items()}


def personalise(composed: ComposedEmail, values: Mapping[str, str]) -> Personalised:
    """Fill the markers with one subscriber's values (HTML-escaped in the HTML only, one
    line in the subject and headers)."""
    one_line = header_values(values)
    return Personalised(
        subject=fill(composed.subject, one_line),
        html=fill(composed.html, values, html=True),
        text=fill(composed.text, values),
        headers={k: fill(v, one_line) for k, v in composed.headers.items()},
    )


def proof_message_id(composed: ComposedEmail, to: str) -> str:
    """A proof copy's Message-ID: the same for the same issue, content and recipient."""
    domain = composed.from_address.rsplit("@", 1)[-1].rstrip(">") or "digest.invalid"
    digest = hashlib.sha256(f"{composed.issue_id}\0{to}\0{composed.html}".encode()).hexdigest()
    return f"<{composed.issue_id}.{digest[:24]}@{domain}>"


def to_message(
    composed: ComposedEmail,
    *,
    to: str,
    values: Mapping[str, str],
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The complete multipart/alternative message for one recipient."""
    to = header_value(to)
    filled = personalise(composed, {"email": to, **values})
    message = EmailMessage(policy=SMTP)
    message["From"] = filled.headers["From"]
    message["To"] = to
    if "Reply-To" in filled.headers:
        message["Reply-To"] = filled.headers["Reply-To"]
    if filled.subject.isascii():
        message["Subject"] = filled.subject
    else:  # stored folded: the encoder's own folding can lose a space (email/headers.py)
        message.set_raw("Subject", encoded_words(filled.subject))
    when = date or composed.composed_at
    if when is None:
        raise ValueError("to_message needs a date when the email was composed without one")
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id or proof_message_id(composed, to)
    for name in ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
        if name in filled.headers:
            message[name] = filled.headers[name]
    message.set_content(filled.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(filled.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary derived from the content keeps the bytes stable; "=_" cannot occur in
    # quoted-printable text, so it cannot collide with the parts.
    seed = f"{message['Message-ID']}\0{filled.text}\0{filled.html}".encode()
    message.set_boundary(f"=_digest_{hashlib.sha256(seed).hexdigest()[:32]}")
    return message


# --------------------------------------------------------------------------- wire bytes

# Headers that are pure ASCII are written on one line up to 998 characters (RFC 5322), so a
# long List-Unsubscribe URL stays one token; headers that need RFC 2047 encoded words are
# folded at 78 so that no encoded word is longer than 75 characters.
_LONG_LINES = SMTP.clone(max_line_length=998)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOTTED = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_ADDRESS = re.compile(rf"{_DOTTED}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_PLAIN_MESSAGE_ID = re.compile(rf"<{_DOTTED}@{_DOTTED}>")


_ADDRESS_HEADERS = frozenset({"From", "To", "Cc", "Reply-To", "Sender"})


def wire_header(name: str, value: str) -> bytes:
    """One header line (folded if needed), CRLF-terminated, as ``to_message`` would write it.

    Short plain-ASCII values (a bare address for address headers, ``<id@host>`` for
    Message-ID, anything without encoded-word look-alikes for free-text headers) are
    written as they are; everything else goes through the ``email`` package's header
    registry (RFC 2047 encoded words for non-ASCII, address and Message-ID syntax).
    """
    plain = (
        value.isascii()
        and "=?" not in value
        and "\r" not in value
        and "\n" not in value
        and "  " not in value
        and len(name) + len(value) + 2 <= 998
        and value == value.strip()
    )
    if plain:
        if name in _ADDRESS_HEADERS:
            plain = _PLAIN_ADDRESS.fullmatch(value) is not None
        elif name == "Message-ID":
            plain = _PLAIN_MESSAGE_ID.fullmatch(value) is not None
        elif name == "Date":
            plain = False
    if plain:
        return f"{name}: {value}\r\n".encode("ascii")
    return _fold_header(name, value)


@lru_cache(maxsize=1024)  # From, Date, List-Id... are the same for every variant of an issue
def _fold_header(name: str, value: str) -> bytes:
    if name == "Subject" and not value.isascii():
        return f"Subject: {encoded_words(value)}\r\n".encode("ascii")
    policy = _LONG_LINES if value.isascii() else SMTP
    folded: str = policy.header_factory(name, value).fold(policy=policy)
    return folded.encode("ascii")


def qp_lines(text: str) -> bytes:
    """Quoted-printable (RFC 2045) of UTF-8 ``text`` with CRLF line ends.

    Line ends are normalised the way ``EmailMessage.set_content`` does (``\\r\\n``, ``\\r``
    and ``\\n`` each end a line, and the body ends with one). ``binascii.b2a_qp`` encodes
    ``=``, every byte outside printable ASCII, and a space or tab at the end of a line;
    soft line breaks keep each line at 76 characters or fewer. A ``.`` at the start of a
    line is left alone: doubling it is the SMTP layer's job.
    """
    return _qp(_lines(text) or [""])


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    """``text``'s lines as the email package reads them: only CR, LF and CRLF end a line
    (not the other breaks ``str.splitlines`` knows), and a final line end closes the last
    line rather than starting an empty one."""
    lines = _LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _qp(lines: list[str]) -> bytes:
    body = b"".join(line.encode("utf-8") + b"\n" for line in lines)
    return binascii.b2a_qp(body, istext=True).replace(b"\n", b"\r\n")


class _Body:
    """One part's body, quoted-printable encoded once except for the lines with markers.

    QP encoding of a line depends only on that line, so runs of lines without markers are
    encoded once per variant; each recipient costs one substitution and one encoding of
    the few lines that hold markers.
    """

    def __init__(self, text: str, escape: bool) -> None:
        self.escape = escape
        self.parts: list[bytes | str] = []
        lines = _lines(text)
        static: list[str] = []
        for line in lines:
            if "[[digest:" in line:
                if static:
                    self.parts.append(_qp(static))
                    static = []
                self.parts.append(line)
            else:
                static.append(line)
        if static:
            self.parts.append(_qp(static))
        if not lines:
            self.parts.append(qp_lines(""))

    def render(self, values: Mapping[str, str]) -> bytes:
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            else:
                # a value may hold line ends of its own: they end lines here too
                out.append(_qp(_LINE_BREAK.split(fill(part, values, html=self.escape))))
        return b"".join(out)


@lru_cache(maxsize=16)
def encoded_body(text: str, escape: bool) -> _Body:
    """``text`` as a :class:`_Body`, encoded once however often it is asked for.

    A variant's HTML is measured against the size budget while it is trimmed, measured
    again for its composed email, and written by its wire template: each of those is the
    same quoted-printable encoding, so it is done once per text. The cache holds the last
    few texts only (a send holds :data:`~digest.delivery.preferences.VARIANTS_HELD`
    variants at a time), so memory stays flat however many variants a send makes.
    """
    return _Body(text, escape)


def sent_bytes(html: str, values: Mapping[str, str]) -> int:
    """Bytes of an HTML part as sent: personalised with ``values``, then quoted-printable
    encoded (the same as ``len(qp_lines(fill(html, values, html=True)))``)."""
    return len(encoded_body(html, True).render(values))


class WireTemplate:
    """The bytes of one variant's message, built once; :meth:`render` fills one recipient.

    Produces what ``to_message(...).as_bytes(policy=WIRE_POLICY)`` does (the same headers,
    the same decoded parts; tests compare the two) at a fraction of the cost: the shared
    headers, the multipart structure with a fixed per-variant boundary and the part
    headers are written once; per recipient only the markers are substituted, the lines
    holding them are quoted-printable encoded, and To, Message-ID and any header holding
    a marker are written.
    """

    def __init__(self, composed: ComposedEmail, *, date: datetime | None = None) -> None:
        when = date or composed.composed_at
        if when is None:
            raise ValueError("a wire template needs a date when the email has none")
        headers: Mapping[str, str] = composed.headers
        self.subject: str = composed.subject
        seed = f"{composed.issue_id}\0{composed.text}\0{composed.html}\0{self.subject}".encode()
        boundary = f"=_digest_{hashlib.sha256(seed).hexdigest()[:32]}"
        # (name, template): bytes when fixed for the variant, str when it holds markers.
        self.head: list[tuple[str, bytes | str]] = []

        def add(name: str, value: str) -> None:
            self.head.append((name, value if "[[digest:" in value else wire_header(name, value)))

        add("From", headers["From"])
        self.head.append(("To", ""))
        if "Reply-To" in headers:
            add("Reply-To", headers["Reply-To"])
        add("Subject", self.subject)
        add("Date", format_datetime(when))
        self.head.append(("Message-ID", ""))
        for name in ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
            if name in headers:
                add(name, headers[name])
        self.structure = (
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="' + boundary.encode() + b'"\r\n'
            b"\r\n--" + boundary.encode() + b"\r\n"
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self.middle = (
            b"\r\n--" + boundary.encode() + b"\r\n"
            b'Content-Type: text/html; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n"
            # add_alternative() writes this on the HTML part too; kept for identical parts.
            b"MIME-Version: 1.0\r\n\r\n"
        )
        self.end = b"\r\n--" + boundary.encode() + b"--\r\n"
        self.text = encoded_body(composed.text, False)
        self.html = encoded_body(composed.html, True)

    def render(self, *, to: str, values: Mapping[str, str], message_id: str) -> bytes:
        """The whole message for one recipient, CRLF line ends, ready for a file or DATA."""
        filled = {"email": to, **values}
        one_line = header_values(filled)
        out: list[bytes] = []
        for name, template in self.head:
            if name == "To":
                out.append(wire_header("To", one_line["email"]))
            elif name == "Message-ID":
                out.append(wire_header("Message-ID", header_value(message_id)))
            elif isinstance(template, bytes):
                out.append(template)
            else:
                out.append(wire_header(name, fill(template, one_line)))
        out.append(self.structure)
        out.append(self.text.render(filled))
        out.append(self.middle)
        out.append(self.html.render(filled))
        out.append(self.end)
        return b"".join(out)


# --------------------------------------------------------------------------- recipients


def recipient_values(
    config: Config, subscriber: Subscriber, server: bytes | None
) -> dict[str, str]:
    """What one subscriber's markers hold: name, address and their signed links.

    With several newsletters, the unsubscribe link names ``config``'s newsletter, sealed
    (:func:`~digest.audience.tokens.newsletter_seal`): one click on it ends that one."""
    key = signing_key(subscriber.secret, server)
    urls = subscriber_urls(
        config,
        unsubscribe_token=make_token("unsubscribe", subscriber.handle, key),
        preferences_token=make_token("preferences", subscriber.handle, key),
    )
    if len(config.newsletter_names) > 1:
        name = config.newsletter_name
        seal = newsletter_seal(key, subscriber.handle, name)
        urls["unsubscribe_url"] = with_query(
            urls["unsubscribe_url"], {"newsletter": name, "seal": seal}
        )
    return {"name": subscriber.name, "email": subscriber.email, **urls}


def message_id_for(config: Config, issue_id: str, subscriber_id: int) -> str:
    """The same Message-ID on every attempt, so mail clients can spot a repeat."""
    domain = parseaddr(config.sender.from_email)[1].rpartition("@")[2] or "digest.invalid"
    tag = hashlib.sha256(f"{issue_id}\x00{subscriber_id}".encode()).hexdigest()[:20]
    return f"<{issue_id}.{tag}@{domain}>"


def sample_values(config: Config) -> dict[str, str]:
    """Values for a proof copy sent to the sender: real-looking links, no real token."""
    urls = subscriber_urls(config, unsubscribe_token="preview", preferences_token="preview")
    return {**urls, "name": "", "email": config.sender.from_email}

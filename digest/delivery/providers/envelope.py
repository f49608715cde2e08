"""A message for an HTTP email API: markers rewritten into a provider's substitution syntax
(:class:`Substitution`, :func:`substitute`: their grammar and filling rule are
:mod:`digest.email.message`'s), the envelope every API reads (:class:`Envelope`), and the
JSON body (:func:`encode_json`)."""

from __future__ import annotations

import html as html_lib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from digest.delivery.providers.base import (
    Batch,
    Recipient,
)
from digest.delivery.providers.defuse import Defuse
from digest.email.message import MARKER, marker_names, rewrite

# --------------------------------------------------------------------------------------------
# markers (their grammar and filling rule: digest.email.message)


@dataclass(frozen=True)
class Substitution:
    """A variant rewritten for a provider that substitutes per recipient.

    ``html_keys`` maps a marker name to the variable the HTML part reads: the plain name when
    no recipient's value changes under HTML escaping, else ``<name>_html`` (so only the
    recipients who need an escaped copy pay for one).
    """

    subject: str
    html: str
    text: str
    headers: dict[str, str]
    names: tuple[str, ...]
    html_keys: dict[str, str]

    def variables(self, values: Mapping[str, str]) -> dict[str, str]:
        """One recipient's variables: only the names the variant uses."""
        out: dict[str, str] = {}
        for name in self.names:
            out[name] = values.get(name, "")
        for name, key in self.html_keys.items():
            if key != name:
                out[key] = html_lib.escape(values.get(name, ""), quote=True)
        return out


def substitute(
    subject: str,
    html: str,
    text: str,
    headers: Mapping[str, str],
    recipients: Sequence[Recipient],
    placeholder: Callable[[str], str],
    *,
    defuse: Defuse,
    html_placeholder: Callable[[str], str] | None = None,
    escapes_html: bool = False,
) -> Substitution:
    """Rewrite one variant's markers into a provider's syntax for these recipients.

    ``defuse`` first breaks every occurrence of the provider's own syntax (content is data:
    :mod:`.defuse`), so the only placeholders the provider fills are digest's.
    ``escapes_html``: the provider escapes a value it puts in the HTML itself (SES's
    Handlebars ``{{x}}``), so the HTML names the plain value, never an ``_html`` copy.
    """
    subject, text = defuse(subject), defuse(text)
    html = defuse(html, html=True)
    headers = {k: defuse(v) for k, v in headers.items()}
    names = marker_names(subject, text, html, *headers.values())
    html_names = marker_names(html)
    html_keys: dict[str, str] = {}
    for name in html_names:
        needs_escape = any(
            html_lib.escape(r.values.get(name, ""), quote=True) != r.values.get(name, "")
            for r in recipients
        )
        html_keys[name] = f"{name}_html" if needs_escape and not escapes_html else name
    html_ph = html_placeholder or placeholder
    return Substitution(
        subject=rewrite(subject, placeholder),
        html=MARKER.sub(lambda m: html_ph(html_keys[m.group(1)]), html),
        text=rewrite(text, placeholder),
        headers={k: rewrite(v, placeholder) for k, v in headers.items()},
        names=tuple(names),
        html_keys=html_keys,
    )


# --------------------------------------------------------------------------------------------
# the message's envelope

# Headers an API takes as fields of its own, or sets itself; never passed as custom headers.
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "reply-to",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "sender",
    }
)


@dataclass(frozen=True)
class Envelope:
    """The parts of a composed variant every API wants as separate fields."""

    from_address: str  # as formatted: "Name <addr>"
    from_email: str
    from_name: str
    reply_to: str | None
    subject: str
    html: str
    text: str
    headers: dict[str, str]  # custom headers only (List-Unsubscribe, List-Id, …)

    @classmethod
    def of(cls, batch: Batch) -> Envelope:
        composed = batch.composed
        reply_to = None
        custom: dict[str, str] = {}
        for name, value in composed.headers.items():
            lowered = name.lower()
            if lowered == "reply-to":
                reply_to = value
            elif lowered not in _OWN_HEADERS:
                custom[name] = value
        name, email = getaddresses([composed.from_address])[0]
        subject = composed.subject
        if batch.test and not subject.startswith("[TEST]"):
            subject = f"[TEST] {subject}"
        return cls(
            from_address=composed.from_address,
            from_email=email or composed.from_address,
            from_name=name,
            reply_to=reply_to,
            subject=subject,
            html=composed.html,
            text=composed.text,
            headers=custom,
        )

    def substitute(
        self, recipients: Sequence[Recipient], placeholder: Callable[[str], str], defuse: Defuse
    ) -> Substitution:
        """:func:`substitute` over this envelope's subject, HTML, text and headers."""
        return substitute(
            self.subject,
            self.html,
            self.text,
            self.headers,
            recipients,
            placeholder,
            defuse=defuse,
        )


def encode_json(value: Any) -> bytes:
    """Compact JSON: fewer bytes on the wire than the default separators."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

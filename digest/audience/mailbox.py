"""The mailbox an address reaches: one canonical form for every limit and suppression check.

Several spellings reach one inbox. ``Ann.Lee@gmail.com``, ``annlee+x@googlemail.com`` and
``ANNLEE@gmail.com`` are one Gmail mailbox; a limit that counts spellings lets one client
send a hundred confirmations to it. :func:`mailbox_key` folds those spellings together:

- case: the local part and the domain are compared case-folded;
- Unicode: the address is NFC-normalised and an internationalised domain is written in its
  ASCII (punycode) form, so ``ann@bücher.example`` and ``ann@xn--bcher-kva.example`` are one;
- ``+tags``: dropped on every domain. Gmail, Outlook and Exchange Online, iCloud,
  Fastmail, Proton and the usual mail servers (Postfix, Exim with a recipient delimiter)
  deliver ``name+tag`` to ``name`` (RFC 5233 subaddresses), and a domain's own server may do
  so without saying: counting ``ann+1`` and ``ann+2`` apart would let one client mail any
  such inbox without limit. The cost, on a server where ``+`` is part of a name, is that
  ``ann+x`` and ``ann`` share one limit and one suppression; :data:`PLUS_TAG_DOMAINS`
  lists the domains known to deliver them (documentation, and tests);
- dots: dropped in the local part where the domain ignores them (:data:`DOTLESS_DOMAINS`);
- aliases of one provider's domain (:data:`DOMAIN_ALIASES`: ``googlemail.com`` is
  ``gmail.com``).

The key is for comparing only: the address stored and mailed stays what the subscriber
typed (normalised by :func:`digest.audience.subscribers.normalise_email`).
"""

from __future__ import annotations

import hashlib
import unicodedata

DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
"""Domains that are another name for one provider's mailboxes."""

DOTLESS_DOMAINS = frozenset({"gmail.com"})
"""Domains whose mailboxes ignore dots in the local part (after :data:`DOMAIN_ALIASES`)."""

PLUS_TAG_DOMAINS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "protonmail.com",
        "proton.me",
        "pm.me",
    }
)
"""Domains known to deliver ``name+tag@domain`` to ``name@domain`` (after
:data:`DOMAIN_ALIASES`). Tags are dropped on other domains too (see above)."""


def _ascii_domain(domain: str) -> str:
    folded = unicodedata.normalize("NFC", domain).strip().rstrip(".").casefold()
    if folded.isascii():
        return folded
    labels = []
    for label in folded.split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if label else label)
        except UnicodeError:  # not a valid IDN label: compare it as written
            labels.append(label)
    return ".".join(labels)


def mailbox_key(email: str) -> str:
    """The canonical mailbox of ``email`` (any spelling), for limits and suppressions."""
    text = unicodedata.normalize("NFC", email).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return text.casefold()
    host = _ascii_domain(domain)
    host = DOMAIN_ALIASES.get(host, host)
    name = local.casefold()
    name = name.split("+", 1)[0] or name  # every domain: see the module's docstring
    if host in DOTLESS_DOMAINS:
        name = name.replace(".", "") or name
    return f"{name}@{host}"


def mail_key(email: str) -> str:
    """What the ``service_mail`` table keeps for an address: a hash of its canonical mailbox
    (:func:`~digest.audience.mailbox.mailbox_key`), so every spelling of one inbox counts
    against one limit and the table holds no address."""
    return hashlib.sha256(b"digest-mailbox-v1\x00" + mailbox_key(email).encode()).hexdigest()

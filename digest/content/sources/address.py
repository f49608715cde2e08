"""Whether a feed URL may be fetched: public addresses only, unless the operator allows more.

A feed (or a redirect a feed's server answers with) pointing at ``127.0.0.1``, a private
network, a link-local address such as a cloud's metadata service, or any other address that
is not on the public internet would make digest a door into the operator's own network.
Such a URL is refused, by its literal address or by what its host name resolves to, unless
the source sets ``allow_private_addresses: true``.

The name is resolved once, and the request connects to the address that was checked
(:func:`pin`): a name that answers with a public address to the check and with
``127.0.0.1`` to the connection (DNS rebinding) gets no second chance to answer. The
request still names the host in its ``Host`` header, and over https in the TLS server name,
which the server's certificate is checked against, as a request by name would.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from digest.errors import SourceError

ALLOW_HINT = "set allow_private_addresses: true on the source to fetch it"

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses``; raises OSError when the name does not resolve."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system's resolver), in its order."""
    found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


@dataclass(frozen=True)
class Pinned:
    """A request pinned to a checked address."""

    url: str
    """The URL to request: the host replaced by the address that was checked."""
    host: str
    """The ``Host`` header: the host (and port) as the original URL names them."""
    server_name: str | None
    """The TLS server name (https only): the original host, so its certificate is checked."""


def _not_public(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return not address.is_global or address.is_multicast


def pin(url: str, resolver: Resolver = resolve, *, hint: str = ALLOW_HINT) -> Pinned:
    """Resolve ``url``'s host once, refuse it (SourceError) when it is or resolves to a
    non-public address, or does not resolve, and return the request that connects to the
    first address checked. A refusal ends with ``hint`` (how to allow it), when given."""
    tail = f"; {hint}" if hint else ""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SourceError(f"{url}: not a valid URL: {exc}") from None
    host = parsed.host
    if not host:
        raise SourceError(f"{url} names no host")
    name = parsed.raw_host.decode("ascii")  # an international name in its IDNA form
    netloc = parsed.netloc.decode("ascii")
    server_name = name if parsed.scheme == "https" else None
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _not_public(literal):
            raise SourceError(f"{url}: {host} is not a public address{tail}")
        return Pinned(url, netloc, None)  # a literal address cannot resolve differently
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = resolver(name, port)
    except (OSError, ValueError, UnicodeError) as exc:
        # refused rather than left to the connection's own lookup: a second lookup is
        # exactly what a rebinding name answers differently
        raise SourceError(f"{url}: cannot resolve {host}: {exc}") from None
    checked: list[IPAddress] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if _not_public(address):
            raise SourceError(f"{url}: {host} resolves to {address}, not a public address{tail}")
        checked.append(address)
    if not checked:
        raise SourceError(f"{url}: cannot resolve {host}: no address")
    return Pinned(str(parsed.copy_with(host=str(checked[0]))), netloc, server_name)

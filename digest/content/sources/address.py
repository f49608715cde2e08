"""Whether a feed URL may be fetched: public addresses only, unless the operator allows more.

A feed (or a redirect a feed's server answers with) pointing at ``127.0.0.1``, a private
network, a link-local address such as a cloud's metadata service, or any other address that
is not on the public internet would make digest a door into the operator's own network.
Such a URL is refused, by its literal address or by what its host name resolves to, unless
the source sets ``allow_private_addresses: true``.

The check resolves the name once before the request; the connection resolves it again,
so a name that answers differently the second time (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from digest.errors import SourceError

ALLOW_HINT = "set allow_private_addresses: true on the source to fetch it"


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return not address.is_global or address.is_multicast


def check_address(url: str) -> None:
    """Raise SourceError when ``url``'s host is, or resolves to, a non-public address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise SourceError(f"{url} names no host")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _not_public(literal):
            raise SourceError(f"{url}: {host} is not a public address; {ALLOW_HINT}")
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        return  # unresolvable: the request fails on its own, with its own message
    for *_, sockaddr in found:
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            continue
        if _not_public(address):
            raise SourceError(
                f"{url}: {host} resolves to {address}, not a public address; {ALLOW_HINT}"
            )

"""A real DNS server on loopback (dnslib's), serving the zones a test gives it.

``records`` maps (name, type) to answers: TXT strings, or ``(preference, host)`` for MX. A
name with no records of the asked type answers NOERROR with nothing; an unknown name
answers NXDOMAIN, as a real authoritative server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import MX, QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Records = dict[tuple[str, str], list[Any]]


def _txt(text: str) -> TXT:
    data = text.encode()
    return TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, records: Records) -> None:
        self.records = {(n.lower().rstrip("."), t): v for (n, t), v in records.items()}
        self.names = {n for n, _ in self.records}
        self.questions: list[tuple[str, str]] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        kind = QTYPE[request.q.qtype]
        self.questions.append((name, kind))
        if name not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in self.records.get((name, kind), []):
            if kind == "TXT":
                reply.add_answer(RR(name, QTYPE.TXT, rdata=_txt(value), ttl=60))
            elif kind == "MX":
                reply.add_answer(RR(name, QTYPE.MX, rdata=MX(value[1], value[0]), ttl=60))
        return reply


@contextmanager
def dns_server(records: Records) -> Iterator[tuple[int, ZoneResolver]]:
    """Serve ``records`` over UDP on 127.0.0.1; yields (port, resolver)."""
    resolver = ZoneResolver(records)
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        yield server.server.server_address[1], resolver
    finally:
        server.stop()
        server.server.server_close()

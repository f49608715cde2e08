"""The SMTP half of the sink: an aiosmtpd server on loopback that counts every recipient
whose message it *accepted* (a 250 after the end of DATA, or an accept followed by a fault
below) and injects faults on command:

==================  ===================================================================
``451_before``      ``451 4.3.0`` to RCPT TO: refused before any data (transient)
``421_before``      ``421 4.3.2`` to MAIL FROM, and the connection closed
``451_after``       the data is read, then ``451 4.3.0``: not accepted (transient)
``421_after``       the message is accepted, then ``421`` and the connection closed
``drop_after``      the message is accepted, then the connection closed with no reply
==================  ===================================================================

A fault lasts for ``times`` messages, or ``seconds``, or until :meth:`SmtpSink.clear`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SmtpFault:
    kind: str
    times: int | None
    until: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpSink:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.refused = 0
        self._fault: SmtpFault | None = None
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    # ------------------------------------------------------------------ the test's controls

    def fail(self, kind: str, *, times: int | None = None, seconds: float | None = None) -> None:
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self._fault = SmtpFault(kind, times, until)

    def clear(self) -> None:
        with self._lock:
            self._fault = None

    def reset(self) -> None:
        with self._lock:
            self._fault = None
            self.accepted.clear()
            self.refused = 0

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.accepted)

    def _take(self, *kinds: str) -> str | None:
        with self._lock:
            fault = self._fault
            if fault is not None and fault.until is not None and time.monotonic() > fault.until:
                self._fault = fault = None
            if fault is None or fault.kind not in kinds:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._fault = None
            return fault.kind

    # ------------------------------------------------------------------ aiosmtpd hooks

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self._take("421_before"):
            with self._lock:
                self.refused += 1
            server.transport.close()
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self._take("451_before"):
            with self._lock:
                self.refused += 1
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        kind = self._take("451_after", "421_after", "drop_after")
        if kind == "451_after":
            with self._lock:
                self.refused += 1
            return "451 4.3.0 Temporary failure after data, try again later"
        with self._lock:
            self.accepted += [a.lower() for a in envelope.rcpt_tos]
        if kind == "421_after":
            server.transport.close()
            return "421 4.3.2 Closing transmission channel"
        if kind == "drop_after":
            server.transport.abort()
            return "250 OK"
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()

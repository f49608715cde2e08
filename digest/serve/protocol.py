"""uvicorn's HTTP/1.1 protocol (h11) with the deadlines and the connection cap it lacks.

uvicorn closes a connection that stays idle *between* requests (``timeout_keep_alive``),
but a connection that never sends a request, or sends its head or body a byte at a time,
stays open for ever, and each one holds a file descriptor. Twenty thousand of them use up
the process's descriptors, and then nobody gets in: not a reader, not the proxy's health
check. :func:`guarded_protocol` makes the protocol class ``digest serve`` gives uvicorn:

- **a head deadline**: a request's head (request line and headers) must be complete within
  :attr:`Limits.head_timeout` seconds (up to twice that, at random, so connections opened
  together are not closed together) of the connection opening, or of the first byte after
  an answer on a kept-alive connection;
- **a body deadline**: its body within :attr:`Limits.body_timeout` of the head;
- **a cap per client address**: a new connection from an address that already holds
  :attr:`Limits.max_per_client` open connections is closed at once (a reverse proxy listed
  in ``serve.trusted_proxies`` is exempt: its connections are many clients'). One host
  cannot take the service's descriptors; a reader, or the load balancer's health check,
  comes from another address and gets in;
- **a connection cap**: past :attr:`Limits.max_connections` open connections, a new one
  closes the connection that has waited longest without sending a complete request head
  (an idle or slow one; a request being answered is never cut). A connection whose bytes
  are waiting in the kernel, not yet read, is passed over: it is not idle, only not read
  yet. So a health check, which sends its request at once, is never the one closed, however
  many idle connections there are and however fast an attacker opens new ones.

A connection closed by a deadline is counted and logged through the service's rate-limited
log (one line per kind and interval, with the count), not one line each.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import socket
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """The connection limits of ``digest serve`` (docs/serve.md lists them)."""

    max_connections: int = 65_536
    """Open connections at most (and at most the open-file limit less 512, see
    :meth:`fitted`); past it the longest-waiting idle one is closed. High on purpose: an
    attacker holding more connections than the cap keeps the kernel's accept queue full
    of new ones, and a health check waits behind them; below the cap nothing waits."""
    head_timeout: float = 10.0
    """Seconds to send a complete request head."""
    body_timeout: float = 30.0
    """Seconds from a request's head to the end of its body."""
    keep_alive: float = 5.0
    """Seconds an idle kept-alive connection stays open after an answer (uvicorn's)."""
    max_head_bytes: int = 16 * 1024
    """The largest request head (h11's ``max_incomplete_event_size``); larger gets 400."""
    max_requests_in_flight: int = 1024
    """Requests being answered at once (uvicorn's ``limit_concurrency`` is this plus
    ``max_connections``); past it uvicorn answers 503."""
    max_per_client: int = 100
    """Open connections one client address may hold (``serve.max_connections_per_client``);
    a new one past it is closed at once."""
    exempt: tuple[str, ...] = field(default=())
    """Client addresses or networks the per-client cap does not count (the trusted
    proxies; ``*`` for all)."""
    graceful_shutdown: float = 10.0
    """Seconds SIGTERM waits for requests in flight before closing them."""
    accept_batch: int = 128
    """Connections taken from the kernel's queue in one go (asyncio's ``backlog``). Each
    holds a descriptor before the cap can close an idle one, so twice this many are kept
    free (:meth:`fitted`): a process that runs out of descriptors stops accepting for a
    whole second, and meanwhile the kernel drops new connections, a health check's too."""
    listen_backlog: int = 65_535
    """The kernel's queue of connections not yet accepted (capped by
    ``net.core.somaxconn``)."""

    def fitted(self, open_files: int, reserve: int = 256) -> Limits:
        """These limits with ``max_connections`` lowered to fit ``open_files`` descriptors,
        keeping ``reserve`` for the store, the log and templates, and two accept batches
        for connections accepted but not yet counted and those closed but not yet gone."""
        fits = max(16, open_files - reserve - 2 * self.accept_batch)
        if self.max_connections <= fits:
            return self
        return Limits(**{**self.__dict__, "max_connections": fits})


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a head deadline, a body deadline and a connection cap (module
    docstring). One subclass per server, made by :func:`guarded_protocol`."""

    limits: ClassVar[Limits] = Limits()
    waiting: ClassVar[OrderedDict[int, GuardedH11Protocol]]
    closed_by: ClassVar[dict[str, int]]
    per_client: ClassVar[dict[str, int]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""  # "head" or "body" while a deadline runs
        self._counted = ""  # the client address this connection is counted against

    # -- the caps

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._count_client():
            self._close("client")
            return
        self._arm("head")
        self._wait()
        while len(self.connections) > self.limits.max_connections:
            idle = self._longest_idle()
            if idle is None:
                self._close("cap")  # every other connection is busy: refuse this one
                return
            idle._close("cap")

    def _count_client(self) -> bool:
        """Count this connection against its client address; False past the cap."""
        address = self.client[0] if self.client else ""
        if not address or _exempt(address, self.limits.exempt):
            return True
        held = self.per_client.get(address, 0)
        if held >= self.limits.max_per_client:
            return False
        self.per_client[address] = held + 1
        self._counted = address
        return True

    def _uncount_client(self) -> None:
        if self._counted:
            left = self.per_client.get(self._counted, 1) - 1
            if left > 0:
                self.per_client[self._counted] = left
            else:
                self.per_client.pop(self._counted, None)
            self._counted = ""

    def _longest_idle(self, probes: int = 64) -> GuardedH11Protocol | None:
        """The connection that has waited longest with nothing unread (None if the first
        ``probes`` all have bytes waiting); those passed over go to the back."""
        for _ in range(min(probes, len(self.waiting))):
            oldest = next(iter(self.waiting.values()))
            if oldest is self:
                return None
            if not oldest._unread():
                return oldest
            self.waiting.move_to_end(id(oldest))
        return None

    def _unread(self) -> bool:
        """Whether bytes from the client wait in the kernel (a peek; nothing is read)."""
        transport_socket = self.transport.get_extra_info("socket")
        if transport_socket is None:
            return False
        probe = socket.socket(fileno=transport_socket.fileno())
        try:
            return bool(probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing waiting (EAGAIN), or the connection is gone
            return False
        finally:
            probe.detach()  # the descriptor stays the transport's

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._uncount_client()
        self.waiting.pop(id(self), None)
        super().connection_lost(exc)

    def _wait(self) -> None:
        self.waiting.pop(id(self), None)
        self.waiting[id(self)] = self

    def _close(self, why: str) -> None:
        self._cancel()
        self._uncount_client()
        self.waiting.pop(id(self), None)
        # gone from the count now, not when the event loop gets round to connection_lost
        self.connections.discard(self)
        if not self.transport.is_closing():
            self.closed_by[why] = self.closed_by.get(why, 0) + 1
            log.info(_REASONS[why], self.limits.__dict__[_SETTING[why]])
            self.transport.close()

    # -- the deadlines

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if not self._phase:  # the first bytes of a later request on this connection
                self._arm("head")
        elif state is h11.SEND_BODY:
            self.waiting.pop(id(self), None)
            if self._phase != "body":
                self._arm("body")
        else:  # the request is in: answering it takes what it takes
            self.waiting.pop(id(self), None)
            self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._wait()  # idle until the next request (uvicorn's keep-alive timer runs)

    def _arm(self, phase: str) -> None:
        self._cancel()
        self._phase = phase
        if phase == "head":
            # Between the limit and twice it, at random: thousands of connections opened
            # at once are not all closed at once (their owner would open them again at
            # once, and a wave of new connections fills the kernel's accept queue).
            seconds = self.limits.head_timeout * (1.0 + random.random())
        else:
            seconds = self.limits.body_timeout
        self._deadline = self.loop.call_later(seconds, self._close, phase)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = ""


@functools.lru_cache(maxsize=4096)
def _exempt(address: str, exempt: tuple[str, ...]) -> bool:
    """Whether ``address`` is one of ``exempt`` (addresses, networks, or ``*``)."""
    if not exempt:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address in exempt
    for entry in exempt:
        if entry == "*" or entry == address:
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


_SETTING = {
    "head": "head_timeout",
    "body": "body_timeout",
    "cap": "max_connections",
    "client": "max_per_client",
}
_REASONS = {
    "client": "closed a new connection: its client address already holds %s open connections",
    "head": "closed a connection that sent no complete request head within %s s",
    "body": "closed a connection that sent no complete request body within %s s",
    "cap": "closed the longest-idle connection: %s connections are open",
}


def guarded_protocol(limits: Limits) -> type[GuardedH11Protocol]:
    """A protocol class for one server, with its own ``limits`` and its own connection
    table (``closed_by`` counts the connections each rule closed)."""
    return type(
        "DigestH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "waiting": OrderedDict(), "closed_by": {}, "per_client": {}},
    )

"""How fast an HTTP email API may be asked: the rate-limit headers it answers with
(:func:`parse_rate_limit`, :func:`parse_retry_after`) and the :class:`Pacer` that every
worker thread (and, through :class:`SharedPace`, every sender process) takes request slots
from."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

# --------------------------------------------------------------------------------------------
# rate-limit headers


@dataclass(frozen=True)
class RateLimit:
    """What a response said about the provider's rate limit (None: not said)."""

    limit: float | None = None
    remaining: float | None = None
    reset_after: float | None = None  # seconds until the window resets
    retry_after: float | None = None  # seconds the provider asks us to wait

    @property
    def said_anything(self) -> bool:
        return any(
            v is not None for v in (self.limit, self.remaining, self.reset_after, self.retry_after)
        )


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (epoch seconds): delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    # RateLimit-Limit may carry a policy after the number: "100, 100;w=60"
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", value)
    return float(match.group(1)) if match else None


# A reset value above this is a Unix time (SendGrid), below it a number of seconds.
_EPOCH_THRESHOLD = 1_000_000_000


def parse_rate_limit(headers: Mapping[str, str], *, now: float) -> RateLimit:
    """Read every rate-limit header family a provider may send.

    ``headers`` must look names up case-insensitively (``httpx.Headers`` does). ``now`` is
    Unix time, used for an HTTP-date ``Retry-After`` and an epoch ``X-RateLimit-Reset``.
    """
    limit = remaining = reset = None
    for prefix in ("ratelimit-", "x-ratelimit-", "x-sib-ratelimit-"):
        got_limit = _number(headers.get(prefix + "limit"))
        got_remaining = _number(headers.get(prefix + "remaining"))
        got_reset = _number(headers.get(prefix + "reset"))
        if got_reset is not None and got_reset > _EPOCH_THRESHOLD:
            got_reset = max(0.0, got_reset - now)
        limit = limit if got_limit is None else got_limit
        remaining = remaining if got_remaining is None else got_remaining
        reset = reset if got_reset is None else got_reset
    return RateLimit(
        limit=limit,
        remaining=remaining,
        reset_after=reset,
        retry_after=parse_retry_after(headers.get("retry-after"), now=now),
    )


# --------------------------------------------------------------------------------------------
# pacing


SHARED_MARGIN = 0.99
"""Spacing of the shared slots, as a share of the provider's rate."""
SHARED_HOLD = 120.0
"""Longest a shared token counts as in flight: a process killed mid-request frees it then
(the provider's: four times its ``timeout``, once per phase of a request: connect, pool,
write, read; 120 s at the default 30 s)."""


class SharedPace(Protocol):
    """Request slots shared by processes (see :class:`digest.delivery.pace.DatabasePace`)."""

    def reserve(self, interval: float) -> float:
        """Take the next slot, ``interval`` after the previous one; seconds to wait for it."""
        ...

    def pause(self, seconds: float) -> None:
        """No slot starts within ``seconds`` from now."""
        ...

    def acquire(self, capacity: int, hold: float) -> tuple[int | None, float]:
        """Take one of ``capacity`` tokens for a request in flight (held at most ``hold``
        seconds): (token, 0), or (None, seconds until one may be free)."""
        ...

    def release(self, token: int, window: float) -> None:
        """The token's request was answered: the token stays counted for ``window``."""
        ...


class Pacer:
    """Holds requests back so that the provider's limit is not hit, shared by all workers.

    * ``rate`` (requests/s, optional): a fixed ceiling, spaced evenly.
    * After a response with ``remaining == 0``: nobody goes until the reset.
    * After a 429: nobody goes until ``Retry-After`` has passed.
    * With ``limit`` and ``reset`` headers: requests spaced to the stated rate (:meth:`observe`).

    Even spacing is about when requests *start*; a provider counts them when they *arrive*,
    which for a large body can be a few hundred milliseconds later and by a varying amount,
    so evenly started requests can land bunched. Requests sent through :meth:`slot` are
    also held to a window guard: with a limit of N per window W, a request starts only when
    fewer than N others are in flight or were answered less than W ago. A request arrives
    no later than its answer, so however uneven the uploads, no window of W at the provider
    ever sees more than N of them.
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        hold: float = SHARED_HOLD,
    ) -> None:
        self.rate = rate
        self.hold = hold
        self.margin = 0.95  # room for jitter between our clock and the provider's window
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Condition()
        self._next_slot = 0.0  # fixed-rate spacing
        self._last_start = float("-inf")
        self._paused_until = 0.0  # provider said: wait
        self.waited = 0.0  # total seconds slept, for reports
        self.learned_rate: float | None = None  # from RateLimit-Limit and -Reset
        self._learned_limit: int | None = None
        self._window = 0.0
        self._in_flight = 0  # slots taken and not yet answered
        self._answers: deque[float] = deque()  # when recent slots were answered, oldest first
        # Until the first answer, one request goes alone: it may state the limit, and a
        # blind burst of every worker could spend the window before it is known.
        self._answered = threading.Event()
        self._probe_sent = False
        # Set by share(): slots and pauses held in a database that every sender process of
        # the issue uses, so N processes together keep the provider's pace.
        self._shared: SharedPace | None = None

    def share(self, pace: SharedPace) -> None:
        """Take slots from ``pace`` too (several processes, one provider account)."""
        self._shared = pace

    def reserve(self, *, guarded: bool = False) -> float | None:
        """Take the next slot; return how long the caller must wait before using it.

        With ``guarded`` the slot counts as in flight until :meth:`release`; ``None`` means
        the window guard is full of requests still in flight, and nothing was reserved.
        """
        with self._lock:
            now = self.clock()
            start = max(now, self._paused_until)
            rate = self.effective_rate
            if rate:
                rate *= self.margin
                # the requests sent before the rate was known count too
                start = max(start, self._next_slot, self._last_start + 1.0 / rate)
            if guarded:
                for capacity, span in self._guards():
                    if self._in_flight >= capacity:
                        return None
                    while self._answers and self._answers[0] <= now - span:
                        self._answers.popleft()
                    recent = [t for t in self._answers if t > start - span]
                    excess = self._in_flight + len(recent) - capacity + 1
                    if excess > 0:
                        start = max(start, recent[excess - 1] + span)
                self._in_flight += 1
            if rate:
                if self._shared is not None:
                    # The shared sequence of slots is the binding one across processes. Its
                    # margin is small: the shared window guard (slot()) keeps every window
                    # at the provider within the limit, whatever the jitter.
                    shared_rate = rate / self.margin * SHARED_MARGIN
                    start = max(start, now + self._shared.reserve(1.0 / shared_rate))
                self._next_slot = start + 1.0 / rate
            self._last_start = start
            return start - now

    def release(self) -> None:
        """A guarded slot's request was answered (or failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._answers.append(self.clock())
            self._lock.notify_all()
        self._answered.set()  # workers held back for the first answer may go

    def _guards(self) -> list[tuple[int, float]]:
        """(at most N requests, per window of W seconds) for each limit known."""
        guards = []
        if self.rate:
            span = max(1.0, 1.0 / self.rate)
            guards.append((max(1, int(self.rate * span + 1e-9)), span))
        if self._learned_limit:
            guards.append((self._learned_limit, self._window))
        return guards

    def wait(self) -> None:
        """Wait for the next evenly spaced slot (no window guard: nothing to release)."""
        self._wait_for_probe()
        self._sleep(self.reserve())

    @contextmanager
    def slot(self) -> Iterator[None]:
        """``with pacer.slot():`` send one request; its answer ends the block."""
        self._wait_for_probe()
        while (delay := self.reserve(guarded=True)) is None:
            with self._lock:  # the guard is full: wait for an answer
                self._lock.wait(timeout=1.0)
        token: tuple[int, float] | None = None
        try:
            self._sleep(delay)
            if self._shared is not None:
                token = self._shared_token()
            yield
        finally:
            if token is not None and self._shared is not None:
                self._shared.release(*token)
            self.release()

    def _shared_token(self) -> tuple[int, float] | None:
        """A token of the guard shared by every process: (token, window to hold it for).

        Before this process has had an answer one token exists, so the processes' first
        requests go one at a time, as a single process's do. A provider that states no
        limit (and none configured) needs no token after that.
        """
        assert self._shared is not None
        while True:
            with self._lock:
                guards = self._guards()
            if guards:
                capacity, window = min(guards, key=lambda g: g[0] / g[1])
            elif not self._answered.is_set():
                capacity, window = 1, 1.0
            else:
                return None
            token, wait = self._shared.acquire(capacity, self.hold)
            if token is not None:
                return token, window
            self._sleep(min(max(wait, 0.005), 1.0))

    def _wait_for_probe(self) -> None:
        if not self._answered.is_set() and not self.rate:
            with self._lock:
                probe, self._probe_sent = not self._probe_sent, True
            if not probe:
                self._answered.wait(timeout=30)

    def _sleep(self, delay: float | None) -> None:
        if delay is not None and delay > 0:
            self.waited += delay
            self.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` from now (extends, never shortens, a pause)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)
        if self._shared is not None:
            self._shared.pause(seconds)

    def observe(self, info: RateLimit, *, throttled: bool) -> None:
        """Learn from a response's headers.

        With ``limit`` and ``reset`` the provider states its window; requests are then spaced
        at 95% of ``limit / window`` (the window is the longest reset seen), so workers do
        not run into the wall together and lose a whole ``Retry-After`` each time, and held
        to the window guard of ``limit`` per window. A configured ``rate`` is spaced at 95%
        too: a limit met exactly is hit by any jitter.
        """
        if throttled:
            wait = info.retry_after if info.retry_after is not None else info.reset_after
            if wait is not None:
                self.pause(wait)
            return
        if info.limit is not None and info.limit > 0 and info.reset_after:
            with self._lock:
                # a window under a second is implausible; coarse resets (whole seconds,
                # Unix times) read short just before they tick over
                self._window = max(self._window, info.reset_after, 1.0)
                self.learned_rate = info.limit / self._window
                self._learned_limit = max(1, int(info.limit))
        if (
            info.remaining is not None
            and info.remaining <= 0
            and info.reset_after is not None
            and self.learned_rate is None
        ):
            self.pause(info.reset_after)

    @property
    def effective_rate(self) -> float | None:
        rates = [r for r in (self.rate, self.learned_rate) if r]
        return min(rates) if rates else None

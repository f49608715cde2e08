"""What every HTTP email API transport shares.

* **Markers** (:mod:`digest.email.message`): providers that substitute per recipient get them
  rewritten into their own syntax (:func:`substitute`, after their own syntax in the content
  is broken: :mod:`.defuse`) and receive only each recipient's values; the others get every
  message filled in (``message.fill``).
* **Rate limits**: :func:`parse_rate_limit` reads ``Retry-After``, ``RateLimit-*``,
  ``X-RateLimit-*`` and ``X-Sib-RateLimit-*``; a :class:`Pacer` shared by every worker thread
  holds requests back until the provider says there is room.
* **Retries**: answers are read by the provider's ``AnswerTable`` (:mod:`.classify`).
  :class:`HttpTransport` retries transient refusals and connections that could not be made
  (exponential backoff, full jitter, never sooner than ``Retry-After``); a request that may
  have been accepted is retried only when repeating it is safe (an idempotency key, a read),
  else it ends as *unknown*. Anything else goes back to the provider module.

Errors::

    RequestFailed        no answer worth reading came; ``uncertain`` says whether the
                         provider may have accepted the request (see :func:`unanswered`)
    ProviderError        (digest.errors) the provider refused us as a whole: stop sending
"""

from __future__ import annotations

import html as html_lib
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import getaddresses, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

from digest.config.providers import HttpSettings
from digest.delivery.providers.base import (
    Batch,
    Event,
    Handoff,
    Provider,
    ProviderSettings,
    Recipient,
    Result,
)
from digest.delivery.providers.classify import (
    GENERIC,
    AnswerTable,
    RequestFailed,
    Verdict,
    error_type,
    no_answer,
    stop_error,
    unanswered,
    unreadable_answer,
)
from digest.delivery.providers.defuse import Defuse
from digest.email.message import MARKER, marker_names, rewrite
from digest.errors import ProviderError

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# retries


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before try ``attempt + 1`` (``attempt`` counts from 1).

        Exponential backoff with full jitter, and never sooner than ``Retry-After``.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if retry_after is not None:
            # as asked, plus a little jitter so that workers do not return together
            return retry_after + rng.uniform(0, min(self.base_delay, 1.0))
        return rng.uniform(0, ceiling)


# No request reached the server: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass
class Stats:
    """What a provider instance sent, for reports and the benchmark."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    bytes_sent: int = 0
    recipients: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, number in counts.items():
                setattr(self, name, getattr(self, name) + number)

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "bytes_sent": self.bytes_sent,
            "recipients": self.recipients,
        }


class HttpTransport:
    """Sends one request with pacing and retries; returns the first response worth reading.

    2xx and lasting refusals (``table``) come back to the caller; transient refusals are
    retried until ``policy.attempts`` is used up, which raises :class:`RequestFailed`, as
    does an unknown answer (at once, unless repeating the request is safe).
    """

    def __init__(
        self,
        provider: str,
        client: httpx.Client,
        *,
        policy: RetryPolicy,
        pacer: Pacer,
        stats: Stats,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        repeat_safe: bool = False,
        table: AnswerTable = GENERIC,
    ) -> None:
        self.table = table
        self.repeat_safe = repeat_safe
        """The provider drops a repeated request (idempotency key): retrying a request that
        got no answer cannot send twice."""
        self.provider = provider
        self.client = client
        self.policy = policy
        self.pacer = pacer
        self.stats = stats
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.wall_clock = wall_clock

    def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        sign: Callable[[str, str, bytes, dict[str, str]], dict[str, str]] | None = None,
    ) -> httpx.Response:
        """Send ``content`` until a response worth reading arrives.

        ``sign`` (SigV4) is called before every attempt, since a signature carries a time.
        """
        self.stats.add(requests=1)
        reason = ""
        maybe_accepted = False
        status: int | None = None
        repeat_safe = self.repeat_safe or method == "GET"  # a read changes nothing
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            with self.pacer.slot():
                request_headers = dict(headers)
                if sign is not None:
                    request_headers = sign(method, url, content, request_headers)
                self.stats.add(attempts=1, bytes_sent=len(content))
                try:
                    response = self.client.request(
                        method, url, content=content, headers=request_headers
                    )
                except _NOT_SENT as exc:
                    reason = f"{self.provider}: cannot connect ({exc or type(exc).__name__})"
                except httpx.TimeoutException as exc:
                    reason = f"{self.provider}: no answer in time ({type(exc).__name__})"
                    maybe_accepted, status = True, None
                except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                    reason = (
                        f"{self.provider}: the connection closed without an answer "
                        f"({exc or type(exc).__name__})"
                    )
                    maybe_accepted, status = True, None
                else:
                    info = parse_rate_limit(response.headers, now=self.wall_clock())
                    self.pacer.observe(info, throttled=response.status_code == 429)
                    if 200 <= response.status_code < 300:
                        return response
                    verdict = self.table.status(
                        response.status_code,
                        error_message(response),
                        error_type=error_type(response),
                        retry_after=info.retry_after,
                    )
                    if verdict.kind == "unknown":
                        maybe_accepted, status = True, response.status_code
                    elif not verdict.transient:
                        return response  # a lasting refusal: the provider module reads it
                    retry_after, reason = info.retry_after, verdict.reason
            if maybe_accepted and status is None:
                reason = no_answer(reason).reason  # says why it may have been accepted
            if maybe_accepted and not repeat_safe:
                raise RequestFailed(reason, uncertain=True, status=status)
            if attempt == self.policy.attempts:
                break
            delay = self.policy.delay(attempt, retry_after, self.rng)
            log.warning(
                "%s; try %d of %d in %.1fs", reason, attempt + 1, self.policy.attempts, delay
            )
            self.stats.add(retries=1)
            if delay > 0:
                self.sleep(delay)
        raise RequestFailed(
            f"{reason} (gave up after {self.policy.attempts} tries)",
            uncertain=maybe_accepted,
            status=status,
            retry_after=retry_after,
        )


def error_message(response: httpx.Response, limit: int = 300) -> str:
    """The provider's own words from an error response, whatever its shape."""
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        return (text[:limit] or response.reason_phrase or "no message").replace("\n", " ")
    return _message_from(body)[:limit] or response.reason_phrase or "no message"


def _message_from(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            parts = [_message_from(item) for item in body["errors"]]
            return "; ".join(p for p in parts if p)
        for key in ("message", "Message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                field = body.get("field")
                return f"{value} ({field})" if isinstance(field, str) and field else value
            if isinstance(value, dict):
                return _message_from(value)
        return json.dumps(body)[:300]
    if isinstance(body, list) and body:
        return _message_from(body[0])
    return str(body)


# --------------------------------------------------------------------------------------------
# the base class of HTTP transports


class HttpProvider(Provider):
    """An email API reached over httpx, with pacing and retries shared by all worker threads.

    Tests may replace ``sleep``, ``clock``, ``wall_clock`` and ``rng`` after construction.
    """

    Settings: ClassVar[type[ProviderSettings]] = HttpSettings
    settings: HttpSettings
    answers: ClassVar[AnswerTable] = GENERIC
    """What this provider's answers prove, from its own documentation (classify.py)."""
    reports_handoff: ClassVar[bool] = True  # a Handoff before every request (post_batch)

    def __init__(
        self, settings: ProviderSettings, config: Config, *, client: httpx.Client | None = None
    ) -> None:
        super().__init__(settings, config, client=client)
        assert isinstance(settings, HttpSettings)
        self.settings = settings
        self._owns_client = client is None
        self.http = client or httpx.Client(
            timeout=httpx.Timeout(settings.timeout, connect=min(10.0, settings.timeout)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            headers={"User-Agent": "digest (+https://github.com/digest)"},
        )
        self.stats = Stats()
        self.pacer = Pacer(rate=settings.max_requests_per_second, hold=4 * settings.timeout)
        self.transport = HttpTransport(
            self.name,
            self.http,
            policy=RetryPolicy(
                attempts=settings.max_retries + 1,
                base_delay=settings.retry_base_delay,
                max_delay=settings.retry_max_delay,
            ),
            pacer=self.pacer,
            stats=self.stats,
            repeat_safe=self.supports_idempotency,
            table=self.answers,
        )

    def set_clock(
        self,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Replace the edges that touch time (tests)."""
        if sleep is not None:
            self.transport.sleep = sleep
            self.pacer.sleep = sleep
        if clock is not None:
            self.pacer.clock = clock
        if wall_clock is not None:
            self.transport.wall_clock = wall_clock
        if rng is not None:
            self.transport.rng = rng

    def url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    def stop(self, response: httpx.Response, message: str | None = None) -> ProviderError:
        """The error that ends the send: one line naming us, the status and their words;
        for a refusal of the account, what to fix."""
        return stop_error(self.name, self.verdict(response), response, message)

    def verdict(self, response: httpx.Response) -> Verdict:
        """What a non-2xx answer proves (:attr:`answers`)."""
        return self.answers.status(
            response.status_code, error_message(response), error_type=error_type(response)
        )

    def post_batch(
        self,
        recipients: tuple[Recipient, ...],
        post: Callable[[tuple[Recipient, ...]], httpx.Response],
        read: Callable[[httpx.Response, tuple[Recipient, ...]], tuple[list[Result], str | None]],
        *,
        what: str,
        ok: Collection[int] = (200,),
        refused: Callable[[httpx.Response, tuple[Recipient, ...]], dict[int, str] | None]
        | None = None,
    ) -> Iterator[Event]:
        """One batch's request, and what the answer says for each of its recipients.

        Counted in :attr:`stats` as the batch's recipients. ``post(recipients)`` sends the
        request (through :attr:`transport`). No answer: the
        recipients are ``uncertain``, or sending stops (:func:`unanswered`). A status in
        ``ok``: ``read`` turns the answer into results and, when the account cannot go on,
        the reason to stop after them; an answer it cannot read (``ValueError``) leaves the
        recipients ``uncertain``, naming ``what`` was asked. Any other status stops the
        send with the provider's words,
        unless ``refused`` names the recipients it refused (their index → the reason):
        those fail for good and the rest are sent again without them.
        """
        self.stats.add(recipients=len(recipients))
        while recipients:
            yield Handoff.of(recipients)  # the send loop's fence check, before the request
            try:
                response = post(recipients)
            except RequestFailed as exc:
                yield from unanswered(self.name, recipients, exc)
                return
            if response.status_code in ok:
                try:
                    results, stop = read(response, recipients)
                except ValueError as exc:
                    yield from unreadable_answer(self.name, response, recipients, what, exc)
                    return
                yield from results
                if stop is not None:
                    raise self.stop(response, stop)
                return
            refusals = refused(response, recipients) if refused is not None else None
            if not refusals:
                raise self.stop(response)
            for index, reason in refusals.items():
                if index < len(recipients):
                    yield Result(recipients[index].subscriber_id, "failed-permanent", reason=reason)
            recipients = tuple(r for i, r in enumerate(recipients) if i not in refusals)

    def get(
        self,
        path: str,
        headers: Mapping[str, str],
        *,
        sign: Callable[[str, str, bytes, dict[str, str]], dict[str, str]] | None = None,
    ) -> httpx.Response:
        """A read (suppression lists): retried like a send; any other failure stops."""
        try:
            response = self.transport.send(
                "GET", self.url(path), content=b"", headers=headers, sign=sign
            )
        except RequestFailed as exc:
            raise ProviderError(self.name, exc.reason, retryable=True) from None
        if response.status_code != 200:
            raise self.stop(response)
        return response

    def close(self) -> None:
        if self._owns_client:
            self.http.close()


@dataclass(frozen=True)
class Suppression:
    """An address a provider will not send to, and why."""

    email: str
    kind: str  # "bounced", "complained" or "unsubscribed" (subscriber statuses)
    reason: str
    at: str | None = None

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

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from digest.config.providers import HttpSettings
from digest.delivery.providers.base import (
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
from digest.delivery.providers.envelope import (
    Envelope,
    Substitution,
    encode_json,
    substitute,
)
from digest.delivery.providers.pacing import (
    Pacer,
    RateLimit,
    SharedPace,
    parse_rate_limit,
    parse_retry_after,
)
from digest.errors import ProviderError

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)

# the names the provider modules read from here
__all__ = [
    "Envelope",
    "HttpProvider",
    "HttpTransport",
    "Pacer",
    "RateLimit",
    "RetryPolicy",
    "SharedPace",
    "Substitution",
    "Suppression",
    "encode_json",
    "error_message",
    "parse_rate_limit",
    "parse_retry_after",
    "substitute",
]

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

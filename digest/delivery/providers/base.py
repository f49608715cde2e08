"""The one interface every transport implements: a batch in, per-recipient results out.

A :class:`Batch` is one composed variant of the issue (subject, HTML, text and headers that
still hold ``[[digest:…]]`` markers) plus its recipients, each with the values for those
markers, and a deterministic idempotency key (the same recipients of the same issue always
get the same key, so a provider that honours keys can drop a repeat after a crash).

:meth:`Provider.send` is a generator. It yields one :class:`Result` per recipient, as soon
as that recipient's outcome is known, and, for transports that can say so, a
:class:`Handoff` just before the point after which the message may have been accepted (for
SMTP: before the end-of-data mark). The send loop commits each event to the ledger before
asking for the next one, so the window between "accepted" and "recorded" is as short as
the transport allows.

Adding a transport (the way the built-ins do it)::

    class MyProvider(Provider):
        name = "mine"
        class Settings(ProviderSettings):
            token: Secret
        max_batch = 500
        def send(self, batch): ...

    registry.register("mine", MyProvider)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from digest.config.providers import ProviderSettings as ProviderSettings
from digest.delivery.providers.domains import DomainFinding
from digest.email.message import MessageParts
from digest.errors import ProviderError
from digest.store.clock import parse_utc

if TYPE_CHECKING:
    import httpx

    from digest.config import Config

# Serialise with CRLF and long lines allowed, so a long List-Unsubscribe URL stays one
# readable token instead of being split into encoded words.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)

ResultState = Literal["sent", "failed-permanent", "failed-retryable", "uncertain"]


Renderer = Callable[..., EmailMessage]
"""``renderer(composed, *, to, values, message_id, date) -> EmailMessage``
(``digest.email.message.to_message``)."""


@dataclass(frozen=True)
class Delivery:
    """One row of the send ledger, as the ledger reads it: what providers settle
    (:meth:`Provider.lookup`, reconciliation) and the ledger hands out."""

    issue_id: str
    subscriber_id: int
    email: str
    variant: str
    state: str
    attempts: int
    batch_key: str | None
    handed_off: bool
    confirmed: bool
    message_id: str | None
    provider_message_id: str | None
    last_error: str | None
    sent_at: str | None
    updated_at: str | None = None
    attempted_at: str | None = None
    """When the request that may have carried the message started (see ``_ATTEMPTED``)."""
    lease_generation: int = 0
    """The row's fencing token when it was read (see :meth:`Ledger.lease`)."""


class RefusedForNow(ProviderError):
    """The provider refused a whole request for now (a 429, a 503 it documents as "not
    taken", no connection) until the transport's own retries ran out. The request's rows
    are back to ``pending``; the send loop waits (``retry_after`` when the provider said,
    else its backoff) and tries them again within ``send.retry_for``, then stops."""

    def __init__(self, provider: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(provider, message, retryable=True)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    values: Mapping[str, str]  # marker name -> value (name, email, unsubscribe_url, …)
    message_id: str  # the Message-ID header, the same on every attempt


@dataclass(frozen=True)
class Batch:
    issue_id: str
    variant: str
    composed: MessageParts
    recipients: tuple[Recipient, ...]
    idempotency_key: str
    renderer: Renderer = field(repr=False)
    date: datetime | None = None
    test: bool = False
    wire: Callable[[Recipient], bytes] | None = field(default=None, repr=False)
    """Fast path to the message's bytes (``digest.email.message.WireTemplate``), if the sender
    prepared one for this variant; :meth:`wire_bytes` falls back to :attr:`renderer`."""

    def message_for(self, recipient: Recipient) -> EmailMessage:
        """The full message for one recipient, markers filled (for transports that cannot
        substitute per recipient themselves)."""
        return self.renderer(
            self.composed,
            to=recipient.email,
            values=recipient.values,
            message_id=recipient.message_id,
            date=self.date,
        )

    def wire_bytes(self, recipient: Recipient) -> bytes:
        """The whole message for one recipient as CRLF bytes (a file, or SMTP DATA before
        dot-stuffing): the per-variant template when there is one, else the renderer."""
        if self.wire is not None:
            return self.wire(recipient)
        return self.message_for(recipient).as_bytes(policy=WIRE_POLICY)


@dataclass(frozen=True)
class Result:
    subscriber_id: int
    state: ResultState
    provider_message_id: str | None = None
    reason: str | None = None
    confirmed: bool = True  # False: counted as sent without the provider's reply (old rows)
    transient: bool = False
    """``failed-retryable`` that is not the recipient's doing (429, 503, SMTP 451,
    throttling, a refused account): such a row is never given up as ``failed-permanent``."""
    retry_after: float | None = None  # seconds the provider asked to wait, when it said


@dataclass(frozen=True)
class Handoff:
    """The transport is about to pass the point after which it may have been accepted.

    The send loop checks its fence (this sender still holds the rows) and commits the
    hand-off before the transport goes on; when the check fails the generator is closed
    there, and the message never leaves. HTTP APIs yield one before each request, naming
    every recipient it carries (``more``).
    """

    subscriber_id: int
    more: tuple[int, ...] = ()

    @property
    def subscriber_ids(self) -> tuple[int, ...]:
        return (self.subscriber_id, *self.more)

    @classmethod
    def of(cls, recipients: Sequence[Recipient]) -> Handoff:
        return cls(recipients[0].subscriber_id, tuple(r.subscriber_id for r in recipients[1:]))


Event = Result | Handoff


@dataclass(frozen=True)
class Check:
    """One finding of :meth:`Provider.preflight`."""

    name: str  # "credentials", "domain", "sender", "connection"
    ok: bool
    detail: str


OLD_ROW_MARGIN = timedelta(days=1)
"""How far back to look for a row whose attempt time was never stored (older ledgers)."""


def attempted_since(deliveries: Sequence[Delivery], *, margin: timedelta) -> datetime:
    """The earliest moment these rows' messages may have reached the provider: their
    attempt times stored in the ledger, less ``margin`` (clocks that disagree). A row
    without one (written before attempt times were kept) looks a day back from its last
    change."""
    stamps: list[datetime] = []
    for d in deliveries:
        if d.attempted_at:
            stamps.append(parse_utc(d.attempted_at) - margin)
        elif d.updated_at:
            stamps.append(parse_utc(d.updated_at) - OLD_ROW_MARGIN)
    return min(stamps) if stamps else datetime.now(timezone.utc) - OLD_ROW_MARGIN


def idempotency_key(
    issue_id: str,
    variant: str,
    subscriber_ids: Sequence[int],
    emails: Sequence[str] = (),
) -> str:
    """The same issue, variant and recipients always give the same key.

    With ``emails``, the addresses are part of it too: two lists that share a provider
    account (and so its keys) and number their subscribers alike still get different keys.
    """
    digest = hashlib.sha256(f"{issue_id}\x00{variant}\x00".encode())
    for sid in subscriber_ids:
        digest.update(f"{sid},".encode())
    for email in emails:
        digest.update(f"{email.lower()},".encode())
    return f"digest-{issue_id}-{digest.hexdigest()[:32]}"


class Provider(ABC):
    """A transport. Subclasses set the class attributes and implement :meth:`send`."""

    name: ClassVar[str]
    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings
    max_batch: ClassVar[int] = 1
    default_concurrency: ClassVar[int] = 1
    supports_idempotency: ClassVar[bool] = False
    """The provider drops a repeated request with the same key: resend uncertain batches."""
    keys_kept: ClassVar[float | None] = None
    """Seconds the provider remembers an idempotency key (None: it states no limit); past
    that a resend with the same key may be delivered again."""
    reports_handoff: ClassVar[bool] = False
    """:meth:`send` yields :class:`Handoff`: a ``sending`` row without one was never sent."""
    commit_each: ClassVar[bool] = False
    """Commit every result as it comes (instead of once per batch)."""
    mixes_variants: ClassVar[bool] = False
    """Each message goes on its own, from :meth:`Batch.wire_bytes`: a batch may hold
    recipients of several preference variants (``Batch.wire`` picks each one's bytes), so
    batches stay full however many variants there are."""

    def __init__(
        self, settings: ProviderSettings, config: Config, *, client: httpx.Client | None = None
    ) -> None:
        self.settings = settings
        self.config = config
        self.client = client

    @classmethod
    def from_config(cls, config: Config, *, client: httpx.Client | None = None) -> Provider:
        settings = cls.Settings.model_validate(config.provider.options())
        return cls(settings, config, client=client)

    @abstractmethod
    def send(self, batch: Batch) -> Iterator[Event]:
        """Yield a :class:`Result` for every recipient (and :class:`Handoff` if supported).

        Raise :class:`~digest.errors.ProviderError` when sending cannot go on at all;
        recipients without a result then stay ``sending`` and are settled on resume.
        """

    def reconcile(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, Result | None]:
        """After a crash: what became of rows left ``sending``.

        Returns a result per subscriber id, or None for "was not accepted: send again".
        The default: with idempotency keys, send again (the provider drops repeats); with
        hand-off marks, rows never handed off are sent again; everything else may have been
        accepted and is ``uncertain`` — then :meth:`lookup` (where the provider can answer)
        or the operator's ``send.uncertain`` policy decides.
        """
        settled: dict[int, Result | None] = {}
        for delivery in deliveries:
            if self.supports_idempotency or (self.reports_handoff and not delivery.handed_off):
                settled[delivery.subscriber_id] = None
            else:
                settled[delivery.subscriber_id] = Result(
                    delivery.subscriber_id,
                    "uncertain",
                    reason="the run stopped while the message was with the provider, "
                    "before its answer was recorded",
                )
        return settled

    can_look_up: ClassVar[bool] = False
    """:meth:`lookup` can ask the provider which messages it accepted."""
    indexing_delay: ClassVar[float] = 300.0
    """Seconds after a request before the provider's records of it are complete (its own
    documentation where it says; ``reconcile_after`` overrides it)."""
    settles_uncertain: ClassVar[str] = (
        "nothing can ask the provider: decide with send.uncertain (hold or resend) "
        "or digest send --resend-uncertain"
    )
    """What settles an ``uncertain`` row of this transport (``digest status`` says it)."""

    def reconcile_delay(self) -> float:
        """Seconds after a request before a message missing from the provider's records
        counts as not accepted."""
        configured = getattr(self.settings, "reconcile_after", None)
        return float(self.indexing_delay if configured is None else configured)

    def lookup(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, str | None]:
        """Ask the provider which of these messages it accepted (reconciliation).

        Returns, per subscriber id, the provider's message id when it has the message, or
        None when it certainly has not. Only called when :attr:`can_look_up` is True.
        """
        raise NotImplementedError

    def preflight(self) -> list[Check]:
        """One read-only authenticated request: do the credentials work, is the domain
        verified? Transports without an account return what they can check locally."""
        return [Check("credentials", True, "no account to check")]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """What the provider's API says of ``domain`` (verified, DKIM verified, the
        records it asks for), read-only (digest/delivery/providers/domains.py). Empty: the
        transport has no such API. Raises ProviderError when the provider refuses."""
        return []

    def close(self) -> None:
        """Release connections; called once when sending ends."""
        return None

    def describe(self) -> dict[str, Any]:
        """Settings safe to print (secrets show as their ${VAR} reference)."""
        return {"name": self.name, **self.settings.model_dump(mode="json")}

"""Sending an issue to every active subscriber exactly once, resumably.

The loop, each step committed to the ledger before the next depends on it:

1. build the issue (or reuse ``out/<issue-id>/``); refuse if it was already sent in full
   (unless ``force``);
2. queue every active subscriber once (re-running queues only the new ones);
3. settle rows a crashed run left ``sending`` (the provider decides how: outbox looks for
   the file, SMTP trusts its hand-off marks, API providers resend with the same
   idempotency key);
4. stream queued rows in subscriber order, a chunk at a time; group them by preference set
   (one composed variant per distinct set, then per-recipient substitution), claim each
   batch as ``sending``, hand it to the provider and commit every result;
5. retry retryable failures with backoff, up to ``send.max_attempts`` tries;
6. write ``out/<issue-id>/send-report.json``.

Nothing here holds the subscriber list in memory: rows are read ``CHUNK`` at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from digest.audience import newsletters
from digest.audience.keys import link_keys
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.audience.tokens import token_secret
from digest.config import Config, missing_secrets, require_secrets
from digest.content.intro import Intro, load_intro
from digest.content.select import Selection
from digest.delivery import ledger as L
from digest.delivery.ledger import Delivery, Ledger, Outcome
from digest.delivery.pace import DatabasePace
from digest.delivery.providers.base import (
    Batch,
    Event,
    Handoff,
    Provider,
    Recipient,
    Result,
    idempotency_key,
)
from digest.delivery.providers.registry import make_provider
from digest.email.message import (
    ComposedEmail,
    WireTemplate,
    message_id_for,
    recipient_values,
    to_message,
)
from digest.errors import (
    DigestError,
    NoSubscribers,
    NothingToSend,
    ProviderError,
    SendError,
)
from digest.store.clock import parse_utc
from digest.store.database import locate

if TYPE_CHECKING:
    from digest.email.variants import VariantAssembler

# The email stack (jinja2, MJML, premailer) is imported where an issue is built, so that
# `digest status` (issue_status) and other readers of the ledger start fast.

log = logging.getLogger(__name__)

CHUNK = 1000
LEASE = timedelta(seconds=60)
"""How long a sender holds rows without renewing (``send.lease`` in config)."""


def sender_id() -> str:
    """This sender's name in the ledger's leases: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Heartbeat:
    """Renews this sender's leases every third of the lease, on its own connection, so a
    sender slowed by the provider keeps its rows and a dead one loses them."""

    def __init__(
        self,
        target: Any,
        issue_id: str,
        owner: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._beat,
            args=(target, issue_id, owner, lease, clock),
            name="digest-lease",
            daemon=True,
        )
        self.thread.start()

    def _beat(
        self,
        target: Any,
        issue_id: str,
        owner: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        with Ledger(target) as ledger:
            while not self.stop.wait(lease.total_seconds() / 3):
                try:
                    ledger.renew(issue_id, owner=owner, until=clock() + lease)
                except DigestError as exc:  # the next beat tries again
                    log.warning("could not renew the send leases: %s", exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


SEND_SECRETS = ("provider.", "serve.secret")
"""The config keys whose ``${VAR}`` a send needs (checked before anything is recorded)."""
ALL = "all"
MIXED = "mixed"  # the variant of a batch whose recipients have several (ledger rows say which)
# Variants (composed email and wire template) held at once. Queued rows are read grouped by
# variant, so each is assembled about once; the bound keeps memory flat however many
# distinct preference sets subscribers have.
VARIANTS_HELD = 8
Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each committed result."""


# --------------------------------------------------------------------------- the issue


@dataclass(frozen=True)
class Issue:
    selection: Selection
    composed: ComposedEmail
    intro: Intro | None = None


class Composer(Protocol):
    """What sending needs from the build stage (the default uses digest.build/compose)."""

    def prepare(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> Issue: ...

    def compose(
        self, config: Config, issue: Issue, selection: Selection, *, now: datetime
    ) -> Any: ...

    def render(
        self,
        composed: Any,
        *,
        to: str,
        values: Mapping[str, str],
        message_id: str | None,
        date: datetime | None,
    ) -> EmailMessage: ...


class BuildComposer:
    """The real build: :func:`build_issue` once; each preference variant assembled from the
    issue's sections rendered once (:class:`VariantAssembler`)."""

    def __init__(self) -> None:
        self._assembler: VariantAssembler | None = None

    def prepare(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> Issue:
        from digest.email.build import build_issue

        result = build_issue(config, now=now, week=week, since=since, until=until, write=write)
        intro = load_intro(config, result.selection.issue_id)
        return Issue(result.selection, result.composed, intro)

    def compose(
        self, config: Config, issue: Issue, selection: Selection, *, now: datetime
    ) -> ComposedEmail:
        return self.assembler(config, issue, now=now).variant([s.name for s in selection.sections])

    def assembler(self, config: Config, issue: Issue, *, now: datetime) -> VariantAssembler:
        """The issue's assembler, made on the first variant asked for.

        Its parts come from the templates as they are now; should the issue's email (built
        earlier, perhaps from other templates) differ from what it assembles for every
        section, each variant is composed whole instead, as before.
        """
        current = self._assembler
        if current is None or current.selection is not issue.selection:
            from digest.email.variants import VariantAssembler

            current = VariantAssembler(config, issue.selection, now=now, intro=issue.intro)
            everything = current.variant([s.name for s in issue.selection.sections])
            same = (everything.html, everything.text, everything.subject) == (
                issue.composed.html,
                issue.composed.text,
                issue.composed.subject,
            )
            if not same and current.unsupported is None:
                current.unsupported = "the built issue differs from what its parts assemble"
                log.info("composing each variant whole: %s", current.unsupported)
            self._assembler = current
        return current

    def render(
        self,
        composed: ComposedEmail,
        *,
        to: str,
        values: Mapping[str, str],
        message_id: str | None,
        date: datetime | None,
    ) -> EmailMessage:
        return to_message(composed, to=to, values=values, message_id=message_id, date=date)

    def wire_template(
        self, composed: ComposedEmail, *, date: datetime | None
    ) -> Callable[[Recipient], bytes]:
        """The per-variant fast path to a recipient's bytes (same message as :meth:`render`)."""
        template = WireTemplate(composed, date=date)

        def wire(recipient: Recipient) -> bytes:
            return template.render(
                to=recipient.email, values=recipient.values, message_id=recipient.message_id
            )

        return wire


# --------------------------------------------------------------------------- the report


@dataclass
class SendReport:
    issue_id: str
    provider: str
    dry_run: bool = False
    queued: int = 0  # rows added to the ledger by this run
    attempted: int = 0
    sent: int = 0
    failed_permanent: int = 0
    failed_retryable: int = 0
    uncertain: int = 0  # results this run that may or may not have reached the provider
    skipped: int = 0
    settled_after_crash: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)
    variants: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    uncertain_held: list[dict[str, Any]] = field(default_factory=list)
    new_subscribers: int = 0  # active subscribers not queued for this finished issue
    missing_secrets: list[str] = field(default_factory=list)  # dry run: unset ${VAR}s
    complete: bool = False
    limited: bool = False
    stopped: str | None = None  # why the run stopped early (a signal, the provider)
    total: int = 0  # messages this run set out to settle
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    report_path: str | None = None

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 6
        return 1 if self.ledger.get(L.FAILED_PERMANENT, 0) or self.failed_permanent else 0

    @property
    def rate(self) -> float:
        return self.attempted / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["messages_per_second"] = round(self.rate, 1)
        data["exit_code"] = self.exit_code
        return data


# --------------------------------------------------------------------------- variants


def variant_of(
    subscriber: Subscriber,
    selection: Selection,
    sections: tuple[frozenset[str], frozenset[str]] | None = None,
) -> str | None:
    """The subscriber's variant key: ``all``, ``Work+Tools``, or None for nothing to send.

    ``sections`` (with several newsletters): the casefolded spellings of this newsletter's
    sections and of the other newsletters' sections. A subscriber whose categories name
    only other newsletters' sections chose within those, and receives this one whole.
    """
    if not subscriber.categories:
        return ALL
    wanted = {c.casefold() for c in subscriber.categories}
    if sections is not None and not wanted & sections[0] and wanted & sections[1]:
        return ALL
    names = [
        s.name
        for s in selection.sections
        if s.name.casefold() in wanted or s.title.casefold() in wanted
    ]
    if not names:
        return None
    if len(names) == len(selection.sections):
        return ALL
    return "+".join(names)


def section_names(config: Config) -> tuple[frozenset[str], frozenset[str]] | None:
    """Every spelling of this newsletter's sections and of the other newsletters' (see
    :func:`variant_of`), casefolded; None with one newsletter."""
    if len(config.newsletter_names) < 2:
        return None

    def spellings(one: Config) -> frozenset[str]:
        return frozenset(
            spelling.casefold()
            for section in one.categories.sections
            for spelling in (section.name, section.title, *section.aliases)
        )

    own = spellings(config)
    others = frozenset().union(
        *(
            spellings(config.for_newsletter(name))
            for name in config.newsletter_names
            if name != config.newsletter_name
        )
    )
    return own, others - own


# --------------------------------------------------------------------------- the loop


def _out_dir(config: Config, issue_id: str) -> Path:
    return config.path(config.out_dir) / issue_id


class _Sender:
    """One run of the loop for one issue (state shared by the steps)."""

    def __init__(
        self,
        config: Config,
        issue: Issue,
        composer: Composer,
        provider: Provider,
        ledger: Ledger,
        store: SubscriberStore,
        report: SendReport,
        *,
        now: datetime,
        clock: Callable[[], datetime],
        progress: Progress | None,
        stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        owner: str = "",
        lease: timedelta = LEASE,
    ) -> None:
        self.stop_requested = stop or (lambda: False)
        self.sleep = sleep
        self.owner = owner or sender_id()
        self.lease = lease
        self.config = config
        self.issue = issue
        self.issue_id = issue.selection.issue_id
        self.sections = section_names(config)
        self.composer = composer
        self.provider = provider
        self.ledger = ledger
        self.store = store
        self.report = report
        self.now = now
        self.clock = clock
        self.progress = progress
        self.server = token_secret(config)
        # variant → (composed email, wire template or None); the least recently used goes.
        self.held: OrderedDict[str, tuple[Any, Callable[[Recipient], bytes] | None]] = OrderedDict()
        self.batch_size = min(config.send.batch_size or provider.max_batch, provider.max_batch)
        self.done = 0
        self.total = 0
        # Batches go to the provider from `concurrency` worker threads; every ledger write
        # stays on this thread. Transports that commit mid-message (SMTP) send one at a time.
        self.concurrency = config.send.concurrency or provider.default_concurrency
        if provider.commit_each or provider.reports_handoff:
            self.concurrency = 1
        self.pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="digest-send")
            if self.concurrency > 1
            else None
        )
        self.inflight: dict[Future[_Attempt], Batch] = {}

    def close(self) -> None:
        """Finish what is in flight (recording it), then stop the workers."""
        try:
            self.drain()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def variant(self, variant: str) -> tuple[Any, Callable[[Recipient], bytes] | None]:
        """The variant's composed email and wire template (None: the composer has no fast
        path), built when first needed and held while recently used."""
        held = self.held.get(variant)
        if held is not None:
            self.held.move_to_end(variant)
            return held
        if variant == ALL:
            composed = self.issue.composed
        else:
            names = variant.split("+")
            composed = self.composer.compose(
                self.config, self.issue, self.issue.selection.only(names), now=self.now
            )
        make = getattr(self.composer, "wire_template", None)
        held = (composed, make(composed, date=self.now) if make is not None else None)
        self.held[variant] = held
        if len(self.held) > VARIANTS_HELD:
            self.held.popitem(last=False)
        return held

    def composed(self, variant: str) -> Any:
        return self.variant(variant)[0]

    def wire(self, variant: str) -> Callable[[Recipient], bytes] | None:
        return self.variant(variant)[1]

    def recipient(self, subscriber: Subscriber) -> Recipient:
        return Recipient(
            subscriber.id,
            subscriber.email,
            recipient_values(self.config, subscriber, self.server),
            message_id_for(self.config, self.issue_id, subscriber.id),
        )

    def batch(self, variant: str, recipients: Sequence[Recipient], key: str | None = None) -> Batch:
        ids = [r.subscriber_id for r in recipients]
        return Batch(
            issue_id=self.issue_id,
            variant=variant,
            composed=self.composed(variant),
            recipients=tuple(recipients),
            idempotency_key=key
            or idempotency_key(self.issue_id, variant, ids, [r.email for r in recipients]),
            renderer=self.composer.render,
            date=self.now,
            wire=self.wire(variant),
        )

    def mixed_batch(self, parts: Sequence[tuple[str, Recipient]]) -> Batch | None:
        """One batch for recipients of several variants, each message from its own
        variant's wire template (providers that send each message on its own); None when
        the composer has no wire templates."""
        held: dict[str, tuple[Any, Callable[[Recipient], bytes] | None]] = {}
        wires: dict[int, Callable[[Recipient], bytes]] = {}
        for variant, recipient in parts:
            if variant not in held:  # the batch holds its variants, whatever the cache drops
                held[variant] = self.variant(variant)
            wire = held[variant][1]
            if wire is None:
                return None
            wires[recipient.subscriber_id] = wire
        variant = parts[0][0] if len(held) == 1 else MIXED
        recipients = tuple(r for _, r in parts)

        def wire_of(recipient: Recipient) -> bytes:
            return wires[recipient.subscriber_id](recipient)

        return Batch(
            issue_id=self.issue_id,
            variant=variant,
            composed=held[parts[0][0]][0],
            recipients=recipients,
            idempotency_key=idempotency_key(
                self.issue_id, variant, [r.subscriber_id for r in recipients]
            ),
            renderer=self.composer.render,
            date=self.now,
            wire=wire_of,
        )

    # -- settle what a crashed run left behind

    def leased(
        self, states: Sequence[str], *, by_variant: bool = False
    ) -> Iterator[list[Delivery]]:
        """Rows in ``states`` that no other sender holds, ``CHUNK`` at a time, in subscriber
        order (``by_variant``: in variant, then subscriber order, so that each variant is
        assembled about once), each chunk leased to this sender before it is yielded."""
        after: int | tuple[str, int] = ("", -1) if by_variant else 0
        while True:
            now = self.clock()
            chunk = self.ledger.lease(
                self.issue_id,
                states,
                owner=self.owner,
                after=after,
                limit=CHUNK,
                until=now + self.lease,
                now=now,
            )
            if not chunk:
                return
            yield chunk
            last = chunk[-1]
            after = (last.variant, last.subscriber_id) if by_variant else last.subscriber_id

    def settle(self) -> int:
        """Settle ``sending`` rows that a dead sender left (a lease that ran out); how many."""
        settled_rows = 0
        for chunk in self.leased([L.SENDING]):
            settled_rows += len(chunk)
            settled = self.provider.reconcile(self.issue_id, chunk)
            outcomes: list[Outcome] = []
            resend: dict[str, list[Delivery]] = {}
            for delivery in chunk:
                result = settled.get(delivery.subscriber_id)
                if result is None:
                    if self.provider.supports_idempotency and delivery.batch_key:
                        resend.setdefault(delivery.batch_key, []).append(delivery)
                    outcomes.append(Outcome(delivery.subscriber_id, L.PENDING))
                    key = "resent" if self.provider.supports_idempotency else "not-accepted"
                else:
                    outcomes.append(_outcome(result))
                    key = result.state
                self.report.settled_after_crash[key] = (
                    self.report.settled_after_crash.get(key, 0) + 1
                )
            self.ledger.transition(self.issue_id, outcomes, now=self.clock())
            for key, deliveries in resend.items():
                self.resend_same_key(key, deliveries)
        self.drain()
        return settled_rows

    def resend_same_key(self, key: str, deliveries: list[Delivery]) -> None:
        found = self.store.get_many([d.subscriber_id for d in deliveries])
        recipients = [
            self.recipient(found[d.subscriber_id]) for d in deliveries if d.subscriber_id in found
        ]
        if recipients:
            variant = deliveries[0].variant or ALL
            self.dispatch(self.batch(variant, recipients, key))

    # -- uncertain rows: ask the provider, resend safely, or hold

    def resolve_uncertain(self, *, resend: bool) -> None:
        """Decide about ``uncertain`` rows, best evidence first.

        1. the provider can say what it accepted (:meth:`Provider.lookup`): accepted rows
           become ``sent``; rows it has not got, once old enough for its records to be
           complete (``reconcile_after``), go back to ``pending``;
        2. the provider drops repeats (idempotency key): send again with the same key;
        3. ``resend`` (``send.uncertain: resend`` or ``--resend-uncertain``): back to
           ``pending`` — nobody is missed, and a message that did arrive arrives twice;
        4. otherwise they are held: reported, never sent twice.
        """
        provider = self.provider
        if provider.can_look_up:
            self.look_up()
        if provider.supports_idempotency:
            for chunk in self.ledger.iter_state(self.issue_id, [L.UNCERTAIN], chunk=CHUNK):
                by_key: dict[str, list[Delivery]] = {}
                for delivery in chunk:
                    by_key.setdefault(delivery.batch_key or "", []).append(delivery)
                for key, deliveries in by_key.items():
                    self.resend_same_key(key or self.fresh_key(deliveries), deliveries)
                    self.bump("resent-same-key", len(deliveries))
            self.drain()
            return
        if resend:
            for chunk in self.ledger.iter_state(self.issue_id, [L.UNCERTAIN], chunk=CHUNK):
                self.ledger.transition(
                    self.issue_id,
                    [
                        Outcome(d.subscriber_id, L.PENDING, error=f"resent: {d.last_error}")
                        for d in chunk
                    ],
                    now=self.clock(),
                )
                self.bump("resent", len(chunk))

    def fresh_key(self, deliveries: Sequence[Delivery]) -> str:
        variant = deliveries[0].variant or ALL
        return idempotency_key(
            self.issue_id,
            variant,
            [d.subscriber_id for d in deliveries],
            [d.email for d in deliveries],
        )

    def look_up(self) -> None:
        wait = float(getattr(self.provider.settings, "reconcile_after", 0.0) or 0.0)
        now = self.clock()
        for chunk in self.ledger.iter_state(self.issue_id, [L.UNCERTAIN], chunk=CHUNK):
            try:
                answers = self.provider.lookup(self.issue_id, chunk)
            except DigestError as exc:
                log.warning(
                    "%s cannot say which messages it accepted (%s); %d stay uncertain",
                    self.provider.name,
                    exc,
                    len(chunk),
                )
                self.bump("lookup-failed", len(chunk))
                return
            outcomes: list[Outcome] = []
            for delivery in chunk:
                if delivery.subscriber_id not in answers:
                    continue
                message_id = answers[delivery.subscriber_id]
                if message_id is not None:
                    outcomes.append(
                        Outcome(
                            delivery.subscriber_id,
                            L.SENT,
                            provider_message_id=message_id,
                            error=f"confirmed by {self.provider.name}'s records",
                        )
                    )
                    self.bump("confirmed-sent", 1)
                elif _age(delivery, now) >= wait:
                    outcomes.append(
                        Outcome(
                            delivery.subscriber_id,
                            L.PENDING,
                            error=f"not in {self.provider.name}'s records: sent again",
                        )
                    )
                    self.bump("not-accepted", 1)
                else:
                    self.bump("too-recent", 1)
            if outcomes:
                self.ledger.transition(self.issue_id, outcomes, now=self.clock())

    def bump(self, key: str, n: int) -> None:
        self.report.reconciled[key] = self.report.reconciled.get(key, 0) + n

    # -- the main pass

    def run(self, states: Sequence[str], limit: int | None) -> bool:
        """Send every row in ``states``; False when ``limit`` stopped it early."""
        for chunk in self.leased(states, by_variant=True):
            chunk = [
                d
                for d in chunk
                if d.state != L.FAILED_RETRYABLE or d.attempts < self.config.send.max_attempts
            ]
            found = self.store.get_many([d.subscriber_id for d in chunk])
            groups: dict[str, list[Recipient]] = {}
            skipped: list[Outcome] = []
            for delivery in chunk:
                subscriber = found.get(delivery.subscriber_id)
                if subscriber is None or not subscriber.active:
                    why = "removed" if subscriber is None else subscriber.status
                    skipped.append(
                        Outcome(delivery.subscriber_id, L.SKIPPED, error=f"{why} before sending")
                    )
                    continue
                variant = variant_of(subscriber, self.issue.selection, self.sections)
                if variant is None:
                    skipped.append(
                        Outcome(
                            delivery.subscriber_id,
                            L.SKIPPED,
                            error="no posts in their sections this week",
                        )
                    )
                    continue
                groups.setdefault(variant, []).append(self.recipient(subscriber))
            if skipped:
                self.ledger.transition(self.issue_id, skipped, now=self.clock())
                self.report.skipped += len(skipped)
                self.tick(len(skipped))
            if self.provider.mixes_variants and not self.send_mixed(groups, limit):
                return False
            for variant, recipients in groups.items():
                for start in range(0, len(recipients), self.batch_size):
                    part = recipients[start : start + self.batch_size]
                    if limit is not None:
                        room = limit - self.report.attempted
                        if room <= 0:
                            return False
                        part = part[:room]
                    self.check_stop()
                    self.report.variants[variant] = self.report.variants.get(variant, 0) + len(part)
                    self.dispatch(self.batch(variant, part))
        self.drain()
        return True

    def send_mixed(self, groups: dict[str, list[Recipient]], limit: int | None) -> bool:
        """Send the chunk's groups in full batches across variants (emptying ``groups``);
        False when ``limit`` stopped it. Leaves ``groups`` alone without wire templates."""
        parts = [(variant, r) for variant, recipients in groups.items() for r in recipients]
        for start in range(0, len(parts), self.batch_size):
            part = parts[start : start + self.batch_size]
            if limit is not None:
                room = limit - self.report.attempted
                if room <= 0:
                    return False
                part = part[:room]
            self.check_stop()
            batch = self.mixed_batch(part)
            if batch is None:
                return True  # no fast path: one variant per batch, as for every provider
            for variant, _ in part:
                self.report.variants[variant] = self.report.variants.get(variant, 0) + 1
            self.dispatch(batch, variants=[variant for variant, _ in part])
        groups.clear()
        return True

    def check_stop(self) -> None:
        """A safe point: between batches, with every result so far committed."""
        if self.stop_requested():
            self.drain()
            raise SendError(
                f"stopped after {self.done} of {max(self.total, self.done)}; "
                "run the same command to resume"
            )

    def dispatch(self, batch: Batch, *, variants: Sequence[str] | None = None) -> None:
        ids = [r.subscriber_id for r in batch.recipients]
        self.ledger.claim(
            self.issue_id,
            ids,
            batch_key=batch.idempotency_key,
            variant=batch.variant,
            message_ids=[r.message_id for r in batch.recipients],
            now=self.clock(),
            variants=variants,
        )
        self.report.attempted += len(ids)
        if self.pool is None:
            attempt = _Attempt()
            try:
                for event in self.provider.send(batch):
                    self.record_event(event, attempt)
            except Exception as exc:  # recorded by release(), then raised again
                attempt.error = exc
            except BaseException:
                # killed mid-batch (Ctrl-C twice): what came back is committed; the rest
                # stays `sending`, which the next run settles exactly like a crash
                self.flush(attempt)
                raise
            self.flush(attempt)
            self.release(batch, attempt)
            return
        while len(self.inflight) >= self.concurrency:
            self.collect(every=False)
        self.inflight[self.pool.submit(_run_attempt, self.provider, batch)] = batch

    def record_event(self, event: Event, attempt: _Attempt) -> None:
        """Commit one event as it comes (transports that commit each) or keep it for
        :meth:`flush`; always on this thread."""
        if isinstance(event, Handoff):
            self.ledger.mark_handed_off(self.issue_id, event.subscriber_id)
            attempt.handed_off.add(event.subscriber_id)
            return
        attempt.seen.add(event.subscriber_id)
        self.count(event)
        if self.provider.commit_each:
            self.ledger.transition(self.issue_id, [_outcome(event)], now=self.clock())
            self.tick(1)
        else:
            attempt.results.append(event)

    def flush(self, attempt: _Attempt) -> None:
        if attempt.results:
            outcomes = [_outcome(r) for r in attempt.results]
            attempt.results = []
            self.ledger.transition(self.issue_id, outcomes, now=self.clock())
            self.tick(len(outcomes))

    def release(self, batch: Batch, attempt: _Attempt) -> None:
        """Rows of ``batch`` the provider gave no result for, then the batch's error.

        No result and no error: the provider answered without a verdict for them, so
        they are ``uncertain``. With an error: rows handed off (SMTP) or answered with a
        2xx the provider could not be read from are ``uncertain``; the rest were certainly
        not accepted and go back to ``pending`` for the next run.
        """
        error = attempt.error
        missing = [r.subscriber_id for r in batch.recipients if r.subscriber_id not in attempt.seen]
        if missing:
            accepted_answer = (
                isinstance(error, ProviderError)
                and error.status is not None
                and 200 <= error.status < 300
            )
            why = str(error) if error is not None else "the provider gave no result"
            outcomes = []
            for sid in missing:
                if error is None or accepted_answer or sid in attempt.handed_off:
                    outcomes.append(Outcome(sid, L.UNCERTAIN, error=why))
                else:
                    outcomes.append(Outcome(sid, L.PENDING, error=f"not sent: {why}"))
            uncertain = sum(1 for o in outcomes if o.state == L.UNCERTAIN)
            self.report.uncertain += uncertain
            self.ledger.transition(self.issue_id, outcomes, now=self.clock())
            self.tick(uncertain)
        if error is not None:
            raise error

    def collect(self, *, every: bool) -> None:
        """Wait for one batch in flight (or ``every`` one) to finish, and record what has.

        When a batch failed, every other batch in flight is still recorded before the error
        goes on: a provider's accepted messages are never left unrecorded.
        """
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), return_when=ALL_COMPLETED if every else FIRST_COMPLETED)
        error: BaseException | None = None
        for future in done:
            batch = self.inflight.pop(future)
            attempt = future.result()
            for event in attempt.events:
                self.record_event(event, attempt)
            self.flush(attempt)
            try:
                self.release(batch, attempt)
            except BaseException as exc:  # re-raised below, after the rest are recorded
                error = error or exc
        if error is not None:
            self.drain()
            raise error

    def drain(self) -> None:
        """Wait for every batch in flight and record it."""
        while self.inflight:
            self.collect(every=True)

    def abandon(self) -> int:
        """A hard stop (a second Ctrl-C): batches that already finished are recorded; rows
        of batches still in flight stay ``sending``, which the next run settles like a
        crash's. Returns how many were left so."""
        for future in [f for f in self.inflight if f.done()]:
            batch = self.inflight.pop(future)
            attempt = future.result()
            for event in attempt.events:
                self.record_event(event, attempt)
            self.flush(attempt)
            with contextlib.suppress(Exception):
                self.release(batch, attempt)
        count = sum(len(b.recipients) for b in self.inflight.values())
        for future in self.inflight:
            future.cancel()
        self.inflight.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        return count

    def count(self, result: Result) -> None:
        if result.state == L.SENT:
            self.report.sent += 1
        elif result.state == L.FAILED_PERMANENT:
            self.report.failed_permanent += 1
        elif result.state == L.UNCERTAIN:
            self.report.uncertain += 1
        else:
            self.report.failed_retryable += 1

    def tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))


@dataclass
class _Attempt:
    """What one batch's send produced: its events, and the error that ended it, if any."""

    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None
    seen: set[int] = field(default_factory=set)
    handed_off: set[int] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)


def _run_attempt(provider: Provider, batch: Batch) -> _Attempt:
    """On a worker thread: every event the provider yields, and how it ended."""
    attempt = _Attempt()
    try:
        for event in provider.send(batch):
            attempt.events.append(event)
    except Exception as exc:  # handed to the sending thread, which records and re-raises
        attempt.error = exc
    return attempt


def _age(delivery: Delivery, now: datetime) -> float:
    if not delivery.updated_at:
        return float("inf")
    return (now - parse_utc(delivery.updated_at)).total_seconds()


def _outcome(result: Result) -> Outcome:
    return Outcome(
        result.subscriber_id,
        result.state,
        provider_message_id=result.provider_message_id,
        error=result.reason,
        confirmed=result.confirmed,
    )


def send_issue(
    config: Config,
    *,
    now: datetime,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    force: bool = False,
    new_subscribers: bool = False,
    resend_uncertain: bool = False,
    progress: Progress | None = None,
    composer: Composer | None = None,
    provider: Provider | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] | None = None,
    stop: Callable[[], bool] | None = None,
    lease: timedelta | None = None,
    enqueue: bool = True,
) -> SendReport:
    """Send the issue to every active subscriber who has not had it; see the module doc.

    Any number of these may run at once on one issue, in this process or others, on this
    host or others sharing the database: each leases the rows it sends (``lease``, renewed
    while it runs), and stays until the issue is done, taking over the rows of a sender
    whose lease ran out. ``enqueue=False`` skips queueing (a worker whose parent queued).

    Raises :class:`NothingToSend` for an empty issue, an empty subscriber list (nothing is
    recorded), or an issue already sent in full (unless ``force``, or ``new_subscribers``
    to send it to those who joined since). A message that fails permanently does not
    raise: it is in the report and the ledger, and :attr:`SendReport.exit_code` is 1.
    When the run cannot go on (the provider refused us, a batch kept failing, ``stop()``
    turned True at a safe point) the report is still written, with :attr:`SendReport.stopped`
    set, and the :class:`SendError` is raised.
    """
    composer = composer or BuildComposer()
    tick_clock = clock or (lambda: datetime.now(timezone.utc))
    lease = lease or config.send.lease
    issue = composer.prepare(
        # a worker (enqueue=False) uses what the process that queued the issue built
        config,
        now=now,
        week=week,
        since=since,
        until=until,
        write=enqueue and not dry_run,
    )
    issue_id = issue.selection.issue_id
    if issue.selection.count == 0:
        raise NothingToSend(f"{issue_id} has no posts; there is nothing to send")
    store = SubscriberStore(locate(config, config.subscribers.database))
    ledger = Ledger(locate(config, config.ledger.database))
    try:
        if dry_run:
            return _dry_run(config, issue, store, ledger, composer)
        require_secrets(config, SEND_SECRETS)
        provider = provider or make_provider(config)
        link_keys(config, now=now)  # the link key exists before any link is signed
        report = SendReport(issue_id, provider.name)
        started, cpu_started = time.perf_counter(), time.process_time()
        # Shared: any number of senders may run on one issue (rows are leased); only a
        # `digest db migrate` takes the lock for itself.
        ledger.lock(shared=True)
        state = ledger.issue(issue_id)
        finished_before = bool(state is not None and state["completed_at"])
        if finished_before:
            if force:
                ledger.reset_for_resend(issue_id, now)
            else:
                joined = count_new_subscribers(store, ledger, issue_id)
                if not new_subscribers:
                    counts = ledger.counts(issue_id)
                    hint = (
                        f"; {joined} subscriber{'s' if joined != 1 else ''} joined since: "
                        "send them this issue with --new-subscribers"
                        if joined
                        else ""
                    )
                    raise NothingToSend(
                        f"{issue_id} was already sent ({counts[L.SENT]} sent, completed "
                        f"{state['completed_at'] if state else ''}){hint}; use --force to "
                        "send it again to everyone"
                    )
                if not joined:
                    raise NothingToSend(
                        f"{issue_id}: nobody joined since it was sent; nothing to send"
                    )
        if not ledger.counts(issue_id) or not any(ledger.counts(issue_id).values()):
            active = store.counts().get("active", 0)
            if not active:
                where = locate(config, config.subscribers.database)
                raise NoSubscribers(
                    f"{issue_id}: no active subscribers in {where}, so nothing was sent and "
                    "nothing was recorded; add some with `digest subscribers import FILE` "
                    "(or check subscribers.database in the config)"
                )
        ledger.start_run(
            issue_id, subject=str(issue.composed.subject), provider=provider.name, now=now
        )
        if enqueue:
            report.queued = ledger.enqueue(
                issue_id,
                (
                    # queued with its variant, which the send groups rows by
                    (s.id, s.email, variant_of(s, issue.selection) or "")
                    for s in newsletters.recipients(config, store, chunk=CHUNK)
                ),
                now=now,
            )
            if finished_before:
                ledger.mark_completed(issue_id, None)  # open again for those who joined
            ledger.mark_enqueued(issue_id, now)
        owner = sender_id()
        sender = _Sender(
            config,
            issue,
            composer,
            provider,
            ledger,
            store,
            report,
            now=now,
            clock=tick_clock,
            progress=progress,
            stop=stop,
            sleep=sleep,
            owner=owner,
            lease=lease,
        )
        heartbeat = _Heartbeat(ledger.path, issue_id, owner, lease, tick_clock)
        pace: DatabasePace | None = None
        from digest.delivery.providers.http import HttpProvider  # httpx: not for `status`

        if isinstance(provider, HttpProvider):
            # every sender process of this installation takes its request slots from one
            # sequence, so together they keep the provider's pace
            pace = DatabasePace(ledger.path, provider.name)
            provider.pacer.share(pace)
        counts = ledger.counts(issue_id)
        sender.total = counts[L.PENDING] + counts[L.SENDING] + counts[L.FAILED_RETRYABLE]
        if limit is not None:
            sender.total = min(sender.total, limit)
        report.total = sender.total
        resend = resend_uncertain or config.send.uncertain == "resend"
        finished = False
        try:
            try:
                while True:
                    before = (report.attempted, report.skipped)
                    settled = sender.settle()
                    sender.resolve_uncertain(resend=resend)
                    counts = ledger.counts(issue_id)
                    sender.total = max(
                        sender.total,
                        counts[L.PENDING] + counts[L.FAILED_RETRYABLE] + sender.done,
                    )
                    report.total = sender.total
                    finished = sender.run([L.PENDING, L.FAILED_RETRYABLE], limit)
                    attempt = 1
                    while finished and attempt < config.send.max_attempts:
                        if not ledger.counts(issue_id)[L.FAILED_RETRYABLE]:
                            break
                        sender.check_stop()
                        sleep(min(2.0**attempt, 60.0))
                        finished = sender.run([L.FAILED_RETRYABLE], limit)
                        attempt += 1
                    _give_up(ledger, issue_id, config.send.max_attempts, tick_clock())
                    if finished and ledger.counts(issue_id)[L.UNCERTAIN]:
                        # what this run left uncertain: ask now, and send what was not accepted
                        sender.resolve_uncertain(resend=False)
                        if ledger.counts(issue_id)[L.PENDING]:
                            finished = sender.run([L.PENDING], limit)
                    if not finished:
                        break
                    if settled or (report.attempted, report.skipped) != before:
                        continue  # rows may have come free meanwhile (a sender that died)
                    # Other senders hold what is left: stay until they finish it, or until
                    # their leases run out (they died) and this sender takes the rows over.
                    held_until = ledger.held_elsewhere(issue_id, owner=owner, now=tick_clock())
                    if held_until is None:
                        break
                    sender.check_stop()
                    wait = (held_until - tick_clock()).total_seconds()
                    sleep(min(max(wait, 0.0) + 0.05, lease.total_seconds() / 3))
            finally:
                try:
                    sender.close()
                finally:
                    try:
                        heartbeat.close()
                        ledger.release(issue_id, owner=owner)
                    finally:
                        provider.close()
                        if pace is not None:
                            pace.close()
        except DigestError as exc:
            report.stopped = str(exc)
            _finish(config, ledger, report, issue_id, started, cpu_started, tick_clock, False)
            raise
        except KeyboardInterrupt:
            # a hard stop: batches in flight stay `sending` and the next run settles them
            # like a crash's; everything recorded so far is committed
            sender.abandon()
            report.stopped = "stopped at once"
            _finish(config, ledger, report, issue_id, started, cpu_started, tick_clock, False)
            raise
        report.limited = not finished
        _finish(config, ledger, report, issue_id, started, cpu_started, tick_clock, True)
        return report
    finally:
        ledger.close()
        store.close()


def send_in_processes(
    config: Config,
    *,
    workers: int,
    now: datetime,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    force: bool = False,
    resend_uncertain: bool = False,
    progress: Progress | None = None,
    lease: timedelta | None = None,
) -> SendReport:
    """``digest send --workers N``: queue the issue here, then send it from ``workers``
    processes that lease rows from the ledger (see :func:`send_issue`); one report for all.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    queued = send_issue(
        config, now=now, week=week, since=since, until=until, force=force, limit=0, lease=lease
    )
    issue_id = queued.issue_id
    context = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    arguments = {
        "now": now,
        "week": week,
        "since": since,
        "until": until,
        "lease": lease,
        "resend_uncertain": resend_uncertain,
    }
    with context.Pool(workers) as pool:
        pending = [pool.apply_async(_worker, (config, arguments)) for _ in range(workers)]
        with Ledger(locate(config, config.ledger.database)) as ledger:
            while not all(p.ready() for p in pending):
                if progress is not None:
                    counts = ledger.counts(issue_id)
                    left = counts[L.PENDING] + counts[L.SENDING] + counts[L.FAILED_RETRYABLE]
                    done = sum(counts.values()) - left
                    progress(done, sum(counts.values()))
                pending[0].wait(0.5)
        reports = [p.get() for p in pending]
    report = SendReport(issue_id, queued.provider, queued=queued.queued)
    for part in reports:
        if part is None:
            continue
        report.attempted += part.attempted
        report.sent += part.sent
        report.failed_permanent += part.failed_permanent
        report.failed_retryable += part.failed_retryable
        report.skipped += part.skipped
        for key, value in part.settled_after_crash.items():
            report.settled_after_crash[key] = report.settled_after_crash.get(key, 0) + value
        for key, value in part.variants.items():
            report.variants[key] = report.variants.get(key, 0) + value
    with Ledger(locate(config, config.ledger.database)) as ledger:
        report.ledger = ledger.counts(issue_id)
        report.unconfirmed = ledger.unconfirmed(issue_id)
        unfinished = sum(
            report.ledger[s] for s in (L.PENDING, L.SENDING, L.FAILED_RETRYABLE, L.UNCERTAIN)
        )
        report.complete = unfinished == 0
        if report.complete:
            ledger.mark_completed(issue_id, datetime.now(timezone.utc))
        report.failures = [
            {"email": d.email, "state": d.state, "attempts": d.attempts, "error": d.last_error}
            for d in ledger.failures(issue_id)
        ]
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = (
        time.process_time() - cpu_started + sum(r.cpu_seconds for r in reports if r is not None)
    )
    report.report_path = str(write_report(config, report))
    return report


def _worker(config: Config, arguments: dict[str, Any]) -> SendReport | None:
    """One process of :func:`send_in_processes` (None: the others had finished the issue)."""
    try:
        return send_issue(config, enqueue=False, **arguments)
    except NothingToSend:
        return None


def _finish(
    config: Config,
    ledger: Ledger,
    report: SendReport,
    issue_id: str,
    started: float,
    cpu_started: float,
    clock: Callable[[], datetime],
    may_complete: bool,
) -> None:
    """Counts from the ledger, completion, the archive, and the report file."""
    report.ledger = ledger.counts(issue_id)
    if report.ledger[L.SENT]:
        from digest.email import archive

        archive.publish_issue(config, issue_id)  # the archive shows what was sent
    report.unconfirmed = ledger.unconfirmed(issue_id)
    report.uncertain_held = [
        {"email": d.email, "attempts": d.attempts, "error": d.last_error}
        for d in ledger.uncertain(issue_id, limit=200)
    ]
    unfinished = sum(
        report.ledger[s] for s in (L.PENDING, L.SENDING, L.FAILED_RETRYABLE, L.UNCERTAIN)
    )
    report.complete = unfinished == 0
    if report.complete and may_complete:
        ledger.mark_completed(issue_id, clock())
    report.failures = [
        {"email": d.email, "state": d.state, "attempts": d.attempts, "error": d.last_error}
        for d in ledger.failures(issue_id)
    ]
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu_started
    report.report_path = str(write_report(config, report))


def issue_status(config: Config, issue_id: str) -> dict[str, Any]:
    """What ``digest status`` shows: the ledger's counts, the uncertain and failed rows, and
    how many active subscribers joined after the issue went out."""
    with Ledger(locate(config, config.ledger.database)) as ledger:
        info = ledger.issue(issue_id)
        joined = 0
        if info is not None and info["completed_at"]:
            with SubscriberStore(locate(config, config.subscribers.database)) as store:
                joined = count_new_subscribers(store, ledger, issue_id)
        return {
            "issue_id": issue_id,
            "counts": ledger.counts(issue_id),
            "unconfirmed": ledger.unconfirmed(issue_id),
            "uncertain": [
                {"email": u.email, "error": u.last_error}
                for u in ledger.uncertain(issue_id, limit=20)
            ],
            "new_subscribers": joined,
            "info": info,
            "started_at": info["started_at"] if info else None,
            "completed_at": info["completed_at"] if info else None,
            "runs": info["runs"] if info else 0,
            "failures": [
                {"email": f.email, "state": f.state, "error": f.last_error}
                for f in ledger.failures(issue_id, limit=20)
            ],
        }


def count_new_subscribers(store: SubscriberStore, ledger: Ledger, issue_id: str) -> int:
    """Active subscribers who have no row for the issue (they joined after it went out)."""
    missing = 0
    batch: list[int] = []
    for subscriber in store.iter_active(chunk=CHUNK):
        batch.append(subscriber.id)
        if len(batch) >= 500:
            missing += len(batch) - len(ledger.queued_ids(issue_id, batch))
            batch = []
    if batch:
        missing += len(batch) - len(ledger.queued_ids(issue_id, batch))
    return missing


def _give_up(ledger: Ledger, issue_id: str, max_attempts: int, now: datetime) -> None:
    """Retryable rows that used every attempt become permanent failures."""
    outcomes: list[Outcome] = []
    for chunk in ledger.iter_state(issue_id, [L.FAILED_RETRYABLE], chunk=CHUNK):
        outcomes.extend(
            Outcome(
                d.subscriber_id,
                L.FAILED_PERMANENT,
                error=f"gave up after {d.attempts} attempts: {d.last_error}",
            )
            for d in chunk
            if d.attempts >= max_attempts
        )
    if outcomes:
        ledger.record(issue_id, outcomes, now=now)


def _dry_run(
    config: Config, issue: Issue, store: SubscriberStore, ledger: Ledger, composer: Composer
) -> SendReport:
    issue_id = issue.selection.issue_id
    report = SendReport(issue_id, config.provider.name, dry_run=True)
    report.ledger = ledger.counts(issue_id)
    report.missing_secrets = [
        f"{key}: {ref} ({config.source or 'the config'})"
        for key, ref in missing_secrets(config)
        if key.startswith(SEND_SECRETS)
    ]
    already = {L.SENT, L.FAILED_PERMANENT, L.SKIPPED}
    for subscriber in newsletters.recipients(config, store, chunk=CHUNK):
        variant = variant_of(subscriber, issue.selection, section_names(config))
        if variant is None:
            report.skipped += 1
            continue
        row = ledger.get(issue_id, subscriber.id)
        if row is not None and row.state in already:
            continue
        report.attempted += 1
        report.variants[variant] = report.variants.get(variant, 0) + 1
        if len(report.sample) < 5:
            report.sample.append(
                {
                    "email": subscriber.email,
                    "variant": variant,
                    "categories": list(subscriber.categories),
                }
            )
    report.sample.insert(0, {"subject": str(issue.composed.subject)})
    return report


def write_report(config: Config, report: SendReport) -> Path:
    folder = _out_dir(config, report.issue_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "send-report.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n", "utf-8")
    os.replace(temporary, target)
    return target


def send_test(
    config: Config,
    to: str,
    *,
    now: datetime,
    week: str | None = None,
    composer: Composer | None = None,
    provider: Provider | None = None,
) -> Result:
    """Send one message marked [TEST] to ``to``; the ledger is not touched."""
    from digest.audience.subscribers import normalise_email

    composer = composer or BuildComposer()
    address = normalise_email(to)
    issue = composer.prepare(config, now=now, week=week, since=None, until=None, write=True)
    if issue.selection.count == 0:
        raise NothingToSend(f"{issue.selection.issue_id} has no posts; there is nothing to send")
    composed = replace(issue.composed, subject=f"[TEST] {issue.composed.subject}")
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        known = store.get(address)
    secret = known.secret if known else os.urandom(32)
    fake = Subscriber(0, address, known.name if known else "", "active", "", (), secret)
    values = recipient_values(config, fake, token_secret(config))
    recipient = Recipient(0, address, values, message_id_for(config, f"test-{now.timestamp()}", 0))
    provider = provider or make_provider(config)
    batch = Batch(
        issue_id=issue.selection.issue_id,
        variant=ALL,
        composed=composed,
        recipients=(recipient,),
        idempotency_key=f"digest-test-{issue.selection.issue_id}-{int(now.timestamp())}",
        renderer=composer.render,
        date=now,
        test=True,
    )
    try:
        results = [e for e in provider.send(batch) if isinstance(e, Result)]
    finally:
        provider.close()
    return results[0]

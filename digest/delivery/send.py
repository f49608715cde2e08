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

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.audience.tokens import SECRET_ENV, token_secret
from digest.config import Config
from digest.content.intro import Intro, load_intro
from digest.content.select import Selection
from digest.delivery import ledger as L
from digest.delivery.ledger import Delivery, Ledger, Outcome
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
from digest.email.build import build_issue
from digest.email.message import (
    ComposedEmail,
    WireTemplate,
    message_id_for,
    recipient_values,
    to_message,
)
from digest.email.variants import VariantAssembler
from digest.errors import ConfigError, NothingToSend

log = logging.getLogger(__name__)

CHUNK = 1000
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
    skipped: int = 0
    settled_after_crash: dict[str, int] = field(default_factory=dict)
    variants: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    complete: bool = False
    limited: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    report_path: str | None = None

    @property
    def exit_code(self) -> int:
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


def variant_of(subscriber: Subscriber, selection: Selection) -> str | None:
    """The subscriber's variant key: ``all``, ``Work+Tools``, or None for nothing to send."""
    if not subscriber.categories:
        return ALL
    wanted = {c.casefold() for c in subscriber.categories}
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
    ) -> None:
        self.config = config
        self.issue = issue
        self.issue_id = issue.selection.issue_id
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
        self.inflight: set[Future[list[Event]]] = set()

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
            idempotency_key=key or idempotency_key(self.issue_id, variant, ids),
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

    def settle(self) -> None:
        for chunk in self.ledger.iter_state(self.issue_id, [L.SENDING], chunk=CHUNK):
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
                    key = "sent" if result.confirmed else "unconfirmed"
                self.report.settled_after_crash[key] = (
                    self.report.settled_after_crash.get(key, 0) + 1
                )
            self.ledger.record(self.issue_id, outcomes, now=self.clock())
            for key, deliveries in resend.items():
                self.resend_same_key(key, deliveries)

    def resend_same_key(self, key: str, deliveries: list[Delivery]) -> None:
        found = self.store.get_many([d.subscriber_id for d in deliveries])
        recipients = [
            self.recipient(found[d.subscriber_id]) for d in deliveries if d.subscriber_id in found
        ]
        if recipients:
            variant = deliveries[0].variant or ALL
            self.dispatch(self.batch(variant, recipients, key))

    # -- the main pass

    def run(self, states: Sequence[str], limit: int | None) -> bool:
        """Send every row in ``states``; False when ``limit`` stopped it early."""
        rows = self.ledger.iter_state(self.issue_id, states, chunk=CHUNK, by_variant=True)
        for chunk in rows:
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
                variant = variant_of(subscriber, self.issue.selection)
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
                self.ledger.record(self.issue_id, skipped, now=self.clock())
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
            batch = self.mixed_batch(part)
            if batch is None:
                return True  # no fast path: one variant per batch, as for every provider
            for variant, _ in part:
                self.report.variants[variant] = self.report.variants.get(variant, 0) + 1
            self.dispatch(batch, variants=[variant for variant, _ in part])
        groups.clear()
        return True

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
            self.record(self.provider.send(batch))
            return
        while len(self.inflight) >= self.concurrency:
            self.collect(every=False)
        self.inflight.add(self.pool.submit(lambda: list(self.provider.send(batch))))

    def record(self, events: Iterable[Event]) -> None:
        """Write a batch's results to the ledger (always on this thread)."""
        pending: list[Outcome] = []
        for event in events:
            if isinstance(event, Handoff):
                self.ledger.mark_handed_off(self.issue_id, event.subscriber_id)
                continue
            self.count(event)
            if self.provider.commit_each:
                self.ledger.record(self.issue_id, [_outcome(event)], now=self.clock())
                self.tick(1)
            else:
                pending.append(_outcome(event))
        if pending:
            self.ledger.record(self.issue_id, pending, now=self.clock())
            self.tick(len(pending))

    def collect(self, *, every: bool) -> None:
        """Wait for one batch in flight (or ``every`` one) to finish, and record what has.

        When a batch raised, every other batch in flight is still recorded before the error
        goes on: a provider's accepted messages are never left unrecorded.
        """
        if not self.inflight:
            return
        done, _ = wait(self.inflight, return_when=ALL_COMPLETED if every else FIRST_COMPLETED)
        error: BaseException | None = None
        for future in done:
            self.inflight.discard(future)
            try:
                events = future.result()
            except BaseException as exc:  # re-raised below, after the rest are recorded
                error = error or exc
                continue
            self.record(events)
        if error is not None:
            self.drain()
            raise error

    def drain(self) -> None:
        """Wait for every batch in flight and record it."""
        while self.inflight:
            self.collect(every=True)

    def count(self, result: Result) -> None:
        if result.state == L.SENT:
            self.report.sent += 1
        elif result.state == L.FAILED_PERMANENT:
            self.report.failed_permanent += 1
        else:
            self.report.failed_retryable += 1

    def tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))


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
    progress: Progress | None = None,
    composer: Composer | None = None,
    provider: Provider | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] | None = None,
) -> SendReport:
    """Send the issue to every active subscriber who has not had it; see the module doc.

    Raises :class:`NothingToSend` for an empty issue, or one already sent in full (unless
    ``force``). A message that fails permanently does not raise: it is in the report and
    the ledger, and :attr:`SendReport.exit_code` is 1.
    """
    composer = composer or BuildComposer()
    tick_clock = clock or (lambda: datetime.now(timezone.utc))
    issue = composer.prepare(
        config, now=now, week=week, since=since, until=until, write=not dry_run
    )
    issue_id = issue.selection.issue_id
    if issue.selection.count == 0:
        raise NothingToSend(f"{issue_id} has no posts; there is nothing to send")
    store = SubscriberStore(config.path(config.subscribers.database))
    ledger = Ledger(config.path(config.ledger.database))
    try:
        if dry_run:
            return _dry_run(config, issue, store, ledger, composer)
        provider = provider or make_provider(config)
        _require_link_secret(config, provider)
        report = SendReport(issue_id, provider.name)
        started, cpu_started = time.perf_counter(), time.process_time()
        ledger.lock()
        state = ledger.issue(issue_id)
        if state is not None and state["completed_at"]:
            if not force:
                counts = ledger.counts(issue_id)
                raise NothingToSend(
                    f"{issue_id} was already sent ({counts[L.SENT]} sent, completed "
                    f"{state['completed_at']}); use --force to send it again to everyone"
                )
            ledger.reset_for_resend(issue_id, now)
        ledger.start_run(
            issue_id, subject=str(issue.composed.subject), provider=provider.name, now=now
        )
        # Each row is queued with its variant, so that rows are sent grouped by variant.
        report.queued = ledger.enqueue(
            issue_id,
            (
                (s.id, s.email, variant_of(s, issue.selection) or "")
                for s in store.iter_active(chunk=CHUNK)
            ),
            now=now,
        )
        ledger.mark_enqueued(issue_id, now)
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
        )
        counts = ledger.counts(issue_id)
        sender.total = counts[L.PENDING] + counts[L.SENDING] + counts[L.FAILED_RETRYABLE]
        if limit is not None:
            sender.total = min(sender.total, limit)
        try:
            sender.settle()
            finished = sender.run([L.PENDING, L.FAILED_RETRYABLE], limit)
            attempt = 1
            while finished and attempt < config.send.max_attempts:
                if not ledger.counts(issue_id)[L.FAILED_RETRYABLE]:
                    break
                sleep(min(2.0**attempt, 60.0))
                finished = sender.run([L.FAILED_RETRYABLE], limit)
                attempt += 1
            _give_up(ledger, issue_id, config.send.max_attempts, tick_clock())
        finally:
            try:
                sender.close()
            finally:
                provider.close()
        report.limited = not finished
        report.ledger = ledger.counts(issue_id)
        report.unconfirmed = ledger.unconfirmed(issue_id)
        unfinished = sum(report.ledger[s] for s in (L.PENDING, L.SENDING, L.FAILED_RETRYABLE))
        report.complete = unfinished == 0
        if report.complete:
            ledger.mark_completed(issue_id, tick_clock())
        report.failures = [
            {"email": d.email, "state": d.state, "attempts": d.attempts, "error": d.last_error}
            for d in ledger.failures(issue_id)
        ]
        report.seconds = time.perf_counter() - started
        report.cpu_seconds = time.process_time() - cpu_started
        report.report_path = str(write_report(config, report))
        return report
    finally:
        ledger.close()
        store.close()


def _require_link_secret(config: Config, provider: Provider) -> None:
    """Refuse to mail real people links that `digest serve` would not accept.

    The links point at `digest serve` (``serve.public_url``), which verifies tokens with the
    server secret; tokens signed without it would be refused there. The outbox is exempt: it
    writes files for a person to look at, not to subscribers.
    """
    if provider.name == "outbox" or not config.serve.public_url or token_secret(config):
        return
    raise ConfigError(
        "serve.secret: unsubscribe and preference links point at digest serve "
        f"({config.serve.public_url}), which verifies them with a server secret, and none is "
        f"set: export {SECRET_ENV} (or set serve.secret: ${{YOUR_VARIABLE}}) before sending"
    )


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
    already = {L.SENT, L.FAILED_PERMANENT, L.SKIPPED}
    for subscriber in store.iter_active(chunk=CHUNK):
        variant = variant_of(subscriber, issue.selection)
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
    with SubscriberStore(config.path(config.subscribers.database)) as store:
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

"""Sending an issue to every active subscriber exactly once, resumably.

The loop, each step committed to the ledger before the next depends on it:

1. build the issue (or reuse ``out/<issue-id>/``); refuse if it was already sent in full
   (unless ``force``);
2. queue every active subscriber once (re-running queues only the new ones);
3. settle rows a crashed run left ``sending`` (the provider decides how: outbox looks for
   the file, SMTP trusts its hand-off marks, API providers resend with the same
   idempotency key);
4. stream queued rows in subscriber order, a chunk at a time; group them by preference set
   (one composed variant per distinct set, then per-recipient substitution), read the
   batch's statuses again, claim it as ``sending`` under this sender's fence, hand it to the
   provider and commit every result (:mod:`~digest.delivery.dispatch`);
5. send again what was refused for now (back to ``pending``) after a pause, for at most
   ``send.max_attempts`` tries within ``send.retry_for``; then stop (exit 6), the rows
   pending for the next run. Nothing refused for now is ever ``failed-permanent``;
6. write ``out/<issue-id>/send-report.json``; the issue is complete only when no row is
   ``pending``, ``sending`` or ``uncertain``.

Nothing here holds the subscriber list in memory: rows are read ``CHUNK`` at a time.

The steps' helpers live beside it: :mod:`~digest.delivery.issue` (what sending needs from
the build), :mod:`~digest.delivery.preferences` (variants and their batches),
:mod:`~digest.delivery.reconcile` (step 3, and uncertain rows), :mod:`~digest.delivery.leases`
(the rows this sender holds), :mod:`~digest.delivery.send_report` (step 6, and
``digest status``) and :mod:`~digest.delivery.workers` (``digest send --workers N``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

from digest.audience import newsletters
from digest.audience.keys import link_keys
from digest.audience.subscribers import Subscriber, SubscriberStore, normalise_email
from digest.audience.tokens import token_secret
from digest.config import Config, missing_secrets, require_secrets
from digest.content.layout import least_posts, too_few_posts
from digest.content.window import is_day
from digest.delivery.dispatch import Dispatcher
from digest.delivery.issue import BuildComposer, Composer, Issue
from digest.delivery.leases import LEASE, Heartbeat, lease_now, sender_id
from digest.delivery.ledger import (
    CHUNK,
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Delivery,
    Ledger,
    Outcome,
)
from digest.delivery.pace import DatabasePace
from digest.delivery.preferences import ALL, Variants, section_names, variant_of
from digest.delivery.preflight import SEND_SECRETS
from digest.delivery.providers.base import Batch, Provider, Recipient, RefusedForNow, Result
from digest.delivery.providers.registry import make_provider
from digest.delivery.reconcile import Reconciler
from digest.delivery.retry import RetryRounds
from digest.delivery.send_report import (
    Progress,
    SendReport,
    count_new_subscribers,
    write_report,
)
from digest.email.message import message_id_for, recipient_values
from digest.errors import (
    DigestError,
    NoSubscribers,
    NothingToSend,
    SendError,
)
from digest.store.database import locate

T = TypeVar("T")
log = logging.getLogger(__name__)

# How often a sender with nothing left to take looks again while others hold rows: they
# usually finish them (and the issue) long before their leases could run out.
HELD_POLL = 1.0

# --------------------------------------------------------------------------- the loop


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
        self.variants = Variants(config, issue, composer, now=now)
        self.reconciler = Reconciler(self, self.issue_id, provider, ledger, report, clock=clock)
        self.batch_size = min(config.send.batch_size or provider.max_batch, provider.max_batch)
        self.done = 0
        self.total = 0
        # Batches go to the provider from `concurrency` worker threads (delivery/dispatch.py).
        # Transports that commit mid-message (SMTP) send one at a time.
        concurrency = config.send.concurrency or provider.default_concurrency
        self.dispatcher = Dispatcher(
            issue_id=self.issue_id,
            provider=provider,
            ledger=ledger,
            report=report,
            owner=self.owner,
            concurrency=1 if provider.commit_each else concurrency,
            clock=clock,
            tick=self.tick,
            gone=self.gone,
        )

    def close(self) -> None:
        """Finish what is in flight (recording it), then stop the workers."""
        self.dispatcher.close()

    def recipient(self, subscriber: Subscriber) -> Recipient:
        return Recipient(
            subscriber.id,
            subscriber.email,
            recipient_values(self.config, subscriber, self.server),
            message_id_for(self.config, self.issue_id, subscriber.id),
        )

    # -- rows, leased

    def leased(
        self, states: Sequence[str], *, by_variant: bool = False
    ) -> Iterator[list[Delivery]]:
        """Rows in ``states`` that no other sender holds, ``CHUNK`` at a time, in subscriber
        order (``by_variant``: in variant, then subscriber order, so that each variant is
        assembled about once), each chunk leased to this sender before it is yielded."""
        after: int | tuple[str, int] = ("", -1) if by_variant else 0
        while True:
            now = lease_now()
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
            # the fencing tokens of the rows being sent: claims and hand-offs compare them
            self.dispatcher.generations = {d.subscriber_id: d.lease_generation for d in chunk}
            yield chunk
            last = chunk[-1]
            after = (last.variant, last.subscriber_id) if by_variant else last.subscriber_id

    def whole_batch(
        self, key: str, held: list[Delivery], states: Sequence[str]
    ) -> list[Delivery] | None:
        """``held`` with every other row in ``states`` under ``key``, now held too (their
        fencing tokens joined to this chunk's); None when another sender holds part of the
        batch, which then waits for a run that can hold it whole."""
        now = lease_now()
        more, total = self.ledger.lease_batch(
            self.issue_id, key, states, owner=self.owner, until=now + self.lease, now=now
        )
        ids = {d.subscriber_id for d in held}
        rest = [d for d in more if d.subscriber_id not in ids]
        for delivery in rest:
            self.dispatcher.generations[delivery.subscriber_id] = delivery.lease_generation
        if len(held) + len(rest) != total:
            return None
        return held + rest

    def resend_same_key(self, key: str, deliveries: list[Delivery]) -> None:
        found = self.store.get_many([d.subscriber_id for d in deliveries])
        recipients = [
            self.recipient(found[d.subscriber_id]) for d in deliveries if d.subscriber_id in found
        ]
        if recipients:
            variant = deliveries[0].variant or ALL
            self.dispatch(self.variants.batch(variant, recipients, key))

    # -- the main pass

    def run(self, states: Sequence[str], limit: int | None) -> bool:
        """Send every row in ``states``; False when ``limit`` stopped it early."""
        for chunk in self.leased(states, by_variant=True):
            found = self.store.get_many([d.subscriber_id for d in chunk])
            groups: dict[str, list[Recipient]] = {}
            skipped: list[Outcome] = []
            for delivery in chunk:
                subscriber = found.get(delivery.subscriber_id)
                if subscriber is None or not subscriber.active:
                    why = "removed" if subscriber is None else subscriber.status
                    skipped.append(
                        Outcome(delivery.subscriber_id, SKIPPED, error=f"{why} before sending")
                    )
                    continue
                variant = variant_of(
                    subscriber, self.issue.selection, self.sections, self.config.site.language
                )
                if variant is None:
                    skipped.append(
                        Outcome(
                            delivery.subscriber_id,
                            SKIPPED,
                            error="no posts in their sections this week",
                        )
                    )
                    continue
                groups.setdefault(variant, []).append(self.recipient(subscriber))
            self.skip(skipped)
            if self.provider.mixes_variants and not self.send_mixed(groups, limit):
                return False
            for variant, recipients in groups.items():
                for start in range(0, len(recipients), self.batch_size):
                    part = self.within(recipients[start : start + self.batch_size], limit)
                    if not part:
                        return False
                    self.check_stop()
                    part = self.still_active(part, lambda r: r)
                    if not part:
                        continue
                    self.report.variants[variant] = self.report.variants.get(variant, 0) + len(part)
                    self.dispatch(self.variants.batch(variant, part))
        self.drain()
        return True

    def skip(self, skipped: list[Outcome]) -> None:
        if skipped:
            self.ledger.transition(
                self.issue_id, skipped, now=self.clock(), fence=self.dispatcher.fence
            )
            self.report.skipped += len(skipped)
            self.tick(len(skipped))

    def still_active(self, part: list[T], recipient: Callable[[T], Recipient]) -> list[T]:
        """``part`` without those who left since their chunk was read: statuses are read
        again for every batch, just before it is claimed, so an unsubscribe lands within
        one batch (``send.batch_size``) of the send, not one chunk of rows."""
        skipped = self.gone([recipient(p).subscriber_id for p in part])
        if not skipped:
            return part
        self.skip(skipped)
        left = {o.subscriber_id for o in skipped}
        return [p for p in part if recipient(p).subscriber_id not in left]

    def gone(self, subscriber_ids: Sequence[int]) -> list[Outcome]:
        """``skipped`` outcomes for those of these subscribers who are no longer active
        (their statuses only: this runs for every batch, and for every SMTP message)."""
        statuses: dict[int, str] = {}
        for start in range(0, len(subscriber_ids), 500):
            part = list(subscriber_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            statuses.update(
                self.store.connection.execute(
                    f"SELECT id, status FROM subscribers WHERE id IN ({marks})", part
                ).fetchall()
            )
        skipped: list[Outcome] = []
        for sid in subscriber_ids:
            status = statuses.get(sid)
            if status != "active":
                why = "removed" if status is None else status
                skipped.append(Outcome(sid, SKIPPED, error=f"{why} before sending"))
        return skipped

    def within(self, part: list[T], limit: int | None) -> list[T]:
        """``part`` cut to what ``--limit`` still allows (empty: the limit is reached)."""
        if limit is None:
            return part
        return part[: max(limit - self.report.attempted, 0)]

    def send_mixed(self, groups: dict[str, list[Recipient]], limit: int | None) -> bool:
        """Send the chunk's groups in full batches across variants (emptying ``groups``);
        False when ``limit`` stopped it. Leaves ``groups`` alone without wire templates."""
        parts = [(variant, r) for variant, recipients in groups.items() for r in recipients]
        for start in range(0, len(parts), self.batch_size):
            part = self.within(parts[start : start + self.batch_size], limit)
            if not part:
                return False
            self.check_stop()
            batch = self.variants.mixed_batch(part)
            if batch is None:
                return True  # no fast path: one variant per batch, as for every provider
            active = self.still_active(part, lambda p: p[1])
            if not active:
                continue
            if len(active) != len(part):
                part, batch = active, self.variants.mixed_batch(active)
                assert batch is not None  # the same variants' wire templates
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
        self.dispatcher.dispatch(batch, variants=variants)

    def drain(self) -> None:
        self.dispatcher.drain()

    def tick(self, n: int) -> None:
        """``n`` more rows settled for this run (never a refusal: that row comes again)."""
        self.done += n
        if n and self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


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
    due_by: datetime | None = None,
) -> SendReport:
    """Send the issue to every active subscriber who has not had it; see the module doc.
    ``due_by`` (``schedule.local_time``): only those whose local send time has come.

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
    daily = is_day(issue.selection.window)
    if issue.selection.count < least_posts(config, daily)[0] and not (force or dry_run):
        raise NothingToSend(too_few_posts(issue_id, issue.selection.count, config, daily))
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
        # Complete only on evidence: a row still pending, sending or uncertain opens the
        # issue again, whatever an earlier run (or an older digest) marked.
        finished_before = bool(state is not None and state["completed_at"]) and not _unfinished(
            ledger.counts(issue_id)
        )
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
                        f"{issue_id} was already sent ({counts[SENT]} sent, completed "
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
                    (s.id, s.email, variant_of(s, issue.selection, site=config.site.language) or "")
                    for s in newsletters.recipients(
                        config, store, chunk=CHUNK, window=issue.selection.window, due_by=due_by
                    )
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
        heartbeat = Heartbeat(ledger.path, issue_id, owner, lease, lease_now)
        pace: DatabasePace | None = None
        from digest.delivery.providers.http import HttpProvider  # httpx: not for `status`

        if isinstance(provider, HttpProvider):
            # every sender process of this installation takes its request slots from one
            # sequence, so together they keep the provider's pace
            pace = DatabasePace(ledger.path, provider.name)
            provider.pacer.share(pace)
        counts = ledger.counts(issue_id)
        sender.total = _unfinished(counts)
        if limit is not None:
            sender.total = min(sender.total, limit)
        report.total = sender.total
        resend = resend_uncertain or config.send.uncertain == "resend"
        # rows whose idempotency key the provider has forgotten: only on the operator's word
        sender.reconciler.resend_expired = force and resend_uncertain
        finished = False
        try:
            try:
                finished = _loop(sender, ledger, config, limit=limit, resend=resend, sleep=sleep)
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
            sender.dispatcher.abandon()
            report.stopped = "stopped at once"
            _finish(config, ledger, report, issue_id, started, cpu_started, tick_clock, False)
            raise
        report.limited = not finished
        _finish(config, ledger, report, issue_id, started, cpu_started, tick_clock, True)
        return report
    finally:
        ledger.close()
        store.close()


def _loop(
    sender: _Sender,
    ledger: Ledger,
    config: Config,
    *,
    limit: int | None,
    resend: bool,
    sleep: Callable[[float], None],
) -> bool:
    """Settle, send, retry what was refused for now, and wait for the other senders, until
    nothing is left for this one (True) or ``--limit`` stopped it (False)."""
    issue_id = sender.issue_id
    retry = RetryRounds(config.send, sender.clock)
    while True:
        before = (sender.report.attempted, sender.report.skipped)
        settled = sender.reconciler.settle()
        sender.reconciler.resolve_uncertain(resend=resend)
        counts = ledger.counts(issue_id)
        sender.total = max(sender.total, counts[PENDING] + counts[FAILED_RETRYABLE] + sender.done)
        sender.report.total = sender.total
        dispatcher = sender.dispatcher
        refused, whole = dispatcher.refused, None
        try:
            if not sender.run([PENDING, FAILED_RETRYABLE], limit):
                return False
        except RefusedForNow as exc:
            # a whole request refused for now past the transport's own retries: its rows
            # are pending again; the round ends here and waits like any refusal
            whole, dispatcher.last_refusal = exc.provider, exc.provider_message
            dispatcher.asked_to_wait(exc.retry_after)
        else:
            if ledger.counts(issue_id)[UNCERTAIN]:
                # what this run left uncertain: ask now, and send what was not accepted
                sender.reconciler.resolve_uncertain(resend=False)
                if ledger.counts(issue_id)[PENDING] and not sender.run([PENDING], limit):
                    return False
        if dispatcher.refused > refused:
            # refused for now (a 451, a throttle): the rows are pending again; wait (as
            # long as the provider's Retry-After said, else a backoff), then go again, for
            # at most send.retry_for (then stop: the next run sends them)
            pending = ledger.counts(issue_id)[PENDING]
            pause = retry.pause(pending, dispatcher.last_refusal, dispatcher.retry_after, whole)
            dispatcher.retry_after = None
            sender.check_stop()
            sleep(pause)
            continue
        retry.reset()
        if settled or (sender.report.attempted, sender.report.skipped) != before:
            continue  # rows may have come free meanwhile (a sender that died)
        # Other senders hold what is left: stay until they finish it, or until their
        # leases run out (they died) and this sender takes the rows over.
        held_until = ledger.held_elsewhere(issue_id, owner=sender.owner, now=lease_now())
        if held_until is None:
            return True
        sender.check_stop()
        wait = (held_until - lease_now()).total_seconds()
        sleep(min(max(wait, 0.0) + 0.05, sender.lease.total_seconds() / 3, HELD_POLL))


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
    if report.ledger[SENT]:
        from digest.email import archive

        archive.publish_issue(config, issue_id)  # the archive shows what was sent
    report.unconfirmed = ledger.unconfirmed(issue_id)
    report.uncertain_held = [
        {"email": d.email, "attempts": d.attempts, "error": d.last_error}
        for d in ledger.uncertain(issue_id, limit=200)
    ]
    report.complete = _unfinished(report.ledger) == 0
    if report.complete and may_complete:
        ledger.mark_completed(issue_id, clock())
    report.failures = [
        {"email": d.email, "state": d.state, "attempts": d.attempts, "error": d.last_error}
        for d in ledger.failures(issue_id)
    ]
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu_started
    report.report_path = str(write_report(config, report))


def _unfinished(counts: dict[str, int]) -> int:
    return sum(counts[s] for s in (PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN))


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
    already = {SENT, FAILED_PERMANENT, SKIPPED}
    for subscriber in newsletters.recipients(
        config, store, chunk=CHUNK, window=issue.selection.window
    ):
        variant = variant_of(
            subscriber, issue.selection, section_names(config), config.site.language
        )
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

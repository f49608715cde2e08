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
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

from digest.audience import newsletters
from digest.audience.keys import link_keys
from digest.audience.subscribers import Subscriber, SubscriberStore, normalise_email
from digest.audience.tokens import token_secret
from digest.config import Config, missing_secrets, require_secrets
from digest.content.carry import mark_sent
from digest.content.layout import least_posts, too_few_posts
from digest.content.window import is_day
from digest.delivery.issue import BuildComposer, Composer, Issue
from digest.delivery.leases import Heartbeat, lease_now, sender_id
from digest.delivery.ledger import (
    CHUNK,
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Ledger,
)
from digest.delivery.pace import DatabasePace
from digest.delivery.preferences import ALL, section_names, variant_of
from digest.delivery.preflight import SEND_SECRETS
from digest.delivery.providers.base import Batch, Provider, Recipient, RefusedForNow, Result
from digest.delivery.providers.registry import make_provider
from digest.delivery.retry import RetryRounds
from digest.delivery.send_report import (
    Progress,
    SendReport,
    count_new_subscribers,
    write_report,
)
from digest.delivery.sender import Sender
from digest.email.message import message_id_for, recipient_values
from digest.errors import (
    DigestError,
    NoSubscribers,
    NothingToSend,
)
from digest.store.database import locate

log = logging.getLogger(__name__)

# How often a sender with nothing left to take looks again while others hold rows: they
# usually finish them (and the issue) long before their leases could run out.
HELD_POLL = 1.0


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
    _require_posts(config, issue, anyway=force or dry_run)
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
        _open_and_queue(
            config, issue, ledger, store, report, now=now, force=force,
            new_subscribers=new_subscribers, enqueue=enqueue, due_by=due_by,
        )  # fmt: skip
        owner = sender_id()
        sender = Sender(
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
        resend = resend_uncertain or config.send.uncertain == "resend"
        # rows whose idempotency key the provider has forgotten: only on the operator's word
        sender.reconciler.resend_expired = force and resend_uncertain
        return _run_reported(
            sender, limit=limit, resend=resend, sleep=sleep, started=(started, cpu_started)
        )
    finally:
        ledger.close()
        store.close()


def _open_and_queue(
    config: Config,
    issue: Issue,
    ledger: Ledger,
    store: SubscriberStore,
    report: SendReport,
    *,
    now: datetime,
    force: bool,
    new_subscribers: bool,
    enqueue: bool,
    due_by: datetime | None,
) -> None:
    """Open the issue for this run (again, for ``force`` or ``new_subscribers``, when it
    was sent in full) and queue its recipients."""
    issue_id = issue.selection.issue_id
    state = ledger.issue(issue_id)
    # Complete only on evidence: a row still pending, sending or uncertain opens the
    # issue again, whatever an earlier run (or an older digest) marked.
    finished_before = bool(state is not None and state["completed_at"]) and not _unfinished(
        ledger.counts(issue_id)
    )
    if finished_before:
        _send_again(
            ledger, store, issue_id, state, now, force=force, new_subscribers=new_subscribers
        )
    _require_subscribers(config, ledger, store, issue_id)
    ledger.start_run(
        issue_id, subject=str(issue.composed.subject), provider=report.provider, now=now
    )
    if enqueue:
        report.queued = _enqueue(config, issue, ledger, store, now=now, due_by=due_by)
        if finished_before:
            ledger.mark_completed(issue_id, None)  # open again for those who joined
        ledger.mark_enqueued(issue_id, now)
        # limits.carry_over: this issue's window is spoken for before a message leaves
        mark_sent(config.path(config.out_dir) / issue_id, issue.selection.window, now)


def _run_reported(
    sender: Sender,
    *,
    limit: int | None,
    resend: bool,
    sleep: Callable[[float], None],
    started: tuple[float, float],
) -> SendReport:
    """Send the rows (at most ``limit``) and write the report, also when the run stops."""
    config, ledger, report, issue_id = sender.config, sender.ledger, sender.report, sender.issue_id
    tick_clock = sender.clock
    (wall, cpu) = started
    sender.total = _unfinished(ledger.counts(issue_id))
    if limit is not None:
        sender.total = min(sender.total, limit)
    report.total = sender.total
    finished = False
    try:
        finished = _send_rows(sender, limit=limit, resend=resend, sleep=sleep)
    except DigestError as exc:
        report.stopped = str(exc)
        _finish(config, ledger, report, issue_id, wall, cpu, tick_clock, False)
        raise
    except KeyboardInterrupt:
        # a hard stop: batches in flight stay `sending` and the next run settles them
        # like a crash's; everything recorded so far is committed
        sender.dispatcher.abandon()
        report.stopped = "stopped at once"
        _finish(config, ledger, report, issue_id, wall, cpu, tick_clock, False)
        raise
    report.limited = not finished
    _finish(config, ledger, report, issue_id, wall, cpu, tick_clock, True)
    return report


def _require_posts(config: Config, issue: Issue, *, anyway: bool) -> None:
    """Refuse an issue with no posts, or (unless ``anyway``) fewer than the config asks."""
    issue_id = issue.selection.issue_id
    if issue.selection.count == 0:
        raise NothingToSend(f"{issue_id} has no posts; there is nothing to send")
    daily = is_day(issue.selection.window)
    if issue.selection.count < least_posts(config, daily)[0] and not anyway:
        raise NothingToSend(too_few_posts(issue_id, issue.selection.count, config, daily))


def _send_again(
    ledger: Ledger,
    store: SubscriberStore,
    issue_id: str,
    state: dict[str, Any] | None,
    now: datetime,
    *,
    force: bool,
    new_subscribers: bool,
) -> None:
    """An issue sent in full goes out again only on ``force`` (to everyone), or with
    ``new_subscribers`` to those who joined since; else :class:`NothingToSend` says why."""
    if force:
        ledger.reset_for_resend(issue_id, now)
        return
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
        raise NothingToSend(f"{issue_id}: nobody joined since it was sent; nothing to send")


def _require_subscribers(
    config: Config, ledger: Ledger, store: SubscriberStore, issue_id: str
) -> None:
    """With nothing queued yet, refuse a send to an empty subscriber list (nothing is
    recorded)."""
    if not ledger.counts(issue_id) or not any(ledger.counts(issue_id).values()):
        active = store.counts().get("active", 0)
        if not active:
            where = locate(config, config.subscribers.database)
            raise NoSubscribers(
                f"{issue_id}: no active subscribers in {where}, so nothing was sent and "
                "nothing was recorded; add some with `digest subscribers import FILE` "
                "(or check subscribers.database in the config)"
            )


def _enqueue(
    config: Config,
    issue: Issue,
    ledger: Ledger,
    store: SubscriberStore,
    *,
    now: datetime,
    due_by: datetime | None,
) -> int:
    """Queue every recipient once, with its variant (which the send groups rows by)."""
    return ledger.enqueue(
        issue.selection.issue_id,
        (
            (s.id, s.email, variant_of(s, issue.selection, site=config.site.language) or "")
            for s in newsletters.recipients(
                config, store, chunk=CHUNK, window=issue.selection.window, due_by=due_by
            )
        ),
        now=now,
    )


def _send_rows(
    sender: Sender, *, limit: int | None, resend: bool, sleep: Callable[[float], None]
) -> bool:
    """The loop, with this sender's heartbeat and the provider's shared pace; the sender,
    heartbeat, lease, provider and pace are closed however it ends."""
    ledger, provider, issue_id = sender.ledger, sender.provider, sender.issue_id
    heartbeat = Heartbeat(ledger.path, issue_id, sender.owner, sender.lease, lease_now)
    pace: DatabasePace | None = None
    from digest.delivery.providers.http import HttpProvider  # httpx: not for `status`

    if isinstance(provider, HttpProvider):
        # every sender process of this installation takes its request slots from one
        # sequence, so together they keep the provider's pace
        pace = DatabasePace(ledger.path, provider.name)
        provider.pacer.share(pace)
    try:
        return _loop(sender, ledger, sender.config, limit=limit, resend=resend, sleep=sleep)
    finally:
        try:
            sender.close()
        finally:
            try:
                heartbeat.close()
                ledger.release(issue_id, owner=sender.owner)
            finally:
                provider.close()
                if pace is not None:
                    pace.close()


def _loop(
    sender: Sender,
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

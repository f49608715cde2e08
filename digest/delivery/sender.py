"""One sender's run over one issue: the state the send loop's steps share (the ledger, the
subscriber store, the provider, the dispatcher, the reconciler, this sender's lease and
progress), the rows it leases, and the batches it makes and hands over.
:func:`digest.delivery.send.send_issue` drives it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from digest.audience.engagement import consenting_ids
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.audience.tokens import token_secret
from digest.config import Config
from digest.delivery.dispatch import Dispatcher
from digest.delivery.issue import Composer, Issue
from digest.delivery.leases import LEASE, lease_now, sender_id
from digest.delivery.ledger import (
    CHUNK,
    SKIPPED,
    Delivery,
    Ledger,
    Outcome,
)
from digest.delivery.preferences import ALL, Variants, section_names, variant_of
from digest.delivery.providers.base import Batch, Provider, Recipient
from digest.delivery.reconcile import Reconciler
from digest.delivery.send_report import (
    Progress,
    SendReport,
)
from digest.email.clicklinks import counts_readers, reader_value
from digest.email.message import message_id_for, recipient_values
from digest.errors import (
    SendError,
)

T = TypeVar("T")


class Sender:
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
        self.readers = consenting_ids(store.connection) if counts_readers(config) else frozenset()
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
            {
                **recipient_values(self.config, subscriber, self.server),
                **reader_value(
                    self.config,
                    self.issue_id,
                    subscriber.handle if subscriber.id in self.readers else None,
                    self.server,
                ),
            },
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

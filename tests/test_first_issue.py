"""A new reader's first mail: the welcome with the latest issue already sent inside it, one
message recorded in the ledger so that neither a rerun, a later --new-subscribers nor the
next scheduled send repeats it."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.cli import main
from digest.config import Config
from digest.schedule.scheduler import run_now
from digest.serve.app import create_app
from tests.helpers import outbox_to, recipient_of
from tests.test_serve import PUBLIC, SECRET, Clock, add, confirm_path, outbox, read, write_config

WEDNESDAY = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)  # in week 47


class StepClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def site(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    return write_config(sample_site, subscribe_burst=50, welcome=True, welcome_latest_issue=True)


def send(config: Config, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config.source), "send", *args])
    return result.exit_code, result.output


def deliveries(config: Config) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for eml in (config.root / "out").glob("*/outbox/*.eml"):
        found[(eml.parent.parent.name, recipient_of(eml))] += 1
    return found


def test_a_reader_who_subscribes_on_wednesday_gets_last_weeks_issue_once(site: Config) -> None:
    add(site, "old@example.com")
    assert send(site, "--week", "2026-W46")[0] == 0  # last week's issue, sent on its Monday

    clock = Clock()
    clock.now = WEDNESDAY
    app = create_app(site, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        client.post("/subscribe", json={"email": "new@example.com"})
        [confirmation] = outbox(site)
        assert client.post(confirm_path(confirmation)).status_code == 200
        # Confirming again is neither a second welcome nor a second issue.
        assert client.post(confirm_path(confirmation)).status_code == 200
    assert deliveries(site) == Counter(
        {
            ("2026-W46", "old@example.com"): 1,
            ("confirmations", "new@example.com"): 1,
            ("2026-W46", "new@example.com"): 1,  # the welcome, with the issue inside
        }
    )
    [first] = outbox_to(site.root / "out" / "2026-W46" / "outbox", "new@example.com")
    message = read(first)
    assert message["Subject"] == "Welcome to Field Notes Weekly: The Meeting Budget and 4 more"
    assert message["List-Unsubscribe"].startswith(f"<{PUBLIC}/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith(
        "Welcome to Field Notes Weekly\n\nHere is the latest issue, so your first one need "
        "not wait."
    )
    assert f"{PUBLIC}/preferences/" in text.split("\n--\n")[0]  # the block's own link
    html = message.get_body(("html",)).get_content()
    block = html.index("Here is the latest issue, so your first one need not wait.")
    assert block < html.index("Week 46, 2026")  # above the issue's own masthead
    assert "[[digest:" not in html and "[[digest:" not in text
    [old_copy] = outbox_to(site.root / "out" / "2026-W46" / "outbox", "old@example.com")
    assert "Here is the latest issue" not in read(old_copy).get_body(("plain",)).get_content()

    # Monday: the scheduled run sends the new issue to both, as it always would.
    monday = StepClock(datetime(2026, 11, 23, 9, 1, tzinfo=ZoneInfo("Europe/Berlin")))
    report = run_now(site, monday, stop=threading.Event())
    assert report.run is not None
    assert (report.run.issue_id, report.run.outcome, report.run.sent) == ("2026-W47", "sent", 2)
    # Last week's issue is never sent to them twice: a rerun, or --new-subscribers.
    code, output = send(site, "--week", "2026-W46", "--new-subscribers")
    assert code != 0
    assert "2026-W46: nobody joined since it was sent; nothing to send" in output
    assert send(site, "--week", "2026-W46")[0] != 0
    assert deliveries(site) == Counter(
        {
            ("2026-W46", "old@example.com"): 1,
            ("confirmations", "new@example.com"): 1,
            ("2026-W46", "new@example.com"): 1,
            ("2026-W47", "old@example.com"): 1,
            ("2026-W47", "new@example.com"): 1,
        }
    )


def test_without_the_option_the_welcome_carries_no_issue(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    config = write_config(sample_site, subscribe_burst=50, welcome=True)
    add(config, "old@example.com")
    assert send(config, "--week", "2026-W46")[0] == 0
    clock = Clock()
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        client.post("/subscribe", json={"email": "new@example.com"})
        [confirmation] = outbox(config)
        client.post(confirm_path(confirmation))
    assert ("2026-W46", "new@example.com") not in deliveries(config)
    assert deliveries(config)[("welcome", "new@example.com")] == 1


def test_a_german_reader_gets_the_welcome_in_german_inside_the_issue(site: Config) -> None:
    from digest.schedule.scheduler import Schedule

    add(site, "old@example.com")
    assert send(site, "--week", "2026-W46")[0] == 0
    clock = Clock()
    clock.now = WEDNESDAY
    app = create_app(
        site,
        clock=clock,
        monotonic=clock.monotonic,
        next_issue=Schedule.from_config(site).next_after,
    )
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        client.post(
            "/subscribe", json={"email": "ute@example.com"}, headers={"Accept-Language": "de"}
        )
        [confirmation] = outbox(site)
        assert client.post(confirm_path(confirmation)).status_code == 200
    [first] = outbox_to(site.root / "out" / "2026-W46" / "outbox", "ute@example.com")
    message = read(first)
    assert message["Subject"] == "Willkommen bei Field Notes Weekly: The Meeting Budget and 4 more"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith(
        "Willkommen bei Field Notes Weekly\n\nHier ist die neueste Ausgabe, damit Sie auf Ihre "
        "erste nicht warten müssen. Die nächste Ausgabe kommt am Montag, 23. November 2026 um "
        "09:00 (Europe/Berlin).\n"
    )
    assert deliveries(site)[("welcome", "ute@example.com")] == 0

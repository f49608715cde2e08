"""A new reader's first mail: the welcome, then the latest issue already sent, recorded in
the ledger so that neither a rerun nor a later --new-subscribers repeats it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.cli import main
from digest.config import Config
from digest.serve.app import create_app
from tests.helpers import recipient_of
from tests.test_serve import SECRET, Clock, add, confirm_path, outbox, write_config

WEDNESDAY = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)  # in week 47


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
            ("welcome", "new@example.com"): 1,
            ("2026-W46", "new@example.com"): 1,
        }
    )

    # Monday: the new issue reaches both, as it always would.
    assert send(site, "--week", "2026-W47")[0] == 0
    # Last week's issue is never sent to them twice: a rerun, or --new-subscribers.
    code, output = send(site, "--week", "2026-W46", "--new-subscribers")
    assert code != 0
    assert "2026-W46: nobody joined since it was sent; nothing to send" in output
    assert send(site, "--week", "2026-W46")[0] != 0
    assert deliveries(site) == Counter(
        {
            ("2026-W46", "old@example.com"): 1,
            ("confirmations", "new@example.com"): 1,
            ("welcome", "new@example.com"): 1,
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

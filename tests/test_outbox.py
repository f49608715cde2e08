"""The outbox provider (files, nobody mailed): its own folder when provider.directory says so,
and a folder it cannot write stops the send with the folder's name and sends nothing."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from email import message_from_bytes
from pathlib import Path

import pytest
import yaml

from digest.audience.subscribers import SubscriberStore
from digest.config import Config, load_config
from digest.delivery.preflight import preflight
from digest.delivery.providers.base import Check
from digest.delivery.send import send_issue
from digest.errors import ProviderError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def outbox_site(site: Path, directory: str) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = {"name": "outbox", "directory": directory}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", now=NOW)
        store.add("bob@example.com", now=NOW)
    return config


def states(config: Config) -> dict[str, str]:
    with sqlite3.connect(config.path(config.ledger.database)) as db:
        return dict(db.execute("SELECT email, state FROM deliveries").fetchall())


def test_the_outbox_writes_to_provider_directory(sample_site: Path) -> None:
    config = outbox_site(sample_site, "mail")
    assert preflight(config, provider=True).checks == [
        Check("folder", True, f"{sample_site / 'mail'} is writable (files only: nobody is mailed)")
    ]
    report = send_issue(config, now=NOW, week="2026-W47")
    assert (report.sent, report.complete) == (2, True)
    written = sorted((sample_site / "mail" / "2026-W47").glob("*.eml"))
    assert sorted(str(message_from_bytes(p.read_bytes())["To"]) for p in written) == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert not (sample_site / "out" / "2026-W47" / "outbox").exists()


def test_a_folder_that_cannot_be_written_stops_the_send_and_sends_nothing(
    sample_site: Path,
) -> None:
    (sample_site / "mail").write_text("a file where the folder should be")
    config = outbox_site(sample_site, "mail")
    (check,) = preflight(config, provider=True).checks
    assert (check.name, check.ok) == ("folder", False)
    assert check.detail.startswith(f"cannot write {sample_site / 'mail'}: ")
    with pytest.raises(ProviderError) as caught:
        send_issue(config, now=NOW, week="2026-W47")
    assert str(caught.value).startswith(f"outbox: cannot create {sample_site / 'mail'}/2026-W47: ")
    assert "sent" not in states(config).values()  # nothing counted as sent


def test_a_message_that_cannot_be_written_stops_the_send_and_the_rerun_finishes(
    sample_site: Path,
) -> None:
    config = outbox_site(sample_site, "mail")
    squatter = sample_site / "mail" / "2026-W47" / "00000002-bob@example.com.eml"
    (squatter / "in-the-way").mkdir(parents=True)  # a folder where bob's file goes
    with pytest.raises(ProviderError) as caught:
        send_issue(config, now=NOW, week="2026-W47")
    assert str(caught.value).startswith("outbox: cannot write ")
    assert "sent" not in states(config).values()
    assert not list(squatter.parent.glob(".*.tmp"))  # no half-written file left behind
    (squatter / "in-the-way").rmdir()
    squatter.rmdir()
    again = send_issue(config, now=NOW, week="2026-W47")
    assert again.complete
    assert states(config) == {"ann@example.com": "sent", "bob@example.com": "sent"}
    assert len(list(squatter.parent.glob("*.eml"))) == 2

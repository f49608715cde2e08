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
from digest.delivery.providers.outbox import OutboxProvider, outbox_key, outbox_name
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


def test_outbox_files_are_named_by_a_keyed_hash_of_the_address_not_the_address(
    sample_site: Path,
) -> None:
    config = outbox_site(sample_site, "mail")
    send_issue(config, now=NOW, week="2026-W47")
    key = outbox_key(config)
    names = sorted(p.name for p in (sample_site / "mail" / "2026-W47").glob("*.eml"))
    assert names == [
        f"00000001-{outbox_name('ann@example.com', key)}.eml",
        f"00000002-{outbox_name('bob@example.com', key)}.eml",
    ]
    assert not any("@" in name or "ann" in name or "bob" in name for name in names)
    assert len(outbox_name("ann@example.com", key)) == 24
    assert outbox_name("Ann@Example.COM ", key) == outbox_name("ann@example.com", key)
    assert outbox_name("ann@example.com", b"another key") != outbox_name("ann@example.com", key)
    with sqlite3.connect(config.path(config.ledger.database)) as db:
        ids = sorted(row[0] for row in db.execute("SELECT provider_message_id FROM deliveries"))
    assert ids == names  # the ledger's provider id holds no address either


def test_a_file_written_before_names_were_hashed_still_settles_its_row(
    sample_site: Path,
) -> None:
    from digest.delivery.ledger import Delivery

    config = outbox_site(sample_site, "mail")
    provider = OutboxProvider.from_config(config)
    folder = sample_site / "mail" / "2026-W47"
    folder.mkdir(parents=True)
    (folder / "00000001-ann@example.com.eml").write_text("To: ann@example.com\n")
    rows = [
        Delivery(
            "2026-W47", n, email, "all", "sending", 1, None, True, False, None, None, None, None
        )
        for n, email in ((1, "ann@example.com"), (2, "bob@example.com"))
    ]
    settled = provider.reconcile("2026-W47", rows)
    ann = settled[1]
    assert ann is not None and (ann.state, ann.provider_message_id) == (
        "sent",
        "00000001-ann@example.com.eml",
    )
    assert settled[2] is None  # no file under either name: sent again


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
    bob = outbox_name("bob@example.com", outbox_key(config))
    squatter = sample_site / "mail" / "2026-W47" / f"00000002-{bob}.eml"
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


@pytest.mark.integration  # a digest send process writes the files
def test_stores_and_outbox_files_holding_tokens_are_private(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files holding addresses or working links are created 0600 and their folders 0700,
    whatever the umask: the stores, the key files, the outbox messages, the send report,
    an export. A store an older digest left world-readable is made 0600 when opened."""
    import os
    import stat

    from digest.audience.keys import link_keys, privacy_secret

    from .conftest import run_digest

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    config = load_config(sample_site / "config.yaml")
    old = os.umask(0o022)
    try:
        with SubscriberStore(config.path(config.subscribers.database)) as store:
            store.add("ann@example.com", now=NOW)
        sent = run_digest("send", "--week", "2026-W47", cwd=sample_site)
        assert sent.returncode == 0, sent.stderr
        exported = sample_site / "exports" / "subscribers.csv"
        done = run_digest(
            "subscribers", "export", "--format", "csv", "--output", str(exported), cwd=sample_site
        )
        assert done.returncode == 0, done.stderr
        monkeypatch.delenv("DIGEST_SECRET")  # the key files are made on first use
        link_keys(config)
        privacy_secret(config)
    finally:
        os.umask(old)
    data = sample_site / "data"
    outbox = sample_site / "out" / "2026-W47" / "outbox"
    [eml] = list(outbox.glob("*.eml"))
    files = {
        eml: 0o600,
        outbox: 0o700,
        outbox.parent / "send-report.json": 0o600,
        data: 0o700,
        data / "subscribers.sqlite": 0o600,
        data / "ledger.sqlite": 0o600,
        exported: 0o600,
        exported.parent: 0o700,
    }
    files.update({key: 0o600 for key in data.glob("*key*")})
    assert {p.name for p in data.glob("*key*")} == {"link-keys.json", "privacy.key"}
    files.update({wal: 0o600 for wal in data.glob("*.sqlite-*")})
    assert {str(p.relative_to(sample_site)): oct(mode(p)) for p in files} == {
        str(p.relative_to(sample_site)): oct(m) for p, m in files.items()
    }
    # a store left readable by others is made private when it is next opened
    os.chmod(data / "subscribers.sqlite", 0o644)
    SubscriberStore(config.path(config.subscribers.database)).close()
    assert mode(data / "subscribers.sqlite") == 0o600

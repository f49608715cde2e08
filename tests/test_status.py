"""The one subscriber status model (digest/audience/status.py) and the store applying it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.audience.imports.importer import import_file
from digest.audience.status import (
    RANK,
    RULES,
    STATUSES,
    Cause,
    StatusModelError,
    StatusRefused,
    service_mail,
    transition,
)
from digest.audience.subscribers import Categories, SubscriberStore
from digest.audience.tokens import make_token, signing_key, token_secret
from digest.cli import main
from digest.config import load_config
from digest.errors import StoreError

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def test_every_cause_has_a_rule() -> None:
    assert set(RULES) == set(Cause)
    assert set(RANK) == set(STATUSES)


@pytest.mark.parametrize("cause", list(Cause))
@pytest.mark.parametrize("current", STATUSES)
def test_a_status_never_gets_weaker_without_the_owners_hand(cause: Cause, current: str) -> None:
    for requested in sorted(RULES[cause].targets):
        decided = transition(current, requested, cause)
        assert decided.after is not None
        if RANK[decided.after] < RANK[current]:
            assert cause in (Cause.SERVE_RESUBSCRIBE, Cause.OWNER_FORCE) or (
                cause is Cause.SERVE_SUBSCRIBE and decided.after == "pending"
            )


@pytest.mark.parametrize("cause", list(Cause))
def test_only_its_owner_undoes_a_complaint(cause: Cause) -> None:
    for requested in sorted(RULES[cause].targets):
        after = transition("complained", requested, cause).after
        if cause is Cause.SERVE_RESUBSCRIBE:
            assert after == "active"
        else:
            assert after == "complained"


@pytest.mark.parametrize(
    ("current", "requested", "cause", "outcome", "after"),
    [
        (None, "pending", Cause.SERVE_SUBSCRIBE, "created", "pending"),
        ("active", "pending", Cause.SERVE_SUBSCRIBE, "kept", "active"),
        ("unsubscribed", "pending", Cause.SERVE_SUBSCRIBE, "changed", "pending"),
        ("complained", "pending", Cause.SERVE_SUBSCRIBE, "kept", "complained"),
        ("pending", "active", Cause.SERVE_CONFIRM, "changed", "active"),
        ("bounced", "active", Cause.SERVE_CONFIRM, "kept", "bounced"),
        ("unsubscribed", "active", Cause.SERVE_CONFIRM, "kept", "unsubscribed"),
        ("complained", "active", Cause.SERVE_CONFIRM, "kept", "complained"),
        (None, "active", Cause.SERVE_CONFIRM, "kept", None),
        ("active", "unsubscribed", Cause.CLI_UNSUBSCRIBE, "changed", "unsubscribed"),
        ("complained", "unsubscribed", Cause.CLI_UNSUBSCRIBE, "kept", "complained"),
        ("bounced", "unsubscribed", Cause.SERVE_UNSUBSCRIBE, "kept", "bounced"),
        ("complained", "bounced", Cause.WEBHOOK_BOUNCE, "kept", "complained"),
        ("unsubscribed", "complained", Cause.SUPPRESSION_SYNC, "changed", "complained"),
        ("unsubscribed", "active", Cause.IMPORT, "kept", "unsubscribed"),
        ("pending", "active", Cause.IMPORT, "changed", "active"),
        ("active", "unsubscribed", Cause.IMPORT, "changed", "unsubscribed"),
        ("unsubscribed", "active", Cause.OWNER_ADD, "refused", "unsubscribed"),
        ("unsubscribed", "active", Cause.OWNER_FORCE, "changed", "active"),
        ("bounced", "pending", Cause.OWNER_FORCE, "changed", "pending"),
        ("complained", "active", Cause.OWNER_FORCE, "refused", "complained"),
        ("active", "active", Cause.OWNER_ADD, "unchanged", "active"),
    ],
)
def test_transition_table(
    current: str | None, requested: str, cause: Cause, outcome: str, after: str | None
) -> None:
    decided = transition(current, requested, cause)
    assert (decided.outcome, decided.after, decided.before) == (outcome, after, current)
    assert decided.changed == (outcome in ("created", "changed"))


def test_reasons_say_what_to_do() -> None:
    assert transition("unsubscribed", "active", "owner_add").reason == (
        "the subscriber is unsubscribed; use --force to re-activate them"
    )
    assert transition("complained", "active", "owner_force").reason == (
        "the subscriber is complained; only its owner can undo a complaint, "
        "from a link they already hold"
    )


def test_a_cause_asking_for_a_status_it_never_sets_is_a_bug() -> None:
    with pytest.raises(StatusModelError, match="webhook_bounce never sets a subscriber active"):
        transition("bounced", "active", Cause.WEBHOOK_BOUNCE)
    with pytest.raises(StatusModelError, match="'gone' is not one of"):
        transition("active", "gone", Cause.OWNER_ADD)
    with pytest.raises(ValueError):
        transition("active", "active", "magic")


def test_what_the_service_may_mail() -> None:
    assert [service_mail(s) for s in (None, *STATUSES)] == [
        "confirm",
        "notice",  # active
        "confirm",  # pending
        "confirm",  # unsubscribed
        "confirm",  # bounced
        None,  # complained: never mailed
    ]


# ------------------------------------------------------------------- the store applies it


@pytest.fixture
def store(tmp_path: Path) -> SubscriberStore:
    return SubscriberStore(tmp_path / "subscribers.db")


def test_store_changes_go_through_the_model(store: SubscriberStore) -> None:
    store.add("ann@example.com", now=NOW)
    store.set_status("ann@example.com", "complained", cause=Cause.WEBHOOK_COMPLAINT, now=NOW)
    ann, change = store.change_status(
        "ann@example.com", "unsubscribed", cause=Cause.CLI_UNSUBSCRIBE, now=NOW
    )
    assert (ann.status, change.outcome) == ("complained", "kept")
    with pytest.raises(StatusRefused, match=r"ann@example\.com: the subscriber is complained"):
        store.add("ann@example.com", status="active", now=NOW, cause=Cause.OWNER_FORCE)
    # a subscribe request keeps the status (and mails nothing: see service_mail)
    ann, created = store.add(
        "ann@example.com", status="pending", now=NOW, cause=Cause.SERVE_SUBSCRIBE
    )
    assert (ann.status, created) == ("complained", False)
    # an old confirmation link does not undo it; the preferences page's own button does
    assert not store.set_status("ann@example.com", "active", cause="serve_confirm", now=NOW).active
    assert store.set_status("ann@example.com", "active", cause="serve_resubscribe", now=NOW).active


def test_store_refuses_an_unknown_status_and_an_unknown_subscriber(
    store: SubscriberStore,
) -> None:
    with pytest.raises(StoreError, match="status 'gone' is not one of"):
        store.add("ann@example.com", status="gone", now=NOW)
    with pytest.raises(StoreError, match=r"no subscriber bob@example\.com"):
        store.set_status("bob@example.com", "unsubscribed", cause="cli_unsubscribe", now=NOW)


def test_an_import_never_lifts_and_may_make_stronger(
    store: SubscriberStore, tmp_path: Path
) -> None:
    for email, status in [
        ("gone@example.com", "unsubscribed"),
        ("spam@example.com", "complained"),
        ("ok@example.com", "active"),
    ]:
        store.add(email, status=status, now=NOW)
    rows = [
        {"email": "gone@example.com", "status": "active"},
        {"email": "spam@example.com", "status": "bounced"},
        {"email": "ok@example.com", "status": "unsubscribed"},
    ]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    report = import_file(store, path, Categories(), now=NOW, erasure_key=None)
    assert (report.kept_inactive, report.updated) == (2, 1)
    assert {s.email: s.status for s in store.list()} == {
        "gone@example.com": "unsubscribed",
        "spam@example.com": "complained",
        "ok@example.com": "unsubscribed",
    }


# ------------------------------------------------------------------- the CLI


def _cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_one_unsubscribe_command_keeps_a_complaint(sample_site: Path) -> None:
    config = sample_site / "config.yaml"
    loaded = load_config(config)
    assert _cli(config, "subscribers", "add", "ann@example.com")[0] == 0
    assert _cli(config, "subscribers", "add", "cat@example.com")[0] == 0
    with SubscriberStore(loaded.path(loaded.subscribers.database)) as s:
        s.set_status("cat@example.com", "complained", cause="webhook_complaint", now=NOW)
        ann = s.get("ann@example.com")
        assert ann is not None
        secret, handle = ann.secret, ann.handle
    assert _cli(config, "subscribers", "unsubscribe", "cat@example.com") == (
        0,
        "cat@example.com is complained; kept (a stronger status)\n",
    )
    token = make_token("unsubscribe", handle, signing_key(secret, token_secret(loaded)))
    # the old top-level spelling is an alias of the same command
    assert _cli(config, "unsubscribe", token) == (0, "unsubscribed ann@example.com\n")
    code, output = _cli(config, "subscribers", "unsubscribe", token[:-3] + "AAA")
    assert (code, output) == (
        1,
        "Error: this unsubscribe link is not valid: it was altered, made "
        "for something else, or its key has changed\n",
    )
    assert _cli(config, "subscribers", "add", "ann@example.com") == (
        7,
        "error: ann@example.com: the subscriber is unsubscribed; use --force to re-activate them\n",
    )
    assert _cli(config, "subscribers", "add", "ann@example.com", "--force") == (
        0,
        "updated ann@example.com (active)\n",
    )
    code, output = _cli(config, "subscribers", "add", "cat@example.com", "--force")
    assert code == 7 and "only its owner can undo a complaint" in output
    listed = [
        line.split()[0]
        for line in _cli(config, "--help")[1].split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert "unsubscribe" not in listed and "subscribers" in listed


def test_suppression_sync_follows_the_model(sample_site: Path) -> None:
    from digest.delivery.providers.http import Suppression
    from digest.delivery.suppressions import sync_suppressions

    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as s:
        s.add("gone@example.com", status="unsubscribed", now=NOW)
        s.add("spam@example.com", status="complained", now=NOW)
        s.add("ok@example.com", now=NOW)

    class Lists:
        name = "fake"

        def fetch_suppressions(self) -> Iterator[Suppression]:
            yield Suppression("gone@example.com", "complained", "spam report")
            yield Suppression("spam@example.com", "bounced", "hard bounce")
            yield Suppression("ok@example.com", "unsubscribed", "list-unsubscribe")
            yield Suppression("stranger@example.com", "bounced", "hard bounce")

        def close(self) -> None:
            pass

    report = sync_suppressions(config, now=NOW, provider=Lists())
    assert report.changed == {"gone@example.com": "complained", "ok@example.com": "unsubscribed"}
    assert (report.already, report.unknown) == (1, 1)
    with SubscriberStore(config.path(config.subscribers.database)) as s:
        assert {x.email: x.status for x in s.list()} == {
            "gone@example.com": "complained",  # stronger: the complaint counts
            "spam@example.com": "complained",  # never downgraded to a bounce
            "ok@example.com": "unsubscribed",
        }


def test_only_the_owner_undoes_a_complaint_through_serve(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from starlette.testclient import TestClient

    from digest.serve.app import create_app

    monkeypatch.setenv("DIGEST_SECRET", "status-secret")
    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as s:
        cat, _ = s.add("cat@example.com", now=NOW)
        s.set_status("cat@example.com", "complained", cause="webhook_complaint", now=NOW)
    key = signing_key(cat.secret, b"status-secret")
    outbox = config.path(config.out_dir) / "confirmations" / "outbox"
    with TestClient(create_app(config), base_url="http://127.0.0.1:8025") as client:
        # anyone may ask to subscribe the address: it gets no mail, and stays complained
        assert client.post("/subscribe", json={"email": "cat@example.com"}).status_code == 202
        assert not outbox.exists() or not list(outbox.glob("*.eml"))
        # its owner, with the preferences link from an issue they got, may come back
        path = "/preferences/" + make_token("preferences", cat.handle, key)
        page = client.get(path)
        assert "reported" in page.text and 'value="resubscribe"' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        client.post(path, data={"csrf": csrf.group(1), "action": "resubscribe"})
    with SubscriberStore(config.path(config.subscribers.database)) as s:
        found = s.get("cat@example.com")
        assert found is not None and found.status == "active"

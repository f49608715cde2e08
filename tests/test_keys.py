"""The link key: created once (mode 0600), shared by send and serve, rotated with a grace."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from digest.audience.keys import describe, key_file, link_keys, rotate
from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import Config, load_config
from digest.delivery.send import send_issue
from digest.errors import ConfigError
from tests.helpers import outbox_to

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["keys"] = {"grace_period": "30d"}
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_the_key_is_created_once_with_mode_0600(config: Config) -> None:
    path = key_file(config)
    assert not path.exists()
    first = link_keys(config, now=NOW)
    assert first.created and first.source == str(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = link_keys(config, now=NOW)
    assert not again.created and again.signing == first.signing
    assert len(first.signing) == 32
    stored = json.loads(path.read_text())
    assert [k["id"] for k in stored["keys"]] == ["k1"]


def test_read_only_callers_do_not_create_it(config: Config) -> None:
    with pytest.raises(ConfigError, match="no link key yet"):
        link_keys(config, create=False)
    assert not key_file(config).exists()


def test_an_explicit_secret_signs_and_the_file_keys_still_verify(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_file = link_keys(config, now=NOW).signing
    monkeypatch.setenv("DIGEST_SECRET", "operator-secret")
    keys = link_keys(config, now=NOW)
    assert keys.signing == b"operator-secret" and keys.source == "$DIGEST_SECRET"
    assert keys.verifying == (b"operator-secret", from_file)


def test_a_damaged_key_file_is_a_clear_error(config: Config) -> None:
    path = key_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="link key file is damaged"):
        link_keys(config)


def test_rotation_keeps_old_links_working_for_the_grace_period(config: Config) -> None:
    old = link_keys(config, now=NOW).signing
    fresh, keys = rotate(config, now=NOW + timedelta(days=1))
    assert fresh.id == "k2" and [k.id for k in keys] == ["k1", "k2"]
    during = link_keys(config, now=NOW + timedelta(days=20))
    assert during.signing == fresh.secret and during.verifying == (fresh.secret, old)
    after = link_keys(config, now=NOW + timedelta(days=32))
    assert after.verifying == (fresh.secret,)
    rows = describe(config, now=NOW + timedelta(days=32))
    assert [(r["id"], r["signing"], r["verifying"]) for r in rows] == [
        ("k1", False, False),
        ("k2", True, True),
    ]
    assert "secret" not in json.dumps(rows)


def test_a_link_mailed_before_a_rotation_still_unsubscribes_after_it(config: Config) -> None:
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", name="Ann", categories=(), status="active", now=NOW)
    report = send_issue(config, now=NOW)  # the outbox, with no secret set by hand
    assert report.sent >= 1
    [mail] = outbox_to(config.path(config.out_dir) / report.issue_id / "outbox", "ann@example.com")
    text = mail.read_text()
    token = text.split("/unsubscribe/")[1].split(">")[0].split('"')[0].split()[0]
    rotate(config)
    # digest serve, started after the rotation, takes the link mailed before it
    from starlette.testclient import TestClient

    from digest.serve.app import create_app

    with TestClient(create_app(config)) as client:
        one_click = client.post(
            f"/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert one_click.status_code == 200, one_click.text
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        ann = store.get("ann@example.com")
    assert ann is not None and ann.status == "unsubscribed"


def test_the_privacy_key_is_created_once_and_outlives_rotations(config: Config) -> None:
    from digest.audience.keys import PRIVACY_KEY_NAME, privacy_secret
    from digest.audience.lifecycle import erasure_key

    path = key_file(config).with_name(PRIVACY_KEY_NAME)
    first = erasure_key(config)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(privacy_secret(config)) == 32
    rotate(config, now=NOW)
    assert erasure_key(config) == first  # erased addresses stay recognised after a rotation


def test_an_operator_secret_is_the_privacy_secret_when_no_file_exists(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.audience.keys import PRIVACY_KEY_NAME, privacy_secret

    monkeypatch.setenv("DIGEST_SECRET", "operator-secret-0123456789")
    assert privacy_secret(config) == b"operator-secret-0123456789"
    assert not key_file(config).with_name(PRIVACY_KEY_NAME).exists()


# --------------------------------------------------------------------------- digest keys


def keys_cli(config: Config, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config.source), "keys", *args])


def test_digest_keys_rotate_then_show_names_each_key_and_hides_secrets(config: Config) -> None:
    path = key_file(config)
    first = keys_cli(config, "rotate")  # no file yet: the first key, then a new one
    assert first.exit_code == 0, first.output
    keys = json.loads(path.read_text())["keys"]
    assert len(keys) == 2
    assert first.stdout == (
        f"{path}: new signing key {keys[1]['id']}\n"
        "  links signed with older keys keep working for 30 days (1 older key)\n"
    )
    second = keys_cli(config, "rotate", "--json")
    answer = json.loads(second.stdout)
    assert answer["file"] == str(path)
    assert [k["signing"] for k in answer["keys"]] == [False, False, True]
    assert answer["new"] == answer["keys"][2]["id"]
    shown = keys_cli(config, "show")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == f"links are signed with: {path}"
    assert [line.split()[0] for line in lines[1:]] == [k["id"] for k in answer["keys"]]
    assert lines[1].split("  ")[-1].startswith("verifies until ")
    assert lines[3].endswith("  signing")
    for key in json.loads(path.read_text())["keys"]:
        assert key["secret"] not in shown.output + second.output
    as_json = json.loads(keys_cli(config, "show", "--json").stdout)
    assert (as_json["signing"], as_json["file"]) == (str(path), str(path))


def test_digest_keys_rotate_warns_while_an_explicit_secret_still_signs(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "an-operator-secret-of-some-length")
    rotated = keys_cli(config, "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stdout.splitlines()[-1] == (
        "  note: $DIGEST_SECRET is set and still signs new links; unset it to sign with the "
        "key file"
    )
    shown = keys_cli(config, "show")
    assert shown.stdout.splitlines()[0] == "links are signed with: $DIGEST_SECRET"


def test_digest_keys_show_expired_keys_as_expired(config: Config) -> None:
    rotate(config, now=NOW - timedelta(days=90))
    rotate(config, now=NOW - timedelta(days=60))  # the first key retired 60 days ago
    shown = keys_cli(config, "show")
    assert shown.stdout.splitlines()[1].endswith("  expired")

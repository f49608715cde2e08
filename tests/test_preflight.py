"""Before sending: every unset ${VAR} named with who needs it, and (when asked) one question
to the provider about the credentials, whose refusal is a finding, not a crash."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from digest.config import Config, load_config
from digest.delivery.preflight import preflight
from digest.delivery.providers.base import Check
from tests.emulators.providers import run_emulator


def site_with(site: Path, **sections: Any) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(sections)
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture(scope="module")
def postmark() -> Iterator[Any]:
    with run_emulator("postmark", key="pm-key") as emu:
        yield emu


def test_unset_variables_are_named_with_who_needs_them_and_the_provider_is_not_asked(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PM_UNSET", raising=False)
    monkeypatch.delenv("HOOK_UNSET", raising=False)
    config = site_with(
        sample_site,
        provider={"name": "postmark", "token": "${PM_UNSET}"},
        serve={
            "public_url": "https://news.example.com",
            "webhooks": {"postmark_username": "hooks", "postmark_password": "${HOOK_UNSET}"},
        },
    )
    found = preflight(config)
    assert found.missing == [
        {"key": "provider.token", "variable": "PM_UNSET", "needed_by": "send"},
        {"key": "serve.webhooks.postmark_password", "variable": "HOOK_UNSET", "needed_by": "serve"},
    ]
    assert not found.ok and found.checks == []
    asked = preflight(config, provider=True)
    assert asked.checks == [Check("credentials", False, "not checked: PM_UNSET not set")]
    assert asked.as_dict()["ok"] is False


@pytest.mark.integration
def test_a_refused_token_is_a_failed_credentials_check(
    sample_site: Path, postmark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PM_TOKEN", "not-the-key")
    config = site_with(
        sample_site, provider={"name": "postmark", "base_url": postmark.url, "token": "${PM_TOKEN}"}
    )
    found = preflight(config, provider=True)
    (check,) = found.checks
    assert (check.name, check.ok) == ("credentials", False)
    assert check.detail.startswith("postmark 401")
    assert not found.ok
    assert "not-the-key" not in check.detail


@pytest.mark.integration
def test_an_smtp_server_that_is_not_there_is_a_failed_connection_check(sample_site: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    config = site_with(
        sample_site, provider={"name": "smtp", "host": "127.0.0.1", "port": port, "timeout": 5}
    )
    found = preflight(config, provider=True)
    (check,) = found.checks
    assert (check.name, check.ok) == ("connection", False)
    assert check.detail.startswith(f"smtp: cannot connect to 127.0.0.1:{port} (starttls): ")
    assert not found.ok

"""What each provider's API says of the sending domain and its DKIM, asked of the provider
emulators (Postmark, SendGrid, Mailgun, Brevo in tests/emulators/providers.py; Resend and
SES through the fault proxy, which answers their domain endpoints itself): verified, not
verified (named, with the provider's document and the record it asks for), a refused key
and a provider that does not answer are findings, never a crash and never a pass."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from digest.cli import main
from digest.config import Config
from digest.delivery.deliverability import Item, provider_items
from digest.delivery.providers.domains import DOCUMENTS
from tests.dns_server import dns_server
from tests.emulators.faultproxy import MatrixProxy
from tests.emulators.providers import run_emulator
from tests.helpers import edit_config, free_port

pytestmark = pytest.mark.integration  # emulators and a DNS server on loopback

KEY = "domain-key"
DOMAIN = "fieldnotes.example.com"  # the sample site's From domain
OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${EMU_KEY}", "account_token": "${EMU_KEY}"},
    "sendgrid": {"api_key": "${EMU_KEY}"},
    "mailgun": {"api_key": "${EMU_KEY}", "domain": DOMAIN},
    "brevo": {"api_key": "${EMU_KEY}"},
    "resend": {"api_key": "${EMU_KEY}"},
    "ses": {
        "access_key_id": "${EMU_KEY}",
        "secret_access_key": "${EMU_KEY}",
        "region": "eu-west-1",
    },
}
# What each says when the DKIM record is not verified, and the record it asks for.
NOT_VERIFIED = {
    "postmark": (
        f"20260101pm._domainkey.{DOMAIN}",
        f'publish 20260101pm._domainkey.{DOMAIN}. TXT "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB"',
    ),
    "sendgrid": (
        f"dkim1 s1._domainkey.{DOMAIN}",
        f"publish s1._domainkey.{DOMAIN}. CNAME s1.domainkey.u1.wl.sendgrid.net",
    ),
    "mailgun": (
        f"pic._domainkey.{DOMAIN}: invalid",
        f'publish pic._domainkey.{DOMAIN}. TXT "k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB"',
    ),
    "brevo": (
        f"mail._domainkey.{DOMAIN}",
        f'publish mail._domainkey.{DOMAIN}. TXT "k=rsa;p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB"',
    ),
    "resend": (
        f"resend._domainkey.{DOMAIN}: failed",
        f'publish resend._domainkey.{DOMAIN}. TXT "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB"',
    ),
    "ses": (
        "DkimAttributes.Status PENDING",
        f"publish tok1._domainkey.{DOMAIN}. CNAME tok1.dkim.amazonses.com; "
        f"tok2._domainkey.{DOMAIN}. CNAME tok2.dkim.amazonses.com; "
        f"tok3._domainkey.{DOMAIN}. CNAME tok3.dkim.amazonses.com",
    ),
}


class Switch:
    """Turn a running emulator's domain and DKIM state."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @property
    def url(self) -> str:
        return str(self.handle.url)

    def set(self, verified: bool, dkim: bool) -> None:
        if isinstance(self.handle, MatrixProxy):
            self.handle.domain_verified, self.handle.dkim_verified = verified, dkim
        else:
            self.handle.set_domain_verified(verified, dkim)


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Switch]]:
    with contextlib.ExitStack() as stack:
        found = {
            name: Switch(stack.enter_context(run_emulator(name, key=KEY)))
            for name in ("postmark", "sendgrid", "mailgun", "brevo")
        }
        for name in ("resend", "ses"):
            # the proxy answers these domain endpoints itself: nothing is forwarded
            proxy = MatrixProxy(name, f"http://127.0.0.1:{free_port()}")
            stack.callback(proxy.close)
            found[name] = Switch(proxy)
        yield found


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_KEY", KEY)


def _config(site: Path, provider: str, url: str, **extra: Any) -> Config:
    options = {"name": provider, "base_url": url, **OPTIONS[provider], "max_retries": 0}
    return edit_config(site, provider={**options, **extra})


def _by_rule(items: list[Item], rule: str) -> list[Item]:
    return [i for i in items if i.name == rule]


@pytest.mark.parametrize("provider", sorted(OPTIONS))
def test_verified_and_not_verified_dkim_per_provider(
    provider: str, emulators: dict[str, Switch], sample_site: Path
) -> None:
    switch = emulators[provider]
    config = _config(sample_site, provider, switch.url)
    switch.set(True, True)
    good = provider_items(config)
    assert good and all(i.status == "ok" for i in good), good
    dkim = _by_rule(good, "provider-dkim")[0]
    assert dkim.detail.startswith(f"{provider} says DKIM is verified for {DOMAIN}")
    switch.set(True, False)
    try:
        bad = provider_items(config)
    finally:
        switch.set(True, True)
    failed = [i for i in _by_rule(bad, "provider-dkim") if i.status == "fail"]
    where, publish = NOT_VERIFIED[provider]
    assert failed[0].detail == (
        f"{provider} says DKIM is not verified for {DOMAIN} ({where}) ({DOCUMENTS[provider]})"
    )
    assert failed[0].action == publish
    assert all(i.group == "provider" for i in bad)


def test_a_domain_the_account_does_not_have_is_named(
    emulators: dict[str, Switch], sample_site: Path
) -> None:
    _config(sample_site, "sendgrid", emulators["sendgrid"].url)
    sender = yaml.safe_load((sample_site / "config.yaml").read_text())["sender"]
    config = edit_config(sample_site, sender={**sender, "from_email": "news@other.example"})
    assert [(i.name, i.status, i.detail) for i in provider_items(config)] == [
        (
            "provider-domain",
            "fail",
            "sendgrid says other.example is not one of the account's domains "
            f"({DOCUMENTS['sendgrid']}): add it in SendGrid (Settings > Sender Authentication)",
        )
    ]


def test_a_refused_key_is_a_failed_finding_naming_the_credentials(
    emulators: dict[str, Switch], sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMU_KEY", "wrong")
    config = _config(sample_site, "mailgun", emulators["mailgun"].url)
    items = provider_items(config)
    assert [(i.name, i.status) for i in items] == [("credentials", "fail")]
    assert items[0].detail.startswith("mailgun refused the credentials: mailgun 401")
    assert items[0].action == "check the API key or token in the provider section of config.yaml"


def test_a_provider_that_does_not_answer_is_a_failed_finding(sample_site: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = _config(sample_site, "brevo", dead, timeout=1.0)
    items = provider_items(config)
    assert [(i.name, i.status) for i in items] == [("connection", "fail")]
    assert items[0].detail.startswith(f"could not ask brevo about {DOMAIN}: brevo")


def test_unset_credentials_are_a_warning_not_a_pass(
    emulators: dict[str, Switch], sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMU_KEY")
    config = _config(sample_site, "sendgrid", emulators["sendgrid"].url)
    assert [(i.name, i.status, i.detail) for i in provider_items(config)] == [
        ("credentials", "warn", "sendgrid not asked: EMU_KEY not set")
    ]


def test_postmark_without_an_account_token_says_what_to_set(
    emulators: dict[str, Switch], sample_site: Path
) -> None:
    config = _config(sample_site, "postmark", emulators["postmark"].url, account_token=None)
    items = provider_items(config)
    assert [(i.name, i.status) for i in items] == [("provider-dkim", "info")]
    assert "set provider.account_token (e.g. ${POSTMARK_ACCOUNT_TOKEN})" in items[0].detail


def test_check_deliverability_prints_the_providers_findings(
    emulators: dict[str, Switch], sample_site: Path
) -> None:
    switch = emulators["postmark"]
    switch.set(True, False)
    try:
        with dns_server({}) as (port, _):
            config = _config(sample_site, "postmark", switch.url)
            edit_config(
                sample_site,
                deliverability={"nameservers": ["127.0.0.1"], "dns_port": port},
            )
            text = CliRunner().invoke(
                main, ["--config", str(config.source), "check", "--deliverability"]
            )
            as_json = CliRunner().invoke(
                main, ["--config", str(config.source), "check", "--deliverability", "--json"]
            )
    finally:
        switch.set(True, True)
    assert text.exit_code == 1, text.output
    assert (
        f"  provider provider-dkim: FAILED: postmark says DKIM is not verified for {DOMAIN} "
        f"(20260101pm._domainkey.{DOMAIN}) ({DOCUMENTS['postmark']})\n"
        f"    {NOT_VERIFIED['postmark'][1]}\n"
    ) in text.output
    data = json.loads(as_json.output)
    assert [(p["name"], p["status"]) for p in data["provider"]] == [
        ("provider-dkim", "fail"),
        ("provider-return-path", "ok"),
    ]

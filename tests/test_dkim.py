"""DKIM over SMTP: every message digest sends with a key verifies at a real SMTP sink
(aiosmtpd on loopback) with dkimpy's verifier, against the TXT record `digest keys dkim`
prints; the key file is made 0600 and never overwritten."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from digest.cli import main
from digest.delivery.providers.base import Batch, Recipient, Result
from digest.delivery.providers.registry import make_provider
from digest.email.dkim import DkimError, Signer, dns_record, generate_key, public_key_b64
from digest.email.message import to_message
from tests.test_smtp import composed, config_for, free_port


class Verifier:
    """Verifies each message's DKIM signature as it arrives; keeps the outcome by address."""

    def __init__(self, txt: bytes) -> None:
        self.txt = txt
        self.outcomes: dict[str, bool] = {}
        self.bodies: set[bytes] = set()

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.txt if name == b"digest._domainkey.example.com." else None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        self.outcomes[envelope.rcpt_tos[0]] = dkim.verify(content, dnsfunc=self.dns)
        self.bodies.add(content.split(b"\r\n\r\n", 1)[1])
        return "250 2.0.0 Ok: queued"


def _txt_value(record: str) -> bytes:
    """The record's value as DNS hands it over: its quoted strings joined."""
    return "".join(record.split(" TXT ", 1)[1].split('"')[1::2]).encode()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    assert generate_key(path, 2048) is True
    return path


@pytest.fixture
def sink(key: Path) -> Iterator[tuple[Verifier, int]]:
    record = dns_record("digest", "example.com", public_key_b64(key))
    handler = Verifier(_txt_value(record))
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _batch(count: int) -> Batch:
    recipients = tuple(
        Recipient(i, f"reader-{i}@example.org", {}, f"<m{i}@example.com>")
        for i in range(1, count + 1)
    )
    return Batch(
        issue_id="2026-W47",
        variant="all",
        composed=composed(),
        recipients=recipients,
        idempotency_key="k",
        renderer=to_message,
        date=composed().composed_at,
    )


@pytest.mark.slow  # about 30 s: dkimpy signs each of the 1,000 messages with a 2048-bit key
def test_every_message_verifies_at_the_sink(sink: tuple[Verifier, int], key: Path) -> None:
    handler, port = sink
    config = config_for(port, dkim_key_file=str(key))
    provider = make_provider(config)
    started = time.perf_counter()
    try:
        events = list(provider.send(_batch(1000)))
    finally:
        provider.close()
    elapsed = time.perf_counter() - started
    sent = [e for e in events if isinstance(e, Result) and e.state == "sent"]
    assert len(sent) == 1000
    assert len(handler.outcomes) == 1000
    assert [a for a, ok in handler.outcomes.items() if not ok] == []
    # each body is personalised (it carries its reader's address), so each signature differs
    assert len(handler.bodies) == 1000
    print(f"1000 messages signed, sent and verified in {elapsed:.1f} s")


def test_a_changed_message_fails_verification(key: Path) -> None:
    record = dns_record("digest", "example.com", public_key_b64(key))
    signed = Signer(key, "digest", "example.com").sign(
        b"From: Test <news@example.com>\r\nTo: a@example.org\r\nSubject: Hi\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello a\r\n"
    )
    assert b"list-unsubscribe-post" in signed.split(b"\r\n\r\n")[0].lower()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return _txt_value(record)

    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Hello a", b"Hello b"), dnsfunc=dns)


def test_key_file_is_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "dkim.pem"
    assert generate_key(path, 1024) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert generate_key(path, 1024) is False
    assert path.read_bytes() == before
    path.write_text("not a key")
    with pytest.raises(DkimError, match=r"^DKIM key .*dkim\.pem cannot be read"):
        Signer(path, "digest", "example.com")


def test_keys_dkim_command_prints_the_record(sample_site: Path) -> None:
    config = sample_site / "config.yaml"
    result = CliRunner().invoke(main, ["--config", str(config), "keys", "dkim", "--bits", "1024"])
    assert result.exit_code == 0, result.output
    path = sample_site / "dkim.pem"
    lines = result.output.splitlines()
    assert lines[0] == f"created private key: {path} (mode 0600)"
    assert lines[2] == "  " + dns_record("digest", "fieldnotes.example.com", public_key_b64(path))
    assert lines[2].startswith(
        '  digest._domainkey.fieldnotes.example.com. TXT "v=DKIM1; k=rsa; p='
    )
    assert "BEGIN" not in result.output  # the private key is never printed
    again = CliRunner().invoke(main, ["--config", str(config), "keys", "dkim"])
    assert again.output.splitlines()[0] == f"kept the existing private key: {path} (mode 0600)"

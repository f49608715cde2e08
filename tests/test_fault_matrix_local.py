"""The fault matrix for the transports without an HTTP API: SMTP (aiosmtpd) and the outbox.

Each SMTP fault is the SMTP form of the HTTP matrix's (``test_fault_matrix.py``): a password
variable that is not set, a refused login (401 on the first request), the server refusing
MAIL FROM halfway (401 after half the batches), a burst of 451 answers (500 storm), a closed
port, the connection closed at MAIL FROM (drop before), closed after the message was taken
(drop after acceptance), the 250 held past the client's timeout (timeout after acceptance)
and 421 "try again later" on connecting (429 storm). Each is followed by the corrected run,
and, where messages were held ``uncertain``, by ``--resend-uncertain``. Counted at the
server: 0 lost; with ``hold`` nothing sent twice; duplicates only among the uncertain.

The outbox has no secret, network or provider: its one fault is a folder it cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from digest.config import Config, load_config
from digest.delivery.send import send_issue
from digest.delivery.send_report import SendReport
from digest.errors import ConfigError, DigestError, NothingToSend, ProviderError
from tests.helpers import edit_config, free_port, import_readers
from tests.helpers import ledger_states as ledger

aiosmtpd = pytest.importorskip("aiosmtpd.controller")

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
N = 40
PASSWORD = "smtp-pass"
FAULTS = (
    "secret_missing",
    "unauthorized_first",
    "unauthorized_half",
    "error_storm",
    "refused",
    "drop_before",
    "drop_after",
    "timeout_after",
    "storm_429",
)


class Faulty:
    """An aiosmtpd handler that records what it accepts and misbehaves on request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []
        self.clear()

    def clear(self) -> None:
        self.refuse_login = False
        self.mail_refused_after: int | None = None  # 530 at MAIL FROM once N were taken
        self.rcpt_451 = 0  # the next N RCPTs get 451
        self.drop_at_mail = 0
        self.drop_after_data = 0
        self.hang_after_data = 0
        self.busy_421 = 0  # the next N sessions get 421 at MAIL FROM

    def authenticate(self, server: Any, session: Any, envelope: Any, mech: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = not self.refuse_login and getattr(data, "password", b"") == PASSWORD.encode()
        return AuthResult(success=ok)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            if self.drop_at_mail > 0:
                self.drop_at_mail -= 1
                server.transport.close()
                return "451 closing"
            if self.busy_421 > 0:
                self.busy_421 -= 1
                return "421 4.7.0 Too many messages, try again later"
            if self.mail_refused_after is not None and len(self.received) >= (
                self.mail_refused_after
            ):
                return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            if self.rcpt_451 > 0:
                self.rcpt_451 -= 1
                return "451 4.3.0 Temporary failure, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
            drop = self.drop_after_data > 0
            hang = self.hang_after_data > 0
            if drop:
                self.drop_after_data -= 1
            elif hang:
                self.hang_after_data -= 1
        if drop:
            server.transport.close()
        elif hang:
            await asyncio.sleep(1.5)
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Faulty, int]]:
    from aiosmtpd.controller import Controller

    handler = Faulty()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=handler.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def make_site(root: Path, provider: dict[str, Any], prefix: str) -> tuple[Config, list[str]]:
    config = edit_config(root, provider=provider, send={"batch_size": 10, "max_attempts": 3})
    addresses = [f"{prefix}-{i:03d}@example.com" for i in range(N)]
    import_readers(config, addresses, now=NOW)
    return config, addresses


def attempt(config: Config, **options: Any) -> tuple[SendReport | None, DigestError | None]:
    try:
        return send_issue(config, now=NOW, sleep=lambda _: None, **options), None
    except DigestError as exc:
        return None, exc


@pytest.mark.parametrize("fault", FAULTS)
def test_smtp_fault_then_corrected_rerun(
    fault: str, smtp: tuple[Faulty, int], sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp
    handler.clear()
    prefix = f"smtp-{fault}".replace("_", "-")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    provider = {
        "name": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "digest",
        "password": "${SMTP_PASSWORD}",
        "timeout": 0.5,
    }
    config, addresses = make_site(sample_site, provider, prefix)

    def counts() -> Counter[str]:
        with handler.lock:
            return Counter(a for a in handler.received if a.startswith(prefix))

    if fault == "secret_missing":
        monkeypatch.delenv("SMTP_PASSWORD")
    elif fault == "refused":
        data = yaml.safe_load(Path(str(config.source)).read_text())
        data["provider"]["port"] = free_port()
        Path(str(config.source)).write_text(yaml.safe_dump(data))
        config = load_config(Path(str(config.source)))
    with handler.lock:
        handler.refuse_login = fault == "unauthorized_first"
        handler.mail_refused_after = (
            len(handler.received) + N // 2 if fault == "unauthorized_half" else None
        )
        handler.rcpt_451 = 15 if fault == "error_storm" else 0
        handler.drop_at_mail = 1 if fault == "drop_before" else 0
        handler.drop_after_data = 1 if fault == "drop_after" else 0
        handler.hang_after_data = 1 if fault == "timeout_after" else 0
        handler.busy_421 = 1 if fault == "storm_429" else 0
    report, error = attempt(config)
    handler.clear()
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    data = yaml.safe_load(Path(str(config.source)).read_text())
    data["provider"]["port"] = port
    Path(str(config.source)).write_text(yaml.safe_dump(data))
    config = load_config(Path(str(config.source)))
    first = counts()
    states = ledger(config)

    if fault == "secret_missing":
        assert isinstance(error, ConfigError) and "SMTP_PASSWORD" in str(error)
        assert first == Counter() and states == {}
    elif fault in ("unauthorized_first", "unauthorized_half", "refused", "storm_429"):
        assert isinstance(error, ProviderError), (report, error)
        assert {a for a, s in states.items() if s == "sent"} == set(first)
        assert "uncertain" not in states.values()
    elif fault in ("error_storm", "drop_before"):
        # per-message temporary failures: retried in the same run, all delivered once
        assert error is None, error
        assert first == Counter(dict.fromkeys(addresses, 1))
    else:  # drop_after, timeout_after: the server took it, the answer was lost
        assert error is None, error
        held = {a for a, s in states.items() if s == "uncertain"}
        assert len(held) == 1 and held <= set(first)
        assert report is not None and report.uncertain == 1

    report, error = attempt(config)
    if isinstance(error, NothingToSend):
        assert "already sent" in str(error)
    else:
        assert error is None, error
    assert max(counts().values()) == 1  # hold: nothing sent twice
    states = ledger(config)
    held = {a for a, s in states.items() if s == "uncertain"}
    assert {a for a, s in states.items() if s == "sent"} | held == set(addresses)
    if held:
        report, error = attempt(config, resend_uncertain=True)
        assert error is None, error
    final = counts()
    assert set(final) == set(addresses)  # 0 lost
    assert {a for a, c in final.items() if c > 1} <= held  # duplicates: only the uncertain
    assert ledger(config) == dict.fromkeys(addresses, "sent")


def test_outbox_that_cannot_write_stops_then_the_rerun_writes_everything(
    sample_site: Path,
) -> None:
    config, _ = make_site(sample_site, {"name": "outbox"}, "outbox")
    blocker = config.path(config.out_dir) / "2026-W47" / "outbox"
    report, error = attempt(config)  # builds out/2026-W47 first
    assert error is None and report is not None
    # a second issue, whose outbox folder is a file
    blocker_week = config.path(config.out_dir) / "2026-W46"
    blocker_week.mkdir(parents=True, exist_ok=True)
    (blocker_week / "outbox").write_text("not a folder")
    try:
        send_issue(config, now=NOW, week="2026-W46", sleep=lambda _: None)
    except ProviderError as exc:
        assert "cannot create" in str(exc) and exc.exit_code == 6
    else:
        pytest.fail("the outbox wrote into a file")
    with contextlib.closing(sqlite3.connect(config.path(config.ledger.database))) as db:
        rows = dict(
            db.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = '2026-W46' GROUP BY state"
            ).fetchall()
        )
    assert rows == {"pending": N}  # nothing counted as written
    (blocker_week / "outbox").unlink()
    again = send_issue(config, now=NOW, week="2026-W46", sleep=lambda _: None)
    assert again.sent == N and again.complete
    assert len(list((blocker_week / "outbox").glob("*.eml"))) == N
    assert len(list(blocker.glob("*.eml"))) == N

"""The fault matrix: every HTTP provider x every fault, each followed by a corrected rerun.

Postmark, SendGrid, Mailgun and Brevo run against ``tests/emulators/providers.py`` (its own
faults); Resend and SES against the npm emulators behind ``tests/emulators/faultproxy.py``.
SMTP (aiosmtpd) and the outbox have their own matrices in ``test_fault_matrix_local.py``.

For each case: 40 subscribers in batches of 10, the fault, a run, then the fault removed and
the same command again (and, where messages are held ``uncertain``, ``--resend-uncertain``).
Counted at the emulator:

* 0 lost: every subscriber's message arrived, once the runs are over;
* 0 duplicates where the provider has idempotency keys (Brevo, Resend) or reconciliation
  answered (Postmark, Mailgun);
* elsewhere (SendGrid, SES) every duplicate is a message the run reported ``uncertain``, and
  while ``send.uncertain`` is ``hold`` nothing is sent twice.
"""

from __future__ import annotations

import contextlib
import socket
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
from tests.emulators.faultproxy import MatrixProxy
from tests.emulators.node import run_resend_local, run_ses_local
from tests.emulators.providers import run_emulator
from tests.helpers import edit_config, import_readers
from tests.helpers import ledger_states as ledger

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
N = 40
BATCH = 10
KEY = "test-key"
PYTHON = ("postmark", "sendgrid", "mailgun", "brevo")
NPM = ("resend", "ses")
IDEMPOTENT = {"brevo", "resend"}
RECONCILED = {"postmark", "mailgun"}
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
HANG = 3.0  # seconds an answer is held; the client gives up after TIMEOUT
TIMEOUT = 1.5  # long enough for a loaded machine's emulators to answer in time

OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${EMU_KEY}", "message_stream": "broadcast"},
    "sendgrid": {"api_key": "${EMU_KEY}"},
    "mailgun": {"api_key": "${EMU_KEY}", "domain": "mg.example.com"},
    "brevo": {"api_key": "${EMU_KEY}"},
    "resend": {"api_key": "${EMU_RESEND_KEY}"},
    "ses": {"access_key_id": "${EMU_KEY}", "secret_access_key": "${EMU_KEY}"},
}
SECRET_VAR = {p: "EMU_RESEND_KEY" if p == "resend" else "EMU_KEY" for p in OPTIONS}


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def make_site(root: Path, provider: str, url: str, prefix: str) -> tuple[Config, list[str]]:
    provider_options = {
        "name": provider,
        "base_url": url,
        **OPTIONS[provider],
        "max_retries": 2,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.02,
        "timeout": TIMEOUT,
        "reconcile_after": 0,
    }
    if provider == "ses":
        provider_options["region"] = "eu-west-1"
    config = edit_config(
        root, provider=provider_options, send={"batch_size": BATCH, "max_attempts": 3}
    )
    addresses = [f"{prefix}-{i:03d}@example.com" for i in range(N)]
    import_readers(config, addresses, now=NOW)
    return config, addresses


def with_url(config: Config, url: str) -> Config:
    path = config.source
    assert path is not None
    data = yaml.safe_load(path.read_text())
    data["provider"]["base_url"] = url
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


# --------------------------------------------------------------------------- servers


class Server:
    """One provider's emulator: fault switches, and what it accepted, per address."""

    def __init__(self, provider: str, handle: Any, proxy: MatrixProxy | None = None) -> None:
        self.provider = provider
        self.handle = handle
        self.proxy = proxy

    @property
    def url(self) -> str:
        return self.proxy.url if self.proxy is not None else str(self.handle.url)

    def reset(self) -> None:
        if self.proxy is not None:
            self.proxy.clear_faults()
        else:
            self.handle.reset()
            self.handle.set_suppressions(bounced=[], spam=[], unsubscribed=[])

    def fault(self, name: str) -> None:
        py = self.proxy is None
        settings: dict[str, Any] = {
            "unauthorized_first": {"unauthorized_from": 1},
            "unauthorized_half": {"unauthorized_from": N // BATCH // 2 + 1},
            "error_storm": {"error_rate": 1.0} if py else {"errors": 10_000},
            "drop_before": {"drop_before": 1},
            "drop_after": {"drop_after": 1},
            "timeout_after": {"hang_after": 1, "hang_seconds": HANG},
            "storm_429": {"storm": 10_000, "retry_after": 0} if py else {"storm": 10_000},
        }.get(name, {})
        if not settings:
            return
        if py:
            self.handle.set_faults(**settings)
        else:
            assert self.proxy is not None
            self.proxy.set_faults(**settings)

    def clear(self) -> None:
        if self.proxy is not None:
            self.proxy.clear_faults()
        else:
            self.handle.clear_faults()

    def counts(self, addresses: list[str]) -> Counter[str]:
        wanted = set(addresses)
        if self.proxy is None:
            found = Counter(self.handle.counts())
        elif self.provider == "resend":
            found = Counter(to for e in self.handle.sent() for to in e["to"])
        else:
            found = Counter(to for e in self.handle.sent() for to in e["destination"]["to"])
        return Counter({a: c for a, c in found.items() if a in wanted})


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        found = {
            name: Server(name, stack.enter_context(run_emulator(name, key=KEY, seed=3)))
            for name in PYTHON
        }
        resend = stack.enter_context(run_resend_local())
        ses = stack.enter_context(run_ses_local())
        for name, emu in (("resend", resend), ("ses", ses)):
            proxy = MatrixProxy(name, emu.url)
            stack.callback(proxy.close)
            found[name] = Server(name, emu, proxy)
        yield found


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_KEY", KEY)
    monkeypatch.setenv("EMU_RESEND_KEY", "re_" + KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)


# --------------------------------------------------------------------------- the matrix


def attempt(config: Config, **options: Any) -> tuple[SendReport | None, DigestError | None]:
    try:
        return send_issue(config, now=NOW, sleep=lambda _: None, **options), None
    except DigestError as exc:
        return None, exc


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("provider", PYTHON + NPM)
def test_fault_then_corrected_rerun(
    provider: str,
    fault: str,
    servers: dict[str, Server],
    sample_site: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = servers[provider]
    server.reset()
    prefix = f"{provider}-{fault}".replace("_", "-")
    config, addresses = make_site(sample_site, provider, server.url, prefix)

    # 1. the run with the fault
    if fault == "secret_missing":
        monkeypatch.delenv(SECRET_VAR[provider])
    if fault == "refused":
        config = with_url(config, closed_port())
    server.fault(fault)
    report, error = attempt(config)
    server.clear()
    monkeypatch.setenv(SECRET_VAR[provider], "re_" + KEY if provider == "resend" else KEY)
    config = with_url(config, server.url)
    first = server.counts(addresses)
    states = ledger(config)

    # what the fault run must have said
    if fault == "secret_missing":
        assert isinstance(error, ConfigError) and SECRET_VAR[provider] in str(error)
        assert str(config.source) in str(error)
        assert first == Counter() and states == {}  # nothing recorded, nothing sent
    elif fault == "error_storm":
        # no provider documents a 500 as "not taken": what it answered is uncertain (never
        # counted as sent, never sent again blindly) and the run stops rather than make every
        # batch uncertain; the next run asks, resends with the same key, or holds them
        assert isinstance(error, ProviderError), (report, error)
        assert error.exit_code == 6 and error.status == 500
        assert "stopped so that no more messages become uncertain" in str(error)
        assert first == Counter() and "sent" not in states.values()
        assert "uncertain" in states.values()
    elif fault in ("unauthorized_first", "unauthorized_half", "refused"):
        assert isinstance(error, ProviderError), (report, error)
        assert error.exit_code == 6
        if fault == "unauthorized_first":
            assert first == Counter()
        # evidence only: what the ledger calls sent is exactly what the server has
        assert {a for a, s in states.items() if s == "sent"} == set(first)
        assert "uncertain" not in states.values()
    elif fault == "storm_429":
        assert isinstance(error, ProviderError) and error.retryable, (report, error)
        assert {a for a, s in states.items() if s == "sent"} == set(first)
    else:  # drop_before, drop_after, timeout_after
        assert error is None, error
        assert report is not None
        sent = {a for a, s in states.items() if s == "sent"}
        assert sent <= set(first)  # nothing counted as sent that the server lacks
        if provider in IDEMPOTENT | RECONCILED:
            assert states == dict.fromkeys(addresses, "sent")
            assert first == Counter(dict.fromkeys(addresses, 1))
        else:
            held = {a for a, s in states.items() if s == "uncertain"}
            assert len(held) == BATCH, states  # one request's worth: named, not counted sent
            assert report.uncertain == BATCH
            assert {u["email"] for u in report.uncertain_held} == held

    # 2. the corrected rerun (same command; uncertain messages are held)
    report, error = attempt(config)
    if isinstance(error, NothingToSend):  # the first run had finished it all
        assert "already sent (40 sent" in str(error)
    else:
        assert error is None, error
    again = server.counts(addresses)
    assert max(again.values(), default=1) == 1  # hold: nothing sent twice
    states = ledger(config)
    held = {a for a, s in states.items() if s == "uncertain"}
    assert {a for a, s in states.items() if s == "sent"} | held == set(addresses)
    if held:
        assert provider not in IDEMPOTENT | RECONCILED
        # 3. the operator chooses to resend what no one can confirm
        report, error = attempt(config, resend_uncertain=True)
        assert error is None, error
    final = server.counts(addresses)
    assert set(final) == set(addresses)  # 0 lost
    duplicates = {a for a, c in final.items() if c > 1}
    if provider in IDEMPOTENT | RECONCILED:
        assert duplicates == set()
    else:
        assert duplicates <= held  # only messages that were reported uncertain
    assert ledger(config) == dict.fromkeys(addresses, "sent")
    assert report is None or report.complete


@pytest.mark.parametrize("provider", PYTHON + NPM)
def test_check_provider_against_every_emulator(
    provider: str, servers: dict[str, Server], sample_site: Path
) -> None:
    from digest.delivery.preflight import preflight

    server = servers[provider]
    server.reset()
    config, _ = make_site(sample_site, provider, server.url, f"pre-{provider}")
    good = preflight(config, provider=True)
    assert good.ok, good.as_dict()
    assert good.checks[0].name == "credentials"
    if server.proxy is not None:
        server.proxy.domain_verified = False
    else:
        server.handle.set_domain_verified(False)
    try:
        bad = preflight(config, provider=True)
    finally:
        if server.proxy is not None:
            server.proxy.domain_verified = True
        else:
            server.handle.set_domain_verified(True)
    if provider == "postmark":  # a server token cannot see sender signatures
        assert bad.ok and "not checked" in bad.checks[1].detail
    else:
        assert not bad.ok
        assert [c.ok for c in bad.checks] == [True, False], bad.as_dict()

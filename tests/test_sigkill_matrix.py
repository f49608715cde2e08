"""Ten SIGKILLs at seeded random moments per transport, then a clean run, counted at the server.

Every transport (the outbox, SMTP through aiosmtpd, the six providers against their
emulators) sends the same 120 subscribers with ``digest send`` as a real process, which is
killed with SIGKILL ten times at random delays (during the build, mid-batch, between a
request and its answer) and started again each time; then one run goes to the end.

Afterwards, counted at the server: nobody is lost; nobody got two copies where the provider
drops repeats (Brevo, Resend), where it can be asked what it accepted (Postmark, Mailgun), or
where the result is exact (the outbox); elsewhere (SMTP, SendGrid, SES) the messages whose
answer was lost are ``uncertain`` in the ledger, held (none sent twice), and
``--resend-uncertain`` delivers any that did not arrive, duplicating only those.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email import message_from_bytes
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.faultproxy import MatrixProxy
from tests.emulators.node import run_resend_local, run_ses_local
from tests.emulators.providers import run_emulator
from tests.helpers import (
    cpu_time,
    edit_config,
    import_readers,
    ledger_states,
    recipient_of,
    wait_for,
)

pytestmark = pytest.mark.slow

N = 200
# The outbox writes files as fast as the disk takes them: with 200 recipients a fast machine
# finishes the whole send between two kills, so the outbox gets enough work to outlast ten.
N_OUTBOX = 3000
KILLS = 10
KEY = "test-key"
WEEK = "2026-W47"
TRANSPORTS = ("outbox", "smtp", "postmark", "sendgrid", "mailgun", "brevo", "resend", "ses")
EXACT = {"outbox", "postmark", "mailgun", "brevo", "resend"}
OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${EMU_KEY}", "message_stream": "broadcast"},
    "sendgrid": {"api_key": "${EMU_KEY}"},
    "mailgun": {"api_key": "${EMU_KEY}", "domain": "mg.example.com"},
    "brevo": {"api_key": "${EMU_KEY}"},
    "resend": {"api_key": "${EMU_RESEND_KEY}"},
    "ses": {"access_key_id": "${EMU_KEY}", "secret_access_key": "${EMU_KEY}"},
}


class SlowSmtp:
    """aiosmtpd handler: records each accepted message, a little slowly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        await asyncio.sleep(0.004)
        message_from_bytes(envelope.content)
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[SlowSmtp, int]]:
    from aiosmtpd.controller import Controller

    handler = SlowSmtp()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@contextlib.contextmanager
def server_for(transport: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(provider config, a callable returning the received addresses)."""
    if transport == "outbox":
        yield {"name": "outbox"}, None
    elif transport == "smtp":
        with smtp_server() as (handler, port):
            options = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10}
            yield {"name": "smtp", **options}, lambda: list(handler.received)
    elif transport in ("resend", "ses"):
        runner = run_resend_local if transport == "resend" else run_ses_local
        with runner() as emu:
            proxy = MatrixProxy(transport, emu.url)
            proxy.set_faults(delay=0.03)
            try:
                if transport == "resend":
                    received = lambda: [to for e in emu.sent() for to in e["to"]]  # noqa: E731
                else:
                    received = lambda: [  # noqa: E731
                        to for e in emu.sent() for to in e["destination"]["to"]
                    ]
                extra = {"region": "eu-west-1"} if transport == "ses" else {}
                yield (
                    {"name": transport, "base_url": proxy.url, **OPTIONS[transport], **extra},
                    (received),
                )
            finally:
                proxy.close()
    else:
        with run_emulator(transport, key=KEY, delay=0.03) as emu:
            emu.set_suppressions(bounced=[], spam=[], unsubscribed=[])
            yield (
                {"name": transport, "base_url": emu.url, **OPTIONS[transport]},
                lambda: [m["to"] for m in emu.messages()],
            )


# Each `digest send` is a real process, forked from a server that has imported digest once
# (starting a fresh interpreter ten times per transport costs more than the sends).
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["digest.cli", "digest.email.build", "digest.delivery.send"])


def _digest(argv: list[str], env: dict[str, str], cwd: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from digest.cli import main

    main(argv, prog_name="digest")


def _reached(count: Callable[[], int], target: int, process: Run) -> bool:
    return count() >= target or process.poll() is not None


def _moved(count: Callable[[], int], pid: int | None) -> tuple[int, float]:
    return count(), cpu_time(pid)


class Run:
    """``digest ARGV`` in its own process."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = CONTEXT.Process(target=_digest, args=(argv, env, str(cwd)))
        self.process.start()

    def poll(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float = 120) -> int:
        self.process.join(timeout)
        code = self.process.exitcode
        assert code is not None, "digest did not finish"
        return code


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ten_sigkills_then_a_clean_run(transport: str, sample_site: Path) -> None:
    rng = random.Random(f"sigkill-{transport}")
    with server_for(transport) as (provider, received):
        path = sample_site / "config.yaml"
        if provider["name"] not in ("outbox", "smtp"):
            provider.update(
                {"max_retries": 2, "retry_base_delay": 0.01, "timeout": 5, "reconcile_after": 0}
            )
        # a killed sender's rows are leased: a short lease lets the next run take them soon
        send = {"batch_size": 5, "concurrency": 1, "lease": "2s"}
        config = edit_config(sample_site, provider=provider, send=send)
        size = N_OUTBOX if transport == "outbox" else N
        addresses = [f"k-{transport}-{i:04d}@example.com" for i in range(size)]
        import_readers(config, addresses, now=config_time(), name="R {i}")
        env = {**os.environ, "EMU_KEY": KEY, "EMU_RESEND_KEY": "re_" + KEY}
        env.pop("DIGEST_SECRET", None)  # the key file: created once, by the first run
        command = ["--config", str(path), "send", "--week", WEEK]

        def count() -> int:
            if transport == "outbox":
                outbox = config.path(config.out_dir) / WEEK / "outbox"
                return len(list(outbox.glob("*.eml"))) if outbox.is_dir() else 0
            return len(received())

        kills = 0
        for round_ in range(2 * KILLS):
            if kills >= KILLS:
                break
            process = Run(command, env, sample_site)
            if round_ < 2:  # while it builds and queues
                time.sleep(rng.uniform(0.01, 0.1))
            else:  # mid-send: once the server has taken a few more, after a random instant
                target = count() + rng.randint(1, 4)
                wait_for(  # progress: messages taken, or the sender's CPU time moving
                    partial(_reached, count, target, process),
                    f"the sender to reach {target} messages",
                    progress=partial(_moved, count, process.process.pid),
                    poll=0.005,
                )
                time.sleep(rng.uniform(0, 0.03))
            process.kill()
            code = process.wait()
            if code == -signal.SIGKILL:
                kills += 1
            else:  # it finished first: fine, but it must not have failed
                assert code in (0, 5), code
        assert kills == KILLS

        assert Run(command, env, sample_site).wait() in (0, 5)
        ledger = ledger_states(config)
        if transport == "outbox":
            outbox = config.path(config.out_dir) / WEEK / "outbox"
            got = Counter(recipient_of(p) for p in outbox.glob("*.eml"))
        else:
            got = Counter(received())
        got = Counter({a: c for a, c in got.items() if a in set(addresses)})
        held = {a for a, s in ledger.items() if s == "uncertain"}
        assert max(got.values()) == 1  # nothing sent twice (uncertain ones are held)
        assert set(ledger) == set(addresses)
        assert {a for a, s in ledger.items() if s == "sent"} <= set(got)  # sent: evidence
        assert {a for a, s in ledger.items() if s not in ("sent", "uncertain")} == set()
        if transport in EXACT:
            assert held == set()
            assert set(got) == set(addresses)  # 0 lost, 0 duplicates
            return
        # SMTP, SendGrid, SES: the operator sends the uncertain ones again
        assert Run([*command, "--resend-uncertain"], env, sample_site).wait() in (0, 5)
        final_got = Counter(received())
        final_got = Counter({a: c for a, c in final_got.items() if a in set(addresses)})
        assert set(final_got) == set(addresses)  # 0 lost
        assert {a for a, c in final_got.items() if c > 1} <= held  # duplicates: uncertain only
        assert set(ledger_states(config).values()) == {"sent"}


def config_time() -> Any:
    from datetime import datetime, timezone

    return datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

"""Exactly once under provider faults: one named test per fault, on every transport it
applies to, against the independent sink in tests/sink (not the project's emulators).

Each case is what an operator does: ``digest send`` while the sink injects the fault, then
the fault removed and the same ``digest send`` again (the corrected rerun), then
``digest status --json``. The sink counts what it accepted; :func:`tests.sink.site.verdict`
is the oracle: nobody accepted twice, every active subscriber accepted once, and the only
rows left ``uncertain`` are ones ``digest status`` names for a provider that has no query to
settle them (SendGrid, SES, SMTP).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from digest.config import load_config
from digest.delivery.providers import registry
from digest.delivery.send import send_issue
from digest.errors import DigestError
from tests.sink import HttpSink, http_sink
from tests.sink.site import (
    EXACT,
    HTTP,
    NO_QUERY,
    NOW,
    WEEK,
    configure,
    process,
    send,
    status,
    unsubscribe,
    verdict,
)
from tests.sink.smtp import SmtpSink, smtp_sink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with http_sink(hang=3.0) as found:
        yield found


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    with smtp_sink() as found:
        yield found


@pytest.fixture(autouse=True)
def fresh(sink: HttpSink, smtp: SmtpSink) -> Iterator[None]:
    sink.reset()
    smtp.reset()
    yield
    sink.clear()
    smtp.clear()


def site_for(
    sample_site: Path, transport: str, sink: HttpSink, smtp: SmtpSink, **options: object
) -> list[str]:
    return configure(sample_site, transport, url=sink.url, port=smtp.port, **options)  # type: ignore[arg-type]


def accepted(transport: str, sink: HttpSink, smtp: SmtpSink) -> object:
    return smtp.counts() if transport == "smtp" else sink.counts(transport)


# --------------------------------------------------------------------------- no fault


@pytest.mark.parametrize("transport", [*HTTP, "smtp"])
def test_a_clean_send_is_counted_once_per_subscriber(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str
) -> None:
    """The harness itself: with no fault every transport's requests are understood by the
    sink, and a clean send is exact; a second run has nothing to send (exit 5)."""
    addresses = site_for(sample_site, transport, sink, smtp)
    first = send(sample_site)
    assert first.exit_code == 0, first.output
    assert sorted(accepted(transport, sink, smtp)) == addresses  # type: ignore[call-overload]
    assert verdict(accepted(transport, sink, smtp), sample_site, transport) == EXACT  # type: ignore[arg-type]
    assert send(sample_site).exit_code == 5


# --------------------------------------------------------------------------- row 1


TRANSIENT = [
    ("smtp", "451_before"),
    ("smtp", "421_before"),
    ("ses", "TooManyRequestsException"),
    ("ses", "ThrottlingException"),
    ("ses", "ServiceUnavailable"),
]


@pytest.mark.parametrize(("transport", "fault"), TRANSIENT, ids=[f"{t}-{f}" for t, f in TRANSIENT])
def test_a_short_transient_outage_never_fails_a_row_permanently(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str, fault: str
) -> None:
    """The same faults for two seconds only, the run going on after the outage: no row is
    ``failed-permanent``; after the run and a rerun everyone has the issue exactly once."""
    site_for(sample_site, transport, sink, smtp, n=100, batch=10)
    if transport == "smtp":
        smtp.fail(fault, seconds=2)
    else:
        sink.fail("ses", "ses", code=fault, seconds=2)
    send(sample_site)
    assert status(sample_site)["counts"]["failed-permanent"] == 0
    smtp.clear()
    sink.clear()
    send(sample_site)
    assert verdict(accepted(transport, sink, smtp), sample_site, transport) == EXACT  # type: ignore[arg-type]


@pytest.mark.parametrize(("transport", "fault"), TRANSIENT, ids=[f"{t}-{f}" for t, f in TRANSIENT])
def test_transient_outage_is_delivered_by_the_rerun_not_reported_complete(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str, fault: str
) -> None:
    """SMTP 451/421 before the data, SES throttling or unavailability for the whole first
    run: the run stops (exit 6), nothing is ``failed-permanent``, the issue is not complete;
    the rerun after the outage delivers every row once."""
    site_for(sample_site, transport, sink, smtp, n=100)
    if transport == "smtp":
        smtp.fail(fault)
    else:
        sink.fail("ses", "ses", code=fault)
    first = send(sample_site)
    state = status(sample_site)
    assert (first.exit_code, state["completed_at"]) == (6, None), first.output
    assert state["counts"]["failed-permanent"] == 0
    assert "already sent" not in first.output
    smtp.clear()
    sink.clear()
    rerun = send(sample_site)
    assert rerun.exit_code == 0, rerun.output
    assert verdict(accepted(transport, sink, smtp), sample_site, transport) == EXACT  # type: ignore[arg-type]
    assert status(sample_site)["completed_at"] is not None


# --------------------------------------------------------------------------- row 2


STORM = [(p, s) for p in HTTP for s in (401, 403, 429, 500, 502, 503)]
# The 5xx each provider's API reference documents as "the request was not taken":
# Postmark's "HTTP response codes" (503: service unavailable), SendGrid's v3 "responses"
# (503: the v3 Web API is not available), SES v2's CommonErrors (503 ServiceUnavailable).
# Mailgun, Brevo and Resend document none, so any 5xx from them may hide an acceptance.
NOT_TAKEN_5XX: dict[str, tuple[int, ...]] = {"postmark": (503,), "sendgrid": (503,), "ses": (503,)}


@pytest.mark.parametrize(("transport", "code"), STORM, ids=[f"{p}-{s}" for p, s in STORM])
def test_refusal_storm_with_concurrency_puts_rows_back_to_pending(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str, code: int
) -> None:
    """A 401/403/429/500/502/503 storm with ``send.concurrency: 3``: no claimed batch is
    left ``sending`` or ``uncertain`` after a refusal the provider documents as not
    accepted, and the plain rerun (no ``--resend-uncertain``) delivers everyone once."""
    site_for(sample_site, transport, sink, smtp, n=100, concurrency=3)
    sink.fail(transport, "refuse", status=code)
    first = send(sample_site)
    assert first.exit_code == 6, first.output
    counts = status(sample_site)["counts"]
    assert counts["sending"] == 0
    assert counts["failed-permanent"] == 0
    if code < 500 or code in NOT_TAKEN_5XX.get(transport, ()):
        assert counts["uncertain"] == 0, counts
    else:
        # a 5xx the provider does not document as "not taken" proves nothing: only the
        # batches that were answered may be uncertain (never one that did not leave), and
        # the rerun must settle them
        assert counts["uncertain"] <= 3 * 20, counts
    assert sink.counts(transport) == {}
    sink.clear()
    rerun = send(sample_site)
    assert rerun.exit_code == 0, rerun.output
    assert verdict(sink.counts(transport), sample_site, transport) == EXACT


# --------------------------------------------------------------------------- row 3


NOT_JSON = ["postmark", "mailgun", "brevo", "resend", "ses"]  # SendGrid's 202 has no body


@pytest.mark.parametrize("transport", NOT_JSON)
def test_a_2xx_whose_body_is_not_json_is_never_sent_again(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str
) -> None:
    """Accepted, then a 200 that cannot be parsed: the run does not crash with a decode
    error, the rows are ``uncertain`` (not ``pending``), and the rerun settles them
    without a second copy."""
    site_for(sample_site, transport, sink, smtp)
    sink.fail(transport, "bad_json", times=2)
    first = send(sample_site)
    assert "Traceback" not in first.output and "JSONDecodeError" not in first.output
    sink.clear()
    rerun = send(sample_site)
    assert rerun.exit_code in (0, 5), rerun.output
    assert verdict(sink.counts(transport), sample_site, transport) == EXACT


# --------------------------------------------------------------------------- row 4


def test_mailgun_rerun_long_after_a_crash_finds_what_was_accepted(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink
) -> None:
    """A sender SIGKILLed with requests in flight, the rerun fifteen minutes (simulated)
    later: the events lookup is anchored at the original attempt, so the messages the sink
    accepted before the kill are found, not sent again.

    Through ``send_issue`` with an injected clock (the CLI reads the wall clock): the sender
    is a forked process, the sink's clock held at the first attempt."""
    site_for(sample_site, "mailgun", sink, smtp, n=60, batch=5)
    config = load_config(sample_site / "config.yaml")
    first_at = NOW
    later = first_at + timedelta(minutes=15)
    sink.clock = lambda: first_at.timestamp()
    try:
        sink.fail("mailgun", "accept_hang", times=1)  # the first batch: accepted, no answer
        pid = os.fork()
        if pid == 0:
            with contextlib.suppress(BaseException):
                send_issue(
                    config,
                    now=first_at,
                    week=WEEK,
                    provider=registry.make_provider(config),
                    clock=lambda: first_at,
                )
            os._exit(0)
        deadline = time.monotonic() + 60
        while not sink.accepted and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)  # the first batch is in flight: accepted, unanswered
        os.waitpid(pid, 0)
        assert len(sink.accepted) == 5
        sink.clear()
        with contextlib.suppress(DigestError):
            send_issue(
                config,
                now=later,
                week=WEEK,
                provider=registry.make_provider(config),
                clock=lambda: later,
            )
    finally:
        sink.clock = time.time
    assert verdict(sink.counts("mailgun"), sample_site, "mailgun") == EXACT


# --------------------------------------------------------------------------- rows 5 and 6


ACCEPTED_THEN = [(p, k) for p in HTTP for k in ("accept_502", "accept_drop", "accept_hang")]
ACCEPTED_THEN += [("smtp", "drop_after"), ("smtp", "421_after")]


@pytest.mark.parametrize(
    ("transport", "fault"), ACCEPTED_THEN, ids=[f"{t}-{f}" for t, f in ACCEPTED_THEN]
)
def test_accepted_then_no_readable_answer_is_settled_not_repeated(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str, fault: str
) -> None:
    """Accepted, then a 502, a dropped connection or a timeout (SMTP: a drop or a 421
    after the data): never retried as if nothing was sent. The plain rerun settles the rows
    with the provider's query or idempotency key; only where no query exists do they stay
    ``uncertain``, each named by ``digest status``; nobody gets two copies."""
    site_for(sample_site, transport, sink, smtp)
    if transport == "smtp":
        smtp.fail(fault, times=2)
    else:
        sink.fail(transport, fault, times=2)
    send(sample_site)
    sink.clear()
    smtp.clear()
    rerun = send(sample_site)
    assert rerun.exit_code in (0, 5), rerun.output
    found = verdict(accepted(transport, sink, smtp), sample_site, transport)  # type: ignore[arg-type]
    assert found == EXACT
    if transport not in NO_QUERY:
        assert status(sample_site)["counts"]["uncertain"] == 0


# --------------------------------------------------------------------------- row 7


def test_smtp_sender_frozen_past_its_lease_sends_nothing_after_it_resumes(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink
) -> None:
    """A sender stopped (SIGSTOP) longer than ``send.lease`` while a second sender takes
    its rows over: when it resumes it sends nothing more (fencing), and nobody is mailed
    twice."""
    site_for(sample_site, "smtp", sink, smtp, n=120, batch=5, lease="2s")
    first = process(sample_site)
    try:
        deadline = time.monotonic() + 60
        while len(smtp.accepted) < 10 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        time.sleep(3)  # past the lease: the stopped sender's rows may now be taken over
        second = send(sample_site)
        assert second.exit_code == 0, second.output
        first.send_signal(signal.SIGCONT)
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert verdict(smtp.counts(), sample_site, "smtp") == EXACT


# --------------------------------------------------------------------------- row 8


@pytest.mark.parametrize("transport", ["postmark", "sendgrid"])
def test_nobody_is_mailed_after_their_unsubscribe_returned(
    sample_site: Path, sink: HttpSink, smtp: SmtpSink, transport: str
) -> None:
    """Unsubscribes during a send paced at 20 requests a second (one message each) land
    at send time: nobody is accepted at the sink after ``digest subscribers unsubscribe``
    returned for them."""
    addresses = site_for(sample_site, transport, sink, smtp, n=120, batch=1)
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"]["max_requests_per_second"] = 20
    path.write_text(yaml.safe_dump(data))
    sender = process(sample_site)
    returned: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while len(sink.accepted) < 5 and sender.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        for email in addresses[-60::6]:  # later rows: claimed, perhaps, not yet sent
            unsubscribe(sample_site, email)
            returned[email] = time.time()
        sender.wait(timeout=120)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    late = {
        a.email: round(a.at - returned[a.email], 3)
        for a in list(sink.accepted)
        if a.email in returned and a.at > returned[a.email]
    }
    assert late == {}  # address -> seconds after the unsubscribe returned


# --------------------------------------------------------------------------- row 10


def test_a_double_sigint_exits_6_with_the_resume_message(sample_site: Path) -> None:
    """Off a terminal, a stop by signal (twice) exits 6, not -2, and says how to resume."""
    configure(sample_site, "smtp", port=1, n=200)
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = {"name": "outbox"}
    path.write_text(yaml.safe_dump(data))
    sender = process(sample_site)
    outbox = sample_site / "out" / WEEK / "outbox"
    deadline = time.monotonic() + 60
    while not (outbox.exists() and any(outbox.iterdir())) and time.monotonic() < deadline:
        if sender.poll() is not None:
            break
        time.sleep(0.01)
    sender.send_signal(signal.SIGINT)
    sender.send_signal(signal.SIGINT)
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode == 6, output
    assert "run the same command to resume" in output

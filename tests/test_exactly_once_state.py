"""Exactly once as a stateful property: random sequences of provider faults, SIGKILLed
senders, reruns, unsubscribes and ``--resend-uncertain``, on every transport, against the
independent sink in tests/sink.

Invariants, checked after every step:

* no subscriber is accepted twice at the sink;
* nobody is accepted after their unsubscribe returned;

and at the end of each sequence, after the faults are cleared and a clean rerun: every
active subscriber is accepted exactly once, or named ``uncertain`` by ``digest status``
where the provider has no query to settle them (SendGrid, SES, SMTP).

Every send step draws a fault that applies to the transport (or none) and how long it lasts,
so most sends meet one. Sends run in this process (``send_issue``, the issue composed once
per process); the SIGKILL step forks a sender and kills it with SIGKILL once the sink has
accepted a drawn number of its messages. ``--resend-uncertain`` is drawn only where the
provider can settle or deduplicate what it resends (Postmark, Mailgun, Brevo, Resend):
elsewhere it is the operator's documented choice to risk a second copy.

Each transport runs ``DIGEST_STATEFUL_EXAMPLES`` sequences (default 30: 210 in all, 188 s
measured on the shared two-core machine while others' suites ran beside it); set it higher
for a longer search, e.g. ``DIGEST_STATEFUL_EXAMPLES=200`` (1,400 sequences). The time goes
to work, not to waiting on digest's pauses: the site's config makes refusals for now back
off in tens of milliseconds (``send.retry_wait``, ``retry_base_delay``), answers time out
after 0.3 s and leases last 1 s; the sinks, one HTTP client and one site folder per
transport (its config read once) serve every sequence, and the issue is built once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from digest.audience.subscribers import SubscriberStore, unsubscribe
from digest.config import Config, load_config
from digest.delivery.issue import BuildComposer, Issue
from digest.delivery.leases import lease_now
from digest.delivery.ledger import SENDING, UNCERTAIN, Ledger
from digest.delivery.providers import registry
from digest.delivery.providers.base import Provider
from digest.delivery.send import send_issue
from digest.errors import DigestError, NothingToSend
from digest.store.clock import parse_utc
from tests.sink import HttpSink
from tests.sink.site import EXACT, NO_QUERY, NOW, TRANSPORTS, WEEK, configure, verdict
from tests.sink.smtp import SmtpSink

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("DIGEST_STATEFUL_EXAMPLES", "30"))
N = 6
TIMEOUT = 0.3  # the client's answer timeout: the sink's accept_hang holds 0.4 s

HTTP_FAULTS: list[tuple[str, int, str]] = [
    *(("refuse", s, "") for s in (401, 403, 429, 500, 502, 503)),
    ("accept_502", 0, ""),
    ("accept_drop", 0, ""),
    ("accept_hang", 0, ""),
    ("bad_json", 0, ""),
]
SES_FAULTS = [
    ("ses", 0, c) for c in ("TooManyRequestsException", "ThrottlingException", "ServiceUnavailable")
]
SMTP_FAULTS = ["451_before", "421_before", "451_after", "421_after", "drop_after"]


def faults(transport: str) -> list[tuple[str, int, str] | None]:
    """The faults that apply to a transport, and no fault."""
    if transport == "smtp":
        return [None, *((k, 0, "") for k in SMTP_FAULTS)]
    found: list[tuple[str, int, str] | None] = [None, *HTTP_FAULTS]
    if transport == "sendgrid":
        found.remove(("bad_json", 0, ""))  # SendGrid's 202 carries no body
    return found + (SES_FAULTS if transport == "ses" else [])  # type: ignore[operator]


class CachedComposer(BuildComposer):
    """The real composer, the issue built once per process: it does not depend on who
    subscribes, and building it is most of a small send's time. A site that did not build
    it gets a copy of the build (``out/<issue-id>``), which the send publishes."""

    issue: ClassVar[Issue | None] = None
    built: ClassVar[Path | None] = None

    def prepare(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> Issue:
        if CachedComposer.issue is None:
            CachedComposer.issue = super().prepare(
                config, now=now, week=week, since=since, until=until, write=True
            )
            out = config.path(config.out_dir) / CachedComposer.issue.selection.issue_id
            CachedComposer.built = Path(tempfile.mkdtemp(prefix="digest-build-")) / out.name
            shutil.copytree(out, CachedComposer.built)
        assert CachedComposer.built is not None
        here = config.path(config.out_dir) / CachedComposer.built.name
        if write and not here.exists():
            shutil.copytree(CachedComposer.built, here)
        return CachedComposer.issue


COMPOSER = CachedComposer()
CLIENTS: dict[str, httpx.Client] = {}
SINKS: dict[str, Any] = {}
TEMPLATES: dict[str, Path] = {}
SITES: dict[str, tuple[Path, Config]] = {}


def sinks() -> tuple[HttpSink, SmtpSink]:
    if not SINKS:
        SINKS["http"] = HttpSink(hang=0.4)
        SINKS["smtp"] = SmtpSink()
        SINKS["smtp"].start()
    return SINKS["http"], SINKS["smtp"]


def template(transport: str) -> Path:
    """A configured site with its subscribers, made once per transport and copied."""
    if transport not in TEMPLATES:
        http, smtp = sinks()
        site = Path(tempfile.mkdtemp(prefix=f"digest-state-{transport}-")) / "site"
        site.mkdir()
        shutil.copytree(ROOT / "content", site / "content")
        shutil.copy(ROOT / "config.yaml", site / "config.yaml")
        configure(
            site, transport, url=http.url, port=smtp.port, n=N, batch=3, lease="1s", timeout=TIMEOUT
        )
        TEMPLATES[transport] = site
    return TEMPLATES[transport]


def fresh_site(transport: str) -> tuple[Path, Config]:
    """The transport's working site with the template's data again (subscribers, an empty
    ledger) and no build or reports: one folder per transport, so its config is read once."""
    if transport not in SITES:
        site = Path(tempfile.mkdtemp(prefix=f"digest-state-{transport}-work-")) / "site"
        shutil.copytree(template(transport), site)
        SITES[transport] = (site, load_config(site / "config.yaml"))
    site, config = SITES[transport]
    for folder in ("data", "out"):
        shutil.rmtree(site / folder, ignore_errors=True)
    shutil.copytree(template(transport) / "data", site / "data")
    return site, config


def provider_for(config: Config, *, shared: bool = True) -> Provider:
    """The configured transport; an HTTP one on a client that loads no certificate store
    (a client of digest's own loads it, about a third of a second on this machine, for
    requests that go to plain HTTP on loopback): this process's one client, or, in a forked
    sender, a client of its own (the parent's pooled connections are not the child's)."""
    if config.provider.name == "smtp":
        return registry.make_provider(config)
    if "client" not in CLIENTS or not shared:
        client = httpx.Client(timeout=httpx.Timeout(TIMEOUT, connect=TIMEOUT), verify=False)
        if not shared:
            return registry.get_provider_class(config.provider.name).from_config(
                config, client=client
            )
        CLIENTS["client"] = client
    return registry.get_provider_class(config.provider.name).from_config(
        config, client=CLIENTS["client"]
    )


def run_send(config: Config, *, resend_uncertain: bool = False, shared: bool = True) -> str:
    try:
        report = send_issue(
            config,
            now=NOW,
            week=WEEK,
            provider=provider_for(config, shared=shared),
            composer=COMPOSER,
            resend_uncertain=resend_uncertain,
        )
    except NothingToSend:
        return "nothing"
    except DigestError as exc:
        return type(exc).__name__
    return f"exit {report.exit_code}"


class ExactlyOnce(RuleBasedStateMachine):
    transport: ClassVar[str] = "postmark"

    def __init__(self) -> None:
        super().__init__()
        self.http, self.smtp = sinks()
        self.http.reset()
        self.smtp.reset()
        self.site, self.config = fresh_site(self.transport)
        self.unsubscribed: dict[str, float] = {}
        self.kills = 0

    # ------------------------------------------------------------------ what the sink saw

    def accepted(self) -> Counter[str]:
        return self.smtp.counts() if self.transport == "smtp" else self.http.counts(self.transport)

    def accept_times(self) -> list[tuple[str, float]]:
        if self.transport == "smtp":
            return []  # the SMTP sink keeps no times; its unsubscribes are checked by count
        return [(a.email, a.at) for a in list(self.http.accepted) if a.provider == self.transport]

    # ------------------------------------------------------------------ rules

    def inject(self, data: st.DataObject) -> None:
        """Draw a fault that applies to this transport (or none) and how long it lasts (a
        number of requests or messages, or until cleared); it stays until replaced."""
        fault = data.draw(st.sampled_from(faults(self.transport)), label="fault")
        if fault is None:
            return
        times = data.draw(st.sampled_from([1, 2, None]), label="times")
        kind, code, name = fault
        if self.transport == "smtp":
            self.smtp.fail(kind, times=times)
            return
        if kind.startswith("accept_") and times is None:
            times = 3  # an answer that never comes costs a timeout per request: keep it short
        self.http.fail(self.transport, kind, status=code, code=name, times=times)

    @rule()
    def clear_faults(self) -> None:
        self.http.clear()
        self.smtp.clear()

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        self.inject(data)
        run_send(self.config)

    @precondition(lambda self: self.transport not in NO_QUERY)
    @rule(data=st.data())
    def send_resend_uncertain(self, data: st.DataObject) -> None:
        self.inject(data)
        run_send(self.config, resend_uncertain=True)

    @rule(who=st.integers(0, N - 1))
    def unsubscribe(self, who: int) -> None:
        email = f"reader-{who:04d}@example.com"
        with SubscriberStore(self.config.path(self.config.subscribers.database)) as store:
            unsubscribe(store, email, server=None, now=NOW)
        self.unsubscribed.setdefault(email, time.time())
        if self.transport == "smtp":
            self.unsubscribed_counts = getattr(self, "unsubscribed_counts", {})
            self.unsubscribed_counts.setdefault(email, self.smtp.counts()[email])

    @precondition(lambda self: self.kills < 1)
    @rule(after=st.integers(0, N), data=st.data())
    def sigkill(self, after: int, data: st.DataObject) -> None:
        """A sender in its own process, SIGKILLed once the sink accepted ``after`` more."""
        self.kills += 1
        self.inject(data)
        before = sum(self.accepted().values())
        pid = os.fork()
        if pid == 0:  # the child: send, then leave without cleanup
            code = 0
            try:
                run_send(self.config, shared=False)
            except BaseException:
                code = 1
            os._exit(code)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(self.accepted().values()) >= before + after:
                break
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def nobody_accepted_twice(self) -> None:
        twice = sorted(e for e, c in self.accepted().items() if c > 1)
        assert twice == [], f"accepted twice: {twice}"

    @invariant()
    def nobody_accepted_after_their_unsubscribe(self) -> None:
        late = [
            e
            for e, at in self.accept_times()
            if e in self.unsubscribed and at > self.unsubscribed[e]
        ]
        if self.transport == "smtp":
            counts = self.smtp.counts()
            late = [e for e, c in getattr(self, "unsubscribed_counts", {}).items() if counts[e] > c]
        assert late == [], f"accepted after their unsubscribe returned: {late}"

    def teardown(self) -> None:
        self.http.clear()
        self.smtp.clear()
        self._clean_rerun()
        self.nobody_accepted_twice()
        assert verdict(self.accepted(), self.site, self.transport, self.config) == EXACT

    def _clean_rerun(self) -> None:
        """Send until nothing is left to send, waiting out a SIGKILLed sender's lease (1 s):
        until it runs out, the rows it held (``sending``, and ``uncertain`` ones that a
        provider with a query or a key would settle) are not this sender's to settle."""
        for _ in range(3):
            run_send(self.config)
            with Ledger(self.config.path(self.config.ledger.database)) as ledger:
                counts = ledger.counts(WEEK)
                leased_until = ledger._run(
                    "SELECT MAX(lease_until) FROM deliveries WHERE issue_id = ?", (WEEK,)
                ).fetchone()[0]
            left = counts[SENDING] + (counts[UNCERTAIN] if self.transport not in NO_QUERY else 0)
            if not left:
                return
            # until the last lease has run out (at most the 1 s lease), then a little
            wait = (parse_utc(leased_until) - lease_now()).total_seconds() if leased_until else 0
            time.sleep(min(max(wait, 0.0), 1.0) + 0.05)


def machine(transport: str) -> Any:
    cls = type(f"ExactlyOnce_{transport}", (ExactlyOnce,), {"transport": transport})
    case = cls.TestCase
    case.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=3,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    return case


TestPostmark = machine("postmark")
TestSendgrid = machine("sendgrid")
TestMailgun = machine("mailgun")
TestBrevo = machine("brevo")
TestResend = machine("resend")
TestSes = machine("ses")
TestSmtp = machine("smtp")
assert len(TRANSPORTS) == 7


@pytest.fixture(scope="module", autouse=True)
def stop_sinks() -> Iterator[None]:
    yield
    for client in CLIENTS.values():
        client.close()
    CLIENTS.clear()
    if SINKS:
        with contextlib.suppress(Exception):
            SINKS.pop("http").close()
            SINKS.pop("smtp").stop()
    for site in [*TEMPLATES.values(), *(s for s, _ in SITES.values())]:
        shutil.rmtree(site.parent, ignore_errors=True)
    TEMPLATES.clear()
    SITES.clear()
    if CachedComposer.built is not None:
        shutil.rmtree(CachedComposer.built.parent, ignore_errors=True)
    # other modules build with CachedComposer too: the next one builds afresh
    CachedComposer.built = CachedComposer.issue = None

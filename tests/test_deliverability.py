"""The deliverability report of an issue: DNS asked once per question and bounded per run,
the pre-send checks that refuse a real send, the List-Unsubscribe page fetched with a GET
(never the one-click POST) from a real HTTP server on loopback, and `send --dry-run`
reporting all of it against a DNS server and a provider emulator on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import Config
from digest.delivery import deliverability
from digest.delivery.deliverability import (
    GMAIL_CLIP_BYTES,
    SendRefused,
    gate,
    presend_items,
    unsubscribe_item,
)
from digest.delivery.dns_checks import DnsError, RunLookup
from tests.dns_server import dns_server
from tests.emulators.providers import run_emulator
from tests.helpers import NOW, composed, edit_config, import_readers, ledger_states
from tests.test_dns_checks import KEY_1024

WEEK = "2026-W47"
DOMAIN = "fieldnotes.example.com"
HEADERS = {
    "List-Unsubscribe": "<[[digest:unsubscribe_url]]>, <mailto:unsubscribe@example.com>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "List-Id": "<weekly.example.com>",
}


# ------------------------------------------------------------------ DNS: cached and bounded


def test_each_question_is_asked_once_per_run() -> None:
    asked: list[tuple[str, str]] = []

    def lookup(name: str, rdtype: str) -> list[str]:
        asked.append((name, rdtype))
        return [f"{name} {rdtype}"]

    run = RunLookup(lookup, budget=10)
    assert run("Example.com.", "TXT") == ["Example.com. TXT"]
    assert run("example.com", "TXT") == ["Example.com. TXT"]
    assert run("example.com", "MX") == ["example.com MX"]
    assert asked == [("Example.com.", "TXT"), ("example.com", "MX")]
    assert run.asked == 2


def test_a_spent_budget_stops_asking_and_an_error_is_kept() -> None:
    moments = iter([0.0, 4.0, 4.0, 9.0])  # two questions: 4 s, then 5 s

    def lookup(name: str, rdtype: str) -> list[str]:
        if name == "slow.test":
            raise DnsError("DNS: no answer for TXT slow.test: timeout")
        return []

    run = RunLookup(lookup, budget=8, clock=lambda: next(moments))
    assert run("a.test", "TXT") == []
    with pytest.raises(DnsError, match="timeout"):
        run("slow.test", "TXT")
    with pytest.raises(DnsError, match="timeout"):  # kept: not asked again
        run("slow.test", "TXT")
    with pytest.raises(DnsError) as spent:
        run("b.test", "TXT")
    assert str(spent.value) == (
        "DNS: not asked for TXT b.test: this run's 8 s of DNS questions are spent "
        "(a slow or silent resolver)"
    )
    assert run.asked == 2


# ------------------------------------------------------------------ pre-send: the cheap gate


def _site_config(sample_site: Path, public_url: str) -> Config:
    data = yaml.safe_load((sample_site / "config.yaml").read_text())
    return edit_config(sample_site, serve={**data["serve"], "public_url": public_url})


def test_gmail_clipping_and_list_unsubscribe_block(sample_site: Path) -> None:
    config = _site_config(sample_site, "https://news.example.com")
    small = composed(html="<p>hi</p>", headers=HEADERS)
    items = {i.name: i for i in presend_items(config, small, checks=[])}
    assert items["gmail-clip"].status == "ok"
    assert items["list-unsubscribe"].detail == (
        "one-click, e.g. https://news.example.com/unsubscribe/preview"
    )
    big = composed(html="<p>" + "x" * GMAIL_CLIP_BYTES + "</p>", headers={})
    items = {i.name: i for i in presend_items(config, big, checks=[])}
    assert items["gmail-clip"].status == "fail"
    assert items["gmail-clip"].detail.endswith(
        "KB of HTML: Gmail clips past 102 KB and hides the footer with the unsubscribe link"
    )
    assert items["list-unsubscribe"].status == "fail"
    with pytest.raises(SendRefused) as refused:
        gate(config, big, [])
    assert str(refused.value).startswith(
        "2026-W47 not sent: 2 pre-send checks failed (gmail-clip: "
    )
    assert str(refused.value).endswith("fix them, or send anyway with --skip-checks")
    gate(config, small, [])  # nothing blocks: no error


# ------------------------------------------------------------------ the List-Unsubscribe page


class _Pages(BaseHTTPRequestHandler):
    """``/<answer>/unsubscribe/<token>``: 200, 400 (an unsigned token), 404, 500, a
    redirect loop, or an answer later than the probe waits."""

    methods: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.methods.append(("GET", self.path))
        answer = self.path.split("/")[1]
        if answer == "slow":
            time.sleep(deliverability.UNSUBSCRIBE_TIMEOUT + 1)
        if answer == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = int(answer) if answer.isdigit() else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self) -> None:  # the probe must never unsubscribe anybody
        self.methods.append(("POST", self.path))
        self.send_response(200)
        self.end_headers()

    do_HEAD = do_POST


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        ("200", "ok", "HTTP 200"),
        ("400", "ok", "HTTP 400 to a sample token (refused as any unsigned token is): served"),
        ("404", "warn", "HTTP 404"),
        ("500", "warn", "HTTP 500"),
        ("loop", "warn", "redirects in a loop"),
    ],
)
def test_the_unsubscribe_page_is_fetched_with_get_only(
    pages: str, sample_site: Path, answer: str, status: str, detail: str
) -> None:
    _Pages.methods.clear()
    config = _site_config(sample_site, f"{pages}/{answer}")
    item = unsubscribe_item(config, composed(headers=HEADERS))
    url = f"{pages}/{answer}/unsubscribe/preview"
    assert (item.status, item.detail) == (status, f"{url}: {detail}")
    assert {m for m, _ in _Pages.methods} == {"GET"}
    if status != "ok":  # on loopback over http: testing only, so a warning with the fix
        assert (
            item.action == f"start `digest serve` where serve.public_url points ({pages}/{answer})"
        )


@pytest.mark.integration
@pytest.mark.slow  # waits out the probe's timeout once
def test_a_page_that_does_not_answer_in_time(pages: str, sample_site: Path) -> None:
    config = _site_config(sample_site, f"{pages}/slow")
    item = unsubscribe_item(config, composed(headers=HEADERS))
    assert item.detail == f"{pages}/slow/unsubscribe/preview: no answer within 5 s"


def test_a_public_https_page_that_answers_404_fails(sample_site: Path) -> None:
    config = _site_config(sample_site, "https://news.example.com")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        item = unsubscribe_item(config, composed(headers=HEADERS), client=client)
    assert (item.status, item.detail) == (
        "fail",
        "https://news.example.com/unsubscribe/preview: HTTP 404",
    )
    assert item.blocking and seen == ["GET"]


# ------------------------------------------------------------------ send --dry-run, send


def _zone(dmarc: list[object]) -> dict[tuple[str, str], list[object]]:
    return {
        (DOMAIN, "TXT"): ["v=spf1 include:sendgrid.net ~all"],
        ("sendgrid.net", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"],
        (DOMAIN, "MX"): [(10, f"mx.{DOMAIN}")],
        (f"s1._domainkey.{DOMAIN}", "TXT"): [f"v=DKIM1; k=rsa; p={KEY_1024}"],
        (f"s2._domainkey.{DOMAIN}", "TXT"): [f"v=DKIM1; k=rsa; p={KEY_1024}"],
        (f"_dmarc.{DOMAIN}", "TXT"): dmarc,
    }


def _send(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), "send", *args])


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[Any]:
    with run_emulator("sendgrid", key="sg-key") as emu:
        yield emu


@pytest.mark.integration
def test_dry_run_reports_dns_and_the_provider_and_exits_1_when_one_blocks(
    sample_site: Path, sendgrid: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SG_KEY", "sg-key")
    provider = {"name": "sendgrid", "base_url": sendgrid.url, "api_key": "${SG_KEY}"}
    with dns_server(_zone([])) as (port, resolver):
        edit_config(
            sample_site,
            provider=provider,
            deliverability={"nameservers": ["127.0.0.1"], "dns_port": port},
        )
        text = _send(sample_site, "--week", WEEK, "--dry-run")
        as_json = _send(sample_site, "--week", WEEK, "--dry-run", "--json")
    assert text.exit_code == 1, text.output
    assert f"deliverability: 1 blocking ({DOMAIN} via sendgrid)" in text.stdout
    assert (
        f"  dns dmarc _dmarc.{DOMAIN}: FAILED: no DMARC record: Gmail and Yahoo require one "
        "(p=none at least) for bulk mail\n"
        f'    publish _dmarc.{DOMAIN}. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}"\n'
    ) in text.stdout
    # cached per run: one question for _dmarc in each of the two runs (text, --json)
    questions = [q for q in resolver.questions if q == (f"_dmarc.{DOMAIN}", "TXT")]
    assert len(questions) == 2
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)["deliverability"]
    assert data["ok"] is False and data["blocking"] == 1
    groups = {i["group"] for i in data["items"]}
    assert groups == {"dns", "provider", "presend", "unsubscribe"}
    provider_items = [i for i in data["items"] if i["group"] == "provider"]
    assert all(i["status"] == "ok" for i in provider_items), provider_items
    assert all(r["method"] == "GET" for r in sendgrid.requests())  # read-only
    with dns_server(_zone(["v=DMARC1; p=none"])) as (port, _):
        edit_config(sample_site, deliverability={"nameservers": ["127.0.0.1"], "dns_port": port})
        good = _send(sample_site, "--week", WEEK, "--dry-run")
    assert good.exit_code == 0, good.output
    assert f"deliverability: ok ({DOMAIN} via sendgrid)" in good.stdout


@pytest.mark.integration
def test_a_real_send_is_refused_by_a_failed_check_unless_skipped(sample_site: Path) -> None:
    config = _site_config(sample_site, "http://news.example.com")  # plain http, not loopback
    import_readers(config, ["ann@example.com"])
    refused = _send(sample_site, "--week", WEEK)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: {WEEK} not sent: 2 pre-send checks failed (")
    assert "list-unsubscribe: no https List-Unsubscribe" in refused.stderr
    assert ledger_states(config) == {}  # nothing queued, nothing sent
    sent = _send(sample_site, "--week", WEEK, "--skip-checks")
    assert sent.exit_code == 0, sent.output
    assert ledger_states(config) == {"ann@example.com": "sent"}


def test_the_workers_gate_builds_without_writing_and_refuses(sample_site: Path) -> None:
    config = _site_config(sample_site, "http://news.example.com")
    with pytest.raises(SendRefused, match=r"^2026-W47 not sent: 2 pre-send checks failed \("):
        deliverability.gate_issue(config, now=NOW, week=WEEK, since=None, until=None)
    assert not (config.path(config.out_dir) / WEEK).exists()  # built in memory only
    good = _site_config(sample_site, "https://news.example.com")
    deliverability.gate_issue(good, now=NOW, week=WEEK, since=None, until=None)


@pytest.mark.integration
def test_the_probe_against_a_real_digest_serve(sample_site: Path) -> None:
    from tests.test_serve_http import SECRET, ServeProcess, make_site

    make_site(sample_site)
    server = ServeProcess(sample_site, {"DIGEST_SECRET": SECRET, "MG_KEY": "mg-key"})
    try:
        served = unsubscribe_item(_site_config(sample_site, server.url), composed(headers=HEADERS))
        elsewhere = _site_config(sample_site, server.url + "/elsewhere")
        missing = unsubscribe_item(elsewhere, composed(headers=HEADERS))
    finally:
        assert server.stop(), server.stderr()
    assert (served.status, served.detail) == (
        "ok",
        f"{server.url}/unsubscribe/preview: HTTP 400 to a sample token (refused as any "
        "unsigned token is): served",
    )
    assert (missing.status, missing.detail) == (
        "warn",
        f"{server.url}/elsewhere/unsubscribe/preview: HTTP 404",
    )
    assert "refused a link on /unsubscribe" in server.stderr()  # a GET, answered as a page


def test_a_scheduled_run_is_refused_by_a_failed_check(sample_site: Path) -> None:
    config = _site_config(sample_site, "http://news.example.com")
    import_readers(config, ["ann@example.com"])
    args = ["--newsletter", "weekly", "run", "--now", "2026-11-23T10:00:00+01:00"]
    run = CliRunner().invoke(main, ["--config", str(sample_site / "config.yaml"), *args])
    assert run.exit_code == 1, run.output
    assert f"{WEEK} not sent: 2 pre-send checks failed (" in run.stderr
    assert ledger_states(config) == {}  # refused before anything was queued

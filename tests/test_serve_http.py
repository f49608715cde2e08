"""digest serve as a real process on 127.0.0.1, driven over HTTP with httpx."""

from __future__ import annotations

import email
import hashlib
import hmac
import importlib.util
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import make_token, signing_key
from digest.config import load_config
from digest.store.database import locate
from tests.helpers import edit_config, outbox_to, recipient_of

from .conftest import ROOT, run_digest

pytestmark = [pytest.mark.backends, pytest.mark.slow]

SECRET = "http-test-secret"
MAILGUN_KEY = "mg-http-key"
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


class ServeProcess:
    """`digest serve --port 0 --json` in its own process; ``url`` once it listens."""

    def __init__(self, site: Path, env: dict[str, str]) -> None:
        self.site = site
        self.env = {**os.environ, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", "0", "--json"],
            cwd=site,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []  # stderr, drained as it comes so the pipe never fills
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stdout, stderr = self.proc.stdout, self.proc.stderr
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.log.append(x) for x in stderr], daemon=True).start()
        text = ""
        while "}" not in text:
            try:
                text += lines.get(timeout=60)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"digest serve did not start: {self.stderr()}") from None
        self.url = json.loads(text)["url"]

    def stderr(self) -> str:
        return "".join(self.log)

    def stop(self) -> bool:
        """SIGTERM; True when it ended cleanly (uvicorn re-raises the signal after shutdown)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode in (0, -signal.SIGTERM)


def make_site(site: Path, **serve: Any) -> Path:
    edit_config(
        site,
        serve={
            "public_url": "https://news.example.com",
            "webhooks": {"mailgun_signing_key": "${MG_KEY}"},
            **serve,
        },
    )
    return site


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"DIGEST_SECRET": SECRET, "MG_KEY": MAILGUN_KEY}


@pytest.fixture
def server(sample_site: Path, server_env: dict[str, str]) -> Iterator[ServeProcess]:
    make_site(sample_site, subscribe_burst=2000)
    process = ServeProcess(sample_site, server_env)
    yield process
    assert process.stop(), process.stderr()


def store(site: Path) -> SubscriberStore:
    config = load_config(site / "config.yaml")
    return SubscriberStore(locate(config, config.subscribers.database))


def status(site: Path, address: str) -> str | None:
    with store(site) as s:
        found = s.get(address)
        return None if found is None else found.status


def local(server: ServeProcess, link: str) -> str:
    """A link from an email (public URL) made to point at the process under test."""
    return server.url + urlsplit(link).path


def read_eml(path: Path) -> email.message.EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def confirm_link(site: Path, address: str) -> str:
    # the service mails after answering: wait for the file (it appears once, whole)
    folder = site / "out" / "confirmations" / "outbox"
    for _ in range(6000):
        found = outbox_to(folder, address) if folder.is_dir() else []
        if found:
            break
        time.sleep(0.01)
    [eml] = found
    body = read_eml(eml).get_body(("plain",))
    assert body is not None
    match = re.search(r"https://news\.example\.com/confirm/\S+", body.get_content())
    assert match
    return match.group(0)


def test_subscribe_confirm_one_click_and_the_next_send_skips(
    server: ServeProcess, sample_site: Path, server_env: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/subscribe")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        answer = http.post("/subscribe", data={"email": "ann@example.com", "csrf": csrf.group(1)})
        assert answer.status_code == 202
        assert status(sample_site, "ann@example.com") == "pending"
        link = local(server, confirm_link(sample_site, "ann@example.com"))
        assert http.get(link).status_code == 200  # a scanner following the link: no change
        assert status(sample_site, "ann@example.com") == "pending"
        confirmed = http.post(link)
        assert confirmed.status_code == 200
        assert status(sample_site, "ann@example.com") == "active"

    added = run_digest("subscribers", "add", "bob@example.com", cwd=sample_site, env=server_env)
    assert added.returncode == 0, added.stderr
    sent = run_digest("send", "--week", "2026-W46", cwd=sample_site, env=server_env)
    assert sent.returncode == 0, sent.stderr
    outbox = sample_site / "out" / "2026-W46" / "outbox"
    [ann_eml] = outbox_to(outbox, "ann@example.com")
    header = read_eml(ann_eml)["List-Unsubscribe"]
    link = re.search(r"<(https://news\.example\.com/unsubscribe/[^>]+)>", header)
    assert link, header

    with httpx.Client(timeout=30) as http:
        shown = http.get(local(server, link.group(1)))  # what a mail scanner does
        assert shown.status_code == 200
        assert status(sample_site, "ann@example.com") == "active"
        one_click = http.post(local(server, link.group(1)), **ONE_CLICK)  # type: ignore[arg-type]
        assert one_click.status_code == 200
        assert one_click.content == b""
    assert status(sample_site, "ann@example.com") == "unsubscribed"

    next_week = run_digest("send", "--week", "2026-W47", cwd=sample_site, env=server_env)
    assert next_week.returncode == 0, next_week.stderr
    week = sample_site / "out" / "2026-W47" / "outbox"
    names = [(p.name[:9], recipient_of(p)) for p in sorted(week.glob("*.eml"))]
    assert names == [("00000002-", "bob@example.com")]

    # What `digest send` archived is served: the index, the Atom feed, each issue.
    with httpx.Client(base_url=server.url, timeout=30) as http:
        index = http.get("/archive/")
        assert index.status_code == 200
        assert "/archive/2026-W46/" in index.text and "/archive/2026-W47/" in index.text
        feed = http.get("/archive/feed.xml")
        assert feed.headers["content-type"].startswith("application/atom+xml")
        assert "<feed" in feed.text
        issue = http.get("/archive/2026-W46/")
        assert issue.status_code == 200
        assert "Field Notes Weekly" in issue.text


def test_bad_tokens_are_refused_over_http(server: ServeProcess, sample_site: Path) -> None:
    with store(sample_site) as s:
        ann, _ = s.add("ann@example.com", status="pending", now=datetime.now(timezone.utc))
    key = signing_key(ann.secret, SECRET.encode())
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    good = make_token("unsubscribe", ann.handle, key)
    version, handle, expiry, signature = good.split(".")
    bad = {
        "forged": make_token("unsubscribe", ann.handle, b"guessed key"),
        "tampered": f"{version}.{handle}.{expiry}.{signature[:-2]}AA",
        "wrong purpose": make_token("preferences", ann.handle, key),
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for kind, token in bad.items():
            answer = http.post(f"/unsubscribe/{token}", **ONE_CLICK)  # type: ignore[arg-type]
            assert answer.status_code == 400, kind
        expired = make_token("confirm", ann.handle, key, expires_at=past)
        assert http.post(f"/confirm/{expired}").status_code == 400
        assert status(sample_site, "ann@example.com") == "pending"
        fresh = make_token("confirm", ann.handle, key, expires_at=past + timedelta(days=1))
        assert http.post(f"/confirm/{fresh}").status_code == 200
    assert status(sample_site, "ann@example.com") == "active"


def mailgun(event: dict[str, Any], key: str) -> bytes:
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    signed = {"timestamp": stamp, "token": token, "signature": signature}
    return json.dumps({"signature": signed, "event-data": event}).encode()


def test_webhooks_over_http(server: ServeProcess, sample_site: Path) -> None:
    with store(sample_site) as s:
        s.add("ann@example.com", now=datetime.now(timezone.utc))
    complaint = {"event": "complained", "recipient": "ann@example.com"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        forged = http.post("/webhooks/mailgun", content=mailgun(complaint, "not the key"))
        assert forged.status_code == 401
        assert status(sample_site, "ann@example.com") == "active"
        good = http.post("/webhooks/mailgun", content=mailgun(complaint, MAILGUN_KEY))
        assert good.status_code == 200
        assert good.json() == {"events": 1, "changed": 1}
        off = http.post("/webhooks/postmark", content=b"{}")
        assert off.status_code == 404
    assert status(sample_site, "ann@example.com") == "complained"


def test_rate_limit_uses_forwarded_address_from_trusted_proxy(
    sample_site: Path, server_env: dict[str, str]
) -> None:
    make_site(sample_site, subscribe_burst=2, trusted_proxies=["127.0.0.1"])
    process = ServeProcess(sample_site, server_env)
    try:
        with httpx.Client(base_url=process.url, timeout=30) as http:

            def post(n: int, client: str) -> int:
                return http.post(
                    "/subscribe",
                    json={"email": f"p{n}@example.com"},
                    headers={"X-Forwarded-For": client},
                ).status_code

            assert [post(n, "203.0.113.5") for n in range(3)] == [202, 202, 429]
            assert post(3, "203.0.113.6") == 202
    finally:
        assert process.stop()
    with store(sample_site) as s:
        assert s.counts()["pending"] == 3


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "bench" / "bench_serve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_small_load_loses_no_write(server: ServeProcess, sample_site: Path) -> None:
    bench = _bench()
    archive = sample_site / "out" / "archive"
    archive.mkdir(parents=True)
    (archive / "index.html").write_text("<h1>Past issues</h1>")
    result = bench.run_load(server.url, sample_site, total=1000, concurrency=50, secret=SECRET)
    assert result.errors == []
    assert result.counts == result.expected

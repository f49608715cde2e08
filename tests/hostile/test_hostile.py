"""The hostile-input collection through every path: check, select, build, send and serve.

``posts/`` holds front matter an attacker (or an accident) could put in the content folder;
``requests.py`` holds requests anyone on the internet can send to ``digest serve``. Each
test says what must hold for them: reported and skipped with the file's name, never a 5xx,
never a forged log record, never applied twice, never more mail than the limit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from digest.audience.subscribers import SubscriberStore
from digest.config import Config, load_config
from digest.content.pipeline import load_and_select
from digest.content.posts import load_posts
from digest.email.compose import compose
from digest.safelog import RECORD_PREFIX, parse_record
from digest.serve.app import create_app
from tests.conftest import run_digest
from tests.emulators.providers import run_emulator
from tests.helpers import outbox_to
from tests.hostile.requests import REQUESTS
from tests.test_serve_http import ServeProcess

HERE = Path(__file__).resolve().parent
POSTS = HERE / "posts"
WEEK = "2026-W47"
SECRET = "hostile-test-secret"
SVIX_KEY = base64.b64encode(b"hostile-resend-signing-key").decode()
MAILGUN_KEY = "hostile-mailgun-key"
SG_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
ENV = {
    "DIGEST_SECRET": SECRET,
    "PM_HOOK_PASSWORD": "pm-pass",
    "RESEND_HOOK_SECRET": "whsec_" + SVIX_KEY,
    "SG_HOOK_KEY": SG_PUBLIC,
    "MG_HOOK_KEY": MAILGUN_KEY,
}
BOMBS = ("billion-laughs-title.md", "billion-laughs-tags.md", "billion-laughs-unused.md")
EXPANDED = (
    "front matter expands to more than 100,000 values (content.max_yaml_expanded): "
    "too many aliases of large values"
)
SKIPPED = {
    "billion-laughs-title.md": EXPANDED,
    "billion-laughs-tags.md": EXPANDED,
    "billion-laughs-unused.md": EXPANDED,
    "many-aliases.md": "front matter has more than 100 aliases (content.max_yaml_aliases)",
    "many-nodes.md": "front matter has more than 10,000 values (content.max_yaml_nodes)",
    "title-as-list.md": "title: a list where text belongs",
    "title-as-mapping.md": "title: a mapping where text belongs",
    "date-as-list.md": "date: a list where a date belongs",
    "tags-nested.md": "tags: item 1 is a list, not a tag",
    "category-as-mapping.md": "category: a mapping where text belongs",
    "recursive-alias.md": "front matter is not valid YAML at line 4: found a recursive alias",
    "deep-nesting.md": "front matter is not valid YAML at line 4: exceeded maximum nesting depth",
    "huge-date.md": "date '99999999999999999999999999999999999999999999999999999999999… "
    "(10,002 characters) is not a date (use 2026-08-17 or 2026-08-17T09:30:00+02:00)",
    "passwd.md": "a symbolic link to a file outside the content folder; not read",
    "fifo.md": "not a regular file; not read",
    "x\nINFO change {}.md": "empty file",
}
NEWLINE_NAME = "x\nINFO change {}.md"
CLEAN_TITLE = "Control [31mcharacters in the title"
LEVEL = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
"""How digest's log lines begin (``digest serve`` logs "LEVEL message")."""


def hostile_folder(target: Path, outside_dir: Path) -> Path:
    """The collection's posts in ``target``, with a symlink to a file in ``outside_dir``."""
    target.mkdir(parents=True, exist_ok=True)
    for post in POSTS.glob("*.md"):
        shutil.copy(post, target / post.name)
    outside = outside_dir / "outside-secret.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (target / "passwd.md").symlink_to(outside)
    (target / "inside.md").symlink_to(target / "markup-in-title.md")  # inside: fine
    os.mkfifo(target / "fifo.md")  # opening it would wait for a writer for ever
    (target / NEWLINE_NAME).write_text("")  # a name that would forge a line of output
    return target


# --------------------------------------------------------------------------- content


@pytest.mark.integration
def test_every_hostile_post_is_reported_with_its_file_or_cleaned(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path / "posts", tmp_path)
    result = load_posts(folder, ZoneInfo("UTC"))
    assert {p.path.name: p.reason for p in result.problems} == SKIPPED
    posts = {p.path.name: p for p in result.posts}
    assert sorted(posts) == [
        "control-characters.md",
        "inside.md",
        "markup-in-title.md",
        "two-documents.md",
    ]
    cleaned = posts["control-characters.md"]
    assert cleaned.title == CLEAN_TITLE  # NUL, ESC, BEL and the bidi override gone
    assert cleaned.author == "Mallory Bcc: everyone@example.com"  # one line, no header
    assert cleaned.tags == ("tagone", "two")
    assert not re.search(r"[\x00-\x1f\x7f]", cleaned.excerpt)
    assert posts["markup-in-title.md"].title == (
        "<script>alert(1)</script> & <b>bold</b> {{ 7*7 }} {% raw %}"
    )


BOMB_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
from digest.content.pipeline import load_and_select
from digest.content.posts import load_posts
from digest.email.compose import compose
folder = Path(sys.argv[1])
start = time.perf_counter()
result = load_posts(folder, ZoneInfo("UTC"))
took = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
problems = {p.path.name: p.reason for p in result.problems}
print(json.dumps({"took": took, "peak_mb": peak_kb / 1024, "problems": problems,
                  "posts": [p.path.name for p in result.posts]}))
"""


def _load_in_a_process(folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_billion_laughs_are_skipped_in_bounded_memory_and_time(tmp_path: Path) -> None:
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    for name in BOMBS:
        shutil.copy(POSTS / name, bombs / name)
    shutil.copy(POSTS / "markup-in-title.md", bombs / "fine.md")
    plain = tmp_path / "plain"
    plain.mkdir()
    for n in range(3):
        shutil.copy(POSTS / "markup-in-title.md", plain / f"fine-{n}.md")
    shutil.copy(POSTS / "markup-in-title.md", plain / "fine.md")

    measured = _load_in_a_process(bombs)
    baseline = _load_in_a_process(plain)
    print(
        f"billion laughs x3: {measured['took']:.3f} s, peak {measured['peak_mb']:.0f} MB; "
        f"plain posts: peak {baseline['peak_mb']:.0f} MB"
    )
    assert measured["problems"] == {name: EXPANDED for name in BOMBS}
    assert measured["posts"] == ["fine.md"]
    assert measured["took"] < 2.0  # nine levels would be 387,420,489 strings
    # against plain posts loaded the same way: the forked loader starts as big as the test
    # process has grown by then, so an absolute figure depends on what ran before
    assert measured["peak_mb"] < baseline["peak_mb"] + 100
    # the alias structure does not show in memory: loading the bombs costs what plain posts do
    assert measured["peak_mb"] < baseline["peak_mb"] + 20


def _site_with_the_collection(sample_site: Path) -> Path:
    hostile_folder(sample_site / "content" / "posts" / "hostile", sample_site)
    return sample_site


@pytest.mark.slow
def test_check_select_build_and_send_go_on_without_the_bad_posts(sample_site: Path) -> None:
    site = _site_with_the_collection(sample_site)
    check = run_digest("check", cwd=site)
    assert check.returncode != 0  # the problems are reported…
    for name, reason in SKIPPED.items():
        shown = name.replace("\n", "\\x0a")  # escaped: one line per problem
        assert f"{shown}: {reason}" in check.stdout + check.stderr, name
    assert "Traceback" not in check.stderr
    assert not any(line.startswith("INFO change") for line in check.stderr.splitlines())

    select = run_digest("select", "--week", WEEK, cwd=site)
    assert select.returncode == 0, select.stderr  # …and the week goes on without them
    assert CLEAN_TITLE in select.stdout
    assert "Who Gets to Say No to Automation?" in select.stdout

    build = run_digest("build", "--week", WEEK, cwd=site)
    assert build.returncode == 0, build.stderr
    html = (site / "out" / WEEK / "email.html").read_text(encoding="utf-8")
    assert CLEAN_TITLE in html
    assert "Who Gets to Say No to Automation?" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\u202e]", html)

    added = run_digest("subscribers", "add", "reader@example.com", cwd=site)
    assert added.returncode == 0, added.stderr
    sent = run_digest("send", "--week", WEEK, cwd=site)
    assert sent.returncode == 0, sent.stderr
    [eml] = outbox_to(site / "out" / WEEK / "outbox", "reader@example.com")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert "\x1b" not in message["Subject"] and "\x00" not in eml.read_text(errors="replace")
    body = message.get_body(("plain",))
    assert body is not None and CLEAN_TITLE in body.get_content()


def test_a_post_the_template_fails_on_is_left_out_and_named(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    now = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    selection = load_and_select(config, now).selection
    first = selection.sections[0]
    # a NUL cannot come from a post file any more (the loader strips it); a post object
    # holding one stands for anything else the template may still fail on
    bad = replace(first.posts[0], title="A NUL \x00 here", path=Path("content/posts/bad.md"))
    broken = replace(
        selection,
        sections=(replace(first, posts=(bad, *first.posts[1:])), *selection.sections[1:]),
    )
    composed = compose(config, broken, now=now)
    assert composed.post_count == selection.count - 1
    [warning] = [w for w in composed.warnings if "bad.md" in w]
    assert warning.startswith("content/posts/bad.md: left out of the issue: email.mjml.j2: ")
    assert "A NUL" not in composed.html


# --------------------------------------------------------------------------- serve


def _configure(site: Path, **serve: Any) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["serve"] = {
        "public_url": "https://news.example.com",
        "webhooks": {
            "postmark_username": "hooks",
            "postmark_password": "${PM_HOOK_PASSWORD}",
            "resend_secret": "${RESEND_HOOK_SECRET}",
            "sendgrid_public_key": "${SG_HOOK_KEY}",
            "mailgun_signing_key": "${MG_HOOK_KEY}",
        },
        **serve,
    }
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def client(sample_site: Path, env: None) -> Iterator[TestClient]:
    config = _configure(sample_site, subscribe_burst=100_000, subscribe_per_minute=100_000)
    with TestClient(
        create_app(config), base_url="http://127.0.0.1:8025", raise_server_exceptions=False
    ) as test_client:
        yield test_client


def _send(http: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
    return http.request(method, path, headers=headers, content=body or None)


@pytest.mark.parametrize("request_", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_no_hostile_request_gets_a_5xx(
    client: TestClient, request_: tuple[str, str, str, dict[str, str], bytes]
) -> None:
    _, method, path, headers, body = request_
    response = _send(client, method, path, headers, body)
    assert 400 <= response.status_code < 500 or response.status_code in (200, 202)
    assert "Traceback" not in response.text
    assert len(response.content) < 20_000  # a short reason, not an echo of the input


def test_a_name_is_stored_as_one_clean_line(client: TestClient, sample_site: Path) -> None:
    answer = client.post(
        "/subscribe", json={"email": "ann@example.com", "name": "Ann\x00\r\nBcc: x\x1b[31m"}
    )
    assert answer.status_code == 202
    with _store(sample_site) as store:
        ann = store.get("ann@example.com")
        assert ann is not None and ann.name == "Ann Bcc: x[31m"


def _store(site: Path) -> SubscriberStore:
    return SubscriberStore(site / "data" / "subscribers.sqlite")


def _status(site: Path, email: str) -> str | None:
    with _store(site) as store:
        found = store.get(email)
        return None if found is None else found.status


def _add(site: Path, *emails: str) -> None:
    with _store(site) as store:
        for email in emails:
            store.add(email, now=datetime.now(timezone.utc))


@pytest.mark.slow
def test_hostile_requests_over_http_forge_no_record_and_keep_the_connection(
    sample_site: Path,
) -> None:
    _configure(sample_site, subscribe_burst=100_000, subscribe_per_minute=100_000)
    _add(sample_site, "bob@example.com")
    server = ServeProcess(sample_site, ENV)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answers = [_send(http, m, p, h, b) for _, m, p, h, b in REQUESTS]
            # real changes, for records that must appear
            assert http.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
            complaint = {"event": "complained", "recipient": "bob@example.com", "id": "e1"}
            answer = http.post("/webhooks/mailgun", content=_mailgun(complaint)[0])
            assert answer.json() == {"events": 1, "changed": 1}
            # the same connection still answers after everything above
            assert http.get("/healthz").text == "ok"
    finally:
        assert server.stop(), server.stderr()
    assert all(a.status_code < 500 for a in answers), [
        (r[0], a.status_code)
        for r, a in zip(REQUESTS, answers, strict=True)
        if a.status_code >= 500
    ]
    log = server.stderr()
    assert "Traceback" not in log
    records = []
    for line in log.splitlines():
        # every line is a log line of its own or an indented traceback line: none starts
        # with a value from a request
        assert LEVEL.match(line) or line.startswith("  | "), line[:200]
        assert len(line) < 3000, line[:200]
        message = LEVEL.sub("", line)
        if message.startswith(RECORD_PREFIX):
            record = parse_record(message)
            assert record is not None, line
            records.append(record)
    status = [
        (r["email"], r["before"], r["after"], r["cause"]) for r in records if r["event"] == "status"
    ]
    assert ("ann@example.com", None, "pending", "serve_subscribe") in status
    assert ("bob@example.com", "active", "complained", "webhook_complaint") in status
    # the only other changes: the collection's well-formed subscribe for a@example.com
    assert {s[0] for s in status} == {"a@example.com", "ann@example.com", "bob@example.com"}
    assert all("victim" not in json.dumps(r) for r in records)


# -- webhooks: one-time, durably


def _mailgun(
    event: dict[str, Any], signature: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    if signature is None:
        stamp, token = str(int(time.time())), secrets.token_hex(25)
        mac = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256)
        signature = {"timestamp": stamp, "token": token, "signature": mac.hexdigest()}
    return json.dumps({"signature": signature, "event-data": event}).encode(), signature


def _svix(body: bytes, message_id: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(
        base64.b64decode(SVIX_KEY), f"{message_id}.{stamp}.".encode() + body, hashlib.sha256
    )
    return {
        "svix-id": message_id,
        "svix-timestamp": stamp,
        "svix-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def _sendgrid(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = SG_PRIVATE.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


POSTMARK_AUTH = {"Authorization": "Basic " + base64.b64encode(b"hooks:pm-pass").decode()}


def _bodies(provider: str, email: str, n: int) -> bytes:
    if provider == "postmark":
        return json.dumps({"RecordType": "SpamComplaint", "ID": 4242 + n, "Email": email}).encode()
    if provider == "resend":
        return json.dumps({"type": "email.complained", "data": {"to": [email]}}).encode()
    return json.dumps([{"event": "spamreport", "email": email}]).encode()


def _delivery(provider: str, email: str, n: int) -> tuple[bytes, dict[str, str]]:
    """A signed (or credentialed) complaint about ``email``; ``n`` names the delivery."""
    if provider == "mailgun":
        return _mailgun({"event": "complained", "recipient": email, "id": f"ev{n}"})
    body = _bodies(provider, email, n)
    if provider == "postmark":
        return body, POSTMARK_AUTH
    if provider == "resend":
        return body, _svix(body, f"msg_{n}")
    return body, _sendgrid(body)


def _forged(provider: str, original: tuple[bytes, dict[str, str]], email: str, n: int) -> bytes:
    """The captured proof of ``original`` around a body naming someone else."""
    body = original[0]
    if provider == "mailgun":
        signature = json.loads(body)["signature"]
        return _mailgun({"event": "complained", "recipient": email, "id": "forged"}, signature)[0]
    return _bodies(provider, email, n)  # same record id (Postmark) or same signature


PROVIDERS = ("postmark", "resend", "sendgrid", "mailgun")


@pytest.mark.slow
def test_a_replayed_signature_with_a_forged_body_is_not_applied_after_a_restart(
    sample_site: Path,
) -> None:
    _configure(sample_site)
    first = {p: f"first-{p}@example.com" for p in PROVIDERS}
    victims = {p: f"victim-{p}@example.com" for p in PROVIDERS}
    _add(sample_site, *first.values(), *victims.values())
    deliveries = {p: _delivery(p, first[p], n) for n, p in enumerate(PROVIDERS)}
    server = ServeProcess(sample_site, ENV)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for provider, (body, headers) in deliveries.items():
                answer = http.post(f"/webhooks/{provider}", content=body, headers=headers)
                assert answer.json() == {"events": 1, "changed": 1}, provider
    finally:
        assert server.stop(), server.stderr()
    for provider in PROVIDERS:
        assert _status(sample_site, first[provider]) == "complained"

    restarted = ServeProcess(sample_site, ENV)  # nothing in memory from the first one
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            for n, provider in enumerate(PROVIDERS):
                body, headers = deliveries[provider]
                again = http.post(f"/webhooks/{provider}", content=body, headers=headers)
                assert again.json() == {"events": 1, "changed": 0, "repeat": True}, provider
                forged = _forged(provider, deliveries[provider], victims[provider], n)
                answer = http.post(f"/webhooks/{provider}", content=forged, headers=headers)
                if provider in ("resend", "sendgrid"):  # their signature covers the body
                    assert answer.status_code == 401, provider
                else:  # Mailgun signs only the token, Postmark nothing: the id is seen
                    assert answer.json() == {"events": 1, "changed": 0, "repeat": True}, provider
    finally:
        assert restarted.stop(), restarted.stderr()
    for provider in PROVIDERS:
        assert _status(sample_site, victims[provider]) == "active", provider


@pytest.mark.slow
def test_twenty_concurrent_requests_sharing_one_signature_apply_at_most_one(
    sample_site: Path,
) -> None:
    _configure(sample_site)
    targets = {p: [f"t{i}-{p}@example.com" for i in range(20)] for p in PROVIDERS}
    _add(sample_site, *(e for emails in targets.values() for e in emails))
    server = ServeProcess(sample_site, ENV)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(20) as pool:
            for n, provider in enumerate(PROVIDERS):
                original = _delivery(provider, targets[provider][0], 100 + n)
                bodies = [original[0]] * 10 + [
                    _forged(provider, original, email, 100 + n) for email in targets[provider][10:]
                ]
                answers = list(
                    pool.map(
                        lambda body, p=provider, h=original[1]: http.post(
                            f"/webhooks/{p}", content=body, headers=h
                        ),
                        bodies,
                    )
                )
                assert all(a.status_code in (200, 401) for a in answers), provider
                applied = sum(a.json().get("changed", 0) for a in answers if a.status_code == 200)
                assert applied == 1, provider
    finally:
        assert server.stop(), server.stderr()
    for provider in PROVIDERS:
        changed = [e for e in targets[provider] if _status(sample_site, e) != "active"]
        assert changed == [targets[provider][0]], provider


# -- mail: at most the configured number per mailbox


@pytest.mark.slow
def test_two_hundred_subscribes_from_twenty_clients_send_at_most_three_mails(
    sample_site: Path,
) -> None:
    _configure(sample_site, trusted_proxies=["127.0.0.1"])  # defaults: 5/minute, burst 10
    server = ServeProcess(sample_site, ENV)
    spellings = ["victim@example.com", "Victim@Example.COM", "victim+{n}@example.com"]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(20) as pool:

            def subscribe(n: int) -> int:
                email = spellings[n % 3].format(n=n)
                return http.post(
                    "/subscribe",
                    json={"email": email, "name": "WIN A PRIZE at http://evil.example\nnow"},
                    headers={"X-Forwarded-For": f"198.51.100.{n % 20}"},
                ).status_code

            answers = list(pool.map(subscribe, range(200)))
    finally:
        assert server.stop(), server.stderr()
    assert answers == [202] * 200  # the same answer every time; 10 per client fit its burst
    records = [parse_record(LEVEL.sub("", line)) for line in server.stderr().splitlines()]
    sent = [r for r in records if r and r["event"] == "mail"]
    # serve.mail_per_address (3), whatever the client, the spelling and the +tag
    assert len(sent) == 3 and all(r["state"] == "sent" for r in sent)
    limited = [r for r in records if r and r["event"] == "mail_limited"]
    assert len(limited) == 197
    # (the outbox names a file by the address, so the same address overwrites its file)
    mails = list((sample_site / "out" / "confirmations" / "outbox").glob("*.eml"))
    assert 1 <= len(mails) <= 3
    for path in mails:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "evil" not in text and "PRIZE" not in text  # no request text in the mail


# -- Mailgun: confirmed through its events API


@pytest.mark.slow
def test_mailgun_events_are_confirmed_through_its_events_api(
    sample_site: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_emulator("mailgun") as emulator:
        monkeypatch.setenv("EMU_KEY", emulator.key)
        path = sample_site / "config.yaml"
        data = yaml.safe_load(path.read_text())
        data["provider"] = {
            "name": "mailgun",
            "api_key": "${EMU_KEY}",
            "domain": "mg.example.com",
            "base_url": emulator.url,
        }
        path.write_text(yaml.safe_dump(data))
        config = _configure(
            sample_site, webhooks={"mailgun_signing_key": "${MG_HOOK_KEY}", "mailgun_confirm": True}
        )
        _add(sample_site, "ann@example.com", "bob@example.com")
        complaint = {"event": "complained", "recipient": "ann@example.com", "id": "ev-ann"}
        with TestClient(create_app(config)) as http:
            unknown = http.post("/webhooks/mailgun", content=_mailgun(complaint)[0])
            assert unknown.json() == {"events": 1, "changed": 0, "unconfirmed": True}
            assert _status(sample_site, "ann@example.com") == "active"
            emulator.add_events(complaint)
            # a real event's id around another recipient is not that event
            borrowed = {**complaint, "recipient": "bob@example.com"}
            answer = http.post("/webhooks/mailgun", content=_mailgun(borrowed)[0])
            assert answer.json() == {"events": 1, "changed": 0, "unconfirmed": True}
            known = http.post("/webhooks/mailgun", content=_mailgun(complaint)[0])
            assert known.json() == {"events": 1, "changed": 1}
        asked = [r["path"] for r in emulator.requests() if "/events" in r["path"]]
        assert len(asked) == 3  # one lookup per webhook, none applied unconfirmed
    assert _status(sample_site, "ann@example.com") == "complained"
    assert _status(sample_site, "bob@example.com") == "active"


# --------------------------------------------------------------------------- properties

SAFE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
ANY_TEXT = st.text(max_size=200)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ANY_TEXT, inner, max_size=5),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=2000),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"email": JSONISH | ANY_TEXT, "name": JSONISH, "categories": JSONISH}
    ).map(lambda v: json.dumps(v).encode()),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "application/json; charset=utf-8",
        "",
    ]
)
HEADER_NAMES = st.sampled_from(
    [
        "x-forwarded-for",
        "origin",
        "cookie",
        "authorization",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "x-twilio-email-event-webhook-signature",
        "x-twilio-email-event-webhook-timestamp",
        "x-custom",
    ]
)
HEADERS = st.dictionaries(HEADER_NAMES, SAFE, max_size=5)
TOKENS = st.text(max_size=300).map(lambda t: quote(t, safe="")) | st.sampled_from(["", ".", ".."])
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _ok(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])


@PROPERTY
@given(body=BODIES, content_type=CONTENT_TYPES, headers=HEADERS)
def test_subscribe_never_answers_5xx(
    client: TestClient, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    _ok(client.post("/subscribe", content=body, headers={**headers, "content-type": content_type}))


@PROPERTY
@given(token=TOKENS, body=BODIES, content_type=CONTENT_TYPES, headers=HEADERS, post=st.booleans())
def test_preferences_never_answer_5xx(
    client: TestClient,
    token: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    post: bool,
) -> None:
    if post:
        headers = {**headers, "content-type": content_type}
        _ok(client.post(f"/preferences/{token}", content=body, headers=headers))
    else:
        _ok(client.get(f"/preferences/{token}", headers=headers))


@PROPERTY
@given(token=TOKENS, body=BODIES, content_type=CONTENT_TYPES, headers=HEADERS, post=st.booleans())
def test_unsubscribe_and_confirm_never_answer_5xx(
    client: TestClient,
    token: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    post: bool,
) -> None:
    for route in ("unsubscribe", "confirm"):
        if post:
            headers = {**headers, "content-type": content_type}
            _ok(client.post(f"/{route}/{token}", content=body, headers=headers))
        else:
            _ok(client.get(f"/{route}/{token}", headers=headers))


@PROPERTY
@given(
    provider=st.sampled_from([*PROVIDERS, "other"]) | SAFE.map(lambda t: quote(t, safe="")),
    body=BODIES,
    headers=HEADERS,
)
def test_webhooks_never_answer_5xx(
    client: TestClient, provider: str, body: bytes, headers: dict[str, str]
) -> None:
    _ok(client.post(f"/webhooks/{provider}", content=body, headers=headers))


@PROPERTY
@given(event=JSONISH, recipient=ANY_TEXT)
def test_signed_mailgun_webhooks_with_any_event_never_answer_5xx(
    client: TestClient, event: Any, recipient: str
) -> None:
    """Past the signature, whatever the body holds."""
    data = event if isinstance(event, dict) else {"event": event, "recipient": recipient}
    _ok(client.post("/webhooks/mailgun", content=_mailgun(data)[0]))


def test_the_collection_is_all_there() -> None:
    assert len(REQUESTS) == 99 and len(list(POSTS.glob("*.md"))) == 16


@PROPERTY
@given(data=JSONISH, provider=st.sampled_from(["postmark", "resend", "sendgrid"]))
def test_authentic_webhooks_with_any_body_never_answer_5xx(
    client: TestClient, data: Any, provider: str
) -> None:
    """Signed (or with the right credentials), whatever the body holds."""
    body = json.dumps(data).encode()
    if provider == "postmark":
        headers = POSTMARK_AUTH
    elif provider == "resend":
        headers = _svix(body, "msg_" + secrets.token_hex(8))
    else:
        headers = _sendgrid(body)
    _ok(client.post(f"/webhooks/{provider}", content=body, headers=headers))

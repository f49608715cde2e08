"""500s with tracebacks: whatever bytes a client puts in any field of any form, any header
or any path, digest serve answers 4xx (or the page's ordinary 2xx/3xx), never 5xx, and logs
no traceback. Every field of the subscribe and preferences forms (timezone, language,
frequency, sections, newsletters, the action), the subscribe JSON, Accept-Language, and
counted links (``/c/<token>``) are each given every hostile value."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from starlette.testclient import TestClient

from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import make_token, signing_key
from digest.config import Config
from digest.serve.app import create_app
from digest.store.database import locate
from tests.test_serve import NOW, SECRET, Clock, write_config

# Raw bytes, percent-encoded as a browser would send them: a lone surrogate in UTF-8's
# surrogate form, bytes that are not UTF-8, NUL and terminal controls, a path walk, a
# spreadsheet formula, header injection, a marker, bidi, numbers out of range, 15 KB.
HOSTILE: tuple[bytes, ...] = (
    b"\xed\xa0\x80",
    b"\xff\xfe",
    b"\x00",
    b"\x1b]0;owned\x07",
    b"../../../../etc/passwd",
    b"Europe/../../../etc/localtime",
    b'=HYPERLINK("https://evil.example")',
    b"a\r\nBcc: victim@example.com",
    b"[[digest:email]]",
    "\u202etxt.exe".encode(),
    b"99999999999999999999999",
    b"-1",
    b"NaN",
    b"%",
    b"x" * 15_000,
)
FIELDS = ("timezone", "language", "frequency", "categories", "newsletters", "action", "name")


def _form(fields: dict[str, bytes]) -> bytes:
    return b"&".join(
        quote_from_bytes(k.encode()).encode() + b"=" + quote_from_bytes(v).encode()
        for k, v in fields.items()
    )


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "unused")
    return write_config(sample_site, subscribe_burst=100_000, subscribe_per_minute=100_000)


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    clock = Clock()
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(
        app, base_url="http://127.0.0.1:8025", raise_server_exceptions=False
    ) as test_client:
        yield test_client


def _no_server_error(caplog: pytest.LogCaptureFixture, answers: dict[str, int]) -> None:
    fives = {what: status for what, status in answers.items() if status >= 500}
    assert fives == {}
    assert not [r.getMessage()[:200] for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def _csrf(client: TestClient, path: str) -> bytes:
    page = client.get(path)
    assert page.status_code == 200
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)].encode()


@pytest.mark.slow  # about a hundred form posts, each a store commit
def test_500s_with_tracebacks_no_preferences_field_value_gets_a_5xx(
    client: TestClient, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        reader, _ = store.add("ann@example.com", status="active", now=NOW)
    token = make_token("preferences", reader.handle, signing_key(reader.secret, SECRET.encode()))
    path = f"/preferences/{token}"
    csrf = _csrf(client, path)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answers: dict[str, int] = {}
    for field in FIELDS:
        for value in HOSTILE:
            fields = {"csrf": csrf, "action": b"save", field: value}
            got = client.post(path, content=_form(fields), headers=headers)
            answers[f"{field}={value[:30]!r}"] = got.status_code
    _no_server_error(caplog, answers)
    # every one of them was an ordinary save (or a refused action), not an error page
    assert set(answers.values()) <= {200, 400}, answers
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        after = store.get("ann@example.com")
    assert after is not None and after.status == "active"


@pytest.mark.slow  # about 150 subscribes, each a store commit and (within the limit) a mail
def test_500s_with_tracebacks_no_subscribe_field_or_header_value_gets_a_5xx(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    csrf = _csrf(client, "/subscribe")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answers: dict[str, int] = {}
    for n, value in enumerate(HOSTILE):
        for field in ("timezone", "language", "name", "categories", "newsletters", "email"):
            fields = {"csrf": csrf, "email": f"reader{n}@example.com".encode(), field: value}
            got = client.post("/subscribe", content=_form(fields), headers=form)
            answers[f"form {field}={value[:30]!r}"] = got.status_code
        text = value.decode("utf-8", "replace")
        for key in ("timezone", "language", "name"):
            body = {"email": f"json{n}@example.com", key: text}
            got = client.post("/subscribe", json=body)
            answers[f"json {key}={value[:30]!r}"] = got.status_code
        header = value.decode("latin-1")[:4000].replace("\r", "").replace("\n", "")
        for path in ("/subscribe", "/archive/"):
            got = client.get(path, headers={"Accept-Language": header.encode("latin-1")})  # type: ignore[dict-item]
            answers[f"Accept-Language {path} {value[:30]!r}"] = got.status_code
    _no_server_error(caplog, answers)
    assert set(answers.values()) <= {200, 202, 400, 404}, answers  # no archive yet: 404


def test_500s_with_tracebacks_a_counted_link_of_any_shape_gets_a_4xx(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tokens = [quote_from_bytes(value, safe="") for value in HOSTILE]
    tokens += ["", "a", "a.b", "a" * 5000, "..%2F..%2Fconfig.yaml", "x/../../y", "AAAA.AAAA"]
    answers: dict[str, Any] = {}
    for token in tokens:
        for method in ("GET", "HEAD"):
            for query in ("", "?u=https://evil.example", "?%ff=%ff"):
                got = client.request(method, f"/c/{token}{query}", follow_redirects=False)
                answers[f"{method} /c/{token[:30]}{query}"] = got.status_code
    _no_server_error(caplog, answers)
    assert {status for status in answers.values()} <= {400, 404}, answers

"""The open pixel (analytics.opens): tokens (audience/opentokens.py), the pixel in a sent
variant (email/openpixel.py), /o/<token> in serve (serve/opens.py), counted in aggregate
beside the clicks, machine opens apart; and end to end from the outbox through a real
`digest serve` on loopback to `digest report`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from digest.audience.clicktokens import Click, make_click_token
from digest.audience.opentokens import (
    Opened,
    OpenTokenError,
    make_open_token,
    read_open_token,
)
from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import token_secret
from digest.config import Config, load_config
from digest.delivery.clicks import ClickStore
from digest.delivery.send import send_issue
from digest.email.message import ComposedEmail
from digest.email.openpixel import add_open_pixel
from digest.serve.app import create_app
from digest.serve.opens import GIF, machine_open
from digest.store.database import locate
from tests.conftest import run_digest
from tests.helpers import free_port, start_serve
from tests.test_serve import NOW as SERVE_NOW
from tests.test_serve import Clock, write_config

KEY = b"k" * 32
ISSUE = "2026-W47"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)


def test_open_tokens_name_issue_variant_and_send_and_refuse_forgeries() -> None:
    opened = Opened(ISSUE, "Work+Tools", 1_795_000_000)
    token = make_open_token(opened, KEY)
    assert read_open_token(token, [b"old" * 11, KEY]) == opened
    assert "@" not in token and "Work" not in token  # opaque: base64url and a signature
    click = make_click_token(Click(ISSUE, 0, "all"), KEY)
    for bad in (
        make_open_token(opened, b"x" * 32),  # another key
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # altered
        click,  # a click token is not an open token
        "https://evil.example/x.gif",
    ):
        with pytest.raises(OpenTokenError, match="not a digest link"):
            read_open_token(bad, [KEY])


def _composed(html: str, *, web: bool = False) -> ComposedEmail:
    return ComposedEmail(
        issue_id=ISSUE,
        subject="s",
        preheader="p",
        html=html,
        text="t",
        headers={},
        from_address="t@example.com",
        reply_to=None,
        sections=("Work",),
        post_count=1,
        web=web,
    )


def _opens_config(sample_site: Path, opens: bool) -> Config:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["serve"] = {"public_url": "https://news.example.org/digest"}
    data["analytics"] = {"opens": opens}
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_the_pixel_goes_last_in_the_body_hidden_from_layout_and_screen_readers(
    sample_site: Path,
) -> None:
    config = _opens_config(sample_site, True)
    sent = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    composed = _composed("<html><body><p>Hi</p></body></html>")
    html = add_open_pixel(config, composed, variant="all", sent=sent, key=KEY).html
    token = make_open_token(Opened(ISSUE, "all", int(sent.timestamp())), KEY)
    assert html == (
        "<html><body><p>Hi</p>"
        '<div style="height:0;line-height:0;font-size:0;overflow:hidden" aria-hidden="true">'
        f'<img src="https://news.example.org/digest/o/{token}" width="1" height="1" alt="" '
        'role="presentation" style="display:block;width:1px;height:1px;border:0;margin:0;'
        'padding:0"></div></body></html>'
    )
    web = _composed("<body></body>", web=True)
    assert add_open_pixel(config, web, variant="all", sent=sent, key=KEY) is web
    off = _opens_config(sample_site, False)
    assert add_open_pixel(off, composed, variant="all", sent=sent, key=KEY) is composed


@pytest.mark.parametrize(
    ("head", "agent", "since", "machine"),
    [
        (False, FIREFOX, 3600.0, False),
        (False, APPLE_MAIL, 3600.0, False),
        (True, FIREFOX, 3600.0, True),  # HEAD
        (False, FIREFOX, 12.0, True),  # as the messages were delivered: a prefetch
        (False, "Mozilla/5.0", 3600.0, True),  # an image proxy's bare agent
        (False, "Mozilla/5.0 (compatible; Barracuda Sentinel)", 3600.0, True),
        (False, "python-httpx/0.28", 3600.0, True),
        (False, None, 3600.0, True),
    ],
)
def test_machine_opens(head: bool, agent: str | None, since: float, machine: bool) -> None:
    assert machine_open(head=head, agent=agent, since_sent=since) is machine


@pytest.fixture
def served(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Config, TestClient]]:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    write_config(sample_site)
    path = sample_site / "config.yaml"
    path.write_text(path.read_text() + "analytics:\n  opens: true\n  flush_seconds: 60\n")
    config = write_config(sample_site)
    clock = Clock()
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025", follow_redirects=False) as test:
        yield config, test


def _pixel(config: Config, variant: str, sent: datetime) -> str:
    token = make_open_token(Opened(ISSUE, variant, int(sent.timestamp())), token_secret(config))
    return f"/o/{token}"


def test_serve_answers_a_gif_and_counts_opens_kept_and_machine(
    served: tuple[Config, TestClient],
) -> None:
    config, client = served
    earlier = SERVE_NOW - timedelta(hours=2)
    answer = client.get(_pixel(config, "all", earlier), headers={"User-Agent": APPLE_MAIL})
    assert (answer.status_code, answer.content) == (200, GIF)
    assert answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"] == "no-store, max-age=0"
    assert len(GIF) == 43 and GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    client.get(_pixel(config, "Work", earlier), headers={"User-Agent": FIREFOX})
    client.get(_pixel(config, "all", earlier), headers={"User-Agent": "Mozilla/5.0"})
    client.head(_pixel(config, "all", earlier), headers={"User-Agent": FIREFOX})
    just_sent = SERVE_NOW - timedelta(seconds=5)
    client.get(_pixel(config, "all", just_sent), headers={"User-Agent": FIREFOX})
    forged = client.get(
        "/o/" + make_open_token(Opened(ISSUE, "all", 1), b"z" * 32), headers={"User-Agent": FIREFOX}
    )
    assert (forged.status_code, forged.text) == (
        400,
        "this image link is damaged or is not a digest link\n",
    )
    client.__exit__(None, None, None)  # serve stops: what it holds is written
    with ClickStore(locate(config, config.analytics.database)) as store:
        assert store.opens() == [(ISSUE, "Work", 1, 0), (ISSUE, "all", 1, 3)]
        assert store.links() == []


def test_with_opens_off_a_pixel_still_answers_and_nothing_is_counted(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    config = write_config(sample_site)
    clock = Clock()
    with TestClient(create_app(config, clock=clock, monotonic=clock.monotonic)) as client:
        pixel = _pixel(config, "all", SERVE_NOW - timedelta(days=1))
        answer = client.get(pixel, headers={"User-Agent": FIREFOX})
        assert (answer.status_code, answer.content) == (200, GIF)
    assert not config.path(config.analytics.database).exists()


@pytest.mark.integration
def test_a_pixel_from_the_outbox_is_counted_through_serve_and_reported(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "opens-secret"
    monkeypatch.setenv("DIGEST_SECRET", secret)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    data = yaml.safe_load((sample_site / "config.yaml").read_text())
    data["serve"] = {"public_url": public, "port": port}
    data["analytics"] = {"opens": True, "flush_seconds": 0.2}
    (sample_site / "config.yaml").write_text(yaml.safe_dump(data))
    config = load_config(sample_site / "config.yaml")
    sent = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("reader@example.com", name="Reader", now=sent)
    assert send_issue(config, now=sent, week=ISSUE).sent == 1
    (eml,) = (config.path(config.out_dir) / ISSUE / "outbox").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    (pixel,) = re.findall(rf'<img src="({re.escape(public)}/o/[^"]+)"[^>]*>', html.get_content())
    assert f'src="{pixel}" width="1" height="1" alt="" role="presentation"' in html.get_content()
    assert "/o/" not in text.get_content()
    assert "/c/" not in html.get_content()  # clicks stay off: links go straight to the posts

    serve = start_serve(sample_site, secret)
    try:
        with httpx.Client() as http:
            answer = http.get(pixel, headers={"User-Agent": FIREFOX})
            assert (answer.status_code, answer.content) == (200, GIF)
            assert http.head(pixel, headers={"User-Agent": FIREFOX}).status_code == 200
            assert http.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
            assert http.get(pixel[:-3] + "AAA").status_code == 400
    finally:
        serve.terminate()
        serve.wait(timeout=60)  # it writes what it holds before it ends
    assert serve.returncode in (0, -15)

    result = run_digest("report", "--issue", ISSUE, "--json", cwd=sample_site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (issue,) = report["issues"]
    assert (issue["delivered"], issue["opens"], issue["machine_opens"]) == (1, 1, 2)
    assert report["opens"] is True and report["opens_note"].startswith("opens are unreliable")
    shown = run_digest("report", "--issue", ISSUE, cwd=sample_site)
    assert "  opens (unreliable) 1, machine 2\n" in shown.stdout


def test_check_warns_when_opens_are_on_and_serve_does_not_answer(sample_site: Path) -> None:
    from digest.delivery.click_check import serve_unreachable

    config = _opens_config(sample_site, True)
    wrong = httpx.MockTransport(lambda request: httpx.Response(404, text="not found"))
    assert serve_unreachable(config, transport=wrong) == (
        "analytics.opens is on, but https://news.example.org/digest/healthz answers 404, not "
        "digest serve's ok: opens would not be counted (check serve.public_url)"
    )
    ok = httpx.MockTransport(lambda request: httpx.Response(200, text="ok\n"))
    assert serve_unreachable(config, transport=ok) is None
    assert serve_unreachable(_opens_config(sample_site, False), transport=wrong) is None

"""Content is data, never a provider's template: a feed author's ``%recipient.email%``,
``-digest_email-``, ``{{params.email}}``, ``{{contact.EMAIL}}`` or ``{{email}}`` reaches the
reader as written, never filled with the reader's address.

Each provider's request is captured (httpx.MockTransport) from a real composed issue whose
post carries every provider's syntax; a small emulation of that provider's documented
filling rule then fills it for one recipient.
"""

from __future__ import annotations

import email
import email.policy
import html as html_lib
import json
import re
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from lxml import html as lxml_html

from digest.config import Config, parse_config
from digest.content.posts import Post, content_safe
from digest.content.select import Section, Selection, week_window
from digest.delivery.providers import brevo, mailgun, registry, sendgrid, ses
from digest.delivery.providers import defuse as defuse_module
from digest.delivery.providers.base import Batch, Recipient, Result, idempotency_key
from digest.delivery.providers.outbox import OutboxProvider
from digest.email.compose import compose
from digest.email.message import MARKER, ComposedEmail, fill, to_message

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
READER = "reader@example.com"
VALUES = {
    "email": READER,
    "name": "Ann Reader",
    "unsubscribe_url": "https://news.example.com/u/TOKEN1",
    "preferences_url": "https://news.example.com/p/TOKEN1",
}
SYNTAX = (
    "%recipient.email% -digest_email- {{params.email}} {{contact.EMAIL}} {{email}} "
    "{{{email}}} {{ email }} %recipient.unsubscribe_url% -digest_unsubscribe_url- "
    "%unsubscribe_url% <%asm_group_unsubscribe_raw_url%> {% if 1 %}on{% endif %} {# c #}"
)
URL_SYNTAX = "%recipient.email%/-digest_email-/{{params.email}}/{{contact.EMAIL}}/{{email}}"
FILLED = "FILLED"  # what an emulated provider puts where it fills a name it does not hold


def _config() -> Config:
    return parse_config(
        {
            "site": {"name": "News", "base_url": "https://news.example.com"},
            "sender": {
                "from_name": "News",
                "from_email": "weekly@news.example.com",
                "reply_to": "editor@news.example.com",
                "postal_address": "1 Test Road, Testville",
                "unsubscribe_mailto": "unsubscribe@news.example.com",
            },
        }
    )


def _hostile_issue() -> ComposedEmail:
    post = content_safe(
        Post(
            path=Path("/feeds/evil.xml"),
            slug="evil",
            title=f"Read me {SYNTAX}",
            date=datetime(2026, 11, 17, 9, 0, tzinfo=timezone.utc),
            category="Work",
            excerpt=f"An excerpt: {SYNTAX}",
            cover_image=f"https://evil.example/px/{URL_SYNTAX}.gif",
            author="A. Writer",
            url=f"https://evil.example/p/{URL_SYNTAX}",
        )
    )
    window = week_window("2026-W47", timezone.utc)  # type: ignore[arg-type]
    selection = Selection(window, (Section("Work", "Work", (post,)),), ())
    composed = compose(_config(), selection, now=NOW)
    assert "%recipient.email%" in composed.html and "{{params.email}}" in composed.text
    return composed


@pytest.fixture(scope="module")
def issue() -> ComposedEmail:
    return _hostile_issue()


def _batch(composed: ComposedEmail) -> Batch:
    recipient = Recipient(1, READER, VALUES, "<m1@news.example.com>")
    key = idempotency_key(composed.issue_id, "all", [1])
    return Batch(composed.issue_id, "all", composed, (recipient,), key, lambda *a, **k: None)


def _capture(name: str, composed: ComposedEmail, answer: httpx.Response) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    base = {
        "sendgrid": {"api_key": "${T}"},
        "brevo": {"api_key": "${T}"},
        "mailgun": {"api_key": "${T}", "domain": "mg.example.com"},
        "ses": {"access_key_id": "${T}", "secret_access_key": "${T}"},
    }[name]
    cls = registry.get_provider_class(name)
    settings = cls.Settings.model_validate({"base_url": "https://api.test", **base})
    provider = cls(settings, object(), client=httpx.Client(transport=httpx.MockTransport(handler)))
    out = [e for e in provider.send(_batch(composed)) if isinstance(e, Result)]
    assert [(r.subscriber_id, r.state) for r in out] == [(1, "sent")]
    assert len(seen) == 1
    return seen[0]


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "secret-token")


# --------------------------------------------------------------------------- emulations
# Each takes the captured request and returns (subject, html, text, headers) as the provider
# would deliver them to the one recipient, by its documented substitution rule.

Parts = tuple[str, str, str, dict[str, str]]


def _mailgun(request: httpx.Request) -> tuple[Parts, list[str]]:
    """``%recipient.<key>%`` from recipient-variables; the unsubscribe variables."""
    fields: dict[str, str] = {}
    for part in request.content.decode().split("--digest-")[1:]:
        head, _, value = part.partition("\r\n\r\n")
        found = re.search(r'name="([^"]+)"', head)
        if found:
            fields[found.group(1)] = value.rsplit("\r\n", 1)[0]
    variables = json.loads(fields["recipient-variables"])[READER]
    pattern = re.compile(r"%recipient\.(\w+)%|%((?:tag_|mailing_list_)?unsubscribe_url)%")

    def filled(text: str) -> str:
        return pattern.sub(lambda m: variables.get(m.group(1), FILLED), text)

    headers = {k[2:]: filled(v) for k, v in fields.items() if k.startswith("h:")}
    raw = [fields["subject"], fields["html"], fields["text"]]
    raw += [v for k, v in fields.items() if k.startswith("h:")]
    return (filled(fields["subject"]), filled(fields["html"]), filled(fields["text"]), headers), [
        m.group() for t in raw for m in pattern.finditer(t)
    ]


def _sendgrid(request: httpx.Request) -> tuple[Parts, list[str]]:
    """Each substitution key replaced wherever it occurs; subscription tags filled."""
    body = json.loads(request.content)
    substitutions = body["personalizations"][0]["substitutions"]
    tags = re.compile(r"<%\s*\w+\s*%>|\[unsubscribe\]", re.IGNORECASE)
    keys = re.compile("|".join(re.escape(k) for k in substitutions))

    def filled(text: str) -> str:
        return tags.sub(FILLED, keys.sub(lambda m: substitutions[m.group()], text))

    headers = {k: filled(v) for k, v in body.get("headers", {}).items()}
    raw = [body["subject"], *(c["value"] for c in body["content"]), *body["headers"].values()]
    found = [m.group() for t in raw for m in re.finditer(r"-digest_\w+-|<%\s*\w+\s*%>", t)]
    subject, text, html = (
        filled(body["subject"]),
        filled(body["content"][0]["value"]),
        filled(body["content"][1]["value"]),
    )
    return (subject, html, text, headers), found


def _brevo(request: httpx.Request) -> tuple[Parts, list[str]]:
    """``{{ params.x }}`` and ``{{ contact.X }}`` filled, any other ``{{ }}``, ``{% %}`` and
    ``{# #}`` evaluated (here: FILLED)."""
    body = json.loads(request.content)
    params = body["messageVersions"][0]["params"]
    pattern = re.compile(r"\{\{\s*params\.(\w+)\s*\}\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)

    def filled(text: str) -> str:
        return pattern.sub(lambda m: params.get(m.group(1), FILLED) if m.group(1) else FILLED, text)

    headers = {k: filled(v) for k, v in body["headers"].items() if k != "idempotencyKey"}
    raw = [body["subject"], body["htmlContent"], body["textContent"]]
    raw += [v for k, v in body["headers"].items() if k != "idempotencyKey"]
    found = [m.group() for t in raw for m in pattern.finditer(t)]
    parts = (
        filled(body["subject"]),
        filled(body["htmlContent"]),
        filled(body["textContent"]),
        headers,
    )
    return parts, found


def _ses(request: httpx.Request) -> tuple[Parts, list[str]]:
    """Handlebars: ``{{{x}}}`` raw, ``{{x}}`` HTML-escaped; anything else ``{{`` opens is
    evaluated (FILLED). Headers are not rendered: those with a marker come per entry."""
    body = json.loads(request.content)
    content = body["DefaultContent"]["Template"]["TemplateContent"]
    entry = body["BulkEmailEntries"][0]
    data = json.loads(
        entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"]
    )
    pattern = re.compile(r"\{\{\{\s*(\w+)\s*\}\}\}|\{\{\s*(\w+)\s*\}\}|\{\{.*?\}\}", re.S)

    def value(m: re.Match[str]) -> str:
        if m.group(1):
            return str(data.get(m.group(1), FILLED))
        if m.group(2):
            return html_lib.escape(str(data.get(m.group(2), FILLED)))
        return FILLED

    headers = {h["Name"]: h["Value"] for h in entry.get("ReplacementHeaders", [])}
    headers |= {
        h["Name"]: h["Value"] for h in body["DefaultContent"]["Template"].get("Headers", [])
    }
    raw = [content["Subject"], content["Html"], content["Text"]]
    found = [m.group() for t in raw for m in pattern.finditer(t)]
    parts = (
        pattern.sub(value, content["Subject"]),
        pattern.sub(value, content["Html"]),
        pattern.sub(value, content["Text"]),
        headers,
    )
    return parts, found


EMULATIONS: dict[str, tuple[Callable[[httpx.Request], tuple[Parts, list[str]]], httpx.Response]] = {
    "mailgun": (_mailgun, httpx.Response(200, json={"id": "<mg1>", "message": "Queued."})),
    "sendgrid": (_sendgrid, httpx.Response(202, headers={"X-Message-Id": "sg1"})),
    "brevo": (_brevo, httpx.Response(201, json={"messageIds": ["<b1>"]})),
    "ses": (
        _ses,
        httpx.Response(
            200, json={"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "s1"}]}
        ),
    ),
}


def _visible(html: str) -> tuple[str, list[str]]:
    """What a reader sees of an HTML part: its text, and the URLs it loads or links."""
    tree = lxml_html.fromstring(html)
    for element in tree.xpath("//style|//script"):
        element.drop_tree()
    urls = [str(u) for u in tree.xpath("//@href|//@src")]
    return tree.text_content(), urls


def _markers(composed: ComposedEmail, *, headers: bool) -> int:
    parts = [composed.subject, composed.html, composed.text]
    if headers:
        parts += [v for k, v in composed.headers.items() if k.lower() not in {"from", "reply-to"}]
    return sum(len(MARKER.findall(p)) for p in parts)


@pytest.mark.parametrize("name", sorted(EMULATIONS))
def test_only_digest_placeholders_are_filled_and_the_reader_sees_the_post_as_written(
    name: str, issue: ComposedEmail
) -> None:
    emulate, answer = EMULATIONS[name]
    request = _capture(name, issue, answer)
    (subject, html, text, headers), placeholders = emulate(request)

    # the provider finds exactly digest's placeholders, one per marker (SES: not headers)
    assert len(placeholders) == _markers(issue, headers=name != "ses") > 0
    assert all(re.search(r"unsubscribe_url|preferences_url|name|email", p) for p in placeholders)
    # nothing the feed wrote was filled: no FILLED, and the reader's address only where
    # digest's own markers put it
    for part in (subject, html, text, *headers.values()):
        assert FILLED not in part
    expected_html = fill(issue.html, VALUES, html=True)
    assert html.count(READER) == expected_html.count(READER)
    assert html.count("TOKEN1") == expected_html.count("TOKEN1")
    assert text.count("TOKEN1") == fill(issue.text, VALUES).count("TOKEN1")

    # the reader sees the hostile text as the author wrote it, character for character
    seen_text, seen_urls = _visible(html)
    want_text, want_urls = _visible(expected_html)
    assert seen_text == want_text
    assert SYNTAX in " ".join(seen_text.split())
    assert seen_urls == want_urls
    assert f"https://evil.example/px/{URL_SYNTAX}.gif" in seen_urls
    # plain text and subject: only a zero-width WORD JOINER, or percent-encoding in a URL
    plain = defuse_module.WORD_JOINER
    expected_text = fill(issue.text, VALUES)
    assert urllib.parse.unquote(text.replace(plain, "")) == urllib.parse.unquote(expected_text)
    assert subject.replace(plain, "") == fill(issue.subject, VALUES)
    assert SYNTAX in " ".join(text.replace(plain, "").split())


def test_defusing_in_html_uses_character_references_outside_style() -> None:
    page = (
        "<style>.a{{b}}</style><p title='{{contact.EMAIL}}'>-digest_email- %recipient.x%"
        " {{email}}</p>"
    )
    assert brevo.defuse(page, html=True) == (
        "<style>.a{\u2060{b}}</style><p title='&#123;{contact.EMAIL}}'>"
        "-digest_email- %recipient.x% &#123;{email}}</p>"
    )
    assert ses.defuse("{{{x}}}", html=True) == "&#123;&#123;{x}}}"
    assert sendgrid.defuse("a -digest_email- b", html=True) == "a &#45;digest_email- b"
    assert mailgun.defuse("%recipient.email%", html=True) == "&#37;recipient.email%"
    assert mailgun.defuse("x %recipient.email% https://e.example/%recipient.email%") == (
        "x %\u2060recipient.email% https://e.example/%25recipient.email%"
    )
    assert ses.defuse("\\{{email}}") == "\\{\u2060{email}}"  # a backslash changes nothing


def test_smtp_and_outbox_fill_markers_themselves_so_content_arrives_unchanged(
    issue: ComposedEmail, tmp_path: Path
) -> None:
    """The outbox (and SMTP, which sends the same filled message) fills digest's markers
    itself and nothing else: a hostile title reaches the message as written, unfilled."""
    recipient = Recipient(1, READER, VALUES, "<m1@news.example.com>")
    batch = Batch(issue.issue_id, "all", issue, (recipient,), "k", to_message)
    settings = OutboxProvider.Settings.model_validate({"directory": str(tmp_path)})
    outbox = OutboxProvider(settings, _config())
    out = [e for e in outbox.send(batch) if isinstance(e, Result)]
    assert [(r.subscriber_id, r.state) for r in out] == [(1, "sent")]
    files = sorted(tmp_path.rglob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    subject = str(message["Subject"])
    assert subject == fill(issue.subject, VALUES)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    text = text_part.get_content()
    assert f"Read me {SYNTAX}" in " ".join(text.split())
    seen_text, seen_urls = _visible(html_part.get_content())
    assert f"Read me {SYNTAX}" in " ".join(seen_text.split())
    assert f"https://evil.example/px/{URL_SYNTAX}.gif" in seen_urls

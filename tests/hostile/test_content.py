"""Hostile content: what posts, feeds, intros and templates hold is data, never code.

Each test is named after what it proves. Content that holds marker syntax
(``[[digest:email]]``) must not become a per-recipient value; a file read must stay inside
its folder; a header filled with a recipient's value stays one header; control characters
and bidirectional overrides never reach the email or the terminal raw.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from digest.audience.subscribers import SubscriberStore
from digest.config import Config, SourceConfig, load_config
from digest.content.intro import load_intro
from digest.content.pipeline import load_and_select
from digest.content.sources.address import resolve
from digest.content.sources.feeds import feed_excerpt
from digest.content.sources.fetch import fetch_feed
from digest.content.sources.load import load_sources
from digest.content.sources.sanitize import sanitize_html
from digest.content.sources.trailers import strip_trailers
from digest.content.text import DEFAULT_CLEANER
from digest.email.compose import compose
from digest.email.message import MARKER, ComposedEmail, WireTemplate, personalise, to_message
from digest.errors import ContentError, SourceError
from digest.textsafe import for_terminal
from tests.conftest import run_digest
from tests.feed_server import feed_server

NOW = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
WEEK = "2026-W47"
LEAKS = "[[digest:email]]/[[digest:unsubscribe_url]]/[[digest:preferences_url]]/[[digest:name]]"
READER = {
    "email": "reader@example.com",
    "name": "Reader",
    "unsubscribe_url": "https://fieldnotes.example.com/u/SECRET-UNSUB",
    "preferences_url": "https://fieldnotes.example.com/p/SECRET-PREFS",
}


def _post(site: Path, name: str, **fields: str) -> None:
    front = {
        "title": "Ordinary title of a hostile post",
        "date": "2026-11-19",
        "category": "Tools",
        "excerpt": "An ordinary excerpt that says enough words to be shown as it is here.",
        **fields,
    }
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\nBody text.\n"
    (site / "content" / "posts" / name).write_text(text, encoding="utf-8")


def _composed(site: Path) -> ComposedEmail:
    config = load_config(site / "config.yaml")
    selection = load_and_select(config, NOW, week=WEEK, use_cache=False).selection
    return compose(config, selection, now=NOW, intro=load_intro(config, WEEK))


def _markers(composed: ComposedEmail) -> Counter[str]:
    everything = [composed.subject, composed.html, composed.text, *composed.headers.values()]
    return Counter(m.group(0) for text in everything for m in MARKER.finditer(text))


def _template_markers(sample_site: Path, tmp_path: Path) -> Counter[str]:
    """The markers the templates put in this week's email, with no hostile content."""
    _post(sample_site, "hostile.md")
    baseline = _markers(_composed(sample_site))
    (sample_site / "content" / "posts" / "hostile.md").unlink()
    return baseline


def _assert_no_leak(composed: ComposedEmail, baseline: Counter[str]) -> None:
    assert _markers(composed) == baseline  # the content added no marker
    filled = personalise(composed, READER)
    for text in (filled.html, filled.text, filled.subject):
        for line in text.splitlines():
            if "evil" in line or "LEAK" in line:
                for secret in READER.values():
                    assert secret not in line, line


@pytest.mark.parametrize(
    "field",
    ["title", "excerpt", "cover", "author", "coverAlt"],
)
def test_subscriber_data_does_not_leak_through_a_post_field(
    sample_site: Path, tmp_path: Path, field: str
) -> None:
    baseline = _template_markers(sample_site, tmp_path)
    value = {
        "title": f"LEAK title {LEAKS}",
        "excerpt": f"LEAK an excerpt with enough words to be kept as it is {LEAKS} here.",
        "cover": f"https://evil.example/px/{LEAKS}.gif",
        "author": f"LEAK {LEAKS}",
        "coverAlt": f"LEAK {LEAKS}",
    }[field]
    key = "coverImage" if field == "cover" else field
    extra = {"coverImage": "https://fieldnotes.example.com/a.jpg"} if field == "coverAlt" else {}
    _post(sample_site, "hostile.md", **{key: value, **extra})
    composed = _composed(sample_site)
    assert "hostile" in " ".join(slug for _, slug, _ in composed.posts)
    _assert_no_leak(composed, baseline)
    if field == "cover":
        assert "evil.example/px/%5B%5Bdigest:email%5D%5D" in composed.html


def _feed_site(site: Path, item: dict[str, object]) -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Evil feed",
        "home_page_url": "https://evil.example/",
        "items": [
            {
                "id": "1",
                "url": "https://evil.example/posts/one",
                "title": "An ordinary feed title",
                "date_published": "2026-11-19T10:00:00+00:00",
                "tags": ["Tools"],
                "summary": "An ordinary summary that has enough words to be shown as it is.",
                **item,
            }
        ],
    }
    (site / "content" / "feeds" / "evil.json").write_text(json.dumps(feed), encoding="utf-8")
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["sources"] = [*data["sources"], {"feed": "content/feeds/evil.json", "name": "evil"}]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.mark.parametrize("field", ["title", "summary", "link", "cover", "author"])
def test_subscriber_data_does_not_leak_through_a_feed_entry(
    sample_site: Path, tmp_path: Path, field: str
) -> None:
    baseline = _template_markers(sample_site, tmp_path)
    item: dict[str, object] = {
        "title": {"title": f"LEAK title {LEAKS}"},
        "summary": {"summary": f"LEAK a summary with enough words to be kept {LEAKS} as is."},
        "link": {"url": f"https://evil.example/posts/LEAK/{LEAKS}"},
        "cover": {"image": f"https://evil.example/px/{LEAKS}.gif"},
        "author": {"authors": [{"name": f"LEAK {LEAKS}"}]},
    }[field]
    _feed_site(sample_site, item)
    composed = _composed(sample_site)
    assert any("evil.example" in url for _, _, url in composed.posts)
    _assert_no_leak(composed, baseline)


def test_subscriber_data_does_not_leak_through_the_intro(sample_site: Path, tmp_path: Path) -> None:
    baseline = _markers(_composed(sample_site))
    intro = sample_site / "content" / "issues" / f"{WEEK}.md"
    intro.write_text(
        "---\nsubject: LEAK subject [[digest:email]]\npreheader: LEAK [[digest:name]]\n---\n"
        f"LEAK in the intro {LEAKS}, and [a link](https://evil.example/[[digest:email]]) "
        "and [another]([[digest:preferences_url]]) and &#91;&#91;digest:email&#93;&#93;.\n",
        encoding="utf-8",
    )
    composed = _composed(sample_site)
    assert "LEAK in the intro" in composed.html
    _assert_no_leak(composed, baseline)


def test_a_name_holding_markers_is_filled_as_text(sample_site: Path) -> None:
    composed = _composed(sample_site)
    values = {**READER, "name": "[[digest:unsubscribe_url]] [[digest:email]]"}
    filled = personalise(composed, values)
    wire = WireTemplate(composed).render(
        to=READER["email"], values=values, message_id="<x@fieldnotes.example.com>"
    )
    for text in (filled.html, filled.text, wire.decode("ascii")):
        assert "SECRET-UNSUB [" not in text and "SECRET-UNSUB reader@" not in text


# --------------------------------------------------------------------------- headers


def _subject_site(site: Path) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["email"]["subject"] = "[[digest:name]], {top_title}"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path)


def test_header_injection_through_a_name_in_the_subject(sample_site: Path) -> None:
    config = _subject_site(sample_site)
    selection = load_and_select(config, NOW, week=WEEK, use_cache=False).selection
    composed = compose(config, selection, now=NOW)
    values = {**READER, "name": "Ann\r\nBcc: everyone@evil.example\r\nX-Evil: 1"}
    wire = WireTemplate(composed).render(
        to=READER["email"], values=values, message_id="<x@fieldnotes.example.com>"
    )
    built = to_message(composed, to=READER["email"], values=values).as_bytes()
    for raw in (wire, built):
        head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        assert not any(line.lower().startswith((b"bcc:", b"x-evil:")) for line in lines), head
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Bcc"] is None and parsed["X-Evil"] is None
        assert parsed["Subject"].strip().startswith("Ann Bcc: everyone@evil.example X-Evil: 1, ")


def test_bidi_overrides_and_controls_in_a_feed_title_do_not_reach_the_email(
    sample_site: Path,
) -> None:
    _feed_site(
        sample_site,
        {
            "title": "LEAK gnp.\u202eexe\u202c \x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
            "authors": [{"name": "Mallory\u2066\x1b[31m"}],
            "tags": ["Tools\u202e"],
        },
    )
    composed = _composed(sample_site)
    for text in (composed.html, composed.text, composed.subject):
        for bad in ("\u202e", "\u202c", "\u2066", "\x1b", "\x07"):
            assert bad not in text
    assert "LEAK gnp.exe ]8;;https://evil.exampleclick]8;;" in composed.text


# --------------------------------------------------------------------------- files


def test_the_intro_does_not_follow_a_symlink_out_of_its_folder(
    sample_site: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "environ"
    secret.write_text("subject: DIGEST_SECRET=hunter2\n", encoding="utf-8")
    intro = sample_site / "content" / "issues" / f"{WEEK}.md"
    intro.unlink()
    intro.symlink_to(secret)
    config = load_config(sample_site / "config.yaml")
    with pytest.raises(ContentError) as raised:
        load_intro(config, WEEK)
    assert str(raised.value) == (
        f"{intro}: a symbolic link to a file outside {intro.parent}; not read"
    )


def test_the_intro_may_be_a_symlink_inside_its_folder(sample_site: Path) -> None:
    issues = sample_site / "content" / "issues"
    (issues / f"{WEEK}.md").rename(issues / "written.md")
    (issues / f"{WEEK}.md").symlink_to(issues / "written.md")
    config = load_config(sample_site / "config.yaml")
    intro = load_intro(config, WEEK)
    assert intro is not None and intro.text


def test_a_template_does_not_follow_a_symlink_out_of_its_folder(
    sample_site: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "environ"
    secret.write_text("DIGEST_SECRET=hunter2\n", encoding="utf-8")
    templates = sample_site / "templates"
    templates.mkdir()
    (templates / "email.txt.j2").symlink_to(secret)
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["email"]["templates_dir"] = "templates"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(path)
    selection = load_and_select(config, NOW, week=WEEK, use_cache=False).selection
    with pytest.raises(ContentError) as raised:
        compose(config, selection, now=NOW)
    assert "hunter2" not in str(raised.value)
    assert f"{templates / 'email.txt.j2'}: a symbolic link to a file outside {templates}" in str(
        raised.value
    )


def test_a_fifo_intro_is_refused_not_waited_on(sample_site: Path) -> None:
    intro = sample_site / "content" / "issues" / f"{WEEK}.md"
    intro.unlink()
    os.mkfifo(intro)
    config = load_config(sample_site / "config.yaml")
    with pytest.raises(ContentError) as raised:
        load_intro(config, WEEK)
    assert str(raised.value) == f"{intro}: not a regular file; not read"


# --------------------------------------------------------------------------- one bad value


OUT_OF_RANGE = {
    "year-9999.md": "9999-12-31T23:59:59-01:00",
    "year-0001.md": "0001-01-01T00:00:00+01:00",
}


def test_one_value_does_not_fail_the_whole_issue_post_dates(sample_site: Path) -> None:
    for name, moment in OUT_OF_RANGE.items():
        _post(sample_site, name, date=moment, title=f"Dated {moment}")
    config = load_config(sample_site / "config.yaml")
    loaded = load_and_select(config, NOW, week=WEEK, use_cache=False)
    problems = {p.path.name: p.reason for p in loaded.posts.problems}
    for name, moment in OUT_OF_RANGE.items():
        assert problems[name] == (f"date '{moment}' is out of range (a year from 2 to 9998)"), (
            problems
        )
    assert loaded.selection.count > 0


@pytest.mark.integration  # digest processes (or a loopback server)
def test_one_value_does_not_fail_the_whole_issue_in_any_command(sample_site: Path) -> None:
    for name, moment in OUT_OF_RANGE.items():
        _post(sample_site, name, date=moment, title=f"Dated {moment}")
    _feed_site(sample_site, {"date_published": "9999-12-31T23:59:59-01:00", "id": "far"})
    expected = "date '9999-12-31T23:59:59-01:00' is out of range (a year from 2 to 9998)"
    for command in (("check",), ("select", "--week", WEEK), ("build", "--week", WEEK)):
        done = run_digest(*command, cwd=sample_site)
        output = done.stdout + done.stderr
        assert "Traceback" not in output and "OverflowError" not in output, command
        if command[0] != "build":  # build says how many posts were skipped
            assert f"year-9999.md: {expected}" in output, (command, output)
        if command[0] == "check":
            assert f"evil: entry far: {expected}" in output, output
        else:
            assert done.returncode == 0, (command, output)
    added = run_digest("subscribers", "add", "reader@example.com", cwd=sample_site)
    assert added.returncode == 0, added.stderr
    sent = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert sent.returncode == 0 and "Traceback" not in sent.stderr, sent.stderr


def _json_feed_bytes(site: Path, data: bytes) -> None:
    (site / "content" / "feeds" / "evil.json").write_bytes(data)
    path = site / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["sources"] = [*config["sources"], {"feed": "content/feeds/evil.json", "name": "evil"}]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("deep", "source failed: not valid JSON: nested more than 100 deep at character 190"),
        ("number", None),
    ],
)
def test_one_value_does_not_fail_the_whole_issue_json_feed(
    sample_site: Path, shape: str, reason: str | None
) -> None:
    head = b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
    item = (
        b'{"id": 1, "url": "https://evil.example/a", "title": "A title of a fine entry",'
        b' "date_published": "2026-11-19T10:00:00+00:00", "tags": ["Tools"]}'
    )
    if shape == "deep":
        data = head + b'{"id": "x", "extra": ' + b"[" * 200_000 + b"]" * 200_000 + b"}]}"
    else:
        data = head + item.replace(b'"id": 1', b'"id": ' + b"7" * 5000) + b"]}"
    _json_feed_bytes(sample_site, data)
    config = load_config(sample_site / "config.yaml")
    loaded = load_and_select(config, NOW, week=WEEK, use_cache=False)
    problems = [p.reason for p in loaded.posts.problems if p.path.name == "evil"]
    if reason is None:
        assert problems == []
        [entry] = [p for p in loaded.posts.posts if p.url == "https://evil.example/a"]
        assert entry.extra["guid"] == "7" * 5000
    else:
        assert problems == [reason]


# --------------------------------------------------------------------------- linear time


def test_a_feed_entry_does_not_hang_every_build_read_more() -> None:
    summary = "<p>A summary with enough words in it to be an excerpt of its own here.</p>"
    start = time.process_time()
    excerpt = feed_excerpt("A title", summary + "read more " * 24 + "x", "")
    took = time.process_time() - start
    assert excerpt.startswith("A summary with enough words in it")
    assert took < 0.5, took  # 2^24 ways to split the run, before


def test_a_feed_entry_does_not_hang_every_build_trailing_capitals() -> None:
    summary = "A summary with enough words in it to be an excerpt of its own here. End. "
    start = time.process_time()
    excerpt = DEFAULT_CLEANER.tidy(summary + "A" * 200 + "#", "A title")
    took = time.process_time() - start
    assert excerpt.text.startswith("A summary with enough words in it")
    assert took < 0.5, took  # every split of 200 capitals into four names, before


def test_nested_divs_do_not_hang_the_sanitiser() -> None:
    start = time.process_time()
    cleaned = sanitize_html("<div>" * 30_000 + "deep text" + "</div>" * 30_000)
    took = time.process_time() - start
    assert cleaned == "deep text"
    assert took < 1.0, took


def test_trailers_come_off_as_before() -> None:
    cases = {
        "A summary of things. Read more »": "A summary of things.",
        "Text [&hellip;]": "Text…",
        "Text [...] Continue reading → ": "Text",
        "Text. The post Foo bar appeared first on Example Blog.": "Text.",
        "Text [...]  The post A appeared first on B. Read more": "Text",
        "Nothing to take off": "Nothing to take off",
    }
    for given, expected in cases.items():
        kept, ellipsis = strip_trailers(given)
        assert (kept + "…" if ellipsis else kept) == expected, given


# --------------------------------------------------------------------------- fetching


FEED_URL = "https://feeds.example.invalid/rss"
FEED_ADDRESS = "93.184.215.14"  # what feeds.example.invalid resolves to in these tests


def public_resolver(host: str, port: int) -> list[str]:
    """The feed's host resolves to a public address; other names as the system says."""
    return [FEED_ADDRESS] if host == "feeds.example.invalid" else resolve(host, port)


class _Raw(httpx.SyncByteStream):
    """A body as a server streams it (httpx reads a bytes body, and decodes it, at once)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body


def _gzip_twice(size: int) -> bytes:
    return gzip.compress(gzip.compress(b"<rss>" + b"\0" * size, 9), 9)


def test_memory_does_not_blow_up_from_a_small_feed_gzip_gzip() -> None:
    body = _gzip_twice(200_000_000)
    assert len(body) < 40_000

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip, gzip", "Content-Type": "application/rss+xml"}
        return httpx.Response(200, headers=headers, stream=_Raw(body))

    client = httpx.Client(transport=httpx.MockTransport(answer))
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as raised:
            fetch_feed(client, FEED_URL, max_bytes=1_000_000, resolver=public_resolver)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == "the feed is over max_bytes (1,000,000 bytes); not read"
    assert peak < 10_000_000, peak


def test_a_gzipped_feed_is_still_read() -> None:
    feed = b"<rss version='2.0'><channel><title>t</title></channel></rss>"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=_Raw(gzip.compress(feed))
        )

    client = httpx.Client(transport=httpx.MockTransport(answer))
    fetched = fetch_feed(client, FEED_URL, resolver=public_resolver)
    assert fetched.body == feed


def _redirecting_to(location: str) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "feeds.example.invalid":
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, stream=_Raw(b"<rss version='2.0'><channel/></rss>"))

    return httpx.Client(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("http://127.0.0.1:8080/admin", "127.0.0.1 is not a public address"),
        ("http://[::1]/x", "::1 is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://10.1.2.3/feed", "10.1.2.3 is not a public address"),
        ("http://localhost:8080/feed", "localhost resolves to"),
    ],
)
def test_feed_redirects_to_loopback_and_private_addresses_are_refused(
    location: str, shown: str
) -> None:
    with pytest.raises(SourceError) as raised:
        fetch_feed(_redirecting_to(location), FEED_URL, resolver=public_resolver)
    message = str(raised.value)
    assert message.startswith(f"{location}: {shown}"), message
    assert message.endswith("set allow_private_addresses: true on the source to fetch it")
    allowed = fetch_feed(
        _redirecting_to(location), FEED_URL, allow_private=True, resolver=public_resolver
    )
    assert allowed.status == 200


class Rebinding:
    """A name that answers a public address to the first lookup and 127.0.0.1 after."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return [FEED_ADDRESS] if len(self.lookups) == 1 else ["127.0.0.1"]


def test_dns_rebinding_a_name_is_resolved_once_and_the_checked_address_connected() -> None:
    resolver = Rebinding()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_Raw(b"<rss version='2.0'><channel/></rss>"))

    client = httpx.Client(transport=httpx.MockTransport(answer))
    fetched = fetch_feed(client, "https://feeds.example.invalid:8443/rss", resolver=resolver)
    assert fetched.url == "https://feeds.example.invalid:8443/rss"
    assert resolver.lookups == ["feeds.example.invalid"]  # one lookup, no second chance
    [request] = seen
    assert str(request.url) == f"https://{FEED_ADDRESS}:8443/rss"  # the address checked
    assert request.headers["host"] == "feeds.example.invalid:8443"
    assert request.extensions["sni_hostname"] == "feeds.example.invalid"  # the certificate's
    # the next fetch looks the name up again, is told 127.0.0.1, and is refused
    with pytest.raises(SourceError) as raised:
        fetch_feed(client, FEED_URL, resolver=resolver)
    assert str(raised.value) == (
        f"{FEED_URL}: feeds.example.invalid resolves to 127.0.0.1, not a public address; "
        "set allow_private_addresses: true on the source to fetch it"
    )
    assert len(seen) == 1


def test_dns_rebinding_every_address_of_a_name_is_checked() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request is made")

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(SourceError) as raised:
        fetch_feed(client, FEED_URL, resolver=lambda host, port: [FEED_ADDRESS, "10.0.0.7"])
    assert str(raised.value).startswith(f"{FEED_URL}: feeds.example.invalid resolves to 10.0.0.7")


def test_dns_rebinding_a_name_that_does_not_resolve_is_not_left_to_a_second_lookup() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request is made")

    def failing(host: str, port: int) -> list[str]:
        raise OSError("Temporary failure in name resolution")

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(SourceError) as raised:
        fetch_feed(client, FEED_URL, resolver=failing)
    assert str(raised.value) == (
        f"{FEED_URL}: cannot resolve feeds.example.invalid: Temporary failure in name resolution"
    )


def test_dns_rebinding_a_plain_http_feed_has_no_server_name() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_Raw(b"<rss version='2.0'><channel/></rss>"))

    client = httpx.Client(transport=httpx.MockTransport(answer))
    fetch_feed(client, "http://feeds.example.invalid/rss", resolver=public_resolver)
    [request] = seen
    assert str(request.url) == f"http://{FEED_ADDRESS}/rss"
    assert request.headers["host"] == "feeds.example.invalid"
    assert "sni_hostname" not in request.extensions


@pytest.mark.integration  # digest processes (or a loopback server)
def test_a_feed_url_on_loopback_needs_the_allowance(tmp_path: Path) -> None:
    with feed_server() as server:
        url = server.url("wordpress.xml")
        refused = SourceConfig.model_validate({"feed": url})
        with pytest.raises(ContentError) as raised:
            load_sources([refused], tz=ZoneInfo("UTC"), root=tmp_path, now=NOW)
        assert str(raised.value) == (
            f"every source failed: {url}: {url}: 127.0.0.1 is not a public address; "
            "set allow_private_addresses: true on the source to fetch it"
        )
        allowed = SourceConfig.model_validate({"feed": url, "allow_private_addresses": True})
        result = load_sources([allowed], tz=ZoneInfo("UTC"), root=tmp_path, now=NOW)
        assert [r.outcome for r in result.sources] == ["fetched"]
        assert result.posts


# --------------------------------------------------------------------------- terminal


@pytest.mark.integration  # digest processes (or a loopback server)
def test_control_characters_do_not_reach_the_terminal_select(sample_site: Path) -> None:
    _feed_site(sample_site, {"title": "OSC \x1b]8;;https://evil.example\x07here\x1b]8;;\x07"})
    done = run_digest("select", "--week", WEEK, "--explain", cwd=sample_site)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "OSC ]8;;https://evil.examplehere]8;;" in done.stdout


@pytest.mark.integration  # digest processes (or a loopback server)
def test_control_characters_do_not_reach_the_terminal_subscribers_show(
    sample_site: Path,
) -> None:
    name = "Eve\x1b]0;pwned\x07\u202eevil"
    with SubscriberStore(sample_site / "data" / "subscribers.sqlite") as store:
        store.add("eve@example.com", name=name, now=NOW)
        # the store cleans names as they come in; a row written before that still holds one
        store.connection.execute(
            "UPDATE subscribers SET name = ? WHERE email = ?", (name, "eve@example.com")
        )
        store.connection.commit()
    for command in (("show", "eve@example.com"), ("list",)):
        done = run_digest("subscribers", *command, cwd=sample_site)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, command
        assert "\u202e" not in done.stdout, command
        assert "Eve\\x1b]0;pwned\\x07\\u202eevil" in done.stdout, (command, done.stdout)
    shown = run_digest("subscribers", "show", "eve@example.com", "--json", cwd=sample_site)
    assert "\u202e" not in shown.stdout and "\\u202e" in shown.stdout


def test_for_terminal_escapes_what_a_terminal_would_obey() -> None:
    assert for_terminal("a\x1b[31mb\x9bc\u2028d\u202ee\nf\tg") == (
        "a\\x1b[31mb\\x9bc\\u2028d\\u202ee\nf\tg"
    )

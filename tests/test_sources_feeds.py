"""Feed documents into entries and posts: the shapes and quirks real feeds have."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from digest.content.posts import Post
from digest.content.sources import feeds
from digest.content.sources.sanitize import sanitize_html
from tests.feed_server import FEEDS

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
BERLIN = ZoneInfo("Europe/Berlin")


def parse(data: bytes | str, base: str | None = "https://feeds.example/feed", **kw: Any):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return feeds.parse_feed(raw, base_url=base, now=kw.pop("now", NOW), **kw)


def post(record: dict[str, Any]) -> Post:
    return feeds.post_from_entry(
        record,
        source_label="test",
        tz=BERLIN,
        default_category="Links",
        category_of=lambda categories: categories[0] if categories else None,
    )


def rss(items: str, channel: str = "<link>https://blog.example.com/</link>") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>Blog</title>{channel}{items}</channel></rss>"
    )


def test_wordpress_rss_with_content_encoded() -> None:
    parsed = parse((FEEDS / "wordpress.xml").read_bytes())
    assert (parsed.kind, parsed.title) == ("rss20", "Garden Ledger")
    first = post(parsed.entries[0])
    assert first.title == "Compost & the cold: what still works in November"
    assert first.date.isoformat() == "2026-11-22T23:30:00+01:00"
    assert (
        first.url == first.source == "https://garden.example.org/2026/11/22/compost-and-the-cold/"
    )
    assert first.extra["guid"] == "https://garden.example.org/?p=4812"
    assert first.author == "Maren Holt"
    assert first.tags == ("Uncategorized", "jobs")
    assert first.slug == "compost-and-the-cold"
    # The image in content:encoded, made absolute against the post, is the cover.
    assert first.cover_image == "https://garden.example.org/wp-content/uploads/2026/11/heap.jpg"
    body = first.extra["body_html"]
    assert "<script" not in body and "tracking" not in body and "onerror" not in body
    assert 'src="https://garden.example.org/wp-content/uploads/2026/11/heap.jpg"' in body
    assert 'alt="A steaming compost heap"' in body
    # "Continue reading" and "[…]" are WordPress's, not the writer's.
    assert "Continue reading" not in first.excerpt
    seeds = post(parsed.entries[2])
    assert seeds.excerpt == (
        "How a seed swap runs, who brings what, and why the labels matter more than the "
        "seeds themselves at the end of the day"
    )


def test_ghost_atom_with_xml_base_html_titles_and_media_content() -> None:
    parsed = parse((FEEDS / "ghost.atom").read_bytes())
    assert parsed.kind == "atom10"
    make = post(parsed.entries[0])
    assert make.title == "Why make still wins"
    assert make.url == "https://quiet.example.net/why-make-still-wins/"
    assert make.date.isoformat() == "2026-11-16T08:30:00+01:00"  # 23:30 -08:00 the day before
    assert make.cover_image == "https://quiet.example.net/content/images/2026/11/make.png"
    assert make.category == "Tools"
    assert 'href="https://quiet.example.net/tag/tools/"' in make.extra["body_html"]


def test_substack_rss_enclosure_is_the_cover() -> None:
    meetings = post(parse((FEEDS / "substack.xml").read_bytes()).entries[0])
    assert meetings.cover_image is not None
    assert meetings.cover_image.startswith("https://substackcdn.com/image/fetch/w_1456")
    assert meetings.excerpt == (
        "The calendar fills itself when no one owns it; a budget of hours per team changes "
        "who says yes."
    )
    assert "<form" not in meetings.extra["body_html"]
    assert "<input" not in meetings.extra["body_html"]
    assert meetings.category == "Links"  # no category: the source's default


def test_json_feed_1_1() -> None:
    parsed = parse((FEEDS / "jsonfeed.json").read_bytes())
    assert parsed.kind == "json1.1"
    bars, ten, note = (post(e) for e in parsed.entries)
    assert bars.title == "Honest error bars & the people who read them"
    assert bars.url == "https://numbers.example.com/posts/honest-error-bars/"
    assert bars.cover_image == "https://numbers.example.com/img/bars-cover.png"
    assert bars.date.isoformat() == "2026-11-21T05:30:00+01:00"
    assert bars.author == "Dana Reyes"  # the feed's author
    assert ten.extra["guid"] == "1077"  # a number, read as a string
    assert ten.author == "Kai Ito"
    assert ten.excerpt == (
        "Small studies can say something true if they say little. Here is how to size the "
        "claim to the sample."
    )
    assert note.title.startswith("A note without a title: preregistration is a letter")
    assert note.excerpt == (
        "A note without a title: preregistration is a letter to your future self, written "
        "before you know the answer."
    )
    assert (
        note.url is None
        and note.slug
        == "a-note-without-a-title-preregistration-is-a-letter-to-your-future-self-written"
    )


def test_json_feed_1_0_author_object_and_attachments() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1",
        "title": "Old",
        "home_page_url": "https://old.example.com/blog/",
        "author": {"name": "Ann"},
        "items": [
            {
                "id": "a",
                "url": "first/",
                "title": "First",
                "content_text": "Text",
                "date_published": "2026-11-18T10:00:00+01:00",
                "attachments": [{"url": "/pic.webp", "mime_type": "image/webp"}],
            }
        ],
    }
    (entry,) = parse(json.dumps(document)).entries
    first = post(entry)
    assert (first.url, first.author, first.cover_image) == (
        "https://old.example.com/blog/first/",
        "Ann",
        "https://old.example.com/pic.webp",
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"version": "1.1", "items": []}', "not a JSON Feed: version is '1.1'"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}',
         "not a JSON Feed: items is not a list"),
        (b'{"version": ', "not valid JSON: Expecting value at line 1"),
        (b"<html><body>Sign in</body></html>", "not an RSS, Atom or JSON feed"),
        (b"", "not an RSS, Atom or JSON feed"),
        ('{"version":"https://jsonfeed.org/version/1.1","items":[]}'.encode("utf-16"),
         "not an RSS, Atom or JSON feed"),
    ],
)  # fmt: skip
def test_what_is_not_a_feed_says_why(data: bytes, message: str) -> None:
    with pytest.raises(feeds.FeedParseError) as raised:
        parse(data)
    assert str(raised.value).startswith(message)


def test_entries_without_dates_keep_the_moment_first_seen() -> None:
    document = rss("<item><title>Undated</title><link>https://blog.example.com/u</link></item>")
    (first,) = parse(document).entries
    assert first["date"] is None and first["first_seen"] == NOW.isoformat()
    later = datetime(2026, 12, 1, tzinfo=timezone.utc)
    (again,) = feeds.carry_first_seen(parse(document, now=later).entries, [first])
    assert again["first_seen"] == NOW.isoformat()
    undated = post(again)
    assert undated.date == NOW.astimezone(BERLIN) and undated.extra["undated"] is True


def test_entries_without_ids_are_told_apart_by_link_or_title_and_date() -> None:
    document = rss(
        "<item><title>A</title><link>https://blog.example.com/a</link></item>"
        "<item><title>B</title><pubDate>Mon, 16 Nov 2026 10:00:00 +0100</pubDate></item>"
    )
    a, b = parse(document).entries
    assert a["id"] == "https://blog.example.com/a"
    assert b["id"].startswith("urn:digest:") and len(b["id"]) == len("urn:digest:") + 24
    assert parse(document).entries[1]["id"] == b["id"]  # stable across parses


def test_relative_links_resolve_against_the_channel_when_the_file_has_no_address() -> None:
    document = rss(
        "<item><title>Rel</title><link>/2026/rel/</link>"
        "<description><![CDATA[<p>See <a href='../other/'>other</a></p>]]></description></item>"
    )
    (entry,) = parse(document, base=None).entries
    assert entry["link"] == "https://blog.example.com/2026/rel/"
    assert 'href="https://blog.example.com/2026/other/"' in entry["summary"]  # from the post


def test_cdata_and_entities_in_titles_are_decoded_once_and_tags_dropped() -> None:
    document = rss(
        "<item><title><![CDATA[Tips &amp; tricks: <em>faster</em> builds]]></title></item>"
        "<item><title>Caf&#233; &amp;amp; bar</title></item>"
    )
    titles = [e["title"] for e in parse(document).entries]
    assert titles == ["Tips & tricks: faster builds", "Café & bar"]


def test_a_declared_legacy_encoding_is_honoured() -> None:
    text = rss("<item><title>Smörgåsbord für Anfänger</title></item>").replace(
        'encoding="utf-8"', 'encoding="iso-8859-1"'
    )
    (entry,) = parse(text.encode("iso-8859-1")).entries
    assert entry["title"] == "Smörgåsbord für Anfänger"


def test_a_wrong_charset_header_does_not_garble_a_utf8_feed() -> None:
    data = rss("<item><title>Naïve café</title></item>").encode("utf-8")
    (entry,) = parse(data, content_type="text/xml; charset=utf-8").entries
    assert entry["title"] == "Naïve café"


@pytest.mark.parametrize(
    ("written", "berlin"),
    [
        ("Mon, 16 Nov 2026 09:15:00 CET", "2026-11-16T09:15:00+01:00"),
        ("Mon, 16 Nov 2026 03:15:00 EST", "2026-11-16T09:15:00+01:00"),
        ("Mon, 16 Nov 2026 08:15:00 GMT", "2026-11-16T09:15:00+01:00"),
        ("2026-11-16T10:15:00+0200", "2026-11-16T09:15:00+01:00"),
        ("2026-11-16T08:15:00Z", "2026-11-16T09:15:00+01:00"),
        ("2026-11-16 08:15:00", "2026-11-16T09:15:00+01:00"),  # no offset: UTC
    ],
)
def test_dates_keep_their_offsets(written: str, berlin: str) -> None:
    (entry,) = parse(rss(f"<item><title>T</title><pubDate>{written}</pubDate></item>")).entries
    assert post(entry).date.isoformat() == berlin


def test_media_thumbnail_and_image_enclosure_are_covers() -> None:
    document = rss(
        '<item><title>T</title><media:thumbnail url="/thumb.jpg"/></item>'
        '<item><title>U</title><enclosure url="https://cdn.example.com/a.mp3" type="audio/mpeg"'
        ' length="1"/><enclosure url="https://cdn.example.com/a.png" type="image/png"'
        ' length="1"/></item>'
        '<item><title>V</title><enclosure url="https://cdn.example.com/a.mp3" type="audio/mpeg"'
        ' length="1"/></item>'
    )
    covers = [e["cover"] for e in parse(document).entries]
    assert covers == ["https://blog.example.com/thumb.jpg", "https://cdn.example.com/a.png", None]


def test_rss_1_and_rss_0_91_are_read() -> None:
    rdf = (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        ' xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<channel rdf:about="https://x.example/"><title>X</title><link>https://x.example/</link>'
        "</channel><item rdf:about='https://x.example/1'><title>One</title>"
        "<link>https://x.example/1</link><dc:date>2026-11-17T10:00:00+01:00</dc:date></item>"
        "</rdf:RDF>"
    )
    (entry,) = parse(rdf).entries
    assert (entry["title"], entry["date"]) == ("One", "2026-11-17T10:00:00+01:00")
    old = '<rss version="0.91"><channel><title>O</title><item><title>Old</title></item>'
    old += "</channel></rss>"
    assert [e["title"] for e in parse(old).entries] == ["Old"]


def test_sanitizer_keeps_prose_and_drops_everything_active() -> None:
    dirty = (
        '<p style="color:red" onclick="steal()">Hi <a href="javascript:alert(1)">x</a>'
        '<a href="/ok">ok</a></p><iframe src="https://evil.example/"></iframe>'
        "<style>p{display:none}</style><object data=x></object>"
        '<img src="data:image/png;base64,AAAA"><img src="//cdn.example.com/i.png">'
    )
    assert sanitize_html(dirty, "https://blog.example.com/post/") == (
        '<p>Hi <a rel="noopener noreferrer">x</a><a href="https://blog.example.com/ok" '
        'rel="noopener noreferrer">ok</a></p><img><img src="https://cdn.example.com/i.png">'
    )


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_external_entities_are_not_read_and_entity_bombs_do_not_expand() -> None:
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        '<rss version="2.0"><channel><title>t</title><item><title>A &x; B</title>'
        "<link>https://a.example/x</link></item></channel></rss>"
    )
    assert [e["title"] for e in parse(xxe).entries] == ["A B"]
    levels = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{levels}]>'
        '<rss version="2.0"><channel><title>t</title><item><title>&l9;</title>'
        "<link>https://a.example/x</link></item></channel></rss>"
    )
    (entry,) = parse(bomb).entries
    assert len(entry["title"]) < 100  # not 3 * 10**9 characters

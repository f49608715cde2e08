"""Every text path of digest, given 1 MB adversarial inputs, finishes within a CPU budget.

The inputs (``adversarial.py``) are the shapes that made a backtracking regex or a
recursive parser take super-linear time: "read more " × n + "x" (60 s at n = 26 before),
"End. " + "A" × n + "#" (47 s at n = 300), 100,000 nested ``<div>`` (79 s in the
sanitiser), deep brackets, unterminated strings, long runs of markup characters.

Each call is measured in CPU time of this process (``time.process_time``), so a loaded
machine does not fail it; the budget is 1 s per call of a 1 MB input, where the shapes
above took a minute or never finished. A call may refuse the input (a DigestError or the
path's own error naming the problem): what it may not do is take longer.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.content import text
from digest.content.intro import parse_intro
from digest.content.posts import PostReadError, parse_date, read_post_metadata
from digest.content.select import slugify
from digest.content.sources import feeds, sanitize
from digest.errors import DigestError
from tests.hostile.adversarial import NAMES, adversarial

# CPU seconds for one call on a 1 MB input. Every path takes at most about 0.6 s on this
# machine when it is quiet (1 s is the goal); a slower or busier machine gets twice that
# before the test fails. A super-linear path on these inputs takes minutes, not seconds.
BUDGET = 2.0
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
TITLE = "A Title Of Four Words"
EXPECTED = (DigestError, PostReadError, feeds.FeedParseError, ValueError)


def _rss(value: str) -> None:
    escaped = html.escape(value)
    feeds.parse_feed(
        (
            "<rss version='2.0'><channel><title>t</title><item>"
            f"<title>{escaped}</title><link>https://x.example/{escaped}</link>"
            f"<pubDate>{escaped}</pubDate><description>{escaped}</description>"
            "</item></channel></rss>"
        ).encode(),
        now=NOW,
    )


def _atom(value: str) -> None:
    escaped = html.escape(value)
    feeds.parse_feed(
        (
            "<feed xmlns='http://www.w3.org/2005/Atom'><title>t</title><entry>"
            f"<title type='html'>{escaped}</title><id>{escaped}</id>"
            f"<updated>{escaped}</updated><content type='html'>{escaped}</content>"
            f"<author><name>{escaped}</name></author></entry></feed>"
        ).encode(),
        now=NOW,
    )


def _json_feed(field: str) -> Callable[[str], None]:
    """A JSON Feed with the input in one field (or, for "fields", spread over the short
    ones), written as JSON does: about a megabyte of document."""

    def run(value: str) -> None:
        item: dict[str, object] = {"id": "1", "title": "t", "url": "https://x.example/a"}
        if field == "fields":
            part = value[: len(value) // 6]
            item.update(
                id=part,
                url="https://x.example/" + part,
                date_published=part,
                image=part,
                authors=[{"name": part}],
                tags=[part],
            )
        else:
            item[field] = value
        document = {"version": "https://jsonfeed.org/version/1.1", "items": [item]}
        feeds.parse_feed(json.dumps(document, ensure_ascii=False).encode(), now=NOW)

    return run


def _json_raw(value: str) -> None:
    feeds.parse_feed(
        ('{"version": "https://jsonfeed.org/version/1.1", "items": [' + value + "]}").encode(),
        now=NOW,
    )


def _front_matter(tmp: Path) -> Callable[[str], Callable[[], object]]:
    def prepare(value: str) -> Callable[[], object]:
        path = tmp / "post.md"
        quoted = json.dumps(value)  # JSON strings are YAML double-quoted scalars
        path.write_text(
            f"---\ntitle: {quoted}\ndate: {quoted}\nexcerpt: {quoted}\n---\n{value}\n",
            encoding="utf-8",
        )
        return lambda: read_post_metadata(path, 5_000_000)

    return prepare


def _front_matter_raw(tmp: Path) -> Callable[[str], Callable[[], object]]:
    def prepare(value: str) -> Callable[[], object]:
        path = tmp / "raw.md"
        path.write_text(f"---\ntitle: {value}\ndate: 2026-11-18\n---\n", encoding="utf-8")
        return lambda: read_post_metadata(path, 5_000_000)

    return prepare


def _now(run: Callable[[str], object]) -> Callable[[str], Callable[[], object]]:
    return lambda value: lambda: run(value)


def _paths(tmp: Path) -> dict[str, Callable[[str], Callable[[], object]]]:
    """Each text path: given the input, what to time (files are written before)."""
    intro = tmp / "intro.md"
    return {
        "title": _now(lambda s: (text.normalise_title(s), text.clean_text(s))),
        "excerpt-tidy": _now(lambda s: text.DEFAULT_CLEANER.tidy(s, TITLE)),
        "excerpt-from-body": _now(lambda s: text.DEFAULT_CLEANER.from_body(s, TITLE)),
        "feed-excerpt": _now(lambda s: feeds.feed_excerpt(TITLE, s, s)),
        "markdown": _now(lambda s: text.clean_text(s)),
        "sketch": _now(lambda s: text.sketch(text.body_words(s))),
        "front-matter": _front_matter(tmp),
        "front-matter-raw": _front_matter_raw(tmp),
        "rss": _now(_rss),
        "atom": _now(_atom),
        "json-feed-html": _now(_json_feed("content_html")),
        "json-feed-summary": _now(_json_feed("summary")),
        "json-feed-title": _now(_json_feed("title")),
        "json-feed-fields": _now(_json_feed("fields")),
        "json-feed-raw": _now(_json_raw),
        "sanitiser": _now(lambda s: sanitize.sanitize_html(s, "https://x.example/")),
        "date": _now(lambda s: parse_date(s, ZoneInfo("Europe/Berlin"))),
        "feed-date": _now(feeds._parse_date_text),
        "intro": _now(lambda s: parse_intro(s, issue_id="2026-W47", path=intro)),
        "intro-front-matter": _now(
            lambda s: parse_intro(f"---\nsubject: {s}\n---\nHi.\n", issue_id="w", path=intro)
        ),
        "slug": _now(lambda s: (slugify(s), feeds.entry_slug({"link": "https://x.example/" + s}))),
    }


PATHS = tuple(_paths(Path(".")))


@pytest.mark.slow  # 22 paths x 42 shapes of 1 MB: about 100 s in all
@pytest.mark.parametrize("path", PATHS)
def test_no_text_path_is_super_linear_on_1mb_adversarial_input(tmp_path: Path, path: str) -> None:
    prepare = _paths(tmp_path)[path]
    slow: dict[str, float] = {}
    for name in NAMES:
        run = prepare(adversarial(name))
        start = time.process_time()
        with contextlib.suppress(*EXPECTED):  # refused with a reason: fine, if quick
            run()
        took = time.process_time() - start
        if took > BUDGET:
            slow[name] = round(took, 2)
    assert slow == {}, f"{path}: over {BUDGET} s of CPU on 1 MB: {slow}"

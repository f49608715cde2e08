"""The composer: golden output for the sample site, escaping, unsafe URLs, trimming, the .eml.

Regenerate the golden files after an intended change to the templates with
``DIGEST_UPDATE_GOLDEN=1 pytest tests/test_compose.py`` and review the diff.
"""

from __future__ import annotations

import email
import email.policy
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lxml import html as lxml_html

from digest.config import Config, load_config, parse_config
from digest.content import pipeline
from digest.content.intro import load_intro, parse_intro
from digest.content.posts import Post
from digest.content.select import Section, Selection, week_window
from digest.email.checks import all_passed, run_checks
from digest.email.compose import compose, sent_size, worst_case_values
from digest.email.headline import fit_preheader
from digest.email.message import (
    PLACEHOLDERS,
    ComposedEmail,
    personalise,
    sample_values,
    to_message,
)
from digest.errors import TemplateError

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"  # read before env isolation
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def _sample(site: Path) -> tuple[Config, Selection]:
    config = load_config(site / "config.yaml")
    selection = pipeline.load_and_select(config, NOW, week="2026-W47").selection
    return config, selection


def _config(**email: object) -> Config:
    return parse_config(
        {
            "site": {"name": "Test Site", "base_url": "https://test.example.com"},
            "sender": {
                "from_name": "Test Site",
                "from_email": "news@test.example.com",
                "reply_to": "editor@test.example.com",
                "postal_address": "1 Test Road, Testville",
                "unsubscribe_mailto": "unsubscribe@test.example.com",
            },
            "email": email,
        }
    )


def _post(slug: str, title: str, **fields: object) -> Post:
    values: dict[str, object] = {
        "path": Path(f"/posts/{slug}.md"),
        "slug": slug,
        "title": title,
        "date": datetime(2026, 11, 17, 9, 0, tzinfo=timezone.utc),
        "category": "Work",
        "excerpt": "An excerpt of a reasonable length for a card in the digest.",
        "cover_image": f"https://img.example.com/{slug}.jpg?w=400&h=200",
        "author": "A. Writer",
    }
    values.update(fields)
    return Post(**values)  # type: ignore[arg-type]


def _selection(*sections: tuple[str, list[Post]]) -> Selection:
    window = week_window("2026-W47", timezone.utc)  # type: ignore[arg-type]
    return Selection(
        window,
        tuple(Section(name, name, tuple(posts)) for name, posts in sections),
        (),
    )


# --------------------------------------------------------------------------- golden files


def test_sample_issue_matches_the_golden_files(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    composed = compose(config, selection, now=NOW, intro=load_intro(config, "2026-W47"))
    for suffix, content in (("html", composed.html), ("txt", composed.text)):
        golden = GOLDEN / f"2026-W47.{suffix}"
        if UPDATE_GOLDEN:
            golden.parent.mkdir(exist_ok=True)
            golden.write_text(content, encoding="utf-8", newline="")
        assert golden.read_text(encoding="utf-8") == content, (
            f"{golden.name} changed; if intended, run DIGEST_UPDATE_GOLDEN=1 pytest {__file__}"
        )


def test_composing_twice_gives_the_same_bytes(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    first = compose(config, selection, now=NOW)
    second = compose(config, selection, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert first.html == second.html
    assert first.text == second.text


def test_sample_issue_content(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    intro = load_intro(config, "2026-W47")
    composed = compose(config, selection, now=NOW, intro=intro)
    assert composed.issue_id == "2026-W47"
    assert composed.subject == "Field Notes Weekly: quieter meetings, louder tools"
    assert composed.preheader == (
        "Fewer meetings, better defaults, and the question of who gets to say no to automation."
    )
    assert composed.sections == (
        "Work",
        "Productivity",
        "Tools",
        "Research",
        "Healthcare",
        "Ethics",
    )
    assert composed.post_count == 6
    assert composed.trimmed == ()
    assert composed.from_address == "Field Notes Weekly <weekly@fieldnotes.example.com>"
    assert composed.headers == {
        "From": "Field Notes Weekly <weekly@fieldnotes.example.com>",
        "Subject": "Field Notes Weekly: quieter meetings, louder tools",
        "List-Id": "Field Notes Weekly <fieldnotes.example.com>",
        "List-Unsubscribe": "<[[digest:unsubscribe_url]]>, "
        "<mailto:unsubscribe@fieldnotes.example.com?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Reply-To": "editor@fieldnotes.example.com",
    }
    html = composed.html
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en"' in html
    assert "@media only screen and (max-width: 480px)" in html  # our own, kept in <head>
    assert "mj-column-per-100" in html  # MJML's responsive rules survive premailer
    tree = lxml_html.document_fromstring(html)
    # The intro is Markdown rendered, not escaped.
    assert tree.xpath("//strong/text()") == ["who gets a say when work is automated?"]
    hrefs = tree.xpath("//a/@href")
    assert PLACEHOLDERS["unsubscribe_url"] in hrefs
    assert PLACEHOLDERS["preferences_url"] in hrefs
    assert "http://127.0.0.1:8025/archive/2026-W47/" in hrefs  # view in browser
    assert (
        "https://fieldnotes.example.com/posts/monday-reset-for-small-teams"
        "?utm_source=digest&utm_medium=email&utm_campaign=2026-W47"
    ) in hrefs
    assert "Field Notes, 12 Example Street, 10115 Berlin, Germany" in html
    # The sample site has no cover images, so the demo shows no broken ones.
    assert list(tree.iter("img")) == []
    assert "16–22 November 2026" in composed.text
    assert "Unsubscribe:     [[digest:unsubscribe_url]]" in composed.text
    assert all(len(line) <= 72 or "://" in line for line in composed.text.splitlines())


def test_every_check_passes_for_the_sample_issue(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    results = run_checks(compose(config, selection, now=NOW))
    assert all_passed(results), [r for r in results if not r.passed]
    # The sample config serves on loopback http: allowed, but reported.
    https = next(r for r in results if r.name == "https")
    assert (https.ok, https.level) == (False, "warning")


# --------------------------------------------------------------------------- escaping


def test_titles_and_excerpts_are_escaped() -> None:
    nasty = '<script>alert("x")</script> Tom & Jerry\'s "best" 🎉 שלום עולם'
    selection = _selection(("Work", [_post("nasty", nasty, excerpt=nasty, author=nasty)]))
    composed = compose(_config(), selection, now=NOW)
    assert "<script>" not in composed.html
    tree = lxml_html.document_fromstring(composed.html)
    assert tree.xpath("//h3/a/text()") == [nasty]
    assert tree.xpath("//h3/@dir") == ["auto"]  # right-to-left titles lay out on their own
    # The linked title follows the cover, so the cover's alt is empty (read once, not twice).
    assert [i.get("alt") for i in tree.iter("img")] == [""]
    # The text part is not HTML: the title appears as written.
    assert nasty in composed.text
    assert composed.subject == "Test Site: 1 story this week"  # the title is over 70
    short = compose(_config(), _selection(("Work", [_post("e", "Tom & Jerry 🎉")])), now=NOW)
    assert short.subject == "Test Site: Tom & Jerry 🎉"


def test_personalise_escapes_values_in_html_only() -> None:
    selection = _selection(("Work", [_post("one", "One")]))
    composed = compose(_config(), selection, now=NOW)
    values = {
        "unsubscribe_url": "https://test.example.com/unsubscribe/a?b=1&c=2",
        "preferences_url": "https://test.example.com/preferences/t",
        "name": '<b>Ann & "Bo"</b>',
    }
    filled = personalise(composed, values)
    assert 'href="https://test.example.com/unsubscribe/a?b=1&amp;c=2"' in filled.html
    assert "https://test.example.com/unsubscribe/a?b=1&c=2" in filled.text
    assert filled.headers["List-Unsubscribe"].startswith(
        "<https://test.example.com/unsubscribe/a?b=1&c=2>, <mailto:"
    )
    assert "[[digest:" not in filled.html.replace("[[digest:email]]", "")


@pytest.mark.parametrize(
    "cover",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:image/png;base64,AAAA",
        "http://x.test/a.jpg",
    ],
)
def test_unsafe_cover_images_are_refused(cover: str) -> None:
    selection = _selection(("Work", [_post("bad", "Bad cover", cover_image=cover)]))
    composed = compose(_config(), selection, now=NOW)
    assert cover.split(":")[1][:8] not in composed.html
    assert list(lxml_html.document_fromstring(composed.html).iter("img")) == []
    assert len(composed.warnings) == 1
    assert composed.warnings[0].startswith("/posts/bad.md: cover image ")
    assert all_passed(run_checks(composed))


def test_relative_cover_images_are_made_absolute() -> None:
    selection = _selection(("Work", [_post("rel", "Relative", cover_image="/img/rel.jpg")]))
    composed = compose(_config(), selection, now=NOW)
    srcs = [i.get("src") for i in lxml_html.document_fromstring(composed.html).iter("img")]
    assert srcs == ["https://test.example.com/img/rel.jpg"]


def test_a_post_without_an_image_gets_a_card_without_one() -> None:
    selection = _selection(("Work", [_post("plain", "No picture", cover_image=None)]))
    composed = compose(_config(), selection, now=NOW)
    tree = lxml_html.document_fromstring(composed.html)
    assert list(tree.iter("img")) == []
    assert tree.xpath("//h3/a/text()") == ["No picture"]
    assert composed.warnings == ()


def test_intro_refuses_javascript_links_and_raw_html(tmp_path: Path) -> None:
    source = (
        "---\nsubject: Custom subject\n---\n"
        "Hello [click](javascript:alert(1)) and <script>bad()</script> "
        "and [fine](https://ok.example.com/a)."
    )
    intro = parse_intro(source, issue_id="2026-W47", path=tmp_path / "2026-W47.md")
    assert intro.subject == "Custom subject"
    assert "javascript:" not in intro.html.replace("[click](javascript:alert(1))", "")
    assert 'href="javascript' not in intro.html
    assert "<script>" not in intro.html
    assert '<a href="https://ok.example.com/a">fine</a>' in intro.html
    assert "fine <https://ok.example.com/a>" in intro.text
    selection = _selection(("Work", [_post("one", "One")]))
    composed = compose(_config(), selection, now=NOW, intro=intro)
    assert composed.subject == "Custom subject"
    assert 'href="javascript' not in composed.html


# --------------------------------------------------------------------------- subject, preheader


def test_subject_from_config_template() -> None:
    posts = [_post("a", "First"), _post("b", "Second"), _post("c", "Third")]
    composed = compose(_config(), _selection(("Work", posts)), now=NOW)
    assert composed.subject == "Test Site: First and 2 more"
    single = compose(_config(), _selection(("Work", posts[:1])), now=NOW)
    assert single.subject == "Test Site: First"


def test_preheader_is_kept_between_40_and_110_characters() -> None:
    assert fit_preheader("Short", "This week in Site: one, two") == (
        "Short — This week in Site: one, two"
    )
    short = fit_preheader("Short", "This week in Test Site: First, Second, Third")
    assert 40 <= len(short) <= 110
    long = fit_preheader("word " * 60, "filler")
    assert len(long) <= 110 and long.endswith("…")
    posts = [_post(f"p{i}", f"A fairly long post title number {i}") for i in range(6)]
    composed = compose(_config(), _selection(("Work", posts)), now=NOW)
    assert 40 <= len(composed.preheader) <= 110
    # Padding follows the hidden preheader so the preview does not run into the body.
    assert composed.preheader + "\u034f\u200c\u00a0" in composed.html


def test_unknown_subject_field_is_a_clear_error() -> None:
    config = _config(subject="{site} {nope}")
    with pytest.raises(TemplateError, match=r"email.subject: .* uses 'nope', which is not one of"):
        compose(config, _selection(("Work", [_post("a", "A")])), now=NOW)


# --------------------------------------------------------------------------- templates


def test_a_users_template_overrides_the_builtin_one(tmp_path: Path) -> None:
    folder = tmp_path / "mytemplates"
    (folder / "partials").mkdir(parents=True)
    (folder / "partials" / "footer.mjml.j2").write_text(
        '<mj-section><mj-column><mj-text><a href="{{ links.unsubscribe }}">Leave</a>'
        "</mj-text></mj-column></mj-section>",
        encoding="utf-8",
    )
    config = _config(templates_dir=str(folder))
    composed = compose(config, _selection(("Work", [_post("a", "A")])), now=NOW)
    assert ">Leave</a>" in composed.html
    assert "You are receiving this" not in composed.html
    assert "You are receiving this" in composed.text  # the text template is still built in


def test_a_broken_user_template_names_the_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "mytemplates"
    (folder / "partials").mkdir(parents=True)
    (folder / "partials" / "footer.mjml.j2").write_text("\n{% if %}", encoding="utf-8")
    config = _config(templates_dir=str(folder))
    with pytest.raises(TemplateError, match=r"footer.mjml.j2:2: "):
        compose(config, _selection(("Work", [_post("a", "A")])), now=NOW)


# --------------------------------------------------------------------------- size budget


def _many(count: int, sections: int = 4) -> Selection:
    names = [f"Section {i}" for i in range(sections)]
    groups: dict[str, list[Post]] = {n: [] for n in names}
    for i in range(count):
        groups[names[i % sections]].append(_post(f"post-{i}", f"Post number {i}"))
    return _selection(*groups.items())


def test_an_over_budget_issue_is_trimmed_to_fewer_posts_first() -> None:
    config = _config(size_budget_kb=40)
    selection = _many(40)
    composed = compose(config, selection, now=NOW)
    assert composed.html_size <= 40_000
    assert len(composed.trimmed) == 1
    assert composed.trimmed[0].startswith("fewer_posts: at most ")
    assert composed.post_count < 40
    # Each section links to the rest.
    assert "more in Section 0 →" in composed.html
    assert all_passed(run_checks(composed))


def test_then_compact_cards_without_images() -> None:
    config = _config(size_budget_kb=25, trim_min_posts=5)
    composed = compose(config, _many(40), now=NOW)
    assert composed.html_size <= 25_000
    assert composed.trimmed[-1] == "compact_cards: cards without cover images or excerpts"
    assert list(lxml_html.document_fromstring(composed.html).iter("img")) == []


def test_an_issue_that_cannot_fit_fails_the_size_check() -> None:
    config = _config(size_budget_kb=10, trim_policy=[])
    composed = compose(config, _many(20), now=NOW)
    size = next(r for r in run_checks(composed) if r.name == "size")
    assert not size.passed
    assert composed.post_count == 20


def test_the_budget_counts_the_html_part_as_sent() -> None:
    config = _config(size_budget_kb=40)
    composed = compose(config, _many(40), now=NOW)
    # The HTML part as a recipient gets it: markers filled with full-length values, then
    # quoted-printable encoded. That, not the composed HTML, is what must fit.
    worst = worst_case_values(config)
    assert composed.sent_size == sent_size(composed.html, worst) <= 40_000
    assert composed.sent_size > composed.html_size
    message = to_message(composed, to=worst["email"], values=worst)
    html_part = message.get_payload()[1].as_bytes().split(b"\r\n\r\n", 1)[1]
    # What the email package writes for it: never more than the budgeted figure, and close.
    assert composed.sent_size * 0.99 <= len(html_part) <= composed.sent_size


def test_after_trimming_every_count_is_what_the_email_shows() -> None:
    config = _config(size_budget_kb=40, preheader="{count} posts this week: {titles}")
    composed = compose(config, _many(40), now=NOW)
    shown = composed.post_count
    assert shown < 40
    assert composed.subject == f"Test Site: Post number 0 and {shown - 1} more"
    assert composed.preheader.startswith(f"{shown} posts this week")
    tree = lxml_html.document_fromstring(composed.html)
    assert tree.xpath("//p[@class='issue-dates']/text()")[0].endswith(f" · {shown} posts")
    assert f" · {shown} posts" in composed.text.splitlines()[2]
    more = sum(int(t.split()[0]) for t in tree.xpath("//td[contains(@class,'more')]//a/text()"))
    assert shown + more == 40  # the "N more" links account for the rest


def test_a_long_headline_is_never_cut_and_a_set_subject_is_warned_about() -> None:
    title = "An extraordinarily long headline that goes on and on about many things at once"
    composed = compose(
        _config(), _selection(("Work", [_post("a", title), _post("b", "B")])), now=NOW
    )
    assert composed.subject == "Test Site: 2 stories this week"
    fits = "A headline that fits with the site name but not the rest"
    alone = compose(_config(), _selection(("Work", [_post("a", fits), _post("b", "B")])), now=NOW)
    assert alone.subject == f"Test Site: {fits}"  # "... and 1 more" would pass 70
    own = compose(
        _config(subject_short="{site} this week"),
        _selection(("Work", [_post("a", title), _post("b", "B")])),
        now=NOW,
    )
    assert own.subject == "Test Site this week"
    long_set = compose(
        _config(subject="{site} — the whole story of the week, with every detail you could want"),
        _selection(("Work", [_post("a", title)])),
        now=NOW,
    )
    subject_check = next(r for r in run_checks(long_set) if r.name == "subject")
    assert (subject_check.ok, subject_check.level) == (False, "warning")


def test_the_preheader_is_hidden_by_size_not_by_colour() -> None:
    composed = compose(_config(), _selection(("Work", [_post("a", "A")])), now=NOW)
    tree = lxml_html.document_fromstring(composed.html)
    (hidden,) = tree.xpath("//div[@class='preheader']")
    style = hidden.get("style")
    assert "display:none" in style and "max-height:0" in style
    assert "color" not in style


def test_dark_mode_is_declared_and_styled() -> None:
    composed = compose(_config(), _selection(("Work", [_post("a", "A")])), now=NOW)
    tree = lxml_html.document_fromstring(composed.html)
    assert tree.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]
    assert "@media (prefers-color-scheme: dark)" in composed.html


def _cover(url: str, **extra: object) -> dict[str, str]:
    post = _post("p", "P", cover_image=url, extra=extra)
    composed = compose(_config(), _selection(("Work", [post])), now=NOW)
    (img,) = lxml_html.document_fromstring(composed.html).iter("img")
    return {k: img.get(k) for k in ("src", "width", "height", "alt")}


def test_covers_on_image_cdns_are_asked_for_at_twice_their_size() -> None:
    imgix = _cover("https://images.unsplash.com/photo-1?w=400&h=200&fit=crop&auto=format")
    assert imgix == {
        "src": "https://images.unsplash.com/photo-1?auto=format&w=1104&h=552&fit=crop",
        "width": "552",
        "height": "276",
        "alt": "",
    }
    cloudinary = _cover("https://res.cloudinary.com/demo/image/upload/w_300,h_300/v1/a.jpg")
    assert cloudinary["src"] == (
        "https://res.cloudinary.com/demo/image/upload/w_1104,h_552,c_fill/v1/a.jpg"
    )
    plain = _cover("https://res.cloudinary.com/demo/image/upload/v1/a.jpg")
    assert (
        plain["src"] == "https://res.cloudinary.com/demo/image/upload/w_1104,h_552,c_fill/v1/a.jpg"
    )


def test_covers_elsewhere_are_never_upscaled_or_squashed() -> None:
    # The URL says 400x300: shown at half that, in proportion.
    assert _cover("https://img.example.com/a.jpg?w=400&h=300") == {
        "src": "https://img.example.com/a.jpg?w=400&h=300",
        "width": "200",
        "height": "150",
        "alt": "",
    }
    # The front matter says how big it is, and what it shows.
    described = _cover("https://img.example.com/b.jpg", coverWidth=3000, coverHeight=1000,
                       coverAlt="A harbour at dawn")  # fmt: skip
    assert described == {
        "src": "https://img.example.com/b.jpg",
        "width": "552",
        "height": "184",
        "alt": "A harbour at dawn",
    }
    # Nothing known: full width, the height follows the image.
    unknown = _cover("https://img.example.com/c.jpg")
    assert (unknown["width"], unknown["height"]) == ("552", "auto")


def test_a_cover_repeated_in_one_issue_is_shown_once() -> None:
    same = "https://img.example.com/stock.jpg?w=1200&h=600"
    posts = [_post(s, s.upper(), cover_image=same) for s in ("a", "b", "c")]
    composed = compose(_config(), _selection(("Work", posts)), now=NOW)
    images = list(lxml_html.document_fromstring(composed.html).iter("img"))
    assert len(images) == 1


# --------------------------------------------------------------------------- the message


def _parse(message_bytes: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(message_bytes, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_the_eml_parses_back_into_the_same_email(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    composed = compose(config, selection, now=NOW)
    values = {
        "unsubscribe_url": "https://fieldnotes.example.com/unsubscribe/tok",
        "preferences_url": "https://fieldnotes.example.com/preferences/tok",
        "name": "Zoë",
    }
    message = to_message(composed, to="Zoë <zoe@example.org>", values=values)
    parsed = _parse(message.as_bytes())
    assert parsed["Subject"] == composed.subject
    assert parsed["From"] == "Field Notes Weekly <weekly@fieldnotes.example.com>"
    assert parsed["To"] == "Zoë <zoe@example.org>"
    assert parsed["Reply-To"] == "editor@fieldnotes.example.com"
    assert parsed["Date"] == "Mon, 23 Nov 2026 08:00:00 +0000"
    assert parsed["Message-ID"].startswith("<2026-W47.")
    assert parsed["List-Id"] == "Field Notes Weekly <fieldnotes.example.com>"
    assert parsed["List-Unsubscribe"] == (
        "<https://fieldnotes.example.com/unsubscribe/tok>, "
        "<mailto:unsubscribe@fieldnotes.example.com?subject=unsubscribe>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    filled = personalise(composed, {**values, "email": "Zoë <zoe@example.org>"})
    assert parts[0].get_content().replace("\r\n", "\n") == filled.text
    assert parts[1].get_content().replace("\r\n", "\n") == filled.html
    assert all(len(line) <= 998 for line in message.as_bytes().split(b"\r\n"))


def test_message_id_is_stable_and_date_is_injected(sample_site: Path) -> None:
    config, selection = _sample(sample_site)
    composed = compose(config, selection, now=NOW)
    when = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
    first = to_message(composed, to="a@example.org", values=sample_values(config), date=when)
    second = to_message(composed, to="a@example.org", values=sample_values(config), date=when)
    other = to_message(composed, to="b@example.org", values=sample_values(config), date=when)
    assert first.as_bytes() == second.as_bytes()
    assert first["Message-ID"] != other["Message-ID"]
    assert first["Date"] == "Mon, 23 Nov 2026 09:30:00 +0000"
    explicit = to_message(composed, to="a@example.org", values={}, message_id="<x@y.z>")
    assert explicit["Message-ID"] == "<x@y.z>"


def test_markers_survive_mjml_and_premailer() -> None:
    composed = compose(_config(), _selection(("Work", [_post("a", "A")])), now=NOW)
    assert isinstance(composed, ComposedEmail)
    assert f'href="{PLACEHOLDERS["unsubscribe_url"]}"' in composed.html
    assert f'href="{PLACEHOLDERS["preferences_url"]}"' in composed.html
    assert PLACEHOLDERS["unsubscribe_url"] in composed.text

"""Hostile content: what posts, feeds, intros and templates hold is data, never code.

Each test is named after what it proves. Content that holds marker syntax
(``[[digest:email]]``) must not become a per-recipient value; a file read must stay inside
its folder; a header filled with a recipient's value stays one header; control characters
and bidirectional overrides never reach the email or the terminal raw.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import yaml

from digest.config import Config, load_config
from digest.content.intro import load_intro
from digest.content.pipeline import load_and_select
from digest.email.compose import compose
from digest.email.message import MARKER, ComposedEmail, WireTemplate, personalise, to_message
from digest.errors import ContentError

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

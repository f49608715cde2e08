"""An issue's intro (content/issues/<issue>.md): its subject and preheader, its HTML and
plain text, and a clear error naming the file for every way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import load_config
from digest.content.intro import intro_path, load_intro, parse_intro
from digest.errors import ContentError

PATH = Path("content/issues/2026-W47.md")


def test_an_intro_gives_subject_preheader_html_and_text() -> None:
    intro = parse_intro(
        '---\nsubject: "A  quiet\n  week"\npreheader: Read on\n---\n'
        "Hello *there*,\nfriends.\n\n- see [the notes](https://example.com/n)\n- ![a chart](https://example.com/c.png)\n\n"
        "```\ncode stays\n```\n",
        issue_id="2026-W47",
        path=PATH,
    )
    assert (intro.subject, intro.preheader) == ("A quiet week", "Read on")
    assert intro.text == (
        "Hello there, friends.\n\n- see the notes <https://example.com/n>\n\n- a chart\n\n"
        "code stays"
    )
    assert intro.html.startswith("<p>Hello <em>there</em>,\nfriends.</p>")
    bare = parse_intro("Just text.\n", issue_id="2026-W47", path=PATH)
    assert (bare.subject, bare.preheader, bare.text) == (None, None, "Just text.")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("---\nsubject: x\n", "the front matter is never closed; add a line '---' after it"),
        ("---\nsubject: [x\n---\nbody\n", "the front matter is not valid YAML at line 3"),
        ("---\n- a list\n---\nbody\n", "the front matter must be a mapping such as 'subject: …'"),
        ("---\nsubject: [a, b]\n---\n", "'subject' in the front matter must be text"),
        ("---\npreheader: '  '\n---\n", "'preheader' in the front matter must be text"),
        (
            "---\ntitle: x\nsubject: y\n---\n",
            "unknown front matter key(s) title; an intro may set only subject and preheader",
        ),
    ],
)
def test_a_bad_intro_is_a_content_error_naming_the_file(source: str, problem: str) -> None:
    with pytest.raises(ContentError) as caught:
        parse_intro(source, issue_id="2026-W47", path=PATH)
    assert str(caught.value) == f"{PATH}: {problem}"


def test_front_matter_that_expands_too_far_is_refused() -> None:
    bomb = "---\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    with pytest.raises(ContentError, match=r"^content/issues/2026-W47\.md: "):
        parse_intro(bomb + "---\n", issue_id="2026-W47", path=PATH)


def test_an_intro_file_that_is_not_utf8_names_the_file(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    assert load_intro(config, "2026-W01") is None  # no intro: nothing to add
    path = intro_path(config, "2026-W01")
    path.write_bytes("Grüße aus Köln\n".encode("cp1252"))
    with pytest.raises(ContentError) as caught:
        load_intro(config, "2026-W01")
    assert str(caught.value).startswith(f"{path}: cannot read the issue intro: ")

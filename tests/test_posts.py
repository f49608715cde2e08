from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.content.cache import PostCache
from digest.content.posts import (
    PostReadError,
    cut_at_word,
    excerpt_from_body,
    load_posts,
    normalise_title,
    parse_date,
    parse_tags,
    tidy_excerpt,
)

BERLIN = ZoneInfo("Europe/Berlin")


def post(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def posts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "posts"
    folder.mkdir()
    return folder


def test_front_matter_shapes_of_the_real_blog(posts_dir: Path) -> None:
    post(
        posts_dir,
        "folded.md",
        "---\ntitle: >-\n  A folded title\n  over two lines\ndate: '2026-08-17'\n"
        "excerpt: >-\n  Home News A folded title over two lines The real start of the "
        "excerpt is here and it runs on for a while until it is cut mid-wo...\n"
        'category: "work"\ntags: "ai, tools , ai"\ncoverImage: >-\n  https://img.example.com/a.jpg\n'
        "---\nBody.\n",
    )
    (loaded,) = load_posts(posts_dir, BERLIN).posts
    assert loaded.title == "A folded title over two lines"
    assert loaded.slug == "folded"
    assert loaded.date == datetime(2026, 8, 17, tzinfo=BERLIN)
    assert loaded.category == "work"
    assert loaded.tags == ("ai", "tools")
    assert loaded.cover_image == "https://img.example.com/a.jpg"
    assert loaded.excerpt == (
        "The real start of the excerpt is here and it runs on for a while until it is cut…"
    )


def test_missing_excerpt_is_derived_from_the_body(posts_dir: Path) -> None:
    body = (
        "Home   News   Tools\n\n\t\n\n<figure><img src='https://x.example.com/a.png'></figure>\n\n"
        "## A heading\n\n"
        "The **first** real paragraph has a [link](https://example.com) and enough words "
        "to count as a sentence.\n\nSecond paragraph.\n"
    )
    post(posts_dir, "derived.md", f"---\ntitle: Derived\ndate: 2026-08-17\n---\n{body}")
    (loaded,) = load_posts(posts_dir, BERLIN).posts
    assert loaded.excerpt == (
        "The first real paragraph has a link and enough words to count as a sentence. "
        "Second paragraph."
    )


def test_slug_draft_and_featured_from_front_matter(posts_dir: Path) -> None:
    post(
        posts_dir,
        "file-name.md",
        "---\ntitle: T\ndate: 2026-08-17\nslug: chosen\ndraft: true\nfeatured: 'yes'\n"
        "excerpt: one two three four five six seven eight nine ten eleven twelve thirteen\n---\n",
    )
    (loaded,) = load_posts(posts_dir, BERLIN).posts
    assert (loaded.slug, loaded.draft, loaded.featured) == ("chosen", True, True)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("binary.md", b"---\x00\x01\x02", "binary file, not Markdown text"),
        (
            "latin1.md",
            "---\ntitle: Café\ndate: 2026-08-17\n---\n".encode("latin-1"),
            "not UTF-8 text (byte 0xe9 at offset 14); save the file as UTF-8",
        ),
        (
            "unclosed.md",
            "---\ntitle: Open\ndate: 2026-08-17\nNo closing line\n",
            "front matter is never closed: add a line '---' after it",
        ),
        ("nofm.md", "# Just markdown\n", "no front matter: the file must start with a line '---'"),
        (
            "baddate.md",
            "---\ntitle: T\ndate: next tuesday\n---\n",
            "date 'next tuesday' is not a date (use 2026-08-17 or 2026-08-17T09:30:00+02:00)",
        ),
        ("notitle.md", "---\ndate: 2026-08-17\n---\n", "no title in the front matter"),
        ("nodate.md", "---\ntitle: T\n---\n", "no date in the front matter"),
        (
            "badyaml.md",
            "---\ntitle: [unclosed\ndate: 2026-08-17\n---\n",
            "front matter is not valid YAML at line 3: did not find expected ',' or ']'",
        ),
        ("list.md", "---\n- a\n- b\n---\n", "front matter is not a mapping of keys to values"),
    ],
)
def test_a_bad_file_is_reported_with_its_reason_and_skipped(
    posts_dir: Path, name: str, content: str | bytes, reason: str
) -> None:
    post(posts_dir, "good.md", "---\ntitle: Good\ndate: 2026-08-17\n---\nFine.\n")
    bad = post(posts_dir, name, content)
    result = load_posts(posts_dir, BERLIN)
    assert [p.slug for p in result.posts] == ["good"]
    assert [(p.path, p.reason) for p in result.problems] == [(bad, reason)]


def test_a_huge_file_is_skipped_without_reading_it(posts_dir: Path) -> None:
    huge = post(posts_dir, "huge.md", "---\ntitle: Huge\ndate: 2026-08-17\n---\n" + "x" * 2000)
    result = load_posts(posts_dir, BERLIN, max_size=1000)
    assert result.posts == []
    assert result.problems[0].path == huge
    assert result.problems[0].reason.startswith("file is 2,037 bytes, over content.max_file_size")


def test_long_front_matter_beyond_the_first_read_still_parses(posts_dir: Path) -> None:
    padding = "notes: '" + "n" * 70_000 + "'\n"
    post(posts_dir, "long.md", f"---\ntitle: Long\n{padding}date: 2026-08-17\n---\nBody é.\n")
    (loaded,) = load_posts(posts_dir, BERLIN).posts
    assert loaded.title == "Long"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2026, 8, 17), datetime(2026, 8, 17, 0, 0, tzinfo=BERLIN)),
        (datetime(2026, 8, 17, 9, 30), datetime(2026, 8, 17, 9, 30, tzinfo=BERLIN)),
        ("2026-08-17", datetime(2026, 8, 17, tzinfo=BERLIN)),
        ("2026-08-17 17:45", datetime(2026, 8, 17, 17, 45, tzinfo=BERLIN)),
        ("2026-08-17T22:30:00Z", datetime(2026, 8, 18, 0, 30, tzinfo=BERLIN)),
        ("2026-08-17T08:00:00-04:00", datetime(2026, 8, 17, 14, 0, tzinfo=BERLIN)),
    ],
)
def test_dates_in_every_shape_land_in_the_site_timezone(value: object, expected: datetime) -> None:
    parsed = parse_date(value, BERLIN)
    assert parsed == expected
    assert parsed.tzinfo == BERLIN


def test_a_date_that_is_not_a_date() -> None:
    with pytest.raises(PostReadError, match="is not a date"):
        parse_date("2026-13-45", BERLIN)
    with pytest.raises(PostReadError, match="is not a date"):
        parse_date(20260817, BERLIN)


def test_tags_as_list_or_comma_string() -> None:
    assert parse_tags(["AI", " Tools ", "AI"]) == ("AI", "Tools")
    assert parse_tags("ai, tools,, research") == ("ai", "tools", "research")
    assert parse_tags(None) == ()


def test_excerpt_helpers() -> None:
    assert cut_at_word("one two three four", 9) == "one two…"
    assert cut_at_word("short", 9) == "short"
    assert tidy_excerpt("A <b>bold</b> claim &amp; more words here...", "Title") == (
        "A bold claim & more words…"
    )
    assert tidy_excerpt("Why you can trust us: we test things independently.", "T") == ""
    assert excerpt_from_body(
        "Title Repeated\n\nWritten by\n\nActual prose begins with many "
        "words in this sentence here.",
        "Title Repeated",
    ) == ("Actual prose begins with many words in this sentence here.")
    assert normalise_title("Why Standups Run Long") == normalise_title("Why stand-ups run long!")


def test_the_cache_skips_unchanged_files_and_notices_changes(
    posts_dir: Path, tmp_path: Path
) -> None:
    first = post(posts_dir, "a.md", "---\ntitle: A\ndate: 2026-08-17\n---\nBody.\n")
    post(posts_dir, "b.md", "---\ntitle: B\ndate: 2026-08-18\n---\nBody.\n")
    post(posts_dir, "broken.md", b"")
    cache_dir = tmp_path / "cache"

    cold = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir))
    assert (cold.parsed, cold.cached) == (3, 0)

    warm = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir))
    assert (warm.parsed, warm.cached) == (0, 3)
    assert [p.title for p in warm.posts] == ["A", "B"]
    assert [p.reason for p in warm.problems] == ["empty file"]  # problems are cached too

    first.write_text("---\ntitle: A changed\ndate: 2026-08-17\n---\nBody!\n", encoding="utf-8")
    os.utime(first, ns=(1, 1))
    (posts_dir / "b.md").unlink()
    changed = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir))
    assert (changed.parsed, changed.cached) == (1, 1)
    assert [p.title for p in changed.posts] == ["A changed"]


def test_a_load_without_finishing_reads_no_body_and_leaves_the_cache_to_finish(
    posts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.content import posts as posts_module

    body = "The body says what the post is about, in enough words to make an excerpt.\n"
    post(posts_dir, "a.md", "---\ntitle: A\ndate: 2026-08-17\n---\n" + body)
    cache_dir = tmp_path / "cache"

    def no_body(*args: object) -> None:
        raise AssertionError("a body was read")

    monkeypatch.setattr(posts_module, "finish_post", no_body)
    light = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir), finish=False)
    assert [(p.title, p.excerpt, p.sketch, p.words) for p in light.posts] == [("A", "", (), None)]
    monkeypatch.undo()

    full = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir))
    assert (full.parsed, full.cached) == (0, 1)  # parsed once, finished now
    (finished,) = full.posts
    assert finished.excerpt == body.strip()
    assert finished.words == 15
    monkeypatch.setattr(posts_module, "finish_post", no_body)
    # what a finishing load cached, a light one takes as it is
    (again,) = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir), finish=False).posts
    assert (again.excerpt, again.sketch, again.words) == (
        finished.excerpt,
        finished.sketch,
        finished.words,
    )


def test_a_corrupt_cache_is_rebuilt_not_fatal(posts_dir: Path, tmp_path: Path) -> None:
    post(posts_dir, "a.md", "---\ntitle: A\ndate: 2026-08-17\n---\nBody.\n")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "posts.sqlite").write_bytes(b"this is not a database" * 100)
    result = load_posts(posts_dir, BERLIN, cache=PostCache(cache_dir))
    assert [p.title for p in result.posts] == ["A"]


def test_a_missing_posts_folder_is_a_content_error(tmp_path: Path) -> None:
    from digest.errors import ContentError

    with pytest.raises(ContentError, match="no such folder"):
        load_posts(tmp_path / "missing", BERLIN)


FRONT_MATTER_SHAPES = [
    "title: >-\n  Folded\n  over lines\ndate: '2026-07-21'\n",
    'title: "Quoted: with colon"\ntags: [a, b, "c d"]\ndraft: yes\nweight: 3\n',
    "title: Anchors\nbase: &who {name: Ann, site: x}\nauthor: *who\nlist: &l [1, 2]\nagain: *l\n",
    "title: Merge key kept as a key\n<<: {a: 1}\n",
    "title: Nested\nextra:\n  - {k: v}\n  - [1, [2, 3]]\n  - ''\nempty:\n",
    "title: |\n  Literal\n  block\ncategory: AI\n",
    "",
    "# only a comment\n",
]


@pytest.mark.parametrize("front", FRONT_MATTER_SHAPES)
def test_front_matter_loads_as_pyyaml_base_loader_would(front: str) -> None:
    import yaml

    from digest.content.frontmatter import FrontMatterHandler

    expected = yaml.load(front, Loader=yaml.BaseLoader)
    assert FrontMatterHandler().load(front) == expected


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("a: &x [1, *x]\n", "recursive alias"),
        ("? [a, b]\n: value\n", "unhashable key"),
        ("title: one\n---\ntitle: two\n", "single document"),
    ],
)
def test_front_matter_that_cannot_be_loaded_is_a_yaml_error(front: str, problem: str) -> None:
    import yaml

    from digest.content.frontmatter import FrontMatterHandler

    with pytest.raises(yaml.YAMLError, match=problem):
        FrontMatterHandler().load(front)


def test_a_billion_laughs_is_refused_before_it_is_built() -> None:
    from digest.content.frontmatter import FrontMatterHandler, FrontMatterTooLarge, YamlLimits

    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(FrontMatterTooLarge, match="expands to more than 100,000 values"):
        FrontMatterHandler().load("\n".join(lines) + "\n")
    # within the limits an alias is shared, not copied
    loaded = FrontMatterHandler(YamlLimits(expanded=10**9)).load("\n".join(lines[:4]) + "\n")
    assert loaded["a3"][0] is loaded["a2"]


@pytest.mark.integration  # forks worker processes
def test_posts_finished_on_every_core_equal_those_finished_in_turn(
    posts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.content import posts as posts_module

    for i in range(12):
        post(
            posts_dir,
            f"many-{i:02d}.md",
            f"---\ntitle: Post {i}\ndate: 2026-01-{i + 1:02d}\n---\n\nBody {i} " * 3 + "words.\n",
        )
    tz = ZoneInfo("UTC")
    in_turn = load_posts(posts_dir, tz)
    seen: list[tuple[str, int, int]] = []
    monkeypatch.setattr(posts_module, "PARALLEL_THRESHOLD", 1)  # a pool even for a few
    monkeypatch.setattr(posts_module, "PROGRESS_EVERY", 5)
    pooled = load_posts(posts_dir, tz, progress=lambda *told: seen.append(told))
    assert [(p.slug, p.excerpt, p.sketch) for p in pooled.posts] == [
        (p.slug, p.excerpt, p.sketch) for p in in_turn.posts
    ]
    total = len(in_turn.posts)
    assert total >= 12 and seen[-1] == ("finishing", total, total)
    assert [told for told in seen if told[0] == "parsing"][-1][1:] == (
        in_turn.parsed,
        in_turn.parsed,
    )

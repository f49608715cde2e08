"""Stories told by several outlets, filler, and a week in balance (content/stories.py,
content/filler.py, content/editorial.py, content/balance.py) on small sites written here,
and on the real blog's corpus.

On the whole corpus (12,763 posts, 7,535 of them filler) the story test finds 261 stories
of two posts or more. A sample of 30 of them (seed 24, tests/data/story_sample_2.json) was
read by hand: 27 report one event (precision 90%); the 3 that do not join a neighbour
(Apple's CEO on AI after an earnings call and a staff meeting reported two days later; a
question about Pentagon surveillance beside the Pentagon's label on Anthropic; "how to
watch" notes for four companies' CES press conferences). The sample drawn before the
story rules of the 2026-W30 breach story (tests/data/story_sample.json: 271 stories then,
27 of 30 one event, 90%) still finds 26 of its 27 stories whole.

Counting a rare title word that the other post's lead holds as shared was tried and left
out: 340 stories, and 8 of the 16 new or grown ones in a sample of 30 were no one event.
"""

from __future__ import annotations

import collections
import json
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from lxml import html as lxml_html

from digest.config import load_config, parse_config
from digest.content.balance import Tally, Weights, balanced
from digest.content.filler import FillerRules, find_filler
from digest.content.memory import Remembered
from digest.content.posts import Post, load_posts
from digest.content.select import Reason, Rules, select_posts, week_window
from digest.content.stories import (
    StoryRules,
    cluster_stories,
    features,
    headline,
    names,
    source_name,
)
from digest.content.text import body_words, sketch
from digest.email.build import build_issue
from digest.email.compose import compose

UTC = timezone.utc
W47 = week_window("2026-W47", UTC)  # type: ignore[arg-type]
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent

BASE: dict[str, object] = {
    "site": {"name": "T", "base_url": "https://example.com"},
    "sender": {"from_name": "T", "from_email": "t@example.com"},
    "categories": {"sections": [{"name": "Work"}, {"name": "Tools"}]},
    "limits": {"per_category": 5, "total": 20},
}

TEMPLATE = (
    "{topic} represents one of the most exciting frontiers in the field today. The rapid "
    "advancement in this area is reshaping how teams approach hard problems and creating "
    "new openings for progress. Current implementations reached a level of polish that was "
    "hard to picture a few years ago, thanks to better methods, more computing power and "
    "better data. Organisations use these tools to improve workflows and cut manual effort, "
    "while end users enjoy simpler interfaces and capable features once kept for experts."
)
UNRELATED = [
    ("Harbour city opens a tidal energy pilot", "Gridline", 0),
    ("Regional rail adds night trains to the coast", "Rolling", 1),
    ("Museum digitises its map collection", "Atlas", 2),
    ("Bakery chain switches to electric vans", "Crumb", 3),
    ("University library extends weekend hours", "Stacks", 4),
    ("Farmers test soil sensors in dry valleys", "Furrow", 5),
]


def rules(**overrides: object) -> Rules:
    data = {**BASE, **overrides}
    return Rules.from_config(parse_config(data))


def post(slug: str, title: str, day: int, source: str | None = None, **fields: object) -> Post:
    values: dict[str, object] = {
        "path": Path(f"{slug}.md"),
        "slug": slug,
        "title": title,
        "date": datetime(2026, 11, 16 + day, 9, 0, tzinfo=UTC),
        "category": "Work",
        "source": source,
        "words": 200,
    }
    values.update(fields)
    return Post(**values)  # type: ignore[arg-type]


def background() -> list[Post]:
    return [
        post(f"other-{n}", title, day, f"https://news.example.org/{n}", excerpt=f"{name} said.")
        for n, (title, name, day) in enumerate(UNRELATED)
    ]


def acme() -> list[Post]:
    return [
        post(
            "acme-buys-dozy",
            "Acme buys the sleep app Dozy",
            2,
            "https://first.example.com/acme-dozy",
            excerpt="Acme, the maker of smart alarm clocks, has bought Dozy for $40 million.",
        ),
        post(
            "acme-acquired-dozy",
            "Acme acquired sleep tracker Dozy",
            3,
            "https://www.second.example.net/2026/acme-acquires-dozy",
            excerpt="The sleep tracker Dozy now belongs to Acme, which paid $40 million.",
            words=500,
        ),
    ]


# --------------------------------------------------------------------------- stories


def test_two_outlets_reporting_one_event_are_one_story() -> None:
    stories = cluster_stories([*acme(), *background()], StoryRules())
    told = [[p.slug for p in s.posts] for s in stories if s.size > 1]
    assert told == [["acme-buys-dozy", "acme-acquired-dozy"]]
    link = next(s for s in stories if s.size > 1).links["acme-acquired-dozy"]
    assert link[0] == "acme-buys-dozy"
    assert link[2] == ("$40", "acme", "dozy", "sleep")


def test_features_are_title_words_and_the_leads_names_and_numbers() -> None:
    found = features(acme()[0])
    assert found == {"acme", "buys", "sleep", "app", "dozy", "$40"}


def test_the_same_event_too_far_apart_is_two_stories() -> None:
    first, second = acme()
    second = replace(second, date=first.date + timedelta(days=4))
    assert all(s.size == 1 for s in cluster_stories([first, second, *background()], StoryRules()))
    wider = cluster_stories([first, second, *background()], StoryRules(days=4))
    assert [s.size for s in wider if s.size > 1] == [2]


def test_a_post_takes_in_an_earlier_report_it_links_to_that_stands_alone() -> None:
    """The third report links best to the second, and to the first as well: the first,
    which the second did not link to, joins the story rather than standing beside it."""
    first = post(
        "a-acme-dozy-rotten",
        "Acme calls Dozy's sleep patents 'rotten' in its Quokka lawsuit",
        2,
        "https://one.example/a",
        excerpt="The lawsuit also names Quokka Labs.",
    )
    second = post(
        "b-acme-sues-dozy",
        "Acme sues Dozy, the sleep tracker maker, in Delaware",
        2,
        "https://two.example/b",
        excerpt="Acme filed on Friday.",
    )
    third = post(
        "c-acme-sues-dozy-patents",
        "Acme sues sleep tracker maker Dozy over patents in Delaware",
        2,
        "https://three.example/c",
        excerpt="Acme says Dozy copied its patents, and names Quokka.",
    )
    stories = cluster_stories([first, second, third, *background()], StoryRules())
    told = [s for s in stories if s.size > 1]
    assert [[p.slug for p in s.posts] for s in told] == [
        ["a-acme-dozy-rotten", "b-acme-sues-dozy", "c-acme-sues-dozy-patents"]
    ]
    assert told[0].links["c-acme-sues-dozy-patents"][0] == "b-acme-sues-dozy"
    link = told[0].links["a-acme-dozy-rotten"]
    assert (link[0], round(link[1], 2)) == ("c-acme-sues-dozy-patents", 0.32)
    assert len(stories) == 1 + len(background())


def test_names_leave_out_sentence_openers_and_the_calendar_and_titles_their_service_tail() -> None:
    assert names("Then an AI detected it. On Tuesday, Acme said") == {"ai", "acme"}
    assert headline("An agent breached Dozy: What users should do next") == {
        "agent",
        "breach",
        "dozy",
    }
    assert headline("Dozy - here's how to get it") == {"dozy"}


def zenith() -> list[Post]:
    """A story told twice on Monday, then continued on Saturday in other words."""
    return [
        post(
            "zenith-launches-quill",
            "Zenith launches the Quill probe to Vesta",
            0,
            "https://first.example.com/quill",
            excerpt="Zenith, the Lisbon space startup, sent Quill towards Vesta.",
        ),
        post(
            "quill-lifts-off",
            "Quill probe lifts off for Vesta on a Zenith rocket",
            0,
            "https://second.example.net/quill",
            excerpt="The Zenith rocket carried Quill from Lisbon.",
        ),
        post(
            "quill-lost",
            "Zenith loses contact with its Vesta probe Quill",
            5,
            "https://third.example.org/quill",
            excerpt="Zenith said on Saturday that Quill went silent.",
        ),
    ]


def test_a_story_told_over_several_days_is_continued_by_a_later_report() -> None:
    """Saturday's report is five days after Monday's two (over story_days: no pair links),
    but it holds the story's core (what Monday's two agree on): one story."""
    monday, other, saturday = zenith()
    stories = cluster_stories([*zenith(), *background()], StoryRules())
    told = [[p.slug for p in s.posts] for s in stories if s.size > 1]
    assert told == [["quill-lifts-off", "zenith-launches-quill", "quill-lost"]]
    link = next(s for s in stories if s.size > 1).links["quill-lost"]
    assert (link[0], round(link[1], 2), link[2]) == (
        "zenith-launches-quill",
        0.76,
        ("probe", "quill", "vesta", "zenith"),
    )
    # One earlier report is no story to continue yet.
    alone = cluster_stories([monday, saturday, *background()], StoryRules())
    assert all(s.size == 1 for s in alone)
    # Past twice story_days from its latest report, the story is over.
    later = replace(saturday, date=monday.date + timedelta(days=7))
    assert all(s.size < 3 for s in cluster_stories([monday, other, later], StoryRules()))
    # A post that shares one name with the story does not continue it.
    crater = post("vesta-craters", "Astronomers map the craters of Vesta", 5, excerpt="NASA.")
    apart = cluster_stories([*zenith()[:2], crater, *background()], StoryRules())
    assert [s.size for s in apart if s.size > 1] == [2]
    selection = select_posts([*zenith(), *background()], W47, rules(), NOW)
    assert [p.slug for p in selection.posts if "quill" in p.slug] == ["quill-lifts-off"]
    assert [p.slug for p in selection.coverage["quill-lifts-off"]] == [
        "zenith-launches-quill",
        "quill-lost",
    ]
    lost = next(d for d in selection.decisions if d.post.slug == "quill-lost")
    assert lost.explain() == (
        "same story as quill-lifts-off (continues it after zenith-launches-quill: 0.76 of "
        "its core, probe, quill, vesta, zenith); under its 'also covered by'"
    )


def test_a_story_is_one_card_with_the_others_under_also_covered_by() -> None:
    selection = select_posts([*acme(), *background()], W47, rules(), NOW)
    assert [p.slug for p in selection.posts].count("acme-acquired-dozy") == 1
    assert "acme-buys-dozy" not in [p.slug for p in selection.posts]
    assert selection.posts[0].slug == "acme-acquired-dozy"  # the lead: the widest story
    assert [p.slug for p in selection.coverage["acme-acquired-dozy"]] == ["acme-buys-dozy"]
    by_slug = {d.post.slug: d for d in selection.decisions}
    left = by_slug["acme-buys-dozy"]
    assert left.reason is Reason.SAME_STORY
    assert left.duplicate_of is not None and left.duplicate_of.slug == "acme-acquired-dozy"
    assert left.explain().startswith("same story as acme-acquired-dozy (")
    assert left.explain().endswith("); under its 'also covered by'")
    assert by_slug["acme-acquired-dozy"].explain().endswith("also covered by first.example.com")


def test_the_card_links_the_other_outlets_in_html_and_text() -> None:
    config = parse_config(BASE)
    selection = select_posts([*acme(), *background()], W47, rules(), NOW)
    email = compose(config, selection, now=NOW)
    assert (
        'Also covered by <a href="https://first.example.com/acme-dozy?' in email.html
        or 'Also covered by <a href="https://first.example.com/acme-dozy"' in email.html
    )
    assert ">first.example.com</a>" in email.html
    assert "   Also covered by:\n     first.example.com: https://first.example.com/acme-dozy\n" in (
        email.text
    )
    assert source_name(acme()[1]) == "second.example.net"


def test_a_story_sent_last_week_is_out_unless_its_title_brings_something_new() -> None:
    sent = acme()[0]
    earlier = [
        Remembered("2026-W46", sent.slug, "x", None, (), tuple(sorted(features(sent)))),
    ]
    repeat = post(
        "dozy-now-acme",
        "Dozy sleep app now part of Acme",
        1,
        "https://third.example.com/dozy",
        excerpt="Acme bought Dozy for $40 million.",
    )
    news = post(
        "acme-dozy-layoffs",
        "Acme cuts 30 Dozy sleep app jobs after buying it",
        1,
        "https://fourth.example.com/dozy",
        excerpt="Acme, Dozy.",
    )
    selection = select_posts([repeat, news, *background()], W47, rules(), NOW, earlier)
    by_slug = {d.post.slug: d for d in selection.decisions}
    assert by_slug["dozy-now-acme"].reason is Reason.EARLIER_STORY
    assert (
        by_slug["dozy-now-acme"].explain().startswith("same story as acme-buys-dozy in 2026-W46 (")
    )
    assert by_slug["dozy-now-acme"].explain().endswith("), no new names or numbers")
    assert by_slug["acme-dozy-layoffs"].selected
    assert "follows up same story as acme-buys-dozy in 2026-W46" in (
        by_slug["acme-dozy-layoffs"].explain()
    )
    assert by_slug["acme-dozy-layoffs"].explain().endswith(": new 30")


# --------------------------------------------------------------------------- filler


def _templated(n: int, topic: str, day: int = 1) -> Post:
    body = TEMPLATE.format(topic=topic)
    return post(
        f"filler-{n}",
        f"{topic}: Complete Guide to Recent Innovations",
        day,
        sketch=sketch(body_words(body)),
        words=len(body.split()),
    )


def _real(n: int, day: int = 2) -> Post:
    body = " ".join(f"w{n}x{i}" for i in range(80))
    return post(f"real-{n}", f"Real report number {n}", day, sketch=sketch(body_words(body)))


TOPICS = [f"Topic {chr(65 + i)} {chr(75 + i)}" for i in range(12)]


def test_a_body_shared_with_many_posts_is_filler_learned_from_the_site() -> None:
    posts = [_templated(i, topic) for i, topic in enumerate(TOPICS)] + [_real(1), _real(2)]
    found = find_filler(posts, FillerRules())
    assert sorted(found) == sorted(f"filler-{i}" for i in range(12))
    assert {f.rule for f in found.values()} == {"template"}
    assert found["filler-0"].detail.endswith(
        "of its body is shared with 10 or more other posts (a template or site boilerplate)"
    )
    few = find_filler([*posts[:5], _real(1)], FillerRules())
    assert few == {}  # five copies are not "many"


def test_a_body_under_the_length_floor_is_filler_and_an_uncounted_one_is_not() -> None:
    short = post("short", "A short note", 1, words=12)
    unknown = post("feed-entry", "A feed entry", 1, words=None)
    found = find_filler([short, unknown], FillerRules(min_words=30))
    assert find_filler([short, unknown], FillerRules()) == {}  # no floor by default
    assert list(found) == ["short"]
    assert found["short"].detail == "filler: 12 words, under the floor of 30"


@pytest.mark.parametrize(
    ("mode", "shown"),
    [("drop", ["real-1", "real-2"]), ("demote", ["real-1", "real-2", "filler-"]), ("keep", None)],
)
def test_selection_filler_drops_demotes_or_keeps(mode: str, shown: list[str] | None) -> None:
    posts = [_templated(i, topic) for i, topic in enumerate(TOPICS)] + [_real(1), _real(2)]
    chosen = rules(selection={"filler": mode}, limits={"per_category": 3, "total": 20})
    selection = select_posts(posts, W47, chosen, NOW)
    slugs = [p.slug for p in selection.posts]
    by_slug = {d.post.slug: d for d in selection.decisions}
    if mode == "drop":
        assert slugs == shown
        out = collections.Counter(by_slug[f"filler-{i}"].reason for i in range(12))
        assert out[Reason.FILLER] >= 1  # the rest are near-duplicates of the first
        assert out[Reason.FILLER] + out[Reason.NEAR_DUPLICATE] == 12
    elif mode == "demote":
        assert slugs[:2] == ["real-2", "real-1"] or slugs[:2] == ["real-1", "real-2"]
        assert slugs[2].startswith("filler-")
        assert "filler, demoted: " in by_slug[slugs[2]].explain()
    else:
        assert any(s.startswith("filler-") for s in slugs[:2])
        assert not any(d.reason is Reason.FILLER for d in selection.decisions)


# --------------------------------------------------------------------------- balance


def test_picks_spread_over_the_week_rather_than_the_newest_day() -> None:
    sunday = [post(f"sun-{i}", f"Sunday piece {i}", 6, f"https://s{i}.example/") for i in range(4)]
    week = [post(f"day-{d}", f"Weekday piece {d}", d, f"https://d{d}.example/") for d in range(3)]
    picked, said = balanced(
        [*sunday, *week], 3, Weights(), W47.start, {}, {}, Tally(
            collections.Counter(), collections.Counter()
        ), lambda p: (p.slug,), lambda p: (),
    )  # fmt: skip
    first_three = [p.slug for p in picked[:3]]
    assert sum(1 for slug in first_three if slug.startswith("sun-")) == 1
    assert said[first_three[0]] == "score 0.64 (0.64 newest)"
    assert (
        said[first_three[1]].endswith("− 0.60 same day)") or "same day" not in said[first_three[1]]
    )


def test_weights_are_configured_and_zero_weights_keep_the_rank_order() -> None:
    sunday = [post(f"sun-{i}", f"Sunday piece {i}", 6) for i in range(4)]
    week = [post(f"day-{d}", f"Weekday piece {d}", d) for d in range(3)]
    flat = rules(
        selection={"weight_day": 0, "weight_source": 0, "weight_newest": 0, "stories": False},
        limits={"per_category": 3, "rank": ["newest"]},
    )
    assert [p.slug for p in select_posts([*sunday, *week], W47, flat, NOW).posts] == [
        "sun-0",
        "sun-1",
        "sun-2",
    ]
    spread = select_posts([*sunday, *week], W47, rules(limits={"per_category": 3}), NOW)
    days = [p.date.weekday() for p in spread.posts]
    assert days.count(6) == 1


# --------------------------------------------------------------------------- the corpus

CATEGORIES = [
    "Work", "General AI", "Healthcare", "Ethics", "Tools", "Finance", "Technology",
    "Research", "Business", "Productivity", "Transportation", "Smart Home", "Education",
]  # fmt: skip


@pytest.mark.corpus
@pytest.mark.slow
def test_w30_has_the_co_star_story_once_with_the_other_outlet(
    tmp_path: Path, corpus_dir: Path
) -> None:
    data = {
        "site": {"name": "AIVibe Weekly", "base_url": "https://aivibe.example.com"},
        "sender": {
            "from_name": "AIVibe Weekly",
            "from_email": "weekly@aivibe.example.com",
            "unsubscribe_mailto": "unsubscribe@aivibe.example.com",
            "postal_address": "AIVibe, 1 Example Road, Springfield",
        },
        "content": {"posts_dir": str(corpus_dir), "cache_dir": str(tmp_path / "cache")},
        "categories": {"sections": [{"name": c} for c in CATEGORIES], "unlisted": "skip"},
        "limits": {"per_category": 3, "total": 30},
        "serve": {"public_url": "https://aivibe.example.com"},
        "out_dir": str(tmp_path / "out"),
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(tmp_path / "config.yaml")
    result = build_issue(config, now=NOW, week="2026-W30", write=False)
    titles = [p.title for p in result.selection.posts]
    co_star = [t for t in titles if "Co-Star" in t]
    assert co_star == ["Midjourney acquired the astrology app Co-Star"]
    also = result.selection.coverage["midjourney-acquired-the-astrology-app-co-star"]
    assert [p.slug for p in also] == ["midjourney-bought-the-astrology-app-co-star"]
    verge = (
        "https://www.theverge.com/ai-artificial-intelligence/970894/midjourney-co-star-acquisition"
    )
    assert f'<a href="{verge}">theverge.com</a>' in result.composed.html
    assert f"     theverge.com: {verge}\n" in result.composed.text
    cards = lxml_html.document_fromstring(result.composed.html).xpath("//h3/a/text()")
    assert [t for t in cards if "Co-Star" in t] == co_star
    assert len(result.composed.subject) <= 70 and "…" not in result.composed.subject
    assert not [p for p in result.selection.posts if p.slug.endswith(tuple("0123456789"))]
    # A breach at one AI company, told from Monday to Sunday by five outlets in their own
    # words, is one card: the first report (Monday, before OpenAI was named), the reports
    # of Tuesday and Wednesday, and the CEO's answer on Sunday (which continues it).
    breach = {
        "an-ai-agent-breached-hugging-face-before-an-ai-defender-caught-it-what-users-should-do-next",
        "openai-says-hugging-face-was-breached-by-its-pre-release-models",
        "openai-says-it-accidentally-hacked-hugging-face-with-a-new-ai-system",
        "how-openai-s-human-mistake-led-to-the-ai-powered-hack-on-hugging-face",
        "openai-admits-its-models-hacked-hugging-face-on-their-own",
        "hugging-face-ceo-calls-for-radical-transparency-after-unprecedented-openai-hack",
    }
    cards = [p for p in result.selection.posts if p.slug in breach]
    assert [p.slug for p in cards] == [
        "openai-says-hugging-face-was-breached-by-its-pre-release-models"
    ]
    told = {p.slug for p in result.selection.coverage[cards[0].slug]} | {cards[0].slug}
    assert told == breach
    named = [p.slug for p in result.selection.posts if "Hugging Face" in p.title]
    assert named == [cards[0].slug]
    assert "https://www.zdnet.com/article/hugging-face-breach-blamed-on-ai-agent/" in (
        result.composed.html
    )


@pytest.mark.corpus
@pytest.mark.slow
def test_whole_corpus_stories_and_the_hand_checked_sample(corpus_dir: Path) -> None:
    """261 stories of two or more posts. A sample of 30 of them (seed 24, kept in
    tests/data/story_sample_2.json) was read by hand: 27 report one event (precision
    90%). The earlier sample (tests/data/story_sample.json, 27 of 30) still finds 26 of
    its 27 stories whole. This checks the run finds the same stories and prints the
    figures."""
    posts = load_posts(corpus_dir, UTC).posts  # type: ignore[arg-type]
    filler = find_filler(posts, FillerRules())
    news = [p for p in posts if p.slug not in filler]
    stories = [s for s in cluster_stories(news, StoryRules()) if s.size >= 2]
    print(f"{len(posts)} posts, {len(filler)} filler, {len(stories)} stories of 2 or more")
    assert 0.55 * len(posts) <= len(filler) <= 0.62 * len(posts)  # "about half"
    assert 240 <= len(stories) <= 290
    story_of = {p.slug: n for n, s in enumerate(stories) for p in s.posts}
    for name, judged, whole in (("story_sample.json", 27, 25), ("story_sample_2.json", 27, 27)):
        sample = json.loads((ROOT / "data" / name).read_text(encoding="utf-8"))
        judged_same = [entry for entry in sample if entry["same_event"]]
        assert (len(sample), len(judged_same)) == (30, judged)
        kept = sum(
            1
            for entry in judged_same
            if len({story_of.get(slug, -1 - i) for i, slug in enumerate(entry["slugs"])}) == 1
        )
        assert kept >= whole, f"only {kept} of the {judged} stories of {name} are found whole"
    random.seed(24)
    again = random.sample(stories, 30)
    print("sample now:", [[p.slug for p in s.posts][:2] for s in again][:3])


def test_every_newsletters_heading_reads_like_the_first_ones() -> None:
    from digest.content.select import Selection
    from digest.email.compose import issue_title

    for issue_id, heading in (
        ("2026-W47", "Week 47, 2026"),
        ("links-2026-W47", "Week 47, 2026"),
        ("links-2026-11-17", "16–22 November 2026"),
    ):
        selection = Selection(replace(W47, issue_id=issue_id), (), ())
        assert issue_title(selection) == heading


def test_a_second_newsletters_email_never_shows_its_internal_id() -> None:
    """Only links carry the id (the archive address, the campaign tag): no heading, no
    subject, no line a reader sees."""
    selection = select_posts([*acme(), *background()], W47, rules(), NOW)
    selection = replace(selection, window=replace(selection.window, issue_id="links-2026-W47"))
    email = compose(parse_config(BASE), selection, now=NOW)
    page = lxml_html.document_fromstring(email.html)
    assert "links-2026-W47" not in page.text_content()
    assert "Week 47, 2026" in page.text_content()
    assert "links-" not in email.subject
    shown = [line for line in email.text.splitlines() if "links-2026-W47" in line]
    assert "View in browser: https://example.com/archive/links-2026-W47/" in shown
    outside_links = [w for line in shown for w in line.split() if "://" not in w]
    assert not [w for w in outside_links if "links-" in w]


def test_select_explain_shows_the_rules_and_weights(sample_site: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    done = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "select", "--week", "2026-W47",
               "--explain"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert (
        "\nfiller: drop; stories: threshold 0.3, within 3 days; score = 1.0 × coverage + "
        "0.1 × newest − 0.6 × same day − 0.3 × same outlet\n"
    ) in done.stdout
    assert "selected: rank 1 (featured, source); score 0.10 (0.10 newest)" in done.stdout

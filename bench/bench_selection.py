"""What a reader gets in every week of 2026 of the real corpus: the editor's selection
against the plain one, measured in the same run.

    python bench/bench_selection.py [--posts /tmp/corpus/posts] [--write docs/selection.md]

The site is the one the corpus tests use: 13 sections, 3 posts each, 30 in all, each week
remembering the week before. For each week, twice:

- ``editor``: the selection as configured by default (filler dropped, each story once,
  picks balanced across days and outlets, the lead the widest story, subjects from whole
  headlines, thin sections folded into "Also this week");
- ``plain``: the same rules with the editor's pass, the balance and the folding off and
  the subject cut to fit (what digest did before).

Figures, per week and in total: filler cards shown (titles in the corpus's template
forms, told apart without the body rule: "Complete Guide to Recent Innovations", "What
You Need to Know", ...), weekend cards against the weekend share of the corpus's news,
subjects cut mid-headline (an ellipsis), one-post sections, stories merged (cards
with "also covered by"), and pairs of cards that may still tell one story: dated within
``selection.story_days`` and sharing two rare names or numbers of their titles and leads
(rare among the week's posts, as the story test counts them; each pair is printed on
stderr to be read). ``--write`` puts the table in docs/selection.md between its
markers.
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path

from digest.config import Config, parse_config
from digest.content.memory import Remembered, memory_of, unpack_sketch
from digest.content.posts import Post, load_posts
from digest.content.select import Rules, Selection, select_posts, week_window
from digest.content.stories import LEAD_CHARS, StoryIndex, names
from digest.email.headline import _subject

ROOT = Path(__file__).resolve().parent.parent
TARBALL = ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
CATEGORIES = [
    "Work", "General AI", "Healthcare", "Ethics", "Tools", "Finance", "Technology",
    "Research", "Business", "Productivity", "Transportation", "Smart Home", "Education",
]  # fmt: skip
TEMPLATE_TITLE = re.compile(
    r"Complete Guide to Recent Innovations|What You Need to Know$|Trends and Predictions$"
    r"|Latest Research and Applications$|Latest Developments and Future Prospects$"
    r"|is Reshaping Technology$|Revolutionary Advances in 2025$|Transforms Industry Standards$"
)
START, END = "<!-- bench_selection:start -->", "<!-- bench_selection:end -->"


def site_config(plain: bool) -> Config:
    data: dict[str, object] = {
        "site": {"name": "AIVibe Weekly", "base_url": "https://aivibe.example.com"},
        "sender": {"from_name": "AIVibe Weekly", "from_email": "weekly@aivibe.example.com"},
        "categories": {"sections": [{"name": c} for c in CATEGORIES], "unlisted": "skip"},
        "limits": {"per_category": 3, "total": 30, **({"min_per_section": 1} if plain else {})},
        "selection": {"min_words": 30},  # the corpus's scraped posts: a floor suits them
    }
    return parse_config(data)


@dataclass
class Figures:
    cards: int = 0
    filler: int = 0
    weekend: int = 0
    cut: int = 0
    one_post: int = 0
    merged: int = 0
    twins: int = 0


def is_filler_title(post: Post) -> bool:
    return not post.source and TEMPLATE_TITLE.search(post.title) is not None


def twins(selection: Selection, near: list[Post], days: int) -> list[tuple[Post, Post]]:
    """Pairs of cards dated within ``days`` that share two names rare among ``near``."""
    index = StoryIndex(p for p in near if not is_filler_title(p))
    named = {p.slug: names(p.title) | names(p.excerpt[:LEAD_CHARS]) for p in selection.posts}
    found = []
    for n, a in enumerate(selection.posts):
        for b in selection.posts[n + 1 :]:
            shared = {f for f in named[a.slug] & named[b.slug] if index.rare(f)}
            if len(shared) >= 2 and abs((a.date - b.date).days) <= days:
                found.append((a, b))
    return found


def measure(selection: Selection, subject: str, pairs: int = 0) -> Figures:
    posts = selection.posts
    return Figures(
        cards=len(posts),
        filler=sum(1 for p in posts if is_filler_title(p)),
        weekend=sum(1 for p in posts if p.date.weekday() >= 5),
        cut=int("…" in subject),
        one_post=sum(1 for s in selection.sections if len(s.posts) == 1),
        merged=sum(1 for p in posts if selection.coverage.get(p.slug)),
        twins=pairs,
    )


def plain_subject(config: Config, posts: list[Post], issue_id: str) -> str:
    """The subject as digest wrote it before: the title cut at a word to fit 70."""
    subject = f"{config.site.name}: {posts[0].title} and {len(posts) - 1} more"
    if len(subject) <= 70:
        return subject
    room = 70 - (len(subject) - len(posts[0].title))
    cut = posts[0].title[: room - 1]
    cut = cut[: cut.rfind(" ")] if cut.rfind(" ") > room // 2 else cut
    return subject.replace(posts[0].title, cut.rstrip(" ,;:-–—") + "…")


def remembered(selection: Selection) -> list[Remembered]:
    return [
        Remembered(
            selection.issue_id,
            entry["slug"],
            entry["title"],
            entry["source"],
            unpack_sketch(entry["sketch"]),
            tuple(entry["story"]),
        )
        for entry in memory_of(selection.posts)
    ]


def run(posts: list[Post], weeks: list[str]) -> list[tuple[str, Figures, Figures, str, str]]:
    rows = []
    editor_config, plain_config = site_config(False), site_config(True)
    editor_rules = Rules.from_config(editor_config)
    plain_rules = replace(Rules.from_config(plain_config), editor=None, weights=None)
    earlier: dict[str, list[Remembered]] = {"editor": [], "plain": []}
    for week in weeks:
        window = week_window(week, timezone.utc)  # type: ignore[arg-type]
        now = window.end
        near = [p for p in posts if window.start.date() <= p.date.date() <= window.end.date()]
        near += [p for p in posts if (window.start - p.date).days in (0, 1) and p not in near]
        mine = select_posts(near, window, editor_rules, now, earlier["editor"])
        theirs = select_posts(near, window, plain_rules, now, earlier["plain"])
        if not mine.posts or not theirs.posts:
            continue
        subject = _subject(editor_config, mine.posts, week, None)
        old_subject = plain_subject(plain_config, theirs.posts, week)
        days = editor_config.selection.story_days
        pairs = twins(mine, near, days)
        for a, b in pairs:
            print(f"{week}: {a.title!r} ~ {b.title!r}", file=sys.stderr)
        figures = measure(mine, subject, len(pairs))
        old = measure(theirs, old_subject, len(twins(theirs, near, days)))
        rows.append((week, figures, old, subject, old_subject))
        earlier = {"editor": remembered(mine), "plain": remembered(theirs)}
    return rows


def table(rows: list[tuple[str, Figures, Figures, str, str]], corpus_weekend: float) -> str:
    lines = [
        "| week | cards | filler shown | weekend cards | subject cut | one-post sections "
        "| stories merged | cards sharing two rare names | subject |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    total = Figures()
    base = Figures()
    for week, mine, theirs, subject, _ in rows:
        share = mine.weekend / mine.cards if mine.cards else 0.0
        old_share = theirs.weekend / theirs.cards if theirs.cards else 0.0
        lines.append(
            f"| {week} | {mine.cards} ({theirs.cards}) | {mine.filler} ({theirs.filler}) "
            f"| {share:.0%} ({old_share:.0%}) | {mine.cut} ({theirs.cut}) "
            f"| {mine.one_post} ({theirs.one_post}) | {mine.merged} "
            f"| {mine.twins} ({theirs.twins}) | {subject} |"
        )
        for name in ("cards", "filler", "weekend", "cut", "one_post", "merged", "twins"):
            setattr(total, name, getattr(total, name) + getattr(mine, name))
            setattr(base, name, getattr(base, name) + getattr(theirs, name))
    lines.append(
        f"| all {len(rows)} | {total.cards} ({base.cards}) | {total.filler} ({base.filler}) "
        f"| {total.weekend / max(total.cards, 1):.0%} ({base.weekend / max(base.cards, 1):.0%}) "
        f"| {total.cut} ({base.cut}) | {total.one_post} ({base.one_post}) | {total.merged} "
        f"| {total.twins} ({base.twins}) | |"
    )
    lines.append("")
    lines.append(
        f"In brackets: the plain selection of the same run. The corpus's news posts "
        f"(template titles left out) fall on a weekend {corpus_weekend:.0%} of the time."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=Path, help="the corpus's posts/ folder (default: unpack)")
    parser.add_argument("--write", type=Path, help="put the table in this Markdown file")
    args = parser.parse_args()
    folder = args.posts
    if folder is None:
        unpacked = Path(tempfile.mkdtemp(prefix="bench-selection-"))
        with tarfile.open(TARBALL) as archive:
            archive.extractall(unpacked, filter="data")
        folder = unpacked / "posts"
    started = time.perf_counter()
    posts = load_posts(folder, timezone.utc).posts  # type: ignore[arg-type]
    print(f"{len(posts)} posts read in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    news = [p for p in posts if not is_filler_title(p)]
    corpus_weekend = sum(1 for p in news if p.date.weekday() >= 5) / max(len(news), 1)
    last = max(p.date for p in posts).date()
    weeks = [
        f"2026-W{n:02d}"
        for n in range(1, 54)
        if n <= 52 and date.fromisocalendar(2026, n, 7) <= last
    ]
    started = time.perf_counter()
    rows = run(posts, weeks)
    print(f"{len(rows)} weeks selected twice in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)  # fmt: skip
    text = table(rows, corpus_weekend)
    print(text)
    if args.write:
        doc = args.write.read_text(encoding="utf-8")
        head, _, rest = doc.partition(START)
        _, _, tail = rest.partition(END)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        args.write.write_text(
            f"{head}{START}\n<!-- python bench/bench_selection.py --write {args.write} "
            f"({stamp}) -->\n\n{text}\n\n{END}{tail}",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

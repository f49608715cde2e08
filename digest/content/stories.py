"""Posts that report the same event, whichever outlet wrote them: one story, one card.

Two outlets writing up one event share almost no body text, so body sketches cannot find
them. What they share is the event's words: the names (people, companies, products), the
numbers, and the title's content words. Each post is reduced to those **features**: the
content words of its title (stop words out, light stemming: "acquired" and "acquire"
meet) and the names and numbers of its title and lead (a capitalised word that does not
open a sentence, a word with an inner capital, or one with a digit; not a day's or a
month's name). A title's service tail ("…: What users should do next", "… - here's how
to get it") says what the piece does for its reader, not what happened: it is left out,
as it would only make two reports of one event look apart.

Two posts are **the same story** when they are dated within ``days`` of each other and
the features they share weigh at least ``threshold`` of the features either has, each
feature weighed by how rare it is among the posts loaded (its inverse document
frequency: "AI" or "OpenAI" weigh little on an AI blog, "Co-Star" much), and they share
at least two rare features (see below), and their titles do
not hold only different numbers ("Opus 4" and "Opus 5"). The score is taken twice, on the
whole features and on the titles' alone, and the better counts. A story is every
post linked to another by that test (posts are taken oldest first; a post joins the story
it scores highest with, and takes in the earlier posts it links to that stand alone).

A story told several times is also **continued** by a later post that holds most of its
core (the features two or more of its posts share: ``CORE_SHARE`` of their weight, and
``MIN_SHARED + 1`` rare ones, held in its features or in its lead's words: a lead that
says "breached" holds the story's "breach"), dated within twice ``days`` of one of its posts: a
story told on Monday, Wednesday and Saturday, or a breach reported on Tuesday whose
company answers on Sunday, is one story, although each report words it its own way. A
feature is rare in at most 2% of the posts loaded, or in ``RARE_POSTS`` (10) or fewer:
when few posts are loaded (one week, one feed), a story ten outlets told must not make
its own names common.

The same tests decide whether a post repeats a story an earlier issue sent
(:func:`follow_up`): a post that is the same story as a remembered one (by the score, or
holding ``CORE_SHARE`` of its features) is out, unless its title brings a name or number
the remembered story did not have (a newer development).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from digest.content.posts import Post

# One word: a letter, digit, $ or %, then word characters and inner punctuation (linear:
# one quantifier; trailing punctuation is stripped after the match).
_WORD = re.compile(r"[\w$%][\w’'$%.-]*")
_STOP = frozenset(
    """a an the and or but of to in on for with at by from as is are was were be been being
    it its this that these those into about over after before new how why what who when will
    can could would should may might has have had not no than more most says said just now
    up out their his her they we you our your i he she them there here if so do does did
    get gets got all any some one two via vs amid after while""".split()  # noqa: SIM905
)
_SUFFIXES = ("ing", "ed", "es", "s")
MIN_SHARED = 2  # rare features two posts must share, whatever they weigh
COMMON_FEATURE = 0.02  # a feature in more than this share of posts is too common to link by
RARE_POSTS = 10  # ... unless it is in this many posts or fewer: one story's own reports
FOLLOW = 2  # a story of two posts or more is followed this many times story_days
# A headline's tail that tells the reader what the piece will do for them, not what
# happened ("…: What users should do next", "… - here's how to get it"): no event's words.
_SERVICE_TAIL = re.compile(
    r"\s*(?::|\s-|—|–)\s*(?:what|how to|here's|here’s|here is)\b.*$",
    re.IGNORECASE,
)
LEAD_CHARS = 200  # the lead: the excerpt's first characters
CORE_SHARE = 0.75  # the share of a story's core a later post must hold to continue it
# Capitalised, but not names: the calendar's words ("on Tuesday", "in July").
_CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march
    april june july august september october november december""".split()  # noqa: SIM905
)
# A word right after one of these opens a sentence (or a quotation): its capital says
# nothing ("Then an AI detected it.").
_OPENS = re.compile(r"[.!?:;…\"“‘]\s*$")


def _stem(word: str) -> str:
    word = word.casefold().replace("’", "'").rstrip(".'-")
    word = word.removesuffix("'s")
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _is_name(word: str, first: bool) -> bool:
    if any(c.isdigit() for c in word):
        return True
    if word[:1].isupper() and not first:
        return True
    return any(c.isupper() for c in word[1:])


def names(text: str) -> frozenset[str]:
    """The names and numbers of a text, stemmed as features are: not a capitalised word
    that opens a sentence, nor a day's or a month's name."""
    found: set[str] = set()
    for place, match in enumerate(_WORD.finditer(text)):
        word = match.group().rstrip(".'’-")
        opens = place == 0 or _OPENS.search(text[max(0, match.start() - 3) : match.start()])
        if word and _is_name(word, bool(opens)):
            stem = _stem(word)
            if stem and stem not in _STOP and stem not in _CALENDAR:
                found.add(stem)
    return frozenset(found)


def words(text: str) -> frozenset[str]:
    """Every content word of a text, stemmed as features are (a lead's vocabulary)."""
    found = {_stem(match.group()) for match in _WORD.finditer(text)}
    return frozenset(word for word in found if word and word not in _STOP)


def headline(title: str) -> frozenset[str]:
    """A title's features: its content words, names and numbers, not its service tail."""
    title = _SERVICE_TAIL.sub("", title)
    return words(title) | names(title)


def features(post: Post, lead_chars: int = LEAD_CHARS) -> frozenset[str]:
    """The words that say which event a post reports (see the module docstring)."""
    return headline(post.title) | names(post.excerpt[:lead_chars])


def source_name(post: Post) -> str:
    """The outlet a post reports from: its source URL's host without ``www.``."""
    if not post.source:
        return ""
    return urlsplit(post.source.strip()).netloc.casefold().removeprefix("www.")


@dataclass(frozen=True)
class StoryRules:
    """The test's two numbers (``selection.story_*`` in the config)."""

    threshold: float = 0.3
    days: int = 3


@dataclass
class Story:
    """Posts that report one event; ``links`` says why each later post joined."""

    posts: list[Post] = field(default_factory=list)
    links: dict[str, tuple[str, float, tuple[str, ...]]] = field(default_factory=dict)
    continued: set[str] = field(default_factory=set)  # posts that joined by its core

    @property
    def size(self) -> int:
        return len(self.posts)


class StoryIndex:
    """Features and their weights for a set of posts (the ones loaded with an issue)."""

    def __init__(self, posts: Iterable[Post]) -> None:
        self.features: dict[str, frozenset[str]] = {}
        self.titles: dict[str, frozenset[str]] = {}
        self.leads: dict[str, frozenset[str]] = {}
        for post in posts:
            self.features[post.slug] = features(post)
            self.titles[post.slug] = headline(post.title)
            self.leads[post.slug] = words(post.excerpt[:LEAD_CHARS])
        counts: Counter[str] = Counter()
        for found in self.features.values():
            counts.update(found)
        self.total = max(len(self.features), 1)
        self.counts = counts

    def weight(self, feature: str) -> float:
        return math.log((self.total + 1) / (self.counts.get(feature, 0) + 1)) + 0.1

    def rare(self, feature: str) -> bool:
        return self.counts.get(feature, 0) <= max(RARE_POSTS, COMMON_FEATURE * self.total)

    def of(self, post: Post) -> frozenset[str]:
        found = self.features.get(post.slug)
        return found if found is not None else features(post)

    def may_link(self, a: Post, b: Post) -> bool:
        """Whether two posts can be one story at all: they share ``MIN_SHARED`` rare
        features, and their titles do not both hold numbers none of which they share
        ("Opus 4" and "Opus 5" are two releases)."""
        mine, theirs = self.of(a), self.of(b)
        if sum(1 for f in mine & theirs if self.rare(f)) < MIN_SHARED:
            return False
        numbers_a = {f for f in self.title(a) if any(c.isdigit() for c in f)}
        numbers_b = {f for f in self.title(b) if any(c.isdigit() for c in f)}
        return not (numbers_a and numbers_b and not numbers_a & numbers_b)

    def compare(self, a: Post, b: Post) -> tuple[float, tuple[str, ...]]:
        """The better of the two scores (whole features, titles alone) and what is shared."""
        mine, theirs = self.of(a), self.of(b)
        score = max(self.score(mine, theirs), self.score(self.title(a), self.title(b)))
        return score, tuple(sorted(mine & theirs))

    def lead(self, post: Post) -> frozenset[str]:
        found = self.leads.get(post.slug)
        return found if found is not None else words(post.excerpt[:LEAD_CHARS])

    def core(self, posts: Sequence[Post]) -> frozenset[str]:
        """What a story's posts agree on: the features two or more of them hold."""
        counts = Counter(f for post in posts for f in self.of(post))
        return frozenset(f for f, n in counts.items() if n >= 2)

    def continues(self, post: Post, core: frozenset[str]) -> float | None:
        """The share of a story's ``core`` (by weight) ``post`` holds, when it holds at
        least ``CORE_SHARE`` of it and ``MIN_SHARED + 1`` of its rare features; else None.
        The core of a story told several times is what its posts agree on, so a later
        report may add its own words (a CEO's name, "transparency") without leaving it."""
        held = core & (self.of(post) | self.lead(post))
        if sum(1 for f in held if self.rare(f)) < MIN_SHARED + 1:
            return None
        share = sum(self.weight(f) for f in held) / sum(self.weight(f) for f in core)
        return share if share >= CORE_SHARE else None

    def title(self, post: Post) -> frozenset[str]:
        found = self.titles.get(post.slug)
        return found if found is not None else headline(post.title)

    def score(self, a: frozenset[str], b: frozenset[str]) -> float:
        """The weight of what ``a`` and ``b`` share over the weight of what either has."""
        union = a | b
        if not union:
            return 0.0
        shared = sum(self.weight(f) for f in a & b)
        return shared / sum(self.weight(f) for f in union)


def cluster_stories(
    posts: Sequence[Post], rules: StoryRules, index: StoryIndex | None = None
) -> list[Story]:
    """Every story among ``posts``, oldest post first in each (single posts included).

    A post joins the story of the earlier post it scores highest with (dated within
    ``rules.days``), and takes in every earlier post it links to that stands alone (one
    that no later post chose as its best: "Apple calls OpenAI's business 'rotten'" beside
    two "Apple sues OpenAI" reports of the same day); failing that, a story it continues
    (:meth:`StoryIndex.continues`): one of two posts or more whose latest post is within
    ``rules.days``, so a story told on Monday, Wednesday and Saturday stays one."""
    index = index or StoryIndex(posts)
    span = timedelta(days=rules.days)
    stories: list[Story] = []
    story_of: dict[str, Story] = {}
    by_feature: dict[str, list[Post]] = defaultdict(list)
    for post in sorted(posts, key=lambda p: (p.date, p.slug)):
        candidates: dict[str, Post] = {}
        for feature in index.of(post):
            if not index.rare(feature):
                continue
            for other in by_feature[feature]:
                if post.date - other.date <= span * FOLLOW:
                    candidates[other.slug] = other
            by_feature[feature].append(post)
        near = [p for p in candidates.values() if post.date - p.date <= span]
        links = _links(post, near, index, rules.threshold)
        if not links:
            joined = _continued(post, candidates.values(), story_of, index)
            if joined is None:
                story = Story([post])
                stories.append(story)
            else:
                story, score, shared = joined
                story.links[post.slug] = (story.posts[-1].slug, score, shared)
                story.continued.add(post.slug)
                story.posts.append(post)
        else:
            score, best, shared = links[0]
            story = story_of[best.slug]
            story.posts.append(post)
            story.links[post.slug] = (best.slug, score, shared)
            for score, other, shared in links[1:]:
                alone = story_of[other.slug]
                if alone.size == 1 and alone is not story:
                    stories = [s for s in stories if s is not alone]
                    story.posts.insert(0, other)
                    story.posts.sort(key=lambda p: (p.date, p.slug))
                    story.links[other.slug] = (post.slug, score, shared)
                    story_of[other.slug] = story
        story_of[post.slug] = story
    return stories


def _links(
    post: Post, near: Iterable[Post], index: StoryIndex, threshold: float
) -> list[tuple[float, Post, tuple[str, ...]]]:
    """The posts of ``near`` that ``post`` is one story with, best first: score, post and
    the features they share."""
    found: list[tuple[float, Post, tuple[str, ...]]] = []
    for other in near:
        if not index.may_link(post, other):
            continue
        score, shared = index.compare(post, other)
        if score >= threshold:
            found.append((score, other, shared))
    return sorted(found, key=lambda link: (-link[0], link[1].date, link[1].slug))


def _continued(
    post: Post, near: Iterable[Post], story_of: dict[str, Story], index: StoryIndex
) -> tuple[Story, float, tuple[str, ...]] | None:
    """The story of two posts or more, among those of ``near``, that ``post`` continues
    best, with the share of its core the post holds and that core."""
    best: tuple[Story, float, tuple[str, ...]] | None = None
    seen: set[int] = set()
    for other in near:
        story = story_of[other.slug]
        if story.size < 2 or id(story) in seen:
            continue
        seen.add(id(story))
        core = index.core(story.posts)
        share = index.continues(post, core)
        if share is not None and (best is None or share > best[1]):
            held = core & (index.of(post) | index.lead(post))
            best = (story, share, tuple(sorted(held)))
    return best


@dataclass(frozen=True)
class Earlier:
    """A story an earlier issue sent: its issue, post and features."""

    issue_id: str
    slug: str
    features: frozenset[str]


def follow_up(
    post: Post, earlier: Sequence[Earlier], index: StoryIndex, rules: StoryRules
) -> tuple[Earlier, float, tuple[str, ...]] | None:
    """The earlier story ``post`` repeats, with its score and the new names or numbers
    the post's title brings (empty: nothing new, so the post is a repeat)."""
    mine = index.of(post)
    best: tuple[Earlier, float] | None = None
    for old in earlier:
        if sum(1 for f in mine & old.features if index.rare(f)) < MIN_SHARED:
            continue
        score = max(index.score(mine, old.features), index.continues(post, old.features) or 0)
        if score >= rules.threshold and (best is None or score > best[1]):
            best = (old, score)
    if best is None:
        return None
    new = tuple(sorted(f for f in names(post.title) - best[0].features if index.rare(f)))
    return best[0], best[1], new

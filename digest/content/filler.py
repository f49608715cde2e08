"""Posts that are not news: template filler, site boilerplate, bodies under a length floor.

Learned from the site itself, with no list of phrases: every post's body sketch (the
bottom-k MinHash of its 4-word shingles, :func:`digest.content.text.sketch`) is compared
with the sketches of the other posts loaded with it. A hash that many other posts also
hold is a shingle many bodies share. A post whose sketch is mostly such hashes is made
from a shared body: a template with the topic swapped (about half of a machine-filled
blog), or a page that is mostly the site's own navigation and boilerplate. One count
per hash makes this linear in the number of posts.

The rules, in order; the first that applies gives the reason:

1. ``words``: the body has fewer than ``min_words`` words (a post whose body was not
   counted, such as a feed entry, is not judged by length);
2. ``template``: at least ``share`` of the body's sketch is held by ``min_shared`` or
   more other posts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from digest.content.posts import Post


@dataclass(frozen=True)
class FillerRules:
    """The thresholds (``selection.*`` in the config)."""

    min_words: int = 0
    min_shared: int = 10
    share: float = 0.5


@dataclass(frozen=True)
class Filler:
    """Why one post is filler: ``rule`` is ``words`` or ``template``."""

    rule: str
    detail: str


def shared_counts(posts: Sequence[Post]) -> Counter[int]:
    """How many posts hold each sketch hash."""
    return Counter(h for post in posts for h in set(post.sketch))


def template_share(post: Post, counts: Counter[int], min_shared: int) -> float:
    """The share of ``post``'s sketch held by at least ``min_shared`` other posts."""
    if not post.sketch:
        return 0.0
    shared = sum(1 for h in post.sketch if counts[h] - 1 >= min_shared)
    return shared / len(post.sketch)


def find_filler(
    posts: Sequence[Post], rules: FillerRules, among: Sequence[Post] = ()
) -> dict[str, Filler]:
    """The filler among ``posts`` (by slug), learned from ``among`` (``posts`` when empty):
    every post loaded, so the template is seen even when few of its copies are in the
    window."""
    counts = shared_counts(among or posts)
    found: dict[str, Filler] = {}
    for post in posts:
        if post.words is not None and post.words < rules.min_words:  # 0: no floor
            found[post.slug] = Filler(
                "words", f"filler: {post.words} words, under the floor of {rules.min_words}"
            )
            continue
        share = template_share(post, counts, rules.min_shared)
        if share >= rules.share:
            found[post.slug] = Filler(
                "template",
                f"filler: {share:.0%} of its body is shared with {rules.min_shared} or more "
                "other posts (a template or site boilerplate)",
            )
    return found

"""The editor's pass over an issue's candidates: filler out, each story once, no repeats.

It runs after the mechanical de-duplication of :mod:`digest.content.select` and before the
limits, on the posts that are still candidates:

1. **filler** (:mod:`digest.content.filler`), learned from every post loaded with the
   issue: dropped (``selection.filler: drop``), kept but ranked below every other post of
   its section (``demote``), or left alone (``keep``);
2. **a story sent before**: a post that is the same story (:mod:`digest.content.stories`)
   as a post of an earlier issue is out, unless its title names someone or something,
   or a number, the earlier story did not (a newer development, kept and said so);
3. **each story once**: posts of one story become one card, its best post (featured, then
   the fullest body, then the earliest), the others listed under "also covered by".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from digest.config import Config
from digest.content.filler import FillerRules, find_filler
from digest.content.posts import Post
from digest.content.stories import Earlier, StoryIndex, StoryRules, cluster_stories, follow_up


@dataclass(frozen=True)
class EditorRules:
    """``selection:`` as plain data."""

    filler: str = "drop"
    filler_rules: FillerRules = field(default_factory=FillerRules)
    stories: bool = True
    story_rules: StoryRules = field(default_factory=StoryRules)

    @classmethod
    def from_config(cls, config: Config) -> EditorRules:
        s = config.selection
        return cls(
            filler=s.filler,
            filler_rules=FillerRules(s.min_words, s.template_posts, s.template_share),
            stories=s.stories,
            story_rules=StoryRules(s.story_threshold, s.story_days),
        )


@dataclass(frozen=True)
class Left:
    """A candidate the editor's pass leaves out: ``kind`` is filler, earlier-story or
    same-story; ``original`` is the card it belongs to (same-story)."""

    post: Post
    section: str
    kind: str
    detail: str
    original: Post | None = None


@dataclass
class Edited:
    kept: list[tuple[Post, str]]
    left: list[Left]
    coverage: dict[str, tuple[Post, ...]]  # a card's slug -> the other posts of its story
    demoted: dict[str, str]  # slug -> why (filler kept below the rest)
    notes: dict[str, str]  # slug -> what the pass said of a kept post


def _best_first(posts: Sequence[Post]) -> list[Post]:
    return sorted(posts, key=lambda p: (not p.featured, -(p.words or 0), p.date, p.slug))


def edit(
    candidates: list[tuple[Post, str]],
    loaded: Sequence[Post],
    rules: EditorRules,
    earlier: Sequence[Earlier] = (),
) -> Edited:
    """The pass described in the module docstring; ``loaded`` is every post read with the
    issue (what filler and story weights are learned from)."""
    result = Edited([], [], {}, {}, {})
    posts = [post for post, _ in candidates]
    filler = find_filler(posts, rules.filler_rules, loaded) if rules.filler != "keep" else {}
    remaining: list[tuple[Post, str]] = []
    for post, section in candidates:
        found = filler.get(post.slug)
        if found is not None and rules.filler == "drop" and not post.featured:
            result.left.append(Left(post, section, "filler", found.detail))
            continue
        if found is not None:
            result.demoted[post.slug] = found.detail.replace("filler:", "filler, demoted:", 1)
        remaining.append((post, section))
    if not rules.stories:
        result.kept = remaining
        return result
    index = StoryIndex(p for p in loaded if p.slug not in filler)
    fresh: list[tuple[Post, str]] = []
    for post, section in remaining:
        repeat = follow_up(post, earlier, index, rules.story_rules) if earlier else None
        if repeat is not None and not post.featured:
            old, score, new = repeat
            said = f"same story as {old.slug} in {old.issue_id} ({score:.2f})"
            if not new:
                result.left.append(
                    Left(post, section, "earlier-story", f"{said}, no new names or numbers")
                )
                continue
            result.notes[post.slug] = f"follows up {said}: new {', '.join(new)}"
        fresh.append((post, section))
    section_of = {post.slug: section for post, section in fresh}
    newsy = [post for post, _ in fresh if post.slug not in result.demoted]
    for story in cluster_stories(newsy, rules.story_rules, index):
        if story.size < 2:
            continue
        best, *others = _best_first(story.posts)
        result.coverage[best.slug] = tuple(sorted(others, key=lambda p: (p.date, p.slug)))
        for other in others:
            score, shared = index.compare(other, best)
            link = story.links.get(other.slug)
            if link is not None and other.slug in story.continued:
                score, shared = link[1], link[2]
                why = f" (continues it after {link[0]}: {score:.2f} of its core, "
                why += f"{', '.join(shared)})"
            elif link is not None and link[0] != best.slug:  # joined through another post
                score, shared = link[1], link[2]
                why = f" (through {link[0]}, {score:.2f}: {', '.join(shared)})"
            else:
                why = f" ({score:.2f}: {', '.join(shared)})"
            detail = f"same story as {best.slug}{why}; under its 'also covered by'"
            result.left.append(Left(other, section_of[other.slug], "same-story", detail, best))
    gone = {left.post.slug for left in result.left}
    result.kept = [(post, section) for post, section in fresh if post.slug not in gone]
    return result

"""How an issue's sections are laid out once chosen: thin sections folded together at
the end, and the lead (the widest story) first."""

from __future__ import annotations

from dataclasses import replace

from digest.config import Config
from digest.content.balance import lead_of
from digest.content.decisions import Section
from digest.content.posts import Post


def lead_first(
    sections: list[Section], coverage: dict[str, tuple[Post, ...]], featured: bool = True
) -> tuple[Section, ...]:
    """The sections with the lead (:func:`digest.content.balance.lead_of`) first in its
    section, and its section first."""
    found = lead_of([s.posts for s in sections], coverage, featured)
    if found is None:
        return tuple(sections)
    number, place = found
    lead = sections[number]
    posts = (lead.posts[place], *lead.posts[:place], *lead.posts[place + 1 :])
    return (replace(lead, posts=posts), *sections[:number], *sections[number + 1 :])


def fold_thin(sections: list[Section], least: int, title: str) -> list[Section]:
    """Sections with fewer than ``least`` posts (``limits.min_per_section``), put together
    at the end as one section called ``title``.

    The section they make is held to the same floor: while it has fewer than ``least``
    posts, the smallest of the other sections (the last one on a tie: the least prominent)
    joins it. So no section stands with fewer than ``least`` posts, whichever section was
    thin (the lead's, the last one, a single one). An issue where that would fold every
    section keeps its sections as they are: a short issue (every section under the floor)
    whose headings still say what each post is; ``limits.min_posts`` decides whether it
    is sent.
    """
    if least <= 1:
        return sections
    folded = {n for n, s in enumerate(sections) if len(s.posts) < least}
    while folded and sum(len(sections[n].posts) for n in folded) < least:
        rest = [n for n in range(len(sections)) if n not in folded]
        if not rest:
            break
        folded.add(min(reversed(rest), key=lambda n: len(sections[n].posts)))
    if not folded or len(folded) == len(sections):
        return sections
    thin = [s for n, s in enumerate(sections) if n in folded]
    kept = [s for n, s in enumerate(sections) if n not in folded]
    posts = tuple(p for s in thin for p in s.posts)
    origins = tuple(o for s in thin for o in (s.origins or (s.name,) * len(s.posts)))
    return [*kept, Section(title, title, posts, 0, origins)]


def least_posts(config: Config, daily: bool = False) -> tuple[int, str]:
    """The fewest posts an issue is sent with, and the option that says so: a day's issue
    has ``limits.min_posts_daily`` when it is set."""
    if daily and config.limits.min_posts_daily is not None:
        return config.limits.min_posts_daily, "limits.min_posts_daily"
    return config.limits.min_posts, "limits.min_posts"


def too_few_posts(issue_id: str, count: int, config: Config, daily: bool = False) -> str:
    """Why an issue under its minimum is not sent, and how to send it anyway."""
    least, option = least_posts(config, daily)
    return (
        f"{issue_id} has {count} post{'' if count == 1 else 's'}, under {option} "
        f"({least}); not sent (`digest send --force` sends it)"
    )

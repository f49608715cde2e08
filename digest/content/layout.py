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
    at the end as one section called ``title``. One thin section stays as it is, and so
    do all of them when every section is thin (folding would leave nothing else).
    """
    thin = [s for s in sections if len(s.posts) < least]
    if len(thin) < 2 or len(thin) == len(sections):
        return sections  # one thin section, or nothing left to be the main part
    kept = [s for s in sections if s not in thin]
    posts = tuple(p for s in thin for p in s.posts)
    origins = tuple(s.name for s in thin for _ in s.posts)
    also = Section(title, title, posts, 0, origins)
    return [*kept, also]


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

"""``selection:``: what an editor leaves out, merges and spreads (docs/selection.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SelectionConfig(BaseModel):
    """Filler, stories told by several outlets, and a week in balance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filler: Literal["drop", "demote", "keep"] = Field(
        default="drop",
        description="Posts that are not news (a body shared as a template with many other "
        "posts, mostly site boilerplate, or under min_words): drop them, demote them below "
        "every other post of their section, or keep them as any post.",
    )
    min_words: int = Field(
        default=0,
        ge=0,
        description="A post whose body has fewer words is filler (0: no floor; 30 suits a "
        "news site whose scraped posts can be a headline and a link).",
    )
    template_posts: int = Field(
        default=10,
        ge=1,
        description="A shingle of a body held by this many other posts loaded with the "
        "issue is shared text (a template or boilerplate).",
    )
    template_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A post whose body sketch is at least this share shared text is filler.",
    )
    stories: bool = Field(
        default=True,
        description="Posts reporting the same event (from titles, leads, names and numbers) "
        "are one card: the best post, with the others under 'also covered by'.",
    )
    story_threshold: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Two posts are one story when the rare words they share weigh at least "
        "this share of the words either has (see docs/selection.md).",
    )
    story_days: int = Field(
        default=3, ge=0, description="... and they are dated at most this many days apart."
    )
    weight_coverage: float = Field(
        default=1.0,
        ge=0,
        description="Ranking: points for each other outlet that covered a post's story.",
    )
    weight_day: float = Field(
        default=0.6,
        ge=0,
        description="Ranking: points taken off for each post already picked from the same "
        "day (spreads an issue across its week).",
    )
    weight_source: float = Field(
        default=0.3,
        ge=0,
        description="Ranking: points taken off for each post already picked from the same "
        "outlet (the source URL's host).",
    )
    weight_newest: float = Field(
        default=0.1,
        ge=0,
        description="Ranking: points per day a post is newer than the window's start.",
    )
    reader_interest: bool = Field(
        default=False,
        description="Ranking: when the total limit cuts an issue, give the room to the "
        "sections readers followed most: each section's share of the kept clicks over the "
        "last interest_issues issues against its share of their links (the click store; "
        "never per reader; docs/selection.md).",
    )
    interest_issues: int = Field(
        default=4,
        ge=1,
        le=52,
        description="Ranking: how many of the latest issues reader_interest learns from; "
        "with fewer built, the trait waits.",
    )
    weight_interest: float = Field(
        default=1.0,
        ge=0,
        description="Ranking: places a section gains in the total's fill per unit of lift "
        "above 1 (loses below; the lift is capped at 3).",
    )

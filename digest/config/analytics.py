"""The ``analytics`` section: whether issues count clicks, and how.

Kept beside the main schema so the click options carry their own documentation
(docs/analytics.md). Everything here is off by default: with ``clicks: off`` every post link
goes straight to the post, exactly as before the option existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ClickMode = Literal["off", "aggregate", "per_subscriber"]


class AnalyticsConfig(BaseModel):
    """Click counting through ``digest serve`` (``/c/<token>``), and the open pixel (``/o/``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clicks: ClickMode = Field(
        default="off",
        description="off: post links go straight to the post. aggregate: each post link "
        "goes through <serve.public_url>/c/<token>, counted per issue, post and variant, "
        "never per reader. per_subscriber (per-reader engagement with consent) is not built "
        "yet and is refused.",
    )
    opens: bool = Field(
        default=False,
        description="Count opens with a 1x1 image, <serve.public_url>/o/<token>, per issue and "
        "variant, never per reader. Off by default and unreliable: Apple Mail Privacy "
        "Protection fetches every image of every message it receives, so most opens are "
        "machines' (counted apart as machine opens where they can be told; see "
        "docs/analytics.md).",
    )
    database: Path = Field(
        default=Path("data/clicks.sqlite"),
        description="The click store's SQLite file (database: holds it when set).",
    )
    flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each digest serve process writes its buffered counts.",
    )

    @field_validator("clicks")
    @classmethod
    def _no_reader_engagement_yet(cls, value: ClickMode) -> ClickMode:
        if value == "per_subscriber":
            raise ValueError(
                "per_subscriber needs each reader's consent, which digest does not record "
                "yet; use aggregate (counts per issue, post and variant, never per reader)"
            )
        return value

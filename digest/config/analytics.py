"""The ``analytics`` section: whether issues count clicks, and how.

Kept beside the main schema so the click options carry their own documentation
(docs/analytics.md). Everything here is off by default: with ``clicks: off`` every post link
goes straight to the post, exactly as before the option existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ClickMode = Literal["off", "aggregate", "per_subscriber"]


class SunsetConfig(BaseModel):
    """The sunset flow (off unless set): ask readers who stopped clicking, then unsubscribe.

    Readers who agreed to per-reader engagement and stopped clicking are asked once
    whether they want to stay; those who do not answer are unsubscribed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_issues: int = Field(
        ge=2,
        le=520,
        description="A consenting reader with no click in their last after_issues delivered "
        "issues gets the re-permission mail.",
    )
    grace_days: int = Field(
        ge=1,
        le=365,
        description='Days the reader has to follow the mail\'s "keep me subscribed" link; '
        "after them `digest subscribers sunset` unsubscribes them (reason sunset).",
    )


class AnalyticsConfig(BaseModel):
    """Click counting through ``digest serve`` (``/c/<token>``), and the open pixel (``/o/``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clicks: ClickMode = Field(
        default="off",
        description="off: post links go straight to the post. aggregate: each post link "
        "goes through <serve.public_url>/c/<token>, counted per issue, post and variant, "
        "never per reader. per_subscriber: as aggregate, and for readers who agreed (a box "
        "on the subscribe form and the preferences page, off by default) also which issues "
        "each of them clicked in; used for `digest report --inactive` and the sunset flow.",
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
    sunset: SunsetConfig | None = Field(
        default=None,
        description="Off unless set: {after_issues: N, grace_days: D}; needs "
        'clicks: per_subscriber (see docs/analytics.md, "The sunset flow").',
    )

    @model_validator(mode="after")
    def _sunset_needs_readers(self) -> AnalyticsConfig:
        if self.sunset is not None and self.clicks != "per_subscriber":
            raise ValueError(
                "sunset needs clicks: per_subscriber (it asks only readers who agreed to "
                "per-reader engagement); set clicks: per_subscriber or remove sunset"
            )
        return self

"""A new reader's welcome and the latest issue as ONE message: a welcome block above the
issue's own content (``serve.welcome_latest_issue``).

The message is the issue, sent by the send loop (:func:`digest.delivery.send.send_issue`
with ``new_subscribers``), so it has the issue's ledger row for that (reader, issue): a
rerun, a later ``--new-subscribers`` and the next scheduled send never repeat it, and its
headers (List-Unsubscribe, List-Id, Message-ID) and plain-text part are the issue's. Only
the composing differs: :class:`WelcomeComposer` puts the block at the top of every
variant it composes, in the variant's language. Everyone the run reaches has joined since
the issue went out and has not had it, so the block speaks to all of them; it holds no
one's name or address, only the preferences link as a marker each recipient's own value
fills.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from digest.config import Config
from digest.content.select import Selection
from digest.delivery.issue import BuildComposer, Issue
from digest.email.message import ComposedEmail

_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class WelcomeBlock:
    """The welcome's words in one language: a subject prefix, an HTML block, a text block."""

    subject: str
    html: str
    text: str
    site: str = ""  # the site's name, which the issue's subject may start with


def with_welcome(composed: ComposedEmail, block: WelcomeBlock) -> ComposedEmail:
    """``composed`` with ``block`` above its content: first in the HTML body, first in the
    plain text, and before its subject (less the site's name it starts with, if so)."""
    found = _BODY.search(composed.html)
    at = found.end() if found else 0
    html = composed.html[:at] + block.html + composed.html[at:]
    text = f"{block.text.strip()}\n\n{composed.text}"
    subject = composed.subject
    if block.site and subject.startswith(f"{block.site}: "):  # said once is enough
        subject = subject[len(block.site) + 2 :]
    return replace(composed, subject=f"{block.subject}: {subject}", html=html, text=text)


class WelcomeComposer(BuildComposer):
    """The real build, each variant with the welcome block of its language (the site's
    when the reader's language has none)."""

    def __init__(self, blocks: Mapping[str, WelcomeBlock], fallback: str) -> None:
        super().__init__()
        self.blocks = dict(blocks)
        self.fallback = fallback
        self.built: ComposedEmail | None = None

    def block(self, config: Config) -> WelcomeBlock:
        return self.blocks.get(config.site.language) or self.blocks[self.fallback]

    def prepare(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> Issue:
        """The built issue (its files in out/ as built), its email with the welcome: the
        send loop takes that one for readers of every section in the site's language."""
        issue = super().prepare(config, now=now, week=week, since=since, until=until, write=write)
        self.built = issue.composed
        return replace(issue, composed=with_welcome(issue.composed, self.block(config)))

    def compose(
        self, config: Config, issue: Issue, selection: Selection, *, now: datetime
    ) -> ComposedEmail:
        # the variants are assembled from the issue as built, then welcomed
        built = replace(issue, composed=self.built) if self.built is not None else issue
        composed = super().compose(config, built, selection, now=now)
        return with_welcome(composed, self.block(config))

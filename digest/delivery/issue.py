"""The issue as sending sees it: what the build stage hands over, and how each
preference variant of it is composed and turned into a recipient's bytes.

:class:`Composer` is what sending needs from the build stage; :class:`BuildComposer` is the
real one (:func:`digest.email.build.build_issue` once, each variant assembled from the
issue's sections rendered once). Tests hand sending a composer of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from digest.config import Config
from digest.content.intro import Intro, load_intro
from digest.content.select import Selection
from digest.delivery.providers.base import Recipient
from digest.email.message import ComposedEmail, WireTemplate, to_message

if TYPE_CHECKING:
    from digest.email.build import BuildResult
    from digest.email.variants import VariantAssembler

# The email stack (jinja2, MJML, premailer) is imported where an issue is built, so that
# `digest status` and other readers of the ledger start fast.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issue:
    selection: Selection
    composed: ComposedEmail
    intro: Intro | None = None


class Composer(Protocol):
    """What sending needs from the build stage (the default uses digest.build/compose)."""

    def prepare(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> Issue: ...

    def compose(
        self, config: Config, issue: Issue, selection: Selection, *, now: datetime
    ) -> Any: ...

    def render(
        self,
        composed: Any,
        *,
        to: str,
        values: Mapping[str, str],
        message_id: str | None,
        date: datetime | None,
    ) -> EmailMessage: ...


class BuildComposer:
    """The real build: :func:`build_issue` once; each preference variant assembled from the
    issue's sections rendered once (:class:`VariantAssembler`)."""

    def __init__(self) -> None:
        self._assembler: VariantAssembler | None = None
        # one more per language its readers use besides the site's (config.site.language)
        self._in_language: dict[str, VariantAssembler] = {}
        self._built_in: str | None = None  # the language the issue was built in

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
        result = self.build(config, now=now, week=week, since=since, until=until, write=write)
        self._built_in = config.site.language
        intro = load_intro(config, result.selection.issue_id)
        return Issue(result.selection, result.composed, intro)

    def build(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> BuildResult:
        """The issue built (into ``out/<issue>/`` when ``write``); a subclass adds its own
        step here (the pre-send gate)."""
        from digest.email.build import build_issue

        return build_issue(config, now=now, week=week, since=since, until=until, write=write)

    def compose(
        self, config: Config, issue: Issue, selection: Selection, *, now: datetime
    ) -> ComposedEmail:
        return self.assembler(config, issue, now=now).variant([s.name for s in selection.sections])

    def assembler(self, config: Config, issue: Issue, *, now: datetime) -> VariantAssembler:
        """The issue's assembler, made on the first variant asked for.

        Its parts come from the templates as they are now; should the issue's email (built
        earlier, perhaps from other templates) differ from what it assembles for every
        section, each variant is composed whole instead, as before.
        """
        if self._built_in is not None and config.site.language != self._built_in:
            return self._assembler_in(config, issue, now=now)
        current = self._assembler
        if current is None or current.selection is not issue.selection:
            from digest.email.variants import VariantAssembler

            current = VariantAssembler(config, issue.selection, now=now, intro=issue.intro)
            everything = current.variant([s.name for s in issue.selection.sections])
            same = (everything.html, everything.text, everything.subject) == (
                issue.composed.html,
                issue.composed.text,
                issue.composed.subject,
            )
            if not same and current.unsupported is None:
                current.unsupported = "the built issue differs from what its parts assemble"
                log.info("composing each variant whole: %s", current.unsupported)
            self._assembler = current
        return current

    def _assembler_in(self, config: Config, issue: Issue, *, now: datetime) -> VariantAssembler:
        """A language variant's assembler: its parts are rendered in that language, so
        there is no built email to compare them with."""
        language = config.site.language
        current = self._in_language.get(language)
        if current is None or current.selection is not issue.selection:
            from digest.email.variants import VariantAssembler

            current = VariantAssembler(config, issue.selection, now=now, intro=issue.intro)
            self._in_language[language] = current
        return current

    def render(
        self,
        composed: ComposedEmail,
        *,
        to: str,
        values: Mapping[str, str],
        message_id: str | None,
        date: datetime | None,
    ) -> EmailMessage:
        return to_message(composed, to=to, values=values, message_id=message_id, date=date)

    def wire_template(
        self, composed: ComposedEmail, *, date: datetime | None
    ) -> Callable[[Recipient], bytes]:
        """The per-variant fast path to a recipient's bytes (same message as :meth:`render`)."""
        template = WireTemplate(composed, date=date)

        def wire(recipient: Recipient) -> bytes:
            return template.render(
                to=recipient.email, values=recipient.values, message_id=recipient.message_id
            )

        return wire

"""Preference variants: an issue's sections rendered once, each subscriber's choice assembled.

Subscribers who pick categories get an email with only those sections. Composing each
distinct choice from scratch (jinja2 → MJML → premailer) costs milliseconds, and with 13
categories there are up to 8,191 choices. :class:`VariantAssembler` renders the issue's
sections once per trimming plan through the whole pipeline, cuts the result at the
boundaries between MJML's wrapper children, and assembles a variant from the parts:

* the lead (head, masthead, intro) and the tail (footer), rendered once per post count
  with the subject, preheader and its padding as markers, which each variant fills in
  (as :func:`~digest.email.compose.compose` does);
* the chosen sections, each with its "N more" line, from the render of every section
  under the variant's plan;
* the text part, rendered by its own template (jinja2 only, cheap).

Each variant still goes through :func:`digest.email.compose._fit` with its own sizes, so
it is trimmed exactly as composing it alone would trim it. The assembled HTML and text are
equal to what :func:`~digest.email.compose.compose` produces for the same sections
(tests/test_variants.py checks random choices); when a template breaks an assumption the
cut relies on (parts that do not line up), the assembler
says so once in the log and composes each variant from scratch instead.

Pure: no clock, no network; memory is the parts (about the size of the whole issue once
per plan tried), not the variants.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.config import Config
from digest.content.intro import Intro
from digest.content.select import Section, Selection
from digest.email.compose import (
    IssueRenderer,
    Rendered,
    _fit,
    _Plan,
    _section_views,
    _SectionView,
    compose,
)
from digest.email.headline import fill_issue_markers
from digest.email.message import ComposedEmail

logger = logging.getLogger(__name__)

# What MJML writes between two children of an <mj-wrapper>: an Outlook-only table cell in a
# conditional comment of its own, before premailer and after.
_SEPARATOR = re.compile(r"<!--\[if mso \| IE\]></td></tr><tr><td[^>]*><!\[endif\]-->")
_BODY = "<body"


class Unsupported(Exception):
    """The templates do not allow cutting the render into parts; compose from scratch."""


@dataclass(frozen=True)
class _Doc:
    """A render cut apart: the ``<head>`` (up to ``<body``), and the body's wrapper children."""

    head: str
    pieces: list[str]
    separator: str


def _cut(html: str) -> _Doc:
    at = html.find(_BODY)
    if at < 0:
        raise Unsupported("the HTML has no <body>")
    head, body = html[:at], html[at:]
    found = {m.group(0) for m in _SEPARATOR.finditer(body)}
    if len(found) > 1:
        raise Unsupported(f"the wrapper's children are separated in {len(found)} ways")
    separator = found.pop() if found else ""
    return _Doc(head, body.split(separator) if separator else [body], separator)


@dataclass(frozen=True)
class _Frame:
    """The body around the sections for one post count: the children before the sections
    (the masthead last), then the tail (the wrapper's end, the footer, the end of the page)."""

    lead: tuple[str, ...]
    tail: str


class VariantAssembler:
    """Assemble the email of any subset of an issue's sections from parts rendered once.

    ``variant(names)`` returns what ``compose(config, selection.only(names), now=now,
    intro=intro)`` returns. Each section is rendered once per trimming plan it is needed
    in, alone in the template (which also gives the ``<head>`` MJML writes for it); the
    masthead and footer once per post count. Only these parts are kept: a variant is
    built when asked for, and the caller decides how many to hold.
    """

    def __init__(
        self,
        config: Config,
        selection: Selection,
        *,
        now: datetime,
        intro: Intro | None = None,
    ) -> None:
        self.config = config
        self.selection = selection
        self.now = now
        self.intro = intro
        self.renderer = IssueRenderer(config, selection, intro=intro, web=False)
        self.budget = config.email.size_budget_kb * 1024
        self.unsupported: str | None = None
        self._sections: dict[tuple[str, _Plan, bool, tuple[bool, ...]], tuple[str, str]] = {}
        self._frames: dict[tuple[int, bool, bool], _Frame] = {}
        self._heads: dict[tuple[tuple[str, ...], _Plan, bool], str] = {}
        self._tail: dict[tuple[bool, bool], str] = {}
        self._separator = ""
        self._views: dict[tuple[str, _Plan, tuple[bool, ...]], _SectionView] = {}

    # -- the public side

    def variant(self, names: Sequence[str]) -> ComposedEmail:
        """The email with only the sections named (section names or titles)."""
        chosen = self.selection.only(names)
        if self.unsupported is None:
            try:
                return self._assemble(chosen)
            except Unsupported as exc:
                self.unsupported = str(exc)
                logger.info("composing each variant whole: %s", exc)
        return compose(self.config, chosen, now=self.now, intro=self.intro)

    def _assemble(self, chosen: Selection) -> ComposedEmail:
        def render(plan: _Plan, inline: bool = True) -> Rendered:
            return self.render(chosen.sections, plan, inline)

        renderer = self.renderer
        trimmed, rendered = _fit(self.config, chosen, render, renderer.budget, renderer.measure)
        return renderer.composed(chosen, rendered, trimmed, now=self.now)

    def render(self, sections: Sequence[Section], plan: _Plan, inline: bool = True) -> Rendered:
        """What ``IssueRenderer.render`` gives for these sections, from the parts."""
        renderer = self.renderer
        shown = renderer.shown_cards(sections)
        # A section's cards differ from its own when a picture was shown in an earlier one.
        marks = [tuple(c.image is None for c in shown[s.name]) for s in sections]
        views = [self.view(s, plan, m, shown[s.name]) for s, m in zip(sections, marks, strict=True)]
        count = sum(len(v.posts) for v in views)
        subject, preheader = renderer.subject_and_preheader(views)
        parts = [
            self.section(s, plan, inline, m, v)
            for s, m, v in zip(sections, marks, views, strict=True)
        ]
        frame = self.frame(count, plan, inline)
        heads = frozenset(head for head, _ in parts)
        if len(heads) == 1:
            head = next(iter(heads))
        else:  # one section of each kind is enough: MJML adds styles per kind of component
            kinds: dict[str, _SectionView] = {}
            for (part_head, _), view in zip(parts, views, strict=True):
                kinds.setdefault(part_head, view)
            head = self.union_head(list(kinds.values()), plan, inline)
        pieces = [head + frame.lead[0], *frame.lead[1:], *(piece for _, piece in parts)]
        pieces[-1] += frame.tail
        html = fill_issue_markers(self._separator.join(pieces), subject, preheader)
        if not inline:
            return html, "", views
        context = renderer.context(views, plan, subject=subject, preheader=preheader)
        return html, renderer.text(context), views

    # -- the parts

    def view(
        self, section: Section, plan: _Plan, marks: tuple[bool, ...], cards: list[Any]
    ) -> _SectionView:
        """One section's cards and "more" line under ``plan`` (the same for every variant
        where the same pictures of it were shown before)."""
        key = (section.name, plan, marks)
        found = self._views.get(key)
        if found is None:
            found = _section_views(
                self.config, (section,), {section.name: cards}, self.renderer.utm, plan.cap
            )[0]
            self._views[key] = found
        return found

    def _render(self, views: list[_SectionView], plan: _Plan, inline: bool, count: int) -> _Doc:
        doc = _cut(self.renderer.marked_html(views, plan, inline, count))
        if doc.separator:
            if self._separator and doc.separator != self._separator:
                raise Unsupported("the wrapper's children are separated in 2 ways")
            self._separator = doc.separator
        return doc

    def frame(self, count: int, plan: _Plan, inline: bool) -> _Frame:
        """The masthead and footer for ``count`` posts: the template without sections."""
        key = (count, plan.compact, inline)
        if key not in self._frames:
            doc = self._render([], plan, inline, count)
            tail = self.tail(plan, inline)
            last = doc.pieces[-1]
            if not last.endswith(tail):
                raise Unsupported("the footer changes with the post count")
            lead = [*doc.pieces[:-1], last[: len(last) - len(tail)]]
            self._frames[key] = _Frame(tuple(lead), tail)
        return self._frames[key]

    def tail(self, plan: _Plan, inline: bool) -> str:
        """What follows the last section: found once, from the template with one section
        and without any, rendered with the same masthead."""
        key = (plan.compact, inline)
        if key not in self._tail:
            if not self.selection.sections:
                raise Unsupported("an issue without sections has no variants")
            first = self.renderer.views(self.selection.sections[:1], plan)
            one = self._render(first, plan, inline, 1)
            none = self._render([], plan, inline, 1)
            if len(one.pieces) != len(none.pieces) + 1 or one.pieces[:-2] != none.pieces[:-1]:
                raise Unsupported("the template does not put the sections after the masthead")
            masthead = one.pieces[-2]
            if not none.pieces[-1].startswith(masthead):
                raise Unsupported("the masthead changes with the sections")
            self._tail[key] = none.pieces[-1][len(masthead) :]
        return self._tail[key]

    def section(
        self, section: Section, plan: _Plan, inline: bool, marks: tuple[bool, ...], view: Any
    ) -> tuple[str, str]:
        """(the ``<head>`` MJML writes for it, its part of the body) for one section."""
        key = (section.name, plan, inline, marks)
        if key not in self._sections:
            count = len(view.posts)
            doc = self._render([view], plan, inline, count)
            frame = self.frame(count, plan, inline)
            if len(doc.pieces) != len(frame.lead) + 1 or doc.pieces[:-1] != list(frame.lead):
                raise Unsupported(f"the parts around section {section.name!r} change with it")
            last = doc.pieces[-1]
            if not last.endswith(frame.tail):
                raise Unsupported(f"the footer changes with section {section.name!r}")
            self._sections[key] = (doc.head, last[: len(last) - len(frame.tail)])
        return self._sections[key]

    def union_head(self, views: list[_SectionView], plan: _Plan, inline: bool) -> str:
        """The ``<head>`` for sections whose own heads differ (MJML adds styles per kind of
        component used): the head of one section of each kind rendered together."""
        key = (tuple(v.name for v in views), plan, inline)
        if key not in self._heads:
            count = sum(len(v.posts) for v in views)
            self._heads[key] = self._render(views, plan, inline, count).head
        return self._heads[key]


__all__ = ["Unsupported", "VariantAssembler"]

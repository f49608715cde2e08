"""`digest select` and `digest check`: what is in the week's issue, and is the site sound."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

from digest.cli._app import (
    State,
    emit_json,
    json_option,
    main,
    now,
    pass_state,
    say,
    window_options,
)
from digest.cli.reading import ReadProgress

if TYPE_CHECKING:  # imported where used: `digest select` loads no email or web stack
    from digest.config import Config
    from digest.content.posts import Post
    from digest.content.select import Decision, Selection
    from digest.content.sources.load import SourceReport


def _post_json(post: Post, url: str) -> dict[str, Any]:
    return {
        "slug": post.slug,
        "title": post.title,
        "date": post.date.isoformat(),
        "category": post.category,
        "url": url,
        "path": str(post.path),
        "featured": post.featured,
    }


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "slug": decision.post.slug,
        "title": decision.post.title,
        "date": decision.post.date.isoformat(),
        "category": decision.post.category,
        "section": decision.section,
        "reason": decision.reason.value,
        "detail": decision.explain(),
        "duplicate_of": decision.duplicate_of.slug if decision.duplicate_of else None,
        "rank": decision.rank,
        "path": str(decision.post.path),
    }


def selection_json(selection: Selection, urls: dict[str, str]) -> dict[str, Any]:
    from digest.content import carry

    window = selection.window
    return {
        "issue_id": selection.issue_id,
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "timezone": str(window.start.tzinfo),
        },
        "count": selection.count,
        "sections": [
            {
                "name": s.name,
                "title": s.title,
                "slug": s.slug,
                "count": len(s.posts),
                "more": s.more,
                "posts": [_post_json(p, urls[p.slug]) for p in s.posts],
            }
            for s in selection.sections
        ],
        "in_window": len(selection.in_window),
        "decisions": [_decision_json(d) for d in selection.decisions],
        **carry.manifest_entry(selection),  # limits.carry_over: {"carried": {from, posts}}
    }


@main.command("select")
@window_options
@click.option("--explain", is_flag=True, help="List every post in the window with its reason.")
@json_option
@click.option("--no-cache", is_flag=True, help="Parse every file, ignoring the metadata cache.")
@pass_state
def select_command(
    state: State,
    week: str | None,
    since: date | None,
    until: date | None,
    explain: bool,
    as_json: bool,
    no_cache: bool,
) -> None:
    """Show which posts make the issue, grouped by section.

    \b
    Examples:
      digest select                      # the last complete week
      digest select --week 2026-W34 --explain
      digest select --since 2026-08-01 --until 2026-08-14 --json
    """
    from digest.audience.links import post_url
    from digest.content import pipeline

    config = state.config
    loaded = pipeline.load_and_select(
        config, now(), week=week, since=since, until=until, use_cache=not no_cache
    )
    urls = {d.post.slug: post_url(config, d.post) for d in loaded.selection.decisions}
    _print_selection(state, loaded, urls, explain=explain, as_json=as_json)


def _print_selection(
    state: State, loaded: Any, urls: dict[str, str], *, explain: bool, as_json: bool
) -> None:
    config = state.config
    selection = loaded.selection
    if as_json:
        data = selection_json(selection, urls)
        data["problems"] = [
            {"path": str(p.path), "reason": p.reason} for p in loaded.posts.problems
        ]
        emit_json(data)
        return
    window = selection.window
    say(
        f"{selection.issue_id} · {window.describe()} ({config.timezone}) · "
        f"{selection.count} posts in {len(selection.sections)} sections",
        bold=True,
    )
    if selection.carried_from is not None:
        carried = len(selection.carried)
        say(
            f"carried over (limits.carry_over): {carried} post{'' if carried == 1 else 's'} "
            f"dated after {selection.carried_from:%Y-%m-%d %H:%M}, where the last sent issue ended"
        )
    for section in selection.sections:
        more = f" · {section.more} more" if section.more else ""
        say(f"\n{section.title} ({len(section.posts)}){more}", fg="cyan")
        for post in section.posts:
            star = "★ " if post.featured else ""
            say(f"  {post.date:%Y-%m-%d %H:%M}  {star}{post.title}")
            also = selection.coverage.get(post.slug, ())
            if also:
                say("                    also covered by " + ", ".join(
                    p.source or p.slug for p in also))  # fmt: skip
    if not selection.sections:
        say("\nNo posts in this window.")
    if explain:
        s = config.selection
        click.echo(
            f"\nfiller: {s.filler}; stories: "
            + (f"threshold {s.story_threshold}, within {s.story_days} days" if s.stories else "off")
            + f"; score = {s.weight_coverage} × coverage + {s.weight_newest} × newest"
            f" − {s.weight_day} × same day − {s.weight_source} × same outlet"
        )
        click.echo(loaded.interest.summary)
        say("\nEvery post in and around the window:", bold=True)
        for decision in selection.decisions:
            mark = "+" if decision.selected else "-"
            color = "green" if decision.selected else None
            say(
                f"  {mark} {decision.post.date:%Y-%m-%d %H:%M}  {decision.post.slug}: "
                f"{decision.explain()}",
                fg=color,
            )
    _report_problems(loaded.posts.problems)


def _excerpt_reports(
    config: Config,
    as_json: bool,
    week: str | None,
    since: date | None,
    until: date | None,
) -> None:
    from digest.content import pipeline

    reports = pipeline.excerpt_reports(config, now(), week=week, since=since, until=until)
    if as_json:
        emit_json(
            {
                "posts": [
                    {
                        "path": str(r.path),
                        "excerpt": r.excerpt,
                        "from": r.origin,
                        "removed": [{"rule": x.rule, "text": x.text} for x in r.removed],
                    }
                    for r in reports
                ]
            }
        )
        return
    changed = 0
    for report in reports:
        if not report.removed:
            continue
        changed += 1
        say(f"{report.path}", bold=True)
        for removal in report.removed:
            say(f"  - {removal.rule}: {removal.text[:160]}")
        say(f"  = ({report.origin}) {report.excerpt or '(no excerpt)'}")
    say(f"excerpts: {len(reports)} posts, {changed} cleaned")


def _report_problems(problems: list[Any]) -> None:
    if problems:
        noun = "file" if len(problems) == 1 else "files"
        say(f"\n{len(problems)} {noun} skipped:", fg="yellow", err=True)
        for problem in problems:
            say(f"  {problem}", err=True)


@main.command("check")
@json_option
@click.option(
    "--email", is_flag=True, help="Also compose the issue and run the email quality checks."
)
@click.option(
    "--offline",
    is_flag=True,
    help="With --email: do not fetch the issue's links and images.",
)
@click.option(
    "--deliverability",
    is_flag=True,
    help="Also check the From domain's DNS: SPF, DKIM, DMARC, MX (and BIMI), with the "
    "records to publish.",
)
@click.option(
    "--excerpts",
    is_flag=True,
    help="Show, post by post, what excerpt cleaning removed (bylines, stamps, credits, …).",
)
@click.option(
    "--provider",
    "check_provider",
    is_flag=True,
    help="Also ask the provider (one read-only request) whether the credentials work "
    "and the sending domain is verified.",
)
@window_options
@pass_state
def check_command(
    state: State,
    as_json: bool,
    email: bool = False,
    check_provider: bool = False,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    excerpts: bool = False,
    deliverability: bool = False,
    offline: bool = False,
) -> None:
    """Validate config.yaml and every post; exit non-zero if anything is wrong.

    Reads every source (of every newsletter, unless --newsletter names one) and shows
    each source's health: this read, its last good one, and FAILING when it has failed
    content.failing_after reads in a row.

    With --deliverability, also check the From domain's DNS (SPF, DKIM, DMARC, MX, BIMI)
    and print the record to publish for each failure. Exits 1 if one fails.

    With --email, also compose the issue (the last complete week, or --week)
    and check the email: size budget, images, https links, lang, layout
    tables, unsubscribe link and headers, preheader; and fetch every link and
    image (--offline: not). Exits 1 if one fails, naming the post of a broken link.

    \b
    Examples:
      digest check
      digest --config site/config.yaml check --json
      digest check --email --week 2026-W34
      digest check --excerpts --week 2026-W34
      digest check --provider
      digest check --deliverability
    """
    from digest.delivery.preflight import preflight

    config = state.config  # a bad config raises ConfigError here (exit 3)
    if excerpts:
        _excerpt_reports(config, as_json, week, since, until)
        return
    ready = preflight(config, provider=check_provider)
    if deliverability:
        from digest.cli.deliverability import check_deliverability

        domain_ok = check_deliverability(config, as_json=as_json)  # exit 1 below if False
        if not email:
            raise click.exceptions.Exit(0 if domain_ok else 1)
    if email:
        from digest.cli.build import check_email

        check_email(config, as_json=as_json, week=week, since=since, until=until, links=not offline)
        if deliverability and not domain_ok:
            raise click.exceptions.Exit(1)
        return
    from digest.content import pipeline

    moment = now()
    progress = None if as_json else ReadProgress(tty=sys.stderr.isatty())
    if state.newsletter is None and len(config.newsletter_names) > 1:
        whole = state.whole_config
        # finish=False: the check reads no bodies for excerpts it does not show
        result = pipeline.load_every_source(whole, now=moment, progress=progress, finish=False)
        # A category is unlisted when no newsletter has a section for it.
        unlisted = [
            set(pipeline.unlisted_categories(whole.for_newsletter(name), result.posts))
            for name in whole.newsletter_names
        ]
        rules_unknown = sorted(set.intersection(*unlisted))
    else:
        result = pipeline.load(config, now=moment, progress=progress, finish=False)
        rules_unknown = pipeline.unlisted_categories(config, result.posts)
    if progress is not None:
        progress.close()
    failing = [r for r in result.sources if r.failing(config.content.failing_after)]
    from digest.delivery.click_check import serve_unreachable

    clicks_problem = serve_unreachable(config)
    if as_json:
        emit_json(
            {
                "config": str(config.source),
                "posts": len(result.posts),
                "problems": [{"path": str(p.path), "reason": p.reason} for p in result.problems],
                "unlisted_categories": rules_unknown,
                "sources": [
                    {
                        "source": r.label,
                        "kind": r.kind,
                        "outcome": r.outcome,
                        "posts": r.posts,
                        "error": r.error,
                        "failures_in_row": r.failures_in_row,
                        "last_success": r.last_success,
                        "failing": r.failing(config.content.failing_after),
                    }
                    for r in result.sources
                ],
                "preflight": ready.as_dict(),
                "ok": not result.problems and ready.ok,
            }
            | ({"clicks_warning": clicks_problem} if clicks_problem else {})
        )
    else:
        say(f"config: {config.source} is valid")
        for item in ready.missing:
            say(
                f"  {item['key']}: ${{{item['variable']}}} is not set "
                f"(needed by digest {item['needed_by']})",
                fg="red" if item["needed_by"] == "send" else "yellow",
            )
        for check in ready.checks:
            mark = "ok" if check.ok else "FAILED"
            say(
                f"provider {ready.provider}: {check.name} {mark}: {check.detail}",
                fg=None if check.ok else "red",
            )
        say(f"posts: {len(result.posts)} read, {len(result.problems)} skipped")
        _report_sources(result.sources, config.content.failing_after, moment)
        if rules_unknown:
            say(
                f"categories that are not sections ({config.categories.unlisted}): "
                + ", ".join(rules_unknown)
            )
        _report_problems(result.problems)
        if clicks_problem:
            say(f"warning: {clicks_problem}", fg="yellow")
    if any(m["needed_by"] == "send" for m in ready.missing):
        raise click.exceptions.Exit(3)
    if result.problems or failing:
        raise click.exceptions.Exit(4)
    if not ready.ok:
        raise click.exceptions.Exit(1)


def _report_sources(sources: list[SourceReport], failing_after: int, now: datetime) -> None:
    """One line per source: how this load went, its last good load, and a flag when it has
    failed ``content.failing_after`` loads in a row."""
    say("sources:")
    for report in sources:
        from digest.content.sources.load import describe_age

        last = describe_age(report.last_success, now)
        if report.outcome == "failed":
            line = f"failed: {report.error}"
            if report.stale:
                line += f" (kept {report.posts} entries from the last good fetch)"
        else:
            line = f"ok, {report.outcome}, {report.posts} post{'s' if report.posts != 1 else ''}"
        flag = ""
        if report.failing(failing_after):
            flag = f"  FAILING: {report.failures_in_row} runs in a row"
        say(f"  {report.label}: {line}; last good {last}{flag}")

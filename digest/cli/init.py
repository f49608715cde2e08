"""`digest init`: a first config.yaml, proposed from the posts themselves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli._app import State, emit_json, json_option, main, now, pass_state

if TYPE_CHECKING:
    from digest.content.survey import Survey

# Where posts usually are, looked for in order when no folder is given.
USUAL_FOLDERS = ("content/posts", "posts", "_posts", "content")


@main.command("init")
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option(
    "--feed",
    metavar="URL_OR_FILE",
    help="Read an RSS, Atom or JSON feed (a URL or a file) instead of a folder of posts.",
)
@click.option("--name", default="My newsletter", show_default=True, help="The site's name.")
@click.option(
    "--url",
    "base_url",
    default="https://example.com",
    show_default=True,
    help="The site's public address (post links are made from it).",
)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@json_option
@pass_state
def init_command(
    state: State,
    folder: Path | None,
    feed: str | None,
    name: str,
    base_url: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write a first config.yaml from the posts: sections, timezone, sender.

    Reads every post in FOLDER (or the feed), counts their categories and
    proposes one section per category, the machine's timezone, weeks that
    start on Monday and a sender block to fill in. The file is commented and
    passes `digest check`; an existing one is kept unless --force.

    \b
    Examples:
      digest init content/posts
      digest init ~/blog/_posts --name "Field Notes" --url https://fieldnotes.example.com
      digest init --feed https://blog.example.com/feed.xml
      digest --config site/config.yaml init site/posts --json
    """
    from digest.config import find_config
    from digest.content import survey

    target = find_config(state.config_path)
    if folder is None and feed is None:
        folder = _usual_folder(target.resolve().parent)
    source = survey.source_for(target, folder, feed)
    survey.refuse_overwrite(target, force=force)  # before reading every post
    moment = now()
    found = survey.survey(target, source, moment)
    text = survey.starter_config(found, name=name, base_url=base_url, now=moment)
    survey.write_config(target, text, force=force)
    _report(found, target, state.config_path is not None, as_json)


def _usual_folder(base: Path) -> Path:
    for candidate in USUAL_FOLDERS:
        if any((base / candidate).glob("*.md")):
            return base / candidate
    raise click.UsageError(
        f"no folder of posts here (looked for {', '.join(USUAL_FOLDERS)}); "
        "name yours: digest init FOLDER (or digest init --feed URL)"
    )


def _posts(count: int) -> str:
    return f"{count} post{'s' if count != 1 else ''}"


def _report(found: Survey, target: Path, named: bool, as_json: bool) -> None:
    week = found.last_week()
    prefix = f"digest --config {target} " if named else "digest "
    steps = [prefix + "check"]
    steps.append(prefix + (f"build --week {week}" if week else "build"))
    steps.append(prefix + "send" + (f" --week {week}" if week else "") + " --dry-run")
    if as_json:
        emit_json(
            {
                "config": str(target),
                "source": found.source,
                "posts": found.posts,
                "skipped": found.problems,
                "categories": dict(found.categories.most_common()),
                "sections": found.sections,
                "timezone": found.timezone,
                "week_start": found.week_start,
                "newest_week": week,
                "next": steps,
            }
        )
        return
    click.echo(f"wrote {target}: {found.posts} posts read, {found.problems} skipped")
    click.echo(f"sections ({len(found.sections)}, from the categories the posts name):")
    for section in found.sections:
        click.echo(f"  {section}: {_posts(found.categories[section])}")
    if found.unlisted:
        click.echo(f"  everything else under 'More': {_posts(found.unlisted)}")
    click.echo(f"timezone: {found.timezone} (this machine's); weeks start on {found.week_start}")
    click.echo("sender: fill in sender.from_email and sender.postal_address before sending")
    click.echo("next:")
    for step in steps:
        click.echo(f"  {step}")

"""What a folder of posts (or a feed) holds, and the starter ``config.yaml`` it suggests.

``digest init`` reads the posts through the same sources every other command uses, counts
their categories, and proposes: a section for each category that holds enough posts (the
rest gathered under "More"), the machine's timezone, weeks that start on Monday, and a
sender block to fill in. The file it writes is commented, line by line, and passes
``digest check`` as written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from digest.config import Config, parse_config
from digest.content import pipeline
from digest.errors import ContentError, UsageError
from digest.store.atomic import write_atomic

MAX_SECTIONS = 8  # more than this many sections makes a long email; the rest go to "More"
MIN_POSTS = 2  # a category with fewer posts than this is not proposed as a section
PLACEHOLDER_EMAIL = "newsletter@example.com"
PLACEHOLDER_URL = "https://example.com"


@dataclass(frozen=True)
class Survey:
    """What the posts hold: counts, categories, dates, and what is proposed from them."""

    source: dict[str, str]  # {"path": "posts"} or {"feed": "https://…"}, as config.yaml says
    posts: int
    problems: int
    categories: Counter[str]
    newest: datetime | None  # the newest post not dated in the future
    oldest: datetime | None
    timezone: str
    week_start: str = "monday"
    sections: list[str] = field(default_factory=list)

    @property
    def unlisted(self) -> int:
        """Posts whose category is not a proposed section (they go under "More")."""
        return self.posts - sum(self.categories[name] for name in self.sections)

    def last_week(self) -> str | None:
        """The ISO week of the newest post (weeks start on Monday), e.g. 2026-W47."""
        if self.newest is None:
            return None
        year, week, _ = self.newest.isocalendar()
        return f"{year}-W{week:02d}"


def local_timezone() -> str:
    """This machine's IANA timezone ($TZ, else /etc/localtime's target), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"


def source_for(config_path: Path, folder: Path | None, feed: str | None) -> dict[str, str]:
    """The source entry config.yaml will hold: a folder relative to the config file where it
    can be, or the feed as given (a URL, or a file made relative the same way)."""
    if (folder is None) == (feed is None):
        raise UsageError("give a folder of Markdown posts or --feed URL_OR_FILE, not both")
    base = config_path.resolve().parent
    if feed is not None:
        if "://" in feed:
            return {"feed": feed}
        place = Path(feed)
        if not place.is_file():
            raise UsageError(f"{feed}: no such feed file")
        return {"feed": _relative(place, base)}
    assert folder is not None
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (give the folder of your Markdown posts)")
    return {"path": _relative(folder, base)}


def _relative(place: Path, base: Path) -> str:
    resolved = place.resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return str(resolved)


def survey(config_path: Path, source: dict[str, str], now: datetime) -> Survey:
    """Read every post of ``source`` (as config.yaml at ``config_path`` would) and propose.

    The read fills the post cache (and a feed's state) in the folders the new config names,
    so the first ``digest build`` after ``digest init`` starts warm."""
    timezone = local_timezone()
    config = _draft(config_path, source, timezone, sections=[])
    result = pipeline.load_every_source(config, now=now)
    categories = _by_category(post.category for post in result.posts)
    dates = [post.date for post in result.posts]
    past = [moment for moment in dates if moment <= now] or dates  # not a post dated ahead
    if not result.posts:
        where = source.get("path") or source.get("feed")
        raise ContentError(
            f"{where}: no posts found ({len(result.problems)} files skipped); "
            "digest reads Markdown files with front matter (title, date) or an RSS, Atom or "
            "JSON feed"
        )
    sections = [name for name, n in categories.most_common(MAX_SECTIONS) if n >= MIN_POSTS]
    return Survey(
        source=source,
        posts=len(result.posts),
        problems=len(result.problems),
        categories=categories,
        newest=max(past),
        oldest=min(dates),
        timezone=timezone,
        sections=sections,
    )


def _by_category(names: Iterable[str | None]) -> Counter[str]:
    """Posts per category, matched in any case as sections are (each under the spelling
    most posts use)."""
    spellings: dict[str, Counter[str]] = {}
    for name in names:
        if name:
            spellings.setdefault(name.casefold(), Counter())[name] += 1
    return Counter(
        {forms.most_common(1)[0][0]: sum(forms.values()) for forms in spellings.values()}
    )


def _draft(config_path: Path, source: dict[str, str], timezone: str, sections: list[str]) -> Config:
    data = {
        "site": {"name": "My newsletter", "base_url": PLACEHOLDER_URL},
        "sources": [source],
        "timezone": timezone,
        "categories": {"sections": [{"name": name} for name in sections]},
        "sender": {"from_name": "My newsletter", "from_email": PLACEHOLDER_EMAIL},
    }
    return parse_config(data, config_path)


def _q(value: str) -> str:
    """A YAML scalar that reads back as exactly ``value`` (JSON strings are YAML)."""
    return json.dumps(value, ensure_ascii=False)


def starter_config(found: Survey, *, name: str, base_url: str, now: datetime) -> str:
    """The text of a commented config.yaml for ``found``; it passes ``digest check``."""
    kind, where = next(iter(found.source.items()))
    since = f" since {found.oldest:%Y-%m-%d}" if found.oldest else ""
    lines = [
        f"# digest configuration, written by `digest init` on {now:%Y-%m-%d} from"
        f" {_posts(found.posts)}{since}.",
        "# Every option, its default and what it does: `digest config reference`.",
        "# Check this file with `digest check`.",
        "",
        "site:",
        f"  name: {_q(name)}",
        f"  base_url: {_q(base_url)}  # the public address of your site (post links use it)",
        '  post_url: "{base_url}/posts/{slug}"  # how a post\'s address is made',
        "",
        "# Where posts come from: Markdown folders ({path: DIR}) and feeds ({feed: URL or file}).",
        "sources:",
        f"  - {kind}: {_q(where)}",
        "",
        f"timezone: {_q(found.timezone)}  # this machine's; an issue's week is counted in it",
        f"week_start: {found.week_start}  # the first day of an issue's week",
        "",
        "# One section per category, in this order (the counts: posts `digest init` read).",
        "categories:",
        "  sections:",
    ]
    for section in found.sections:
        count = found.categories[section]
        lines.append(f"    - name: {_q(section)}  # {_posts(count)}")
    if not found.sections:
        lines[-1] = "  sections: []  # no category holds two posts yet: every post goes below"
    others = sorted(set(found.categories) - set(found.sections))
    lines += [
        f"  unlisted: other  # {_posts(found.unlisted)}"
        + (f" ({_few(others)})" if others else "")
        + " go under other_title",
        "  other_title: More",
        "",
        "limits:",
        "  per_category: 5  # posts shown per section; the rest are linked as 'N more'",
        "  total: 30",
        "",
        "# Fill these in before sending for real: the From header and the footer's legal lines.",
        "sender:",
        f"  from_name: {_q(name)}",
        f"  from_email: {PLACEHOLDER_EMAIL}  # an address on a domain your provider has verified",
        '  postal_address: ""  # anti-spam laws ask for a postal address in every email',
        "",
        "# The outbox writes every message as an .eml file under out/<issue>/outbox/; to send",
        '# for real, e.g. provider: {name: postmark, token: "${POSTMARK_TOKEN}"}',
        "provider:",
        "  name: outbox",
        "",
        "schedule:",
        f'  cron: "0 9 * * {found.week_start[:3].upper()}"  # `digest run` sends the last week',
        "",
    ]
    return "\n".join(lines)


def _posts(count: int) -> str:
    return f"{count} post{'s' if count != 1 else ''}"


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def refuse_overwrite(path: Path, *, force: bool) -> None:
    """An existing config file is kept unless ``force``."""
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to replace it")


def write_config(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` (an existing file only with ``force``), once it loads."""
    refuse_overwrite(path, force=force)
    parse_config(yaml.safe_load(text), path)  # never write a file that would not load
    write_atomic(path, text)

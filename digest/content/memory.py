"""What earlier issues held, so a story is not sent twice.

Each built issue's ``manifest.json`` carries a ``memory`` list: per post in the email, its
slug, normalised title, normalised source, body sketch (128 hashes, base64) and the
story's features (:func:`digest.content.stories.features`). That is all a
later issue needs to leave out a post whose title, source or near-identical body was in an
earlier one, and it costs a few kilobytes per issue. :func:`earlier_issues` reads the
memories of issues whose window starts before a given one, newest first.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digest.content.carry import is_sent
from digest.content.files import read_inside
from digest.content.posts import Post
from digest.content.stories import features
from digest.content.text import normalise_title
from digest.errors import ContentError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Remembered:
    """One post of an earlier issue."""

    issue_id: str
    slug: str
    title_key: str
    source_key: str | None
    sketch: tuple[int, ...] = ()
    story: tuple[str, ...] = ()  # the story's features (digest.content.stories)


def normalise_source(url: str) -> str:
    """A source URL reduced to what identifies the page: no scheme, www, query or slash."""
    parts = urlsplit(url.strip())
    host = parts.netloc.casefold().removeprefix("www.")
    path = parts.path.rstrip("/")
    return f"{host}{path}" if host else url.strip().casefold()


def pack_sketch(sketch: tuple[int, ...]) -> str:
    """A sketch as base64 of its 8-byte hashes: about a third of the JSON list's size."""
    return base64.b64encode(b"".join(h.to_bytes(8, "big") for h in sketch)).decode("ascii")


def unpack_sketch(value: Any) -> tuple[int, ...]:
    """The hashes of a packed sketch (or of a plain list); empty when unreadable."""
    if isinstance(value, list):
        return tuple(int(h) for h in value if isinstance(h, int))
    if not isinstance(value, str):
        return ()
    try:
        data = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return ()
    return tuple(int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data) - 7, 8))


def memory_of(posts: Iterable[Post]) -> list[dict[str, Any]]:
    """The ``memory`` entry of a manifest for the posts an email holds."""
    return [
        {
            "slug": post.slug,
            "title": normalise_title(post.title),
            "source": normalise_source(post.source) if post.source else None,
            "sketch": pack_sketch(post.sketch),
            "story": sorted(features(post)),
        }
        for post in posts
    ]


def earlier_issues(
    out_dir: Path,
    before: datetime,
    limit: int,
    *,
    daily: bool | None = None,
    sent_from: datetime | None = None,
) -> list[Remembered]:
    """The posts of the ``limit`` latest issues in ``out_dir`` whose window starts before
    ``before``. An issue folder without a readable memory is skipped with a warning.

    ``daily`` (True or False) keeps only the issues of that cadence: a newsletter built
    for days and for weeks sends each to other readers, so a day's issue remembers the
    earlier days and a week's issue the earlier weeks, never the other cadence.

    ``sent_from`` (``limits.carry_over``): an issue whose window starts at or after it
    counts only when it was sent (:mod:`digest.content.carry`); a thin period built and not
    sent holds posts that are still to go out."""
    if limit <= 0 or not out_dir.is_dir():
        return []
    found: list[tuple[str, str, list[Any]]] = []
    for manifest in out_dir.glob(f"*/{MANIFEST}"):
        try:
            # inside its issue folder: a link out of it is refused (files.read_inside)
            data = json.loads(read_inside(manifest.parent, manifest, max_bytes=50_000_000))
            start = data["window"]["start"]
            end = data["window"].get("end")
            memory = data.get("memory")
            issue_id = str(data["issue_id"])
        except (OSError, ValueError, KeyError, TypeError, ContentError) as exc:
            logger.warning("%s: not read as an earlier issue (%s)", manifest, exc)
            continue
        if not isinstance(memory, list):
            continue
        try:
            if datetime.fromisoformat(start) >= before:
                continue
            if (
                sent_from is not None
                and datetime.fromisoformat(start) >= sent_from
                and not is_sent(out_dir, manifest.parent.name)
            ):
                continue
            if daily is not None and end and _is_day(start, end) != daily:
                continue
        except (TypeError, ValueError):
            continue
        found.append((start, issue_id, memory))
    found.sort(reverse=True)
    remembered: list[Remembered] = []
    for _, issue_id, memory in found[:limit]:
        for entry in memory:
            if not isinstance(entry, dict):
                continue
            remembered.append(
                Remembered(
                    issue_id=issue_id,
                    slug=str(entry.get("slug", "")),
                    title_key=str(entry.get("title", "")),
                    source_key=entry.get("source") or None,
                    sketch=unpack_sketch(entry.get("sketch")),
                    story=_story(entry.get("story")),
                )
            )
    return remembered


def _is_day(start: str, end: str) -> bool:
    """Whether a window is one day (a DST day lasts 23 or 25 hours)."""
    return datetime.fromisoformat(end) - datetime.fromisoformat(start) <= timedelta(hours=25)


def _story(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str))

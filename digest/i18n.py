"""Each reader's language: digest's own words from gettext catalogues, dates and numbers
from Babel (the CLDR data). Posts stay in the language they were written in.

The words are the English msgids in the templates (``{{ _("Unsubscribe") }}``,
``ngettext``) and in a few library strings; each other language is one catalogue,
``digest/locale/<language>/LC_MESSAGES/digest.po``. A catalogue is compiled when it is
first used (Babel reads the ``.po`` and writes the ``.mo`` in memory), so a clean clone
installed with ``pip install -e .`` needs no build step, and no compiled file can be older
than its source. docs/languages.md says how to add a language.

Language tags are stored as Babel spells them (``de``, ``pt_BR``); a reader whose language
has no catalogue gets the site's (``site.language``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "digest"
SOURCE = "en"  # the language of the msgids
HEADER_LIMIT = 512  # characters of an Accept-Language header read
RANGES_LIMIT = 16  # language ranges of it weighed
_RANGE = re.compile(
    r"\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*"
)


def catalogues() -> tuple[str, ...]:
    """The languages digest speaks: English (its msgids) and every catalogue, sorted."""
    found = {SOURCE}
    if LOCALE_DIR.is_dir():
        found.update(
            p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES" / f"{DOMAIN}.po").is_file()
        )
    return tuple(sorted(found))


def normalise(tag: str) -> str | None:
    """A language tag as digest stores it (``de``, ``pt_BR``), or None when it is not one."""
    text = (tag or "").strip().replace("-", "_")
    if not text or len(text) > 35 or not re.fullmatch(r"[A-Za-z]{2,8}(?:_[A-Za-z0-9]{1,8})*", text):
        return None
    try:
        return str(Locale.parse(text))
    except (ValueError, UnknownLocaleError):
        return None


def spoken(tag: str | None) -> str | None:
    """The catalogue that serves ``tag``: its own, else its base language's; None if neither."""
    name = normalise(tag or "")
    if name is None:
        return None
    known = catalogues()
    for candidate in (name, name.split("_")[0]):
        if candidate in known:
            return candidate
    return None


def language_of(tag: str | None, default: str) -> str:
    """The language a reader whose stored tag is ``tag`` is written to (``default``: the
    site's language, for readers without one or whose language has no catalogue)."""
    return spoken(tag) or spoken(default) or SOURCE


def accepted(header: str | None) -> list[str]:
    """The language ranges of an Accept-Language header, most wanted first (RFC 9110,
    section 12.5.4): bounded in length and count, anything malformed skipped."""
    weighed: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "")[:HEADER_LIMIT].split(",")[:RANGES_LIMIT]):
        found = _RANGE.fullmatch(part)
        if not found or found.group(1) == "*":
            continue
        try:
            q = float(found.group(2)) if found.group(2) else 1.0
        except ValueError:
            continue
        if 0 < q <= 1:
            weighed.append((-q, index, found.group(1)))
    return [tag for _, _, tag in sorted(weighed)]


def negotiate(header: str | None, default: str) -> str:
    """The language of a page for a browser that sent ``header``."""
    for tag in accepted(header):
        language = spoken(tag)
        if language is not None:
            return language
    return language_of(None, default)


@lru_cache(maxsize=16)
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (English: the msgids themselves)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == SOURCE or not path.is_file():
        return NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def gettext(language: str, message: str, **values: Any) -> str:
    """One of digest's own sentences in ``language``, with ``%(name)s`` values filled."""
    text = translations(language).gettext(message)
    return text % values if values else text


def install(env: Any, language: str) -> None:
    """Give a jinja2 environment (with ``jinja2.ext.i18n``) the words of ``language``, and
    its ``number`` filter (``1,234`` / ``1.234``)."""
    env.install_gettext_translations(translations(language), newstyle=True)
    env.filters["number"] = lambda value: number(int(value), language)


def number(value: int, language: str) -> str:
    return format_decimal(value, locale=language)


def N_(message: str) -> str:  # gettext's name for "extract, do not translate"
    return message


HEADINGS = (N_("More"), N_("Also this week"))
"""Section titles that are digest's own words (the defaults of categories.other_title and
editorial.also_title): translated; every other title is the site's and stays as written."""


def heading(title: str, language: str) -> str:
    return gettext(language, title) if title in HEADINGS else title


def period(start: date, last: date, language: str) -> str:
    """An issue's dates: ``16–22 November 2026`` in digest's English, as it always wrote
    them; CLDR's interval format in every other language."""
    if language != SOURCE:
        return day_range(start, last, language)
    if start == last:
        return f"{start.day} {start:%B %Y}"
    if (start.year, start.month) == (last.year, last.month):
        return f"{start.day}–{last.day} {last:%B %Y}"
    if start.year == last.year:
        return f"{start.day} {start:%B} – {last.day} {last:%B %Y}"
    return f"{start.day} {start:%B %Y} – {last.day} {last:%B %Y}"


def week_title(week: int, year: str, language: str) -> str:
    return gettext(language, N_("Week %(week)s, %(year)s"), week=str(week), year=year)


def byline_day(day: date, language: str) -> str:
    """A post's day under its title: ``16 Nov 2026`` in English, CLDR's medium date else."""
    if language == SOURCE:
        return f"{day.day} {day:%b %Y}"
    return format_date(day, "medium", locale=language)


def moment(when: datetime, language: str, zone: str) -> str:
    """A moment in a reader's language, with its zone: ``Montag, 30. November 2026 um 09:00
    (Europe/Berlin)`` (digest's English keeps its own spelling, in serve.mail)."""
    text = gettext(
        language,
        N_("%(date)s at %(time)s"),
        date=format_date(when, "full", locale=language),
        time=format_time(when, "HH:mm", locale=language),
    )
    return f"{text} ({zone})"


def day_range(start: date, last: date, language: str) -> str:
    """A period's dates in ``language`` (CLDR's interval formats): ``16.–22. November 2026``."""
    if start == last:
        return format_date(start, "long", locale=language)
    return format_interval(start, last, "yMMMMd", locale=language)


def short_day(day: date, language: str) -> str:
    return format_date(day, "medium", locale=language)


def weekday_day(day: date, language: str) -> str:
    return format_date(day, "full", locale=language)


def names(languages: Iterable[str], language: str) -> list[tuple[str, str]]:
    """(tag, the language's own name as said in ``language``) for a select on a page."""
    shown = Locale.parse(language)
    return [(tag, (Locale.parse(tag).get_display_name(shown) or tag)) for tag in languages]

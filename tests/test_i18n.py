"""Each reader's language: the catalogues are complete, Accept-Language is read safely,
the email's framing and the pages speak German, and English stays as it was."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from click.testing import CliRunner

from digest import i18n
from digest.audience.subscribers import MIGRATIONS, SubscriberStore
from digest.cli import main
from digest.config import Config, load_config
from digest.content import pipeline
from digest.email.compose import compose

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
COMPLETE = ("de",)  # every catalogue that must translate every message


def extracted() -> set[str | tuple[str, str]]:
    """Every message id in the templates and the code, extracted as pybabel does."""
    found: set[str | tuple[str, str]] = set()
    method = [("**.j2", "jinja2"), ("**.py", "python")]
    for folder in (ROOT / "templates", ROOT / "digest"):
        for _, _, message, _, _ in extract_from_dir(
            str(folder),
            method,
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        ):
            found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


@pytest.mark.parametrize("language", COMPLETE)
def test_every_message_has_a_translation_in_each_complete_catalogue(language: str) -> None:
    path = ROOT / "digest" / "locale" / language / "LC_MESSAGES" / "digest.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    translated: dict[str | tuple[str, str], object] = {
        m.id if isinstance(m.id, str) else (m.id[0], m.id[1]): m.string for m in catalog if m.id
    }
    wanted = extracted()
    assert len(wanted) > 80  # the templates' words and digest's own headings
    missing = sorted(str(m) for m in wanted if m not in translated)
    assert missing == []
    empty = sorted(
        str(m)
        for m in wanted
        if not translated[m] or (isinstance(translated[m], tuple) and not all(translated[m]))  # type: ignore[arg-type]
    )
    assert empty == []
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []


def test_accept_language_is_read_safely() -> None:
    assert i18n.accepted("de-CH;q=0.9, fr;q=0.8, en;q=0.5, *;q=0.1") == ["de-CH", "fr", "en"]
    assert i18n.accepted("en;q=0.3, de") == ["de", "en"]
    assert i18n.accepted("de;q=0, en;q=2, x<script>, ;;, fr;q=abc") == []
    assert i18n.accepted(None) == []
    # A header of any length is read from a bounded opening, a bounded number of ranges.
    assert i18n.accepted("xx-" + "a" * 100_000) == []
    assert len(i18n.accepted(", ".join(["de"] * 10_000))) == i18n.RANGES_LIMIT
    assert i18n.negotiate("fr, de-AT;q=0.7", "en") == "de"
    assert i18n.negotiate("fr, es", "en") == "en"
    assert i18n.negotiate("", "de") == "de"


def test_language_tags_are_checked_and_fall_back_to_the_site() -> None:
    assert i18n.normalise("de-DE") == "de_DE"
    assert i18n.normalise("PT-br") == "pt_BR"
    assert i18n.normalise("klingon!") is None
    assert i18n.normalise("zz") is None
    assert i18n.language_of("de_AT", "en") == "de"
    assert i18n.language_of("fr", "en") == "en"
    assert i18n.language_of("", "de") == "de"


def test_dates_and_numbers_come_from_babel() -> None:
    assert i18n.period(date(2026, 11, 16), date(2026, 11, 22), "en") == "16–22 November 2026"
    assert i18n.period(date(2026, 11, 16), date(2026, 11, 22), "de") == "16.–22. Nov. 2026"
    assert i18n.byline_day(date(2026, 11, 18), "de") == "18.11.2026"
    assert i18n.number(12763, "de") == "12.763"
    assert i18n.number(12763, "en") == "12,763"
    assert i18n.week_title(47, "2026", "de") == "Woche 47, 2026"


def german(config: Config) -> Config:
    return config.model_copy(update={"site": config.site.model_copy(update={"language": "de"})})


def test_the_email_framing_speaks_the_readers_language_and_posts_stay_as_written(
    sample_site: Path,
) -> None:
    config = load_config(sample_site / "config.yaml")
    selection = pipeline.load_and_select(config, NOW, week="2026-W47").selection
    english = compose(config, selection, now=NOW)
    deutsch = compose(german(config), selection, now=NOW)
    assert "You are receiving this because you subscribed to Field Notes Weekly." in english.text
    assert "Sie bekommen diese E-Mail, weil Sie Field Notes Weekly abonniert haben." in deutsch.text
    assert "Abbestellen:     [[digest:unsubscribe_url]]" in deutsch.text
    assert "Woche 47, 2026" in deutsch.text and "16.–22. Nov. 2026 · " in deutsch.text
    assert f"{selection.count} Beiträge" in deutsch.text
    assert '<html lang="de"' in deutsch.html and '<html lang="en"' in english.html
    assert ">Im Browser ansehen</a>" in deutsch.html
    # Posts stay in the language they were written in.
    titles = [p.title for p in selection.posts]
    assert titles and [t in english.html for t in titles] == [t in deutsch.html for t in titles]
    assert any(t in deutsch.html for t in titles)


def test_subscribers_set_language(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ada@example.com", status="active", now=NOW)
        version = store.connection.execute(
            "SELECT language FROM subscribers WHERE email = 'ada@example.com'"
        ).fetchone()
    assert version == ("",)
    assert "each subscriber's language" in [m.description for m in MIGRATIONS]
    runner = CliRunner()
    path = str(sample_site / "config.yaml")
    done = runner.invoke(
        main, ["--config", path, "subscribers", "set", "ada@example.com", "--language", "de-DE"]
    )
    assert done.exit_code == 0, done.output
    assert done.output == "ada@example.com: language de_DE (written in de)\n"
    noted = runner.invoke(
        main, ["--config", path, "subscribers", "set", "ada@example.com", "--language", "fr"]
    )
    assert noted.output == (
        "ada@example.com: language fr (written in en)\n"
        "note: no catalogue for fr yet; they get en until one is added\n"
    )
    bad = runner.invoke(
        main, ["--config", path, "subscribers", "set", "ada@example.com", "--language", "??"]
    )
    assert bad.exit_code != 0
    assert "--language '??' is not a language tag; use one such as de, en" in bad.output
    nothing = runner.invoke(main, ["--config", path, "subscribers", "set", "ada@example.com"])
    assert nothing.exit_code == 2
    back = runner.invoke(
        main, ["--config", path, "subscribers", "set", "ada@example.com", "--language", "default"]
    )
    assert back.output == "ada@example.com: language default (written in en)\n"


def test_a_send_composes_one_variant_per_language_used(sample_site: Path) -> None:
    import email
    import email.policy

    from tests.helpers import ledger_states

    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for address in ("en@example.com", "de@example.com", "at@example.com"):
            store.add(address, status="active", now=NOW)
        store.set_language("de@example.com", "de", now=NOW)
        store.set_language("at@example.com", "de_AT", now=NOW)
    sent = CliRunner().invoke(main, ["--config", str(config.source), "send", "--week", "2026-W47"])
    assert sent.exit_code == 0, sent.output
    assert ledger_states(config) == {
        "en@example.com": "sent",
        "de@example.com": "sent",
        "at@example.com": "sent",
    }
    rows = dict(
        sqlite_rows(config, "SELECT email, variant FROM deliveries WHERE issue_id = '2026-W47'")
    )
    assert rows == {"en@example.com": "all", "de@example.com": "de:all", "at@example.com": "de:all"}
    texts = {}
    for path in (config.root / "out" / "2026-W47" / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",))
        assert body is not None
        texts[str(message["To"])] = body.get_content()
    assert "Unsubscribe:     http" in texts["en@example.com"]
    assert "Abbestellen:     http" in texts["de@example.com"]
    assert "Abbestellen:     http" in texts["at@example.com"]
    assert "Sie bekommen diese E-Mail" not in texts["en@example.com"]


def sqlite_rows(config: Config, query: str) -> list[tuple[str, str]]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(config.path(config.ledger.database))) as db:
        return list(db.execute(query))


def test_an_import_reads_a_language_or_locale_column(tmp_path: Path, sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    csv = tmp_path / "readers.csv"
    csv.write_text(
        "email,locale\nute@example.com,de-DE\nann@example.com,\nbad@example.com,de_??\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    path = str(sample_site / "config.yaml")
    done = runner.invoke(main, ["--config", path, "subscribers", "import", str(csv)])
    assert done.exit_code == 1, done.output  # a rejected row: named, the rest imported
    assert "row 4 rejected: language 'de_??' is not a language tag (de, en, pt-BR)" in done.output
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        ute, ann = store.get("ute@example.com"), store.get("ann@example.com")
        assert ute is not None and ann is not None
        assert (ute.language, ann.language) == ("de_DE", "")
        assert store.get("bad@example.com") is None
    again = tmp_path / "again.csv"
    again.write_text("email,language\nute@example.com,en\n", encoding="utf-8")
    assert (
        runner.invoke(main, ["--config", path, "subscribers", "import", str(again)]).exit_code == 0
    )
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        found = store.get("ute@example.com")
        assert found is not None and found.language == "en"

"""Several newsletters in one config: overrides, issue ids, choices, independent schedules."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from digest.audience.newsletters import NewsletterChoices, recipients
from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import load_config, parse_config
from digest.content import pipeline
from digest.content.select import WindowError
from digest.errors import ConfigError
from digest.schedule.scheduler import run_newsletters
from tests.helpers import recipient_of

BERLIN = ZoneInfo("Europe/Berlin")
ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = {
    "site": {"name": "Field Notes", "base_url": "https://fieldnotes.example.com"},
    "sender": {"from_name": "Field Notes", "from_email": "news@fieldnotes.example.com"},
    "timezone": "Europe/Berlin",
}


def test_a_config_without_newsletters_is_one_newsletter_as_before(tmp_path: Path) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    assert config.newsletter_names == ["default"]
    assert config.for_newsletter(None) is config
    assert config.for_newsletter("default") is config
    assert (config.issue_prefix, config.list_id) == ("", "fieldnotes.example.com")
    with pytest.raises(ConfigError) as raised:
        config.for_newsletter("links")
    assert str(raised.value) == "--newsletter links: no such newsletter; the config has default"


def test_each_newsletter_overrides_what_it_names(tmp_path: Path) -> None:
    data = {
        **BASE,
        "limits": {"per_category": 3, "total": 20},
        "email": {"subject": "{site}: {top_title}"},
        "newsletters": [
            {"name": "weekly"},
            {
                "name": "links",
                "title": "Field Notes Links",
                "sources": [{"feed": "feeds/links.xml", "category": "Links"}],
                "limits": {"per_category": 8, "total": 8},
                "subject": "Links: {top_title}",
                "schedule": {"cron": "0 9 * * THU"},
            },
        ],
    }
    whole = parse_config(data, tmp_path / "config.yaml")
    weekly, links = whole.for_newsletter("weekly"), whole.for_newsletter("links")
    assert weekly.issue_prefix == "" and links.issue_prefix == "links-"
    assert [s.feed for s in links.source_list] == ["feeds/links.xml"]
    assert [str(s.path) for s in weekly.source_list] == ["content/posts"]
    assert (links.limits.total, weekly.limits.total) == (8, 20)
    assert (links.email.subject, weekly.email.subject) == (
        "Links: {top_title}",
        "{site}: {top_title}",
    )
    assert (links.site.name, weekly.site.name) == ("Field Notes Links", "Field Notes")
    assert links.schedule.cron == "0 9 * * THU" and weekly.schedule.cron == "0 9 * * MON"
    # Runs and locks of another newsletter are its own.
    assert (str(links.schedule.database), str(links.schedule.lock)) == (
        "data/runs-links.sqlite", "data/schedule-links.lock"
    )  # fmt: skip
    assert str(weekly.schedule.database) == "data/runs.sqlite"
    assert (links.list_id, weekly.list_id) == (
        "links.fieldnotes.example.com",
        "fieldnotes.example.com",
    )
    now = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    assert pipeline.resolve_window(links, now).issue_id == "links-2026-W47"
    assert pipeline.resolve_window(links, now, week="links-2026-W46").issue_id == "links-2026-W46"
    assert pipeline.resolve_window(weekly, now, week="2026-W46").issue_id == "2026-W46"
    with pytest.raises(WindowError) as raised:
        pipeline.resolve_window(weekly, now, week="links-2026-W46")
    assert str(raised.value) == (
        "--week links-2026-W46: that is an issue of the links newsletter; add --newsletter links"
    )


@pytest.mark.parametrize(
    ("newsletters", "problem"),
    [
        ([{"name": "Links!"}], "newsletters[0].name: 'Links!' is not a newsletter name"),
        ([{"name": "a"}, {"name": "a"}], "newsletters: 'a' is listed twice"),
        ([{"name": "a", "sources": []}], "newsletters: 'a' has an empty sources: list"),
        ([{"name": "a", "sources": [{"feed": "ftp://x/y"}]}],
         "newsletters[0].sources[0].feed: 'ftp://x/y': only http:// and https:// feeds"),
        ([{"name": "a", "sources": [{"path": "p", "feed": "f"}]}],
         "newsletters[0].sources[0]: a source has either path: (a Markdown folder) or feed:"),
        ([{"name": "a", "sorces": []}],
         "newsletters[0].sorces: unknown key; did you mean 'sources'?"),
    ],
)  # fmt: skip
def test_bad_newsletters_are_named(newsletters: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({**BASE, "newsletters": newsletters})
    assert any(line.startswith(problem) for line in raised.value.problems), raised.value.problems


def test_sources_and_posts_dir_together_are_refused() -> None:
    data = {**BASE, "content": {"posts_dir": "posts"}, "sources": [{"path": "posts"}]}
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert raised.value.problems == [
        "sources: and content.posts_dir both say where posts are; list the folder under "
        "sources: as {path: posts}"
    ]


def test_the_sample_config_has_two_newsletters_and_both_select() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.newsletter_names == ["weekly", "links"]
    now = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    links = pipeline.load_and_select(config.for_newsletter("links"), now, week="2026-W47")
    assert links.selection.issue_id == "links-2026-W47"
    assert sorted(p.title for p in links.selection.posts) == [
        "A field study of interruptions in open-plan offices",
        "Reading a confidence interval & living with it",
        "The quiet return of the paper planner",
        "Why the best teams write things down",
    ]
    assert all(p.url and p.url.startswith("https://") for p in links.selection.posts)


# ---------------------------------------------------------------- two schedules, one list


class StepClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.moment += timedelta(seconds=seconds)


FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Links</title><link>https://fieldnotes.example.com/</link>
{items}</channel></rss>"""
ITEM = (
    "<item><title>{title}</title><link>https://elsewhere.example.com/{slug}</link>"
    "<pubDate>{date}</pubDate>"
    "<description>A link worth reading this week, {title}.</description></item>"
)


def two_newsletter_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    posts = site / "posts"
    posts.mkdir(parents=True)
    for day, slug in ((10, "week-46-post"), (18, "week-47-post"), (25, "week-48-post")):
        (posts / f"{slug}.md").write_text(
            f"---\ntitle: Post {slug}\ndate: 2026-11-{day:02d}T10:00:00\ncategory: Work\n---\n"
            "A post with enough words in its body to make an excerpt for the email.\n",
            encoding="utf-8",
        )
    items = "".join(
        ITEM.format(title=f"Link {n}", slug=f"link-{n}", date=date)
        for n, date in (
            (1, "Wed, 11 Nov 2026 10:00:00 +0100"),  # W46
            (2, "Tue, 17 Nov 2026 10:00:00 +0100"),  # W47
        )
    )
    (site / "links.xml").write_text(FEED.format(items=items), encoding="utf-8")
    data = {
        **BASE,
        "sources": [{"path": "posts"}],
        "schedule": {"cron": "0 9 * * MON", "grace": "6h"},
        "newsletters": [
            {"name": "weekly"},
            {
                "name": "links",
                "sources": [{"feed": "links.xml", "category": "Links"}],
                "schedule": {"cron": "30 7 * * THU", "grace": "6h"},
            },
        ],
    }
    (site / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return site


def outbox_deliveries(site: Path) -> Counter[tuple[str, str]]:
    """(issue id, recipient) for every message the outbox provider wrote."""
    found: Counter[tuple[str, str]] = Counter()
    for eml in (site / "out").glob("*/outbox/*.eml"):
        issue = eml.parent.parent.name
        found[(issue, recipient_of(eml))] += 1
    return found


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_two_newsletters_on_their_own_schedules_reach_exactly_who_chose_them(
    tmp_path: Path,
) -> None:
    site = two_newsletter_site(tmp_path)
    whole = load_config(site / "config.yaml")
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        now = datetime(2026, 11, 1, tzinfo=timezone.utc)
        for email in ("default@example.com", "links@example.com", "both@example.com"):
            store.add(email, status="active", now=now)
        with NewsletterChoices(store) as choices:
            choices.choose(store.get("links@example.com"), ["links"])  # type: ignore[arg-type]
            choices.choose(store.get("both@example.com"), ["weekly", "links"])  # type: ignore[arg-type]
        weekly_to = sorted(s.email for s in recipients(whole.for_newsletter("weekly"), store))
        links_to = sorted(s.email for s in recipients(whole.for_newsletter("links"), store))
    assert weekly_to == ["both@example.com", "default@example.com"]
    assert links_to == ["both@example.com", "links@example.com"]

    # Two weeks of wall clock, an hour at a time, with `digest run` at every step.
    clock = StepClock(datetime(2026, 11, 16, 0, 0, tzinfo=BERLIN))
    end = datetime(2026, 11, 30, 12, 0, tzinfo=BERLIN)
    outcomes: list[tuple[str, str, str]] = []
    while clock.now() <= end:
        for result in run_newsletters(whole, whole.newsletter_names, clock):
            assert result.error is None, result.error
            assert result.report is not None
            if result.report.action == "ran" and result.report.run is not None:
                run = result.report.run
                outcomes.append((result.newsletter, run.issue_id, run.outcome))
        clock.moment += timedelta(hours=1)

    assert outcomes == [
        ("weekly", "2026-W46", "sent"),  # Monday 16th, 09:00: the week before
        ("links", "links-2026-W46", "sent"),  # Thursday 19th, 07:30: the week before
        ("weekly", "2026-W47", "sent"),  # Monday 23rd, 09:00
        ("links", "links-2026-W47", "sent"),  # Thursday 26th
        ("weekly", "2026-W48", "sent"),  # Monday 30th
    ]
    assert outbox_deliveries(site) == Counter(
        {
            ("2026-W46", "default@example.com"): 1,
            ("2026-W46", "both@example.com"): 1,
            ("links-2026-W46", "links@example.com"): 1,
            ("links-2026-W46", "both@example.com"): 1,
            ("2026-W47", "default@example.com"): 1,
            ("2026-W47", "both@example.com"): 1,
            ("links-2026-W47", "links@example.com"): 1,
            ("links-2026-W47", "both@example.com"): 1,
            ("2026-W48", "default@example.com"): 1,
            ("2026-W48", "both@example.com"): 1,
        }
    )
    # Each newsletter's runs are its own file.
    assert (site / "data" / "runs.sqlite").is_file()
    assert (site / "data" / "runs-links.sqlite").is_file()


def test_an_import_assigns_newsletters(tmp_path: Path) -> None:
    site = two_newsletter_site(tmp_path)
    config = str(site / "config.yaml")
    whole = load_config(site / "config.yaml")
    csv = tmp_path / "links.csv"
    csv.write_text("email\nold@example.com\nnew@example.com\n", encoding="utf-8")
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        store.add("old@example.com", status="active", now=now)
    runner = CliRunner()
    refused = runner.invoke(
        main, ["--config", config, "subscribers", "import", str(csv), "--assign", "linkz"]
    )
    assert refused.exit_code == 7
    assert "no newsletter named linkz; the config has weekly, links" in refused.output
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        assert store.get("new@example.com") is None  # nothing imported
    done = runner.invoke(
        main, ["--config", config, "subscribers", "import", str(csv), "--assign", "links"]
    )
    assert done.exit_code == 0, done.output
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        with NewsletterChoices(store) as choices:
            old, new = store.get("old@example.com"), store.get("new@example.com")
            assert old is not None and new is not None
            assert choices.receives(old, whole) == ("weekly", "links")  # kept, and gained
            assert choices.receives(new, whole) == ("links",)
        # A subscriber's choice goes with them (removed, or forgotten on request).
        assert store.remove("new@example.com")
        with NewsletterChoices(store) as choices:
            assert choices.chosen_map().keys() == {old.id}


def test_cli_newsletter_option_and_subscriber_choices(tmp_path: Path) -> None:
    site = two_newsletter_site(tmp_path)
    runner = CliRunner()
    config = str(site / "config.yaml")
    result = runner.invoke(
        main, ["--config", config, "select", "--newsletter", "links", "--week", "2026-W47"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("links-2026-W47 · 2026-11-16 to 2026-11-22")
    same = runner.invoke(
        main, ["--config", config, "--newsletter", "links", "select", "--week", "2026-W47"]
    )
    assert same.output == result.output
    bad = runner.invoke(main, ["--config", config, "--newsletter", "nope", "select"])
    assert bad.exit_code == 3
    assert "--newsletter nope: no such newsletter; the config has weekly, links" in bad.output

    (site / "people.csv").write_text("email\nann@example.com\n", encoding="utf-8")
    imported = runner.invoke(
        main,
        [
            "--config",
            config,
            "subscribers",
            "import",
            str(site / "people.csv"),
            "--assign",
            "links",
        ],
    )
    assert imported.exit_code == 0, imported.output
    shown = runner.invoke(
        main, ["--config", config, "subscribers", "newsletters", "ann@example.com"]
    )
    assert shown.output == "ann@example.com: links\n"
    both = runner.invoke(
        main,
        ["--config", config, "subscribers", "newsletters", "ann@example.com", "links", "weekly"],
    )
    assert both.output == "ann@example.com: weekly, links\n"


# --------------------------------------------------------------------------- serve pages


def test_serve_pages_list_the_newsletters_and_keep_each_choice(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from digest.serve.app import create_app
    from tests.test_serve import SECRET, Clock, csrf_of, token_for, write_config

    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    config = write_config(sample_site, subscribe_burst=50)
    clock = Clock()

    def receives(address: str) -> tuple[str, ...]:
        with SubscriberStore(config.path(config.subscribers.database)) as store:
            subscriber = store.get(address)
            assert subscriber is not None
            with NewsletterChoices(store) as choices:
                return choices.receives(subscriber, config)

    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        page = client.get("/subscribe")
        assert page.text.count('name="newsletters"') == 2
        assert 'value="weekly" checked> Field Notes Weekly' in page.text
        assert 'value="links"> Field Notes Links' in page.text
        answer = client.post(
            "/subscribe",
            data={
                "email": "reader@example.com",
                "csrf": csrf_of(page.text),
                "newsletters": ["links", "bogus"],
            },
        )
        assert answer.status_code == 202
        assert receives("reader@example.com") == ("links",)
        # Someone already subscribed is not changed by the public form.
        with SubscriberStore(config.path(config.subscribers.database)) as store:
            store.add("active@example.com", status="active", now=clock.now)
        client.post("/subscribe", json={"email": "active@example.com", "newsletters": ["links"]})
        assert receives("active@example.com") == ("weekly",)

        path = f"/preferences/{token_for(config, 'active@example.com', 'preferences')}"
        shown = client.get(path)
        assert 'value="weekly" checked> Field Notes Weekly' in shown.text
        assert 'value="links"> Field Notes Links' in shown.text
        saved = client.post(
            path,
            data={
                "csrf": csrf_of(shown.text),
                "action": "save",
                "newsletters": ["weekly", "links"],
            },
        )
        assert saved.status_code == 200 and "Saved." in saved.text
        assert 'value="links" checked> Field Notes Links' in saved.text
        assert receives("active@example.com") == ("weekly", "links")


def test_each_newsletter_has_its_own_archive_index(sample_site: Path) -> None:
    from digest.email.build import build_issue

    whole = load_config(sample_site / "config.yaml")
    now = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    for name in whole.newsletter_names:
        build_issue(whole.for_newsletter(name), now=now, week="2026-W47", publish=True)
    archive = sample_site / "out" / "archive"
    assert (archive / "2026-W47" / "index.html").is_file()
    assert (archive / "links-2026-W47" / "index.html").is_file()
    weekly_index = (archive / "index.html").read_text()
    links_index = (archive / "links" / "index.html").read_text()
    assert "/archive/2026-W47/" in weekly_index and "links-2026-W47" not in weekly_index
    assert "/archive/links-2026-W47/" in links_index and "/archive/2026-W47/" not in links_index
    assert "links-2026-W47" in (archive / "links" / "feed.xml").read_text()


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_a_daily_newsletter_beside_a_weekly_one(tmp_path: Path) -> None:
    site = two_newsletter_site(tmp_path)
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["newsletters"][1] = {
        "name": "daily",
        "period": "day",
        "sources": [{"path": "posts"}],
        "schedule": {"cron": "0 7 * * *", "grace": "6h"},
    }
    path.write_text(yaml.safe_dump(data))
    whole = load_config(path)
    daily = whole.for_newsletter("daily")
    now = datetime(2026, 11, 19, 8, tzinfo=timezone.utc)
    assert pipeline.resolve_window(daily, now).issue_id == "daily-2026-11-18"
    window = pipeline.resolve_window(daily, now, week="daily-2026-11-18")
    assert (window.start.isoformat(), window.end.isoformat()) == (
        "2026-11-18T00:00:00+01:00", "2026-11-19T00:00:00+01:00"
    )  # fmt: skip
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        store.add("both@example.com", status="active", now=now)
        store.add("weekly@example.com", status="active", now=now)
        with NewsletterChoices(store) as choices:
            choices.choose(store.get("both@example.com"), ["weekly", "daily"])  # type: ignore[arg-type]

    clock = StepClock(datetime(2026, 11, 17, 0, 0, tzinfo=BERLIN))
    outcomes: list[tuple[str, str, str]] = []
    while clock.now() <= datetime(2026, 11, 24, 12, 0, tzinfo=BERLIN):
        for result in run_newsletters(whole, whole.newsletter_names, clock):
            assert result.report is not None, result.error
            if result.report.action == "ran" and result.report.run is not None:
                run = result.report.run
                outcomes.append((result.newsletter, run.issue_id, run.outcome))
        clock.moment += timedelta(hours=1)
    assert outcomes == [
        ("daily", "daily-2026-11-16", "skipped-empty"),  # Tuesday 07:00: Monday had no post
        ("daily", "daily-2026-11-17", "skipped-empty"),
        ("daily", "daily-2026-11-18", "sent"),  # the post of Wednesday the 18th
        ("daily", "daily-2026-11-19", "skipped-empty"),
        ("daily", "daily-2026-11-20", "skipped-empty"),
        ("daily", "daily-2026-11-21", "skipped-empty"),
        ("daily", "daily-2026-11-22", "skipped-empty"),
        ("weekly", "2026-W47", "sent"),  # Monday the 23rd, 09:00
        ("daily", "daily-2026-11-23", "skipped-empty"),  # Tuesday the 24th, 07:00
    ]
    assert outbox_deliveries(site) == Counter(
        {
            ("daily-2026-11-18", "both@example.com"): 1,
            ("2026-W47", "both@example.com"): 1,
            ("2026-W47", "weekly@example.com"): 1,
        }
    )


def test_category_preferences_of_one_newsletter_do_not_empty_another(sample_site: Path) -> None:
    from digest.delivery.send import send_issue

    whole = load_config(sample_site / "config.yaml")
    links = whole.for_newsletter("links")
    # One newsletter's view answers for the others from the config as written.
    assert links.for_newsletter("weekly").categories == whole.categories
    now = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    with SubscriberStore(whole.path(whole.subscribers.database)) as store:
        store.add("ada@example.com", categories=("Work", "Tools"), status="active", now=now)
        store.add("res@example.com", categories=("Research",), status="active", now=now)
        store.add("odd@example.com", categories=("Gardening",), status="active", now=now)
        with NewsletterChoices(store) as choices:
            for address in ("ada@example.com", "res@example.com", "odd@example.com"):
                choices.choose(store.get(address), ["weekly", "links"])  # type: ignore[arg-type]
    report = send_issue(links, now=now, week="2026-W47")
    # Ada chose weekly's sections: links comes whole. Research is a links section too: only
    # it. Gardening is nobody's section: nothing, as with one newsletter.
    assert report.variants == {"all": 1, "Research": 1}
    assert report.skipped == 1


def test_choices_from_a_page_and_an_import_edge_by_edge(sample_site: Path) -> None:
    from digest.audience.newsletters import (
        assign_imported,
        choose_from_form,
        listed,
        receiving,
    )
    from digest.errors import StoreError

    config = load_config(sample_site / "config.yaml")  # weekly and links
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        ann, _ = store.add("ann@example.com", now=now)
        # nothing ticked changes nothing; names nobody offered are ignored (public input)
        assert choose_from_form(store, "ann@example.com", [], config) == ("weekly",)
        assert choose_from_form(store, "ann@example.com", ["links", "evil"], config) == ("links",)
        assert receiving(store, "ann@example.com", config) == ("links",)
        # someone who is not a subscriber has no choices, and none are recorded
        assert choose_from_form(store, "nobody@example.com", ["links"], config) == ()
        assert receiving(store, "nobody@example.com", config) == ()
        assign_imported(store, ["ann@example.com"], {"ann@example.com"}, config, [])
        assert receiving(store, "ann@example.com", config) == ("links",)  # no names: no change
        with NewsletterChoices(store) as choices, pytest.raises(StoreError) as refused:
            choices.choose(ann, [])
        assert str(refused.value) == "choose at least one newsletter (or unsubscribe)"
        assert receiving(store, "ann@example.com", config) == ("links",)
    assert [name for name, _, _ in listed(config)] == ["weekly", "links"]
    single = parse_config(BASE, sample_site / "single.yaml")
    assert listed(single) == []  # one newsletter: the pages look as they always did


def test_with_one_newsletter_every_active_subscriber_receives_it(tmp_path: Path) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with SubscriberStore(tmp_path / "subscribers.sqlite") as store:
        store.add("ann@example.com", now=now)
        store.add("bob@example.com", status="unsubscribed", now=now)
        store.add("cy@example.com", now=now)
        assert [s.email for s in recipients(config, store, chunk=1)] == [
            "ann@example.com",
            "cy@example.com",
        ]

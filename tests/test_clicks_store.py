"""The click store (delivery/clicks.py), click tokens (audience/clicktokens.py) and the
``analytics`` config section, on both store backends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.audience.clicktokens import Click, ClickTokenError, make_click_token, read_click_token
from digest.config import load_config
from digest.delivery.clicks import MIGRATIONS, ClickStore, LinkCount, Tally
from digest.errors import ConfigError
from digest.store.database import Target

pytestmark = pytest.mark.backends

KEY = b"k" * 32


def test_counts_add_up_and_are_read_back(store_at: Callable[[str], Target]) -> None:
    tally = Tally.empty()
    tally.add("2026-W49", 0, "all", "2026-12-07", kept=True)
    tally.add("2026-W49", 0, "all", "2026-12-07", kept=True)
    tally.add("2026-W49", 0, "all", "2026-12-07", kept=False)
    tally.add("2026-W49", 3, "Work", "2026-12-08", kept=True, handle="h" * 16)
    with ClickStore(store_at("clicks.sqlite")) as store:
        store.add(tally)
        store.add(tally)
        assert store.links("2026-W49") == [
            LinkCount("2026-W49", 0, "all", 4, 2),
            LinkCount("2026-W49", 3, "Work", 2, 0),
        ]
        assert store.links("2026-W50") == []
        assert store.days() == [
            ("2026-W49", "2026-12-07", 4, 2),
            ("2026-W49", "2026-12-08", 2, 0),
        ]
        assert store.readers(["2026-W49", "2026-W48"]) == {"h" * 16: {"2026-W49"}}
        assert store.forget(["h" * 16, "x" * 16]) == 1
        assert store.readers(["2026-W49"]) == {}
        version = store._db.execute(
            "SELECT version FROM schema_versions WHERE store = 'clicks'"
        ).fetchone()[0]
    assert version == len(MIGRATIONS)


def test_two_writers_each_add_exactly_their_own(store_at: Callable[[str], Target]) -> None:
    """Each serve process adds its own increments (kept = kept + ?): none is lost."""
    target = store_at("clicks.sqlite")
    ClickStore(target).close()  # the schema once, before the writers race

    def writer() -> None:
        with ClickStore(target) as store:
            for _ in range(25):
                tally = Tally.empty()
                for post in range(4):
                    tally.add("i1", post, "all", "2026-12-07", kept=True)
                tally.add("i1", 0, "all", "2026-12-07", kept=False)
                store.add(tally)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with ClickStore(target) as store:
        assert [(c.post, c.kept, c.filtered) for c in store.links("i1")] == [
            (0, 100, 100),
            (1, 100, 0),
            (2, 100, 0),
            (3, 100, 0),
        ]


def test_click_tokens_round_trip_and_refuse_what_the_key_did_not_make() -> None:
    click = Click("2026-W49", 7, "Work+Tools")
    token = make_click_token(click, KEY)
    assert "Work" not in token and "2026" not in token  # opaque in the URL
    assert read_click_token(token, [b"old" * 11, KEY]) == click
    with_reader = Click("2026-W49", 0, "all", handle="A" * 16)
    assert read_click_token(make_click_token(with_reader, KEY), [KEY]) == with_reader
    forged = make_click_token(Click("2026-W49", 8, "Work+Tools"), b"other key" * 4)
    _payload, signature = token.split(".")
    for bad in (
        forged,
        f"{forged.split('.')[0]}.{signature}",  # another post under this link's signature
        token + "=",
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        "",
        "x" * 700,
        "https://evil.example/.AAAAAAAAAAAAAAAAAAAAAA",
    ):
        with pytest.raises(
            ClickTokenError, match=r"^this link is damaged or is not a digest link$"
        ):
            read_click_token(bad, [KEY])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Click("../etc", 0, "all"), "is not an issue id"),
        (Click("i1", -1, "all"), "no click token for post -1"),
        (Click("i1", 0, "all", handle="bob@example.com"), "is not a subscriber handle"),
    ],
)
def test_click_tokens_name_only_well_formed_links(bad: Click, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_click_token(bad, KEY)


def test_analytics_is_off_by_default_and_opens_can_be_turned_on(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    assert (config.analytics.clicks, config.analytics.opens) == ("off", False)
    with (sample_site / "config.yaml").open("a", encoding="utf-8") as out:
        out.write("\nanalytics:\n  opens: true\n")
    assert load_config(sample_site / "config.yaml").analytics.opens is True


def test_per_subscriber_is_accepted_and_the_sunset_flow_needs_it(sample_site: Path) -> None:
    original = (sample_site / "config.yaml").read_text(encoding="utf-8")
    (sample_site / "config.yaml").write_text(
        original + "\nanalytics:\n  clicks: per_subscriber\n  sunset:\n"
        "    after_issues: 3\n    grace_days: 14\n",
        encoding="utf-8",
    )
    config = load_config(sample_site / "config.yaml")
    assert config.analytics.clicks == "per_subscriber"
    assert config.analytics.sunset is not None
    assert (config.analytics.sunset.after_issues, config.analytics.sunset.grace_days) == (3, 14)
    (sample_site / "config.yaml").write_text(
        original + "\nanalytics:\n  clicks: aggregate\n  sunset:\n"
        "    after_issues: 3\n    grace_days: 14\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"analytics.*sunset needs clicks: per_subscriber"):
        load_config(sample_site / "config.yaml")


def test_db_commands_list_the_click_store_only_where_clicks_are_counted(
    sample_site: Path, site_backend: str
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    args = ["--config", str(sample_site / "config.yaml"), "db"]
    runner = CliRunner()
    assert "clicks" not in runner.invoke(main, [*args, "status"]).output
    with (sample_site / "config.yaml").open("a", encoding="utf-8") as out:
        out.write("\nanalytics:\n  clicks: aggregate\n")
    upgraded = runner.invoke(main, [*args, "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    status = runner.invoke(main, [*args, "status"])
    (line,) = [x for x in status.output.splitlines() if x.startswith("clicks")]
    assert line.split()[:4] == ["clicks", "version", str(len(MIGRATIONS)), "up"]

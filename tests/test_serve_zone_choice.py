"""The preferences page lets a reader choose their time zone: a select of IANA zones by
region that works without script, the current one chosen; a bad value is a 400 with a
message, never a 500, and changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.audience.rhythm import Rhythm
from digest.config import Config
from digest.serve.zones import zone_groups
from tests.test_serve import add, csrf_of, env, token_for, write_config
from tests.test_serve_rhythm import _rhythm, client

__all__ = ["client", "env"]  # the fixtures, imported for the tests below


@pytest.fixture
def config(sample_site: Path, env: None) -> Config:
    return write_config(sample_site)


def _selected(html: str, name: str) -> list[str]:
    block = re.search(rf'<select id="{name}" name="{name}".*?</select>', html, re.S)
    assert block, f"no {name} select"
    return re.findall(r'<option value="([^"]+)" selected>', block.group(0))


def test_the_zones_are_grouped_by_region_and_read_as_places() -> None:
    groups = dict(zone_groups())
    assert list(groups)[:2] == ["Africa", "America"]
    assert ("America/Argentina/Buenos_Aires", "Argentina / Buenos Aires") in groups["America"]
    assert ("Europe/Berlin", "Berlin") in groups["Europe"]
    every = {name for zones in groups.values() for name, _ in zones}
    assert "US/Eastern" not in every and "Etc/GMT+5" not in every


def test_the_page_offers_every_zone_with_the_current_one_selected(
    client: TestClient, config: Config
) -> None:
    add(config, "ann@example.com")
    path = f"/preferences/{token_for(config, 'ann@example.com', 'preferences')}"
    page = client.get(path)
    assert page.status_code == 200
    # no zone of her own: the schedule's (the site's, Europe/Berlin) is the one shown
    assert _selected(page.text, "timezone") == ["Europe/Berlin"]
    # saving the page as shown leaves her following the schedule's zone
    kept = client.post(
        path, data={"csrf": csrf_of(page.text), "action": "save", "timezone": "Europe/Berlin"}
    )
    assert kept.status_code == 200
    assert _rhythm(config, "ann@example.com") == Rhythm("weekly", None, None)
    assert '<optgroup label="Asia">' in page.text
    assert '<option value="Asia/Tokyo">Tokyo</option>' in page.text
    answer = client.post(
        path,
        data={"csrf": csrf_of(page.text), "action": "save", "timezone": "Asia/Tokyo"},
    )
    assert answer.status_code == 200
    assert _rhythm(config, "ann@example.com") == Rhythm("weekly", "Asia/Tokyo", None)
    assert _selected(answer.text, "timezone") == ["Asia/Tokyo"]
    assert _selected(answer.text, "frequency") == ["weekly"]


@pytest.mark.parametrize("given", ["Mars/Olympus", "../../etc/passwd", "x" * 5000, " "])
def test_a_zone_the_database_does_not_know_is_a_400_and_changes_nothing(
    client: TestClient, config: Config, given: str
) -> None:
    add(config, "bo@example.com")
    path = f"/preferences/{token_for(config, 'bo@example.com', 'preferences')}"
    page = client.get(path)
    answer = client.post(
        path,
        data={
            "csrf": csrf_of(page.text),
            "action": "save",
            "timezone": given,
            "frequency": "daily",
        },
    )
    assert answer.status_code == 400
    assert "<h1>That is not a time zone we know</h1>" in answer.text
    assert "Choose your time zone from the list and save again." in answer.text
    assert _rhythm(config, "bo@example.com") == Rhythm("weekly", None, None)


def test_the_zone_choice_speaks_german(client: TestClient, config: Config) -> None:
    add(config, "cy@example.com")
    path = f"/preferences/{token_for(config, 'cy@example.com', 'preferences')}"
    page = client.get(path, headers={"Accept-Language": "de"})
    assert '<label for="timezone">Zeitzone</label>' in page.text
    assert '<optgroup label="Asien">' in page.text
    assert '<optgroup label="Indischer Ozean">' in page.text

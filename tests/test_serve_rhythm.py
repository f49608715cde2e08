"""The subscribe form offers the browser's timezone; the server keeps a known one and
falls back to the schedule's for anything else, never answering with a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.audience.rhythm import Rhythm, Rhythms
from digest.config import Config
from digest.serve.app import create_app
from tests.test_serve import Clock, add, csrf_of, env, store, token_for, write_config

__all__ = ["env"]  # the fixture, imported for the tests below


@pytest.fixture
def config(sample_site: Path, env: None) -> Config:
    return write_config(sample_site, subscribe_burst=50)


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    clock = Clock()
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


def _rhythm(config: Config, address: str) -> Rhythm:
    with store(config) as s:
        found = s.get(address)
        assert found is not None
        return Rhythms(s).of(found)


def test_the_form_carries_the_zone_field_and_its_script(client: TestClient) -> None:
    page = client.get("/subscribe")
    assert '<input type="hidden" name="timezone" value="">' in page.text
    assert '<script src="/assets/zone.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/assets/zone.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in script.text


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("Asia/Tokyo", "Asia/Tokyo"),
        ("", None),
        ("Mars/Olympus", None),
        ("../../etc/passwd", None),
        ("x" * 5000, None),
    ],
)
def test_a_known_zone_is_kept_and_anything_else_is_the_default(
    client: TestClient, config: Config, given: str, kept: str | None
) -> None:
    page = client.get("/subscribe")
    answer = client.post(
        "/subscribe",
        data={"email": "ann@example.com", "csrf": csrf_of(page.text), "timezone": given},
    )
    assert answer.status_code == 202
    assert _rhythm(config, "ann@example.com") == Rhythm("weekly", kept, None)


def test_the_json_api_takes_a_zone_too(client: TestClient, config: Config) -> None:
    answer = client.post(
        "/subscribe",
        json={"email": "bo@example.com", "timezone": "America/Los_Angeles"},
        headers={"Origin": "http://127.0.0.1:8025"},
    )
    assert answer.status_code == 202, answer.text
    assert _rhythm(config, "bo@example.com") == Rhythm("weekly", "America/Los_Angeles", None)
    wrong = client.post(
        "/subscribe",
        json={"email": "cy@example.com", "timezone": 9},
        headers={"Origin": "http://127.0.0.1:8025"},
    )
    assert (wrong.status_code, wrong.json()) == (400, {"error": "'timezone' must be a string"})


def test_the_preferences_page_switches_the_cadence_from_the_next_week(
    client: TestClient, config: Config
) -> None:
    add(config, "ann@example.com")
    path = f"/preferences/{token_for(config, 'ann@example.com', 'preferences')}"
    page = client.get(path)
    assert '<option value="weekly" selected>Once a week</option>' in page.text
    assert '<option value="daily">Every day</option>' in page.text
    assert 'id="frequency-hint"' not in page.text
    saved = client.post(
        path, data={"csrf": csrf_of(page.text), "frequency": "daily", "action": "save"}
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    assert '<option value="daily" selected>Every day</option>' in saved.text
    # the clock reads Monday 2026-11-23: that week comes weekly, then every day
    assert (
        '<p class="hint" id="frequency-hint">From the week starting 2026-11-30; the week in '
        "progress comes as before.</p>"
    ) in saved.text
    assert _rhythm(config, "ann@example.com") == Rhythm("daily", None, date(2026, 11, 30))
    odd = client.post(path, data={"csrf": csrf_of(saved.text), "frequency": "hourly",
                                  "action": "save"})  # fmt: skip
    assert odd.status_code == 200
    assert _rhythm(config, "ann@example.com") == Rhythm("daily", None, date(2026, 11, 30))

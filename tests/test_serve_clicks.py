"""/c/<token> in process (serve/clicks.py, serve/clickfilter.py): the redirect goes only to
the issue's own post links, and scanners are counted apart from readers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.audience.clicktokens import Click, make_click_token
from digest.audience.tokens import token_secret
from digest.config import Config
from digest.delivery.clicks import ClickStore, LinkCount, Tally
from digest.errors import StoreError
from digest.serve.app import create_app
from digest.serve.clickfilter import Bursts, reader_agent
from digest.serve.clicks import ClickCounter
from digest.store.database import locate
from tests.test_serve import Clock, write_config

ISSUE = "2026-W47"
POSTS = [
    "https://fieldnotes.example.com/posts/one?utm_source=digest",
    "https://fieldnotes.example.com/posts/two",
    "https://fieldnotes.example.com/posts/three",
    "https://elsewhere.example.net/story",
]
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _manifest(config: Config) -> None:
    folder = config.path(config.out_dir) / ISSUE
    folder.mkdir(parents=True)
    sections = [
        {"name": "Work", "posts": [{"id": "one", "url": POSTS[0]}, {"id": "two", "url": POSTS[1]}]},
        {
            "name": "Tools",
            "posts": [{"id": "three", "url": POSTS[2]}, {"id": "s", "url": POSTS[3]}],
        },
    ]
    manifest = {"issue_id": ISSUE, "sections": sections}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    write_config(sample_site)
    path = sample_site / "config.yaml"
    path.write_text(path.read_text() + "analytics:\n  clicks: aggregate\n  flush_seconds: 60\n")
    found = write_config(sample_site)
    _manifest(found)
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(config: Config, clock: Clock) -> Iterator[TestClient]:
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025", follow_redirects=False) as test:
        yield test


def _link(config: Config, post: int, variant: str = "all", key: bytes | None = None) -> str:
    return "/c/" + make_click_token(Click(ISSUE, post, variant), key or token_secret(config))


def _counts(config: Config) -> list[LinkCount]:
    with ClickStore(locate(config, config.analytics.database)) as store:
        return store.links(ISSUE)


def test_a_click_answers_302_to_the_issues_post_and_scanners_are_counted_apart(
    config: Config, client: TestClient, clock: Clock
) -> None:
    browser = {"User-Agent": FIREFOX}
    answer = client.get(_link(config, 0), headers=browser)
    assert (answer.status_code, answer.headers["location"]) == (302, POSTS[0])
    assert answer.headers["cache-control"] == "no-store"
    clock.seconds += 5
    assert client.get(_link(config, 3, "Tools"), headers=browser).headers["location"] == POSTS[3]
    clock.seconds += 5
    head = client.head(_link(config, 1), headers=browser)
    assert (head.status_code, head.headers["location"]) == (302, POSTS[1])
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}
    assert client.get(_link(config, 1), headers=scanner).status_code == 302
    assert client.get(_link(config, 1), headers={"User-Agent": "curl/8.5.0"}).status_code == 302
    clock.seconds += 5
    for post in (0, 1, 2):  # every link of the message at once: a gateway, not a reader
        assert client.get(_link(config, post), headers=browser).status_code == 302
    client.__exit__(None, None, None)  # serve stops: what it holds is written
    assert _counts(config) == [
        LinkCount(ISSUE, 0, "all", 1, 1),
        LinkCount(ISSUE, 1, "all", 0, 4),
        LinkCount(ISSUE, 2, "all", 0, 1),
        LinkCount(ISSUE, 3, "Tools", 1, 0),
    ]


def test_forged_and_foreign_tokens_get_400_and_unknown_links_404(
    config: Config, client: TestClient
) -> None:
    forged = _link(config, 0, key=b"not the link key" * 2)
    for path in (forged, "/c/https%3A%2F%2Fevil.example", "/c/" + "A" * 40 + ".x"):
        answer = client.get(path, headers={"User-Agent": FIREFOX})
        assert (answer.status_code, answer.text) == (
            400,
            "this link is damaged or is not a digest link\n",
        )
        assert "location" not in answer.headers
    beyond = client.get(_link(config, 4))
    assert (beyond.status_code, beyond.text) == (404, "This issue's links are not here.\n")
    other = "/c/" + make_click_token(Click("2026-W01", 0, "all"), token_secret(config))
    assert client.get(other).status_code == 404
    client.__exit__(None, None, None)
    assert _counts(config) == []


def test_with_clicks_off_mailed_links_still_redirect_and_nothing_is_counted(
    config: Config, clock: Clock, sample_site: Path
) -> None:
    path = sample_site / "config.yaml"
    path.write_text(path.read_text().replace("clicks: aggregate", "clicks: 'off'"))
    off = write_config(sample_site)
    assert off.analytics.clicks == "off"
    with TestClient(create_app(off, clock=clock), follow_redirects=False) as test:
        answer = test.get(_link(off, 2), headers={"User-Agent": FIREFOX})
    assert (answer.status_code, answer.headers["location"]) == (302, POSTS[2])
    assert not off.path(off.analytics.database).exists()


def test_reader_agents() -> None:
    assert reader_agent(FIREFOX)
    assert reader_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1")
    for agent in (
        None,
        "",
        "python-requests/2.32",
        "Mozilla/5.0 (compatible; bingbot/2.0)",
        "Mozilla/5.0 HeadlessChrome/120.0",
        "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
        "Barracuda Sentinel (EE)",
    ):
        assert not reader_agent(agent), agent


def test_a_burst_is_told_once_it_is_over() -> None:
    bursts: Bursts[str] = Bursts()
    bursts.add("reader", 0.0, 1, "a")
    bursts.add("reader", 0.9, 2, "b")
    bursts.add("gateway", 0.0, 1, "g1")
    bursts.add("gateway", 0.2, 2, "g2")
    bursts.add("gateway", 0.4, 2, "g3")
    assert list(bursts.settle(1.0)) == []  # neither is over yet
    bursts.add("gateway", 0.5, 3, "g4")
    bursts.add("reader", 2.0, 3, "c")  # 1.1 s after b: a new chain
    assert sorted(bursts.settle(1.6)) == [
        ("a", True),
        ("b", True),
        ("g1", False),
        ("g2", False),
        ("g3", False),
        ("g4", False),
    ]
    assert len(bursts) == 1
    assert list(bursts.settle(2.0, everything=True)) == [("c", True)]
    assert len(bursts) == 0


def test_counts_a_flush_could_not_write_are_written_by_the_next(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = ClickCounter(config, monotonic=lambda: 0.0)
    counter.tally.add(ISSUE, 0, "all", "2026-11-23", kept=True)
    real = ClickStore.add
    tries: list[int] = []

    def down_once(self: ClickStore, tally: Tally) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise StoreError("the database is down")
        real(self, tally)

    monkeypatch.setattr(ClickStore, "add", down_once)

    async def run() -> None:
        await counter.flush()
        assert counter.tally.links == {(ISSUE, 0, "all"): [1, 0]}  # kept for the next try
        counter.tally.add(ISSUE, 0, "all", "2026-11-23", kept=False)
        await counter.stop()

    asyncio.run(run())
    assert len(tries) == 2
    assert _counts(config) == [LinkCount(ISSUE, 0, "all", 1, 1)]

"""A provider's ``Retry-After`` sets the send loop's wait before it tries refused rows
again, bounded by ``send.retry_for`` (over httpx.MockTransport; the sleeps recorded)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from digest.config import load_config
from digest.delivery.ledger import PENDING, SENT, Ledger
from digest.delivery.providers import registry
from digest.delivery.providers.classify import RefusedForNow
from digest.delivery.send import send_issue
from digest.errors import SendError
from digest.store.database import locate
from tests.emulators.providers import run_emulator
from tests.sink.site import KEY, NOW, WEEK, configure
from tests.test_exactly_once_state import CachedComposer

pytestmark = pytest.mark.slow  # each file builds the sample issue once: seconds of work

COMPOSER = CachedComposer()  # the same sample issue for every test here: built once


class Postmark:
    """Postmark's batch endpoint: ``refusals`` whole-request 429s with ``Retry-After``
    first, then success for every message; the recipients of each accepted request."""

    def __init__(self, refusals: int, retry_after: str) -> None:
        self.refusals = refusals
        self.retry_after = retry_after
        self.accepted: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.refusals:
            self.refusals -= 1
            return httpx.Response(
                429,
                json={"ErrorCode": 429, "Message": "Rate limit exceeded"},
                headers={"Retry-After": self.retry_after},
            )
        messages = json.loads(request.content)
        self.accepted.update(m["To"] for m in messages)
        return httpx.Response(
            200,
            json=[
                {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{m['To']}", "To": m["To"]}
                for m in messages
            ],
        )


def send(site: Path, api: Postmark, slept: list[float]) -> object:
    config = load_config(site / "config.yaml")
    provider = registry.make_provider(config)
    cls = type(provider)
    provider.close()
    client = httpx.Client(transport=httpx.MockTransport(api))
    provider = cls(provider.settings, config, client=client)  # type: ignore[call-arg]
    provider.set_clock(sleep=lambda s: None)  # type: ignore[attr-defined]
    return send_issue(
        config, now=NOW, week=WEEK, provider=provider, sleep=slept.append, composer=COMPOSER
    )


def counts(site: Path) -> dict[str, int]:
    config = load_config(site / "config.yaml")
    with Ledger(locate(config, config.ledger.database)) as ledger:
        return ledger.counts(f"{WEEK}")


def test_retry_after_sets_the_wait_before_the_rows_are_tried_again(sample_site: Path) -> None:
    """Postmark refuses every request for now (429, ``Retry-After: 7``) past the transport's
    own retries: the rows go back to pending, the loop waits exactly the 7 s asked (not its
    20 ms backoff), then sends everyone once."""
    addresses = configure(sample_site, "postmark", url="https://api.test", n=6, batch=3, retries=0)
    api = Postmark(refusals=2, retry_after="7")
    slept: list[float] = []
    report = send(sample_site, api, slept)
    assert report.exit_code == 0  # type: ignore[attr-defined]
    assert slept == [7.0, 7.0]
    assert api.accepted == Counter(addresses)
    assert counts(sample_site)[SENT] == 6


def test_without_retry_after_the_loop_backs_off_from_send_retry_wait(sample_site: Path) -> None:
    configure(sample_site, "postmark", url="https://api.test", n=3, batch=3, retries=0)
    api = Postmark(refusals=2, retry_after="soon")  # not a number or a date: not said
    slept: list[float] = []
    send(sample_site, api, slept)
    assert slept == [0.02, 0.04]  # retry_wait (the sink site's 0.02s), doubled
    assert sum(api.accepted.values()) == 3


def test_a_retry_after_past_send_retry_for_stops_the_run_with_the_rows_pending(
    sample_site: Path,
) -> None:
    """Asked to wait an hour with ``send.retry_for: 10m``: no wait at all, the run stops
    (exit 6) saying why, every row pending for the next run."""
    configure(
        sample_site, "postmark", url="https://api.test", n=3, batch=3, retries=0,
        retry_for="10m",
    )  # fmt: skip
    api = Postmark(refusals=100, retry_after="3600")
    slept: list[float] = []
    with pytest.raises(SendError) as caught:
        send(sample_site, api, slept)
    assert slept == []
    assert isinstance(caught.value, RefusedForNow)  # the provider's error, as before retries
    assert str(caught.value) == (
        "postmark: the provider refused for now (postmark 429: Rate limit exceeded (gave up "
        "after 1 tries)) and asked to wait 3600s "
        "(Retry-After), past send.retry_for; 3 message(s) stay pending: run the same "
        "command later to send them"
    )
    assert caught.value.exit_code == 6
    assert counts(sample_site)[PENDING] == 3
    assert api.accepted == Counter()


@pytest.mark.integration
def test_the_postmark_emulators_retry_after_sets_the_loops_wait(sample_site: Path) -> None:
    """The same against the Postmark emulator (its own process on loopback): two 429s
    carrying ``Retry-After: 5``, each past the transport's retries (none configured): the
    loop waits 5 s before each next round (recorded, not slept), then everyone once."""
    with run_emulator("postmark", key=KEY, storm=2, retry_after=5) as emulator:
        addresses = configure(sample_site, "postmark", url=emulator.url, n=6, batch=3, retries=0)
        config = load_config(sample_site / "config.yaml")
        provider = registry.make_provider(config)
        provider.set_clock(sleep=lambda s: None)  # type: ignore[attr-defined]  # the pacer's
        slept: list[float] = []
        report = send_issue(
            config, now=NOW, week=WEEK, provider=provider, sleep=slept.append, composer=COMPOSER
        )
        assert report.exit_code == 0
        assert slept == [5.0, 5.0]
        assert emulator.counts() == dict.fromkeys(addresses, 1)
        assert [r["fault"] for r in emulator.requests()][:2] == ["storm", "storm"]

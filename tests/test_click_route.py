"""ClickRoute.read (serve/clicks.py): a token verified once is not verified again, a forged
one is never held, and the held tokens stay within TOKENS_HELD."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.audience.clicktokens import Click, ClickTokenError, make_click_token
from digest.audience.tokens import token_secret
from digest.serve import clicks as clicks_module
from digest.serve.clicks import ClickRoute
from tests.test_serve import write_config


def test_verified_tokens_are_held_and_forged_ones_never(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret")
    config = write_config(sample_site)
    route = ClickRoute(config, clock=lambda: datetime(2026, 11, 23, tzinfo=timezone.utc))
    key = token_secret(config)
    token = make_click_token(Click("2026-W47", 2, "all"), key)
    verified: list[str] = []
    real = clicks_module.read_click_token

    def counting(text: str, keys: tuple[bytes, ...]) -> Click:
        verified.append(text)
        return real(text, keys)

    monkeypatch.setattr(clicks_module, "read_click_token", counting)
    assert route.read(token) == route.read(token) == Click("2026-W47", 2, "all")
    assert verified == [token]
    forged = make_click_token(Click("2026-W47", 2, "all"), b"f" * 32)
    for _ in range(2):
        with pytest.raises(ClickTokenError):
            route.read(forged)
    assert verified == [token, forged, forged]
    monkeypatch.setattr(clicks_module, "TOKENS_HELD", 3)
    for post in range(5):
        route.read(make_click_token(Click("2026-W47", post, "all"), key))
    assert [c.post for c in route.verified.values()] == [2, 3, 4]

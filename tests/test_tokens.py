from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from digest.audience.tokens import TokenError, make_token, signing_key, verify_token

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
KEYS = {"ada@example.com": b"a" * 32, "bob@example.com": b"b" * 32}


def key_for(email: str) -> bytes | None:
    return KEYS.get(email)


def test_round_trip_is_url_safe() -> None:
    token = make_token("unsubscribe", "ada@example.com", KEYS["ada@example.com"])
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert verify_token(token, "unsubscribe", key_for, now=NOW) == "ada@example.com"


def test_a_forged_token_is_refused() -> None:
    forged = make_token("unsubscribe", "ada@example.com", b"guessed-key")
    with pytest.raises(TokenError, match=r"not valid for ada@example\.com"):
        verify_token(forged, "unsubscribe", key_for, now=NOW)


def test_a_token_moved_to_another_address_is_refused() -> None:
    token = make_token("unsubscribe", "ada@example.com", KEYS["ada@example.com"])
    sig = token.split(".")[2]
    bob = make_token("unsubscribe", "bob@example.com", b"x").split(".")[0]
    with pytest.raises(TokenError, match=r"not valid for bob@example\.com"):
        verify_token(f"{bob}..{sig}", "unsubscribe", key_for, now=NOW)


def test_a_tampered_signature_or_purpose_is_refused() -> None:
    token = make_token("preferences", "ada@example.com", KEYS["ada@example.com"])
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TokenError):
        verify_token(flipped, "preferences", key_for, now=NOW)
    with pytest.raises(TokenError, match="unsubscribe link is not valid"):
        verify_token(token, "unsubscribe", key_for, now=NOW)


def test_expiry_is_signed_and_enforced() -> None:
    key = KEYS["ada@example.com"]
    token = make_token("confirm", "ada@example.com", key, expires_at=NOW + timedelta(hours=1))
    assert verify_token(token, "confirm", key_for, now=NOW) == "ada@example.com"
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, "confirm", key_for, now=NOW + timedelta(hours=2))
    email, _, sig = token.split(".")
    with pytest.raises(TokenError, match="not valid"):
        verify_token(f"{email}.zzzzzzzz.{sig}", "confirm", key_for, now=NOW)


def test_garbage_and_unknown_subscribers() -> None:
    with pytest.raises(TokenError, match="three parts"):
        verify_token("nonsense", "unsubscribe", key_for, now=NOW)
    token = make_token("unsubscribe", "eve@example.com", b"k")
    with pytest.raises(TokenError, match=r"no subscriber eve@example\.com"):
        verify_token(token, "unsubscribe", key_for, now=NOW)


def test_server_secret_changes_the_key() -> None:
    own = b"s" * 32
    assert signing_key(own, None) == own
    assert signing_key(own, b"server") != own
    assert signing_key(own, b"server") != signing_key(own, b"other")

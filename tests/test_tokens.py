from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from digest.audience.tokens import (
    Subject,
    TokenError,
    handle_of,
    make_legacy_token,
    make_token,
    parse_token,
    signing_key,
    verify_token,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SECRETS = {"ada@example.com": b"a" * 32, "bob@example.com": b"b" * 32}
ADA = handle_of(SECRETS["ada@example.com"])
BOB = handle_of(SECRETS["bob@example.com"])
BY_HANDLE = {handle_of(secret): secret for secret in SECRETS.values()}


def key_for(subject: Subject) -> bytes | None:
    if subject.handle is not None:
        return BY_HANDLE.get(subject.handle)
    return SECRETS.get(subject.email or "")


def test_round_trip_is_url_safe_and_holds_no_address() -> None:
    token = make_token("unsubscribe", ADA, SECRETS["ada@example.com"])
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token.startswith(f"2.{ADA}..") and len(token) == 2 + 17 + 1 + 43
    assert verify_token(token, "unsubscribe", key_for, now=NOW) == Subject(handle=ADA)
    assert ADA != BOB and len(ADA) == 16
    assert handle_of(SECRETS["ada@example.com"]) == ADA  # the same secret, the same handle


def test_a_forged_token_is_refused() -> None:
    forged = make_token("unsubscribe", ADA, b"guessed-key")
    with pytest.raises(TokenError, match=r"unsubscribe link is not valid"):
        verify_token(forged, "unsubscribe", key_for, now=NOW)


def test_a_token_moved_to_another_subscriber_is_refused() -> None:
    token = make_token("unsubscribe", ADA, SECRETS["ada@example.com"])
    signature = token.rsplit(".", 1)[1]
    with pytest.raises(TokenError, match=r"not valid"):
        verify_token(f"2.{BOB}..{signature}", "unsubscribe", key_for, now=NOW)


def test_a_tampered_signature_or_purpose_is_refused() -> None:
    token = make_token("preferences", ADA, SECRETS["ada@example.com"])
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TokenError):
        verify_token(flipped, "preferences", key_for, now=NOW)
    with pytest.raises(TokenError, match="unsubscribe link is not valid"):
        verify_token(token, "unsubscribe", key_for, now=NOW)


def test_expiry_is_signed_and_enforced() -> None:
    key = SECRETS["ada@example.com"]
    token = make_token("confirm", ADA, key, expires_at=NOW + timedelta(hours=1))
    assert verify_token(token, "confirm", key_for, now=NOW) == Subject(handle=ADA)
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, "confirm", key_for, now=NOW + timedelta(hours=2))
    version, handle, _, sig = token.split(".")
    with pytest.raises(TokenError, match="not valid"):
        verify_token(f"{version}.{handle}.zzzzzzzz.{sig}", "confirm", key_for, now=NOW)


def test_garbage_and_unknown_subscribers() -> None:
    with pytest.raises(TokenError, match="damaged"):
        verify_token("nonsense", "unsubscribe", key_for, now=NOW)
    token = make_token("unsubscribe", handle_of(b"e" * 32), b"k")
    with pytest.raises(TokenError, match=r"no such subscriber"):
        verify_token(token, "unsubscribe", key_for, now=NOW)


def test_links_in_the_older_shape_verify_until_they_expire() -> None:
    key = SECRETS["ada@example.com"]
    old = make_legacy_token("confirm", "ada@example.com", key, expires_at=NOW + timedelta(hours=1))
    assert old.split(".")[0] == "YWRhQGV4YW1wbGUuY29t"  # what digest used to mail
    found = verify_token(old, "confirm", key_for, now=NOW)
    assert found == Subject(email="ada@example.com")
    with pytest.raises(TokenError, match="expired"):
        verify_token(old, "confirm", key_for, now=NOW + timedelta(hours=1))
    forever = make_legacy_token("unsubscribe", "ada@example.com", key)
    assert verify_token(forever, "unsubscribe", key_for, now=NOW).email == "ada@example.com"


@pytest.mark.parametrize(
    "spelling",
    [
        "{t}=",
        "{t}==",
        " {t}",
        "{t} ",
        "{t}\n",
        "{t}\t",
        "{t}.",
        "2 {rest}",
        "{t}A",
        "{upper}",
    ],
)
def test_tokens_with_a_trailing_equals_or_whitespace_are_refused(spelling: str) -> None:
    key = SECRETS["ada@example.com"]
    for token in (
        make_token("unsubscribe", ADA, key),
        make_token("confirm", ADA, key, expires_at=NOW + timedelta(hours=1)),
        make_legacy_token("unsubscribe", "ada@example.com", key),
    ):
        purpose = "confirm" if ".." not in token and token.startswith("2.") else "unsubscribe"
        assert verify_token(token, purpose, key_for, now=NOW)
        odd = spelling.format(t=token, rest=token[2:], upper=token.upper())
        with pytest.raises(TokenError, match=r"damaged|not valid|no such subscriber"):
            verify_token(odd, purpose, key_for, now=NOW)


def test_a_non_canonical_base64_spelling_is_refused() -> None:
    """The last character of unpadded base64 has spare bits; only the canonical spelling
    (spare bits zero) is a token."""
    token = make_legacy_token("unsubscribe", "ada@example.com", SECRETS["ada@example.com"])
    address, expiry, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    other = alphabet[last ^ 1]  # a spare bit set: the same bytes, another spelling
    with pytest.raises(TokenError, match="damaged"):
        parse_token(f"{address}.{expiry}.{signature[:-1]}{other}")
    with pytest.raises(TokenError, match="damaged"):
        parse_token(f"2.{ADA}.0{expiry}.{signature}")  # a leading zero in the expiry


def test_server_secret_changes_the_key() -> None:
    own = b"s" * 32
    assert signing_key(own, None) == own
    assert signing_key(own, b"server") != own
    assert signing_key(own, b"server") != signing_key(own, b"other")


def test_a_handle_shared_by_two_rows_names_neither(tmp_path: object) -> None:
    """Rows with a copied secret share a handle: the store still opens, and a link with
    that handle names no one (it could be either)."""
    import sqlite3
    from pathlib import Path

    from digest.audience.subscribers import SubscriberStore

    path = Path(str(tmp_path)) / "subs.sqlite"
    with SubscriberStore(path) as store:
        store.add("ann@example.com", now=NOW)
        store.add("bob@example.com", now=NOW)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE subscribers SET secret = x'00', handle = NULL")
    with SubscriberStore(path) as store:
        ann = store.get("ann@example.com")
        assert ann is not None and ann.handle == handle_of(b"\x00")
        assert store.get_by_handle(ann.handle) is None

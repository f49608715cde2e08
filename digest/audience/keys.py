"""The link key: the server-wide key that signs unsubscribe and preference links.

Every link digest mails is signed with a key made from the subscriber's own secret and the
link key (see :mod:`digest.audience.tokens`). The link key must outlive every send, or links
already mailed stop working. Where it comes from, first match wins:

1. ``serve.secret: ${VAR}`` in the config, or ``$DIGEST_SECRET``: the operator's own;
2. the key file (``keys.file``, default ``data/link-keys.json``), created once with a random
   key and mode 0600 by whichever of ``digest send`` or ``digest serve`` runs first.

``digest keys rotate`` adds a new key to the file. New links are signed with it; links signed
with a previous key keep verifying for ``keys.grace_period`` after the rotation, then stop.
The operator's own secret (1.) always signs; keys from the file still verify within their
grace period, so moving from the file to ``$DIGEST_SECRET`` does not break mailed links.

The file (JSON)::

    {"keys": [{"id": "k1", "secret": "<64 hex>", "created_at": "…", "retired_at": null}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.errors import ConfigError
from digest.store.private import open_private, private_folder, write_private

SECRET_ENV = "DIGEST_SECRET"


@dataclass(frozen=True)
class LinkKey:
    id: str
    secret: bytes
    created_at: datetime
    retired_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "secret": self.secret.hex(),
            "created_at": self.created_at.isoformat(),
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }


@dataclass(frozen=True)
class LinkKeys:
    """The key that signs new links, and every key a link may still be signed with."""

    signing: bytes
    verifying: tuple[bytes, ...]  # ``signing`` first
    source: str  # "serve.secret", "$DIGEST_SECRET" or the key file's path
    created: bool = False  # the key file was created by this call

    @property
    def previous(self) -> tuple[bytes, ...]:
        return self.verifying[1:]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def key_file(config: Config) -> Path:
    return config.path(config.keys.file)


def _read(path: Path) -> list[LinkKey]:
    try:
        data = json.loads(path.read_text("utf-8"))
        keys = [
            LinkKey(
                id=str(item["id"]),
                secret=bytes.fromhex(item["secret"]),
                created_at=datetime.fromisoformat(item["created_at"]),
                retired_at=(
                    datetime.fromisoformat(item["retired_at"]) if item.get("retired_at") else None
                ),
            )
            for item in data["keys"]
        ]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the link key file: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: the link key file is damaged ({type(exc).__name__}: {exc}); restore it "
            "from a backup (links already mailed were signed with it)"
        ) from None
    if not keys or any(len(k.secret) < 16 for k in keys):
        raise ConfigError(f"{path}: the link key file holds no usable key")
    return keys


def _write_new(path: Path, keys: list[LinkKey]) -> bool:
    """Create ``path`` with ``keys`` unless it exists; True when this call created it."""
    private_folder(path.parent)
    payload = (json.dumps({"keys": [k.as_json() for k in keys]}, indent=2) + "\n").encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(temporary)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # atomic, and fails when another process made it first
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    return True


def _replace(path: Path, keys: list[LinkKey]) -> None:
    payload = (json.dumps({"keys": [k.as_json() for k in keys]}, indent=2) + "\n").encode()
    write_private(path, payload)


def _new_key(keys: list[LinkKey], now: datetime) -> LinkKey:
    return LinkKey(f"k{len(keys) + 1}", secrets.token_bytes(32), now)


def _valid(keys: list[LinkKey], grace: timedelta, now: datetime) -> list[LinkKey]:
    """The current key, then every retired key still within its grace period."""
    current = [k for k in keys if k.retired_at is None]
    older = sorted(
        (k for k in keys if k.retired_at is not None and now < k.retired_at + grace),
        key=lambda k: k.retired_at or now,
        reverse=True,
    )
    return current[-1:] + older


def _explicit(config: Config) -> tuple[bytes, str] | None:
    if config.serve.secret is not None:
        return config.serve.secret.resolve().encode(), "serve.secret"
    value = os.environ.get(SECRET_ENV)
    return (value.encode(), f"${SECRET_ENV}") if value else None


def link_keys(config: Config, *, now: datetime | None = None, create: bool = True) -> LinkKeys:
    """The link keys to sign and verify with; creates the key file when it is needed.

    With ``create=False`` a missing file is not created (read-only callers such as
    ``digest status``); then, without an explicit secret, :class:`ConfigError` says so.
    """
    moment = now or _now()
    explicit = _explicit(config)
    path = key_file(config)
    created = False
    if not path.exists() and explicit is None:
        if not create:
            raise ConfigError(
                f"{path}: no link key yet (digest send or digest serve creates it), and "
                f"{SECRET_ENV} is not set"
            )
        created = _write_new(path, [_new_key([], moment)])
    stored = _valid(_read(path), config.keys.grace_period, moment) if path.exists() else []
    file_keys = tuple(k.secret for k in stored)
    if explicit is not None:
        secret, source = explicit
        return LinkKeys(secret, (secret, *[k for k in file_keys if k != secret]), source)
    return LinkKeys(file_keys[0], file_keys, str(path), created)


def rotate(config: Config, *, now: datetime | None = None) -> tuple[LinkKey, list[LinkKey]]:
    """Add a new signing key; the current one retires (it verifies for the grace period).

    Returns the new key and every key in the file afterwards.
    """
    moment = now or _now()
    path = key_file(config)
    if not path.exists():
        link_keys(config, now=moment)  # the first key, so that there is one to retire
        if not path.exists():  # an explicit secret is set: start the file anyway
            _write_new(path, [_new_key([], moment)])
    keys = _read(path)
    keys = [k if k.retired_at else LinkKey(k.id, k.secret, k.created_at, moment) for k in keys]
    fresh = _new_key(keys, moment)
    keys.append(fresh)
    _replace(path, keys)
    return fresh, keys


def describe(config: Config, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The keys in the file, without their secrets: id, created, retired, still verifying."""
    moment = now or _now()
    path = key_file(config)
    if not path.exists():
        return []
    out = []
    for key in _read(path):
        expires = key.retired_at + config.keys.grace_period if key.retired_at else None
        out.append(
            {
                "id": key.id,
                "created_at": key.created_at.isoformat(),
                "retired_at": key.retired_at.isoformat() if key.retired_at else None,
                "verifies_until": expires.isoformat() if expires else None,
                "signing": key.retired_at is None,
                "verifying": expires is None or moment < expires,
            }
        )
    return out


# --------------------------------------------------------------------------- the privacy key

PRIVACY_KEY_NAME = "privacy.key"


def privacy_secret(config: Config) -> bytes:
    """The secret behind keyed hashes that must stay recognisable for years: erased
    addresses and consent records' client addresses. It never rotates.

    First match wins: the key file ``privacy.key`` beside the link key file (created once,
    random, mode 0600, by the first caller that needs it when no operator secret is set);
    else ``serve.secret`` / ``$DIGEST_SECRET``. Keep whichever you use: with another
    secret, erased addresses are no longer recognised.
    """
    path = key_file(config).with_name(PRIVACY_KEY_NAME)
    if not path.exists():
        explicit = _explicit(config)
        if explicit is not None:
            return explicit[0]
        _create_secret_file(path)
    try:
        secret = bytes.fromhex(path.read_text("ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the privacy key: {exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"{path}: the privacy key is damaged (restore it from a backup)")
    return secret


def _create_secret_file(path: Path) -> None:
    private_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(temporary)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # another process may have made it first: keep theirs
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()

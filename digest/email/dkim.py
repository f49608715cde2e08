"""DKIM for the SMTP transport: the key pair, its DNS record, and signing each message.

An HTTP provider signs with its own key; an SMTP relay usually does not, and since 2024
Gmail and Yahoo refuse bulk mail without a DKIM signature aligned with the From domain.
``digest keys dkim`` makes the key (PEM, mode 0600, never printed) and prints the TXT record;
``provider.dkim_key_file`` makes :class:`~digest.delivery.providers.smtp.SmtpProvider`
sign every message with it. dkimpy does the canonicalisation and the signature.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.errors import DigestError

# RFC 8058: the one-click unsubscribe headers must be covered by the signature.
EXTRA_SIGNED = (b"list-unsubscribe-post",)


class DkimError(DigestError):
    """The DKIM key cannot be read, made or used (the message names the file)."""


def generate_key(path: Path, bits: int = 2048) -> bool:
    """Write a new RSA private key to ``path`` (mode 0600, created atomically, never
    overwritten). Returns False when a key is there already (it is kept)."""
    if path.exists():
        return False
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return True


def _load(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise DkimError(f"DKIM key {path} cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimError(f"DKIM key {path} is not an RSA private key")
    return key


def public_key_b64(path: Path) -> str:
    """The p= value: the public key of the private key in ``path``, DER and base64."""
    der = (
        _load(path)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


def dns_record(selector: str, domain: str, public_b64: str) -> str:
    """The TXT record to publish, in zone-file form; a value longer than 255 bytes is cut
    into several quoted strings, which DNS joins again."""
    value = f"v=DKIM1; k=rsa; p={public_b64}"
    parts = " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))
    return f"{selector}._domainkey.{domain}. TXT {parts}"


class Signer:
    """Signs messages for ``domain`` with ``selector``: relaxed/relaxed, rsa-sha256."""

    def __init__(self, key_file: Path, selector: str, domain: str) -> None:
        key = _load(key_file)
        if key.key_size < 1024:
            raise DkimError(f"DKIM key {key_file} has {key.key_size} bits; receivers want 1024+")
        self._pem = key_file.read_bytes()
        self.selector = selector.encode()
        self.domain = domain.encode()

    def sign(self, message: bytes) -> bytes:
        """``message`` (CRLF line ends) with a DKIM-Signature header in front."""
        signer = dkim.DKIM(message, linesep=b"\r\n")
        signer.should_sign.update(EXTRA_SIGNED)
        try:
            header = signer.sign(
                self.selector,
                self.domain,
                self._pem,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        except dkim.DKIMException as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from None
        return bytes(header) + message

"""Hostile HTTP requests for `digest serve`: every route, every way a body can be wrong.

Each is ``(name, method, path, headers, body)``. Sent in-process and over real HTTP by
``test_hostile.py``; none may get a 5xx, and none may forge a log record.
"""

from __future__ import annotations

import base64
import json

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FORGED_RECORD = (
    'INFO change {"event":"status","email":"victim@example.com","before":"pending",'
    '"after":"active","cause":"serve_confirm"}'
)
"""What an attacker would like a log line to say."""

Request = tuple[str, str, str, dict[str, str], bytes]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _subscribe() -> list[Request]:
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("deeply nested array", b"[" * 7000 + b"]" * 7000, JSON),
        ("deeply nested object", b'{"a":' * 3000 + b"1" + b"}" * 3000, JSON),
        ("10,000-digit number", b'{"email": "a@example.com", "name": ' + b"9" * 10000 + b"}", JSON),
        ("huge float", b'{"email": "a@example.com", "name": 1e999}', JSON),
        ("NaN", b'{"email": NaN}', JSON),
        ("name is a list", b'{"email": "a@example.com", "name": ["one", "two"]}', JSON),
        ("email is an object", b'{"email": {"$ne": null}}', JSON),
        (
            "email forges a record",
            json.dumps({"email": "v@example.com\n" + FORGED_RECORD}).encode(),
            JSON,
        ),
        (
            "name forges a record",
            json.dumps({"email": "a@example.com", "name": "x\n" + FORGED_RECORD}).encode(),
            JSON,
        ),
        (
            "categories not strings",
            b'{"email": "a@example.com", "categories": [1, {"a": 2}, null]}',
            JSON,
        ),
        (
            "categories, 2,000 of them",
            json.dumps({"email": "a@example.com", "categories": ["x"] * 2000}).encode(),
            JSON,
        ),
        (
            "email of 10,000 characters",
            json.dumps({"email": "a" * 10000 + "@example.com"}).encode(),
            JSON,
        ),
        ("not UTF-8", b'{"email": "\xff\xfe@example.com"}', JSON),
        ("a JSON string", b'"a@example.com"', JSON),
        ("null", b"null", JSON),
        ("empty body", b"", JSON),
        ("truncated JSON", b'{"email": "a@exa', JSON),
        (
            "JSON with a charset",
            b'{"email": 1}',
            {"Content-Type": "application/json; charset=latin-1"},
        ),
        ("form without CSRF", b"email=a%40example.com", FORM),
        (
            "form name with a newline",
            b"email=a%40example.com&name=x%0AINFO+change+%7B%7D&csrf=zz",
            FORM,
        ),
        (
            "broken multipart",
            b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\na@e',
            {"Content-Type": "multipart/form-data; boundary=x"},
        ),
        ("multipart without a boundary", b"garbage", {"Content-Type": "multipart/form-data"}),
        ("form field 2,000 times", b"categories=x&" * 2000 + b"email=a%40example.com", FORM),
        ("unknown content type", b"\x00\x01", {"Content-Type": "application/x-evil"}),
        (
            "forwarded-for garbage",
            b'{"email": "a@example.com"}',
            {**JSON, "X-Forwarded-For": "not-an-ip, 999.999.1.1"},
        ),
    ]
    return [(f"subscribe: {n}", "POST", "/subscribe", h, b) for n, b, h in cases]


TOKENS = {
    "of 60,000 characters": "A" * 60000,
    "holding a newline": _b64("victim@example.com\n" + FORGED_RECORD) + "..AAAA",
    "with an encoded newline": "x%0AINFO%20change%20%7B%7D.1.AAAA",
    "of dots": "...",
    "of bad base64": "%25%25.zz.!!",
    "with unicode": "%C3%A9%E2%80%AE.1.x",
    "with a NUL": "abc%00def.1.AAAA",
    "with a huge expiry": _b64("victim@example.com") + "." + "z" * 5000 + ".AAAA",
}


def _tokens() -> list[Request]:
    found: list[Request] = []
    for label, token in TOKENS.items():
        found += [
            (f"confirm page, token {label}", "GET", f"/confirm/{token}", {}, b""),
            (f"confirm, token {label}", "POST", f"/confirm/{token}", {}, b""),
            (f"unsubscribe page, token {label}", "GET", f"/unsubscribe/{token}", {}, b""),
            (
                f"one-click, token {label}",
                "POST",
                f"/unsubscribe/{token}",
                FORM,
                b"List-Unsubscribe=One-Click",
            ),
            (f"preferences, token {label}", "GET", f"/preferences/{token}", {}, b""),
            (
                f"preferences post, token {label}",
                "POST",
                f"/preferences/{token}",
                FORM,
                b"csrf=x&action=resubscribe",
            ),
        ]
    return found


def _webhooks() -> list[Request]:
    found: list[Request] = []
    for provider in ("postmark", "resend", "sendgrid", "mailgun"):
        found += [
            (
                f"{provider}: deeply nested",
                "POST",
                f"/webhooks/{provider}",
                JSON,
                b"[" * 50000 + b"]" * 50000,
            ),
            (f"{provider}: not JSON", "POST", f"/webhooks/{provider}", JSON, b"\x00not json"),
            (
                f"{provider}: a 20,000-digit number",
                "POST",
                f"/webhooks/{provider}",
                JSON,
                b"[" + b"1" * 20000 + b"]",
            ),
        ]
    sg = "X-Twilio-Email-Event-Webhook-"
    found += [
        (
            "postmark: bad basic auth",
            "POST",
            "/webhooks/postmark",
            {"Authorization": "Basic !!!"},
            b"{}",
        ),
        (
            "postmark: credentials not UTF-8",
            "POST",
            "/webhooks/postmark",
            {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
            b"{}",
        ),
        (
            "resend: headers of garbage",
            "POST",
            "/webhooks/resend",
            {"svix-id": "x", "svix-timestamp": "9" * 5000, "svix-signature": "v1,###"},
            b"{}",
        ),
        (
            "resend: timestamp not a number",
            "POST",
            "/webhooks/resend",
            {"svix-id": "x", "svix-timestamp": "1e9", "svix-signature": "v1,AAAA"},
            b"{}",
        ),
        (
            "sendgrid: signature not base64",
            "POST",
            "/webhooks/sendgrid",
            {f"{sg}Signature": "***", f"{sg}Timestamp": "1"},
            b"[]",
        ),
        (
            "sendgrid: DER garbage",
            "POST",
            "/webhooks/sendgrid",
            {
                f"{sg}Signature": base64.b64encode(b"\x30\x03\x02\x01").decode(),
                f"{sg}Timestamp": "1",
            },
            b"[]",
        ),
        (
            "mailgun: signature of wrong types",
            "POST",
            "/webhooks/mailgun",
            JSON,
            b'{"signature": {"timestamp": 1, "token": ["a"], "signature": null}}',
        ),
        (
            "mailgun: timestamp of 5,000 digits",
            "POST",
            "/webhooks/mailgun",
            JSON,
            json.dumps(
                {"signature": {"timestamp": "9" * 5000, "token": "t", "signature": "s"}}
            ).encode(),
        ),
        (
            "mailgun: signature not an object",
            "POST",
            "/webhooks/mailgun",
            JSON,
            b'{"signature": "x", "event-data": []}',
        ),
        ("unknown provider", "POST", "/webhooks/..%2F..%2Fetc", JSON, b"{}"),
        ("provider with a newline", "POST", "/webhooks/x%0AINFO%20change", JSON, b"{}"),
    ]
    return found


def _others() -> list[Request]:
    return [
        ("archive: path traversal", "GET", "/archive/..%2F..%2Fconfig.yaml", {}, b""),
        ("archive: encoded NUL", "GET", "/archive/%00", {}, b""),
        ("subscribe page: huge query", "GET", "/subscribe?a=" + "b" * 6000, {}, b""),
    ]


REQUESTS: list[Request] = _subscribe() + _tokens() + _webhooks() + _others()

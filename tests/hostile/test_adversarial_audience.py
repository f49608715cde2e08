"""The reader-side text paths, given the 1 MB adversarial inputs (``adversarial.py``), each
finish within the same CPU budget as the content paths (``test_adversarial.py``):
imported CSV and JSON files (each column, and the raw file), webhook bodies of every
provider, link tokens and counted-link tokens, Accept-Language, the timezone and
language fields, email addresses and names, JSON request bodies, export cells.

A call may refuse the input (a DigestError, or the path's own error naming the problem);
what it may not do is take longer than the budget.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest import i18n
from digest.audience.clicktokens import read_click_token
from digest.audience.exports import spreadsheet_cell
from digest.audience.imports.importer import iter_incoming
from digest.audience.imports.report import ImportReport
from digest.audience.mailbox import mailbox_key
from digest.audience.names import clean_name
from digest.audience.rhythm import zone_or_default
from digest.audience.subscribers import Categories, normalise_email
from digest.audience.tokens import parse_token, verify_token
from digest.config import WebhooksConfig
from digest.errors import DigestError
from digest.serve.jsonbody import loads_bounded, text_field, text_list
from digest.serve.webhooks import read_webhook
from tests.hostile.adversarial import NAMES, adversarial
from tests.hostile.test_adversarial import BUDGET

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
MAILGUN_KEY = "mailgun-key"
SETTINGS = WebhooksConfig(
    postmark_username="hooks",
    postmark_password="${PM}",
    mailgun_signing_key="${MG}",
)
ENVIRON = {"PM": "pm-pass", "MG": MAILGUN_KEY}
POSTMARK_AUTH = {"authorization": "Basic aG9va3M6cG0tcGFzcw=="}  # hooks:pm-pass


def _csv(tmp: Path) -> Callable[[str], Callable[[], object]]:
    def prepare(value: str) -> Callable[[], object]:
        path = tmp / "import.csv"
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["email", "name", "status", "created_at", "tags"])
        writer.writerow([value[:300_000], value[:200_000], value[:100_000], value[:100_000], value])
        path.write_text(out.getvalue(), encoding="utf-8")
        return lambda: list(iter_incoming(path, Categories(), report=ImportReport(str(path))))

    return prepare


def _raw_file(tmp: Path, suffix: str) -> Callable[[str], Callable[[], object]]:
    def prepare(value: str) -> Callable[[], object]:
        path = tmp / f"raw{suffix}"
        header = "email,name\n" if suffix == ".csv" else ""
        path.write_text(header + value, encoding="utf-8")
        return lambda: list(iter_incoming(path, Categories(), report=ImportReport(str(path))))

    return prepare


def _json_import(tmp: Path) -> Callable[[str], Callable[[], object]]:
    def prepare(value: str) -> Callable[[], object]:
        path = tmp / "import.json"
        rows = [{"email": value[:300_000], "name": value[:300_000], "tags": [value[:300_000]]}]
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        return lambda: list(iter_incoming(path, Categories(), report=ImportReport(str(path))))

    return prepare


def _mailgun(value: str) -> None:
    stamp = str(int(NOW.timestamp()))
    token = "t" * 50
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256)
    body = {
        "signature": {"timestamp": stamp, "token": token, "signature": signature.hexdigest()},
        "event-data": {"event": value, "recipient": value, "id": value, "severity": value},
    }
    with contextlib.suppress(DigestError):
        read_webhook("mailgun", {}, json.dumps(body).encode(), SETTINGS, now=NOW, environ=ENVIRON)


def _postmark(value: str) -> None:
    body = {"RecordType": "Bounce", "Email": value, "Type": "HardBounce", "ID": value}
    with contextlib.suppress(DigestError):
        read_webhook(
            "postmark", POSTMARK_AUTH, json.dumps(body).encode(), SETTINGS, now=NOW, environ=ENVIRON
        )


def _raw_webhook(value: str) -> None:
    for provider, headers in (("mailgun", {}), ("postmark", POSTMARK_AUTH)):
        with contextlib.suppress(DigestError):
            read_webhook(provider, headers, value.encode(), SETTINGS, now=NOW, environ=ENVIRON)


def _json_body(value: str) -> None:
    with contextlib.suppress(ValueError):
        loads_bounded(value.encode())
    data = loads_bounded(json.dumps({"email": value, "categories": [value]}).encode())
    with contextlib.suppress(ValueError):
        text_field(data, "email", limit=320, required=True)
    with contextlib.suppress(ValueError):
        text_list(data, "categories", most=50, limit=200)


def _now(run: Callable[[str], object]) -> Callable[[str], Callable[[], object]]:
    return lambda value: lambda: run(value)


def _refused(run: Callable[[str], object]) -> Callable[[str], object]:
    def call(value: str) -> object:
        with contextlib.suppress(DigestError, ValueError):
            return run(value)
        return None

    return call


def _paths(tmp: Path) -> dict[str, Callable[[str], Callable[[], object]]]:
    return {
        "import-csv": _csv(tmp),
        "import-csv-raw": _raw_file(tmp, ".csv"),
        "import-json": _json_import(tmp),
        "import-json-raw": _raw_file(tmp, ".json"),
        "webhook-mailgun": _now(_mailgun),
        "webhook-postmark": _now(_postmark),
        "webhook-raw": _now(_raw_webhook),
        "json-body": _now(_json_body),
        "token": _now(
            lambda s: (
                _refused(parse_token)(s),
                _refused(lambda t: verify_token(t, "unsubscribe", lambda _: [b"k"], now=NOW))(s),
            )
        ),
        "click-token": _now(_refused(lambda s: read_click_token(s, [b"k"]))),
        "accept-language": _now(lambda s: (i18n.accepted(s), i18n.negotiate(s, "en"))),
        "language": _now(lambda s: (i18n.normalise(s), i18n.spoken(s), i18n.language_of(s, "en"))),
        "timezone": _now(zone_or_default),
        "email": _now(lambda s: (_refused(normalise_email)(s), _refused(mailbox_key)(s))),
        "name": _now(clean_name),
        "export-cell": _now(spreadsheet_cell),
    }


PATHS = tuple(_paths(Path(".")))


@pytest.mark.slow  # 16 paths x 42 shapes of 1 MB
@pytest.mark.parametrize("path", PATHS)
def test_no_reader_text_path_is_super_linear_on_1mb_adversarial_input(
    tmp_path: Path, path: str
) -> None:
    prepare = _paths(tmp_path)[path]
    slow: dict[str, float] = {}
    for name in NAMES:
        run = prepare(adversarial(name))
        start = time.process_time()
        with contextlib.suppress(DigestError, ValueError):
            run()
        took = time.process_time() - start
        if took > BUDGET:
            slow[name] = round(took, 2)
    assert slow == {}, f"{path}: over {BUDGET} s of CPU on 1 MB: {slow}"

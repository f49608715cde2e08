"""Erasure on request: every copy of one person's address that digest keeps, and a list of
what was changed.

``digest subscribers forget`` reaches:

- the subscriber store: the row (address, name, preferences, consent, link secret) goes
  with its sunset rounds (audience/engagement.py),
  a keyed hash keeps the address suppressed (:func:`digest.audience.lifecycle.forget`),
  and the service-mail counts of the mailbox go;
- the send ledger: the address, and the provider id, Message-ID and last error where they
  hold it, are blanked in every row (the rows stay as the record of what was sent);
- the click store (``analytics.clicks``): the reader's per-subscriber engagement rows
  (aggregate counts name no reader and stay);
- files under ``out/`` (and the outbox provider's own folder): the outbox messages to the
  address (named by a keyed hash of it, or after it in files written before) are deleted
  (they hold the address and working links), and send reports that name it have it
  replaced.

Not reached, and said so: backups, and the provider's own lists and logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.audience.lifecycle import erasure_key, forget
from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.delivery.clicks import ClickStore
from digest.delivery.ledger import scrub_address
from digest.delivery.providers.outbox import messages_for, outbox_folders
from digest.store.database import Target, is_postgres, locate
from digest.store.private import write_private

NOT_REACHED = "backups, and the provider's own lists and logs"
ERASED = "(erased)"


@dataclass(frozen=True)
class ErasureReport:
    email: str
    existed: bool  # a subscriber row was deleted
    already: bool  # the address had been erased before
    forgotten_at: str
    service_mail: int  # service-mail counts removed
    ledger_rows: int  # ledger rows blanked
    files: list[str] = field(default_factory=list)  # deleted, relative to the config folder
    reports: list[str] = field(default_factory=list)  # send reports rewritten
    click_rows: int | None = None  # per-reader click rows removed (None: no click store)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "subscriber": "erased" if self.existed else "not in the store; suppressed",
            "not_reached": NOT_REACHED,
        }

    def lines(self) -> list[str]:
        """What was changed, for a terminal."""
        out = [
            f"{self.email}: {'erased' if self.existed else 'not in the store; suppressed'} "
            f"(erasure recorded {self.forgotten_at})",
            f"  subscriber store: {'row deleted' if self.existed else 'no row'}",
            f"  service mail counts: {self.service_mail} removed",
            f"  ledger: {self.ledger_rows} row(s) blanked (address, provider id, message id)",
            f"  files: {len(self.files)} deleted",
            *(f"    {name}" for name in self.files),
        ]
        if self.click_rows is not None:
            out.append(f"  click store: {self.click_rows} reader row(s) removed")
        if self.reports:
            out.append(f"  send reports: {len(self.reports)} rewritten")
            out.extend(f"    {name}" for name in self.reports)
        out.append(f"  not reached: {NOT_REACHED}")
        return out


def _reports(config: Config, email: str) -> Iterator[Path]:
    for folder in outbox_folders(config):
        for path in folder.rglob("send-report.json"):
            if not path.is_symlink() and email in path.read_text("utf-8", errors="replace"):
                yield path


def _scrub_report(path: Path, email: str) -> None:
    data = json.loads(path.read_text("utf-8"))
    text = json.dumps(data, indent=2, default=str).replace(email, ERASED) + "\n"
    write_private(path, text.encode())


def relative_name(config: Config, path: Path) -> str:
    """``path`` as shown to the operator: relative to the config file's folder if inside."""
    base = config.path(Path("."))
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _has_store(config: Config, target: Target) -> bool:
    """Clicks are counted, or were (their SQLite file is there); reading creates no store."""
    on = config.analytics.clicks != "off"
    return on or (not is_postgres(target) and Path(str(target)).exists())


def _forget_clicks(target: Target, handle: str) -> int:
    with ClickStore(target) as store:
        return store.forget([handle])


def outbox_messages(config: Config, email: str) -> list[Path]:
    """The outbox message files to ``email`` that erasure deletes (``digest outbox find``)."""
    return messages_for(config, email)


def erase(config: Config, email: str, *, now: datetime) -> ErasureReport:
    """Erase ``email`` everywhere digest keeps it (see the module's docstring)."""
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        found = store.get(email)
        erased = forget(store, email, now=now, erasure_key=erasure_key(config))
        counts = store.forget_mail(erased.email)
    clicks = locate(config, config.analytics.database)
    click_rows = None
    if found is not None and _has_store(config, clicks):
        click_rows = _forget_clicks(clicks, found.handle)
    rows = scrub_address(locate(config, config.ledger.database), erased.email)
    files: list[str] = []
    for path in messages_for(config, erased.email):
        path.unlink(missing_ok=True)
        files.append(relative_name(config, path))
    reports: list[str] = []
    for path in sorted(_reports(config, erased.email)):
        _scrub_report(path, erased.email)
        reports.append(relative_name(config, path))
    return ErasureReport(
        erased.email,
        erased.existed,
        erased.already,
        erased.forgotten_at,
        counts,
        rows,
        files,
        reports,
        click_rows,
    )

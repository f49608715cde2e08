"""The default transport: every message as an ``.eml`` file in ``out/<issue-id>/outbox/``.

Needs no account, and is exact after a crash: each file is written to a temporary name,
fsynced, then renamed into place (an atomic step), so a file under its final name is a
whole message. A row left ``sending`` is settled by looking for its file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from digest.errors import ProviderError
from digest.providers.base import WIRE_POLICY, Batch, Event, Provider, ProviderSettings, Result
from digest.providers.registry import register

if TYPE_CHECKING:
    from digest.ledger import Delivery


class OutboxSettings(ProviderSettings):
    directory: Path | None = Field(
        default=None,
        description="Where the files go [default: <out_dir>/<issue-id>/outbox].",
    )


def _safe(email: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email)[:120]


class OutboxProvider(Provider):
    name = "outbox"
    Settings = OutboxSettings
    max_batch = 500
    default_concurrency = 1

    def directory(self, issue_id: str) -> Path:
        settings = self.settings
        assert isinstance(settings, OutboxSettings)
        if settings.directory is not None:
            return self.config.path(settings.directory) / issue_id
        return self.config.path(self.config.out_dir) / issue_id / "outbox"

    def file_for(
        self, issue_id: str, subscriber_id: int, email: str, *, test: bool = False
    ) -> Path:
        prefix = "test" if test else f"{subscriber_id:08d}"
        return self.directory(issue_id) / f"{prefix}-{_safe(email)}.eml"

    def send(self, batch: Batch) -> Iterator[Event]:
        folder = self.directory(batch.issue_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderError("outbox", f"cannot create {folder}: {exc}") from None
        results: list[Result] = []
        for recipient in batch.recipients:
            target = self.file_for(
                batch.issue_id, recipient.subscriber_id, recipient.email, test=batch.test
            )
            data = batch.message_for(recipient).as_bytes(policy=WIRE_POLICY)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, target)
            except OSError as exc:
                raise ProviderError("outbox", f"cannot write {target}: {exc}") from None
            results.append(Result(recipient.subscriber_id, "sent", provider_message_id=target.name))
        _fsync_dir(folder)  # the renames themselves survive a power loss
        yield from results

    def reconcile(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, Result | None]:
        settled: dict[int, Result | None] = {}
        for delivery in deliveries:
            target = self.file_for(issue_id, delivery.subscriber_id, delivery.email)
            settled[delivery.subscriber_id] = (
                Result(delivery.subscriber_id, "sent", provider_message_id=target.name)
                if target.exists()
                else None
            )
        return settled


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


register("outbox", OutboxProvider)

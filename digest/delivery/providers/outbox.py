"""The default transport: every message as an ``.eml`` file in ``out/<issue-id>/outbox/``.

Needs no account, and is exact after a crash: each file is written to a temporary name,
fsynced, then renamed into place (an atomic step), so a file under its final name is a
whole message. A batch is one group commit (write all, fsync all, rename all, fsync the
folder once, then one ledger transaction). A row left ``sending`` is settled by looking
for its file.

A file's name holds no address: ``<subscriber id>-<name>.eml``, where the name is a keyed
hash of the address (:func:`outbox_name`, keyed by the privacy key, which never rotates),
so a folder listing, a backup's index or the ledger's provider id shows nobody's address.
``digest outbox find EMAIL`` (:func:`messages_for`) finds a reader's files, and erasure
deletes them. Files written before carry the address itself (:func:`legacy_outbox_name`);
both are found.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digest.audience.keys import privacy_secret
from digest.config import Config
from digest.config.providers import OutboxSettings
from digest.delivery.providers.base import Batch, Check, Event, Provider, Result
from digest.delivery.providers.registry import register
from digest.errors import ProviderError
from digest.store.private import open_private, private_folder

if TYPE_CHECKING:
    from digest.delivery.providers.base import Delivery


def outbox_key(config: Config) -> bytes:
    """The key of message files' names (derived from the privacy key: it never rotates, so
    a reader's files stay findable)."""
    return hmac.new(privacy_secret(config), b"digest-outbox-name-v1", hashlib.sha256).digest()


def outbox_name(email: str, key: bytes) -> str:
    """The part of a message file's name that stands for the address: 24 hex digits of a
    keyed hash of it (case-insensitive), the same for every message to it."""
    canonical = email.strip().lower().encode("utf-8", "surrogatepass")
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()[:24]


def legacy_outbox_name(email: str) -> str:
    """The part of a file's name that came from the address in files written before names
    were hashed (still found by :func:`messages_for`, reconcile and erasure)."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email)[:120]


def outbox_folders(config: Config) -> list[Path]:
    """The existing folders that hold outbox messages: ``out/`` and the outbox provider's
    own ``directory`` when one is set."""
    folders = [config.path(config.out_dir)]
    directory = config.provider.options().get("directory")
    if config.provider.name == "outbox" and isinstance(directory, str):
        folders.append(config.path(Path(directory)))
    return [f for f in folders if f.is_dir()]


def messages_for(config: Config, email: str) -> list[Path]:
    """Every outbox message file addressed to ``email`` (by its name, either form), sorted."""
    suffixes = (
        f"-{outbox_name(email, outbox_key(config))}.eml",
        f"-{legacy_outbox_name(email)}.eml",
    )
    found: set[Path] = set()
    for folder in outbox_folders(config):
        for path in folder.rglob("*.eml"):
            if path.name.endswith(suffixes) and not path.is_symlink():
                found.add(path)
    return sorted(found)


OPEN_FILES = 128
"""Files of a batch held open at once between writing and fsyncing them."""


class OutboxProvider(Provider):
    name = "outbox"
    Settings = OutboxSettings
    max_batch = 500
    default_concurrency = 1
    mixes_variants = True
    settles_uncertain = "never uncertain: a message's file exists under its final name or not"

    def directory(self, issue_id: str) -> Path:
        settings = self.settings
        assert isinstance(settings, OutboxSettings)
        if settings.directory is not None:
            return self.config.path(settings.directory) / issue_id
        return self.config.path(self.config.out_dir) / issue_id / "outbox"

    _name_key: bytes | None = None

    def file_for(
        self,
        issue_id: str,
        subscriber_id: int,
        email: str,
        *,
        test: bool = False,
        legacy: bool = False,
    ) -> Path:
        """The message file of one recipient (``legacy``: its name before names were hashed)."""
        if self._name_key is None:
            self._name_key = outbox_key(self.config)
        name = legacy_outbox_name(email) if legacy else outbox_name(email, self._name_key)
        prefix = "test" if test else f"{subscriber_id:08d}"
        return self.directory(issue_id) / f"{prefix}-{name}.eml"

    def send(self, batch: Batch) -> Iterator[Event]:
        """Write the batch with one group commit; yield results only once it is durable.

        1. each message goes to a temporary name (``.<name>.<pid>.tmp``);
        2. every temporary file is fsynced (a group at a time, so the disk can take the
           writes together instead of one journal commit per file in turn);
        3. each is renamed to its final name (atomic), then the folder is fsynced once.

        Results are yielded after step 3, and the send loop commits them in one ledger
        transaction. A crash anywhere before that leaves the rows ``sending``;
        :meth:`reconcile` then counts a row as sent exactly when its final file exists,
        and a final file only ever holds a whole, fsynced message.
        """
        folder = self.directory(batch.issue_id)
        try:
            private_folder(folder)  # each message holds working unsubscribe links
        except OSError as exc:
            raise ProviderError("outbox", f"cannot create {folder}: {exc}") from None
        written: list[tuple[Path, Path]] = []  # (temporary, final)
        pid = os.getpid()
        try:
            for start in range(0, len(batch.recipients), OPEN_FILES):
                group = batch.recipients[start : start + OPEN_FILES]
                handles: list[tuple[int, Path]] = []
                try:
                    for recipient in group:
                        target = self.file_for(
                            batch.issue_id,
                            recipient.subscriber_id,
                            recipient.email,
                            test=batch.test,
                        )
                        temporary = target.with_name(f".{target.name}.{pid}.tmp")
                        fd = open_private(temporary)
                        handles.append((fd, temporary))
                        written.append((temporary, target))
                        _write_all(fd, batch.wire_bytes(recipient))
                    for fd, _ in handles:
                        os.fsync(fd)
                finally:
                    for fd, _ in handles:
                        os.close(fd)
            for temporary, target in written:
                os.replace(temporary, target)
            _fsync_dir(folder)  # the renames themselves survive a power loss
        except OSError as exc:
            for temporary, _ in written:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            where = exc.filename or folder
            raise ProviderError("outbox", f"cannot write {where}: {exc.strerror}") from None
        for recipient, (_, target) in zip(batch.recipients, written, strict=True):
            yield Result(recipient.subscriber_id, "sent", provider_message_id=target.name)

    def preflight(self) -> list[Check]:
        """The outbox folder can be created and written."""
        settings = self.settings
        assert isinstance(settings, OutboxSettings)
        folder = self.config.path(settings.directory or self.config.out_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".digest-preflight-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return [Check("folder", False, f"cannot write {folder}: {exc.strerror}")]
        return [Check("folder", True, f"{folder} is writable (files only: nobody is mailed)")]

    def reconcile(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, Result | None]:
        """A ``sending`` row is sent exactly when its final file exists (see :meth:`send`).

        Temporary files an interrupted run left behind for these rows are removed: they
        were never renamed, so their rows are sent again. Only these rows' files: other
        senders may be writing theirs in the same folder.
        """
        folder = self.directory(issue_id)
        targets = {
            d.subscriber_id: self.file_for(issue_id, d.subscriber_id, d.email) for d in deliveries
        }
        if folder.is_dir():
            names = {t.name for t in targets.values()}
            for leftover in folder.glob(".*.tmp"):
                if leftover.name[1:].rsplit(".", 2)[0] in names:
                    with contextlib.suppress(OSError):
                        leftover.unlink()
        settled: dict[int, Result | None] = {}
        for delivery in deliveries:
            target = targets[delivery.subscriber_id]
            if not target.exists():  # written before names were hashed?
                target = self.file_for(
                    issue_id, delivery.subscriber_id, delivery.email, legacy=True
                )
            settled[delivery.subscriber_id] = (
                Result(delivery.subscriber_id, "sent", provider_message_id=target.name)
                if target.exists()
                else None
            )
        return settled


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


register("outbox", OutboxProvider)

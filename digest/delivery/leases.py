"""Holding rows while sending: a sender's name in the ledger's leases, and the heartbeat
that renews them.

Any number of senders may work on one issue; each leases the rows it sends. A sender slowed
by the provider keeps its rows while its heartbeat beats; a dead one loses them when its
lease runs out, and another sender settles them (:mod:`digest.delivery.reconcile`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from digest.delivery.ledger import Ledger
from digest.errors import DigestError

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
"""How long a sender holds rows without renewing (``send.lease`` in config)."""


def sender_id() -> str:
    """This sender's name in the ledger's leases: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_now() -> datetime:
    """The clock leases run on: the real one, always. A lease says whether a sender is
    alive, so it is measured in real seconds even when a schedule is rehearsed on a faster
    clock (``--now``), where every lease would otherwise run out before its first use."""
    return datetime.now(timezone.utc)


class Heartbeat:
    """Renews this sender's leases every third of the lease, on its own connection, so a
    sender slowed by the provider keeps its rows and a dead one loses them."""

    def __init__(
        self,
        target: Any,
        issue_id: str,
        owner: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._beat,
            args=(target, issue_id, owner, lease, clock),
            name="digest-lease",
            daemon=True,
        )
        self.thread.start()

    def _beat(
        self,
        target: Any,
        issue_id: str,
        owner: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        with Ledger(target) as ledger:
            while not self.stop.wait(lease.total_seconds() / 3):
                try:
                    ledger.renew(issue_id, owner=owner, until=clock() + lease)
                except DigestError as exc:  # the next beat tries again
                    log.warning("could not renew the send leases: %s", exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()

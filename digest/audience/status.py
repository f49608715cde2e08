"""The one subscriber status model: which status a change may set, and what for.

Every status change in digest goes through :func:`transition`, with the *cause* of the
change as an argument; the subscriber store applies what it decides and nothing else.
The CLI, the web service, webhooks, suppression sync and imports all call the store, so
they all follow this table.

Statuses, weakest to strongest::

    pending, active      rank 0   may be mailed (pending: only a confirmation)
    unsubscribed         rank 1   the subscriber said stop
    bounced              rank 2   the mailbox refused mail
    complained           rank 3   the subscriber reported the digest as spam

The rules:

- **A status only gets stronger.** Any cause may move a subscriber up the ranks (an
  unsubscribe, a bounce, a complaint, an import row saying ``unsubscribed``). Between the
  two rank-0 statuses, ``pending`` → ``active`` is a confirmation (or the owner's word:
  ``add``, an import); ``active`` → ``pending`` only the owner's ``add`` may do.
- **Going back down needs the subscriber's own hand, or the owner's explicit force.**

  ===================  =====================================================
  cause                may lift (make weaker)
  ===================  =====================================================
  serve_subscribe      unsubscribed, bounced → pending
  serve_resubscribe    unsubscribed, bounced, complained → active
  owner_force          unsubscribed, bounced → any (never complained)
  everything else      nothing
  ===================  =====================================================

  A subscribe request for an address that left (or bounced) makes it ``pending`` again:
  it gets nothing but a confirmation, which it could get before too. ``serve_confirm`` (a
  POST of a valid confirmation token) moves only ``pending`` to ``active``: a confirmation
  link still within its lifetime does not bring back someone who unsubscribed or
  complained after it was mailed. ``serve_resubscribe`` is the "subscribe again" button
  of the preferences page with a valid preferences token: it proves that the owner of the
  mailbox acted. The web service never *mails* a ``complained`` address (not even a
  confirmation, see :func:`service_mail`), so a complaint is only undone by its owner with
  a preferences link they already hold. An import never lifts anything, and neither does
  ``digest subscribers add`` without ``--force``.
- A cause that may not make a change either keeps the status silently (``kept``: a late
  bounce after a complaint, an import row saying ``active`` for someone who left, a
  subscribe request for an active address) or, for the owner's explicit commands, is
  ``refused`` so that the command can say why.

This module is pure: no store, no clock, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from digest.errors import StoreError
from digest.states import State


class Status(State):
    """A subscriber's status; the value is what the subscriber store keeps."""

    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


STATUSES: tuple[str, ...] = tuple(status.value for status in Status)
"""Every status a subscriber can have (as plain text: command-line choices list them)."""

INACTIVE = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)
"""The statuses that never get the digest."""

RANK: dict[str, int] = {
    Status.PENDING: 0,
    Status.ACTIVE: 0,
    Status.UNSUBSCRIBED: 1,
    Status.BOUNCED: 2,
    Status.COMPLAINED: 3,
}
"""How strong a status is: a change may always make it stronger."""


class Cause(str, enum.Enum):
    """Why a status changes. The value is what logs and records show."""

    SERVE_SUBSCRIBE = "serve_subscribe"
    """The subscribe form or API: creates a pending subscriber, or makes one who left or
    bounced pending again (to be confirmed); changes no one else."""
    SERVE_CONFIRM = "serve_confirm"
    """A POST with a valid confirmation token: ``pending`` → ``active`` only."""
    SERVE_RESUBSCRIBE = "serve_resubscribe"
    """"Subscribe again" on the preferences page, with a valid preferences token."""
    SERVE_UNSUBSCRIBE = "serve_unsubscribe"
    """An unsubscribe link, one-click List-Unsubscribe, or the preferences page."""
    CLI_UNSUBSCRIBE = "cli_unsubscribe"
    """``digest unsubscribe``, by address or token."""
    WEBHOOK_UNSUBSCRIBE = "webhook_unsubscribe"
    WEBHOOK_BOUNCE = "webhook_bounce"
    WEBHOOK_COMPLAINT = "webhook_complaint"
    SUPPRESSION_SYNC = "suppression_sync"
    """``digest suppressions sync``: the provider's own lists."""
    IMPORT = "import"
    """``digest subscribers import`` (or any other bulk import)."""
    OWNER_ADD = "owner_add"
    """``digest subscribers add`` (and the store's default for ``add``)."""
    OWNER_FORCE = "owner_force"
    """``digest subscribers add --force``: the owner re-activates someone who left."""
    SUNSET = "sunset"
    """``digest subscribers sunset``: a consenting reader who stopped clicking did not
    answer the re-permission mail within ``analytics.sunset.grace_days``."""


@dataclass(frozen=True)
class _Rule:
    targets: frozenset[str]  # the statuses this cause may ask for
    creates: frozenset[str]  # the statuses it may give a new subscriber
    lifts: frozenset[str]  # the statuses it may make weaker
    same_rank: bool  # may it move between pending and active?
    strict: bool  # is a change it may not make refused (an error) rather than kept?


_ALL = frozenset(STATUSES)
_NONE: frozenset[str] = frozenset()

RULES: dict[Cause, _Rule] = {
    Cause.SERVE_SUBSCRIBE: _Rule(
        frozenset({Status.PENDING}),
        frozenset({Status.PENDING}),
        frozenset({Status.UNSUBSCRIBED, Status.BOUNCED}),
        False,
        False,
    ),
    # a confirmation answers one pending request: it lifts nothing (an old link within its
    # lifetime must not undo a later unsubscribe or complaint)
    Cause.SERVE_CONFIRM: _Rule(frozenset({Status.ACTIVE}), _NONE, _NONE, True, False),
    Cause.SERVE_RESUBSCRIBE: _Rule(
        frozenset({Status.ACTIVE}), _NONE, frozenset(INACTIVE), True, False
    ),
    Cause.SERVE_UNSUBSCRIBE: _Rule(frozenset({Status.UNSUBSCRIBED}), _NONE, _NONE, False, False),
    Cause.CLI_UNSUBSCRIBE: _Rule(frozenset({Status.UNSUBSCRIBED}), _NONE, _NONE, False, False),
    Cause.SUNSET: _Rule(frozenset({Status.UNSUBSCRIBED}), _NONE, _NONE, False, False),
    Cause.WEBHOOK_UNSUBSCRIBE: _Rule(frozenset({Status.UNSUBSCRIBED}), _NONE, _NONE, False, False),
    Cause.WEBHOOK_BOUNCE: _Rule(frozenset({Status.BOUNCED}), _NONE, _NONE, False, False),
    Cause.WEBHOOK_COMPLAINT: _Rule(frozenset({Status.COMPLAINED}), _NONE, _NONE, False, False),
    Cause.SUPPRESSION_SYNC: _Rule(frozenset(INACTIVE), _NONE, _NONE, False, False),
    Cause.IMPORT: _Rule(_ALL, _ALL, _NONE, True, False),
    Cause.OWNER_ADD: _Rule(_ALL, _ALL, _NONE, True, True),
    Cause.OWNER_FORCE: _Rule(
        _ALL, _ALL, frozenset({Status.UNSUBSCRIBED, Status.BOUNCED}), True, True
    ),
}
"""The transition table: one rule per cause."""

WEBHOOK_CAUSES: dict[str, Cause] = {
    Status.UNSUBSCRIBED: Cause.WEBHOOK_UNSUBSCRIBE,
    Status.BOUNCED: Cause.WEBHOOK_BOUNCE,
    Status.COMPLAINED: Cause.WEBHOOK_COMPLAINT,
}
"""The cause of a provider's event, by the status it asks for."""


class StatusRefused(StoreError):
    """An explicit command asked for a status change the status model does not allow."""


Outcome = Literal["created", "changed", "unchanged", "kept", "refused"]


@dataclass(frozen=True)
class Transition:
    """What a change does: ``before`` → ``after`` (``before`` None: a new subscriber).

    ``outcome``: ``created``/``changed`` (it happens), ``unchanged`` (already so), ``kept``
    (not allowed for this cause; the status stays, silently) or ``refused`` (not allowed,
    and the caller should say so: ``reason``).
    """

    before: str | None
    requested: str
    after: str | None
    cause: Cause
    outcome: Outcome
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.outcome in ("created", "changed")


class StatusModelError(ValueError):
    """A caller asked for something no rule covers (a bug, not bad input)."""


def transition(current: str | None, requested: str, cause: Cause | str) -> Transition:
    """Decide what a change of ``current`` to ``requested`` for ``cause`` does.

    ``current`` is None for an address that is not a subscriber yet. Raises
    :class:`StatusModelError` for an unknown status or a cause asking for a status it never
    sets (e.g. a bounce webhook asking for ``active``).
    """
    cause = Cause(cause)
    if requested not in RANK:
        raise StatusModelError(f"status {requested!r} is not one of {', '.join(STATUSES)}")
    if current is not None and current not in RANK:
        raise StatusModelError(f"stored status {current!r} is not one of {', '.join(STATUSES)}")
    rule = RULES[cause]
    if requested not in rule.targets:
        raise StatusModelError(f"{cause.value} never sets a subscriber {requested}")

    def no(reason: str) -> Transition:
        outcome: Outcome = "refused" if rule.strict else "kept"
        return Transition(current, requested, current, cause, outcome, reason)

    if current is None:
        if requested in rule.creates:
            return Transition(None, requested, requested, cause, "created")
        return no(f"{cause.value} does not add subscribers")
    if current == requested:
        return Transition(current, requested, current, cause, "unchanged")
    if RANK[requested] > RANK[current]:
        return Transition(current, requested, requested, cause, "changed")
    if RANK[requested] == RANK[current]:
        if rule.same_rank:
            return Transition(current, requested, requested, cause, "changed")
        return no(f"{cause.value} does not change a {current} subscriber")
    if current in rule.lifts:
        return Transition(current, requested, requested, cause, "changed")
    if current == Status.COMPLAINED:
        how = "only its owner can undo a complaint, from a link they already hold"
    elif cause is Cause.OWNER_ADD:
        how = "use --force to re-activate them"
    else:
        how = f"{cause.value} never makes a status weaker"
    return no(f"the subscriber is {current}; {how}")


ServiceMail = Literal["confirm", "notice"]


def service_mail(current: str | None) -> ServiceMail | None:
    """What the web service may mail an address that asks to subscribe.

    ``confirm`` (a confirmation link) for a new, pending, unsubscribed or bounced address;
    ``notice`` ("you are already subscribed", with the preferences link) for an active one;
    nothing for a ``complained`` one: someone who reported the digest as spam gets no mail
    from it, whoever asks.
    """
    if current == Status.ACTIVE:
        return "notice"
    if current == Status.COMPLAINED:
        return None
    return "confirm"

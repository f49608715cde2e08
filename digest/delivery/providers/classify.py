"""What an answer proves about acceptance: one reading, shared by every transport.

Whatever a transport got back for a request (nothing at all, a status and a body, bytes
written and no answer, a 2xx it cannot read, an SMTP reply before or after the end of DATA)
is turned into one :class:`Verdict` of four kinds, and the kind alone decides the ledger
state of the request's rows:

=========== ===================================================== ==========================
kind        what it proves                                        rows
=========== ===================================================== ==========================
refused     the provider did not take the request (no connection, ``failed-retryable``: back
            a 4xx on the whole request, 401/403, 429, a 5xx the   to ``pending``; transient
            provider documents as "not taken", SMTP 4xx/5xx       ones are never
            before the end of DATA)                               ``failed-permanent``
accepted    a parsed success that names the recipients            ``sent``
rejected    this recipient was refused for good (550 user         ``failed-permanent``
            unknown, an invalid address, a suppression)
unknown     bytes went out and no readable answer came (a drop,   ``uncertain``: never sent
            a timeout, a 5xx the provider does not document as    again blindly; settled by
            "not taken", a 2xx that cannot be parsed, SMTP        :mod:`digest.delivery.
            421/451 after DATA)                                   reconcile`
=========== ===================================================== ==========================

A refusal is ``transient`` when waiting can help (429, 503, SES ``Throttling``, SMTP 451,
421 before DATA), and ``account`` when it concerns the account rather than the message
(401/403, an unverified sender): that stops the send with the provider's words.

Each HTTP provider declares an :class:`AnswerTable` from its own documentation (which 5xx
mean "not taken", which error types are throttling); the table names the document.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from digest.delivery.providers.base import Recipient, Result, ResultState
from digest.delivery.providers.base import RefusedForNow as RefusedForNow
from digest.errors import ProviderError

Kind = Literal["refused", "accepted", "rejected", "unknown"]

STATE_OF: Mapping[Kind, ResultState] = {
    "refused": "failed-retryable",
    "accepted": "sent",
    "rejected": "failed-permanent",
    "unknown": "uncertain",
}
"""The ledger state a verdict puts its rows in."""


@dataclass(frozen=True)
class Verdict:
    """What one answer proves about acceptance (see the module's table)."""

    kind: Kind
    reason: str
    transient: bool = False
    """Refused for now: wait and try again; never a permanent failure."""
    account: bool = False
    """Refused because of the account (credentials, sender, sending paused): stop the send."""
    retry_after: float | None = None
    """Seconds the provider asked us to wait (``Retry-After``), when it said."""

    @property
    def state(self) -> ResultState:
        return STATE_OF[self.kind]

    def result(self, subscriber_id: int, provider_message_id: str | None = None) -> Result:
        """This verdict as one recipient's result."""
        return Result(
            subscriber_id,
            self.state,
            provider_message_id=provider_message_id,
            reason=None if self.kind == "accepted" else self.reason,
            # refused because of the account, not the recipient: never theirs to fail for good
            transient=self.transient or self.account,
            retry_after=self.retry_after,
        )


def accepted(reason: str = "accepted") -> Verdict:
    return Verdict("accepted", reason)


def rejected(reason: str) -> Verdict:
    """This recipient, refused for good."""
    return Verdict("rejected", reason)


def refused(
    reason: str, *, transient: bool = False, account: bool = False, retry_after: float | None = None
) -> Verdict:
    return Verdict("refused", reason, transient=transient, account=account, retry_after=retry_after)


def no_connection(reason: str) -> Verdict:
    """No byte of the request reached the provider (refused connection, DNS, TLS)."""
    return refused(reason, transient=True)


def no_answer(reason: str) -> Verdict:
    """The request was written and nothing readable came back (a drop, a timeout)."""
    return Verdict("unknown", f"{reason}; the request was written, so it may have been accepted")


def unreadable(reason: str) -> Verdict:
    """A success status whose body cannot be read: it may name the recipients, or not."""
    return Verdict("unknown", f"{reason}; the status said success, so it may have been accepted")


# --------------------------------------------------------------------------------------------
# HTTP


TRANSIENT_STATUSES = frozenset({408, 429})
"""Refused for now by HTTP's own definition: 408 (the server did not take the whole
request), 429 (rate limited, the request was not processed)."""
ACCOUNT_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class AnswerTable:
    """One HTTP provider's documented reading of the answers to a send request."""

    provider: str
    source: str
    """The document the rows come from (named in docs/sending.md too)."""
    not_accepted_5xx: frozenset[int] = frozenset()
    """5xx statuses the provider documents as "the request was not taken"."""
    transient_types: frozenset[str] = frozenset()
    """Error types (``x-amzn-ErrorType``, a body's code) that mean "throttled, try later"."""
    account_types: frozenset[str] = frozenset()
    """Error types that refuse the account (sending paused, sender not verified)."""
    account_statuses: frozenset[int] = ACCOUNT_STATUSES

    def status(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "",
        retry_after: float | None = None,
    ) -> Verdict:
        """The verdict on a request answered with a non-2xx ``status`` (a 2xx is read by
        the provider's parser: :func:`accepted`, or :func:`unreadable`)."""
        reason = f"{self.provider} {status}: {message}"
        if error_type and error_type in self.transient_types:
            return refused(reason, transient=True, retry_after=retry_after)
        if status in TRANSIENT_STATUSES:
            return refused(reason, transient=True, retry_after=retry_after)
        if status in self.account_statuses or (error_type and error_type in self.account_types):
            return refused(reason, account=True)
        if 400 <= status < 500:
            return refused(reason)
        if status in self.not_accepted_5xx:
            return refused(reason, transient=True, retry_after=retry_after)
        return Verdict(
            "unknown",
            f"{reason}; {self.provider} does not document a {status} as refusing the "
            "request, so it may have been accepted",
        )


GENERIC = AnswerTable("http", "RFC 9110 (no provider document)")
"""The reading of a provider that declares no table of its own: every 5xx is unknown."""


class HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def error_type(response: HasHeaders) -> str:
    """The error's type where the API names one (``x-amzn-ErrorType``; SES)."""
    return str(response.headers.get("x-amzn-errortype", "")).split(":")[0].strip()


# --------------------------------------------------------------------------------------------
# requests without an answer worth reading


class RequestFailed(Exception):
    """A request got no answer worth reading.

    ``uncertain`` is False when the provider certainly did not take it (no connection, or
    it refused it for now every time), True when it may have (its body was written and no
    answer came, or a 5xx the provider does not document as "not taken"). ``status`` is the
    last answer's status, when one came: an unknown *answer* stops the send (the provider is
    failing), where a lost one does not.
    """

    def __init__(
        self,
        reason: str,
        *,
        uncertain: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.uncertain = uncertain
        self.status = status
        self.retry_after = retry_after
        """The last refusal's ``Retry-After`` in seconds, when the provider said."""


class HasStatus(Protocol):
    status_code: int


def stop_error(
    provider: str, verdict: Verdict, response: HasStatus, message: str | None = None
) -> ProviderError:
    """The error that ends a send after a refusal: the provider's words (``verdict``'s, or
    ``message``), and for a refusal of the account, what to fix."""
    text = message or verdict.reason.removeprefix(f"{provider} {response.status_code}: ")
    if verdict.account and message is None:
        text += (
            f" (the account was refused: check provider.* in the config and the sender "
            f"in {provider}; nothing of this request was sent)"
        )
    return ProviderError(provider, text, status=response.status_code, retryable=verdict.transient)


def unanswered(
    provider: str, recipients: Iterable[Recipient], exc: RequestFailed
) -> Iterator[Result]:
    """What a request without an answer worth reading means for its recipients.

    It may have been accepted: each is ``uncertain`` (never counted as sent); when that
    came as an *answer* (a 5xx the provider does not document as "not taken") the provider
    is failing, and sending stops after them rather than make every batch uncertain. It
    certainly was not: sending stops (``ProviderError``); the recipients go back to
    ``pending`` and the next run sends them.
    """
    if not exc.uncertain:
        # Certainly not taken (no connection, or refused for now until the retries ran
        # out): said per recipient, so the loop puts them back to pending even when the
        # request was already handed off.
        for r in recipients:
            yield Result(
                r.subscriber_id,
                "failed-retryable",
                reason=exc.reason,
                transient=True,
                retry_after=exc.retry_after,
            )
        raise RefusedForNow(provider, exc.reason, retry_after=exc.retry_after)
    for r in recipients:
        yield Result(r.subscriber_id, "uncertain", reason=exc.reason)
    if exc.status is not None:
        raise ProviderError(
            provider,
            f"{exc.reason.removeprefix(f'{provider} {exc.status}: ')}; stopped so that no "
            "more messages become uncertain; "
            "run the same command to resume",
            status=exc.status,
            retryable=True,
        )


def unreadable_answer(
    provider: str,
    response: HasStatus,
    recipients: Iterable[Recipient],
    what: str,
    exc: Exception,
) -> Iterator[Result]:
    """A success status whose body cannot be read: its recipients are ``uncertain``."""
    verdict = unreadable(
        f"{provider} {response.status_code}: unexpected answer to {what}: {str(exc)[:200]}"
    )
    for r in recipients:
        yield verdict.result(r.subscriber_id)


# --------------------------------------------------------------------------------------------
# SMTP


AFTER_DATA_UNKNOWN = frozenset({421, 451})
"""Replies to the end of DATA that leave acceptance open: the server had the whole message
and then closed the session (421) or failed in processing (451), after which it may have
queued it (RFC 5321, 4.1.1.4 and 4.5.4.1 on the duplicates this window causes)."""


@dataclass(frozen=True)
class SmtpReply:
    code: int
    text: str
    step: str  # "MAIL FROM", "RCPT TO", "DATA", "end of DATA"
    session: bool = False
    """The reply concerns the session or the sender (MAIL FROM, login), not the recipient."""


def smtp(reply: SmtpReply) -> Verdict:
    """The verdict on one SMTP reply (the message's only reply that matters so far)."""
    code, step = reply.code, reply.step
    reason = f"SMTP {step}: {code} {reply.text}".rstrip()
    after_data = step == "end of DATA"
    if after_data and code in (250, 251):
        return accepted(reason)
    if after_data and code in AFTER_DATA_UNKNOWN:
        return Verdict(
            "unknown", f"{reason}; the server had the whole message, so it may have queued it"
        )
    if 400 <= code < 500:
        return refused(reason, transient=True)
    if reply.session:
        return refused(reason, account=True)
    if 500 <= code < 600:
        return rejected(reason)
    return Verdict("unknown", f"{reason}; not a reply SMTP defines here")


# --------------------------------------------------------------------------------------------
# per-provider word lists


@dataclass(frozen=True)
class CodeTable:
    """A provider's per-message codes (Postmark's ``ErrorCode``, SES's entry ``Status``)."""

    provider: str
    source: str
    accepted: Collection[Any]
    account: Mapping[Any, str] = field(default_factory=dict)
    transient: Collection[Any] = ()

    def verdict(self, code: str | int, message: str) -> Verdict:
        reason = f"{self.provider} {code}: {message}"
        if code in self.accepted:
            return accepted(reason)
        if code in self.account:
            return refused(reason, account=True)
        if code in self.transient:
            return refused(reason, transient=True)
        return rejected(reason)

"""What each answer proves about acceptance (digest/delivery/providers/classify.py): the
tables alone, without a transport."""

from __future__ import annotations

import pytest

from digest.delivery.providers.classify import (
    GENERIC,
    AnswerTable,
    CodeTable,
    SmtpReply,
    Verdict,
    no_answer,
    no_connection,
    smtp,
    unreadable,
)

TABLE = AnswerTable("p", "a document", not_accepted_5xx=frozenset({503}),
                    transient_types=frozenset({"Throttling"}),
                    account_types=frozenset({"SendingPausedException"}))  # fmt: skip

MAIL = "MAIL FROM"


def kind(verdict: Verdict) -> tuple[str, str, bool, bool]:
    return verdict.kind, verdict.state, verdict.transient, verdict.account


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (429, "", ("refused", "failed-retryable", True, False)),
        (408, "", ("refused", "failed-retryable", True, False)),
        (401, "", ("refused", "failed-retryable", False, True)),
        (403, "", ("refused", "failed-retryable", False, True)),
        (400, "", ("refused", "failed-retryable", False, False)),
        (400, "Throttling", ("refused", "failed-retryable", True, False)),
        (400, "SendingPausedException", ("refused", "failed-retryable", False, True)),
        (503, "", ("refused", "failed-retryable", True, False)),
        (500, "", ("unknown", "uncertain", False, False)),
        (502, "", ("unknown", "uncertain", False, False)),
        (504, "", ("unknown", "uncertain", False, False)),
    ],
)
def test_http_statuses(status: int, error_type: str, expected: tuple[str, ...]) -> None:
    assert kind(TABLE.status(status, "words", error_type=error_type)) == expected


def test_without_a_providers_document_every_5xx_is_unknown() -> None:
    verdict = GENERIC.status(503, "unavailable", retry_after=4.0)
    assert verdict.kind == "unknown"
    assert verdict.reason == (
        "http 503: unavailable; http does not document a 503 as refusing the request, so it "
        "may have been accepted"
    )
    assert TABLE.status(429, "slow", retry_after=4.0).retry_after == 4.0


def test_lost_and_unreadable_answers_are_unknown_no_connection_is_a_transient_refusal() -> None:
    assert no_answer("p: timed out").reason == (
        "p: timed out; the request was written, so it may have been accepted"
    )
    assert unreadable("p 200: junk").state == "uncertain"
    assert kind(no_connection("p: refused")) == ("refused", "failed-retryable", True, False)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (SmtpReply(250, "ok", "end of DATA"), ("accepted", "sent", False, False)),
        (SmtpReply(451, "local error", "end of DATA"), ("unknown", "uncertain", False, False)),
        (SmtpReply(421, "closing", "end of DATA"), ("unknown", "uncertain", False, False)),
        (SmtpReply(452, "full", "end of DATA"), ("refused", "failed-retryable", True, False)),
        (SmtpReply(554, "spam", "end of DATA"), ("rejected", "failed-permanent", False, False)),
        (SmtpReply(451, "later", "RCPT TO"), ("refused", "failed-retryable", True, False)),
        (SmtpReply(421, "closing", "RCPT TO"), ("refused", "failed-retryable", True, False)),
        (SmtpReply(550, "no such user", "RCPT TO"), ("rejected", "failed-permanent", False, False)),
        (SmtpReply(553, "no", MAIL, session=True), ("refused", "failed-retryable", False, True)),
        (SmtpReply(451, "later", MAIL, session=True), ("refused", "failed-retryable", True, False)),
    ],
)  # fmt: skip
def test_smtp_replies_before_and_after_the_end_of_data(
    reply: SmtpReply, expected: tuple[str, ...]
) -> None:
    assert kind(smtp(reply)) == expected


def test_a_refused_account_is_never_the_recipients_to_fail_for_good() -> None:
    codes = CodeTable("p", "a document", accepted={0}, account={10: "bad token"}, transient={100})
    assert codes.verdict(0, "OK").result(1, "m1").state == "sent"
    account = codes.verdict(10, "Bad token").result(1)
    assert (account.state, account.transient, account.reason) == (
        "failed-retryable",
        True,
        "p 10: Bad token",
    )
    assert codes.verdict(100, "Maintenance").result(1).transient is True
    assert codes.verdict(406, "Inactive").result(1).state == "failed-permanent"

"""The HTTP machinery and each provider's requests and answers, over httpx.MockTransport."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from digest.audience.subscribers import SubscriberStore
from digest.delivery.providers import registry
from digest.delivery.providers.base import Batch, Check, Recipient, Result, idempotency_key
from digest.delivery.providers.http import (
    Pacer,
    RateLimit,
    RetryPolicy,
    parse_rate_limit,
    parse_retry_after,
    substitute,
)
from digest.email.message import fill
from digest.errors import ConfigError, ProviderError

NOW = 1_800_000_000.0


@dataclass(frozen=True)
class Composed:
    issue_id: str = "2026-W47"
    subject: str = "Weekly for [[digest:name]]"
    html: str = '<p>Hi [[digest:name]]</p><a href="[[digest:unsubscribe_url]]">u</a>'
    text: str = "Hi [[digest:name]]\nUnsubscribe: [[digest:unsubscribe_url]]"
    headers: Mapping[str, str] = field(
        default_factory=lambda: {
            "From": "Field Notes <weekly@example.com>",
            "Reply-To": "editor@example.com",
            "List-Id": "Field Notes <fieldnotes.example.com>",
            "List-Unsubscribe": "<[[digest:unsubscribe_url]]>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    )
    from_address: str = "Field Notes <weekly@example.com>"


def _render(*args: Any, **kwargs: Any) -> EmailMessage:
    return EmailMessage()


def recipient(i: int, name: str | None = None) -> Recipient:
    email = f"r{i}@example.com"
    values = {
        "name": name or f"Reader {i}",
        "email": email,
        "unsubscribe_url": f"https://x.example/unsubscribe/t{i}",
    }
    return Recipient(i, email, values, f"<m{i}@example.com>")


def batch(n: int = 3, **names: str) -> Batch:
    recipients = tuple(recipient(i, names.get(f"r{i}")) for i in range(1, n + 1))
    key = idempotency_key("2026-W47", "all", [r.subscriber_id for r in recipients])
    return Batch("2026-W47", "all", Composed(), recipients, key, _render)


Handler = Callable[[httpx.Request], httpx.Response]


class Config:
    """Just enough of digest.config.Config for a provider."""


def provider(name: str, handler: Handler, **options: Any) -> Any:
    cls = registry.get_provider_class(name)
    base = {
        "postmark": {"token": "${T}"},
        "resend": {"api_key": "${T}"},
        "sendgrid": {"api_key": "${T}"},
        "brevo": {"api_key": "${T}"},
        "mailgun": {"api_key": "${T}", "domain": "mg.example.com"},
        "ses": {"access_key_id": "${T}", "secret_access_key": "${T}"},
    }[name]
    settings = cls.Settings.model_validate(
        {"base_url": "https://api.test", "retry_base_delay": 0.01, **base, **options}
    )
    client = httpx.Client(transport=httpx.MockTransport(handler))
    instance = cls(settings, Config(), client=client)
    instance.slept = []
    instance.set_clock(sleep=instance.slept.append, rng=random.Random(1))
    return instance


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "secret-token")


def results(events: Any) -> list[Result]:
    return [e for e in events if isinstance(e, Result)]


# --------------------------------------------------------------------------- http machinery


def test_rate_limit_headers_of_every_family() -> None:
    h = httpx.Headers
    assert parse_rate_limit(
        h(
            {
                "ratelimit-limit": "2",
                "ratelimit-remaining": "0",
                "ratelimit-reset": "1",
                "retry-after": "1",
            }
        ),
        now=NOW,
    ) == RateLimit(2, 0, 1, 1)
    sendgrid = parse_rate_limit(
        h(
            {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "10",
                "X-RateLimit-Reset": str(int(NOW) + 30),
            }
        ),
        now=NOW,
    )
    assert sendgrid == RateLimit(600, 10, 30, None)  # an epoch reset becomes seconds
    assert parse_rate_limit(
        h(
            {
                "x-sib-ratelimit-limit": "10",
                "x-sib-ratelimit-remaining": "3",
                "x-sib-ratelimit-reset": "5",
            }
        ),
        now=NOW,
    ) == RateLimit(10, 3, 5)
    assert parse_rate_limit(h({}), now=NOW) == RateLimit()


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("7", now=NOW) == 7
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", now=1800000000.0) == 10.0
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_pacer_spaces_to_a_fixed_rate_and_pauses_after_429() -> None:
    clock = [100.0]
    pacer = Pacer(rate=4, clock=lambda: clock[0], sleep=lambda s: None)
    # spaced at 95% of the stated rate: 1 / (4 * 0.95) s apart
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([0.0, 1 / 3.8, 2 / 3.8])
    clock[0] = 101.0
    pacer.observe(RateLimit(retry_after=2.0), throttled=True)
    assert pacer.reserve() == 2.0


def test_pacer_learns_the_rate_from_limit_and_reset_headers() -> None:
    clock = [0.0]
    pacer = Pacer(clock=lambda: clock[0], sleep=lambda s: None)
    assert pacer.reserve() == 0.0
    pacer.observe(RateLimit(limit=10, remaining=9, reset_after=1.0), throttled=False)
    assert pacer.learned_rate == pytest.approx(10)
    # the first request, sent before the limit was known, counts: the next waits its turn
    assert pacer.reserve() == pytest.approx(1 / 9.5)
    assert pacer.reserve() == pytest.approx(2 / 9.5)


def test_window_guard_waits_for_answers_however_late_requests_land() -> None:
    # 10 per second, configured. Ten requests start on the even spacing, but their uploads
    # are slow: each is answered 0.3 s after it started (so it may have arrived that late).
    clock = [0.0]
    pacer = Pacer(rate=10, clock=lambda: clock[0], sleep=lambda s: None)
    starts = []
    for _ in range(10):
        delay = pacer.reserve(guarded=True)
        assert delay is not None
        starts.append(clock[0] + delay)
    assert starts[-1] == pytest.approx(9 / 9.5)
    assert pacer.reserve(guarded=True) is None  # ten in flight: the eleventh must wait
    first_answer = starts[0] + 0.3
    clock[0] = first_answer
    pacer.release()
    # Even spacing alone would start the eleventh at 10 / 9.5 s; the first request may have
    # arrived as late as its answer, so the eleventh starts a full second after that.
    delay = pacer.reserve(guarded=True)
    assert delay is not None
    assert clock[0] + delay == pytest.approx(first_answer + 1.0)


def test_window_guard_uses_the_limit_learned_from_headers() -> None:
    clock = [0.0]
    pacer = Pacer(clock=lambda: clock[0], sleep=lambda s: None)
    pacer.observe(RateLimit(limit=2, remaining=1, reset_after=1.0), throttled=False)
    assert pacer.reserve(guarded=True) == 0.0
    assert pacer.reserve(guarded=True) == pytest.approx(1 / 1.9)
    assert pacer.reserve(guarded=True) is None
    clock[0] = 0.8
    pacer.release()
    clock[0] = 0.9
    pacer.release()
    delay = pacer.reserve(guarded=True)
    assert delay is not None
    assert clock[0] + delay == pytest.approx(1.8)  # a second after the first answer


def test_slot_blocks_while_the_guard_is_full_and_always_releases() -> None:
    pacer = Pacer(rate=2, clock=lambda: 0.0, sleep=lambda s: None)  # time stands still
    entered = threading.Event()
    in_flight_when_entered: list[int] = []
    with pacer.slot(), pacer.slot():
        assert pacer._in_flight == 2
        third = threading.Thread(target=lambda: _enter(pacer, entered, in_flight_when_entered))
        third.start()
    third.join(timeout=30)
    assert entered.is_set()
    # the third request started only once one in flight had been answered: never 3 at once
    assert len(in_flight_when_entered) == 1 and in_flight_when_entered[0] <= 2
    with pytest.raises(RuntimeError), pacer.slot():  # an error inside still releases
        raise RuntimeError("request failed")
    assert pacer._in_flight == 0


def _enter(pacer: Pacer, entered: threading.Event, seen: list[int]) -> None:
    with pacer.slot():
        seen.append(pacer._in_flight)
        entered.set()


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after() -> None:
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=8.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling / 2  # spread out, not a constant
    assert all(3.0 <= policy.delay(1, 3.0, rng) <= 4.0 for _ in range(50))


def keep(text: str, *, html: bool = False) -> str:
    """A provider with no syntax of its own to defuse."""
    return text


def test_markers_are_escaped_in_html_only() -> None:
    values = {"name": 'Ann & "Bo"'}
    assert fill("Hi [[digest:name]]", values) == 'Hi Ann & "Bo"'
    assert fill("Hi [[digest:name]]", values, html=True) == "Hi Ann &amp; &quot;Bo&quot;"
    assert fill("[[digest:missing]]!", values) == "!"
    sub = substitute(
        "[[digest:name]]",
        "<b>[[digest:name]]</b>",
        "[[digest:name]]",
        {},
        [recipient(1, "A & B"), recipient(2)],
        lambda n: f"%{n}%",
        defuse=keep,
    )
    assert sub.html == "<b>%name_html%</b>" and sub.text == "%name%"
    assert sub.variables(recipient(1, "A & B").values) == {
        "name": "A & B",
        "name_html": "A &amp; B",
    }
    plain = substitute(
        "", "<b>[[digest:name]]</b>", "", {}, [recipient(2)], lambda n: f"%{n}%", defuse=keep
    )
    assert plain.html == "<b>%name%</b>"  # nobody needs escaping: no second copy sent


# --------------------------------------------------------------------------- retries


def test_429_then_503_then_success_honours_retry_after() -> None:
    # Postmark documents 503 as "service unavailable": not taken, so it is tried again
    answers = [
        httpx.Response(
            429, json={"ErrorCode": 429, "Message": "slow down"}, headers={"Retry-After": "3"}
        ),
        httpx.Response(503, json={"ErrorCode": 100, "Message": "maintenance"}),
        httpx.Response(
            200, json=[{"ErrorCode": 0, "Message": "OK", "MessageID": f"id{i}"} for i in range(3)]
        ),
    ]
    p = provider("postmark", lambda request: answers.pop(0))
    out = results(p.send(batch()))
    assert [(r.state, r.provider_message_id) for r in out] == [
        ("sent", "id0"),
        ("sent", "id1"),
        ("sent", "id2"),
    ]
    assert p.slept[0] >= 3.0  # the pacer's pause honours Retry-After
    assert p.stats.attempts == 3 and p.stats.retries == 2


def test_an_unanswered_request_is_uncertain_and_never_retried_without_a_key() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    p = provider("postmark", handler, max_retries=2)
    out = results(p.send(batch(2)))
    assert [r.state for r in out] == ["uncertain", "uncertain"]
    assert "closed without an answer" in (out[0].reason or "")
    assert "may have been accepted" in (out[0].reason or "")
    assert calls["n"] == 1  # a second try could deliver the batch twice

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    out = results(provider("postmark", slow, max_retries=1).send(batch(1)))
    assert out[0].state == "uncertain" and "no answer in time" in (out[0].reason or "")


def test_an_unanswered_request_is_retried_where_the_key_drops_repeats() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("timed out")
        return httpx.Response(201, json={"messageIds": ["<a>", "<b>"]})

    out = results(provider("brevo", handler, max_retries=2).send(batch(2)))
    assert [r.state for r in out] == ["sent", "sent"] and calls["n"] == 2


def test_a_connection_never_made_stops_the_send_and_sends_nothing() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(ProviderError) as caught:
        results(provider("postmark", refused, max_retries=2).send(batch(2)))
    assert caught.value.retryable
    assert "cannot connect" in str(caught.value) and "gave up after 3 tries" in str(caught.value)


# --------------------------------------------------------------------------- providers


def test_postmark_per_message_errors_and_one_line_401() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Postmark-Server-Token"] == "secret-token"
        sent = json.loads(request.content)
        assert sent[0]["Headers"][1] == {
            "Name": "List-Unsubscribe",
            "Value": "<https://x.example/unsubscribe/t1>",
        }
        assert sent[0]["MessageStream"] == "broadcast" and sent[0]["Tag"] == "2026-W47"
        assert sent[0]["HtmlBody"].startswith("<p>Hi Ann &amp; Co</p>")
        return httpx.Response(
            200,
            json=[
                {"ErrorCode": 0, "Message": "OK", "MessageID": "a"},
                {"ErrorCode": 406, "Message": "inactive recipient"},
                {"ErrorCode": 0, "Message": "OK", "MessageID": "c"},
            ],
        )

    out = results(
        provider("postmark", handler, message_stream="broadcast").send(batch(3, r1="Ann & Co"))
    )
    assert [(r.state, r.reason) for r in out] == [
        ("sent", None),
        ("failed-permanent", "postmark 406: inactive recipient"),
        ("sent", None),
    ]

    denied = provider(
        "postmark",
        lambda r: httpx.Response(
            401, json={"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        ),
    )
    with pytest.raises(ProviderError) as caught:
        list(denied.send(batch()))
    assert str(caught.value) == (
        "postmark 401: Bad or missing Server API token. (the account was refused: check "
        "provider.* in the config and the sender in postmark; nothing of this request was sent)"
    )
    assert caught.value.retryable is False


def test_postmark_unconfirmed_sender_stops_without_failing_recipients() -> None:
    p = provider(
        "postmark",
        lambda r: httpx.Response(
            200, json=[{"ErrorCode": 401, "Message": "Sender signature not confirmed."}] * 2
        ),
    )
    events = p.send(batch(2))
    got = []
    with pytest.raises(ProviderError) as caught:
        for event in events:
            got.append(event)
    assert [r.state for r in results(got)] == ["failed-retryable", "failed-retryable"]
    assert str(caught.value).startswith("postmark 200: Sender signature not confirmed.")


def test_resend_sends_the_idempotency_key_and_reads_permissive_errors() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        assert request.headers["x-batch-validation"] == "permissive"
        if len(keys) == 1:
            raise httpx.RemoteProtocolError("dropped")
        return httpx.Response(
            200,
            json={
                "data": [{"id": "e1"}, {"id": "e3"}],
                "errors": [{"index": 1, "message": "Invalid `to`"}],
            },
        )

    b = batch(3)
    out = results(provider("resend", handler).send(b))
    assert keys == [b.idempotency_key, b.idempotency_key]  # the retry reuses the key
    assert [(r.state, r.provider_message_id) for r in out] == [
        ("sent", "e1"),
        ("failed-permanent", None),
        ("sent", "e3"),
    ]
    assert out[1].reason == "resend: Invalid `to`"


def test_resend_a_200_that_cannot_be_read_leaves_the_batch_uncertain() -> None:
    for body, problem in [
        ({"nope": 1}, "expected {'data': [...]}, got {'nope': 1}"),
        ({"data": [{"id": "e1"}]}, "no id for email 1 in {'data': [{'id': 'e1'}]}"),
    ]:
        p = provider("resend", lambda r, body=body: httpx.Response(200, json=body))
        out = results(p.send(batch(2)))
        assert [(r.subscriber_id, r.state, r.reason) for r in out] == [
            (
                sid,
                "uncertain",
                f"resend 200: unexpected answer to a batch: {problem}; the status said "
                "success, so it may have been accepted",
            )
            for sid in (1, 2)
        ]


def test_resend_409_for_a_key_in_progress_is_retried_later_any_other_409_stops() -> None:
    busy = {"name": "concurrent_idempotent_requests", "message": "still processing"}
    p = provider("resend", lambda r: httpx.Response(409, json=busy))
    out = results(p.send(batch(2)))
    assert [r.state for r in out] == ["failed-retryable", "failed-retryable"]
    assert out[0].reason is not None and out[0].reason.startswith("resend 409: ")
    other = provider("resend", lambda r: httpx.Response(409, text="conflict, not JSON"))
    with pytest.raises(ProviderError) as caught:
        list(other.send(batch(1)))
    assert caught.value.status == 409


def test_resend_preflight_reports_the_sending_domains_status() -> None:
    domains = {"data": [{"name": "Example.com", "status": "verified"}, {"name": "other.org"}]}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json=domains)

    p = provider("resend", handler)
    p.config.sender = SimpleNamespace(from_email="weekly@example.com")
    assert [(c.name, c.ok, c.detail) for c in p.preflight()] == [
        ("credentials", True, "API key accepted"),
        ("domain", True, "example.com is verified"),
    ]
    p.config.sender = SimpleNamespace(from_email="weekly@elsewhere.net")
    assert p.preflight()[1] == Check("domain", False, "elsewhere.net is not added")
    assert seen == ["GET /domains", "GET /domains"]  # read-only


def test_sendgrid_uploads_content_once_and_drops_refused_recipients() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if len(bodies) == 1:
            return httpx.Response(
                400,
                json={
                    "errors": [
                        {
                            "message": "Does not contain a valid address.",
                            "field": "personalizations.1.to.0.email",
                            "help": None,
                        }
                    ]
                },
            )
        return httpx.Response(202, headers={"X-Message-Id": "sg1"})

    out = results(provider("sendgrid", handler).send(batch(3)))
    first = bodies[0]
    assert first["content"][1]["value"].startswith("<p>Hi -digest_name-</p>")
    assert first["headers"]["List-Unsubscribe"] == "<-digest_unsubscribe_url->"
    assert first["personalizations"][0]["substitutions"] == {
        "-digest_name-": "Reader 1",
        "-digest_unsubscribe_url-": "https://x.example/unsubscribe/t1",
    }
    assert [p["to"][0]["email"] for p in bodies[1]["personalizations"]] == [
        "r1@example.com",
        "r3@example.com",
    ]
    assert sorted((r.subscriber_id, r.state) for r in out) == [
        (1, "sent"),
        (2, "failed-permanent"),
        (3, "sent"),
    ]


def test_mailgun_bisects_a_refused_batch() -> None:
    calls: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"].startswith("Basic ")
        text = request.content.decode()
        to = [
            part.split("\r\n\r\n", 1)[1].rsplit("\r\n", 1)[0]
            for part in text.split("--digest-")
            if 'name="to"' in part
        ]
        calls.append(to)
        assert '"r1@example.com":{"name":"Reader 1"' in text or "r1@" not in to
        if "r3@example.com" in to:
            return httpx.Response(
                400,
                json={"message": "to parameter is not a valid address. please check documentation"},
            )
        return httpx.Response(200, json={"id": "<mg1>", "message": "Queued. Thank you."})

    out = results(provider("mailgun", handler).send(batch(4)))
    assert sorted((r.subscriber_id, r.state) for r in out) == [
        (1, "sent"),
        (2, "sent"),
        (3, "failed-permanent"),
        (4, "sent"),
    ]
    assert calls[0] == [f"r{i}@example.com" for i in range(1, 5)]
    assert len(calls) == 5  # all, [1,2] ok, [3,4] refused, [3] refused, [4] ok


def test_brevo_key_is_deterministic_and_changes_with_the_recipients() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if len(seen) == 1:
            refused = "email is not valid in messageVersions[0].to"
            return httpx.Response(400, json={"code": "invalid_parameter", "message": refused})
        return httpx.Response(201, json={"messageIds": ["<b2>", "<b3>"]})

    out = results(provider("brevo", handler).send(batch(3)))
    assert seen[0]["htmlContent"].startswith("<p>Hi {{params.name}}</p>")
    assert seen[0]["messageVersions"][0]["params"]["name"] == "Reader 1"
    first_key = seen[0]["headers"]["idempotencyKey"]
    assert first_key != seen[1]["headers"]["idempotencyKey"]
    again: list[dict[str, Any]] = []
    list(
        provider(
            "brevo",
            lambda r: (
                again.append(json.loads(r.content)),
                httpx.Response(201, json={"messageIds": ["x"] * 3}),
            )[1],
        ).send(batch(3))
    )
    assert again[0]["headers"]["idempotencyKey"] == first_key
    assert [(r.subscriber_id, r.state, r.provider_message_id) for r in out] == [
        (1, "failed-permanent", None),
        (2, "sent", "<b2>"),
        (3, "sent", "<b3>"),
    ]


def test_ses_signs_with_sigv4_and_settles_each_entry() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers["Authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=secret-token/")
        assert "/eu-west-1/ses/aws4_request" in auth
        assert "x-amz-date" in request.headers
        body = json.loads(request.content)
        template = body["DefaultContent"]["Template"]
        assert template["TemplateContent"]["Html"].startswith("<p>Hi {{name}}</p>")
        assert template["TemplateContent"]["Subject"] == "Weekly for {{{name}}}"
        entry = body["BulkEmailEntries"][0]
        assert entry["ReplacementHeaders"] == [
            {"Name": "List-Unsubscribe", "Value": "<https://x.example/unsubscribe/t1>"}
        ]
        return httpx.Response(
            200,
            json={
                "BulkEmailEntryResults": [
                    {"Status": "SUCCESS", "MessageId": "s1"},
                    {"Status": "MESSAGE_REJECTED", "Error": "suppressed"},
                    {"Status": "TRANSIENT_FAILURE", "Error": "try later"},
                ]
            },
        )

    out = results(provider("ses", handler, region="eu-west-1").send(batch(3)))
    assert [(r.state, r.reason) for r in out] == [
        ("sent", None),
        ("failed-permanent", "ses MESSAGE_REJECTED: suppressed"),
        ("failed-retryable", "ses TRANSIENT_FAILURE: try later"),
    ]


def test_ses_an_account_wide_status_stops_after_settling_the_batch() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "BulkEmailEntryResults": [
                    {"Status": "SUCCESS", "MessageId": "s1"},
                    {"Status": "MAIL_FROM_DOMAIN_NOT_VERIFIED", "Error": "verify it"},
                ]
            },
        )

    p = provider("ses", handler, configuration_set="digest-events")
    events: list[Any] = []
    with pytest.raises(ProviderError) as caught:
        for event in p.send(batch(2)):
            events.append(event)
    assert [(r.state, r.reason) for r in results(events)] == [
        ("sent", None),
        ("failed-retryable", "ses MAIL_FROM_DOMAIN_NOT_VERIFIED: verify it"),
    ]
    assert "ses MAIL_FROM_DOMAIN_NOT_VERIFIED: verify it" in str(caught.value)
    assert sent[0]["ConfigurationSetName"] == "digest-events"


def test_ses_an_answer_without_a_result_per_entry_leaves_the_batch_uncertain() -> None:
    p = provider("ses", lambda r: httpx.Response(200, json={"BulkEmailEntryResults": []}))
    out = results(p.send(batch(2)))
    assert [(r.state, r.reason) for r in out] == [
        (
            "uncertain",
            "ses 200: unexpected answer to SendBulkEmail: expected 2 entry results, got "
            "{'BulkEmailEntryResults': []}; the status said success, so it may have been "
            "accepted",
        )
    ] * 2


def test_ses_simple_mode_sends_one_request_per_recipient_and_settles_each() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/email/outbound-emails"
        to = json.loads(request.content)["Destination"]["ToAddresses"][0]
        if to.startswith("r2@"):
            return httpx.Response(
                400,
                json={"message": "Address blacklisted."},
                headers={"x-amzn-ErrorType": "MessageRejected:http://internal"},
            )
        return httpx.Response(200, json={"MessageId": f"id-{to}"})

    p = provider("ses", handler, mode="simple", max_send_rate=1000)
    out = results(p.send(batch(3)))
    assert [(r.state, r.provider_message_id, r.reason) for r in out] == [
        ("sent", f"id-{batch(3).recipients[0].email}", None),
        ("failed-permanent", None, "ses 400: MessageRejected: Address blacklisted."),
        ("sent", f"id-{batch(3).recipients[2].email}", None),
    ]


def test_ses_simple_mode_stops_on_an_unverified_sender_or_a_refused_key() -> None:
    unverified = provider(
        "ses",
        lambda r: httpx.Response(
            400,
            json={"message": "Email address is not verified.", "detail": "weekly@example.com"},
            headers={"x-amzn-ErrorType": "MessageRejected:http://internal"},
        ),
        mode="simple",
    )
    with pytest.raises(ProviderError) as caught:
        list(unverified.send(batch(1)))
    assert str(caught.value) == (
        "ses 400: MessageRejected: Email address is not verified.: weekly@example.com"
    )
    refused = provider(
        "ses",
        lambda r: httpx.Response(
            403,
            json={
                "__type": "UnrecognizedClientException",
                "message": "The security token included in the request is invalid.",
            },
        ),
        mode="simple",
    )
    with pytest.raises(ProviderError) as caught:
        list(refused.send(batch(1)))
    assert str(caught.value) == (
        "ses 403: UnrecognizedClientException: The security token included in the request is "
        "invalid."
    )


def test_ses_preflight_asks_about_the_from_domain() -> None:
    verified = {"VerifiedForSendingStatus": True}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.path == "/v2/email/identities/example.com"
        assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
        return httpx.Response(200, json=verified)

    p = provider("ses", handler)
    p.config.sender = SimpleNamespace(from_email="weekly@Example.com")
    assert [(c.name, c.ok, c.detail) for c in p.preflight()] == [
        ("credentials", True, "access keys accepted"),
        ("domain", True, "example.com is verified for sending"),
    ]
    verified["VerifiedForSendingStatus"] = False
    assert p.preflight()[1] == Check("domain", False, "example.com is not verified for sending")


def test_ses_sandbox_refusal_is_one_clear_line() -> None:
    p = provider(
        "ses",
        lambda r: httpx.Response(
            400,
            json={
                "message": "Email address is not verified. The following identities failed "
                "the check in region EU-WEST-1: weekly@example.com"
            },
            headers={"x-amzn-ErrorType": "MessageRejected:http://internal"},
        ),
    )
    with pytest.raises(ProviderError) as caught:
        list(p.send(batch(1)))
    assert str(caught.value) == (
        "ses 400: MessageRejected: Email address is not verified. The following identities "
        "failed the check in region EU-WEST-1: weekly@example.com"
    )


def test_ses_without_botocore_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore is the `ses` extra; without it SES stops before sending, with the fix."""
    import sys

    from digest.errors import ConfigError

    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)  # as if it were not installed
    with pytest.raises(ConfigError) as caught:
        provider("ses", lambda r: httpx.Response(200, json={}))
    assert str(caught.value) == (
        "provider.name: ses signs its requests with botocore, which is not installed; "
        "install digest with the SES extra: pip install 'digest[ses]'"
    )
    assert caught.value.exit_code == 3


def test_settings_reject_unknown_options_and_plain_secrets() -> None:
    from digest.config.providers import provider_problems

    problems = provider_problems(dict(name="postmark", token="${T}", mesage_stream="broadcast"))
    assert len(problems) == 1 and problems[0].startswith("provider.mesage_stream")
    problems = provider_problems(dict(name="sendgrid", api_key="SG.x"))
    assert len(problems) == 1 and problems[0].startswith("provider.api_key")
    assert {"postmark", "resend", "sendgrid", "mailgun", "ses", "brevo"} <= set(
        registry.available()
    )


def test_sendgrid_suppressions_stop_when_the_offset_is_ignored() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        # a full page every time, whatever the offset
        rows = [{"email": f"gone{i}@example.com", "created": 1767605400} for i in range(500)]
        return httpx.Response(200, json=rows)

    p = provider("sendgrid", handler)
    found = list(p.fetch_suppressions())
    # one page per list, then the repeat is noticed: no endless loop
    assert len(found) == 3 * 500
    assert len(calls) == 3 * 2
    assert calls[1].endswith("offset=500")


def test_ses_suppressions_are_read_signed_page_by_page() -> None:
    pages = {
        None: {
            "SuppressedDestinationSummaries": [
                {
                    "EmailAddress": "gone@example.com",
                    "Reason": "BOUNCE",
                    "LastUpdateTime": 1767605400,
                },
            ],
            "NextToken": "page 2/2",
        },
        "page 2/2": {
            "SuppressedDestinationSummaries": [
                {"EmailAddress": "angry@example.com", "Reason": "COMPLAINT"},
            ],
        },
    }
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.url.path == "/v2/email/suppression/addresses"
        return httpx.Response(200, json=pages[request.url.params.get("NextToken")])

    found = list(provider("ses", handler).fetch_suppressions())
    assert [(s.email, s.kind) for s in found] == [
        ("gone@example.com", "bounced"),
        ("angry@example.com", "complained"),
    ]
    assert found[0].at == "2026-01-05T09:30:00+00:00"
    assert [r.url.params.get("NextToken") for r in seen] == [None, "page 2/2"]
    assert all(r.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ") for r in seen)


# --------------------------------------------------------------------------- add-on providers

ADDON = '''
from digest.delivery.providers.base import Provider, ProviderSettings, Result


class AcmeSettings(ProviderSettings):
    region: str = "eu"


class AcmeProvider(Provider):
    name = "acme"
    Settings = AcmeSettings

    def send(self, batch):
        for recipient in batch.recipients:
            yield Result(recipient.subscriber_id, "sent", provider_message_id="acme-1")


class NotAProvider:
    """Declares no Settings, and is not a digest Provider."""

    @classmethod
    def from_config(cls, config):
        return cls()
'''


@pytest.fixture
def addon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package that adds providers through the ``digest.providers`` entry point
    group: a module and its dist-info folder on sys.path, as pip leaves them."""
    (tmp_path / "acme_mail.py").write_text(ADDON)
    dist = tmp_path / "acme_mail-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mail\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[digest.providers]\nacme = acme_mail:AcmeProvider\nplain = acme_mail:NotAProvider\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # forgotten after


def test_an_added_provider_registers_and_is_validated_like_a_builtin(
    addon: None, sample_site: Path
) -> None:
    from digest.config import load_config, parse_config
    from digest.config.providers import provider_problems, settings_for
    from digest.delivery.providers.postmark import PostmarkSettings
    from digest.delivery.send import send_issue

    assert {"acme", "plain", "postmark"} <= set(registry.available())
    assert settings_for("acme").__name__ == "AcmeSettings"  # type: ignore[union-attr]
    assert settings_for("postmark") is PostmarkSettings
    assert settings_for("plain") is None  # it declares no options
    assert provider_problems({"name": "acme", "regoin": "us"}) == [
        "provider.regoin: unknown key; did you mean 'region'?"
    ]
    assert provider_problems({"name": "plain", "anything": 1}) == []
    assert provider_problems({"name": 42}) == ["provider.name: expected a provider's name (got 42)"]
    (problem,) = provider_problems({"name": "acmee"})
    assert problem.startswith("provider.name: unknown provider 'acmee'; did you mean 'acme'?")
    assert "acme, " in problem  # the known list names the add-ons too
    with pytest.raises(ConfigError, match=r"^provider.name: unknown provider 'zzz' \(known: "):
        registry.get_provider_class("zzz")
    plain = parse_config({**yaml.safe_load((sample_site / "config.yaml").read_text()),
                          "provider": {"name": "plain"}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"^provider.name: plain is not a digest provider$"):
        registry.make_provider(plain)
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = {"name": "acme", "region": "us"}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", now=datetime(2026, 11, 1, tzinfo=timezone.utc))
    report = send_issue(config, now=datetime(2026, 11, 23, tzinfo=timezone.utc), week="2026-W47")
    assert (report.provider, report.sent, report.complete) == ("acme", 1, True)


# --------------------------------------------------------------------------- what answers prove
# One row per answer of the classification table in docs/sending.md, per provider: the state
# each recipient ends in, the message, and how many requests went out.

SUCCESS: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "postmark": lambda r: httpx.Response(
        200, json=[{"ErrorCode": 0, "Message": "OK", "MessageID": f"id{i}"} for i in range(2)]
    ),
    "sendgrid": lambda r: httpx.Response(202, headers={"X-Message-Id": "sg1"}),
    "mailgun": lambda r: httpx.Response(200, json={"id": "<mg1>", "message": "Queued."}),
    "ses": lambda r: httpx.Response(
        200,
        json={
            "BulkEmailEntryResults": [
                {"Status": "SUCCESS", "MessageId": f"ses{i}"} for i in range(2)
            ]
        },
    ),
    "brevo": lambda r: httpx.Response(201, json={"messageIds": ["<b1>", "<b2>"]}),
    "resend": lambda r: httpx.Response(200, json={"data": [{"id": "e1"}, {"id": "e2"}]}),
}
WITHOUT_KEYS = ["postmark", "sendgrid", "mailgun", "ses"]


def counted(answers: list[Any]) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving ``answers`` in turn (a response, an exception to raise, or a
    handler), and the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)  # type: ignore[no-any-return]
        return answer  # type: ignore[no-any-return]

    return handler, seen


@pytest.mark.parametrize("name", WITHOUT_KEYS)
def test_a_502_after_the_body_was_sent_is_uncertain_and_stops_without_a_retry(name: str) -> None:
    handler, seen = counted([httpx.Response(502, text="Bad Gateway")])
    p = provider(name, handler)
    out: list[Result] = []
    with pytest.raises(ProviderError) as caught:
        for event in p.send(batch(2)):
            if isinstance(event, Result):  # the Handoff before the request is not a result
                out.append(event)
    assert len(seen) == 1  # never sent again blindly
    reason = (
        f"{name} 502: Bad Gateway; {name} does not document a 502 as refusing the request, "
        "so it may have been accepted"
    )
    assert [(r.subscriber_id, r.state, r.reason) for r in out] == [
        (1, "uncertain", reason),
        (2, "uncertain", reason),
    ]
    assert str(caught.value) == (
        f"{name} 502: Bad Gateway; {name} does not document a 502 as refusing the request, so "
        "it may have been accepted; stopped so that no more messages become uncertain; run the "
        "same command to resume"
    )
    assert caught.value.retryable is True


@pytest.mark.parametrize("name", WITHOUT_KEYS)
@pytest.mark.parametrize(
    "drop",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("Server disconnected")],
    ids=["timeout", "drop"],
)
def test_accepted_then_no_answer_is_uncertain_and_the_send_goes_on(
    name: str, drop: Exception
) -> None:
    handler, seen = counted([drop])
    out = results(provider(name, handler).send(batch(2)))
    assert [r.state for r in out] == ["uncertain", "uncertain"]
    assert (out[0].reason or "").endswith("; the request was written, so it may have been accepted")
    assert len(seen) == 1


@pytest.mark.parametrize("name", ["postmark", "sendgrid", "ses"])
def test_a_503_the_provider_documents_as_not_taken_is_tried_again(name: str) -> None:
    handler, seen = counted([httpx.Response(503, text="unavailable"), SUCCESS[name]])
    out = results(provider(name, handler).send(batch(2)))
    assert [r.state for r in out] == ["sent", "sent"]
    assert len(seen) == 2


def test_mailgun_does_not_document_a_503_as_not_taken() -> None:
    handler, seen = counted([httpx.Response(503, text="unavailable"), SUCCESS["mailgun"]])
    out: list[Result] = []
    with pytest.raises(ProviderError):
        out.extend(results(provider("mailgun", handler).send(batch(2))))
    assert len(seen) == 1  # its events API settles them instead (reconcile)


@pytest.mark.parametrize("name", ["brevo", "resend"])
def test_with_an_idempotency_key_an_unknown_answer_is_tried_again_with_the_same_key(
    name: str,
) -> None:
    handler, seen = counted(
        [httpx.Response(502, text="Bad Gateway"), httpx.ReadTimeout("slow"), SUCCESS[name]]
    )
    out = results(provider(name, handler).send(batch(2)))
    assert [r.state for r in out] == ["sent", "sent"]
    assert len(seen) == 3
    keys = {
        r.headers.get("Idempotency-Key") or json.loads(r.content)["headers"]["idempotencyKey"]
        for r in seen
    }
    assert len(keys) == 1


@pytest.mark.parametrize("name", list(SUCCESS))
def test_429_is_a_transient_refusal_retried_then_the_rows_go_back_for_the_next_run(
    name: str,
) -> None:
    handler, seen = counted([httpx.Response(429, text="slow down", headers={"Retry-After": "2"})])
    p = provider(name, handler, max_retries=2)
    with pytest.raises(ProviderError) as caught:
        list(p.send(batch(2)))  # no result: the send loop puts both back to pending
    assert len(seen) == 3
    assert caught.value.retryable is True
    assert str(caught.value).endswith("(gave up after 3 tries)")


@pytest.mark.parametrize("name", list(SUCCESS))
def test_a_refused_connection_sends_nothing_and_the_rows_go_back(name: str) -> None:
    handler, _ = counted([httpx.ConnectError("Connection refused")])
    with pytest.raises(ProviderError) as caught:
        list(provider(name, handler, max_retries=1).send(batch(2)))
    assert caught.value.retryable is True
    assert f"{name}: cannot connect (Connection refused)" in str(caught.value)


@pytest.mark.parametrize("name", list(SUCCESS))
@pytest.mark.parametrize("status", [401, 403])
def test_an_account_refusal_stops_the_send_with_what_to_fix(name: str, status: int) -> None:
    handler, seen = counted([httpx.Response(status, json={"message": "key revoked"})])
    with pytest.raises(ProviderError) as caught:
        list(provider(name, handler).send(batch(2)))
    assert len(seen) == 1 and caught.value.retryable is False and caught.value.status == status
    if name != "ses":  # SES names the error type in its own words instead
        assert str(caught.value) == (
            f"{name} {status}: key revoked (the account was refused: check provider.* in the "
            f"config and the sender in {name}; nothing of this request was sent)"
        )


@pytest.mark.parametrize("name", ["postmark", "sendgrid", "mailgun", "ses", "brevo"])
def test_a_success_status_that_cannot_be_read_is_uncertain(name: str) -> None:
    handler, _ = counted([httpx.Response(200, text="<html>upstream says hi</html>")])
    p = provider(name, handler, **({"mode": "simple"} if name == "ses" else {}))
    out = results(p.send(batch(2)))
    assert [r.state for r in out] == ["uncertain", "uncertain"]
    assert all(
        (r.reason or "").endswith("; the status said success, so it may have been accepted")
        for r in out
    )
    assert f"{name} 200: unexpected answer to " in (out[0].reason or "")


def test_mailgun_a_200_without_a_message_id_is_uncertain() -> None:
    handler, _ = counted([httpx.Response(200, json={"message": "Queued."})])
    out = results(provider("mailgun", handler).send(batch(2)))
    assert [(r.state, r.reason) for r in out] == [
        (
            "uncertain",
            "mailgun 200: unexpected answer to a send: no message id in "
            '\'{"message":"Queued."}\'; the status said success, so it may have been accepted',
        )
    ] * 2


def test_postmark_per_message_codes_by_what_they_prove() -> None:
    items = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": "a"},
        {"ErrorCode": 100, "Message": "Maintenance"},
        {
            "ErrorCode": 406,
            "Message": "You tried to send to a recipient that has been marked as inactive.",
        },
        {"ErrorCode": 300, "Message": "Invalid 'To' address"},
    ]
    out = results(provider("postmark", lambda r: httpx.Response(200, json=items)).send(batch(4)))
    assert [(r.state, r.transient) for r in out] == [
        ("sent", False),
        ("failed-retryable", True),
        ("failed-permanent", False),
        ("failed-permanent", False),
    ]
    account = [{"ErrorCode": 0, "Message": "OK", "MessageID": "a"},
               {"ErrorCode": 412, "Message": "Account pending"}]  # fmt: skip
    seen: list[Result] = []
    with pytest.raises(ProviderError) as caught:
        seen.extend(
            results(
                provider("postmark", lambda r: httpx.Response(200, json=account)).send(batch(2))
            )
        )
    assert str(caught.value) == (
        "postmark 200: Account pending (ErrorCode 412: account pending approval)"
    )


def test_ses_throttling_and_service_unavailable_are_retried_internal_failure_is_not() -> None:
    def ses_error(status: int, kind: str) -> httpx.Response:
        return httpx.Response(
            status, json={"message": kind}, headers={"x-amzn-ErrorType": f"{kind}:http://x"}
        )

    handler, seen = counted(
        [
            ses_error(400, "ThrottlingException"),
            ses_error(429, "TooManyRequestsException"),
            ses_error(503, "ServiceUnavailable"),
            SUCCESS["ses"],
        ]
    )
    assert [r.state for r in results(provider("ses", handler).send(batch(2)))] == ["sent"] * 2
    assert len(seen) == 4
    handler, seen = counted([ses_error(500, "InternalFailure")])
    out: list[Result] = []
    with pytest.raises(ProviderError):
        out.extend(results(provider("ses", handler).send(batch(2))))
    assert len(seen) == 1
    handler, seen = counted([ses_error(400, "SendingPausedException")])
    with pytest.raises(ProviderError) as caught:
        list(provider("ses", handler).send(batch(2)))
    assert len(seen) == 1 and caught.value.retryable is False


def test_ses_entry_statuses_by_what_they_prove() -> None:
    body = {
        "BulkEmailEntryResults": [
            {"Status": "SUCCESS", "MessageId": "m1"},
            {"Status": "TRANSIENT_FAILURE", "Error": "try later"},
            {"Status": "FAILED", "Error": "failed to send"},
            {"Status": "MESSAGE_REJECTED", "Error": "virus"},
        ]
    }
    out = results(provider("ses", lambda r: httpx.Response(200, json=body)).send(batch(4)))
    assert [(r.state, r.transient, r.reason) for r in out] == [
        ("sent", False, None),
        ("failed-retryable", True, "ses TRANSIENT_FAILURE: try later"),
        ("failed-retryable", True, "ses FAILED: failed to send"),
        ("failed-permanent", False, "ses MESSAGE_REJECTED: virus"),
    ]


def test_a_read_is_tried_again_after_an_unknown_answer_it_changes_nothing() -> None:
    handler, seen = counted(
        [httpx.Response(502, text="Bad Gateway"), httpx.Response(200, json={"Name": "s"})]
    )
    checks = provider("postmark", handler).preflight()
    assert checks[0].detail == "server token accepted (server 's')" and len(seen) == 2


def test_postmark_a_422_about_the_sender_signature_refuses_the_account() -> None:
    answer = {"ErrorCode": 400, "Message": "The 'From' address is not a sender signature."}
    p = provider("postmark", lambda r: httpx.Response(422, json=answer))
    with pytest.raises(ProviderError) as caught:
        list(p.send(batch(2)))
    assert str(caught.value) == (
        "postmark 422: The 'From' address is not a sender signature. (the account was "
        "refused: check provider.* in the config and the sender in postmark; nothing of this "
        "request was sent)"
    )
    assert caught.value.retryable is False
    bad = {"ErrorCode": 300, "Message": "Invalid 'From' address."}
    with pytest.raises(ProviderError) as caught:
        list(provider("postmark", lambda r: httpx.Response(422, json=bad)).send(batch(2)))
    assert str(caught.value) == "postmark 422: Invalid 'From' address."

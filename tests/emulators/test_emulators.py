"""The emulators behave as README.md beside this file says."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .node import run_resend_local, run_ses_local
from .providers import REPO_ROOT, RunningEmulator, run_emulator

pytestmark = pytest.mark.integration  # the emulators: Python servers and Node processes

PEOPLE = [("ann@example.com", "Ann"), ("bob@example.com", "Bob")]
KEY = "test-key"


# --- one request builder per provider: (recipients with names, key) → httpx.Response ----------


def postmark_send(
    url: str, people: list[tuple[str, str]], key: str = KEY, client: httpx.Client | None = None
) -> httpx.Response:
    body = [
        {
            "From": "news@example.com",
            "To": address,
            "Subject": f"Hello {name}",
            "HtmlBody": f"<p>Hi {name}</p>",
            "TextBody": f"Hi {name}",
            "Headers": [{"Name": "List-Unsubscribe", "Value": f"<https://x/u/{name}>"}],
            "Tag": "issue-1",
            "Metadata": {"issue": "1"},
            "MessageStream": "broadcast",
        }
        for address, name in people
    ]
    return (client or httpx).post(
        f"{url}/email/batch", json=body, headers={"X-Postmark-Server-Token": key}
    )


def sendgrid_send(
    url: str, people: list[tuple[str, str]], key: str = KEY, client: httpx.Client | None = None
) -> httpx.Response:
    body = {
        "personalizations": [
            {
                "to": [{"email": address}],
                "substitutions": {"-name-": name},
                "custom_args": {"recipient": address},
            }
            for address, name in people
        ],
        "from": {"email": "news@example.com", "name": "News"},
        "subject": "Hello -name-",
        "content": [
            {"type": "text/plain", "value": "Hi -name-"},
            {"type": "text/html", "value": "<p>Hi -name-</p>"},
        ],
        "headers": {"List-Unsubscribe": "<https://x/u/-name->"},
        "categories": ["issue-1"],
        "custom_args": {"issue": "1"},
    }
    return (client or httpx).post(
        f"{url}/v3/mail/send", json=body, headers={"Authorization": f"Bearer {key}"}
    )


def mailgun_send(
    url: str, people: list[tuple[str, str]], key: str = KEY, client: httpx.Client | None = None
) -> httpx.Response:
    fields: dict[str, str | list[str]] = {
        "from": "News <news@mg.example.com>",
        "to": [address for address, _ in people],
        "subject": "Hello %recipient.name%",
        "html": "<p>Hi %recipient.name%</p>",
        "text": "Hi %recipient.name%",
        "recipient-variables": json.dumps({a: {"name": n} for a, n in people}),
        "h:List-Unsubscribe": "<https://x/u/%recipient.name%>",
        "o:tag": "issue-1",
        "v:issue": "1",
    }
    # A dummy file part forces multipart/form-data, which is how Mailgun clients send.
    return (client or httpx).post(
        f"{url}/v3/mg.example.com/messages",
        data=fields,
        files={"attachment": ("note.txt", b"x", "text/plain")},
        auth=("api", key),
    )


def brevo_send(
    url: str, people: list[tuple[str, str]], key: str = KEY, client: httpx.Client | None = None
) -> httpx.Response:
    body = {
        "sender": {"email": "news@example.com", "name": "News"},
        "subject": "Hello {{params.name}}",
        "htmlContent": "<p>Hi {{ params.name }}</p>",
        "textContent": "Hi {{params.name}}",
        "headers": {"List-Unsubscribe": "<https://x/u/{{params.name}}>"},
        "tags": ["issue-1"],
        "params": {"issue": "1"},
        "messageVersions": [
            {"to": [{"email": address}], "params": {"name": name}} for address, name in people
        ],
    }
    return (client or httpx).post(f"{url}/v3/smtp/email", json=body, headers={"api-key": key})


SENDERS: dict[str, Callable[..., httpx.Response]] = {
    "postmark": postmark_send,
    "sendgrid": sendgrid_send,
    "mailgun": mailgun_send,
    "brevo": brevo_send,
}
ACCEPTED = {"postmark": 200, "sendgrid": 202, "mailgun": 200, "brevo": 201}
PROVIDERS = list(SENDERS)


@pytest.fixture(scope="module", params=PROVIDERS)
def emulator(request: pytest.FixtureRequest) -> Iterator[RunningEmulator]:
    with run_emulator(request.param) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").reset()


def send(emu: RunningEmulator, people: list[tuple[str, str]], key: str = KEY) -> httpx.Response:
    return SENDERS[emu.provider](emu.url, people, key)


# --- accepted batch -----------------------------------------------------------------------


def test_accepted_batch_is_recorded_per_recipient_with_substitutions(
    emulator: RunningEmulator,
) -> None:
    response = send(emulator, PEOPLE)

    assert response.status_code == ACCEPTED[emulator.provider], response.text
    messages = emulator.messages()
    assert [(m["to"], m["subject"], m["text"], m["html"]) for m in messages] == [
        (address, f"Hello {name}", f"Hi {name}", f"<p>Hi {name}</p>") for address, name in PEOPLE
    ]
    assert [m["headers"]["List-Unsubscribe"] for m in messages] == [
        "<https://x/u/Ann>",
        "<https://x/u/Bob>",
    ]
    assert all(m["tags"] == ["issue-1"] for m in messages)
    assert all(m["metadata"]["issue"] == "1" for m in messages)
    assert {m["request_id"] for m in messages} == {1}
    assert emulator.counts() == {"ann@example.com": 1, "bob@example.com": 1}


def test_success_bodies_have_the_documented_shape(emulator: RunningEmulator) -> None:
    response = send(emulator, PEOPLE)
    provider = emulator.provider

    if provider == "postmark":
        items = response.json()
        assert [i["ErrorCode"] for i in items] == [0, 0]
        assert [i["To"] for i in items] == [a for a, _ in PEOPLE]
        assert all(i["Message"] == "OK" and i["MessageID"] and i["SubmittedAt"] for i in items)
    elif provider == "sendgrid":
        assert response.content == b""
        assert response.headers["X-Message-Id"]
    elif provider == "mailgun":
        body = response.json()
        assert body["message"] == "Queued. Thank you."
        assert body["id"].startswith("<") and body["id"].endswith("@mg.example.com>")
    else:
        assert len(response.json()["messageIds"]) == 2


def test_wrong_key_is_refused_with_the_providers_401(emulator: RunningEmulator) -> None:
    response = send(emulator, PEOPLE, key="wrong")

    assert response.status_code == 401
    expected: dict[str, Any] = {
        "postmark": {
            "ErrorCode": 10,
            "Message": "The Server Token you provided in the X-Postmark-Server-Token request "
            "header was invalid. Please verify that you are using a valid token.",
        },
        "sendgrid": {
            "errors": [
                {
                    "message": "The provided authorization grant is invalid, expired, or revoked",
                    "field": None,
                    "help": None,
                }
            ]
        },
        "brevo": {"code": "unauthorized", "message": "Key not found"},
    }
    if emulator.provider == "mailgun":
        assert response.text == "Forbidden"
    else:
        assert response.json() == expected[emulator.provider]
    assert emulator.messages() == []


OVERSIZE = {"postmark": 501, "sendgrid": 1001, "mailgun": 1001, "brevo": 1001}


def test_over_size_batch_is_refused_and_nothing_is_accepted(emulator: RunningEmulator) -> None:
    people = [(f"r{i}@example.com", f"R{i}") for i in range(OVERSIZE[emulator.provider])]

    response = send(emulator, people)

    provider = emulator.provider
    if provider == "postmark":
        assert response.status_code == 422
        assert response.json()["ErrorCode"] == 410
    elif provider == "sendgrid":
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "personalizations"
        assert "limited to 1000 personalizations" in response.json()["errors"][0]["message"]
    elif provider == "mailgun":
        assert response.status_code == 400
        assert "Too many recipients" in response.json()["message"]
    else:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_parameter"
    assert emulator.messages() == []


def test_batch_at_the_maximum_is_accepted(emulator: RunningEmulator) -> None:
    size = OVERSIZE[emulator.provider] - 1
    people = [(f"r{i}@example.com", f"R{i}") for i in range(size)]

    response = send(emulator, people)

    assert response.status_code == ACCEPTED[emulator.provider], response.text[:300]
    assert len(emulator.counts()) == size


RATE_HEADERS = {
    "postmark": [],
    "sendgrid": ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
    "mailgun": [],
    "brevo": ["x-sib-ratelimit-limit", "x-sib-ratelimit-remaining", "x-sib-ratelimit-reset"],
}


def test_storm_of_429_carries_the_providers_headers(emulator: RunningEmulator) -> None:
    emulator.set_faults(storm=2, retry_after=3)

    first, second, third = (send(emulator, PEOPLE) for _ in range(3))

    assert [first.status_code, second.status_code] == [429, 429]
    assert third.status_code == ACCEPTED[emulator.provider]
    assert first.headers["Retry-After"] == "3"
    for name in RATE_HEADERS[emulator.provider]:
        assert name in first.headers, name
    if emulator.provider in ("sendgrid", "brevo"):
        remaining = RATE_HEADERS[emulator.provider][1]
        assert first.headers[remaining] == "0"
    assert emulator.counts() == {"ann@example.com": 1, "bob@example.com": 1}


def test_rate_limit_refuses_the_excess_within_a_second(emulator: RunningEmulator) -> None:
    emulator.set_faults(rate_limit=3)

    with httpx.Client() as client:
        statuses = [
            SENDERS[emulator.provider](emulator.url, PEOPLE[:1], KEY, client).status_code
            for _ in range(6)
        ]

    assert statuses[:3] == [ACCEPTED[emulator.provider]] * 3
    assert 429 in statuses[3:]
    assert emulator.counts()["ann@example.com"] == statuses.count(ACCEPTED[emulator.provider])


def test_every_kth_request_gets_a_500(emulator: RunningEmulator) -> None:
    emulator.set_faults(error_every=2)

    statuses = [send(emulator, PEOPLE[:1]).status_code for _ in range(4)]

    ok = ACCEPTED[emulator.provider]
    assert statuses == [ok, 500, ok, 500]
    assert emulator.counts() == {"ann@example.com": 2}


def test_drop_after_accepting_is_a_protocol_error_but_the_messages_went_out(
    emulator: RunningEmulator,
) -> None:
    emulator.set_faults(drop_after=1)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send(emulator, PEOPLE)

    assert emulator.counts() == {"ann@example.com": 1, "bob@example.com": 1}
    assert emulator.requests()[-1]["fault"] == "drop_after"


def test_drop_before_accepting_sends_nothing(emulator: RunningEmulator) -> None:
    emulator.set_faults(drop_before=1)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send(emulator, PEOPLE)
    retry = send(emulator, PEOPLE)

    assert retry.status_code == ACCEPTED[emulator.provider]
    assert emulator.counts() == {"ann@example.com": 1, "bob@example.com": 1}


def test_rejected_recipient(emulator: RunningEmulator) -> None:
    emulator.set_faults(reject_pattern=r"\+reject@")
    people = [("ann@example.com", "Ann"), ("bob+reject@example.com", "Bob")]

    response = send(emulator, people)

    if emulator.provider == "postmark":
        # Postmark answers per message: the good one goes out, the other carries its error.
        assert response.status_code == 200
        assert [i["ErrorCode"] for i in response.json()] == [0, 406]
        assert "bob+reject@example.com" in response.json()[1]["Message"]
        assert emulator.counts() == {"ann@example.com": 1}
    else:
        # The others refuse the whole request.
        assert response.status_code == 400
        assert emulator.counts() == {}
    if emulator.provider == "sendgrid":
        assert response.json()["errors"][0]["field"] == "personalizations.1.to.0.email"


def test_delay_holds_the_response_back(emulator: RunningEmulator) -> None:
    emulator.set_faults(delay=0.5)

    with pytest.raises(httpx.ReadTimeout):
        SENDERS[emulator.provider](emulator.url, PEOPLE, KEY, httpx.Client(timeout=0.2))


def test_reset_forgets_messages_and_faults(emulator: RunningEmulator) -> None:
    send(emulator, PEOPLE)
    emulator.set_faults(storm=5)

    emulator.reset()

    assert emulator.messages() == []
    assert send(emulator, PEOPLE).status_code == ACCEPTED[emulator.provider]


def test_unknown_fault_option_is_refused() -> None:
    with (
        pytest.raises(ValueError, match="unknown fault option"),
        run_emulator("postmark", storms=1),
    ):
        pass


# --- provider-specific behaviour ----------------------------------------------------------


def test_seeded_faults_are_reproducible() -> None:
    def pattern() -> list[int]:
        with run_emulator("sendgrid", error_rate=0.5, seed=7) as emu:
            return [sendgrid_send(emu.url, PEOPLE[:1]).status_code for _ in range(12)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {202, 500}


def test_brevo_idempotency_key_gives_one_delivery_and_the_first_response() -> None:
    body = {
        "sender": {"email": "news@example.com"},
        "to": [{"email": "ann@example.com"}],
        "subject": "Hi",
        "htmlContent": "<p>Hi</p>",
        "headers": {"idempotencyKey": "3f8c3a52-1a8e-4a53-9d63-1f7a0c6f5b11"},
    }
    with run_emulator("brevo") as emu:
        emu.set_faults(drop_after=1)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(f"{emu.url}/v3/smtp/email", json=body, headers={"api-key": KEY})
        retry = httpx.post(f"{emu.url}/v3/smtp/email", json=body, headers={"api-key": KEY})
        again = httpx.post(f"{emu.url}/v3/smtp/email", json=body, headers={"api-key": KEY})

        assert retry.status_code == 201
        assert retry.json() == again.json()
        assert set(retry.json()) == {"messageId"}
        assert emu.counts() == {"ann@example.com": 1}
        assert "idempotencyKey" not in emu.messages()[0]["headers"]


def test_postmark_suppression_endpoints() -> None:
    headers = {"X-Postmark-Server-Token": KEY, "Accept": "application/json"}
    with run_emulator("postmark") as emu:
        emu.set_suppressions(
            bounced=["gone@example.com"], spam=[], unsubscribed=["left@example.com"]
        )
        dump = httpx.get(f"{emu.url}/message-streams/broadcast/suppressions/dump", headers=headers)
        bounces = httpx.get(f"{emu.url}/bounces?count=500&offset=0", headers=headers)
        refused = httpx.get(f"{emu.url}/bounces?count=500&offset=0")
        sent = postmark_send(emu.url, [("gone@example.com", "G")])

    assert dump.json()["Suppressions"] == [
        {
            "EmailAddress": "gone@example.com",
            "SuppressionReason": "HardBounce",
            "Origin": "Recipient",
            "CreatedAt": "2026-01-05T09:30:00+00:00",
        },
        {
            "EmailAddress": "left@example.com",
            "SuppressionReason": "ManualSuppression",
            "Origin": "Customer",
            "CreatedAt": "2026-01-05T09:30:00+00:00",
        },
    ]
    assert bounces.json()["TotalCount"] == 1
    bounce = bounces.json()["Bounces"][0]
    assert (bounce["Email"], bounce["Type"], bounce["TypeCode"], bounce["Inactive"]) == (
        "gone@example.com",
        "HardBounce",
        1,
        True,
    )
    assert refused.status_code == 401
    assert sent.json()[0]["ErrorCode"] == 406


def test_sendgrid_suppression_endpoints() -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with run_emulator("sendgrid") as emu:
        got = {
            name: httpx.get(f"{emu.url}/v3/suppression/{name}", headers=headers).json()
            for name in ("bounces", "spam_reports", "unsubscribes")
        }
    assert [set(row) for row in got["bounces"]] == [{"created", "email", "reason", "status"}]
    assert got["bounces"][0]["email"] == "bounced@example.com"
    assert got["spam_reports"] == [
        {
            "created": got["spam_reports"][0]["created"],
            "email": "complained@example.com",
            "ip": "192.0.2.10",
        }
    ]
    assert [row["email"] for row in got["unsubscribes"]] == ["unsubscribed@example.com"]
    assert isinstance(got["unsubscribes"][0]["created"], int)


def test_sendgrid_reports_every_validation_problem_at_once() -> None:
    with run_emulator("sendgrid") as emu:
        response = httpx.post(
            f"{emu.url}/v3/mail/send",
            json={"personalizations": [{"to": [{"email": "ann@example.com"}]}]},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["from", "subject", "content"]


def test_mailgun_missing_fields_and_urlencoded_body() -> None:
    with run_emulator("mailgun") as emu:
        auth = ("api", KEY)
        missing = httpx.post(
            f"{emu.url}/v3/mg.example.com/messages", data={"to": "a@example.com"}, auth=auth
        )
        plain = httpx.post(
            f"{emu.url}/v3/mg.example.com/messages",
            data={
                "from": "n@mg.example.com",
                "to": "a@example.com, b@example.com",
                "subject": "S",
                "text": "T",
            },
            auth=auth,
        )
        counts = emu.counts()
    assert (missing.status_code, missing.json()) == (400, {"message": "from parameter is missing"})
    assert plain.status_code == 200
    assert counts == {"a@example.com": 1, "b@example.com": 1}


def test_command_line_prints_the_url_first() -> None:
    command = [sys.executable, "-m", "tests.emulators.providers", "--provider", "mailgun"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        url = first.removeprefix("listening on ")
        assert first.startswith("listening on http://127.0.0.1:")
        assert httpx.get(f"{url}/_emulator/health").json() == {"provider": "mailgun"}
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


# --- npm emulators -----------------------------------------------------------------------


def test_resend_local_accepts_a_message_and_a_batch_and_shows_them() -> None:
    with run_resend_local() as resend:
        headers = {"Authorization": "Bearer re_test"}
        one = httpx.post(
            f"{resend.url}/emails",
            json={
                "from": "news@example.com",
                "to": ["ann@example.com"],
                "subject": "Hello Ann",
                "html": "<p>Hi Ann</p>",
                "text": "Hi Ann",
                "headers": {"List-Unsubscribe": "<https://x/u/ann>"},
            },
            headers=headers,
        )
        batch = httpx.post(
            f"{resend.url}/emails/batch",
            json=[
                {
                    "from": "news@example.com",
                    "to": ["bob@example.com"],
                    "subject": "B",
                    "html": "<p>B</p>",
                },
                {
                    "from": "news@example.com",
                    "to": ["cy@example.com"],
                    "subject": "C",
                    "html": "<p>C</p>",
                },
            ],
            headers=headers,
        )
        refused = httpx.post(f"{resend.url}/emails", json={}, headers={"Authorization": "Bearer x"})
        sent = resend.sent()

    assert one.status_code == 200 and set(one.json()) == {"id"}
    assert batch.status_code == 200 and len(batch.json()["data"]) == 2
    assert (refused.status_code, refused.json()["type"]) == (401, "invalid_api_key")
    assert [(e["to"], e["subject"]) for e in sent] == [
        (["ann@example.com"], "Hello Ann"),
        (["bob@example.com"], "B"),
        (["cy@example.com"], "C"),
    ]
    assert sent[0]["id"] == one.json()["id"]
    assert sent[0]["text"] == "Hi Ann"
    assert sent[0]["headers"] == {"List-Unsubscribe": "<https://x/u/ann>"}


SES_AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ses/aws4_request, "
    "SignedHeaders=host, Signature=0"
}


def test_ses_local_accepts_a_message_and_a_bulk_send_and_shows_them() -> None:
    with run_ses_local() as ses:
        one = httpx.post(
            f"{ses.url}/v2/email/outbound-emails",
            json={
                "FromEmailAddress": "news@example.com",
                "Destination": {"ToAddresses": ["ann@example.com"]},
                "Content": {
                    "Simple": {
                        "Subject": {"Data": "Hello Ann"},
                        "Body": {"Html": {"Data": "<p>Hi Ann</p>"}, "Text": {"Data": "Hi Ann"}},
                        "Headers": [{"Name": "List-Unsubscribe", "Value": "<https://x/u/ann>"}],
                    }
                },
            },
            headers=SES_AUTH,
        )
        template = httpx.post(
            f"{ses.url}/v2/email/templates",
            json={
                "TemplateName": "issue",
                "TemplateContent": {"Subject": "Hello {{name}}", "Text": "Hi {{name}}"},
            },
            headers=SES_AUTH,
        )
        bulk = httpx.post(
            f"{ses.url}/v2/email/outbound-bulk-emails",
            json={
                "FromEmailAddress": "news@example.com",
                "DefaultContent": {
                    "Template": {
                        "TemplateName": "issue",
                        "TemplateData": json.dumps({"name": "you"}),
                    }
                },
                "BulkEmailEntries": [
                    {
                        "Destination": {"ToAddresses": ["bob@example.com"]},
                        "ReplacementEmailContent": {
                            "ReplacementTemplate": {
                                "ReplacementTemplateData": json.dumps({"name": "Bob"})
                            }
                        },
                    }
                ],
            },
            headers=SES_AUTH,
        )
        unsigned = httpx.post(f"{ses.url}/v2/email/outbound-emails", json={})
        sent = ses.sent()

    assert one.status_code == 200 and one.json()["MessageId"]
    assert template.status_code == 200
    assert bulk.json()["BulkEmailEntryResults"][0]["Status"] == "SUCCESS"
    assert unsigned.status_code == 403
    assert [(e["destination"]["to"], e["subject"], e["body"]["text"]) for e in sent] == [
        (["ann@example.com"], "Hello Ann", "Hi Ann"),
        (["bob@example.com"], "Hello Bob", "Hi Bob"),
    ]
    assert sent[0]["messageId"] == one.json()["MessageId"]
    assert sent[0]["headers"] == [{"name": "List-Unsubscribe", "value": "<https://x/u/ann>"}]


def test_ses_local_works_with_a_botocore_client() -> None:
    botocore_session = pytest.importorskip("botocore.session")
    with run_ses_local() as ses:
        client = botocore_session.get_session().create_client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=ses.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        result = client.send_email(
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["ann@example.com"]},
            Content={"Simple": {"Subject": {"Data": "S"}, "Body": {"Text": {"Data": "T"}}}},
            EmailTags=[{"Name": "issue", "Value": "1"}],
        )
        sent = ses.sent()

    assert [(e["messageId"], e["destination"]["to"]) for e in sent] == [
        (result["MessageId"], ["ann@example.com"])
    ]
    assert "tags" not in sent[0]  # EmailTags are accepted but not kept


def test_missing_node_modules_fails_loudly_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from . import node

    monkeypatch.setattr(node, "RESEND_APP", tmp_path / "absent")
    monkeypatch.setattr(node, "SES_CLI", tmp_path / "absent" / "cli.js")

    for start in (node.run_resend_local, node.run_ses_local):
        hint = r"npm ci --prefix tests/emulators/node"
        with pytest.raises(node.NodeEmulatorError, match=hint), start():
            pass

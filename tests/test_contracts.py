"""Every request digest builds, checked against the provider's published API description.

The oracle here is not the project's own reading of the docs (the emulators in
tests/emulators were written from it and agree with the code by construction): each
provider's requests are captured through the real provider class and the real send path
(``send_issue`` on a copy of the sample site, an ``httpx.MockTransport`` answering), then
checked against the parts of the provider's machine-readable description kept in
``tests/contracts/`` (each file names its document, repository and commit). The read-only
requests digest makes (preflight, suppression sync, the lookups that settle uncertain rows)
are checked the same way.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.config import Config, load_config
from digest.delivery.ledger import Delivery
from digest.delivery.providers import registry
from digest.delivery.send import send_issue
from tests import contracts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
N = 7  # subscribers: more than one batch with BATCH
BATCH = 3
BASE = "https://api.test"

OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${T}", "message_stream": "broadcast"},
    "sendgrid": {"api_key": "${T}"},
    "mailgun": {"api_key": "${T}", "domain": "mg.example.com"},
    "brevo": {"api_key": "${T}"},
    "resend": {"api_key": "${T}"},
    "ses": {"access_key_id": "${T}", "secret_access_key": "${T}", "region": "eu-west-1"},
}


def answer(provider: str, request: httpx.Request) -> httpx.Response:
    """A success in the form each document gives for the operation."""
    path = request.url.path
    if request.method == "POST":
        body = request.content
        if provider == "postmark":
            sent = json.loads(body)
            return httpx.Response(
                200,
                json=[
                    {"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()), "To": m["To"]}
                    for m in sent
                ],
            )
        if provider == "sendgrid":
            return httpx.Response(202, headers={"x-message-id": "sg-1"})
        if provider == "resend":
            return httpx.Response(
                200, json={"data": [{"id": str(uuid.uuid4())} for _ in json.loads(body)]}
            )
        if provider == "brevo":
            versions = json.loads(body)["messageVersions"]
            return httpx.Response(
                201, json={"messageIds": [f"<{i}@brevo>" for i in range(len(versions))]}
            )
        if provider == "mailgun":
            return httpx.Response(
                200, json={"id": "<mg-1@mg.example.com>", "message": "Queued. Thank you."}
            )
        entries = json.loads(body).get("BulkEmailEntries", [])
        return httpx.Response(
            200,
            json={
                "BulkEmailEntryResults": [
                    {"Status": "SUCCESS", "MessageId": f"ses-{i}"} for i in range(len(entries))
                ]
            },
        )
    reads: dict[str, Any] = {
        "/server": {"Name": "digest"},
        "/bounces": {"TotalCount": 0, "Bounces": []},
        "/messages/outbound": {"TotalCount": 0, "Messages": []},
        "/v3/whitelabel/domains": [{"domain": "fieldnotes.example.com", "valid": True}],
        "/domains": {"data": [{"name": "fieldnotes.example.com", "status": "verified"}]},
        "/v3/senders": {"senders": [{"email": "weekly@fieldnotes.example.com", "active": True}]},
        "/v3/smtp/blockedContacts": {"count": 0, "contacts": []},
        "/v3/domains/mg.example.com": {"domain": {"state": "active"}},
    }
    if path in reads:
        return httpx.Response(200, json=reads[path])
    if path.startswith("/message-streams/"):
        return httpx.Response(200, json={"Suppressions": []})
    if path.startswith("/v3/suppression/"):
        return httpx.Response(200, json=[])
    if path.startswith("/v3/mg.example.com/"):
        return httpx.Response(200, json={"items": [], "paging": {}})
    if path.startswith("/v2/email/identities/"):
        return httpx.Response(
            200, json={"IdentityType": "DOMAIN", "VerifiedForSendingStatus": True}
        )
    if path.startswith("/v2/email/suppression/"):
        return httpx.Response(200, json={"SuppressedDestinationSummaries": []})
    return httpx.Response(404, json={"message": f"no such path {path}"})


def site(root: Path, provider: str) -> Config:
    path = root / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = {"name": provider, "base_url": BASE, **OPTIONS[provider]}
    data["send"] = {"batch_size": BATCH}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    csv = root / "people.csv"
    csv.write_text(
        "email,name\n" + "".join(f"reader-{i}@example.com,Reader {i}\n" for i in range(N))
    )
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        import_file(store, csv, Categories.from_config(config), now=NOW, erasure_key=None)
    return config


def capture(root: Path, provider: str, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request one send of the issue, a preflight, a suppression sync and a lookup of
    in-flight rows make, through the real provider class."""
    monkeypatch.setenv("T", "secret-token")
    config = site(root, provider)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer(provider, request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    instance = registry.get_provider_class(provider).from_config(config, client=client)
    report = send_issue(config, now=NOW, week=WEEK, provider=instance)
    assert (report.sent, report.complete) == (N, True)
    instance.preflight()
    if hasattr(instance, "fetch_suppressions"):
        list(instance.fetch_suppressions())
    if instance.can_look_up:
        rows = [
            Delivery(
                WEEK,
                i + 1,
                f"reader-{i}@example.com",
                "all",
                "sending",
                1,
                "digest-k",
                True,
                True,
                None,
                None,
                None,
                None,
                "2026-11-23T12:00:00.000Z",
            )
            for i in range(N)
        ]
        instance.lookup(WEEK, rows)
    return seen


def checked(
    provider: str, requests: list[httpx.Request], check: Callable[[httpx.Request], list[str]]
) -> dict[str, list[str]]:
    return {f"{r.method} {r.url}": found for r in requests if (found := check(r))}


def sends(requests: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in requests if r.method == "POST"]


# --------------------------------------------------------------------------- with a document


def test_sendgrid_requests_match_the_sendgrid_v3_mail_openapi(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twilio SendGrid Mail API, OpenAPI 3.1.0 ``tsg_mail_v3.json`` (info.version 1.0.0) of
    twilio/sendgrid-oai at 2a6ae1824abb462e3903687a9188df2270475ffa; one erratum (the
    message-level ``custom_args`` is an object, as SendGrid's own library sends it)."""
    contract = contracts.load("sendgrid-mail-send")
    requests = capture(sample_site, "sendgrid", monkeypatch)
    assert len(sends(requests)) == 3  # 7 subscribers in batches of 3
    assert checked("sendgrid", requests, lambda r: contracts.problems(contract, r)) == {}


def test_postmark_requests_match_the_postmark_server_swagger(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postmark API, Swagger 2.0 (info.version 1.0.0) from
    https://postmarkapp.com/swagger/server.yml as kept by APIs-guru/openapi-directory at
    02ccb7954ee97f9d15883226683ecb3207ef1a1c; ``MessageStream``, ``Metadata`` and the
    outbound search's ``messagestream`` / ``metadata_*`` filters come from Postmark's
    developer reference (the file names them under ``beyond_the_document``)."""
    contract = contracts.load("postmark-server")
    requests = capture(sample_site, "postmark", monkeypatch)
    assert len(sends(requests)) == 3
    assert any(r.url.path == "/messages/outbound" for r in requests)  # the lookup was made
    assert checked("postmark", requests, lambda r: contracts.problems(contract, r)) == {}
    for request in sends(requests):  # the documented batch limit: 500 messages
        assert len(json.loads(request.content)) <= 500


def test_resend_requests_match_the_resend_openapi(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resend, OpenAPI 3.1.2 ``resend.yaml`` (info.version 1.5.0) of resend/resend-openapi
    at 00e47ec465efb83b4c7e8c7aaf7c2e4cce3e3c3d; the tag character rule is from the same
    document's prose."""
    contract = contracts.load("resend-emails")
    requests = capture(sample_site, "resend", monkeypatch)
    assert len(sends(requests)) == 3
    assert checked("resend", requests, lambda r: contracts.problems(contract, r)) == {}
    rule = contract["definitions"]["Tag"]["x-prose"]["pattern"]
    keys = set()
    for request in sends(requests):
        keys.add(request.headers["Idempotency-Key"])
        for email in json.loads(request.content):
            for tag in email["tags"]:
                assert tag["name"] and tag["value"]
                assert all(re.match(rule, tag[k]) for k in ("name", "value")), tag
    assert len(keys) == 3  # one key per batch: a retry of one batch cannot drop another


def test_brevo_requests_match_the_brevo_sdk_spec(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Brevo API v3 (OpenAPI 3.0.1, info.version 3.0.0) as generated into getbrevo/brevo-python
    (docs/SendSmtpEmail.md at 44b1abfef95460b2269ac3fc18777cec36c9cfea and
    docs/SendSmtpEmailMessageVersions.md at cf01f21e7ceda6f4083c736ba79c862bae6a7da0); the
    limits (99 recipients a version, 2000 a request) are that spec's descriptions."""
    contract = contracts.load("brevo-smtp-email")
    requests = capture(sample_site, "brevo", monkeypatch)
    assert len(sends(requests)) == 3
    assert checked("brevo", requests, lambda r: contracts.problems(contract, r)) == {}
    for request in sends(requests):
        body = json.loads(request.content)
        total = sum(len(v["to"]) for v in body["messageVersions"])
        assert total <= contract["_source"]["limits"]["recipients_per_request"]
        assert "idempotencyKey" in body["headers"]
        uuid.UUID(body["headers"]["idempotencyKey"])


def test_ses_requests_match_the_botocore_sesv2_service_model(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Amazon SES v2 as botocore's service model describes it
    (``botocore/data/sesv2/2019-09-27/service-2.json``, the installed botocore's version is
    in the failure message): each request's method and path must be an operation's
    ``http.requestUri``, and its body, path and query members must pass botocore's own
    ``ParamValidator`` against that operation's input shape."""
    botocore = pytest.importorskip("botocore")
    from botocore.loaders import Loader
    from botocore.model import ServiceModel
    from botocore.validate import ParamValidator

    model = ServiceModel(Loader().load_service_model("sesv2", "service-2"), "sesv2")
    requests = capture(sample_site, "ses", monkeypatch)
    assert len(sends(requests)) == 3

    def check(request: httpx.Request) -> list[str]:
        for name in model.operation_names:
            op = model.operation_model(name)
            if op.http["method"] != request.method:
                continue
            template = op.http["requestUri"].split("?")[0]
            if not contracts._template_match(template.replace("+}", "}"), request.url.path):
                continue
            params: dict[str, Any] = json.loads(request.content) if request.content else {}
            shape = op.input_shape
            members = shape.members if shape is not None else {}
            by_location = {
                (m.serialization.get("location"), m.serialization.get("name", k)): k
                for k, m in members.items()
            }
            for key, value in parse_qsl(urlsplit(str(request.url)).query):
                member = by_location.get(("querystring", key))
                if member is None:
                    return [f"{name}: query {key!r} is not a member"]
                params[member] = int(value) if members[member].type_name == "integer" else value
            parts = request.url.path.split("/")
            for i, piece in enumerate(template.split("/")):
                if piece.startswith("{"):
                    member = by_location[("uri", piece.strip("{}+"))]
                    params[member] = parts[i]
            report = ParamValidator().validate(params, shape)
            return [f"{name}: {report.generate_report()}"] if report.has_errors() else []
        return [
            f"{request.method} {request.url.path} is no sesv2 operation"
            f" (botocore {botocore.__version__})"
        ]

    assert checked("ses", requests, check) == {}
    assert {r.url.path for r in sends(requests)} == {"/v2/email/outbound-bulk-emails"}


# --------------------------------------------------------------------------- Mailgun


def form_fields(request: httpx.Request) -> list[tuple[str, str]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    return [
        (str(part.get_param("name", header="content-disposition")), part.get_content())
        for part in message.iter_parts()
    ]


def test_mailgun_requests_use_only_its_documented_form_fields(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mailgun publishes no machine-readable description of its sending API, so this checks
    the form fields of ``POST /v3/{domain}/messages`` and the ``events`` query against the
    fields its reference documents (kept in tests/contracts/mailgun-messages.json)."""
    contract = contracts.load("mailgun-messages")
    form = contract["paths"]["/v3/{domain}/messages"]["post"]["form"]
    requests = capture(sample_site, "mailgun", monkeypatch)
    posts = sends(requests)
    assert len(posts) == 3
    for request in posts:
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert (
            contracts._header_problems(contract["paths"]["/v3/{domain}/messages"]["post"], request)
            == []
        )
        fields = form_fields(request)
        names = [n for n, _ in fields]
        for name in names:
            prefix = name[:2]
            if prefix in ("h:", "v:"):
                continue
            if prefix == "o:":
                assert name in form["prefixes"]["o:"], name
                continue
            assert name in form["fields"], name
        assert set(form["required"]) <= set(names)
        assert any(n in names for n in form["one_of_required"][0])
        tos = [v for n, v in fields if n == "to"]
        assert 0 < len(tos) <= form["max_recipients"]
        assert names.count("o:tag") <= form["max_tags"]
        variables = json.loads(dict(fields)["recipient-variables"])
        assert set(variables) == set(tos)  # one entry per recipient, keyed by address
    others = [r for r in requests if r.method == "GET"]
    assert any(r.url.path.endswith("/events") for r in others)
    assert checked("mailgun", others, lambda r: contracts.problems(contract, r)) == {}


def test_the_checker_reports_what_the_document_does_not_describe() -> None:
    """The checks above can fail: a member, a query parameter, a path or a type the
    document does not have is named."""
    sendgrid = contracts.load("sendgrid-mail-send")
    good = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "w@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
    }

    def post(url: str, body: Any, **headers: str) -> httpx.Request:
        return httpx.Request(
            "POST", url, json=body, headers={"Authorization": "Bearer k", **headers}
        )

    assert contracts.problems(sendgrid, post(f"{BASE}/v3/mail/send", good)) == []
    assert contracts.problems(sendgrid, post(f"{BASE}/v3/mail/send", {**good, "sender": {}})) == [
        "body: Additional properties are not allowed ('sender' was unexpected)"
    ]
    assert contracts.problems(
        sendgrid, post(f"{BASE}/v3/mail/send", {**good, "categories": ["x"] * 2})
    ) == ["body['categories']: ['x', 'x'] has non-unique elements"]
    assert contracts.problems(sendgrid, post(f"{BASE}/v3/mail/sent", good)) == [
        "POST /v3/mail/sent is not an operation of Twilio SendGrid Mail API (OpenAPI 3.1.0),"
        " info.version 1.0.0"
    ]
    postmark = contracts.load("postmark-server")
    search = httpx.Request(
        "GET",
        f"{BASE}/messages/outbound?count=501&offset=0&subjectx=1",
        headers={"X-Postmark-Server-Token": "t"},
    )
    assert contracts.problems(postmark, search) == [
        "query count=501 is above the maximum 500",
        "query parameter 'subjectx' is not declared for /messages/outbound",
    ]
    batch = [{"From": "a@example.com", "To": "b@example.com", "Metadata": {"n": 1}}]
    assert contracts.problems(
        postmark,
        httpx.Request(
            "POST", f"{BASE}/email/batch", json=batch, headers={"X-Postmark-Server-Token": "t"}
        ),
    ) == ["body[0]['Metadata']['n']: 1 is not of type 'string'"]

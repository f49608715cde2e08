"""What a provider's API says about a sending domain: verified, DKIM verified, records.

Each HTTP provider's :meth:`~digest.delivery.providers.base.Provider.domain_state` makes its
read-only request(s) and hands the decoded answer to the reader here for that provider. A
reader is pure: it turns the provider's JSON into :class:`DomainFinding` items, each naming
the provider's document for that endpoint and, when something is not verified, the record
the provider asks for. ``digest check --deliverability`` shows them beside the DNS rules.

The contracts (field names as each provider documents them):

- Postmark ``GET /domains`` and ``GET /domains/{id}`` (account token): ``DKIMVerified``,
  ``ReturnPathDomainVerified``, ``DKIMPendingHost``/``DKIMPendingTextValue``,
  ``ReturnPathDomain``/``ReturnPathDomainCNAMEValue``;
- Mailgun ``GET /v3/domains/{name}``: ``domain.state`` and ``sending_dns_records[]`` with
  ``record_type``, ``name``, ``value`` and ``valid`` (``valid``, ``invalid``, ``unknown``);
- SendGrid ``GET /v3/whitelabel/domains``: per domain ``valid`` and ``dns.{mail_cname,
  dkim1, dkim2}`` with ``valid``, ``type``, ``host``, ``data``;
- Amazon SES v2 ``GET /v2/email/identities/{identity}``: ``VerifiedForSendingStatus`` and
  ``DkimAttributes.Status`` (``SUCCESS`` when the DKIM records are found) and ``Tokens``;
- Resend ``GET /domains`` and ``GET /domains/{id}``: ``status`` and ``records[]`` with
  ``record``, ``name``, ``type``, ``value`` and ``status``;
- Brevo ``GET /v3/senders/domains/{domainName}``: ``verified``, ``authenticated`` and
  ``dns_records.dkim_record`` (``host_name``, ``type``, ``value``, ``status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOCUMENTS = {
    "postmark": "https://postmarkapp.com/developer/api/domains-api",
    "mailgun": "https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/"
    "tag/Domains/",
    "sendgrid": "https://www.twilio.com/docs/sendgrid/api-reference/domain-authentication/"
    "list-all-authenticated-domains",
    "ses": "https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetEmailIdentity.html",
    "resend": "https://resend.com/docs/api-reference/domains/get-domain",
    "brevo": "https://developers.brevo.com/reference/get-domain-configuration",
}
"""The provider's own page for the endpoint each reader reads."""


@dataclass(frozen=True)
class DomainFinding:
    """One thing the provider says of the domain; ``publish`` is the record it asks for."""

    rule: str  # provider-domain, provider-dkim, provider-return-path, provider-record
    ok: bool
    detail: str
    publish: str | None = None
    checked: bool = True  # False: the provider was not asked (what to set is in detail)


def _says(provider: str, what: str) -> str:
    return f"{provider} says {what} ({DOCUMENTS[provider]})"


def _dkim(provider: str, domain: str, ok: bool, where: str = "") -> str:
    """The one wording of every provider's DKIM answer."""
    state = "verified" if ok else "not verified"
    return _says(provider, f"DKIM is {state} for {domain}" + (f" ({where})" if where else ""))


def _record(name: object, kind: object, value: object) -> str:
    name = str(name).rstrip(".")
    shown = f'"{value}"' if str(kind).upper() == "TXT" else str(value)
    return f"{name}. {str(kind).upper()} {shown}"


def _listed(
    provider: str, domain: str, *, dkim: bool, ok: bool, where: str, detail: str, publish: str
) -> DomainFinding:
    """One DNS record a provider lists for the domain, the same shape for every provider: a
    DKIM record in the one DKIM wording (``where``: the record and its state), any other in
    the provider's ``detail``; ``publish`` is shown while it is not verified."""
    return DomainFinding(
        "provider-dkim" if dkim else "provider-record",
        ok,
        _dkim(provider, domain, ok, where) if dkim else _says(provider, detail),
        None if ok else publish,
    )


def not_found(provider: str, domain: str, where: str) -> list[DomainFinding]:
    return [
        DomainFinding(
            "provider-domain",
            False,
            _says(provider, f"{domain} is not one of the account's domains")
            + f": add it in {where}",
        )
    ]


def postmark(domain: str, details: dict[str, Any]) -> list[DomainFinding]:
    """``GET /domains/{id}`` of the From domain."""
    dkim = bool(details.get("DKIMVerified"))
    host = details.get("DKIMPendingHost") or details.get("DKIMHost")
    value = details.get("DKIMPendingTextValue") or details.get("DKIMTextValue")
    findings = [
        DomainFinding(
            "provider-dkim",
            dkim,
            _dkim("postmark", domain, dkim, str(host or "")),
            None if dkim or not host else _record(host, "TXT", value),
        )
    ]
    if details.get("WeakDKIM"):
        findings.append(
            DomainFinding(
                "provider-dkim",
                False,
                _says("postmark", f"the DKIM key of {domain} is weak (1024 bits)")
                + ": rotate it in Postmark and publish the new record",
            )
        )
    return_path = details.get("ReturnPathDomain") or ""
    verified = bool(details.get("ReturnPathDomainVerified"))
    findings.append(
        DomainFinding(
            "provider-return-path",
            verified,
            _says(
                "postmark",
                f"the Return-Path {return_path or '(none set)'} is "
                + ("verified" if verified else "not verified"),
            ),
            None
            if verified or not return_path
            else _record(return_path, "CNAME", details.get("ReturnPathDomainCNAMEValue")),
        )
    )
    return findings


def mailgun(domain: str, data: dict[str, Any]) -> list[DomainFinding]:
    """``GET /v3/domains/{name}``."""
    state = str((data.get("domain") or {}).get("state", "unknown"))
    findings = [
        DomainFinding(
            "provider-domain",
            state == "active",
            _says("mailgun", f"{domain} is {state}")
            + ("" if state == "active" else ": publish the records below, then verify"),
        )
    ]
    for record in data.get("sending_dns_records") or []:
        if not isinstance(record, dict):
            continue
        name = str(record.get("name", ""))
        valid = record.get("valid") == "valid"
        state = str(record.get("valid", "unknown"))
        dkim = "._domainkey." in name
        findings.append(
            _listed(
                "mailgun",
                domain,
                dkim=dkim,
                ok=valid,
                where=f"{name}: {state}",
                detail=f"the {record.get('record_type')} record {name} is {state}",
                publish=_record(name, record.get("record_type", "TXT"), record.get("value")),
            )
        )
    return findings


def sendgrid(domain: str, items: list[Any]) -> list[DomainFinding]:
    """``GET /v3/whitelabel/domains``: the entry for the From domain."""
    match = [i for i in items if isinstance(i, dict) and str(i.get("domain", "")).lower() == domain]
    if not match:
        return not_found("sendgrid", domain, "SendGrid (Settings > Sender Authentication)")
    entry = match[0]
    valid = bool(entry.get("valid"))
    findings = [
        DomainFinding(
            "provider-domain",
            valid,
            _says("sendgrid", f"{domain} is {'authenticated' if valid else 'not yet valid'}"),
        )
    ]
    for key, record in sorted((entry.get("dns") or {}).items()):
        if not isinstance(record, dict):
            continue
        ok = bool(record.get("valid"))
        dkim = key.startswith("dkim")
        host = record.get("host")
        findings.append(
            _listed(
                "sendgrid",
                domain,
                dkim=dkim,
                ok=ok,
                where=f"{key} {host}",
                detail=f"{key} {host} is {'' if ok else 'not '}valid",
                publish=_record(record.get("host"), record.get("type"), record.get("data")),
            )
        )
    return findings


def ses(domain: str, data: dict[str, Any]) -> list[DomainFinding]:
    """``GET /v2/email/identities/{domain}``."""
    verified = bool(data.get("VerifiedForSendingStatus"))
    dkim = data.get("DkimAttributes") or {}
    status = str(dkim.get("Status", "NOT_STARTED"))
    tokens = [str(t) for t in dkim.get("Tokens") or []]
    publish = "; ".join(f"{t}._domainkey.{domain}. CNAME {t}.dkim.amazonses.com" for t in tokens)
    return [
        DomainFinding(
            "provider-domain",
            verified,
            _says("ses", f"{domain} is {'verified' if verified else 'not verified'} for sending"),
        ),
        DomainFinding(
            "provider-dkim",
            status == "SUCCESS",
            _dkim("ses", domain, status == "SUCCESS", f"DkimAttributes.Status {status}"),
            None if status == "SUCCESS" or not publish else publish,
        ),
    ]


def resend(domain: str, data: dict[str, Any]) -> list[DomainFinding]:
    """``GET /domains/{id}`` of the From domain."""
    status = str(data.get("status", "unknown"))
    findings = [
        DomainFinding(
            "provider-domain",
            status == "verified",
            _says("resend", f"{domain} is {status}"),
        )
    ]
    for record in data.get("records") or []:
        if not isinstance(record, dict):
            continue
        ok = record.get("status") == "verified"
        kind = str(record.get("record", ""))
        dkim = kind.upper() == "DKIM"
        name = str(record.get("name", ""))
        host = name if name.endswith(domain) else f"{name}.{domain}"
        state = str(record.get("status", "unknown"))
        findings.append(
            _listed(
                "resend",
                domain,
                dkim=dkim,
                ok=ok,
                where=f"{host}: {state}",
                detail=f"the {kind} record {host} is {state}",
                publish=_record(host, record.get("type"), record.get("value")),
            )
        )
    return findings


def brevo(domain: str, data: dict[str, Any]) -> list[DomainFinding]:
    """``GET /v3/senders/domains/{domain}``."""
    authenticated = bool(data.get("authenticated"))
    verified = bool(data.get("verified"))
    findings = [
        DomainFinding(
            "provider-domain",
            verified and authenticated,
            _says(
                "brevo",
                f"{domain} is {'verified' if verified else 'not verified'} and "
                f"{'authenticated' if authenticated else 'not authenticated'}",
            ),
        )
    ]
    records = data.get("dns_records") or {}
    for key, record in sorted(records.items()):
        if not isinstance(record, dict):
            continue
        ok = bool(record.get("status"))
        host = str(record.get("host_name", ""))
        host = host + domain if host.endswith(".") else host
        dkim = key == "dkim_record"
        what = key.replace("_", " ")
        findings.append(
            _listed(
                "brevo",
                domain,
                dkim=dkim,
                ok=ok,
                where=host,
                detail=f"the {what} {host} is {'' if ok else 'not '}verified",
                publish=_record(host, record.get("type", "TXT"), record.get("value")),
            )
        )
    return findings

"""The sending domain's DNS, checked before mail goes out (``digest check --deliverability``).

Since 2024 Gmail and Yahoo want bulk mail authenticated: SPF, DKIM and a DMARC record for
the From domain. Each rule here asks the DNS one question and gives a :class:`Finding`; a
finding that fails carries the record to publish, ready to copy into a zone.

Rules: ``spf`` (one record, valid syntax), ``spf-lookups`` (at most 10 DNS lookups, counted
through every include and redirect), ``spf-provider`` (the provider's include is in the tree),
``dkim`` (each selector has a key of at least 1024 bits), ``dmarc`` (a policy, explained),
``mx`` (the From and Reply-To domains can receive), ``bimi`` (reported when present).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import dns.exception
import dns.resolver

from digest.errors import DigestError

if TYPE_CHECKING:
    from digest.config import Config

Severity = Literal["fail", "warn", "info"]

SPF_LOOKUP_LIMIT = 10


@dataclass(frozen=True)
class ProviderDns:
    """What a provider asks its senders to publish.

    ``spf_include`` is the domain of its SPF include (None: SPF is the provider's own
    return-path domain, nothing to publish); ``dkim_selectors`` the selectors it uses
    by default (empty: the provider makes one per domain, shown in its dashboard).
    """

    spf_include: str | None
    dkim_selectors: tuple[str, ...]
    note: str = ""


# Each provider's documented SPF include and DKIM selectors (docs/deliverability.md).
PROVIDERS: dict[str, ProviderDns] = {
    "postmark": ProviderDns(
        "spf.mtasv.net", (), "Postmark's DKIM selector is dated (e.g. 20240101pm): copy it"
    ),
    "sendgrid": ProviderDns("sendgrid.net", ("s1", "s2")),
    "mailgun": ProviderDns(
        "mailgun.org",
        (),
        "Mailgun makes a selector per domain, shown under Sending > Domain settings > DNS "
        "records (and in the provider findings below)",
    ),
    "ses": ProviderDns(
        "amazonses.com", (), "SES Easy DKIM makes three random selectors: copy them"
    ),
    "brevo": ProviderDns(
        "spf.brevo.com",
        (),
        "Brevo shows the DKIM record's host under Senders, Domains & Dedicated IPs > "
        "Domains (and in the provider findings below)",
    ),
    "resend": ProviderDns("amazonses.com", ("resend",), "SPF lives on send.<your domain>"),
}


class DnsError(DigestError):
    """The DNS could not be asked (timeout, no server): not the same as "no record"."""


@dataclass(frozen=True)
class Finding:
    """One rule's outcome for one DNS name; ``publish`` is the record to copy."""

    rule: str
    name: str
    ok: bool
    detail: str
    publish: str | None = None
    severity: Severity = "fail"

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "fail"

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "name": self.name,
            "ok": self.ok,
            "severity": self.severity,
            "detail": self.detail,
            "publish": self.publish,
        }


@dataclass
class Report:
    """Every finding for one From domain."""

    domain: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.failed for f in self.findings)


Lookup = Callable[[str, str], list[str]]


def resolver_lookup(nameservers: list[str], port: int = 53, timeout: float = 5.0) -> Lookup:
    """A lookup ``(name, rdtype) -> [record text]`` on the given servers (empty: the
    system's). No record (NXDOMAIN, no answer) is an empty list; a server that cannot
    be reached raises :class:`DnsError`."""
    try:
        resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = list(nameservers)
    except (dns.exception.DNSException, ValueError) as exc:
        raise DnsError(f"DNS: cannot set up the resolver: {exc}") from exc
    resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout

    def lookup(name: str, rdtype: str) -> list[str]:
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:  # a timeout, no server, a bad name
            raise DnsError(f"DNS: no answer for {rdtype} {name}: {exc}") from exc
        out = []
        for rdata in answer:
            if rdtype == "TXT":
                out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
            elif rdtype == "MX":
                out.append(f"{rdata.preference} {str(rdata.exchange).rstrip('.')}")
            else:
                out.append(rdata.to_text())
        return out

    return lookup


class RunLookup:
    """One run's DNS questions: each ``(name, type)`` asked once (the answer, or the
    error, is kept for the rest of the run), and the run bounded as a whole: once
    ``budget`` seconds have gone on asking, every further question is a :class:`DnsError`
    instead of another wait. ``asked`` counts the questions that reached ``lookup``."""

    def __init__(
        self, lookup: Lookup, budget: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lookup = lookup
        self.budget = budget
        self.clock = clock
        self.spent = 0.0
        self.asked = 0
        self.answers: dict[tuple[str, str], list[str] | DnsError] = {}

    def __call__(self, name: str, rdtype: str) -> list[str]:
        key = (name.lower().rstrip("."), rdtype)
        if key not in self.answers:
            if self.spent >= self.budget:
                self.answers[key] = DnsError(
                    f"DNS: not asked for {rdtype} {name}: this run's {self.budget:g} s of "
                    "DNS questions are spent (a slow or silent resolver)"
                )
            else:
                started = self.clock()
                self.asked += 1
                try:
                    self.answers[key] = list(self.lookup(name, rdtype))
                except DnsError as exc:
                    self.answers[key] = exc
                finally:
                    self.spent += self.clock() - started
        answer = self.answers[key]
        if isinstance(answer, DnsError):
            raise answer
        return list(answer)


def run_lookup(config: Config) -> RunLookup:
    """The configured resolver, cached and bounded for one run (``deliverability``:
    ``dns_timeout`` per question, ``dns_budget`` for the run)."""
    settings = config.deliverability
    lookup = resolver_lookup(settings.nameservers, settings.dns_port, settings.dns_timeout)
    return RunLookup(lookup, settings.dns_budget)


# --- SPF ---------------------------------------------------------------------------------

_MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_COUNTED = {"include", "a", "mx", "ptr", "exists", "redirect"}


def spf_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup(domain, "TXT") if t.lower().split(" ", 1)[0] == "v=spf1"]


def spf_terms(record: str) -> list[tuple[str, str]]:
    """``(name, value)`` per term (qualifier dropped); raises ValueError naming a bad term."""
    terms: list[tuple[str, str]] = []
    for term in record.split()[1:]:
        if "=" in term and ":" not in term.split("=", 1)[0]:
            name, value = term.split("=", 1)
            if not name or not value:
                raise ValueError(f"bad modifier '{term}'")
            terms.append((name.lower(), value))
            continue
        bare = term[1:] if term[:1] in "+-~?" else term
        name, _, value = bare.partition(":")
        name, _slash, _cidr = name.partition("/")
        name = name.lower()
        if name not in _MECHANISMS:
            raise ValueError(f"unknown mechanism '{term}'")
        if name in {"include", "exists", "ip4", "ip6"} and not value:
            raise ValueError(f"'{term}' needs a value")
        if name in {"ip4", "ip6"}:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"'{term}' is not an IP address or range") from None
        terms.append((name, value))
    return terms


def spf_walk(lookup: Lookup, domain: str) -> tuple[int, set[str], list[str]]:
    """Count the DNS lookups of ``domain``'s SPF record, through every include and
    redirect (RFC 7208 section 4.6.4); also every domain included, and any problem met."""
    count = 0
    included: set[str] = set()
    problems: list[str] = []
    seen: set[str] = set()

    def walk(name: str, depth: int) -> None:
        nonlocal count
        if name in seen or depth > 12:
            problems.append(f"{name} is included in a loop")
            return
        seen.add(name)
        records = spf_records(lookup, name)
        if len(records) != 1:
            problems.append(f"{name} has {len(records)} SPF records")
            return
        try:
            terms = spf_terms(records[0])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            return
        for term, value in terms:
            if term in _COUNTED:
                count += 1
            if term in {"include", "redirect"}:
                included.add(value.lower().rstrip("."))
                walk(value.lower().rstrip("."), depth + 1)

    walk(domain, 0)
    return count, included, problems


def _spf_suggestion(domain: str, include: str | None, record: str | None) -> str:
    """The record to publish: the address ranges of ``record`` that are valid, and the
    provider's include."""
    keep = []
    for term in (record or "").split()[1:]:
        if term.lstrip("+-~?").split(":")[0] in ("ip4", "ip6"):
            with contextlib.suppress(ValueError):
                spf_terms("v=spf1 " + term)
                keep.append(term)
    terms = keep + ([f"include:{include}"] if include else [])
    return f'{domain}. TXT "v=spf1 {" ".join([*terms, "~all"])}"'


def check_spf(lookup: Lookup, domain: str, include: str | None) -> list[Finding]:
    """``spf``, ``spf-lookups`` and ``spf-provider`` for ``domain``."""
    records = spf_records(lookup, domain)
    if not records:
        return [
            Finding(
                "spf",
                domain,
                False,
                "no SPF record: receivers cannot tell which servers may send as this domain",
                _spf_suggestion(domain, include, None),
            )
        ]
    if len(records) > 1:
        return [
            Finding(
                "spf",
                domain,
                False,
                f"{len(records)} SPF records (a permanent error): merge them into one",
                _spf_suggestion(domain, include, records[0]),
            )
        ]
    record = records[0]
    try:
        spf_terms(record)
    except ValueError as exc:
        return [
            Finding(
                "spf",
                domain,
                False,
                f"invalid SPF record: {exc}",
                _spf_suggestion(domain, include, record),
            )
        ]
    findings = [Finding("spf", domain, True, f'"{record}"')]
    count, included, problems = spf_walk(lookup, domain)
    if count > SPF_LOOKUP_LIMIT or problems:
        why = f"{count} DNS lookups (the limit is {SPF_LOOKUP_LIMIT})"
        if problems:
            why += "; " + "; ".join(problems)
        findings.append(
            Finding(
                "spf-lookups",
                domain,
                False,
                why + ": receivers give up (permerror); drop includes you no longer send "
                "through or replace them by their ip4:/ip6: ranges",
                _spf_suggestion(domain, include, record),
            )
        )
    else:
        findings.append(Finding("spf-lookups", domain, True, f"{count} DNS lookups of 10"))
    if include is None:
        findings.append(
            Finding("spf-provider", domain, True, "no provider include to look for", None, "info")
        )
    elif include in included:
        findings.append(Finding("spf-provider", domain, True, f"include:{include} found"))
    else:
        findings.append(
            Finding(
                "spf-provider",
                domain,
                False,
                f"include:{include} is missing: the provider's servers are not authorised",
                _spf_suggestion(domain, include, record),
            )
        )
    return findings


# --- DKIM --------------------------------------------------------------------------------


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def dkim_key_bits(record: str) -> int:
    """The key size in bits of a DKIM key record; raises ValueError saying what is wrong."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    tags = _tags(record)
    if tags.get("v", "DKIM1") != "DKIM1":
        raise ValueError(f"v={tags['v']} (expected DKIM1)")
    if "p" not in tags:
        raise ValueError("no p= (public key) tag")
    if not tags["p"]:
        raise ValueError("the key is revoked (empty p=)")
    try:
        der = base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("p= is not base64") from None
    kind = tags.get("k", "rsa")
    if kind == "ed25519":
        if len(der) != 32:
            raise ValueError("p= is not an Ed25519 key")
        ed25519.Ed25519PublicKey.from_public_bytes(der)
        return 256
    try:
        key = load_der_public_key(der)
    except ValueError:
        raise ValueError("p= is not a public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("p= is not an RSA key")
    return key.key_size


def check_dkim(lookup: Lookup, domain: str, selectors: list[str], note: str = "") -> list[Finding]:
    """``dkim``: each selector's key record exists and holds a key of at least 1024 bits."""
    if not selectors:
        return [
            Finding(
                "dkim",
                f"<selector>._domainkey.{domain}",
                False,
                "no DKIM selector to look up: set deliverability.dkim_selectors to the "
                "selector(s) your provider shows" + (f" ({note})" if note else ""),
                f'<selector>._domainkey.{domain}. TXT "v=DKIM1; k=rsa; p=<public key>"',
            )
        ]
    findings = []
    for selector in selectors:
        name = f"{selector}._domainkey.{domain}"
        publish = f'{name}. TXT "v=DKIM1; k=rsa; p=<public key from your provider>"'
        records = [t for t in lookup(name, "TXT") if "p=" in t]
        if not records:
            findings.append(Finding("dkim", name, False, "no DKIM key record", publish))
            continue
        try:
            bits = dkim_key_bits(records[0])
        except ValueError as exc:
            findings.append(Finding("dkim", name, False, f"invalid DKIM key: {exc}", publish))
            continue
        if bits < 1024 and _tags(records[0]).get("k", "rsa") == "rsa":
            findings.append(
                Finding(
                    "dkim",
                    name,
                    False,
                    f"a {bits}-bit RSA key: receivers want at least 1024 (2048 is better)",
                    publish,
                )
            )
        else:
            findings.append(Finding("dkim", name, True, f"a {bits}-bit key"))
    return findings


# --- DMARC, MX, BIMI ---------------------------------------------------------------------

_POLICIES = {
    "none": "p=none: receivers only report; failing mail is still delivered (the minimum "
    "Gmail and Yahoo ask of bulk senders)",
    "quarantine": "p=quarantine: mail that fails is put in spam",
    "reject": "p=reject: mail that fails is refused",
}


def _dmarc_record(lookup: Lookup, domain: str) -> tuple[str, str] | None:
    """The DMARC record that applies to ``domain``: its own, else its parents' (the
    organisational domain's), as ``(name, record)``."""
    labels = domain.split(".")
    for start in range(0, max(1, len(labels) - 1)):
        name = "_dmarc." + ".".join(labels[start:])
        records = [t for t in lookup(name, "TXT") if t.replace(" ", "").startswith("v=DMARC1")]
        if records:
            return name, records[0]
    return None


def check_dmarc(lookup: Lookup, domain: str) -> list[Finding]:
    """``dmarc``: a record with a policy, its alignment modes explained."""
    publish = f'_dmarc.{domain}. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'
    found = _dmarc_record(lookup, domain)
    if found is None:
        return [
            Finding(
                "dmarc",
                f"_dmarc.{domain}",
                False,
                "no DMARC record: Gmail and Yahoo require one (p=none at least) for bulk mail",
                publish,
            )
        ]
    name, record = found
    tags = _tags(record)
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        return [
            Finding("dmarc", name, False, f"no valid policy (p={policy or 'missing'})", publish)
        ]
    aligned = {"r": "relaxed (a subdomain counts)", "s": "strict (exactly the From domain)"}
    detail = (
        f"{_POLICIES[policy]}; DKIM alignment {aligned.get(tags.get('adkim', 'r'), '?')}, "
        f"SPF alignment {aligned.get(tags.get('aspf', 'r'), '?')}"
    )
    detail += "; reports go to " + tags["rua"] if "rua" in tags else "; no rua= (no reports)"
    return [Finding("dmarc", name, True, detail)]


def check_mx(lookup: Lookup, domain: str, role: str) -> Finding:
    """``mx``: ``domain`` can receive mail (replies, bounces, complaints)."""
    publish = f"{domain}. MX 10 <your mail server>."
    records = lookup(domain, "MX")
    if not records:
        return Finding(
            "mx", domain, False, f"no MX record: mail to the {role} domain bounces", publish
        )
    if all(len(r.split()) < 2 for r in records):  # "0 ." (RFC 7505)
        return Finding("mx", domain, False, f"a null MX: the {role} domain takes no mail", publish)
    return Finding("mx", domain, True, f"{role}: " + ", ".join(sorted(records)))


def check_bimi(lookup: Lookup, domain: str) -> Finding:
    """``bimi``: reported when present (a logo in the inbox; needs DMARC enforcement)."""
    name = f"default._bimi.{domain}"
    records = [t for t in lookup(name, "TXT") if t.replace(" ", "").startswith("v=BIMI1")]
    if not records:
        return Finding("bimi", name, True, "no BIMI record (optional)", None, "info")
    return Finding("bimi", name, True, f'"{records[0]}"', None, "info")


def check_domain(
    lookup: Lookup,
    from_domain: str,
    *,
    provider: str,
    reply_to_domain: str | None = None,
    return_path_domain: str | None = None,
    spf_include: str | None = None,
    dkim_selectors: list[str] | None = None,
) -> Report:
    """Every rule for ``from_domain`` sending through ``provider``."""
    known = PROVIDERS.get(provider, ProviderDns(None, ()))
    include = spf_include or known.spf_include
    selectors = list(dkim_selectors if dkim_selectors is not None else known.dkim_selectors)
    report = Report(from_domain)
    report.findings += check_spf(lookup, return_path_domain or from_domain, include)
    report.findings += check_dkim(lookup, from_domain, selectors, known.note)
    report.findings += check_dmarc(lookup, from_domain)
    report.findings.append(check_mx(lookup, from_domain, "From"))
    if reply_to_domain and reply_to_domain != from_domain:
        report.findings.append(check_mx(lookup, reply_to_domain, "Reply-To"))
    report.findings.append(check_bimi(lookup, from_domain))
    return report


def check_config(config: Config, lookup: Lookup | None = None) -> Report:
    """:func:`check_domain` for the configured sender, provider and resolver."""
    settings = config.deliverability
    if lookup is None:
        lookup = run_lookup(config)
    provider = config.provider.name
    selectors = settings.dkim_selectors
    if selectors is None and provider == "smtp":
        options = config.provider.options()
        selectors = [str(options.get("dkim_selector", "digest"))]
        if not options.get("dkim_key_file"):
            selectors = []
    reply_to = config.sender.reply_to
    return check_domain(
        lookup,
        config.sender.from_email.rsplit("@", 1)[1].lower(),
        provider=provider,
        reply_to_domain=reply_to.rsplit("@", 1)[1].lower() if reply_to else None,
        return_path_domain=settings.return_path_domain,
        spf_include=settings.spf_include,
        dkim_selectors=selectors,
    )
